"""End to end: one capstan-server (no local agent) and three capstan-agent
processes on loopback, each its own node with its own data directory and
endpoint. A Deployment spreads over the three nodes; when one agent is killed
with SIGKILL its node turns NotReady and unreachable, its pods are evicted
and replaced on the two others; when the agent comes back the node is Ready
again and its containers were either adopted (pods that still exist) or
killed (pods evicted or deleted meanwhile): no orphan, no duplicate."""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_harness as kh  # noqa: E402

ct = kh.ct
AGENT_BIN = os.path.join(ct.BUILDDIR, "capstan-agent")
KUBECTL = "1.33"
# The agent renews its Lease every 10 s: the grace period must exceed that.
GRACE = 15
NODES = ("mnode-a", "mnode-b", "mnode-c")
VICTIM = NODES[0]
REPLICAS = 6
# Every container of this run sleeps this many seconds: it tells this run's
# container processes apart from anything else on the host.
SLEEP = str(3_000_000 + os.getpid() % 1_000_000)
SHORT = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
          "effect": "NoExecute", "tolerationSeconds": 5}]
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
PODS = "/api/v1/namespaces/default/pods"

_server = None
_agents = {}


# ---------------------------------------------------------------- processes

class Agent:
    """One capstan-agent process: a node with its own data dir and port.
    Restarting it keeps both."""

    def __init__(self, server, node):
        self.server = server
        self.node = node
        self.data_dir = ct.mktemp("capstan-agent-")
        self.port = ct.free_port()
        self.proc = None
        self.log = None
        self.keep = True
        self.log_path = os.path.join(self.data_dir, "agent.log")
        ct._live.append(self)   # until its containers are gone too

    def start(self):
        argv = [AGENT_BIN, "--kubeconfig", self.server.kubeconfig, "--node-name", self.node,
                "--data-dir", self.data_dir, "--listen", "127.0.0.1:%d" % self.port,
                # No bridge and no Service rules on the host's own network.
                "--pod-network", "host", "--proxy-mode=none"]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log,
                                     start_new_session=True)
        line = self.proc.stdout.readline().decode().strip()
        assert line, "capstan-agent exited early:\n" + self.log_tail()
        assert line.split()[0] == str(self.port), line
        return self

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def pgids(self):
        """{pod uid: process group} of the containers this agent's data dir records."""
        out = {}
        root = os.path.join(self.data_dir, "pods")
        for uid in os.listdir(root) if os.path.isdir(root) else []:
            try:
                with open(os.path.join(root, uid, "c", "current")) as f:
                    out[uid] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return out

    def kill9(self):
        """SIGKILL the agent alone: its containers keep running."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close()

    def terminate(self, timeout=20):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._close()

    def _close(self):
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.log is not None:
            self.log.close()
            self.log = None

    def _hard_stop(self):
        groups = self.pgids()
        if self.proc is not None and self.proc.poll() is None:
            ct._kill_group(self.proc, signal.SIGKILL)
            self.proc.wait()
        # Containers outlive their agent on purpose: a test run must not.
        for pg in groups.values():
            try:
                os.killpg(pg, signal.SIGKILL)
            except OSError:
                pass
        self._close()
        if self in ct._live:
            ct._live.remove(self)


def containers():
    """(process group, pid) of each live container process of this run (a
    group seen twice is a duplicate)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = [x for x in f.read().decode("utf-8", "replace").split("\0") if x]
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        if fields[0] in "ZX" or argv[-2:] != ["sleep", SLEEP]:
            continue
        out.append((int(fields[2]), int(d)))
    return out


def pgid_alive(pgid):
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            return True
    return False


# ---------------------------------------------------------------- cluster

def server():
    global _server
    if _server is None:
        _server = kh.ApiServer(extra=["--node-monitor-grace-period", str(GRACE)]).start()
    return _server


def agents():
    if not _agents:
        for n in NODES:
            _agents[n] = Agent(server(), n).start()
    return _agents


def get(path):
    code, body = server().json("GET", path)
    return body if code == 200 else None


def node(name):
    return get("/api/v1/nodes/" + name)


def ready_status(name):
    n = node(name)
    for c in (n or {}).get("status", {}).get("conditions", []):
        if c["type"] == "Ready":
            return c["status"]
    return None


def unreachable(name):
    return sorted((t["key"], t["effect"]) for t in (node(name) or {}).get("spec", {}).get(
        "taints") or [] if t["key"] == "node.kubernetes.io/unreachable")


def kubectl_node_status(name):
    out = server().must(KUBECTL, "get", "nodes", "--no-headers")
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] == name:
            return cols[1]
    return None


def running(pod):
    cs = (pod.get("status", {}).get("containerStatuses") or [{}])[0]
    return pod.get("status", {}).get("phase") == "Running" and "running" in cs.get("state", {})


def app_pods():
    body = get(PODS + "?labelSelector=app%3Dspread")
    assert body is not None
    return body["items"]


def live(pods):
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def create_pod(name, node_name, tolerations=None):
    spec = {"nodeName": node_name, "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", SLEEP]}]}
    if tolerations:
        spec["tolerations"] = tolerations
    code, body = server().json("POST", PODS, {"apiVersion": "v1", "kind": "Pod",
                                              "metadata": {"name": name}, "spec": spec})
    assert code == 201, body
    return body


def wait_running(name, timeout=30):
    return ct.wait_until(lambda: (lambda p: p if p and running(p) else None)(
        get(PODS + "/" + name)), timeout=timeout, interval=0.2, what="pod %s running" % name)


def group_of(pod):
    """The process group of a pod's container, from its node's data dir."""
    return agents()[pod["spec"]["nodeName"]].pgids().get(pod["metadata"]["uid"])


def assert_one_process_per_pod(pods):
    """Every pod has exactly one live container process, in the group its
    node records for it, and no other container process of this run exists."""
    procs = containers()
    groups = sorted(pg for pg, _ in procs)
    want = sorted(group_of(p) for p in pods)
    assert None not in want, [(p["metadata"]["name"], p["spec"]["nodeName"]) for p in pods]
    assert groups == want, (groups, want, procs)


# ---------------------------------------------------------------- tests

def test_deployment_spreads_over_three_agents():
    """Three agents register Ready nodes; a 6-replica Deployment runs pods on all three, one process each."""
    a = agents()
    s = server()
    for n in NODES:
        ct.wait_until(lambda: ready_status(n) == "True", timeout=20, what="%s Ready" % n)
        assert node(n)["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == a[n].port
    out = s.must(KUBECTL, "get", "nodes")
    for n in NODES:
        assert any(l.split()[:2] == [n, "Ready"] for l in out.splitlines()), out

    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "spread"},
              "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "spread"}},
                       "template": {"metadata": {"labels": {"app": "spread"}},
                                    "spec": {"terminationGracePeriodSeconds": 2,
                                             "tolerations": SHORT,
                                             "containers": [{"name": "c", "image": "busybox",
                                                             "command": ["sleep", SLEEP]}]}}}}
    s.must(KUBECTL, "apply", "-f", "-", stdin=json.dumps(deploy))
    rc, out, err = s.kubectl(KUBECTL, "rollout", "status", "deployment/spread",
                             "--timeout=90s", timeout=120)
    assert rc == 0 and "successfully rolled out" in out, (out, err)
    pods = ct.wait_until(lambda: (lambda ps: ps if len(ps) == REPLICAS and all(
        running(p) for p in ps) else None)(live(app_pods())), timeout=30, what="6 running")
    per_node = {n: [p for p in pods if p["spec"]["nodeName"] == n] for n in NODES}
    assert all(per_node[n] for n in NODES), {n: len(v) for n, v in per_node.items()}
    wide = s.must(KUBECTL, "get", "pods", "-l", "app=spread", "-o", "wide")
    for n in NODES:
        assert n in wide, wide
    assert_one_process_per_pod(pods)


def test_killed_agent_node_evicted_then_recovered():
    """A kill -9'd agent's node goes NotReady and its pods are replaced elsewhere; restarted, it adopts or kills its containers."""
    a = agents()
    s = server()
    ct.wait_until(lambda: len(live(app_pods())) == REPLICAS, timeout=30, what="deployment up")
    # Besides the Deployment's pods, the victim runs one pod that tolerates
    # the taint for the default 300 s (it must be adopted, not restarted) and
    # one short-lived bare pod that will be deleted for good while its agent
    # is down (its container must be killed by the next agent).
    create_pod("patient", VICTIM)
    create_pod("lonely", VICTIM, tolerations=SHORT)
    patient, lonely = wait_running("patient"), wait_running("lonely")
    patient_pg, lonely_pg = group_of(patient), group_of(lonely)
    victims = [p for p in live(app_pods()) if p["spec"]["nodeName"] == VICTIM]
    assert victims, "no Deployment pod on %s" % VICTIM
    victim_pgs = [group_of(p) for p in victims]
    assert all(victim_pgs), victim_pgs
    before = {p["metadata"]["name"] for p in live(app_pods())}

    a[VICTIM].kill9()
    # Containers survive their agent.
    assert all(pgid_alive(pg) for pg in victim_pgs + [patient_pg, lonely_pg])

    ct.wait_until(lambda: ready_status(VICTIM) == "Unknown", timeout=GRACE + 20,
                  what="%s Ready=Unknown" % VICTIM)
    assert kubectl_node_status(VICTIM) == "NotReady", s.must(KUBECTL, "get", "nodes")
    assert ct.wait_until(lambda: unreachable(VICTIM), timeout=10, what="unreachable taints") == [
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoSchedule")]
    for n in NODES[1:]:
        assert ready_status(n) == "True" and not unreachable(n)

    # Evicted: the Deployment's pods and the short-tolerating bare pod are
    # deleted (they stay Terminating: no agent is there to finish them).
    def evicted(name):
        p = get(PODS + "/" + name)
        return p is None or p["metadata"].get("deletionTimestamp") is not None
    ct.wait_until(lambda: all(evicted(p["metadata"]["name"]) for p in victims + [lonely]),
                  timeout=40, what="pods evicted")
    assert not evicted("patient")

    # Replacements run on the two surviving nodes.
    def replaced():
        ps = live(app_pods())
        return ps if len(ps) == REPLICAS and all(running(p) for p in ps) else None
    pods = ct.wait_until(replaced, timeout=60, what="replacements running")
    assert {p["spec"]["nodeName"] for p in pods} <= set(NODES[1:]), \
        [(p["metadata"]["name"], p["spec"]["nodeName"]) for p in pods]
    assert {p["metadata"]["name"] for p in pods} != before
    # The evicted containers still run: nobody is there to stop them.
    assert all(pgid_alive(pg) for pg in victim_pgs + [lonely_pg])

    # An operator removes the stuck bare pod for good while the node is down.
    s.must(KUBECTL, "delete", "pod", "lonely", "--grace-period=0", "--force")
    assert get(PODS + "/lonely") is None

    a[VICTIM].start()
    ct.wait_until(lambda: ready_status(VICTIM) == "True", timeout=30,
                  what="%s Ready again" % VICTIM)
    ct.wait_until(lambda: not unreachable(VICTIM), timeout=GRACE + 15, what="taints removed")
    ct.wait_until(lambda: kubectl_node_status(VICTIM) == "Ready", timeout=10,
                  what="kubectl shows Ready")
    # The deleted pod's container and the evicted pods' containers are killed,
    # the evicted pods are finished and gone from the API.
    ct.wait_until(lambda: not any(pgid_alive(pg) for pg in victim_pgs + [lonely_pg]),
                  timeout=30, what="evicted and deleted pods' containers killed")
    ct.wait_until(lambda: all(get(PODS + "/" + p["metadata"]["name"]) is None for p in victims),
                  timeout=30, what="evicted pods finished")
    # The pod that was never evicted kept its container: adopted, not restarted.
    p = wait_running("patient")
    cs = p["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 0 and group_of(p) == patient_pg, (cs, group_of(p), patient_pg)
    assert pgid_alive(patient_pg)
    assert a[VICTIM].pgids() == {p["metadata"]["uid"]: patient_pg}, a[VICTIM].pgids()
    # One process per pod, none left over, across the three nodes.
    time.sleep(2)
    pods = replaced()
    assert pods is not None
    assert_one_process_per_pod(pods + [get(PODS + "/patient")])


def test_daemonset_on_every_agent():
    """A DaemonSet runs one real process on each of the three agents, rolls a template change through them all, and deleting it stops them."""
    a = agents()
    s = server()
    for n in NODES:
        ct.wait_until(lambda: ready_status(n) == "True", timeout=60, what="%s Ready" % n)
    marker = str(int(SLEEP) + 1)   # this DaemonSet's processes, apart from the Deployment's
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "per-node"},
          "spec": {"selector": {"matchLabels": {"app": "per-node"}},
                   "template": {"metadata": {"labels": {"app": "per-node"}},
                                "spec": {"terminationGracePeriodSeconds": 2,
                                         "containers": [{"name": "c", "image": "busybox",
                                                         "env": [{"name": "V", "value": "1"}],
                                                         "command": ["sleep", marker]}]}}}}
    s.must("1.27", "apply", "-f", "-", stdin=json.dumps(ds))

    def ds_pods():
        body = get(PODS + "?labelSelector=app%3Dper-node")
        return live(body["items"]) if body else []

    def ds_processes():
        return [pid for pid in os.listdir("/proc") if pid.isdigit() and
                _cmdline(pid)[-2:] == ["sleep", marker]]

    def settled(version):
        ps = ds_pods()
        ok = (sorted(p["spec"].get("nodeName") or "" for p in ps) == sorted(NODES) and
              all(running(p) and p["spec"]["containers"][0]["env"][0]["value"] == version
                  for p in ps))
        return ps if ok else None
    pods = ct.wait_until(lambda: settled("1"), timeout=60, what="one running pod per agent")
    ct.wait_until(lambda: len(ds_processes()) == len(NODES), timeout=30,
                  what="one container process per node")
    assert all(group_of(p) for p in pods), [p["spec"]["nodeName"] for p in pods]

    s.must("1.27", "set", "env", "daemonset/per-node", "V=2")
    rc, out, err = s.kubectl("1.27", "rollout", "status", "daemonset/per-node",
                             "--timeout=90s", timeout=120)
    assert rc == 0, (out, err)
    ct.wait_until(lambda: settled("2"), timeout=60, what="every node's pod replaced")
    ct.wait_until(lambda: len(ds_processes()) == len(NODES), timeout=30,
                  what="the old processes stopped, the new ones running")

    s.must("1.27", "delete", "daemonset", "per-node", "--timeout=60s")
    ct.wait_until(lambda: ds_pods() == [], timeout=60, what="the DaemonSet's pods deleted")
    ct.wait_until(lambda: ds_processes() == [], timeout=30, what="no DaemonSet process left")


def _cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return [x for x in f.read().decode("utf-8", "replace").split("\0") if x]
    except OSError:
        return []


def test_deleting_everything_leaves_no_process():
    """Deleting the Deployment and the pods stops every container on every node; the agents exit 0."""
    a = agents()
    s = server()
    s.must(KUBECTL, "delete", "deployment", "spread", "--timeout=60s")
    rc, out, err = s.kubectl(KUBECTL, "delete", "pods", "--all", "--timeout=60s", timeout=90)
    assert rc == 0, err
    ct.wait_until(lambda: get(PODS)["items"] == [], timeout=60, what="no pods left")
    ct.wait_until(lambda: containers() == [], timeout=30, what="no container process left")
    for n in NODES:
        assert a[n].pgids() == {} or not any(pgid_alive(pg) for pg in a[n].pgids().values())
        assert a[n].terminate() == 0, a[n].log_tail()
    assert containers() == []


if __name__ == "__main__":
    ct.run(globals())
