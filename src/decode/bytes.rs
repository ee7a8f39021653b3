//! A bounds-checked little-endian reader that remembers offsets and field names, and the
//! matching writer. Every multi-byte GATT field is little-endian.

use super::error::DecodeError;
use super::ieee11073::{self, Float, SFloat};
use crate::reading::{DeviceTime, MeasuredValue};

/// Reads fields in order; every read names its field so errors point at it.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Offset of the next unread byte.
    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(field, 1)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(field, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        let b = self.take(field, 2)?;
        Ok(i16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u24(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(field, 3)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An IEEE-11073 SFLOAT; the reserved value is an error naming the field.
    pub fn sfloat(&mut self, field: &'static str) -> Result<MeasuredValue, DecodeError> {
        let offset = self.pos;
        let raw = self.u16(field)?;
        ieee11073::decode_sfloat(SFloat(raw)).map_err(|_| DecodeError::Reserved {
            field,
            offset,
            value: u32::from(raw),
        })
    }

    /// An IEEE-11073 FLOAT; the reserved values are an error naming the field.
    pub fn float(&mut self, field: &'static str) -> Result<MeasuredValue, DecodeError> {
        let offset = self.pos;
        let raw = self.u32(field)?;
        ieee11073::decode_float(Float(raw)).map_err(|_| DecodeError::Reserved {
            field,
            offset,
            value: raw,
        })
    }

    /// A 7-byte Date Time (0x2A08 layout). Zero year/month/day mean "unknown" and are kept;
    /// values out of range are errors.
    pub fn date_time(&mut self, field: &'static str) -> Result<DeviceTime, DecodeError> {
        let start = self.pos;
        let year = self.u16(field)?;
        let month = self.u8(field)?;
        let day = self.u8(field)?;
        let hours = self.u8(field)?;
        let minutes = self.u8(field)?;
        let seconds = self.u8(field)?;
        let check = |ok: bool, at: usize, value: u32, reason| {
            if ok {
                Ok(())
            } else {
                Err(DecodeError::Invalid {
                    field,
                    offset: start + at,
                    value,
                    reason,
                })
            }
        };
        check(
            year == 0 || (1582..=9999).contains(&year),
            0,
            u32::from(year),
            "year must be 0 (unknown) or 1582..=9999",
        )?;
        check(month <= 12, 2, u32::from(month), "month must be 0..=12")?;
        check(day <= 31, 3, u32::from(day), "day must be 0..=31")?;
        check(hours <= 23, 4, u32::from(hours), "hours must be 0..=23")?;
        check(
            minutes <= 59,
            5,
            u32::from(minutes),
            "minutes must be 0..=59",
        )?;
        check(
            seconds <= 59,
            6,
            u32::from(seconds),
            "seconds must be 0..=59",
        )?;
        Ok(DeviceTime {
            year,
            month,
            day,
            hours,
            minutes,
            seconds,
        })
    }

    /// Fails if bytes are left after the last field.
    pub fn finish(&self, field: &'static str) -> Result<(), DecodeError> {
        if self.remaining() > 0 {
            return Err(DecodeError::TrailingBytes {
                field,
                offset: self.pos,
                count: self.remaining(),
            });
        }
        Ok(())
    }
}

/// Rejects flag bits outside `allowed` (reserved for future use).
pub fn check_reserved_bits(
    field: &'static str,
    offset: usize,
    value: u32,
    allowed: u32,
) -> Result<(), DecodeError> {
    if value & !allowed != 0 {
        return Err(DecodeError::Reserved {
            field,
            offset,
            value,
        });
    }
    Ok(())
}

/// Appends little-endian fields.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i16(&mut self, v: i16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u24(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes()[..3]);
    }
    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
    pub fn date_time(&mut self, t: &DeviceTime) {
        self.u16(t.year);
        self.bytes
            .extend_from_slice(&[t.month, t.day, t.hours, t.minutes, t.seconds]);
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl Writer {
    pub fn sfloat(
        &mut self,
        field: &'static str,
        v: &MeasuredValue,
    ) -> Result<(), super::EncodeError> {
        let raw = ieee11073::encode_sfloat(v).map_err(|e| rename(e, field))?;
        self.u16(raw.0);
        Ok(())
    }
    pub fn float(
        &mut self,
        field: &'static str,
        v: &MeasuredValue,
    ) -> Result<(), super::EncodeError> {
        let raw = ieee11073::encode_float(v).map_err(|e| rename(e, field))?;
        self.u32(raw.0);
        Ok(())
    }
}

fn rename(e: super::EncodeError, field: &'static str) -> super::EncodeError {
    match e {
        super::EncodeError::OutOfRange { reason, .. } => {
            super::EncodeError::OutOfRange { field, reason }
        }
    }
}
