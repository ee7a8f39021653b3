//! Pulse Oximeter Service: PLX Spot-Check Measurement (0x2A5E), PLX Continuous Measurement
//! (0x2A5F) and PLX Features (0x2A60).
//!
//! Spot-check flags: b0 Date Time, b1 measurement status u16, b2 device and sensor status u24,
//! b3 pulse amplitude index SFLOAT, b4 device clock is not set; b5–7 reserved.
//! Continuous flags: b0 SpO2PR-Fast pair, b1 SpO2PR-Slow pair, b2 measurement status, b3
//! device and sensor status, b4 PAI; b5–7 reserved. SpO2 and PR (normal) SFLOATs always first.
//!
//! Measurement status bits 0–4 and device/sensor status bits 16–23 are reserved.

use serde::{Deserialize, Serialize};

use super::{DecodeContext, base_reading, flags_of};
use crate::decode::bytes::{Reader, Writer, check_reserved_bits};
use crate::decode::{DecodeError, EncodeError};
use crate::reading::{DeviceTime, Kind, MeasuredValue, Quantity, Reading, StatusFlag};

const MEASUREMENT_STATUS_DEFINED: u32 = 0xFFE0;
const DEVICE_SENSOR_STATUS_DEFINED: u32 = 0x0000_FFFF;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlxSpotCheck {
    pub spo2: MeasuredValue,
    pub pulse_rate: MeasuredValue,
    pub timestamp: Option<DeviceTime>,
    pub measurement_status: Option<u16>,
    pub device_sensor_status: Option<u32>,
    pub pulse_amplitude_index: Option<MeasuredValue>,
    pub device_clock_not_set: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpO2Pr {
    pub spo2: MeasuredValue,
    pub pulse_rate: MeasuredValue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlxContinuous {
    pub normal: SpO2Pr,
    pub fast: Option<SpO2Pr>,
    pub slow: Option<SpO2Pr>,
    pub measurement_status: Option<u16>,
    pub device_sensor_status: Option<u32>,
    pub pulse_amplitude_index: Option<MeasuredValue>,
}

fn read_measurement_status(r: &mut Reader<'_>) -> Result<u16, DecodeError> {
    let offset = r.offset();
    let v = r.u16("measurement status")?;
    check_reserved_bits(
        "measurement status",
        offset,
        u32::from(v),
        MEASUREMENT_STATUS_DEFINED,
    )?;
    Ok(v)
}

fn read_device_sensor_status(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    let offset = r.offset();
    let v = r.u24("device and sensor status")?;
    check_reserved_bits(
        "device and sensor status",
        offset,
        v,
        DEVICE_SENSOR_STATUS_DEFINED,
    )?;
    Ok(v)
}

fn check_status_encodable(m: Option<u16>, d: Option<u32>) -> Result<(), EncodeError> {
    if m.is_some_and(|m| u32::from(m) & !MEASUREMENT_STATUS_DEFINED != 0) {
        return Err(EncodeError::OutOfRange {
            field: "measurement status",
            reason: "bits 0-4 are reserved",
        });
    }
    if d.is_some_and(|d| d & !DEVICE_SENSOR_STATUS_DEFINED != 0) {
        return Err(EncodeError::OutOfRange {
            field: "device and sensor status",
            reason: "bits 16-23 are reserved",
        });
    }
    Ok(())
}

pub fn decode_spot_check(bytes: &[u8]) -> Result<PlxSpotCheck, DecodeError> {
    let mut r = Reader::new(bytes);
    let flags = r.u8("flags")?;
    check_reserved_bits("flags", 0, u32::from(flags), 0x1F)?;
    let spo2 = r.sfloat("SpO2")?;
    let pulse_rate = r.sfloat("pulse rate")?;
    let timestamp = (flags & 0x01 != 0)
        .then(|| r.date_time("time stamp"))
        .transpose()?;
    let measurement_status = (flags & 0x02 != 0)
        .then(|| read_measurement_status(&mut r))
        .transpose()?;
    let device_sensor_status = (flags & 0x04 != 0)
        .then(|| read_device_sensor_status(&mut r))
        .transpose()?;
    let pulse_amplitude_index = (flags & 0x08 != 0)
        .then(|| r.sfloat("pulse amplitude index"))
        .transpose()?;
    r.finish("PLX spot-check measurement")?;
    Ok(PlxSpotCheck {
        spo2,
        pulse_rate,
        timestamp,
        measurement_status,
        device_sensor_status,
        pulse_amplitude_index,
        device_clock_not_set: flags & 0x10 != 0,
    })
}

pub fn encode_spot_check(m: &PlxSpotCheck) -> Result<Vec<u8>, EncodeError> {
    check_status_encodable(m.measurement_status, m.device_sensor_status)?;
    let mut w = Writer::new();
    w.u8(flags_of(&[
        (0, m.timestamp.is_some()),
        (1, m.measurement_status.is_some()),
        (2, m.device_sensor_status.is_some()),
        (3, m.pulse_amplitude_index.is_some()),
        (4, m.device_clock_not_set),
    ]));
    w.sfloat("SpO2", &m.spo2)?;
    w.sfloat("pulse rate", &m.pulse_rate)?;
    if let Some(t) = &m.timestamp {
        w.date_time(t);
    }
    if let Some(s) = m.measurement_status {
        w.u16(s);
    }
    if let Some(s) = m.device_sensor_status {
        w.u24(s);
    }
    if let Some(p) = &m.pulse_amplitude_index {
        w.sfloat("pulse amplitude index", p)?;
    }
    Ok(w.into_bytes())
}

pub fn decode_continuous(bytes: &[u8]) -> Result<PlxContinuous, DecodeError> {
    let mut r = Reader::new(bytes);
    let flags = r.u8("flags")?;
    check_reserved_bits("flags", 0, u32::from(flags), 0x1F)?;
    let normal = SpO2Pr {
        spo2: r.sfloat("SpO2 (normal)")?,
        pulse_rate: r.sfloat("pulse rate (normal)")?,
    };
    let fast = if flags & 0x01 != 0 {
        Some(SpO2Pr {
            spo2: r.sfloat("SpO2 (fast)")?,
            pulse_rate: r.sfloat("pulse rate (fast)")?,
        })
    } else {
        None
    };
    let slow = if flags & 0x02 != 0 {
        Some(SpO2Pr {
            spo2: r.sfloat("SpO2 (slow)")?,
            pulse_rate: r.sfloat("pulse rate (slow)")?,
        })
    } else {
        None
    };
    let measurement_status = (flags & 0x04 != 0)
        .then(|| read_measurement_status(&mut r))
        .transpose()?;
    let device_sensor_status = (flags & 0x08 != 0)
        .then(|| read_device_sensor_status(&mut r))
        .transpose()?;
    let pulse_amplitude_index = (flags & 0x10 != 0)
        .then(|| r.sfloat("pulse amplitude index"))
        .transpose()?;
    r.finish("PLX continuous measurement")?;
    Ok(PlxContinuous {
        normal,
        fast,
        slow,
        measurement_status,
        device_sensor_status,
        pulse_amplitude_index,
    })
}

pub fn encode_continuous(m: &PlxContinuous) -> Result<Vec<u8>, EncodeError> {
    check_status_encodable(m.measurement_status, m.device_sensor_status)?;
    let mut w = Writer::new();
    w.u8(flags_of(&[
        (0, m.fast.is_some()),
        (1, m.slow.is_some()),
        (2, m.measurement_status.is_some()),
        (3, m.device_sensor_status.is_some()),
        (4, m.pulse_amplitude_index.is_some()),
    ]));
    for pair in [Some(m.normal), m.fast, m.slow].into_iter().flatten() {
        w.sfloat("SpO2", &pair.spo2)?;
        w.sfloat("pulse rate", &pair.pulse_rate)?;
    }
    if let Some(s) = m.measurement_status {
        w.u16(s);
    }
    if let Some(s) = m.device_sensor_status {
        w.u24(s);
    }
    if let Some(p) = &m.pulse_amplitude_index {
        w.sfloat("pulse amplitude index", p)?;
    }
    Ok(w.into_bytes())
}

/// Status bits → flags. Bits with a named `StatusFlag` map to it; every other set bit is kept
/// as `Other(0x0100 + bit)` (measurement status) or `Other(0x0200 + bit)` (device and sensor
/// status) so nothing is lost (see docs/MAPPING.md).
pub fn status_flags(measurement: Option<u16>, device_sensor: Option<u32>) -> Vec<StatusFlag> {
    let mut flags = Vec::new();
    if let Some(m) = measurement {
        for bit in 5..16u16 {
            if m & (1 << bit) == 0 {
                continue;
            }
            flags.push(match bit {
                6 => StatusFlag::EarlyEstimate,
                7 => StatusFlag::ValidatedData,
                14 => StatusFlag::QuestionableMeasurement,
                _ => StatusFlag::Other(0x0100 + bit),
            });
        }
    }
    if let Some(d) = device_sensor {
        for bit in 0..16u16 {
            if d & (1 << bit) == 0 {
                continue;
            }
            let flag = match bit {
                // b1 is *equipment* malfunction, b14 *sensor* malfunctioning: kept apart so
                // the PHD IG bits (150604.14 / 150604.1) stay exact.
                14 => StatusFlag::SensorMalfunction,
                5 => StatusFlag::LowPerfusion,
                11 => StatusFlag::SensorContactNotDetected,
                13 => StatusFlag::ImproperMeasurementPosition,
                _ => StatusFlag::Other(0x0200 + bit),
            };
            if !flags.contains(&flag) {
                flags.push(flag);
            }
        }
    }
    flags
}

fn pair_readings(
    pair: &SpO2Pr,
    timestamp: Option<DeviceTime>,
    status: Vec<StatusFlag>,
    ctx: &DecodeContext,
) -> Vec<Reading> {
    let mut spo2 = base_reading(ctx, Kind::OxygenSaturation);
    spo2.value = Some(Quantity {
        value: pair.spo2,
        ucum: "%".into(),
    });
    spo2.device_time = timestamp;
    spo2.status = status.clone();
    let mut pr = base_reading(ctx, Kind::PulseRate);
    pr.value = Some(Quantity {
        value: pair.pulse_rate,
        ucum: "/min".into(),
    });
    pr.device_time = timestamp;
    pr.status = status;
    pr.qualifiers
        .insert("pulse_source".into(), "oximeter".into());
    vec![spo2, pr]
}

pub fn spot_check_readings(m: &PlxSpotCheck, ctx: &DecodeContext) -> Vec<Reading> {
    let mut status = status_flags(m.measurement_status, m.device_sensor_status);
    if m.device_clock_not_set {
        status.push(StatusFlag::DeviceClockNotSet);
    }
    let pair = SpO2Pr {
        spo2: m.spo2,
        pulse_rate: m.pulse_rate,
    };
    pair_readings(&pair, m.timestamp, status, ctx)
}

/// Only the "normal" pair becomes readings: fast and slow are alternative averagings of the
/// same signal, not separate measurements.
pub fn continuous_readings(m: &PlxContinuous, ctx: &DecodeContext) -> Vec<Reading> {
    let status = status_flags(m.measurement_status, m.device_sensor_status);
    pair_readings(&m.normal, None, status, ctx)
}

/// PLX Features (0x2A60): supported features u16 (b0 measurement status support field
/// present, b1 device and sensor status support field present, b2 measurement storage, b3
/// spot-check timestamp, b4 fast, b5 slow, b6 PAI, b7 multiple bonds; b8–15 reserved), then
/// the optional support fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlxFeatures {
    pub supported: u16,
    pub measurement_status_support: Option<u16>,
    pub device_sensor_status_support: Option<u32>,
}

pub fn decode_features(bytes: &[u8]) -> Result<PlxFeatures, DecodeError> {
    let mut r = Reader::new(bytes);
    let supported = r.u16("supported features")?;
    check_reserved_bits("supported features", 0, u32::from(supported), 0x00FF)?;
    let measurement_status_support = (supported & 0x01 != 0)
        .then(|| read_measurement_status(&mut r))
        .transpose()?;
    let device_sensor_status_support = (supported & 0x02 != 0)
        .then(|| read_device_sensor_status(&mut r))
        .transpose()?;
    r.finish("PLX features")?;
    Ok(PlxFeatures {
        supported,
        measurement_status_support,
        device_sensor_status_support,
    })
}

pub fn encode_features(f: &PlxFeatures) -> Result<Vec<u8>, EncodeError> {
    check_status_encodable(f.measurement_status_support, f.device_sensor_status_support)?;
    let mut w = Writer::new();
    let supported = (f.supported & 0x00FC)
        | u16::from(f.measurement_status_support.is_some())
        | u16::from(f.device_sensor_status_support.is_some()) << 1;
    w.u16(supported);
    if let Some(s) = f.measurement_status_support {
        w.u16(s);
    }
    if let Some(s) = f.device_sensor_status_support {
        w.u24(s);
    }
    Ok(w.into_bytes())
}
