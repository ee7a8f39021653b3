//! `[status]`: the local status endpoint (`/healthz`, `/metrics`, `/status`, `/`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::problems::{Problems, join};

/// Where the endpoint listens unless configured otherwise (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9180";

/// `[status]` as written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStatusConfig {
    /// Serve the endpoint at all.
    pub enabled: bool,
    /// `address:port`. Anything but a loopback address needs `token_file`.
    pub listen: String,
    /// File holding the bearer token every request must carry (`Authorization: Bearer …`, or
    /// HTTP Basic with the token as password, for browsers).
    pub token_file: Option<PathBuf>,
    /// Show device addresses and the last reading of each device on the page and in `/status`.
    /// Off by default: the hub may be in a shared home.
    pub show_readings: bool,
    /// Names for devices, by configuration path, e.g. `"sources.ble.devices[0]" = "BP cuff"`.
    pub device_labels: BTreeMap<String, String>,
}

impl Default for RawStatusConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_LISTEN.into(),
            token_file: None,
            show_readings: false,
            device_labels: BTreeMap::new(),
        }
    }
}

/// Validated `[status]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
    pub show_readings: bool,
    pub device_labels: BTreeMap<String, String>,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_LISTEN
                .parse()
                .expect("invariant: the default address parses"),
            token_file: None,
            show_readings: false,
            device_labels: BTreeMap::new(),
        }
    }
}

impl RawStatusConfig {
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<StatusConfig> {
        let before = problems.len();
        let listen = match self.listen.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problems.push(
                    join(path, "listen"),
                    format!("`{}` is not an address:port", self.listen),
                    Some("e.g. listen = \"127.0.0.1:9180\" (port 0 picks a free port)"),
                );
                None
            }
        };
        if let Some(addr) = listen
            && !addr.ip().is_loopback()
            && self.token_file.is_none()
        {
            problems.push(
                join(path, "token_file"),
                format!("required: {addr} is reachable from other machines"),
                Some(
                    "set token_file to a file holding a long random token, or listen on 127.0.0.1",
                ),
            );
        }
        if self
            .token_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            problems.push(join(path, "token_file"), "empty path", None);
        }
        for (key, label) in &self.device_labels {
            let at = format!("{}.device_labels.\"{key}\"", path);
            if !key.starts_with("sources.") {
                problems.push(
                    at.clone(),
                    "not a device's configuration path",
                    Some("e.g. \"sources.ble.devices[0]\", \"sources.serial.ports[0]\", \"sources.mqtt.topics[0]\""),
                );
            }
            if label.is_empty() || label.chars().count() > 64 || label.chars().any(char::is_control)
            {
                problems.push(
                    at,
                    "a label is 1-64 printable characters",
                    Some("use a room or device type, never a name or address"),
                );
            }
        }
        if problems.len() > before {
            return None;
        }
        Some(StatusConfig {
            enabled: self.enabled,
            listen: listen?,
            token_file: self.token_file.clone(),
            show_readings: self.show_readings,
            device_labels: self.device_labels.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_without_token() {
        let mut problems = Problems::new();
        let config = RawStatusConfig::default()
            .validate("status", &mut problems)
            .expect("valid");
        assert!(problems.is_empty());
        assert_eq!(config, StatusConfig::default());
        assert!(config.listen.ip().is_loopback());
        assert!(!config.show_readings);
    }

    #[test]
    fn non_loopback_needs_a_token_and_every_problem_is_listed() {
        let mut problems = Problems::new();
        let raw = RawStatusConfig {
            listen: "0.0.0.0:9180".into(),
            device_labels: BTreeMap::from([("ble[0]".to_owned(), String::new())]),
            ..RawStatusConfig::default()
        };
        assert!(raw.validate("status", &mut problems).is_none());
        let paths: Vec<_> = problems.iter().map(|p| p.path.clone()).collect();
        assert!(paths.contains(&"status.token_file".to_owned()), "{paths:?}");
        assert_eq!(
            paths
                .iter()
                .filter(|p| p.starts_with("status.device_labels"))
                .count(),
            2,
            "{paths:?}"
        );

        let mut problems = Problems::new();
        let with_token = RawStatusConfig {
            listen: "0.0.0.0:9180".into(),
            token_file: Some("/etc/vectorcare-gateway/status.token".into()),
            ..RawStatusConfig::default()
        };
        assert!(with_token.validate("status", &mut problems).is_some());
        assert!(problems.is_empty(), "{problems:?}");

        let mut problems = Problems::new();
        let bad = RawStatusConfig {
            listen: "localhost".into(),
            ..RawStatusConfig::default()
        };
        assert!(bad.validate("status", &mut problems).is_none());
        assert_eq!(
            problems.iter().next().map(|p| p.path.as_str()),
            Some("status.listen")
        );
    }
}
