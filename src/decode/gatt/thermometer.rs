//! Temperature Measurement (0x2A1C), Intermediate Temperature (0x2A1E) and Temperature Type
//! (0x2A1D), Health Thermometer Service.
//!
//! Flags: b0 Fahrenheit (else Celsius); value FLOAT always; b1 Date Time; b2 temperature type
//! u8; b3–7 reserved. Intermediate Temperature decodes the same but yields no reading.

use serde::{Deserialize, Serialize};

use super::{DecodeContext, base_reading, flags_of};
use crate::decode::bytes::{Reader, Writer, check_reserved_bits};
use crate::decode::{DecodeError, EncodeError};
use crate::reading::{DeviceTime, Kind, MeasuredValue, Quantity, Reading};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemperatureUnit {
    Celsius,
    Fahrenheit,
}

/// Temperature Type (where on the body), values 1..=9; 0 and 10..=255 are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemperatureType {
    Armpit = 1,
    Body = 2,
    Ear = 3,
    Finger = 4,
    GastroIntestinalTract = 5,
    Mouth = 6,
    Rectum = 7,
    Toe = 8,
    Tympanum = 9,
}

impl TemperatureType {
    pub const ALL: [TemperatureType; 9] = [
        TemperatureType::Armpit,
        TemperatureType::Body,
        TemperatureType::Ear,
        TemperatureType::Finger,
        TemperatureType::GastroIntestinalTract,
        TemperatureType::Mouth,
        TemperatureType::Rectum,
        TemperatureType::Toe,
        TemperatureType::Tympanum,
    ];

    fn from_u8(field: &'static str, offset: usize, v: u8) -> Result<Self, DecodeError> {
        match v {
            1..=9 => Ok(Self::ALL[usize::from(v - 1)]),
            _ => Err(DecodeError::Reserved {
                field,
                offset,
                value: u32::from(v),
            }),
        }
    }

    /// The qualifier value the mapper understands (`temperature_site`).
    pub fn site_name(self) -> &'static str {
        match self {
            TemperatureType::Armpit => "armpit",
            TemperatureType::Body => "body",
            TemperatureType::Ear => "ear",
            TemperatureType::Finger => "finger",
            TemperatureType::GastroIntestinalTract => "gastro_intestinal_tract",
            TemperatureType::Mouth => "mouth",
            TemperatureType::Rectum => "rectum",
            TemperatureType::Toe => "toe",
            TemperatureType::Tympanum => "tympanum",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemperatureMeasurement {
    pub unit: TemperatureUnit,
    pub value: MeasuredValue,
    pub timestamp: Option<DeviceTime>,
    pub temperature_type: Option<TemperatureType>,
}

pub fn decode(bytes: &[u8]) -> Result<TemperatureMeasurement, DecodeError> {
    let mut r = Reader::new(bytes);
    let flags = r.u8("flags")?;
    check_reserved_bits("flags", 0, u32::from(flags), 0x07)?;
    let unit = if flags & 0x01 != 0 {
        TemperatureUnit::Fahrenheit
    } else {
        TemperatureUnit::Celsius
    };
    let value = r.float("temperature")?;
    let timestamp = (flags & 0x02 != 0)
        .then(|| r.date_time("time stamp"))
        .transpose()?;
    let temperature_type = if flags & 0x04 != 0 {
        let offset = r.offset();
        let v = r.u8("temperature type")?;
        Some(TemperatureType::from_u8("temperature type", offset, v)?)
    } else {
        None
    };
    r.finish("temperature measurement")?;
    Ok(TemperatureMeasurement {
        unit,
        value,
        timestamp,
        temperature_type,
    })
}

pub fn encode(m: &TemperatureMeasurement) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new();
    w.u8(flags_of(&[
        (0, m.unit == TemperatureUnit::Fahrenheit),
        (1, m.timestamp.is_some()),
        (2, m.temperature_type.is_some()),
    ]));
    w.float("temperature", &m.value)?;
    if let Some(t) = &m.timestamp {
        w.date_time(t);
    }
    if let Some(t) = m.temperature_type {
        w.u8(t as u8);
    }
    Ok(w.into_bytes())
}

pub fn decode_type(bytes: &[u8]) -> Result<TemperatureType, DecodeError> {
    let mut r = Reader::new(bytes);
    let v = r.u8("temperature type")?;
    let t = TemperatureType::from_u8("temperature type", 0, v)?;
    r.finish("temperature type")?;
    Ok(t)
}

pub fn encode_type(t: TemperatureType) -> Vec<u8> {
    vec![t as u8]
}

pub fn readings(m: &TemperatureMeasurement, ctx: &DecodeContext) -> Vec<Reading> {
    let mut reading = base_reading(ctx, Kind::BodyTemperature);
    reading.value = Some(Quantity {
        value: m.value,
        ucum: match m.unit {
            TemperatureUnit::Celsius => "Cel".into(),
            TemperatureUnit::Fahrenheit => "[degF]".into(),
        },
    });
    reading.device_time = m.timestamp;
    if let Some(t) = m.temperature_type {
        reading
            .qualifiers
            .insert("temperature_site".into(), t.site_name().into());
    }
    vec![reading]
}
