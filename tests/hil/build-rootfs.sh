#!/usr/bin/env bash
# Builds (once) the guest root filesystem image the HIL boots copy-on-write: Debian bookworm
# minbase + dbus, bluez (bluetoothd), python3 (Bumble), iproute2. Prints the image's path.
# Idempotent: the cache key is a hash of the package list and this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VECTORCARE_HIL_CACHE:-/var/cache/vectorcare-hil}
suite=bookworm

# Bump when the image's layout changes (what is written into the tree below).
format=1
key=$( (echo "format=$format"; cat "$here/rootfs.packages" "$here/guest/hil-init") | sha256sum | cut -c1-12)
image="$cache/rootfs-$key.ext4"
if [[ -f "$image" ]]; then echo "$image"; exit 0; fi

missing=()
for p in debootstrap e2fsprogs; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

mkdir -p "$cache"
tree="$cache/rootfs-$key.tree"
rm -rf "$tree"
# The mirror is the one apt on this machine already uses (one-line or deb822 sources).
mirror=$(awk -v s="$suite" '$1=="deb" && $3==s {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
if [[ -z "$mirror" ]]; then
  mirror=$(awk -v s="$suite" '/^URIs:/ {u=$2} /^Suites:/ {for (i=2;i<=NF;i++) if ($i==s) {print u; exit}}' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
[[ -n "$mirror" ]] || { echo "hil: no apt source for $suite found" >&2; exit 69; }
echo "hil: debootstrap $suite minbase into $tree" >&2
debootstrap --variant=minbase --include="$(paste -sd, "$here/rootfs.packages")" \
  "$suite" "$tree" "$mirror" >&2
# Prune what a UML guest never uses: docs, locales, apt lists and caches.
rm -rf "$tree"/usr/share/{doc,man,info,locale} "$tree"/var/cache/apt/* "$tree"/var/lib/apt/lists/*
mkdir -p "$tree/hil" "$tree/host" "$tree/run/dbus"
install -m 0755 "$here/guest/hil-init" "$tree/sbin/hil-init"
echo vectorcare-hil >"$tree/etc/hostname"
# An ext4 image sized to the tree plus room for bluetoothd's state (writes go to the COW file).
size_mb=$(( $(du -sm "$tree" | cut -f1) + 128 ))
rm -f "$image.tmp"
mkfs.ext4 -q -F -L hilroot -d "$tree" "$image.tmp" "${size_mb}M" >&2
rm -rf "$tree"
mv "$image.tmp" "$image"
echo "$image"
