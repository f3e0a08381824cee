#!/usr/bin/env python3
"""The capstan CLI against a live server: outputs mirror etcdctl's, exit codes
are 0 ok, 1 server error, 2 usage, 3 unreachable.

CAPSTAN_CLI overrides the CLI binary (default $CAPSTAN_BUILDDIR/capstan).
"""

import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capstan_test as ct  # noqa: E402
from capstan_test import b64  # noqa: E402

CLI = os.environ.get("CAPSTAN_CLI") or ct.CLI_BIN
_srv = {}


def shared():
    s = _srv.get("s")
    if s is None or not s.alive():
        s = ct.Server().start()
        s.keep = True
        _srv["s"] = s
    return s


def cli(*args, endpoint=None, stdin=None, timeout=15):
    """Run the CLI; returns (exit code, stdout, stderr)."""
    assert os.access(CLI, os.X_OK), "%s is not built" % CLI
    argv = [CLI]
    if endpoint is not False:
        argv += ["--endpoints", endpoint or shared().url]
    argv += list(args)
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                       start_new_session=True)
    return p.returncode, p.stdout, p.stderr


def ok(*args, **kw):
    rc, out, err = cli(*args, **kw)
    assert rc == 0, "capstan %s -> exit %d\nstdout: %s\nstderr: %s" % (" ".join(args), rc, out, err)
    return out


def num(x):
    return int(x) if isinstance(x, (int, str)) else x


def test_put_get_del():
    """kv put prints OK; kv get prints key and value lines; --prefix; a missing key prints nothing; kv del prints the count."""
    assert ok("kv", "put", "foo", "bar") == "OK\n"
    assert ok("kv", "put", "foo1", "x") == "OK\n"
    assert ok("kv", "put", "fop", "y") == "OK\n"
    assert ok("kv", "get", "foo") == "foo\nbar\n"
    assert ok("kv", "get", "foo", "--prefix") == "foo\nbar\nfoo1\nx\n"
    assert ok("kv", "get", "nokey") == ""
    assert ok("kv", "del", "foo1") == "1\n"
    assert ok("kv", "del", "nokey") == "0\n"
    assert ok("kv", "get", "foo", "--prefix") == "foo\nbar\n"
    # What the CLI wrote is what the gateway reads.
    r = shared().get("fop")
    assert r["kvs"][0]["value"] == b64("y"), r


def test_get_json():
    """kv get -w json prints one JSON document with etcdctl's fields (header, base64 kvs, count)."""
    ok("kv", "put", "js/k", "v1")
    ok("kv", "put", "js/k", "v2")
    out = ok("kv", "get", "js/k", "-w", "json")
    doc = json.loads(out)
    want_rev = shared().revision()
    assert num(doc["header"]["revision"]) == want_rev, doc
    assert num(doc["count"]) == 1, doc
    kv = doc["kvs"][0]
    assert kv["key"] == b64("js/k") and kv["value"] == b64("v2"), kv
    assert num(kv["version"]) == 2 and num(kv["mod_revision"]) == want_rev, kv
    assert num(kv["create_revision"]) == want_rev - 1, kv


def test_txn_from_stdin():
    """kv txn reads etcdctl's stdin format (compares, blank, success ops, blank, failure ops) and prints like etcdctl."""
    ok("kv", "put", "t/foo", "bar")
    out = ok("kv", "txn", stdin='value("t/foo") = "bar"\n\nput t/foo baz\nget t/foo\n\nget t/nokey\n\n')
    assert out == "SUCCESS\n\nOK\n\nt/foo\nbaz\n", repr(out)
    out = ok("kv", "txn", stdin='value("t/foo") = "zzz"\n\nput t/foo qux\n\nget t/foo\n\n')
    assert out == "FAILURE\n\nt/foo\nbaz\n", repr(out)
    out = ok("kv", "txn", stdin='mod("t/foo") > "0"\n\ndel t/foo\n\n\n')
    assert out == "SUCCESS\n\n1\n", repr(out)
    assert not shared().get("t/foo").get("kvs")


def test_watch_count():
    """kv watch K --count 2 prints the two events etcdctl-style (PUT/DELETE, key, value) and exits 0."""
    srv = shared()
    argv = [CLI, "--endpoints", srv.url, "kv", "watch", "wk", "--count", "2"]
    assert os.access(CLI, os.X_OK), "%s is not built" % CLI
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        time.sleep(0.8)
        srv.put("wk", "one")
        srv.must("/v3/kv/deleterange", {"key": b64("wk")})
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        p.communicate()
        raise AssertionError("kv watch --count 2 did not exit after two events")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 9)
            p.wait()
    assert p.returncode == 0, (p.returncode, out, err)
    lines = [ln for ln in out.splitlines() if ln]
    assert lines == ["PUT", "wk", "one", "DELETE", "wk"], repr(out)


def test_compact():
    """kv compact REV prints "compacted revision REV"; compacting again below it is a server error (exit 1)."""
    srv = shared()
    srv.put("c/k", "1")
    rev = srv.revision()
    assert ok("kv", "compact", str(rev)) == "compacted revision %d\n" % rev
    rc, out, err = cli("kv", "compact", str(rev - 1))
    assert rc == 1, (rc, out, err)
    assert "required revision has been compacted" in err, err


def test_lease_commands():
    """lease grant/ttl/keepalive --once/list/revoke print etcdctl's lines; revoking twice exits 1."""
    out = ok("lease", "grant", "30")
    m = re.match(r"^lease ([0-9a-f]+) granted with TTL\(30s\)\n$", out)
    assert m, repr(out)
    hexid = m.group(1)
    lid = int(hexid, 16)
    srv = shared()
    srv.put("lk", "v", lease=str(lid))
    out = ok("lease", "ttl", hexid)
    m = re.match(r"^lease %s granted with TTL\(30s\), remaining\((\d+)s\)\n$" % hexid, out)
    assert m and 28 <= int(m.group(1)) <= 30, repr(out)
    out = ok("lease", "keepalive", "--once", hexid)
    assert out == "lease %s keepalived with TTL(30)\n" % hexid, repr(out)
    out = ok("lease", "list")
    lines = out.splitlines()
    assert lines[0] == "found %d leases" % (len(lines) - 1) and hexid in lines[1:], repr(out)
    assert ok("lease", "revoke", hexid) == "lease %s revoked\n" % hexid
    assert not srv.get("lk").get("kvs")
    rc, out, err = cli("lease", "revoke", hexid)
    assert rc == 1 and "requested lease not found" in err, (rc, out, err)


def test_member_list_and_status():
    """member list prints "id, started, name, peer, client, false"; status names the endpoint and member."""
    srv = shared()
    out = ok("member", "list")
    lines = out.splitlines()
    assert len(lines) == 1, repr(out)
    parts = [p.strip() for p in lines[0].split(",")]
    assert len(parts) == 6 and re.match(r"^[0-9a-f]+$", parts[0]), parts
    assert parts[1:] == ["started", "s1", srv.peer_url, srv.url, "false"], parts
    out = ok("status")
    assert srv.url in out and parts[0] in out, repr(out)
    doc = json.loads(ok("status", "-w", "json"))
    assert isinstance(doc, (dict, list)), doc


def test_snapshot_save():
    """snapshot save FILE writes a non-empty snapshot (a sqlite database for capstan) and says where."""
    srv = shared()
    srv.put("snap/k", "v")
    path = os.path.join(ct.mktemp(), "snap.db")
    out = ok("snapshot", "save", path, timeout=60)
    assert "Snapshot saved at %s" % path in out, repr(out)
    assert os.path.getsize(path) > 0
    with open(path, "rb") as f:
        head = f.read(16)
    if srv.target == "capstan":
        assert head == b"SQLite format 3\x00", head


def test_exit_codes():
    """Usage errors exit 2, an unreachable endpoint exits 3, server errors exit 1."""
    for args in (["kv"], ["kv", "put", "onlykey"], ["bogus-command"], ["kv", "get"],
                 ["lease", "grant", "notanumber"], ["kv", "compact", "x"]):
        rc, out, err = cli(*args)
        assert rc == 2, "capstan %s -> %d (want 2)\n%s%s" % (" ".join(args), rc, out, err)
        assert err.strip(), "usage error without a message: %s" % args
    dead = "http://127.0.0.1:%d" % ct.free_port()
    t0 = time.time()
    rc, out, err = cli("kv", "get", "foo", endpoint=dead, timeout=30)
    assert rc == 3, (rc, out, err)
    assert time.time() - t0 < 20, "giving up on an unreachable endpoint took too long"
    rc, out, err = cli("kv", "put", "x", "y", endpoint=dead, timeout=30)
    assert rc == 3, (rc, out, err)
    rc, out, err = cli("lease", "revoke", "1234abcd")
    assert rc == 1, (rc, out, err)
    ok("--help", endpoint=False)


def test_server_stops_cleanly():
    """The server used by the CLI tests exits 0 on SIGTERM."""
    srv = shared()
    srv.terminate()
    _srv.pop("s", None)


if __name__ == "__main__":
    ct.run(globals())
