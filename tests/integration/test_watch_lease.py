#!/usr/bin/env python3
"""Watch streams and leases over the gateway, checked against etcd's behaviour.

Watches: the created frame comes first; PUT and DELETE events (type omitted
for PUT), prev_kv; replay from start_revision; prefixes; NOPUT/NODELETE;
a start below the compacted revision is canceled with compact_revision;
progress_request answers with watch_id "-1"; one txn's events arrive together;
watchers of one batch or of replays of different keys never get each
other's events.
Leases: grant, attach, keepalive, timetolive with keys, revoke, and expiry
deleting the attached keys (seen by a watch) within TTL + 2 s.
"""

import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capstan_test as ct  # noqa: E402
from capstan_test import b64  # noqa: E402

_srv = {}


def shared():
    s = _srv.get("s")
    if s is None or not s.alive():
        s = ct.Server().start()
        s.keep = True
        _srv["s"] = s
    return s


def res(frame):
    assert isinstance(frame, dict) and "result" in frame, "not a watch frame: %r" % (frame,)
    return frame["result"]


def created(w, timeout=5):
    f = w.next(timeout)
    assert f is not None, "no created frame"
    r = res(f)
    assert r.get("created") is True, "first frame is not the created frame: %r" % r
    assert "events" not in r, r
    return r


def events(w, n, timeout=5):
    """Collect n events (over as many frames as it takes)."""
    out, frames = [], []
    deadline = time.time() + timeout
    while len(out) < n:
        f = w.next(max(0.01, deadline - time.time()))
        if f is None:
            break
        r = res(f)
        frames.append(r)
        out += r.get("events", [])
    assert len(out) == n, "got %d events, want %d: %r" % (len(out), n, frames)
    return out, frames


def nothing_more(w, timeout=0.7):
    f = w.next(timeout)
    assert f is None, "unexpected frame: %r" % (f,)


def kv(key, value, create, mod, version, lease=None):
    d = {"key": b64(key), "create_revision": str(create), "mod_revision": str(mod),
         "version": str(version), "value": b64(value)}
    if lease:
        d["lease"] = lease
    return d


def test_created_first_then_put_and_delete_with_prev_kv():
    """Created frame first; PUT events omit type; DELETE carries prev_kv; header revision is the event's."""
    srv = shared()
    w = srv.watch({"create_request": {"key": b64("w1/k"), "prev_kv": True}})
    try:
        c = created(w)
        rev = srv.revision()
        assert c["header"]["revision"] == str(rev), c
        r1 = int(srv.put("w1/k", "a")["header"]["revision"])
        r2 = int(srv.put("w1/k", "b")["header"]["revision"])
        r3 = int(srv.must("/v3/kv/deleterange", {"key": b64("w1/k")})["header"]["revision"])
        evs, frames = events(w, 3)
        ct.check_equal(evs[0], {"kv": kv("w1/k", "a", r1, r1, 1)}, "first put")
        ct.check_equal(evs[1], {"kv": kv("w1/k", "b", r1, r2, 2), "prev_kv": kv("w1/k", "a", r1, r1, 1)},
                       "second put")
        ct.check_equal(evs[2], {"type": "DELETE", "kv": {"key": b64("w1/k"), "mod_revision": str(r3)},
                                "prev_kv": kv("w1/k", "b", r1, r2, 2)}, "delete")
        assert [f["header"]["revision"] for f in frames] == [str(r1), str(r2), str(r3)], frames
        assert all("watch_id" not in f for f in frames), "watch_id 0 must be omitted"
        nothing_more(w)
    finally:
        w.close()


def test_start_revision_replays_history():
    """start_revision replays every later change of the key, in order, before live events."""
    srv = shared()
    r1 = int(srv.put("w2/k", "1")["header"]["revision"])
    r2 = int(srv.put("w2/k", "2")["header"]["revision"])
    r3 = int(srv.must("/v3/kv/deleterange", {"key": b64("w2/k")})["header"]["revision"])
    r4 = int(srv.put("w2/k", "3")["header"]["revision"])
    w = srv.watch({"create_request": {"key": b64("w2/k"), "start_revision": r2}})
    try:
        created(w)
        evs, _ = events(w, 3)
        ct.check_equal(evs, [{"kv": kv("w2/k", "2", r1, r2, 2)},
                             {"type": "DELETE", "kv": {"key": b64("w2/k"), "mod_revision": str(r3)}},
                             {"kv": kv("w2/k", "3", r4, r4, 1)}], "replay")
        r5 = int(srv.put("w2/k", "4")["header"]["revision"])
        evs, _ = events(w, 1)
        ct.check_equal(evs, [{"kv": kv("w2/k", "4", r4, r5, 2)}], "live after replay")
    finally:
        w.close()


def test_prefix_watch():
    """A watch with range_end (prefix) sees keys under the prefix and nothing else."""
    srv = shared()
    w = srv.watch({"create_request": {"key": b64("w3/"), "range_end": b64("w30")}})
    try:
        created(w)
        srv.put("w3/a", "1")
        srv.put("w3", "outside")
        srv.put("w30", "outside")
        srv.put("w3/b/c", "2")
        srv.put("w2x", "outside")
        evs, _ = events(w, 2)
        assert [e["kv"]["key"] for e in evs] == [b64("w3/a"), b64("w3/b/c")], evs
        nothing_more(w)
    finally:
        w.close()


def test_filters_noput_nodelete():
    """filters NOPUT drops PUT events; NODELETE drops DELETE events."""
    srv = shared()
    wp = srv.watch({"create_request": {"key": b64("w4/"), "range_end": b64("w40"), "filters": ["NOPUT"]}})
    wd = srv.watch({"create_request": {"key": b64("w4/"), "range_end": b64("w40"),
                                       "filters": ["NODELETE"]}})
    try:
        created(wp)
        created(wd)
        srv.put("w4/a", "1")
        rd = int(srv.must("/v3/kv/deleterange", {"key": b64("w4/a")})["header"]["revision"])
        srv.put("w4/b", "2")
        evs, _ = events(wp, 1)
        ct.check_equal(evs, [{"type": "DELETE", "kv": {"key": b64("w4/a"), "mod_revision": str(rd)}}],
                       "NOPUT")
        evs, _ = events(wd, 2)
        assert [e.get("type", "PUT") for e in evs] == ["PUT", "PUT"], evs
        nothing_more(wp, 0.3)
        nothing_more(wd, 0.3)
    finally:
        wp.close()
        wd.close()


def test_txn_events_arrive_together():
    """A txn that writes three keys produces one frame with three events of one revision."""
    srv = shared()
    w = srv.watch({"create_request": {"key": b64("w5/"), "range_end": b64("w50")}})
    try:
        created(w)
        ops = [{"request_put": {"key": b64("w5/%d" % i), "value": b64("v")}} for i in range(3)]
        r = srv.must("/v3/kv/txn", {"success": ops})
        rev = r["header"]["revision"]
        f = w.next(5)
        evs = res(f)["events"]
        assert len(evs) == 3 and all(e["kv"]["mod_revision"] == rev for e in evs), f
        assert res(f)["header"]["revision"] == rev
    finally:
        w.close()


def test_watchers_of_one_txn_get_their_own_events():
    """Two watchers whose selections of one txn share first, last and count each get their own events."""
    srv = shared()
    srv.put("w7/b", "old")
    w1 = srv.watch({"create_request": {"key": b64("w7/"), "range_end": b64("w70"), "filters": ["NODELETE"]}})
    w2 = srv.watch({"create_request": {"key": b64("w7/a"), "range_end": b64("w7/d")}})
    try:
        created(w1)
        created(w2)
        ops = [{"request_put": {"key": b64("w7/a"), "value": b64("1")}},
               {"request_put": {"key": b64("w7/z"), "value": b64("2")}},
               {"request_delete_range": {"key": b64("w7/b")}},
               {"request_put": {"key": b64("w7/c"), "value": b64("3")}}]
        srv.must("/v3/kv/txn", {"success": ops})
        evs, _ = events(w1, 3)
        assert [(e.get("type", "PUT"), e["kv"]["key"]) for e in evs] == \
            [("PUT", b64("w7/a")), ("PUT", b64("w7/z")), ("PUT", b64("w7/c"))], evs
        evs, _ = events(w2, 3)
        assert [(e.get("type", "PUT"), e["kv"]["key"]) for e in evs] == \
            [("PUT", b64("w7/a")), ("DELETE", b64("w7/b")), ("PUT", b64("w7/c"))], evs
    finally:
        w1.close()
        w2.close()


def test_replays_of_different_keys_do_not_mix():
    """Watchers replaying history of different keys from the past each get only their key's events."""
    srv = shared()
    start = int(srv.put("w8/a", "a1")["header"]["revision"])
    srv.put("w8/b", "b1")
    ws = [srv.watch({"create_request": {"key": b64("w8/" + k), "start_revision": start}}) for k in "ab"]
    try:
        for k, w in zip("ab", ws):
            created(w)
            evs, _ = events(w, 1)
            assert evs[0]["kv"]["key"] == b64("w8/" + k) and evs[0]["kv"]["value"] == b64(k + "1"), evs
            nothing_more(w, 0.3)
    finally:
        for w in ws:
            w.close()


def test_compacted_start_is_canceled():
    """A watch starting below the compacted revision is created, then canceled with compact_revision."""
    srv = shared()
    srv.put("w6/k", "1")
    srv.put("w6/k", "2")
    rev = srv.revision()
    st, body = srv.post("/v3/kv/compaction", {"revision": rev, "physical": True})
    assert st == 200, (st, body)
    w = srv.watch({"create_request": {"key": b64("w6/k"), "start_revision": rev - 1}})
    try:
        created(w)
        f = w.next(5)
        assert f is not None, "no cancel frame"
        r = res(f)
        assert r.get("canceled") is True and r.get("compact_revision") == str(rev), r
        assert "revision" not in r["header"], "etcd omits the revision of a compacted cancel: %r" % r
        nothing_more(w, 0.3)
    finally:
        w.close()
    # At the compacted revision itself the watch works.
    w = srv.watch({"create_request": {"key": b64("w6/k"), "start_revision": rev}})
    try:
        created(w)
        evs, _ = events(w, 1)
        assert evs[0]["kv"]["mod_revision"] == str(rev), evs
    finally:
        w.close()


def test_progress_request_and_cancel():
    """progress_request answers watch_id "-1" at the current revision; cancel_request cancels."""
    srv = shared()
    rev = srv.revision()
    w = srv.watch([{"create_request": {"key": b64("w7")}}, {"progress_request": {}}])
    try:
        created(w)
        r = res(w.next(5))
        ct.check_equal(ct.normalize(r), {"header": {"revision": str(rev)}, "watch_id": "-1"},
                       "progress reply")
    finally:
        w.close()
    w = srv.watch([{"create_request": {"key": b64("w7"), "watch_id": 9}}, {"cancel_request": {"watch_id": 9}}])
    try:
        c = created(w)
        assert c.get("watch_id") == "9", c
        r = res(w.next(5))
        assert r.get("canceled") is True and r.get("watch_id") == "9", r
    finally:
        w.close()


def test_watch_survives_many_puts():
    """500 puts in a row reach a watcher in order with no gap."""
    srv = shared()
    w = srv.watch({"create_request": {"key": b64("w8/"), "range_end": b64("w80")}})
    try:
        created(w)
        conn = srv.conn()
        revs = []
        for i in range(500):
            st, body = srv.post("/v3/kv/put", {"key": b64("w8/%d" % (i % 7)), "value": b64(str(i))}, conn=conn)
            assert st == 200
            revs.append(body["header"]["revision"])
        conn.close()
        evs, _ = events(w, 500, timeout=20)
        assert [e["kv"]["mod_revision"] for e in evs] == revs
        assert [ct.unb64(e["kv"]["value"]) for e in evs] == [str(i) for i in range(500)]
    finally:
        w.close()


def test_fanout_with_streams_closing():
    """160 streams (two with a second watch, some with prev_kv) get 100 puts while
    a quarter of them reset their connections mid-stream: every survivor sees
    each put once, in order, per watch; the server stays up."""
    srv = shared()
    key = b64("fan/k")
    streams = []
    for i in range(160):
        body = [{"create_request": {"key": key, "prev_kv": i % 3 == 0}}]
        if i in (5, 77):
            body.append({"create_request": {"key": key, "prev_kv": True}})
        w = srv.watch(body)
        ids = [created(w).get("watch_id", "0") for _ in body]
        streams.append((w, ids))
    doomed = [s for i, s in enumerate(streams) if i % 4 == 1]
    kept = [s for i, s in enumerate(streams) if i % 4 != 1]
    revs = []

    def writer():
        conn = srv.conn()
        for i in range(100):
            st, body = srv.post("/v3/kv/put", {"key": key, "value": b64(str(i))}, conn=conn)
            assert st == 200, body
            revs.append(body["header"]["revision"])
        conn.close()

    t = threading.Thread(target=writer)
    t.start()
    for w, _ in doomed:
        # An abortive close (RST): the server's next write to it fails.
        time.sleep(0.005)
        w.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.close()
    t.join(60)
    assert not t.is_alive() and len(revs) == 100, revs
    try:
        for w, ids in kept:
            got = {i: [] for i in ids}
            deadline = time.time() + 20
            while sum(len(v) for v in got.values()) < 100 * len(ids) and time.time() < deadline:
                f = w.next(max(0.01, deadline - time.time()))
                if f is None:
                    break
                r = res(f)
                got[r.get("watch_id", "0")] += [e["kv"]["mod_revision"] for e in r.get("events", [])]
            for i in ids:
                assert got[i] == revs, "watch %s: %r, want %r" % (i, got[i], revs)
        w = srv.watch({"create_request": {"key": key}})
        created(w)
        w.close()
    finally:
        for w, _ in kept:
            w.close()


# ------------------------------------------------------------------ leases

def test_lease_grant_attach_timetolive_keepalive_revoke():
    """Grant with ID, attach keys, timetolive lists keys, keepalive renews, revoke deletes keys in one revision."""
    srv = shared()
    g = srv.must("/v3/lease/grant", {"TTL": 60, "ID": 4242})
    assert (g["ID"], g["TTL"]) == ("4242", "60"), g
    st, dup = srv.post("/v3/lease/grant", {"TTL": 60, "ID": 4242})
    assert (st, dup) == (412, {"error": "etcdserver: lease already exists",
                               "message": "etcdserver: lease already exists", "code": 9}), (st, dup)
    r1 = int(srv.put("l1/a", "1", lease=4242)["header"]["revision"])
    srv.put("l1/b", "2", lease="4242")
    got = srv.get("l1/a")["kvs"][0]
    assert got.get("lease") == "4242", got
    t = srv.must("/v3/lease/timetolive", {"ID": 4242, "keys": True})
    assert t["grantedTTL"] == "60" and 58 <= int(t["TTL"]) <= 60, t
    assert sorted(t["keys"]) == sorted([b64("l1/a"), b64("l1/b")]), t
    t = srv.must("/v3/lease/timetolive", {"ID": 4242})
    assert "keys" not in t, t
    ls = srv.must("/v3/lease/leases", {})
    assert {"ID": "4242"} in ls.get("leases", []), ls
    k = srv.must("/v3/lease/keepalive", {"ID": 4242})
    ct.check_equal(ct.normalize(k), {"result": {"header": {"revision": str(srv.revision())},
                                                "ID": "4242", "TTL": "60"}}, "keepalive")
    w = srv.watch({"create_request": {"key": b64("l1/"), "range_end": b64("l10"), "prev_kv": True}})
    try:
        created(w)
        rev = srv.revision()
        rv = srv.must("/v3/lease/revoke", {"ID": 4242})
        assert rv["header"]["revision"] == str(rev + 1), (rev, rv)
        evs, frames = events(w, 2)
        assert all(e.get("type") == "DELETE" and e["kv"]["mod_revision"] == str(rev + 1) for e in evs), evs
        assert evs[0]["prev_kv"]["create_revision"] == str(r1), evs
    finally:
        w.close()
    assert not srv.get("l1/", range_end=b64("l10")).get("kvs")
    t = srv.must("/v3/lease/timetolive", {"ID": 4242})
    assert t["TTL"] == "-1", t
    st, body = srv.post("/v3/lease/revoke", {"ID": 4242})
    assert (st, body.get("code")) == (404, 5), (st, body)
    # etcd answers a keepalive of an unknown lease with a result frame without TTL.
    st, body = srv.post("/v3/lease/keepalive", {"ID": 4242})
    assert st == 200 and "TTL" not in body.get("result", {}) and body["result"].get("ID") == "4242", body


def test_lease_expiry_deletes_keys_and_watch_sees_it():
    """A 3 s lease expires on time: its keys vanish within TTL+2 s (not early), and the watch sees the DELETE."""
    srv = shared()
    g = srv.must("/v3/lease/grant", {"TTL": 3})
    t0 = time.time()
    lid = g["ID"]
    assert g["TTL"] == "3", g
    srv.put("l2/a", "1", lease=lid)
    srv.put("l2/b", "1", lease=lid)
    w = srv.watch({"create_request": {"key": b64("l2/"), "range_end": b64("l20")}})
    try:
        created(w)
        evs, _ = events(w, 2, timeout=3 + 4)
        dt = time.time() - t0
        assert all(e.get("type") == "DELETE" for e in evs), evs
        assert 2.0 <= dt <= 3 + 2.5, "expired after %.1fs (TTL 3)" % dt
        assert evs[0]["kv"]["mod_revision"] == evs[1]["kv"]["mod_revision"], "one revoke, one revision"
    finally:
        w.close()
    assert not srv.get("l2/", range_end=b64("l20")).get("kvs")
    t = srv.must("/v3/lease/timetolive", {"ID": lid})
    assert t["TTL"] == "-1", t


def test_keepalive_keeps_lease_alive():
    """Keepalives every second keep a 2 s lease (and its key) alive for 5 s; after they stop it expires."""
    srv = shared()
    g = srv.must("/v3/lease/grant", {"TTL": 2})
    lid = g["ID"]
    srv.put("l3/a", "1", lease=lid)
    end = time.time() + 5
    while time.time() < end:
        k = srv.must("/v3/lease/keepalive", {"ID": lid})
        assert k["result"]["TTL"] == "2", k
        time.sleep(0.7)
    assert srv.get("l3/a").get("kvs"), "key expired despite keepalives"
    ct.wait_until(lambda: not srv.get("l3/a").get("kvs"), timeout=2 + 2.5, what="lease expiry")


def test_lease_kept_across_restart():
    """A lease and its keys survive a clean restart; the lease still expires afterwards."""
    srv = ct.Server().start()
    g = srv.must("/v3/lease/grant", {"TTL": 4, "ID": 77})
    srv.put("l4/a", "1", lease=77)
    srv.terminate()
    srv.start()
    t = srv.must("/v3/lease/timetolive", {"ID": 77, "keys": True})
    assert t.get("grantedTTL") == "4" and t.get("keys") == [b64("l4/a")], t
    ct.wait_until(lambda: not srv.get("l4/a").get("kvs"), timeout=4 + 3, what="lease expiry after restart")
    assert g["ID"] == "77"


def test_shutdown_clean():
    """The shared server exits cleanly on SIGTERM with watches having been open."""
    srv = shared()
    srv.terminate()
    _srv.pop("s", None)


if __name__ == "__main__":
    ct.run(globals())
