//! IEEE 11073-20601 numbers: 16-bit SFLOAT and 32-bit FLOAT, with every special value and the
//! decimal exponent kept (0xE0C8 decodes to mantissa 200, exponent -2, i.e. "2.00").
//!
//! SFLOAT: high 4 bits signed exponent, low 12 bits signed mantissa. FLOAT: high 8 bits signed
//! exponent, low 24 bits signed mantissa. Special values are defined with exponent 0:
//!
//! | meaning | SFLOAT | FLOAT |
//! |---|---|---|
//! | NaN | 0x07FF | 0x007FFFFF |
//! | NRes | 0x0800 | 0x00800000 |
//! | +INF | 0x07FE | 0x007FFFFE |
//! | −INF | 0x0802 | 0x00800002 |
//! | reserved | 0x0801 | 0x00800001 |
//!
//! A mantissa in the special range with a non-zero exponent is an ordinary number (the
//! specials are whole 16/32-bit values), e.g. 0x17FF = 2047 × 10¹.

use super::error::EncodeError;
use crate::reading::{Decimal, MeasuredValue};

/// A raw SFLOAT as it travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SFloat(pub u16);

/// A raw FLOAT as it travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Float(pub u32);

/// The wire value was the reserved special value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reserved IEEE-11073 special value")]
pub struct ReservedValue;

pub const SFLOAT_NAN: u16 = 0x07FF;
pub const SFLOAT_NRES: u16 = 0x0800;
pub const SFLOAT_POSITIVE_INFINITY: u16 = 0x07FE;
pub const SFLOAT_NEGATIVE_INFINITY: u16 = 0x0802;
pub const SFLOAT_RESERVED: u16 = 0x0801;

pub const FLOAT_NAN: u32 = 0x007F_FFFF;
pub const FLOAT_NRES: u32 = 0x0080_0000;
pub const FLOAT_POSITIVE_INFINITY: u32 = 0x007F_FFFE;
pub const FLOAT_NEGATIVE_INFINITY: u32 = 0x0080_0002;
pub const FLOAT_RESERVED: u32 = 0x0080_0001;

/// Sign-extends the low `bits` bits of `raw`.
fn sign_extend(raw: u32, bits: u32) -> i32 {
    let shift = 32 - bits;
    ((raw << shift) as i32) >> shift
}

pub fn decode_sfloat(raw: SFloat) -> Result<MeasuredValue, ReservedValue> {
    let value = raw.0;
    match value {
        SFLOAT_NAN => return Ok(MeasuredValue::NotANumber),
        SFLOAT_NRES => return Ok(MeasuredValue::NotAtThisResolution),
        SFLOAT_POSITIVE_INFINITY => return Ok(MeasuredValue::PositiveInfinity),
        SFLOAT_NEGATIVE_INFINITY => return Ok(MeasuredValue::NegativeInfinity),
        SFLOAT_RESERVED => return Err(ReservedValue),
        _ => {}
    }
    let mantissa = sign_extend(u32::from(value & 0x0FFF), 12);
    let exponent = sign_extend(u32::from(value >> 12), 4);
    Ok(MeasuredValue::Number(Decimal::new(
        i64::from(mantissa),
        exponent as i8,
    )))
}

pub fn decode_float(raw: Float) -> Result<MeasuredValue, ReservedValue> {
    let value = raw.0;
    match value {
        FLOAT_NAN => return Ok(MeasuredValue::NotANumber),
        FLOAT_NRES => return Ok(MeasuredValue::NotAtThisResolution),
        FLOAT_POSITIVE_INFINITY => return Ok(MeasuredValue::PositiveInfinity),
        FLOAT_NEGATIVE_INFINITY => return Ok(MeasuredValue::NegativeInfinity),
        FLOAT_RESERVED => return Err(ReservedValue),
        _ => {}
    }
    let mantissa = sign_extend(value & 0x00FF_FFFF, 24);
    let exponent = (value >> 24) as u8 as i8;
    Ok(MeasuredValue::Number(Decimal::new(
        i64::from(mantissa),
        exponent,
    )))
}

/// Encodes keeping the given mantissa and exponent (no normalisation, so precision survives).
pub fn encode_sfloat(value: &MeasuredValue) -> Result<SFloat, EncodeError> {
    let d = match value {
        MeasuredValue::NotANumber => return Ok(SFloat(SFLOAT_NAN)),
        MeasuredValue::NotAtThisResolution => return Ok(SFloat(SFLOAT_NRES)),
        MeasuredValue::PositiveInfinity => return Ok(SFloat(SFLOAT_POSITIVE_INFINITY)),
        MeasuredValue::NegativeInfinity => return Ok(SFloat(SFLOAT_NEGATIVE_INFINITY)),
        MeasuredValue::Number(d) => d,
    };
    if !(-8..=7).contains(&d.exponent) {
        return Err(EncodeError::OutOfRange {
            field: "SFLOAT",
            reason: "exponent must be within -8..=7",
        });
    }
    if !(-2048..=2047).contains(&d.mantissa) {
        return Err(EncodeError::OutOfRange {
            field: "SFLOAT",
            reason: "mantissa must be within -2048..=2047",
        });
    }
    let raw = ((d.exponent as u16 & 0x000F) << 12) | (d.mantissa as u16 & 0x0FFF);
    if d.exponent == 0 && (SFLOAT_POSITIVE_INFINITY..=SFLOAT_NEGATIVE_INFINITY).contains(&raw) {
        return Err(EncodeError::OutOfRange {
            field: "SFLOAT",
            reason: "mantissa collides with a special value at exponent 0; use exponent 1",
        });
    }
    Ok(SFloat(raw))
}

/// Encodes keeping the given mantissa and exponent (no normalisation).
pub fn encode_float(value: &MeasuredValue) -> Result<Float, EncodeError> {
    let d = match value {
        MeasuredValue::NotANumber => return Ok(Float(FLOAT_NAN)),
        MeasuredValue::NotAtThisResolution => return Ok(Float(FLOAT_NRES)),
        MeasuredValue::PositiveInfinity => return Ok(Float(FLOAT_POSITIVE_INFINITY)),
        MeasuredValue::NegativeInfinity => return Ok(Float(FLOAT_NEGATIVE_INFINITY)),
        MeasuredValue::Number(d) => d,
    };
    if !(-(1 << 23)..(1 << 23)).contains(&d.mantissa) {
        return Err(EncodeError::OutOfRange {
            field: "FLOAT",
            reason: "mantissa must be within -8388608..=8388607",
        });
    }
    let raw = ((d.exponent as u8 as u32) << 24) | (d.mantissa as u32 & 0x00FF_FFFF);
    if d.exponent == 0 && (FLOAT_POSITIVE_INFINITY..=FLOAT_NEGATIVE_INFINITY).contains(&raw) {
        return Err(EncodeError::OutOfRange {
            field: "FLOAT",
            reason: "mantissa collides with a special value at exponent 0; use exponent 1",
        });
    }
    Ok(Float(raw))
}

#[cfg(test)]
pub(crate) mod tests;
