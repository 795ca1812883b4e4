#!/usr/bin/env python3
"""The README's demo, inside the test guest: the real kube-ipvs daemon against the fake API
server serving manifests/examples/web.json, three pods answering HTTP with their names, and
a client namespace curling the Service. Exits 0 when traffic was balanced across all pods."""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import nodenet  # noqa: E402
import promtext  # noqa: E402


def say(text):
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kube-ipvs", required=True)
    args = ap.parse_args()
    objects = json.load(open(os.path.join(cluster.ROOT, "manifests", "examples", "web.json")))
    say("node network: uplink 192.168.100.10, pods on routed veths, a client namespace")
    nodenet.setup_node()
    pods = [nodenet.Pod(f"web-{c}", f"10.244.1.1{i}").create().serve(http=[8080], udp=[5353])
            for i, c in ((1, "a"), (2, "b"), (3, "c"))]
    client = nodenet.Client("demo", 200).create()

    say("fake API server (TLS, token auth) serving manifests/examples/web.json")
    api = cluster.FakeApi(cluster.workdir())
    api.apply(*objects["items"])
    for o in objects["items"]:
        ns = o["metadata"].get("namespace")
        print(f"  {o['kind']} {(ns + '/') if ns else ''}{o['metadata']['name']}")

    say("kube-ipvs --proxy-mode=ipvs --kubeconfig ... --hostname-override=node-1")
    daemon = cluster.Daemon(os.path.abspath(args.kube_ipvs), api.dir, api.kubeconfig,
                            extra_args=["--ipvs-service-metrics"]).start()
    try:
        daemon.wait_synced()
        nodenet.wait_until(lambda: len(cluster.ipvs_table().get("TCP 10.96.0.10:80", [])) == 3,
                           what="the web Service in IPVS")
        say("ipvsadm -Ln")
        print(nodenet.sh("ipvsadm", "-Ln", capture=True), end="")
        say("ip addr show kube-ipvs0")
        print(nodenet.sh("ip", "addr", "show", "kube-ipvs0", capture=True), end="")

        say("curl http://10.96.0.10/ (ClusterIP) nine times from the client namespace")
        seen = []
        for _ in range(9):
            out = nodenet.sh("curl", "-s", "--max-time", "5", "http://10.96.0.10/",
                             ns=client.ns, capture=True, check=False).strip()
            seen.append(out or "(no answer)")
            print(f"  {seen[-1]}")
        say(f"curl http://{nodenet.NODE_IP}:30080/ (NodePort) three times")
        for _ in range(3):
            out = nodenet.sh("curl", "-s", "--max-time", "5",
                             f"http://{nodenet.NODE_IP}:30080/", ns=client.ns, capture=True,
                             check=False).strip()
            print(f"  {out or '(no answer)'}")

        say("a few metrics (curl http://127.0.0.1:10249/metrics)")
        m = daemon.metrics()
        for name in ("kube_ipvs_virtual_servers", "kube_ipvs_real_servers",
                     "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                     "kube_ipvs_virtual_server_connections_total",
                     "kube_ipvs_kernel_operations_total"):
            for sample, labels, value in m[name].samples:
                if labels.get("ip_family", "IPv4") == "IPv4":
                    ls = ",".join(f'{k}="{v}"' for k, v in labels.items())
                    shown = f"{value:.0f}" if value == int(value) else f"{value:g}"
                    print(f"  {sample}{{{ls}}} {shown}")
        print(f"  /healthz: {daemon.http('http://127.0.0.1:10256/healthz')[1]}")
    finally:
        code = daemon.stop()
        api.stop()
        for p in pods:
            p.stop()
    balanced = set(seen) == {"web-a", "web-b", "web-c"}
    say(f"kube-ipvs stopped (exit {code}); traffic reached "
        f"{len(set(seen) - {'(no answer)'})} of 3 pods")
    return 0 if balanced and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
