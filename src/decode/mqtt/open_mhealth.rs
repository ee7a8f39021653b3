//! Open mHealth schemas → readings: heart-rate, blood-pressure, body-weight, body-temperature,
//! oxygen-saturation, blood-glucose, respiratory-rate (omh namespace, versions 1.x–4.x share
//! these fields).
//!
//! Accepts a data point (`{"header": {"schema_id": {"namespace": "omh", "name": ...}}, "body":
//! {...}}`) or a bare body; a bare body's schema is recognised by its measure key. Field names and
//! unit values follow the schema definitions published by Open mHealth (openmhealth/schemas on
//! GitHub, `schema/omh/<name>-<version>.json`). Bodies carrying a `descriptive_statistic`
//! (average, maximum…) are refused: they are not single measurements.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::number::JsonDecimal;
use super::{PayloadContext, PayloadError, blank_reading, set_time, vocab};
use crate::reading::{Component, ComponentKind, Kind, MeasuredValue, Quantity, Reading};

#[derive(Debug, Deserialize)]
struct DataPoint {
    header: Option<Header>,
    body: Body,
}

#[derive(Debug, Deserialize)]
struct Header {
    schema_id: SchemaId,
}

#[derive(Debug, Deserialize)]
struct SchemaId {
    namespace: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct UnitValue {
    value: JsonDecimal,
    unit: String,
}

#[derive(Debug, Default, Deserialize)]
struct TimeFrame {
    date_time: Option<String>,
    time_interval: Option<TimeInterval>,
}

#[derive(Debug, Deserialize)]
struct TimeInterval {
    start_date_time: Option<String>,
    end_date_time: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Body {
    heart_rate: Option<UnitValue>,
    systolic_blood_pressure: Option<UnitValue>,
    diastolic_blood_pressure: Option<UnitValue>,
    body_weight: Option<UnitValue>,
    body_temperature: Option<UnitValue>,
    oxygen_saturation: Option<UnitValue>,
    blood_glucose: Option<UnitValue>,
    respiratory_rate: Option<UnitValue>,
    effective_time_frame: Option<TimeFrame>,
    descriptive_statistic: Option<String>,
    measurement_location: Option<String>,
    specimen_source: Option<String>,
}

/// Schema names this decoder understands, with the kind each becomes.
pub const SCHEMAS: &[(&str, Kind)] = &[
    ("heart-rate", Kind::HeartRate),
    ("blood-pressure", Kind::BloodPressure),
    ("body-weight", Kind::BodyWeight),
    ("body-temperature", Kind::BodyTemperature),
    ("oxygen-saturation", Kind::OxygenSaturation),
    ("blood-glucose", Kind::BloodGlucose),
    ("respiratory-rate", Kind::RespiratoryRate),
];

pub fn decode(payload: &[u8], ctx: &PayloadContext) -> Result<Vec<Reading>, PayloadError> {
    let keys: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(payload).map_err(|e| PayloadError::Json(e.to_string()))?;
    let json = |e: serde_json::Error| PayloadError::Json(e.to_string());
    let (declared, body) = if keys.contains_key("body") {
        let point: DataPoint = serde_json::from_slice(payload).map_err(json)?;
        let declared = match point.header {
            Some(h) => {
                if h.schema_id.namespace != "omh" {
                    return Err(PayloadError::field(
                        "header.schema_id.namespace",
                        "only the omh namespace is supported",
                    ));
                }
                let kind = SCHEMAS
                    .iter()
                    .find(|(n, _)| *n == h.schema_id.name)
                    .map(|(_, k)| *k)
                    .ok_or_else(|| {
                        PayloadError::field("header.schema_id.name", "unsupported schema")
                    })?;
                Some(kind)
            }
            None => None,
        };
        (declared, point.body)
    } else {
        (None, serde_json::from_slice::<Body>(payload).map_err(json)?)
    };
    let prefix = if keys.contains_key("body") {
        "body."
    } else {
        ""
    };
    Ok(vec![body_to_reading(body, declared, prefix, ctx)?])
}

fn body_to_reading(
    body: Body,
    declared: Option<Kind>,
    prefix: &str,
    ctx: &PayloadContext,
) -> Result<Reading, PayloadError> {
    let f = |key: &str| format!("{prefix}{key}");
    if body.descriptive_statistic.is_some() {
        return Err(PayloadError::field(
            f("descriptive_statistic"),
            "a statistic over many measurements is not a single reading",
        ));
    }
    let present: Vec<(Kind, &str)> = [
        (body.heart_rate.is_some(), Kind::HeartRate, "heart_rate"),
        (
            body.systolic_blood_pressure.is_some() || body.diastolic_blood_pressure.is_some(),
            Kind::BloodPressure,
            "systolic_blood_pressure",
        ),
        (body.body_weight.is_some(), Kind::BodyWeight, "body_weight"),
        (
            body.body_temperature.is_some(),
            Kind::BodyTemperature,
            "body_temperature",
        ),
        (
            body.oxygen_saturation.is_some(),
            Kind::OxygenSaturation,
            "oxygen_saturation",
        ),
        (
            body.blood_glucose.is_some(),
            Kind::BloodGlucose,
            "blood_glucose",
        ),
        (
            body.respiratory_rate.is_some(),
            Kind::RespiratoryRate,
            "respiratory_rate",
        ),
    ]
    .into_iter()
    .filter(|(present, _, _)| *present)
    .map(|(_, kind, key)| (kind, key))
    .collect();
    let kind = match (declared, present.as_slice()) {
        (Some(k), [(p, _)]) if *p == k => k,
        (Some(_), _) => {
            return Err(PayloadError::field(
                f(""),
                "body does not hold the measure its schema_id names",
            ));
        }
        (None, [(k, _)]) => *k,
        (None, []) => return Err(PayloadError::field(f(""), "no supported measure")),
        (None, _) => return Err(PayloadError::field(f(""), "more than one measure")),
    };
    let mut reading = blank_reading(ctx, kind);
    let quantity = |uv: &UnitValue, key: &str| -> Result<Quantity, PayloadError> {
        let ucum = vocab::ucum_for(kind, Some(&uv.unit))
            .map_err(|reason| PayloadError::field(f(&format!("{key}.unit")), reason))?;
        Ok(Quantity {
            value: MeasuredValue::Number(uv.value.0),
            ucum,
        })
    };
    let single = match kind {
        Kind::HeartRate => body.heart_rate.as_ref().map(|v| (v, "heart_rate")),
        Kind::BodyWeight => body.body_weight.as_ref().map(|v| (v, "body_weight")),
        Kind::BodyTemperature => body
            .body_temperature
            .as_ref()
            .map(|v| (v, "body_temperature")),
        Kind::OxygenSaturation => body
            .oxygen_saturation
            .as_ref()
            .map(|v| (v, "oxygen_saturation")),
        Kind::BloodGlucose => body.blood_glucose.as_ref().map(|v| (v, "blood_glucose")),
        Kind::RespiratoryRate => body
            .respiratory_rate
            .as_ref()
            .map(|v| (v, "respiratory_rate")),
        _ => None,
    };
    if let Some((uv, key)) = single {
        reading.value = Some(quantity(uv, key)?);
    } else {
        let (Some(sys), Some(dia)) = (
            &body.systolic_blood_pressure,
            &body.diastolic_blood_pressure,
        ) else {
            return Err(PayloadError::field(
                f("diastolic_blood_pressure"),
                "blood pressure needs systolic and diastolic",
            ));
        };
        reading.components = vec![
            Component {
                kind: ComponentKind::Systolic,
                quantity: quantity(sys, "systolic_blood_pressure")?,
            },
            Component {
                kind: ComponentKind::Diastolic,
                quantity: quantity(dia, "diastolic_blood_pressure")?,
            },
        ];
    }
    if let Some(frame) = &body.effective_time_frame {
        let (key, text) = match (&frame.date_time, &frame.time_interval) {
            (Some(t), _) => ("effective_time_frame.date_time", Some(t)),
            (None, Some(i)) => (
                "effective_time_frame.time_interval",
                i.start_date_time.as_ref().or(i.end_date_time.as_ref()),
            ),
            (None, None) => ("effective_time_frame", None),
        };
        if let Some(text) = text {
            set_time(&mut reading, &f(key), text)?;
        }
    }
    if let Some(site) = body
        .measurement_location
        .as_deref()
        .and_then(temperature_site)
    {
        reading
            .qualifiers
            .insert("temperature_site".to_owned(), site.to_owned());
    }
    if let Some(sample) = body.specimen_source.as_deref().and_then(glucose_sample) {
        reading
            .qualifiers
            .insert("glucose_sample".to_owned(), sample.to_owned());
    }
    Ok(reading)
}

/// OMH `measurement_location` → the temperature-site names used by the GATT Temperature Type
/// decoder (so both paths say the same thing).
fn temperature_site(omh: &str) -> Option<&'static str> {
    Some(match omh {
        "axillary" => "armpit",
        "finger" => "finger",
        "oral" => "mouth",
        "rectal" => "rectum",
        "toe" => "toe",
        "tympanic" => "tympanum",
        "forehead" => "forehead",
        "temporal artery" => "temporal_artery",
        "wrist" => "wrist",
        _ => return None,
    })
}

/// OMH `specimen_source` → glucose sample names (GATT Glucose Measurement sample types).
fn glucose_sample(omh: &str) -> Option<&'static str> {
    Some(match omh {
        "capillary blood" => "capillary_whole_blood",
        "interstitial fluid" => "interstitial_fluid",
        "whole blood" => "undetermined_whole_blood",
        "plasma" => "undetermined_plasma",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{ClockContext, Decimal, DeviceIdentity, SourceKind};

    fn ctx() -> PayloadContext {
        PayloadContext {
            device: DeviceIdentity {
                source: SourceKind::Mqtt,
                address: "omh-1".into(),
                system_id: None,
                manufacturer: None,
                model: None,
                serial_number: None,
            },
            received_at: time::macros::datetime!(2026-11-28 10:00:00 UTC),
            clock: ClockContext::default(),
        }
    }

    fn number(r: &Reading) -> (MeasuredValue, &str) {
        let q = r.value.as_ref().expect("value");
        (q.value, q.ucum.as_str())
    }

    // Bodies below follow the example documents shipped with the Open mHealth schemas
    // (openmhealth/schemas, test/resources/shouldPass/omh/<schema>/...).
    #[test]
    fn each_schema_decodes() {
        let cases: &[(&str, Kind, MeasuredValue, &str)] = &[
            (
                r#"{"heart_rate":{"value":50,"unit":"beats/min"},"effective_time_frame":{"date_time":"2013-02-05T07:25:00Z"}}"#,
                Kind::HeartRate,
                MeasuredValue::Number(Decimal::new(50, 0)),
                "/min",
            ),
            (
                r#"{"body_weight":{"value":70.50,"unit":"kg"}}"#,
                Kind::BodyWeight,
                MeasuredValue::Number(Decimal::new(7050, -2)),
                "kg",
            ),
            (
                r#"{"body_temperature":{"value":98.6,"unit":"F"},"measurement_location":"oral"}"#,
                Kind::BodyTemperature,
                MeasuredValue::Number(Decimal::new(986, -1)),
                "[degF]",
            ),
            (
                r#"{"oxygen_saturation":{"value":96.5,"unit":"%"},"measurement_method":"pulse oximetry"}"#,
                Kind::OxygenSaturation,
                MeasuredValue::Number(Decimal::new(965, -1)),
                "%",
            ),
            (
                r#"{"blood_glucose":{"value":110,"unit":"mg/dL"},"specimen_source":"capillary blood"}"#,
                Kind::BloodGlucose,
                MeasuredValue::Number(Decimal::new(110, 0)),
                "mg/dL",
            ),
            (
                r#"{"respiratory_rate":{"value":12,"unit":"breaths/min"}}"#,
                Kind::RespiratoryRate,
                MeasuredValue::Number(Decimal::new(12, 0)),
                "/min",
            ),
        ];
        for (body, kind, value, unit) in cases {
            let r = decode(body.as_bytes(), &ctx()).expect(body);
            assert_eq!(r[0].kind, *kind, "{body}");
            assert_eq!(number(&r[0]), (*value, *unit), "{body}");
        }
        let temp = decode(cases[2].0.as_bytes(), &ctx()).expect("temp");
        assert_eq!(
            temp[0]
                .qualifiers
                .get("temperature_site")
                .map(String::as_str),
            Some("mouth")
        );
        let glu = decode(cases[4].0.as_bytes(), &ctx()).expect("glucose");
        assert_eq!(
            glu[0].qualifiers.get("glucose_sample").map(String::as_str),
            Some("capillary_whole_blood")
        );
    }

    #[test]
    fn data_point_with_header_and_blood_pressure() {
        let payload = br#"{"header":{"id":"x","creation_date_time":"2026-11-28T10:00:00Z",
            "schema_id":{"namespace":"omh","name":"blood-pressure","version":"1.0"}},
            "body":{"systolic_blood_pressure":{"value":160,"unit":"mmHg"},
                    "diastolic_blood_pressure":{"value":60,"unit":"mmHg"},
                    "effective_time_frame":{"time_interval":{"start_date_time":"2026-11-28T08:00:00-02:00","end_date_time":"2026-11-28T08:01:00-02:00"}},
                    "position_during_measurement":"sitting"}}"#;
        let r = decode(payload, &ctx()).expect("bp");
        assert_eq!(r[0].kind, Kind::BloodPressure);
        assert_eq!(
            r[0].components[0].quantity.value,
            MeasuredValue::Number(Decimal::new(160, 0))
        );
        assert_eq!(r[0].components[1].quantity.ucum, "mm[Hg]");
        assert_eq!(r[0].device_time.map(|t| t.hours), Some(10));
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"header":{"schema_id":{"namespace":"omh","name":"heart-rate","version":"1.0"}},"body":{"body_weight":{"value":1,"unit":"kg"}}}"#, "body."),
            (br#"{"header":{"schema_id":{"namespace":"omh","name":"step-count","version":"1.0"}},"body":{}}"#, "header.schema_id.name"),
            (br#"{"heart_rate":{"value":60,"unit":"beats/min"},"descriptive_statistic":"average"}"#, "descriptive_statistic"),
            (br#"{"body_temperature":{"value":310,"unit":"K"}}"#, "body_temperature.unit"),
            (br#"{"systolic_blood_pressure":{"value":120,"unit":"mmHg"}}"#, "diastolic_blood_pressure"),
            (br#"{"heart_rate":{"value":60,"unit":"beats/min"},"respiratory_rate":{"value":12,"unit":"breaths/min"}}"#, ""),
        ];
        for (payload, field) in cases {
            match decode(payload, &ctx()) {
                Err(PayloadError::Field { field: f, .. }) => assert_eq!(f, *field),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(payload)),
            }
        }
        assert!(matches!(
            decode(br#"[1,2]"#, &ctx()),
            Err(PayloadError::Json(_))
        ));
    }
}
