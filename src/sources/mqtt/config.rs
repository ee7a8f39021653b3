//! `[sources.mqtt]` configuration: broker connection, TLS, credentials, topic mappings, the
//! reject log and the optional gateway status/health topics.
//!
//! ```toml
//! [sources.mqtt]
//! host = "127.0.0.1"
//! port = 1883                      # 8883 is usual with TLS
//! client_id = "vectorcare-hub-1"   # must stay the same across restarts (persistent session)
//! username = "gateway"
//! password_file = "/etc/vectorcare/mqtt-password"   # secrets by path, never inline
//! reject_log = "/var/lib/vectorcare/mqtt-rejects.jsonl"
//! tls = { ca_file = "/etc/vectorcare/mqtt-ca.pem", client_cert_file = "...", client_key_file = "..." }
//! status = { prefix = "vectorcare/hub-1", health_interval_seconds = 60 }
//!
//! [[sources.mqtt.topics]]
//! filter = "home/+/vitals"         # `{1}` below is what the first `+` matched
//! format = "vitals"                # vitals | open_mhealth | fhir_observation
//! device_id = "mqtt:{1}"
//! patient = "Patient/123"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::problems::{Problems, index, join};
use crate::decode::mqtt::PayloadFormat;

fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_port() -> u16 {
    1883
}
fn default_keep_alive() -> u64 {
    30
}
fn default_inflight() -> u16 {
    20
}
fn default_reconnect_initial_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_health_interval() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqttConfig {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub client_id: String,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_seconds: u64,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls: Option<RawTlsConfig>,
    /// How many unacknowledged messages the broker may have in flight to us.
    #[serde(default = "default_inflight")]
    pub inflight: u16,
    #[serde(default = "default_reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    pub reject_log: Option<PathBuf>,
    pub status: Option<RawStatusConfig>,
    #[serde(default)]
    pub topics: Vec<RawTopicConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsConfig {
    pub ca_file: PathBuf,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatusConfig {
    pub prefix: String,
    /// 0 disables the periodic health message (the retained online/offline stays).
    #[serde(default = "default_health_interval")]
    pub health_interval_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopicConfig {
    pub filter: String,
    pub format: PayloadFormat,
    /// Device id for readings on matching topics; `{N}` = what the N-th `+` matched.
    pub device_id: String,
    pub patient: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_file: PathBuf,
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusConfig {
    pub prefix: String,
    pub health_interval: Option<Duration>,
}

impl StatusConfig {
    pub fn status_topic(&self) -> String {
        format!("{}/status", self.prefix)
    }
    pub fn health_topic(&self) -> String {
        format!("{}/health", self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub filter: String,
    pub format: PayloadFormat,
    pub device_id: String,
    pub patient: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
}

impl TopicConfig {
    /// The device id for a concrete topic, or None when the topic does not match the filter.
    pub fn device_for(&self, topic: &str) -> Option<String> {
        if !rumqttc::matches(topic, &self.filter) {
            return None;
        }
        let wild: Vec<&str> = self
            .filter
            .split('/')
            .zip(topic.split('/'))
            .filter(|(f, _)| *f == "+")
            .map(|(_, t)| t)
            .collect();
        let mut id = self.device_id.clone();
        for (i, part) in wild.iter().enumerate() {
            id = id.replace(&format!("{{{}}}", i + 1), part);
        }
        Some(id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub keep_alive: Duration,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls: Option<TlsConfig>,
    pub inflight: u16,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub reject_log: Option<PathBuf>,
    pub status: Option<StatusConfig>,
    pub topics: Vec<TopicConfig>,
}

impl MqttConfig {
    /// (device id template, patient) per topic mapping, for the runtime's patient lookup.
    /// Templates with `{N}` need [`TopicConfig::device_for`]; fixed ids compare directly.
    pub fn device_patients(&self) -> Vec<(String, String)> {
        self.topics
            .iter()
            .filter_map(|t| t.patient.clone().map(|p| (t.device_id.clone(), p)))
            .collect()
    }
}

impl RawMqttConfig {
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<MqttConfig> {
        let before = problems.len();
        if self.host.trim().is_empty() {
            problems.push(
                join(path, "host"),
                "empty",
                Some("the broker's host name or IP, e.g. \"127.0.0.1\""),
            );
        }
        if self.port == 0 {
            problems.push(
                join(path, "port"),
                "must not be 0",
                Some("1883, or 8883 with TLS"),
            );
        }
        if self.client_id.is_empty()
            || self.client_id.len() > 23
            || !self
                .client_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(
                join(path, "client_id"),
                "must be 1-23 characters of letters, digits, '-' or '_'",
                Some("a stable id per hub: the broker keeps unacknowledged messages under it"),
            );
        }
        if !(5..=3600).contains(&self.keep_alive_seconds) {
            problems.push(
                join(path, "keep_alive_seconds"),
                "must be between 5 and 3600",
                None,
            );
        }
        if self.password_file.is_some() && self.username.is_none() {
            problems.push(
                join(path, "username"),
                "password_file needs a username",
                None,
            );
        }
        if self.inflight == 0 {
            problems.push(join(path, "inflight"), "must be at least 1", None);
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            problems.push(
                join(path, "reconnect_max_ms"),
                "reconnect delays must satisfy 0 < reconnect_initial_ms <= reconnect_max_ms",
                None,
            );
        }
        let tls = self.tls.as_ref().and_then(|t| {
            let at = join(path, "tls");
            match (&t.client_cert_file, &t.client_key_file) {
                (Some(c), Some(k)) => Some(TlsConfig {
                    ca_file: t.ca_file.clone(),
                    client_auth: Some((c.clone(), k.clone())),
                }),
                (None, None) => Some(TlsConfig {
                    ca_file: t.ca_file.clone(),
                    client_auth: None,
                }),
                _ => {
                    problems.push(
                        join(&at, "client_key_file"),
                        "client_cert_file and client_key_file go together",
                        None,
                    );
                    None
                }
            }
        });
        let status = self.status.as_ref().map(|s| {
            if s.prefix.is_empty()
                || !rumqttc::valid_topic(&s.prefix)
                || s.prefix.contains(['+', '#'])
                || s.prefix.ends_with('/')
            {
                problems.push(
                    join(path, "status.prefix"),
                    "not a topic prefix",
                    Some("e.g. \"vectorcare/hub-1\" (no wildcards, no trailing /)"),
                );
            }
            StatusConfig {
                prefix: s.prefix.clone(),
                health_interval: (s.health_interval_seconds > 0)
                    .then(|| Duration::from_secs(s.health_interval_seconds)),
            }
        });
        if self.topics.is_empty() {
            problems.push(
                join(path, "topics"),
                "no topic to subscribe to",
                Some("add [[sources.mqtt.topics]] with filter, format and device_id"),
            );
        }
        let topics_path = join(path, "topics");
        let mut topics = Vec::new();
        for (i, t) in self.topics.iter().enumerate() {
            let at = index(&topics_path, i);
            if !rumqttc::valid_filter(&t.filter) || t.filter.is_empty() {
                problems.push(
                    join(&at, "filter"),
                    "not a valid MQTT topic filter",
                    Some("levels separated by '/', '+' for one level, '#' last"),
                );
            }
            let pluses = t.filter.split('/').filter(|l| *l == "+").count();
            let mut rest = t.device_id.clone();
            for n in 1..=pluses {
                rest = rest.replace(&format!("{{{n}}}"), "");
            }
            if t.device_id.trim().is_empty() || rest.contains('{') || rest.contains('}') {
                problems.push(
                    join(&at, "device_id"),
                    format!("must be non-empty and may use {{1}}..{{{pluses}}} for the filter's '+' levels"),
                    None,
                );
            }
            if let Some(p) = &t.patient
                && (!p.starts_with("Patient/") || p.len() <= "Patient/".len())
            {
                problems.push(
                    join(&at, "patient"),
                    "not a Patient reference",
                    Some("e.g. \"Patient/123\""),
                );
            }
            if let Some(status) = &status
                && (rumqttc::matches(&status.status_topic(), &t.filter)
                    || rumqttc::matches(&status.health_topic(), &t.filter))
            {
                problems.push(
                    join(&at, "filter"),
                    "matches the gateway's own status topics",
                    Some("narrow the filter or change status.prefix"),
                );
            }
            topics.push(TopicConfig {
                filter: t.filter.clone(),
                format: t.format,
                device_id: t.device_id.clone(),
                patient: t.patient.clone(),
                manufacturer: t.manufacturer.clone(),
                model: t.model.clone(),
            });
        }
        (problems.len() == before).then(|| MqttConfig {
            host: self.host.clone(),
            port: self.port,
            client_id: self.client_id.clone(),
            keep_alive: Duration::from_secs(self.keep_alive_seconds),
            username: self.username.clone(),
            password_file: self.password_file.clone(),
            tls,
            inflight: self.inflight,
            reconnect_initial: Duration::from_millis(self.reconnect_initial_ms),
            reconnect_max: Duration::from_millis(self.reconnect_max_ms),
            reject_log: self.reject_log.clone(),
            status,
            topics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<MqttConfig>, Vec<String>) {
        let raw: RawMqttConfig = toml::from_str(text).expect("toml");
        let mut problems = Problems::new();
        let cfg = raw.validate("sources.mqtt", &mut problems);
        (cfg, problems.iter().map(|p| p.path.clone()).collect())
    }

    #[test]
    fn valid_config_and_device_templates() {
        let (cfg, problems) = parse(
            r#"
            client_id = "hub-1"
            username = "gw"
            password_file = "/etc/pw"
            tls = { ca_file = "/etc/ca.pem" }
            status = { prefix = "vectorcare/hub-1" }
            [[topics]]
            filter = "home/+/vitals/+"
            format = "vitals"
            device_id = "mqtt:{1}:{2}"
            patient = "Patient/7"
            [[topics]]
            filter = "omh/#"
            format = "open_mhealth"
            device_id = "omh-bridge"
            "#,
        );
        assert_eq!(problems, Vec::<String>::new());
        let cfg = cfg.expect("valid");
        assert_eq!(
            cfg.topics[0].device_for("home/alice/vitals/cuff"),
            Some("mqtt:alice:cuff".into())
        );
        assert_eq!(cfg.topics[0].device_for("home/alice/other/cuff"), None);
        assert_eq!(
            cfg.topics[1].device_for("omh/a/b"),
            Some("omh-bridge".into())
        );
        assert_eq!(
            cfg.status.as_ref().map(|s| s.status_topic()),
            Some("vectorcare/hub-1/status".into())
        );
        assert_eq!(
            cfg.status.and_then(|s| s.health_interval),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn every_problem_with_its_path() {
        let (cfg, problems) = parse(
            r##"
            host = ""
            port = 0
            client_id = "has spaces"
            password_file = "/etc/pw"
            tls = { ca_file = "/ca", client_cert_file = "/c" }
            status = { prefix = "gw/#" }
            [[topics]]
            filter = "a/#/b"
            format = "vitals"
            device_id = "x"
            [[topics]]
            filter = "a/+"
            format = "fhir_observation"
            device_id = "{2}"
            patient = "Bob"
            [[topics]]
            filter = "#"
            format = "vitals"
            device_id = "all"
            "##,
        );
        assert!(cfg.is_none());
        for want in [
            "sources.mqtt.host",
            "sources.mqtt.port",
            "sources.mqtt.client_id",
            "sources.mqtt.username",
            "sources.mqtt.tls.client_key_file",
            "sources.mqtt.status.prefix",
            "sources.mqtt.topics[0].filter",
            "sources.mqtt.topics[1].device_id",
            "sources.mqtt.topics[1].patient",
        ] {
            assert!(
                problems.iter().any(|p| p == want),
                "missing {want} in {problems:?}"
            );
        }
        assert!(toml::from_str::<RawMqttConfig>("client_id = \"a\"\nformat = \"x\"").is_err());
        assert!(
            toml::from_str::<RawMqttConfig>(
                "client_id = \"a\"\n[[topics]]\nfilter=\"a\"\nformat = \"xml\"\ndevice_id=\"d\""
            )
            .is_err()
        );
    }
}
