"""End to end: Services in the API server (cluster IPs and node ports
allocated, released and kept across restarts and across API servers sharing
one store; ExternalName and headless Services; the 422s for bad input) and
the EndpointSlice controller, driven by real kubectl 1.27 and 1.33. Pods
run on hollow nodes played by this script (tests/e2e/test_workloads.py's
Kubelets), so readiness is under the test's control."""

import ipaddress
import json
import os
import re
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_harness as kh  # noqa: E402
import test_workloads as tw  # noqa: E402

ct = kh.ct
NS = "/api/v1/namespaces/default"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
MERGE = {"Content-Type": "application/merge-patch+json"}
DEFAULT_RANGE = ipaddress.ip_network("10.96.0.0/12")


def own_servers(fn):
    """Stops the processes a test started when it ends, pass or fail."""
    def wrapper():
        before = list(ct._live)
        try:
            fn()
        finally:
            for p in list(ct._live):
                if p not in before:
                    p._hard_stop()
    wrapper.__doc__ = fn.__doc__
    return wrapper


def svc(name, ports=None, type_=None, **spec):
    s = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": dict(spec, ports=ports if ports is not None else [{"port": 80}])}
    if type_:
        s["spec"]["type"] = type_
    return s


def get_svc(srv, name):
    code, body = srv.json("GET", NS + "/services/" + name)
    assert code == 200, body
    return body


def row(out, name):
    """The columns of name's line in kubectl get output."""
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] in (name, "service/" + name):
            return cols
    raise AssertionError("%s not in:\n%s" % (name, out))


def expect_422(srv, method, path, body, field, text, headers=None):
    code, st = srv.json(method, path, body, headers)
    assert code == 422, (code, st)
    assert st["reason"] == "Invalid", st
    causes = st["details"]["causes"]
    assert any(c["field"] == field and text in c["message"] for c in causes), st
    return st


@own_servers
def test_create_service_kinds():
    """kubectl create service clusterip|nodeport|loadbalancer|externalname and a
    headless one: IPs from the range, node ports from 30000-32767, and get svc
    shows CLUSTER-IP, EXTERNAL-IP and PORT(S) like 80:31234/TCP."""
    srv = kh.ApiServer().start()
    for ver in kh.kubectl_versions():
        v = ver.replace(".", "")
        srv.must(ver, "create", "service", "clusterip", "c" + v, "--tcp=80:8080")
        srv.must(ver, "create", "service", "nodeport", "n" + v, "--tcp=80:8080")
        srv.must(ver, "create", "service", "loadbalancer", "l" + v, "--tcp=443:8443")
        srv.must(ver, "create", "service", "externalname", "e" + v,
                 "--external-name=db.example.com")
        srv.must(ver, "create", "service", "clusterip", "h" + v, "--clusterip=None")
        out = srv.must(ver, "get", "svc")
        c = row(out, "c" + v)
        assert c[1] == "ClusterIP" and ipaddress.ip_address(c[2]) in DEFAULT_RANGE, c
        assert c[3] == "<none>" and c[4] == "80/TCP", c
        n = row(out, "n" + v)
        m = re.fullmatch(r"80:(\d+)/TCP", n[4])
        assert n[1] == "NodePort" and m and 30000 <= int(m.group(1)) <= 32767, n
        lb = row(out, "l" + v)
        assert lb[1] == "LoadBalancer" and lb[3] == "<pending>", lb
        assert re.fullmatch(r"443:3\d{4}/TCP", lb[4]), lb
        e = row(out, "e" + v)
        assert e[1:5] == ["ExternalName", "<none>", "db.example.com", "<none>"], e
        h = row(out, "h" + v)
        assert h[1:5] == ["ClusterIP", "None", "<none>", "<none>"], h
        body = get_svc(srv, "c" + v)["spec"]
        assert body["clusterIPs"] == [body["clusterIP"]], body
        assert body["ipFamilies"] == ["IPv4"] and body["ipFamilyPolicy"] == "SingleStack", body
        assert "clusterIP" not in get_svc(srv, "e" + v)["spec"]
    # Every cluster IP is distinct, and none is the kubernetes Service's.
    code, lst = srv.json("GET", "/api/v1/services")
    ips = [s["spec"]["clusterIP"] for s in lst["items"]
           if s["spec"].get("clusterIP") not in (None, "None")]
    assert len(ips) == len(set(ips)), ips


@own_servers
def test_kubernetes_service():
    """The API server creates default/kubernetes on the range's first address,
    with Endpoints and an EndpointSlice pointing at itself."""
    srv = kh.ApiServer(extra=["--service-cluster-ip-range", "10.200.0.0/16"]).start()
    s = get_svc(srv, "kubernetes")
    assert s["spec"]["clusterIP"] == "10.200.0.1", s
    assert s["spec"]["ports"][0]["port"] == 443, s
    code, ep = srv.json("GET", NS + "/endpoints/kubernetes")
    assert code == 200, ep
    assert ep["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}], ep
    assert ep["subsets"][0]["ports"][0]["port"] == srv.port, ep
    code, sl = srv.json("GET", SLICES + "/kubernetes")
    assert code == 200 and sl["endpoints"][0]["addresses"] == ["127.0.0.1"], sl
    # The first address is not for anyone else.
    expect_422(srv, "POST", NS + "/services", svc("x", clusterIP="10.200.0.1"),
               "spec.clusterIPs", "provided IP is already allocated")


@own_servers
def test_expose():
    """kubectl expose deployment (NodePort, target port) and expose pod make
    Services with the workload's selector and an allocated node port."""
    srv, k = tw.start(("n1",))
    try:
        for ver in kh.kubectl_versions():
            v = ver.replace(".", "")
            d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web" + v},
                 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web" + v}},
                          "template": {"metadata": {"labels": {"app": "web" + v}},
                                       "spec": {"containers": [{"name": "c",
                                                                "image": "busybox"}]}}}}
            srv.must(ver, "apply", "-f", "-", stdin=json.dumps(d))
            srv.must(ver, "expose", "deployment", "web" + v, "--port=80", "--target-port=8080",
                     "--type=NodePort")
            s = get_svc(srv, "web" + v)
            assert s["spec"]["selector"] == {"app": "web" + v}, s
            p = s["spec"]["ports"][0]
            assert p["port"] == 80 and p["targetPort"] == 8080, p
            assert 30000 <= p["nodePort"] <= 32767, p
            out = srv.must(ver, "get", "svc", "web" + v)
            assert "80:%d/TCP" % p["nodePort"] in out, out
            srv.must(ver, "run", "solo" + v, "--image=busybox", "--port=9000")
            srv.must(ver, "expose", "pod", "solo" + v, "--port=90", "--target-port=9000")
            s = get_svc(srv, "solo" + v)
            assert s["spec"]["type"] == "ClusterIP" and s["spec"]["ports"][0]["port"] == 90, s
            assert ipaddress.ip_address(s["spec"]["clusterIP"]) in DEFAULT_RANGE, s
    finally:
        k.close()


@own_servers
def test_bad_input():
    """A taken or out-of-range node port or cluster IP, a changed cluster IP,
    None on a NodePort, an invalid ExternalName and a Deployment whose
    selector does not match its template are 422s naming the field, and
    nothing of a refused Service is kept (its values stay free)."""
    srv = kh.ApiServer().start()
    code, _ = srv.json("POST", NS + "/services",
                       svc("a", [{"port": 80, "nodePort": 30080}], "NodePort",
                           clusterIP="10.96.7.7"))
    assert code == 201
    for ver in kh.kubectl_versions():
        rc, out, err = srv.kubectl(ver, "create", "service", "nodeport", "b", "--tcp=80:80",
                                   "--node-port=30080")
        assert rc != 0 and ('spec.ports[0].nodePort: Invalid value: 30080: provided port is '
                            'already allocated') in err, err
    expect_422(srv, "POST", NS + "/services", svc("b", [{"port": 80, "nodePort": 40080}],
                                                  "NodePort"),
               "spec.ports[0].nodePort", "provided port is not in the valid range. The range "
               "of valid ports is 30000-32767")
    expect_422(srv, "POST", NS + "/services", svc("b", clusterIP="10.96.7.7"),
               "spec.clusterIPs", 'Invalid value: []string{"10.96.7.7"}: failed to allocate IP '
               '10.96.7.7: provided IP is already allocated')
    expect_422(srv, "POST", NS + "/services", svc("b", clusterIP="192.168.1.1"),
               "spec.clusterIPs", "the provided IP (192.168.1.1) is not in the valid range. "
               "The range of valid IPs is 10.96.0.0/12")
    expect_422(srv, "POST", NS + "/services", svc("b", clusterIP="10.96.1.300"),
               "spec.clusterIPs[0]", "must be empty, 'None', or a valid IP address")
    expect_422(srv, "POST", NS + "/services", svc("b", type_="NodePort", clusterIP="None"),
               "spec.clusterIPs[0]", "may not be set to 'None' for NodePort services")
    expect_422(srv, "POST", NS + "/services",
               svc("b", [], "ExternalName", externalName="not_a.dns-name"),
               "spec.externalName", "a lowercase RFC 1123 subdomain")
    expect_422(srv, "POST", NS + "/services",
               svc("b", [{"port": 80}, {"port": 81, "name": "x"}]),
               "spec.ports[0].name", "Required value")
    for ver in kh.kubectl_versions():
        rc, out, err = srv.kubectl(ver, "patch", "svc", "a", "-p",
                                   '{"spec":{"clusterIP":"10.96.8.8"}}')
        assert rc != 0 and ('spec.clusterIPs[0]: Invalid value: []string{"10.96.8.8"}: may not '
                            'change once set') in err, err
        rc, out, err = srv.kubectl(ver, "patch", "svc", "a", "-p",
                                   '{"spec":{"ports":[{"port":80,"nodePort":99999}]}}')
        assert rc != 0 and "spec.ports[0].nodePort" in err, err
    code, body = srv.json("GET", NS + "/services/b")
    assert code == 404, body
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
         "spec": {"selector": {"matchLabels": {"app": "x"}},
                  "template": {"metadata": {"labels": {"app": "y"}},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    code, st = srv.json("POST", "/apis/apps/v1/namespaces/default/deployments", d)
    assert code == 422 and any(c["field"] == "spec.template.metadata.labels"
                               for c in st["details"]["causes"]), st
    # Nothing was leaked by the refusals: the values a refused write asked
    # for are free once their holder goes.
    code, _ = srv.json("DELETE", NS + "/services/a")
    assert code == 200
    code, body = srv.json("POST", NS + "/services",
                          svc("c", [{"port": 80, "nodePort": 30080}], "NodePort",
                              clusterIP="10.96.7.7"))
    assert code == 201, body


@own_servers
def test_release_and_reuse():
    """Node ports and IPs come back on delete, on a type change to ClusterIP or
    ExternalName and on a removed port; apply without nodePort keeps it; the
    same port for TCP and UDP of one Service is allowed."""
    srv = kh.ApiServer().start()
    ver = kh.kubectl_versions()[-1]
    man = svc("web", [{"name": "a", "port": 80, "nodePort": 30001},
                      {"name": "b", "port": 81, "nodePort": 30002}], "NodePort",
              selector={"app": "web"})
    srv.must(ver, "apply", "-f", "-", stdin=json.dumps(man))
    ip = get_svc(srv, "web")["spec"]["clusterIP"]
    # Re-applied without node ports or clusterIP: both are kept.
    man2 = svc("web", [{"name": "a", "port": 80}, {"name": "b", "port": 81}], "NodePort",
               selector={"app": "web"})
    srv.must(ver, "apply", "-f", "-", stdin=json.dumps(man2))
    s = get_svc(srv, "web")["spec"]
    assert [p["nodePort"] for p in s["ports"]] == [30001, 30002] and s["clusterIP"] == ip, s
    # A replace without them keeps them too.
    body = dict(man2, metadata={"name": "web",
                                "resourceVersion": get_svc(srv, "web")["metadata"]["resourceVersion"]})
    code, got = srv.json("PUT", NS + "/services/web", body)
    assert code == 200 and got["spec"]["clusterIP"] == ip, got
    assert [p["nodePort"] for p in got["spec"]["ports"]] == [30001, 30002], got
    # Port b removed: its node port is free for someone else.
    srv.must(ver, "patch", "svc", "web", "--type=json", "-p",
             '[{"op":"remove","path":"/spec/ports/1"}]')
    code, body = srv.json("POST", NS + "/services", svc("o1", [{"port": 1, "nodePort": 30002}],
                                                        "NodePort"))
    assert code == 201, body
    # Back to ClusterIP: node ports go.
    srv.must(ver, "patch", "svc", "web", "-p", '{"spec":{"type":"ClusterIP"}}')
    assert "nodePort" not in get_svc(srv, "web")["spec"]["ports"][0]
    code, body = srv.json("POST", NS + "/services", svc("o2", [{"port": 1, "nodePort": 30001}],
                                                        "NodePort"))
    assert code == 201, body
    # To ExternalName: the IP goes; back to ClusterIP: a new one comes.
    srv.must(ver, "patch", "svc", "web", "-p",
             '{"spec":{"type":"ExternalName","externalName":"web.example.com"}}')
    assert "clusterIP" not in get_svc(srv, "web")["spec"]
    code, body = srv.json("POST", NS + "/services", svc("o3", clusterIP=ip))
    assert code == 201, body
    # Deleted: everything it held is free.
    code, body = srv.json("POST", NS + "/services",
                          svc("t", [{"name": "t", "port": 53, "nodePort": 30053},
                                    {"name": "u", "port": 53, "protocol": "UDP",
                                     "nodePort": 30053}], "NodePort", clusterIP="10.96.9.9"))
    assert code == 201, body
    srv.must(ver, "delete", "svc", "t", "o1")
    code, body = srv.json("POST", NS + "/services",
                          svc("t2", [{"name": "w", "port": 53, "nodePort": 30053}, {"name": "x", "port": 2,
                                                                       "nodePort": 30002}],
                              "NodePort", clusterIP="10.96.9.9"))
    assert code == 201, body


@own_servers
def test_health_check_node_port():
    """A LoadBalancer with externalTrafficPolicy Local gets a healthCheckNodePort
    from the node-port range, kept on updates and released when the policy
    goes back to Cluster; other Services may not set one."""
    srv = kh.ApiServer().start()
    code, body = srv.json("POST", NS + "/services",
                          svc("lb", [{"port": 80}], "LoadBalancer",
                              externalTrafficPolicy="Local"))
    assert code == 201, body
    hc = body["spec"]["healthCheckNodePort"]
    assert 30000 <= hc <= 32767 and hc != body["spec"]["ports"][0]["nodePort"], body
    code, body = srv.json("PATCH", NS + "/services/lb", {"metadata": {"labels": {"a": "b"}}},
                          MERGE)
    assert code == 200 and body["spec"]["healthCheckNodePort"] == hc, body
    expect_422(srv, "POST", NS + "/services", svc("x", [{"port": 1, "nodePort": hc}],
                                                  "NodePort"),
               "spec.ports[0].nodePort", "provided port is already allocated")
    code, body = srv.json("PATCH", NS + "/services/lb",
                          {"spec": {"externalTrafficPolicy": "Cluster"}}, MERGE)
    assert code == 200 and "healthCheckNodePort" not in body["spec"], body
    code, body = srv.json("POST", NS + "/services", svc("x", [{"port": 1, "nodePort": hc}],
                                                        "NodePort"))
    assert code == 201, body
    expect_422(srv, "POST", NS + "/services",
               svc("y", [{"port": 1}], "NodePort", healthCheckNodePort=31111),
               "spec.healthCheckNodePort", "may only be set when `type` is 'LoadBalancer'")


@own_servers
def test_allocations_survive_restart():
    """After a restart the server still refuses values taken before it, hands
    out new ones that do not collide, and keeps the kubernetes Service."""
    srv = kh.ApiServer().start()
    held = {}
    for i in range(5):
        code, body = srv.json("POST", NS + "/services",
                              svc("s%d" % i, [{"port": 80}], "NodePort"))
        assert code == 201, body
        held[body["spec"]["clusterIP"]] = body["spec"]["ports"][0]["nodePort"]
    uid = get_svc(srv, "kubernetes")["metadata"]["uid"]
    assert srv.terminate() == 0
    srv = kh.ApiServer(data_dir=srv.data_dir, peer_port=srv.peer_port).start()
    assert get_svc(srv, "kubernetes")["metadata"]["uid"] == uid
    ip, port = next(iter(held.items()))
    expect_422(srv, "POST", NS + "/services", svc("dup", clusterIP=ip),
               "spec.clusterIPs", "provided IP is already allocated")
    expect_422(srv, "POST", NS + "/services", svc("dup", [{"port": 1, "nodePort": port}],
                                                  "NodePort"),
               "spec.ports[0].nodePort", "provided port is already allocated")
    for i in range(5):
        code, body = srv.json("POST", NS + "/services",
                              svc("t%d" % i, [{"port": 80}], "NodePort"))
        assert code == 201, body
        assert body["spec"]["clusterIP"] not in held, body
        assert body["spec"]["ports"][0]["nodePort"] not in held.values(), body


@own_servers
def test_two_servers_one_store():
    """Two API servers on one store, creating Services at once from a small
    range, never hand out one IP or node port twice; a node port asked of both
    at once goes to exactly one; a full range is a 500 saying so."""
    store = ct.Server(target="capstan").start()
    flags = ["--store-endpoints", store.url, "--service-cluster-ip-range", "10.201.0.0/27",
             "--service-node-port-range", "31000-31039"]
    a = kh.ApiServer(extra=flags).start()
    b = kh.ApiServer(extra=flags).start()
    results = []
    lock = threading.Lock()

    def create(srv, name):
        code, body = srv.json("POST", NS + "/services", svc(name, [{"port": 80}], "NodePort"))
        with lock:
            results.append((code, body))

    threads = [threading.Thread(target=create, args=(srv, "%s%d" % (tag, i)))
               for i in range(12) for srv, tag in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(code == 201 for code, _ in results), [b for c, b in results if c != 201]
    ips = [body["spec"]["clusterIP"] for _, body in results]
    ports = [body["spec"]["ports"][0]["nodePort"] for _, body in results]
    assert len(set(ips)) == 24 and len(set(ports)) == 24, (ips, ports)
    net = ipaddress.ip_network("10.201.0.0/27")
    assert all(ipaddress.ip_address(ip) in net and ip != "10.201.0.1" for ip in ips), ips
    assert all(31000 <= p <= 31039 for p in ports), ports
    # The same requested port from both servers at once: one wins.
    free = min(set(range(31000, 31040)) - set(ports))
    race = []

    def ask(srv, name):
        code, body = srv.json("POST", NS + "/services",
                              svc(name, [{"port": 80, "nodePort": free}], "NodePort"))
        with lock:
            race.append(code)

    ts = [threading.Thread(target=ask, args=(a, "ra")), threading.Thread(target=ask,
                                                                          args=(b, "rb"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert sorted(race) == [201, 422], race
    # 30 usable addresses: the kubernetes Service, 24 above, one racer: 4 left.
    for i in range(4):
        code, body = a.json("POST", NS + "/services", svc("f%d" % i))
        assert code == 201, body
    code, st = b.json("POST", NS + "/services", svc("full"))
    assert code == 500 and "range is full" in st["message"], st


def kv_put(store, key, obj):
    code, body = ct.post_to(store.port, "/v3/kv/put",
                            {"key": ct.b64(key), "value": ct.b64(json.dumps(obj))})
    assert code == 200, body


def kv_exists(store, key):
    code, body = ct.post_to(store.port, "/v3/kv/range", {"key": ct.b64(key)})
    assert code == 200, body
    return bool(body.get("kvs"))


@own_servers
def test_repair_at_start():
    """At start the API server drops an allocation record no Service holds, and
    records the values of a Service that holds them without one (so they are
    refused to others)."""
    store = ct.Server(target="capstan").start()
    leaked = "/registry/servicenodeports/30500"
    kv_put(store, leaked, {"apiVersion": "v1", "kind": "ServiceNodePort",
                           "metadata": {"name": "30500"}, "port": 30500,
                           "parentRef": {"group": "", "resource": "services",
                                         "namespace": "default", "name": "gone"}})
    kv_put(store, "/registry/namespaces/default",
           {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default",
                                                                 "uid": "u-default"}})
    kv_put(store, "/registry/services/default/old",
           {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "old", "namespace": "default", "uid": "u-old"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.3.3", "clusterIPs": ["10.96.3.3"],
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30600}]}})
    srv = kh.ApiServer(extra=["--store-endpoints", store.url]).start()
    ct.wait_until(lambda: not kv_exists(store, leaked), timeout=20, what="leaked record dropped")
    ct.wait_until(lambda: kv_exists(store, "/registry/servicenodeports/30600") and
                  kv_exists(store, "/registry/ipaddresses/10.96.3.3"), timeout=20,
                  what="missing records added")
    expect_422(srv, "POST", NS + "/services", svc("x", [{"port": 1, "nodePort": 30600}],
                                                  "NodePort"),
               "spec.ports[0].nodePort", "provided port is already allocated")
    expect_422(srv, "POST", NS + "/services", svc("y", clusterIP="10.96.3.3"),
               "spec.clusterIPs", "provided IP is already allocated")
    code, body = srv.json("POST", NS + "/services", svc("z", [{"port": 1, "nodePort": 30500}],
                                                        "NodePort"))
    assert code == 201, body


def slices_of(srv, name):
    code, body = srv.json("GET", SLICES + "?labelSelector=kubernetes.io/service-name=" + name)
    assert code == 200, body
    return body["items"]


def endpoints_by_pod(srv, name):
    return {e["targetRef"]["name"]: e for s in slices_of(srv, name) for e in s.get("endpoints") or []}


@own_servers
def test_endpointslices_follow_readiness():
    """EndpointSlices of a Service list its pods with ready/serving/terminating
    conditions that follow readiness and deletion, are labelled and owned as
    Kubernetes' are, print in kubectl get endpointslices, honour
    publishNotReadyAddresses (as the Endpoints do), and go with the Service."""
    srv, k = tw.start(("n1", "n2"))
    try:
        d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
             "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "api"}},
                      "template": {"metadata": {"labels": {"app": "api"}},
                                   "spec": {"containers": [{
                                       "name": "c", "image": "busybox",
                                       "ports": [{"name": "http", "containerPort": 8080}]}]}}}}
        srv.must("1.33", "apply", "-f", "-", stdin=json.dumps(d))
        srv.must("1.33", "apply", "-f", "-", stdin=json.dumps(
            svc("api", [{"name": "web", "port": 80, "targetPort": "http"}],
                selector={"app": "api"})))
        ct.wait_until(lambda: len([e for e in endpoints_by_pod(srv, "api").values()
                                   if e["conditions"]["ready"]]) == 3,
                      timeout=30, what="3 ready endpoints")
        (sl,) = slices_of(srv, "api")
        labels = sl["metadata"]["labels"]
        assert labels["endpointslice.kubernetes.io/managed-by"] == \
            "endpointslice-controller.k8s.io", labels
        owner = sl["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "Service" and owner["uid"] == \
            get_svc(srv, "api")["metadata"]["uid"] and owner["controller"], owner
        assert sl["addressType"] == "IPv4", sl
        assert sl["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}], sl
        pods = {p["metadata"]["name"]: p for p in tw.live_pods(srv, "app=api")}
        for name, e in endpoints_by_pod(srv, "api").items():
            assert e["addresses"] == [pods[name]["status"]["podIP"]], e
            assert e["nodeName"] == pods[name]["spec"]["nodeName"], e
            assert e["targetRef"]["kind"] == "Pod" and e["targetRef"]["uid"] == \
                pods[name]["metadata"]["uid"], e
        for ver in kh.kubectl_versions():
            out = srv.must(ver, "get", "endpointslices")
            assert out.split("\n")[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS",
                                                  "AGE"], out
            r = row(out, sl["metadata"]["name"])
            assert r[1] == "IPv4" and r[2] == "8080" and len(r[3].split(",")) == 3, r

        victim = sorted(pods)[0]
        k.set_ready(victim, False)
        ct.wait_until(lambda: endpoints_by_pod(srv, "api")[victim]["conditions"] ==
                      {"ready": False, "serving": False, "terminating": False},
                      timeout=20, what="not-ready endpoint")
        code, ep = srv.json("GET", NS + "/endpoints/api")
        assert [a["targetRef"]["name"] for s in ep["subsets"]
                for a in s.get("notReadyAddresses", [])] == [victim], ep
        # publishNotReadyAddresses: ready in slices and in Endpoints.
        srv.must("1.33", "patch", "svc", "api", "-p",
                 '{"spec":{"publishNotReadyAddresses":true}}')
        ct.wait_until(lambda: endpoints_by_pod(srv, "api")[victim]["conditions"]["ready"],
                      timeout=20, what="published not-ready endpoint")
        ct.wait_until(lambda: not any(s.get("notReadyAddresses") for s in
                                      srv.json("GET", NS + "/endpoints/api")[1]["subsets"]),
                      timeout=20, what="Endpoints listing every address as ready")
        srv.must("1.33", "patch", "svc", "api", "-p",
                 '{"spec":{"publishNotReadyAddresses":false}}')
        k.set_ready(victim, True)
        ct.wait_until(lambda: all(e["conditions"] == {"ready": True, "serving": True,
                                                      "terminating": False}
                                  for e in endpoints_by_pod(srv, "api").values()),
                      timeout=20, what="all ready and serving again")

        # A terminating pod (held by a finalizer) is serving, not ready.
        code, body = srv.json("PATCH", NS + "/pods/" + victim,
                              {"metadata": {"finalizers": ["example.com/hold"]}}, MERGE)
        assert code == 200, body
        srv.must("1.33", "delete", "pod", victim, "--wait=false")
        ct.wait_until(lambda: endpoints_by_pod(srv, "api").get(victim, {}).get("conditions") ==
                      {"ready": False, "serving": True, "terminating": True},
                      timeout=20, what="terminating endpoint")
        code, body = srv.json("PATCH", NS + "/pods/" + victim,
                              {"metadata": {"finalizers": None}}, MERGE)
        assert code == 200, body
        ct.wait_until(lambda: victim not in endpoints_by_pod(srv, "api") and
                      len(endpoints_by_pod(srv, "api")) == 3, timeout=30,
                      what="replacement pod listed, old one gone")

        # No fighting: with nothing changing, the slice is not rewritten.
        rv = slices_of(srv, "api")[0]["metadata"]["resourceVersion"]
        srv.must("1.33", "label", "svc", "api", "unrelated=1")
        ct.wait_until(lambda: slices_of(srv, "api")[0]["metadata"]["labels"].get("unrelated"),
                      timeout=20, what="Service labels copied to its slice")
        rv2 = slices_of(srv, "api")[0]["metadata"]["resourceVersion"]
        assert rv2 != rv
        code, body = srv.json("PATCH", NS + "/services/api",
                              {"metadata": {"annotations": {"touch": "1"}}}, MERGE)
        assert code == 200
        code, body = srv.json("GET", NS + "/endpoints/api")  # a round trip for the controllers
        assert slices_of(srv, "api")[0]["metadata"]["resourceVersion"] == rv2

        srv.must("1.33", "delete", "svc", "api")
        ct.wait_until(lambda: not slices_of(srv, "api"), timeout=30, what="slices removed")
    finally:
        k.close()


@own_servers
def test_endpointslices_split_at_100():
    """More than 100 endpoints are spread over slices of at most 100."""
    srv, k = tw.start(("n1", "n2", "n3"))
    try:
        d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big"},
             "spec": {"replicas": 130, "selector": {"matchLabels": {"app": "big"}},
                      "template": {"metadata": {"labels": {"app": "big"}},
                                   "spec": {"containers": [{"name": "c",
                                                            "image": "busybox"}]}}}}
        srv.must("1.33", "apply", "-f", "-", stdin=json.dumps(d))
        code, _ = srv.json("POST", NS + "/services", svc("big", selector={"app": "big"}))
        assert code == 201
        ct.wait_until(lambda: len(endpoints_by_pod(srv, "big")) == 130, timeout=120,
                      what="130 endpoints")
        sizes = sorted(len(s["endpoints"]) for s in slices_of(srv, "big"))
        assert sizes == [30, 100], sizes
    finally:
        k.close()


if __name__ == "__main__":
    ct.run(globals())
