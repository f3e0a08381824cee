"""End to end: pods run. A fresh capstan-server, a capstan-agent on loopback
(process runtime), and real kubectl (the oldest and newest versioned
binaries): pods start, log, crash and back off, probe, terminate gracefully,
and survive an agent restart without orphans or duplicates."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_harness as kh  # noqa: E402

ct = kh.ct
AGENT_BIN = os.path.join(ct.BUILDDIR, "capstan-agent")
SERVER_BIN = kh.SERVER_BIN
NODE = "e2e-node"
_server = None
_agent = None


# ---------------------------------------------------------------- helpers

def pgid_alive(pgid):
    """Whether any live (non-zombie) process is in process group pgid."""
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


def procs_with(marker):
    """Pids of live processes whose command line holds marker."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        if marker in cmd and st[st.rfind(")") + 2] not in "ZX":
            out.append(int(d))
    return out


class Agent:
    """One capstan-agent process with its own data directory."""

    def __init__(self, server, data_dir=None, extra=None, node=NODE):
        self.server = server
        self.data_dir = data_dir or ct.mktemp("capstan-agent-")
        self.extra = list(extra or [])
        self.node = node
        self.proc = None
        self.keep = True
        self.port = None
        self.log_path = os.path.join(self.data_dir, "agent.log")

    def start(self):
        argv = [AGENT_BIN, "--kubeconfig", self.server.kubeconfig, "--node-name", self.node,
                "--data-dir", self.data_dir, "--listen", "127.0.0.1:0",
                # No bridge and no Service rules on the host's own network.
                "--pod-network", "host", "--proxy-mode=none"] + self.extra
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log,
                                     start_new_session=True)
        ct._live.append(self)
        line = self.proc.stdout.readline().decode().strip()
        assert line, "capstan-agent exited early:\n" + self.log_tail()
        self.port = int(line.split()[0]) if line[0].isdigit() else None
        return self

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def pgids(self):
        """Process groups of the containers this agent's data dir records."""
        out = {}
        root = os.path.join(self.data_dir, "pods")
        for uid in os.listdir(root) if os.path.isdir(root) else []:
            for ctr in os.listdir(os.path.join(root, uid)):
                try:
                    with open(os.path.join(root, uid, ctr, "current")) as f:
                        out[(uid, ctr)] = int(f.read().split()[0])
                except (OSError, ValueError, IndexError):
                    pass
        return out

    def kill9(self):
        """SIGKILL the agent alone (not its containers)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._forget()

    def terminate(self, timeout=20):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._forget()

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
        self._forget()

    def _forget(self):
        if self in ct._live:
            ct._live.remove(self)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if getattr(self, "log", None) is not None:
            self.log.close()
            self.log = None


def server():
    global _server
    if _server is None or _server.proc.poll() is not None:
        _server = kh.ApiServer().start()
    return _server


def agent():
    global _agent
    if _agent is None or _agent.proc is None or _agent.proc.poll() is not None:
        _agent = Agent(server()).start()
    return _agent


def versions():
    v = kh.kubectl_versions()
    assert v, "no versioned kubectl under %s" % kh.KUBECTL_DIR
    return v


def get_pod(name, ns="default"):
    code, pod = server().json("GET", "/api/v1/namespaces/%s/pods/%s" % (ns, name))
    return pod if code == 200 else None


def wait_pod(name, pred, timeout=30, what=None):
    return ct.wait_until(lambda: (lambda p: p if p and pred(p) else None)(get_pod(name)),
                         timeout=timeout, interval=0.2, what=what or "pod %s" % name)


def ctr_status(pod, i=0):
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[i]


def running(pod):
    return pod.get("status", {}).get("phase") == "Running" and "running" in ctr_status(pod).get("state", {})


def waiting_reason(pod):
    return ctr_status(pod).get("state", {}).get("waiting", {}).get("reason")


def create_pod(spec_overrides, name, command=None, image="busybox", node=NODE):
    ctr = {"name": name, "image": image}
    if command is not None:
        ctr["command"] = command
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"nodeName": node, "containers": [ctr], "terminationGracePeriodSeconds": 10}}
    for k, v in spec_overrides.items():
        if k == "container":
            ctr.update(v)
        else:
            pod["spec"][k] = v
    code, body = server().json("POST", "/api/v1/namespaces/default/pods", pod)
    assert code == 201, body
    return body


def delete_and_wait(name, version=None):
    """Deletes through kubectl (which waits for the pod to be gone)."""
    v = version or versions()[-1]
    rc, out, err = server().kubectl(v, "delete", "pod", name, "--timeout=60s", timeout=90)
    assert rc == 0, err
    assert get_pod(name) is None


def events_for(name):
    code, ev = server().json("GET", "/api/v1/namespaces/default/events?fieldSelector="
                             "involvedObject.name=%s" % name)
    return [(e.get("reason"), e.get("message", "")) for e in ev.get("items", [])]


def agent_logs(name, query="", ctr=None, port=None, token_dir=None, stream=False):
    """GET the agent's /containerLogs with the cluster's token (what the API
    server's pods/log proxies to)."""
    with open(os.path.join(token_dir or server().data_dir, "agent-token")) as f:
        token = f.read().strip()
    url = "http://127.0.0.1:%d/containerLogs/default/%s/%s%s" % (
        port or agent().port, name, ctr or name, "?" + query if query else "")
    r = urllib.request.urlopen(urllib.request.Request(
        url, headers={"Authorization": "Bearer " + token}), timeout=20)
    if stream:
        return r
    with r:
        return r.read().decode()


def pgid_of(name, ctr=None):
    for (uid, c), pg in agent().pgids().items():
        pod = get_pod(name)
        if pod and pod["metadata"]["uid"] == uid and c == (ctr or name):
            return pg
    return None


# ---------------------------------------------------------------- tests

def test_node_registers_with_capacity_and_lease():
    """The agent registers its Node (capacity, conditions, nodeInfo, endpoint) and renews a Lease."""
    a = agent()
    s = server()
    node = ct.wait_until(lambda: (lambda r: r[1] if r[0] == 200 else None)(
        s.json("GET", "/api/v1/nodes/" + NODE)), timeout=20, what="node registered")
    st = node["status"]
    assert st["capacity"]["cpu"] == str(os.cpu_count()), st["capacity"]
    assert st["capacity"]["pods"] == "110" and st["allocatable"]["pods"] == "110"
    with open("/proc/meminfo") as f:
        kb = int(f.readline().split()[1])
    assert st["capacity"]["memory"] == "%dKi" % kb
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False",
                     "PIDPressure": "False"}, conds
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
    assert {"type": "Hostname", "address": NODE} in st["addresses"]
    info = st["nodeInfo"]
    assert info["kubeletVersion"] == "v1.31.0-capstan"
    assert info["containerRuntimeVersion"] == "capstan-process://0.1"
    assert info["operatingSystem"] == "linux" and info["kernelVersion"] == os.uname().release
    assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] == a.port
    code, lease = s.json("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + NODE)
    assert code == 200 and lease["spec"]["holderIdentity"] == NODE, lease
    first = lease["spec"]["renewTime"]
    ct.wait_until(lambda: s.json("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/"
                                 "leases/" + NODE)[1]["spec"]["renewTime"] != first,
                  timeout=30, interval=0.5, what="lease renewal")
    for v in versions():
        out = s.must(v, "get", "nodes", "-o", "wide")
        assert NODE in out and "Ready" in out and "capstan-process://0.1" in out, out


def test_run_busybox_logs_and_describe():
    """kubectl run busybox: Running with node and IP, events in describe, logs (tail, timestamps, follow) from the agent."""
    agent()
    s = server()
    for v in versions():
        name = "run-" + v.replace(".", "")
        over = json.dumps({"spec": {"nodeName": NODE}})
        s.must(v, "run", name, "--image=busybox", "--overrides", over, "--",
               "sh", "-c", "echo hello from %s; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done" % name)
        wait_pod(name, running, what="pod running")
        out = s.must(v, "get", "pod", name, "-o", "wide")
        row = out.splitlines()[1].split()
        assert row[1] == "1/1" and row[2] == "Running", out
        assert "127.0.0.1" in row and NODE in row, out
        desc = s.must(v, "describe", "pod", name)
        for reason in ("Pulled", "Created", "Started"):
            assert reason in desc, desc
        # kubectl logs goes through the API server, which relays the agent.
        logs = ct.wait_until(lambda: (lambda o: o if "tick 2" in o else None)(
            s.must(v, "logs", name)), timeout=20, what="logs")
        assert logs.splitlines()[0] == "hello from %s" % name, logs
        tail = s.must(v, "logs", name, "--tail=1")
        assert len(tail.splitlines()) == 1 and tail.startswith("tick "), tail
        ts = s.must(v, "logs", name, "--tail=1", "--timestamps")
        assert ts.split()[0].endswith("Z") and ts.split()[1] == "tick", ts
        # logs -f streams lines written after it started, in order.
        f = subprocess.Popen(s.kubectl_argv(v, "logs", "-f", name, "--tail=1"),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            seen = [f.stdout.readline().decode().strip() for _ in range(4)]
            nums = [int(x.split()[1]) for x in seen if x.startswith("tick ")]
            assert len(nums) == 4 and nums == sorted(nums) and nums[-1] > nums[0], seen
        finally:
            f.kill()
            f.wait()
        # The agent's own endpoint says the same.
        assert agent_logs(name, "tailLines=1").startswith("tick ")
        pg = pgid_of(name)
        assert pg is not None and pgid_alive(pg)
        delete_and_wait(name, v)
        assert not pgid_alive(pg), "container processes left after delete"


def test_scheduled_pod_runs():
    """A pod without nodeName is scheduled onto the agent's node and runs."""
    agent()
    s = server()
    v = versions()[-1]
    s.must(v, "run", "sched", "--image=busybox", "--", "sleep", "3600")
    pod = wait_pod("sched", running, timeout=40, what="scheduled pod running")
    assert pod["spec"]["nodeName"] == NODE
    delete_and_wait("sched")


def test_crash_loop_back_off():
    """A crashing container restarts with back-off: CrashLoopBackOff, lastState, BackOff event."""
    agent()
    s = server()
    create_pod({}, "crash", ["/bin/sh", "-c", "echo dying; exit 3"])
    pod = wait_pod("crash", lambda p: waiting_reason(p) == "CrashLoopBackOff", what="CrashLoopBackOff")
    cs = ctr_status(pod)
    assert cs["restartCount"] >= 1, cs
    assert cs["lastState"]["terminated"]["exitCode"] == 3, cs
    assert cs["lastState"]["terminated"]["reason"] == "Error", cs
    assert "back-off 10s" in cs["state"]["waiting"]["message"], cs
    for v in versions():
        out = s.must(v, "get", "pod", "crash")
        assert "CrashLoopBackOff" in out, out
    assert any(r == "BackOff" for r, _ in events_for("crash")), events_for("crash")
    # After the 10 s back-off it runs again (and crashes again).
    wait_pod("crash", lambda p: ctr_status(p)["restartCount"] >= 2, timeout=40, what="second restart")
    prev = agent_logs("crash", "previous=true")
    assert prev == "dying\n", prev
    delete_and_wait("crash")


def test_restart_policy_never_and_on_failure():
    """restartPolicy Never ends in Succeeded/Failed; OnFailure does not restart a clean exit."""
    agent()
    create_pod({"restartPolicy": "Never"}, "ok-never", ["/bin/sh", "-c", "exit 0"])
    create_pod({"restartPolicy": "Never"}, "bad-never", ["/bin/sh", "-c", "exit 7"])
    create_pod({"restartPolicy": "OnFailure"}, "ok-onfail", ["/bin/sh", "-c", "exit 0"])
    p = wait_pod("ok-never", lambda p: p["status"].get("phase") == "Succeeded", what="Succeeded")
    assert ctr_status(p)["state"]["terminated"]["reason"] == "Completed"
    p = wait_pod("bad-never", lambda p: p["status"].get("phase") == "Failed", what="Failed")
    assert ctr_status(p)["state"]["terminated"]["exitCode"] == 7
    assert ctr_status(p)["restartCount"] == 0
    p = wait_pod("ok-onfail", lambda p: p["status"].get("phase") == "Succeeded", what="Succeeded")
    assert ctr_status(p)["restartCount"] == 0
    for n in ("ok-never", "bad-never", "ok-onfail"):
        delete_and_wait(n)


def test_graceful_delete_runs_prestop_and_sigterm():
    """kubectl delete waits for preStop and SIGTERM handling; the process group is gone after."""
    a = agent()
    marker = os.path.join(a.data_dir, "prestop-ran")
    create_pod({"terminationGracePeriodSeconds": 20,
                "container": {"lifecycle": {"preStop": {"exec": {"command": [
                    "/bin/sh", "-c", "touch %s" % marker]}}}}},
               "graceful", ["/bin/sh", "-c", "trap 'echo got TERM; exit 0' TERM; "
                            "while true; do sleep 0.1; done"])
    wait_pod("graceful", running)
    pg = pgid_of("graceful")
    assert pg and pgid_alive(pg)
    t0 = time.time()
    delete_and_wait("graceful")
    # Generous bound: SIGTERM ended it, not the 20 s SIGKILL.
    assert time.time() - t0 < 18, "delete took the whole grace period"
    assert os.path.exists(marker), "preStop hook did not run"
    assert not pgid_alive(pg)
    reasons = [r for r, _ in events_for("graceful")]
    assert "Killing" in reasons, reasons


def test_sigkill_after_grace_period():
    """A container ignoring SIGTERM is killed after terminationGracePeriodSeconds."""
    agent()
    create_pod({"terminationGracePeriodSeconds": 2}, "stubborn",
               ["/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"])
    wait_pod("stubborn", running)
    pg = pgid_of("stubborn")
    delete_and_wait("stubborn")
    assert not pgid_alive(pg)


def test_force_delete():
    """--grace-period=0 --force removes the pod at once and the agent kills its processes."""
    agent()
    s = server()
    create_pod({}, "forced", ["/bin/sh", "-c", "trap '' TERM; sleep 3600"])
    wait_pod("forced", running)
    pg = pgid_of("forced")
    s.must(versions()[0], "delete", "pod", "forced", "--grace-period=0", "--force")
    assert get_pod("forced") is None
    ct.wait_until(lambda: not pgid_alive(pg), timeout=20, what="forced pod's processes gone")


def test_agent_restart_adopts_without_duplicates():
    """Killing and restarting the agent keeps the container (same process, no duplicate, no orphan)."""
    global _agent
    a = agent()
    mark = "adopt-mark-%d" % os.getpid()
    create_pod({}, "adopt", ["/bin/sh", "-c", "echo %s; exec sleep 3600" % mark])
    create_pod({}, "doomed", ["/bin/sh", "-c", "sleep 3600"])
    wait_pod("adopt", running)
    wait_pod("doomed", running)
    pg, pg_doomed = pgid_of("adopt"), pgid_of("doomed")
    before = ctr_status(get_pod("adopt"))
    a.kill9()
    assert pgid_alive(pg), "containers must survive the agent"
    # Deleted while no agent runs: the next agent must kill it.
    server().must(versions()[-1], "delete", "pod", "doomed", "--grace-period=0", "--force")
    _agent = Agent(server(), data_dir=a.data_dir).start()
    ct.wait_until(lambda: not pgid_alive(pg_doomed), timeout=20, what="orphan killed")
    time.sleep(2)
    pod = wait_pod("adopt", running)
    assert ctr_status(pod)["restartCount"] == before["restartCount"] == 0, ctr_status(pod)
    assert pgid_of("adopt") == pg and pgid_alive(pg)
    groups = [g for (uid, c), g in _agent.pgids().items() if c == "adopt"]
    assert groups == [pg], groups
    # Logs still flow after the restart.
    out = agent_logs("adopt")
    assert mark in out, out
    delete_and_wait("adopt")
    assert not pgid_alive(pg)


def pod_ready(pod):
    """The pod's Ready condition as a bool (False when absent)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def test_agent_restart_keeps_readiness():
    """A ready pod with a readiness probe stays Ready across an agent restart, before its probe runs again."""
    global _agent
    a = agent()
    # The first probe comes 3 s after the probe starts, also after an
    # adoption: long enough to see a pod wrongly taken out meanwhile.
    create_pod({"container": {"readinessProbe": {"exec": {"command": ["true"]},
                                                 "initialDelaySeconds": 3,
                                                 "periodSeconds": 1}}},
               "steady-ready", ["/bin/sh", "-c", "sleep 3600"])
    wait_pod("steady-ready", pod_ready, timeout=30, what="steady-ready Ready")
    pg = pgid_of("steady-ready")
    a.kill9()
    _agent = Agent(server(), data_dir=a.data_dir).start()
    # The new agent adopts the container and publishes its status within
    # a second; for 4 s the pod must never have been reported not ready.
    deadline = time.time() + 4
    while time.time() < deadline:
        pod = get_pod("steady-ready")
        assert pod is not None and pod_ready(pod), (pod or {}).get("status")
        time.sleep(0.1)
    assert pgid_of("steady-ready") == pg, "the container was restarted, not adopted"
    delete_and_wait("steady-ready")


def test_unknown_image_err_image_pull():
    """An image not in the catalog and without a command waits in ErrImagePull; other pods run on."""
    agent()
    s = server()
    create_pod({}, "steady", ["/bin/sh", "-c", "sleep 3600"])
    create_pod({}, "noimage", None, image="registry.example/nothing-here:1.0")
    p = wait_pod("noimage", lambda p: waiting_reason(p) == "ErrImagePull", what="ErrImagePull")
    assert "nothing-here" in ctr_status(p)["state"]["waiting"]["message"]
    assert p["status"]["phase"] == "Pending"
    for v in versions():
        assert "ErrImagePull" in s.must(v, "get", "pod", "noimage")
    wait_pod("steady", running)
    assert any(r == "Failed" for r, _ in events_for("noimage"))
    delete_and_wait("noimage")
    delete_and_wait("steady")


def test_liveness_probe_on_closed_port_restarts():
    """A liveness probe against a closed port posts Unhealthy events and restarts the container."""
    agent()
    port = ct.free_port()
    create_pod({"container": {"livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1,
                                                "failureThreshold": 2}}},
               "probed", ["/bin/sh", "-c", "sleep 3600"])
    wait_pod("probed", lambda p: ctr_status(p).get("restartCount", 0) >= 1, timeout=60,
             what="restart after liveness failure")
    ev = events_for("probed")
    assert any(r == "Unhealthy" and "Liveness probe failed" in m and "connection refused" in m
               for r, m in ev), ev
    assert any(r == "Killing" and "liveness" in m for r, m in ev), ev
    delete_and_wait("probed")


def test_readiness_probe_gates_ready():
    """A readiness probe that fails keeps the pod not Ready while it runs."""
    agent()
    create_pod({"container": {"readinessProbe": {"exec": {"command": ["/bin/sh", "-c", "exit 1"]},
                                                 "periodSeconds": 1}}},
               "unready", ["/bin/sh", "-c", "sleep 3600"])
    p = wait_pod("unready", running)
    time.sleep(3)
    p = get_pod("unready")
    assert running(p) and ctr_status(p)["ready"] is False
    ready = [c for c in p["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "False"
    assert "0/1" in server().must(versions()[-1], "get", "pod", "unready")
    delete_and_wait("unready")


def test_env_from_configmap_secret_and_fields():
    """Container env gets values, configMap and secret keys, and pod fields."""
    agent()
    s = server()
    code, _ = s.json("POST", "/api/v1/namespaces/default/configmaps",
                     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                      "data": {"color": "blue"}})
    assert code == 201
    code, _ = s.json("POST", "/api/v1/namespaces/default/secrets",
                     {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
                      "data": {"pw": "aHVudGVyMg=="}})
    assert code == 201
    env = [{"name": "PLAIN", "value": "v1"},
           {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
           {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
           {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
           {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    create_pod({"restartPolicy": "Never", "container": {"env": env, "workingDir": "/tmp"}},
               "envpod", ["/bin/sh", "-c", "echo $PLAIN $COLOR $PW $MY_NAME $MY_NODE $MY_IP $(pwd)"])
    wait_pod("envpod", lambda p: p["status"].get("phase") == "Succeeded", what="Succeeded")
    out = agent_logs("envpod").strip()
    assert out == "v1 blue hunter2 envpod %s 127.0.0.1 /tmp" % NODE, out
    delete_and_wait("envpod")


def test_agent_endpoint_requires_token():
    """The agent's log endpoint refuses requests without the cluster's token."""
    a = agent()
    req = urllib.request.Request("http://127.0.0.1:%d/containerLogs/default/x/y" % a.port)
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("endpoint answered without a token")
    except urllib.error.HTTPError as e:
        assert e.code == 401


def test_agent_sigterm_exits_zero():
    """capstan-agent exits 0 on SIGTERM and leaves its containers running for the next agent."""
    global _agent
    a = agent()
    create_pod({}, "survivor", ["/bin/sh", "-c", "sleep 3600"])
    wait_pod("survivor", running)
    pg = pgid_of("survivor")
    assert a.terminate() == 0
    assert pgid_alive(pg)
    _agent = Agent(server(), data_dir=a.data_dir).start()
    delete_and_wait("survivor")
    assert not pgid_alive(pg)


def test_simulated_nodes():
    """--simulate 3 registers three hollow nodes whose pods run without processes."""
    s = server()
    sim = Agent(s, extra=["--simulate", "3"], node="hollow").start()
    for i in range(3):
        ct.wait_until(lambda: s.json("GET", "/api/v1/nodes/hollow-%d" % i)[0] == 200,
                      timeout=20, what="hollow node %d" % i)
    # Hollow nodes run no pod network: the node IPAM controller gives them no
    # range. A Node created after them is synced after them (one queue, in
    # order), so once it has its range theirs were decided.
    assert s.json("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                             "metadata": {"name": "after-hollow"}})[0] == 201
    ct.wait_until(lambda: s.json("GET", "/api/v1/nodes/after-hollow")[1].get("spec", {}).get("podCIDR"),
                  timeout=20, what="a pod range for after-hollow")
    for i in range(3):
        assert "podCIDR" not in s.json("GET", "/api/v1/nodes/hollow-%d" % i)[1].get("spec", {})
    assert s.json("DELETE", "/api/v1/nodes/after-hollow")[0] == 200
    create_pod({}, "ghost", None, image="anything:1", node="hollow-1")
    p = wait_pod("ghost", running, what="simulated pod running")
    assert ctr_status(p)["ready"] is True
    delete_and_wait("ghost")
    assert sim.terminate() == 0


def test_server_runs_local_agent():
    """capstan-server without --no-agent registers its own node and runs pods on it."""
    data = ct.mktemp("capstan-e2e-local-")
    port, peer = ct.free_port(), ct.free_port()
    log = open(os.path.join(data, "server.log"), "ab")
    proc = subprocess.Popen([SERVER_BIN, "--data-dir", data, "--listen", "127.0.0.1:%d" % port,
                             "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
                             "--pod-network", "host", "--proxy-mode=none"],
                            stdout=subprocess.PIPE, stderr=log, start_new_session=True)

    class Stopper:
        keep = False

        def _hard_stop(self):
            if proc.poll() is None:
                ct._kill_group(proc, signal.SIGKILL)
                proc.wait()
            for pg in Agent(None, data_dir=os.path.join(data, "agent")).pgids().values():
                try:
                    os.killpg(pg, signal.SIGKILL)
                except OSError:
                    pass
            if self in ct._live:
                ct._live.remove(self)
    stopper = Stopper()
    ct._live.append(stopper)
    try:
        kubeconfig = proc.stdout.readline().decode().strip()
        assert kubeconfig.endswith("kubeconfig"), kubeconfig
        host = os.uname().nodename
        k = [kh.kubectl_path(versions()[-1]), "--kubeconfig", kubeconfig]
        ct.wait_until(lambda: host in subprocess.run(k + ["get", "nodes"], capture_output=True,
                                                      text=True).stdout,
                      timeout=30, interval=0.3, what="local node")
        subprocess.run(k + ["run", "local", "--image=busybox", "--overrides",
                            json.dumps({"spec": {"nodeName": host}}), "--", "sh", "-c",
                            "echo local pod; sleep 3600"], check=True, capture_output=True)
        node = json.loads(subprocess.run(k + ["get", "node", host, "-o", "json"],
                                         capture_output=True, text=True).stdout)
        port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        ct.wait_until(lambda: "local pod" in agent_logs("local", port=port, token_dir=data),
                      timeout=30, interval=0.3, what="local pod logs")
        r = subprocess.run(k + ["delete", "pod", "local", "--timeout=60s"], capture_output=True,
                           text=True, timeout=90)
        assert r.returncode == 0, r.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.stdout.close()
        log.close()
        stopper._hard_stop()


def test_exec_stdout_exit_code_stdin_stderr():
    """kubectl exec (websocket v5, 1.30+): output, exit codes, stdin with -i, stderr apart, in the container's env."""
    agent()
    s = server()
    name = "exec-pod"
    create_pod({"container": {"env": [{"name": "GREETING", "value": "from-the-pod"}],
                              "workingDir": "/tmp"}},
               name, command=["sleep", "3600"])
    wait_pod(name, running, what="pod running")
    # The pod goes also when a check fails: test_no_container_process_left
    # then reports only what outlived its own test.
    try:
        vs = [v for v in ("1.30", "1.31", "1.32", "1.33") if os.access(kh.kubectl_path(v), os.X_OK)]
        assert "1.33" in vs, vs
        for v in vs:
            # Output comes back and kubectl exits 0.
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
        v = "1.33"
        # The command sees the container's env and working directory.
        out = s.must(v, "exec", name, "--", "sh", "-c", 'echo "$GREETING $(pwd)"')
        assert out == "from-the-pod /tmp\n", out
        # Output larger than any buffer arrives whole, from its first line (the
        # command writes before kubectl has set up its streams, and kubectl
        # drops what comes for a stream it does not have yet).
        rc, out, err = s.kubectl(v, "exec", name, "--", "sh", "-c",
                                 "i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done")
        lines = out.splitlines()
        assert (rc == 0 and len(lines) == 20000 and lines[0] == "line-0" and
                lines[-1] == "line-19999"), (rc, len(lines), lines[:1], lines[-1:], err[:500])
        assert "Unknown stream id" not in err, err[:500]
        big = "".join("%06d\n" % i for i in range(60000))
        rc, out, err = s.kubectl(v, "exec", "-i", name, "--", "cat", stdin=big)
        assert rc == 0 and out == big, (rc, len(out), err)
        # A command that does not exist fails, and a missing pod is NotFound.
        rc, out, err = s.kubectl(v, "exec", name, "--", "/no/such/binary")
        assert rc != 0 and "/no/such/binary" in err, (rc, out, err)
        rc, out, err = s.kubectl(v, "exec", "no-such-pod", "--", "true")
        assert rc != 0 and "NotFound" in err, (rc, out, err)
        # A background child the command left does not outlive the exec.
        s.must(v, "exec", name, "--", "sh", "-c", "sleep 7777 & echo started")
        ct.wait_until(lambda: procs_with("7777") == [], timeout=10, what="exec's children gone")
    finally:
        delete_and_wait(name)


def test_volumes_mounted_at_their_paths():
    """emptyDir is shared between containers at their own mountPaths, and a readOnly hostPath cannot be written."""
    agent()
    base = ct.mktemp("capstan-vol-")
    host = os.path.join(base, "host")
    os.makedirs(host)
    with open(os.path.join(host, "f.txt"), "w") as f:
        f.write("from-the-host\n")
    mnt = os.path.join(base, "mnt")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vols"},
           "spec": {"nodeName": NODE, "restartPolicy": "Never",
                    "volumes": [{"name": "shared", "emptyDir": {}},
                                {"name": "h", "hostPath": {"path": host}}],
                    "containers": [
                        {"name": "writer", "image": "busybox",
                         "command": ["sh", "-c", "echo from-writer > %s/a/x; sleep 2" % mnt],
                         "volumeMounts": [{"name": "shared", "mountPath": mnt + "/a"}]},
                        {"name": "reader", "image": "busybox",
                         "command": ["sh", "-c", "sleep 1; cat %s/b/x; cat %s/h/f.txt; "
                                     "echo no > %s/h/g.txt || echo refused" % (mnt, mnt, mnt)],
                         "volumeMounts": [{"name": "shared", "mountPath": mnt + "/b"},
                                          {"name": "h", "mountPath": mnt + "/h",
                                           "readOnly": True}]}]}}
    code, body = server().json("POST", "/api/v1/namespaces/default/pods", pod)
    assert code == 201, body
    wait_pod("vols", lambda p: p["status"].get("phase") == "Succeeded", what="Succeeded")
    out = server().must(versions()[-1], "logs", "vols", "-c", "reader")
    # stdout and stderr are separate pipes: the shell's complaint may come
    # before or after "refused".
    lines = out.splitlines()
    assert lines[:2] == ["from-writer", "from-the-host"], out
    assert "refused" in lines[2:], out
    assert any("Read-only file system" in line for line in lines[2:]), out
    # The mounts belong to the containers: the host sees the volume only in
    # the pod's directory, and the read-only host path is untouched.
    assert not os.path.exists(os.path.join(mnt, "a", "x"))
    assert not os.path.exists(os.path.join(host, "g.txt"))
    delete_and_wait("vols")


def test_no_container_process_left():
    """After the pods are deleted no container process of this run is left."""
    a = agent()
    live = [pg for pg in a.pgids().values() if pgid_alive(pg)]
    assert live == [], live


if __name__ == "__main__":
    ct.run(globals())
