"""End to end: real kubectl (the oldest and newest versioned binaries on the
machine) against a fresh capstan-server."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_harness as kh  # noqa: E402

ct = kh.ct
_server = None


def server():
    """The server the tests share (bookmarks every 300 ms for the bookmark test)."""
    global _server
    if _server is None or _server.proc.poll() is not None:
        # The API server alone: no controllers or scheduler changing objects
        # under the exact-output checks.
        _server = kh.ApiServer(extra=["--watch-bookmark-interval", "300",
                                      "--controllers", "-all", "--no-scheduler"]).start()
    return _server


def versions():
    v = kh.kubectl_versions()
    assert v, "no versioned kubectl under %s" % kh.KUBECTL_DIR
    return v


def tag(v):
    return v.replace(".", "")


def pod_yaml(name, labels="app: demo", image="nginx:1.25"):
    return ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  labels: {%s}\n"
            "spec:\n  containers:\n  - name: main\n    image: %s\n" % (name, labels, image))


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def columns(line):
    return line.split()


# ------------------------------------------------------------------ tests

def test_server_prints_kubeconfig_path():
    """capstan-server prints the path of the kubeconfig it wrote, and kubectl can use it."""
    s = server()
    assert s.printed == os.path.realpath(s.kubeconfig), s.printed
    with open(s.kubeconfig) as f:
        text = f.read()
    assert "server: http://127.0.0.1:%d" % s.port in text


def test_version():
    """kubectl version shows the server's Kubernetes version."""
    s = server()
    for v in versions():
        out = json.loads(s.must(v, "version", "-o", "json"))
        sv = out["serverVersion"]
        assert sv["major"] == "1" and sv["minor"] == "31", sv
        assert sv["gitVersion"].startswith("v1.31.0"), sv
        assert out["clientVersion"]["minor"] == v.split(".")[1]


def test_api_resources():
    """kubectl api-resources lists every served resource with short names, group and scope."""
    s = server()
    want = {
        "pods": ["pods", "po", "v1", "true", "Pod"],
        "deployments": ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        "namespaces": ["namespaces", "ns", "v1", "false", "Namespace"],
        "leases": ["leases", "coordination.k8s.io/v1", "true", "Lease"],
        "endpointslices": ["endpointslices", "discovery.k8s.io/v1", "true", "EndpointSlice"],
        "persistentvolumeclaims": ["persistentvolumeclaims", "pvc", "v1", "true",
                                   "PersistentVolumeClaim"],
    }
    for v in versions():
        out = s.must(v, "api-resources")
        lines = out.splitlines()
        assert columns(lines[0]) == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
        rows = {columns(l)[0]: columns(l) for l in lines[1:]}
        for name, cols in want.items():
            assert rows.get(name) == cols, (v, name, rows.get(name))
        assert len(rows) == 16, sorted(rows)


def test_run_dry_run_client_stores_nothing():
    """kubectl run --dry-run=client -o yaml prints the pod and creates nothing."""
    s = server()
    for v in versions():
        name = "dry" + tag(v)
        out = s.must(v, "run", name, "--image=nginx", "--dry-run=client", "-o", "yaml")
        assert "name: %s" % name in out and "image: nginx" in out, out
        rc, _, err = s.kubectl(v, "get", "pod", name)
        assert rc == 1 and 'pods "%s" not found' % name in err, err


def test_create_and_get_formats():
    """create -f a YAML file, then get as a table, wide, yaml, json and by label."""
    s = server()
    for v in versions():
        name = "web" + tag(v)
        path = write(os.path.join(s.data_dir, name + ".yaml"),
                     pod_yaml(name, labels="app: web%s, tier: front" % tag(v)))
        assert s.must(v, "create", "-f", path).strip() == "pod/%s created" % name
        lines = s.must(v, "get", "pods", name).splitlines()
        assert columns(lines[0]) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert columns(lines[1])[:4] == [name, "0/1", "Pending", "0"], lines
        wide = s.must(v, "get", "pods", name, "-o", "wide").splitlines()
        assert columns(wide[0]) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                                    "NOMINATED", "NODE", "READINESS", "GATES"], wide[0]
        obj = json.loads(s.must(v, "get", "pod", name, "-o", "json"))
        assert obj["kind"] == "Pod" and obj["metadata"]["name"] == name
        assert obj["metadata"]["namespace"] == "default"
        assert len(obj["metadata"]["uid"]) == 36 and obj["metadata"]["resourceVersion"].isdigit()
        assert obj["spec"]["containers"][0]["image"] == "nginx:1.25"
        yml = s.must(v, "get", "pod", name, "-o", "yaml")
        assert "kind: Pod" in yml and "  name: %s" % name in yml
        sel = s.must(v, "get", "pods", "-l", "app=web%s,tier=front" % tag(v), "-o", "name")
        assert sel.split() == ["pod/" + name], sel
        rc, out, err = s.kubectl(v, "get", "pods", "-l", "app=nothing-here")
        assert rc == 0 and out == "" and "No resources found in default namespace." in err
        rc, _, err = s.kubectl(v, "create", "-f", path)
        assert rc == 1 and 'Error from server (AlreadyExists)' in err and \
            'pods "%s" already exists' % name in err, err


def test_get_watch_streams_changes():
    """kubectl get -w prints the pods that appear and change while it watches."""
    s = server()
    for v in versions():
        name = "watched" + tag(v)
        p = subprocess.Popen([kh.kubectl_path(v), "--kubeconfig", s.kubeconfig, "get", "pods",
                              "-w", "-l", "w=" + tag(v)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)
            s.must(v, "run", name, "--image=busybox", "--labels=w=" + tag(v))
            s.must(v, "annotate", "pod", name, "seen=yes")
            time.sleep(1.5)
        finally:
            p.terminate()
            out, _ = p.communicate(timeout=10)
        lines = [l for l in out.decode().splitlines() if l.strip()]
        assert columns(lines[0])[:3] == ["NAME", "READY", "STATUS"], lines
        rows = [columns(l) for l in lines[1:]]
        assert len(rows) == 2 and all(r[0] == name and r[2] == "Pending" for r in rows), lines


def test_describe_shows_events():
    """describe pod finds the pod's events by involvedObject field selectors; get events lists them."""
    s = server()
    for v in versions():
        name = "desc" + tag(v)
        s.must(v, "run", name, "--image=nginx")
        uid = json.loads(s.must(v, "get", "pod", name, "-o", "json"))["metadata"]["uid"]
        event = {"apiVersion": "v1", "kind": "Event",
                 "metadata": {"name": name + ".1", "namespace": "default"},
                 "involvedObject": {"kind": "Pod", "name": name, "namespace": "default",
                                    "uid": uid, "apiVersion": "v1"},
                 "reason": "Testing", "message": "hello from " + name, "type": "Normal",
                 "source": {"component": "e2e"}, "count": 1,
                 "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}
        s.must(v, "create", "-f", "-", stdin=json.dumps(event))
        # An event of another object must not show up.
        other = dict(event, metadata={"name": name + ".2", "namespace": "default"},
                     involvedObject=dict(event["involvedObject"], name="someone-else", uid="x"),
                     message="not for " + name)
        s.must(v, "create", "-f", "-", stdin=json.dumps(other))
        out = s.must(v, "describe", "pod", name)
        assert "Name:" in out and name in out and "Status:       Pending" in out, out
        assert "hello from " + name in out and "Testing" in out, out
        assert "not for " + name not in out, out
        ev = s.must(v, "get", "events", "--field-selector", "involvedObject.name=" + name)
        assert "hello from " + name in ev and "not for" not in ev, ev


def test_apply_twice_then_server_side():
    """apply -f creates, a changed apply updates, apply --server-side updates again."""
    s = server()
    for v in versions():
        name = "cfg" + tag(v)
        path = os.path.join(s.data_dir, name + ".yaml")
        doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  mode: \"%s\"\n"
        write(path, doc % (name, "one"))
        assert s.must(v, "apply", "-f", path).strip() == "configmap/%s created" % name
        write(path, doc % (name, "two"))
        assert s.must(v, "apply", "-f", path).strip() == "configmap/%s configured" % name
        assert s.must(v, "get", "cm", name, "-o", "jsonpath={.data.mode}") == "two"
        ann = json.loads(s.must(v, "get", "cm", name, "-o", "json"))["metadata"]["annotations"]
        assert json.loads(ann["kubectl.kubernetes.io/last-applied-configuration"])["data"] == \
            {"mode": "two"}
        write(path, doc % (name, "three"))
        out = s.must(v, "apply", "--server-side", "-f", path)
        assert out.strip() == "configmap/%s serverside-applied" % name, out
        assert s.must(v, "get", "cm", name, "-o", "jsonpath={.data.mode}") == "three"
        ss = name + "-ss"
        write(path, doc % (ss, "new"))
        assert s.must(v, "apply", "--server-side", "-f", path).strip() == \
            "configmap/%s serverside-applied" % ss
        assert s.must(v, "get", "cm", ss, "-o", "jsonpath={.data.mode}") == "new"


def test_apply_deployment_changes_generation():
    """A changed deployment apply merges containers by name and bumps generation."""
    s = server()
    for v in versions():
        name = "dep" + tag(v)
        path = os.path.join(s.data_dir, name + ".yaml")
        doc = ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %s\nspec:\n"
               "  replicas: 2\n  selector:\n    matchLabels: {app: %s}\n  template:\n"
               "    metadata:\n      labels: {app: %s}\n    spec:\n      containers:\n"
               "      - name: main\n        image: %s\n")
        write(path, doc % (name, name, name, "nginx:1.25"))
        assert s.must(v, "apply", "-f", path).strip() == "deployment.apps/%s created" % name
        write(path, doc % (name, name, name, "nginx:1.26"))
        assert s.must(v, "apply", "-f", path).strip() == "deployment.apps/%s configured" % name
        obj = json.loads(s.must(v, "get", "deploy", name, "-o", "json"))
        assert obj["metadata"]["generation"] == 2, obj["metadata"]
        cs = obj["spec"]["template"]["spec"]["containers"]
        assert [(c["name"], c["image"]) for c in cs] == [("main", "nginx:1.26")], cs


def test_label_annotate_scale():
    """label, annotate and scale change what get shows."""
    s = server()
    for v in versions():
        name = "lab" + tag(v)
        s.must(v, "run", name, "--image=nginx")
        blue = "blue" + tag(v)
        assert s.must(v, "label", "pod", name, "color=" + blue).strip() == "pod/%s labeled" % name
        # kubectl 1.27 itself prints "annotate" here, later versions "annotated".
        assert s.must(v, "annotate", "pod", name, "note=hi").strip() in \
            ("pod/%s annotated" % name, "pod/%s annotate" % name)
        assert s.must(v, "get", "pods", "-l", "color=" + blue, "-o", "name").split() == \
            ["pod/" + name]
        assert s.must(v, "get", "pod", name, "-o", "jsonpath={.metadata.annotations.note}") == "hi"
        rc, _, err = s.kubectl(v, "label", "pod", name, "color=red")
        assert rc == 1 and "already has a value (%s)" % blue in err, err
        dep = "scl" + tag(v)
        s.must(v, "create", "-f", "-", stdin=json.dumps({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": dep},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": dep}},
                     "template": {"metadata": {"labels": {"app": dep}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
        assert s.must(v, "scale", "deployment", dep, "--replicas=4").strip() == \
            "deployment.apps/%s scaled" % dep
        assert s.must(v, "get", "deploy", dep, "-o", "jsonpath={.spec.replicas}") == "4"


def test_patch_three_types():
    """patch --type merge, json and strategic each change the object."""
    s = server()
    for v in versions():
        name = "pat" + tag(v)
        s.must(v, "create", "configmap", name, "--from-literal=a=1") if v < "1.32" else \
            s.must(v, "create", "-f", "-", stdin=json.dumps(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                 "data": {"a": "1"}}))
        s.must(v, "patch", "cm", name, "--type=merge", "-p", '{"data":{"b":"2"}}')
        s.must(v, "patch", "cm", name, "--type=json", "-p",
               '[{"op":"replace","path":"/data/a","value":"10"}]')
        s.must(v, "patch", "cm", name, "-p", '{"data":{"c":"3"}}')
        data = json.loads(s.must(v, "get", "cm", name, "-o", "json"))["data"]
        assert data == {"a": "10", "b": "2", "c": "3"}, data
        rc, _, err = s.kubectl(v, "patch", "cm", name, "--type=json", "-p",
                               '[{"op":"test","path":"/data/a","value":"nope"}]')
        assert rc == 1, err


def test_delete_with_finalizer_waits_for_it():
    """delete of an object with a finalizer marks it terminating; removing the finalizer deletes it."""
    s = server()
    for v in versions():
        name = "fin" + tag(v)
        s.must(v, "create", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": name, "finalizers": ["example.com/hold"]}}))
        out = s.must(v, "delete", "cm", name, "--wait=false")
        assert out.strip() == 'configmap "%s" deleted' % name, out
        obj = json.loads(s.must(v, "get", "cm", name, "-o", "json"))
        assert obj["metadata"].get("deletionTimestamp"), obj["metadata"]
        s.must(v, "patch", "cm", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        rc, _, err = s.kubectl(v, "get", "cm", name)
        assert rc == 1 and 'configmaps "%s" not found' % name in err, err
        plain = "del" + tag(v)
        s.must(v, "run", plain, "--image=nginx")
        assert s.must(v, "delete", "pod", plain).strip() == 'pod "%s" deleted' % plain
        rc, _, err = s.kubectl(v, "delete", "pod", plain)
        assert rc == 1 and 'Error from server (NotFound): pods "%s" not found' % plain in err, err


def test_create_namespace_configmap_secret():
    """create namespace, configmap and secret (kubectl 1.31, which sends JSON) are stored."""
    s = server()
    v = "1.31"
    assert os.access(kh.kubectl_path(v), os.X_OK), "kubectl.1.31 missing"
    assert s.must(v, "create", "namespace", "team").strip() == "namespace/team created"
    assert s.must(v, "-n", "team", "create", "configmap", "conf",
                  "--from-literal=k=v").strip() == "configmap/conf created"
    assert s.must(v, "-n", "team", "create", "secret", "generic", "pw",
                  "--from-literal=p=secret").strip() == "secret/pw created"
    assert s.must(v, "-n", "team", "get", "cm", "conf", "-o", "jsonpath={.data.k}") == "v"
    assert s.must(v, "-n", "team", "get", "secret", "pw", "-o", "jsonpath={.data.p}") == \
        "c2VjcmV0"
    names = s.must(v, "get", "ns", "-o", "name").split()
    assert "namespace/team" in names and "namespace/default" in names, names
    rc, _, err = s.kubectl(v, "-n", "nowhere", "create", "configmap", "x")
    assert rc == 1 and 'namespaces "nowhere" not found' in err, err
    assert s.must(v, "delete", "namespace", "team").strip() == 'namespace "team" deleted'
    rc, _, err = s.kubectl(v, "-n", "team", "get", "cm", "conf")
    assert rc == 1 and "not found" in err, err


def test_protobuf_create_is_decoded_or_refused_clearly():
    """kubectl 1.33 create configmap, secret, serviceaccount and deployment (protobuf
    bodies) store what 1.31's JSON does; a kind the server cannot decode is a 415."""
    s = server()
    v = "1.33"
    assert os.access(kh.kubectl_path(v), os.X_OK), "kubectl.1.33 missing"
    s.must(v, "create", "configmap", "pb", "--from-literal=a=b")
    s.must(v, "create", "secret", "generic", "pb", "--from-literal=p=secret")
    s.must(v, "create", "serviceaccount", "pb")
    s.must(v, "create", "deployment", "pb", "--image=busybox", "--replicas=0", "--port=8080",
           "--", "sleep", "60")
    assert s.must(v, "get", "cm", "pb", "-o", "jsonpath={.data.a}") == "b"
    assert s.must(v, "get", "secret", "pb", "-o", "jsonpath={.data.p}") == "c2VjcmV0"
    assert s.must(v, "get", "secret", "pb", "-o", "jsonpath={.type}") == "Opaque"
    code, d = s.json("GET", "/apis/apps/v1/namespaces/default/deployments/pb")
    assert code == 200 and d["spec"]["replicas"] == 0, d
    assert d["spec"]["selector"] == {"matchLabels": {"app": "pb"}}, d
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "busybox" and c["command"] == ["sleep", "60"], c
    assert c["ports"] == [{"containerPort": 8080, "protocol": "TCP"}], c
    # A Pod is not decoded from protobuf: 415, and nothing stored.
    body = (b"k8s\x00" + b"\x0a\x09\x0a\x02v1\x12\x03Pod" +
            b"\x12\x07\x0a\x05\x0a\x03pbx")
    code, data, _ = s.request("POST", "/api/v1/namespaces/default/pods", body,
                              {"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert code == 415 and b"unknown format" in data, (code, data)
    code, _ = s.json("GET", "/api/v1/namespaces/default/pods/pbx")
    assert code == 404


def test_get_events_lists_them():
    """get events prints the events table."""
    s = server()
    v = versions()[0]
    s.must(v, "create", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev-list"},
         "involvedObject": {"kind": "Node", "name": "n1"}, "reason": "Listed",
         "message": "shown in the table", "type": "Warning",
         "lastTimestamp": "2026-01-01T00:00:00Z"}))
    out = s.must(v, "get", "events")
    assert "Listed" in out and "shown in the table" in out and "node/n1" in out, out


def test_invalid_name_is_422():
    """A name that is not DNS-1123 is refused with Invalid and is not stored."""
    s = server()
    for v in versions():
        rc, _, err = s.kubectl(v, "create", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}))
        assert rc == 1 and 'The ConfigMap "Bad_Name" is invalid' in err, err
        assert "metadata.name" in err, err
    code, lst = s.json("GET", "/api/v1/namespaces/default/configmaps")
    assert all(i["metadata"]["name"] != "Bad_Name" for i in lst["items"])


# ------------------------------------------------------------ wire level

def _count(s, path):
    code, lst = s.json("GET", path)
    assert code == 200, lst
    return len(lst["items"])


def test_bad_input_gets_the_right_status():
    """Malformed bodies, wrong kinds, bad names, huge bodies, unknown paths and verbs: right Status, nothing stored."""
    s = server()
    base = "/api/v1/namespaces/default/configmaps"
    before = _count(s, base)
    cases = [
        ("POST", base, "{not json", {}, 400, "BadRequest"),
        ("POST", base, "apiVersion: v1\nkind: [", {"Content-Type": "application/yaml"}, 400,
         "BadRequest"),
        ("POST", base, json.dumps({"apiVersion": "v1", "kind": "Secret",
                                   "metadata": {"name": "wrongkind"}}), {}, 400, "BadRequest"),
        ("POST", base, json.dumps({"apiVersion": "apps/v1", "kind": "ConfigMap",
                                   "metadata": {"name": "wrongversion"}}), {}, 400, "BadRequest"),
        ("POST", base, json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "a..b"}}), {}, 422, "Invalid"),
        ("POST", base, json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}), {},
         422, "Invalid"),
        ("POST", base, json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "big"},
                                   "data": {"x": "y" * (3 * 1024 * 1024 + 10)}}), {}, 413,
         "RequestEntityTooLarge"),
        ("POST", base, "\x6b\x38\x73\x00", {"Content-Type": "application/vnd.kubernetes.protobuf"},
         415, "UnsupportedMediaType"),
        ("GET", "/api/v1/namespaces/default/widgets", None, {}, 404, "NotFound"),
        ("GET", "/apis/nothing.example/v1/things", None, {}, 404, "NotFound"),
        ("PUT", base, json.dumps({"apiVersion": "v1", "kind": "ConfigMap"}), {}, 405,
         "MethodNotAllowed"),
        ("POST", base + "/x", json.dumps({}), {}, 405, "MethodNotAllowed"),
        ("PATCH", base + "/x", "{}", {"Content-Type": "text/plain"}, 415, "UnsupportedMediaType"),
        ("POST", "/api/v1/namespaces/nowhere/configmaps",
         json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ok"}}), {},
         404, "NotFound"),
    ]
    for method, path, body, headers, code, reason in cases:
        got, data, ctype = s.request(method, path, body, headers)
        st = json.loads(data)
        assert st.get("message"), (method, path, st)
        assert (got, st.get("kind"), st.get("reason"), st.get("code")) == \
            (code, "Status", reason, code), (method, path, got, st)
        assert st["status"] == "Failure" and st["apiVersion"] == "v1" and st["message"]
    assert _count(s, base) == before
    got, st = s.json("GET", base + "/nope")
    assert st == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": 'configmaps "nope" not found', "reason": "NotFound",
                  "details": {"name": "nope", "kind": "configmaps"}, "code": 404}, st
    got, st = s.json("GET", "/apis/apps/v1/namespaces/default/deployments/nope")
    assert st["message"] == 'deployments.apps "nope" not found' and \
        st["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}, st


def test_stale_update_conflicts():
    """A PUT with an old resourceVersion gets 409 Conflict in the real server's words."""
    s = server()
    base = "/api/v1/namespaces/default/configmaps"
    code, cm = s.json("POST", base, {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "occ"}, "data": {"v": "1"}})
    assert code == 201, cm
    cm["data"]["v"] = "2"
    code, new = s.json("PUT", base + "/occ", cm)
    assert code == 200 and int(new["metadata"]["resourceVersion"]) > \
        int(cm["metadata"]["resourceVersion"]), new
    cm["data"]["v"] = "3"
    code, st = s.json("PUT", base + "/occ", cm)
    assert code == 409 and st["reason"] == "Conflict", st
    assert st["message"] == ('Operation cannot be fulfilled on configmaps "occ": the object has '
                             'been modified; please apply your changes to the latest version '
                             'and try again'), st
    code, cur = s.json("GET", base + "/occ")
    assert cur["data"] == {"v": "2"}
    code, dry = s.json("POST", base + "?dryRun=All", {"apiVersion": "v1", "kind": "ConfigMap",
                                                     "metadata": {"name": "dry-only"}})
    assert code == 201 and dry["metadata"]["name"] == "dry-only"
    code, _ = s.json("GET", base + "/dry-only")
    assert code == 404


def test_updates_right_after_writes():
    """Each PUT with the resourceVersion the previous write returned succeeds, patches
    right after writes see them, and a no-op keeps the resourceVersion."""
    s = server()
    base = "/api/v1/namespaces/default/configmaps"
    code, cm = s.json("POST", base, {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "rapid"}, "data": {"n": "0"}})
    assert code == 201, cm
    for i in range(1, 40):
        cm["data"]["n"] = str(i)
        code, new = s.json("PUT", base + "/rapid", cm)
        assert code == 200, (i, new)
        assert int(new["metadata"]["resourceVersion"]) > int(cm["metadata"]["resourceVersion"])
        cm = new
        code, new = s.json("PATCH", base + "/rapid", {"data": {"m": str(i)}},
                           headers={"Content-Type": "application/merge-patch+json"})
        assert code == 200 and new["data"] == {"n": str(i), "m": str(i)}, (i, new)
        cm = new
    code, same = s.json("PUT", base + "/rapid", cm)
    assert code == 200 and same["metadata"]["resourceVersion"] == \
        cm["metadata"]["resourceVersion"], same


def test_generate_name_and_uid():
    """generateName gets a 5-character suffix from Kubernetes' alphabet; every object a v4 uid."""
    s = server()
    names = set()
    for _ in range(3):
        code, cm = s.json("POST", "/api/v1/namespaces/default/configmaps",
                          {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"generateName": "gen-"}})
        assert code == 201, cm
        name = cm["metadata"]["name"]
        assert name.startswith("gen-") and len(name) == 9, name
        assert all(c in "bcdfghjklmnpqrstvwxz2456789" for c in name[4:]), name
        uid = cm["metadata"]["uid"]
        assert len(uid) == 36 and uid[14] == "4", uid
        assert cm["metadata"]["creationTimestamp"].endswith("Z")
        names.add(name)
    assert len(names) == 3


def test_list_paging_with_continue():
    """limit and continue page through a list in key order without losing or repeating items."""
    s = server()
    s.json("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": "paging"}})
    for i in range(7):
        code, _ = s.json("POST", "/api/v1/namespaces/paging/configmaps",
                         {"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "cm%d" % i}})
        assert code == 201
    seen, cont, pages, rvs = [], None, 0, set()
    while True:
        path = "/api/v1/namespaces/paging/configmaps?limit=3"
        if cont:
            path += "&continue=" + cont
        code, lst = s.json("GET", path)
        assert code == 200, lst
        seen += [i["metadata"]["name"] for i in lst["items"]]
        rvs.add(lst["metadata"]["resourceVersion"])
        pages += 1
        cont = lst["metadata"].get("continue")
        if not cont:
            break
        assert lst["metadata"]["remainingItemCount"] == 7 - len(seen)
    assert seen == ["cm%d" % i for i in range(7)] and pages == 3, seen
    assert len(rvs) == 1, rvs


def test_watch_resume_selectors_and_bookmarks():
    """A watch resumes after a resourceVersion, filters by label, and sends bookmarks when asked."""
    s = server()
    base = "/api/v1/namespaces/default/configmaps"
    code, a = s.json("POST", base, {"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "wa", "labels": {"grp": "w"}}})
    rv = a["metadata"]["resourceVersion"]
    s.json("POST", base, {"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "wb", "labels": {"grp": "other"}}})
    s.json("PATCH", base + "/wa", {"data": {"k": "v"}},
           headers={"Content-Type": "application/merge-patch+json"})
    w = kh.WatchStream(s.port, base + "?watch=true&labelSelector=grp%3Dw&resourceVersion=" + rv +
                       "&allowWatchBookmarks=true")
    try:
        assert w.status == 200
        ev = w.next()
        assert ev["type"] == "MODIFIED" and ev["object"]["data"] == {"k": "v"}, ev
        s.json("DELETE", base + "/wa")
        ev = w.next()
        assert ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == "wa", ev
        ev = w.next()
        while ev["type"] != "BOOKMARK":
            ev = w.next()
        assert ev["object"]["kind"] == "ConfigMap" and \
            int(ev["object"]["metadata"]["resourceVersion"]) >= int(rv), ev
    finally:
        w.close()
    w = kh.WatchStream(s.port, "/api/v1/watch/namespaces/default/configmaps/wb?timeoutSeconds=1")
    try:
        ev = w.next()
        assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "wb", ev
        assert w.next() is None     # the stream ends after timeoutSeconds
    finally:
        w.close()


def test_restart_keeps_objects_and_expires_old_watches():
    """After SIGTERM (exit 0) and a restart, objects remain and a watch from before gets 410 Expired."""
    srv = kh.ApiServer().start()
    v = versions()[0]
    srv.must(v, "run", "keeper", "--image=nginx")
    code, pod = srv.json("GET", "/api/v1/namespaces/default/pods/keeper")
    old_rv = pod["metadata"]["resourceVersion"]
    srv.must(v, "label", "pod", "keeper", "x=y")
    assert srv.terminate() == 0
    again = kh.ApiServer(data_dir=srv.data_dir, peer_port=srv.peer_port).start()
    out = again.must(v, "get", "pod", "keeper", "-o", "jsonpath={.metadata.labels.x}")
    assert out == "y"
    w = kh.WatchStream(again.port, "/api/v1/namespaces/default/pods?watch=true&resourceVersion=" +
                       old_rv)
    try:
        ev = w.next()
        assert ev["type"] == "ERROR", ev
        st = ev["object"]
        assert st["kind"] == "Status" and st["code"] == 410 and st["reason"] == "Expired", st
        assert st["message"].startswith("too old resource version: %s (" % old_rv), st
    finally:
        w.close()
    assert again.terminate() == 0


def test_discovery_documents():
    """Legacy and aggregated discovery, /version and OpenAPI answer in the shapes kubectl reads."""
    s = server()
    code, api = s.json("GET", "/api")
    assert api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    code, apis = s.json("GET", "/apis")
    assert [g["name"] for g in apis["groups"]] == ["apps", "coordination.k8s.io",
                                                   "discovery.k8s.io"]
    code, v1 = s.json("GET", "/api/v1")
    names = [r["name"] for r in v1["resources"]]
    assert "pods/status" in names and "pods/binding" in names and "pods" in names
    code, data, ctype = s.request("GET", "/apis", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                  "application/json"})
    agg = json.loads(data)
    assert ctype.startswith("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    deploy = [r for r in agg["items"][0]["versions"][0]["resources"]
              if r["resource"] == "deployments"][0]
    assert deploy["shortNames"] == ["deploy"] and deploy["categories"] == ["all"]
    assert {x["subresource"] for x in deploy["subresources"]} == {"scale", "status"}
    code, data, ctype = s.request("GET", "/openapi/v2")
    assert code == 200 and data == bytes([0x0a, 0x03]) + b"2.0"
    code, idx = s.json("GET", "/openapi/v3")
    assert "api/v1" in idx["paths"] and "apis/apps/v1" in idx["paths"]
    code, doc = s.json("GET", "/openapi/v3/apis/apps/v1")
    op = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert "fieldValidation" in [p["name"] for p in op["parameters"]]


def test_subresources_status_scale_binding():
    """status writes touch only status, scale reads and writes replicas, binding sets nodeName once."""
    s = server()
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "subs"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "i"}]}}},
           "status": {"replicas": 99}}
    base = "/apis/apps/v1/namespaces/default/deployments"
    code, d = s.json("POST", base, dep)
    assert code == 201 and d["metadata"]["generation"] == 1
    code, d = s.json("PATCH", base + "/subs/status", {"status": {"replicas": 1},
                                                      "spec": {"replicas": 7}},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200 and d["status"]["replicas"] == 1 and d["spec"]["replicas"] == 1, d
    code, d = s.json("PATCH", base + "/subs", {"status": {"replicas": 50}},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert d["status"]["replicas"] == 1, d
    code, sc = s.json("GET", base + "/subs/scale")
    assert sc["kind"] == "Scale" and sc["apiVersion"] == "autoscaling/v1"
    assert sc["spec"] == {"replicas": 1} and sc["status"] == {"replicas": 1, "selector": "a=b"}, sc
    sc["spec"]["replicas"] = 3
    code, sc2 = s.json("PUT", base + "/subs/scale", sc)
    assert code == 200 and sc2["spec"]["replicas"] == 3, sc2
    code, d = s.json("GET", base + "/subs")
    assert d["spec"]["replicas"] == 3 and d["metadata"]["generation"] == 2, d
    pods = "/api/v1/namespaces/default/pods"
    s.json("POST", pods, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bindme"},
                          "spec": {"containers": [{"name": "c", "image": "i"}]}})
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bindme"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}
    code, st = s.json("POST", pods + "/bindme/binding", binding)
    assert code == 201 and st["status"] == "Success", st
    code, p = s.json("GET", pods + "/bindme")
    assert p["spec"]["nodeName"] == "node-1"
    code, st = s.json("POST", pods + "/bindme/binding", binding)
    assert code == 409 and st["reason"] == "Conflict", st


def test_server_side_apply_field_ownership():
    """apply --server-side owns fields, scale takes replicas, re-applying them conflicts
    until --force-conflicts moves them back; a YAML apply body works the same."""
    s = server()

    def entries(v, name):
        obj = json.loads(s.must(v, "get", "deploy", name, "-o", "json", "--show-managed-fields"))
        return obj, obj["metadata"].get("managedFields", [])

    def owners_of_replicas(mf):
        return [(e["manager"], e["operation"], e.get("subresource", "")) for e in mf
                if "f:replicas" in e.get("fieldsV1", {}).get("f:spec", {})]

    for v in versions():
        name = "ssa" + tag(v)
        path = os.path.join(s.data_dir, name + ".yaml")
        doc = ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %s\nspec:\n"
               "  replicas: %d\n  selector:\n    matchLabels: {app: %s}\n  template:\n"
               "    metadata:\n      labels: {app: %s}\n    spec:\n      containers:\n"
               "      - name: main\n        image: nginx:1.25\n")
        write(path, doc % (name, 2, name, name))
        out = s.must(v, "apply", "--server-side", "-f", path)
        assert out.strip() == "deployment.apps/%s serverside-applied" % name, out
        obj, mf = entries(v, name)
        assert [(e["manager"], e["operation"]) for e in mf] == [("kubectl", "Apply")], mf
        fields = mf[0]["fieldsV1"]
        assert mf[0]["apiVersion"] == "apps/v1" and mf[0]["fieldsType"] == "FieldsV1", mf
        assert "f:replicas" in fields["f:spec"], fields
        ctr = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"main"}']
        assert set(ctr) == {".", "f:image", "f:name"}, ctr
        # kubectl hides managedFields unless asked.
        plain = json.loads(s.must(v, "get", "deploy", name, "-o", "json"))
        assert "managedFields" not in plain["metadata"], plain["metadata"]

        s.must(v, "scale", "deployment", name, "--replicas=5")
        obj, mf = entries(v, name)
        assert obj["spec"]["replicas"] == 5
        owners = owners_of_replicas(mf)
        assert len(owners) == 1 and owners[0][1:] == ("Update", "scale"), mf
        scaler = owners[0][0]
        assert scaler.startswith("kubectl"), scaler

        write(path, doc % (name, 3, name, name))
        rc, out, err = s.kubectl(v, "apply", "--server-side", "-f", path)
        assert rc != 0, out
        want = ('Apply failed with 1 conflict: conflict with "%s" with subresource "scale" '
                'using apps/v1: .spec.replicas' % scaler)
        assert want in err, err
        assert json.loads(s.must(v, "get", "deploy", name, "-o", "json"))["spec"]["replicas"] == 5

        out = s.must(v, "apply", "--server-side", "--force-conflicts", "-f", path)
        assert out.strip() == "deployment.apps/%s serverside-applied" % name, out
        obj, mf = entries(v, name)
        assert obj["spec"]["replicas"] == 3
        assert owners_of_replicas(mf) == [("kubectl", "Apply", "")], mf

        # Another manager applying a YAML body gets the 409 with its causes.
        url = "/apis/apps/v1/namespaces/default/deployments/%s?fieldManager=ci" % name
        body = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %s\nspec:\n  replicas: %d\n"
        code, st = s.json("PATCH", url, body % (name, 7),
                          headers={"Content-Type": "application/apply-patch+yaml"})
        assert code == 409 and st["reason"] == "Conflict", st
        assert st["message"] == ('Apply failed with 1 conflict: conflict with "kubectl": '
                                 '.spec.replicas'), st
        assert st["details"]["causes"] == [{"reason": "FieldManagerConflict",
                                            "message": 'conflict with "kubectl"',
                                            "field": ".spec.replicas"}], st
        # Applying the value it already has is no conflict: both own it.
        code, d = s.json("PATCH", url, body % (name, 3),
                         headers={"Content-Type": "application/apply-patch+yaml"})
        assert code == 200, d
        assert sorted(o[0] for o in owners_of_replicas(d["metadata"]["managedFields"])) == \
            ["ci", "kubectl"], d["metadata"]["managedFields"]


if __name__ == "__main__":
    ct.run(globals())
