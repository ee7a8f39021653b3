//! NDJSON lines with a field map: `{"hr": 72, "spo2": 98.0, "ts": "2026-11-28T10:00:00Z"}` with
//! `fields = { hr = "heart_rate", spo2 = "oxygen_saturation" }` gives two readings. Field paths
//! may be dotted (`vitals.hr`); numbers keep the precision as written. Blood pressure uses the
//! targets `blood_pressure.systolic|diastolic|mean`, combined into one panel reading.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::LineError;
use super::assemble::{self, Target};
use crate::decode::mqtt::PayloadContext;
use crate::decode::mqtt::number::JsonDecimal;
use crate::reading::{Kind, Reading};

#[derive(Debug, Clone)]
pub struct NdjsonFormat {
    /// (JSON field path, what it measures, unit override).
    pub fields: Vec<(String, Target, Option<String>)>,
    /// Field path of the device timestamp (RFC 3339 or local ISO), if any.
    pub time_field: Option<String>,
}

impl NdjsonFormat {
    /// Builds from config: field path → target name, and per-kind units.
    pub fn new(
        fields: &BTreeMap<String, String>,
        units: &BTreeMap<String, String>,
        time_field: Option<String>,
    ) -> Result<Self, LineError> {
        let mut out = Vec::new();
        for (path, name) in fields {
            let target = assemble::target_from_name(name)
                .ok_or_else(|| LineError::new(format!("fields.{path}"), "unknown kind"))?;
            let kind_name = match target {
                Target::Value(k) => crate::decode::mqtt::vocab::kind_name(k),
                Target::Component(_) => crate::decode::mqtt::vocab::kind_name(Kind::BloodPressure),
            };
            out.push((path.clone(), target, units.get(kind_name).cloned()));
        }
        Ok(Self {
            fields: out,
            time_field,
        })
    }

    pub fn decode_line(&self, line: &str, ctx: &PayloadContext) -> Result<Vec<Reading>, LineError> {
        let root: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(line).map_err(|_| LineError::new("line", "not a JSON object"))?;
        let mut values = Vec::new();
        for (path, target, unit) in &self.fields {
            let Some(raw) = lookup(&root, path)? else {
                continue;
            };
            if raw.get() == "null" {
                continue;
            }
            let d: JsonDecimal = serde_json::from_str(raw.get())
                .map_err(|_| LineError::new(path.as_str(), "not a number"))?;
            values.push((*target, d.0, unit.clone()));
        }
        let time = match &self.time_field {
            Some(path) => match lookup(&root, path)? {
                Some(raw) => Some(
                    serde_json::from_str::<String>(raw.get())
                        .map_err(|_| LineError::new(path.as_str(), "not a string"))?,
                ),
                None => None,
            },
            None => None,
        };
        assemble::readings(values, time.as_deref(), ctx)
    }
}

/// Follows a dotted path through nested objects, parsing only what lies on the path.
fn lookup(
    root: &BTreeMap<String, Box<RawValue>>,
    path: &str,
) -> Result<Option<Box<RawValue>>, LineError> {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else {
        return Ok(None);
    };
    let Some(mut current) = root.get(first).cloned() else {
        return Ok(None);
    };
    for part in parts {
        let map: BTreeMap<String, Box<RawValue>> = serde_json::from_str(current.get())
            .map_err(|_| LineError::new(path, "not an object on the path"))?;
        match map.get(part) {
            Some(next) => current = next.clone(),
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{
        ClockContext, ComponentKind, Decimal, DeviceIdentity, MeasuredValue, SourceKind,
    };

    fn ctx() -> PayloadContext {
        PayloadContext {
            device: DeviceIdentity {
                source: SourceKind::Serial,
                address: "/dev/ttyACM0".into(),
                system_id: None,
                manufacturer: None,
                model: None,
                serial_number: None,
            },
            received_at: time::macros::datetime!(2026-11-28 10:00:00 UTC),
            clock: ClockContext::default(),
        }
    }

    fn format() -> NdjsonFormat {
        let fields: BTreeMap<String, String> = [
            ("hr", "heart_rate"),
            ("v.temp", "body_temperature"),
            ("bp.sys", "blood_pressure.systolic"),
            ("bp.dia", "blood_pressure.diastolic"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let units = [("body_temperature".to_owned(), "F".to_owned())]
            .into_iter()
            .collect();
        NdjsonFormat::new(&fields, &units, Some("ts".into())).expect("valid")
    }

    #[test]
    fn field_map_yields_one_reading_per_field() {
        let line = r#"{"hr":72,"v":{"temp":98.60},"bp":{"sys":121,"dia":79},"ts":"2026-11-28T09:00:00Z","other":true}"#;
        let r = format().decode_line(line, &ctx()).expect("decodes");
        assert_eq!(r.len(), 3);
        let temp = r
            .iter()
            .find(|r| r.kind == Kind::BodyTemperature)
            .expect("temp");
        let q = temp.value.as_ref().expect("value");
        assert_eq!(
            (q.value, q.ucum.as_str()),
            (MeasuredValue::Number(Decimal::new(9860, -2)), "[degF]")
        );
        let bp = r
            .iter()
            .find(|r| r.kind == Kind::BloodPressure)
            .expect("bp");
        assert_eq!(bp.components[0].kind, ComponentKind::Systolic);
        assert_eq!(
            bp.components[1].quantity.value,
            MeasuredValue::Number(Decimal::new(79, 0))
        );
        assert!(r.iter().all(|r| r.device_time.map(|t| t.hours) == Some(9)));
    }

    #[test]
    fn absent_fields_are_skipped_and_bad_ones_refused() {
        assert_eq!(
            format()
                .decode_line(r#"{"hr":60}"#, &ctx())
                .map(|r| r.len()),
            Ok(1)
        );
        assert_eq!(
            format()
                .decode_line(r#"{"hr":null}"#, &ctx())
                .map(|r| r.len()),
            Ok(0)
        );
        for (line, field) in [
            (r#"{"hr":"fast"}"#, "hr"),
            (r#"{"v":3}"#, "v.temp"),
            (r#"{"bp":{"sys":120}}"#, "blood_pressure"),
            (r#"{"hr":60,"ts":5}"#, "ts"),
            (r#"{"hr":60,"ts":"noon"}"#, "time"),
            ("{not json", "line"),
            ("[1]", "line"),
        ] {
            let e = format().decode_line(line, &ctx()).expect_err(line);
            assert_eq!(e.field, field, "{line}");
        }
        let bad = [("x".to_owned(), "mood".to_owned())].into_iter().collect();
        assert!(NdjsonFormat::new(&bad, &BTreeMap::new(), None).is_err());
    }
}
