//! FHIR R4 Observation passthrough → reading.
//!
//! The Observation is validated (resourceType, status final/amended/corrected, a LOINC code this
//! gateway maps, a UCUM `valueQuantity` or blood-pressure components) and reduced to a `Reading`.
//! Its `subject`, `device`, `id` and `identifier` are deliberately ignored: the topic mapping
//! decides patient and device, and the FHIR mapper re-creates a compliant Observation from the
//! reading (same path as every other source). Numbers keep the precision written in the JSON.
//! LOINC codes: HL7 FHIR R4 vital-signs profiles and the LOINC table in docs/MAPPING.md.

use serde::Deserialize;

use super::number::JsonDecimal;
use super::{PayloadContext, PayloadError, blank_reading, set_time, vocab};
use crate::reading::{Component, ComponentKind, Kind, MeasuredValue, Quantity, Reading};

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

/// LOINC code → kind (and, for site-specific temperature codes, the site).
const CODES: &[(&str, Kind, Option<&str>)] = &[
    ("8867-4", Kind::HeartRate, None),
    ("8889-8", Kind::PulseRate, None),
    ("85354-9", Kind::BloodPressure, None),
    ("55284-4", Kind::BloodPressure, None),
    ("8310-5", Kind::BodyTemperature, None),
    ("8331-1", Kind::BodyTemperature, Some("mouth")),
    ("8328-7", Kind::BodyTemperature, Some("armpit")),
    ("8332-9", Kind::BodyTemperature, Some("rectum")),
    ("8333-7", Kind::BodyTemperature, Some("tympanum")),
    ("59408-5", Kind::OxygenSaturation, None),
    ("2708-6", Kind::OxygenSaturation, None),
    ("29463-7", Kind::BodyWeight, None),
    ("3141-9", Kind::BodyWeight, None),
    ("8302-2", Kind::BodyHeight, None),
    ("39156-5", Kind::BodyMassIndex, None),
    ("2339-0", Kind::BloodGlucose, None),
    ("15074-8", Kind::BloodGlucose, None),
    ("41653-7", Kind::BloodGlucose, Some("capillary_whole_blood")),
    ("14743-9", Kind::BloodGlucose, Some("capillary_whole_blood")),
    ("9279-1", Kind::RespiratoryRate, None),
];

const COMPONENT_CODES: &[(&str, ComponentKind)] = &[
    ("8480-6", ComponentKind::Systolic),
    ("8462-4", ComponentKind::Diastolic),
    ("8478-0", ComponentKind::MeanArterial),
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Observation {
    resource_type: String,
    status: Option<String>,
    code: Option<CodeableConcept>,
    value_quantity: Option<FhirQuantity>,
    #[serde(default)]
    component: Vec<ObservationComponent>,
    effective_date_time: Option<String>,
    effective_instant: Option<String>,
    effective_period: Option<Period>,
}

#[derive(Debug, Deserialize)]
struct CodeableConcept {
    #[serde(default)]
    coding: Vec<Coding>,
}

#[derive(Debug, Deserialize)]
struct Coding {
    system: Option<String>,
    code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FhirQuantity {
    value: Option<JsonDecimal>,
    unit: Option<String>,
    system: Option<String>,
    code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObservationComponent {
    code: Option<CodeableConcept>,
    value_quantity: Option<FhirQuantity>,
}

#[derive(Debug, Deserialize)]
struct Period {
    start: Option<String>,
    end: Option<String>,
}

fn loinc_codes(concept: &Option<CodeableConcept>) -> impl Iterator<Item = &str> {
    concept
        .iter()
        .flat_map(|c| c.coding.iter())
        .filter(|c| c.system.as_deref() == Some(LOINC))
        .filter_map(|c| c.code.as_deref())
}

pub fn decode(payload: &[u8], ctx: &PayloadContext) -> Result<Vec<Reading>, PayloadError> {
    let obs: Observation =
        serde_json::from_slice(payload).map_err(|e| PayloadError::Json(e.to_string()))?;
    if obs.resource_type != "Observation" {
        return Err(PayloadError::field("resourceType", "must be Observation"));
    }
    match obs.status.as_deref() {
        Some("final" | "amended" | "corrected") => {}
        Some(_) => {
            return Err(PayloadError::field(
                "status",
                "only final, amended or corrected results are accepted",
            ));
        }
        None => return Err(PayloadError::field("status", "missing")),
    }
    let mut found: Option<(Kind, Option<&str>)> = None;
    for code in loinc_codes(&obs.code) {
        if let Some((_, kind, site)) = CODES.iter().find(|(c, _, _)| *c == code) {
            match found {
                Some((k, _)) if k != *kind => {
                    return Err(PayloadError::field(
                        "code.coding",
                        "LOINC codes name different measurements",
                    ));
                }
                Some((_, Some(_))) => {}
                _ => found = Some((*kind, *site)),
            }
        }
    }
    let Some((kind, site)) = found else {
        return Err(PayloadError::field(
            "code.coding",
            "no LOINC vital-sign code this gateway maps",
        ));
    };
    let mut reading = blank_reading(ctx, kind);
    if kind == Kind::BloodPressure {
        if obs.value_quantity.is_some() {
            return Err(PayloadError::field(
                "valueQuantity",
                "a blood-pressure panel carries its values in components",
            ));
        }
        for (i, comp) in obs.component.iter().enumerate() {
            let at = format!("component[{i}]");
            let Some(ck) = loinc_codes(&comp.code).find_map(|c| {
                COMPONENT_CODES
                    .iter()
                    .find(|(code, _)| *code == c)
                    .map(|(_, k)| *k)
            }) else {
                continue; // other components (e.g. pulse) are not part of the panel reading
            };
            let quantity = quantity(
                kind,
                comp.value_quantity.as_ref(),
                &format!("{at}.valueQuantity"),
            )?;
            if reading.components.iter().any(|c| c.kind == ck) {
                return Err(PayloadError::field(at, "component repeated"));
            }
            reading.components.push(Component { kind: ck, quantity });
        }
        let has = |k| reading.components.iter().any(|c| c.kind == k);
        if !has(ComponentKind::Systolic) || !has(ComponentKind::Diastolic) {
            return Err(PayloadError::field(
                "component",
                "systolic (8480-6) and diastolic (8462-4) are required",
            ));
        }
        reading.components.sort_by_key(|c| c.kind as u8);
    } else {
        reading.value = Some(quantity(
            kind,
            obs.value_quantity.as_ref(),
            "valueQuantity",
        )?);
    }
    let effective = obs
        .effective_date_time
        .as_ref()
        .map(|t| ("effectiveDateTime", t))
        .or(obs
            .effective_instant
            .as_ref()
            .map(|t| ("effectiveInstant", t)))
        .or(obs.effective_period.as_ref().and_then(|p| {
            p.start
                .as_ref()
                .or(p.end.as_ref())
                .map(|t| ("effectivePeriod", t))
        }));
    if let Some((field, text)) = effective {
        set_time(&mut reading, field, text)?;
    }
    if let Some(site) = site {
        let key = if kind == Kind::BodyTemperature {
            "temperature_site"
        } else {
            "glucose_sample"
        };
        reading.qualifiers.insert(key.to_owned(), site.to_owned());
    }
    Ok(vec![reading])
}

fn quantity(kind: Kind, q: Option<&FhirQuantity>, at: &str) -> Result<Quantity, PayloadError> {
    let q = q.ok_or_else(|| PayloadError::field(at, "missing"))?;
    let value = q
        .value
        .ok_or_else(|| PayloadError::field(format!("{at}.value"), "missing"))?;
    // The UCUM code is authoritative; the display `unit` is used only without a UCUM code.
    let unit = match (q.system.as_deref(), q.code.as_deref()) {
        (Some(UCUM), Some(code)) => Some(code),
        (Some(UCUM), None) => {
            return Err(PayloadError::field(
                format!("{at}.code"),
                "UCUM code missing",
            ));
        }
        _ => q.unit.as_deref(),
    };
    let ucum = vocab::ucum_for(kind, unit)
        .map_err(|reason| PayloadError::field(format!("{at}.code"), reason))?;
    Ok(Quantity {
        value: MeasuredValue::Number(value.0),
        ucum,
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
                address: "topic-device".into(),
                system_id: None,
                manufacturer: None,
                model: None,
                serial_number: None,
            },
            received_at: time::macros::datetime!(2026-11-28 10:00:00 UTC),
            clock: ClockContext::default(),
        }
    }

    // Shaped after the HL7 FHIR R4 vital-signs examples (heart-rate.json, blood-pressure.json).
    const HEART_RATE: &str = r#"{"resourceType":"Observation","id":"heart-rate","status":"final",
      "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
      "code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},
      "subject":{"reference":"Patient/someone-else"},"device":{"reference":"Device/other"},
      "effectiveDateTime":"1999-07-02T10:00:00Z",
      "valueQuantity":{"value":44.0,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}}"#;

    const BLOOD_PRESSURE: &str = r#"{"resourceType":"Observation","status":"final",
      "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
      "effectivePeriod":{"start":"2012-09-17T10:00:00+02:00"},
      "component":[
        {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":44,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
        {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":109,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}"#;

    #[test]
    fn heart_rate_keeps_precision_and_drops_subject() {
        let r = decode(HEART_RATE.as_bytes(), &ctx()).expect("hr");
        assert_eq!(r[0].kind, Kind::HeartRate);
        let q = r[0].value.as_ref().expect("value");
        assert_eq!(q.value, MeasuredValue::Number(Decimal::new(440, -1)));
        assert_eq!(q.ucum, "/min");
        assert_eq!(r[0].device.address, "topic-device");
        assert_eq!(r[0].device_time.map(|t| t.year), Some(1999));
    }

    #[test]
    fn blood_pressure_components_are_ordered() {
        let r = decode(BLOOD_PRESSURE.as_bytes(), &ctx()).expect("bp");
        let kinds: Vec<_> = r[0].components.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![ComponentKind::Systolic, ComponentKind::Diastolic]
        );
        assert_eq!(
            r[0].components[0].quantity.value,
            MeasuredValue::Number(Decimal::new(109, 0))
        );
        assert_eq!(r[0].device_time.map(|t| t.hours), Some(8));
    }

    #[test]
    fn refusals() {
        let swap = |from: &str, to: &str| HEART_RATE.replace(from, to);
        let cases = [
            (swap("\"Observation\"", "\"Patient\""), "resourceType"),
            (swap("\"final\"", "\"entered-in-error\""), "status"),
            (swap("8867-4", "1234-5"), "code.coding"),
            (swap("\"/min\"", "\"kg\""), "valueQuantity.code"),
            (swap("\"value\":44.0,", ""), "valueQuantity.value"),
            (swap("1999-07-02T10:00:00Z", "July"), "effectiveDateTime"),
            (BLOOD_PRESSURE.replace("8480-6", "9999-9"), "component"),
        ];
        for (payload, field) in cases {
            match decode(payload.as_bytes(), &ctx()) {
                Err(PayloadError::Field { field: f, .. }) => assert_eq!(f, field, "{payload}"),
                other => panic!("{payload}: {other:?}"),
            }
        }
        assert!(matches!(decode(b"{}", &ctx()), Err(PayloadError::Json(_))));
    }
}
