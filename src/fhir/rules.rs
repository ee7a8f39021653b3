//! The project's own checks of an Observation against the R4 vital-signs profile rules this
//! gateway relies on (independent of how the mapper built it): LOINC code, UCUM code and
//! system, category, subject, effective time, value or dataAbsentReason, BP components.
//! Used by the tests next to the external validators (FHIR JSON schema, FHIR.js).

use serde_json::Value;

use super::codes::{DATA_ABSENT_REASON, LOINC, MDC, OBSERVATION_CATEGORY, UCUM};

fn codings(concept: &Value) -> impl Iterator<Item = (&str, &str)> {
    concept["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["system"].as_str()?, c["code"].as_str()?)))
}

fn check_quantity_or_absent(v: &Value, at: &str, problems: &mut Vec<String>) {
    match (&v["valueQuantity"], &v["dataAbsentReason"]) {
        (Value::Object(q), Value::Null) => {
            if q.get("system").and_then(Value::as_str) != Some(UCUM) {
                problems.push(format!("{at}valueQuantity.system is not UCUM"));
            }
            if q.get("code")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                problems.push(format!("{at}valueQuantity.code missing"));
            }
            if !q.get("value").is_some_and(Value::is_number) {
                problems.push(format!("{at}valueQuantity.value is not a number"));
            }
        }
        (Value::Null, reason @ Value::Object(_)) => {
            if !codings(reason).any(|(s, _)| s == DATA_ABSENT_REASON) {
                problems.push(format!(
                    "{at}dataAbsentReason not from the data-absent-reason system"
                ));
            }
        }
        (Value::Null, Value::Null) => {
            problems.push(format!(
                "{at}neither a value nor a dataAbsentReason (vs-2/vs-3)"
            ));
        }
        _ => problems.push(format!("{at}both a value and a dataAbsentReason")),
    }
}

/// Problems found, empty when the Observation passes. `expect_loinc` is the vital-signs code.
pub fn check_observation(obs: &Value, expect_loinc: &str, expect_subject: bool) -> Vec<String> {
    let mut p = Vec::new();
    if obs["resourceType"] != "Observation" {
        p.push("resourceType is not Observation".into());
    }
    if obs["status"] != "final" {
        p.push("status is not final".into());
    }
    let vital =
        obs["category"].as_array().into_iter().flatten().any(|c| {
            codings(c).any(|(s, code)| s == OBSERVATION_CATEGORY && code == "vital-signs")
        });
    let lab = obs["category"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| codings(c).any(|(s, code)| s == OBSERVATION_CATEGORY && code == "laboratory"));
    if !vital && !lab {
        p.push("category has neither vital-signs nor laboratory".into());
    }
    if !codings(&obs["code"]).any(|(s, c)| s == LOINC && c == expect_loinc) {
        p.push(format!("code lacks LOINC {expect_loinc}"));
    }
    if !codings(&obs["code"]).any(|(s, _)| s == MDC) {
        p.push("code lacks an IEEE 11073 MDC coding".into());
    }
    match (&obs["subject"]["reference"], expect_subject) {
        (Value::String(_), true) | (Value::Null, false) => {}
        (Value::Null, true) => p.push("subject missing".into()),
        _ => p.push("unexpected subject".into()),
    }
    let profiles: Vec<&str> = obs["meta"]["profile"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let claims_vital = profiles
        .iter()
        .any(|u| u.starts_with("http://hl7.org/fhir/StructureDefinition/"));
    if claims_vital && obs["subject"].is_null() {
        p.push("claims a vital-signs profile without a subject".into());
    }
    match obs["effectiveDateTime"].as_str() {
        Some(t) if t.len() >= 20 && !t.starts_with("0000") => {}
        _ => p.push("effectiveDateTime missing, partial or year 0000".into()),
    }
    if obs["device"]["reference"].as_str().is_none() {
        p.push("device reference missing".into());
    }
    if loinc_is_bp(expect_loinc) {
        if !obs["valueQuantity"].is_null() {
            p.push("BP panel has a valueQuantity".into());
        }
        for (code, name) in [("8480-6", "systolic"), ("8462-4", "diastolic")] {
            let found = obs["component"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| codings(&c["code"]).any(|(s, c)| s == LOINC && c == code));
            match found {
                Some(c) => {
                    check_quantity_or_absent(c, &format!("{name} component: "), &mut p);
                    if claims_vital && c["valueQuantity"]["code"] != "mm[Hg]" {
                        p.push(format!(
                            "{name} component not in mm[Hg] under the bp profile"
                        ));
                    }
                }
                None => p.push(format!("{name} component ({code}) missing")),
            }
        }
    } else {
        check_quantity_or_absent(obs, "", &mut p);
    }
    p
}

fn loinc_is_bp(code: &str) -> bool {
    code == "85354-9"
}

/// Problems of a PHD IG status-bits Observation (`PhdBitsEnumerationObservation`) that goes
/// with `measured`: MDC code, no value, every component an ASN1ToHL7 `{code}.{bit}` code with
/// the v2-0136 value `Y`, and the same subject, time and device as the measurement.
pub fn check_bits_observation(bits: &Value, measured: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let code = codings(&bits["code"])
        .find(|(s, _)| *s == MDC)
        .map(|(_, c)| c.to_owned());
    let Some(code) = code else {
        return vec!["code lacks an IEEE 11073 MDC coding".into()];
    };
    if !bits["valueQuantity"].is_null() || !bits["valueCodeableConcept"].is_null() {
        p.push("a bits Observation has no value[x] (its bits are components)".into());
    }
    let components = bits["component"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if components.is_empty() {
        p.push("no set bit".into());
    }
    for c in components {
        let bit_ok = codings(&c["code"]).any(|(s, v)| {
            s == super::status::ASN1_TO_HL7
                && v.strip_prefix(code.as_str())
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|b| !b.is_empty() && b.chars().all(|d| d.is_ascii_digit()))
        });
        if !bit_ok {
            p.push(format!(
                "component code is not ASN1ToHL7 {code}.<bit>: {}",
                c["code"]
            ));
        }
        if !codings(&c["valueCodeableConcept"]).any(|(s, v)| s == super::status::YES_NO && v == "Y")
        {
            p.push("component value is not v2-0136 Y".into());
        }
    }
    for field in ["subject", "effectiveDateTime", "device"] {
        if bits[field] != measured[field] {
            p.push(format!("{field} differs from the measurement"));
        }
    }
    if bits["derivedFrom"][0]["reference"].as_str().is_none() {
        p.push("derivedFrom (the measurement) missing".into());
    }
    p
}
