"""Shared harness for the end-to-end tests: a fresh capstan-server on
loopback ports in a temporary data directory, real kubectl binaries, and raw
HTTP helpers. Everything started here is stopped by the integration harness'
cleanup (tests/integration/capstan_test.py)."""

import http.client
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import capstan_test as ct  # noqa: E402

SERVER_BIN = os.path.join(ct.BUILDDIR, "capstan-server")
KUBECTL_DIR = "/usr/lib/google-cloud-sdk/bin"


def kubectl_path(version):
    return os.path.join(KUBECTL_DIR, "kubectl." + version)


def kubectl_versions():
    """The oldest and the newest versioned kubectl present (1.27 and 1.33)."""
    return [v for v in ("1.27", "1.33") if os.access(kubectl_path(v), os.X_OK)]


class ApiServer:
    """One capstan-server process with its own data directory and ports."""

    def __init__(self, extra=None, data_dir=None, peer_port=None, agent=False):
        self.data_dir = data_dir or ct.mktemp("capstan-e2e-")
        self.port = ct.free_port()
        # A restarted member keeps its peer address: it is its raft identity.
        self.peer_port = peer_port or ct.free_port()
        self.extra = list(extra or [])
        self.agent = agent      # run the server's own node agent
        self.proc = None
        self.keep = True
        self.log_path = os.path.join(self.data_dir, "server.log")
        self.kubeconfig = os.path.join(self.data_dir, "kubeconfig")

    def start(self, timeout=30):
        if not os.access(SERVER_BIN, os.X_OK):
            raise AssertionError("capstan-server not built at %s" % SERVER_BIN)
        argv = [SERVER_BIN, "--data-dir", self.data_dir,
                "--listen", "127.0.0.1:%d" % self.port,
                "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer_port]
        argv += [] if self.agent else ["--no-agent"]
        argv += self.extra
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log,
                                     start_new_session=True)
        ct._live.append(self)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("capstan-server exited early:\n" + self.log_tail())
            try:
                code, body, _ = self.request("GET", "/readyz", timeout=2)
                if code == 200 and body == b"ok":
                    self.printed = self.proc.stdout.readline().decode().strip()
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("capstan-server not ready:\n" + self.log_tail())

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def terminate(self, timeout=20):
        """SIGTERM; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        finally:
            self._forget()
        return rc

    def _hard_stop(self):
        if self.proc is not None and self.proc.poll() is None:
            ct._kill_group(self.proc, signal.SIGKILL)
            self.proc.wait()
        self._forget()

    def _forget(self):
        if self in ct._live:
            ct._live.remove(self)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if getattr(self, "log", None) is not None:
            self.log.close()
            self.log = None

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            hdrs = {"Content-Type": "application/json"} if body is not None else {}
            hdrs.update(headers or {})
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return r.status, r.read(), r.getheader("Content-Type")
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None):
        code, data, _ = self.request(method, path, body, headers)
        return code, json.loads(data) if data else None

    def kubectl_argv(self, version, *args):
        """The command line of a kubectl call against this server."""
        return [kubectl_path(version), "--kubeconfig", self.kubeconfig] + list(args)

    def kubectl(self, version, *args, stdin=None, timeout=60):
        """Runs kubectl; returns (exit code, stdout, stderr)."""
        p = subprocess.run(self.kubectl_argv(version, *args),
                           input=stdin.encode() if stdin is not None else None,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def must(self, version, *args, stdin=None):
        rc, out, err = self.kubectl(version, *args, stdin=stdin)
        if rc != 0:
            raise AssertionError("kubectl %s %s failed (%d): %s" % (version, " ".join(args), rc, err))
        return out


class WatchStream:
    """A raw watch: one JSON event per line."""

    def __init__(self, port, path, timeout=10):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def next(self):
        line = self.resp.readline()
        if not line:
            return None
        return json.loads(line)

    def close(self):
        self.conn.close()
