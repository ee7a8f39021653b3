//! `[sources.ble]` configuration: raw serde form, validated once into [`BleConfig`].

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;
use vectorcare_hal::ble::BleAddress;
use vectorcare_hal::ble::bluez_agent::PairingPolicy;

use super::profiles::Profile;
use crate::config::problems::{Problems, index, join};

fn default_watchdog_minutes() -> u64 {
    5
}
fn default_backoff_initial_seconds() -> u64 {
    2
}
fn default_backoff_max_seconds() -> u64 {
    300
}

/// `[sources.ble]` as written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBleConfig {
    /// BlueZ adapter name ("hci0"); the first adapter when absent.
    #[serde(default)]
    pub adapter: Option<String>,
    /// Devices to collect from, by address.
    #[serde(default)]
    pub devices: Vec<RawBleDevice>,
    /// Also collect from any device advertising a supported standard health service.
    #[serde(default)]
    pub accept_any_health_device: bool,
    /// No advertisement for this long (and no device connected) → restart discovery; as long
    /// again → power-cycle the adapter.
    #[serde(default = "default_watchdog_minutes")]
    pub scan_watchdog_minutes: u64,
    #[serde(default = "default_backoff_initial_seconds")]
    pub backoff_initial_seconds: u64,
    #[serde(default = "default_backoff_max_seconds")]
    pub backoff_max_seconds: u64,
}

/// One `[[sources.ble.devices]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBleDevice {
    pub address: String,
    /// Which profile to use when the device offers several (default: every supported one).
    #[serde(default)]
    pub profile: Option<String>,
    /// Delete stored records (Glucose RACP) once the FHIR server confirmed them.
    #[serde(default)]
    pub delete_after_upload: bool,
    /// Six-digit passkey the pairing agent answers with (devices that display one).
    #[serde(default)]
    pub passkey: Option<u32>,
}

/// Validated BLE source configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleConfig {
    pub adapter: Option<String>,
    pub devices: Vec<BleDevice>,
    pub accept_any_health_device: bool,
    pub scan_watchdog: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleDevice {
    pub address: BleAddress,
    pub profile: Option<Profile>,
    pub delete_after_upload: bool,
    pub passkey: Option<u32>,
}

impl BleConfig {
    /// What the BlueZ pairing agent may pair with, and with which passkeys.
    pub fn pairing_policy(&self) -> PairingPolicy {
        PairingPolicy {
            allowed: if self.accept_any_health_device {
                None
            } else {
                Some(self.devices.iter().map(|d| d.address).collect())
            },
            passkeys: self
                .devices
                .iter()
                .filter_map(|d| d.passkey.map(|k| (d.address, k)))
                .collect(),
        }
    }

    /// The allowlist entry for `address`, if any.
    pub fn device(&self, address: BleAddress) -> Option<&BleDevice> {
        self.devices.iter().find(|d| d.address == address)
    }
}

impl RawBleConfig {
    /// Checks everything, pushing each problem under `path` (e.g. "sources.ble").
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<BleConfig> {
        let before = problems.len();
        let mut devices = Vec::new();
        let mut seen = HashSet::new();
        let list = join(path, "devices");
        for (i, raw) in self.devices.iter().enumerate() {
            let at = index(&list, i);
            let address = match raw.address.parse::<BleAddress>() {
                Ok(a) => a,
                Err(_) => {
                    problems.push(
                        join(&at, "address"),
                        "not a Bluetooth address",
                        Some("write six hex pairs separated by ':' such as AA:BB:CC:DD:EE:FF"),
                    );
                    continue;
                }
            };
            if !seen.insert(address) {
                problems.push(
                    join(&at, "address"),
                    "this device is listed twice",
                    Some("keep one entry per address"),
                );
            }
            let profile = match raw.profile.as_deref() {
                None => None,
                Some(name) => match Profile::from_name(name) {
                    Some(p) => Some(p),
                    None => {
                        problems.push(
                            join(&at, "profile"),
                            format!("unknown profile {name:?}"),
                            Some("one of heart_rate, blood_pressure, thermometer, pulse_oximeter, weight_scale, glucose"),
                        );
                        None
                    }
                },
            };
            if raw.delete_after_upload && profile.is_some_and(|p| !p.uses_racp()) {
                problems.push(
                    join(&at, "delete_after_upload"),
                    "only devices with stored records (glucose) can delete them",
                    Some("remove delete_after_upload or set profile = \"glucose\""),
                );
            }
            if raw.passkey.is_some_and(|k| k > 999_999) {
                problems.push(
                    join(&at, "passkey"),
                    "a passkey has at most six digits",
                    Some("use the number the device shows or its manual gives, 0..=999999"),
                );
            }
            devices.push(BleDevice {
                address,
                profile,
                delete_after_upload: raw.delete_after_upload,
                passkey: raw.passkey,
            });
        }
        if self.devices.is_empty() && !self.accept_any_health_device {
            problems.push(
                join(path, "devices"),
                "no BLE device would ever be collected from",
                Some("list devices by address or set accept_any_health_device = true"),
            );
        }
        if self.scan_watchdog_minutes == 0 {
            problems.push(
                join(path, "scan_watchdog_minutes"),
                "must be at least 1",
                Some("5 is a good value"),
            );
        }
        if self.backoff_initial_seconds == 0
            || self.backoff_initial_seconds > self.backoff_max_seconds
        {
            problems.push(
                join(path, "backoff_initial_seconds"),
                "must be at least 1 and at most backoff_max_seconds",
                Some("defaults: 2 and 300"),
            );
        }
        if let Some(adapter) = &self.adapter
            && (adapter.is_empty() || !adapter.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            problems.push(
                join(path, "adapter"),
                "not an adapter name",
                Some("a BlueZ adapter name such as hci0 (see `bluetoothctl list`)"),
            );
        }
        if problems.len() != before {
            return None;
        }
        Some(BleConfig {
            adapter: self.adapter.clone(),
            devices,
            accept_any_health_device: self.accept_any_health_device,
            scan_watchdog: Duration::from_secs(self.scan_watchdog_minutes * 60),
            backoff_initial: Duration::from_secs(self.backoff_initial_seconds),
            backoff_max: Duration::from_secs(self.backoff_max_seconds),
        })
    }
}
