//! The project's text vocabulary for vital signs: kind names, UCUM units (with the common
//! spellings devices use), status flag names and timestamps. Shared by the JSON vitals schema
//! (docs/MQTT.md) and the config-driven serial line formats, so one name means one thing.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::reading::{DeviceTime, Kind, StatusFlag};

/// Every kind by its name in payloads and config (`snake_case`, as in `reading::Kind`).
pub const KINDS: &[(&str, Kind)] = &[
    ("heart_rate", Kind::HeartRate),
    ("pulse_rate", Kind::PulseRate),
    ("blood_pressure", Kind::BloodPressure),
    ("body_temperature", Kind::BodyTemperature),
    ("oxygen_saturation", Kind::OxygenSaturation),
    ("body_weight", Kind::BodyWeight),
    ("body_height", Kind::BodyHeight),
    ("body_mass_index", Kind::BodyMassIndex),
    ("blood_glucose", Kind::BloodGlucose),
    ("respiratory_rate", Kind::RespiratoryRate),
];

pub fn kind_from_name(name: &str) -> Option<Kind> {
    KINDS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

pub fn kind_name(kind: Kind) -> &'static str {
    KINDS
        .iter()
        .find(|(_, k)| *k == kind)
        .map(|(n, _)| *n)
        .unwrap_or("unknown")
}

/// The unit assumed when a payload names none.
pub fn default_unit(kind: Kind) -> &'static str {
    match kind {
        Kind::HeartRate | Kind::PulseRate | Kind::RespiratoryRate => "/min",
        Kind::BloodPressure => "mm[Hg]",
        Kind::BodyTemperature => "Cel",
        Kind::OxygenSaturation => "%",
        Kind::BodyWeight => "kg",
        Kind::BodyHeight => "cm",
        Kind::BodyMassIndex => "kg/m2",
        Kind::BloodGlucose => "mg/dL",
    }
}

/// UCUM codes accepted per kind (anything else is rejected rather than mislabelled).
fn allowed_units(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::HeartRate | Kind::PulseRate | Kind::RespiratoryRate => &["/min"],
        Kind::BloodPressure => &["mm[Hg]", "kPa"],
        Kind::BodyTemperature => &["Cel", "[degF]"],
        Kind::OxygenSaturation => &["%"],
        Kind::BodyWeight => &["kg", "g", "[lb_av]"],
        Kind::BodyHeight => &["cm", "m", "[in_i]"],
        Kind::BodyMassIndex => &["kg/m2"],
        Kind::BloodGlucose => &["mg/dL", "mmol/L"],
    }
}

/// Common non-UCUM spellings → UCUM code.
const UNIT_ALIASES: &[(&str, &str)] = &[
    ("bpm", "/min"),
    ("beats/min", "/min"),
    ("breaths/min", "/min"),
    ("{beats}/min", "/min"),
    ("{breaths}/min", "/min"),
    ("1/min", "/min"),
    ("mmHg", "mm[Hg]"),
    ("mmhg", "mm[Hg]"),
    ("C", "Cel"),
    ("°C", "Cel"),
    ("degC", "Cel"),
    ("F", "[degF]"),
    ("°F", "[degF]"),
    ("degF", "[degF]"),
    ("lb", "[lb_av]"),
    ("lbs", "[lb_av]"),
    ("in", "[in_i]"),
    ("kg/m^2", "kg/m2"),
    ("mg/dl", "mg/dL"),
    ("mmol/l", "mmol/L"),
];

/// Normalises a unit spelling to UCUM and checks that it fits the kind.
pub fn ucum_for(kind: Kind, unit: Option<&str>) -> Result<String, String> {
    let Some(unit) = unit else {
        return Ok(default_unit(kind).to_owned());
    };
    let unit = unit.trim();
    let code = UNIT_ALIASES
        .iter()
        .find(|(alias, _)| *alias == unit)
        .map(|(_, code)| *code)
        .unwrap_or(unit);
    if allowed_units(kind).contains(&code) {
        Ok(code.to_owned())
    } else {
        Err(format!(
            "unit {unit:?} does not fit {}; use one of {:?}",
            kind_name(kind),
            allowed_units(kind)
        ))
    }
}

/// Status flags by name (`snake_case` of `reading::StatusFlag`).
pub fn status_from_name(name: &str) -> Option<StatusFlag> {
    Some(match name {
        "body_movement" => StatusFlag::BodyMovement,
        "cuff_too_loose" => StatusFlag::CuffTooLoose,
        "irregular_pulse" => StatusFlag::IrregularPulse,
        "pulse_rate_above_range" => StatusFlag::PulseRateAboveRange,
        "pulse_rate_below_range" => StatusFlag::PulseRateBelowRange,
        "improper_measurement_position" => StatusFlag::ImproperMeasurementPosition,
        "sensor_contact_not_detected" => StatusFlag::SensorContactNotDetected,
        "questionable_measurement" => StatusFlag::QuestionableMeasurement,
        "early_estimate" => StatusFlag::EarlyEstimate,
        "validated_data" => StatusFlag::ValidatedData,
        "sensor_malfunction" => StatusFlag::SensorMalfunction,
        "low_perfusion" => StatusFlag::LowPerfusion,
        "device_clock_not_set" => StatusFlag::DeviceClockNotSet,
        _ => return None,
    })
}

/// A timestamp read from a payload: RFC 3339 with an offset is converted to UTC; a local
/// `YYYY-MM-DDTHH:MM:SS` (or with a space) without offset is the device clock as-is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedTime {
    pub device_time: DeviceTime,
    /// True when the text carried an offset, so `device_time` is UTC.
    pub utc: bool,
}

pub fn parse_time(text: &str) -> Result<ParsedTime, String> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        let t = t.to_offset(time::UtcOffset::UTC);
        return Ok(ParsedTime {
            device_time: DeviceTime {
                year: u16::try_from(t.year()).map_err(|_| "year out of range".to_owned())?,
                month: u8::from(t.month()),
                day: t.day(),
                hours: t.hour(),
                minutes: t.minute(),
                seconds: t.second(),
            },
            utc: true,
        });
    }
    let local = time::macros::format_description!(
        "[year]-[month]-[day][first [T][ ]][hour]:[minute]:[second]"
    );
    let t = time::PrimitiveDateTime::parse(text.split('.').next().unwrap_or(text), &local)
        .map_err(|_| "not an RFC 3339 or YYYY-MM-DDTHH:MM:SS timestamp".to_owned())?;
    Ok(ParsedTime {
        device_time: DeviceTime {
            year: u16::try_from(t.year()).map_err(|_| "year out of range".to_owned())?,
            month: u8::from(t.month()),
            day: t.day(),
            hours: t.hour(),
            minutes: t.minute(),
            seconds: t.second(),
        },
        utc: false,
    })
}

/// Qualifier recorded when `device_time` is already UTC (the payload carried an offset).
pub const QUALIFIER_DEVICE_TIME_UTC: &str = "device_time_utc";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (name, kind) in KINDS {
            assert_eq!(kind_from_name(name), Some(*kind));
            assert_eq!(kind_name(*kind), *name);
        }
        assert_eq!(kind_from_name("HeartRate"), None);
    }

    #[test]
    fn units_normalise_and_check_kind() {
        assert_eq!(ucum_for(Kind::HeartRate, Some("bpm")), Ok("/min".into()));
        assert_eq!(
            ucum_for(Kind::BloodPressure, Some("mmHg")),
            Ok("mm[Hg]".into())
        );
        assert_eq!(
            ucum_for(Kind::BodyWeight, Some("lbs")),
            Ok("[lb_av]".into())
        );
        assert_eq!(ucum_for(Kind::BodyTemperature, None), Ok("Cel".into()));
        assert!(ucum_for(Kind::BodyTemperature, Some("kg")).is_err());
        assert!(ucum_for(Kind::OxygenSaturation, Some("/min")).is_err());
    }

    #[test]
    fn times_with_offset_become_utc() {
        let t = parse_time("2026-11-28T10:15:30+01:00").expect("time");
        assert!(t.utc);
        assert_eq!(
            t.device_time,
            DeviceTime {
                year: 2026,
                month: 11,
                day: 28,
                hours: 9,
                minutes: 15,
                seconds: 30
            }
        );
        let local = parse_time("2026-11-28 10:15:30").expect("local");
        assert!(!local.utc);
        assert_eq!(local.device_time.hours, 10);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01T00:00:00Z").is_err());
    }
}
