//! Weight Measurement (0x2A9D) and Weight Scale Feature (0x2A9E), Weight Scale Service.
//!
//! Flags: b0 imperial (lb, in) else SI (kg, m); weight u16 always; b1 Date Time; b2 user id
//! u8; b3 BMI u16 (0.1 kg/m²) and height u16 (0.001 m or 0.1 in); b4–7 reserved.
//! The weight field always has resolution 0.005 kg (0.01 lb) on the wire; 0xFFFF means
//! "measurement unsuccessful". The Feature's weight/height resolution says how precise the
//! scale really is: the reading keeps exactly that many decimals (70.000 kg from a 0.1 kg
//! scale becomes "70.0"), never inventing digits.

use serde::{Deserialize, Serialize};

use super::{DecodeContext, base_reading, flags_of};
use crate::decode::bytes::{Reader, Writer, check_reserved_bits};
use crate::decode::{DecodeError, EncodeError};
use crate::reading::{Decimal, DeviceTime, Kind, MeasuredValue, Quantity, Reading};

pub const WEIGHT_UNSUCCESSFUL: u16 = 0xFFFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightUnits {
    Si,
    Imperial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BmiAndHeight {
    /// BMI in 0.1 kg/m².
    pub bmi_raw: u16,
    /// Height in 0.001 m (SI) or 0.1 in (imperial).
    pub height_raw: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightMeasurement {
    pub units: WeightUnits,
    /// Weight in 0.005 kg (SI) or 0.01 lb (imperial); 0xFFFF = measurement unsuccessful.
    pub weight_raw: u16,
    pub timestamp: Option<DeviceTime>,
    pub user_id: Option<u8>,
    pub bmi_and_height: Option<BmiAndHeight>,
}

/// Weight Scale Feature (u32): b0 time stamp, b1 multiple users, b2 BMI supported, b3–6
/// weight measurement resolution (0 unspecified, 1..=7; 8..=15 reserved), b7–9 height
/// measurement resolution (0 unspecified, 1..=3; 4..=7 reserved), b10–31 reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WeightScaleFeature {
    pub timestamp_supported: bool,
    pub multiple_users_supported: bool,
    pub bmi_supported: bool,
    pub weight_resolution: u8,
    pub height_resolution: u8,
}

impl WeightScaleFeature {
    /// Decimal exponent of the weight resolution (e.g. 0.1 kg → -1), if specified.
    fn weight_exponent(&self, units: WeightUnits) -> Option<i8> {
        let kg = [
            None,
            Some(-1),
            Some(-1),
            Some(-1),
            Some(-2),
            Some(-2),
            Some(-2),
            Some(-3),
        ];
        let lb = [
            None,
            Some(0),
            Some(-1),
            Some(-1),
            Some(-1),
            Some(-2),
            Some(-2),
            Some(-2),
        ];
        let table = match units {
            WeightUnits::Si => kg,
            WeightUnits::Imperial => lb,
        };
        table
            .get(usize::from(self.weight_resolution))
            .copied()
            .flatten()
    }

    /// Decimal exponent of the height resolution (0.01 m → -2, 1 in → 0), if specified.
    fn height_exponent(&self, units: WeightUnits) -> Option<i8> {
        let m = [None, Some(-2), Some(-3), Some(-3)];
        let inch = [None, Some(0), Some(-1), Some(-1)];
        let table = match units {
            WeightUnits::Si => m,
            WeightUnits::Imperial => inch,
        };
        table
            .get(usize::from(self.height_resolution))
            .copied()
            .flatten()
    }
}

pub fn decode(bytes: &[u8]) -> Result<WeightMeasurement, DecodeError> {
    let mut r = Reader::new(bytes);
    let flags = r.u8("flags")?;
    check_reserved_bits("flags", 0, u32::from(flags), 0x0F)?;
    let units = if flags & 0x01 != 0 {
        WeightUnits::Imperial
    } else {
        WeightUnits::Si
    };
    let weight_raw = r.u16("weight")?;
    let timestamp = (flags & 0x02 != 0)
        .then(|| r.date_time("time stamp"))
        .transpose()?;
    let user_id = (flags & 0x04 != 0).then(|| r.u8("user id")).transpose()?;
    let bmi_and_height = if flags & 0x08 != 0 {
        Some(BmiAndHeight {
            bmi_raw: r.u16("BMI")?,
            height_raw: r.u16("height")?,
        })
    } else {
        None
    };
    r.finish("weight measurement")?;
    Ok(WeightMeasurement {
        units,
        weight_raw,
        timestamp,
        user_id,
        bmi_and_height,
    })
}

pub fn encode(m: &WeightMeasurement) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new();
    w.u8(flags_of(&[
        (0, m.units == WeightUnits::Imperial),
        (1, m.timestamp.is_some()),
        (2, m.user_id.is_some()),
        (3, m.bmi_and_height.is_some()),
    ]));
    w.u16(m.weight_raw);
    if let Some(t) = &m.timestamp {
        w.date_time(t);
    }
    if let Some(u) = m.user_id {
        w.u8(u);
    }
    if let Some(b) = &m.bmi_and_height {
        w.u16(b.bmi_raw);
        w.u16(b.height_raw);
    }
    Ok(w.into_bytes())
}

pub fn decode_feature(bytes: &[u8]) -> Result<WeightScaleFeature, DecodeError> {
    let mut r = Reader::new(bytes);
    let v = r.u32("weight scale feature")?;
    check_reserved_bits("weight scale feature", 0, v, 0x03FF)?;
    let weight_resolution = ((v >> 3) & 0x0F) as u8;
    let height_resolution = ((v >> 7) & 0x07) as u8;
    if weight_resolution > 7 {
        return Err(DecodeError::Reserved {
            field: "weight scale feature (weight resolution)",
            offset: 0,
            value: v,
        });
    }
    if height_resolution > 3 {
        return Err(DecodeError::Reserved {
            field: "weight scale feature (height resolution)",
            offset: 0,
            value: v,
        });
    }
    r.finish("weight scale feature")?;
    Ok(WeightScaleFeature {
        timestamp_supported: v & 0x01 != 0,
        multiple_users_supported: v & 0x02 != 0,
        bmi_supported: v & 0x04 != 0,
        weight_resolution,
        height_resolution,
    })
}

pub fn encode_feature(f: &WeightScaleFeature) -> Result<Vec<u8>, EncodeError> {
    if f.weight_resolution > 7 || f.height_resolution > 3 {
        return Err(EncodeError::OutOfRange {
            field: "weight scale feature",
            reason: "weight resolution must be 0..=7 and height resolution 0..=3",
        });
    }
    let v = u32::from(f.timestamp_supported)
        | u32::from(f.multiple_users_supported) << 1
        | u32::from(f.bmi_supported) << 2
        | u32::from(f.weight_resolution) << 3
        | u32::from(f.height_resolution) << 7;
    Ok(v.to_le_bytes().to_vec())
}

/// Re-expresses `d` with `exponent` when that is exact (no digit invented or dropped).
fn with_exponent(d: Decimal, exponent: Option<i8>) -> Decimal {
    let Some(target) = exponent else { return d };
    if target <= d.exponent {
        return d;
    }
    let scale = 10i64.pow(u32::from(target.abs_diff(d.exponent)));
    if d.mantissa % scale == 0 {
        Decimal::new(d.mantissa / scale, target)
    } else {
        d
    }
}

pub fn readings(m: &WeightMeasurement, ctx: &DecodeContext) -> Vec<Reading> {
    let feature = ctx.features.weight_scale;
    let (weight_ucum, height_ucum) = match m.units {
        WeightUnits::Si => ("kg", "m"),
        WeightUnits::Imperial => ("[lb_av]", "[in_i]"),
    };
    let weight_value = if m.weight_raw == WEIGHT_UNSUCCESSFUL {
        MeasuredValue::NotANumber
    } else {
        let exact = match m.units {
            WeightUnits::Si => Decimal::new(i64::from(m.weight_raw) * 5, -3),
            WeightUnits::Imperial => Decimal::new(i64::from(m.weight_raw), -2),
        };
        MeasuredValue::Number(with_exponent(
            exact,
            feature.and_then(|f| f.weight_exponent(m.units)),
        ))
    };
    let make = |kind, value, ucum: &str| {
        let mut reading = base_reading(ctx, kind);
        reading.value = Some(Quantity {
            value,
            ucum: ucum.into(),
        });
        reading.device_time = m.timestamp;
        reading.user_id = m.user_id;
        reading
    };
    let mut out = vec![make(Kind::BodyWeight, weight_value, weight_ucum)];
    if let Some(b) = &m.bmi_and_height {
        let bmi = MeasuredValue::Number(Decimal::new(i64::from(b.bmi_raw), -1));
        out.push(make(Kind::BodyMassIndex, bmi, "kg/m2"));
        let exact = match m.units {
            WeightUnits::Si => Decimal::new(i64::from(b.height_raw), -3),
            WeightUnits::Imperial => Decimal::new(i64::from(b.height_raw), -1),
        };
        let height = MeasuredValue::Number(with_exponent(
            exact,
            feature.and_then(|f| f.height_exponent(m.units)),
        ));
        out.push(make(Kind::BodyHeight, height, height_ucum));
    }
    out
}
