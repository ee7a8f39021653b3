//! `[sources.serial]` configuration: ports, line settings and line formats.
//!
//! ```toml
//! [[sources.serial.ports]]
//! path = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A1-if00-port0"  # or: usb = "0403:6001[:serial]"
//! baud_rate = 9600                # data_bits 8, parity "none", stop_bits 1, flow_control "none"
//! format = { type = "masimo" }    # or ndjson / pattern, see below
//! patient = "Patient/123"          # optional: who the readings belong to
//! min_interval_seconds = 60        # at most one reading per kind per minute (1 Hz monitors)
//!
//! # format = { type = "ndjson", fields = { hr = "heart_rate", "bp.sys" = "blood_pressure.systolic",
//! #            "bp.dia" = "blood_pressure.diastolic" }, units = { body_temperature = "F" }, time_field = "ts" }
//! # format = { type = "pattern", pattern = '^(?P<kind>\w+),(?P<value>[-0-9.]+)$',
//! #            kind_map = { HR = "heart_rate" }, unit = "bpm" }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use vectorcare_hal::serial::{FlowControl, LineSettings, Parity, PortLocator};

use crate::config::problems::{Problems, index, join};
use crate::decode::serial::{LineFormat, ndjson::NdjsonFormat, pattern::PatternFormat};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSerialConfig {
    #[serde(default)]
    pub ports: Vec<RawPortConfig>,
    /// First reconnect delay after an unplug.
    #[serde(default = "default_reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
}

fn default_reconnect_initial_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_none() -> String {
    "none".to_owned()
}
fn default_max_line() -> usize {
    1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortConfig {
    pub path: Option<PathBuf>,
    /// `VID:PID` or `VID:PID:SERIAL` in hex, matched through sysfs.
    pub usb: Option<String>,
    /// Device id used as the reading's device address; defaults to `path` or `usb:VID:PID[:SERIAL]`.
    pub device_id: Option<String>,
    #[serde(default = "default_baud")]
    pub baud_rate: u32,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default = "default_none")]
    pub parity: String,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    #[serde(default = "default_none")]
    pub flow_control: String,
    pub format: RawFormat,
    pub patient: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    #[serde(default)]
    pub min_interval_seconds: u64,
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFormat {
    #[serde(rename = "type")]
    pub kind_of_format: String,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub units: BTreeMap<String, String>,
    pub time_field: Option<String>,
    pub pattern: Option<String>,
    pub kind: Option<String>,
    #[serde(default)]
    pub kind_map: BTreeMap<String, String>,
    pub unit: Option<String>,
}

/// A validated port.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// Config path of this port (`sources.serial.ports[0]`), safe to log at info level.
    pub label: String,
    pub locator: PortLocator,
    pub device_id: String,
    pub settings: LineSettings,
    pub format: LineFormat,
    pub patient: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub min_interval: Duration,
    pub max_line_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct SerialConfig {
    pub ports: Vec<PortConfig>,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
}

impl SerialConfig {
    /// (device id, patient reference) for every port with a patient: the runtime uses it to
    /// fill the FHIR mapper's patient for readings from that device.
    pub fn device_patients(&self) -> Vec<(String, String)> {
        self.ports
            .iter()
            .filter_map(|p| p.patient.clone().map(|pt| (p.device_id.clone(), pt)))
            .collect()
    }
}

impl RawSerialConfig {
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<SerialConfig> {
        let before = problems.len();
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            problems.push(
                join(path, "reconnect_max_ms"),
                "reconnect delays must satisfy 0 < reconnect_initial_ms <= reconnect_max_ms",
                Some("e.g. reconnect_initial_ms = 500, reconnect_max_ms = 30000"),
            );
        }
        let ports_path = join(path, "ports");
        let mut ports = Vec::new();
        let mut seen_ids = BTreeMap::new();
        for (i, raw) in self.ports.iter().enumerate() {
            let at = index(&ports_path, i);
            if let Some(port) = raw.validate(&at, problems) {
                if let Some(first) = seen_ids.insert(port.device_id.clone(), i) {
                    problems.push(
                        join(&at, "device_id"),
                        format!("same device as ports[{first}]"),
                        Some("give each port its own path/usb match or device_id"),
                    );
                }
                ports.push(port);
            }
        }
        (problems.len() == before).then(|| SerialConfig {
            ports,
            reconnect_initial: Duration::from_millis(self.reconnect_initial_ms),
            reconnect_max: Duration::from_millis(self.reconnect_max_ms),
        })
    }
}

fn parse_usb(text: &str) -> Option<PortLocator> {
    let mut parts = text.splitn(3, ':');
    let vid = u16::from_str_radix(parts.next()?, 16).ok()?;
    let pid = u16::from_str_radix(parts.next()?, 16).ok()?;
    let serial = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    Some(PortLocator::Usb {
        vendor_id: vid,
        product_id: pid,
        serial_number: serial,
    })
}

impl RawPortConfig {
    fn validate(&self, at: &str, problems: &mut Problems) -> Option<PortConfig> {
        let before = problems.len();
        let locator = match (&self.path, &self.usb) {
            (Some(p), None) if p.is_absolute() => Some(PortLocator::Path(p.clone())),
            (Some(_), None) => {
                problems.push(
                    join(at, "path"),
                    "not an absolute path",
                    Some("use /dev/serial/by-id/... so the port survives replugging"),
                );
                None
            }
            (None, Some(u)) => {
                let loc = parse_usb(u);
                if loc.is_none() {
                    problems.push(
                        join(at, "usb"),
                        "not VID:PID[:SERIAL]",
                        Some("hex ids as lsusb prints them, e.g. \"0403:6001\""),
                    );
                }
                loc
            }
            (Some(_), Some(_)) => {
                problems.push(join(at, "usb"), "set either path or usb, not both", None);
                None
            }
            (None, None) => {
                problems.push(
                    join(at, "path"),
                    "missing: set path or usb",
                    Some("e.g. path = \"/dev/serial/by-id/usb-...\""),
                );
                None
            }
        };
        if !(50..=4_000_000).contains(&self.baud_rate) {
            problems.push(
                join(at, "baud_rate"),
                "out of range",
                Some("e.g. 9600 or 115200"),
            );
        }
        if !(5..=8).contains(&self.data_bits) {
            problems.push(join(at, "data_bits"), "must be 5, 6, 7 or 8", None);
        }
        if !(1..=2).contains(&self.stop_bits) {
            problems.push(join(at, "stop_bits"), "must be 1 or 2", None);
        }
        let parity = match self.parity.as_str() {
            "none" => Parity::None,
            "odd" => Parity::Odd,
            "even" => Parity::Even,
            _ => {
                problems.push(
                    join(at, "parity"),
                    "unknown parity",
                    Some("none, odd or even"),
                );
                Parity::None
            }
        };
        let flow_control = match self.flow_control.as_str() {
            "none" => FlowControl::None,
            "software" => FlowControl::Software,
            "hardware" => FlowControl::Hardware,
            _ => {
                problems.push(
                    join(at, "flow_control"),
                    "unknown flow control",
                    Some("none, software or hardware"),
                );
                FlowControl::None
            }
        };
        if !(16..=65_536).contains(&self.max_line_bytes) {
            problems.push(
                join(at, "max_line_bytes"),
                "must be between 16 and 65536",
                None,
            );
        }
        if let Some(patient) = &self.patient
            && (!patient.starts_with("Patient/") || patient.len() <= "Patient/".len())
        {
            problems.push(
                join(at, "patient"),
                "not a Patient reference",
                Some("e.g. \"Patient/123\""),
            );
        }
        let format = self.format.validate(&join(at, "format"), problems);
        if problems.len() != before {
            return None;
        }
        let locator = locator?;
        let device_id = self.device_id.clone().unwrap_or_else(|| match &locator {
            PortLocator::Path(p) => p.display().to_string(),
            PortLocator::Usb {
                vendor_id,
                product_id,
                serial_number,
            } => match serial_number {
                Some(s) => format!("usb:{vendor_id:04x}:{product_id:04x}:{s}"),
                None => format!("usb:{vendor_id:04x}:{product_id:04x}"),
            },
        });
        Some(PortConfig {
            label: at.to_owned(),
            locator,
            device_id,
            settings: LineSettings {
                baud_rate: self.baud_rate,
                data_bits: self.data_bits,
                parity,
                stop_bits: self.stop_bits,
                flow_control,
            },
            format: format?,
            patient: self.patient.clone(),
            manufacturer: self.manufacturer.clone(),
            model: self.model.clone(),
            min_interval: Duration::from_secs(self.min_interval_seconds),
            max_line_bytes: self.max_line_bytes,
        })
    }
}

impl RawFormat {
    fn validate(&self, at: &str, problems: &mut Problems) -> Option<LineFormat> {
        let unused = |problems: &mut Problems, key: &str, present: bool| {
            if present {
                problems.push(
                    join(at, key),
                    format!("not used by type = {:?}", self.kind_of_format),
                    None,
                );
            }
        };
        let pattern_keys = self.pattern.is_some()
            || self.kind.is_some()
            || !self.kind_map.is_empty()
            || self.unit.is_some();
        let ndjson_keys =
            !self.fields.is_empty() || !self.units.is_empty() || self.time_field.is_some();
        let result = match self.kind_of_format.as_str() {
            "masimo" => {
                unused(problems, "pattern", pattern_keys);
                unused(problems, "fields", ndjson_keys);
                Some(LineFormat::Masimo)
            }
            "ndjson" => {
                unused(problems, "pattern", pattern_keys);
                if self.fields.is_empty() {
                    problems.push(
                        join(at, "fields"),
                        "empty: map JSON fields to kinds",
                        Some("fields = { hr = \"heart_rate\" }"),
                    );
                    return None;
                }
                NdjsonFormat::new(&self.fields, &self.units, self.time_field.clone())
                    .map_err(|e| problems.push(join(at, &e.field), e.reason, Some("kinds: heart_rate, pulse_rate, blood_pressure.systolic|diastolic|mean, body_temperature, oxygen_saturation, body_weight, body_height, body_mass_index, blood_glucose, respiratory_rate")))
                    .ok()
                    .map(LineFormat::Ndjson)
            }
            "pattern" => {
                unused(problems, "fields", ndjson_keys);
                let Some(pattern) = &self.pattern else {
                    problems.push(
                        join(at, "pattern"),
                        "missing",
                        Some("a regex with named captures, e.g. '^HR=(?P<value>\\d+)$'"),
                    );
                    return None;
                };
                PatternFormat::new(
                    pattern,
                    self.kind.as_deref(),
                    &self.kind_map,
                    self.unit.clone(),
                )
                .map_err(|e| problems.push(join(at, &e.field), e.reason, None))
                .ok()
                .map(LineFormat::Pattern)
            }
            _ => {
                problems.push(
                    join(at, "type"),
                    "unknown line format",
                    Some("masimo, ndjson or pattern"),
                );
                None
            }
        };
        // Units are checked against kinds when lines are decoded; check them now too.
        for (kind, unit) in &self.units {
            match crate::decode::mqtt::vocab::kind_from_name(kind) {
                Some(k) => {
                    if let Err(reason) = crate::decode::mqtt::vocab::ucum_for(k, Some(unit)) {
                        problems.push(join(at, &format!("units.{kind}")), reason, None);
                    }
                }
                None => problems.push(join(at, &format!("units.{kind}")), "unknown kind", None),
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> (Option<SerialConfig>, Vec<String>) {
        let raw: RawSerialConfig = toml::from_str(toml_text).expect("toml");
        let mut problems = Problems::new();
        let cfg = raw.validate("sources.serial", &mut problems);
        (cfg, problems.iter().map(|p| p.path.clone()).collect())
    }

    #[test]
    fn valid_ports() {
        let (cfg, problems) = parse(
            r#"
            [[ports]]
            path = "/dev/serial/by-id/usb-x"
            format = { type = "masimo" }
            patient = "Patient/1"
            min_interval_seconds = 60
            [[ports]]
            usb = "0403:6001:A1"
            baud_rate = 115200
            parity = "even"
            format = { type = "ndjson", fields = { hr = "heart_rate" }, units = { body_temperature = "F" } }
            [[ports]]
            path = "/dev/ttyS0"
            format = { type = "pattern", pattern = 'HR=(?P<value>\d+)', kind = "heart_rate" }
            "#,
        );
        assert_eq!(problems, Vec::<String>::new());
        let cfg = cfg.expect("valid");
        assert_eq!(cfg.ports.len(), 3);
        assert_eq!(cfg.ports[1].device_id, "usb:0403:6001:A1");
        assert_eq!(cfg.ports[1].settings.parity, Parity::Even);
        assert_eq!(
            cfg.device_patients(),
            vec![("/dev/serial/by-id/usb-x".to_owned(), "Patient/1".to_owned())]
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let (cfg, problems) = parse(
            r#"
            reconnect_initial_ms = 0
            [[ports]]
            path = "ttyUSB0"
            baud_rate = 1
            parity = "mark"
            format = { type = "masimo", fields = { a = "heart_rate" } }
            [[ports]]
            usb = "zz"
            stop_bits = 3
            patient = "123"
            format = { type = "ndjson", fields = { hr = "mood" }, units = { heart_rate = "kg" } }
            [[ports]]
            format = { type = "pattern", pattern = '(?P<value>\d+)' }
            [[ports]]
            path = "/dev/ttyS1"
            format = { type = "csv" }
            "#,
        );
        assert!(cfg.is_none());
        for want in [
            "sources.serial.reconnect_max_ms",
            "sources.serial.ports[0].path",
            "sources.serial.ports[0].baud_rate",
            "sources.serial.ports[0].parity",
            "sources.serial.ports[0].format.fields",
            "sources.serial.ports[1].usb",
            "sources.serial.ports[1].stop_bits",
            "sources.serial.ports[1].patient",
            "sources.serial.ports[1].format.fields.hr",
            "sources.serial.ports[1].format.units.heart_rate",
            "sources.serial.ports[2].path",
            "sources.serial.ports[2].format.kind",
            "sources.serial.ports[3].format.type",
        ] {
            assert!(
                problems.iter().any(|p| p == want),
                "missing {want} in {problems:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(
            toml::from_str::<RawSerialConfig>(
                "[[ports]]\npath = \"/dev/x\"\nbaud = 9600\nformat = { type = \"masimo\" }"
            )
            .is_err()
        );
    }
}
