//! BLE source (issue #6): standard Bluetooth SIG health devices through a hal BLE central.
//!
//! | file | owns |
//! |---|---|
//! | [`config`] | `[sources.ble]`: raw serde form → validated `BleConfig` |
//! | [`profiles`] | which services/characteristics make up each supported profile |
//! | [`source`] | the source future: adapter supervision, discovery, scan watchdog, backoff |
//! | `session` | one connection to one device: identity, features, clock, subscriptions, RACP |
//! | [`progress`] | the persisted server-confirmed stored-record progress (one file per device) |
//! | [`status`] | status for `status`; the stored-record progress the uploader provides |
//! | [`simulated`] | standard-profile devices for hal's simulator (demo, tests) |
//! | `tests` | the source driven through the simulator |

pub mod config;
pub mod profiles;
pub mod progress;
mod session;
pub mod simulated;
pub mod source;
pub mod status;

#[cfg(test)]
mod tests;

pub use config::{BleConfig, RawBleConfig};
pub use progress::FileProgressStore;
pub use source::{BleSource, BleStatus, InMemoryProgress, StatusHandle, StoredRecordProgress};
