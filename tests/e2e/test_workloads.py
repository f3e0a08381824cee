"""End to end: Deployments, ReplicaSets, DaemonSets, the garbage collector
and Endpoints, driven by real kubectl (1.27 and 1.33) against a fresh
capstan-server. The nodes are hollow: this script registers them, renews
their Leases and plays their kubelet (pods bound to them become Running and
Ready with an IP; terminating ones are finished), so the test depends on the
API server, the controllers and the scheduler only."""

import datetime
import itertools
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_harness as kh  # noqa: E402

ct = kh.ct
NS = "/api/v1/namespaces/default"
APPS = "/apis/apps/v1/namespaces/default"
MERGE = {"Content-Type": "application/merge-patch+json"}


def now_micro():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kubelets:
    """The kubelets of some hollow nodes: Leases renewed, Ready reported, pods
    bound to them made Running (Ready unless listed in not_ready) with a pod
    IP, and terminating pods removed."""

    def __init__(self, srv):
        self.srv = srv
        self.nodes = set()
        self.not_ready = set()
        self.never_ready_images = set()
        self.ips = {}
        self.next_ip = itertools.count(2)
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add(self, name, labels=None, taints=None):
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status",
                 "lastHeartbeatTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}
        status = {"capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                  "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                  "conditions": [ready]}
        code, body = self.srv.json("POST", "/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": dict(labels or {},
                                                      **{"kubernetes.io/hostname": name})},
            "spec": {"taints": taints or []}})
        assert code == 201, body
        # A patch, as kubelets write status: the node IPAM controller may
        # have set spec.podCIDR meanwhile, so a PUT would be stale.
        code, body = self.srv.json("PATCH", "/api/v1/nodes/%s/status" % name,
                                   {"status": status}, MERGE)
        assert code == 200, body
        code, body = self.srv.json(
            "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": name, "namespace": "kube-node-lease"},
             "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                      "renewTime": now_micro()}})
        assert code == 201, body
        with self.lock:
            self.nodes.add(name)

    def remove(self, name):
        with self.lock:
            self.nodes.discard(name)
        code, body = self.srv.json("DELETE", "/api/v1/nodes/" + name)
        assert code == 200, body

    def set_ready(self, pod, ready):
        with self.lock:
            (self.not_ready.discard if ready else self.not_ready.add)(pod)

    def close(self):
        self.stop_ev.set()
        self.thread.join(10)

    def _tick(self):
        with self.lock:
            nodes = set(self.nodes)
            not_ready = set(self.not_ready)
            bad_images = set(self.never_ready_images)
        for n in nodes:
            self.srv.request("PATCH", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/"
                             "leases/" + n, {"spec": {"renewTime": now_micro()}}, headers=MERGE)
        code, pods = self.srv.json("GET", "/api/v1/pods")
        if code != 200:
            return
        for p in pods["items"]:
            md, node = p["metadata"], p["spec"].get("nodeName")
            if node not in nodes:
                continue
            path = "/api/v1/namespaces/%s/pods/%s" % (md["namespace"], md["name"])
            if md.get("deletionTimestamp"):
                self.srv.request("DELETE", path + "?gracePeriodSeconds=0")
                continue
            images = {c.get("image") for c in p["spec"].get("containers", [])}
            want = "False" if md["name"] in not_ready or images & bad_images else "True"
            st = p.get("status", {})
            cur = [c for c in st.get("conditions", []) if c.get("type") == "Ready"]
            if st.get("phase") == "Running" and cur and cur[0]["status"] == want:
                continue
            ip = self.ips.setdefault(md["uid"], "10.1.%d.%d" % divmod(next(self.next_ip), 250))
            now = now_rfc3339()
            status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                      "hostIP": "127.0.0.1", "startTime": st.get("startTime", now),
                      "conditions": [
                          {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                          {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                          {"type": "ContainersReady", "status": want, "lastTransitionTime": now},
                          {"type": "Ready", "status": want, "lastTransitionTime": now}],
                      "containerStatuses": [
                          {"name": c["name"], "image": c.get("image", ""), "ready": want == "True",
                           "restartCount": 0, "started": True,
                           "state": {"running": {"startedAt": now}}}
                          for c in p["spec"].get("containers", [])]}
            self.srv.request("PATCH", path + "/status", {"status": status}, headers=MERGE)

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                self._tick()
            except (OSError, ValueError):
                pass
            self.stop_ev.wait(0.2)


def start(nodes=("n1", "n2", "n3")):
    srv = kh.ApiServer().start()
    k = Kubelets(srv)
    for n in nodes:
        k.add(n)
    return srv, k


def get(srv, path):
    code, body = srv.json("GET", path)
    return body if code == 200 else None


def items(srv, path):
    code, body = srv.json("GET", path)
    assert code == 200, body
    return body["items"]


def owned_by(objs, uid):
    return [o for o in objs if any(r.get("uid") == uid and r.get("controller")
                                   for r in o["metadata"].get("ownerReferences", []))]


def rs_of(srv, deploy):
    d = get(srv, APPS + "/deployments/" + deploy)
    return owned_by(items(srv, APPS + "/replicasets"), d["metadata"]["uid"])


def live_pods(srv, selector):
    return [p for p in items(srv, NS + "/pods?labelSelector=" + selector)
            if not p["metadata"].get("deletionTimestamp")]


def rollout_ok(srv, ver, name, timeout="60s"):
    rc, out, err = srv.kubectl(ver, "rollout", "status", "deployment/" + name,
                               "--timeout=" + timeout, timeout=90)
    assert rc == 0, (rc, out, err, srv.log_tail())
    assert "successfully rolled out" in out, out


def create_deployment(srv, ver, name, replicas, image="busybox"):
    # JSON from kubectl 1.27, protobuf from 1.32 on.
    srv.must(ver, "create", "deployment", name, "--image=" + image,
             "--replicas=%d" % replicas)


def image_of(obj):
    return obj["spec"]["template"]["spec"]["containers"][0]["image"]


def pod_image(pod):
    return pod["spec"]["containers"][0]["image"]


def rollout_scenario(ver):
    srv, k = start()
    try:
        create_deployment(srv, ver, "web", 3)
        rollout_ok(srv, ver, "web")
        rs = rs_of(srv, "web")
        assert len(rs) == 1, rs
        h = rs[0]["metadata"]["labels"]["pod-template-hash"]
        assert rs[0]["metadata"]["name"] == "web-" + h
        assert rs[0]["spec"]["selector"]["matchLabels"]["pod-template-hash"] == h
        assert rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        ref = rs[0]["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "Deployment" and ref["blockOwnerDeletion"] is True, ref
        pods = live_pods(srv, "app=web")
        assert len(pods) == 3 and all(p["metadata"]["generateName"] == "web-%s-" % h
                                      for p in pods), pods
        assert len(owned_by(pods, rs[0]["metadata"]["uid"])) == 3

        srv.must(ver, "set", "image", "deployment/web", "busybox=busybox:1.36")
        rollout_ok(srv, ver, "web")
        rs = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r
              for r in rs_of(srv, "web")}
        assert set(rs) == {"1", "2"}, rs.keys()
        assert rs["2"]["spec"]["replicas"] == 3 and rs["1"]["spec"]["replicas"] == 0
        assert image_of(rs["2"]) == "busybox:1.36"
        # rollout status can report success while the old set's deletions
        # are still being issued, as in Kubernetes: the pods follow shortly.
        pods = ct.wait_until(lambda: (lambda ps: ps if len(ps) == 3 and {
            pod_image(p) for p in ps} == {"busybox:1.36"} else None)(live_pods(srv, "app=web")),
            timeout=20, what="3 pods of the new image")
        d = get(srv, APPS + "/deployments/web")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        # kubectl's strategic patch directives are applied, never stored.
        assert "$setElementOrder" not in json.dumps(d), d["spec"]["template"]
        st = d["status"]
        assert (st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == \
            (3, 3, 3), st
        assert st["observedGeneration"] == d["metadata"]["generation"], st
        conds = {c["type"]: c for c in st["conditions"]}
        assert conds["Available"]["status"] == "True", conds
        assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable", conds

        out = srv.must(ver, "rollout", "history", "deployment/web")
        assert "REVISION" in out and "\n1 " in out and "\n2 " in out, out

        srv.must(ver, "rollout", "undo", "deployment/web")
        rollout_ok(srv, ver, "web")
        assert image_of(get(srv, APPS + "/deployments/web")) == "busybox"
        rs = {r["metadata"]["name"]: r for r in rs_of(srv, "web")}
        back = rs["web-" + h]
        assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3", back
        assert back["metadata"]["annotations"][
            "deployment.kubernetes.io/revision-history"] == "1"
        assert back["spec"]["replicas"] == 3 and len(rs) == 2

        srv.must(ver, "scale", "deployment/web", "--replicas=5")
        rollout_ok(srv, ver, "web")
        ct.wait_until(lambda: len(live_pods(srv, "app=web")) == 5, timeout=20,
                      what="5 pods after scale")

        srv.must(ver, "rollout", "pause", "deployment/web")
        srv.must(ver, "set", "image", "deployment/web", "busybox=busybox:1.37")
        ct.wait_until(lambda: [c for c in get(srv, APPS + "/deployments/web")["status"]
                               ["conditions"] if c["reason"] == "DeploymentPaused"],
                      timeout=20, what="Progressing DeploymentPaused")
        time.sleep(1)
        assert len(rs_of(srv, "web")) == 2, "a paused deployment rolled out"
        srv.must(ver, "rollout", "resume", "deployment/web")
        rollout_ok(srv, ver, "web")
        ct.wait_until(lambda: {pod_image(p) for p in live_pods(srv, "app=web")} ==
                      {"busybox:1.37"}, timeout=20, what="every pod on the resumed image")

        before = {r["metadata"]["name"] for r in rs_of(srv, "web")}
        srv.must(ver, "rollout", "restart", "deployment/web")
        rollout_ok(srv, ver, "web")
        after = rs_of(srv, "web")
        new = [r for r in after if r["metadata"]["name"] not in before]
        assert len(new) == 1 and new[0]["spec"]["replicas"] == 5, after
        assert "kubectl.kubernetes.io/restartedAt" in \
            new[0]["spec"]["template"]["metadata"]["annotations"]

        # Only revisionHistoryLimit old sets stay.
        code, body = srv.json("PATCH", APPS + "/deployments/web",
                              {"spec": {"revisionHistoryLimit": 1}}, headers=MERGE)
        assert code == 200, body
        ct.wait_until(lambda: len(rs_of(srv, "web")) == 2, timeout=20,
                      what="history trimmed to one old ReplicaSet")
    finally:
        k.close()


def test_rollout_kubectl_1_27():
    """kubectl 1.27: create, rollout status, set image, history, undo, scale,
    pause/resume, restart, and revisionHistoryLimit, as on Kubernetes."""
    rollout_scenario("1.27")


def test_rollout_kubectl_1_33():
    """The same rollout commands work unchanged with kubectl 1.33."""
    rollout_scenario("1.33")


def test_rollout_proportional_scaling():
    """A Deployment scaled in the middle of a rollout spreads the new replicas
    over the old and the new ReplicaSet in proportion to their size."""
    srv, k = start()
    try:
        create_deployment(srv, "1.27", "mid", 10)
        rollout_ok(srv, "1.27", "mid")
        code, body = srv.json("PATCH", APPS + "/deployments/mid", {"spec": {"strategy": {
            "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}}}, headers=MERGE)
        assert code == 200, body
        # Pods of the new image never become ready: the rollout stops part way.
        with k.lock:
            k.never_ready_images.add("busybox:broken")
        srv.must("1.27", "set", "image", "deployment/mid", "busybox=busybox:broken")
        stuck = {}

        def settled():
            rs = rs_of(srv, "mid")
            sizes = sorted(r["spec"]["replicas"] for r in rs)
            stuck["sizes"] = sizes
            return len(rs) == 2 and sum(sizes) == 13 and sizes[0] > 0
        ct.wait_until(settled, timeout=30, what="a rollout stuck at 10 + surge 3")
        time.sleep(1)
        settled()
        assert stuck["sizes"] == [5, 8], stuck     # new: 3 surge + 2 unavailable
        srv.must("1.27", "scale", "deployment/mid", "--replicas=15")

        def scaled():
            sizes = sorted(r["spec"]["replicas"] for r in rs_of(srv, "mid"))
            return sizes if sum(sizes) == 18 else None
        # Kubernetes' docs example: 5 extra (18 allowed) go 3 to the old, 2 to the new.
        assert ct.wait_until(scaled, timeout=20, what="proportional scale") == [7, 11]
    finally:
        k.close()


def test_delete_cascades():
    """Deleting a Deployment removes its ReplicaSets and pods; with
    --cascade=foreground the Deployment goes last; with --cascade=orphan they
    stay, without owner references."""
    srv, k = start()
    try:
        for name in ("bg", "fg", "orph"):
            create_deployment(srv, "1.27", name, 2)
        for name in ("bg", "fg", "orph"):
            rollout_ok(srv, "1.27", name)
        orph_rs = rs_of(srv, "orph")

        srv.must("1.27", "delete", "deployment", "bg")
        ct.wait_until(lambda: not live_pods(srv, "app=bg") and not [
            r for r in items(srv, APPS + "/replicasets") if r["metadata"]["name"].startswith(
                "bg-")], timeout=30, what="bg's ReplicaSet and pods collected")

        # kubectl's --cascade=foreground|orphan: the API server adds the
        # matching finalizer and the garbage collector does the rest.
        fg_rs = rs_of(srv, "fg")
        srv.must("1.27", "delete", "deployment", "fg", "--cascade=foreground", "--wait=false")
        rs_name = fg_rs[0]["metadata"]["name"]
        ct.wait_until(lambda: get(srv, APPS + "/deployments/fg") is None, timeout=30,
                      what="foreground delete finished")
        # The owner goes only after its blocking dependent did.
        assert get(srv, APPS + "/replicasets/" + rs_name) is None
        ct.wait_until(lambda: not live_pods(srv, "app=fg"), timeout=30,
                      what="fg's pods collected")

        srv.must("1.27", "delete", "deployment", "orph", "--cascade=orphan")
        ct.wait_until(lambda: get(srv, APPS + "/deployments/orph") is None, timeout=30,
                      what="orphan delete finished")
        time.sleep(2)
        rs = get(srv, APPS + "/replicasets/" + orph_rs[0]["metadata"]["name"])
        assert rs is not None and not rs["metadata"].get("ownerReferences"), rs
        assert len(live_pods(srv, "app=orph")) == 2
    finally:
        k.close()


def test_two_replicasets_one_pod():
    """A pod matching two ReplicaSets' selectors is owned by one only, and the
    sets settle: no endless creating and deleting."""
    srv, k = start()
    try:
        code, body = srv.json("POST", NS + "/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "lone", "labels": {"app": "dup"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        assert code == 201, body
        for name in ("dup-a", "dup-b"):
            code, body = srv.json("POST", APPS + "/replicasets", {
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "dup"}},
                         "template": {"metadata": {"labels": {"app": "dup"}},
                                      "spec": {"containers": [{"name": "c",
                                                               "image": "busybox"}]}}}})
            assert code == 201, body
        ct.wait_until(lambda: len(live_pods(srv, "app=dup")) == 4, timeout=20,
                      what="4 pods for two sets of 2")
        time.sleep(3)
        pods = live_pods(srv, "app=dup")
        assert len(pods) == 4, pods
        lone = [p for p in pods if p["metadata"]["name"] == "lone"][0]
        refs = [r for r in lone["metadata"].get("ownerReferences", []) if r.get("controller")]
        assert len(refs) == 1, lone["metadata"]
        uids = {p["metadata"]["uid"] for p in pods}
        time.sleep(2)
        assert {p["metadata"]["uid"] for p in live_pods(srv, "app=dup")} == uids, \
            "pods are being replaced"
        for name in ("dup-a", "dup-b"):
            st = get(srv, APPS + "/replicasets/" + name)["status"]
            assert st["replicas"] == 2 and st["fullyLabeledReplicas"] == 2, st
    finally:
        k.close()


def test_bad_input():
    """A selector that does not match the template, and a changed selector,
    are refused with 422 naming the field."""
    srv, k = start(nodes=())
    try:
        d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
             "spec": {"selector": {"matchLabels": {"app": "x"}},
                      "template": {"metadata": {"labels": {"app": "y"}},
                                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
        rc, out, err = srv.kubectl("1.27", "apply", "-f", "-", stdin=json.dumps(d))
        assert rc != 0 and "spec.template.metadata.labels" in err and \
            "`selector` does not match template `labels`" in err, err
        d["spec"]["template"]["metadata"]["labels"]["app"] = "x"
        srv.must("1.27", "apply", "-f", "-", stdin=json.dumps(d))
        code, body = srv.json("PATCH", APPS + "/deployments/bad", {"spec": {
            "selector": {"matchLabels": {"app": "z"}},
            "template": {"metadata": {"labels": {"app": "z"}}}}}, headers=MERGE)
        assert code == 422 and body["reason"] == "Invalid", body
        assert "spec.selector" in body["message"] and "field is immutable" in body["message"]
    finally:
        k.close()


def test_daemonset():
    """A DaemonSet runs one pod per eligible node, pinned by node affinity;
    joining nodes get one, removed nodes lose theirs, untolerated taints and
    nodeSelector keep it off, and an image change rolls through all of them."""
    srv, k = start()
    try:
        k.add("tainted", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
        ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
              "spec": {"selector": {"matchLabels": {"app": "agent"}},
                       "template": {"metadata": {"labels": {"app": "agent"}},
                                    "spec": {"containers": [{"name": "c",
                                                             "image": "busybox"}]}}}}
        srv.must("1.33", "apply", "-f", "-", stdin=json.dumps(ds))

        def placed():
            pods = live_pods(srv, "app=agent")
            return sorted(p["spec"].get("nodeName") or "" for p in pods)
        ct.wait_until(lambda: placed() == ["n1", "n2", "n3"], timeout=30,
                      what="one agent pod on each of n1..n3")
        pod = live_pods(srv, "app=agent")[0]
        term = pod["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        assert term["matchFields"][0]["key"] == "metadata.name", term
        keys = {t["key"] for t in pod["spec"]["tolerations"]}
        assert {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"} <= keys

        def status():
            return get(srv, APPS + "/daemonsets/agent").get("status", {})
        ct.wait_until(lambda: status().get("numberReady") == 3, timeout=20,
                      what="3 ready daemon pods")
        st = status()
        assert (st["desiredNumberScheduled"], st["currentNumberScheduled"],
                st["numberMisscheduled"], st["numberAvailable"]) == (3, 3, 0, 3), st

        k.add("n4")
        ct.wait_until(lambda: placed() == ["n1", "n2", "n3", "n4"], timeout=30,
                      what="a pod on the new node")
        k.remove("n2")
        ct.wait_until(lambda: placed() == ["n1", "n3", "n4"], timeout=30,
                      what="the removed node's pod deleted")

        srv.must("1.33", "set", "image", "daemonset/agent", "c=busybox:1.36")
        rc, out, err = srv.kubectl("1.33", "rollout", "status", "daemonset/agent",
                                   "--timeout=60s", timeout=90)
        assert rc == 0, (out, err)
        pods = live_pods(srv, "app=agent")
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["n1", "n3", "n4"]
        assert {pod_image(p) for p in pods} == {"busybox:1.36"}
        ct.wait_until(lambda: status().get("updatedNumberScheduled") == 3, timeout=20,
                      what="status: 3 updated")
    finally:
        k.close()


def test_endpoints_follow_readiness():
    """A Service's Endpoints list ready pods with the named target port, move
    a pod that turns not ready to notReadyAddresses, and back."""
    srv, k = start()
    try:
        d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
             "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                      "template": {"metadata": {"labels": {"app": "api"}},
                                   "spec": {"containers": [{
                                       "name": "c", "image": "busybox",
                                       "ports": [{"name": "http", "containerPort": 8080}]}]}}}}
        srv.must("1.33", "apply", "-f", "-", stdin=json.dumps(d))
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
               "spec": {"selector": {"app": "api"},
                        "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}
        srv.must("1.33", "apply", "-f", "-", stdin=json.dumps(svc))

        def subsets():
            ep = get(srv, NS + "/endpoints/api")
            ss = (ep or {}).get("subsets") or []
            ready = sorted(a["targetRef"]["name"] for s in ss for a in s.get("addresses", []))
            nready = sorted(a["targetRef"]["name"]
                            for s in ss for a in s.get("notReadyAddresses", []))
            return ready, nready, ss
        ct.wait_until(lambda: len(subsets()[0]) == 2, timeout=30, what="2 ready endpoints")
        ss = subsets()[2]
        assert ss[0]["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}], ss
        ips = {a["ip"] for a in ss[0]["addresses"]}
        pods = live_pods(srv, "app=api")
        assert ips == {p["status"]["podIP"] for p in pods}, (ips, pods)

        victim = subsets()[0][0]
        k.set_ready(victim, False)
        ct.wait_until(lambda: subsets()[1] == [victim], timeout=20,
                      what="not-ready pod in notReadyAddresses")
        assert victim not in subsets()[0]
        rc, out, err = srv.kubectl("1.33", "get", "endpoints", "api")
        assert rc == 0 and ":8080" in out, out
        k.set_ready(victim, True)
        ct.wait_until(lambda: len(subsets()[0]) == 2 and not subsets()[1], timeout=20,
                      what="pod back in addresses")
    finally:
        k.close()


if __name__ == "__main__":
    ct.run(globals())
