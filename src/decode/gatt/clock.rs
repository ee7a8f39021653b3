//! Date Time (0x2A08) and Current Time (0x2A2B).
//!
//! Current Time: Exact Time 256 = Day Date Time (Date Time + day of week u8, 0 unknown, 1..=7
//! Monday..Sunday) + Fractions256 u8; then Adjust Reason u8 (b0 manual, b1 external
//! reference, b2 time zone change, b3 DST change; b4–7 reserved).

use serde::{Deserialize, Serialize};

use crate::decode::DecodeError;
use crate::decode::bytes::{Reader, Writer, check_reserved_bits};
use crate::reading::DeviceTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentTime {
    pub date_time: DeviceTime,
    /// 0 unknown, 1 Monday ..= 7 Sunday.
    pub day_of_week: u8,
    /// 1/256 s.
    pub fractions256: u8,
    pub adjust_reason: u8,
}

pub fn decode_date_time(bytes: &[u8]) -> Result<DeviceTime, DecodeError> {
    let mut r = Reader::new(bytes);
    let t = r.date_time("date time")?;
    r.finish("date time")?;
    Ok(t)
}

pub fn encode_date_time(t: &DeviceTime) -> Vec<u8> {
    let mut w = Writer::new();
    w.date_time(t);
    w.into_bytes()
}

pub fn decode_current_time(bytes: &[u8]) -> Result<CurrentTime, DecodeError> {
    let mut r = Reader::new(bytes);
    let date_time = r.date_time("date time")?;
    let offset = r.offset();
    let day_of_week = r.u8("day of week")?;
    if day_of_week > 7 {
        return Err(DecodeError::Reserved {
            field: "day of week",
            offset,
            value: u32::from(day_of_week),
        });
    }
    let fractions256 = r.u8("fractions256")?;
    let offset = r.offset();
    let adjust_reason = r.u8("adjust reason")?;
    check_reserved_bits("adjust reason", offset, u32::from(adjust_reason), 0x0F)?;
    r.finish("current time")?;
    Ok(CurrentTime {
        date_time,
        day_of_week,
        fractions256,
        adjust_reason,
    })
}

pub fn encode_current_time(t: &CurrentTime) -> Vec<u8> {
    let mut w = Writer::new();
    w.date_time(&t.date_time);
    w.u8(t.day_of_week);
    w.u8(t.fractions256);
    w.u8(t.adjust_reason);
    w.into_bytes()
}

/// The device time as a calendar date-time, when every part is known and valid (year 0,
/// month 0 or day 0 mean "unknown"; 31 February is not a date).
pub fn to_primitive(t: &DeviceTime) -> Option<time::PrimitiveDateTime> {
    if t.year == 0 || t.month == 0 || t.day == 0 {
        return None;
    }
    let month = time::Month::try_from(t.month).ok()?;
    let date = time::Date::from_calendar_date(i32::from(t.year), month, t.day).ok()?;
    let clock = time::Time::from_hms(t.hours, t.minutes, t.seconds).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock))
}

/// The reverse of [`to_primitive`].
pub fn from_primitive(p: time::PrimitiveDateTime) -> Option<DeviceTime> {
    let year = u16::try_from(p.year()).ok()?;
    Some(DeviceTime {
        year,
        month: u8::from(p.month()),
        day: p.day(),
        hours: p.hour(),
        minutes: p.minute(),
        seconds: p.second(),
    })
}
