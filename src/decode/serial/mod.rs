//! Serial line protocols → `Reading`s. PURE: no I/O, no clock, no logging of values.
//!
//! - [`framing`]: bytes → lines, resynchronising after garbage;
//! - [`ndjson`]: one JSON object per line with a configured field map;
//! - [`pattern`]: a regular expression with named captures (`kind`, `value`, `unit`, `time`,
//!   `systolic`, `diastolic`, `mean`);
//! - [`masimo`]: Masimo Rad-8 / Radical-7 "ASCII 1" output (a real device protocol).
//!
//! Kind names and units are the project vocabulary of [`crate::decode::mqtt::vocab`].

use crate::decode::mqtt::PayloadContext;
use crate::reading::Reading;

pub mod framing;
pub mod masimo;
pub mod ndjson;
pub mod pattern;

/// Why a line was refused; names the field, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct LineError {
    pub field: String,
    pub reason: String,
}

impl LineError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A validated line format (built by `sources::serial::config`).
#[derive(Debug, Clone)]
pub enum LineFormat {
    Ndjson(ndjson::NdjsonFormat),
    Pattern(pattern::PatternFormat),
    Masimo,
}

impl LineFormat {
    /// Decodes one line. `Ok(vec![])` means a well-formed line without a measurement (e.g. an
    /// oximeter with no finger in it).
    pub fn decode_line(&self, line: &str, ctx: &PayloadContext) -> Result<Vec<Reading>, LineError> {
        match self {
            LineFormat::Ndjson(f) => f.decode_line(line, ctx),
            LineFormat::Pattern(f) => f.decode_line(line, ctx),
            LineFormat::Masimo => masimo::decode_line(line, ctx),
        }
    }
}

/// Builds readings from per-kind captured texts (shared by ndjson and pattern formats).
pub(crate) mod assemble {
    use super::LineError;
    use crate::decode::mqtt::number::parse_decimal;
    use crate::decode::mqtt::{PayloadContext, vocab};
    use crate::reading::{
        Component, ComponentKind, Decimal, Kind, MeasuredValue, Quantity, Reading,
    };

    /// Which part of a reading a captured value is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Target {
        Value(Kind),
        Component(ComponentKind),
    }

    /// Parses `heart_rate` or `blood_pressure.systolic|diastolic|mean`.
    pub fn target_from_name(name: &str) -> Option<Target> {
        match name {
            "blood_pressure.systolic" => Some(Target::Component(ComponentKind::Systolic)),
            "blood_pressure.diastolic" => Some(Target::Component(ComponentKind::Diastolic)),
            "blood_pressure.mean" => Some(Target::Component(ComponentKind::MeanArterial)),
            other => match vocab::kind_from_name(other)? {
                Kind::BloodPressure => None,
                kind => Some(Target::Value(kind)),
            },
        }
    }

    pub fn number(field: &str, text: &str) -> Result<Decimal, LineError> {
        parse_decimal(text).map_err(|e| LineError::new(field, e.to_string()))
    }

    /// One reading per value target plus one blood-pressure panel if components were seen.
    pub fn readings(
        values: Vec<(Target, Decimal, Option<String>)>,
        time: Option<&str>,
        ctx: &PayloadContext,
    ) -> Result<Vec<Reading>, LineError> {
        let mut out = Vec::new();
        let mut panel: Vec<Component> = Vec::new();
        for (target, value, unit) in values {
            let kind = match target {
                Target::Value(k) => k,
                Target::Component(_) => Kind::BloodPressure,
            };
            let ucum =
                vocab::ucum_for(kind, unit.as_deref()).map_err(|r| LineError::new("unit", r))?;
            let quantity = Quantity {
                value: MeasuredValue::Number(value),
                ucum,
            };
            match target {
                Target::Value(kind) => {
                    let mut r = crate::decode::mqtt::blank_reading(ctx, kind);
                    r.value = Some(quantity);
                    out.push(r);
                }
                Target::Component(kind) => panel.push(Component { kind, quantity }),
            }
        }
        if !panel.is_empty() {
            let has = |k| panel.iter().any(|c| c.kind == k);
            if !has(ComponentKind::Systolic) || !has(ComponentKind::Diastolic) {
                return Err(LineError::new(
                    "blood_pressure",
                    "needs systolic and diastolic",
                ));
            }
            panel.sort_by_key(|c| c.kind as u8);
            let mut r = crate::decode::mqtt::blank_reading(ctx, Kind::BloodPressure);
            r.components = panel;
            out.push(r);
        }
        if let Some(text) = time {
            for r in &mut out {
                crate::decode::mqtt::set_time(r, "time", text)
                    .map_err(|e| LineError::new("time", e.to_string()))?;
            }
        }
        Ok(out)
    }
}
