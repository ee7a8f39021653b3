//! Serial source (issue #7): USB/RS-232 devices with config-driven line formats and the Masimo
//! ASCII protocol. See `config` for the TOML section and `source` for the session loop.

pub mod config;
pub mod source;
#[cfg(test)]
mod tests;

pub use config::{RawSerialConfig, SerialConfig};
pub use source::{PortState, PortStatus, SerialSource, SerialStatus};
