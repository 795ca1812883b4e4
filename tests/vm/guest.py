#!/usr/bin/env python3
"""Run one command as root inside a QEMU guest that boots Debian's stock kernel.

This machine's kernel has no IPVS and no dummy link type, so everything that touches them runs
here instead. The guest shares the host's / read-only over 9p (it sees the same binaries,
libraries and build tree), has no network card, and gets a writable share for its results.

    guest.py run [--timeout S] [--memory MiB] [--cpus N] [--env K=V ...] -- COMMAND [ARGS...]
    guest.py prepare        # fetch and unpack the kernel, build the initramfs (done on first use)

The exit status is the command's. 124 means the time limit was hit, 125 that the guest failed
before the command could report a status; both print the guest's console log.
"""

import argparse
import fcntl
import hashlib
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("KUBE_IPVS_VM_CACHE", "/var/cache/kube-ipvs-vm")
INITRAMFS_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "crc32c_generic"]
EXIT_TIMEOUT = 124
EXIT_GUEST_FAILED = 125


def log(msg):
    print(f"guest: {msg}", file=sys.stderr, flush=True)


def die(msg, code=EXIT_GUEST_FAILED):
    log(msg)
    sys.exit(code)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def kernel_package():
    """The package linux-image-amd64 currently depends on, e.g. linux-image-6.1.0-56-amd64."""
    try:
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split()[-1]
    return None


def cached_versions():
    if not os.path.isdir(CACHE):
        return []
    return sorted(d for d in os.listdir(CACHE)
                  if os.path.exists(os.path.join(CACHE, d, "ready")))


def module_path(moddir, version, name):
    """Path of module `name` from modules.dep (names there use '-' or '_' interchangeably)."""
    want = name.replace("-", "_")
    with open(os.path.join(moddir, "lib/modules", version, "modules.dep")) as f:
        for line in f:
            rel = line.split(":", 1)[0]
            base = os.path.basename(rel).split(".ko")[0].replace("-", "_")
            if base == want:
                deps = line.split(":", 1)[1].split()
                return rel, deps
    raise KeyError(name)


def build_initramfs(kdir, version):
    staging = tempfile.mkdtemp(prefix="initramfs-", dir=kdir)
    try:
        for d in ("bin", "sbin", "proc", "sys", "dev", "newroot", "lib/modules", "etc"):
            os.makedirs(os.path.join(staging, d), exist_ok=True)
        busybox = shutil.which("busybox") or "/bin/busybox"
        shutil.copy2(busybox, os.path.join(staging, "bin/busybox"))
        for tool in ("modprobe", "insmod", "poweroff"):
            os.symlink("/bin/busybox", os.path.join(staging, "sbin", tool))
        os.symlink("busybox", os.path.join(staging, "bin/sh"))
        shutil.copy2(os.path.join(HERE, "init.sh"), os.path.join(staging, "init"))
        os.chmod(os.path.join(staging, "init"), 0o755)
        # The kernel's module helper: the host's kmod modprobe, run in the host's root with
        # this kernel's module tree (the cache is visible in the guest at the same path).
        helper = os.path.join(staging, "sbin", "kipvs-modprobe")
        with open(helper, "w") as f:
            f.write("#!/bin/busybox sh\n"
                    f"exec /bin/busybox chroot /newroot /sbin/modprobe -d {shlex.quote(kdir)} \"$@\"\n")
        os.chmod(helper, 0o755)
        # Only what is needed to mount 9p lives in the initramfs; the full module tree is
        # bind-mounted from the host's cache once 9p is up.
        src = os.path.join(kdir, "lib/modules", version)
        dst = os.path.join(staging, "lib/modules", version)
        wanted = set()
        todo = list(INITRAMFS_MODULES)
        while todo:
            rel, deps = module_path(kdir, version, todo.pop())
            if rel not in wanted:
                wanted.add(rel)
                todo.extend(os.path.basename(d).split(".ko")[0] for d in deps)
        for rel in wanted:
            os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(os.path.join(src, rel), os.path.join(dst, rel))
        for meta in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if os.path.exists(os.path.join(src, meta)):
                shutil.copy2(os.path.join(src, meta), os.path.join(dst, meta))
        run(["depmod", "-b", staging, version])
        out = os.path.join(kdir, "initramfs.cpio.gz")
        files = subprocess.run(["find", "."], cwd=staging, check=True, capture_output=True).stdout
        cpio = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=staging, input=files,
                              check=True, capture_output=True).stdout
        import gzip
        with gzip.open(out + ".tmp", "wb", compresslevel=1) as f:
            f.write(cpio)
        os.rename(out + ".tmp", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def init_digest():
    """What the initramfs is built from besides the kernel: rebuilt when this changes."""
    h = hashlib.sha256()
    for name in ("init.sh", "guest.py"):
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def ensure_initramfs(kdir, version):
    stamp = os.path.join(kdir, "initramfs.digest")
    want = init_digest()
    try:
        with open(stamp) as f:
            if f.read().strip() == want:
                return
    except FileNotFoundError:
        pass
    build_initramfs(kdir, version)
    with open(stamp, "w") as f:
        f.write(want + "\n")


def prepare():
    """Returns the directory of a ready kernel: vmlinuz, initramfs.cpio.gz, lib/modules."""
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pkg = kernel_package()
        if pkg is None:
            have = cached_versions()
            if not have:
                die("cannot resolve linux-image-amd64 (apt-cache depends) and no kernel is cached "
                    f"in {CACHE}")
            kdir = os.path.join(CACHE, have[-1])
            ensure_initramfs(kdir, kernel_version(kdir))
            return kdir
        version = pkg[len("linux-image-"):]
        kdir = os.path.join(CACHE, version)
        if os.path.exists(os.path.join(kdir, "ready")):
            ensure_initramfs(kdir, version)
            return kdir
        log(f"preparing guest kernel {version} in {kdir}")
        shutil.rmtree(kdir, ignore_errors=True)
        os.makedirs(kdir)
        dl = tempfile.mkdtemp(prefix="download-", dir=CACHE)
        try:
            # As root apt-get warns that the _apt sandbox user cannot reach the folder; harmless.
            run(["apt-get", "download", "-qq", pkg], cwd=dl, stderr=subprocess.DEVNULL)
            debs = [f for f in os.listdir(dl) if f.endswith(".deb")]
            if len(debs) != 1:
                die(f"apt-get download {pkg} produced {debs}")
            run(["dpkg-deb", "-x", os.path.join(dl, debs[0]), kdir])
        finally:
            shutil.rmtree(dl, ignore_errors=True)
        os.rename(os.path.join(kdir, "boot", f"vmlinuz-{version}"), os.path.join(kdir, "vmlinuz"))
        run(["depmod", "-b", kdir, version])
        ensure_initramfs(kdir, version)
        with open(os.path.join(kdir, "version"), "w") as f:
            f.write(version + "\n")
        open(os.path.join(kdir, "ready"), "w").close()
        return kdir


def kernel_version(kdir):
    with open(os.path.join(kdir, "version")) as f:
        return f.read().strip()


class Tail:
    """Copies what the guest appends to a file on the results share to our stdout."""

    def __init__(self, path):
        self.path = path
        self.pos = 0

    def pump(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        if data:
            self.pos += len(data)
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()


def print_console(path):
    print("----- guest console log -----", file=sys.stderr)
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        text = "(no console output)"
    # Firmware output may run into the guest's first line without a newline: keep everything.
    sys.stderr.write(text.replace("\r", ""))
    print("\n----- end of guest console log -----", file=sys.stderr, flush=True)


def command_script(argv, env):
    lines = ["#!/bin/sh", "# written by tests/vm/guest.py"]
    keep = {k: v for k, v in os.environ.items()
            if k in ("PATH", "LANG", "LC_ALL", "TERM", "HOME", "ASAN_OPTIONS", "UBSAN_OPTIONS",
                     "LSAN_OPTIONS", "MESON_TEST_ITERATION")
            or k.startswith("KUBE_IPVS_")}
    keep.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    keep["HOME"] = "/root"
    keep.update(env)
    for k, v in sorted(keep.items()):
        lines.append(f"export {k}={shlex.quote(v)}")
    lines.append("export KUBE_IPVS_IN_GUEST=1")
    lines.append(f"cd {shlex.quote(os.getcwd())} || exit 125")
    lines.append("exec " + " ".join(shlex.quote(a) for a in argv))
    return "\n".join(lines) + "\n"


def run_in_guest(argv, timeout, memory, cpus, env):
    kdir = prepare()
    version = kernel_version(kdir)
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        die("qemu-system-x86_64 is not installed (tests/install-deps.sh installs it)")
    share = tempfile.mkdtemp(prefix="kube-ipvs-guest-")
    os.chmod(share, 0o755)
    console = os.path.join(share, "console.log")
    with open(os.path.join(share, "command.sh"), "w") as f:
        f.write(command_script(argv, env))
    cmdline = " ".join([
        "console=ttyS0", "panic=-1", "quiet", "loglevel=3", "rdinit=/init",
        f"KIPVS_MODULES={os.path.join(kdir, 'lib/modules')}",
    ])
    qemu_cmd = [
        qemu, "-accel", "tcg", "-nographic", "-no-reboot", "-nic", "none",
        "-m", str(memory), "-smp", str(cpus),
        "-kernel", os.path.join(kdir, "vmlinuz"),
        "-initrd", os.path.join(kdir, "initramfs.cpio.gz"),
        "-append", cmdline,
        "-serial", f"file:{console}", "-monitor", "none", "-display", "none",
        "-virtfs", "local,path=/,mount_tag=root,security_model=passthrough,readonly=on,"
                   "multidevs=remap",
        "-virtfs", f"local,path={share},mount_tag=results,security_model=passthrough,"
                   "multidevs=remap",
    ]
    tail = Tail(os.path.join(share, "output"))
    start = time.monotonic()
    proc = subprocess.Popen(qemu_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    qemu_out = b""
    timed_out = False

    def on_signal(signum, _frame):
        os.killpg(proc.pid, signal.SIGKILL)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                qemu_out += os.read(proc.stdout.fileno(), 65536)
            tail.pump()
            if time.monotonic() - start > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
        qemu_out += proc.stdout.read() or b""
        tail.pump()
        status_file = os.path.join(share, "exit-status")
        if timed_out:
            log(f"time limit of {timeout}s hit running {shlex.join(argv)} "
                f"(kernel {version}); guest killed")
            print_console(console)
            return EXIT_TIMEOUT
        if not os.path.exists(status_file):
            log(f"guest ended without an exit status (qemu exit {proc.returncode}) running "
                f"{shlex.join(argv)}")
            if qemu_out:
                sys.stderr.write(qemu_out.decode(errors="replace"))
            print_console(console)
            return EXIT_GUEST_FAILED
        with open(status_file) as f:
            status = int(f.read().strip() or EXIT_GUEST_FAILED)
        if os.environ.get("KUBE_IPVS_VM_VERBOSE"):
            print_console(console)
        return status
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(share, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    sub.add_parser("prepare")
    r = sub.add_parser("run")
    r.add_argument("--timeout", type=float,
                   default=float(os.environ.get("KUBE_IPVS_VM_TIMEOUT", "600")))
    r.add_argument("--memory", type=int, default=int(os.environ.get("KUBE_IPVS_VM_MEMORY", "2048")))
    r.add_argument("--cpus", type=int, default=int(os.environ.get("KUBE_IPVS_VM_CPUS", "2")))
    r.add_argument("--env", action="append", default=[], metavar="K=V")
    r.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.verb == "prepare":
        print(prepare())
        return 0
    cmd = args.command
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        ap.error("run needs a command")
    env = dict(e.split("=", 1) for e in args.env)
    return run_in_guest(cmd, args.timeout, args.memory, args.cpus, env)


if __name__ == "__main__":
    sys.exit(main())
