#!/usr/bin/env bash
# Installs the real peers of the uploader tests (tests/upload_peers.rs, benches/upload.rs):
# Medplum FHIR router + oidc-provider,
# from the committed lockfile with `npm ci`. Idempotent: skips when node_modules was installed
# from the same package-lock.json (its SHA-256 is recorded after a successful install).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$root/tests/peers/fhir-server"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq nodejs npm
  else
    echo "fhir-server: node and npm are required" >&2
    exit 1
  fi
fi
# oidc-provider 9 needs Node >= 20.19 (Medplum 4.5 >= 20 too); Debian 12's own nodejs is 18.
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)'; then
  echo "fhir-server: Node >= 20.19 is required (found $(node --version))" >&2
  exit 1
fi
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
stamp="$dir/node_modules/.installed-lock-sha256"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "fhir-server: already installed"
  exit 0
fi
(cd "$dir" && npm ci --no-audit --no-fund)
echo "$want" > "$stamp"
echo "fhir-server: installed in $dir/node_modules"
