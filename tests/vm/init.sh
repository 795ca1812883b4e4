#!/bin/busybox sh
# /init of the kube-ipvs test guest's initramfs.
# Mounts the host's / (9p, read-only) and the writable results share, runs the command the
# harness left in the share inside a chroot of the host's /, records its exit status, powers off.
# The harness passes KIPVS_MODULES (the unpacked module tree on the host's /) on the kernel
# command line; the kernel hands unknown key=value words to init as environment variables.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mkdir -p /proc /sys /dev /newroot /lib/modules
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

fail() {
    echo "kube-ipvs-guest: $*" >/dev/console
    poweroff -f
}

for m in virtio_pci 9pnet_virtio 9p crc32c_generic; do
    modprobe "$m" || fail "modprobe $m failed"
done
# The host's / is read-only and nothing changes it while the guest runs, so the guest may
# cache it as a node caches its disk (cache=loose): without that every exec of iptables-restore,
# ipset or python re-reads each binary and library over 9p (0.5-4 s per program under
# emulation), which no real node pays and which would swamp what the tests measure.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 root /newroot \
    || fail "cannot mount the host root over 9p"
# Modules load on demand through the kernel's helper, which runs in this initramfs' root:
# give it the whole module tree from the host's cache, and let the host's kmod modprobe do
# the lookups (its binary indexes are far faster under emulation than busybox parsing the
# text modules.alias; see /sbin/kipvs-modprobe).
mount --bind "/newroot$KIPVS_MODULES" /lib/modules || fail "cannot bind the module tree"
if [ -x /newroot/bin/kmod ]; then
    echo /sbin/kipvs-modprobe > /proc/sys/kernel/modprobe
fi

mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm 2>/dev/null
mount -t devpts devpts /newroot/dev/pts 2>/dev/null
mount -t tmpfs tmpfs /newroot/tmp
mount -t tmpfs tmpfs /newroot/run
mount -t tmpfs tmpfs /newroot/dev/shm 2>/dev/null
mkdir -p /newroot/run/kube-ipvs-guest
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=512000 results /newroot/run/kube-ipvs-guest \
    || fail "cannot mount the results share"
ip link set lo up
hostname kube-ipvs-guest

chroot /newroot /bin/sh /run/kube-ipvs-guest/command.sh \
    >/newroot/run/kube-ipvs-guest/output 2>&1 </dev/null
echo $? >/newroot/run/kube-ipvs-guest/exit-status.tmp
mv /newroot/run/kube-ipvs-guest/exit-status.tmp /newroot/run/kube-ipvs-guest/exit-status
sync
umount /newroot/run/kube-ipvs-guest
poweroff -f
