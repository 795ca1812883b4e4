#!/bin/sh
# Installs every package kube-ipvs needs to build, test and run, from Debian 12's archive.
# Idempotent: when everything is present it only runs dpkg-query and exits.
set -eu

PACKAGES="
build-essential pkg-config meson ninja-build cmake git ca-certificates
libnl-3-dev libnl-genl-3-dev libnl-route-3-dev libipset-dev
libboost1.81-dev libboost-json1.81-dev libssl-dev libyaml-cpp-dev catch2
libnetfilter-conntrack-dev
clang clang-format clang-tidy libclang-rt-14-dev
python3 python3-yaml openssl curl
qemu-system-x86 busybox-static cpio kmod
ipvsadm ipset iptables iproute2 conntrack
"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages:$missing; run as root to install them" >&2
    exit 1
fi

echo "install-deps: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
