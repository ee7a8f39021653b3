//! PURE protocol code (issue #3): IEEE-11073 numbers, Bluetooth SIG GATT health
//! characteristics (decode + encode), serial protocols, MQTT payload schemas → `Reading`.
//! No I/O, no clock, no logging of values.
pub mod mqtt;
pub mod serial;
