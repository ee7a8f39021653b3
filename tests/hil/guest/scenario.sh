#!/bin/sh
# One HIL scenario inside the UML guest (started by /sbin/hil-init; docs/HIL.md).
#
# The host is mounted read-only at /host; the run directory of this scenario (params.env in,
# logs and results out) is mounted read-write at /hil. Order: dbus → two Bumble controllers on
# /dev/vhci (hci0 gateway, hci1 peripheral) → bluetoothd → FHIR test double → the project's
# simulator as a BLE peripheral on hci1 → the gateway on hci0. When the scenario has played and
# the double has stopped receiving, everything stops, the queue is exported and the guest
# powers off. The host checks the results (tests/hil/check.py).
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
mkdir -p /hil
mount -t hostfs -o "$hil_run" none /hil
. /hil/params.env
H=/host
logs=/hil/logs
mkdir -p "$logs"
started=$(cut -d' ' -f1 /proc/uptime)

say() { echo "guest $(cut -d' ' -f1 /proc/uptime)s: $*" | tee -a "$logs/guest.log"; }
finish() {
  say "done: $1"
  echo "$1" >/hil/guest.result
  sync
  echo o >/proc/sysrq-trigger
  sleep 10
}
# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s.
wait_for() {
  limit=$(($1 * 10)) what=$2
  shift 2
  i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge "$limit" ]; then finish "timeout waiting for $what"; fi
    sleep 0.1
  done
}

say "booted (kernel uptime at init: ${started}s)"
ip link set lo up
# The gateway's HTTP client loads the platform's CA certificates even for loopback http.
if [ ! -e /etc/ssl/certs/ca-certificates.crt ] && [ -d /host/etc/ssl/certs ]; then
  mkdir -p /etc/ssl/certs && mount --bind /host/etc/ssl/certs /etc/ssl/certs
fi

if [ -n "${HIL_DEBUG:-}" ]; then
  # HCI traffic of both controllers, as text (btmon is in Debian's bluez package).
  btmon >"$logs/btmon.log" 2>&1 &
fi

mkdir -p /run/dbus
dbus-daemon --system --fork --nopidfile || finish "dbus-daemon failed"

# Bumble's controllers: the package directory lives on the host (built for Python 3.11, the
# guest's Debian python3).
HIL_BUMBLE_DEBUG=${HIL_BUMBLE_DEBUG:-} PYTHONPATH="$H$HIL_BUMBLE" python3 "$H$HIL_REPO/tests/hil/guest/controllers.py" \
  "$HIL_CENTRAL_ADDRESS" "$HIL_PERIPHERAL_ADDRESS" >"$logs/controllers.log" 2>&1 &
wait_for 30 "hci0 and hci1" test -e /sys/class/bluetooth/hci1
say "controllers up: $(ls /sys/class/bluetooth | tr '\n' ' ')"

/usr/libexec/bluetooth/bluetoothd -n ${HIL_DEBUG:+-d} >"$logs/bluetoothd.log" 2>&1 &
bluez_up() {
  dbus-send --system --print-reply --dest=org.bluez /org/bluez/hci1 \
    org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Address
}
wait_for 30 "bluetoothd (org.bluez hci1)" bluez_up
say "bluetoothd up"

"$H$HIL_DOUBLE_BIN" /tmp/hil-keys /tmp/double.env /hil/fhir >"$logs/double.log" 2>&1 &
double=$!
wait_for 30 "the FHIR test double" test -s /tmp/double.env
set -a
. /tmp/double.env
set +a
say "FHIR test double up"

# Each gateway log line gets the guest's uptime in front (the plain format has no time), to
# line it up with guest.log and btmon.
mkfifo /tmp/gateway.fifo
while IFS= read -r line; do
  echo "$(cut -d' ' -f1 /proc/uptime) $line"
done </tmp/gateway.fifo >"$logs/gateway.log" &
"$H$HIL_GATEWAY_BIN" run --config "$H$HIL_REPO/tests/hil/gateway.toml" >/tmp/gateway.fifo 2>&1 &
gateway=$!
# The scenario's clock starts once the gateway scans, so its start-up time (a debug build
# under UML: a few seconds) does not eat into the scenario.
wait_for 60 "the gateway's BLE discovery" grep -q "BLE discovery started" "$logs/gateway.log"
say "gateway scanning"
start_simulator() {
  "$H$HIL_GATEWAY_BIN" simulate --scenario "$H$HIL_SCENARIO" --target ble:hci1 \
    --speed "${HIL_SPEED:-1}" ${HIL_EXPECT:+--loop} >"$logs/simulate.log" 2>&1 &
  sim=$!
  say "simulator started"
}
start_simulator
# bluetoothd answers RegisterApplication only after reading the application's objects back;
# on a loaded machine that D-Bus round trip has timed out ("No object received", 1 scenario in
# 40). That is the rig, not the gateway: one more try, with the scenario from its start. The
# registration has worked once the gateway found the peripheral.
while kill -0 "$sim" 2>/dev/null && ! grep -q "starting device session" "$logs/gateway.log"; do
  sleep 0.2
done
if ! kill -0 "$sim" 2>/dev/null && grep -q "registering the GATT application" "$logs/simulate.log"; then
  wait "$sim"
  mv "$logs/simulate.log" "$logs/simulate-first-try.log"
  say "the simulator could not register its GATT application; trying once more"
  start_simulator
fi

# Uploads follow within a second or two on loopback: the double's Observation count must stay
# the same for HIL_SETTLE seconds (at most HIL_DRAIN seconds of waiting).
count() { cat /hil/fhir/observations.count 2>/dev/null || echo 0; }
settle() {
  last=$(count) stable=0 waited=0
  while [ "$stable" -lt "$((${HIL_SETTLE:-2} * 10))" ] && [ "$waited" -lt "$((${HIL_DRAIN:-30} * 10))" ]; do
    sleep 0.1
    now=$(count)
    if [ "$now" = "$last" ]; then stable=$((stable + 1)); else stable=0 last=$now; fi
    waited=$((waited + 1))
  done
}
running() { kill -0 "$1" 2>/dev/null; }
if [ -n "${HIL_EXPECT:-}" ]; then
  # The scenario idles after its last value (--loop, a `slow` fault): stop once the double
  # holds HIL_EXPECT Observations and they settled, or after HIL_PLAY_LIMIT seconds (a loss
  # then fails the check), while the peripheral is still there.
  waited=0
  while [ "$(count)" -lt "$HIL_EXPECT" ] && [ "$waited" -lt "$((${HIL_PLAY_LIMIT:-40} * 5))" ] && running "$sim"; do
    sleep 0.2
    waited=$((waited + 1))
  done
  settle
  say "double holds $(count) Observations (expected $HIL_EXPECT)"
  kill -TERM "$gateway"
  wait "$gateway"
  gateway_rc=$?
  kill -INT "$sim" 2>/dev/null
  wait "$sim"
  sim_rc=$?
  say "simulator exited $sim_rc"
elif [ -n "${HIL_STOP_AFTER:-}" ]; then
  # Stop the gateway once its log shows HIL_STOP_AFTER (and uploads settled), while the
  # peripheral is still there: the scenario's end then cannot race a reconnection.
  until grep -q "$HIL_STOP_AFTER" "$logs/gateway.log" 2>/dev/null || ! running "$sim"; do sleep 0.2; done
  say "gateway log shows '$HIL_STOP_AFTER' (or the simulator ended)"
  settle
  say "double holds $(count) Observations"
  kill -TERM "$gateway"
  wait "$gateway"
  gateway_rc=$?
  # The rest of the scenario only kept the peripheral present: end it (Ctrl-C ends a play
  # early and still prints the report of what was sent).
  kill -INT "$sim" 2>/dev/null
  wait "$sim"
  sim_rc=$?
  say "simulator exited $sim_rc"
else
  wait "$sim"
  sim_rc=$?
  say "simulator exited $sim_rc"
  settle
  say "double holds $(count) Observations"
  kill -TERM "$gateway"
  wait "$gateway"
  gateway_rc=$?
fi
kill -TERM "$double"
wait "$double"
double_rc=$?
say "gateway exited $gateway_rc, double exited $double_rc"

"$H$HIL_GATEWAY_BIN" queue export --data-dir /tmp/gateway-state --format ndjson /hil/queue.ndjson \
  >"$logs/queue-export.log" 2>&1
if [ -d /tmp/gateway-state/ble-progress ]; then cp -r /tmp/gateway-state/ble-progress /hil/; fi
echo "simulate=$sim_rc gateway=$gateway_rc double=$double_rc" >/hil/exit-codes
finish "completed"
