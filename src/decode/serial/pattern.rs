//! Delimited/regex lines: a regular expression with named captures.
//!
//! Captures: `value` (with `kind` captured or configured), or `systolic` + `diastolic`
//! (+ `mean`) for blood pressure; optional `unit` and `time`. A captured `kind` text is looked up
//! in the configured `kind_map` first (e.g. `HR` → `heart_rate`), then in the vocabulary.
//! Example: `^(?P<kind>\w+),(?P<value>[-0-9.]+),(?P<unit>[^,]*)$` reads `HR,72,bpm`.
//!
//! Engine: `regex-lite` (the `regex` syntax; `\d`, `\w`, `\s` and `\b` are ASCII-only and
//! Unicode classes like `\p{L}` are refused at config time). Device lines are ASCII, and the
//! full `regex` engine costs about 0.4 MiB of binary (docs/PERFORMANCE.md, "Binary size").

use std::collections::BTreeMap;

use regex_lite::Regex;

use super::LineError;
use super::assemble::{self, Target};
use crate::decode::mqtt::{PayloadContext, vocab};
use crate::reading::{ComponentKind, Kind, Reading};

#[derive(Debug, Clone)]
pub struct PatternFormat {
    regex: Regex,
    kind: Option<Kind>,
    kind_map: BTreeMap<String, Kind>,
    unit: Option<String>,
}

impl PatternFormat {
    /// Builds from config; the error names the config key at fault.
    pub fn new(
        pattern: &str,
        kind: Option<&str>,
        kind_map: &BTreeMap<String, String>,
        unit: Option<String>,
    ) -> Result<Self, LineError> {
        let regex = Regex::new(pattern).map_err(|e| LineError::new("pattern", e.to_string()))?;
        let names: Vec<&str> = regex.capture_names().flatten().collect();
        let has = |n: &str| names.contains(&n);
        let kind = match kind {
            Some(name) => Some(
                vocab::kind_from_name(name)
                    .ok_or_else(|| LineError::new("kind", "unknown kind"))?,
            ),
            None => None,
        };
        let mut map = BTreeMap::new();
        for (text, name) in kind_map {
            let k = vocab::kind_from_name(name)
                .ok_or_else(|| LineError::new(format!("kind_map.{text}"), "unknown kind"))?;
            map.insert(text.clone(), k);
        }
        let panel = has("systolic") || has("diastolic");
        if panel && !(has("systolic") && has("diastolic")) {
            return Err(LineError::new(
                "pattern",
                "needs both (?P<systolic>…) and (?P<diastolic>…)",
            ));
        }
        if !panel && !has("value") {
            return Err(LineError::new(
                "pattern",
                "needs a (?P<value>…) capture, or (?P<systolic>…) and (?P<diastolic>…)",
            ));
        }
        if !panel && kind.is_none() && !has("kind") {
            return Err(LineError::new("kind", "set `kind` or capture (?P<kind>…)"));
        }
        Ok(Self {
            regex,
            kind,
            kind_map: map,
            unit,
        })
    }

    pub fn decode_line(&self, line: &str, ctx: &PayloadContext) -> Result<Vec<Reading>, LineError> {
        let caps = self
            .regex
            .captures(line)
            .ok_or_else(|| LineError::new("line", "does not match the pattern"))?;
        let text = |n: &str| caps.name(n).map(|m| m.as_str()).filter(|s| !s.is_empty());
        let unit = text("unit")
            .map(str::to_owned)
            .or_else(|| self.unit.clone());
        let mut values = Vec::new();
        if caps.name("systolic").is_some() {
            for (name, ck) in [
                ("systolic", ComponentKind::Systolic),
                ("diastolic", ComponentKind::Diastolic),
                ("mean", ComponentKind::MeanArterial),
            ] {
                if let Some(t) = text(name) {
                    values.push((
                        Target::Component(ck),
                        assemble::number(name, t)?,
                        unit.clone(),
                    ));
                }
            }
        } else {
            let kind = match text("kind") {
                Some(k) => self
                    .kind_map
                    .get(k)
                    .copied()
                    .or_else(|| vocab::kind_from_name(k))
                    .ok_or_else(|| LineError::new("kind", "unknown kind"))?,
                None => self.kind.ok_or_else(|| LineError::new("kind", "missing"))?,
            };
            if kind == Kind::BloodPressure {
                return Err(LineError::new(
                    "kind",
                    "blood pressure needs systolic/diastolic captures",
                ));
            }
            let v = text("value").ok_or_else(|| LineError::new("value", "missing"))?;
            values.push((Target::Value(kind), assemble::number("value", v)?, unit));
        }
        assemble::readings(values, text("time"), ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{ClockContext, Decimal, DeviceIdentity, MeasuredValue, SourceKind};

    fn ctx() -> PayloadContext {
        PayloadContext {
            device: DeviceIdentity {
                source: SourceKind::Serial,
                address: "/dev/ttyS0".into(),
                system_id: None,
                manufacturer: None,
                model: None,
                serial_number: None,
            },
            received_at: time::macros::datetime!(2026-11-28 10:00:00 UTC),
            clock: ClockContext::default(),
        }
    }

    fn value(r: &Reading) -> (Kind, MeasuredValue, String) {
        let q = r.value.as_ref().expect("value");
        (r.kind, q.value, q.ucum.clone())
    }

    #[test]
    fn delimited_with_kind_map() {
        let map = [("HR".to_owned(), "heart_rate".to_owned())]
            .into_iter()
            .collect();
        let f = PatternFormat::new(
            r"^(?P<kind>\w+),(?P<value>[-0-9.]+),(?P<unit>[^,]*),(?P<time>.+)$",
            None,
            &map,
            None,
        )
        .expect("valid");
        let r = f
            .decode_line("HR,72,bpm,2026-11-28T08:00:00Z", &ctx())
            .expect("hr");
        assert_eq!(
            value(&r[0]),
            (
                Kind::HeartRate,
                MeasuredValue::Number(Decimal::new(72, 0)),
                "/min".into()
            )
        );
        assert_eq!(r[0].device_time.map(|t| t.hours), Some(8));
        let r = f
            .decode_line("oxygen_saturation,97.5,%,2026-11-28 08:00:01", &ctx())
            .expect("vocab name");
        assert_eq!(value(&r[0]).1, MeasuredValue::Number(Decimal::new(975, -1)));
        for bad in [
            "HR;72",
            "MOOD,1,,2026-11-28T08:00:00Z",
            "HR,7-2,bpm,2026-11-28T08:00:00Z",
            "HR,72,kg,2026-11-28T08:00:00Z",
        ] {
            assert!(f.decode_line(bad, &ctx()).is_err(), "{bad}");
        }
    }

    #[test]
    fn blood_pressure_and_fixed_kind() {
        let f = PatternFormat::new(
            r"SYS (?P<systolic>\d+) DIA (?P<diastolic>\d+)( MAP (?P<mean>\d+))?",
            None,
            &BTreeMap::new(),
            None,
        )
        .expect("valid");
        let r = f.decode_line("SYS 120 DIA 80", &ctx()).expect("bp");
        assert_eq!(r[0].kind, Kind::BloodPressure);
        assert_eq!(r[0].components.len(), 2);
        assert_eq!(
            f.decode_line("SYS 120 DIA 80 MAP 93", &ctx())
                .expect("bp")
                .first()
                .map(|r| r.components.len()),
            Some(3)
        );
        let t = PatternFormat::new(
            r"T=(?P<value>\S+)",
            Some("body_temperature"),
            &BTreeMap::new(),
            Some("F".into()),
        )
        .expect("valid");
        assert_eq!(
            value(&t.decode_line("T=99.1", &ctx()).expect("t")[0]).2,
            "[degF]"
        );
    }

    /// regex-lite: `\d` is ASCII digits only; Unicode classes are a config error.
    #[test]
    fn ascii_classes_and_no_unicode_classes() {
        let none = BTreeMap::new();
        let hr = PatternFormat::new(r"^HR (?P<value>\d+)$", Some("heart_rate"), &none, None)
            .expect("valid");
        assert!(hr.decode_line("HR 72", &ctx()).is_ok());
        // Arabic-Indic digits are Unicode `\d` in the full regex crate, not here.
        assert_eq!(
            hr.decode_line("HR \u{0667}\u{0662}", &ctx())
                .map(|_| ())
                .expect_err("not ASCII digits")
                .field,
            "line"
        );
        assert_eq!(
            PatternFormat::new(r"(?P<value>\p{N}+)", Some("heart_rate"), &none, None)
                .map(|_| ())
                .expect_err("Unicode class")
                .field,
            "pattern"
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let none = BTreeMap::new();
        assert_eq!(
            PatternFormat::new("(", None, &none, None)
                .map(|_| ())
                .expect_err("bad regex")
                .field,
            "pattern"
        );
        assert_eq!(
            PatternFormat::new("(?P<value>\\d+)", None, &none, None)
                .map(|_| ())
                .expect_err("no kind")
                .field,
            "kind"
        );
        assert_eq!(
            PatternFormat::new("\\d+", Some("heart_rate"), &none, None)
                .map(|_| ())
                .expect_err("no value")
                .field,
            "pattern"
        );
        assert_eq!(
            PatternFormat::new("(?P<systolic>\\d+)", None, &none, None)
                .map(|_| ())
                .expect_err("half bp")
                .field,
            "pattern"
        );
        let map = [("X".to_owned(), "mood".to_owned())].into_iter().collect();
        assert_eq!(
            PatternFormat::new("(?P<kind>X)(?P<value>1)", None, &map, None)
                .map(|_| ())
                .expect_err("map")
                .field,
            "kind_map.X"
        );
    }
}
