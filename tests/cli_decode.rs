//! The `decode` command end to end (the built binary).

use std::process::{Command, Output};

fn decode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vectorcare-gateway"))
        .arg("decode")
        .args(args)
        .output()
        .expect("run the binary")
}

const BP_FULL: &str = "1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00";

#[test]
fn json_output_is_one_object_with_readings_and_resources() {
    let out = decode(&[
        "--uuid",
        "2a35",
        "--hex",
        BP_FULL,
        "--patient",
        "Patient/123",
        "--received-at",
        "2026-01-02T10:00:00Z",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(text.trim().lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["readings", "resources"]);
    assert_eq!(v["readings"].as_array().map(Vec::len), Some(2));
    let types: Vec<&str> = v["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["resourceType"].as_str())
        .collect();
    // Each reading's Observation is followed by its PHD status-bits Observation (the cuff set
    // status bits 0, 1, 2 and 5), then the measuring and the gateway Device.
    assert_eq!(
        types,
        [
            "Observation",
            "Observation",
            "Observation",
            "Observation",
            "Device",
            "Device"
        ]
    );
    assert_eq!(v["resources"][0]["subject"]["reference"], "Patient/123");
    for status in [&v["resources"][1], &v["resources"][3]] {
        assert!(
            status["derivedFrom"].is_array(),
            "status Observation: {status}"
        );
    }
}

#[test]
fn without_patient_no_subject_is_invented() {
    let out = decode(&["--uuid", "0x2A37", "--hex", "06 48", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["resources"][0]["subject"].is_null());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Patient"));
}

#[test]
fn precision_survives_to_stdout() {
    // Temperature 36.50 Cel (FLOAT mantissa 3650, exponent -2).
    let out = decode(&["--uuid", "2a1c", "--hex", "00 42 0E 00 FE", "--json"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"value\":36.50,"));
}

#[test]
fn malformed_bytes_exit_65_naming_field_and_offset() {
    let out = decode(&["--uuid", "2a35", "--hex", "1E 8A 00 58"]);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("diastolic") && err.contains("byte 3"), "{err}");
    let out = decode(&["--uuid", "2a35", "--hex", "1E 8"]);
    assert_eq!(out.status.code(), Some(65));
}

#[test]
fn unknown_uuid_is_a_usage_error() {
    let out = decode(&["--uuid", "2a19", "--hex", "64"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn config_supplies_patient_gateway_and_identifier_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[gateway]\nid = \"hub-7\"\nname = \"Hub seven\"\npatient = \"Patient/from-config\"\n\
         [fhir]\nidentifier_system = \"urn:example:obs\"\n",
    )
    .expect("write config");
    let config = config.to_str().expect("utf8");
    let out = decode(&[
        "--uuid", "2a37", "--hex", "06 48", "--config", config, "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let observation = &v["resources"][0];
    assert_eq!(observation["subject"]["reference"], "Patient/from-config");
    assert_eq!(observation["identifier"][0]["system"], "urn:example:obs");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hub-7"),
        "the gateway Device carries the configured id"
    );

    // --patient wins over the config's patient.
    let out = decode(&[
        "--uuid",
        "2a37",
        "--hex",
        "06 48",
        "--config",
        config,
        "--patient",
        "Patient/cli",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["resources"][0]["subject"]["reference"], "Patient/cli");

    // A broken config is a configuration error (78), named.
    std::fs::write(dir.path().join("bad.toml"), "[gateway]\nid = \"hub 7\"\n").expect("write");
    let bad = dir.path().join("bad.toml");
    let out = decode(&[
        "--uuid",
        "2a37",
        "--hex",
        "06 48",
        "--config",
        bad.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gateway.id"));
}
