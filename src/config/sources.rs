//! `[sources]`: which adapters run. Each adapter's keys live in its own `config.rs`
//! (`sources::ble::config`, `sources::serial::config`, `sources::mqtt::config`); an absent
//! section means the adapter does not run.

use serde::Deserialize;

use super::problems::{Problems, join};
use crate::sources::ble::config::{BleConfig, RawBleConfig};
use crate::sources::mqtt::config::{MqttConfig, RawMqttConfig};
use crate::sources::serial::config::{RawSerialConfig, SerialConfig};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSourcesConfig {
    pub ble: Option<RawBleConfig>,
    pub serial: Option<RawSerialConfig>,
    pub mqtt: Option<RawMqttConfig>,
}

/// Validated adapters; `None` = not configured.
#[derive(Debug, Clone, Default)]
pub struct SourcesConfig {
    pub ble: Option<BleConfig>,
    pub serial: Option<SerialConfig>,
    pub mqtt: Option<MqttConfig>,
}

impl RawSourcesConfig {
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<SourcesConfig> {
        let before = problems.len();
        let ble = self
            .ble
            .as_ref()
            .map(|raw| raw.validate(&join(path, "ble"), problems));
        let serial = self
            .serial
            .as_ref()
            .map(|raw| raw.validate(&join(path, "serial"), problems));
        let mqtt = self
            .mqtt
            .as_ref()
            .map(|raw| raw.validate(&join(path, "mqtt"), problems));
        if problems.len() > before {
            return None;
        }
        Some(SourcesConfig {
            ble: ble.flatten(),
            serial: serial.flatten(),
            mqtt: mqtt.flatten(),
        })
    }
}
