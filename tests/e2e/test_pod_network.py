"""End to end: the pod network. Two nodes, each its own network namespace
made by this test and joined by a bridge in a third ("switch") namespace;
capstan-server (no local agent) runs in the first, one capstan-agent in each
(as root: every pod gets a namespace and an address from its node's range).
The host's own network is never touched: bridges, veths and routes exist only
inside the namespaces made here, which are removed at the end.

Small ranges on purpose: --cluster-cidr 10.244.0.0/28 cut into /29s gives
two node ranges of five pod addresses each, so exhaustion is reachable.

Needs root (ip netns); without it the test fails, it does not skip."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kube_harness as kh  # noqa: E402
from kube_harness import ct  # noqa: E402

AGENT_BIN = os.path.join(ct.BUILDDIR, "capstan-agent")
KUBECTL = kh.kubectl_versions()[-1] if kh.kubectl_versions() else "1.33"
NODES = ["pn-a", "pn-b"]
CLUSTER_CIDR = "10.244.0.0/28"
MASK = "29"
PORT = 8080


def sh(*argv, check=True, timeout=30, ns=None):
    if ns is not None:
        argv = ("nsenter", "--net=/run/netns/%s" % ns, "--") + argv
    r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(argv), r.returncode,
                                                     r.stdout.decode(errors="replace").strip()))
    return r


def ip_in(ip, cidr):
    def n(a):
        p = [int(x) for x in a.split(".")]
        return (p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]
    net, bits = cidr.split("/")
    mask = (0xffffffff << (32 - int(bits))) & 0xffffffff
    return n(ip) & mask == n(net)


class Net:
    """A switch namespace with a bridge, and one namespace per node on it."""

    def __init__(self):
        tag = "%04x" % random.SystemRandom().randrange(1 << 16)
        self.switch = "cappn-%s-sw" % tag
        self.nodes = ["cappn-%s-%d" % (tag, i + 1) for i in range(len(NODES))]
        o = random.SystemRandom().randrange(16, 250)
        self.ips = ["192.168.%d.%d" % (o, i + 1) for i in range(len(NODES))]
        self.created = []
        self.procs = []          # stopped before the namespaces go
        self.keep = True

    def up(self):
        r = sh("ip", "netns", "add", self.switch, check=False)
        if r.returncode != 0:
            raise AssertionError("cannot create a network namespace (`ip netns add` needs root; "
                                 "CI runs as root): %s" % r.stdout.decode(errors="replace").strip())
        self.created.append(self.switch)
        ct._live.append(self)
        sh("ip", "-n", self.switch, "link", "set", "lo", "up")
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")
        for i, ns in enumerate(self.nodes):
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", self.switch, "link", "add", "p%d" % i, "type", "veth", "peer", "name",
               "uplink", "netns", ns)
            sh("ip", "-n", self.switch, "link", "set", "p%d" % i, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", self.ips[i] + "/24", "dev", "uplink")
            sh("ip", "-n", ns, "link", "set", "uplink", "up")
        return self

    def _hard_stop(self):
        for p in list(self.procs):
            p._hard_stop()
        for ns in reversed(self.created):
            sh("ip", "netns", "del", ns, check=False)
        self.created = []
        if self in ct._live:
            ct._live.remove(self)


class Proc:
    """A capstan process inside one of the namespaces (nsenter execs it, so
    the pid is the binary's). Agents' containers and namespace mounts are
    cleaned up with them when a test fails half-way."""

    def __init__(self, net, ns, argv, log_path, data_dir=None):
        self.net, self.ns, self.argv, self.log_path = net, ns, argv, log_path
        self.data_dir = data_dir
        self.proc = None
        self.log = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["nsenter", "--net=/run/netns/%s" % self.ns, "--"] + self.argv,
                                     stdout=subprocess.PIPE, stderr=self.log,
                                     start_new_session=True)
        if self not in self.net.procs:
            self.net.procs.append(self)
        return self

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def terminate(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.proc.stdout.close()
        self.log.close()
        return rc

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def pgids(self):
        out = []
        root = os.path.join(self.data_dir or "/nonexistent", "pods")
        for uid in os.listdir(root) if os.path.isdir(root) else []:
            for ctr in os.listdir(os.path.join(root, uid)):
                try:
                    with open(os.path.join(root, uid, ctr, "current")) as f:
                        out.append(int(f.read().split()[0]))
                except (OSError, ValueError, IndexError):
                    pass
        return out

    def _hard_stop(self):
        if self.proc is not None and self.proc.poll() is None:
            ct._kill_group(self.proc, signal.SIGKILL)
            self.proc.wait()
        for pg in self.pgids():
            try:
                os.killpg(pg, signal.SIGKILL)
            except OSError:
                pass
        # The pods' namespaces are bind mounts in the host's mount table.
        nsdir = os.path.join(self.data_dir or "/nonexistent", "network", "netns")
        for uid in os.listdir(nsdir) if os.path.isdir(nsdir) else []:
            subprocess.run(["umount", "-l", os.path.join(nsdir, uid)], stderr=subprocess.DEVNULL)
        if self in self.net.procs:
            self.net.procs.remove(self)


class Cluster:
    def __init__(self):
        self.net = Net().up()
        self.dir = ct.mktemp("capstan-pn-")
        self.port = ct.free_port()
        self.server_url = "http://%s:%d" % (self.net.ips[0], self.port)
        self.kubeconfig = os.path.join(self.dir, "server", "kubeconfig")
        self.server = Proc(self.net, self.net.nodes[0], [
            kh.SERVER_BIN, "--data-dir", os.path.join(self.dir, "server"),
            "--listen", "%s:%d" % (self.net.ips[0], self.port),
            "--listen-peer-urls", "http://127.0.0.1:%d" % ct.free_port(), "--no-agent",
            "--cluster-cidr", CLUSTER_CIDR, "--node-cidr-mask-size", MASK],
            os.path.join(self.dir, "server.log"))
        os.makedirs(os.path.join(self.dir, "server"), exist_ok=True)
        self.agents = {}
        for i, node in enumerate(NODES):
            d = os.path.join(self.dir, node)
            os.makedirs(d, exist_ok=True)
            self.agents[node] = Proc(self.net, self.net.nodes[i], [
                AGENT_BIN, "--server", self.server_url, "--node-name", node, "--data-dir", d,
                "--node-ip", self.net.ips[i], "--listen", "%s:0" % self.net.ips[i],
                "--token-file", os.path.join(self.dir, "server", "agent-token"),
                "--cluster-cidr", CLUSTER_CIDR],
                os.path.join(d, "agent.log"), data_dir=d)
        self.www = os.path.join(self.dir, "www")

    def start(self):
        self.server.start()
        ct.wait_until(lambda: os.path.exists(self.kubeconfig) and
                      self.kubectl("get", "--raw", "/readyz")[0] == 0, timeout=60,
                      interval=0.2, what="the API server")
        for a in self.agents.values():
            a.start()
        ct.wait_until(lambda: all(self.node_ready(n) for n in NODES), timeout=60, interval=0.5,
                      what="both nodes Ready with a pod range and the pod network up")
        return self

    def kubectl(self, *args, stdin=None, timeout=60, version=KUBECTL):
        p = subprocess.run(["nsenter", "--net=/run/netns/%s" % self.net.nodes[0], "--",
                            kh.kubectl_path(version), "--kubeconfig", self.kubeconfig] + list(args),
                           input=stdin.encode() if stdin else None, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def must(self, *args, stdin=None):
        rc, out, err = self.kubectl(*args, stdin=stdin)
        if rc != 0:
            raise AssertionError("kubectl %s failed (%d): %s" % (" ".join(args), rc, err))
        return out

    def get(self, *args):
        rc, out, err = self.kubectl("get", "-o", "json", *args)
        return json.loads(out) if rc == 0 else None

    def node_ready(self, name):
        n = self.get("node", name)
        if n is None or not n["spec"].get("podCIDR"):
            return False
        conds = {c["type"]: c for c in n["status"].get("conditions", [])}
        return (conds.get("Ready", {}).get("status") == "True" and
                conds.get("NetworkUnavailable", {}).get("status") == "False")

    def pod_cidr(self, node):
        return self.get("node", node)["spec"]["podCIDR"]

    def web_pod(self, name, node):
        """An httpd answering its name on PORT, and a sidecar that prints its
        eth0 address and then what it fetches from the httpd over localhost."""
        d = os.path.join(self.www, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "index.html"), "w") as f:
            f.write("hello from %s\n" % name)
        side = ("ip -4 -o addr show eth0; until wget -q -O - http://127.0.0.1:%d/; do sleep 0.2; "
                "done; echo side-done; exec sleep 3600" % PORT)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [
                    {"name": "httpd", "image": "busybox",
                     "command": ["httpd", "-f", "-p", str(PORT), "-h", d],
                     # No host: the agent probes the pod's IP.
                     "readinessProbe": {"httpGet": {"port": PORT}, "periodSeconds": 1}},
                    {"name": "side", "image": "busybox", "command": ["sh", "-c", side],
                     # Runs in the pod's network: its localhost is the httpd's.
                     "readinessProbe": {"exec": {"command": [
                         "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:%d/" % PORT]},
                         "periodSeconds": 1}}]}}

    def sleeper(self, name, node):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "c", "image": "pause"}]}}

    def create(self, obj):
        self.must("apply", "-f", "-", stdin=json.dumps(obj))

    def ready(self, name):
        p = self.get("pod", name)
        conds = {c["type"]: c["status"] for c in (p or {}).get("status", {}).get("conditions", [])}
        return conds.get("Ready") == "True"

    def running_ip(self, name, timeout=60):
        def ok():
            p = self.get("pod", name)
            if p is None or p["status"].get("phase") != "Running" or not p["status"].get("podIP"):
                return None
            return p["status"]["podIP"]
        return ct.wait_until(ok, timeout=timeout, interval=0.3, what="pod %s Running with an IP" % name)

    def fetch_from_node(self, i, ip, port=PORT):
        # busybox wget's own -T crashes in Debian 12's busybox-static: bound it here.
        try:
            r = sh("busybox", "wget", "-q", "-O", "-", "http://%s:%d/" % (ip, port),
                   check=False, ns=self.net.nodes[i], timeout=5)
        except subprocess.TimeoutExpired:
            return None
        return r.stdout.decode(errors="replace") if r.returncode == 0 else None

    def delete_pods(self, *names):
        self.must("delete", "pod", *names, "--wait=true", "--timeout=60s")

    def stop(self):
        rc, out, err = self.kubectl("delete", "pods", "--all", "--wait=true", "--timeout=60s",
                                    timeout=90)
        assert rc == 0, err
        for a in self.agents.values():
            if a.running():
                assert a.terminate() == 0, a.log_tail()
        assert self.server.terminate() == 0, self.server.log_tail()
        self.net._hard_stop()


_cluster = None


def cluster():
    global _cluster
    if _cluster is None:
        _cluster = Cluster().start()
    return _cluster


def test_nodes_get_distinct_pod_ranges():
    """The node IPAM controller gives each node its own /29 of the cluster range; both report the pod network up."""
    c = cluster()
    ranges = [c.pod_cidr(n) for n in NODES]
    assert ranges[0] != ranges[1], ranges
    for r in ranges:
        assert ip_in(r.split("/")[0], CLUSTER_CIDR) and r.endswith("/" + MASK), r
        node = c.get("node", NODES[ranges.index(r)])
        assert node["spec"]["podCIDRs"] == [r], node["spec"]
    addrs = {n: [a["address"] for a in c.get("node", n)["status"]["addresses"]
                 if a["type"] == "InternalIP"] for n in NODES}
    assert addrs == {NODES[0]: [c.net.ips[0]], NODES[1]: [c.net.ips[1]]}, addrs


def test_pod_ranges_validated_and_kept():
    """A Node's pod range must be a CIDR (422) and cannot be changed once set (the node's pods hold addresses in it)."""
    c = cluster()
    rc, out, err = c.kubectl("patch", "node", NODES[0], "--type", "merge", "-p",
                             json.dumps({"spec": {"podCIDR": c.pod_cidr(NODES[1]),
                                                  "podCIDRs": [c.pod_cidr(NODES[1])]}}))
    assert rc != 0 and "may not change podCIDR" in err, (rc, out, err)
    rc, out, err = c.kubectl("create", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "pn-bad"},
         "spec": {"podCIDRs": ["10.244.0.0/99"]}}))
    assert rc != 0 and "must be a valid CIDR" in err, (rc, out, err)
    assert c.get("node", "pn-bad") is None


def cidr_not_available(c, node):
    return [e for e in (c.get("events", "-A") or {"items": []})["items"]
            if e["reason"] == "CIDRNotAvailable" and e["involvedObject"]["name"] == node]


def test_exhausted_cluster_range_is_reported():
    """A third Node finds no range left: it gets none and a CIDRNotAvailable event says why, also after a server restart."""
    c = cluster()
    c.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "pn-extra"}})
    ct.wait_until(lambda: cidr_not_available(c, "pn-extra"), timeout=30, interval=0.5,
                  what="a CIDRNotAvailable event")
    assert not c.get("node", "pn-extra").get("spec", {}).get("podCIDR")
    # A restarted server's controller rebuilds the ranges in use from the
    # Nodes before handing any out: it reports the same exhaustion again
    # rather than give pn-extra a range another node holds.
    seen = len(cidr_not_available(c, "pn-extra"))
    ranges = [c.pod_cidr(n) for n in NODES]
    assert c.server.terminate() == 0, c.server.log_tail()
    c.server.start()
    ct.wait_until(lambda: len(cidr_not_available(c, "pn-extra")) > seen, timeout=60, interval=0.5,
                  what="CIDRNotAvailable from the restarted server")
    assert not c.get("node", "pn-extra").get("spec", {}).get("podCIDR")
    assert [c.pod_cidr(n) for n in NODES] == ranges
    c.must("delete", "node", "pn-extra")


def test_pods_get_ips_from_their_nodes_ranges():
    """Two pods on two nodes get distinct IPs from their nodes' ranges, shown by kubectl get pod -o wide; hostNetwork pods keep the node's."""
    c = cluster()
    c.create(c.web_pod("web-a", NODES[0]))
    c.create(c.web_pod("web-b", NODES[1]))
    ip_a, ip_b = c.running_ip("web-a"), c.running_ip("web-b")
    assert ip_a != ip_b
    assert ip_in(ip_a, c.pod_cidr(NODES[0])) and ip_in(ip_b, c.pod_cidr(NODES[1])), (ip_a, ip_b)
    # Neither the network address nor the bridge's (the gateway) is a pod's.
    for ip, node in ((ip_a, NODES[0]), (ip_b, NODES[1])):
        base = c.pod_cidr(node).split("/")[0]
        assert ip.rsplit(".", 1)[1] not in (base.rsplit(".", 1)[1], str(int(base.rsplit(".", 1)[1]) + 1))
    wide = c.must("get", "pod", "-o", "wide")
    rows = {line.split()[0]: line.split() for line in wide.splitlines()[1:]}
    assert ip_a in rows["web-a"] and NODES[0] in rows["web-a"], wide
    assert ip_b in rows["web-b"] and NODES[1] in rows["web-b"], wide
    p = c.get("pod", "web-b")
    assert p["status"]["podIPs"] == [{"ip": ip_b}] and p["status"]["hostIP"] == c.net.ips[1], p["status"]
    # hostNetwork: true keeps the node's network and reports the node's IP.
    hn = c.sleeper("hostnet", NODES[0])
    hn["spec"]["hostNetwork"] = True
    c.create(hn)
    assert c.running_ip("hostnet") == c.net.ips[0]
    c.delete_pods("hostnet")


def test_containers_of_a_pod_share_ip_and_localhost():
    """The sidecar sees the pod's IP on its eth0 and reaches the httpd container over 127.0.0.1."""
    c = cluster()
    for pod in ("web-a", "web-b"):
        ip = c.running_ip(pod)

        def side_done():
            rc, out, err = c.kubectl("logs", pod, "-c", "side")
            return out if rc == 0 and "side-done" in out else None
        out = ct.wait_until(side_done, timeout=60, interval=0.5, what="%s's sidecar reaching localhost" % pod)
        assert "inet %s/%s" % (ip, MASK) in out, out
        assert "hello from %s" % pod in out, out
        # Both probes pass only from inside the pod's network.
        ct.wait_until(lambda: c.ready(pod), timeout=30, interval=0.5, what="%s Ready" % pod)


def test_exec_runs_in_the_pods_network():
    """kubectl exec (SPDY with 1.27, websocket with the newest) sees the pod's IP on eth0 and reaches its other container over localhost."""
    c = cluster()
    ip = c.running_ip("web-a")
    for v in kh.kubectl_versions():
        rc, out, err = c.kubectl("exec", "web-a", "-c", "side", "--", "sh", "-c",
                                 "ip -4 -o addr show eth0; wget -q -O - http://127.0.0.1:%d/" % PORT,
                                 version=v)
        assert rc == 0, (v, err)
        assert "inet %s/%s" % (ip, MASK) in out and "hello from web-a" in out, (v, out)


def test_pods_reachable_from_nodes_and_across_nodes():
    """Each pod's httpd answers on its IP from both nodes, and from a pod on the other node."""
    c = cluster()
    ip_a, ip_b = c.running_ip("web-a"), c.running_ip("web-b")
    for i in range(len(NODES)):
        for ip, pod in ((ip_a, "web-a"), (ip_b, "web-b")):
            got = ct.wait_until(lambda: c.fetch_from_node(i, ip), timeout=30, interval=0.5,
                                what="%s from node %s" % (pod, NODES[i]))
            assert got.strip() == "hello from %s" % pod, got
    c.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client-a"},
              "spec": {"nodeName": NODES[0], "restartPolicy": "Never",
                       "containers": [{"name": "c", "image": "busybox", "command": [
                           "sh", "-c", "until timeout 5 wget -q -O - http://%s:%d/; do sleep 0.2; done"
                           % (ip_b, PORT)]}]}})
    ct.wait_until(lambda: (c.get("pod", "client-a") or {}).get("status", {}).get("phase") == "Succeeded",
                  timeout=60, interval=0.5, what="the client pod on node a fetching from web-b")
    assert "hello from web-b" in c.must("logs", "client-a"), c.must("logs", "client-a")
    c.delete_pods("client-a")


def test_services_reach_pods_on_both_nodes():
    """A Service's clusterIP (from a pod) and nodePort (from the other node) reach the replicas on both nodes."""
    c = cluster()
    c.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
              "spec": {"type": "NodePort", "selector": {"app": "web"},
                       "ports": [{"port": 80, "targetPort": PORT}]}})
    svc = c.get("service", "web")
    cip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    want = {"hello from web-a", "hello from web-b"}

    def endpoints():
        ep = c.get("endpoints", "web") or {}
        return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])
    ct.wait_until(lambda: endpoints() == sorted([c.running_ip("web-a"), c.running_ip("web-b")]),
                  timeout=30, interval=0.5, what="both web pods behind the service")
    c.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "svc-client"},
              "spec": {"nodeName": NODES[0], "restartPolicy": "Never",
                       "containers": [{"name": "c", "image": "busybox", "command": [
                           "sh", "-c", "n=0; while [ $n -lt 40 ]; do timeout 5 wget -q -O - "
                           "http://%s/ && n=$((n+1)); sleep 0.05; done" % cip]}]}})
    ct.wait_until(lambda: (c.get("pod", "svc-client") or {}).get("status", {}).get("phase")
                  == "Succeeded", timeout=90, interval=0.5, what="40 requests to the clusterIP")
    got = set(line.strip() for line in c.must("logs", "svc-client").splitlines() if line.strip())
    assert got == want, got
    c.delete_pods("svc-client")
    # A replica reaches the service too, itself included (hairpin).
    out = c.must("exec", "web-a", "-c", "side", "--", "sh", "-c",
                 "n=0; while [ $n -lt 30 ]; do timeout 5 wget -q -O - http://%s/ && n=$((n+1)); "
                 "done" % cip)
    got = set(line.strip() for line in out.splitlines() if line.strip())
    assert got == want, got
    # nodePort on node a, from node b: the replica on b is reached through a.
    seen = set()
    for _ in range(40):
        r = c.fetch_from_node(1, c.net.ips[0], node_port)
        if r:
            seen.add(r.strip())
    assert seen == want, seen
    c.must("delete", "service", "web")


def test_addresses_released_on_delete_and_never_shared():
    """A full node range keeps a new pod waiting (FailedCreatePodSandBox); deleting a pod frees its IP for it."""
    c = cluster()
    node = NODES[1]
    names = ["fill-%d" % i for i in range(4)]     # web-b + 4 = the five addresses of a /29
    for n in names:
        c.create(c.sleeper(n, node))
    ips = {n: c.running_ip(n) for n in names}
    ips["web-b"] = c.running_ip("web-b")
    assert len(set(ips.values())) == 5, ips
    c.create(c.sleeper("late", node))
    ct.wait_until(lambda: any(e["reason"] == "FailedCreatePodSandBox" and
                              e["involvedObject"]["name"] == "late"
                              for e in c.get("events")["items"]),
                  timeout=30, interval=0.5, what="the waiting pod's FailedCreatePodSandBox event")
    p = c.get("pod", "late")
    assert not p["status"].get("podIP") and p["status"].get("phase") == "Pending", p["status"]
    freed = ips["fill-1"]
    c.delete_pods("fill-1")
    assert c.running_ip("late") == freed
    c.delete_pods("fill-0", "fill-2", "fill-3", "late")


def test_agent_restart_keeps_pod_addresses():
    """An agent restarted on the same data dir finds its pods' namespaces: same IPs, still reachable."""
    c = cluster()
    ip_b = c.running_ip("web-b")
    before = c.get("pod", "web-b")["status"]["containerStatuses"]
    a = c.agents[NODES[1]]
    assert a.terminate() == 0, a.log_tail()
    a.start()
    c.create(c.sleeper("after", NODES[1]))
    ip_after = c.running_ip("after")
    assert ip_after != ip_b
    assert c.running_ip("web-b") == ip_b
    after = c.get("pod", "web-b")["status"]["containerStatuses"]
    assert [s["restartCount"] for s in after] == [s["restartCount"] for s in before], (before, after)
    got = ct.wait_until(lambda: c.fetch_from_node(0, ip_b), timeout=30, interval=0.5,
                        what="web-b from node a after the restart")
    assert got.strip() == "hello from web-b"
    # The adopted containers' probes (restarted Not Ready, and already
    # published so: "after" ran since) still reach the pod: Ready again.
    ct.wait_until(lambda: c.ready("web-b"), timeout=30, interval=0.5, what="web-b Ready")
    c.delete_pods("after")


def test_unprivileged_agent_falls_back_to_host_network():
    """An agent that is not root runs pods on the node's network with the node's IP, and its Node says why."""
    d = ct.mktemp("capstan-pn-nobody-")
    os.chmod(d, 0o755)
    os.chown(d, 65534, 65534)
    check_host_network_fallback(
        "pn-nobody", d, ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        "NoPodNetwork", "not root")


def test_agent_without_namespaces_falls_back_to_host_network():
    """Root without CAP_SYS_ADMIN cannot make namespaces: the agent falls back to the host network and says why."""
    check_host_network_fallback(
        "pn-nocap", ct.mktemp("capstan-pn-nocap-"),
        ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"],
        "PodNetworkFailed", "cannot create network namespaces")


def check_host_network_fallback(node, data_dir, drop, reason, words):
    """Runs an agent for node under the privilege drop, checks its Node's
    NetworkUnavailable condition and that a pod there gets the node's IP."""
    c = cluster()
    a = Proc(c.net, c.net.nodes[1], drop + [
        AGENT_BIN, "--server", c.server_url, "--node-name", node, "--data-dir", data_dir,
        "--node-ip", c.net.ips[1], "--listen", "127.0.0.1:0", "--cluster-cidr", CLUSTER_CIDR,
        "--proxy-mode=none"],   # pn-b's proxy serves this namespace
        os.path.join(c.dir, node + ".log"), data_dir=data_dir).start()

    def condition():
        n = c.get("node", node)
        conds = {x["type"]: x for x in (n or {}).get("status", {}).get("conditions", [])}
        return conds.get("NetworkUnavailable")
    cond = ct.wait_until(condition, timeout=30, interval=0.5,
                         what="%s's NetworkUnavailable" % node)
    assert cond["status"] == "True" and cond["reason"] == reason, cond
    assert words in cond["message"], cond
    pod = "on-" + node[len("pn-"):]
    c.create(c.sleeper(pod, node))
    assert c.running_ip(pod) == c.net.ips[1]
    c.delete_pods(pod)
    assert a.terminate() == 0, a.log_tail()
    c.net.procs.remove(a)
    c.must("delete", "node", node)


def test_deleting_pods_removes_their_namespaces():
    """Deleting every pod removes each pod's namespace, veth and address; a deleted Node's range goes to a waiting one, and a stale route to it goes."""
    c = cluster()
    c.delete_pods("web-a", "web-b")
    for i, node in enumerate(NODES):
        d = c.agents[node].data_dir
        assert os.listdir(os.path.join(d, "network", "netns")) == []
        assert [f for f in os.listdir(os.path.join(d, "network", "ipam")) if f[0].isdigit()] == []
        links = sh("ip", "-o", "link", "show", ns=c.net.nodes[i]).stdout.decode()
        assert "veth" not in links, links
        routes = sh("ip", "route", "show", ns=c.net.nodes[i]).stdout.decode()
        # The service range is local: clusterIPs are the node's (the proxy's DNAT).
        assert "unreachable %s" % CLUSTER_CIDR in routes and "local 10.96.0.0/12 dev lo" in routes, routes
        other = c.pod_cidr(NODES[1 - i])
        assert "%s via %s" % (other, c.net.ips[1 - i]) in routes, routes
    # A deleted Node's range goes back: a waiting Node gets it. Node b is
    # deleted while no agent runs on a: a's next agent finds its route to
    # that range stale and removes it.
    freed = c.pod_cidr(NODES[1])
    c.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "pn-late"}})
    ct.wait_until(lambda: cidr_not_available(c, "pn-late"), timeout=30, interval=0.5,
                  what="pn-late waiting for a range")
    for a in c.agents.values():
        assert a.terminate() == 0, a.log_tail()
    assert freed in sh("ip", "route", "show", ns=c.net.nodes[0]).stdout.decode()
    c.must("delete", "node", NODES[1])
    ct.wait_until(lambda: (c.get("node", "pn-late") or {}).get("spec", {}).get("podCIDR") == freed,
                  timeout=30, interval=0.5, what="pn-late getting the freed range")
    c.agents[NODES[0]].start()
    ct.wait_until(lambda: freed not in sh("ip", "route", "show", ns=c.net.nodes[0]).stdout.decode(),
                  timeout=30, interval=0.5, what="node a's stale route to the deleted node's range gone")
    c.stop()


if __name__ == "__main__":
    if shutil.which("nsenter") is None:
        raise SystemExit("nsenter (util-linux) is required")
    ct.run(globals())
