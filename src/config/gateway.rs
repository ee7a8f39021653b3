//! The gateway's own sections: `[gateway]`, `[log]`, `[clock]`.

use std::path::PathBuf;

use serde::Deserialize;

use super::problems::{Problems, join};

/// `[gateway]`: who this hub is and whose readings it carries.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGatewayConfig {
    /// Stable identifier of this hub (becomes the gateway Device's identifier).
    pub id: Option<String>,
    /// Human-readable name of the hub (Device.deviceName).
    pub name: Option<String>,
    /// FHIR reference of the patient, e.g. "Patient/123".
    pub patient: Option<String>,
    /// Where the durable queue and device progress live.
    pub state_dir: Option<PathBuf>,
}

/// Validated `[gateway]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    pub id: String,
    pub name: Option<String>,
    pub patient: String,
    pub state_dir: PathBuf,
}

impl RawGatewayConfig {
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<GatewayConfig> {
        let before = problems.len();
        let id = match self.id.as_deref() {
            None | Some("") => {
                problems.push(
                    join(path, "id"),
                    "missing",
                    Some("set a stable identifier for this hub, e.g. id = \"hub-0001\""),
                );
                None
            }
            Some(id) if !is_token(id, 64) => {
                problems.push(
                    join(path, "id"),
                    "must be 1-64 characters of A-Z, a-z, 0-9, '-' or '.'",
                    Some("e.g. id = \"hub-0001\""),
                );
                None
            }
            Some(id) => Some(id.to_owned()),
        };
        let patient = match self.patient.as_deref() {
            None | Some("") => {
                problems.push(
                    join(path, "patient"),
                    "missing",
                    Some("set the FHIR reference of the patient this hub serves, e.g. patient = \"Patient/123\""),
                );
                None
            }
            Some(reference) => match reference.strip_prefix("Patient/") {
                Some(fhir_id) if is_token(fhir_id, 64) => Some(reference.to_owned()),
                _ => {
                    problems.push(
                        join(path, "patient"),
                        "not a FHIR Patient reference",
                        Some("write Patient/<id> where <id> is 1-64 characters of A-Z, a-z, 0-9, '-' or '.'"),
                    );
                    None
                }
            },
        };
        let state_dir = match &self.state_dir {
            Some(dir) if !dir.as_os_str().is_empty() => Some(dir.clone()),
            _ => {
                problems.push(
                    join(path, "state_dir"),
                    "missing",
                    Some("set a writable directory, e.g. /var/lib/vectorcare-gateway"),
                );
                None
            }
        };
        if problems.len() > before {
            return None;
        }
        Some(GatewayConfig {
            id: id?,
            name: self.name.clone().filter(|n| !n.is_empty()),
            patient: patient?,
            state_dir: state_dir?,
        })
    }
}

/// FHIR id charset (R4 `id` datatype: [A-Za-z0-9\-\.]{1,64}).
fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogConfig {
    pub level: Option<String>,
    pub format: Option<String>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human format on a terminal, plain otherwise.
    Auto,
    /// Coloured, aligned, for people.
    Human,
    /// One `key=value` line per event (journald, files).
    Plain,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter directive, e.g. "info" or "info,vectorcare_gateway::upload=debug".
    pub level: String,
    pub format: LogFormat,
}

impl RawLogConfig {
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<LogConfig> {
        let level = self.level.clone().unwrap_or_else(|| "info".into());
        let level_ok = crate::telemetry::logging::parse_filter(&level).is_ok();
        if !level_ok {
            problems.push(
                join(path, "level"),
                format!("`{level}` is not a log filter"),
                Some("use error, warn, info, debug or trace (optionally target=level pairs)"),
            );
        }
        let format = match self.format.as_deref().unwrap_or("auto") {
            "auto" => Some(LogFormat::Auto),
            "human" => Some(LogFormat::Human),
            "plain" => Some(LogFormat::Plain),
            other => {
                problems.push(
                    join(path, "format"),
                    format!("unknown format `{other}`"),
                    Some("use auto, human or plain"),
                );
                None
            }
        };
        Some(LogConfig {
            level,
            format: format?,
        })
        .filter(|_| level_ok)
    }
}

/// `[clock]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawClockConfig {
    /// Test rigs only: treat the system clock as synchronised even when the kernel says it is
    /// not. Logged loudly at start-up.
    pub assume_synchronized: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockConfig {
    pub assume_synchronized: bool,
}

impl RawClockConfig {
    pub fn validate(&self, _path: &str, _problems: &mut Problems) -> Option<ClockConfig> {
        Some(ClockConfig {
            assume_synchronized: self.assume_synchronized,
        })
    }
}
