//! Snapshot tests of the FHIR JSON for every kind, identity and time rules, bundles.
//! Snapshots live in `src/fhir/snapshots/`; regenerate with `UPDATE_SNAPSHOTS=1 cargo test`
//! and review the diff.

use serde_json::Value;

use super::examples::{example_map_context, example_readings};
use super::*;
use crate::reading::{DeviceTime, Kind, Reading, StatusFlag};

/// Indents compact JSON text without re-parsing numbers (so 2.00 stays 2.00).
fn pretty(compact: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    for ch in compact.chars() {
        if in_string {
            out.push(ch);
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '"' => {
                in_string = true;
                out.push(ch);
            }
            '{' | '[' => {
                out.push(ch);
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(ch);
            }
            ',' => {
                out.push(ch);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            _ => out.push(ch),
        }
    }
    out.push('\n');
    out
}

fn check_snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/fhir/snapshots")
        .join(format!("{name}.json"));
    let actual = pretty(actual);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(&path, &actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing snapshot {path:?}; run with UPDATE_SNAPSHOTS=1"));
    assert_eq!(actual, expected, "snapshot {name} differs");
}

fn expected_loinc(reading: &Reading) -> &'static str {
    match reading.kind {
        Kind::HeartRate | Kind::PulseRate => "8867-4",
        Kind::BloodPressure => "85354-9",
        Kind::BodyTemperature => "8310-5",
        Kind::OxygenSaturation => "59408-5",
        Kind::BodyWeight => "29463-7",
        Kind::BodyHeight => "8302-2",
        Kind::BodyMassIndex => "39156-5",
        Kind::RespiratoryRate => "9279-1",
        Kind::BloodGlucose => match (
            reading.qualifiers.get("glucose_sample").map(String::as_str),
            reading.value.as_ref().map(|q| q.ucum.as_str()),
        ) {
            (Some("interstitial_fluid"), _) => "99504-3",
            (_, Some("mmol/L")) => "14743-9",
            _ => "41653-7",
        },
    }
}

#[test]
fn snapshots_of_every_kind() {
    for (name, reading) in example_readings() {
        let unit = map_reading(&reading, &example_map_context(true)).expect(name);
        check_snapshot(name, unit.observation_json());
        let obs: Value = serde_json::from_str(unit.observation_json()).expect("json");
        let problems = rules::check_observation(&obs, expected_loinc(&reading), true);
        assert!(problems.is_empty(), "{name}: {problems:?}");
        if let Some(status) = unit.status_observation() {
            check_snapshot(&format!("{name}_status"), status.observation);
            let bits: Value = serde_json::from_str(status.observation).expect("json");
            let problems = rules::check_bits_observation(&bits, &obs);
            assert!(problems.is_empty(), "{name} status: {problems:?}");
        }
    }
    let unit = map_reading(&example_readings()[0].1, &example_map_context(true)).expect("map");
    check_snapshot("device_measuring", unit.device_json());
    check_snapshot("device_gateway", unit.gateway_json());
}

#[test]
fn precision_is_kept_in_the_json_text() {
    let all = example_readings();
    let find = |n: &str| {
        let r = &all.iter().find(|(name, _)| *name == n).expect(n).1;
        map_reading(r, &example_map_context(true)).expect(n)
    };
    assert!(
        find("body_temperature")
            .observation_json()
            .contains("\"value\":36.50,")
    );
    assert!(
        find("oxygen_saturation")
            .observation_json()
            .contains("\"value\":98.0,")
    );
    assert!(
        find("body_weight")
            .observation_json()
            .contains("\"value\":70.0,")
    );
    assert!(
        find("body_height")
            .observation_json()
            .contains("\"value\":175,\"unit\":\"cm\"")
    );
    assert!(
        find("blood_glucose_molar")
            .observation_json()
            .contains("\"value\":5.1,")
    );
}

#[test]
fn special_values_become_data_absent_reason() {
    for (name, code) in [
        ("special_nan", "NaN"),
        ("special_nres", "error"),
        ("special_pinf", "PINF"),
        ("special_ninf", "NINF"),
    ] {
        let r = example_readings()
            .into_iter()
            .find(|(n, _)| *n == name)
            .expect(name)
            .1;
        let unit = map_reading(&r, &example_map_context(true)).expect(name);
        let obs: Value = serde_json::from_str(unit.observation_json()).expect("json");
        assert!(obs["valueQuantity"].is_null(), "{name}");
        assert_eq!(obs["dataAbsentReason"]["coding"][0]["code"], code, "{name}");
    }
}

#[test]
fn without_patient_there_is_no_subject_and_no_vital_signs_claim() {
    for (name, reading) in example_readings() {
        let unit = map_reading(&reading, &example_map_context(false)).expect(name);
        let obs: Value = serde_json::from_str(unit.observation_json()).expect("json");
        assert!(obs["subject"].is_null(), "{name}");
        let problems = rules::check_observation(&obs, expected_loinc(&reading), false);
        assert!(problems.is_empty(), "{name}: {problems:?}");
        assert!(unit.identifier().value.contains("no-patient"));
    }
}

#[test]
fn invalid_patient_reference_is_refused() {
    let r = example_readings().remove(0).1;
    let mut ctx = example_map_context(true);
    for bad in ["123", "Patient/", "patient/1", "Patient/a b", "Patient/€"] {
        ctx.patient = Some(bad.into());
        assert!(
            matches!(
                map_reading(&r, &ctx),
                Err(MapError::InvalidPatientReference(_))
            ),
            "{bad}"
        );
    }
}

fn with_time(mut r: Reading, t: Option<DeviceTime>, offset: Option<i64>) -> Reading {
    r.device_time = t;
    r.clock.device_offset_seconds = offset;
    r
}

fn effective(r: &Reading) -> (String, Value) {
    let unit = map_reading(r, &example_map_context(true)).expect("map");
    let obs: Value = serde_json::from_str(unit.observation_json()).expect("json");
    let source = obs["component"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["code"]["text"] == "effective-time-source")
        .map(|c| c["valueString"].clone())
        .unwrap_or(Value::Null);
    (
        obs["effectiveDateTime"]
            .as_str()
            .expect("effective")
            .to_owned(),
        source,
    )
}

#[test]
fn effective_time_rules() {
    let base = example_readings().remove(0).1; // received 2026-01-02T10:00:00Z
    let t = |year, hours, minutes| DeviceTime {
        year,
        month: 1,
        day: 2,
        hours,
        minutes,
        seconds: 0,
    };
    // Device clock 3600 s ahead: device 10:30 → 09:30 UTC.
    assert_eq!(
        effective(&with_time(base.clone(), Some(t(2026, 10, 30)), Some(3600))).0,
        "2026-01-02T09:30:00Z"
    );
    // Year 0 → receive time and a flag.
    let (time, source) = effective(&with_time(base.clone(), Some(t(0, 9, 0)), Some(0)));
    assert_eq!(time, "2026-01-02T10:00:00Z");
    assert!(source.as_str().is_some_and(|s| s.contains("not set")));
    // Corrected time in the future → receive time and a flag.
    let (time, source) = effective(&with_time(base.clone(), Some(t(2026, 11, 0)), Some(0)));
    assert_eq!(time, "2026-01-02T10:00:00Z");
    assert!(source.as_str().is_some_and(|s| s.contains("future")));
    // No known offset → receive time, raw device time kept.
    let r = with_time(base.clone(), Some(t(2026, 9, 0)), None);
    let unit = map_reading(&r, &example_map_context(true)).expect("map");
    assert!(
        unit.observation_json()
            .contains("\"valueString\":\"2026-01-02T09:00:00\"")
    );
    assert!(
        effective(&r)
            .1
            .as_str()
            .is_some_and(|s| s.contains("offset unknown"))
    );
    // Device says its clock is not set.
    let mut r = with_time(base, Some(t(2026, 9, 0)), Some(0));
    r.status.push(StatusFlag::DeviceClockNotSet);
    assert_eq!(effective(&r).0, "2026-01-02T10:00:00Z");
}

#[test]
fn identifiers_are_deterministic_bounded_and_distinct() {
    let ctx = example_map_context(true);
    let all = example_readings();
    let mut seen = std::collections::HashSet::new();
    for (name, r) in &all {
        let a = map_reading(r, &ctx).expect(name);
        let b = map_reading(r, &ctx).expect(name);
        assert_eq!(a, b, "{name}: mapping is deterministic");
        assert!(a.identifier().value.len() <= identity::MAX_IDENTIFIER_LEN);
        assert_eq!(a.id().len(), 64);
        assert!(a.id().chars().all(|c| c.is_ascii_hexdigit()));
        assert!(
            seen.insert(a.identifier().to_identifier()),
            "{name}: identifier collides"
        );
    }
    // A long device address is hashed, still ≤ 128 characters.
    let mut r = all[0].1.clone();
    r.device.system_id = None;
    r.device.address = "x".repeat(300);
    let unit = map_reading(&r, &ctx).expect("map");
    assert!(unit.identifier().value.starts_with("sha256-"));
    assert!(unit.identifier().value.len() <= identity::MAX_IDENTIFIER_LEN);
}

#[test]
fn upload_unit_round_trips_through_serde_and_refuses_broken_json() {
    let unit = map_reading(&example_readings()[0].1, &example_map_context(true)).expect("map");
    let stored = serde_json::to_vec(&unit).expect("serialise");
    let back: UploadUnit = serde_json::from_slice(&stored).expect("deserialise");
    assert_eq!(back, unit);
    let mut v: Value = serde_json::from_slice(&stored).expect("json");
    v["observation"] = Value::String("{not json".into());
    assert!(serde_json::from_value::<UploadUnit>(v).is_err());
}

#[test]
fn bundles_include_each_device_once_and_map_entries() {
    let ctx = example_map_context(true);
    let units: Vec<UploadUnit> = example_readings()
        .iter()
        .map(|(n, r)| map_reading(r, &ctx).expect(n))
        .collect();
    for (bundle_type, write_mode, name) in [
        (
            BundleType::Transaction,
            WriteMode::ConditionalCreate,
            "bundle_transaction_conditional",
        ),
        (BundleType::Batch, WriteMode::Put, "bundle_batch_put"),
    ] {
        let built = build_bundle(
            &units,
            &BundleOptions {
                bundle_type,
                write_mode,
            },
        );
        let b: Value = serde_json::from_str(built.json.get()).expect("json");
        let entries = b["entry"].as_array().expect("entries");
        // One gateway + one measuring device (all examples share it), then the observations,
        // each followed by its status-bits Observation when it has one.
        let with_status = units
            .iter()
            .filter(|u| u.status_observation().is_some())
            .count();
        assert!(with_status >= 2, "the BP examples carry status bits");
        assert_eq!(entries.len(), 2 + units.len() + with_status);
        assert_eq!(built.status_entries.len(), units.len());
        assert_eq!(entries[0]["request"]["url"], "Device");
        assert!(
            entries[0]["request"]["ifNoneExist"]
                .as_str()
                .is_some_and(|s| s.starts_with("identifier="))
        );
        assert_eq!(built.observation_entries.len(), units.len());
        for (i, unit) in units.iter().enumerate() {
            let e = &entries[built.observation_entries[i]];
            assert_eq!(
                e["resource"]["identifier"][0]["value"],
                unit.identifier().value
            );
            match write_mode {
                WriteMode::Put => {
                    assert_eq!(e["request"]["method"], "PUT");
                    assert_eq!(e["resource"]["id"], unit.id());
                    assert_eq!(e["request"]["url"], format!("Observation/{}", unit.id()));
                }
                WriteMode::ConditionalCreate => {
                    assert_eq!(e["request"]["method"], "POST");
                    assert!(e["resource"]["id"].is_null());
                }
            }
            // The Observation's device references resolve to fullUrls inside the bundle.
            let device_ref = e["resource"]["device"]["reference"].as_str().expect("ref");
            assert!(entries.iter().any(|x| x["fullUrl"] == device_ref));
            // The status Observation follows its measurement, is written the same way and
            // points back at it by the measurement's fullUrl.
            match (unit.status_observation(), built.status_entries[i]) {
                (Some(status), Some(at)) => {
                    assert_eq!(at, built.observation_entries[i] + 1);
                    let s = &entries[at];
                    assert_eq!(
                        s["resource"]["identifier"][0]["value"],
                        status.identifier.value
                    );
                    assert_eq!(s["resource"]["derivedFrom"][0]["reference"], e["fullUrl"]);
                    assert_eq!(s["request"]["method"], e["request"]["method"]);
                    if write_mode == WriteMode::Put {
                        assert_eq!(s["resource"]["id"], status.id);
                    }
                }
                (None, None) => {}
                other => panic!("status entry mismatch for unit {i}: {other:?}"),
            }
        }
        if name == "bundle_transaction_conditional" {
            check_snapshot(name, built.json.get());
        }
        // Exact decimals survive bundling.
        assert!(built.json.get().contains("\"value\":36.50,"));
    }
}

#[test]
fn cgm_time_offsets_from_different_sessions_do_not_merge() {
    let ctx = example_map_context(true);
    let mut r = example_readings()
        .into_iter()
        .find(|(n, _)| *n == "cgm_glucose")
        .expect("cgm")
        .1;
    r.device_time = None; // session start unknown
    let a = map_reading(&r, &ctx).expect("map");
    r.received_at += ::time::Duration::hours(30); // same offset, a later session
    let b = map_reading(&r, &ctx).expect("map");
    assert_ne!(a.identifier(), b.identifier());
    // A glucose meter's sequence number is unique: a re-read keeps the identifier.
    let mut g = example_readings()
        .into_iter()
        .find(|(n, _)| *n == "blood_glucose_mass")
        .expect("g")
        .1;
    g.device_time = None;
    let a = map_reading(&g, &ctx).expect("map");
    g.received_at += ::time::Duration::hours(30);
    assert_eq!(
        map_reading(&g, &ctx).expect("map").identifier(),
        a.identifier()
    );
}

#[test]
fn upload_unit_names_the_stored_record_it_came_from() {
    let ctx = example_map_context(true);
    let mut g = example_readings()
        .into_iter()
        .find(|(n, _)| *n == "blood_glucose_mass")
        .expect("g")
        .1;
    g.sequence = Some(41);
    let unit = map_reading(&g, &ctx).expect("map");
    assert_eq!(
        unit.source_record(),
        Some(&SourceRecord {
            device: g.device.address.clone(),
            sequence: 41
        })
    );
    let back: UploadUnit =
        serde_json::from_slice(&serde_json::to_vec(&unit).expect("ser")).expect("de");
    assert_eq!(back.source_record(), unit.source_record());

    // A live measurement has no stored record, and payloads queued before the field existed
    // (no `source_record` key) still load.
    g.sequence = None;
    let live = map_reading(&g, &ctx).expect("map");
    assert_eq!(live.source_record(), None);
    let stored: Value = serde_json::to_value(&live).expect("ser");
    assert!(stored.get("source_record").is_none());
    let old: UploadUnit = serde_json::from_value(stored).expect("old payload loads");
    assert_eq!(old, live);
}
