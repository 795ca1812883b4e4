"""The node's network inside the test guest: an uplink with the node's addresses, pods as
network namespaces on routed veths (as Calico builds them), and outside clients.

Routed pods pass every packet through the node's IP stack, so IPVS sees both directions
(see ../../../shared/reference/kernel-test-vm.md, "Pods and clients inside the guest"):
the pod's veth end gets a /32, a route to a link-local gateway and a default route via it,
a permanent neighbour entry for that gateway with the host-side veth's MAC, and the node a
/32 route per pod through that veth.
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_IP = "192.168.100.10"
NODE_IP6 = "fd00:100::10"
GATEWAY = "169.254.1.1"


def sh(*cmd, check=True, ns=None, capture=False):
    argv = list(cmd)
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    r = subprocess.run(argv, check=False, text=True,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): "
                           f"{(r.stderr or '').strip()}")
    return r.stdout if capture else r.returncode


def setup_node():
    """The node: forwarding on, an uplink 'eth0' (dummy) with the node IPs and default routes."""
    for key, val in (("net/ipv4/ip_forward", "1"), ("net/ipv6/conf/all/forwarding", "1")):
        with open("/proc/sys/" + key, "w") as f:
            f.write(val)
    sh("ip", "link", "add", "eth0", "type", "dummy")
    sh("ip", "link", "set", "eth0", "up")
    sh("ip", "addr", "add", NODE_IP + "/24", "dev", "eth0")
    sh("ip", "-6", "addr", "add", NODE_IP6 + "/64", "dev", "eth0", "nodad")
    sh("ip", "route", "add", "default", "via", "192.168.100.1", "dev", "eth0", "onlink")
    sh("ip", "-6", "route", "add", "default", "via", "fd00:100::1", "dev", "eth0", "onlink")


class Pod:
    def __init__(self, name, ip, ip6=None):
        self.name, self.ip, self.ip6 = name, ip, ip6
        self.ns = "pod-" + name
        self.host_if = ("v" + name)[:15]
        self.proc = None

    def create(self):
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0",
           "netns", self.ns)
        sh("ip", "link", "set", self.host_if, "up")
        mac = open(f"/sys/class/net/{self.host_if}/address").read().strip()
        sh("ip", "link", "set", "lo", "up", ns=self.ns)
        sh("ip", "link", "set", "eth0", "up", ns=self.ns)
        sh("ip", "addr", "add", self.ip + "/32", "dev", "eth0", ns=self.ns)
        sh("ip", "route", "add", GATEWAY, "dev", "eth0", ns=self.ns)
        sh("ip", "route", "add", "default", "via", GATEWAY, "dev", "eth0", ns=self.ns)
        sh("ip", "neigh", "add", GATEWAY, "lladdr", mac, "dev", "eth0", "nud", "permanent",
           ns=self.ns)
        sh("ip", "route", "add", self.ip + "/32", "dev", self.host_if)
        # The host side answers for the gateway address only through the neighbour entry;
        # it needs no address of its own, but proxy_arp off and rp_filter loose keep the
        # kernel from dropping the asymmetric first packets.
        with open(f"/proc/sys/net/ipv4/conf/{self.host_if}/rp_filter", "w") as f:
            f.write("0")
        if self.ip6:
            sh("ip", "-6", "addr", "add", self.ip6 + "/128", "dev", "eth0", "nodad", ns=self.ns)
            sh("ip", "-6", "route", "add", "fe80::1", "dev", "eth0", ns=self.ns)
            sh("ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0", ns=self.ns)
            sh("ip", "-6", "neigh", "add", "fe80::1", "lladdr", mac, "dev", "eth0", "nud",
               "permanent", ns=self.ns)
            sh("ip", "-6", "route", "add", self.ip6 + "/128", "dev", self.host_if)
        return self

    def serve(self, tcp=(), udp=(), http=()):
        args = ["ip", "netns", "exec", self.ns, sys.executable, os.path.join(HERE, "echo_server.py"),
                "--name", self.name]
        for p in tcp:
            args += ["--tcp", str(p)]
        for p in udp:
            args += ["--udp", str(p)]
        for p in http:
            args += ["--http", str(p)]
        if self.ip6:
            args.append("--ipv6")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"echo server of {self.name} did not start")
        return self

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Client:
    """An 'outside' host: a namespace on a veth pair to the node, with its own subnet."""

    def __init__(self, name, subnet_octet):
        self.name = name
        self.ns = "client-" + name
        self.host_if = ("c" + name)[:15]
        self.ip = f"192.168.{subnet_octet}.2"
        self.gw = f"192.168.{subnet_octet}.1"

    def create(self):
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0",
           "netns", self.ns)
        sh("ip", "addr", "add", self.gw + "/24", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        sh("ip", "link", "set", "lo", "up", ns=self.ns)
        sh("ip", "link", "set", "eth0", "up", ns=self.ns)
        sh("ip", "addr", "add", self.ip + "/24", "dev", "eth0", ns=self.ns)
        sh("ip", "route", "add", "default", "via", self.gw, ns=self.ns)
        return self

    def probe(self, mode, host, port, count=1, timeout=2, extra=()):
        return probe_from(self.ns, mode, host, port, count, timeout, extra)


def probe_args(mode, host, port, count=1, timeout=2, seconds=None, extra=()):
    args = [sys.executable, os.path.join(HERE, "probe.py"), mode, host, str(port),
            "--count", str(count), "--timeout", str(timeout)] + list(extra)
    if seconds is not None:
        args += ["--seconds", str(seconds)]
    return args


def probe_from(ns, mode, host, port, count=1, timeout=2, extra=()):
    """The same probe, from any namespace (None: the node itself)."""
    out = sh(*probe_args(mode, host, port, count, timeout, extra=extra), ns=ns, capture=True)
    return [l for l in out.splitlines() if l]


def hold_from(ns, host, port, seconds):
    """Starts a long-lived TCP conversation in the background; returns the Popen whose stdout
    yields the backend of each reply, one per line."""
    argv = probe_args("hold", host, port, seconds=seconds)
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def wait_until(cond, timeout=30, interval=0.2, what="condition"):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
