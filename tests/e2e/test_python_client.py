"""End to end: the Debian python3-kubernetes client lists, creates, patches,
watches and deletes objects on a fresh capstan-server."""

import os
import sys
import threading

try:
    import kubernetes  # noqa: F401
except ImportError:
    # The Debian package installs for the system interpreter; run under it
    # when another python3 comes first on PATH.
    if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") and \
            os.access("/usr/bin/python3", os.X_OK):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_harness as kh  # noqa: E402

ct = kh.ct
_server = None


def api():
    """Clients on the kubeconfig a fresh capstan-server wrote."""
    global _server
    if _server is None or _server.proc.poll() is not None:
        # The API server alone, so only the test changes the pods it watches.
        _server = kh.ApiServer(extra=["--controllers", "-all", "--no-scheduler"]).start()
    c = config.new_client_from_config(config_file=_server.kubeconfig)
    return client.CoreV1Api(c), client.AppsV1Api(c)


def pod(name, labels=None):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="nginx")]))


def test_list_builtin_namespaces():
    """list_namespace returns the built-in namespaces."""
    core, _ = api()
    names = sorted(n.metadata.name for n in core.list_namespace().items)
    assert names[:4] == ["default", "kube-node-lease", "kube-public", "kube-system"], names


def test_create_read_list_pods():
    """A created pod reads back with server-set fields and is found by label selector."""
    core, _ = api()
    made = core.create_namespaced_pod("default", pod("py-one", {"app": "py"}))
    assert made.metadata.uid and made.metadata.resource_version and made.status.phase == "Pending"
    core.create_namespaced_pod("default", pod("py-two", {"app": "other"}))
    got = core.read_namespaced_pod("py-one", "default")
    assert got.metadata.uid == made.metadata.uid
    assert got.spec.containers[0].image == "nginx"
    sel = core.list_namespaced_pod("default", label_selector="app=py")
    assert [p.metadata.name for p in sel.items] == ["py-one"]
    every = core.list_pod_for_all_namespaces()
    assert {"py-one", "py-two"} <= {p.metadata.name for p in every.items}
    try:
        core.create_namespaced_pod("default", pod("py-one"))
        raise AssertionError("a duplicate create succeeded")
    except ApiException as e:
        assert e.status == 409 and "already exists" in e.body


def test_patch_and_delete():
    """patch changes labels; delete removes the pod; reading it then is a 404."""
    core, _ = api()
    core.create_namespaced_pod("default", pod("py-patch"))
    core.patch_namespaced_pod("py-patch", "default", {"metadata": {"labels": {"p": "q"}}})
    assert core.read_namespaced_pod("py-patch", "default").metadata.labels == {"p": "q"}
    core.delete_namespaced_pod("py-patch", "default")
    try:
        core.read_namespaced_pod("py-patch", "default")
        raise AssertionError("the pod is still there")
    except ApiException as e:
        assert e.status == 404 and '"reason":"NotFound"' in e.body, e.body
        assert 'pods \\"py-patch\\" not found' in e.body, e.body


def test_watch_pods():
    """A watch started at a list's resourceVersion sees later creates, changes and deletes in order."""
    core, _ = api()
    rv = core.list_namespaced_pod("default").metadata.resource_version
    seen = []
    done = threading.Event()

    def run():
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, "default", resource_version=rv,
                           label_selector="watch=py", timeout_seconds=20):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    core.create_namespaced_pod("default", pod("py-w", {"watch": "py"}))
    core.patch_namespaced_pod("py-w", "default", {"metadata": {"annotations": {"a": "b"}}})
    core.delete_namespaced_pod("py-w", "default")
    assert done.wait(30), seen
    assert seen == [("ADDED", "py-w"), ("MODIFIED", "py-w"), ("DELETED", "py-w")], seen


def test_deployments_and_scale():
    """The apps/v1 client creates a deployment and reads and patches its scale."""
    _, apps = api()
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-dep"),
        spec=client.V1DeploymentSpec(
            replicas=2, selector=client.V1LabelSelector(match_labels={"app": "py-dep"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py-dep"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c",
                                                                     image="nginx")]))))
    apps.create_namespaced_deployment("default", dep)
    sc = apps.read_namespaced_deployment_scale("py-dep", "default")
    assert sc.spec.replicas == 2 and sc.status.selector == "app=py-dep"
    apps.patch_namespaced_deployment_scale("py-dep", "default", {"spec": {"replicas": 6}})
    assert apps.read_namespaced_deployment("py-dep", "default").spec.replicas == 6


if __name__ == "__main__":
    ct.run(globals())
