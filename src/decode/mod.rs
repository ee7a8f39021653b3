//! PURE protocol code (issue #3): IEEE-11073 numbers, Bluetooth SIG GATT health
//! characteristics (decode + encode), serial protocols, MQTT payload schemas → `Reading`.
//! No I/O, no clock, no logging of values.
//!
//! Entry point for sources and the `decode` command:
//! [`readings_from_characteristic`] (bytes of one notification/indication/read → readings).
//! Each profile lives in its own file under [`gatt`] with typed structs, `decode` and `encode`.

pub mod bytes;
pub mod error;
pub mod gatt;
pub mod ieee11073;

pub use error::{DecodeError, EncodeError};
pub use gatt::{
    CharacteristicValue, DecodeContext, FeatureContext, decode_characteristic,
    readings_from_characteristic,
};
pub mod mqtt;
pub mod serial;
