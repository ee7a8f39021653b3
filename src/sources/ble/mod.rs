//! BLE source (issue #6): standard Bluetooth SIG health devices through a hal BLE central.
//!
//! | file | owns |
//! |---|---|
//! | [`config`] | `[sources.ble]`: raw serde form → validated `BleConfig` |
//! | [`profiles`] | which services/characteristics make up each supported profile |
//! | [`source`] | the source future: discovery, scan watchdog, per-device sessions, RACP |
//! | [`simulated`] | standard-profile devices for hal's simulator (demo, tests) |
//! | `tests` | the source driven through the simulator |

pub mod config;
pub mod profiles;
pub mod simulated;
pub mod source;

#[cfg(test)]
mod tests;

pub use config::{BleConfig, RawBleConfig};
pub use source::{BleSource, BleStatus, InMemoryProgress, StatusHandle, StoredRecordProgress};
