//! Blood Pressure Measurement (0x2A35), Intermediate Cuff Pressure (0x2A36) and Blood
//! Pressure Feature (0x2A49), Blood Pressure Service.
//!
//! Flags: b0 kPa (else mmHg); systolic, diastolic, mean arterial pressure SFLOAT always;
//! b1 Date Time; b2 pulse rate SFLOAT; b3 user id u8; b4 measurement status u16; b5–7 reserved.
//! In Intermediate Cuff Pressure the "systolic" field carries the current cuff pressure and
//! the other two are NaN; it is decoded but yields no reading (not a final measurement).

use serde::{Deserialize, Serialize};

use super::{DecodeContext, base_reading, flags_of};
use crate::decode::bytes::{Reader, Writer, check_reserved_bits};
use crate::decode::{DecodeError, EncodeError};
use crate::reading::{
    Component, ComponentKind, DeviceTime, Kind, MeasuredValue, Quantity, Reading, StatusFlag,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PressureUnit {
    MillimetresOfMercury,
    Kilopascal,
}

impl PressureUnit {
    pub fn ucum(self) -> &'static str {
        match self {
            PressureUnit::MillimetresOfMercury => "mm[Hg]",
            PressureUnit::Kilopascal => "kPa",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PulseRateRange {
    WithinRange,
    AboveUpperLimit,
    BelowLowerLimit,
}

/// Measurement Status (u16): b0 body movement, b1 cuff too loose, b2 irregular pulse,
/// b3–4 pulse rate range, b5 improper measurement position, b6–15 reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MeasurementStatus {
    pub body_movement: bool,
    pub cuff_too_loose: bool,
    pub irregular_pulse: bool,
    pub pulse_rate_range: PulseRateRange,
    pub improper_position: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BloodPressureMeasurement {
    pub unit: PressureUnit,
    pub systolic: MeasuredValue,
    pub diastolic: MeasuredValue,
    pub mean_arterial: MeasuredValue,
    pub timestamp: Option<DeviceTime>,
    pub pulse_rate: Option<MeasuredValue>,
    pub user_id: Option<u8>,
    pub status: Option<MeasurementStatus>,
}

pub fn decode(bytes: &[u8]) -> Result<BloodPressureMeasurement, DecodeError> {
    let mut r = Reader::new(bytes);
    let flags = r.u8("flags")?;
    check_reserved_bits("flags", 0, u32::from(flags), 0x1F)?;
    let unit = if flags & 0x01 != 0 {
        PressureUnit::Kilopascal
    } else {
        PressureUnit::MillimetresOfMercury
    };
    let systolic = r.sfloat("systolic")?;
    let diastolic = r.sfloat("diastolic")?;
    let mean_arterial = r.sfloat("mean arterial pressure")?;
    let timestamp = (flags & 0x02 != 0)
        .then(|| r.date_time("time stamp"))
        .transpose()?;
    let pulse_rate = (flags & 0x04 != 0)
        .then(|| r.sfloat("pulse rate"))
        .transpose()?;
    let user_id = (flags & 0x08 != 0).then(|| r.u8("user id")).transpose()?;
    let status = if flags & 0x10 != 0 {
        let offset = r.offset();
        let raw = r.u16("measurement status")?;
        check_reserved_bits("measurement status", offset, u32::from(raw), 0x003F)?;
        let pulse_rate_range = match (raw >> 3) & 0x03 {
            0 => PulseRateRange::WithinRange,
            1 => PulseRateRange::AboveUpperLimit,
            2 => PulseRateRange::BelowLowerLimit,
            _ => {
                return Err(DecodeError::Reserved {
                    field: "measurement status (pulse rate range)",
                    offset,
                    value: u32::from(raw),
                });
            }
        };
        Some(MeasurementStatus {
            body_movement: raw & 0x01 != 0,
            cuff_too_loose: raw & 0x02 != 0,
            irregular_pulse: raw & 0x04 != 0,
            pulse_rate_range,
            improper_position: raw & 0x20 != 0,
        })
    } else {
        None
    };
    r.finish("blood pressure measurement")?;
    Ok(BloodPressureMeasurement {
        unit,
        systolic,
        diastolic,
        mean_arterial,
        timestamp,
        pulse_rate,
        user_id,
        status,
    })
}

pub fn encode(m: &BloodPressureMeasurement) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new();
    w.u8(flags_of(&[
        (0, m.unit == PressureUnit::Kilopascal),
        (1, m.timestamp.is_some()),
        (2, m.pulse_rate.is_some()),
        (3, m.user_id.is_some()),
        (4, m.status.is_some()),
    ]));
    w.sfloat("systolic", &m.systolic)?;
    w.sfloat("diastolic", &m.diastolic)?;
    w.sfloat("mean arterial pressure", &m.mean_arterial)?;
    if let Some(t) = &m.timestamp {
        w.date_time(t);
    }
    if let Some(p) = &m.pulse_rate {
        w.sfloat("pulse rate", p)?;
    }
    if let Some(u) = m.user_id {
        w.u8(u);
    }
    if let Some(s) = &m.status {
        let range: u16 = match s.pulse_rate_range {
            PulseRateRange::WithinRange => 0,
            PulseRateRange::AboveUpperLimit => 1,
            PulseRateRange::BelowLowerLimit => 2,
        };
        w.u16(
            u16::from(s.body_movement)
                | u16::from(s.cuff_too_loose) << 1
                | u16::from(s.irregular_pulse) << 2
                | range << 3
                | u16::from(s.improper_position) << 5,
        );
    }
    Ok(w.into_bytes())
}

fn status_flags(status: Option<&MeasurementStatus>) -> Vec<StatusFlag> {
    let Some(s) = status else {
        return Vec::new();
    };
    let mut flags = Vec::new();
    if s.body_movement {
        flags.push(StatusFlag::BodyMovement);
    }
    if s.cuff_too_loose {
        flags.push(StatusFlag::CuffTooLoose);
    }
    if s.irregular_pulse {
        flags.push(StatusFlag::IrregularPulse);
    }
    match s.pulse_rate_range {
        PulseRateRange::WithinRange => {}
        PulseRateRange::AboveUpperLimit => flags.push(StatusFlag::PulseRateAboveRange),
        PulseRateRange::BelowLowerLimit => flags.push(StatusFlag::PulseRateBelowRange),
    }
    if s.improper_position {
        flags.push(StatusFlag::ImproperMeasurementPosition);
    }
    flags
}

/// The panel (systolic, diastolic, mean) and, when present, the pulse rate as its own reading.
/// Both carry the cuff's status flags: they describe the one measurement both came from.
pub fn readings(m: &BloodPressureMeasurement, ctx: &DecodeContext) -> Vec<Reading> {
    let ucum = m.unit.ucum();
    let component = |kind, value: MeasuredValue| Component {
        kind,
        quantity: Quantity {
            value,
            ucum: ucum.into(),
        },
    };
    let status = status_flags(m.status.as_ref());
    let mut panel = base_reading(ctx, Kind::BloodPressure);
    panel.components = vec![
        component(ComponentKind::Systolic, m.systolic),
        component(ComponentKind::Diastolic, m.diastolic),
        component(ComponentKind::MeanArterial, m.mean_arterial),
    ];
    panel.device_time = m.timestamp;
    panel.user_id = m.user_id;
    panel.status = status.clone();
    let mut out = vec![panel];
    if let Some(pulse) = m.pulse_rate {
        let mut reading = base_reading(ctx, Kind::PulseRate);
        reading.value = Some(Quantity {
            value: pulse,
            ucum: "/min".into(),
        });
        reading.device_time = m.timestamp;
        reading.user_id = m.user_id;
        reading.status = status;
        reading
            .qualifiers
            .insert("pulse_source".into(), "blood_pressure_cuff".into());
        out.push(reading);
    }
    out
}

/// Blood Pressure Feature (0x2A49), u16: b0 body movement detection, b1 cuff fit detection,
/// b2 irregular pulse detection, b3 pulse rate range detection, b4 measurement position
/// detection, b5 multiple bonds, b6 E2E-CRC, b7 user data service, b8 user facing time
/// (b6–8 added in BLS 1.1); b9–15 reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BloodPressureFeature {
    pub bits: u16,
}

impl BloodPressureFeature {
    pub fn supports(&self, bit: u8) -> bool {
        bit < 16 && self.bits & (1 << bit) != 0
    }
}

pub fn decode_feature(bytes: &[u8]) -> Result<BloodPressureFeature, DecodeError> {
    let mut r = Reader::new(bytes);
    let bits = r.u16("blood pressure feature")?;
    check_reserved_bits("blood pressure feature", 0, u32::from(bits), 0x01FF)?;
    r.finish("blood pressure feature")?;
    Ok(BloodPressureFeature { bits })
}

pub fn encode_feature(f: &BloodPressureFeature) -> Vec<u8> {
    f.bits.to_le_bytes().to_vec()
}
