#!/usr/bin/env python3
"""Linearizability and watch guarantees of a three-member cluster under faults.

The test builds its own network: a hub namespace holding a bridge, and one
namespace per member joined to the bridge by a veth pair; every address lives
inside these namespaces and the clients run in the hub (their threads enter
it with setns), so no traffic leaves what the test created. Eight client
threads read, write and compare-and-swap (txn: value == expected -> put) over
32 keys with unique values at a moderate rate, recording every operation's
call and return time and outcome. Every few seconds a fault chosen at random
(seeded; the seed is printed) hits the cluster: kill -9 and restart, SIGSTOP
and SIGCONT, isolating one member, isolating the leader, or cutting one link
so that one member bridges the other two (nft DROP rules inside the member
namespaces, removed to heal). A watcher per member follows all keys from the
first revision, drops and resumes now and then, and must see every revision
exactly once, in order, never split, and the same as every other watcher.

At the end the faults heal, the cluster quiesces, a final linearizable read
of every key joins the history, unknown outcomes are resolved from the watch
history, no acknowledged write may be missing, and the checker must find the
history linearizable within its time limit.

Environment: CAPSTAN_FAULT_SECONDS (default 120), CAPSTAN_FAULT_SEED.
Needs root (ip netns, nft); without it the test fails, it does not skip.
"""

import ctypes
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lincheck"))
import capstan_test as ct  # noqa: E402
from capstan_test import b64, unb64  # noqa: E402
import gateway  # noqa: E402
import wgl  # noqa: E402

DURATION = float(os.environ.get("CAPSTAN_FAULT_SECONDS", "120"))
SEED = int(os.environ.get("CAPSTAN_FAULT_SEED", str(int(time.time() * 1000) % 1000000)))
CLIENTS = 8
KEYS = 32
RATE = 260.0                 # target operations per second over all clients (faults slow it)
OP_TIMEOUT = 2.5             # a request unanswered by then has an unknown outcome
PREFIX = "f/"
CLIENT_PORT, PEER_PORT = 2379, 2380
CHECK_LIMIT = 120.0          # seconds per key; running out fails the test

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*argv, check=True, timeout=20):
    r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(argv), r.returncode,
                                                     r.stdout.decode(errors="replace").strip()))
    return r


def enter_netns(name):
    """Move the calling thread (only) into a network namespace."""
    fd = os.open("/run/netns/%s" % name, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns(%s): %s" % (name, os.strerror(e)))
    finally:
        os.close(fd)


def in_netns(name, fn, *a):
    """Run fn(*a) in a thread inside the namespace; return its result."""
    box = {}

    def body():
        try:
            enter_netns(name)
            box["v"] = fn(*a)
        except BaseException as e:  # noqa: handed back to the caller
            box["e"] = e
    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box.get("v")


# ---------------------------------------------------------------- the network

class Net:
    """A hub namespace with a bridge and one namespace per member on it."""

    def __init__(self, n):
        tag = "%04x" % random.SystemRandom().randrange(1 << 16)
        self.hub = "capf-%s-hub" % tag
        self.nodes = ["capf-%s-%d" % (tag, i + 1) for i in range(n)]
        o = random.SystemRandom().randrange(16, 250)
        self.ips = ["10.%d.0.%d" % (o, i + 1) for i in range(n)]
        self.hub_ip = "10.%d.0.254" % o
        self.created = []
        self.procs = []          # every Node whose process must die before the namespaces

    def up(self):
        r = sh("ip", "netns", "add", self.hub, check=False)
        if r.returncode != 0:
            raise AssertionError("cannot create a network namespace (`ip netns add` needs root; "
                                 "CI runs as root): %s" % r.stdout.decode(errors="replace").strip())
        self.created.append(self.hub)
        if not shutil.which("nft"):
            raise AssertionError("nft is not installed (scripts/install-deps installs nftables)")
        sh("ip", "-n", self.hub, "link", "set", "lo", "up")
        sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.hub, "addr", "add", self.hub_ip + "/24", "dev", "br0")
        sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        for i, ns in enumerate(self.nodes):
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", self.hub, "link", "add", "v%d" % i, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            sh("ip", "-n", self.hub, "link", "set", "v%d" % i, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", self.ips[i] + "/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        return self

    def cut(self, i, peers):
        """Drop all traffic between member i and the given other members."""
        addrs = ", ".join(self.ips[j] for j in peers)
        rules = ("table inet capf {\n"
                 " chain in { type filter hook input priority 0; policy accept; ip saddr { %s } drop; }\n"
                 " chain out { type filter hook output priority 0; policy accept; ip daddr { %s } drop; }\n"
                 "}\n" % (addrs, addrs))
        p = subprocess.run(["ip", "netns", "exec", self.nodes[i], "nft", "-f", "-"], input=rules.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        if p.returncode != 0:
            raise AssertionError("nft failed in %s: %s" % (self.nodes[i], p.stdout.decode(errors="replace")))

    def heal(self):
        for ns in self.nodes:
            sh("ip", "netns", "exec", ns, "nft", "flush", "ruleset", check=False)

    # ct.cleanup() and the runner call this (we sit in ct._live).
    def _hard_stop(self):
        for node in list(self.procs):
            node.kill9()
        for ns in reversed(self.created):
            sh("ip", "netns", "del", ns, check=False)
        self.created = []
        with ct._lock:
            if self in ct._live:
                ct._live.remove(self)

    keep = False


class Node:
    """One member's process, started inside its namespace."""

    def __init__(self, net, i, cluster_spec):
        self.net, self.i = net, i
        self.name = "n%d" % (i + 1)
        self.ip = net.ips[i]
        self.workdir = ct.mktemp("capstan-faults-")
        self.data_dir = os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "server.log")
        self.spec = cluster_spec
        self.proc = None
        self.paused = False
        self.member_id = None

    def argv(self):
        binary = ct.ETCD_BIN if ct.TARGET == "etcd" else ct.STORE_BIN
        if not binary or not os.access(binary, os.X_OK):
            raise AssertionError("%s server binary not found (%s)" % (ct.TARGET, binary))
        c = "http://%s:%d" % (self.ip, CLIENT_PORT)
        p = "http://%s:%d" % (self.ip, PEER_PORT)
        a = ["ip", "netns", "exec", self.net.nodes[self.i], binary, "--name", self.name,
             "--data-dir", self.data_dir, "--listen-client-urls", c, "--advertise-client-urls", c,
             "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
             "--initial-cluster", self.spec, "--initial-cluster-state", "new", "--log-level", "info"]
        if ct.TARGET == "etcd":
            a += ["--logger", "zap"]
        return a

    def start(self):
        with open(self.log_path, "ab") as logf:
            logf.write(("\n==== start: %s\n" % " ".join(self.argv())).encode())
            logf.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
        self.paused = False
        if self not in self.net.procs:
            self.net.procs.append(self)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def kill9(self):
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.paused = False

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.paused = False

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""


def post(ip, path, body, timeout=3.0):
    conn = http.client.HTTPConnection(ip, CLIENT_PORT, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, ct.parse_body(r.read())
    finally:
        conn.close()


def leader_of(nodes):
    """(leader node, votes) by the members' own status reports; None if unclear."""
    ids, votes = {}, {}
    for n in nodes:
        if not n.alive() or n.paused:
            continue
        try:
            st, b = post(n.ip, "/v3/maintenance/status", {}, timeout=1.0)
        except (OSError, http.client.HTTPException):
            continue
        if st != 200:
            continue
        ids[str(b["header"]["member_id"])] = n
        n.member_id = str(b["header"]["member_id"])
        lid = str(b.get("leader", "0"))
        if lid != "0":
            votes[lid] = votes.get(lid, 0) + 1
    if not votes:
        return None, 0
    lid = max(votes, key=votes.get)
    node = ids.get(lid) or next((n for n in nodes if n.member_id == lid), None)
    return node, votes[lid]


# ---------------------------------------------------------------- clients

class Client(threading.Thread):
    def __init__(self, idx, nodes, hub, history, stop, seed):
        super().__init__(daemon=True)
        self.idx, self.nodes, self.hub, self.h, self.stop = idx, nodes, hub, history, stop
        self.rnd = random.Random(seed)
        self.conns = {}
        self.known = {}          # key -> last value this client saw
        self.avoid = {}          # member index -> until when this client prefers others
        self.n = 0
        self.error = None

    def request(self, node, path, body):
        """('resp', status, body) | ('notsent', None, why) | ('lost', None, why).

        After an error the client prefers the other members for a moment, as
        a real client fails over (it still comes back to probe)."""
        out = self._request(node, path, body)
        if out[0] != "resp" or out[1] != 200:
            self.avoid[node.i] = time.monotonic() + self.rnd.uniform(0.5, 3.0)
        return out

    def _request(self, node, path, body):
        conn = self.conns.get(node.i)
        if conn is None:
            conn = http.client.HTTPConnection(node.ip, CLIENT_PORT, timeout=OP_TIMEOUT)
            try:
                conn.connect()
            except OSError as e:
                conn.close()
                return "notsent", None, repr(e)
            self.conns[node.i] = conn
        try:
            conn.request("POST", path, body=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            return "resp", r.status, ct.parse_body(data)
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.conns.pop(node.i, None)
            return "lost", None, repr(e)

    def run(self):
        try:
            enter_netns(self.hub)
            period = CLIENTS / RATE
            nxt = time.monotonic()
            while not self.stop.is_set():
                nxt += period * self.rnd.uniform(0.5, 1.5)
                self.one()
                d = nxt - time.monotonic()
                if d > 0:
                    time.sleep(d)
                else:
                    nxt = time.monotonic()
        except BaseException as e:  # noqa: reported by the test
            self.error = repr(e)
        finally:
            for c in self.conns.values():
                c.close()

    def one(self):
        rnd = self.rnd
        key = "%sk%02d" % (PREFIX, rnd.randrange(KEYS))
        now = time.monotonic()
        good = [n for n in self.nodes if self.avoid.get(n.i, 0) < now]
        node = rnd.choice(good or self.nodes)
        x = rnd.random()
        self.n += 1
        if x < 0.4:
            op = self.h.invoke(self.idx, wgl.READ, key)
            kind, st, body = self.request(node, "/v3/kv/range", {"key": b64(key)})
            if kind == "resp" and st == 200:
                kvs = body.get("kvs") or []
                v = unb64(kvs[0]["value"]) if kvs else None
                self.h.ok(op, v, revision=int(body["header"]["revision"]))
                self.known[key] = v
            else:
                self.h.fail(op, note=str(body))      # an unanswered read has no effect
            return
        value = "c%d-%d" % (self.idx, self.n)
        if x < 0.7:
            op = self.h.invoke(self.idx, wgl.WRITE, key, value)
            kind, st, body = self.request(node, "/v3/kv/put", {"key": b64(key), "value": b64(value)})
            if kind == "resp" and st == 200:
                self.h.ok(op, None, revision=int(body["header"]["revision"]))
                self.known[key] = value
            else:
                self.settle_error(op, kind, st, body)
            return
        exp = self.known.get(key)
        if exp is None:
            cmp = {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        else:
            cmp = {"key": b64(key), "target": "VALUE", "result": "EQUAL", "value": b64(exp)}
        op = self.h.invoke(self.idx, wgl.CAS, key, (exp, value))
        kind, st, body = self.request(node, "/v3/kv/txn", {
            "compare": [cmp], "success": [{"request_put": {"key": b64(key), "value": b64(value)}}]})
        if kind == "resp" and st == 200:
            ok = bool(body.get("succeeded"))
            self.h.ok(op, ok, revision=int(body["header"]["revision"]))
            if ok:
                self.known[key] = value
            else:
                self.known.pop(key, None)
        else:
            self.settle_error(op, kind, st, body)

    def settle_error(self, op, kind, st, body):
        if kind == "notsent":
            self.h.fail(op, note="not sent: %s" % body)      # the connection was refused
        elif kind == "resp" and st == 400:
            self.h.fail(op, note="rejected: %s" % body)      # invalid request: never proposed
        else:
            # Timed out, reset, or an error after the request may have been
            # proposed: it may still take effect.
            self.h.unknown(op, note="%s %s %s" % (kind, st, body))
        self.known.pop(op.key, None)


# ---------------------------------------------------------------- watchers

class Watcher(threading.Thread):
    """Follows every key from start_rev on one member; resumes after drops."""

    def __init__(self, node, hub, start_rev, stop, seed):
        super().__init__(daemon=True)
        self.node, self.hub, self.start_rev, self.stop = node, hub, start_rev, stop
        self.rnd = random.Random(seed)
        self.events = {}         # revision -> list of (key, value, type), as one frame carried them
        self.last = start_rev - 1
        self.problems = []
        self.resumes = 0
        self.dropped = 0
        self.frames = 0

    def run(self):
        try:
            enter_netns(self.hub)
        except OSError as e:
            self.problems.append(repr(e))
            return
        end = PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1)
        while not self.stop.is_set():
            w = None
            try:
                w = gateway.WatchStream(self.node.ip, CLIENT_PORT, {"create_request": {
                    "key": b64(PREFIX), "range_end": b64(end), "start_revision": str(self.last + 1)}})
                first = True
                idle_since = time.monotonic()
                drop_at = time.monotonic() + self.rnd.uniform(5, 20)
                while not self.stop.is_set():
                    f = w.next(timeout=0.5)
                    now = time.monotonic()
                    if f is None:
                        if now - idle_since > 8:
                            break             # a stalled stream: resume elsewhere in time
                        continue
                    idle_since = now
                    if "error" in f:
                        break
                    res = f.get("result") or {}
                    evs = res.get("events") or []
                    if evs:
                        self.frame(evs, first)
                        first = False
                    if now > drop_at:
                        self.dropped += 1
                        break                 # drop on purpose, to exercise resuming
            except (OSError, EOFError, ValueError):
                pass
            finally:
                if w is not None:
                    w.close()
            self.resumes += 1
            time.sleep(0.2)

    def frame(self, evs, first_after_resume):
        self.frames += 1
        revs = []
        for e in evs:
            kv = e["kv"]
            r = int(kv["mod_revision"])
            if revs and r < revs[-1]:
                self.problems.append("events out of order within a frame: %d after %d" % (r, revs[-1]))
            revs.append(r)
        by = {}
        for e, r in zip(evs, revs):
            kv = e["kv"]
            by.setdefault(r, []).append((unb64(kv["key"]), unb64(kv.get("value", "")), e.get("type", "PUT")))
        for r in sorted(by):
            if r in self.events:
                self.problems.append("revision %d delivered twice (or split over frames)" % r)
                continue
            if r != self.last + 1:
                what = "after resuming at %d" % (self.last + 1) if first_after_resume else "after %d" % self.last
                self.problems.append("gap or reordering: revision %d %s" % (r, what))
            self.events[r] = by[r]
            self.last = max(self.last, r)


# ---------------------------------------------------------------- faults

class Faults(threading.Thread):
    KINDS = ("kill", "kill-leader", "pause", "pause-leader", "isolate", "isolate-leader", "bridge")

    def __init__(self, net, nodes, stop, seed):
        super().__init__(daemon=True)
        self.net, self.nodes, self.stop = net, nodes, stop
        self.rnd = random.Random(seed)
        self.log = []
        self.counts = {}
        self.error = None

    def run(self):
        try:
            enter_netns(self.net.hub)
            t0 = time.monotonic()
            while not self.stop.wait(self.rnd.uniform(1.0, 3.0)):
                kind = self.rnd.choice(self.KINDS)
                hold = self.rnd.uniform(2.0, 5.0)
                desc, undo = self.inject(kind)
                if undo is None:
                    continue
                self.counts[kind] = self.counts.get(kind, 0) + 1
                self.log.append("%6.1fs %s for %.1fs" % (time.monotonic() - t0, desc, hold))
                self.stop.wait(hold)
                undo()
        except BaseException as e:  # noqa: reported by the test
            self.error = repr(e)

    def target(self, kind):
        if kind.endswith("leader"):
            leader, _ = leader_of(self.nodes)
            return leader
        return self.rnd.choice(self.nodes)

    def inject(self, kind):
        n = self.target(kind)
        if n is None:
            return "no leader to hit", None
        others = [m.i for m in self.nodes if m is not n]
        if kind.startswith("kill"):
            n.kill9()

            def undo():
                n.start()
            return "kill -9 %s%s" % (n.name, " (leader)" if "leader" in kind else ""), undo
        if kind.startswith("pause"):
            n.pause()
            return "SIGSTOP %s%s" % (n.name, " (leader)" if "leader" in kind else ""), n.resume
        if kind.startswith("isolate"):
            self.net.cut(n.i, others)
            return "isolate %s%s from its peers" % (n.name, " (leader)" if "leader" in kind else ""), self.heal
        # bridge: cut one link; n stays connected to both, the other two cannot talk
        a, b = others
        self.net.cut(a, [b])
        self.net.cut(b, [a])
        return "cut %s<->%s (%s bridges)" % (self.nodes[a].name, self.nodes[b].name, n.name), self.heal

    def heal(self):
        self.net.heal()


# ---------------------------------------------------------------- the test

def lost_writes(ops, final, applied_at):
    """Acknowledged writes missing from the watch history or from the final read."""
    lost = []
    for op in ops:
        if op.status != wgl.OK or op.kind == wgl.READ or (op.kind == wgl.CAS and not op.output):
            continue
        value = op.input if op.kind == wgl.WRITE else op.input[1]
        rev = applied_at.get((op.key, value))
        fv, fmod = final.get(op.key, (None, 0))
        if rev is None:
            lost.append("%s=%r acknowledged at revision %s, never in the watch history" % (op.key, value, op.revision))
        elif rev != op.revision:
            lost.append("%s=%r acknowledged at revision %s but applied at %d" % (op.key, value, op.revision, rev))
        elif fmod < rev or (fmod == rev and fv != value):
            lost.append("%s=%r acknowledged at revision %d; final read has %r at %d" % (op.key, value, rev, fv, fmod))
    return lost


def test_linearizable_under_faults():
    """Reads, writes and cas under kill/pause/partition faults stay linearizable; no acknowledged write lost; watches complete."""
    print("# seed %d (CAPSTAN_FAULT_SEED), %.0fs of faults (CAPSTAN_FAULT_SECONDS), target %s"
          % (SEED, DURATION, ct.TARGET))
    sys.stdout.flush()
    net = Net(3)
    with ct._lock:
        ct._live.append(net)
    try:
        net.up()
        spec = ",".join("n%d=http://%s:%d" % (i + 1, ip, PEER_PORT) for i, ip in enumerate(net.ips))
        nodes = [Node(net, i, spec) for i in range(3)]
        for n in nodes:
            n.start()
        run_test(net, nodes)
    finally:
        net._hard_stop()


def wait_cluster(nodes, timeout=60):
    def ready():
        leader, votes = leader_of(nodes)
        return leader if votes == len(nodes) else None
    return ct.wait_until(lambda: in_netns(nodes[0].net.hub, ready), timeout=timeout, interval=0.2,
                         what="all members up and agreeing on a leader")


def run_test(net, nodes):
    try:
        wait_cluster(nodes)
    except AssertionError:
        raise AssertionError("cluster did not form:\n" + "\n".join(n.log_tail(15) for n in nodes))
    def setup_put():
        try:
            st, b = post(nodes[0].ip, "/v3/kv/put", {"key": b64("setup"), "value": b64("x")})
        except (OSError, http.client.HTTPException) as e:
            return None, repr(e)
        return (b, None) if st == 200 else (None, (st, b))
    deadline = time.monotonic() + 30
    while True:
        b, why = in_netns(net.hub, setup_put)
        if b is not None:
            break
        assert time.monotonic() < deadline, "the new cluster does not accept a write: %s" % (why,)
        time.sleep(0.2)
    start_rev = int(b["header"]["revision"]) + 1
    rnd = random.Random(SEED)
    history = wgl.History()
    stop_clients, stop_watch, stop_faults = threading.Event(), threading.Event(), threading.Event()
    watchers = [Watcher(n, net.hub, start_rev, stop_watch, rnd.randrange(1 << 30)) for n in nodes]
    for w in watchers:
        w.start()
    clients = [Client(i, nodes, net.hub, history, stop_clients, rnd.randrange(1 << 30)) for i in range(CLIENTS)]
    faults = Faults(net, nodes, stop_faults, rnd.randrange(1 << 30))
    t_start = time.monotonic()
    for c in clients:
        c.start()
    faults.start()
    try:
        last = 0
        while time.monotonic() - t_start < DURATION:
            time.sleep(1.0)
            if time.monotonic() - last > 15:
                last = time.monotonic()
                ops = history.snapshot()
                print("# %5.0fs: %d ops (%d ok), %d faults" % (
                    time.monotonic() - t_start, len(ops), sum(1 for o in ops if o.status == wgl.OK),
                    sum(faults.counts.values())))
                sys.stdout.flush()
    finally:
        stop_faults.set()
        faults.join(30)
        # Heal everything: rules gone, paused members resumed, dead ones restarted.
        net.heal()
        for n in nodes:
            if n.paused:
                n.resume()
            if not n.alive():
                n.start()
    assert faults.error is None, "fault injector failed: %s" % faults.error
    t_load = time.monotonic() - t_start
    # Keep the load on for a few seconds of a healthy cluster, then stop it.
    time.sleep(3)
    stop_clients.set()
    for c in clients:
        c.join(OP_TIMEOUT + 10)
    errors = [c.error for c in clients if c.error]
    assert not errors, "client threads failed: %s" % errors
    leader = wait_cluster(nodes)

    # Quiesce: the revision stops moving (no proposal left in flight).
    def revision():
        st, b = post(leader.ip, "/v3/kv/range", {"key": b64("setup")}, timeout=5)
        assert st == 200, (st, b)
        return int(b["header"]["revision"])
    prev = in_netns(net.hub, revision)
    for _ in range(15):
        time.sleep(2)
        cur = in_netns(net.hub, revision)
        if cur == prev:
            break
        prev = cur
    else:
        raise AssertionError("the revision keeps moving with no client running (%d)" % cur)
    final_rev = cur

    # A final linearizable read of every key, part of the history.
    def final_read():
        ops = [history.invoke("final", wgl.READ, "%sk%02d" % (PREFIX, k)) for k in range(KEYS)]
        st, b = post(leader.ip, "/v3/kv/range", {"key": b64(PREFIX), "range_end": b64(PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1))},
                     timeout=10)
        assert st == 200, (st, b)
        got = {unb64(kv["key"]): (unb64(kv["value"]), int(kv["mod_revision"])) for kv in b.get("kvs", [])}
        for op in ops:
            history.ok(op, got.get(op.key, (None, 0))[0], revision=int(b["header"]["revision"]))
        return got, int(b["header"]["revision"])
    final, rev_read = in_netns(net.hub, final_read)
    assert rev_read == final_rev, "revision moved after quiescing: %d -> %d" % (final_rev, rev_read)
    settled = time.monotonic()

    # Watchers catch up to the final revision, then stop.
    try:
        ct.wait_until(lambda: all(w.last >= final_rev for w in watchers), timeout=60, interval=0.2,
                      what="every watcher reaching revision %d" % final_rev)
    finally:
        stop_watch.set()
        for w in watchers:
            w.join(5)
    problems = []
    for w in watchers:
        problems += ["watch on %s: %s" % (w.node.name, p) for p in w.problems[:10]]
        missing = [r for r in range(start_rev, final_rev + 1) if r not in w.events]
        if missing:
            problems.append("watch on %s misses %d revisions, e.g. %s" % (w.node.name, len(missing), missing[:5]))
    ref = watchers[0].events
    for w in watchers[1:]:
        for r in range(start_rev, final_rev + 1):
            if r in ref and r in w.events and ref[r] != w.events[r]:
                problems.append("watchers on %s and %s disagree at revision %d: %r vs %r"
                                % (watchers[0].node.name, w.node.name, r, ref[r], w.events[r]))
                break
    for r in range(start_rev, final_rev + 1):
        evs = ref.get(r, [])
        if len(evs) != 1 or evs[0][2] != "PUT":
            problems.append("revision %d: expected exactly one put, got %r" % (r, evs))
            break
    print("# watches: %s" % ", ".join("%s %d events, %d frames, %d resumes (%d on purpose)" % (
        w.node.name, len(w.events), w.frames, w.resumes, w.dropped) for w in watchers))
    applied_at = {}
    for r, evs in ref.items():
        for key, value, _ in evs:
            applied_at[(key, value)] = r

    ops = history.snapshot()
    counts = {}
    for op in ops:
        counts[op.status] = counts.get(op.status, 0) + 1
    n_unknown = counts.get(wgl.UNKNOWN, 0)
    resolved = wgl.resolve_unknowns(ops, set(applied_at), settled=settled)
    lost = lost_writes(ops, final, applied_at)
    print("# ops: %d in %.0fs (%.0f/s): %d ok, %d failed, %d unknown (%d applied, %d not, by the watch history)"
          % (len(ops), t_load, len(ops) / max(t_load, 1), counts.get(wgl.OK, 0), counts.get(wgl.FAIL, 0),
             n_unknown, resolved[0], resolved[1]))
    print("# faults injected: %d (%s)" % (sum(faults.counts.values()),
                                         ", ".join("%s %d" % kv for kv in sorted(faults.counts.items()))))
    for line in faults.log:
        print("#   " + line)
    print("# acknowledged writes lost: %d" % len(lost))
    for line in lost[:10]:
        print("#   " + line)
    res = wgl.check(ops, time_limit_per_key=CHECK_LIMIT)
    print("# checker: " + res.report())
    caught, tried = self_check(ops)
    print("# checker self-check: %d of %d stale reads planted in this history caught" % (caught, tried))
    sys.stdout.flush()
    assert not lost, "%d acknowledged writes lost" % len(lost)
    assert not problems, "watch guarantees violated:\n  " + "\n  ".join(problems[:20])
    assert sum(faults.counts.values()) >= max(1, int(DURATION / 10)), "too few faults injected: %s" % faults.counts
    assert counts.get(wgl.OK, 0) >= DURATION * 20, "too few operations completed: %s" % counts
    assert res.ok, "history is %s" % res.verdict
    assert tried == 0 or caught == tried, "the checker missed a planted stale read"


def self_check(ops, n=5):
    """Plant stale reads in copies of the history (a read that began after an
    overwrite was acknowledged returns the overwritten value): the checker
    must reject each, which shows the verdict above is not vacuous."""
    rnd = random.Random(SEED)
    per = {}
    for op in ops:
        per.setdefault(op.key, []).append(op)
    caught = tried = 0
    for key in rnd.sample(sorted(per), min(len(per), 3 * n)):
        kops = per[key]
        writes = sorted((o for o in kops if o.status == wgl.OK and o.kind == wgl.WRITE), key=lambda o: o.ret)
        reads = [o for o in kops if o.status == wgl.OK and o.kind == wgl.READ]
        for r in rnd.sample(reads, min(len(reads), 20)):
            done = [w for w in writes if w.ret < r.call]
            if len(done) < 2 or done[-2].ret >= done[-1].call:
                continue
            old = done[-2].input
            copy = [wgl.Op(o.process, o.kind, o.key, o.input, o.output, o.call, o.ret, o.status)
                    for o in kops if o is not r]
            copy.append(wgl.Op(r.process, r.kind, r.key, None, old, r.call, r.ret, r.status))
            tried += 1
            if not wgl.check_key(copy, key, time_limit=CHECK_LIMIT).ok:
                caught += 1
            break
        if tried >= n:
            break
    return caught, tried


if __name__ == "__main__":
    ct.run(globals())
