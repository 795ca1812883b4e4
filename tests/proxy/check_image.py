#!/usr/bin/env python3
"""The image's runtime stage installs exactly what the binary links against (plus the tools
it execs): every shared library `ldd kube-ipvs` resolves comes from a listed package (or the
base image, or a dependency of a listed package), and every listed library package is used.

    check_image.py DOCKERFILE KUBE_IPVS      (prints TAP)
"""
import re
import subprocess
import sys

BASE = {"libc6", "libgcc-s1", "libstdc++6"}  # in debian:bookworm-slim already
TOOLS = {"iptables"}  # exec'd (iptables-restore/-save), not linked
# The sanitizer runtimes of an ASan/UBSan test build; the image is built without sanitizers.
SANITIZERS = re.compile(r"^lib(asan|ubsan|lsan|tsan)\d*$")


def runtime_packages(dockerfile):
    text = open(dockerfile).read().replace("\\\n", " ")
    stages = re.split(r"(?m)^FROM ", text)
    last = stages[-1]
    assert last.startswith("debian:bookworm-slim"), "the runtime stage is not bookworm-slim"
    pkgs = set()
    for m in re.finditer(r"apt-get install ([^&]*)", last):
        pkgs |= {w for w in m.group(1).split() if not w.startswith("-")}
    return pkgs


def linked_packages(binary):
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    pkgs = {}
    for line in out.splitlines():
        m = re.search(r"=> (/\S+)", line) or re.match(r"\s*(/\S+)", line)
        if not m:
            continue
        path = m.group(1)
        owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        if owner.returncode != 0:
            # /lib/x86_64-linux-gnu vs /usr/lib/...: merged /usr; ask for the other spelling.
            alt = path.replace("/usr/lib/", "/lib/") if path.startswith("/usr/") else "/usr" + path
            owner = subprocess.run(["dpkg", "-S", alt], capture_output=True, text=True)
        if owner.returncode != 0:
            raise RuntimeError(f"no package owns {path}")
        pkgs[path] = owner.stdout.split(":")[0].strip()
    return pkgs


def depends_closure(pkgs):
    seen = set()
    todo = list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        r = subprocess.run(["dpkg-query", "-W", "-f=${Depends}", p], capture_output=True, text=True)
        for alt in r.stdout.split(","):
            name = alt.strip().split(" ")[0].split(":")[0]
            if name:
                todo.append(name)
    return seen


def main():
    dockerfile, binary = sys.argv[1], sys.argv[2]
    listed = runtime_packages(dockerfile)
    linked = linked_packages(binary)
    allowed = depends_closure(listed | BASE)
    results = []
    missing = sorted({f"{pkg} ({path})" for path, pkg in linked.items()
                      if pkg not in allowed and not SANITIZERS.match(pkg)})
    results.append((not missing, "every linked library comes from the image's packages"
                    + (": missing " + ", ".join(missing) if missing else "")))
    direct = set(linked.values())
    unused = sorted(p for p in listed - TOOLS if p not in direct)
    results.append((not unused, "every listed package is linked or exec'd"
                    + (": unused " + ", ".join(unused) if unused else "")))
    for i, (ok, name) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {name}")
    print(f"1..{len(results)}")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
