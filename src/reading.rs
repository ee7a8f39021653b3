//! The device-neutral reading: what every source (BLE, serial, MQTT) emits.
//!
//! Plain data only: no I/O, no FHIR, no clock reads. Sources fill it from decoded device
//! messages; the FHIR mapper (`crate::fhir`) turns it into resources. Values keep their decimal
//! precision (`Decimal` keeps the exponent, so "2.00" stays "2.00") and device special values
//! (NaN, NRes, ±INF) stay special, so nothing downstream invents a number.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Which kind of adapter produced a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Ble,
    Serial,
    Mqtt,
}

/// Who measured: everything the gateway knows about the measuring device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceIdentity {
    pub source: SourceKind,
    /// Transport address: BLE MAC ("AA:BB:CC:DD:EE:FF"), serial port path, or the device id
    /// configured for an MQTT topic. Stable for the device's lifetime on this hub.
    pub address: String,
    /// IEEE EUI-64 System ID (BLE Device Information 0x2A23), when the device reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<[u8; 8]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
}

/// What was measured. One reading is one Observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    HeartRate,
    /// Pulse rate reported by an oximeter or a blood-pressure cuff.
    PulseRate,
    /// Panel: components systolic, diastolic and (optionally) mean arterial pressure.
    BloodPressure,
    BodyTemperature,
    OxygenSaturation,
    BodyWeight,
    BodyHeight,
    BodyMassIndex,
    BloodGlucose,
    RespiratoryRate,
}

/// A decimal number that keeps its precision: value = mantissa × 10^exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decimal {
    pub mantissa: i64,
    pub exponent: i8,
}

impl Decimal {
    pub const fn new(mantissa: i64, exponent: i8) -> Self {
        Self { mantissa, exponent }
    }
}

impl std::fmt::Display for Decimal {
    /// Plain decimal notation with exactly `-exponent` fraction digits (never scientific), so
    /// the precision a device reported is kept in the text a FHIR server stores.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let negative = self.mantissa < 0;
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if negative { "-" } else { "" };
        if self.exponent >= 0 {
            let zeros = "0".repeat(self.exponent as usize);
            if self.mantissa == 0 {
                return write!(f, "0");
            }
            return write!(f, "{sign}{digits}{zeros}");
        }
        let scale = self.exponent.unsigned_abs() as usize;
        let padded = if digits.len() <= scale {
            format!("{}{}", "0".repeat(scale - digits.len() + 1), digits)
        } else {
            digits
        };
        let (int_part, frac_part) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int_part}.{frac_part}")
    }
}

/// A measured number, or the special value the device sent instead of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum MeasuredValue {
    Number(Decimal),
    /// IEEE-11073 NaN: not a number (measurement invalid).
    NotANumber,
    /// IEEE-11073 NRes: not at this resolution.
    NotAtThisResolution,
    PositiveInfinity,
    NegativeInfinity,
}

/// A value with its UCUM unit code (e.g. "mm[Hg]", "/min", "Cel", "kg", "%", "mg/dL").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quantity {
    pub value: MeasuredValue,
    pub ucum: String,
}

/// Parts of a panel reading (blood pressure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    Systolic,
    Diastolic,
    MeanArterial,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Component {
    pub kind: ComponentKind,
    pub quantity: Quantity,
}

/// Device-reported conditions that qualify a measurement (carried to FHIR as the PHD IG does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusFlag {
    BodyMovement,
    CuffTooLoose,
    IrregularPulse,
    PulseRateAboveRange,
    PulseRateBelowRange,
    ImproperMeasurementPosition,
    SensorContactNotDetected,
    QuestionableMeasurement,
    EarlyEstimate,
    ValidatedData,
    SensorMalfunction,
    LowPerfusion,
    DeviceClockNotSet,
    /// Any other device status bit, by name (kept so no information is lost).
    Other(u16),
}

/// A timestamp exactly as the device reported it (its own clock, no zone), before correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hours: u8,
    pub minutes: u8,
    pub seconds: u8,
}

/// What the gateway knew about clocks when the reading arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ClockContext {
    /// Device clock minus gateway clock, in seconds, when measured (e.g. from Current Time
    /// 0x2A2B read at connect). Used to correct `device_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_offset_seconds: Option<i64>,
    /// Whether the gateway's own clock was synchronised (NTP) when the reading was received.
    pub gateway_clock_synchronized: bool,
}

/// One measurement from one device, device-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub device: DeviceIdentity,
    pub kind: Kind,
    /// The single value; `None` for panels (see `components`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    /// Raw device timestamp, if the message carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_time: Option<DeviceTime>,
    /// When the gateway received the message (gateway clock, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(default)]
    pub clock: ClockContext,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<StatusFlag>,
    /// Device record sequence number (Glucose, CGM, stored records), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u32>,
    /// Device user index (multi-user cuffs and scales), if any; 255 = unknown user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u8>,
    /// Free-form qualifiers that the mapper understands (e.g. "temperature_site" = "ear",
    /// "glucose_sample" = "capillary_whole_blood"). Names are documented in docs/MAPPING.md.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub qualifiers: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_keeps_precision() {
        assert_eq!(Decimal::new(2, 0).to_string(), "2");
        assert_eq!(Decimal::new(20, -1).to_string(), "2.0");
        assert_eq!(Decimal::new(200, -2).to_string(), "2.00");
        assert_eq!(Decimal::new(2, 1).to_string(), "20");
        assert_eq!(Decimal::new(2, 2).to_string(), "200");
        assert_eq!(Decimal::new(-5, -3).to_string(), "-0.005");
        assert_eq!(Decimal::new(365, -1).to_string(), "36.5");
        assert_eq!(Decimal::new(0, -2).to_string(), "0.00");
        assert_eq!(Decimal::new(0, 3).to_string(), "0");
    }
}
