//! Bluetooth SIG GATT health characteristics: one file per profile, each with typed structs,
//! `decode`, `encode` and `readings` (typed value → device-neutral `Reading`s).
//!
//! [`readings_from_characteristic`] is the entry point for the BLE source and the `decode`
//! command. Characteristics that carry no final measurement (features, intermediate values,
//! RACP, clocks, glucose context) are still fully validated and decode to zero readings;
//! [`decode_characteristic`] returns their typed value.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::DecodeError;
use crate::reading::{ClockContext, DeviceIdentity, DeviceTime, Kind, Reading};

pub mod blood_pressure;
pub mod cgm;
pub mod clock;
pub mod glucose;
pub mod heart_rate;
pub mod plx;
pub mod racp;
pub mod thermometer;
pub mod weight;

#[cfg(test)]
mod tests;

/// 16-bit UUIDs of the characteristics this module decodes.
pub mod uuids {
    pub const DATE_TIME: u16 = 0x2A08;
    pub const GLUCOSE_MEASUREMENT: u16 = 0x2A18;
    pub const TEMPERATURE_MEASUREMENT: u16 = 0x2A1C;
    pub const TEMPERATURE_TYPE: u16 = 0x2A1D;
    pub const INTERMEDIATE_TEMPERATURE: u16 = 0x2A1E;
    pub const CURRENT_TIME: u16 = 0x2A2B;
    pub const GLUCOSE_MEASUREMENT_CONTEXT: u16 = 0x2A34;
    pub const BLOOD_PRESSURE_MEASUREMENT: u16 = 0x2A35;
    pub const INTERMEDIATE_CUFF_PRESSURE: u16 = 0x2A36;
    pub const HEART_RATE_MEASUREMENT: u16 = 0x2A37;
    pub const BLOOD_PRESSURE_FEATURE: u16 = 0x2A49;
    pub const RECORD_ACCESS_CONTROL_POINT: u16 = 0x2A52;
    pub const PLX_SPOT_CHECK_MEASUREMENT: u16 = 0x2A5E;
    pub const PLX_CONTINUOUS_MEASUREMENT: u16 = 0x2A5F;
    pub const PLX_FEATURES: u16 = 0x2A60;
    pub const WEIGHT_MEASUREMENT: u16 = 0x2A9D;
    pub const WEIGHT_SCALE_FEATURE: u16 = 0x2A9E;
    pub const CGM_MEASUREMENT: u16 = 0x2AA7;
}

/// What the gateway learnt from other characteristics of the same device that changes how a
/// measurement decodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureContext {
    /// Weight Scale Feature (0x2A9E): the scale's weight and height resolutions.
    #[serde(default)]
    pub weight_scale: Option<weight::WeightScaleFeature>,
    /// CGM Feature (0x2AA8) says every CGM record carries an E2E-CRC.
    #[serde(default)]
    pub cgm_e2e_crc: bool,
    /// CGM Session Start Time (0x2AAA), so record time offsets become device times.
    #[serde(default)]
    pub cgm_session_start: Option<DeviceTime>,
}

/// Everything a decoder needs besides the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeContext {
    pub device: DeviceIdentity,
    /// When the gateway received the bytes (gateway clock, UTC).
    pub received_at: OffsetDateTime,
    pub clock: ClockContext,
    pub features: FeatureContext,
}

/// A decoded characteristic value of any supported kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "characteristic", content = "value", rename_all = "snake_case")]
pub enum CharacteristicValue {
    HeartRateMeasurement(heart_rate::HeartRateMeasurement),
    BloodPressureMeasurement(blood_pressure::BloodPressureMeasurement),
    IntermediateCuffPressure(blood_pressure::BloodPressureMeasurement),
    BloodPressureFeature(blood_pressure::BloodPressureFeature),
    TemperatureMeasurement(thermometer::TemperatureMeasurement),
    IntermediateTemperature(thermometer::TemperatureMeasurement),
    TemperatureType(thermometer::TemperatureType),
    PlxSpotCheck(plx::PlxSpotCheck),
    PlxContinuous(plx::PlxContinuous),
    PlxFeatures(plx::PlxFeatures),
    WeightMeasurement(weight::WeightMeasurement),
    WeightScaleFeature(weight::WeightScaleFeature),
    GlucoseMeasurement(glucose::GlucoseMeasurement),
    GlucoseMeasurementContext(glucose::GlucoseContext),
    RecordAccessControlPoint(racp::RacpResponse),
    CgmMeasurement(Vec<cgm::CgmRecord>),
    DateTime(DeviceTime),
    CurrentTime(clock::CurrentTime),
}

/// Decodes one characteristic value to its typed form.
pub fn decode_characteristic(
    uuid: u16,
    bytes: &[u8],
    features: &FeatureContext,
) -> Result<CharacteristicValue, DecodeError> {
    use CharacteristicValue as V;
    Ok(match uuid {
        uuids::HEART_RATE_MEASUREMENT => V::HeartRateMeasurement(heart_rate::decode(bytes)?),
        uuids::BLOOD_PRESSURE_MEASUREMENT => {
            V::BloodPressureMeasurement(blood_pressure::decode(bytes)?)
        }
        uuids::INTERMEDIATE_CUFF_PRESSURE => {
            V::IntermediateCuffPressure(blood_pressure::decode(bytes)?)
        }
        uuids::BLOOD_PRESSURE_FEATURE => {
            V::BloodPressureFeature(blood_pressure::decode_feature(bytes)?)
        }
        uuids::TEMPERATURE_MEASUREMENT => V::TemperatureMeasurement(thermometer::decode(bytes)?),
        uuids::INTERMEDIATE_TEMPERATURE => V::IntermediateTemperature(thermometer::decode(bytes)?),
        uuids::TEMPERATURE_TYPE => V::TemperatureType(thermometer::decode_type(bytes)?),
        uuids::PLX_SPOT_CHECK_MEASUREMENT => V::PlxSpotCheck(plx::decode_spot_check(bytes)?),
        uuids::PLX_CONTINUOUS_MEASUREMENT => V::PlxContinuous(plx::decode_continuous(bytes)?),
        uuids::PLX_FEATURES => V::PlxFeatures(plx::decode_features(bytes)?),
        uuids::WEIGHT_MEASUREMENT => V::WeightMeasurement(weight::decode(bytes)?),
        uuids::WEIGHT_SCALE_FEATURE => V::WeightScaleFeature(weight::decode_feature(bytes)?),
        uuids::GLUCOSE_MEASUREMENT => V::GlucoseMeasurement(glucose::decode(bytes)?),
        uuids::GLUCOSE_MEASUREMENT_CONTEXT => {
            V::GlucoseMeasurementContext(glucose::decode_context(bytes)?)
        }
        uuids::RECORD_ACCESS_CONTROL_POINT => {
            V::RecordAccessControlPoint(racp::decode_response(bytes)?)
        }
        uuids::CGM_MEASUREMENT => V::CgmMeasurement(cgm::decode(bytes, features.cgm_e2e_crc)?),
        uuids::DATE_TIME => V::DateTime(clock::decode_date_time(bytes)?),
        uuids::CURRENT_TIME => V::CurrentTime(clock::decode_current_time(bytes)?),
        other => return Err(DecodeError::UnsupportedCharacteristic { uuid: other }),
    })
}

impl CharacteristicValue {
    /// The final measurements this value carries (none for features, intermediate values,
    /// control points and clocks).
    pub fn readings(&self, ctx: &DecodeContext) -> Vec<Reading> {
        use CharacteristicValue as V;
        match self {
            V::HeartRateMeasurement(m) => heart_rate::readings(m, ctx),
            V::BloodPressureMeasurement(m) => blood_pressure::readings(m, ctx),
            V::TemperatureMeasurement(m) => thermometer::readings(m, ctx),
            V::PlxSpotCheck(m) => plx::spot_check_readings(m, ctx),
            V::PlxContinuous(m) => plx::continuous_readings(m, ctx),
            V::WeightMeasurement(m) => weight::readings(m, ctx),
            V::GlucoseMeasurement(m) => glucose::readings(m, ctx),
            V::CgmMeasurement(records) => {
                records.iter().flat_map(|r| cgm::readings(r, ctx)).collect()
            }
            V::IntermediateCuffPressure(_)
            | V::BloodPressureFeature(_)
            | V::IntermediateTemperature(_)
            | V::TemperatureType(_)
            | V::PlxFeatures(_)
            | V::WeightScaleFeature(_)
            | V::GlucoseMeasurementContext(_)
            | V::RecordAccessControlPoint(_)
            | V::DateTime(_)
            | V::CurrentTime(_) => Vec::new(),
        }
    }
}

/// Decodes one notification/indication/read value into device-neutral readings.
pub fn readings_from_characteristic(
    uuid: u16,
    bytes: &[u8],
    ctx: &DecodeContext,
) -> Result<Vec<Reading>, DecodeError> {
    Ok(decode_characteristic(uuid, bytes, &ctx.features)?.readings(ctx))
}

/// A reading of `kind` with the context's device and clock filled in and nothing measured yet.
pub(crate) fn base_reading(ctx: &DecodeContext, kind: Kind) -> Reading {
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

/// Builds a flags byte from (bit, present) pairs.
pub(crate) fn flags_of(bits: &[(u8, bool)]) -> u8 {
    bits.iter()
        .filter(|(_, on)| *on)
        .fold(0u8, |acc, (bit, _)| acc | (1 << bit))
}
