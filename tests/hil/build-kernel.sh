#!/usr/bin/env bash
# Builds (once) the User-Mode Linux kernel the HIL boots: Debian's linux-source-6.1 with
# Bluetooth, hci_vhci and hostfs built in (tests/hil/kernel.config). Prints the path of the
# cached kernel. Idempotent: the cache key is a hash of the fragment and the source version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VECTORCARE_HIL_CACHE:-/var/cache/vectorcare-hil}
jobs=${HIL_JOBS:-2}

ensure_pkg() { # apt-get only what is missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
}
ensure_pkg linux-source-6.1 bc flex bison build-essential xz-utils

src_version=$(dpkg-query -W -f '${Version}' linux-source-6.1)
key=$( (cat "$here/kernel.config"; echo "$src_version") | sha256sum | cut -c1-12)
out="$cache/kernel-$key"
if [[ -x "$out/linux" ]]; then echo "$out/linux"; exit 0; fi

mkdir -p "$cache"
work="$cache/kernel-build-$key"
if [[ ! -f "$work/Makefile" ]]; then
  rm -rf "$work" && mkdir -p "$work.tmp"
  echo "hil: unpacking linux-source-6.1 $src_version" >&2
  tar -xJf /usr/src/linux-source-6.1.tar.xz -C "$work.tmp" --strip-components=1
  mv "$work.tmp" "$work"
fi
cd "$work"
echo "hil: configuring UML kernel" >&2
make ARCH=um SUBARCH=x86_64 defconfig >&2
scripts/kconfig/merge_config.sh -m .config "$here/kernel.config" >&2
make ARCH=um SUBARCH=x86_64 olddefconfig >&2
# Every fragment line must have survived olddefconfig (a missing dependency drops it silently).
while IFS= read -r line; do
  [[ "$line" =~ ^CONFIG_([A-Z0-9_]+)=(.*)$ ]] || continue
  name=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
  if [[ "$want" == n ]]; then
    ! grep -q "^CONFIG_$name=" .config || { echo "hil: CONFIG_$name still set" >&2; exit 1; }
  else
    grep -qx "CONFIG_$name=$want" .config || { echo "hil: CONFIG_$name=$want not kept by olddefconfig" >&2; exit 1; }
  fi
done <"$here/kernel.config"
echo "hil: building UML kernel with -j$jobs (about 10 minutes on 2 cores)" >&2
make ARCH=um SUBARCH=x86_64 -j"$jobs" linux >&2
mkdir -p "$out.tmp"
strip -o "$out.tmp/linux" linux
cp .config "$out.tmp/config"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out/linux"
