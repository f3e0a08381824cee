#!/usr/bin/env python3
"""`capstan bench` runs briefly against a real store and reports sane results.

Each workload runs for a fraction of a second (about 10 s for the whole file)
with -w json; the output must parse, count some operations, report no
errors, and give ordered percentiles. No timing thresholds: speed is the
benchmark's business (bench/vs-etcd), not a test's. The orchestrator's
benchmark scripts (bench/sched-bench, bench/deploy-bench) run once each at a
tiny size: they must finish and print their report.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capstan_test as ct  # noqa: E402

_srv = {}


def shared():
    s = _srv.get("s")
    if s is None or not s.alive():
        s = ct.Server().start()
        s.keep = True
        _srv["s"] = s
    return s


def bench(*args, timeout=30):
    """Run `capstan bench ARGS -w json`; returns (exit code, parsed stdout, stderr)."""
    srv = shared()
    argv = [ct.CLI_BIN, "--endpoints", srv.url, "-w", "json", "bench"] + list(args)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    out = None
    if p.returncode == 0:
        lines = p.stdout.strip().splitlines()
        assert len(lines) == 1, "expected one JSON line, got %r" % p.stdout
        out = json.loads(lines[0])
    return p.returncode, out, p.stderr


def check(res, workload):
    assert res["workload"] == workload, res
    assert res["ops"] > 0, "no operations completed: %r" % res
    assert res["errors"] == 0, "errors: %r" % res
    assert res["ops_per_s"] > 0, res
    lat = res["latency_ms"]
    for k in ("p50", "p90", "p99", "p99.9", "max", "mean"):
        assert isinstance(lat[k], (int, float)) and lat[k] >= 0, (k, lat)
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"], lat


def test_put():
    """Sequential-key puts complete and report ordered percentiles."""
    rc, res, err = bench("put", "--conns", "4", "--duration", "800ms", "--value-size", "64")
    assert rc == 0, err
    check(res, "put")
    assert res["conns"] == 4 and res["value_size"] == 64, res


def test_put_total():
    """--total stops after exactly that many operations."""
    rc, res, err = bench("put", "--conns", "8", "--total", "200")
    assert rc == 0, err
    check(res, "put")
    assert res["ops"] == 200, res


def test_reads():
    """Single-key and range reads, linearizable and serializable, after a preload."""
    for wl, cons in (("get", "l"), ("get", "s"), ("range", "l"), ("range", "s")):
        rc, res, err = bench(wl, "--conns", "8", "--duration", "500ms", "--key-space", "200",
                             "--consistency", cons)
        assert rc == 0, err
        check(res, wl)
        assert res["consistency"] == cons, res


def test_txn():
    """Compare-and-swap transactions all succeed on their own keys."""
    rc, res, err = bench("txn", "--conns", "4", "--duration", "500ms")
    assert rc == 0, err
    check(res, "txn")
    assert res["cas_failures"] == 0, res


def test_lease():
    """Lease churn: grant, put with the lease, revoke."""
    rc, res, err = bench("lease", "--conns", "4", "--duration", "500ms")
    assert rc == 0, err
    check(res, "lease")


def test_watch():
    """Watch latency with several watchers: every watcher sees every put."""
    rc, res, err = bench("watch", "--watchers", "20", "--duration", "800ms")
    assert rc == 0, err
    check(res, "watch")
    assert res["watchers"] == 20 and res["rounds"] > 0, res
    assert res["ops"] == 20 * res["rounds"], "a watcher missed an event: %r" % res
    a = res["after_ack_ms"]
    assert 0 <= a["p50"] <= a["p99"] <= a["max"], a


def test_watch_per_stream():
    """Watchers sharing streams (the last one part full): every watcher sees every put."""
    rc, res, err = bench("watch", "--watchers", "30", "--watch-per-stream", "8",
                         "--duration", "800ms")
    assert rc == 0, err
    check(res, "watch")
    assert res["watchers"] == 30 and res["streams"] == 4 and res["rounds"] > 0, res
    assert res["ops"] == 30 * res["rounds"], "a watcher missed an event: %r" % res


class DroppingWatchServer:
    """A stand-in for etcd's gateway under load: the first /v3/watch stream
    answers only its first create (the rest of its body is dropped, as Go's
    HTTP/1.1 server does once the gateway starts answering); later streams
    answer every create. Puts bump the revision and notify every watcher."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", ct.free_port()))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.streams = []          # (socket, watch ids)
        self.watch_bodies = 0
        self.rev = 1
        self.done = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.done:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    @staticmethod
    def chunk(c, obj):
        # Compact, as etcd's gateway writes it.
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        c.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def serve(self, c):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                n = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        n = int(v)
                while len(buf) < n:
                    buf += c.recv(65536)
                body, buf = buf[:n], buf[n:]
                if head.startswith(b"POST /v3/watch "):
                    creates = body.count(b"create_request")
                    with self.lock:
                        self.watch_bodies += 1
                        first = self.watch_bodies == 1
                        ids = list(range(1 if first else creates))
                        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n")
                        for i in ids:
                            self.chunk(c, {"result": {"header": {"revision": str(self.rev)},
                                                      "watch_id": str(i), "created": True}})
                        self.streams.append((c, ids))
                    return       # the stream stays open; its socket is in self.streams
                with self.lock:
                    self.rev += 1
                    rev = self.rev
                    key = json.loads(body)["key"]
                    for s, ids in self.streams:
                        for i in ids:
                            try:
                                self.chunk(s, {"result": {
                                    "header": {"revision": str(rev)}, "watch_id": str(i),
                                    "events": [{"kv": {"key": key, "mod_revision": str(rev)}}]}})
                            except OSError:
                                pass
                answer = json.dumps({"header": {"revision": str(rev)}},
                                    separators=(",", ":")).encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))
        except OSError:
            return

    def close(self):
        self.done = True
        self.lsock.close()
        with self.lock:
            for s, _ in self.streams:
                s.close()


def test_watch_stream_reopened_when_creates_dropped():
    """A stream whose server dropped some of its creates is opened again, and then every watcher sees every put."""
    srv = DroppingWatchServer()
    try:
        p = subprocess.run([ct.CLI_BIN, "--endpoints", "http://127.0.0.1:%d" % srv.port, "-w",
                            "json", "bench", "watch", "--watchers", "6", "--watch-per-stream",
                            "3", "--duration", "300ms"], capture_output=True, text=True,
                           timeout=60)
    finally:
        srv.close()
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["streams"] == 2 and res["streams_reopened"] == 1, res
    assert res["errors"] == 0 and res["rounds"] > 0, res
    assert res["ops"] == 6 * res["rounds"], "a watcher missed an event: %r" % res


def test_cpu_per_op():
    """--server-pid: the store's CPU per put is reported beside the generator's own."""
    srv = shared()
    rc, res, err = bench("put", "--conns", "4", "--duration", "800ms",
                         "--server-pid", str(srv.proc.pid))
    assert rc == 0, err
    check(res, "put")
    cpu = res["cpu"]
    assert cpu["server_us_per_op"] > 0 and cpu["client_us_per_op"] > 0, cpu
    # A process that is gone gives no figure rather than a wrong one.
    gone = subprocess.Popen(["true"])
    gone.wait()
    rc, res, err = bench("put", "--conns", "2", "--total", "50", "--server-pid", str(gone.pid))
    assert rc == 0, err
    assert res["cpu"]["server_us_per_op"] is None, res


def test_text_output_and_progress():
    """Without -w json the report is text, and progress goes to stderr."""
    srv = shared()
    p = subprocess.run([ct.CLI_BIN, "--endpoints", srv.url, "bench", "put", "--duration",
                        "1.2s", "--conns", "2"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "latency ms: p50" in p.stdout, p.stdout
    assert "ops" in p.stderr and "/s" in p.stderr, p.stderr


def test_usage_errors():
    """Unknown workloads and bad flags are usage errors (exit 2)."""
    for args in (["nosuch"], ["put", "--conns", "0"], ["put", "--bogus", "1"], [],
                 ["put", "--server-pid", "x"], ["put", "--server-pid", "0"],
                 ["watch", "--watch-per-stream", "0"]):
        rc, _, err = bench(*args)
        assert rc == 2, (args, rc, err)


def test_unreachable():
    """No server: exit 1 with a message, not a hang."""
    port = ct.free_port()
    p = subprocess.run([ct.CLI_BIN, "--endpoints", "http://127.0.0.1:%d" % port, "bench",
                        "put", "--duration", "1s"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "Error" in p.stderr, p.stderr


def run_bench_script(name, *args, timeout=120):
    """Runs bench/NAME ARGS --builddir BUILDDIR; returns its one JSON line."""
    argv = [sys.executable, os.path.join(ct.SRCDIR, "bench", name),
            "--builddir", ct.BUILDDIR] + list(args)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, "expected one JSON line, got %r" % p.stdout
    return json.loads(lines[0])


def test_vs_etcd_smoke():
    """bench/vs-etcd on a put and a shared-stream watch workload: both servers' rows, CPU per op, both raft floors, the network floors of puts and of the fan-out, the ceiling, and the budget table."""
    path = os.path.join(ct.mktemp(), "vs.json")
    argv = [sys.executable, os.path.join(ct.SRCDIR, "bench", "vs-etcd"), "--builddir", ct.BUILDDIR,
            "--duration", "0.5", "--reps", "1", "--only", "put c=64,100 per stream", "--json", path]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "| put c=64 |" in p.stdout and "| put c=64, 3 replicas |" in p.stdout, p.stdout
    with open(path) as f:
        res = json.load(f)
    rows = {r["workload"]: r for r in res["rows"]}
    assert set(rows) == {"put c=64", "put c=64, 3 replicas",
                         "watch 10000 watchers, 100 per stream"}, rows.keys()
    for name, row in rows.items():
        for kind in ("capstan", "etcd"):
            r = row[kind]
            assert r is not None and r["ops_per_s"] > 0 and r["errors"] == 0, (name, kind, row)
            assert r["server_cpu_us"] > 0 and r["client_cpu_us"] > 0, (name, kind, r)
    for n in ("1", "16", "64"):
        floor = res["floor"][n]
        assert floor["entries_per_s"] > 0 and floor["zero_fill"] is False, floor
        ahead = floor["written_ahead"]
        assert ahead["entries_per_s"] > 0 and ahead["zero_fill"] is True, ahead
        net = floor["network"]
        assert net is not None and net["conns"] == int(n) and net["errors"] == 0, net
        assert net["ops_per_s"] > 0 and net["cpu"]["server_us_per_op"] > 0, net
        assert 0 < floor["ceiling"] <= 1, floor
        if n != "1":
            budget = floor["budget"]
            assert set(budget) == {"3 us, one thread", "3 us, handed off",
                                   "6 us, one thread", "6 us, handed off"}, budget
            for key, r in budget.items():
                assert r is not None and r["errors"] == 0 and r["ops_per_s"] > 0, (n, key, r)
    assert "| 6 µs, handed off | " in p.stdout, p.stdout
    fan = res["fanout_floor"]["watch 10000 watchers, 100 per stream"]
    assert fan is not None and fan["errors"] == 0 and fan["ops"] % 10000 == 0, fan
    assert "| watch 10000 watchers, 100 per stream | " in p.stdout.split("network floor events/s")[1]


def test_null_gateway_answers_puts_and_stops():
    """bench/null-gateway answers puts as etcd would, streams each to every watcher, refuses a bad put, exits 0 on SIGTERM."""
    gw = subprocess.Popen([os.path.join(ct.BUILDDIR, "bench", "null-gateway")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(gw.stdout.readline())
        url = "http://127.0.0.1:%d" % port

        def run(*args):
            argv = [ct.CLI_BIN, "--endpoints", url, "-w", "json", "bench"] + list(args)
            p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            assert p.returncode == 0, (p.stdout, p.stderr)
            return json.loads(p.stdout.strip().splitlines()[-1])

        res = run("put", "--conns", "4", "--total", "200")
        check(res, "put")
        assert res["ops"] == 200, res
        res = run("watch", "--watchers", "10", "--watch-per-stream", "3", "--total", "20")
        check(res, "watch")
        assert res["ops"] == 200 and res["streams"] == 4, res
        # With a watcher open a put's body is read, and a bad one refused.
        watch = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            watch.request("POST", "/v3/watch", body=b'{"create_request":{"key":"YQ=="}}')
            r = watch.getresponse()
            assert r.status == 200 and b'"created":true' in r.readline(), r.status
            st, body = ct.post_to(port, "/v3/kv/put", {"key": 1})
            assert st == 400 and "must be strings" in body["error"], (st, body)
        finally:
            watch.close()
    finally:
        gw.terminate()
        rc = gw.wait(10)
    assert rc == 0, (rc, gw.stderr.read())


def test_null_gateway_hands_puts_off_in_order():
    """bench/null-gateway --work-us --handoff answers every put from its second thread with the next revision, and exits 0 on SIGTERM."""
    gw = subprocess.Popen([os.path.join(ct.BUILDDIR, "bench", "null-gateway"),
                           "--work-us", "2", "--handoff"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(gw.stdout.readline())
        argv = [ct.CLI_BIN, "--endpoints", "http://127.0.0.1:%d" % port, "-w", "json",
                "bench", "put", "--conns", "8", "--total", "300"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, (p.stdout, p.stderr)
        res = json.loads(p.stdout.strip().splitlines()[-1])
        check(res, "put")
        assert res["ops"] == 300, res
        # Revisions start at 1 and each of the 300 puts took the next one.
        for want in (302, 303):
            st, body = ct.post_to(port, "/v3/kv/put", {"key": "YQ==", "value": "Yg=="})
            assert st == 200 and body["header"]["revision"] == str(want), (st, body)
    finally:
        gw.terminate()
        rc = gw.wait(10)
    assert rc == 0, (rc, gw.stderr.read())
    bad = subprocess.run([os.path.join(ct.BUILDDIR, "bench", "null-gateway"), "--spin",
                          "--handoff"], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "usage" in bad.stderr, (bad.returncode, bad.stderr)


def test_sched_bench_small():
    """bench/sched-bench on a few nodes binds every pod and reports the server's RSS and CPU."""
    res = run_bench_script("sched-bench", "--nodes", "4", "--pods", "40", "--threads", "2")
    assert res["bound"] == 40, res
    assert res["bind_pods_per_s"] > 0 and res["server_peak_rss_mb"] > 0, res
    assert res["server_cpu_seconds"] >= 0, res


def test_deploy_bench_small():
    """bench/deploy-bench on 3 hollow nodes: available, rolled to a new image, old RS at 0."""
    res = run_bench_script("deploy-bench", "--nodes", "3", "--replicas", "6", "--json",
                           "--timeout", "90")
    assert res["replicas"] == 6 and res["nodes"] == 3, res
    assert res["create_to_available_seconds"] > 0 and res["rollout_seconds"] > 0, res
    assert res["server_peak_rss_mb"] > 0 and res["agent_peak_rss_mb"] > 0, res


if __name__ == "__main__":
    ct.run(globals())
