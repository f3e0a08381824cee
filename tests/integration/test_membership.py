#!/usr/bin/env python3
"""Membership changes, leadership moves and leaderless members of a
three-member cluster, under write load, on loopback.

What an operator relies on: `member add` of a fourth member that then starts
with --initial-cluster-state existing catches up (and, in capstan, is promoted
from standby to voter by itself); `member remove` stops the removed process
while the others keep serving; only one membership change is in flight at a
time; a member whose data directory was lost is replaced by remove, wipe,
add, restart; transfer-leadership and SIGTERM of the leader move leadership
without a long "no leader" window; any member answers any request; a member
without a leader answers 503 "no leader" in bounded time instead of hanging;
a deposed leader never serves a stale linearizable read; `capstan status`
shows the whole cluster.

CAPSTAN_TEST_TARGET=etcd runs the same tests against a real etcd cluster;
capstan-only guarantees (automatic promotion, exact error texts) are checked
for capstan only.
"""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capstan_test as ct  # noqa: E402
import test_cluster as tc  # noqa: E402
from capstan_test import b64, unb64  # noqa: E402

CAPSTAN = ct.TARGET == "capstan"
CLI = os.environ.get("CAPSTAN_CLI") or ct.CLI_BIN
BOUND = 30.0            # seconds; generous bound for anything "quick"


class Member(tc.Member):
    """A cluster member whose --initial-cluster-state can be "existing"."""

    state = "new"

    def argv(self):
        a = super().argv()
        a[a.index("--initial-cluster-state") + 1] = self.state
        return a


class Cluster(tc.Cluster):
    def __init__(self, n=3, snapshot_count=None):
        self.members = [Member(name=tc.NAMES[i], snapshot_count=snapshot_count) for i in range(n)]
        spec = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
        for m in self.members:
            m.initial_cluster = spec

    def start(self):
        super().start()
        # Every member has published its name and client URL (member list
        # says "started"), so forwarding and discovery work from anywhere.
        # Each member answers member list from its own applied state.
        ct.wait_until(lambda: all(x.get("name") and x.get("clientURLs")
                                  for m in self.members for x in member_list(m)),
                      timeout=tc.START_TIMEOUT, interval=0.1, what="every member started")
        return self


def ready_for_changes(cl):
    """etcd refuses membership changes ("unhealthy cluster") until every
    member has been connected for 5 s; capstan accepts them at once."""
    if not CAPSTAN:
        time.sleep(6)


def member_list(m, timeout=10):
    st, body = m.post("/v3/cluster/member/list", {}, timeout=timeout)
    assert st == 200, (m.name, st, body)
    return body.get("members") or []


def member_id(m):
    """This member's ID (decimal string) as its own status reports it."""
    return str(m.must("/v3/maintenance/status", {})["header"]["member_id"])


def status(m, timeout=5):
    try:
        st, body = m.post("/v3/maintenance/status", {}, timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None
    return body if st == 200 else None


def hashes_equal(members):
    """"hash H at revision R" when every member agrees, else None."""
    got = set()
    for m in members:
        try:
            st, body = m.post("/v3/maintenance/hash", {}, timeout=10)
        except (OSError, http.client.HTTPException):
            return None
        if st != 200:
            return None
        got.add((int(body["hash"]), int(body["header"]["revision"])))
    if len(got) == 1:
        return "hash %d at revision %d" % got.pop()
    return None


def try_put(m, key, value, timeout=5):
    try:
        st, body = m.post("/v3/kv/put", {"key": b64(key), "value": b64(value)}, timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None
    return body if st == 200 else None


def cli(*args, endpoints, timeout=30):
    """Run the capstan CLI; returns (exit code, stdout, stderr)."""
    assert os.access(CLI, os.X_OK), "%s is not built" % CLI
    p = subprocess.run([CLI, "--endpoints", endpoints] + list(args), capture_output=True,
                       text=True, timeout=timeout, start_new_session=True)
    return p.returncode, p.stdout, p.stderr


def start_writers(cl, prefix, n=2):
    stop = threading.Event()
    writers = [tc.Writer(cl, i, stop, prefix) for i in range(n)]
    for w in writers:
        w.start()
    return stop, writers


def stop_writers(stop, writers):
    stop.set()
    for w in writers:
        w.join(15)
    acked = {}
    for w in writers:
        acked.update(w.acked)
    return acked


def acked_count(writers):
    return sum(len(w.acked) for w in writers)


def assert_none_lost(members, prefix, acked):
    for m in members:
        have = tc.range_prefix(m, prefix, timeout=30)
        lost = [k for k, (v, r) in acked.items() if have.get(k, (None, 0))[0] != v]
        assert not lost, "%d acknowledged writes missing on %s, e.g. %s" % (len(lost), m.name, lost[:5])


def resume(*members):
    for m in members:
        if m.alive():
            os.killpg(m.proc.pid, signal.SIGCONT)


def pause(m):
    os.killpg(m.proc.pid, signal.SIGSTOP)


# ---------------------------------------------------------------- tests

def test_member_add_under_load_catches_up_and_votes():
    """member add, then start it with --initial-cluster-state existing under load: it catches up, holds every write and votes."""
    cl = Cluster().start()
    new = None
    prefix = "add/"
    try:
        ready_for_changes(cl)
        leader = cl.wait_leader()
        ask = next(m for m in cl.members if m is not leader)   # a follower relays the change
        stop, writers = start_writers(cl, prefix)
        ct.wait_until(lambda: acked_count(writers) > 50, timeout=BOUND, what="writes before the add")
        new = Member(name="d")
        t0 = time.time()
        st, body = ask.post("/v3/cluster/member/add", {"peerURLs": [new.peer_url]}, timeout=BOUND)
        assert st == 200, (st, body)
        nid = str(body["member"]["ID"])
        assert body["member"]["peerURLs"] == [new.peer_url], body
        listed = {str(m["ID"]): m for m in member_list(leader)}
        assert len(listed) == 4 and nid in listed, listed
        print("# member add answered in %.2fs; the new member is %s" % (
            time.time() - t0, "a learner/standby" if listed[nid].get("isLearner") else "a voter"))
        new.initial_cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in cl.members + [new])
        new.state = "existing"
        t_start = time.time()
        new.start(expect_ready=False)
        tc.wait_ready(new)
        cl.members.append(new)
        if CAPSTAN:
            # Added as a standby, promoted once caught up, without anyone asking.
            ct.wait_until(lambda: not {str(m["ID"]): m for m in member_list(leader)}[nid].get("isLearner"),
                          timeout=60, interval=0.2, what="the new member promoted to voter")
            print("# the new member was promoted to voter %.2fs after it started" % (time.time() - t_start))
        n0 = acked_count(writers)
        ct.wait_until(lambda: acked_count(writers) > n0 + 50, timeout=BOUND,
                      what="writes acknowledged after the new member started")
        acked = stop_writers(stop, writers)
        got = ct.wait_until(lambda: hashes_equal(cl.members), timeout=60, interval=0.2,
                            what="equal hashes on all four members")
        print("# %d writes acknowledged during the change; all four agree: %s (%.2fs after start)"
              % (len(acked), got, time.time() - t_start))
        assert_none_lost([new], prefix, acked)
        # It serves linearizable reads and writes, and names the same leader.
        r = new.put(prefix + "via-new", "x")
        assert tc.read(leader, prefix + "via-new")[0] == "x"
        assert int(r["header"]["revision"]) > 0
        assert str(status(new)["leader"]) == str(status(leader)["leader"])
        # As a voter it counts: with one of the original members stopped the
        # remaining three of four still form a majority and accept writes.
        victim = next(m for m in cl.members if m is not leader and m is not new)
        victim.kill9()
        survivors = [m for m in cl.members if m is not victim]
        cl.wait_leader(survivors, timeout=BOUND)
        assert try_put(new, prefix + "three-of-four", "y", timeout=BOUND) is not None
    finally:
        cl.stop()
        if new is not None:
            new.stop()


def test_member_remove_under_load_others_keep_serving():
    """member remove of a follower under load: it leaves the member list and the other two keep serving every write."""
    cl = Cluster().start()
    prefix = "rm/"
    try:
        ready_for_changes(cl)
        leader = cl.wait_leader()
        victim, other = [m for m in cl.members if m is not leader]
        vid = member_id(victim)
        stop, writers = start_writers(cl, prefix)
        ct.wait_until(lambda: acked_count(writers) > 50, timeout=BOUND, what="writes before the remove")
        t0 = time.time()
        st, body = other.post("/v3/cluster/member/remove", {"ID": vid}, timeout=BOUND)
        assert st == 200, (st, body)
        print("# member remove answered in %.2fs" % (time.time() - t0))
        ids = {str(m["ID"]) for m in body.get("members", [])}
        assert vid not in ids and len(ids) == 2, body
        for m in (leader, other):
            assert vid not in {str(x["ID"]) for x in member_list(m)}
        # The writers go through the survivors from now on.
        victim.stop()
        n0 = acked_count(writers)
        ct.wait_until(lambda: acked_count(writers) > n0 + 50, timeout=BOUND,
                      what="writes acknowledged after the remove")
        acked = stop_writers(stop, writers)
        survivors = [leader, other]
        assert cl.leader(survivors) is not None
        got = ct.wait_until(lambda: hashes_equal(survivors), timeout=BOUND, what="equal hashes")
        assert_none_lost(survivors, prefix, acked)
        print("# %d writes acknowledged across the remove, none lost; survivors agree: %s" % (len(acked), got))
        # Two members form the cluster now: a write needs both, and works.
        assert try_put(leader, prefix + "after", "z") is not None
        assert tc.read(other, prefix + "after")[0] == "z"
    finally:
        cl.stop()


def test_one_membership_change_at_a_time():
    """A second member add while the first is not committed is refused; the cluster recovers once healed."""
    cl = Cluster().start()
    followers = []
    try:
        ready_for_changes(cl)
        leader = cl.wait_leader()
        followers = [m for m in cl.members if m is not leader]
        x, y = Member(name="x"), Member(name="y")
        # With both followers paused the leader cannot commit the first add.
        for f in followers:
            pause(f)
        first = {}

        def add_first():
            try:
                first["ans"] = leader.post("/v3/cluster/member/add", {"peerURLs": [x.peer_url]},
                                           timeout=BOUND)
            except (OSError, http.client.HTTPException) as e:
                first["ans"] = (None, repr(e))

        t = threading.Thread(target=add_first, daemon=True)
        t.start()
        time.sleep(0.2)
        t0 = time.time()
        try:
            st, body = leader.post("/v3/cluster/member/add", {"peerURLs": [y.peer_url]}, timeout=BOUND)
        except (OSError, http.client.HTTPException) as e:
            st, body = None, repr(e)
        took = time.time() - t0
        print("# second add answered %s %s after %.2fs" % (st, body, took))
        assert st != 200, "a second membership change was accepted while the first was pending: %s" % body
        if CAPSTAN:
            assert st == 503 and isinstance(body, dict), (st, body)
        resume(*followers)
        t.join(BOUND + 5)
        print("# first add answered %s" % (first.get("ans"),))
        cl.wait_leader(timeout=BOUND)
        # Whatever became of the first add, the cluster serves and agrees on
        # one membership.
        ct.wait_until(lambda: try_put(cl.members[0], "one-at-a-time", "ok") is not None,
                      timeout=BOUND, what="a write after healing")
        lists = [sorted(str(m["ID"]) for m in member_list(m)) for m in cl.members]
        ct.wait_until(lambda: len({tuple(sorted(str(x["ID"]) for x in member_list(m)))
                                   for m in cl.members}) == 1,
                      timeout=BOUND, what="one membership on every member")
        urls = {u for m in member_list(cl.members[0]) for u in m.get("peerURLs", [])}
        assert y.peer_url not in urls, "the refused add took effect: %s" % lists
    finally:
        resume(*followers)
        cl.stop()


def test_replace_member_with_wiped_data_dir():
    """A member that lost its data dir is removed, wiped, re-added and restarted with existing: it rejoins with equal hashes."""
    cl = Cluster().start()
    try:
        ready_for_changes(cl)
        leader = cl.wait_leader()
        victim = next(m for m in cl.members if m is not leader)
        for i in range(200):
            leader.put("rep/%04d" % i, "v%d" % i)
        vid = int(member_id(victim))
        # Its disk is gone: the process dies, the operator removes it.
        victim.kill9()
        shutil.rmtree(victim.data_dir)
        rc, out, err = cli("member", "remove", "%x" % vid, endpoints=leader.url)
        assert rc == 0, (rc, out, err)
        assert re.match(r"^Member +%x removed from cluster +[0-9a-f]+$" % vid, out.strip()), out
        for i in range(200, 300):
            leader.put("rep/%04d" % i, "v%d" % i)
        rc, out, err = cli("member", "add", victim.name, "--peer-urls", victim.peer_url, endpoints=leader.url)
        assert rc == 0, (rc, out, err)
        assert re.match(r"^Member +[0-9a-f]+ added to cluster +[0-9a-f]+$", out.splitlines()[0]), out
        # The CLI prints the flags to start the new member with.
        flags = dict(re.findall(r"--([a-z-]+)=(\S+)", out))
        assert flags.get("initial-cluster-state") == "existing", out
        assert flags.get("name") == victim.name, out
        spec = dict(p.split("=", 1) for p in flags["initial-cluster"].split(","))
        assert spec == {m.name: m.peer_url for m in cl.members}, (spec, out)
        victim.initial_cluster = flags["initial-cluster"]
        victim.state = "existing"
        t0 = time.time()
        victim.start(expect_ready=False)
        tc.wait_ready(victim)
        for i in range(300, 350):
            leader.put("rep/%04d" % i, "v%d" % i)
        got = ct.wait_until(lambda: hashes_equal(cl.members), timeout=60, interval=0.2,
                            what="equal hashes after the replacement")
        print("# the replaced member caught up in %.2fs: %s" % (time.time() - t0, got))
        have = tc.range_prefix(victim, "rep/")
        assert len(have) == 350 and have["rep/0123"][0] == "v123", len(have)
        assert cl.leader() is not None
    finally:
        cl.stop()


def test_member_update_moves_a_member_to_a_new_peer_url():
    """member update of a follower's peer URL, then a restart on the new URL: the same member ID rejoins and the data agree."""
    cl = Cluster().start()
    try:
        ready_for_changes(cl)
        leader = cl.wait_leader()
        mover = next(m for m in cl.members if m is not leader)
        mid = member_id(mover)
        for i in range(100):
            leader.put("upd/%03d" % i, "v%d" % i)
        new_url = "http://127.0.0.1:%d" % ct.free_port()
        st, body = leader.post("/v3/cluster/member/update", {"ID": mid, "peerURLs": [new_url]})
        assert st == 200, (st, body)
        listed = {x["ID"]: x for x in body["members"]}
        assert listed[mid]["peerURLs"] == [new_url], body
        # The operator restarts the member on its new peer URL.
        mover.terminate()
        mover.peer_url = new_url
        mover.start(expect_ready=False)
        tc.wait_ready(mover)
        for i in range(100, 150):
            leader.put("upd/%03d" % i, "v%d" % i)
        ct.wait_until(lambda: hashes_equal(cl.members), timeout=60, interval=0.2,
                      what="equal hashes after the move")
        assert member_id(mover) == mid
        assert len(tc.range_prefix(mover, "upd/")) == 150
        members = {x["ID"]: x for x in member_list(leader)}
        assert members[mid]["peerURLs"] == [new_url], members
    finally:
        cl.stop()


def test_transfer_leadership():
    """transfer-leadership on the leader moves leadership to the target; status on every member shows it."""
    cl = Cluster().start()
    try:
        leader = cl.wait_leader()
        target = next(m for m in cl.members if m is not leader)
        tid = member_id(target)
        t0 = time.time()
        st, body = leader.post("/v3/maintenance/transfer-leadership", {"targetID": tid}, timeout=BOUND)
        assert st == 200, (st, body)
        new = cl.wait_leader(timeout=BOUND)
        print("# leadership moved in %.2fs" % (time.time() - t0))
        assert new is target, "leader is %s, want %s" % (new.name, target.name)
        assert str(status(leader)["leader"]) == tid
        assert try_put(leader, "moved", "1") is not None
        # A follower cannot hand over what it does not hold.
        st, body = leader.post("/v3/maintenance/transfer-leadership",
                               {"targetID": member_id(leader)}, timeout=BOUND)
        assert st != 200, (st, body)
    finally:
        cl.stop()


class PinnedWriter(threading.Thread):
    """Puts through one member only, recording when each write was acknowledged."""

    def __init__(self, member, stop, prefix):
        super().__init__(daemon=True)
        self.member, self.stop, self.prefix = member, stop, prefix
        self.acks = []       # times of acknowledgements
        self.errors = []     # (time, status or exception)

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                st, body = self.member.post("/v3/kv/put", {"key": b64("%s%s/%d" % (self.prefix, self.member.name, n)),
                                                           "value": b64("v")}, timeout=10)
                if st == 200:
                    self.acks.append(time.time())
                else:
                    self.errors.append((time.time(), st, body))
            except (OSError, http.client.HTTPException) as e:
                self.errors.append((time.time(), None, repr(e)))
            time.sleep(0.005)


def test_sigterm_leader_hands_over():
    """SIGTERM of the leader hands leadership over first: writes to the other members keep succeeding."""
    cl = Cluster().start()
    try:
        leader = cl.wait_leader()
        others = [m for m in cl.members if m is not leader]
        stop = threading.Event()
        writers = [PinnedWriter(m, stop, "term/") for m in others]
        for w in writers:
            w.start()
        ct.wait_until(lambda: all(len(w.acks) > 20 for w in writers), timeout=BOUND,
                      what="writes through both followers")
        t_term = time.time()
        rc = leader.terminate(timeout=BOUND, check=False)
        t_exit = time.time()
        new = cl.wait_leader(others, timeout=BOUND)
        t_lead = time.time()
        n = sum(len(w.acks) for w in writers)
        ct.wait_until(lambda: sum(len(w.acks) for w in writers) > n + 40, timeout=BOUND,
                      what="writes after the handover")
        time.sleep(1.0)
        stop.set()
        for w in writers:
            w.join(15)
        acks = sorted(t for w in writers for t in w.acks)
        before = [t for t in acks if t < t_term]
        after = [t for t in acks if t >= t_term]
        assert before and after
        gaps = [b - a for a, b in zip([before[-1]] + after, after)]
        window = max(gaps)
        errs = [e for w in writers for e in w.errors if e[0] >= t_term]
        print("# SIGTERM: leader %s exited %s after %.2fs; %s leads after %.2fs; longest stretch without "
              "an acknowledged write %.3fs; %d failed writes" % (
                  leader.name, rc, t_exit - t_term, new.name, t_lead - t_term, window, len(errs)))
        for e in errs[:5]:
            print("#   failed: %s" % (e[1:],))
        assert window < BOUND / 3, "writes stalled for %.1fs across the handover" % window
        if CAPSTAN:
            assert rc == 0, leader.log_tail()
            assert "leadership handed over before shutdown: done" in leader.log_tail(200), leader.log_tail()
        assert new in others
    finally:
        cl.stop()


def test_any_member_serves_any_request():
    """Writes, txns, deletes and leases through followers are answered with the leader's revision and seen everywhere."""
    cl = Cluster().start()
    try:
        leader = cl.wait_leader()
        for f in [m for m in cl.members if m is not leader]:
            r = f.put("any/" + f.name, "from-" + f.name)
            rev = int(r["header"]["revision"])
            kv = leader.get("any/" + f.name)["kvs"][0]
            assert int(kv["mod_revision"]) == rev, "answered revision %d, the leader stored it at %s" % (
                rev, kv["mod_revision"])
            assert int(leader.get("any/" + f.name)["header"]["revision"]) >= rev
            # The answer comes from the member asked.
            assert str(r["header"]["member_id"]) == member_id(f)
            t = f.must("/v3/kv/txn", {
                "compare": [{"key": b64("any/" + f.name), "target": "VALUE", "result": "EQUAL",
                             "value": b64("from-" + f.name)}],
                "success": [{"request_put": {"key": b64("any/txn-" + f.name), "value": b64("t")}}]})
            assert t.get("succeeded") is True, t
            trev = int(t["header"]["revision"])
            assert trev > rev
            assert int(leader.get("any/txn-" + f.name)["kvs"][0]["mod_revision"]) == trev
            g = f.must("/v3/lease/grant", {"TTL": 60})
            lid = g["ID"]
            lp = f.put("any/lease-" + f.name, "l", lease=int(lid))
            ka = f.must("/v3/lease/keepalive", {"ID": lid})
            assert int((ka.get("result") or ka).get("TTL", 0)) > 0, ka
            ttl = f.must("/v3/lease/timetolive", {"ID": lid, "keys": True})
            assert int(ttl["TTL"]) > 0 and ttl.get("keys") == [b64("any/lease-" + f.name)], ttl
            d = f.must("/v3/kv/deleterange", {"key": b64("any/txn-" + f.name)})
            assert int(d["deleted"]) == 1 and int(d["header"]["revision"]) > int(lp["header"]["revision"])
            for m in cl.members:
                got, at = tc.read(m, "any/" + f.name)
                assert got == "from-" + f.name and at >= int(d["header"]["revision"]), (m.name, got, at)
                assert tc.read(m, "any/txn-" + f.name)[0] is None
    finally:
        cl.stop()


def _timed_post(m, path, body, timeout):
    t0 = time.time()
    try:
        st, ans = m.post(path, body, timeout=timeout)
    except (OSError, http.client.HTTPException) as e:
        st, ans = None, repr(e)
    return st, ans, time.time() - t0


def test_no_leader_fails_in_bounded_time():
    """With two of three members paused, the remaining one answers an error (capstan: 503 "no leader") in bounded time, then recovers."""
    cl = Cluster().start()
    paused = []
    try:
        for round_no in (1, 2):
            leader = cl.wait_leader(timeout=BOUND)
            # Round 1 keeps the leader (it loses its majority), round 2 a follower.
            keep = leader if round_no == 1 else next(m for m in cl.members if m is not leader)
            paused = [m for m in cl.members if m is not keep]
            for m in paused:
                pause(m)
            t0 = time.time()
            # etcd omits a zero leader from the answer, as it omits every default.
            ct.wait_until(lambda: str((status(keep) or {"leader": "x"}).get("leader", "0")) == "0",
                          timeout=BOUND,
                          what="%s noticing it has no leader" % keep.name)
            t_noticed = time.time() - t0
            for path, body in (("/v3/kv/put", {"key": b64("nl/k"), "value": b64("v")}),
                               ("/v3/kv/range", {"key": b64("nl/k")}),
                               ("/v3/lease/grant", {"TTL": 30})):
                st, ans, took = _timed_post(keep, path, body, timeout=60)
                print("# round %d (%s kept): leader gone after %.2fs; %s -> %s %s in %.2fs" % (
                    round_no, "leader" if keep is leader else "follower", t_noticed, path, st,
                    ans.get("message") if isinstance(ans, dict) else ans, took))
                # An answer, not a hang (etcd answers 500 or 503 after its
                # 7 s request timeout).
                assert st is not None and st != 200, (path, st, ans)
                assert took < BOUND, "%s took %.1fs without a leader" % (path, took)
                if CAPSTAN:
                    assert st == 503 and ans.get("message") == "etcdserver: no leader", ans
            # A serializable read needs no leader.
            st, ans = keep.post("/v3/kv/range", {"key": b64("cluster-ready"), "serializable": True}, timeout=10)
            assert st == 200 and ans.get("kvs"), (st, ans)
            resume(*paused)
            paused = []
            cl.wait_leader(timeout=BOUND)
            ct.wait_until(lambda: try_put(keep, "nl/after-%d" % round_no, "ok") is not None,
                          timeout=BOUND, what="a write once healed")
    finally:
        resume(*paused)
        cl.stop()


def test_deposed_leader_never_serves_a_stale_read():
    """A paused leader, deposed meanwhile, never answers a linearizable read with the value it held."""
    cl = Cluster().start()
    old = None
    try:
        old = cl.wait_leader()
        others = [m for m in cl.members if m is not old]
        old.put("dep/k", "old")
        for m in cl.members:
            assert tc.read(m, "dep/k", serializable=False)[0] == "old"
        pause(old)
        new = cl.wait_leader(others, timeout=BOUND)
        new.put("dep/k", "new")
        # Requests queued at the paused process are the first it handles
        # when it wakes, before it hears of the new term.
        results = []

        def reader():
            results.append(_timed_post(old, "/v3/kv/range", {"key": b64("dep/k")}, timeout=BOUND))

        threads = [threading.Thread(target=reader, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        resume(old)
        for t in threads:
            t.join(BOUND + 5)
        deadline = time.time() + 3
        while time.time() < deadline:
            results.append(_timed_post(old, "/v3/kv/range", {"key": b64("dep/k")}, timeout=10))
        values = []
        for st, ans, took in results:
            if st == 200:
                kvs = ans.get("kvs") or []
                values.append(unb64(kvs[0]["value"]) if kvs else None)
        print("# %d linearizable reads on the deposed leader: %d answered (%s), %d failed" % (
            len(results), len(values), sorted(set(map(str, values))), len(results) - len(values)))
        assert "old" not in values, "the deposed leader served the stale value"
        assert values and values[-1] == "new", values[-5:]
    finally:
        if old is not None:
            resume(old)
        cl.stop()


def _table_rows(out):
    rows = []
    for line in out.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows[0], rows[1:]


def test_cli_status_shows_the_cluster():
    """capstan status on one endpoint (or --cluster) shows every member; an unreachable member keeps a row with its error."""
    cl = Cluster().start()
    try:
        leader = cl.wait_leader()
        f = next(m for m in cl.members if m is not leader)
        for args, ep in ((["status"], f.url), (["status", "--cluster"], ",".join(m.url for m in cl.members)),
                         (["status", "--cluster"], f.url)):
            rc, out, err = cli(*args, endpoints=ep)
            assert rc == 0, (args, rc, out, err)
            head, rows = _table_rows(out)
            assert head[:10] == ["ENDPOINT", "ID", "NAME", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER",
                                 "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX"], head
            col = {h: i for i, h in enumerate(head)}
            assert sorted(r[col["ENDPOINT"]] for r in rows) == sorted(m.url for m in cl.members), out
            assert sorted(r[col["NAME"]] for r in rows) == ["a", "b", "c"], out
            leaders = [r for r in rows if r[col["IS LEADER"]] == "true"]
            assert len(leaders) == 1 and leaders[0][col["ENDPOINT"]] == leader.url, out
            assert leaders[0][col["ID"]] == "%x" % int(member_id(leader)), out
            assert all(r[col["IS LEARNER"]] == "false" for r in rows), out
        # Only the endpoints given, when several are given without --cluster.
        rc, out, err = cli("status", endpoints="%s,%s" % (cl.members[0].url, cl.members[1].url))
        assert rc == 0, (rc, out, err)
        assert len(_table_rows(out)[1]) == 2, out
        # -w json: one status answer per line, one per member.
        rc, out, err = cli("status", "-w", "json", endpoints=f.url)
        assert rc == 0, (rc, out, err)
        docs = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert len(docs) == 3 and all("raftIndex" in d for d in docs), out
        assert {str(d["header"]["member_id"]) for d in docs} == {member_id(m) for m in cl.members}
        # A dead member keeps its row, with the error; the exit code says something failed.
        dead = next(m for m in cl.members if m is not leader and m is not f)
        dead.kill9()
        cl.wait_leader([leader, f], timeout=BOUND)
        rc, out, err = cli("status", endpoints=f.url)
        head, rows = _table_rows(out)
        col = {h: i for i, h in enumerate(head)}
        assert rc != 0 and len(rows) == 3, (rc, out, err)
        drow = next(r for r in rows if r[col["ENDPOINT"]] == dead.url)
        assert drow[col["NAME"]] == dead.name and drow[-1], drow
        assert dead.url in err, err
    finally:
        cl.stop()


if __name__ == "__main__":
    ct.run(globals())
