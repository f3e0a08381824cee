"""Shared harness for the integration tests.

Starts real store processes on loopback ports in temporary data directories,
talks etcd's v3 JSON gateway to them, and always stops what it started.

Environment:
  CAPSTAN_BUILDDIR     where capstan-store and capstan are (default: build/ or .)
  CAPSTAN_SRCDIR       the source tree (default: two levels above this file)
  CAPSTAN_TEST_TARGET  "capstan" (default) or "etcd": which server is under test
"""

import atexit
import base64
import fcntl
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("CAPSTAN_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
BUILDDIR = os.environ.get("CAPSTAN_BUILDDIR") or (
    os.path.join(SRCDIR, "build") if os.path.isdir(os.path.join(SRCDIR, "build")) else SRCDIR)
TARGET = os.environ.get("CAPSTAN_TEST_TARGET", "capstan").strip().lower() or "capstan"
if TARGET not in ("capstan", "etcd"):
    sys.stderr.write("CAPSTAN_TEST_TARGET must be 'capstan' or 'etcd'\n")
    sys.exit(99)

STORE_BIN = os.path.join(BUILDDIR, "capstan-store")
CLI_BIN = os.path.join(BUILDDIR, "capstan")
ETCD_BIN = shutil.which("etcd")

# Default request size limit of etcd (and capstan-store): 1.5 MiB.
DEFAULT_MAX_REQUEST_BYTES = 1572864


def b64(s):
    """base64 of a str or bytes, as the gateway wants it."""
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def unb64(s):
    return base64.b64decode(s).decode("utf-8", "replace")


def vectors_dir():
    """Directory holding etcd's recorded transcripts.

    The tests carry their own copy in tests/integration/vectors/, so they never
    depend on anything outside the repository; the reference copy beside the
    clone is only a fallback."""
    cands = [os.path.join(HERE, "vectors"),
             os.path.join(SRCDIR, "..", "shared", "reference", "etcd-gateway"),
             "/work/shared/reference/etcd-gateway"]
    for c in cands:
        if os.path.isfile(os.path.join(c, "kv1.txt")):
            return c
    raise RuntimeError("etcd transcripts not found in %s" % cands)


# ---------------------------------------------------------------- processes

_live = []          # every Server started and not yet stopped
_tmpdirs = []       # every temporary directory made
_lock = threading.Lock()


# Test servers listen on ports below the kernel's ephemeral range (32768-60999
# by default), so no client socket and no bind to port 0, in this process or
# any other, is ever given one: a port stays ours while its server restarts.
# The next port to hand out is a counter shared by every test process of a
# run (make check runs them in parallel) in a file under a lock, so two tests
# never get the same port. 30000 and up is left to Services' nodePorts.
_PORT_LO, _PORT_HI = 24000, 30000
_PORT_FILE = os.path.join(tempfile.gettempdir(), "capstan-test-ports")


def _bindable(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port():
    """A loopback port nobody listens on, handed to no other test of this run."""
    with _lock:
        fd = os.open(_PORT_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                nxt = int(os.read(fd, 32) or b"x")
            except ValueError:
                nxt = _PORT_LO
            for _ in range(_PORT_HI - _PORT_LO):
                port = nxt if _PORT_LO <= nxt < _PORT_HI else _PORT_LO
                nxt = port + 1
                if port not in _used_ports and _bindable(port):
                    break
            else:
                raise ServerError("no free loopback port in %d-%d" % (_PORT_LO, _PORT_HI - 1))
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, b"%d" % nxt)
        finally:
            os.close(fd)        # and with it the lock
        _used_ports.add(port)
        return port


_used_ports = set()


def mktemp(prefix="capstan-it-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


def _kill_group(p, sig):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def cleanup():
    """Stop every process we started and remove every temp dir. Idempotent."""
    for srv in list(_live):
        try:
            srv._hard_stop()
        except Exception:
            pass
    for d in list(_tmpdirs):
        shutil.rmtree(d, ignore_errors=True)
        _tmpdirs.remove(d)


atexit.register(cleanup)


def _on_signal(signum, frame):
    cleanup()
    os._exit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        signal.signal(_s, _on_signal)
    except Exception:
        pass


class ServerError(Exception):
    pass


class Server:
    """One store process (capstan-store or etcd) on free loopback ports."""

    def __init__(self, target=None, max_request_bytes=None, snapshot_count=None,
                 name="s1", data_dir=None, extra_args=()):
        self.target = target or TARGET
        self.name = name
        self.port = free_port()
        self.peer_port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.peer_url = "http://127.0.0.1:%d" % self.peer_port
        self.workdir = mktemp()
        self.data_dir = data_dir or os.path.join(self.workdir, "data")
        self.max_request_bytes = max_request_bytes
        self.snapshot_count = snapshot_count
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(self.workdir, "server.log")
        self.starts = 0

    # -- command line
    def argv(self):
        if self.target == "etcd":
            if not ETCD_BIN:
                raise ServerError("etcd is not installed")
            binary = ETCD_BIN
        else:
            binary = STORE_BIN
        a = [binary,
             "--name", self.name,
             "--data-dir", self.data_dir,
             "--listen-client-urls", self.url,
             "--advertise-client-urls", self.url,
             "--listen-peer-urls", self.peer_url,
             "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", "%s=%s" % (self.name, self.peer_url),
             "--initial-cluster-state", "new",
             "--log-level", "info"]
        if self.snapshot_count is not None:
            a += ["--snapshot-count", str(self.snapshot_count)]
        if self.max_request_bytes is not None:
            a += ["--max-request-bytes", str(self.max_request_bytes)]
        if self.target == "etcd":
            a += ["--logger", "zap"]
        return a + self.extra_args

    # -- life cycle
    def start(self, timeout=30, expect_ready=True):
        """Start the process; wait until it answers POST /v3/maintenance/status."""
        if self.target == "capstan" and not os.access(STORE_BIN, os.X_OK):
            raise ServerError("%s not built" % STORE_BIN)
        self.starts += 1
        logf = open(self.log_path, "ab")
        logf.write(("\n==== start %d: %s\n" % (self.starts, " ".join(self.argv()))).encode())
        logf.flush()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=logf, start_new_session=True)
        logf.close()
        with _lock:
            if self not in _live:
                _live.append(self)
        if not expect_ready:
            return self
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise ServerError("server exited with %s during start-up:\n%s"
                                  % (self.proc.returncode, self.log_tail()))
            try:
                st, body = self.post("/v3/maintenance/status", {}, timeout=2)
                if st == 200 and isinstance(body, dict) and "header" in body:
                    return self
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        self._hard_stop()
        raise ServerError("server did not answer within %ss:\n%s" % (timeout, self.log_tail()))

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL the whole process group and reap it."""
        if self.proc is None:
            return
        _kill_group(self.proc, signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._forget()

    def terminate(self, timeout=20, check=True):
        """SIGTERM, wait; for capstan-store assert a clean exit 0. Returns the exit code."""
        if self.proc is None:
            return None
        p = self.proc
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(p, signal.SIGKILL)
            p.wait(10)
            self._forget()
            raise AssertionError("server did not exit within %ss of SIGTERM" % timeout)
        _kill_group(p, signal.SIGKILL)   # anything it left behind in its group
        self._forget()
        if check and self.target == "capstan" and rc != 0:
            raise AssertionError("capstan-store exited %s on SIGTERM:\n%s" % (rc, self.log_tail()))
        return rc

    def restart(self, timeout=30):
        """Stop if running (SIGKILL) and start again on the same data dir and ports."""
        if self.alive():
            self.kill9()
        return self.start(timeout=timeout)

    def _hard_stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                _kill_group(self.proc, signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            _kill_group(self.proc, signal.SIGKILL)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._forget()

    def _forget(self):
        with _lock:
            if self in _live:
                _live.remove(self)

    def stop(self):
        self._hard_stop()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self._hard_stop()

    # -- talking to it
    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def post(self, path, obj=None, timeout=10, raw=None, conn=None, method="POST", headers=None):
        """POST JSON (or raw bytes); returns (http_status, parsed JSON or text)."""
        return post_to(self.port, path, obj, timeout=timeout, raw=raw, conn=conn,
                       method=method, headers=headers)

    def must(self, path, obj=None, timeout=10):
        st, body = self.post(path, obj, timeout=timeout)
        if st != 200:
            raise AssertionError("%s %s -> %s %s" % (path, json.dumps(obj), st, body))
        return body

    def revision(self):
        return int(self.must("/v3/kv/range", {"key": b64("\0")})["header"]["revision"])

    def put(self, key, value, **kw):
        d = {"key": b64(key), "value": b64(value)}
        d.update(kw)
        return self.must("/v3/kv/put", d)

    def get(self, key, **kw):
        d = {"key": b64(key)}
        d.update(kw)
        return self.must("/v3/kv/range", d)

    def watch(self, body, timeout=10):
        return WatchStream(self.port, body, timeout=timeout)

    def files(self):
        """Every file under the data dir (relative paths)."""
        out = []
        for root, _, names in os.walk(self.data_dir):
            for n in names:
                out.append(os.path.relpath(os.path.join(root, n), self.data_dir))
        return sorted(out)


def parse_body(data):
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def post_to(port, path, obj=None, timeout=10, raw=None, conn=None, method="POST", headers=None):
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if raw is not None:
            body = raw if isinstance(raw, bytes) else raw.encode()
        elif obj is None:
            body = b"" if method != "POST" else b"{}"
        else:
            body = json.dumps(obj).encode()
        h = {"Content-Type": "application/json"}
        if headers:
            h.update(headers)
        conn.request(method, path, body=body if (body or method == "POST") else None, headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, parse_body(data)
    finally:
        if own:
            conn.close()


class WatchStream:
    """A streaming POST /v3/watch: send the body, then read result frames."""

    def __init__(self, port, body, timeout=10):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        if isinstance(body, (dict, list)):
            if isinstance(body, list):
                raw = "".join(json.dumps(b) for b in body).encode()
            else:
                raw = json.dumps(body).encode()
        else:
            raw = body.encode() if isinstance(body, str) else body
        self.conn.request("POST", "/v3/watch", body=raw,
                          headers={"Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self._buf = b""
        self._dec = json.JSONDecoder()

    def next(self, timeout=5):
        """The next frame (parsed JSON), or None on timeout / end of stream."""
        deadline = time.time() + timeout
        while True:
            s = self._buf.lstrip()
            if s:
                try:
                    obj, end = self._dec.raw_decode(s.decode("utf-8"))
                    consumed = len(s.decode("utf-8")[:end].encode())
                    self._buf = s[consumed:]
                    return obj
                except ValueError:
                    pass
            left = deadline - time.time()
            if left <= 0:
                return None
            try:
                self.conn.sock.settimeout(left)
                chunk = self.resp.read1(65536)
            except (socket.timeout, TimeoutError):
                return None
            except (OSError, http.client.HTTPException, ValueError, AttributeError):
                return None
            if not chunk:
                return None
            self._buf += chunk

    def frames(self, n, timeout=5):
        out = []
        deadline = time.time() + timeout
        while len(out) < n:
            f = self.next(max(0.01, deadline - time.time()))
            if f is None:
                break
            out.append(f)
        return out

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


# ---------------------------------------------------------------- raw sockets

def raw_http(port, data, timeout=5, read_all=True):
    """Send raw bytes to the port; return everything read until close or timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                c = s.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except ConnectionResetError:
                break
            if not c:
                break
            chunks.append(c)
            if not read_all:
                break
        return b"".join(chunks)
    finally:
        s.close()


def status_of(raw_response):
    """HTTP status code from a raw response, or None."""
    try:
        line = raw_response.split(b"\r\n", 1)[0].decode()
        return int(line.split()[1])
    except Exception:
        return None


# ---------------------------------------------------------------- comparing

VOLATILE = {"cluster_id", "member_id", "raft_term"}


def normalize(x, drop=VOLATILE):
    """Drop fields that differ legitimately between two servers."""
    if isinstance(x, dict):
        return {k: normalize(v, drop) for k, v in x.items() if k not in drop}
    if isinstance(x, list):
        return [normalize(v, drop) for v in x]
    return x


def diff(a, b, path="$"):
    """A list of human-readable differences between two JSON values."""
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                out.append("%s.%s: missing (want %r)" % (path, k, b[k]))
            elif k not in b:
                out.append("%s.%s: unexpected %r" % (path, k, a[k]))
            else:
                out += diff(a[k], b[k], "%s.%s" % (path, k))
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append("%s: %d items, want %d (%r vs %r)" % (path, len(a), len(b), a, b))
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                out += diff(x, y, "%s[%d]" % (path, i))
    elif a != b:
        out.append("%s: got %r, want %r" % (path, a, b))
    return out


def check_equal(got, want, what=""):
    d = diff(got, want)
    if d:
        raise AssertionError("%s\n  " % what + "\n  ".join(d[:20]))


# ---------------------------------------------------------------- runner

def run(module_globals, argv=None):
    """Run every test_* function of the calling module in definition order.

    Prints PASS/FAIL per test and "N passed, N failed"; exits 0 only if all
    passed. A test never skips: a missing binary is a failure."""
    argv = sys.argv[1:] if argv is None else argv
    tests = [(n, f) for n, f in module_globals.items()
             if n.startswith("test_") and callable(f)]
    tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
    if argv:
        tests = [t for t in tests if any(a in t[0] for a in argv)]
    passed = failed = 0
    print("# target: %s" % (TARGET if TARGET == "etcd" else "capstan-store (%s)" % STORE_BIN))
    sys.stdout.flush()
    for name, fn in tests:
        doc = (fn.__doc__ or "").strip().splitlines()
        t0 = time.time()
        try:
            fn()
            passed += 1
            print("PASS %s (%.1fs)%s" % (name, time.time() - t0, " - " + doc[0] if doc else ""))
        except BaseException as e:  # noqa: includes AssertionError and KeyboardInterrupt
            if isinstance(e, KeyboardInterrupt):
                cleanup()
                raise
            failed += 1
            print("FAIL %s (%.1fs)%s" % (name, time.time() - t0, " - " + doc[0] if doc else ""))
            for line in traceback.format_exc().rstrip().splitlines():
                print("    " + line)
        finally:
            # Servers started by a test die with it.
            for srv in list(_live):
                if getattr(srv, "keep", False):
                    continue
                srv._hard_stop()
        sys.stdout.flush()
    cleanup()
    print("%d passed, %d failed" % (passed, failed))
    sys.stdout.flush()
    sys.exit(0 if failed == 0 and passed > 0 else 1)


def server(**kw):
    """Start a fresh server of the target under test."""
    return Server(**kw).start()


def wait_until(pred, timeout=10, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)
