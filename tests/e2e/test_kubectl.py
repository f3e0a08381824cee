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
        _server = kh.ApiServer(extra=["--watch-bookmark-interval", "300"]).start()
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
        assert len(rows) == 15, sorted(rows)


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
        assert s.must(v, "label", "pod", name, "color=blue").strip() == "pod/%s labeled" % name
        # kubectl 1.27 itself prints "annotate" here, later versions "annotated".
        assert s.must(v, "annotate", "pod", name, "note=hi").strip() in \
            ("pod/%s annotated" % name, "pod/%s annotate" % name)
        assert s.must(v, "get", "pods", "-l", "color=blue", "-o", "name").split() == ["pod/" + name]
        assert s.must(v, "get", "pod", name, "-o", "jsonpath={.metadata.annotations.note}") == "hi"
        rc, _, err = s.kubectl(v, "label", "pod", name, "color=red")
        assert rc == 1 and "already has a value (blue)" in err, err
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


def test_protobuf_create_is_refused_clearly():
    """kubectl 1.33 create configmap (a protobuf body) gets a 415 and nothing is stored."""
    s = server()
    v = "1.33"
    if not os.access(kh.kubectl_path(v), os.X_OK):
        v = kh.kubectl_versions()[-1]
    rc, _, err = s.kubectl(v, "create", "configmap", "pb" + tag(v), "--from-literal=a=b")
    if v >= "1.32":
        assert rc == 1 and "unknown format" in err, err
        rc, _, err = s.kubectl(v, "get", "cm", "pb" + tag(v))
        assert rc == 1 and "not found" in err
    else:
        assert rc == 0, err


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


if __name__ == "__main__":
    ct.run(globals())
