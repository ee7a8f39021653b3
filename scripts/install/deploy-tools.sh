#!/usr/bin/env bash
# Idempotent installer for the deployment tests and builds. Installs only what is missing.
#   scripts/install/deploy-tools.sh           what tests/deploy_*.rs need (scripts/test runs
#                                             it): systemd tools, dpkg-deb, oelint-adv (PyPI),
#                                             cargo-deb (crate registry; a few build minutes
#                                             the first time)
#   scripts/install/deploy-tools.sh --cross   also what scripts/cross-build/-test need:
#                                             qemu-user, Debian cross gcc for arm64/armhf,
#                                             rustup std for the device targets, zig +
#                                             cargo-zigbuild (PyPI)
set -euo pipefail

cross=0
[[ "${1:-}" == "--cross" ]] && cross=1
apt_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have systemd-analyze || apt_pkgs+=(systemd)
have dpkg-deb || apt_pkgs+=(dpkg)
have readelf || apt_pkgs+=(binutils)
if ((cross)); then
    have qemu-aarch64 || apt_pkgs+=(qemu-user)
    have aarch64-linux-gnu-gcc || apt_pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
    have arm-linux-gnueabihf-gcc || apt_pkgs+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
fi
if ((${#apt_pkgs[@]})); then
    echo "deploy-tools: apt-get install ${apt_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${apt_pkgs[@]}"
fi

# armv7-unknown-linux-musleabihf is left out: its prebuilt std could not be downloaded here.
for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl; do
    if ((cross)) && ! rustup target list --installed | grep -qx "$target"; then
        echo "deploy-tools: rustup target add $target"
        rustup target add "$target"
    fi
done

pip_pkgs=()
if ((cross)); then
    have cargo-zigbuild || pip_pkgs+=("cargo-zigbuild==0.24.1")
    python3 -m ziglang version >/dev/null 2>&1 || pip_pkgs+=("ziglang==0.17.1")
fi
have oelint-adv || pip_pkgs+=("oelint-adv==9.11.2")
if ((${#pip_pkgs[@]})); then
    echo "deploy-tools: pip install ${pip_pkgs[*]}"
    python3 -m pip install --quiet "${pip_pkgs[@]}"
    # pyenv installs console scripts behind shims that need a rehash.
    if have pyenv; then pyenv rehash; fi
fi

# tests/deploy_deb.rs builds the package with cargo-deb (and with the dpkg-deb fallback).
if ! have cargo-deb; then
    echo "deploy-tools: cargo install --locked cargo-deb@3.8.0"
    # Without CARGO_TARGET_DIR cargo install builds in a temporary dir and removes it.
    env -u CARGO_TARGET_DIR cargo install --locked cargo-deb@3.8.0
fi
echo "deploy-tools: ready"
