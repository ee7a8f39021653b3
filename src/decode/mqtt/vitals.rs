//! This project's JSON vitals schema, `vectorcare.vitals/1` (docs/MQTT.md).
//!
//! Either one reading object, or an envelope `{"schema": "vectorcare.vitals/1", "device": {...},
//! "readings": [...]}`. A reading: `kind` (see [`super::vocab::KINDS`]), `value` (JSON number,
//! precision kept) or, for `blood_pressure`, `systolic` + `diastolic` (+ optional `mean`);
//! optional `unit` (UCUM or a common spelling), `time`, `status` (flag names), `sequence`,
//! `user`. Unknown keys are refused so typos do not silently drop data.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::number::JsonDecimal;
use super::{PayloadContext, PayloadError, blank_reading, set_time, vocab};
use crate::reading::{Component, ComponentKind, Kind, MeasuredValue, Quantity, Reading};

pub const SCHEMA_ID: &str = "vectorcare.vitals/1";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    device: Option<DeviceInfo>,
    readings: Vec<Entry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceInfo {
    manufacturer: Option<String>,
    model: Option<String>,
    serial_number: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    kind: String,
    value: Option<JsonDecimal>,
    systolic: Option<JsonDecimal>,
    diastolic: Option<JsonDecimal>,
    mean: Option<JsonDecimal>,
    unit: Option<String>,
    time: Option<String>,
    #[serde(default)]
    status: Vec<String>,
    sequence: Option<u32>,
    user: Option<u8>,
}

pub fn decode(payload: &[u8], ctx: &PayloadContext) -> Result<Vec<Reading>, PayloadError> {
    // Look at the keys first (numbers stay raw) to pick the shape.
    let keys: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(payload).map_err(|e| PayloadError::Json(e.to_string()))?;
    if keys.contains_key("readings") {
        let envelope: Envelope =
            serde_json::from_slice(payload).map_err(|e| PayloadError::Json(e.to_string()))?;
        if let Some(schema) = &envelope.schema
            && schema != SCHEMA_ID
        {
            return Err(PayloadError::field(
                "schema",
                format!("unsupported schema, expected {SCHEMA_ID}"),
            ));
        }
        let mut ctx = ctx.clone();
        if let Some(info) = envelope.device {
            // The topic mapping fixes the address; the payload may add descriptive fields.
            ctx.device.manufacturer = info.manufacturer.or(ctx.device.manufacturer);
            ctx.device.model = info.model.or(ctx.device.model);
            ctx.device.serial_number = info.serial_number.or(ctx.device.serial_number);
        }
        envelope
            .readings
            .into_iter()
            .enumerate()
            .map(|(i, e)| entry_to_reading(e, &format!("readings[{i}]"), &ctx))
            .collect()
    } else {
        let entry: Entry =
            serde_json::from_slice(payload).map_err(|e| PayloadError::Json(e.to_string()))?;
        Ok(vec![entry_to_reading(entry, "", ctx)?])
    }
}

fn path(prefix: &str, key: &str) -> String {
    crate::config::problems::join(prefix, key)
}

fn entry_to_reading(e: Entry, at: &str, ctx: &PayloadContext) -> Result<Reading, PayloadError> {
    let kind = vocab::kind_from_name(&e.kind)
        .ok_or_else(|| PayloadError::field(path(at, "kind"), "unknown kind"))?;
    let unit = vocab::ucum_for(kind, e.unit.as_deref())
        .map_err(|reason| PayloadError::field(path(at, "unit"), reason))?;
    let mut reading = blank_reading(ctx, kind);
    let quantity = |d: JsonDecimal| Quantity {
        value: MeasuredValue::Number(d.0),
        ucum: unit.clone(),
    };
    if kind == Kind::BloodPressure {
        if e.value.is_some() {
            return Err(PayloadError::field(
                path(at, "value"),
                "blood_pressure takes systolic/diastolic/mean, not value",
            ));
        }
        let (Some(sys), Some(dia)) = (e.systolic, e.diastolic) else {
            return Err(PayloadError::field(
                path(at, "systolic"),
                "blood_pressure needs systolic and diastolic",
            ));
        };
        reading.components.push(Component {
            kind: ComponentKind::Systolic,
            quantity: quantity(sys),
        });
        reading.components.push(Component {
            kind: ComponentKind::Diastolic,
            quantity: quantity(dia),
        });
        if let Some(mean) = e.mean {
            reading.components.push(Component {
                kind: ComponentKind::MeanArterial,
                quantity: quantity(mean),
            });
        }
    } else {
        if e.systolic.is_some() || e.diastolic.is_some() || e.mean.is_some() {
            return Err(PayloadError::field(
                path(at, "systolic"),
                "only blood_pressure has systolic/diastolic/mean",
            ));
        }
        let value = e
            .value
            .ok_or_else(|| PayloadError::field(path(at, "value"), "missing"))?;
        reading.value = Some(quantity(value));
    }
    if let Some(t) = &e.time {
        set_time(&mut reading, &path(at, "time"), t)?;
    }
    for (i, name) in e.status.iter().enumerate() {
        let flag = vocab::status_from_name(name).ok_or_else(|| {
            PayloadError::field(
                format!("{}[{i}]", path(at, "status")),
                "unknown status flag",
            )
        })?;
        if !reading.status.contains(&flag) {
            reading.status.push(flag);
        }
    }
    reading.status.sort();
    reading.sequence = e.sequence;
    reading.user_id = e.user;
    Ok(reading)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{
        ClockContext, Decimal, DeviceIdentity, DeviceTime, SourceKind, StatusFlag,
    };

    fn ctx() -> PayloadContext {
        PayloadContext {
            device: DeviceIdentity {
                source: SourceKind::Mqtt,
                address: "cuff-1".into(),
                system_id: None,
                manufacturer: None,
                model: None,
                serial_number: None,
            },
            received_at: time::macros::datetime!(2026-11-28 10:00:00 UTC),
            clock: ClockContext::default(),
        }
    }

    #[test]
    fn single_reading_keeps_precision_and_unit() {
        let r = decode(br#"{"kind":"body_temperature","value":37.20,"unit":"C","time":"2026-11-28T09:59:00Z"}"#, &ctx())
            .expect("decodes");
        assert_eq!(r.len(), 1);
        let q = r[0].value.as_ref().expect("value");
        assert_eq!(q.value, MeasuredValue::Number(Decimal::new(3720, -2)));
        assert_eq!(q.ucum, "Cel");
        assert_eq!(
            r[0].device_time,
            Some(DeviceTime {
                year: 2026,
                month: 11,
                day: 28,
                hours: 9,
                minutes: 59,
                seconds: 0
            })
        );
        assert_eq!(
            r[0].qualifiers.get("device_time_utc").map(String::as_str),
            Some("true")
        );
        assert_eq!(r[0].device.address, "cuff-1");
    }

    #[test]
    fn envelope_with_blood_pressure_and_flags() {
        let payload = br#"{"schema":"vectorcare.vitals/1","device":{"model":"BP-1","serial_number":"S9"},
            "readings":[{"kind":"blood_pressure","systolic":120,"diastolic":80,"mean":93.3,"unit":"mmHg",
                         "status":["irregular_pulse","body_movement"],"user":1,"sequence":7},
                        {"kind":"pulse_rate","value":61}]}"#;
        let r = decode(payload, &ctx()).expect("decodes");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].kind, Kind::BloodPressure);
        assert_eq!(r[0].components.len(), 3);
        assert_eq!(r[0].components[2].kind, ComponentKind::MeanArterial);
        assert_eq!(
            r[0].components[2].quantity.value,
            MeasuredValue::Number(Decimal::new(933, -1))
        );
        assert_eq!(r[0].components[0].quantity.ucum, "mm[Hg]");
        assert_eq!(
            r[0].status,
            vec![StatusFlag::BodyMovement, StatusFlag::IrregularPulse]
        );
        assert_eq!((r[0].user_id, r[0].sequence), (Some(1), Some(7)));
        assert_eq!(r[0].device.model.as_deref(), Some("BP-1"));
        assert_eq!(
            r[0].device.address, "cuff-1",
            "payload cannot change the address"
        );
        assert_eq!(r[1].value.as_ref().map(|q| q.ucum.as_str()), Some("/min"));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"kind":"heart_rate"}"#, "value"),
            (br#"{"kind":"mood","value":1}"#, "kind"),
            (br#"{"kind":"heart_rate","value":60,"unit":"kg"}"#, "unit"),
            (br#"{"kind":"blood_pressure","systolic":120}"#, "systolic"),
            (
                br#"{"readings":[{"kind":"heart_rate","value":1,"status":["sad"]}]}"#,
                "readings[0].status[0]",
            ),
            (br#"{"kind":"heart_rate","value":60,"time":"noon"}"#, "time"),
            (br#"{"schema":"other/2","readings":[]}"#, "schema"),
        ];
        for (payload, field) in cases {
            match decode(payload, &ctx()) {
                Err(PayloadError::Field { field: f, .. }) => assert_eq!(f, *field),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(payload)),
            }
        }
        assert!(matches!(
            decode(b"not json", &ctx()),
            Err(PayloadError::Json(_))
        ));
        assert!(matches!(
            decode(br#"{"kind":"heart_rate","value":60,"extra":1}"#, &ctx()),
            Err(PayloadError::Json(_))
        ));
        assert!(matches!(
            decode(br#"{"kind":"heart_rate","value":"sixty"}"#, &ctx()),
            Err(PayloadError::Json(_))
        ));
    }
}
