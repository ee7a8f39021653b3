//! Telemetry: logging, and the ONE place where counters and gauges live.
//!
//! | file | owns |
//! |---|---|
//! | [`logging`] | the tracing subscriber (human / plain `key=value` lines) and the PHI rule for logs |
//! | [`metrics`] | [`Telemetry`]: counters (readings per source+kind, mapping failures, upload attempts/successes/retries/dead letters, token refreshes/failures), per-device state, task liveness; [`Telemetry::snapshot`] builds the picture |
//! | [`snapshot`] | the [`Snapshot`] views (serde, shared with the `status` command), what "healthy" means, the warnings |
//! | [`history`] | the last 24 hours, hour by hour: readings stored and the highest queue depth seen |
//! | [`prometheus`] | the Prometheus text exposition of a snapshot |
//!
//! Components report events to [`Telemetry`] (the ingest observer, the uploader, the pipeline's
//! liveness watch) and read live views they already keep (BLE/serial/MQTT status handles, the
//! queue's stats, the clock's sync state) only when a snapshot is taken. Log lines and metrics
//! agree because both count the same events here.
//!
//! PHI rule for telemetry: devices are labelled by their configuration path
//! (`sources.ble.devices[0]`) or a label from `[status] device_labels`, never by address, and no
//! measurement value appears — unless `[status] show_readings` is on.

pub mod history;
pub mod logging;
pub mod metrics;
pub mod prometheus;
pub mod snapshot;

pub use logging::{PlainFormat, init, init_default};
pub use metrics::{DeviceSlot, Snapshot, Telemetry, TelemetryOptions};
