//! Runtime: builds components from `Config`, spawns every task, wires the bounded channels,
//! shuts down in order, and feeds systemd's watchdog.

pub mod ingest;
pub mod notify;
pub mod pipeline;
pub mod shutdown;

pub use shutdown::{Shutdown, ShutdownTrigger, shutdown_pair};
