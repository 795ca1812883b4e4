#!/usr/bin/env python3
"""One configuration of the scale benchmark (issues 5 and 8), run as root INSIDE the test guest:
SERVICES Services with ENDPOINTS endpoints each, served by the fake API server to the real
kube-ipvs daemon. Prints progress lines and one `RESULT {json}` line that run_scale.py (the host
side) turns into the Markdown table and the plot. Never run this on a host kernel.

Phases, all in this one guest boot:
  1. the same IPVS table, written from an `ipvsadm -S -n` style file by `ipvsadm -R` and by the
     minimal batched netlink writer (`bench-ipvs restore`), each in its own fresh network
     namespace, one after the other and before the daemon, each table flushed once measured (see
     drop_ns): every method starts from an empty kernel table;
  2. cold start: daemon start to the end of its first complete sync (IPVS, kube-ipvs0 addresses,
     ipsets, iptables), from the time stamp of its "Synced proxy rules" log line;
  3. `ipvsadm -S -n` and `bench-ipvs walk` of the daemon's table (and a check that it is the same
     table as in phase 1);
  4. incremental: K Services added, K endpoints changed, K Services deleted, one at a time;
     latency = time stamp of the first "Synced proxy rules" line after the API write minus the
     wall time just before the write (so it includes the fake API server, the watch, decoding,
     the sync and every kernel write of it); kernel writes per change from
     kube_ipvs_kernel_operations_total, as the delta over the K changes divided by K; then the
     same with the kernel's rate estimation off (estimation_off);
  5. verification: endpoint changes every 250 ms across at least one syncPeriod pass; the pass
     duration comes from the daemon's "Verified kernel state" line; changes whose window overlaps
     a pass are reported separately; then the same with the rate estimation off;
  6. churn (optional): open-loop endpoint changes at a fixed rate: CPU seconds, lag, RSS drift;
  7. restart with everything programmed: time to the first complete sync and kernel writes;
  memory (VmHWM/VmRSS from /proc) is sampled after each phase.
"""
import argparse
import contextlib
import gc
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fake-apiserver"))

import cluster  # noqa: E402
import nodenet  # noqa: E402
from fake_apiserver import synth  # noqa: E402

SYNC_PERIOD = 10  # seconds; kube-proxy's default is 30 s, shorter so a pass happens in the run
ADD_BASE = 0x0AC80000  # 10.200.0.0: ClusterIPs of the Services the benchmark adds
EP_BASE = 0x0AF00000  # 10.240.0.0: endpoint addresses the benchmark changes to
# How often the daemon's log is read while waiting for a sync. Every time measured comes from
# the log's own time stamps, so this only decides how soon the next step starts; it must not
# take CPU from the daemon. Read every 2 ms (the old value), the waiting harness competed with
# the daemon for the guest's two vCPUs: a 44,000 x 10 cold start took 44.8 s (lists 39.3 s)
# instead of 27.7 s (lists 18.9 s) read every 200 ms, with the same build.
LOG_POLL_S = 0.05
RUN_ESTIMATION = "/proc/sys/net/ipv4/vs/run_estimation"


def say(*a):
    print(*a, flush=True)


def ip4(n):
    return "%d.%d.%d.%d" % (n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255)


def sh(*cmd, ns=None, stdin=None):
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    r = subprocess.run(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def run_together(cmds):
    """Runs the commands at once; raises if any fails."""
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    errs = [(c, p.communicate()[1], p.returncode) for c, p in zip(cmds, procs)]
    for c, err, rc in errs:
        if rc != 0:
            raise RuntimeError(f"{' '.join(c)} failed ({rc}): {err.strip()}")


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


def new_ns(name):
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    # Masquerade real servers need a route: a dummy uplink with a default route covers all.
    sh("ip", "-n", name, "link", "add", "uplink", "type", "dummy")
    sh("ip", "-n", name, "link", "set", "uplink", "up")
    sh("ip", "-n", name, "addr", "add", "10.255.255.1/32", "dev", "uplink")
    sh("ip", "-n", name, "route", "add", "default", "dev", "uplink")


def drop_ns(name):
    """Flushes a namespace's IPVS table, then deletes the namespace. On 6.1 IPVS hashes the
    virtual servers of every namespace into one table of 256 buckets, so a table left behind
    slows other namespaces: a lookup that finds nothing (each new virtual server) walks past its
    entries, and a dump of the virtual servers, resumed for every message by counting entries
    from the start of the table, counts them too (at 44,000 x 10, with the two reference tables
    left in place, `bench-ipvs walk` of the daemon's table took 30.6 s instead of 14.4 s). The
    flush is synchronous; a deleted namespace's table would be torn down in the background,
    during whatever is measured next."""
    sh("ipvsadm", "-C", ns=name)
    sh("ip", "netns", "del", name)


def table_sum(ns=None):
    out = sh("ipvsadm", "-S", "-n", ns=ns)
    lines = sorted(out.splitlines())
    return hashlib.md5("\n".join(lines).encode()).hexdigest(), len(lines)


def mem(pid):
    kv = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                kv[k] = int(v.split()[0]) * 1024
    return kv


def stat_cpu(path):
    """(name, CPU seconds user + system) from a /proc .../stat file."""
    with open(path) as f:
        head, _, rest = f.read().rpartition(")")
    fields = rest.split()
    return head.partition("(")[2], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    return stat_cpu(f"/proc/{pid}/stat")[1]


def thread_cpu(pid):
    """CPU seconds (user + system) of each thread name of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name, secs = stat_cpu(f"/proc/{pid}/task/{tid}/stat")
        except FileNotFoundError:
            continue  # the thread ended
        out[name] = out.get(name, 0.0) + secs
    return out


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))]


class LogTail:
    """The daemon's JSON log, read incrementally."""

    def __init__(self, path):
        self.path, self.pos, self.buf = path, 0, ""
        self.syncs, self.verifies, self.lists, self.errors = [], [], [], []

    def poll(self):
        try:
            with open(self.path) as f:
                f.seek(self.pos)
                data = f.read()
                self.pos = f.tell()
        except FileNotFoundError:
            return
        self.buf += data
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            msg = e.get("msg")
            if msg == "Synced proxy rules" and e.get("ipFamily") == "IPv4":
                # The benchmark's Services are IPv4; the IPv6 proxier's first sync ends as soon
                # as the lists do, while the IPv4 one may still be programming.
                self.syncs.append(e)
            elif msg == "Verified kernel state":
                self.verifies.append(e)
            elif msg == "Synced":
                self.lists.append(e)
            elif e.get("level") == "error":
                self.errors.append(e)

    def sync_after(self, t, timeout, daemon=None):
        """Time stamp of the first complete sync that ended after wall time t."""
        end = time.monotonic() + timeout
        while True:
            self.poll()
            for s in reversed(self.syncs):
                if s["ts"] <= t:
                    break
            for s in self.syncs:
                if s["ts"] > t:
                    return s
            if time.monotonic() > end:
                raise RuntimeError(f"no sync after {t} within {timeout}s")
            if daemon is not None and daemon.poll() is not None:
                raise RuntimeError("kube-ipvs exited")
            time.sleep(LOG_POLL_S)


class Run:
    def __init__(self, args):
        self.args = args
        self.n, self.e = args.services, args.endpoints
        self.dir = cluster.workdir()
        self.result = {"services": self.n, "endpoints": self.e, "kernel": os.uname().release}
        self.proc = None
        self.log = None
        self.starts = 0

    # ---- objects ------------------------------------------------------------------------

    def objects(self):
        items = synth(self.n, self.e)
        k = 0
        for it in items:
            if it["kind"] == "Node":
                it["status"]["addresses"] = [{"type": "InternalIP", "address": nodenet.NODE_IP}]
            elif it["kind"] == "EndpointSlice":
                # Spread the endpoints over a 100-node cluster, so that this node hosts 1% of
                # them as a node of a large cluster does (synth's five nodes put 88,000 members
                # in KUBE-LOOP-BACK at 44,000 x 10, over its maxelem of 65,536).
                for ep in it["endpoints"]:
                    ep["nodeName"] = "node-%d" % (k % 100)
                    k += 1
        self.seed = os.path.join(self.dir, "seed.json")
        with open(self.seed, "w") as f:
            json.dump(items, f)
        # The IPVS table the daemon will program, as `ipvsadm -S -n` would print it.
        self.rules = os.path.join(self.dir, "table.rules")
        with open(self.rules, "w") as f:
            for it in items:
                if it["kind"] != "EndpointSlice":
                    continue
                svc = it["metadata"]["name"]
                i = int(svc.split("-")[1])
                vip = "10.%d.%d.%d:80" % (96 + (i >> 16), (i >> 8) & 255, i & 255)
                f.write(f"-A -t {vip} -s rr\n")
                for ep in it["endpoints"]:
                    f.write(f"-a -t {vip} -r {ep['addresses'][0]}:8080 -m -w 1\n")
        self.slices = {it["metadata"]["name"]: it for it in items if it["kind"] == "EndpointSlice"}
        # The slices are kept to the end: keep them out of the cyclic collector, as the fake API
        # server does with its objects. 44,000 slices are about a million objects, whose full
        # collection takes over a second natively, and a latency sample counts from just
        # before its API write: a collection started by the write's own allocations would be
        # measured as the daemon's latency.
        del items
        gc.collect()
        gc.freeze()

    # ---- the daemon ---------------------------------------------------------------------

    def start_daemon(self):
        self.starts += 1
        path = os.path.join(self.dir, f"kube-ipvs-{self.starts}.log")
        argv = [self.args.kube_ipvs, "--proxy-mode=ipvs", "--kubeconfig", self.api.kubeconfig,
                "--hostname-override", cluster.NODE, "--cluster-cidr", "10.128.0.0/9",
                "--ipvs-sync-period", f"{SYNC_PERIOD}s", "--logging-format=json", "-v", "2",
                f"--ipvs-vip-binding={self.args.vip_binding}"]
        self.log = LogTail(path)
        t0 = time.time()
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(path, "w"))
        return t0

    def stop_daemon(self):
        # SIGTERM waits for an in-flight verification read (see the report); measured, bounded.
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.args.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.result.setdefault("stop_s", []).append(time.monotonic() - t0)
        say(f"  daemon stopped {time.monotonic() - t0:.1f}s after SIGTERM")

    def writes(self):
        """{ 'ipvs_service/add': n, ... } from the daemon's kernel operation counters."""
        body = urllib_get("http://127.0.0.1:10249/metrics")
        out = {}
        for line in body.splitlines():
            if not line.startswith("kube_ipvs_kernel_operations_total{"):
                continue
            labels, _, v = line[len("kube_ipvs_kernel_operations_total{"):].rpartition("} ")
            ls = dict(kv.split("=", 1) for kv in labels.split(","))
            ls = {k: v2.strip('"') for k, v2 in ls.items()}
            key = ls["object"] + "/" + ls["op"] + ("" if ls["result"] == "done" else
                                                  "/" + ls["result"])
            out[key] = out.get(key, 0) + float(v)
        return out

    def drain(self):
        """Waits until the reaper has deleted every real server left at weight 0 by an
        endpoint change (graceful termination), so that its deletes do not land in the next
        measurement."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            body = urllib_get("http://127.0.0.1:10249/metrics")
            left = sum(float(l.rsplit(" ", 1)[1]) for l in body.splitlines()
                       if l.startswith("kube_ipvs_terminating_real_servers"))
            if left == 0:
                return
            time.sleep(0.5)
        raise RuntimeError("real servers still terminating after 120 s")

    def memory(self, label):
        m = mem(self.proc.pid)
        self.result.setdefault("memory", {})[label] = m
        say(f"  memory {label}: VmRSS {m['VmRSS'] / 2**20:.1f} MiB, "
            f"VmHWM {m['VmHWM'] / 2**20:.1f} MiB")

    # ---- phases -------------------------------------------------------------------------

    def reference_writers(self):
        ops = sum(1 for _ in open(self.rules))
        self.result["ipvs_ops"] = ops
        new_ns("ref-restore")
        with open(self.rules) as f:
            secs, _ = timed(lambda: sh("ipvsadm", "-R", ns="ref-restore", stdin=f))
        self.result["ipvsadm_restore_s"] = secs
        say(f"  ipvsadm -R of {ops} lines: {secs:.3f}s")
        self.ref_sum = table_sum("ref-restore")
        drop_ns("ref-restore")
        new_ns("ref-writer")
        secs, out = timed(lambda: sh(self.args.bench_ipvs, "restore", self.rules,
                                     ns="ref-writer"))
        inner = dict(l.split("=", 1) for l in out.split())
        self.result["writer_s"] = secs
        self.result["writer_inner_s"] = float(inner["seconds"])
        say(f"  minimal batched writer (bench-ipvs restore): {secs:.3f}s "
            f"({inner['seconds']}s in apply())")
        if table_sum("ref-writer") != self.ref_sum:
            raise RuntimeError("ipvsadm -R and bench-ipvs restore programmed different tables")
        drop_ns("ref-writer")

    def cold_start(self):
        t0 = self.start_daemon()
        s = self.log.sync_after(t0, timeout=self.args.timeout, daemon=self.proc)
        self.result["cold_start_s"] = s["ts"] - t0
        lists = [e["ts"] - t0 for e in self.log.lists]
        self.result["cold_lists_s"] = max(lists) if lists else None
        self.result["cold_sync_s"] = s["seconds"]
        # Where the programming time went (summed over the early steps and the first full
        # sync; see proxy/proxier.h, Step::times).
        self.result["cold_phases"] = {k[:-len("Seconds")]: s[k] for k in s
                                      if k.endswith("Seconds") and k != "seconds"}
        say(f"  cold start: {s['ts'] - t0:.3f}s to the first complete sync (API lists done "
            f"after {self.result['cold_lists_s']}s, sync itself {s['seconds']:.3f}s; kernel "
            f"time by part: {fmt_writes(self.result['cold_phases'])})")
        self.memory("cold")
        w = self.writes()
        self.result["cold_writes"] = w
        say(f"  cold start kernel writes: {fmt_writes(w)}")
        got = table_sum()
        self.result["same_table"] = got == self.ref_sum
        if got != self.ref_sum:
            say(f"  WARNING: the daemon's IPVS table differs from the reference ({got[1]} vs "
                f"{self.ref_sum[1]} lines)")

    def read_back(self):
        best_save, best_walk = None, None
        for _ in range(3):
            s, _ = timed(lambda: sh("ipvsadm", "-S", "-n"))
            w, _ = timed(lambda: sh(self.args.bench_ipvs, "walk"))
            best_save = s if best_save is None else min(best_save, s)
            best_walk = w if best_walk is None else min(best_walk, w)
        self.result["ipvsadm_save_s"] = best_save
        self.result["walk_s"] = best_walk
        say(f"  read back (best of 3): ipvsadm -S -n {best_save:.3f}s, bench-ipvs walk "
            f"{best_walk:.3f}s")
        # What a restart must read besides the kernel: the API lists. A plain client (curl, no
        # decoding) fetches the same two lists from the same server side by side, alone and
        # then together with the walk, as the daemon reads them on a restart.
        fetch = self.fetch_lists_cmds()
        api_s, _ = timed(lambda: run_together(fetch))
        both_s, _ = timed(lambda: run_together(fetch + [[self.args.bench_ipvs, "walk"]]))
        self.result["api_fetch_s"] = api_s
        self.result["read_all_s"] = both_s
        say(f"  API lists fetched by curl (both at once) {api_s:.3f}s; with the walk beside "
            f"them {both_s:.3f}s")

    def fetch_lists_cmds(self):
        base = f"https://127.0.0.1:{self.api.port}"
        return [["curl", "-sSf", "--cacert", os.path.join(self.dir, "tls", "ca.crt"),
                 "-H", f"Authorization: Bearer {self.api.token}", "-o", "/dev/null", base + path]
                for path in ("/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices")]

    def change(self, objs=(), delete=None):
        """One API write; returns (latency to the end of the sync that followed, sync)."""
        t0 = time.time()
        if delete:
            self.api.delete(*delete)
        else:
            self.api.apply(*objs)
        self.write_s = time.time() - t0  # the fake API server's answer to the write
        s = self.log.sync_after(t0, timeout=120, daemon=self.proc)
        return s["ts"] - t0, s

    def parts(self, total, sync):
        """Where one latency sample went: from the write to the start of the sync that
        programmed it (the fake API server, the watch, decoding, the io thread's queue), and
        that sync itself (its "seconds" field). The server's answer to the write is recorded
        too; it overlaps the first part (the server notifies its watches before answering)."""
        return {"total": total, "write": self.write_s, "sync": sync["seconds"],
                "wait": max(0.0, total - sync["seconds"]),
                "sync_parts": {k[:-len("Seconds")]: sync[k] for k in sync
                               if k.endswith("Seconds") and k != "seconds" and sync[k] >= 0.001}}

    def endpoint_change(self, k):
        """Replaces one endpoint of Service k, or of the next Service that has one that is not
        on this node (a local one would also change KUBE-LOOP-BACK, rightly)."""
        start = (k * 7919) % self.n
        for j in range(self.n):
            name = "svc-%d-abcde" % ((start + j) % self.n)
            eps = self.slices[name]["endpoints"]
            remote = [n for n, ep in enumerate(eps) if ep.get("nodeName") != cluster.NODE]
            if remote:
                break
        else:
            raise RuntimeError("no Service has an endpoint on another node")
        sl = json.loads(json.dumps(self.slices[name]))
        self.ep_seq = getattr(self, "ep_seq", 0) + 1
        sl["endpoints"][remote[0]]["addresses"] = [ip4(EP_BASE + self.ep_seq)]
        self.slices[sl["metadata"]["name"]] = sl
        return self.change([sl])

    def incremental(self, key="incremental"):
        k = self.args.changes
        add_svc = []
        for j in range(k):
            name = f"bench-{j}"
            vip = ip4(ADD_BASE + j + 1)
            svc = cluster.service(name, vip, [("http", 80)], ns="bench")
            eps = [(ip4(EP_BASE + 0x80000 + j * 16 + x), "node-0") for x in range(self.e)]
            sl = cluster.slice_(name + "-x", name, [("http", 8080)], eps, ns="bench")
            add_svc.append((svc, sl))
        res = {}
        # add: the slice first (nothing to program without its Service; its writes, which
        # should be none, count in the total), then the Service, whose latency is measured.
        # Each sample also keeps where its time went, for the slowest ones (see parts()).
        lat, before = [], self.writes()
        for svc, sl in add_svc:
            self.change([sl])
            lat.append(self.parts(*self.change([svc])))
        res["add"] = (lat, per_change(diff(self.writes(), before), k))
        # endpoint change: one endpoint of an existing Service replaced.
        lat, before = [], self.writes()
        for j in range(k):
            lat.append(self.parts(*self.endpoint_change(j)))
        res["endpoint"] = (lat, per_change(diff(self.writes(), before), k))
        self.drain()
        # delete: the Service (its slice afterwards, outside the measurement).
        lat, before = [], self.writes()
        slice_del = []
        for svc, sl in add_svc:
            lat.append(self.parts(*self.change(delete=("Service", svc["metadata"]["name"],
                                                       "bench"))))
            slice_del.append(sl)
        res["delete"] = (lat, per_change(diff(self.writes(), before), k))
        for sl in slice_del:
            self.change(delete=("EndpointSlice", sl["metadata"]["name"], "bench"))
        out = {}
        for kind, (samples, w) in res.items():
            lat = [x["total"] for x in samples]
            worst = sorted(samples, key=lambda x: -x["total"])[:3]
            out[kind] = {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat), "n": len(lat),
                         "writes": w, "worst": worst}
            say(f"  {kind}: p50 {pct(lat, 50) * 1e3:.1f} ms, p99 {pct(lat, 99) * 1e3:.1f} ms "
                f"over {len(lat)}; kernel writes per change: {fmt_writes(w)}")
            say("    slowest (total = until the sync began + the sync [its parts over 1 ms]; the "
                "API server's answer to the write, which overlaps the first part): " +
                "; ".join(f"{ms(x['total'])} = {ms(x['wait'])} + {ms(x['sync'])} "
                          f"[{', '.join(f'{k} {ms(v)}' for k, v in x['sync_parts'].items())}] "
                          f"(answered {ms(x['write'])})" for x in worst))
        self.result[key] = out
        self.memory("after-" + key.replace("_", "-"))

    @contextlib.contextmanager
    def estimation_off(self, what):
        """Runs a phase again with the kernel's rate estimation off. Before 6.2 (this guest
        runs 6.1) IPVS estimates the rates of every virtual and real server in one timer every
        2 s, in softirq context: at 484,000 of them it holds a CPU for about 190 ms under
        emulation, and whatever ran there waits, the daemon's IPVS writes included. 6.2 moved
        the estimation to kernel threads; on older kernels net.ipv4.vs.run_estimation=0 stops
        it (the counters still count; only the rates in `ipvsadm -L --rate` stop). Yields
        False on a kernel without the sysctl, where the caller skips the phase."""
        if not os.path.exists(RUN_ESTIMATION):
            say(f"  (no net.ipv4.vs.run_estimation in this kernel: {what} without it skipped)")
            yield False
            return
        with open(RUN_ESTIMATION) as f:
            before = f.read()
        with open(RUN_ESTIMATION, "w") as f:
            f.write("0\n")
        try:
            say(f"  {what} again with net.ipv4.vs.run_estimation=0:")
            yield True
        finally:
            with open(RUN_ESTIMATION, "w") as f:
                f.write(before)

    def incremental_without_estimation(self):
        with self.estimation_off("incremental") as on:
            if on:
                self.incremental("incremental_no_estimation")

    def verification_without_estimation(self):
        """Separates what a pass costs the event loop from the estimator's stalls, which fall
        on changes inside and outside a pass alike."""
        with self.estimation_off("verification") as on:
            if on:
                self.verification("verify_no_estimation")

    def verification(self, key="verify"):
        # Endpoint changes every 250 ms until at least one pass started and ended in the window.
        self.log.poll()
        first = len(self.log.verifies)
        changes = []
        deadline = time.monotonic() + 4 * SYNC_PERIOD + 4 * self.args.timeout / 10
        while time.monotonic() < deadline:
            t0 = time.time()
            lat, s = self.endpoint_change(10_000 + len(changes))
            changes.append((t0, t0 + lat))
            self.log.poll()
            if len(self.log.verifies) >= first + 1:
                break
            time.sleep(max(0.0, 0.25 - (time.time() - t0)))
        passes = self.log.verifies[first:]
        if not passes:
            self.result[key] = None
            say("  WARNING: no verification pass seen")
            return
        windows = [(v["startedUnixMs"] / 1000, v["ts"]) for v in passes]
        during = [b - a for a, b in changes if any(a < we and b > ws for ws, we in windows)]
        outside = [b - a for a, b in changes if not any(a < we and b > ws for ws, we in windows)]
        last = passes[-1]
        v = {"read_s": last["readSeconds"], "compare_s": last["compareSeconds"],
             "total_s": last["readSeconds"] + last["compareSeconds"], "passes": len(passes),
             "longest_step_s": max(p.get("longestStepSeconds", 0) for p in passes),
             "drift": any(p["drift"] for p in passes),
             "during_p50": pct(during, 50), "during_p99": pct(during, 99),
             "during_n": len(during), "outside_p50": pct(outside, 50),
             "outside_p99": pct(outside, 99), "outside_n": len(outside)}
        self.result[key] = v
        say(f"  verification pass: read {v['read_s']:.3f}s (own thread) + compare "
            f"{v['compare_s']:.3f}s (io thread; longest step {v['longest_step_s'] * 1000:.1f} "
            f"ms); drift {v['drift']}; {len(during)} changes "
            f"during a pass: p50 {ms(v['during_p50'])}, p99 {ms(v['during_p99'])}; "
            f"{len(outside)} outside: p50 {ms(v['outside_p50'])}, p99 {ms(v['outside_p99'])}")
        self.memory("after-" + key.replace("_", "-"))

    def churn(self):
        rate, secs = self.args.churn_rate, self.args.churn_seconds
        pid = self.proc.pid
        cpu0, m0 = cpu_seconds(pid), mem(pid)
        self.log.poll()
        syncs0 = len(self.log.syncs)
        # The fake API server makes the changes itself (POST churn): a client writing each
        # over HTTP reached only about 40 changes/s under emulation.
        names = sorted(f"{sl['metadata']['namespace']}/{n}" for n, sl in self.slices.items())
        self.api.call("POST", "churn", {"names": names, "rate": rate,
                                        "seconds": secs, "stride": 104729,
                                        "base": EP_BASE + 0x100000})
        while True:
            time.sleep(1)
            st = self.api.call("GET", "churn")
            if not st["running"]:
                break
        posts = st["times"]
        last = posts[-1]
        # The first sync that started after the last write (ts - seconds) covers it. It may
        # well have ended already: look from the write on, not from now.
        s = self.log.sync_after(last, timeout=120, daemon=self.proc)
        while s["ts"] - s["seconds"] < last:
            s = self.log.sync_after(s["ts"], timeout=120, daemon=self.proc)
        catch_up = s["ts"] - last
        cpu1, m1 = cpu_seconds(pid), mem(pid)
        self.log.poll()
        syncs = [x for x in self.log.syncs[syncs0:]]
        # Lag of each write: the end of the first sync that started after it was written (an
        # upper bound: the watch may have delivered it to an earlier sync).
        lags = []
        si = 0
        for p in posts:
            while si < len(syncs) and syncs[si]["ts"] - syncs[si]["seconds"] < p:
                si += 1
            if si < len(syncs):
                lags.append(syncs[si]["ts"] - p)
        third = max(1, len(lags) // 3)
        c = {"rate_asked": rate, "rate_done": len(posts) / secs, "seconds": secs,
             "cpu_s": cpu1 - cpu0, "syncs": len(syncs), "catch_up_s": catch_up,
             "lag_first_third_p50": pct(lags[:third], 50),
             "lag_last_third_p50": pct(lags[-third:], 50), "lag_p99": pct(lags, 99),
             "rss_drift": m1["VmRSS"] - m0["VmRSS"], "rss_end": m1["VmRSS"]}
        self.result["churn"] = c
        say(f"  churn: {len(posts)} writes in {secs}s ({c['rate_done']:.1f}/s), daemon CPU "
            f"{c['cpu_s']:.2f}s, {len(syncs)} syncs; lag p50 first third "
            f"{ms(c['lag_first_third_p50'])}, last third {ms(c['lag_last_third_p50'])}, p99 "
            f"{ms(c['lag_p99'])}; caught up {catch_up * 1e3:.0f} ms after the last write; "
            f"RSS drift {c['rss_drift'] / 2**20:+.2f} MiB")

    def restart(self):
        self.drain()
        if self.args.profile:
            # An extra restart under perf, before the measured one: where the lists, the
            # kernel read and the first sync spend CPU.
            self.stop_daemon()
            self.profiled_start("restart")
            self.drain()
        self.stop_daemon()
        api_cpu0 = cpu_seconds(self.api.proc.pid)
        t0 = self.start_daemon()
        s = self.log.sync_after(t0, timeout=self.args.timeout, daemon=self.proc)
        # CPU by thread until ready (read a little after it: the log is polled every 50 ms).
        live = thread_cpu(self.proc.pid)
        live["(threads that ended: the kernel read)"] = max(
            0.0, cpu_seconds(self.proc.pid) - sum(live.values()))
        cpu = {k: round(v, 2) for k, v in sorted(live.items())}
        api_cpu = cpu_seconds(self.api.proc.pid) - api_cpu0
        w = self.writes()
        lists = [e["ts"] - t0 for e in self.log.lists]
        self.result["restart"] = {"ready_s": s["ts"] - t0, "sync_s": s["seconds"],
                                  "lists_s": max(lists) if lists else None,
                                  "writes": sum(w.values()), "by_kind": w,
                                  "cpu_by_thread": cpu, "api_server_cpu_s": api_cpu}
        say(f"  restart: ready after {s['ts'] - t0:.3f}s (API lists after "
            f"{self.result['restart']['lists_s']}s, sync {s['seconds']:.3f}s), kernel writes "
            f"{sum(w.values()):.0f} {fmt_writes(w)}")
        say(f"  restart CPU seconds by daemon thread {cpu}; fake API server {api_cpu:.2f}")
        self.memory("restart")

    def profiled_start(self, what):
        """Starts the daemon with perf attached (as soon as it runs) until its first complete
        sync, and reports the profile; its time is not used in the table."""
        t0 = self.start_daemon()
        time.sleep(0.05)
        p, data = self.profile(what)
        s = self.log.sync_after(t0, timeout=self.args.timeout, daemon=self.proc)
        say(f"  (profiled {what.replace('-', ' ')}: {s['ts'] - t0:.3f}s, not used in the table)")
        self.profile_report(what, p, data)

    def profile(self, what):
        """perf record of the daemon (all threads) until profile_report() stops it
        (cpu-clock: TCG has no PMU)."""
        data = os.path.join(self.dir, f"perf-{what}.data")
        p = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "499", "-g", "-o", data,
                              "-p", str(self.proc.pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return p, data

    def profile_report(self, what, p, data):
        """Self time by symbol, then inclusive time (callers included) of the big callers."""
        p.send_signal(signal.SIGINT)
        p.wait()
        say(f"PROFILE {what} begin")
        for title, opts, limit in (("self", ["--no-children", "--sort", "dso,symbol"], "1.5"),
                                   ("inclusive", ["--children", "--sort", "symbol"], "5")):
            r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--percent-limit", limit,
                                "-g", "none"] + opts,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            lines = [" ".join(l.split())[:150] for l in r.stdout.splitlines()
                     if l.strip() and not l.startswith("#")]
            say(f"  -- {title} --")
            for l in lines[:30]:
                say("  " + l)
        say(f"PROFILE {what} end")

    def main(self):
        say(f"== {self.n} Services x {self.e} endpoints (kernel {os.uname().release}, "
            f"{os.cpu_count()} vCPUs, software emulation)")
        nodenet.setup_node()
        self.objects()
        self.reference_writers()
        self.api = cluster.FakeApi(self.dir, extra_args=["--seed", self.seed,
                                                          "--bookmark-interval", "5"])
        if self.args.profile:
            # perf attaches to a running process: start the daemon, then profile it until its
            # first complete sync (the lists and the sync); then `--cleanup` removes everything
            # it programmed, so that the measured cold start below starts from nothing.
            self.profiled_start("cold-start")
            self.stop_daemon()
            sh(self.args.kube_ipvs, "--cleanup")
            if table_sum()[1] != 0 or "kube-ipvs0" in sh("ip", "link"):
                raise RuntimeError("kube-ipvs --cleanup left IPVS services or kube-ipvs0")
            # IPVS keeps deleted real servers on a per-namespace trash list for up to 120 s
            # (IP_VS_DEST_TRASH_PERIOD), and every real server add scans that list for one to
            # reuse: re-adding 100,000 right after deleting them is quadratic (a 10,000 x 10
            # cold start took 167 s instead of 18 s). Let the trash expire first.
            say("  waiting 125 s for IPVS to free the deleted real servers")
            time.sleep(125)
        self.cold_start()
        self.read_back()
        self.incremental()
        self.incremental_without_estimation()
        if self.args.profile:
            self.log.poll()
            n = len(self.log.verifies)
            p, data = self.profile("verify")
            while len(self.log.verifies) == n:
                time.sleep(0.2)
                self.log.poll()
            self.profile_report("verify", p, data)
        try:
            self.verification()
            self.verification_without_estimation()
            if self.args.churn_seconds > 0:
                self.churn()
            self.memory("steady")
            self.restart()
        except Exception as e:  # noqa: BLE001 - report what was measured so far
            say(f"  PHASE FAILED: {e!r}")
            self.result["failed_phase"] = repr(e)
            self.result.setdefault("memory", {}).setdefault("steady", mem(self.proc.pid))
            say("RESULT " + json.dumps(self.result))
            raise
        self.log.poll()
        self.result["errors"] = len(self.log.errors)
        for e in self.log.errors[:5]:
            say(f"  daemon error: {e}")
        self.stop_daemon()
        self.api.stop()
        say("RESULT " + json.dumps(self.result))


def urllib_get(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read().decode()


def diff(after, before):
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)
            if after.get(k, 0) != before.get(k, 0)}


def per_change(d, k):
    return {key: v / k for key, v in sorted(d.items())}


def fmt_writes(w):
    return "{" + ", ".join(f"{k} {v:g}" for k, v in sorted(w.items())) + "}"


def ms(x):
    return "-" if x is None else f"{x * 1e3:.1f} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, required=True)
    ap.add_argument("--endpoints", type=int, required=True)
    ap.add_argument("--kube-ipvs", required=True)
    ap.add_argument("--bench-ipvs", required=True)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--churn-seconds", type=float, default=0)
    ap.add_argument("--churn-rate", type=float, default=100)
    ap.add_argument("--vip-binding", default="address", choices=("address", "route"))
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800, help="cold start limit")
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.environ.get("KUBE_IPVS_IN_GUEST"):
        sys.exit("guest_run.py runs inside the test guest only (see run_scale.py)")
    Run(args).main()


if __name__ == "__main__":
    main()
