//! # VectorCare Gateway
//!
//! A remote-patient-monitoring gateway for Pi-class home hubs: it reads vital signs from
//! medical devices over Bluetooth LE, serial lines and MQTT, decodes them exactly, maps them to
//! HL7 FHIR R4 (Personal Health Device IG style), queues them durably and uploads them to a FHIR
//! server with a SMART on FHIR Backend Services token.
//!
//! ## Layout
//!
//! Data walks one way: **source → `Reading` → FHIR mapper → durable queue → uploader**.
//! Nothing downstream calls upstream except the acknowledgement path (queue durable → source
//! may acknowledge to its device or broker).
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | raw serde config → validated typed `Config` (every problem with its key path); never opens a device or socket |
//! | [`reading`] | the device-neutral `Reading` (plain data) |
//! | [`decode`] | PURE protocol decoders/encoders (IEEE-11073 numbers, GATT health profiles: `gatt/<profile>.rs`); entry point `readings_from_characteristic` |
//! | [`fhir`] | PURE mapping `Reading` → Observation/Device (`map_reading` → `UploadUnit`), code tables, identifiers, Bundles (`build_bundle`), the queued unit format (`unit_format`); `[fhir]` config; table in docs/MAPPING.md |
//! | [`sources`] | BLE / serial / MQTT adapters producing `Reading`s |
//! | [`queue`] | the durable queue (sled, one database per id-range segment): group commit with real fdatasync, record format, limits, quarantine; the module doc is its design document |
//! | [`upload`] | SMART Backend Services auth, the FHIR HTTP client, retry policy |
//! | [`runtime`] | builds components from `Config`, spawns every task, shutdown, watchdog |
//! | [`simulator`] | the device simulator (`simulate`, `demo`): TOML scenarios → hal's in-process devices, a BlueZ peripheral (`bluer`), ptys, MQTT; docs/SIMULATOR.md (`simulator` feature) |
//! | [`telemetry`] | logging setup, and the one place counters/gauges live (metrics, 24 h history, Prometheus text) |
//! | [`status`] | the local status endpoint: `/healthz`, `/metrics`, `/status` JSON, the HTML page; `[status]` config |
//! | [`crypto`] | the ring-backed crypto provider for rustls and jsonwebtoken (`install_providers`) |
//! | [`test_double`] | a FHIR + SMART token server **test double** (not a real server) for the demo and tests (`demo` feature) |
//! | [`cli`] | one file per command (`queue` inspects/repairs the queue offline); `absent` answers for commands a device build left out |
//! | [`exit`] | process exit codes |
//!
//! ## Tasks
//!
//! Only [`runtime::pipeline`] spawns tasks: one per configured source (`ble`, `serial`,
//! `mqtt`), the `ingest` task (map + group append, answering each source), and the `uploader`.
//! The watchdog pings systemd only while all of them are alive. Threads owned by libraries: the
//! queue's group-commit thread, sled's flusher, and (demo only) the embedded MQTT broker.
//!
//! The `vectorcare-hal` crate (`hal/`) holds the hardware seams (BLE central, serial port,
//! clock/time-sync state) with real and simulated backends; it knows nothing of vital signs.

pub mod cli;
pub mod config;
pub mod crypto;
pub mod decode;
pub mod exit;
pub mod fhir;
pub mod queue;
pub mod reading;
pub mod runtime;
#[cfg(feature = "simulator")]
pub mod simulator;
pub mod sources;
pub mod status;
pub mod telemetry;
#[cfg(feature = "demo")]
pub mod test_double;
pub mod upload;
