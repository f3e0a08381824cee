#!/usr/bin/env python3
"""Three capstan-servers, each embedding one replica of the store (the
stacked topology): any server serves the Kubernetes API, the controllers run
on one of them, and the cluster keeps serving when a server is killed."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import capstan_test as ct  # noqa: E402
import kube_harness as kh  # noqa: E402

KUBECTL = "1.31" if os.access(kh.kubectl_path("1.31"), os.X_OK) else kh.kubectl_versions()[0]


class StackedServer(kh.ApiServer):
    """A capstan-server started without waiting, so the members can form a quorum."""

    def spawn(self):
        argv = [kh.SERVER_BIN, "--data-dir", self.data_dir,
                "--listen", "127.0.0.1:%d" % self.port,
                "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer_port,
                "--pod-network", "host"] + self.extra
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log,
                                     start_new_session=True)
        ct._live.append(self)
        return self

    def ready(self):
        try:
            code, body, _ = self.request("GET", "/readyz", timeout=2)
            return code == 200 and body == b"ok"
        except OSError:
            return False


def stacked(n=3):
    servers = [StackedServer() for _ in range(n)]
    client_ports = [ct.free_port() for _ in range(n)]
    spec = ",".join("s%d=http://127.0.0.1:%d" % (i, s.peer_port) for i, s in enumerate(servers))
    for i, s in enumerate(servers):
        s.extra = ["--name", "s%d" % i, "--initial-cluster", spec, "--no-agent",
                   "--listen-client-urls", "http://127.0.0.1:%d" % client_ports[i]]
        s.spawn()
    ct.wait_until(lambda: all(s.ready() for s in servers), timeout=60, what="three servers ready")
    return servers


def kubectl(server, *args):
    return server.must(KUBECTL, *args)


def test_any_server_serves_and_controllers_run_once():
    """An object created through one server is seen through the others, a Deployment gets exactly one ReplicaSet, updates hop between servers."""
    servers = stacked()
    try:
        kubectl(servers[0], "create", "namespace", "stacked")
        assert "stacked" in kubectl(servers[1], "get", "namespace", "stacked", "-o", "name")
        kubectl(servers[2], "create", "deployment", "web", "--image=busybox", "--replicas=2",
                "-n", "stacked")
        ct.wait_until(lambda: kubectl(servers[1], "get", "rs", "-n", "stacked", "-o", "name").strip(),
                      timeout=30, what="a ReplicaSet for the Deployment")
        time.sleep(2)
        rs = kubectl(servers[0], "get", "rs", "-n", "stacked", "-o", "name").split()
        assert len(rs) == 1, rs
        pods = kubectl(servers[2], "get", "pods", "-n", "stacked", "-o", "name").split()
        assert len(pods) == 2, pods
        # One holder for each leader-elected component, among the servers.
        leases = kubectl(servers[0], "get", "lease", "-n", "kube-system", "-o", "name").split()
        assert "lease.coordination.k8s.io/capstan-controller-manager" in leases, leases
        # Writes through one server, each followed at once by an update through
        # another with the resourceVersion just returned: every one succeeds,
        # whether or not that server has seen the write yet.
        base = "/api/v1/namespaces/stacked/configmaps"
        code, cm = servers[0].json("POST", base, {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": "hop"}, "data": {"n": "0"}})
        assert code == 201, cm
        for i in range(1, 31):
            cm["data"]["n"] = str(i)
            code, cm = servers[i % 3].json("PUT", base + "/hop", cm)
            assert code == 200, (i, cm)
        code, cm = servers[1].json("GET", base + "/hop")
        assert cm["data"] == {"n": "30"}, cm
    finally:
        for s in servers:
            s._hard_stop()


def test_cluster_survives_a_killed_server():
    """kill -9 of one stacked server: the other two keep serving reads and writes of the API."""
    servers = stacked()
    try:
        kubectl(servers[0], "create", "configmap", "before", "--from-literal=a=1")
        victim = servers[0]
        ct._kill_group(victim.proc, signal.SIGKILL)
        victim.proc.wait()
        victim._forget()
        rest = servers[1:]
        ct.wait_until(lambda: subprocess.run(
            rest[0].kubectl_argv(KUBECTL, "create", "configmap", "after", "--from-literal=b=2"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0,
            timeout=30, what="a write after the kill")
        for s in rest:
            names = kubectl(s, "get", "configmap", "-o", "name").split()
            assert "configmap/before" in names and "configmap/after" in names, names
    finally:
        for s in servers:
            s._hard_stop()


if __name__ == "__main__":
    ct.run(globals())
