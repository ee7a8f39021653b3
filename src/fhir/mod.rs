//! PURE mapping `Reading` → FHIR R4 Observation/Device resources and Bundles (issue #3),
//! following the HL7 Personal Health Device (PHD) IG and the R4 vital-signs profiles.
//! No I/O, no clock, no logging of values.
//!
//! * [`map_reading`] turns one reading into an [`UploadUnit`]: the Observation, the measuring
//!   Device and the gateway Device as compact JSON text, the Observation identifier and the
//!   deterministic resource id. The unit is what the durable queue stores, in the compact
//!   framing of [`unit_format`] ([`encode_unit`]; [`decode_unit`] also reads the JSON form
//!   queued by older gateways).
//! * [`build_bundle`] packs units into one batch or transaction Bundle (each Device once, by
//!   conditional create) by concatenating their JSON texts, and says which entry carries
//!   which unit.
//!
//! Numbers keep the precision the device reported: the JSON is rendered from typed structs
//! whose quantities are exact JSON numbers ("2.00" is sent as 2.00). A `serde_json::Value`
//! would turn 2.00 into 2.0, so resources travel as JSON text, never as `Value`.

use serde::{Deserialize, Serialize};

pub mod bundle;
#[doc(hidden)]
pub mod bundle_reference;
pub mod codes;
pub mod config;
pub mod device;
pub mod examples;
pub mod identity;
pub mod model;
pub mod observation;
pub mod rules;
pub mod status;
pub mod time;
pub mod unit;
pub mod unit_format;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod unit_format_tests;

pub use bundle::{BuiltBundle, BundleJson, BundleOptions, BundleType, WriteMode, build_bundle};
pub use model::Identifier;
pub use observation::map_reading;
pub use unit::{IdentifierRef, StatusRef, UploadUnit};
pub use unit_format::{UnitFormatError, decode_unit, decode_unit_owned, encode_unit};

/// Who the gateway is, for its own Device resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayIdentity {
    /// Stable id of this hub (e.g. its machine id or configured name); the Device identifier.
    pub id: String,
    #[serde(default)]
    pub serial: Option<String>,
    /// Human name, e.g. "VectorCare hub (living room)".
    pub name: String,
}

/// What the mapper needs besides the reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapContext {
    /// The patient reference, e.g. "Patient/123". `None` leaves `subject` out (and with it the
    /// vital-signs profile claim) rather than inventing a placeholder patient.
    pub patient: Option<String>,
    pub gateway: GatewayIdentity,
    /// System of Observation.identifier; `None` = [`identity::DEFAULT_OBSERVATION_SYSTEM`].
    pub identifier_system: Option<String>,
}

impl MapContext {
    pub fn new(patient: Option<String>, gateway: GatewayIdentity) -> Self {
        Self {
            patient,
            gateway,
            identifier_system: None,
        }
    }
}

/// Why a reading cannot become an Observation. All are permanent for that reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("reading of kind {kind} has no value")]
    MissingValue { kind: String },
    #[error("blood pressure reading has no systolic and diastolic components")]
    MissingComponents,
    #[error("unit {ucum:?} is not a UCUM unit this gateway maps for {kind}")]
    UnsupportedUnit { kind: String, ucum: String },
    #[error("patient reference {0:?} is not Type/id, an absolute URL or a urn:uuid")]
    InvalidPatientReference(String),
    #[error("time cannot be written as a FHIR dateTime (year outside 0001-9999)")]
    InvalidTime,
    #[error("internal: could not render JSON: {0}")]
    Render(String),
}

/// The owned form of an [`UploadUnit`] (its serde form: JSON units of older gateways,
/// `queue show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UploadUnitData {
    observation: String,
    device: String,
    gateway: String,
    identifier: Identifier,
    id: String,
    device_identifier: Identifier,
    gateway_identifier: Identifier,
    /// The PHD IG status-bits Observation of this reading, when the device set bits the IG
    /// codes (absent in units queued before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<StatusObservation>,
    /// Absent in payloads queued before this field existed, and for live measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_record: Option<SourceRecord>,
}

/// A `PhdBitsEnumerationObservation` that travels with its measurement (see [`status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusObservation {
    /// Compact JSON text (no `id`; PUT mode splices it in).
    pub observation: String,
    pub identifier: Identifier,
    /// Deterministic id for PUT mode.
    pub id: String,
}

/// The device record an upload unit came from: a stored record (Glucose, CGM) with its
/// sequence number. Once the server confirmed the unit, the BLE source may skip and delete
/// records up to that sequence on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The reading's `device.address` (for BLE, the device's Bluetooth address).
    pub device: String,
    pub sequence: u32,
}
