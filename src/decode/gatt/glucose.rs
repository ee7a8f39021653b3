//! Glucose Measurement (0x2A18) and Glucose Measurement Context (0x2A34), Glucose Service.
//!
//! Measurement: flags u8 (b0 time offset s16 minutes, b1 concentration SFLOAT + type/sample
//! location u8, b2 concentration unit mol/L else kg/L, b3 sensor status annunciation u16, b4
//! context follows; b5–7 reserved), sequence number u16, base Date Time, then the optional
//! fields in flag order. Type is the low nibble (1..=10), sample location the high nibble
//! (1..=4 or 15 "not available").
//!
//! Units: the wire carries kg/L or mol/L; readings use the clinical units mg/dL (×10⁵) and
//! mmol/L (×10³), converted by shifting the decimal exponent, so no precision is lost.

use serde::{Deserialize, Serialize};

use super::clock::{from_primitive, to_primitive};
use super::{DecodeContext, base_reading, flags_of};
use crate::decode::bytes::{Reader, Writer, check_reserved_bits};
use crate::decode::{DecodeError, EncodeError};
use crate::reading::{Decimal, DeviceTime, Kind, MeasuredValue, Quantity, Reading, StatusFlag};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlucoseUnit {
    KilogramPerLitre,
    MolePerLitre,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlucoseConcentration {
    pub value: MeasuredValue,
    pub unit: GlucoseUnit,
    /// 1 capillary whole blood, 2 capillary plasma, 3 venous whole blood, 4 venous plasma,
    /// 5 arterial whole blood, 6 arterial plasma, 7 undetermined whole blood, 8 undetermined
    /// plasma, 9 interstitial fluid, 10 control solution.
    pub sample_type: u8,
    /// 1 finger, 2 alternate site test, 3 earlobe, 4 control solution, 15 not available.
    pub sample_location: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlucoseMeasurement {
    pub sequence: u16,
    pub base_time: DeviceTime,
    pub time_offset_minutes: Option<i16>,
    pub concentration: Option<GlucoseConcentration>,
    pub sensor_status: Option<u16>,
    pub context_follows: bool,
}

fn sample_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        1 => "capillary_whole_blood",
        2 => "capillary_plasma",
        3 => "venous_whole_blood",
        4 => "venous_plasma",
        5 => "arterial_whole_blood",
        6 => "arterial_plasma",
        7 => "undetermined_whole_blood",
        8 => "undetermined_plasma",
        9 => "interstitial_fluid",
        10 => "control_solution",
        _ => return None,
    })
}

fn sample_location_name(l: u8) -> Option<&'static str> {
    Some(match l {
        1 => "finger",
        2 => "alternate_site_test",
        3 => "earlobe",
        4 => "control_solution",
        15 => "not_available",
        _ => return None,
    })
}

pub fn decode(bytes: &[u8]) -> Result<GlucoseMeasurement, DecodeError> {
    let mut r = Reader::new(bytes);
    let flags = r.u8("flags")?;
    check_reserved_bits("flags", 0, u32::from(flags), 0x1F)?;
    let sequence = r.u16("sequence number")?;
    let base_time = r.date_time("base time")?;
    let time_offset_minutes = (flags & 0x01 != 0)
        .then(|| r.i16("time offset"))
        .transpose()?;
    let concentration = if flags & 0x02 != 0 {
        let value = r.sfloat("glucose concentration")?;
        let offset = r.offset();
        let ts = r.u8("type-sample location")?;
        let sample_type = ts & 0x0F;
        let sample_location = ts >> 4;
        if sample_type_name(sample_type).is_none()
            || sample_location_name(sample_location).is_none()
        {
            return Err(DecodeError::Reserved {
                field: "type-sample location",
                offset,
                value: u32::from(ts),
            });
        }
        Some(GlucoseConcentration {
            value,
            unit: if flags & 0x04 != 0 {
                GlucoseUnit::MolePerLitre
            } else {
                GlucoseUnit::KilogramPerLitre
            },
            sample_type,
            sample_location,
        })
    } else {
        None
    };
    let sensor_status = if flags & 0x08 != 0 {
        let offset = r.offset();
        let v = r.u16("sensor status annunciation")?;
        check_reserved_bits("sensor status annunciation", offset, u32::from(v), 0x0FFF)?;
        Some(v)
    } else {
        None
    };
    r.finish("glucose measurement")?;
    Ok(GlucoseMeasurement {
        sequence,
        base_time,
        time_offset_minutes,
        concentration,
        sensor_status,
        context_follows: flags & 0x10 != 0,
    })
}

pub fn encode(m: &GlucoseMeasurement) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new();
    w.u8(flags_of(&[
        (0, m.time_offset_minutes.is_some()),
        (1, m.concentration.is_some()),
        (
            2,
            m.concentration
                .is_some_and(|c| c.unit == GlucoseUnit::MolePerLitre),
        ),
        (3, m.sensor_status.is_some()),
        (4, m.context_follows),
    ]));
    w.u16(m.sequence);
    w.date_time(&m.base_time);
    if let Some(o) = m.time_offset_minutes {
        w.i16(o);
    }
    if let Some(c) = &m.concentration {
        if c.sample_type > 15 || c.sample_location > 15 {
            return Err(EncodeError::OutOfRange {
                field: "type-sample location",
                reason: "type and location are 4-bit values",
            });
        }
        w.sfloat("glucose concentration", &c.value)?;
        w.u8(c.sample_type | c.sample_location << 4);
    }
    if let Some(s) = m.sensor_status {
        w.u16(s);
    }
    Ok(w.into_bytes())
}

/// The device time of the measurement: base time plus the time offset, when both are known.
fn measurement_time(m: &GlucoseMeasurement) -> DeviceTime {
    let Some(minutes) = m.time_offset_minutes else {
        return m.base_time;
    };
    to_primitive(&m.base_time)
        .and_then(|p| p.checked_add(time::Duration::minutes(i64::from(minutes))))
        .and_then(from_primitive)
        .unwrap_or(m.base_time)
}

/// Converts a kg/L or mol/L value to mg/dL or mmol/L by moving the decimal exponent.
pub(crate) fn clinical_value(value: MeasuredValue, shift: i8) -> MeasuredValue {
    match value {
        MeasuredValue::Number(d) => match d.exponent.checked_add(shift) {
            Some(exponent) => MeasuredValue::Number(Decimal::new(d.mantissa, exponent)),
            None => MeasuredValue::PositiveInfinity,
        },
        special => special,
    }
}

pub fn readings(m: &GlucoseMeasurement, ctx: &DecodeContext) -> Vec<Reading> {
    let Some(c) = &m.concentration else {
        return Vec::new();
    };
    let mut reading = base_reading(ctx, Kind::BloodGlucose);
    let (value, ucum) = match c.unit {
        GlucoseUnit::KilogramPerLitre => (clinical_value(c.value, 5), "mg/dL"),
        GlucoseUnit::MolePerLitre => (clinical_value(c.value, 3), "mmol/L"),
    };
    reading.value = Some(Quantity {
        value,
        ucum: ucum.into(),
    });
    reading.device_time = Some(measurement_time(m));
    reading.sequence = Some(u32::from(m.sequence));
    if let Some(name) = sample_type_name(c.sample_type) {
        reading
            .qualifiers
            .insert("glucose_sample".into(), name.into());
    }
    if let Some(name) = sample_location_name(c.sample_location) {
        reading
            .qualifiers
            .insert("glucose_sample_location".into(), name.into());
    }
    if let Some(s) = m.sensor_status {
        for bit in 0..12u16 {
            if s & (1 << bit) != 0 {
                reading.status.push(match bit {
                    // GATT Glucose Sensor Status Annunciation b1 = sensor malfunction
                    // (b3 is strip insertion error).
                    1 => StatusFlag::SensorMalfunction,
                    _ => StatusFlag::Other(0x0300 + bit),
                });
            }
        }
    }
    vec![reading]
}

/// Glucose Measurement Context (0x2A34): flags u8 (b0 carbohydrate id u8 + SFLOAT kg, b1 meal
/// u8, b2 tester-health u8, b3 exercise duration u16 s + intensity u8 %, b4 medication id u8 +
/// SFLOAT, b5 medication unit litres else kg, b6 HbA1c SFLOAT %, b7 extended flags u8), sequence
/// number u16, then the extended flags (if b7) and the optional fields in flag order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlucoseContext {
    pub sequence: u16,
    pub extended_flags: Option<u8>,
    pub carbohydrate: Option<(u8, MeasuredValue)>,
    pub meal: Option<u8>,
    pub tester_health: Option<u8>,
    pub exercise: Option<(u16, u8)>,
    pub medication: Option<(u8, MeasuredValue)>,
    pub medication_in_litres: bool,
    pub hba1c: Option<MeasuredValue>,
}

pub fn decode_context(bytes: &[u8]) -> Result<GlucoseContext, DecodeError> {
    let mut r = Reader::new(bytes);
    let flags = r.u8("flags")?;
    let sequence = r.u16("sequence number")?;
    let extended_flags = if flags & 0x80 != 0 {
        let offset = r.offset();
        let v = r.u8("extended flags")?;
        // All extended flag bits are reserved for future use.
        check_reserved_bits("extended flags", offset, u32::from(v), 0)?;
        Some(v)
    } else {
        None
    };
    let carbohydrate = if flags & 0x01 != 0 {
        Some((r.u8("carbohydrate id")?, r.sfloat("carbohydrate")?))
    } else {
        None
    };
    let meal = (flags & 0x02 != 0).then(|| r.u8("meal")).transpose()?;
    let tester_health = (flags & 0x04 != 0)
        .then(|| r.u8("tester-health"))
        .transpose()?;
    let exercise = if flags & 0x08 != 0 {
        Some((r.u16("exercise duration")?, r.u8("exercise intensity")?))
    } else {
        None
    };
    let medication = if flags & 0x10 != 0 {
        Some((r.u8("medication id")?, r.sfloat("medication")?))
    } else {
        None
    };
    let hba1c = (flags & 0x40 != 0).then(|| r.sfloat("HbA1c")).transpose()?;
    r.finish("glucose measurement context")?;
    Ok(GlucoseContext {
        sequence,
        extended_flags,
        carbohydrate,
        meal,
        tester_health,
        exercise,
        medication,
        medication_in_litres: flags & 0x20 != 0,
        hba1c,
    })
}

pub fn encode_context(c: &GlucoseContext) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new();
    w.u8(flags_of(&[
        (0, c.carbohydrate.is_some()),
        (1, c.meal.is_some()),
        (2, c.tester_health.is_some()),
        (3, c.exercise.is_some()),
        (4, c.medication.is_some()),
        (5, c.medication_in_litres),
        (6, c.hba1c.is_some()),
        (7, c.extended_flags.is_some()),
    ]));
    w.u16(c.sequence);
    if let Some(x) = c.extended_flags {
        w.u8(x);
    }
    if let Some((id, v)) = &c.carbohydrate {
        w.u8(*id);
        w.sfloat("carbohydrate", v)?;
    }
    if let Some(m) = c.meal {
        w.u8(m);
    }
    if let Some(t) = c.tester_health {
        w.u8(t);
    }
    if let Some((d, i)) = c.exercise {
        w.u16(d);
        w.u8(i);
    }
    if let Some((id, v)) = &c.medication {
        w.u8(*id);
        w.sfloat("medication", v)?;
    }
    if let Some(h) = &c.hba1c {
        w.sfloat("HbA1c", h)?;
    }
    Ok(w.into_bytes())
}
