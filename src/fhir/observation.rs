//! `Reading` → Observation (+ its Devices) as an [`UploadUnit`].
//!
//! * code: LOINC first, then the IEEE 11073 MDC code (PHD IG wants both).
//! * value: UCUM `valueQuantity` with the device's precision; special values (NaN, NRes,
//!   ±INF) become `dataAbsentReason`, never a number.
//! * profiles: the PHD profile always; the R4 vital-signs profile only when the Observation
//!   meets it (a subject and a unit the profile allows).
//! * device status bits the PHD IG codes become a separate `PhdBitsEnumerationObservation`
//!   ([`super::status`]); other flags, the raw device time, the time source and the record
//!   sequence are extra `component`s with a text code (docs/MAPPING.md, "Device status bits").

use super::codes::{self, DATA_ABSENT_REASON, LOINC, MDC, UCUM};
use super::device::{gateway_device, measuring_device};
use super::identity::{self, DEFAULT_OBSERVATION_SYSTEM};
use super::model::{
    self, CodeableConcept, Coding, ExactDecimal, Extension, Identifier, Meta, Observation,
    ObservationComponent, Reference,
};
use super::status::{self, ASN1_TO_HL7, BitsMeasurement, PHD_BITS_PROFILE, SetBit, YES_NO};
use super::time::{effective_time, fhir_instant, raw_device_time};
use super::{MapContext, MapError, StatusObservation, UploadUnit, UploadUnitData};
use crate::reading::{Decimal, Kind, MeasuredValue, Quantity, Reading, StatusFlag};

/// "Patient/123", an absolute http(s) URL, or "urn:uuid:…".
pub fn is_valid_reference(r: &str) -> bool {
    if r.starts_with("urn:uuid:") || r.starts_with("https://") || r.starts_with("http://") {
        return r.len() > 9 && !r.contains(char::is_whitespace);
    }
    let Some((ty, id)) = r.split_once('/') else {
        return false;
    };
    !ty.is_empty()
        && ty.chars().all(|c| c.is_ascii_alphabetic())
        && ty.starts_with(|c: char| c.is_ascii_uppercase())
        && (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn kind_name(kind: Kind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// The UCUM unit actually sent: metres become centimetres for body height (the vital-signs
/// profile accepts cm and [in_i] only), by moving the exponent, so nothing is rounded.
fn normalised(kind: Kind, q: &Quantity) -> (MeasuredValue, String) {
    if kind == Kind::BodyHeight && q.ucum == "m" {
        let value = match q.value {
            MeasuredValue::Number(d) => match d.exponent.checked_add(2) {
                Some(e) => MeasuredValue::Number(Decimal::new(d.mantissa, e)),
                None => MeasuredValue::PositiveInfinity,
            },
            special => special,
        };
        return (value, "cm".into());
    }
    (q.value, q.ucum.clone())
}

fn absent_reason(value: MeasuredValue) -> Option<CodeableConcept> {
    let (code, display) = match value {
        MeasuredValue::Number(_) => return None,
        MeasuredValue::NotANumber => ("NaN", "Not a Number (NaN)"),
        MeasuredValue::NotAtThisResolution => ("error", "Error"),
        MeasuredValue::PositiveInfinity => ("PINF", "Positive Infinity (PINF)"),
        MeasuredValue::NegativeInfinity => ("NINF", "Negative Infinity (NINF)"),
    };
    Some(CodeableConcept {
        coding: vec![Coding::new(DATA_ABSENT_REASON, code, display)],
        text: None,
    })
}

fn fhir_quantity(value: MeasuredValue, ucum: &str) -> Option<model::Quantity> {
    match value {
        MeasuredValue::Number(d) => Some(model::Quantity {
            value: ExactDecimal(d),
            unit: codes::ucum_display(ucum).into(),
            system: UCUM.into(),
            code: ucum.into(),
        }),
        _ => None,
    }
}

fn value_text(value: MeasuredValue) -> String {
    match value {
        MeasuredValue::Number(d) => d.to_string(),
        MeasuredValue::NotANumber => "NaN".into(),
        MeasuredValue::NotAtThisResolution => "NRes".into(),
        MeasuredValue::PositiveInfinity => "PINF".into(),
        MeasuredValue::NegativeInfinity => "NINF".into(),
    }
}

fn status_text(flag: StatusFlag) -> String {
    match flag {
        StatusFlag::Other(code) => format!("device-status-{code:#06x}"),
        named => serde_json::to_value(named)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', "-")))
            .unwrap_or_else(|| format!("{named:?}")),
    }
}

fn text_component(text: &str) -> ObservationComponent {
    ObservationComponent {
        code: CodeableConcept {
            coding: Vec::new(),
            text: Some(text.into()),
        },
        value_quantity: None,
        value_boolean: None,
        value_string: None,
        value_codeable_concept: None,
        data_absent_reason: None,
    }
}

pub fn map_reading(reading: &Reading, ctx: &MapContext) -> Result<UploadUnit, MapError> {
    if let Some(p) = &ctx.patient
        && !is_valid_reference(p)
    {
        return Err(MapError::InvalidPatientReference(p.clone()));
    }
    let kind_codes = codes::kind_codes(reading);
    let (device, device_key) = measuring_device(&reading.device);
    let (gateway, gateway_key) = gateway_device(&ctx.gateway);

    // Value or components, and the units they use.
    let mut value_quantity = None;
    let mut data_absent_reason = None;
    let mut components = Vec::new();
    let mut units = Vec::new();
    let mut value_key = Vec::new();
    if reading.kind == Kind::BloodPressure {
        let has = |k| reading.components.iter().any(|c| c.kind == k);
        if !has(crate::reading::ComponentKind::Systolic)
            || !has(crate::reading::ComponentKind::Diastolic)
        {
            return Err(MapError::MissingComponents);
        }
        for c in &reading.components {
            let (loinc, mdc) = codes::component_codes(c.kind);
            let (value, ucum) = normalised(reading.kind, &c.quantity);
            check_unit(reading.kind, &ucum)?;
            units.push(ucum.clone());
            value_key.push(value_text(value));
            components.push(ObservationComponent {
                code: CodeableConcept {
                    coding: vec![
                        Coding::new(LOINC, loinc.code, loinc.display),
                        Coding::new(MDC, mdc.code, mdc.display),
                    ],
                    text: None,
                },
                value_quantity: fhir_quantity(value, &ucum),
                value_boolean: None,
                value_string: None,
                value_codeable_concept: None,
                data_absent_reason: absent_reason(value),
            });
        }
    } else {
        let q = reading
            .value
            .as_ref()
            .ok_or_else(|| MapError::MissingValue {
                kind: kind_name(reading.kind),
            })?;
        let (value, ucum) = normalised(reading.kind, q);
        check_unit(reading.kind, &ucum)?;
        units.push(ucum.clone());
        value_key.push(value_text(value));
        value_quantity = fhir_quantity(value, &ucum);
        data_absent_reason = absent_reason(value);
    }

    // Time.
    let (effective, source) = effective_time(reading);
    let effective_text = fhir_instant(effective).map_err(|_| MapError::InvalidTime)?;
    // A record sequence number identifies a stored record only where it is unique per device
    // (glucose meters). A CGM "sequence" is the time offset within a session and restarts with
    // every session, so without a device time it would merge readings from different sessions:
    // those fall back to the receive time (a re-read may then duplicate, never lose, a reading).
    let sequence_is_unique =
        reading.qualifiers.get("glucose_source").map(String::as_str) != Some("cgm");
    let time_key = match (&reading.device_time, reading.sequence) {
        (Some(t), _) if t.year != 0 => raw_device_time(t),
        (_, Some(seq)) if sequence_is_unique => format!("seq{seq}"),
        _ => effective_text.clone(),
    };

    // Identifier (PHD IG: device, patient, type, value, unit, raw device time).
    let identifier_text = format!(
        "{}-{}-{}-{}-{}-{}",
        identity::device_key(&reading.device),
        ctx.patient.as_deref().unwrap_or("no-patient"),
        kind_codes.mdc.code,
        value_key.join("/"),
        units.first().map(String::as_str).unwrap_or(""),
        time_key
    );
    let identifier_system = ctx
        .identifier_system
        .clone()
        .unwrap_or_else(|| DEFAULT_OBSERVATION_SYSTEM.into());
    let identifier = Identifier {
        system: identifier_system.clone(),
        value: identity::bounded_identifier_value(&identifier_text),
    };
    let id = identity::resource_id(&identifier);

    // Qualifying components: status flags, time provenance, raw device time, sequence.
    // Status bits the PHD IG codes go to a separate bits Observation (below); the rest stay
    // text-coded components here.
    let split = status::split_status(reading);
    for flag in &split.unmapped {
        let mut c = text_component(&status_text(*flag));
        c.value_boolean = Some(true);
        components.push(c);
    }
    if let Some(text) = source.flag_text() {
        let mut c = text_component("effective-time-source");
        c.value_string = Some(text.into());
        components.push(c);
    }
    if !reading.clock.gateway_clock_synchronized {
        let mut c = text_component("gateway-clock-unsynchronized");
        c.value_boolean = Some(true);
        components.push(c);
    }
    if let Some(t) = &reading.device_time {
        let mut c = text_component("device-timestamp");
        c.value_string = Some(raw_device_time(t));
        components.push(c);
    }
    if let Some(seq) = reading.sequence {
        let mut c = text_component("device-record-sequence");
        c.value_string = Some(seq.to_string());
        components.push(c);
    }

    let render = |v: &dyn erased::Render| v.render().map_err(|e| MapError::Render(e.to_string()));

    // Profiles.
    let mut profile = Vec::new();
    if let Some((url, allowed)) = kind_codes.vital_profile
        && ctx.patient.is_some()
        && units.iter().all(|u| allowed.contains(&u.as_str()))
    {
        profile.push(url.to_owned());
    }
    profile.push(
        if reading.kind == Kind::BloodPressure {
            codes::PHD_COMPOUND
        } else {
            codes::PHD_NUMERIC
        }
        .to_owned(),
    );

    let mut code_coding: Vec<Coding> = kind_codes
        .loinc
        .iter()
        .map(|c| Coding::new(LOINC, c.code, c.display))
        .collect();
    code_coding.push(Coding::new(
        MDC,
        kind_codes.mdc.code,
        kind_codes.mdc.display,
    ));

    let body_site = reading
        .qualifiers
        .get("temperature_site")
        .map(|site| CodeableConcept {
            coding: Vec::new(),
            text: Some(site.replace('_', " ")),
        });

    let observation = Observation {
        resource_type: "Observation",
        meta: Meta { profile },
        extension: vec![Extension {
            url: codes::PHD_GATEWAY_EXTENSION.into(),
            value_reference: Reference {
                reference: identity::device_full_url(&gateway_key),
            },
        }],
        identifier: vec![identifier.clone()],
        status: "final",
        category: vec![CodeableConcept {
            coding: vec![Coding::new(
                codes::OBSERVATION_CATEGORY,
                kind_codes.category,
                if kind_codes.category == "vital-signs" {
                    "Vital Signs"
                } else {
                    "Laboratory"
                },
            )],
            text: None,
        }],
        code: CodeableConcept {
            coding: code_coding,
            text: None,
        },
        subject: ctx.patient.as_ref().map(|p| Reference {
            reference: p.clone(),
        }),
        effective_date_time: effective_text,
        value_quantity,
        data_absent_reason,
        body_site,
        device: Reference {
            reference: identity::device_full_url(&device_key),
        },
        derived_from: Vec::new(),
        component: components,
    };

    let status = match &split.bits {
        Some((measurement, bits)) => {
            let status_identifier = Identifier {
                system: identifier_system,
                value: identity::bounded_identifier_value(&format!(
                    "{identifier_text}-{}",
                    measurement.mdc
                )),
            };
            let status_id = identity::resource_id(&status_identifier);
            let obs = status_observation(
                &observation,
                measurement,
                bits,
                status_identifier.clone(),
                identity::observation_full_url(&id),
            );
            Some(StatusObservation {
                observation: render(&obs)?,
                identifier: status_identifier,
                id: status_id,
            })
        }
        None => None,
    };

    let data = UploadUnitData {
        observation: render(&observation)?,
        device: render(&device)?,
        gateway: render(&gateway)?,
        identifier,
        id,
        device_identifier: device_key,
        gateway_identifier: gateway_key,
        status,
        source_record: reading.sequence.map(|sequence| super::SourceRecord {
            device: reading.device.address.clone(),
            sequence,
        }),
    };
    UploadUnit::try_from(data).map_err(MapError::Render)
}

/// The PHD IG `PhdBitsEnumerationObservation` for the set status bits of `measured`: same
/// subject, time, devices and gateway; `derivedFrom` = the measurement (by its bundle fullUrl).
fn status_observation(
    measured: &Observation,
    measurement: &BitsMeasurement,
    bits: &[SetBit],
    identifier: Identifier,
    measured_full_url: String,
) -> Observation {
    let component = bits
        .iter()
        .map(|bit| ObservationComponent {
            code: CodeableConcept {
                coding: vec![Coding::new(ASN1_TO_HL7, &bit.code, bit.name)],
                text: None,
            },
            value_quantity: None,
            value_boolean: None,
            value_string: None,
            value_codeable_concept: Some(CodeableConcept {
                coding: vec![Coding::new(YES_NO, "Y", "Yes")],
                text: None,
            }),
            data_absent_reason: None,
        })
        .collect();
    Observation {
        resource_type: "Observation",
        meta: Meta {
            profile: vec![PHD_BITS_PROFILE.into()],
        },
        extension: measured.extension.clone(),
        identifier: vec![identifier],
        status: "final",
        category: Vec::new(),
        code: CodeableConcept {
            coding: vec![Coding::new(MDC, measurement.mdc, measurement.reference_id)],
            text: None,
        },
        subject: measured.subject.clone(),
        effective_date_time: measured.effective_date_time.clone(),
        value_quantity: None,
        data_absent_reason: None,
        body_site: None,
        device: measured.device.clone(),
        derived_from: vec![Reference {
            reference: measured_full_url,
        }],
        component,
    }
}

fn check_unit(kind: Kind, ucum: &str) -> Result<(), MapError> {
    let ok = match kind {
        Kind::HeartRate | Kind::PulseRate | Kind::RespiratoryRate => ucum == "/min",
        Kind::BloodPressure => matches!(ucum, "mm[Hg]" | "kPa"),
        Kind::BodyTemperature => matches!(ucum, "Cel" | "[degF]"),
        Kind::OxygenSaturation => ucum == "%",
        Kind::BodyWeight => matches!(ucum, "kg" | "g" | "[lb_av]"),
        Kind::BodyHeight => matches!(ucum, "cm" | "[in_i]"),
        Kind::BodyMassIndex => ucum == "kg/m2",
        Kind::BloodGlucose => matches!(ucum, "mg/dL" | "mmol/L"),
    };
    if ok {
        Ok(())
    } else {
        Err(MapError::UnsupportedUnit {
            kind: kind_name(kind),
            ucum: ucum.into(),
        })
    }
}

mod erased {
    /// Compact JSON text of a serialisable resource.
    pub trait Render {
        fn render(&self) -> Result<String, serde_json::Error>;
    }
    impl<T: serde::Serialize> Render for T {
        fn render(&self) -> Result<String, serde_json::Error> {
            serde_json::to_string(self)
        }
    }
}
