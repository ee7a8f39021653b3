#!/bin/sh
# Installs what tests/ble_dbusmock.rs needs: a dbus-daemon for a private bus and
# python-dbusmock (with python3-dbus and python3-gi) to play BlueZ on it.
# Idempotent: apt-get runs only when something is missing. Uses the system Python
# (/usr/bin/python3), because the Debian packages install there.
set -eu

missing=""
command -v dbus-daemon >/dev/null 2>&1 || missing="$missing dbus"
/usr/bin/python3 -c 'import dbus' >/dev/null 2>&1 || missing="$missing python3-dbus"
/usr/bin/python3 -c 'import gi' >/dev/null 2>&1 || missing="$missing python3-gi"
/usr/bin/python3 -c 'import dbusmock' >/dev/null 2>&1 || missing="$missing python3-dbusmock"

if [ -z "$missing" ]; then
    echo "bluez-mock: dbus-daemon and python3-dbusmock already installed"
    exit 0
fi

echo "bluez-mock: installing$missing"
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
$SUDO apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
