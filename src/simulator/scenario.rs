//! Scenario files (TOML): what devices exist, how they measure, when they misbehave.
//!
//! ```toml
//! [scenario]
//! name = "heart-rate"
//! seed = 7                      # values, jitter and garbage all derive from it
//! duration_seconds = 600        # scenario time (see `--speed`)
//! start = "2026-11-23T07:00:00Z"  # optional: device clocks start here (default: now)
//!
//! [[devices]]
//! name = "strap"
//! transport = "ble"             # ble | serial | mqtt
//! profile = "heart_rate"        # ble: heart_rate blood_pressure thermometer pulse_oximeter
//!                               #      weight_scale glucose cgm
//! interval_seconds = 1.0
//! jitter = 0.1                  # ± fraction of the interval
//! [devices.streams.heart_rate]  # optional: overrides the realistic default
//! min = 50
//! max = 150
//! start = 72
//! step = 2
//! trend_per_hour = 30
//! [[devices.faults]]
//! at_seconds = 120
//! kind = "disconnect"           # disconnect garbage special_value clock_unset
//! duration_seconds = 10         # stored_records burst slow
//! ```
//!
//! Every problem is reported with its key path (`devices[1].faults[0].kind`), like the gateway
//! configuration (`config::Problems`). docs/SIMULATOR.md is the reference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vectorcare_hal::ble::BleAddress;

use super::stream::{Quantity, StreamSpec};
use crate::config::Problems;

/// The longest scenario (a month of scenario time).
pub const MAX_DURATION_SECONDS: f64 = 31.0 * 86_400.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenario: RawHeader,
    #[serde(default)]
    devices: Vec<RawDevice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "one")]
    seed: u64,
    duration_seconds: f64,
    start: Option<String>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: String,
    transport: String,
    profile: Option<String>,
    protocol: Option<String>,
    schema: Option<String>,
    measures: Option<String>,
    address: Option<String>,
    topic: Option<String>,
    serial_number: Option<String>,
    interval_seconds: f64,
    #[serde(default)]
    jitter: f64,
    #[serde(default)]
    start_offset_seconds: f64,
    #[serde(default)]
    streams: BTreeMap<String, StreamSpec>,
    #[serde(default)]
    faults: Vec<RawFault>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at_seconds: f64,
    kind: String,
    duration_seconds: Option<f64>,
    count: Option<u32>,
    bytes: Option<usize>,
    value: Option<String>,
    factor: Option<f64>,
}

/// BLE profiles the peripheral side serves (CGM included, although the gateway's BLE source
/// does not read CGM yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BleProfile {
    HeartRate,
    BloodPressure,
    Thermometer,
    PulseOximeter,
    WeightScale,
    Glucose,
    Cgm,
}

impl BleProfile {
    pub const ALL: [BleProfile; 7] = [
        BleProfile::HeartRate,
        BleProfile::BloodPressure,
        BleProfile::Thermometer,
        BleProfile::PulseOximeter,
        BleProfile::WeightScale,
        BleProfile::Glucose,
        BleProfile::Cgm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BleProfile::HeartRate => "heart_rate",
            BleProfile::BloodPressure => "blood_pressure",
            BleProfile::Thermometer => "thermometer",
            BleProfile::PulseOximeter => "pulse_oximeter",
            BleProfile::WeightScale => "weight_scale",
            BleProfile::Glucose => "glucose",
            BleProfile::Cgm => "cgm",
        }
    }

    fn quantities(self) -> &'static [Quantity] {
        use Quantity as Q;
        match self {
            BleProfile::HeartRate => &[Q::HeartRate],
            BleProfile::BloodPressure => &[Q::Systolic, Q::Diastolic, Q::Pulse],
            BleProfile::Thermometer => &[Q::Temperature],
            BleProfile::PulseOximeter => &[Q::Spo2, Q::Pulse],
            BleProfile::WeightScale => &[Q::Weight],
            BleProfile::Glucose | BleProfile::Cgm => &[Q::Glucose],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialProtocol {
    /// Masimo "ASCII 1" lines (SpO2 + pulse).
    Masimo,
    /// `{"hr":72,"spo2":97,"ts":"…"}` lines (the gateway's `ndjson` format with a field map).
    Ndjson,
    /// `HR,72,/min` lines (the gateway's `pattern` format).
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttSchema {
    Vitals,
    OpenMhealth,
    FhirObservation,
}

/// What an MQTT device measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttMeasure {
    BloodPressure,
    HeartRate,
    BodyTemperature,
    OxygenSaturation,
    BodyWeight,
    BloodGlucose,
}

impl MqttMeasure {
    const NAMES: [(&'static str, MqttMeasure); 6] = [
        ("blood_pressure", MqttMeasure::BloodPressure),
        ("heart_rate", MqttMeasure::HeartRate),
        ("body_temperature", MqttMeasure::BodyTemperature),
        ("oxygen_saturation", MqttMeasure::OxygenSaturation),
        ("body_weight", MqttMeasure::BodyWeight),
        ("blood_glucose", MqttMeasure::BloodGlucose),
    ];

    fn quantities(self) -> &'static [Quantity] {
        use Quantity as Q;
        match self {
            MqttMeasure::BloodPressure => &[Q::Systolic, Q::Diastolic],
            MqttMeasure::HeartRate => &[Q::HeartRate],
            MqttMeasure::BodyTemperature => &[Q::Temperature],
            MqttMeasure::OxygenSaturation => &[Q::Spo2],
            MqttMeasure::BodyWeight => &[Q::Weight],
            MqttMeasure::BloodGlucose => &[Q::Glucose],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Ble {
        profile: BleProfile,
        /// Address in hal's in-process simulator (default: derived from profile and index).
        address: Option<BleAddress>,
    },
    Serial {
        protocol: SerialProtocol,
    },
    Mqtt {
        schema: MqttSchema,
        measures: MqttMeasure,
        topic: String,
    },
}

impl Transport {
    pub fn quantities(&self) -> &'static [Quantity] {
        use Quantity as Q;
        match self {
            Transport::Ble { profile, .. } => profile.quantities(),
            Transport::Serial {
                protocol: SerialProtocol::Masimo,
            } => &[Q::Spo2, Q::Pulse],
            Transport::Serial { .. } => &[Q::HeartRate, Q::Spo2],
            Transport::Mqtt { measures, .. } => measures.quantities(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Ble { .. } => "ble",
            Transport::Serial { .. } => "serial",
            Transport::Mqtt { .. } => "mqtt",
        }
    }

    /// The wire format can carry "no valid value" (IEEE-11073 special values, Masimo dashes).
    fn carries_special_values(&self) -> bool {
        matches!(
            self,
            Transport::Ble {
                profile: BleProfile::BloodPressure
                    | BleProfile::Thermometer
                    | BleProfile::PulseOximeter
                    | BleProfile::Glucose
                    | BleProfile::Cgm,
                ..
            } | Transport::Serial {
                protocol: SerialProtocol::Masimo
            }
        )
    }

    fn stores_records(&self) -> bool {
        matches!(
            self,
            Transport::Ble {
                profile: BleProfile::Glucose | BleProfile::Cgm,
                ..
            }
        )
    }
}

/// An IEEE-11073 special value (on serial Masimo: dashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    NotANumber,
    NotAtThisResolution,
    PositiveInfinity,
    NegativeInfinity,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// The link drops (BLE), the line goes silent (serial), the client disconnects (MQTT);
    /// back after `duration` seconds.
    Disconnect { duration: f64 },
    /// `bytes` random bytes instead of a measurement.
    Garbage { bytes: usize },
    /// The next `count` measurements carry a special value in their first quantity.
    SpecialValue { value: Special, count: u32 },
    /// The device clock restarts at 2000-01-01 00:00:00 for `duration` seconds (battery change).
    ClockUnset { duration: f64 },
    /// `count` back-dated records appear in the device's store (RACP), as if measured offline.
    StoredRecords { count: u32 },
    /// `count` measurements at once.
    Burst { count: u32 },
    /// Measurements `factor` times further apart for `duration` seconds; serial lines are
    /// dribbled byte by byte meanwhile.
    Slow { duration: f64, factor: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub at: f64,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub name: String,
    pub transport: Transport,
    pub serial_number: String,
    pub interval: f64,
    pub jitter: f64,
    pub start_offset: f64,
    /// One per quantity the device measures (defaults filled in).
    pub streams: BTreeMap<Quantity, StreamSpec>,
    pub faults: Vec<Fault>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub duration: f64,
    pub start: Option<OffsetDateTime>,
    pub devices: Vec<DeviceSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", render(.0))]
    Invalid(Problems),
}

fn render(problems: &Problems) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    format!(
        "{} problem(s) in the scenario:\n  {}",
        lines.len(),
        lines.join("\n  ")
    )
}

pub fn load_file(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text)
}

pub fn load_str(text: &str) -> Result<Scenario, ScenarioError> {
    let mut problems = Problems::new();
    let deserializer = toml::Deserializer::parse(text).map_err(|err| {
        let mut p = Problems::new();
        p.push("", err.message().to_owned(), Some("check the TOML syntax"));
        ScenarioError::Invalid(p)
    })?;
    let raw: RawFile = match serde_path_to_error::deserialize(deserializer) {
        Ok(raw) => raw,
        Err(err) => {
            problems.push(
                err.path().to_string(),
                err.inner().message().to_owned(),
                Some("see docs/SIMULATOR.md for the scenario keys"),
            );
            return Err(ScenarioError::Invalid(problems));
        }
    };
    match validate(raw, &mut problems) {
        Some(scenario) if problems.is_empty() => Ok(scenario),
        _ => Err(ScenarioError::Invalid(problems)),
    }
}

fn validate(raw: RawFile, problems: &mut Problems) -> Option<Scenario> {
    let h = &raw.scenario;
    if h.name.trim().is_empty() {
        problems.push("scenario.name", "is empty", None);
    }
    if !(h.duration_seconds > 0.0 && h.duration_seconds <= MAX_DURATION_SECONDS) {
        problems.push(
            "scenario.duration_seconds",
            "out of range",
            Some("between 0 and 2678400 (31 days) seconds of scenario time"),
        );
    }
    let start = match &h.start {
        None => None,
        Some(text) => match OffsetDateTime::parse(text, &Rfc3339) {
            Ok(t) => Some(t),
            Err(_) => {
                problems.push(
                    "scenario.start",
                    "not an RFC 3339 time",
                    Some("e.g. 2026-11-23T07:00:00Z"),
                );
                None
            }
        },
    };
    if raw.devices.is_empty() {
        problems.push("devices", "no devices", Some("add [[devices]] tables"));
    }
    let mut names = BTreeSet::new();
    let devices: Vec<DeviceSpec> = raw
        .devices
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let path = format!("devices[{i}]");
            if !names.insert(d.name.clone()) {
                problems.push(format!("{path}.name"), "used by another device", None);
            }
            validate_device(d, &path, h.duration_seconds, problems)
        })
        .collect();
    Some(Scenario {
        name: h.name.clone(),
        description: h.description.clone(),
        seed: h.seed,
        duration: h.duration_seconds,
        start,
        devices,
    })
}

fn pick<T: Copy>(
    table: &[(&str, T)],
    value: Option<&String>,
    path: &str,
    problems: &mut Problems,
) -> Option<T> {
    let choices: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
    let hint = format!("one of: {}", choices.join(", "));
    let Some(value) = value else {
        problems.push(path, "missing", Some(&hint));
        return None;
    };
    let found = table.iter().find(|(n, _)| *n == value).map(|(_, v)| *v);
    if found.is_none() {
        problems.push(path, format!("unknown value {value:?}"), Some(&hint));
    }
    found
}

fn forbid(present: bool, path: &str, transport: &str, problems: &mut Problems) {
    if present {
        problems.push(
            path,
            format!("does not apply to transport {transport:?}"),
            None,
        );
    }
}

fn validate_device(
    d: &RawDevice,
    path: &str,
    duration: f64,
    problems: &mut Problems,
) -> Option<DeviceSpec> {
    let valid_name = !d.name.is_empty()
        && d.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        problems.push(
            format!("{path}.name"),
            "not a device name",
            Some("letters, digits, '-' and '_' (it is used in MQTT topics and client ids)"),
        );
    }
    let transport = match d.transport.as_str() {
        "ble" => {
            forbid(
                d.protocol.is_some(),
                &format!("{path}.protocol"),
                "ble",
                problems,
            );
            forbid(
                d.schema.is_some(),
                &format!("{path}.schema"),
                "ble",
                problems,
            );
            forbid(
                d.measures.is_some(),
                &format!("{path}.measures"),
                "ble",
                problems,
            );
            forbid(d.topic.is_some(), &format!("{path}.topic"), "ble", problems);
            let table: Vec<(&str, BleProfile)> =
                BleProfile::ALL.iter().map(|p| (p.name(), *p)).collect();
            let profile = pick(
                &table,
                d.profile.as_ref(),
                &format!("{path}.profile"),
                problems,
            );
            let address = match &d.address {
                None => None,
                Some(text) => match text.parse::<BleAddress>() {
                    Ok(a) => Some(a),
                    Err(err) => {
                        problems.push(format!("{path}.address"), err.to_string(), None);
                        None
                    }
                },
            };
            profile.map(|profile| Transport::Ble { profile, address })
        }
        "serial" => {
            forbid(
                d.profile.is_some(),
                &format!("{path}.profile"),
                "serial",
                problems,
            );
            forbid(
                d.schema.is_some(),
                &format!("{path}.schema"),
                "serial",
                problems,
            );
            forbid(
                d.measures.is_some(),
                &format!("{path}.measures"),
                "serial",
                problems,
            );
            forbid(
                d.topic.is_some(),
                &format!("{path}.topic"),
                "serial",
                problems,
            );
            forbid(
                d.address.is_some(),
                &format!("{path}.address"),
                "serial",
                problems,
            );
            let table = [
                ("masimo", SerialProtocol::Masimo),
                ("ndjson", SerialProtocol::Ndjson),
                ("csv", SerialProtocol::Csv),
            ];
            pick(
                &table,
                d.protocol.as_ref(),
                &format!("{path}.protocol"),
                problems,
            )
            .map(|protocol| Transport::Serial { protocol })
        }
        "mqtt" => {
            forbid(
                d.profile.is_some(),
                &format!("{path}.profile"),
                "mqtt",
                problems,
            );
            forbid(
                d.protocol.is_some(),
                &format!("{path}.protocol"),
                "mqtt",
                problems,
            );
            forbid(
                d.address.is_some(),
                &format!("{path}.address"),
                "mqtt",
                problems,
            );
            let schemas = [
                ("vitals", MqttSchema::Vitals),
                ("open_mhealth", MqttSchema::OpenMhealth),
                ("fhir_observation", MqttSchema::FhirObservation),
            ];
            let schema = pick(
                &schemas,
                d.schema.as_ref(),
                &format!("{path}.schema"),
                problems,
            );
            let measures = pick(
                &MqttMeasure::NAMES,
                d.measures.as_ref(),
                &format!("{path}.measures"),
                problems,
            );
            let topic = d
                .topic
                .clone()
                .unwrap_or_else(|| format!("vectorcare-sim/{}/vitals", d.name));
            if topic.is_empty() || topic.contains(['+', '#']) {
                problems.push(
                    format!("{path}.topic"),
                    "not a topic to publish to",
                    Some("no wildcards"),
                );
            }
            match (schema, measures) {
                (Some(schema), Some(measures)) => Some(Transport::Mqtt {
                    schema,
                    measures,
                    topic,
                }),
                _ => None,
            }
        }
        other => {
            problems.push(
                format!("{path}.transport"),
                format!("unknown transport {other:?}"),
                Some("one of: ble, serial, mqtt"),
            );
            None
        }
    };
    if !(d.interval_seconds >= 0.01 && d.interval_seconds <= duration.max(0.01)) {
        problems.push(
            format!("{path}.interval_seconds"),
            "out of range",
            Some("at least 0.01 and at most the scenario duration"),
        );
    }
    if !(0.0..=0.9).contains(&d.jitter) {
        problems.push(format!("{path}.jitter"), "out of range", Some("0 to 0.9"));
    }
    if !(0.0..=duration).contains(&d.start_offset_seconds) {
        problems.push(
            format!("{path}.start_offset_seconds"),
            "outside the scenario",
            None,
        );
    }
    let transport = transport?;
    let measured = transport.quantities();
    let mut streams: BTreeMap<Quantity, StreamSpec> =
        measured.iter().map(|q| (*q, q.default_stream())).collect();
    for (key, spec) in &d.streams {
        let spath = format!("{path}.streams.{key}");
        match Quantity::from_name(key) {
            Some(q) if measured.contains(&q) => {
                let ok_range = spec.min < spec.max && (spec.min..=spec.max).contains(&spec.start);
                if !ok_range {
                    problems.push(&spath, "needs min < max and start within them", None);
                }
                if !(spec.step >= 0.0 && spec.trend_per_hour.is_finite()) || spec.decimals > 3 {
                    problems.push(&spath, "step must be >= 0 and decimals at most 3", None);
                }
                streams.insert(q, spec.clone());
            }
            _ => {
                let names: Vec<&str> = measured.iter().map(|q| q.name()).collect();
                problems.push(
                    &spath,
                    "this device does not measure it",
                    Some(&format!("streams of this device: {}", names.join(", "))),
                );
            }
        }
    }
    let faults = d
        .faults
        .iter()
        .enumerate()
        .filter_map(|(j, f)| {
            validate_fault(
                f,
                &format!("{path}.faults[{j}]"),
                &transport,
                duration,
                problems,
            )
        })
        .collect();
    Some(DeviceSpec {
        name: d.name.clone(),
        serial_number: d
            .serial_number
            .clone()
            .unwrap_or_else(|| format!("SIM-{}", d.name)),
        transport,
        interval: d.interval_seconds,
        jitter: d.jitter,
        start_offset: d.start_offset_seconds,
        streams,
        faults,
    })
}

fn validate_fault(
    f: &RawFault,
    path: &str,
    transport: &Transport,
    duration: f64,
    problems: &mut Problems,
) -> Option<Fault> {
    if !(0.0..=duration).contains(&f.at_seconds) {
        problems.push(format!("{path}.at_seconds"), "outside the scenario", None);
    }
    let allowed: &[&str] = match f.kind.as_str() {
        "disconnect" | "clock_unset" => &["duration_seconds"],
        "garbage" => &["bytes"],
        "special_value" => &["value", "count"],
        "stored_records" | "burst" => &["count"],
        "slow" => &["duration_seconds", "factor"],
        other => {
            problems.push(
                format!("{path}.kind"),
                format!("unknown fault {other:?}"),
                Some(
                    "disconnect, garbage, special_value, clock_unset, stored_records, burst, slow",
                ),
            );
            return None;
        }
    };
    let given = [
        ("duration_seconds", f.duration_seconds.is_some()),
        ("bytes", f.bytes.is_some()),
        ("value", f.value.is_some()),
        ("count", f.count.is_some()),
        ("factor", f.factor.is_some()),
    ];
    for (key, present) in given {
        if present && !allowed.contains(&key) {
            problems.push(
                format!("{path}.{key}"),
                format!("does not apply to a {:?} fault", f.kind),
                None,
            );
        }
    }
    let seconds = |problems: &mut Problems| {
        let d = f.duration_seconds.unwrap_or(0.0);
        if !(0.0..=duration).contains(&d) {
            problems.push(format!("{path}.duration_seconds"), "out of range", None);
        }
        d
    };
    let count = |problems: &mut Problems| {
        let c = f.count.unwrap_or(1);
        if !(1..=10_000).contains(&c) {
            problems.push(format!("{path}.count"), "out of range", Some("1 to 10000"));
        }
        c
    };
    let kind = match f.kind.as_str() {
        "disconnect" => FaultKind::Disconnect {
            duration: seconds(problems),
        },
        "clock_unset" => FaultKind::ClockUnset {
            duration: seconds(problems),
        },
        "garbage" => {
            let bytes = f.bytes.unwrap_or(8);
            if !(1..=512).contains(&bytes) {
                problems.push(format!("{path}.bytes"), "out of range", Some("1 to 512"));
            }
            FaultKind::Garbage { bytes }
        }
        "special_value" => {
            if !transport.carries_special_values() {
                problems.push(
                    format!("{path}.kind"),
                    "this device's wire format has no special values",
                    Some("BLE blood_pressure, thermometer, pulse_oximeter, glucose, cgm or serial masimo"),
                );
            }
            let table = [
                ("nan", Special::NotANumber),
                ("nres", Special::NotAtThisResolution),
                ("+inf", Special::PositiveInfinity),
                ("-inf", Special::NegativeInfinity),
            ];
            let value = match &f.value {
                None => Some(Special::NotANumber),
                Some(v) => pick(&table, Some(v), &format!("{path}.value"), problems),
            }?;
            FaultKind::SpecialValue {
                value,
                count: count(problems),
            }
        }
        "stored_records" => {
            if !transport.stores_records() {
                problems.push(
                    format!("{path}.kind"),
                    "this device stores no records",
                    Some("BLE glucose or cgm (Record Access Control Point)"),
                );
            }
            FaultKind::StoredRecords {
                count: count(problems),
            }
        }
        "burst" => FaultKind::Burst {
            count: count(problems),
        },
        _ => {
            let factor = f.factor.unwrap_or(4.0);
            if !(1.0..=1000.0).contains(&factor) {
                problems.push(format!("{path}.factor"), "out of range", Some("1 to 1000"));
            }
            FaultKind::Slow {
                duration: seconds(problems),
                factor,
            }
        }
    };
    Some(Fault {
        at: f.at_seconds,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [scenario]
        name = "t"
        duration_seconds = 60
        [[devices]]
        name = "cuff"
        transport = "ble"
        profile = "blood_pressure"
        interval_seconds = 5
        [[devices.faults]]
        at_seconds = 10
        kind = "special_value"
        value = "nres"
    "#;

    #[test]
    fn a_good_scenario_loads_with_default_streams() {
        let s = load_str(GOOD).expect("valid");
        assert_eq!(s.seed, 1);
        let d = &s.devices[0];
        assert_eq!(d.streams.len(), 3);
        assert_eq!(
            d.faults[0].kind,
            FaultKind::SpecialValue {
                value: Special::NotAtThisResolution,
                count: 1
            }
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let text = r#"
            [scenario]
            name = ""
            duration_seconds = 60
            [[devices]]
            name = "scale"
            transport = "ble"
            profile = "weight_scale"
            topic = "x"
            interval_seconds = 0
            [devices.streams.glucose]
            min = 1
            max = 2
            start = 1
            [[devices.faults]]
            at_seconds = 100
            kind = "stored_records"
            [[devices]]
            name = "scale"
            transport = "mqtt"
            schema = "vitals"
            measures = "nothing"
            interval_seconds = 1
            [[devices]]
            name = "x"
            transport = "ble"
            profile = "cgmx"
            interval_seconds = -1
        "#;
        let Err(ScenarioError::Invalid(problems)) = load_str(text) else {
            panic!("expected problems");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "scenario.name",
            "devices[0].topic",
            "devices[0].interval_seconds",
            "devices[0].streams.glucose",
            "devices[0].faults[0].at_seconds",
            "devices[0].faults[0].kind",
            "devices[1].name",
            "devices[1].measures",
            "devices[2].profile",
            "devices[2].interval_seconds",
        ] {
            assert!(paths.contains(&expected), "{expected} missing in {paths:?}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let text = GOOD.replace("interval_seconds = 5", "interval_seconds = 5\ncolour = 1");
        let Err(ScenarioError::Invalid(problems)) = load_str(&text) else {
            panic!("expected problems");
        };
        let first = problems.iter().next().expect("one problem");
        assert!(first.path.starts_with("devices"), "{first}");
        assert!(first.message.contains("colour"), "{first}");
    }
}
