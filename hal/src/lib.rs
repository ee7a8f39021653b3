//! # vectorcare-hal — hardware seams of VectorCare Gateway
//!
//! Small traits for the hardware the gateway touches, each with a real backend and a
//! simulated one. This crate knows nothing about vital signs: it moves bytes and reports state.
//!
//! ## Layout
//! | module | owns |
//! |---|---|
//! | [`ble`] | BLE central traits (scan, connect, GATT read/write/subscribe); btleplug (BlueZ) and simulated backends |
//! | [`clock`] | wall clock and the kernel's time-sync state (adjtimex), simulated clock for tests |
//! | [`serial`] | serial ports: locate (path or USB VID:PID via sysfs), open with line settings (tokio-serial), simulated ports |

pub mod ble;
pub mod clock;
pub mod serial;
