#!/bin/sh
# Tools for the queue power-cut test (scripts/powercut/queue.sh): QEMU, a Debian kernel with
# its modules, a static busybox. Idempotent: installs only what is missing.
set -eu
missing=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing="$missing qemu-system-x86"
ls /boot/vmlinuz-* >/dev/null 2>&1 || missing="$missing linux-image-amd64"
[ -x /bin/busybox ] && busybox --list 2>/dev/null | grep -qx insmod || missing="$missing busybox-static"
command -v mkfs.ext4 >/dev/null 2>&1 || missing="$missing e2fsprogs"
command -v cpio >/dev/null 2>&1 || missing="$missing cpio"
if [ -n "$missing" ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi
