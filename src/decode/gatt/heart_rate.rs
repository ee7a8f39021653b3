//! Heart Rate Measurement (0x2A37), Heart Rate Service.
//!
//! Flags: b0 HR is u16 (else u8); b1–2 sensor contact (0b10 supported, not detected; 0b11
//! supported, detected; 0b0x not supported); b3 Energy Expended u16 kJ; b4 one or more
//! RR-intervals u16 in 1/1024 s filling the rest of the value; b5–7 reserved.

use serde::{Deserialize, Serialize};

use super::{DecodeContext, base_reading, flags_of};
use crate::decode::bytes::{Reader, Writer, check_reserved_bits};
use crate::decode::{DecodeError, EncodeError};
use crate::reading::{Decimal, Kind, MeasuredValue, Quantity, Reading, StatusFlag};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorContact {
    NotSupported,
    NotDetected,
    Detected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartRateMeasurement {
    /// Beats per minute.
    pub heart_rate: u16,
    /// The value travelled as u16 (flag b0), even if it would fit in u8.
    pub wide_format: bool,
    pub sensor_contact: SensorContact,
    pub energy_expended_kj: Option<u16>,
    /// RR-intervals in units of 1/1024 s, oldest first.
    pub rr_intervals: Vec<u16>,
}

pub fn decode(bytes: &[u8]) -> Result<HeartRateMeasurement, DecodeError> {
    let mut r = Reader::new(bytes);
    let flags = r.u8("flags")?;
    check_reserved_bits("flags", 0, u32::from(flags), 0x1F)?;
    let wide_format = flags & 0x01 != 0;
    let heart_rate = if wide_format {
        r.u16("heart rate")?
    } else {
        u16::from(r.u8("heart rate")?)
    };
    let sensor_contact = match (flags >> 1) & 0x03 {
        0b10 => SensorContact::NotDetected,
        0b11 => SensorContact::Detected,
        _ => SensorContact::NotSupported,
    };
    let energy_expended_kj = if flags & 0x08 != 0 {
        Some(r.u16("energy expended")?)
    } else {
        None
    };
    let mut rr_intervals = Vec::new();
    if flags & 0x10 != 0 {
        // "One or more" RR-intervals: at least one, and whole u16 values only.
        rr_intervals.push(r.u16("RR-interval")?);
        while r.remaining() > 0 {
            rr_intervals.push(r.u16("RR-interval")?);
        }
    }
    r.finish("heart rate measurement")?;
    Ok(HeartRateMeasurement {
        heart_rate,
        wide_format,
        sensor_contact,
        energy_expended_kj,
        rr_intervals,
    })
}

pub fn encode(m: &HeartRateMeasurement) -> Result<Vec<u8>, EncodeError> {
    if !m.wide_format && m.heart_rate > 255 {
        return Err(EncodeError::OutOfRange {
            field: "heart rate",
            reason: "above 255 needs the 16-bit format",
        });
    }
    let contact = match m.sensor_contact {
        SensorContact::NotSupported => 0,
        SensorContact::NotDetected => 0b100,
        SensorContact::Detected => 0b110,
    };
    let mut w = Writer::new();
    w.u8(flags_of(&[
        (0, m.wide_format),
        (3, m.energy_expended_kj.is_some()),
        (4, !m.rr_intervals.is_empty()),
    ]) | contact);
    if m.wide_format {
        w.u16(m.heart_rate);
    } else {
        w.u8(m.heart_rate as u8);
    }
    if let Some(e) = m.energy_expended_kj {
        w.u16(e);
    }
    for rr in &m.rr_intervals {
        w.u16(*rr);
    }
    Ok(w.into_bytes())
}

pub fn readings(m: &HeartRateMeasurement, ctx: &DecodeContext) -> Vec<Reading> {
    let mut reading = base_reading(ctx, Kind::HeartRate);
    reading.value = Some(Quantity {
        value: MeasuredValue::Number(Decimal::new(i64::from(m.heart_rate), 0)),
        ucum: "/min".into(),
    });
    if m.sensor_contact == SensorContact::NotDetected {
        reading.status.push(StatusFlag::SensorContactNotDetected);
    }
    vec![reading]
}
