//! CGM Measurement (0x2AA7), Continuous Glucose Monitoring Service. One notification may
//! carry several records back to back.
//!
//! Record: size u8 (the whole record, including itself and the CRC), flags u8 (b0 trend
//! SFLOAT, b1 quality SFLOAT, b2–4 reserved, b5 warning octet, b6 cal/temp octet, b7 status
//! octet), glucose SFLOAT mg/dL, time offset u16 minutes since session start, then the
//! annunciation octets in the order warning, cal/temp, status, then trend, quality, and the
//! E2E-CRC u16 (CRC-16/MCRF4XX over the record's preceding bytes) when present. The CRC is
//! present when the CGM Feature says so; a record whose size leaves exactly two extra bytes is
//! also taken to carry one (and it is checked).

use serde::{Deserialize, Serialize};

use super::clock::{from_primitive, to_primitive};
use super::{DecodeContext, base_reading, flags_of};
use crate::decode::bytes::{Reader, Writer, check_reserved_bits};
use crate::decode::{DecodeError, EncodeError};
use crate::reading::{Kind, MeasuredValue, Quantity, Reading, StatusFlag};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgmRecord {
    /// mg/dL.
    pub glucose: MeasuredValue,
    pub time_offset_minutes: u16,
    pub warning: Option<u8>,
    pub cal_temp: Option<u8>,
    pub status: Option<u8>,
    /// (mg/dL)/min.
    pub trend: Option<MeasuredValue>,
    /// %.
    pub quality: Option<MeasuredValue>,
    pub e2e_crc: bool,
}

/// CRC-16/MCRF4XX: poly 0x1021 reflected (0x8408), init 0xFFFF, no final xor.
pub fn crc16_mcrf4xx(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn body_len(flags: u8) -> usize {
    let mut n = 6;
    n += usize::from(flags & 0x20 != 0);
    n += usize::from(flags & 0x40 != 0);
    n += usize::from(flags & 0x80 != 0);
    n += 2 * usize::from(flags & 0x01 != 0);
    n += 2 * usize::from(flags & 0x02 != 0);
    n
}

fn decode_record(bytes: &[u8], crc_required: bool) -> Result<(CgmRecord, usize), DecodeError> {
    let mut r = Reader::new(bytes);
    let size = usize::from(r.u8("size")?);
    let flags = r.u8("flags")?;
    check_reserved_bits("flags", 1, u32::from(flags), 0xE3)?;
    let body = body_len(flags);
    let e2e_crc = if size == body + 2 {
        true
    } else if size == body && !crc_required {
        false
    } else {
        return Err(DecodeError::Invalid {
            field: "size",
            offset: 0,
            value: size as u32,
            reason: "does not match the fields the flags announce",
        });
    };
    if bytes.len() < size {
        return Err(DecodeError::Truncated {
            field: "CGM record",
            offset: bytes.len(),
            needed: size,
            available: bytes.len(),
        });
    }
    let glucose = r.sfloat("glucose concentration")?;
    let time_offset_minutes = r.u16("time offset")?;
    let warning = (flags & 0x20 != 0)
        .then(|| r.u8("warning octet"))
        .transpose()?;
    let cal_temp = (flags & 0x40 != 0)
        .then(|| r.u8("cal/temp octet"))
        .transpose()?;
    let status = (flags & 0x80 != 0)
        .then(|| r.u8("status octet"))
        .transpose()?;
    let trend = (flags & 0x01 != 0).then(|| r.sfloat("trend")).transpose()?;
    let quality = (flags & 0x02 != 0)
        .then(|| r.sfloat("quality"))
        .transpose()?;
    if e2e_crc {
        let offset = r.offset();
        let carried = r.u16("E2E-CRC")?;
        let computed = crc16_mcrf4xx(&bytes[..offset]);
        if carried != computed {
            return Err(DecodeError::CrcMismatch {
                field: "E2E-CRC",
                offset,
                carried,
                computed,
            });
        }
    }
    Ok((
        CgmRecord {
            glucose,
            time_offset_minutes,
            warning,
            cal_temp,
            status,
            trend,
            quality,
            e2e_crc,
        },
        size,
    ))
}

/// Decodes every record in one notification (at least one).
pub fn decode(bytes: &[u8], crc_required: bool) -> Result<Vec<CgmRecord>, DecodeError> {
    let mut records = Vec::new();
    let mut start = 0;
    loop {
        let (record, size) =
            decode_record(&bytes[start..], crc_required).map_err(|e| e.shifted(start))?;
        records.push(record);
        start += size;
        if start >= bytes.len() {
            return Ok(records);
        }
    }
}

pub fn encode_record(rec: &CgmRecord) -> Result<Vec<u8>, EncodeError> {
    let flags = flags_of(&[
        (0, rec.trend.is_some()),
        (1, rec.quality.is_some()),
        (5, rec.warning.is_some()),
        (6, rec.cal_temp.is_some()),
        (7, rec.status.is_some()),
    ]);
    let size = body_len(flags) + if rec.e2e_crc { 2 } else { 0 };
    let mut w = Writer::new();
    w.u8(size as u8);
    w.u8(flags);
    w.sfloat("glucose concentration", &rec.glucose)?;
    w.u16(rec.time_offset_minutes);
    for octet in [rec.warning, rec.cal_temp, rec.status]
        .into_iter()
        .flatten()
    {
        w.u8(octet);
    }
    if let Some(t) = &rec.trend {
        w.sfloat("trend", t)?;
    }
    if let Some(q) = &rec.quality {
        w.sfloat("quality", q)?;
    }
    let mut bytes = w.into_bytes();
    if rec.e2e_crc {
        let crc = crc16_mcrf4xx(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
    }
    Ok(bytes)
}

pub fn encode(records: &[CgmRecord]) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    for r in records {
        out.extend(encode_record(r)?);
    }
    Ok(out)
}

/// One glucose reading per record. The time offset (minutes since session start) is the
/// record's sequence number; with the session start time known it also gives the device time.
pub fn readings(rec: &CgmRecord, ctx: &DecodeContext) -> Vec<Reading> {
    let mut reading = base_reading(ctx, Kind::BloodGlucose);
    reading.value = Some(Quantity {
        value: rec.glucose,
        ucum: "mg/dL".into(),
    });
    reading.sequence = Some(u32::from(rec.time_offset_minutes));
    reading.device_time = ctx.features.cgm_session_start.and_then(|start| {
        to_primitive(&start)
            .and_then(|p| {
                p.checked_add(time::Duration::minutes(i64::from(rec.time_offset_minutes)))
            })
            .and_then(from_primitive)
    });
    reading
        .qualifiers
        .insert("glucose_sample".into(), "interstitial_fluid".into());
    reading
        .qualifiers
        .insert("glucose_source".into(), "cgm".into());
    // Annunciation octets: status (bits 0-7), cal/temp (8-15), warning (16-23) as in the
    // 24-bit Sensor Status Annunciation field; kept as Other(0x0400 + bit).
    let annunciation = u32::from(rec.status.unwrap_or(0))
        | u32::from(rec.cal_temp.unwrap_or(0)) << 8
        | u32::from(rec.warning.unwrap_or(0)) << 16;
    for bit in 0..24u16 {
        if annunciation & (1 << bit) != 0 {
            reading.status.push(match bit {
                3 => StatusFlag::SensorMalfunction,
                _ => StatusFlag::Other(0x0400 + bit),
            });
        }
    }
    vec![reading]
}
