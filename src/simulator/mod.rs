//! The device simulator (issue #10): plays TOML scenario files — simulated devices, their
//! seeded value streams, timing and faults — against a target:
//!
//! | target | what the devices are |
//! |---|---|
//! | [`inprocess`] | hal's in-process BLE simulator + simulated serial ports (`demo`, tests) |
//! | [`bluer_peripheral`] | a real BLE peripheral on a BlueZ adapter: GATT server + advertising |
//! | [`pty`] | serial devices on pseudo-terminals (or a real port) |
//! | [`mqtt`] | MQTT devices publishing to a broker |
//!
//! Layers: [`scenario`] (the file, validated with key paths) → [`engine::timeline`] (every event
//! of the run, computed up front from the seed: same seed, same run) → [`encode`] (a sample
//! in each transport's wire format, with the project's encoders) → a [`engine::Target`].
//! Nothing here spawns tasks: the CLI awaits [`engine::play`].

pub mod bluer_peripheral;
pub mod encode;
pub mod engine;
pub mod gatt_db;
pub mod inprocess;
pub mod loopback;
pub mod mqtt;
pub mod pty;
pub mod racp_store;
pub mod scenario;
pub mod stream;

pub use engine::{PlayReport, Target, play};
pub use scenario::{Scenario, load_file, load_str};

/// Why a scenario could not be played.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("encoding a simulated value: {0}")]
    Encode(#[from] crate::decode::EncodeError),
    #[error("BLE: {0}")]
    Ble(String),
    #[error("serial: {0}")]
    Serial(String),
    #[error("MQTT: {0}")]
    Mqtt(String),
}
