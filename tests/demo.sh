#!/bin/sh
# The main job: build kube-ipvs and show it working against a real kernel in the guest VM.
# Until the daemon is assembled (issue 6) this runs the kernel smoke test: libnl from C++
# reaching IPVS and creating a dummy link in the guest, confirmed by ipvsadm and ip.
set -eu
cd "$(dirname "$0")/.."
tests/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build tests/kernel/kernel-smoke kube-ipvs >/dev/null
exec python3 tests/vm/guest.py run --timeout 300 -- sh -c '
    set -e
    echo "# guest kernel $(uname -r)"
    build/tests/kernel/kernel-smoke -r tapcases
    echo "# ipvsadm -Ln"; ipvsadm -Ln
    echo "# ip -br link"; ip -br link'
