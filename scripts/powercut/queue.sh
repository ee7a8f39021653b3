#!/bin/sh
# Power-cut test of the durable queue (issue #4).
#
# A QEMU/KVM guest (the Debian kernel from /boot, a busybox initramfs) appends to the queue
# on an ext4 virtio disk and prints every append that resolved on its serial port. The host
# SIGKILLs QEMU at a random moment: the guest's page cache and unwritten file metadata vanish
# as in a power cut (writes the guest flushed to the virtual disk survive in the image). The
# host then mounts the image (ext4 journal replay), reopens the queue and checks that every
# resolved append is present and nothing is corrupt.
#
# Usage: scripts/powercut/queue.sh [ROUNDS] [--raw-sled]
#   --raw-sled  negative control: plain sled insert + Db::flush() without fdatasync.
# Needs root (loop mount) and scripts/install-extra/qemu-powercut.sh. Runs under TCG (software
# emulation) by default because nested KVM on the build machines hangs at boot; set
# VC_POWERCUT_ACCEL=kvm where KVM works.
set -eu
ROUNDS=${1:-10}
MODE=${2:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
for tool in qemu-system-x86_64 mkfs.ext4 cpio busybox; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool: run scripts/install-extra/qemu-powercut.sh" >&2; exit 69; }
done
ACCEL=${VC_POWERCUT_ACCEL:-tcg}
KERNEL=$(ls /boot/vmlinuz-* 2>/dev/null | sort | tail -n 1)
[ -n "$KERNEL" ] || { echo "no kernel in /boot: run scripts/install-extra/qemu-powercut.sh" >&2; exit 69; }
KVER=${KERNEL#/boot/vmlinuz-}
MODDIR=/lib/modules/$KVER/kernel

(cd "$ROOT" && cargo build --quiet --example queue_powercut)
BIN=$TARGET/debug/examples/queue_powercut

WORK=$(mktemp -d /var/tmp/vc-powercut.XXXXXX)
QPID=""
cleanup() {
    [ -n "$QPID" ] && kill -9 "$QPID" 2>/dev/null || true
    mountpoint -q "$WORK/mnt" 2>/dev/null && umount "$WORK/mnt" || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# --- initramfs: busybox, the driver binary with its shared libraries, the needed modules.
I=$WORK/initrd
mkdir -p "$I/bin" "$I/dev" "$I/proc" "$I/sys" "$I/data" "$I/modules" "$WORK/mnt"
cp "$(command -v busybox)" "$I/bin/busybox"
for applet in sh mount insmod sleep; do ln -s busybox "$I/bin/$applet"; done
strip -o "$I/bin/queue_powercut" "$BIN" 2>/dev/null || cp "$BIN" "$I/bin/queue_powercut"
for lib in $(ldd "$BIN" | grep -o '/[^ ]*'); do
    mkdir -p "$I$(dirname "$lib")"
    cp -L "$lib" "$I$lib"
done
MODULES="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_legacy_dev
 drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci drivers/block/virtio_blk
 lib/crc16 fs/mbcache fs/jbd2/jbd2 crypto/crc32c_generic fs/ext4/ext4"
ORDER=""
for m in $MODULES; do
    cp "$MODDIR/$m.ko" "$I/modules/"
    ORDER="$ORDER $(basename "$m")"
done
cat > "$I/init" <<INIT
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $ORDER; do insmod /modules/\$m.ko; done
while [ ! -b /dev/vda ]; do sleep 0.1; done
mount -t ext4 /dev/vda /data
exec /bin/queue_powercut child /data $MODE
INIT
chmod +x "$I/init"
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1 > "$WORK/initrd.gz")

fail=0
round=1
while [ "$round" -le "$ROUNDS" ]; do
    rm -f "$WORK/disk.img" "$WORK/serial.log"
    truncate -s 256M "$WORK/disk.img"
    mkfs.ext4 -q -F "$WORK/disk.img"
    qemu-system-x86_64 -accel "$ACCEL" -m 256 -smp 1 -nodefaults -display none -no-reboot \
        -kernel "$KERNEL" -initrd "$WORK/initrd.gz" -append "console=ttyS0 quiet panic=-1" \
        -drive "file=$WORK/disk.img,format=raw,if=virtio,cache=writeback" \
        -serial "file:$WORK/serial.log" &
    QPID=$!
    waited=0
    until grep -q READY "$WORK/serial.log" 2>/dev/null; do
        sleep 0.2
        waited=$((waited + 1))
        if [ "$waited" -gt 900 ]; then
            echo "guest did not start; serial log:" >&2
            cat "$WORK/serial.log" >&2
            exit 70
        fi
    done
    # Cut the power 0.3 .. 3 s into the appends.
    delay=$(awk -v s="$$$round" 'BEGIN { srand(s); printf "%.2f", 0.3 + rand() * 2.7 }')
    sleep "$delay"
    kill -9 "$QPID"
    wait "$QPID" 2>/dev/null || true
    QPID=""
    mount -o loop "$WORK/disk.img" "$WORK/mnt"
    printf 'round %s (cut after %ss): ' "$round" "$delay"
    if ! "$BIN" verify "$WORK/mnt" "$WORK/serial.log" $MODE; then
        fail=$((fail + 1))
    fi
    umount "$WORK/mnt"
    round=$((round + 1))
done
echo "power cuts: $ROUNDS, rounds losing resolved appends: $fail"
[ "$fail" -eq 0 ]
