#!/bin/sh
# The main job (README): build kube-ipvs and run it, for real, in a QEMU guest: the daemon
# against the fake API server serving manifests/examples/web.json, the resulting IPVS table,
# and curl balancing across three pods. Needs root on Debian 12; installs what is missing.
# Leaves nothing behind: the guest is thrown away, the host's own tables are never touched.
set -eu
cd "$(dirname "$0")/.."
tests/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build kube-ipvs >/dev/null
exec python3 tests/vm/guest.py run --timeout 900 -- \
    python3 tests/e2e/demo.py --kube-ipvs build/kube-ipvs
