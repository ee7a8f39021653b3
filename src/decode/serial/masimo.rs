//! Masimo pulse oximeters (Rad-8, Radical-7, Rad-87) serial output, "ASCII 1" mode.
//!
//! Sources (public):
//! - Masimo Rad-8 Operator's Manual, section "Trend data format" and "Serial interface": RS-232,
//!   9600 baud 8N1, one ASCII line per second; the exception field `EXC` is a hexadecimal bit
//!   set: 001 no sensor, 002 defective sensor, 004 low perfusion, 008 pulse search,
//!   010 interference, 020 sensor off, 040 ambient light, 080 unrecognized sensor,
//!   400 low signal IQ, 800 SET mode (informational).
//! - Real captured lines published in the `yahnatan/pulseox` README (GitHub), e.g.
//!   `02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-%
//!   DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800`.
//! - The manual's trend sample uses `SpO2=097 PR=069 PI=04.69 EXC=800:SET`; both spellings are
//!   accepted (keys case-insensitive, `BPM` or `PR`, `EXC` with an optional `:names` suffix).
//!
//! A line yields SpO2 (`%`) and pulse rate (`/min`) readings, or none while the monitor has no
//! valid measurement (dashes, zero, or an exception that invalidates it).

use super::LineError;
use crate::decode::mqtt::PayloadContext;
use crate::decode::mqtt::number::parse_decimal;
use crate::reading::{DeviceTime, Kind, MeasuredValue, Quantity, Reading, StatusFlag};

pub const EXC_NO_SENSOR: u32 = 0x001;
pub const EXC_DEFECTIVE_SENSOR: u32 = 0x002;
pub const EXC_LOW_PERFUSION: u32 = 0x004;
pub const EXC_PULSE_SEARCH: u32 = 0x008;
pub const EXC_INTERFERENCE: u32 = 0x010;
pub const EXC_SENSOR_OFF: u32 = 0x020;
pub const EXC_AMBIENT_LIGHT: u32 = 0x040;
pub const EXC_UNRECOGNIZED_SENSOR: u32 = 0x080;
pub const EXC_LOW_SIGNAL_IQ: u32 = 0x400;

/// Exceptions under which the numbers on the line are not a measurement.
const INVALIDATING: u32 = EXC_NO_SENSOR
    | EXC_DEFECTIVE_SENSOR
    | EXC_PULSE_SEARCH
    | EXC_SENSOR_OFF
    | EXC_UNRECOGNIZED_SENSOR;

pub fn decode_line(line: &str, ctx: &PayloadContext) -> Result<Vec<Reading>, LineError> {
    let mut tokens = line.split_whitespace();
    let date = tokens.next().ok_or(LineError::new("date", "missing"))?;
    let clock = tokens.next().ok_or(LineError::new("time", "missing"))?;
    let device_time = parse_date_time(date, clock)?;
    let (mut spo2, mut pulse, mut exc, mut serial) = (None, None, None, None);
    for token in tokens {
        let Some((key, value)) = token.split_once('=') else {
            continue; // free text (alarm names on some firmware) is not data
        };
        match key.to_ascii_uppercase().as_str() {
            "SPO2" => spo2 = Some(value),
            "BPM" | "PR" => pulse = Some(value),
            "EXC" => exc = Some(value),
            "SN" => serial = Some(value),
            _ => {}
        }
    }
    let spo2 = spo2.ok_or(LineError::new("SPO2", "missing"))?;
    let pulse = pulse.ok_or(LineError::new("BPM", "missing"))?;
    let exc_bits = match exc {
        Some(text) => {
            let hex = text.split(':').next().unwrap_or(text);
            u32::from_str_radix(hex, 16).map_err(|_| LineError::new("EXC", "not hexadecimal"))?
        }
        None => 0,
    };
    if exc_bits & INVALIDATING != 0 {
        return Ok(Vec::new());
    }
    let mut status = Vec::new();
    if exc_bits & EXC_LOW_PERFUSION != 0 {
        status.push(StatusFlag::LowPerfusion);
    }
    if exc_bits & (EXC_LOW_SIGNAL_IQ | EXC_INTERFERENCE | EXC_AMBIENT_LIGHT) != 0 {
        status.push(StatusFlag::QuestionableMeasurement);
    }
    let mut device = ctx.device.clone();
    device.manufacturer = Some("Masimo".to_owned());
    if let Some(sn) = serial.filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty()) {
        device.serial_number = Some(sn.to_owned());
    }
    let mut out = Vec::new();
    for (field, text, kind, unit) in [
        ("SPO2", spo2, Kind::OxygenSaturation, "%"),
        ("BPM", pulse, Kind::PulseRate, "/min"),
    ] {
        let Some(value) = parse_field(field, text)? else {
            continue;
        };
        out.push(Reading {
            device: device.clone(),
            kind,
            value: Some(Quantity {
                value: MeasuredValue::Number(value),
                ucum: unit.to_owned(),
            }),
            components: Vec::new(),
            device_time: Some(device_time),
            received_at: ctx.received_at,
            clock: ctx.clock,
            status: status.clone(),
            sequence: None,
            user_id: None,
            qualifiers: Default::default(),
        });
    }
    Ok(out)
}

/// `098%` → 98; dashes or zero (the monitor's "no value") → None.
fn parse_field(
    field: &'static str,
    text: &str,
) -> Result<Option<crate::reading::Decimal>, LineError> {
    let text = text.trim_end_matches('%');
    if text.is_empty() || text.bytes().all(|b| b == b'-' || b == b'.' || b == b'+') {
        return Ok(None);
    }
    let value = parse_decimal(text).map_err(|_| LineError::new(field, "not a number"))?;
    if value.mantissa == 0 {
        return Ok(None);
    }
    // Strip the zero padding's effect on precision: "098" is the integer 98, exponent 0 already.
    Ok(Some(value))
}

/// `MM/DD/YY` and `HH:MM:SS` (the monitor's own clock, no zone).
fn parse_date_time(date: &str, clock: &str) -> Result<DeviceTime, LineError> {
    let num = |s: &str, field: &'static str| -> Result<u8, LineError> {
        if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LineError::new(field, "expected two digits"));
        }
        s.parse()
            .map_err(|_| LineError::new(field, "expected two digits"))
    };
    let d: Vec<&str> = date.split(['/', '\\']).collect();
    let t: Vec<&str> = clock.split(':').collect();
    let ([mm, dd, yy], [h, m, s]) = (d.as_slice(), t.as_slice()) else {
        return Err(LineError::new("date", "expected MM/DD/YY HH:MM:SS"));
    };
    let dt = DeviceTime {
        year: 2000 + u16::from(num(yy, "date")?),
        month: num(mm, "date")?,
        day: num(dd, "date")?,
        hours: num(h, "time")?,
        minutes: num(m, "time")?,
        seconds: num(s, "time")?,
    };
    if !(1..=12).contains(&dt.month)
        || !(1..=31).contains(&dt.day)
        || dt.hours > 23
        || dt.minutes > 59
        || dt.seconds > 60
    {
        return Err(LineError::new("date", "out of range"));
    }
    Ok(dt)
}

/// Formats one ASCII-1 line (used by the simulator and tests; the inverse of [`decode_line`]).
pub fn encode_line(time: DeviceTime, serial: &str, spo2: u8, bpm: u16, exc: u32) -> String {
    format!(
        "{:02}/{:02}/{:02} {:02}:{:02}:{:02} SN={serial} SPO2={spo2:03}% BPM={bpm:03} PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC={exc:06X}",
        time.month,
        time.day,
        time.year % 100,
        time.hours,
        time.minutes,
        time.seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{ClockContext, Decimal, DeviceIdentity, SourceKind};

    fn ctx() -> PayloadContext {
        PayloadContext {
            device: DeviceIdentity {
                source: SourceKind::Serial,
                address: "/dev/ttyUSB0".into(),
                system_id: None,
                manufacturer: None,
                model: Some("Rad-8".into()),
                serial_number: None,
            },
            received_at: time::macros::datetime!(2026-11-28 10:00:00 UTC),
            clock: ClockContext::default(),
        }
    }

    fn values(r: &[Reading]) -> Vec<(Kind, Decimal)> {
        r.iter()
            .map(|r| match r.value.as_ref().map(|q| q.value) {
                Some(MeasuredValue::Number(d)) => (r.kind, d),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Captured line from the yahnatan/pulseox README (Rad-8, ASCII 1 mode).
    #[test]
    fn published_capture_decodes() {
        let line = "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800";
        let r = decode_line(line, &ctx()).expect("decodes");
        assert_eq!(
            values(&r),
            vec![
                (Kind::OxygenSaturation, Decimal::new(98, 0)),
                (Kind::PulseRate, Decimal::new(97, 0))
            ]
        );
        assert_eq!(r[0].value.as_ref().map(|q| q.ucum.as_str()), Some("%"));
        assert_eq!(r[1].value.as_ref().map(|q| q.ucum.as_str()), Some("/min"));
        assert_eq!(
            r[0].device_time,
            Some(DeviceTime {
                year: 2016,
                month: 2,
                day: 22,
                hours: 22,
                minutes: 47,
                seconds: 45
            })
        );
        assert_eq!(r[0].device.serial_number.as_deref(), Some("0000056661"));
        assert_eq!(r[0].device.manufacturer.as_deref(), Some("Masimo"));
        assert!(r[0].status.is_empty());
    }

    /// Trend sample lines from the Rad-8 Operator's Manual ("Sample trend output").
    #[test]
    fn manual_trend_samples() {
        let off = "09/21/08 09:56:08 SpO2=000 PR=000 PI=00.00 EXC=820:OffPat,SET";
        assert_eq!(decode_line(off, &ctx()), Ok(vec![]));
        let search = "09/21/08 09:56:10 SpO2=000 PR=000 PI=00.00 EXC=828:Search,OffPat,SET";
        assert_eq!(decode_line(search, &ctx()), Ok(vec![]));
        let good = "09/21/08 09:56:12 SpO2=097 PR=069 PI=04.69 EXC=800:SET";
        let r = decode_line(good, &ctx()).expect("good");
        assert_eq!(
            values(&r),
            vec![
                (Kind::OxygenSaturation, Decimal::new(97, 0)),
                (Kind::PulseRate, Decimal::new(69, 0))
            ]
        );
        let low_iq = "09/21/08 09:56:14 SpO2=096 PR=074 PI=02.28 EXC=C00:LowSigIQ,SET";
        let r = decode_line(low_iq, &ctx()).expect("low iq");
        assert_eq!(r[0].status, vec![StatusFlag::QuestionableMeasurement]);
        let zero_no_exc = "09/21/08 09:56:18 SpO2=000 PR=000 PI=00.00 EXC=800:SET";
        assert_eq!(decode_line(zero_no_exc, &ctx()), Ok(vec![]));
    }

    #[test]
    fn dashes_low_perfusion_and_garbage() {
        let dashes = "02/22/16 22:47:45 SN=0000056661 SPO2=---% BPM=--- PI=--.--% EXC=000800";
        assert_eq!(decode_line(dashes, &ctx()), Ok(vec![]));
        let low_perf = "02/22/16 22:47:45 SPO2=091% BPM=110 EXC=000804";
        let r = decode_line(low_perf, &ctx()).expect("low perfusion");
        assert_eq!(r[1].status, vec![StatusFlag::LowPerfusion]);
        for bad in [
            "",
            "garbage",
            "02/22/16",
            "13/45/16 22:47:45 SPO2=098% BPM=097",
            "02/22/16 22:47:45 BPM=097",
            "02/22/16 22:47:45 SPO2=0x8% BPM=097",
            "02/22/16 22:47:45 SPO2=098% BPM=097 EXC=zz",
        ] {
            assert!(decode_line(bad, &ctx()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn encode_is_the_inverse() {
        let t = DeviceTime {
            year: 2026,
            month: 11,
            day: 28,
            hours: 7,
            minutes: 5,
            seconds: 9,
        };
        let line = encode_line(t, "0000000042", 97, 64, 0x800);
        let r = decode_line(&line, &ctx()).expect("round trip");
        assert_eq!(r[0].device_time, Some(t));
        assert_eq!(
            values(&r),
            vec![
                (Kind::OxygenSaturation, Decimal::new(97, 0)),
                (Kind::PulseRate, Decimal::new(64, 0))
            ]
        );
    }
}
