#!/usr/bin/env python3
"""Bad input to the gateway: the server answers what etcd answers, stays up,
keeps the keep-alive connection usable, and writes nothing.

Every expectation below is etcd 3.4's actual answer (learned by running this
file with CAPSTAN_TEST_TARGET=etcd). Where etcd's error text is produced by a
Go library (the JSON or base64 decoder: "unexpected EOF", "json: cannot
unmarshal ..."), only the HTTP status, the gRPC code and the error/message
pair are compared; every "etcdserver: ..." message and every plain-text body
is compared exactly.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capstan_test as ct  # noqa: E402
from capstan_test import b64  # noqa: E402


def err(msg, code=3):
    return {"error": msg, "message": msg, "code": code}


TOO_LARGE = err("etcdserver: request is too large")
KEY_NOT_PROVIDED = err("etcdserver: key is not provided")
DUP_KEY = err("etcdserver: duplicate key given in txn request")
TOO_MANY_OPS = err("etcdserver: too many operations in txn request")
LEASE_NOT_FOUND = err("etcdserver: requested lease not found", 5)


def put_op(k, v="1", **kw):
    d = {"key": b64(k), "value": b64(v)}
    d.update(kw)
    return {"request_put": d}


# (label, method, path, raw body, etcd's status, etcd's body)
CASES = [
    ("malformed JSON", "POST", "/v3/kv/range", '{"key":', 400, err("unexpected EOF")),
    ("not JSON at all", "POST", "/v3/kv/range", "hello", 400,
     err("invalid character 'h' looking for beginning of value")),
    ("JSON array instead of object", "POST", "/v3/kv/range", "[]", 400,
     err("json: cannot unmarshal array into Go value of type map[string]json.RawMessage")),
    ("key is a number", "POST", "/v3/kv/range", '{"key":5}', 400,
     err("json: cannot unmarshal number into Go value of type []uint8")),
    ("limit is \"abc\"", "POST", "/v3/kv/range", '{"key":"YQ==","limit":"abc"}', 400,
     err("invalid character 'a' looking for beginning of value")),
    ("limit is 1.5", "POST", "/v3/kv/range", '{"key":"YQ==","limit":1.5}', 400,
     err("json: cannot unmarshal number 1.5 into Go value of type int64")),
    ("limit overflows int64", "POST", "/v3/kv/range", '{"key":"YQ==","limit":"99999999999999999999"}',
     400, err("json: cannot unmarshal number 99999999999999999999 into Go value of type int64")),
    ("keys_only is a string", "POST", "/v3/kv/range", '{"key":"YQ==","keys_only":"yes"}', 400,
     err("json: cannot unmarshal string into Go value of type bool")),
    ("revision is \"1x\"", "POST", "/v3/kv/range", '{"key":"YQ==","revision":"1x"}', 400,
     err("invalid character 'x' after top-level value")),
    ("unknown sort_order", "POST", "/v3/kv/range", '{"key":"YQ==","sort_order":"SIDEWAYS"}', 400,
     err('unknown value "SIDEWAYS" for enum etcdserverpb.RangeRequest_SortOrder')),
    ("invalid base64 key", "POST", "/v3/kv/range", '{"key":"!!!"}', 400,
     err("illegal base64 data at input byte 0")),
    ("base64 without padding", "POST", "/v3/kv/range", '{"key":"YQ"}', 400,
     err("illegal base64 data at input byte 0")),
    ("url-safe base64 alphabet", "POST", "/v3/kv/range", '{"key":"-_-_"}', 400,
     err("illegal base64 data at input byte 0")),
    ("put with invalid base64 value", "POST", "/v3/kv/put", '{"key":"cQ==","value":"%%%"}', 400,
     err("illegal base64 data at input byte 0")),
    ("put with key a number", "POST", "/v3/kv/put", '{"key":5,"value":"MQ=="}', 400,
     err("json: cannot unmarshal number into Go value of type []uint8")),
    ("range without key", "POST", "/v3/kv/range", "{}", 400, KEY_NOT_PROVIDED),
    ("range with empty body", "POST", "/v3/kv/range", "", 400, KEY_NOT_PROVIDED),
    ("range with JSON null", "POST", "/v3/kv/range", "null", 400, KEY_NOT_PROVIDED),
    ("put without key", "POST", "/v3/kv/put", '{"value":"MQ=="}', 400, KEY_NOT_PROVIDED),
    ("deleterange without key", "POST", "/v3/kv/deleterange", "{}", 400, KEY_NOT_PROVIDED),
    ("compaction revision \"abc\"", "POST", "/v3/kv/compaction", '{"revision":"abc"}', 400,
     err("invalid character 'a' looking for beginning of value")),
    ("lease grant TTL \"abc\"", "POST", "/v3/lease/grant", '{"TTL":"abc"}', 400,
     err("invalid character 'a' looking for beginning of value")),
    ("txn compare with unknown target", "POST", "/v3/kv/txn",
     '{"compare":[{"key":"YQ==","target":"NOPE","result":"EQUAL"}]}', 400,
     err('unknown value "NOPE" for enum etcdserverpb.Compare_CompareTarget')),
    ("unknown path under /v3", "POST", "/v3/nope", "{}", 404, "Not Found\n"),
    ("unknown path under /v3/kv", "POST", "/v3/kv/nope", "{}", 404, "Not Found\n"),
    ("GET on a POST path", "GET", "/v3/kv/range", None, 405, "Method Not Allowed\n"),
    ("PUT on a POST path", "PUT", "/v3/kv/put", '{"key":"YQ==","value":"MQ=="}', 405,
     "Method Not Allowed\n"),
    ("txn with a key twice", "POST", "/v3/kv/txn",
     json.dumps({"success": [put_op("d", "1"), put_op("d", "2")]}), 400, DUP_KEY),
    ("txn putting a key it deletes", "POST", "/v3/kv/txn",
     json.dumps({"success": [put_op("d", "1"), {"request_delete_range": {"key": b64("d")}}]}),
     400, DUP_KEY),
    ("txn putting inside a range it deletes", "POST", "/v3/kv/txn",
     json.dumps({"success": [put_op("d1"), {"request_delete_range": {"key": b64("d"),
                                                                      "range_end": b64("e")}}]}),
     400, DUP_KEY),
    ("nested txn putting the same key", "POST", "/v3/kv/txn",
     json.dumps({"success": [put_op("d"), {"request_txn": {"success": [put_op("d", "2")]}}]}),
     400, DUP_KEY),
    ("txn with 129 puts", "POST", "/v3/kv/txn",
     json.dumps({"success": [put_op("t%03d" % i) for i in range(129)]}), 400, TOO_MANY_OPS),
    ("txn with 129 ranges", "POST", "/v3/kv/txn",
     json.dumps({"success": [{"request_range": {"key": b64("t%03d" % i)}} for i in range(129)]}),
     400, TOO_MANY_OPS),
    ("txn with 129 compares", "POST", "/v3/kv/txn",
     json.dumps({"compare": [{"key": b64("t%03d" % i), "target": "VERSION", "result": "EQUAL",
                              "version": "1"} for i in range(129)]}), 400, TOO_MANY_OPS),
    ("txn whose second put names a missing lease", "POST", "/v3/kv/txn",
     json.dumps({"success": [put_op("p1"), put_op("p2", lease=999)]}), 404, LEASE_NOT_FOUND),
    ("put with a missing lease", "POST", "/v3/kv/put", '{"key":"cDM=","value":"MQ==","lease":999}',
     404, LEASE_NOT_FOUND),
    ("put with lease and ignore_lease", "POST", "/v3/kv/put",
     '{"key":"cDM=","value":"MQ==","lease":1,"ignore_lease":true}', 400,
     err("etcdserver: lease is provided")),
    ("ignore_value on a missing key", "POST", "/v3/kv/put", '{"key":"cDM=","ignore_value":true}',
     400, err("etcdserver: key not found")),
    ("put of a 1,600,000-byte value", "POST", "/v3/kv/put",
     json.dumps({"key": b64("big"), "value": b64(b"a" * 1600000)}), 400, TOO_LARGE),
]


def exact(want):
    return not isinstance(want, dict) or str(want.get("error", "")).startswith("etcdserver:")


def check_answer(label, st, body, want_st, want):
    assert st == want_st, "%s: HTTP %s %r, want %s %r" % (label, st, body, want_st, want)
    if exact(want):
        got = body.strip() if isinstance(body, str) and isinstance(want, str) else body
        w = want.strip() if isinstance(want, str) and isinstance(body, str) else want
        ct.check_equal(got, w, label)
    else:
        assert isinstance(body, dict), "%s: body %r is not a JSON error" % (label, body)
        assert body.get("code") == want["code"], "%s: code %r, want %r" % (label, body.get("code"),
                                                                          want["code"])
        assert isinstance(body.get("error"), str) and body["error"], "%s: no error text" % label
        assert body.get("message") == body["error"], "%s: message differs from error" % label
        assert set(body) == {"error", "message", "code"}, "%s: fields %s" % (label, sorted(body))


_srv = {}


def shared():
    """One server for the cases that must not change anything."""
    s = _srv.get("s")
    if s is None or not s.alive():
        s = ct.Server().start()
        s.keep = True
        s.put("a", "1")
        _srv["s"] = s
    return s


def same_conn_check(srv, conn, sockname, label, allow_close=False):
    """The keep-alive connection is still the same socket and still serves."""
    if conn.sock is None:
        assert allow_close, "%s: server closed the keep-alive connection" % label
        return
    assert conn.sock.getsockname() == sockname, "%s: connection was replaced" % label
    st, body = srv.post("/v3/kv/range", {"key": b64("a")}, conn=conn)
    assert st == 200 and body["kvs"][0]["value"] == b64("1"), "%s: follow-up read %s %r" % (label, st, body)
    assert conn.sock is not None and conn.sock.getsockname() == sockname, \
        "%s: follow-up read needed a new connection" % label


def test_each_bad_request_gets_etcds_answer():
    """Malformed JSON, wrong types, bad base64, bad paths/methods, txn limits: etcd's status and error, nothing written, connection kept."""
    srv = shared()
    conn = srv.conn(timeout=30)
    srv.post("/v3/kv/range", {"key": b64("a")}, conn=conn)
    sockname = conn.sock.getsockname()
    failures = []
    for label, method, path, raw, want_st, want in CASES:
        rev = srv.revision()
        try:
            st, body = srv.post(path, raw=raw if raw is not None else None, conn=conn, method=method,
                                obj=None, timeout=30)
            check_answer(label, st, body, want_st, want)
            assert srv.alive(), "%s: server died" % label
            assert srv.revision() == rev, "%s: revision moved %d -> %d" % (label, rev, srv.revision())
            same_conn_check(srv, conn, sockname, label)
        except AssertionError as e:
            failures.append(str(e))
            conn.close()
            conn = srv.conn(timeout=30)
            srv.post("/v3/kv/range", {"key": b64("a")}, conn=conn)
            sockname = conn.sock.getsockname()
        except Exception as e:
            failures.append("%s: %r" % (label, e))
            if not srv.alive():
                break
            conn.close()
            conn = srv.conn(timeout=30)
            srv.post("/v3/kv/range", {"key": b64("a")}, conn=conn)
            sockname = conn.sock.getsockname()
    conn.close()
    for k in ("d", "d1", "p1", "p2", "p3", "q", "big", "t000"):
        body = srv.get(k)
        if body.get("kvs"):
            failures.append("partial write visible: %s = %r" % (k, body["kvs"]))
    assert not failures, "%d of %d cases wrong:\n  %s" % (len(failures), len(CASES),
                                                         "\n  ".join(failures))


def test_unknown_fields_are_ignored():
    """Like etcd, unknown JSON fields are ignored: a range and a put with extra fields succeed."""
    srv = shared()
    st, plain = srv.post("/v3/kv/range", {"key": b64("a")})
    st2, extra = srv.post("/v3/kv/range", {"key": b64("a"), "bogus": 1, "nested": {"x": [1]}})
    assert (st, st2) == (200, 200), (st, st2, extra)
    ct.check_equal(ct.normalize(extra), ct.normalize(plain), "range with unknown fields")
    rev = srv.revision()
    st, body = srv.post("/v3/kv/put", {"key": b64("u"), "value": b64("v"), "bogus": True})
    assert st == 200, (st, body)
    assert int(body["header"]["revision"]) == rev + 1, body
    assert srv.get("u")["kvs"][0]["value"] == b64("v")


def test_lenient_inputs_etcd_accepts():
    """Inputs etcd accepts: 64-bit integers as strings, enum as number, negative limit, /v3beta alias, TTL below minimum."""
    srv = shared()
    for body in ({"key": b64("a"), "limit": "1"}, {"key": b64("a"), "sort_order": 2},
                 {"key": b64("a"), "limit": -1}):
        st, r = srv.post("/v3/kv/range", body)
        assert st == 200 and r["count"] == "1" and r["kvs"][0]["key"] == b64("a"), (body, st, r)
    st, r = srv.post("/v3beta/kv/range", {"key": b64("a")})
    assert st == 200 and r["kvs"][0]["value"] == b64("1"), (st, r)
    st, r = srv.post("/v3/lease/grant", {"TTL": -5})
    assert st == 200 and r["TTL"] == "2", (st, r)   # etcd raises a TTL to its minimum
    srv.post("/v3/lease/revoke", {"ID": r["ID"]})


def test_txn_limits_are_per_branch():
    """128 operations per branch is allowed (etcd counts success, failure and compares separately)."""
    srv = shared()
    rev = srv.revision()
    st, r = srv.post("/v3/kv/txn", {"success": [put_op("m%03d" % i) for i in range(128)]})
    assert st == 200 and r.get("succeeded") is True and len(r["responses"]) == 128, (st, str(r)[:200])
    assert int(r["header"]["revision"]) == rev + 1, r["header"]
    both = {"success": [{"request_range": {"key": b64("m000")}}] * 65,
            "failure": [{"request_range": {"key": b64("m000")}}] * 65}
    st, r = srv.post("/v3/kv/txn", both)
    assert st == 200 and len(r["responses"]) == 65, (st, str(r)[:200])
    assert srv.revision() == rev + 1
    # The same key in success and failure is not a duplicate: only one branch runs.
    st, r = srv.post("/v3/kv/txn", {"success": [put_op("sf", "1")], "failure": [put_op("sf", "2")]})
    assert st == 200 and r.get("succeeded") is True, (st, r)
    assert srv.get("sf")["kvs"][0]["value"] == b64("1")


def test_request_size_limit_lowered():
    """With --max-request-bytes 10000, a 9,000-byte put works and 20,000-byte put/txn get 400 "request is too large"."""
    srv = ct.Server(max_request_bytes=10000).start()
    srv.put("a", "1")
    conn = srv.conn()
    st, r = srv.post("/v3/kv/put", {"key": b64("x"), "value": b64("a" * 9000)}, conn=conn)
    assert st == 200, (st, r)
    sockname = conn.sock.getsockname()
    rev = srv.revision()
    for label, path, body in (
            ("put 20,000 bytes", "/v3/kv/put", {"key": b64("x"), "value": b64("b" * 20000)}),
            ("txn with a 20,000-byte put", "/v3/kv/txn",
             {"success": [put_op("x", "c" * 20000)]})):
        st, r = srv.post(path, body, conn=conn)
        check_answer(label, st, r, 400, TOO_LARGE)
        assert srv.revision() == rev, label
        same_conn_check(srv, conn, sockname, label, allow_close=True)
    assert srv.get("x")["kvs"][0]["value"] == b64("a" * 9000)
    conn.close()


def test_far_oversized_request():
    """A 3,000,000-byte put is refused (etcd: 429 code 8 from its gRPC limit) and nothing is written."""
    srv = shared()
    rev = srv.revision()
    st, r = srv.post("/v3/kv/put", {"key": b64("huge"), "value": b64(b"h" * 3000000)}, timeout=60)
    # etcd answers 429 {"code":8,"error":"grpc: received message larger than max (3000008 vs. 2097152)"};
    # the general "request is too large" answer is accepted too.
    ok = (st == 429 and isinstance(r, dict) and r.get("code") == 8) or \
         (st == 400 and r == TOO_LARGE)
    assert ok, (st, r)
    assert srv.alive() and srv.revision() == rev
    assert not srv.get("huge").get("kvs")


def test_malformed_http():
    """Raw malformed HTTP (garbage, bad Content-Length, huge header, short body) never gets 2xx/5xx, and the server keeps serving."""
    srv = shared()
    probes = [
        ("garbage request line", b"GARBAGE\r\n\r\n"),
        ("binary junk", b"\x00\x01\x02\xff\r\n\r\n"),
        ("bad Content-Length", b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"),
        ("header of 2 MB", b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000000
         + b"\r\nContent-Length: 2\r\n\r\n{}"),
        ("body shorter than Content-Length", b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: 50\r\n\r\n{\"key\":\"cg==\",\"val"),
    ]
    rev = srv.revision()
    for label, raw in probes:
        resp = ct.raw_http(srv.port, raw, timeout=2)
        st = ct.status_of(resp) if resp else None
        assert st is None or 400 <= st < 500, "%s: answered %r" % (label, resp[:200])
        assert srv.alive(), "%s: server died" % label
        st, r = srv.post("/v3/kv/range", {"key": b64("a")})
        assert st == 200, "%s: server stopped serving: %s %r" % (label, st, r)
    assert srv.revision() == rev
    assert not srv.get("r").get("kvs")
    # A chunked body is valid HTTP/1.1 and must be understood.
    resp = ct.raw_http(srv.port, b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n"
                       b"e\r\n{\"key\":\"YQ==\"}\r\n0\r\n\r\n", timeout=5)
    assert ct.status_of(resp) == 200 and b"MQ==" in resp, resp[:300]


def test_server_exits_cleanly_after_abuse():
    """After all of the above the server still shuts down cleanly on SIGTERM."""
    srv = shared()
    assert srv.alive()
    srv.terminate()
    _srv.pop("s", None)


if __name__ == "__main__":
    ct.run(globals())
