//! MQTT payload schemas → `Reading`s. PURE: no I/O, no clock, no logging of values.
//!
//! Three payload formats (documented with examples in docs/MQTT.md):
//! - [`vitals`]: this project's JSON vitals schema (`vectorcare.vitals/1`);
//! - [`open_mhealth`]: Open mHealth data points or bodies (heart-rate, blood-pressure,
//!   body-weight, body-temperature, oxygen-saturation, blood-glucose, respiratory-rate);
//! - [`fhir_observation`]: a FHIR R4 Observation, validated; its subject and device are
//!   ignored because the topic mapping decides them (the FHIR mapper re-creates the resource).
//!
//! [`vocab`] and [`number`] are shared with the serial line formats.

use time::OffsetDateTime;

use crate::reading::{ClockContext, DeviceIdentity, Reading};

pub mod fhir_observation;
pub mod number;
pub mod open_mhealth;
pub mod vitals;
pub mod vocab;

/// What the source knows when a payload arrives (the decoder reads no clock itself).
#[derive(Debug, Clone)]
pub struct PayloadContext {
    pub device: DeviceIdentity,
    pub received_at: OffsetDateTime,
    pub clock: ClockContext,
}

/// Why a payload was refused. The message names the field, never a measured value, so it can
/// go to the reject log and to debug logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("not valid JSON for this schema: {0}")]
    Json(String),
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("payload holds no reading")]
    Empty,
}

impl PayloadError {
    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        PayloadError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Which schema a topic's payloads follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    Vitals,
    OpenMhealth,
    FhirObservation,
}

/// Decodes one MQTT payload into readings.
pub fn decode_payload(
    format: PayloadFormat,
    payload: &[u8],
    ctx: &PayloadContext,
) -> Result<Vec<Reading>, PayloadError> {
    let readings = match format {
        PayloadFormat::Vitals => vitals::decode(payload, ctx)?,
        PayloadFormat::OpenMhealth => open_mhealth::decode(payload, ctx)?,
        PayloadFormat::FhirObservation => fhir_observation::decode(payload, ctx)?,
    };
    if readings.is_empty() {
        return Err(PayloadError::Empty);
    }
    Ok(readings)
}

/// A reading with the context filled in and nothing measured yet.
pub(crate) fn blank_reading(ctx: &PayloadContext, kind: crate::reading::Kind) -> Reading {
    Reading {
        device: ctx.device.clone(),
        kind,
        value: None,
        components: Vec::new(),
        device_time: None,
        received_at: ctx.received_at,
        clock: ctx.clock,
        status: Vec::new(),
        sequence: None,
        user_id: None,
        qualifiers: Default::default(),
    }
}

/// Sets `device_time` (and the UTC qualifier) from a payload timestamp.
pub(crate) fn set_time(reading: &mut Reading, field: &str, text: &str) -> Result<(), PayloadError> {
    let parsed = vocab::parse_time(text).map_err(|e| PayloadError::field(field, e))?;
    reading.device_time = Some(parsed.device_time);
    if parsed.utc {
        reading.qualifiers.insert(
            vocab::QUALIFIER_DEVICE_TIME_UTC.to_owned(),
            "true".to_owned(),
        );
    }
    Ok(())
}
