#!/usr/bin/env python3
"""Checks one HIL scenario's results (docs/HIL.md): the Observations the FHIR test double
received, the simulator's report, the gateway's log and BLE progress.

usage: check.py <scenario> <run-dir>

Prints a one-line summary and exits 0 when every expectation holds, else prints what failed
and exits 1. Expected counts come from the simulator's own report of what it sent (it is
deterministic: same scenario, same seed, same values), so a lost, duplicated or misdecoded
value fails the check.
"""

import json
import pathlib
import re
import sys

HEART_RATE = "8867-4"
BP_PANEL = "85354-9"
SYSTOLIC = "8480-6"
DIASTOLIC = "8462-4"
GLUCOSE_CODES = {"41653-7", "2339-0"}
# The peripheral's address (scripts/hil gives it to the second vhci controller).
PERIPHERAL = "C0:FF:EE:48:49:4C"


class Failed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Failed(message)


def loinc(observation):
    for coding in observation.get("code", {}).get("coding", []):
        if coding.get("system") == "http://loinc.org":
            return coding.get("code")
    return None


def component(observation, code):
    for c in observation.get("component", []):
        for coding in c.get("code", {}).get("coding", []):
            if coding.get("code") == code:
                return c.get("valueQuantity", {})
    return None


def observations(run):
    folder = run / "fhir" / "Observation"
    expect(folder.is_dir(), "the FHIR test double stored no Observation")
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def devices(run):
    folder = run / "fhir" / "Device"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def simulator_report(run):
    """{device: (measurements, stored, garbage, disconnects)} from simulate's closing table."""
    text = (run / "logs" / "simulate.log").read_text()
    rows = {}
    table = False
    for line in text.splitlines():
        if line.startswith("device") and "measurements" in line:
            table = True
            continue
        if table:
            m = re.match(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", line)
            if m:
                rows[m.group(1)] = tuple(int(x) for x in m.groups()[1:])
    expect(rows, "the simulator printed no report (did it finish the scenario?)")
    return rows


def gateway_log(run):
    return (run / "logs" / "gateway.log").read_text(errors="replace")


def quantity_ok(q, unit, low, high, what):
    expect(q is not None, f"{what}: no valueQuantity")
    expect(q.get("code") == unit, f"{what}: unit {q.get('code')!r}, expected {unit!r}")
    value = q.get("value")
    expect(isinstance(value, (int, float)) and low <= value <= high, f"{what}: value {value!r} outside {low}..{high}")


def by_code(obs):
    groups = {}
    for o in obs:
        groups.setdefault(loinc(o), []).append(o)
    return groups


def distinct_identifiers(obs):
    ids = [tuple((i.get("system"), i.get("value")) for i in o.get("identifier", [])) for o in obs]
    expect(len(set(ids)) == len(ids), "two Observations share an identifier")


def device_serial_seen(run, serial):
    text = json.dumps(devices(run))
    expect(serial in text, f"no Device resource carries the peripheral's serial number {serial}")


def heart_rate(run, device="strap", serial="HIL-HR-1"):
    measurements, _, _, disconnects = simulator_report(run)[device]
    groups = by_code(observations(run))
    hr = groups.get(HEART_RATE, [])
    expect(set(groups) == {HEART_RATE}, f"unexpected Observation codes {sorted(map(str, groups))}")
    expect(len(hr) == measurements, f"{len(hr)} heart-rate Observations, the device sent {measurements}")
    for o in hr:
        quantity_ok(o.get("valueQuantity"), "/min", 60, 150, "heart rate")
    distinct_identifiers(hr)
    device_serial_seen(run, serial)
    return measurements, disconnects


def scenario_heart_rate(run):
    n, _ = heart_rate(run)
    return f"{n} of {n} heart-rate notifications arrived as Observations 8867-4 (/min)"


def scenario_blood_pressure(run):
    measurements = simulator_report(run)["cuff"][0]
    groups = by_code(observations(run))
    panels, pulses = groups.get(BP_PANEL, []), groups.get(HEART_RATE, [])
    expect(set(groups) <= {BP_PANEL, HEART_RATE}, f"unexpected Observation codes {sorted(map(str, groups))}")
    expect(len(panels) == measurements, f"{len(panels)} BP panels, the cuff indicated {measurements}")
    expect(len(pulses) == measurements, f"{len(pulses)} pulse Observations, expected {measurements}")
    for o in panels:
        sys_q, dia_q = component(o, SYSTOLIC), component(o, DIASTOLIC)
        quantity_ok(sys_q, "mm[Hg]", 100, 180, "systolic")
        quantity_ok(dia_q, "mm[Hg]", 40, 160, "diastolic")
        expect(dia_q["value"] <= sys_q["value"] - 20, "diastolic not 20 mmHg under systolic")
    distinct_identifiers(panels)
    device_serial_seen(run, "HIL-BP-1")
    return f"{measurements} of {measurements} indications arrived as BP panels 85354-9 (mm[Hg]) + pulse 8867-4"


def scenario_glucose(run):
    measurements, stored, _, disconnects = simulator_report(run)["meter"]
    expected = measurements + stored
    expect(disconnects >= 1, "the scenario dropped no link")
    obs = observations(run)
    groups = by_code(obs)
    expect(set(groups) <= GLUCOSE_CODES, f"unexpected Observation codes {sorted(map(str, groups))}")
    expect(len(obs) == expected, f"{len(obs)} glucose Observations, the meter held {expected} records")
    for o in obs:
        quantity_ok(o.get("valueQuantity"), "mg/dL", 60, 280, "glucose")
    distinct_identifiers(obs)
    device_serial_seen(run, "HIL-GL-1")
    progress_file = run / "ble-progress" / PERIPHERAL.replace(":", "-")
    expect(progress_file.is_file(), f"no confirmed-progress file {progress_file.name}")
    confirmed = int(re.findall(r"\d+", progress_file.read_text())[-1])
    expect(confirmed == expected, f"confirmed sequence {confirmed}, expected {expected} (every record)")
    log = gateway_log(run)
    expect("BLE device disconnected" in log, "the gateway never saw the link drop")
    # RACP op code 2 = Delete Stored Records; the meter's response Success means it deleted.
    deletes = [line for line in log.splitlines() if "RACP response" in line and "request_op_code=2" in line]
    expect(deletes, "the gateway never deleted records on the meter (no RACP delete response)")
    expect(all("Success" in line for line in deletes), f"RACP delete not successful: {deletes[0].strip()}")
    return (
        f"{expected} of {expected} records ({stored} stored before, {measurements} new) arrived; "
        f"confirmed up to {confirmed}; {len(deletes)} RACP delete(s) answered Success after reconnecting"
    )


def received_times(obs):
    """Seconds (float, from the first) at which the gateway received each Observation's value."""
    from datetime import datetime

    def parse(text):
        # 2026-11-29T03:26:34.701017277Z: Python parses microseconds at most.
        head, _, frac = text.rstrip("Z").partition(".")
        return datetime.fromisoformat(head).timestamp() + float("0." + (frac or "0"))

    times = sorted(parse(o["effectiveDateTime"]) for o in obs)
    return [t - times[0] for t in times]


# Values a peripheral sends in the first moments of a new connection, before the gateway has
# subscribed again, are dropped by the central's BlueZ (docs/HIL.md, "Findings"): at most this
# many seconds' worth of the backlog may be missing after a reconnection.
RECONNECT_LOSS_SECONDS = 8


def scenario_reconnect(run):
    measurements, _, _, disconnects = simulator_report(run)["strap"]
    expect(disconnects == 1, f"the simulator reported {disconnects} link drops, expected 1")
    log = gateway_log(run)
    # Values measured after the drop can only arrive over a new connection.
    expect("BLE device disconnected" in log, "the gateway never saw the link drop: expected a reconnection")
    obs = observations(run)
    groups = by_code(obs)
    expect(set(groups) == {HEART_RATE}, f"unexpected Observation codes {sorted(map(str, groups))}")
    for o in obs:
        quantity_ok(o.get("valueQuantity"), "/min", 60, 150, "heart rate")
    distinct_identifiers(obs)
    device_serial_seen(run, "HIL-HR-2")
    times = received_times(obs)
    gaps = [b - a for a, b in zip(times, times[1:])]
    outage = max(gaps, default=0)
    expect(outage >= 2, f"no outage seen in the arrival times (largest gap {outage:.1f} s)")
    index = gaps.index(outage) + 1
    after = len(times) - index
    expect(index >= 5 and after >= 5, f"{index} values before and {after} after the outage: expected both sides")
    lost = measurements - len(obs)
    expect(lost >= 0, f"{len(obs)} Observations for {measurements} values sent: duplicates")
    expect(lost <= 2 * RECONNECT_LOSS_SECONDS, f"{lost} of {measurements} values lost, more than the reconnection window allows")
    return (
        f"link dropped and came back ({outage:.1f} s without values); {len(obs)} of {measurements} "
        f"values arrived ({index} before, {after} after), {lost} lost at the reconnection"
    )


SCENARIOS = {
    "heart-rate": scenario_heart_rate,
    "blood-pressure": scenario_blood_pressure,
    "glucose": scenario_glucose,
    "reconnect": scenario_reconnect,
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in SCENARIOS:
        print(__doc__, file=sys.stderr)
        return 64
    run = pathlib.Path(sys.argv[2])
    try:
        result = (run / "guest.result").read_text().strip() if (run / "guest.result").exists() else "no result"
        expect(result == "completed", f"guest: {result}")
        print(SCENARIOS[sys.argv[1]](run))
        return 0
    except (Failed, OSError, KeyError, ValueError) as err:
        print(f"{type(err).__name__ if not isinstance(err, Failed) else ''}{': ' if not isinstance(err, Failed) else ''}{err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
