"""The pieces of a one-node cluster inside the test guest: the fake API server, the real
kube-ipvs daemon, object builders, and kernel-state readers (ipvsadm, ip, ipset,
iptables-save), so end-to-end tests read like the scenario they check.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

import nodenet
import promtext

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAKE_API = os.path.join(ROOT, "tests", "fake-apiserver", "fake_apiserver.py")
NODE = "node-1"


# ---- objects --------------------------------------------------------------------------------

def service(name, cluster_ip, ports, ns="default", type_="ClusterIP", **spec):
    """ports: [(name, port, protocol, nodePort)] (protocol and nodePort optional)."""
    s = {"type": type_, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": []}
    for p in ports:
        name_, port = p[0], p[1]
        proto = p[2] if len(p) > 2 else "TCP"
        entry = {"name": name_, "port": port, "protocol": proto, "targetPort": port}
        if len(p) > 3 and p[3]:
            entry["nodePort"] = p[3]
        s["ports"].append(entry)
    status = spec.pop("status", {})
    s.update(spec)
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns}, "spec": s, "status": status}


def lb_status(*ips):
    return {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}


def slice_(name, svc, ports, endpoints, ns="default", family="IPv4"):
    """ports: [(name, port, protocol)]; endpoints: [(ip, node, ready, serving, terminating)]
    (node and conditions optional)."""
    eps = []
    for e in endpoints:
        ip = e[0]
        node = e[1] if len(e) > 1 else NODE
        ready = e[2] if len(e) > 2 else True
        serving = e[3] if len(e) > 3 else ready
        terminating = e[4] if len(e) > 4 else False
        ep = {"addresses": [ip],
              "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
        if node:
            ep["nodeName"] = node
        eps.append(ep)
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": family,
            "ports": [{"name": p[0], "port": p[1], "protocol": p[2] if len(p) > 2 else "TCP"}
                      for p in ports],
            "endpoints": eps}


def node(name=NODE, ip=nodenet.NODE_IP, zone="zone-a", **extra):
    n = {"kind": "Node", "apiVersion": "v1",
         "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
         "spec": {}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}
    for k, v in extra.items():
        if k == "metadata":
            n["metadata"].update(v)
        else:
            n[k] = v
    return n


# ---- the fake API server --------------------------------------------------------------------

class FakeApi:
    def __init__(self, workdir, tls=True, extra_args=()):
        self.dir = workdir
        args = [sys.executable, FAKE_API, "--port", "0", "--exit-on-stdin-eof",
                "--bookmark-interval", "5"]
        self.token = "e2e-token" if tls else None
        if tls:
            args += ["--tls-dir", os.path.join(workdir, "tls"), "--token", self.token]
        args += list(extra_args)
        self.log = open(os.path.join(workdir, "fake-apiserver.log"), "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        info = {}
        for line in self.proc.stdout:
            key, _, val = line.strip().partition(" ")
            info[key] = val
            if key == "READY":
                break
        if "READY" not in info:
            raise RuntimeError("fake API server did not start")
        self.port = int(info["PORT"])
        self.control = f"http://127.0.0.1:{info['CONTROL_PORT']}/__fake"
        if tls:
            self.kubeconfig = os.path.join(workdir, "tls", "kubeconfig-token.yaml")
        else:
            self.kubeconfig = os.path.join(workdir, "kubeconfig-plain.yaml")
            with open(self.kubeconfig, "w") as f:
                f.write(f"apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
                        f"    server: http://127.0.0.1:{self.port}\ncontexts:\n- name: c\n"
                        f"  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
                        f"users:\n- name: u\n  user: {{}}\n")

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.control + "/" + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return json.loads(text) if text else None

    def apply(self, *objs):
        return self.call("POST", "objects", list(objs))

    def delete(self, kind, name, ns="default"):
        body = {"kind": kind, "name": name}
        if kind != "Node":
            body["namespace"] = ns
        return self.call("POST", "delete", body)

    def fault(self, rule):
        return self.call("POST", "faults", rule)

    def clear_faults(self):
        return self.call("DELETE", "faults")

    def config(self, **kv):
        return self.call("POST", "config", kv)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- the daemon -----------------------------------------------------------------------------

def run_scenarios(scenarios, setup, on_failure):
    """Runs setup() and then each scenario(env), one TAP line each ('#' lines carry their
    durations); on_failure(env) prints what helps after a failed one. Returns (env, number
    failed); env is None if setup failed, in which case every scenario failed."""
    try:
        env = setup()
    except Exception:  # noqa: BLE001 - report and fail every scenario
        traceback.print_exc()
        for i, s in enumerate(scenarios, 1):
            print(f"not ok {i} - {s.__name__.replace('_', ' ')} (setup failed)")
        return None, len(scenarios)
    failed = 0
    for i, s in enumerate(scenarios, 1):
        t0 = time.time()
        try:
            s(env)
            print(f"ok {i} - {s.__name__.replace('_', ' ')}", flush=True)
        except Exception:  # noqa: BLE001
            failed += 1
            print(f"not ok {i} - {s.__name__.replace('_', ' ')}", flush=True)
            sys.stderr.write(traceback.format_exc())
            on_failure(env)
        print(f"# {s.__name__}: {time.time() - t0:.1f}s", flush=True)
    return env, failed


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_reports(workdir):
    """[(log path, report excerpt)] for every daemon log under workdir (its run directories
    too) with an ASan, LSan or UBSan report in it."""
    out = []
    paths = sorted(os.path.join(d, n) for d, _, names in os.walk(workdir)
                   for n in names if n.endswith(".log"))
    for path in paths:
        with open(path, errors="replace") as f:
            text = f.read()
        for mark in SANITIZER_MARKS:
            at = text.find(mark)
            if at >= 0:
                out.append((path, text[max(0, at - 200):at + 3000]))
                break
    return out


def create_pods(env):
    """The pods the e2e scenarios share: a, b and d on this node, c on node-2, each serving TCP
    8080 and UDP 5353, in env.pods; and the external client env.ext."""
    env.pods = {}
    for name, ip, host in (("a", "10.244.1.2", "node-1"), ("b", "10.244.1.3", "node-1"),
                           ("c", "10.244.2.2", "node-2"), ("d", "10.244.1.4", "node-1")):
        p = nodenet.Pod(name, ip).create().serve(tcp=[8080], udp=[5353])
        p.node = host
        env.pods[name] = p
    env.ext = nodenet.Client("ext", 200).create()


def tap_sanitizers(n, workdir, exit_code=None):
    """Prints TAP line n: no daemon log under workdir holds a sanitizer report (the suites
    also run from an ASan+UBSan build) and, if given, the daemon's exit code on SIGTERM was
    clean. Returns True if it passed."""
    reports = sanitizer_reports(workdir)
    what = "no daemon run left a sanitizer report"
    if exit_code not in (0, None) or reports:
        print(f"not ok {n} - {what}, and the daemon exited cleanly (exit {exit_code})")
        for path, text in reports:
            sys.stderr.write(f"---- {path} ----\n{text}\n")
        return False
    print(f"ok {n} - {what}, and the daemon exited cleanly")
    return True


class Daemon:
    def __init__(self, binary, workdir, kubeconfig, extra_args=(), name="kube-ipvs"):
        self.binary, self.dir, self.kubeconfig = binary, workdir, kubeconfig
        self.extra = list(extra_args)
        self.name = name
        self.proc = None
        self.starts = 0

    def start(self, extra_args=()):
        self.starts += 1
        self.log_path = os.path.join(self.dir, f"{self.name}-{self.starts}.log")
        args = [self.binary, "--proxy-mode=ipvs", "--kubeconfig", self.kubeconfig,
                "--hostname-override", NODE, "--cluster-cidr", "10.244.0.0/16",
                "--ipvs-sync-period", "4s", "-v", "2"] + self.extra + list(extra_args)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path, "w"))
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def http(self, url, timeout=15):
        """(status, body) of a GET; status None when nothing answered."""
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except (urllib.error.URLError, OSError):
            return None, ""

    def http_headers(self, url, timeout=15):
        """(status, headers, body) of a GET; status None when nothing answered."""
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()
        except (urllib.error.URLError, OSError):
            return None, {}, ""

    def metrics(self):
        status, body = self.http("http://127.0.0.1:10249/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return promtext.parse(body)

    def wait_synced(self, timeout=120):
        """Until a full sync completed in this process (IPv4)."""
        def synced():
            if not self.alive():
                raise RuntimeError("kube-ipvs exited:\n" + self.log()[-3000:])
            try:
                m = self.metrics()
            except (RuntimeError, promtext.ParseError):
                return False
            return (promtext.value(m, "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                                   ip_family="IPv4") or 0) > 0
        nodenet.wait_until(synced, timeout=timeout, what="kube-ipvs to sync")

    def kernel_writes(self):
        """Sum of kernel write operations this process issued."""
        return promtext.total(self.metrics(), "kube_ipvs_kernel_operations_total")


# ---- kernel state -------------------------------------------------------------------------

def ipvs_table():
    """{ 'TCP 10.96.0.10:80': ['10.244.1.2:8080 w1', ...] } from ipvsadm -Sn."""
    out = nodenet.sh("ipvsadm", "-S", "-n", capture=True)
    table = {}
    for line in out.splitlines():
        f = line.split()
        if f[0] == "-A":
            key = {"-t": "TCP", "-u": "UDP", "--sctp-service": "SCTP"}[f[1]] + " " + f[2]
            table[key] = []
        elif f[0] == "-a":
            vs = {"-t": "TCP", "-u": "UDP", "--sctp-service": "SCTP"}[f[1]] + " " + f[2]
            rs = f[f.index("-r") + 1]
            w = f[f.index("-w") + 1]
            table[vs].append(f"{rs} w{w}")
    for v in table.values():
        v.sort()
    return table


def addresses(dev="kube-ipvs0"):
    out = nodenet.sh("ip", "-o", "addr", "show", "dev", dev, capture=True)
    return sorted(l.split()[3].split("/")[0] for l in out.splitlines())


def set_members(name):
    out = nodenet.sh("ipset", "list", name, capture=True)
    lines = out.splitlines()
    return sorted(lines[lines.index("Members:") + 1:]) if "Members:" in lines else []


def iptables_save():
    return nodenet.sh("iptables-save", capture=True)


def workdir():
    return tempfile.mkdtemp(prefix="kube-ipvs-e2e-", dir="/tmp")
