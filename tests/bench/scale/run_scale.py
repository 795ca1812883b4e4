#!/usr/bin/env python3
"""The kube-ipvs scale benchmark (issues 5 and 8): one command, run on the host.

    python3 tests/bench/scale/run_scale.py --quick   # CI: 100 and 1,000 Services, a few minutes
    python3 tests/bench/scale/run_scale.py --full    # 100 .. 44,000 Services x 1 and 10 endpoints
    options: --build DIR (default build-perf, else build), --out DIR, --configs 1000x10,10000x10,
             --changes K, --churn-seconds S, --profile, --vip-binding address|route

Each configuration (Services x endpoints) runs in its own boot of the test guest
(tests/vm/guest.py) through guest_run.py, which compares the daemon with `ipvsadm -R` and a
minimal batched netlink writer in that same boot. This side collects the `RESULT` lines and writes
OUT/results.md (the table), OUT/results.json and OUT/latency.png (event-to-kernel latency against
Service count), then prints TAP: one line per target, so the result is visible at a glance.
Absolute times come from software emulation (TCG): only the ratios measured in one boot count.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
GUEST = os.path.join(ROOT, "tests", "vm", "guest.py")

QUICK = {"configs": [(100, 10), (1000, 10)], "changes": 20, "churn": (1000, 10, 10)}
FULL = {"configs": [(100, 10), (1000, 1), (1000, 10), (10000, 1), (10000, 10), (44000, 1),
                    (44000, 10)], "changes": 200, "churn": (10000, 10, 60)}


def note(msg):
    print("# " + msg, flush=True)


# ---- running the guest ------------------------------------------------------------------

def run_config(args, n, e, churn_s):
    mem = 2048 if n * (e + 1) <= 120_000 else 6144
    timeout = 600 + n * (e + 1) * 0.01
    cmd = [sys.executable, GUEST, "run", "--timeout", str(int(timeout)), "--memory", str(mem),
           "--cpus", "2", "--", sys.executable, os.path.join(HERE, "guest_run.py"),
           "--services", str(n), "--endpoints", str(e), "--kube-ipvs", args.kube_ipvs,
           "--bench-ipvs", args.bench_ipvs, "--changes", str(args.changes),
           "--churn-seconds", str(churn_s), "--vip-binding", args.vip_binding]
    if args.profile:
        cmd.append("--profile")
    note(f"{n} x {e}: {' '.join(cmd[-16:])}")
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result, profile = None, []
    for line in p.stdout:
        line = line.rstrip("\n")
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
            continue
        if line.startswith("PROFILE ") or (profile and not profile[-1].endswith(" end")):
            profile.append(line)
        note(line)
    rc = p.wait()
    note(f"{n} x {e}: guest exited {rc} after {time.monotonic() - t0:.0f}s")
    if result is not None:
        result["profile"] = profile
    return result


# ---- the table ----------------------------------------------------------------------------

def f3(x):
    return "-" if x is None else f"{x:.3f}"


def fms(x):
    return "-" if x is None else f"{x * 1e3:.0f}"


def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}x"


def fit_memory(results):
    """RSS = base + per_service * N + per_endpoint * N * E, least squares over the configs."""
    pts = [(r["services"], r["services"] * r["endpoints"], r["memory"]["steady"]["VmRSS"])
           for r in results if "memory" in r and "steady" in r["memory"]]
    if len({(a, b) for a, b, _ in pts}) < 3:
        return None
    # Normal equations for 3 unknowns.
    m = [[0.0] * 4 for _ in range(3)]
    for a, b, y in pts:
        row = (1.0, float(a), float(b))
        for i in range(3):
            for j in range(3):
                m[i][j] += row[i] * row[j]
            m[i][3] += row[i] * y
    for c in range(3):
        piv = max(range(c, 3), key=lambda r: abs(m[r][c]))
        m[c], m[piv] = m[piv], m[c]
        if abs(m[c][c]) < 1e-9:
            return None
        for r in range(3):
            if r != c:
                f = m[r][c] / m[c][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[c])]
    return [m[i][3] / m[i][i] for i in range(3)]


def wfmt(w):
    return ", ".join(f"{k} {v:g}" for k, v in sorted(w.items())) or "none"


def markdown(results, mode, binding, wall):
    out = [f"Scale benchmark ({mode} mode, `--ipvs-vip-binding={binding}`), test guest under "
           f"software emulation (TCG, 2 vCPUs) on a shared 2-core host: absolute times are slow "
           f"and noisy; ratios compare methods measured in the same guest boot. Suite wall time "
           f"{wall:.0f} s.", ""]
    out += ["**Cold start** (daemon start to its first complete sync: API lists, IPVS, "
            "kube-ipvs0, ipsets, iptables) vs the same IPVS table written by `ipvsadm -R` and by "
            "a minimal batched netlink writer (`bench-ipvs restore`), same boot:", "",
            "| Services x endpoints | IPVS requests | daemon s | minimal writer s | "
            "`ipvsadm -R` s | daemon / writer (target <= 2) | `ipvsadm -R` / daemon "
            "(target >= 3) | same table |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        out.append(f"| {r['services']:,} x {r['endpoints']} | {r['ipvs_ops']:,} | "
                   f"{f3(r['cold_start_s'])} | {f3(r['writer_s'])} | "
                   f"{f3(r['ipvsadm_restore_s'])} | {ratio(r['cold_start_s'], r['writer_s'])} | "
                   f"{ratio(r['ipvsadm_restore_s'], r['cold_start_s'])} | "
                   f"{'yes' if r.get('same_table') else 'NO'} |")
    phases = [r for r in results if r.get("cold_phases")]
    if phases:
        out += ["", "Where the daemon's cold-start programming time went (seconds, IPv4 proxier; "
                "the early steps taken while the lists arrived included):", "",
                "| Services x endpoints | lists done s | " +
                " | ".join(sorted(phases[0]["cold_phases"])) + " |",
                "| --- | --- |" + " --- |" * len(phases[0]["cold_phases"])]
        for r in phases:
            out.append(f"| {r['services']:,} x {r['endpoints']} | {f3(r.get('cold_lists_s'))} | " +
                       " | ".join(f3(v) for _, v in sorted(r["cold_phases"].items())) + " |")
    out += ["", "**Incremental** (API write to the end of the sync that programmed it, ms, "
            f"p50 / p99 over {results[0]['incremental']['add']['n']} changes each) and kernel "
            "writes per change:", "",
            "| Services x endpoints | add Service | change one endpoint | delete Service | "
            "writes: add | writes: endpoint change | writes: delete |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        i = r["incremental"]
        cell = lambda k: f"{fms(i[k]['p50'])} / {fms(i[k]['p99'])}"  # noqa: E731
        out.append(f"| {r['services']:,} x {r['endpoints']} | {cell('add')} | "
                   f"{cell('endpoint')} | {cell('delete')} | {wfmt(i['add']['writes'])} | "
                   f"{wfmt(i['endpoint']['writes'])} | {wfmt(i['delete']['writes'])} |")
    quiet = [r for r in results if "incremental_no_estimation" in r]
    if quiet:
        out += ["", "The same changes again with the kernel's rate estimation off "
                "(`net.ipv4.vs.run_estimation=0`; before 6.2 one timer estimates every virtual "
                "and real server's rates every 2 s and holds a CPU while it does), ms, p50 / p99:",
                "", "| Services x endpoints | add Service | change one endpoint | delete Service |",
                "| --- | --- | --- | --- |"]
        for r in quiet:
            i = r["incremental_no_estimation"]
            out.append(f"| {r['services']:,} x {r['endpoints']} | "
                       + " | ".join(f"{fms(i[k]['p50'])} / {fms(i[k]['p99'])}"
                                    for k in ("add", "endpoint", "delete")) + " |")
    out += ["", "**Verification pass** (syncPeriod; read on its own thread, compared on the io "
            "thread) vs `ipvsadm -S -n` and `bench-ipvs walk` of the same table; endpoint-change "
            "latency (ms, p50 / p99) for changes that overlapped a pass vs the others; "
            "**restart** with everything programmed; **memory** (VmHWM peak / VmRSS steady):", "",
            "| Services x endpoints | pass s (read + compare) | `ipvsadm -S -n` s | "
            "pass / `ipvsadm -Sn` (target <= 1.5) | walk s | latency during pass | "
            "latency otherwise | restart: ready s | read back: API lists (curl) + walk, "
            "together s | restart: kernel writes | peak MiB | "
            "steady MiB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
            "| --- |"]
    for r in results:
        v = r.get("verify") or {}
        rs = r.get("restart") or {}
        m = r.get("memory", {})
        peak = max(x["VmHWM"] for x in m.values()) if m else None
        steady = m.get("steady", {}).get("VmRSS")
        out.append(
            f"| {r['services']:,} x {r['endpoints']} | "
            f"{f3(v.get('total_s'))} ({f3(v.get('read_s'))} + {f3(v.get('compare_s'))}) | "
            f"{f3(r.get('ipvsadm_save_s'))} | {ratio(v.get('total_s'), r.get('ipvsadm_save_s'))} "
            f"| {f3(r.get('walk_s'))} | {fms(v.get('during_p50'))} / {fms(v.get('during_p99'))} "
            f"(n={v.get('during_n', 0)}) | {fms(v.get('outside_p50'))} / "
            f"{fms(v.get('outside_p99'))} | {f3(rs.get('ready_s'))} | "
            f"{f3(r.get('read_all_s'))} ({f3(r.get('api_fetch_s'))} alone) | "
            f"{'-' if rs.get('writes') is None else format(rs['writes'], 'g')} | "
            f"{'-' if peak is None else f'{peak / 2**20:.1f}'} | "
            f"{'-' if steady is None else f'{steady / 2**20:.1f}'} |")
    quiet = [r for r in results if r.get("verify_no_estimation")]
    if quiet:
        out += ["", "Endpoint-change latency around a verification pass again with the kernel's "
                "rate estimation off, which leaves what the pass itself costs (ms, p50 / p99):",
                "", "| Services x endpoints | pass s (read + compare) | latency during pass | "
                "latency otherwise |", "| --- | --- | --- | --- |"]
        for r in quiet:
            v = r["verify_no_estimation"]
            out.append(f"| {r['services']:,} x {r['endpoints']} | {f3(v.get('total_s'))} "
                       f"({f3(v.get('read_s'))} + {f3(v.get('compare_s'))}) | "
                       f"{fms(v.get('during_p50'))} / {fms(v.get('during_p99'))} "
                       f"(n={v.get('during_n', 0)}) | {fms(v.get('outside_p50'))} / "
                       f"{fms(v.get('outside_p99'))} (n={v.get('outside_n', 0)}) |")
    fit = fit_memory(results)
    if fit:
        out += ["", f"Memory fit over the configurations (steady RSS = base + a·Services + "
                f"b·endpoints): base {fit[0] / 2**20:.1f} MiB, {fit[1]:.0f} B per Service, "
                f"{fit[2]:.0f} B per endpoint."]
    churn = [r for r in results if r.get("churn")]
    for r in churn:
        c = r["churn"]
        out += ["", f"**Churn** at {r['services']:,} x {r['endpoints']}: {c['rate_asked']:g} "
                f"endpoint changes/s asked, {c['rate_done']:.1f}/s written for {c['seconds']:g} s;"
                f" daemon CPU {c['cpu_s']:.2f} s ({c['cpu_s'] / c['seconds']:.2f} cores); "
                f"{c['syncs']} syncs; lag p50 first third {fms(c['lag_first_third_p50'])} ms, "
                f"last third {fms(c['lag_last_third_p50'])} ms, p99 {fms(c['lag_p99'])} ms; "
                f"caught up {fms(c['catch_up_s'])} ms after the last write; RSS drift "
                f"{c['rss_drift'] / 2**20:+.2f} MiB."]
    return "\n".join(out) + "\n"


# ---- the plot: a PNG from the standard library --------------------------------------------

FONT = {  # 3x5 digits and a few letters, rows top to bottom, 3 bits each
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), "k": (4, 5, 6, 5, 5), "m": (0, 7, 7, 5, 5),
    "s": (0, 3, 6, 1, 6), ".": (0, 0, 0, 0, 2), " ": (0, 0, 0, 0, 0), "x": (0, 5, 2, 5, 5),
    "p": (0, 6, 5, 6, 4), "a": (0, 6, 1, 7, 7), "d": (1, 1, 7, 5, 7), "e": (0, 7, 7, 4, 7),
    "l": (2, 2, 2, 2, 2), "t": (2, 7, 2, 2, 3), "n": (0, 6, 5, 5, 5), "c": (0, 7, 4, 4, 7),
    "h": (4, 4, 7, 5, 5), "g": (7, 5, 7, 1, 6), "i": (2, 0, 2, 2, 2), "r": (0, 7, 4, 4, 4),
    "v": (0, 5, 5, 5, 2), "S": (7, 4, 7, 1, 7), "/": (1, 1, 2, 4, 4), "-": (0, 0, 7, 0, 0),
    "o": (0, 7, 5, 5, 7), "u": (0, 5, 5, 5, 7), "b": (4, 4, 7, 5, 7), "w": (0, 5, 5, 7, 7),
    "y": (5, 5, 7, 1, 7), "f": (3, 4, 6, 4, 4),
}


class Canvas:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def dot(self, x, y, c):
        x, y = int(round(x)), int(round(y))
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i:i + 3] = bytes(c)

    def line(self, x0, y0, x1, y1, c, width=1):
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for s in range(steps + 1):
            t = s / steps
            x, y = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            for dx in range(-(width // 2), width - width // 2):
                for dy in range(-(width // 2), width - width // 2):
                    self.dot(x + dx, y + dy, c)

    def rect(self, x0, y0, x1, y1, c):
        for x in range(int(x0), int(x1) + 1):
            for y in range(int(y0), int(y1) + 1):
                self.dot(x, y, c)

    def text(self, x, y, s, c=(0, 0, 0), scale=2):
        for ch in s:
            rows = FONT.get(ch, FONT[" "])
            for ry, bits in enumerate(rows):
                for rx in range(3):
                    if bits & (4 >> rx):
                        self.rect(x + rx * scale, y + ry * scale, x + rx * scale + scale - 1,
                                  y + ry * scale + scale - 1, c)
            x += 4 * scale

    def png(self, path):
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3])
                       for y in range(self.h))

        def chunk(kind, data):
            return (struct.pack(">I", len(data)) + kind + data +
                    struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" +
                    chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)) +
                    chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def plot(results, path):
    """Event-to-kernel latency (p50 solid, p99 thin) against Service count, log-x, one colour per
    change kind and endpoint count."""
    c = Canvas(760, 460)
    left, right, top, bottom = 70, 740, 30, 400
    series = {}
    colours = {"add": (31, 119, 180), "endpoint": (214, 39, 40), "delete": (44, 160, 44)}
    for r in results:
        for kind in ("add", "endpoint", "delete"):
            i = r["incremental"][kind]
            series.setdefault((kind, r["endpoints"]), []).append(
                (r["services"], i["p50"] * 1e3, i["p99"] * 1e3))
    ns = sorted({r["services"] for r in results})
    ymax = max(p99 for s in series.values() for _, _, p99 in s) * 1.1
    step = 10 ** math.floor(math.log10(ymax / 2)) if ymax > 0 else 1
    ymax = math.ceil(ymax / step) * step
    xmin, xmax = math.log10(ns[0]) - 0.15, math.log10(ns[-1]) + 0.15

    def X(n):
        return left + (math.log10(n) - xmin) / (xmax - xmin) * (right - left)

    def Y(v):
        return bottom - v / ymax * (bottom - top)
    c.line(left, bottom, right, bottom, (0, 0, 0))
    c.line(left, bottom, left, top, (0, 0, 0))
    y = 0.0
    while y <= ymax + 1e-9:
        c.line(left, Y(y), right, Y(y), (225, 225, 225))
        c.line(left - 5, Y(y), left, Y(y), (0, 0, 0))
        c.text(4, Y(y) - 5, f"{y:g}")
        y += step
    for n in ns:
        c.line(X(n), bottom, X(n), bottom + 5, (0, 0, 0))
        label = f"{n // 1000}k" if n >= 1000 else str(n)
        c.text(X(n) - len(label) * 4, bottom + 10, label)
    c.text(left, 8, "latency ms vs services  p50 thick  p99 thin")
    c.text(right - 200, bottom + 34, "services")
    ly = top + 10
    for (kind, e), pts in sorted(series.items()):
        col = colours[kind]
        if e == 1:
            col = tuple(min(255, v + 90) for v in col)
        pts.sort()
        for (n0, a0, b0), (n1, a1, b1) in zip(pts, pts[1:]):
            c.line(X(n0), Y(a0), X(n1), Y(a1), col, width=3)
            c.line(X(n0), Y(b0), X(n1), Y(b1), col, width=1)
        for n, a, b in pts:
            c.rect(X(n) - 3, Y(a) - 3, X(n) + 3, Y(a) + 3, col)
            c.rect(X(n) - 2, Y(b) - 2, X(n) + 2, Y(b) + 2, col)
        c.rect(right - 190, ly, right - 170, ly + 6, col)
        c.text(right - 164, ly - 2, f"{kind} {e} ep")
        ly += 16
    c.png(path)


# ---- targets as TAP -------------------------------------------------------------------------

def checks(results):
    """[(ok, what, timing)]: timing targets are ratios of times measured under emulation;
    the rest (the table, the writes, memory) are exact."""
    out = []

    def check(ok, what, timing=False):
        out.append((bool(ok), what, timing))
    by = {(r["services"], r["endpoints"]): r for r in results}
    for r in results:
        tag = f"{r['services']} x {r['endpoints']}"
        check("failed_phase" not in r,
              f"{tag}: every phase completed ({r.get('failed_phase', 'none failed')})")
        check(r.get("same_table"), f"{tag}: the daemon programmed the reference IPVS table")
        check(r["cold_start_s"] <= 2 * r["writer_s"],
              f"{tag}: cold start within 2x the minimal writer "
              f"({r['cold_start_s'] / r['writer_s']:.2f}x)", timing=True)
        check(r["ipvsadm_restore_s"] >= 3 * r["cold_start_s"],
              f"{tag}: cold start at least 3x faster than ipvsadm -R "
              f"({r['ipvsadm_restore_s'] / r['cold_start_s']:.2f}x)", timing=True)
        e = r["endpoints"]
        inc = r["incremental"]
        addr = "address" if r.get("binding", "address") == "address" else "route"
        # ipsets: KUBE-CLUSTER-IP and KUBE-IPVS-IPS (the KUBE-IPVS-FILTER set) per ClusterIP.
        want = {"add": {"ipvs/add-service": 1, "ipvs/add-dest": e, f"{addr}/add": 1,
                        "ipset/add": 2},
                "delete": {"ipvs/delete-service": 1, f"{addr}/del": 1, "ipset/del": 2}}
        for kind, w in want.items():
            got = inc[kind]["writes"]
            check(got == w, f"{tag}: {kind} Service writes exactly {wfmt(w)} (got {wfmt(got)})")
        got = inc["endpoint"]["writes"]
        # A replaced TCP endpoint: the new one added, the old one set to weight 0 and deleted by
        # the reaper once drained (which may land after the measurement).
        ok = (got.get("ipvs/add-dest") == 1 and got.get("ipvs/update-dest") == 1 and
              got.get("ipvs/delete-dest", 0) <= 1 and
              set(got) <= {"ipvs/add-dest", "ipvs/update-dest", "ipvs/delete-dest"})
        check(ok, f"{tag}: endpoint change writes only the changed real servers ({wfmt(got)})")
        rs = r.get("restart") or {}
        check(rs.get("writes") == 0, f"{tag}: restart with everything programmed writes nothing "
              f"({rs.get('writes')})")
        if rs.get("ready_s") is not None and r.get("read_all_s"):
            # The cost of reading the state back: the API lists, fetched by a plain client
            # (no decoding), and the kernel walk, side by side as the daemon does them.
            check(rs["ready_s"] <= r["read_all_s"],
                  f"{tag}: restart ready within the time to read the state back (API lists by "
                  f"curl + bench-ipvs walk, together) ({rs['ready_s'] / r['read_all_s']:.2f}x)",
                  timing=True)
        v = r.get("verify")
        if v:
            check(v["total_s"] <= 1.5 * r["ipvsadm_save_s"],
                  f"{tag}: verification pass within 1.5x ipvsadm -S -n "
                  f"({v['total_s'] / r['ipvsadm_save_s']:.2f}x)", timing=True)
        else:
            check(False, f"{tag}: a verification pass was observed")
    for e in sorted({r["endpoints"] for r in results}):
        sizes = sorted(n for n, ee in by if ee == e)
        if len(sizes) < 2:
            continue
        lo, hi = by[(sizes[0], e)], by[(sizes[-1], e)]
        for kind in ("add", "endpoint", "delete"):
            for p in ("p50", "p99"):
                a, b = lo["incremental"][kind][p], hi["incremental"][kind][p]
                check(b <= 1.5 * a, f"{kind} latency {p} at {sizes[-1]} x {e} within 1.5x of "
                      f"{sizes[0]} x {e} ({b / a:.2f}x)", timing=True)
                q = "incremental_no_estimation"
                if q in lo and q in hi:
                    a, b = lo[q][kind][p], hi[q][kind][p]
                    check(b <= 1.5 * a, f"{kind} latency {p} at {sizes[-1]} x {e} within 1.5x "
                          f"of {sizes[0]} x {e} with net.ipv4.vs.run_estimation=0 "
                          f"({b / a:.2f}x)", timing=True)
        v = hi.get("verify")
        if v and v.get("during_p99") is not None:
            a = lo["incremental"]["endpoint"]["p99"]
            check(v["during_p99"] <= 1.5 * a, f"endpoint latency p99 during a verification pass "
                  f"at {sizes[-1]} x {e} within 1.5x of {sizes[0]} x {e} outside one "
                  f"({v['during_p99'] / a:.2f}x)", timing=True)
        q = "incremental_no_estimation"
        v = hi.get("verify_no_estimation")
        if v and v.get("during_p99") is not None and q in lo:
            a = lo[q]["endpoint"]["p99"]
            check(v["during_p99"] <= 1.5 * a, f"endpoint latency p99 during a verification pass "
                  f"at {sizes[-1]} x {e} within 1.5x of {sizes[0]} x {e} outside one, with "
                  f"net.ipv4.vs.run_estimation=0 ({v['during_p99'] / a:.2f}x)", timing=True)
    for r in results:
        if r["services"] * r["endpoints"] >= 440_000:
            peak = max(x["VmHWM"] for x in r["memory"].values())
            check(peak <= 100 * 2**20, f"{r['services']} x {r['endpoints']}: peak RSS at most "
                  f"100 MiB ({peak / 2**20:.1f} MiB)")
        c = r.get("churn")
        if c:
            check(c["lag_last_third_p50"] <= 1.5 * c["lag_first_third_p50"] + 0.05,
                  f"churn at {r['services']} x {r['endpoints']}: no growing lag (p50 "
                  f"{fms(c['lag_first_third_p50'])} ms first third, "
                  f"{fms(c['lag_last_third_p50'])} ms last third)", timing=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CI mode (default)")
    mode.add_argument("--full", action="store_true")
    ap.add_argument("--build", help="build directory (default build-perf, else build)")
    ap.add_argument("--kube-ipvs")
    ap.add_argument("--bench-ipvs")
    ap.add_argument("--out", help="output directory (default BUILD/scale-bench)")
    ap.add_argument("--configs", help="e.g. 1000x10,10000x10 (overrides the mode's list)")
    ap.add_argument("--changes", type=int)
    ap.add_argument("--churn-seconds", type=float, help="churn duration at the churn config")
    ap.add_argument("--vip-binding", default="address", choices=("address", "route"))
    ap.add_argument("--profile", action="store_true",
                    help="perf profiles of a cold start and a verification pass (slower)")
    args = ap.parse_args()
    plan = FULL if args.full else QUICK
    build = args.build or next((os.path.join(ROOT, d) for d in ("build-perf", "build")
                                if os.path.exists(os.path.join(ROOT, d, "kube-ipvs"))), None)
    args.kube_ipvs = os.path.abspath(args.kube_ipvs or os.path.join(build or "", "kube-ipvs"))
    args.bench_ipvs = os.path.abspath(args.bench_ipvs or
                                      os.path.join(build or "", "tests/bench/bench-ipvs"))
    for b in (args.kube_ipvs, args.bench_ipvs):
        if not os.access(b, os.X_OK):
            sys.exit(f"run_scale.py: {b} is not built")
    out_dir = os.path.abspath(args.out or os.path.join(os.path.dirname(args.kube_ipvs),
                                                       "scale-bench"))
    os.makedirs(out_dir, exist_ok=True)
    configs = plan["configs"]
    if args.configs:
        configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    args.changes = args.changes or plan["changes"]
    cn, ce, cs = plan["churn"]
    if args.churn_seconds is not None:
        cs = args.churn_seconds
    if (cn, ce) not in configs:  # churn at the largest configuration asked for instead
        cn, ce = max(configs, key=lambda c: (c[1], c[0]))
    t0 = time.monotonic()
    results = []
    for n, e in configs:
        r = run_config(args, n, e, cs if (n, e) == (cn, ce) else 0)
        if r is None:
            note(f"{n} x {e}: NO RESULT (see the guest output above)")
            continue
        r["binding"] = args.vip_binding
        results.append(r)
    wall = time.monotonic() - t0
    tap = []
    if results:
        md = markdown(results, "full" if args.full else "quick", args.vip_binding, wall)
        profiles = [l for r in results for l in r.get("profile", [])]
        with open(os.path.join(out_dir, "results.md"), "w") as f:
            f.write(md)
            if profiles:
                f.write("\n```\n" + "\n".join(profiles) + "\n```\n")
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        plot(results, os.path.join(out_dir, "latency.png"))
        for line in md.splitlines():
            note(line)
        note(f"wrote {out_dir}/results.md, results.json, latency.png")
        tap = checks(results)
    missing = len(configs) - len(results)
    print(f"1..{len(tap) + missing}")
    # A missed timing target is reported as a TAP TODO (an expected failure): it is listed and
    # counted apart, and does not fail the run, since times under emulation vary with the
    # host's load. Everything else (the table, the writes, memory) must hold.
    for i, (ok, what, timing) in enumerate(tap, 1):
        todo = " # TODO timing target missed under emulation (see README)" if timing and not ok \
            else ""
        print(f"{'ok' if ok else 'not ok'} {i} - {what}{todo}")
    for j in range(missing):
        print(f"not ok {len(tap) + j + 1} - a configuration produced no result")
    sys.exit(0 if all(ok or timing for ok, _, timing in tap) and not missing else 1)


if __name__ == "__main__":
    main()
