"""End to end: Services through the node agent's proxy, with real kubectl
(1.27 and 1.33). The whole cluster runs inside a network namespace this
script creates (and removes), so neither the pod network nor the nftables
rules touch the host: capstan-server with its local agent (as root: pods in
their own namespaces on the node's bridge, the proxy in nftables mode), a
three-replica Deployment of web servers answering with their pod's name,
`kubectl create service clusterip` and `kubectl expose --type=NodePort`.
HTTP through clusterIP:port (from the node and from a pod) and through
nodeIP:nodePort (from the node and from another host: a second namespace
on a veth) reaches every replica; a pod whose readiness probe fails gets
no more requests; a service without endpoints refuses connections; rules
outlive a killed agent; the userspace mode serves the same Services
without kernel rules."""

import collections
import http.client
import json
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The inner run gets the names from the outer one.
NETNS = os.environ.get("CAPSTAN_SVC_NETNS") or "capstan-svc-%d" % os.getpid()
CLIENT_NS = NETNS + "-client"   # another host on the node's network
NODE_IP = "10.250.0.1"          # the node's address inside the namespace
CLIENT_IP = "10.250.0.2"
REPLICAS = 3


# ------------------------------------------------- outside the namespace

def outer():
    """Creates the node's and the client's namespaces joined by a veth pair,
    runs this file inside the node's, and removes both with everything still
    running there, whatever happened."""
    if os.geteuid() != 0:
        print("FAIL: this test runs a cluster in a network namespace: run it as root")
        return 1

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    proc = None
    try:
        for ns in (NETNS, CLIENT_NS):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        for argv in (["ip", "link", "add", "node0", "netns", NETNS, "type", "veth", "peer",
                      "name", "eth0", "netns", CLIENT_NS],
                     ["ip", "-n", CLIENT_NS, "addr", "add", CLIENT_IP + "/24", "dev", "eth0"],
                     ["ip", "-n", CLIENT_NS, "link", "set", "lo", "up"],
                     ["ip", "-n", CLIENT_NS, "link", "set", "eth0", "up"]):
            subprocess.run(argv, check=True)
        proc = subprocess.Popen(["ip", "netns", "exec", NETNS, sys.executable,
                                 os.path.abspath(__file__), "--inside"] + sys.argv[1:],
                                env=dict(os.environ, CAPSTAN_SVC_NETNS=NETNS),
                                start_new_session=True)
        return proc.wait(timeout=1500)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        print("FAIL: interrupted or timed out")
        return 1
    finally:
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for ns in (NETNS, CLIENT_NS):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


if __name__ == "__main__" and "--inside" not in sys.argv:
    sys.exit(outer())
if "--inside" in sys.argv:
    sys.argv.remove("--inside")

# ------------------------------------------------- inside the namespace

import kube_harness as kh  # noqa: E402

ct = kh.ct
WORK = ct.mktemp("capstan-svc-")
_srv = None
_svc = {}          # name -> (clusterIP, nodePort or None)
_pods = {}         # web pod name -> pod IP


class ContainerReaper:
    """Stops the server, then kills every container its agent recorded,
    whatever happened: pods run in namespaces of their own, which the
    outer cleanup (processes in the node's namespace) does not see."""

    keep = True         # across tests, like the server; run at exit

    def _hard_stop(self):
        if _srv is None:
            return
        _srv._hard_stop()
        root = os.path.join(_srv.data_dir, "agent", "pods")
        for uid in os.listdir(root) if os.path.isdir(root) else []:
            for ctr in os.listdir(os.path.join(root, uid)):
                try:
                    with open(os.path.join(root, uid, ctr, "current")) as f:
                        os.killpg(int(f.read().split()[0]), signal.SIGKILL)
                except (OSError, ValueError, IndexError):
                    pass


_reaper = ContainerReaper()
ct._live.append(_reaper)


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)


def network():
    """The node's side: loopback and the address other hosts reach it on."""
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "addr", "add", NODE_IP + "/24", "dev", "node0")
    sh("ip", "link", "set", "node0", "up")


def versions():
    v = kh.kubectl_versions()
    assert v, "no kubectl binary in " + kh.KUBECTL_DIR
    return v


def server(extra=None):
    global _srv
    if _srv is None or _srv.proc is None or _srv.proc.poll() is not None:
        if _srv is None:
            network()
        data = _srv.data_dir if _srv is not None else None
        _srv = kh.ApiServer(extra=["--node-ip", NODE_IP] + list(extra or []), data_dir=data,
                            agent=True).start()
    return _srv


def kubectl_json(*args):
    return json.loads(server().must(versions()[-1], *(args + ("-o", "json"))))


def get(host, port):
    """One HTTP request on a new connection: the body, stripped."""
    c = http.client.HTTPConnection(host, port, timeout=10)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        assert r.status == 200, r.status
        return r.read().decode().strip()
    finally:
        c.close()


def spread(host, port, n=60):
    """Which replicas answer n requests from the node, and how often."""
    return collections.Counter(get(host, port) for _ in range(n))


def spread_from_client(host, port, n=60):
    """The same from the other host (the client namespace)."""
    got = collections.Counter()
    for _ in range(n):
        r = subprocess.run(["ip", "netns", "exec", CLIENT_NS, "curl", "-sS", "--max-time", "10",
                            "http://%s:%d/" % (host, port)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        got[r.stdout.strip()] += 1
    return got


def answers(host, port):
    try:
        return get(host, port)
    except OSError:
        return None


def ready_ips(name):
    """The ready endpoint addresses of a Service's Endpoints object."""
    code, ep = server().json("GET", "/api/v1/namespaces/default/endpoints/" + name)
    if code != 200:
        return set()
    return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}


def programmed():
    """The endpoint addresses the nftables table DNATs to."""
    out = subprocess.run(["nft", "list", "table", "ip", "capstan"], capture_output=True,
                         text=True).stdout
    return set(re.findall(r"dnat to ([0-9.]+):\d+", out))


def web_pods():
    """Name -> IP of the Deployment's running pods."""
    pods = kubectl_json("get", "pods", "-l", "app=web")["items"]
    return {p["metadata"]["name"]: p["status"].get("podIP") for p in pods
            if p["status"].get("phase") == "Running" and "deletionTimestamp" not in p["metadata"]}


def service(name):
    spec = kubectl_json("get", "service", name)["spec"]
    return spec["clusterIP"], spec["ports"][0].get("nodePort")


def want():
    return set(_pods)


# ------------------------------------------------------------------ tests

def test_deployment_exposed_with_kubectl():
    """kubectl create deployment (3 replicas), kubectl create service
    clusterip and kubectl expose --type=NodePort give Services with an
    allocated clusterIP and nodePort whose Endpoints list the three pods."""
    old, new = versions()[0], versions()[-1]
    s = server()
    host = os.uname().nodename
    ct.wait_until(lambda: host in s.must(new, "get", "nodes"), timeout=30, interval=0.3,
                  what="the local node")
    # Each replica serves a page with its own name, and is ready while no
    # WORK/unready-<name> exists.
    dep = json.loads(s.must(old, "create", "deployment", "web", "--image=busybox",
                            "--replicas=%d" % REPLICAS, "--port=8080", "--dry-run=client",
                            "-o", "json", "--", "sh", "-c",
                            "d=%s/$HOSTNAME; mkdir -p $d && echo $HOSTNAME > $d/index.html && "
                            "exec httpd -f -p 8080 -h $d" % WORK))
    dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 2
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "exec": {"command": ["sh", "-c", "test ! -e %s/unready-$HOSTNAME" % WORK]},
        "periodSeconds": 1}
    s.must(old, "apply", "-f", "-", stdin=json.dumps(dep))
    s.must(old, "create", "service", "clusterip", "web", "--tcp=80:8080")
    s.must(new, "expose", "deployment", "web", "--name=web-np", "--port=80",
           "--target-port=8080", "--type=NodePort")
    s.must(new, "create", "service", "clusterip", "nobody", "--tcp=80:8080")

    def settled():
        pods = web_pods()
        ips = set(pods.values())
        return (len(pods) == REPLICAS and None not in ips and ready_ips("web") == ips
                and ready_ips("web-np") == ips and pods)
    _pods.update(ct.wait_until(settled, timeout=90, interval=0.3, what="three ready endpoints"))
    for name in ("web", "web-np", "nobody"):
        _svc[name] = service(name)
    assert _svc["web-np"][1] is not None, "no nodePort allocated"
    assert len({ip for ip, _ in _svc.values()}) == 3, _svc
    out = s.must(old, "get", "services")
    assert _svc["web"][0] in out and "80:%d/TCP" % _svc["web-np"][1] in out, out


def test_cluster_ip_from_the_node():
    """HTTP to clusterIP:80 from the node reaches every replica."""
    cip = _svc["web"][0]
    ct.wait_until(lambda: answers(cip, 80), timeout=30, interval=0.2,
                  what="an answer through the clusterIP")
    got = spread(cip, 80)
    assert set(got) == want(), got


def test_node_port_from_the_node_and_another_host():
    """HTTP to nodeIP:nodePort, from the node and from another host on its
    network, reaches every replica; the NodePort service's clusterIP too."""
    cip, np = _svc["web-np"]
    ct.wait_until(lambda: answers(NODE_IP, np), timeout=30, interval=0.2,
                  what="an answer through the nodePort")
    for host, port in ((NODE_IP, np), (cip, 80)):
        got = spread(host, port)
        assert set(got) == want(), (host, port, got)
    got = spread_from_client(NODE_IP, np)
    assert set(got) == want(), got


def test_cluster_ip_from_a_pod():
    """A pod's requests to the clusterIP reach every replica."""
    s = server()
    cip = _svc["web"][0]
    out = os.path.join(WORK, "client.out")
    s.must(versions()[0], "run", "client", "--image=busybox", "--restart=Never", "--",
           "sh", "-c", "for i in $(seq 60); do wget -q -O - http://%s/ >> %s; done; "
           "echo done >> %s" % (cip, out, out))
    try:
        ct.wait_until(lambda: kubectl_json("get", "pod", "client")["status"].get("phase")
                      in ("Succeeded", "Failed"), timeout=90, interval=0.3, what="the client pod")
        with open(out) as f:
            lines = f.read().split()
        assert lines[-1:] == ["done"], lines
        got = collections.Counter(lines[:-1])
        assert set(got) == want() and sum(got.values()) == 60, got
    finally:
        s.must(versions()[-1], "delete", "pod", "client", "--ignore-not-found")


def test_service_without_endpoints_refuses():
    """A service with no ready endpoint refuses connections at once instead
    of leaving the client waiting."""
    try:
        get(_svc["nobody"][0], 80)
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("a connection to a service without endpoints was accepted")


def test_unready_pod_taken_out():
    """A pod whose readiness probe fails gets no more requests; once ready
    again it gets its share."""
    name = sorted(_pods)[1]
    ip = _pods[name]
    marker = os.path.join(WORK, "unready-" + name)
    open(marker, "w").close()
    ct.wait_until(lambda: ip not in ready_ips("web") and ip not in programmed(), timeout=30,
                  interval=0.1, what="%s out of the Endpoints and the rules" % name)
    for host, port in ((_svc["web"][0], 80), (NODE_IP, _svc["web-np"][1])):
        got = spread(host, port)
        assert set(got) == want() - {name}, (host, port, got)
    os.unlink(marker)
    ct.wait_until(lambda: ip in programmed(), timeout=30, interval=0.1,
                  what="%s back in the rules" % name)
    got = spread(_svc["web"][0], 80)
    assert set(got) == want(), got


def test_rules_outlive_a_killed_agent():
    """Traffic keeps flowing while the agent is down, as with kube-proxy; a
    new agent resyncs the same rules."""
    s = server()
    s._hard_stop()
    assert set(spread(_svc["web"][0], 80, 30)) == want()
    server()
    ct.wait_until(lambda: answers(_svc["web"][0], 80), timeout=30, what="the restarted proxy")
    got = spread(NODE_IP, _svc["web-np"][1])
    assert set(got) == want(), got


def test_userspace_mode():
    """--proxy-mode=userspace: no kernel rules; the agent itself serves the
    nodePort and the clusterIPs, round-robin over the ready replicas."""
    s = server()
    assert s.terminate() == 0
    sh("nft", "delete", "table", "ip", "capstan")
    s = server(extra=["--proxy-mode=userspace"])
    np = _svc["web-np"][1]
    ct.wait_until(lambda: answers(NODE_IP, np), timeout=30, interval=0.2,
                  what="the userspace nodePort listener")
    assert subprocess.run(["nft", "list", "table", "ip", "capstan"],
                          capture_output=True).returncode != 0, "rules in userspace mode"
    got = spread(NODE_IP, np, 30)
    assert got == {w: 10 for w in want()}, got      # round-robin: exactly even
    got = spread_from_client(NODE_IP, np, 9)
    assert set(got) == want(), got
    ct.wait_until(lambda: answers(_svc["web"][0], 80), timeout=30, interval=0.2,
                  what="the userspace clusterIP listener")
    got = spread(_svc["web"][0], 80, 30)
    assert set(got) == want(), got
    assert "service proxy: userspace mode (--proxy-mode)" in s.log_tail(400)


def test_cleanup():
    """The workload and services are deleted and the server stops cleanly."""
    s = server()
    v = versions()[-1]
    s.must(v, "delete", "service", "web", "web-np", "nobody")
    s.must(v, "delete", "deployment", "web")
    ct.wait_until(lambda: not kubectl_json("get", "pods")["items"], timeout=60, interval=0.3,
                  what="every pod gone")
    assert s.terminate() == 0
    ct._live.remove(_reaper)     # nothing left to reap


if __name__ == "__main__":
    ct.run(globals())
