#!/usr/bin/env python3
"""Durability under kill -9, and refusal to serve from a damaged state file.

Several client threads write unique keys (plain puts) and compare-and-swap
one key each (txn on version); every acknowledged write is recorded. The
server is killed with SIGKILL at random moments and restarted on the same
data directory. At the end every acknowledged write must be present with its
value (or overwritten by a later write to the same key), the revision must
never have gone backward, and the count of lost acknowledged writes is
printed (it must be 0).
"""

import base64
import fcntl
import http.client
import json
import os
import random
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capstan_test as ct  # noqa: E402
from capstan_test import b64  # noqa: E402

WRITERS = 4
KILLS = 5
SEED = int(os.environ.get("CAPSTAN_CRASH_SEED", str(int(time.time()))))


class Writer(threading.Thread):
    def __init__(self, srv, idx, stop):
        super().__init__(daemon=True)
        self.srv, self.idx, self.stop = srv, idx, stop
        self.acked = {}            # key -> (value, revision) of the last acknowledged write
        self.revs = []             # revisions of acknowledgements, in order
        self.errors = []
        self.attempts = 0
        self.cas_key = "crash/cas/%d" % idx
        self.cas_ver = None        # the version we believe the CAS key has (None: unknown)

    def _post(self, conn, path, body):
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, ct.parse_body(r.read())

    def ack(self, key, value, rev):
        if self.revs and rev <= self.revs[-1]:
            self.errors.append("thread %d: acknowledgement revision %d after %d" % (self.idx, rev, self.revs[-1]))
        self.revs.append(rev)
        self.acked[key] = (value, rev)

    def run(self):
        rnd = random.Random(SEED * 31 + self.idx)
        n = 0
        pending = None           # a unique write not yet acknowledged: retry the same one
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=3)
                self.attempts += 1
                if rnd.random() < 0.25:
                    self.cas(conn, rnd)
                    continue
                if pending is None:
                    n += 1
                    pending = ("crash/u/%d/%06d" % (self.idx, n), "v%d-%d-%d" % (self.idx, n, rnd.randrange(1 << 30)))
                key, value = pending
                st, body = self._post(conn, "/v3/kv/put", {"key": b64(key), "value": b64(value)})
                if st == 200:
                    self.ack(key, value, int(body["header"]["revision"]))
                    pending = None
                else:
                    time.sleep(0.05)
            except (OSError, http.client.HTTPException, ValueError):
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def cas(self, conn, rnd):
        key = self.cas_key
        if self.cas_ver is None:
            st, body = self._post(conn, "/v3/kv/range", {"key": b64(key)})
            if st != 200:
                return
            kvs = body.get("kvs") or []
            self.cas_ver = int(kvs[0]["version"]) if kvs else 0
        value = "cas%d-%d" % (self.idx, rnd.randrange(1 << 30))
        ver = self.cas_ver
        self.cas_ver = None      # unknown until acknowledged
        st, body = self._post(conn, "/v3/kv/txn", {
            "compare": [{"key": b64(key), "target": "VERSION", "result": "EQUAL", "version": str(ver)}],
            "success": [{"request_put": {"key": b64(key), "value": b64(value)}}],
            "failure": [{"request_range": {"key": b64(key)}}]})
        if st != 200:
            return
        if body.get("succeeded"):
            self.ack(key, value, int(body["header"]["revision"]))
            self.cas_ver = ver + 1


def check_all(srv, writers):
    """Returns (lost, problems)."""
    st, body = srv.post("/v3/kv/range", {"key": b64("crash/"), "range_end": b64("crash0")}, timeout=30)
    assert st == 200, (st, body)
    final = {ct.unb64(kv["key"]): kv for kv in body.get("kvs", [])}
    lost, problems = 0, []
    for w in writers:
        for key, (value, rev) in w.acked.items():
            kv = final.get(key)
            if kv is None:
                lost += 1
                problems.append("%s: acknowledged at revision %d, missing" % (key, rev))
                continue
            mod = int(kv["mod_revision"])
            if mod < rev:
                lost += 1
                problems.append("%s: acknowledged at revision %d, found mod_revision %d" % (key, rev, mod))
            elif mod == rev and ct.unb64(kv["value"]) != value:
                lost += 1
                problems.append("%s: value %r, acknowledged %r" % (key, ct.unb64(kv["value"]), value))
    return lost, problems


def test_kill9_loses_no_acknowledged_write():
    """Kill -9 five times under concurrent puts and CAS txns: no acknowledged write is lost, revision never goes back."""
    print("# seed %d (CAPSTAN_CRASH_SEED)" % SEED)
    rnd = random.Random(SEED)
    srv = ct.Server().start()
    stop = threading.Event()
    writers = [Writer(srv, i, stop) for i in range(WRITERS)]
    for w in writers:
        w.start()
    problems = []
    max_seen = 0
    t_start = time.time()
    try:
        for k in range(KILLS):
            time.sleep(rnd.uniform(1.5, 3.5))
            before = max([w.revs[-1] for w in writers if w.revs] or [0])
            srv.kill9()
            srv.start(timeout=30)
            after = srv.revision()
            max_seen = max(max_seen, before)
            print("# kill %d at %.1fs: last acknowledged revision %d, revision after restart %d"
                  % (k + 1, time.time() - t_start, before, after))
            if after < before:
                problems.append("kill %d: revision went back from %d to %d" % (k + 1, before, after))
        time.sleep(1.0)
    finally:
        stop.set()
        for w in writers:
            w.join(10)
    assert all(not w.is_alive() for w in writers), "writer threads did not stop"
    acked = sum(len(w.revs) for w in writers)
    for w in writers:
        problems += w.errors
    lost, p = check_all(srv, writers)
    problems += p
    # And once more after a final kill: everything is still there.
    srv.kill9()
    srv.start(timeout=30)
    lost2, p2 = check_all(srv, writers)
    problems += ["after final restart: " + x for x in p2]
    final_rev = srv.revision()
    if final_rev < max_seen:
        problems.append("final revision %d below acknowledged %d" % (final_rev, max_seen))
    print("# %d acknowledged writes (%d attempts); lost acknowledged writes: %d"
          % (acked, sum(w.attempts for w in writers), max(lost, lost2)))
    assert acked >= 50, "too few writes acknowledged (%d): the server was rarely up" % acked
    assert not problems, "\n  ".join(["%d problems:" % len(problems)] + problems[:30])
    if srv.target == "capstan":
        srv.terminate()


def test_put_right_before_kill9_survives():
    """Kill -9 right after acknowledged puts, before the state file's delayed commit: after a restart every one is there."""
    srv = ct.Server().start()
    for rnd in range(3):
        keys = ["late/%d/%d" % (rnd, i) for i in range(20)]
        for k in keys:
            srv.put(k, k)
        srv.kill9()
        srv.start()
        for k in keys:
            kvs = srv.get(k).get("kvs", [])
            assert kvs and kvs[0]["value"] == b64(k), (k, kvs)
    srv.terminate()


def test_snapshot_download_holds_the_last_put():
    """A snapshot downloaded right after an acknowledged put holds that put."""
    srv = ct.Server().start()
    value = "snapshot-marker-%d" % random.randrange(1 << 30)
    srv.put("snap/last", value)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("POST", "/v3/maintenance/snapshot", body=b"{}",
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    assert r.status == 200, (r.status, data[:200])
    image = b"".join(base64.b64decode(json.loads(line)["result"]["blob"])
                     for line in data.split(b"\n") if line.strip())
    # A short value is stored as is, whatever the file's layout.
    assert value.encode() in image, "the put is not in the %d-byte image" % len(image)
    srv.terminate()


def test_revision_monotonic_across_clean_restarts():
    """Three SIGTERM restarts in a row: data and revision survive, every restart exits 0."""
    srv = ct.Server().start()
    for i in range(3):
        r = int(srv.put("m/%d" % i, str(i))["header"]["revision"])
        rc = srv.terminate(check=True)
        srv.start()
        assert srv.revision() == r, (srv.revision(), r)
        assert srv.get("m/%d" % i)["kvs"][0]["value"] == b64(str(i))
        assert rc == 0 or srv.target == "etcd", rc
    srv.terminate()


def test_sigterm_under_write_load_exits_cleanly():
    """SIGTERM while 32 clients keep writing: every time the server exits 0, and every acknowledged write is there after a restart."""
    srv = ct.Server().start()
    acked = {}
    lock = threading.Lock()
    for rnd in range(5):
        stop = threading.Event()

        def writer(t):
            i = 0
            while not stop.is_set():
                key = "sig/%d/%d/%d" % (rnd, t, i)
                try:
                    st, _ = srv.post("/v3/kv/put", {"key": b64(key), "value": b64("v")}, timeout=5)
                except Exception:  # the server going away mid-request
                    return
                if st == 200:
                    with lock:
                        acked[key] = True
                i += 1

        ths = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(32)]
        for th in ths:
            th.start()
        time.sleep(0.3 + 0.1 * rnd)
        rc = srv.terminate(check=False)
        stop.set()
        for th in ths:
            th.join(10)
        assert rc == 0 or srv.target == "etcd", "round %d: exit %s under load:\n%s" % (rnd, rc, srv.log_tail())
        srv.start()
    st, r = srv.post("/v3/kv/range", {"key": b64("sig/"), "range_end": b64("sig0"), "keys_only": True}, timeout=30)
    assert st == 200, r
    have = {ct.unb64(kv["key"]) for kv in r.get("kvs", [])}
    lost = [k for k in acked if k not in have]
    assert not lost, "%d acknowledged writes lost, e.g. %s" % (len(lost), lost[:3])
    print("# %d acknowledged writes over 5 SIGTERMs under load" % len(acked))
    srv.terminate()


FS_IOC_FIEMAP = 0xC020660B          # _IOWR('f', 11, struct fiemap)
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_UNWRITTEN = 0x800


def unwritten_extents(path, room=256):
    """(extents, unwritten extents) of a file, from the FIEMAP ioctl."""
    req = bytearray(struct.pack("=QQLLLL", 0, (1 << 64) - 1, FIEMAP_FLAG_SYNC, 0, room, 0))
    req += bytes(56 * room)                      # struct fiemap_extent[room]
    with open(path, "rb") as f:
        fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, req)
    mapped = struct.unpack_from("=L", req, 20)[0]
    flags = [struct.unpack_from("=L", req, 32 + 56 * i + 40)[0] for i in range(mapped)]
    return mapped, sum(1 for fl in flags if fl & FIEMAP_EXTENT_UNWRITTEN)


def test_raft_segments_are_written_ahead():
    """capstan-store's raft log segments hold no unwritten extents, so its O_DIRECT appends never fall back to libraft's thread pool."""
    srv = ct.Server(target="capstan").start()
    for i in range(50):
        srv.put("seg/%d" % i, "v" * 300)
    raft_dir = os.path.join(srv.data_dir, "raft")
    segments = [n for n in os.listdir(raft_dir) if n.startswith("open-")]
    assert segments, os.listdir(raft_dir)
    for name in segments:
        path = os.path.join(raft_dir, name)
        extents, unwritten = unwritten_extents(path)
        assert extents > 0 and unwritten == 0, (name, os.path.getsize(path), extents, unwritten)
    assert srv.get("seg/49")["kvs"][0]["value"] == b64("v" * 300)
    srv.terminate()


def find_state_files(srv):
    """The files the state machine keeps: DIR/state.db, else any sqlite file (etcd: its bbolt db)."""
    if srv.target == "etcd":
        p = os.path.join(srv.data_dir, "member", "snap", "db")
        return [p] if os.path.exists(p) else []
    p = os.path.join(srv.data_dir, "state.db")
    if os.path.exists(p):
        return [p]
    found = []
    for rel in srv.files():
        full = os.path.join(srv.data_dir, rel)
        try:
            with open(full, "rb") as f:
                if f.read(16) == b"SQLite format 3\x00":
                    found.append(full)
        except OSError:
            pass
    return found


def damage(path):
    """Invert 3 pages' worth of bytes in the middle of the file."""
    size = os.path.getsize(path)
    mid = (size // 2) // 4096 * 4096
    n = min(3 * 4096, size - mid)
    with open(path, "r+b") as f:
        f.seek(mid)
        data = bytearray(f.read(n))
        for i in range(len(data)):
            data[i] ^= 0xFF
        f.seek(mid)
        f.write(bytes(data))
        f.flush()
        os.fsync(f.fileno())
    return mid, n


def test_damaged_state_file_refuses_to_start():
    """With bytes flipped in the middle of the state database, the server exits non-zero with a message instead of serving."""
    srv = ct.Server().start()
    val = "x" * 1000
    for i in range(400):
        srv.put("dmg/%04d" % i, val)
    srv.terminate(check=(srv.target == "capstan"))
    files = find_state_files(srv)
    print("# data dir: %s" % ", ".join(srv.files()))
    assert files, "no state database found under %s (files: %s)" % (srv.data_dir, srv.files())
    path = files[0]
    assert os.path.getsize(path) >= 64 * 1024, "%s is only %d bytes" % (path, os.path.getsize(path))
    mid, n = damage(path)
    print("# damaged %s: %d bytes at offset %d" % (os.path.relpath(path, srv.data_dir), n, mid))
    srv.start(expect_ready=False)
    deadline = time.time() + 20
    served = False
    while time.time() < deadline and srv.proc.poll() is None:
        try:
            st, body = srv.post("/v3/kv/range", {"key": b64("dmg/"), "range_end": b64("dmg0")}, timeout=2)
            if st == 200:
                served = True
                break
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    rc = srv.proc.poll()
    log = srv.log_tail(15)
    srv.stop()
    assert not served, "server served reads from a damaged state file:\n" + log
    assert rc is not None, "server neither exited nor served within 20 s:\n" + log
    assert rc != 0, "server exited 0 on a damaged state file:\n" + log
    low = log.lower()
    assert any(w in low for w in ("corrupt", "malformed", "damaged", "integrity", "checksum", "panic")), \
        "exit %s without a clear message:\n%s" % (rc, log)


if __name__ == "__main__":
    ct.run(globals())
