//! Bad input everywhere (issue #9): fuzzed GATT bytes, serial garbage, malformed MQTT JSON,
//! broken config files and a corrupted queue → clear errors, no panic, no crash loop.
//!
//! What already exists and is not repeated here: per-decoder round-trip and any-bytes
//! proptests (`src/decode/gatt/tests.rs`, `src/decode/ieee11073/tests.rs`), the cargo-fuzz
//! targets (`scripts/fuzz`, `tests/fuzz/`, opt-in), `tests/cli_decode.rs` (bad hex → 65) and
//! record-level quarantine (`src/queue/tests.rs`,
//! `corrupt_records_are_quarantined_and_the_rest_keeps_working`). This file adds the
//! whole-path checks: every characteristic's bytes → readings → FHIR, the serial framer in front
//! of every line format, every MQTT payload format, the `validate` and `run` processes on broken
//! files, and `run`/`queue stats` on damaged sled files.
//!
//! Command: `cargo test --test reliability_bad_input -- --nocapture` (≈ 30 s in a debug build).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use vectorcare_gateway::decode::gatt::{
    DecodeContext, FeatureContext, readings_from_characteristic, uuids,
};
use vectorcare_gateway::decode::mqtt::{PayloadContext, PayloadFormat, decode_payload};
use vectorcare_gateway::decode::serial::framing::{Frame, LineFramer};
use vectorcare_gateway::decode::serial::{LineFormat, masimo};
use vectorcare_gateway::fhir::examples::{example_device, example_map_context};
use vectorcare_gateway::fhir::{BundleOptions, BundleType, WriteMode, build_bundle, map_reading};
use vectorcare_gateway::reading::{ClockContext, Reading};

const EXE: &str = env!("CARGO_BIN_EXE_vectorcare-gateway");

/// Every characteristic the decoder knows, plus ids it must refuse.
const UUIDS: [u16; 21] = [
    uuids::DATE_TIME,
    uuids::GLUCOSE_MEASUREMENT,
    uuids::TEMPERATURE_MEASUREMENT,
    uuids::TEMPERATURE_TYPE,
    uuids::INTERMEDIATE_TEMPERATURE,
    uuids::CURRENT_TIME,
    uuids::GLUCOSE_MEASUREMENT_CONTEXT,
    uuids::BLOOD_PRESSURE_MEASUREMENT,
    uuids::INTERMEDIATE_CUFF_PRESSURE,
    uuids::HEART_RATE_MEASUREMENT,
    uuids::BLOOD_PRESSURE_FEATURE,
    uuids::RECORD_ACCESS_CONTROL_POINT,
    uuids::PLX_SPOT_CHECK_MEASUREMENT,
    uuids::PLX_CONTINUOUS_MEASUREMENT,
    uuids::PLX_FEATURES,
    uuids::WEIGHT_MEASUREMENT,
    uuids::WEIGHT_SCALE_FEATURE,
    uuids::CGM_MEASUREMENT,
    0x2A19, // battery level: not a health characteristic
    0x0000,
    0xFFFF,
];

/// Valid values (Bluetooth SIG layouts) that the mutation test starts from.
fn valid_frames() -> Vec<(u16, Vec<u8>)> {
    vec![
        (uuids::HEART_RATE_MEASUREMENT, vec![0x00, 72]),
        (
            uuids::BLOOD_PRESSURE_MEASUREMENT,
            vec![
                0x1E, 0x8A, 0x00, 0x58, 0x00, 0x78, 0x00, 0x00, 0x00, 0x04, 0x11, 0x14, 0x29, 0x3B,
                0x3C, 0x00, 0x01, 0x27, 0x00,
            ],
        ),
        // 36.8 °C as FLOAT (exponent -1, mantissa 368).
        (
            uuids::TEMPERATURE_MEASUREMENT,
            vec![0x00, 0x70, 0x01, 0x00, 0xFF],
        ),
        // 70 kg in 5 g steps.
        (uuids::WEIGHT_MEASUREMENT, vec![0x00, 0xB0, 0x36]),
        // SpO2 98 %, pulse 72 /min as SFLOAT.
        (
            uuids::PLX_SPOT_CHECK_MEASUREMENT,
            vec![0x00, 0x62, 0x00, 0x48, 0x00],
        ),
    ]
}

fn gatt_context(offset_minutes: i16, synced: bool, cgm_crc: bool) -> DecodeContext {
    DecodeContext {
        device: example_device(),
        received_at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        clock: ClockContext {
            device_offset_seconds: Some(i64::from(offset_minutes) * 60),
            gateway_clock_synchronized: synced,
        },
        features: FeatureContext {
            cgm_e2e_crc: cgm_crc,
            ..FeatureContext::default()
        },
    }
}

/// What must hold for whatever a decoder accepted: every reading maps to FHIR and bundles.
fn maps_and_bundles(readings: &[Reading]) -> Result<(), TestCaseError> {
    let ctx = example_map_context(true);
    let mut units = Vec::new();
    for r in readings {
        match map_reading(r, &ctx) {
            Ok(unit) => units.push(unit),
            Err(err) => {
                return Err(TestCaseError::fail(format!(
                    "decoded reading does not map: {err}"
                )));
            }
        }
    }
    let built = build_bundle(
        &units,
        &BundleOptions {
            bundle_type: BundleType::Transaction,
            write_mode: WriteMode::ConditionalCreate,
        },
    );
    prop_assert_eq!(built.observation_entries.len(), units.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Random bytes for every characteristic, with random clock and feature context.
    #[test]
    fn gatt_random_bytes_for_every_characteristic(
        which in 0..UUIDS.len(),
        bytes in proptest::collection::vec(any::<u8>(), 0..96),
        offset in any::<i16>(),
        synced in any::<bool>(),
        cgm_crc in any::<bool>(),
    ) {
        let ctx = gatt_context(offset, synced, cgm_crc);
        if let Ok(readings) = readings_from_characteristic(UUIDS[which], &bytes, &ctx) {
            maps_and_bundles(&readings)?;
        }
    }

    /// Valid values with bytes flipped, truncated or extended: the realistic radio damage.
    #[test]
    fn gatt_mutated_valid_values(
        which in 0..5usize,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let (uuid, mut bytes) = valid_frames()[which].clone();
        for (at, mask) in flips {
            let i = at % bytes.len();
            bytes[i] ^= mask;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        bytes.extend(tail);
        if let Ok(readings) = readings_from_characteristic(uuid, &bytes, &gatt_context(0, true, false)) {
            maps_and_bundles(&readings)?;
        }
    }
}

#[test]
fn the_valid_frames_used_for_mutation_decode() {
    for (uuid, bytes) in valid_frames() {
        let readings = readings_from_characteristic(uuid, &bytes, &gatt_context(0, true, false))
            .unwrap_or_else(|e| panic!("{uuid:04X} {bytes:02X?}: {e}"));
        assert!(!readings.is_empty(), "{uuid:04X} gives readings");
    }
}

fn payload_context() -> PayloadContext {
    PayloadContext {
        device: example_device(),
        received_at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        clock: ClockContext {
            device_offset_seconds: None,
            gateway_clock_synchronized: true,
        },
    }
}

/// Every serial line format the gateway has (as the simulator's loopback configures them).
fn line_formats() -> Vec<LineFormat> {
    use vectorcare_gateway::simulator::loopback::serial_format;
    use vectorcare_gateway::simulator::scenario::SerialProtocol;
    vec![
        serial_format(SerialProtocol::Masimo),
        serial_format(SerialProtocol::Ndjson),
        serial_format(SerialProtocol::Csv),
    ]
}

const MASIMO_LINE: &str = "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800";

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Garbage on the wire (wrong baud rate, noise), in random chunks, through the framer and
    /// every line format; a good line after the garbage still decodes (resynchronisation).
    #[test]
    fn serial_garbage_then_a_good_line(
        garbage in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in 1usize..64,
    ) {
        let max_line = 256;
        let mut framer = LineFramer::new(max_line);
        let mut frames = Vec::new();
        let mut stream = garbage;
        stream.push(b'\n');
        stream.extend_from_slice(MASIMO_LINE.as_bytes());
        stream.extend_from_slice(b"\r\n");
        for part in stream.chunks(chunk) {
            framer.push(part, &mut frames);
        }
        let formats = line_formats();
        for frame in &frames {
            if let Frame::Line(line) = frame {
                prop_assert!(line.len() <= max_line);
                for format in &formats {
                    if let Ok(readings) = format.decode_line(line, &payload_context()) {
                        maps_and_bundles(&readings)?;
                    }
                }
            }
        }
        prop_assert_eq!(frames.last(), Some(&Frame::Line(MASIMO_LINE.to_owned())));
        let readings = masimo::decode_line(MASIMO_LINE, &payload_context());
        prop_assert_eq!(readings.map(|r| r.len()).ok(), Some(2));
    }

    /// Lines that look almost right: a valid Masimo line with characters replaced or cut.
    #[test]
    fn serial_mutated_lines(
        edits in proptest::collection::vec((any::<usize>(), any::<char>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut chars: Vec<char> = MASIMO_LINE.chars().collect();
        for (at, c) in edits {
            let i = at % chars.len();
            chars[i] = c;
        }
        chars.truncate(cut % (chars.len() + 1));
        let line: String = chars.into_iter().collect();
        for format in line_formats() {
            if let Ok(readings) = format.decode_line(&line, &payload_context()) {
                maps_and_bundles(&readings)?;
            }
        }
    }
}

const FORMATS: [PayloadFormat; 3] = [
    PayloadFormat::Vitals,
    PayloadFormat::OpenMhealth,
    PayloadFormat::FhirObservation,
];

const VALID_PAYLOADS: [&str; 3] = [
    r#"{"schema": "vectorcare.vitals/1", "device": {"manufacturer": "Acme", "model": "BP-200", "serial_number": "SN123"}, "readings": [{"kind": "blood_pressure", "systolic": 128, "diastolic": 82, "mean": 97, "unit": "mmHg", "time": "2026-11-28T10:15:00+01:00", "status": ["irregular_pulse"], "user": 1, "sequence": 42}, {"kind": "pulse_rate", "value": 66}, {"kind": "body_temperature", "value": 36.80, "unit": "Cel"}]}"#,
    r#"{"header": {"schema_id": {"namespace": "omh", "name": "blood-pressure", "version": "1.0"}}, "body": {"systolic_blood_pressure": {"value": 160, "unit": "mmHg"}, "diastolic_blood_pressure": {"value": 60, "unit": "mmHg"}, "effective_time_frame": {"date_time": "2026-11-28T10:15:00Z"}}}"#,
    r#"{"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "effectiveDateTime": "2026-11-28T10:15:00Z", "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}"#,
];

/// Arbitrary JSON documents, nested a few levels, with the schemas' own key names mixed in.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("kind".to_owned()),
        Just("value".to_owned()),
        Just("unit".to_owned()),
        Just("time".to_owned()),
        Just("readings".to_owned()),
        Just("systolic".to_owned()),
        Just("resourceType".to_owned()),
        Just("valueQuantity".to_owned()),
        Just("body".to_owned()),
        Just("header".to_owned()),
        "[a-z_]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        prop_oneof![
            Just("heart_rate".to_owned()),
            Just("blood_pressure".to_owned()),
            Just("Observation".to_owned()),
            Just("2026-11-28T10:15:00Z".to_owned()),
            Just("9999-99-99T99:99:99Z".to_owned()),
            Just("1e999999".to_owned()),
            ".{0,20}",
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mqtt_random_bytes_for_every_format(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        which in 0..3usize,
    ) {
        check_payload(FORMATS[which], &bytes)?;
    }

    #[test]
    fn mqtt_random_json_for_every_format(value in json_value(), which in 0..3usize) {
        let text = serde_json::to_vec(&value).expect("serialises");
        check_payload(FORMATS[which], &text)?;
    }

    /// Valid payloads cut short or with bytes replaced (a broker or device sending half a message).
    #[test]
    fn mqtt_mutated_valid_payloads(
        which in 0..3usize,
        cut in any::<usize>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = VALID_PAYLOADS[which].as_bytes().to_vec();
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        check_payload(FORMATS[which], &bytes)?;
    }
}

fn check_payload(format: PayloadFormat, bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode_payload(format, bytes, &payload_context()) {
        Ok(readings) => {
            prop_assert!(!readings.is_empty(), "Ok means at least one reading");
            maps_and_bundles(&readings)
        }
        Err(err) => {
            prop_assert!(!err.to_string().is_empty());
            Ok(())
        }
    }
}

#[test]
fn the_valid_payloads_used_for_mutation_decode() {
    for (format, payload) in FORMATS.iter().zip(VALID_PAYLOADS) {
        let readings = decode_payload(*format, payload.as_bytes(), &payload_context())
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert!(!readings.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: broken config files and damaged queue files.

fn gateway(args: &[&str]) -> Output {
    Command::new(EXE)
        .args(args)
        .env_remove("VECTORCARE_CONFIG")
        .env_remove("VECTORCARE_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run the binary")
}

/// No panic, no abort, no signal: a clear error is one that the code chose.
fn assert_no_crash(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some() && out.status.code() != Some(101),
        "{what}: crashed ({:?}): {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{what}: panicked: {stderr}");
}

fn example_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/gateway.example.toml"
    ))
    .expect("example config")
}

#[test]
fn broken_config_files_exit_78_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = example_config();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("binary".into(), (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()),
        ("nul bytes".into(), vec![0; 1000]),
        ("not utf-8".into(), b"[gateway]\nid = \"\xff\xfe\"\n".to_vec()),
        (
            "wrong types".into(),
            b"[gateway]\nid = 5\npatient = [1]\n[queue]\nmax_records = \"many\"\n[sources]\nble = 3\n"
                .to_vec(),
        ),
        ("unknown key".into(), b"[gateway]\nidd = \"hub\"\n".to_vec()),
        (
            "huge value (16 MiB)".into(),
            format!("[gateway]\nid = \"{}\"\n", "a".repeat(16 << 20)).into_bytes(),
        ),
        (
            "deeply nested (100k)".into(),
            format!("a = {}{}\n", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        ),
    ];
    // The example config cut at 40 places (mid-key, mid-string, mid-table header...).
    let step = example.len() / 40;
    for i in 1..40 {
        let mut cut = i * step;
        while !example.is_char_boundary(cut) {
            cut += 1;
        }
        cases.push((
            format!("example cut at byte {cut}"),
            example.as_bytes()[..cut].to_vec(),
        ));
    }
    let mut refused = 0;
    for (name, bytes) in &cases {
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, bytes).expect("write");
        let started = Instant::now();
        let out = gateway(&["validate", "--config", path.to_str().expect("utf-8")]);
        assert_no_crash(name, &out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A truncation may happen to leave a valid file (exit 0); nothing else is allowed.
        match out.status.code() {
            Some(0) => assert!(name.starts_with("example cut"), "{name}: accepted"),
            Some(78) => {
                refused += 1;
                assert!(
                    stderr.contains("gateway.toml") && stderr.lines().count() < 200,
                    "{name}: the message names the file and stays readable: {}",
                    &stderr[..stderr.len().min(2000)]
                );
            }
            other => panic!("{name}: exit {other:?}: {stderr}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name}: took {:?}",
            started.elapsed()
        );
    }
    // `run` refuses the same way before touching anything (the unit's ExecStartPre is validate;
    // `run` alone must not crash-loop either).
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, b"[gateway]\nid = 5\n").expect("write");
    let out = gateway(&["run", "--config", path.to_str().expect("utf-8")]);
    assert_no_crash("run with wrong types", &out);
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A directory and a missing file are configuration problems too.
    for path in [dir.path().to_path_buf(), dir.path().join("missing.toml")] {
        let out = gateway(&["validate", "--config", path.to_str().expect("utf-8")]);
        assert_no_crash("unreadable", &out);
        assert_eq!(out.status.code(), Some(78));
    }
    eprintln!(
        "broken configs: {} cases, {refused} refused with 78, the rest valid truncations of the example",
        cases.len()
    );
    // The 8 hand-made cases are all refused (checked above); cuts inside a string, a key or a
    // table header are refused too (the example's keys are optional, so many cuts are valid).
    assert!(refused > 8, "truncations inside TOML syntax are refused");
}

/// A queue with `n` records, written through the queue API, closed.
fn make_queue(dir: &Path, n: usize) {
    use vectorcare_gateway::queue::{QueueConfig, SledQueue};
    let q = SledQueue::open(dir, &QueueConfig::default()).expect("open");
    for chunk in 0..n / 50 {
        let batch = (0..50)
            .map(|i| {
                format!(
                    "{{\"record\":{},\"pad\":\"{}\"}}",
                    chunk * 50 + i,
                    "x".repeat(700)
                )
                .into_bytes()
            })
            .collect();
        q.append_blocking(batch).expect("append");
    }
    q.close().expect("close");
    // Reopened once, as after any restart: sled writes its snapshot file at open.
    SledQueue::open(dir, &QueueConfig::default())
        .expect("reopen")
        .close()
        .expect("close");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A file of the queue's (only) segment database, `segments/<first id>/`.
fn sled_file(state: &Path, prefix: &str) -> PathBuf {
    let segment = state.join("segments").join(format!("{:020}", 1));
    std::fs::read_dir(segment)
        .expect("queue dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no sled file {prefix}*"))
}

fn damage(path: &Path, how: &str) {
    let mut bytes = std::fs::read(path).expect("read");
    match how {
        // Every 4 KiB page gets 8 bytes inverted: bit rot across the whole log.
        "flip every page" => {
            for page in (0..bytes.len()).step_by(4096) {
                for b in bytes.iter_mut().skip(page + 100).take(8) {
                    *b ^= 0xFF;
                }
            }
        }
        "flip header" => bytes.iter_mut().take(64).for_each(|b| *b ^= 0xA5),
        "truncate to half" => bytes.truncate(bytes.len() / 2),
        "truncate to zero" => bytes.clear(),
        "garbage" => bytes
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i * 31 % 251) as u8),
        other => panic!("unknown damage {other}"),
    }
    std::fs::write(path, bytes).expect("write");
}

/// Runs the daemon on `state` (no sources, no upload) for up to `wait`; SIGTERM if still up.
fn run_daemon(dir: &Path, state: &Path, wait: Duration) -> Output {
    let config = dir.join(format!(
        "{}.toml",
        state.file_name().and_then(|n| n.to_str()).expect("name")
    ));
    std::fs::write(
        &config,
        format!("[gateway]\nid = \"bad-input\"\npatient = \"Patient/x\"\nstate_dir = {state:?}\n\n[clock]\nassume_synchronized = true\n"),
    )
    .expect("config");
    let child = Command::new(EXE)
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("VECTORCARE_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as i32;
    let deadline = Instant::now() + wait;
    let status_path = PathBuf::from(format!("/proc/{pid}/stat"));
    // Poll for exit without reaping (wait_with_output reaps afterwards).
    while Instant::now() < deadline {
        let state = std::fs::read_to_string(&status_path).unwrap_or_default();
        if state.is_empty() || state.contains(") Z ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if Instant::now() >= deadline {
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    child.wait_with_output().expect("wait")
}

/// The systemd unit's RestartPreventExitStatus values.
fn restart_prevent_codes() -> Vec<i32> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/vectorcare-gateway.service"
    ))
    .expect("unit");
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix("RestartPreventExitStatus="))
        .flat_map(|v| {
            v.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_damaged_queue_is_reported_clearly_without_panic_or_restart_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pristine = dir.path().join("pristine");
    make_queue(&pristine, 2000);
    let stop_codes = restart_prevent_codes();
    let cases = [
        ("db", "flip every page"),
        ("db", "flip header"),
        ("db", "truncate to half"),
        ("db", "truncate to zero"),
        ("snap.", "garbage"),
        ("conf", "garbage"),
    ];
    let mut refused = 0;
    for (i, (file, how)) in cases.iter().enumerate() {
        let state = dir.path().join(format!("case{i}"));
        copy_dir(&pristine, &state);
        damage(&sled_file(&state, file), how);
        let what = format!("{file} {how}");

        let stats = gateway(&[
            "queue",
            "--data-dir",
            state.to_str().expect("utf-8"),
            "stats",
        ]);
        assert_no_crash(&format!("queue stats, {what}"), &stats);
        let run = run_daemon(dir.path(), &state, Duration::from_secs(8));
        assert_no_crash(&format!("run, {what}"), &run);
        let run_err = String::from_utf8_lossy(&run.stderr);
        let stats_err = String::from_utf8_lossy(&stats.stderr);
        eprintln!(
            "{what}: queue stats exit {:?}, run exit {:?}: {}",
            stats.status.code(),
            run.status.code(),
            run_err
                .lines()
                .filter(|l| l.starts_with("error"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        match run.status.code() {
            // Damage sled did not notice (stale log regions): the daemon ran and stopped on
            // SIGTERM; the queue still answers.
            Some(0) => assert_eq!(stats.status.code(), Some(0), "{what}: {stats_err}"),
            Some(code) => {
                refused += 1;
                assert_eq!(
                    code, 65,
                    "{what}: a damaged queue exits 65 (data error): {run_err}"
                );
                assert!(
                    stop_codes.contains(&code),
                    "{what}: exit {code} is in the unit's RestartPreventExitStatus {stop_codes:?}"
                );
                assert!(
                    run_err.contains("damaged") && run_err.contains(state.to_str().expect("utf-8")),
                    "{what}: the message says what is wrong and where: {run_err}"
                );
                assert_eq!(stats.status.code(), Some(65), "{what}: {stats_err}");
            }
            None => unreachable!("assert_no_crash"),
        }
    }
    eprintln!(
        "damaged queues: {} cases, {refused} refused at start with exit 65",
        cases.len()
    );
    assert!(refused >= 4, "truncation and garbage are detected");
}

#[test]
fn the_decoders_are_fed_from_serial_and_mqtt_configs_with_every_format() {
    // Guard for the proptests above: the formats they use are the real ones.
    let formats = line_formats();
    assert!(matches!(formats[0], LineFormat::Masimo));
    assert!(matches!(formats[1], LineFormat::Ndjson(_)));
    assert!(matches!(formats[2], LineFormat::Pattern(_)));
}
