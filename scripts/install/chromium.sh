#!/bin/sh
# Installs headless Chromium (and its WebDriver) for tests/status_page.rs, which loads the
# gateway's status page and keeps a screenshot (Debian packages `chromium`, `chromium-driver`).
# Idempotent: does nothing when both are already installed. The test starts the browser
# itself with --headless --no-sandbox --disable-gpu and background networking off.
set -eu
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core
