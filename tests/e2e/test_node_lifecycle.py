"""End to end: the scheduler places pods where they fit and explains why
not, the node lifecycle controller marks silent nodes Unknown, taints them
and evicts their pods after their tolerations, and kubectl cordon, uncordon
and drain work. The nodes are hollow: this script registers them and renews
their Leases, as agents would."""

import datetime
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_harness as kh  # noqa: E402

ct = kh.ct
KUBECTL = "1.33"
# kubectl 1.33's drain sends DeleteOptions as protobuf, which the API server
# does not decode yet; 1.27's sends JSON.
DRAIN_KUBECTL = "1.27"
GRACE = 3


def now_micro():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class HollowNodes:
    """Acts as the agents of some nodes: renews their Leases, reports Ready,
    and finishes the deletion of their terminating pods."""

    def __init__(self, srv):
        self.srv = srv
        self.live = set()
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add(self, name, cpu="2", memory="4Gi", labels=None, taints=None):
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": dict(labels or {},
                                                          **{"kubernetes.io/hostname": name})},
                "spec": {"taints": taints or []},
                "status": {"capacity": {"cpu": cpu, "memory": memory, "pods": "20"},
                           "allocatable": {"cpu": cpu, "memory": memory, "pods": "20"},
                           "conditions": [self._ready()]}}
        code, body = self.srv.json("POST", "/api/v1/nodes", node)
        assert code == 201, body
        # Status is a subresource: the create drops it, the agent posts it
        # (as a patch: the node IPAM controller may have set spec.podCIDR
        # meanwhile, so a PUT of what the create returned would be stale).
        code, body = self.srv.json("PATCH", "/api/v1/nodes/%s/status" % name,
                                   {"status": node["status"]},
                                   {"Content-Type": "application/merge-patch+json"})
        assert code == 200, body
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": name, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                          "renewTime": now_micro()}}
        code, body = self.srv.json(
            "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)
        assert code == 201, body
        with self.lock:
            self.live.add(name)

    def silence(self, name):
        with self.lock:
            self.live.discard(name)

    def resume(self, name):
        with self.lock:
            self.live.add(name)

    def close(self):
        self.stop_ev.set()
        self.thread.join(10)

    @staticmethod
    def _ready():
        return {"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}

    def _tick(self, name):
        self.srv.request("PATCH",
                         "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"
                         + name, {"spec": {"renewTime": now_micro()}},
                         headers={"Content-Type": "application/merge-patch+json"})
        code, node = self.srv.json("GET", "/api/v1/nodes/" + name)
        if code == 200:
            ready = [c for c in node.get("status", {}).get("conditions", [])
                     if c.get("type") == "Ready"]
            if not ready or ready[0].get("status") != "True":
                # What a kubelet does when it finds its node marked Unknown.
                self.srv.request("PATCH", "/api/v1/nodes/%s/status" % name,
                                 {"status": {"conditions": [self._ready()]}},
                                 headers={"Content-Type":
                                          "application/strategic-merge-patch+json"})
        code, pods = self.srv.json("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3D" + name)
        for p in (pods or {}).get("items", []) if code == 200 else []:
            md = p["metadata"]
            if md.get("deletionTimestamp"):
                self.srv.request("DELETE", "/api/v1/namespaces/%s/pods/%s?gracePeriodSeconds=0"
                                 % (md["namespace"], md["name"]))

    def _run(self):
        while not self.stop_ev.is_set():
            with self.lock:
                names = sorted(self.live)
            for n in names:
                try:
                    self._tick(n)
                except OSError:
                    pass
            self.stop_ev.wait(0.5)


def start(extra=None):
    srv = kh.ApiServer(extra=["--node-monitor-grace-period", str(GRACE)] + (extra or [])).start()
    return srv, HollowNodes(srv)


def make_pod(srv, name, cpu=None, node_selector=None, tolerations=None, node_name=None):
    c = {"name": "c", "image": "busybox"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    spec = {"containers": [c]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations is not None:
        spec["tolerations"] = tolerations
    if node_name:
        spec["nodeName"] = node_name
    code, body = srv.json("POST", "/api/v1/namespaces/default/pods",
                          {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name}, "spec": spec})
    assert code == 201, body
    return body


def get_pod(srv, name):
    code, body = srv.json("GET", "/api/v1/namespaces/default/pods/" + name)
    return body if code == 200 else None


def node_of(srv, name):
    p = get_pod(srv, name)
    return p and p["spec"].get("nodeName")


def wait_bound(srv, name, timeout=20):
    return ct.wait_until(lambda: node_of(srv, name), timeout=timeout,
                         what="pod %s bound" % name)


def events_for(srv, name):
    code, body = srv.json("GET", "/api/v1/namespaces/default/events")
    assert code == 200, body
    return [e for e in body["items"] if e["involvedObject"]["name"] == name]


def test_scheduler_places_pods():
    """Pods go to nodes with room, matching labels and tolerated taints; an
    unfittable pod stays Pending with kube-scheduler's FailedScheduling message
    and is placed once a node that fits joins."""
    srv, nodes = start()
    try:
        nodes.add("n1", labels={"disk": "hdd"})
        nodes.add("n2", labels={"disk": "ssd"})
        nodes.add("n3", labels={"gpu": "true"},
                  taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
        make_pod(srv, "big-a", cpu="1500m")
        make_pod(srv, "big-b", cpu="1.5")
        a, b = wait_bound(srv, "big-a"), wait_bound(srv, "big-b")
        assert {a, b} == {"n1", "n2"}, (a, b)     # 1.5 + 1.5 cpu fit no node twice
        make_pod(srv, "ssd", node_selector={"disk": "ssd"})
        assert wait_bound(srv, "ssd") == "n2"
        make_pod(srv, "gpu", node_selector={"gpu": "true"},
                 tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu",
                               "effect": "NoSchedule"}])
        assert wait_bound(srv, "gpu") == "n3"
        # The event is written after the binding, as kube-scheduler does.
        scheduled = ct.wait_until(
            lambda: [e for e in events_for(srv, "gpu") if e["reason"] == "Scheduled"],
            timeout=10, what="the Scheduled event of gpu")
        assert scheduled[0]["message"] == "Successfully assigned default/gpu to n3", scheduled

        make_pod(srv, "huge", cpu="8")
        want = ("0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, "
                "2 Insufficient cpu.")
        ev = ct.wait_until(lambda: [e for e in events_for(srv, "huge")
                                    if e["reason"] == "FailedScheduling"], timeout=15,
                           what="FailedScheduling event")
        assert ev[0]["type"] == "Warning" and ev[0]["message"] == want, ev
        cond = ct.wait_until(lambda: [c for c in get_pod(srv, "huge")["status"].get(
            "conditions", []) if c["type"] == "PodScheduled"], timeout=10,
            what="PodScheduled condition")
        assert cond[0]["status"] == "False" and cond[0]["reason"] == "Unschedulable", cond
        assert cond[0]["message"] == want, cond
        time.sleep(1)
        assert not node_of(srv, "huge")
        rc, out, err = srv.kubectl(KUBECTL, "get", "pod", "huge", "-o",
                                   "jsonpath={.status.phase}")
        assert rc == 0 and out == "Pending", (out, err)

        nodes.add("n4", cpu="16", memory="64Gi")
        assert wait_bound(srv, "huge") == "n4"
    finally:
        nodes.close()
        srv.terminate()


def test_silent_node_is_tainted_and_evicted():
    """A node whose Lease stops being renewed turns Ready=Unknown with the
    unreachable taints; its pods tolerating them for 5 s are evicted, pods
    with the default 300 s stay; when the Lease resumes the taints go and
    Ready comes back."""
    srv, nodes = start()
    try:
        nodes.add("n1")
        nodes.add("n2")
        short = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                  "effect": "NoExecute", "tolerationSeconds": 5}]
        make_pod(srv, "short-1", node_name="n1", tolerations=short)
        make_pod(srv, "short-2", node_name="n1", tolerations=short)
        make_pod(srv, "patient", node_name="n1")   # the API server's 300 s default
        make_pod(srv, "elsewhere", node_name="n2", tolerations=short)
        defaults = [t for t in get_pod(srv, "patient")["spec"]["tolerations"]
                    if t["key"] == "node.kubernetes.io/unreachable"]
        assert defaults and defaults[0]["tolerationSeconds"] == 300, defaults
        time.sleep(GRACE + 1)

        def node(name):
            return srv.json("GET", "/api/v1/nodes/" + name)[1]

        def ready(n):
            return [c for c in n["status"]["conditions"] if c["type"] == "Ready"][0]

        # Healthy nodes stay Ready and untainted across a whole grace period.
        assert ready(node("n1"))["status"] == "True"
        assert not node("n1")["spec"].get("taints")

        nodes.silence("n1")
        silenced = time.time()
        n = ct.wait_until(lambda: (lambda x: x if ready(x)["status"] == "Unknown" else None)(
            node("n1")), timeout=GRACE + 15, what="n1 Ready=Unknown")
        r = ready(n)
        assert r["reason"] == "NodeStatusUnknown", r
        assert r["message"] == "Kubelet stopped posting node status.", r
        taints = ct.wait_until(lambda: node("n1")["spec"].get("taints"), timeout=10,
                               what="unreachable taints")
        assert sorted((t["key"], t["effect"]) for t in taints) == [
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoSchedule")], taints
        assert ready(node("n2"))["status"] == "True"

        def evicted(name):
            p = get_pod(srv, name)
            return p is None or p["metadata"].get("deletionTimestamp") is not None

        ct.wait_until(lambda: evicted("short-1") and evicted("short-2"), timeout=30,
                      what="pods evicted after their 5 s toleration")
        # Not before the toleration ran out (generous: it cannot be earlier).
        assert time.time() - silenced >= 5
        assert not evicted("patient")
        assert not evicted("elsewhere")

        nodes.resume("n1")
        ct.wait_until(lambda: not node("n1")["spec"].get("taints"), timeout=GRACE + 15,
                      what="taints removed")
        ct.wait_until(lambda: ready(node("n1"))["status"] == "True", timeout=10,
                      what="n1 Ready again")
        assert not evicted("patient")
    finally:
        nodes.close()
        srv.terminate()


def test_cordon_uncordon_drain():
    """kubectl cordon keeps new pods off a node (FailedScheduling says so),
    uncordon lets them on, drain cordons and empties it."""
    srv, nodes = start()
    try:
        nodes.add("n1", labels={"pick": "me"})
        out = srv.must(KUBECTL, "cordon", "n1")
        assert "cordoned" in out, out
        make_pod(srv, "waits", node_selector={"pick": "me"})
        ev = ct.wait_until(lambda: [e for e in events_for(srv, "waits")
                                    if e["reason"] == "FailedScheduling"], timeout=15,
                           what="FailedScheduling on a cordoned node")
        assert ev[0]["message"] == "0/1 nodes are available: 1 node(s) were unschedulable.", ev
        out = srv.must(KUBECTL, "uncordon", "n1")
        assert "uncordoned" in out, out
        assert wait_bound(srv, "waits") == "n1"
        make_pod(srv, "second", node_selector={"pick": "me"})
        assert wait_bound(srv, "second") == "n1"

        rc, out, err = srv.kubectl(DRAIN_KUBECTL, "drain", "n1", "--force", "--ignore-daemonsets",
                                   "--grace-period", "1", "--timeout", "40s", timeout=60)
        assert rc == 0, (out, err)
        assert "drained" in out, out
        code, body = srv.json("GET", "/api/v1/nodes/n1")
        assert body["spec"].get("unschedulable") is True, body["spec"]
        code, pods = srv.json("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1")
        assert code == 200 and pods["items"] == [], pods
    finally:
        nodes.close()
        srv.terminate()


if __name__ == "__main__":
    ct.run(globals())
