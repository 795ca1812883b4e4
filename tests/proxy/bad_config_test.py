#!/usr/bin/env python3
"""Issue 7, scenario 7: bad configuration and flags end the real binary cleanly.

    bad_config_test.py BUILD/kube-ipvs

Each case runs the binary and expects a non-zero exit status that is not a signal (no crash,
no abort), and a one-line message on stderr naming the field. The parse-level messages are
unit-tested (tests/proxy/config_test.cpp); this checks the process: exit path, stderr, and
inputs a unit test does not feed (binary files, directories, huge values, deep YAML).

This runs on the build host, whose kernel must never be programmed: every case passes
--write-config-to, which makes a configuration that wrongly validates exit after writing it,
before any kernel access, and the binary runs in a new network namespace as a second guard.
The first check proves the guard: a valid configuration exits 0 having written the file.
"""
import os
import shutil
import subprocess
import sys
import tempfile

BINARY = os.path.abspath(sys.argv[1])
TMP = tempfile.mkdtemp(prefix="kube-ipvs-badcfg-")
HEADER = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
UNSHARE = shutil.which("unshare")


def file_with(name, data):
    path = os.path.join(TMP, name)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def run(args):
    out = os.path.join(TMP, "written.yaml")
    if os.path.exists(out):
        os.unlink(out)
    argv = [BINARY, "--write-config-to", out] + args
    if UNSHARE and subprocess.run([UNSHARE, "-n", "true"], capture_output=True).returncode == 0:
        argv = [UNSHARE, "-n"] + argv
    try:
        r = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=30)
    except subprocess.TimeoutExpired:
        return None, "", "", False
    return r.returncode, r.stdout, r.stderr, os.path.exists(out)


CASES = [
    # (label, args, text the message must contain)
    ("unknown flag", ["--no-such-flag=1"], "--no-such-flag"),
    ("scheduler", ["--ipvs-scheduler=foo"], "--ipvs-scheduler"),
    ("proxy mode", ["--proxy-mode=nftables"], "--proxy-mode"),
    ("sync period text", ["--ipvs-sync-period=soon"], "--ipvs-sync-period"),
    ("sync period zero", ["--ipvs-sync-period=0s"], "--ipvs-sync-period"),
    ("sync period overflow", ["--ipvs-sync-period=99999999999999999999h"],
     "--ipvs-sync-period"),
    ("min sync above sync", ["--ipvs-min-sync-period=1h", "--ipvs-sync-period=1s"],
     "--ipvs-min-sync-period"),
    ("masquerade bit", ["--iptables-masquerade-bit=99"], "--iptables-masquerade-bit"),
    ("masquerade bit overflow", ["--iptables-masquerade-bit=9999999999999999999999"],
     "--iptables-masquerade-bit"),
    ("burst", ["--kube-api-burst=-"], "--kube-api-burst"),
    ("qps", ["--kube-api-qps=fast"], "--kube-api-qps"),
    ("bind address", ["--bind-address=300.1.1.1"], "--bind-address"),
    ("healthz address", ["--healthz-bind-address=[::1]:70000"], "--healthz-bind-address"),
    ("metrics address", ["--metrics-bind-address=nowhere"], "--metrics-bind-address"),
    ("cluster cidr", ["--cluster-cidr=10.0.0.0/99"], "--cluster-cidr"),
    ("exclude cidrs", ["--ipvs-exclude-cidrs=,,garbage"], "--ipvs-exclude-cidrs"),
    ("nodeport addresses", ["--nodeport-addresses=10.0.0.0/8,primary"],
     "--nodeport-addresses"),
    ("oom score", ["--oom-score-adj=100000"], "--oom-score-adj"),
    ("udp timeout", ["--ipvs-udp-timeout=-1s"], "--ipvs-udp-timeout"),
    ("conntrack", ["--conntrack-max-per-core=lots"], "--conntrack-max-per-core"),
    ("verbosity", ["-v", "loud"], "-v"),
    ("logging format", ["--logging-format=xml"], "--logging-format"),
    ("flag without value", ["--kubeconfig"], "--kubeconfig"),
    ("very long value", ["--ipvs-scheduler=" + "x" * 100000], "--ipvs-scheduler"),
    ("config missing", ["--config=/nonexistent/kube-proxy.yaml"], "/nonexistent/kube-proxy.yaml"),
    ("config is a directory", ["--config=/"], "/: "),
    ("config empty", ["--config=@empty"], "@empty"),
    ("config binary", ["--config=@binary"], "@binary"),
    ("config not a mapping", ["--config=@list"], "@list"),
    ("config bad YAML", ["--config=@broken"], "@broken"),
    ("config wrong kind", ["--config=@kind"], "config.kind"),
    ("config unknown field", ["--config=@unknown"], "config.ipvs.sheduler"),
    ("config scheduler", ["--config=@sched"], "config.ipvs.scheduler"),
    ("config sync period", ["--config=@period"], "config.ipvs.syncPeriod"),
    ("config masquerade bit", ["--config=@bit"], "config.iptables.masqueradeBit"),
    ("config list field", ["--config=@excl"], "config.ipvs.excludeCIDRs"),
    ("config deep nesting", ["--config=@deep"], "@deep"),
    ("config alias bomb", ["--config=@bomb"], "@bomb"),
    ("config huge number", ["--config=@huge"], "config.clientConnection.burst"),
]

FILES = {
    "@empty": "",
    "@binary": bytes(range(256)) * 64,
    "@list": "- a\n- b\n",
    "@broken": HEADER + "ipvs: {syncPeriod: 30s\n",
    "@kind": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: Pod\n",
    "@unknown": HEADER + "mode: ipvs\nipvs:\n  sheduler: rr\n",
    "@sched": HEADER + "mode: ipvs\nipvs:\n  scheduler: fastest\n",
    "@period": HEADER + "mode: ipvs\nipvs:\n  syncPeriod: -3s\n",
    "@bit": HEADER + "mode: ipvs\niptables:\n  masqueradeBit: 32\n",
    "@excl": HEADER + "mode: ipvs\nipvs:\n  excludeCIDRs: [10.0.0.0/8, notacidr]\n",
    "@deep": HEADER + "ipvs: " + "[" * 5000 + "]" * 5000 + "\n",
    "@bomb": HEADER + "a: &a [x, x, x, x, x, x, x, x, x, x]\n" +
             "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, "
                     f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                     f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
                     for i in range(8)),
    "@huge": HEADER + "clientConnection:\n  burst: 1" + "0" * 400 + "\n",
}


def main():
    paths = {k: file_with(k.strip("@") + ".yaml", v) for k, v in FILES.items()}
    n = 0
    failed = 0

    def report(ok, label, detail=""):
        nonlocal n, failed
        n += 1
        failed += 0 if ok else 1
        print(f"{'ok' if ok else 'not ok'} {n} - {label}", flush=True)
        if not ok and detail:
            for line in detail.splitlines()[:20]:
                print(f"#   {line}")

    # The guard first: a valid configuration exits 0 at --write-config-to.
    good = file_with("good.yaml", HEADER + "mode: ipvs\n")
    code, _, err, written = run(["--config=" + good])
    report(code == 0 and written, "guard: a valid configuration stops at --write-config-to",
           f"exit {code}, written {written}: {err}")
    if not (code == 0 and written):
        print(f"1..{n}")
        print("# Bail out! the --write-config-to guard does not hold; not running the cases")
        return 1
    for label, args, want in CASES:
        args = [a.split("=", 1)[0] + "=" + paths[a.split("=", 1)[1]]
                if "=@" in a else a for a in args]
        want = paths.get(want, want)
        code, out, err, written = run(args)
        ok = (code is not None and code > 0 and not written and want in err
              and len(err.strip().splitlines()) <= 3 and "terminate" not in err
              and "Assertion" not in err)
        report(ok, f"{label}: exit {code}, message names {want[:60]!r}",
               f"args {[a[:80] for a in args]}\nexit {code} (negative: killed by a signal), "
               f"wrote config: {written}\nstderr: {err[:2000]}")
    print(f"1..{n}")
    shutil.rmtree(TMP, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
