#!/usr/bin/env bash
# Installs the third-party FHIR validators used by the Rust tests (tests/fhir_validators.rs)
# from the committed lockfile with `npm ci`. Idempotent: skips when node_modules was installed
# from the same package-lock.json (its SHA-256 is recorded after a successful install).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$root/tests/peers/fhir-validators"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq nodejs npm
  else
    echo "fhir-validators: node and npm are required" >&2
    exit 1
  fi
fi
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
stamp="$dir/node_modules/.installed-lock-sha256"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "fhir-validators: already installed"
  exit 0
fi
(cd "$dir" && npm ci --no-audit --no-fund)
echo "$want" > "$stamp"
echo "fhir-validators: installed in $dir/node_modules"
