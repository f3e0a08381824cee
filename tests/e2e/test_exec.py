"""End to end: kubectl exec with every supported kubectl. kubectl 1.27-1.29
speak SPDY/3.1 and 1.30+ websockets (v5.channel.k8s.io); either way the
command runs inside the container (its mount namespace with the volumes at
their mountPath, its working directory and env, its network namespace),
its output arrives whole, stdin reaches it, and its exit code is kubectl's."""

import fcntl
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import termios
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_harness as kh  # noqa: E402
import test_pods as tp  # noqa: E402

ct = kh.ct

SPDY_VERSIONS = [v for v in ("1.27", "1.28", "1.29") if os.access(kh.kubectl_path(v), os.X_OK)]
WS_VERSIONS = [v for v in ("1.33",) if os.access(kh.kubectl_path(v), os.X_OK)]


def exec_pod(name, mount):
    """A running pod with an emptyDir at mount (a path the host does not
    have), an env var, a working directory, and a file its container wrote
    into the volume."""
    tp.agent()
    tp.create_pod({"container": {"env": [{"name": "GREETING", "value": "from-the-pod"}],
                                 "workingDir": "/tmp",
                                 "volumeMounts": [{"name": "scratch", "mountPath": mount}]},
                   "volumes": [{"name": "scratch", "emptyDir": {}}]},
                  name, command=["sh", "-c", "echo written-by-the-container > %s/f; "
                                 "exec sleep 3600" % mount])
    tp.wait_pod(name, tp.running, what="pod running")
    return name


def container_pid(name):
    """The pid of the container's main process (the shim's child)."""
    pg = tp.pgid_of(name)
    assert pg is not None
    with open("/proc/%d/task/%d/children" % (pg, pg)) as f:
        kids = f.read().split()
    assert len(kids) == 1, kids
    return int(kids[0])


def test_exec_every_kubectl():
    """Output, exit codes, stdin, separate stderr and 1 MiB each way, over SPDY (1.27-1.29, and 1.33 told to) and websocket (1.33)."""
    s = tp.server()
    name = exec_pod("exec-all", os.path.join(ct.mktemp("capstan-exec-"), "vol"))
    assert SPDY_VERSIONS and SPDY_VERSIONS[0] == "1.27", SPDY_VERSIONS
    assert WS_VERSIONS == ["1.33"], WS_VERSIONS
    seq = "".join("%d\n" % i for i in range(1, 200001))
    big = "".join("%07d\n" % i for i in range(131072))   # 1 MiB
    for v in SPDY_VERSIONS + WS_VERSIONS:
        rc, out, err = s.kubectl(v, "exec", name, "--", "echo", "hi")
        assert (rc, out) == (0, "hi\n"), (v, rc, out, err)
        # A non-zero exit is kubectl's exit code, with the kubelet's wording.
        rc, out, err = s.kubectl(v, "exec", name, "--", "sh", "-c", "exit 3")
        assert rc == 3 and "command terminated with exit code 3" in err, (v, rc, out, err)
        # stdin reaches the command and its end ends the command.
        rc, out, err = s.kubectl(v, "exec", "-i", name, "--", "cat", stdin="abc\n")
        assert (rc, out) == (0, "abc\n"), (v, rc, out, err)
        # stderr arrives on kubectl's stderr, not its stdout.
        rc, out, err = s.kubectl(v, "exec", name, "--", "sh", "-c", "echo out; echo oops >&2")
        assert rc == 0 and out == "out\n" and "oops" in err and "oops" not in out, (v, rc, out, err)
        # Large output arrives whole and in order (no flow-control stall).
        rc, out, err = s.kubectl(v, "exec", name, "--", "seq", "1", "200000", timeout=120)
        assert rc == 0 and out == seq, (v, rc, len(out), err)
        # Large input arrives whole.
        rc, out, err = s.kubectl(v, "exec", "-i", name, "--", "cat", stdin=big, timeout=120)
        assert rc == 0 and out == big, (v, rc, len(out), err)
        # A missing command fails with its name; a missing pod is NotFound.
        rc, out, err = s.kubectl(v, "exec", name, "--", "/no/such/binary")
        assert rc != 0 and "/no/such/binary" in err, (v, rc, out, err)
        rc, out, err = s.kubectl(v, "exec", "no-such-pod", "--", "true")
        assert rc != 0 and "NotFound" in err, (v, rc, out, err)
    # kubectl 1.30+ told not to use websockets speaks SPDY, offering v5
    # first: the server picks v4, and everything works the same.
    os.environ["KUBECTL_REMOTE_COMMAND_WEBSOCKETS"] = "false"
    try:
        rc, out, err = s.kubectl("1.33", "exec", "-i", name, "--", "sh", "-c", "cat; exit 4",
                                 stdin="via spdy\n")
        assert (rc, out) == (4, "via spdy\n") and "exit code 4" in err, (rc, out, err)
    finally:
        del os.environ["KUBECTL_REMOTE_COMMAND_WEBSOCKETS"]
    tp.delete_and_wait(name)


def pids_running(*argv):
    """Pids of live processes other than kubectl whose command line ends
    with argv (an image's wrapper may come before it)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().decode("utf-8", "replace").split("\0")[:-1]
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        if (cmd[-len(argv):] == list(argv) and "kubectl" not in cmd[0] and
                st[st.rfind(")") + 2] not in "ZX"):
            out.append(int(d))
    return out


def test_exec_killed_with_its_client():
    """When kubectl goes away mid-command (SPDY and websocket), the command is killed, and the agent serves on."""
    s = tp.server()
    name = exec_pod("exec-gone", os.path.join(ct.mktemp("capstan-exec-"), "vol"))
    for v, mark in ((SPDY_VERSIONS[0], "7781"), (WS_VERSIONS[0], "7782")):
        p = subprocess.Popen(s.kubectl_argv(v, "exec", name, "--", "sleep", mark),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ct.wait_until(lambda: len(pids_running("sleep", mark)) == 1, timeout=20,
                          what="the command running")
        finally:
            p.kill()
            p.wait()
        ct.wait_until(lambda: pids_running("sleep", mark) == [], timeout=20,
                      what="the command killed after kubectl %s went away" % v)
        assert s.must(v, "exec", name, "--", "echo", "still") == "still\n"
    tp.delete_and_wait(name)


def test_exec_inside_the_container():
    """exec sees the container's volume at its mountPath, its env and working directory, and joins its namespaces."""
    s = tp.server()
    mount = os.path.join(ct.mktemp("capstan-exec-"), "vol")
    name = exec_pod("exec-inside", mount)
    assert not os.path.exists(mount + "/f")        # only inside the container
    pid = container_pid(name)
    want_mnt = os.readlink("/proc/%d/ns/mnt" % pid)
    want_net = os.readlink("/proc/%d/ns/net" % pid)
    assert want_mnt != os.readlink("/proc/self/ns/mnt")
    for v in (SPDY_VERSIONS[:1] + WS_VERSIONS):
        out = ct.wait_until(lambda: (lambda r: r[1] if r[0] == 0 else None)(
            s.kubectl(v, "exec", name, "--", "cat", mount + "/f")),
            timeout=20, what="the container's file through exec")
        assert out == "written-by-the-container\n", (v, out)
        out = s.must(v, "exec", name, "--", "sh", "-c", 'echo "$GREETING $(pwd)"')
        assert out == "from-the-pod /tmp\n", (v, out)
        out = s.must(v, "exec", name, "--", "sh", "-c",
                     "readlink /proc/self/ns/mnt; readlink /proc/self/ns/net")
        assert out.split() == [want_mnt, want_net], (v, out, want_mnt, want_net)
        # What exec writes to the volume the container sees, not the host.
        s.must(v, "exec", name, "--", "sh", "-c", "echo from-exec-%s > %s/g" % (v, mount))
        out = s.must(v, "exec", name, "--", "cat", mount + "/g")
        assert out == "from-exec-%s\n" % v, out
        assert not os.path.exists(mount + "/g")
    tp.delete_and_wait(name)


def test_exec_joins_the_containers_network_and_uts_namespaces():
    """A container in network and UTS namespaces of its own: exec sees its hostname and its interfaces, not the host's."""
    s = tp.server()
    tp.agent()
    name = "exec-ns"
    tp.create_pod({}, name, command=["/usr/bin/unshare", "--net", "--uts", "/bin/sh", "-c",
                                     "hostname exec-uts-test; ip link set lo up; "
                                     "exec sleep 3600"])
    tp.wait_pod(name, tp.running, what="pod running")
    pid = container_pid(name)
    host_net = os.readlink("/proc/self/ns/net")
    # unshare makes the namespaces after it starts: wait for them.
    net = ct.wait_until(lambda: (lambda n: n if n != host_net else None)(
        os.readlink("/proc/%d/ns/net" % pid)), timeout=20, what="the container's own netns")
    with open("/proc/net/dev") as f:
        host_ifaces = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
    for v in (SPDY_VERSIONS[:1] + WS_VERSIONS):
        out = ct.wait_until(lambda: (lambda r: r[1] if r[0] == 0 and "exec-uts-test" in r[1]
                                     else None)(s.kubectl(v, "exec", name, "--", "hostname")),
                            timeout=20, what="the container's hostname through exec")
        assert out == "exec-uts-test\n", (v, out)
        out = s.must(v, "exec", name, "--", "sh", "-c",
                     "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1")
        lines = [w.strip() for w in out.splitlines()]
        assert lines[0] == net and lines[1:] == ["lo"], (v, out, host_ifaces)
    assert os.uname().nodename != "exec-uts-test"
    tp.delete_and_wait(name)


def kubectl_on_terminal(s, version, *args, typed=b"", rows=33, cols=101):
    """Runs kubectl with a pseudo-terminal of rows x cols as its stdin and
    stdout (what -t needs), typing typed into it; returns (exit code, what
    showed on the terminal, stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    p = subprocess.Popen(s.kubectl_argv(version, *args), stdin=slave, stdout=slave,
                         stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    try:
        if typed:
            os.write(master, typed)
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, "kubectl %s %s hangs" % (version, args)
            try:
                chunk = os.read(master, 4096)
            except OSError:     # EIO: kubectl has exited and closed the terminal
                break
            if not chunk:
                break
            out += chunk
        rc = p.wait(60)
        return rc, out.decode(errors="replace"), p.stderr.read().decode(errors="replace")
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()


def test_exec_with_a_terminal():
    """kubectl exec -it gets a terminal of kubectl's size, stderr on it too, an interactive shell whose background jobs end with it; its exit code is kubectl's, and kubectl logs no error."""
    s = tp.server()
    name = exec_pod("exec-tty", os.path.join(ct.mktemp("capstan-exec-"), "vol"))
    for v in (SPDY_VERSIONS[:1] + WS_VERSIONS):
        # The size comes a moment after the command starts: wait for it.
        # (/bin/sh and the host's stty: busybox's stty fails inside $(...)
        # on a terminal.)
        rc, out, err = kubectl_on_terminal(
            s, v, "exec", "-it", name, "--", "/bin/sh", "-c",
            "tty >/dev/null && echo is-a-tty; while [ \"$(stty size)\" = \"0 0\" ]; do "
            "sleep 0.1; done; stty size; echo err >&2; exit 5")
        # Nothing but the exit: no error from kubectl's terminal-size writer.
        assert rc == 5 and err == "command terminated with exit code 5\n", (v, rc, out, err)
        assert out.replace("\r", "").splitlines() == ["is-a-tty", "33 101", "err"], (v, out)
        # An interactive shell: what is typed runs, and exit ends it, also
        # with a job left in the background (in a process group of its
        # own, holding the terminal): the job goes with the shell.
        rc, out, err = kubectl_on_terminal(s, v, "exec", "-it", name, "--", "sh",
                                           typed=b"sleep 7790 &\recho hel''lo-$((6*7))\r"
                                                 b"exit 3\r")
        assert rc == 3 and "hello-42" in out, (v, rc, out, err)
        ct.wait_until(lambda: pids_running("sleep", "7790") == [], timeout=20,
                      what="the shell's background job gone")
    tp.delete_and_wait(name)


# ---- raw SPDY, for what kubectl never sends

def read_head(sock):
    """The status line and headers of an HTTP answer, read byte by byte so
    that nothing after them is consumed."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return head.decode("latin-1")


def spdy_upgrade(port, pod, protocols=("v4.channel.k8s.io",),
                 query="command=echo&command=raw&stdout=true"):
    """Opens a SPDY exec connection by hand; returns (socket, status line and
    headers)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    req = ("POST /api/v1/namespaces/default/pods/%s/exec?%s HTTP/1.1\r\n"
           "Host: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n" % (pod, query))
    req += "".join("X-Stream-Protocol-Version: %s\r\n" % p for p in protocols)
    sock.sendall((req + "Content-Length: 0\r\n\r\n").encode())
    return sock, read_head(sock)


def read_all(sock):
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data


def frames(data):
    """(control, type or stream id, flags, payload) of each whole frame."""
    out = []
    while len(data) >= 8:
        w0, w1 = struct.unpack(">II", data[:8])
        n = w1 & 0xFFFFFF
        if len(data) < 8 + n:
            break
        ctl = bool(w0 & 0x80000000)
        out.append((ctl, (w0 & 0xFFFF) if ctl else (w0 & 0x7FFFFFFF), w1 >> 24, data[8:8 + n]))
        data = data[8 + n:]
    return out


def ctrl(ftype, flags, payload):
    return struct.pack(">HHI", 0x8003, ftype, flags << 24 | len(payload)) + payload


def data(sid, flags, payload):
    return struct.pack(">II", sid, flags << 24 | len(payload)) + payload


def nv_block(**headers):
    out = struct.pack(">I", len(headers))
    for k, v in headers.items():
        out += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
    return out


class SpdyClient:
    """A SPDY client by hand, for what kubectl never does (flow control).
    Its header blocks are compressed without the dictionary (zlib allows
    that, and so does the server); it never reads the server's blocks."""

    def __init__(self, port, pod, command, query, protocols=("v4.channel.k8s.io",)):
        q = "&".join("command=" + c for c in command) + "&" + query
        self.sock, self.head = spdy_upgrade(port, pod, protocols=protocols, query=q)
        assert self.head.startswith("HTTP/1.1 101"), self.head
        self.comp = zlib.compressobj()
        self.buf = b""
        self.frames = []
        self.next_sid = 1

    def stream(self, streamtype, fin=False):
        sid = self.next_sid
        self.next_sid += 2
        block = self.comp.compress(nv_block(streamtype=streamtype)) + self.comp.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(ctrl(1, 1 if fin else 0, struct.pack(">IIBB", sid, 0, 0, 0) + block))
        return sid

    def read_until(self, pred):
        """Reads frames until pred(all frames so far) holds; False at EOF."""
        while not pred(self.frames):
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buf += chunk
            got = frames(self.buf)
            used = sum(8 + len(f[3]) for f in got)
            self.buf = self.buf[used:]
            self.frames += got
        return True

    def data_on(self, sid):
        return b"".join(f[3] for f in self.frames if not f[0] and f[1] == sid)

    def fin_on(self, sid):
        return any(not f[0] and f[1] == sid and f[2] & 1 for f in self.frames)


def test_spdy_flow_control_honoured_when_the_peer_uses_it():
    """A SPDY client that announces a 4 KiB window gets 4 KiB until its WINDOW_UPDATE, then the rest; stdin is acknowledged with WINDOW_UPDATE."""
    s = tp.server()
    name = exec_pod("exec-flow", os.path.join(ct.mktemp("capstan-exec-"), "vol"))
    want = "".join("%d\n" % i for i in range(1, 30001)).encode()
    c = SpdyClient(s.port, name, ["seq", "1", "30000"], "stdout=true")
    # SETTINGS: INITIAL_WINDOW_SIZE (7) = 4096.
    c.sock.sendall(ctrl(4, 0, struct.pack(">III", 1, 7, 4096)))
    err, out = c.stream("error"), c.stream("stdout")
    assert c.read_until(lambda fs: len(c.data_on(out)) >= 4096)
    # Whatever the command has written meanwhile, nothing beyond the window
    # comes before the server answers a PING sent after it.
    c.sock.sendall(ctrl(6, 0, struct.pack(">I", 1)))
    assert c.read_until(lambda fs: any(f[0] and f[1] == 6 for f in fs))
    assert len(c.data_on(out)) == 4096, len(c.data_on(out))
    # Open the stream's and the session's windows: the rest comes, then the
    # status and GOAWAY.
    c.sock.sendall(ctrl(9, 0, struct.pack(">II", out, 1 << 30)) +
                   ctrl(9, 0, struct.pack(">II", 0, 1 << 30)))
    assert c.read_until(lambda fs: c.fin_on(err) and any(f[0] and f[1] == 7 for f in fs))
    assert c.data_on(out) == want, len(c.data_on(out))
    assert b'"status":"Success"' in c.data_on(err), c.data_on(err)
    c.sock.close()
    # stdin: 100 KiB to cat come back whole, and the server acknowledges
    # what cat consumed with WINDOW_UPDATE on the stdin stream.
    payload = os.urandom(50 * 1024).hex().encode()
    c = SpdyClient(s.port, name, ["cat"], "stdin=true&stdout=true")
    err, sin, out = c.stream("error"), c.stream("stdin"), c.stream("stdout")
    # Each stream is answered with SYN_REPLY before any data goes.
    assert c.read_until(lambda fs: len([f for f in fs if f[0] and f[1] == 2]) == 3)
    for i in range(0, len(payload), 16384):
        c.sock.sendall(data(sin, 0, payload[i:i + 16384]))
    c.sock.sendall(data(sin, 1, b""))
    assert c.read_until(lambda fs: c.fin_on(err))
    assert c.data_on(out) == payload, len(c.data_on(out))
    acked = sum(struct.unpack(">II", f[3])[1] for f in c.frames
                if f[0] and f[1] == 9 and struct.unpack(">II", f[3])[0] == sin)
    assert 32768 <= acked <= len(payload), acked
    c.sock.close()
    tp.delete_and_wait(name)


def test_spdy_older_protocols():
    """A client offering only v3 or v2 of channel.k8s.io gets it: success is an empty error stream, failure a plain message."""
    s = tp.server()
    name = exec_pod("exec-old", os.path.join(ct.mktemp("capstan-exec-"), "vol"))
    for proto in ("v3.channel.k8s.io", "v2.channel.k8s.io"):
        for script, want in (("echo fine", b""), ("echo bad; exit 3", b"exit code 3")):
            c = SpdyClient(s.port, name, ["sh", "-c", script.replace(" ", "+").replace(";", "%3B")],
                           "stdout=true", protocols=(proto,))
            assert "x-stream-protocol-version: %s" % proto in c.head.lower(), c.head
            err, out = c.stream("error"), c.stream("stdout")
            assert c.read_until(lambda fs: c.fin_on(err)), c.frames
            assert c.data_on(out).startswith(b"fine" if not want else b"bad"), c.frames
            got = c.data_on(err)
            assert (got == b"") if not want else (want in got and b"{" not in got), (proto, got)
            c.sock.close()
    tp.delete_and_wait(name)


def test_spdy_bad_input_gets_clear_answers():
    """Garbage after a SPDY upgrade ends that connection with GOAWAY, an unknown protocol gets 400, and the server and agent keep serving."""
    s = tp.server()
    name = exec_pod("exec-raw", os.path.join(ct.mktemp("capstan-exec-"), "vol"))
    # No protocol in common: a 400 Status before any upgrade.
    sock, head = spdy_upgrade(s.port, name, protocols=("v9.channel.k8s.io",))
    body = read_all(sock).decode("latin-1")
    sock.close()
    assert head.startswith("HTTP/1.1 400"), head
    assert "v4.channel.k8s.io" in body, body
    # Not an upgrade at all: 400 naming both ways to ask.
    code, st = s.json("POST", "/api/v1/namespaces/default/pods/%s/exec?command=true" % name)
    assert code == 400 and st["kind"] == "Status" and "SPDY/3.1" in st["message"], (code, st)
    # A good upgrade, then bytes that are no SPDY frame.
    sock, head = spdy_upgrade(s.port, name)
    assert head.startswith("HTTP/1.1 101"), head
    assert "x-stream-protocol-version: v4.channel.k8s.io" in head.lower(), head
    sock.sendall(b"\x80\x02\x00\x01" + b"\xff" * 64)
    got = frames(read_all(sock))
    sock.close()
    assert (True, 7, 0) in [f[:3] for f in got], got    # GOAWAY
    # A SYN_STREAM whose header block needs another dictionary than SPDY's.
    sock, head = spdy_upgrade(s.port, name)
    assert head.startswith("HTTP/1.1 101"), head
    comp = zlib.compressobj(zdict=b"not the spdy dictionary")
    block = comp.compress(nv_block(streamtype="error")) + comp.flush(zlib.Z_SYNC_FLUSH)
    sock.sendall(ctrl(1, 0, struct.pack(">IIBB", 1, 0, 0, 0) + block))
    got = frames(read_all(sock))
    sock.close()
    assert (True, 7, 0) in [f[:3] for f in got], got
    # Everyone still serves.
    for v in (SPDY_VERSIONS[:1] + WS_VERSIONS):
        assert s.must(v, "exec", name, "--", "echo", "still") == "still\n"
    tp.delete_and_wait(name)



# ---- raw websocket, to see when the server sends what

def ws_upgrade(port, pod, query):
    """Opens a websocket (v5.channel.k8s.io) exec connection by hand, as
    kubectl 1.30+ does; returns (socket, status line and headers), having
    read exactly the headers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(("GET /api/v1/namespaces/default/pods/%s/exec?%s HTTP/1.1\r\n"
                  "Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n" % (pod, query)).encode())
    return sock, read_head(sock)


def ws_frames(data):
    """(opcode, payload) of each whole unmasked frame."""
    out = []
    while len(data) >= 2:
        n, off = data[1] & 0x7F, 2
        if n == 126:
            n, off = struct.unpack(">H", data[2:4])[0], 4
        elif n == 127:
            n, off = struct.unpack(">Q", data[2:10])[0], 10
        if len(data) < off + n:
            break
        out.append((data[0] & 0x0F, data[off:off + n]))
        data = data[off + n:]
    return out


def ws_message(channel, payload):
    """A masked binary message on channel (a client's frames are masked)."""
    body = bytes([channel]) + payload
    mask = b"\x01\x02\x03\x04"
    assert len(body) < 126
    return (bytes([0x82, 0x80 | len(body)]) + mask +
            bytes(b ^ mask[i % 4] for i, b in enumerate(body)))


def test_websocket_output_waits_for_the_clients_streams():
    """Websocket output is not sent right after the 101 (kubectl drops messages for streams it has not set up yet) but after a pause, or at once when the client has sent a message."""
    s = tp.server()
    name = exec_pod("exec-ws", os.path.join(ct.mktemp("capstan-exec-"), "vol"))
    # No message from the client: nothing follows the 101 at once, though
    # the command has written its line before the 101 went out.
    sock, head = ws_upgrade(s.port, name, "command=echo&command=hi&stdout=true&stderr=true")
    assert head.startswith("HTTP/1.1 101"), head
    t0 = time.monotonic()
    ready, _, _ = select.select([sock], [], [], 0.03)
    # (Readable later than asked means this process was not running, not
    # that the output came early.)
    assert not ready or time.monotonic() - t0 >= 0.03, "output right after the 101"
    got = ws_frames(read_all(sock))
    sock.close()
    assert got == [(2, b"\x01hi\n"), (2, b'\x03{"metadata":{},"status":"Success"}'),
                   (8, b"\x03\xe8")], got
    # A message from the client shows its streams are set up: stdin, and
    # its end (v5's close of channel 0), are taken, and the output follows.
    sock, head = ws_upgrade(s.port, name, "command=cat&stdin=true&stdout=true&stderr=true")
    assert head.startswith("HTTP/1.1 101"), head
    sock.sendall(ws_message(0, b"typed\n") + ws_message(255, b"\x00"))
    got = ws_frames(read_all(sock))
    sock.close()
    assert got[0] == (2, b"\x01typed\n") and got[-1] == (8, b"\x03\xe8"), got
    tp.delete_and_wait(name)



def test_exec_killed_when_its_client_leaves_while_stdin_waits():
    """A client that leaves while its stdin waits for a command that reads none (so neither the server nor the agent is reading it) still gets the command killed, websocket and SPDY."""
    s = tp.server()
    name = exec_pod("exec-stuck", os.path.join(ct.mktemp("capstan-exec-"), "vol"))
    piece = b"x" * 100
    # Websocket: 4 MiB of stdin, more than the agent, the server and the
    # sockets between take before they stop reading.
    sock, head = ws_upgrade(s.port, name, "command=sleep&command=7783&stdin=true&stdout=true")
    assert head.startswith("HTTP/1.1 101"), head
    ct.wait_until(lambda: len(pids_running("sleep", "7783")) == 1, timeout=20,
                  what="the command running")
    frame = ws_message(0, piece)
    sock.settimeout(0.5)
    sent = 0
    try:
        while sent < 4 * 1024 * 1024:
            sock.sendall(frame * 100)
            sent += len(frame) * 100
    except socket.timeout:
        pass            # nobody reads any more
    sock.close()
    ct.wait_until(lambda: pids_running("sleep", "7783") == [], timeout=30,
                  what="the command killed after its websocket client left")
    # SPDY: the same through a stdin stream.
    c = SpdyClient(s.port, name, ["sleep", "7784"], "stdin=true&stdout=true")
    c.stream("error")
    stdin = c.stream("stdin")
    c.stream("stdout")
    ct.wait_until(lambda: len(pids_running("sleep", "7784")) == 1, timeout=20,
                  what="the command running")
    c.sock.settimeout(0.5)
    sent = 0
    try:
        while sent < 4 * 1024 * 1024:
            c.sock.sendall(data(stdin, 0, piece * 100))
            sent += len(piece) * 100
    except socket.timeout:
        pass
    c.sock.close()
    ct.wait_until(lambda: pids_running("sleep", "7784") == [], timeout=30,
                  what="the command killed after its SPDY client left")
    assert s.must(WS_VERSIONS[0], "exec", name, "--", "echo", "still") == "still\n"
    tp.delete_and_wait(name)


if __name__ == "__main__":
    ct.run(globals())
