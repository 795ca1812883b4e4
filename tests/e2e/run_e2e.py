#!/usr/bin/env python3
"""kube-ipvs end to end, inside the test guest: the real daemon against the fake API server,
pods as network namespaces answering with their names, and real traffic.

    python3 tests/vm/guest.py run -- python3 tests/e2e/run_e2e.py --kube-ipvs build/kube-ipvs

Prints one TAP line per scenario. Each scenario changes API objects, waits for the kernel to
converge (as ipvsadm, ip and ipset show it), and checks what traffic actually does.
"""
import argparse
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster  # noqa: E402
import nodenet  # noqa: E402
import promtext  # noqa: E402
from cluster import lb_status, node, service, slice_  # noqa: E402
from nodenet import wait_until  # noqa: E402

SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


class Env:
    pass


def setup(binary):
    env = Env()
    nodenet.setup_node()
    cluster.create_pods(env)
    env.deny = nodenet.Client("deny", 201).create()
    env.dir = cluster.workdir()
    env.api = cluster.FakeApi(env.dir)
    env.api.apply(node())
    env.daemon = cluster.Daemon(binary, env.dir, env.api.kubeconfig,
                                extra_args=["--ipvs-service-metrics"]).start()
    env.daemon.wait_synced()
    return env


def ep(env, name):
    p = env.pods[name]
    return (p.ip, p.node)


def wait_rs(vs, want, timeout=60):
    """Until the IPVS virtual server `vs` ("TCP 10.96.0.10:80") has exactly `want` real
    servers (["10.244.1.2:8080 w1", ...])."""
    want = sorted(want)
    return wait_until(lambda: cluster.ipvs_table().get(vs) == want or None, timeout=timeout,
                      what=f"{vs} -> {want} (now {cluster.ipvs_table().get(vs)})")


def names(n, lines):
    assert len(lines) == n, f"expected {n} answers, got {lines}"
    return lines


@scenario
def clusterip_balances_across_all_ready_backends(env):
    env.api.apply(service("web", "10.96.0.10", [("http", 80)]),
                  slice_("web-1", "web", [("http", 8080)],
                         [ep(env, "a"), ep(env, "b"), ep(env, "c"),
                          ("10.244.1.9", "node-1", False)]))  # not ready: never used
    wait_rs("TCP 10.96.0.10:80", ["10.244.1.2:8080 w1", "10.244.1.3:8080 w1",
                                  "10.244.2.2:8080 w1"])
    got = names(30, nodenet.probe_from(env.pods["d"].ns, "tcp", "10.96.0.10", 80, count=30))
    assert set(got) == {"a", "b", "c"}, got
    assert "10.96.0.10" in cluster.addresses()
    assert "10.96.0.10,tcp:80" in cluster.set_members("KUBE-CLUSTER-IP")


@scenario
def nodeport_answers_on_the_node_address(env):
    env.api.apply(service("np", "10.96.0.20", [("http", 80, "TCP", 30080)], type_="NodePort"),
                  slice_("np-1", "np", [("http", 8080)], [ep(env, "a"), ep(env, "b")]))
    wait_rs(f"TCP {nodenet.NODE_IP}:30080", ["10.244.1.2:8080 w1", "10.244.1.3:8080 w1"])
    got = names(20, env.ext.probe("tcp", nodenet.NODE_IP, 30080, count=20))
    assert set(got) == {"a", "b"}, got
    assert "30080" in cluster.set_members("KUBE-NODE-PORT-TCP")
    # Node IPs are never bound to kube-ipvs0.
    assert nodenet.NODE_IP not in cluster.addresses()


@scenario
def loadbalancer_source_ranges_allow_and_deny(env):
    env.api.apply(service("lb", "10.96.0.30", [("http", 80, "TCP", 30081)], type_="LoadBalancer",
                          loadBalancerSourceRanges=["192.168.200.0/24"],
                          status=lb_status("203.0.113.10")),
                  slice_("lb-1", "lb", [("http", 8080)], [ep(env, "a"), ep(env, "b")]))
    wait_rs("TCP 203.0.113.10:80", ["10.244.1.2:8080 w1", "10.244.1.3:8080 w1"])
    allowed = names(6, env.ext.probe("tcp", "203.0.113.10", 80, count=6))
    assert set(allowed) <= {"a", "b"} and "-" not in allowed, allowed
    denied = names(3, env.deny.probe("tcp", "203.0.113.10", 80, count=3, timeout=1))
    assert denied == ["-", "-", "-"], denied
    assert "203.0.113.10,tcp:80,192.168.200.0/24" in cluster.set_members(
        "KUBE-LOAD-BALANCER-SOURCE-CIDR")


@scenario
def external_ip_is_served(env):
    env.api.apply(service("extip", "10.96.0.31", [("http", 80)], externalIPs=["198.51.100.7"]),
                  slice_("extip-1", "extip", [("http", 8080)], [ep(env, "a"), ep(env, "b")]))
    wait_rs("TCP 198.51.100.7:80", ["10.244.1.2:8080 w1", "10.244.1.3:8080 w1"])
    got = names(10, env.ext.probe("tcp", "198.51.100.7", 80, count=10))
    assert set(got) == {"a", "b"}, got
    assert "198.51.100.7" in cluster.addresses()


@scenario
def client_ip_session_affinity_sticks(env):
    env.api.apply(service("sticky", "10.96.0.40", [("http", 80)], sessionAffinity="ClientIP",
                          sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}}),
                  slice_("sticky-1", "sticky", [("http", 8080)],
                         [ep(env, "a"), ep(env, "b"), ep(env, "c")]))
    wait_rs("TCP 10.96.0.40:80", ["10.244.1.2:8080 w1", "10.244.1.3:8080 w1",
                                  "10.244.2.2:8080 w1"])
    got = names(15, env.ext.probe("tcp", "10.96.0.40", 80, count=15))
    assert len(set(got)) == 1 and got[0] in ("a", "b", "c"), got
    assert "persistent 600" in nodenet.sh("ipvsadm", "-Ln", "-t", "10.96.0.40:80", capture=True)


@scenario
def external_traffic_policy_local_uses_local_backends_only(env):
    env.api.apply(service("local", "10.96.0.41", [("http", 80, "TCP", 30082)], type_="NodePort",
                          externalTrafficPolicy="Local"),
                  slice_("local-1", "local", [("http", 8080)], [ep(env, "a"), ep(env, "c")]))
    wait_rs(f"TCP {nodenet.NODE_IP}:30082", ["10.244.1.2:8080 w1"])
    wait_rs("TCP 10.96.0.41:80", ["10.244.1.2:8080 w1", "10.244.2.2:8080 w1"])
    got = names(10, env.ext.probe("tcp", nodenet.NODE_IP, 30082, count=10))
    assert set(got) == {"a"}, got
    # No local endpoint left: every endpoint, as kube-proxy does, so that this node's pods still
    # reach the NodePort (outside clients are steered away by the health-check port).
    env.api.apply(slice_("local-1", "local", [("http", 8080)], [ep(env, "c")]))
    vs = f"TCP {nodenet.NODE_IP}:30082"
    wait_until(lambda: [r for r in cluster.ipvs_table().get(vs, []) if r.endswith(" w1")] ==
               ["10.244.2.2:8080 w1"] or None, what=f"{vs} -> 10.244.2.2:8080 w1 (a drains)")
    got = names(5, nodenet.probe_from(env.pods["d"].ns, "tcp", nodenet.NODE_IP, 30082, count=5))
    assert set(got) == {"c"}, got


@scenario
def scale_down_keeps_established_connections_new_ones_avoid_the_backend(env):
    env.api.apply(service("sd", "10.96.0.50", [("http", 80)]),
                  slice_("sd-1", "sd", [("http", 8080)], [ep(env, "a"), ep(env, "b")]))
    wait_rs("TCP 10.96.0.50:80", ["10.244.1.2:8080 w1", "10.244.1.3:8080 w1"])
    hold = nodenet.hold_from(env.pods["d"].ns, "10.96.0.50", 80, seconds=12)
    first = hold.stdout.readline().strip()
    assert first in ("a", "b"), first
    other = "b" if first == "a" else "a"
    env.api.apply(slice_("sd-1", "sd", [("http", 8080)], [ep(env, other)]))
    removed = env.pods[first].ip + ":8080"
    # The removed backend drains at weight 0 while its connection lives.
    wait_rs("TCP 10.96.0.50:80", sorted([f"{removed} w0", env.pods[other].ip + ":8080 w1"]))
    fresh = names(8, nodenet.probe_from(env.ext.ns, "tcp", "10.96.0.50", 80, count=8))
    assert set(fresh) == {other}, fresh
    rest = [l.strip() for l in hold.stdout]
    hold.wait()
    assert rest and all(l == first for l in rest), f"held connection to {first} broke: {rest}"
    # Once the connection is gone the drained backend is deleted.
    wait_rs("TCP 10.96.0.50:80", [env.pods[other].ip + ":8080 w1"], timeout=240)


@scenario
def udp_service_follows_a_backend_change(env):
    env.api.apply(service("dns", "10.96.0.53", [("dns", 53, "UDP")]),
                  slice_("dns-1", "dns", [("dns", 5353, "UDP")], [ep(env, "a")]))
    wait_rs("UDP 10.96.0.53:53", ["10.244.1.2:5353 w1"])
    d = env.pods["d"].ns
    before = nodenet.probe_from(d, "udpfixed", "10.96.0.53", 53, count=3, extra=["--sport", "40053"])
    assert before == ["a", "a", "a"], before
    env.api.apply(slice_("dns-1", "dns", [("dns", 5353, "UDP")], [ep(env, "b")]))
    wait_rs("UDP 10.96.0.53:53", ["10.244.1.3:5353 w1"])  # UDP: deleted at once, no draining
    # The same client socket reaches the new backend: its stale conntrack entry was removed.
    after = nodenet.probe_from(d, "udpfixed", "10.96.0.53", 53, count=5, extra=["--sport", "40053"])
    assert after[-3:] == ["b", "b", "b"], after


@scenario
def a_pod_reaches_itself_through_its_service(env):
    env.api.apply(service("hairpin", "10.96.0.60", [("http", 80)]),
                  slice_("hairpin-1", "hairpin", [("http", 8080)], [ep(env, "a")]))
    wait_rs("TCP 10.96.0.60:80", ["10.244.1.2:8080 w1"])
    got = names(3, nodenet.probe_from(env.pods["a"].ns, "tcp", "10.96.0.60", 80, count=3))
    assert got == ["a", "a", "a"], got
    assert "10.244.1.2,tcp:8080,10.244.1.2" in cluster.set_members("KUBE-LOOP-BACK")


@scenario
def a_deleted_service_leaves_nothing_behind(env):
    env.api.apply(service("gone", "10.96.0.70", [("http", 80)]),
                  slice_("gone-1", "gone", [("http", 8080)], [ep(env, "a")]))
    wait_rs("TCP 10.96.0.70:80", ["10.244.1.2:8080 w1"])
    env.api.delete("Service", "gone")
    env.api.delete("EndpointSlice", "gone-1")
    wait_until(lambda: "TCP 10.96.0.70:80" not in cluster.ipvs_table(), timeout=60,
               what="virtual server deleted")
    wait_until(lambda: "10.96.0.70" not in cluster.addresses(), what="address unbound")
    assert "10.96.0.70,tcp:80" not in cluster.set_members("KUBE-CLUSTER-IP")
    assert "10.96.0.70" not in cluster.set_members("KUBE-IPVS-IPS")
    got = names(2, env.ext.probe("tcp", "10.96.0.70", 80, count=2, timeout=1))
    assert got == ["-", "-"], got


@scenario
def restart_keeps_traffic_and_writes_nothing(env):
    env.api.apply(service("steady", "10.96.0.80", [("http", 80)]),
                  slice_("steady-1", "steady", [("http", 8080)], [ep(env, "a"), ep(env, "b")]))
    wait_rs("TCP 10.96.0.80:80", ["10.244.1.2:8080 w1", "10.244.1.3:8080 w1"])
    hold = nodenet.hold_from(env.pods["d"].ns, "10.96.0.80", 80, seconds=20)
    first = hold.stdout.readline().strip()
    assert first in ("a", "b"), first
    assert env.daemon.stop() == 0, "SIGTERM should exit 0"
    # What the stopped daemon left is what the next one must find and keep.
    before = cluster.ipvs_table()
    save_before = [l for l in cluster.iptables_save().splitlines() if "KUBE" in l]
    assert before["TCP 10.96.0.80:80"] == ["10.244.1.2:8080 w1", "10.244.1.3:8080 w1"]
    env.daemon.start()
    env.daemon.wait_synced()
    writes = env.daemon.kernel_writes()
    assert writes == 0, f"restart issued {writes} kernel writes:\n" + "\n".join(
        f"{s} {l} {v}" for f in env.daemon.metrics().values() for s, l, v in f.samples
        if s == "kube_ipvs_kernel_operations_total")
    assert cluster.ipvs_table() == before
    save_after = [l for l in cluster.iptables_save().splitlines() if "KUBE" in l]
    assert save_after == save_before, "iptables changed:\n" + "\n".join(
        sorted(set(save_before) ^ set(save_after)))
    rest = [l.strip() for l in hold.stdout]
    hold.wait()
    assert rest and all(l == first for l in rest), f"connection interrupted: {rest}"


@scenario
def health_stays_up_while_the_first_lists_are_slow(env):
    """kube-proxy starts its health clock at its first sync, not at the first API event: a
    large cluster's lists (here the EndpointSlices list, held for 5 x syncPeriod) must not turn
    /livez 503 and have the liveness probe restart the pod into the same lists."""
    d = env.daemon
    assert d.stop() == 0
    env.api.fault({"match": {"resource": "endpointslices"}, "action": "hold", "count": -1,
                   "timeout": 20})
    try:
        d.start()
        wait_until(lambda: d.http("http://127.0.0.1:10256/livez", timeout=2)[0] is not None,
                   what="/livez answering")
        deadline = time.time() + 14  # 3.5 x the 4 s syncPeriod: the health timeout is 8 s
        seen = []
        while time.time() < deadline:
            seen.append(d.http("http://127.0.0.1:10256/livez", timeout=2)[0])
            time.sleep(0.5)
        assert seen and all(s == 200 for s in seen), seen
        m = d.metrics()
        assert not promtext.value(m, "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                                  ip_family="IPv4"), "synced although the slices were held"
    finally:
        env.api.clear_faults()
        env.api.call("POST", "release")
    d.wait_synced()
    assert d.http("http://127.0.0.1:10256/livez")[0] == 200


@scenario
def a_busy_health_port_is_retried(env):
    """The kube-proxy being replaced may still hold 10256: kube-ipvs retries the bind every
    5 s, as kube-proxy does, instead of running without its health server."""
    d = env.daemon
    assert d.stop() == 0
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("0.0.0.0", 10256))
    holder.listen(1)
    try:
        d.start()
        d.wait_synced()
        assert "Cannot start a server" in d.log(), d.log()[-2000:]
    finally:
        holder.close()
    status, body = wait_until(
        lambda: (lambda r: r if r[0] == 200 else None)(d.http("http://127.0.0.1:10256/livez",
                                                              timeout=2)),
        timeout=15, what="/livez once the port is free")
    assert body.startswith('{"lastUpdated": "'), body


@scenario
def health_and_metrics_endpoints(env):
    d = env.daemon
    status, body = d.http("http://127.0.0.1:10256/healthz")
    assert status == 200, (status, body)
    doc = json.loads(body)
    assert doc["nodeEligible"] is True and "UTC" in doc["lastUpdated"], doc
    assert body.startswith('{"lastUpdated": "') and '","currentTime": "' in body, body
    status, body = d.http("http://127.0.0.1:10256/livez")
    assert status == 200 and "nodeEligible" not in body, (status, body)
    assert d.http("http://127.0.0.1:10256/debug/pprof/")[0] == 404
    assert d.http("http://127.0.0.1:10249/healthz") == (200, "ok")
    assert d.http("http://127.0.0.1:10249/proxyMode") == (200, "ipvs")
    status, body = d.http("http://127.0.0.1:10249/configz")
    assert status == 200
    assert json.loads(body)["kubeproxy.config.k8s.io"]["IPVS"]["SyncPeriod"] == "4s"
    # The metrics server is on loopback only.
    assert d.http(f"http://{nodenet.NODE_IP}:10249/metrics", timeout=2)[0] is None
    m = d.metrics()  # parses strictly
    types = {n: f.type for n, f in m.items()}
    for name, t in (("kubeproxy_sync_proxy_rules_duration_seconds", "histogram"),
                    ("kubeproxy_network_programming_duration_seconds", "histogram"),
                    ("kubeproxy_sync_proxy_rules_last_timestamp_seconds", "gauge"),
                    ("kubeproxy_sync_proxy_rules_endpoint_changes_total", "counter"),
                    ("kubeproxy_proxy_healthz_total", "counter"),
                    ("kube_ipvs_virtual_servers", "gauge"),
                    ("process_resident_memory_bytes", "gauge"),
                    ("process_cpu_seconds_total", "counter"),
                    ("kube_ipvs_virtual_server_connections_total", "counter")):
        assert types.get(name) == t, f"{name}: {types.get(name)}"
    assert promtext.value(m, "kubeproxy_proxy_healthz_total", code="200") >= 1
    assert promtext.value(m, "process_resident_memory_bytes") > 1 << 20
    # Per family, as kube-proxy labels it (a "queued minus synced" query needs both labelled).
    assert (promtext.value(m, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                           ip_family="IPv4") or 0) > 0
    # Counted per event, through counters looked up once: each kind and type its own series.
    for kind in ("Service", "EndpointSlice"):
        assert promtext.value(m, "kube_ipvs_api_watch_events_total", kind=kind, type="ADDED") >= 1
    assert promtext.value(m, "kubeproxy_sync_proxy_rules_service_changes_total") >= 1
    assert promtext.value(m, "kubeproxy_sync_proxy_rules_endpoint_changes_total") >= 1
    assert promtext.value(m, "kube_ipvs_virtual_server_connections_total",
                          service="default/steady", virtual_server="10.96.0.80:80/TCP") >= 1


@scenario
def health_check_node_port_follows_local_endpoints(env):
    env.api.apply(service("hc", "10.96.0.90", [("http", 80, "TCP", 30090)], type_="LoadBalancer",
                          externalTrafficPolicy="Local", healthCheckNodePort=32001,
                          status=lb_status("203.0.113.20")),
                  slice_("hc-1", "hc", [("http", 8080)], [ep(env, "a"), ep(env, "c")]))
    url = f"http://{nodenet.NODE_IP}:32001/healthz"
    d = env.daemon
    st, body = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(d.http(url)),
                          what="health check port 200")
    doc = json.loads(body)
    assert doc == {"service": {"namespace": "default", "name": "hc"}, "localEndpoints": 1,
                   "serviceProxyHealthy": True}, doc
    # Weighted load balancers read the node's share from this header, as kube-proxy sends it.
    st, headers, _ = d.http_headers(url)
    assert headers.get("X-Load-Balancing-Endpoint-Weight") == "1", headers
    env.api.apply(slice_("hc-1", "hc", [("http", 8080)], [ep(env, "c")]))
    st, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(d.http(url)),
                          what="health check port 503")
    assert json.loads(body)["localEndpoints"] == 0
    assert d.http_headers(url)[1].get("X-Load-Balancing-Endpoint-Weight") == "0"
    env.api.apply(slice_("hc-1", "hc", [("http", 8080)], [ep(env, "a"), ep(env, "b")]))
    st, body = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(d.http(url)),
                          what="health check port 200 again")
    assert json.loads(body)["localEndpoints"] == 2
    env.api.delete("Service", "hc")
    wait_until(lambda: d.http(url, timeout=1)[0] is None, what="health check port closed")


@scenario
def node_being_deleted_is_not_eligible(env):
    d = env.daemon
    env.api.apply(node(spec={"taints": [{"key": "ToBeDeletedByClusterAutoscaler",
                                         "value": "1", "effect": "NoSchedule"}]}))
    wait_until(lambda: d.http("http://127.0.0.1:10256/healthz")[0] == 503,
               what="/healthz 503 for a node being drained")
    assert json.loads(d.http("http://127.0.0.1:10256/healthz")[1])["nodeEligible"] is False
    assert d.http("http://127.0.0.1:10256/livez")[0] == 200
    env.api.apply(node())
    wait_until(lambda: d.http("http://127.0.0.1:10256/healthz")[0] == 200,
               what="/healthz 200 again")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kube-ipvs", required=True)
    ap.add_argument("--only", action="append", default=[])
    args = ap.parse_args()
    binary = os.path.abspath(args.kube_ipvs)
    chosen = [s for s in SCENARIOS if not args.only or s.__name__ in args.only]

    def on_failure(env):
        if env.daemon.proc is not None:
            sys.stderr.write("---- kube-ipvs log (tail) ----\n" + env.daemon.log()[-4000:])
        sys.stderr.write(nodenet.sh("ipvsadm", "-Ln", capture=True))

    env, failed = cluster.run_scenarios(chosen, lambda: setup(binary), on_failure)
    if env is None:
        print(f"1..{len(chosen)}")
        return 1
    code = env.daemon.stop()
    n = len(chosen) + 1
    if not cluster.tap_sanitizers(n, env.dir, code):
        failed += 1
    print(f"1..{n}")
    env.api.stop()
    for p in env.pods.values():
        p.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
