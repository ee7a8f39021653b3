#!/usr/bin/env bash
# Installs cargo-fuzz (used by scripts/fuzz) from crates.io if it is missing. Idempotent.
set -euo pipefail
if cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz: already installed ($(cargo fuzz --version))"
  exit 0
fi
cargo install cargo-fuzz --locked
