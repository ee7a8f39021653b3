//! Code tables: LOINC (vital-signs profile codes) and IEEE 11073-10101 (MDC) codes per kind,
//! the UCUM units each R4 vital-signs profile accepts, and the profile URLs.
//! Sources are cited in docs/MAPPING.md (one row per entry below).

use crate::reading::{ComponentKind, Kind, Reading};

pub const LOINC: &str = "http://loinc.org";
pub const MDC: &str = "urn:iso:std:iso:11073:10101";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const DATA_ABSENT_REASON: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
pub const PHD_NUMERIC: &str =
    "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdNumericObservation";
pub const PHD_COMPOUND: &str =
    "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdCompoundNumericObservation";
/// The R4 core extension the PHD IG's PhdBaseObservation uses for the gateway (PHG) Device.
pub const PHD_GATEWAY_EXTENSION: &str =
    "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice";

/// One coding: system-independent (code, display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub code: &'static str,
    pub display: &'static str,
}

const fn c(code: &'static str, display: &'static str) -> Code {
    Code { code, display }
}

/// How one kind is coded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindCodes {
    /// LOINC codes, the vital-signs one first.
    pub loinc: Vec<Code>,
    pub mdc: Code,
    /// R4 vital-signs profile, claimed only when the unit is one it allows.
    pub vital_profile: Option<(&'static str, &'static [&'static str])>,
    pub category: &'static str,
}

/// Codes for a reading's kind; some kinds depend on qualifiers (pulse rate source, glucose
/// sample and unit).
pub fn kind_codes(reading: &Reading) -> KindCodes {
    let vs = "vital-signs";
    let q = |k: &str| reading.qualifiers.get(k).map(String::as_str);
    let unit = reading
        .value
        .as_ref()
        .map(|v| v.ucum.as_str())
        .unwrap_or("");
    match reading.kind {
        Kind::HeartRate => KindCodes {
            loinc: vec![c("8867-4", "Heart rate")],
            mdc: c("147842", "MDC_ECG_HEART_RATE"),
            vital_profile: Some((
                "http://hl7.org/fhir/StructureDefinition/heartrate",
                &["/min"],
            )),
            category: vs,
        },
        Kind::PulseRate => KindCodes {
            loinc: vec![c("8867-4", "Heart rate")],
            mdc: match q("pulse_source") {
                Some("oximeter") => c("149530", "MDC_PULS_OXIM_PULS_RATE"),
                Some("blood_pressure_cuff") => c("149546", "MDC_PULS_RATE_NON_INV"),
                _ => c("149514", "MDC_PULS_RATE"),
            },
            vital_profile: Some((
                "http://hl7.org/fhir/StructureDefinition/heartrate",
                &["/min"],
            )),
            category: vs,
        },
        Kind::BloodPressure => KindCodes {
            loinc: vec![c(
                "85354-9",
                "Blood pressure panel with all children optional",
            )],
            mdc: c("150020", "MDC_PRESS_BLD_NONINV"),
            vital_profile: Some(("http://hl7.org/fhir/StructureDefinition/bp", &["mm[Hg]"])),
            category: vs,
        },
        Kind::BodyTemperature => KindCodes {
            loinc: vec![c("8310-5", "Body temperature")],
            mdc: c("150364", "MDC_TEMP_BODY"),
            vital_profile: Some((
                "http://hl7.org/fhir/StructureDefinition/bodytemp",
                &["Cel", "[degF]"],
            )),
            category: vs,
        },
        Kind::OxygenSaturation => KindCodes {
            loinc: vec![
                c(
                    "59408-5",
                    "Oxygen saturation in Arterial blood by Pulse oximetry",
                ),
                c("2708-6", "Oxygen saturation in Arterial blood"),
            ],
            mdc: c("150456", "MDC_PULS_OXIM_SAT_O2"),
            vital_profile: Some(("http://hl7.org/fhir/StructureDefinition/oxygensat", &["%"])),
            category: vs,
        },
        Kind::BodyWeight => KindCodes {
            loinc: vec![c("29463-7", "Body weight")],
            mdc: c("188736", "MDC_MASS_BODY_ACTUAL"),
            vital_profile: Some((
                "http://hl7.org/fhir/StructureDefinition/bodyweight",
                &["kg", "g", "[lb_av]"],
            )),
            category: vs,
        },
        Kind::BodyHeight => KindCodes {
            loinc: vec![c("8302-2", "Body height")],
            mdc: c("188740", "MDC_LEN_BODY_ACTUAL"),
            vital_profile: Some((
                "http://hl7.org/fhir/StructureDefinition/bodyheight",
                &["cm", "[in_i]"],
            )),
            category: vs,
        },
        Kind::BodyMassIndex => KindCodes {
            loinc: vec![c("39156-5", "Body mass index (BMI) [Ratio]")],
            mdc: c("188752", "MDC_RATIO_MASS_BODY_LEN_SQ"),
            vital_profile: Some(("http://hl7.org/fhir/StructureDefinition/bmi", &["kg/m2"])),
            category: vs,
        },
        Kind::RespiratoryRate => KindCodes {
            loinc: vec![c("9279-1", "Respiratory rate")],
            mdc: c("151562", "MDC_RESP_RATE"),
            vital_profile: Some((
                "http://hl7.org/fhir/StructureDefinition/resprate",
                &["/min"],
            )),
            category: vs,
        },
        Kind::BloodGlucose => glucose_codes(q("glucose_sample"), unit),
    }
}

fn glucose_codes(sample: Option<&str>, unit: &str) -> KindCodes {
    let molar = unit == "mmol/L";
    let loinc = match (sample, molar) {
        (Some("interstitial_fluid"), false) => {
            c("99504-3", "Glucose [Mass/volume] in Interstitial fluid")
        }
        (Some("interstitial_fluid"), true) => {
            c("105272-9", "Glucose [Moles/volume] in Interstitial fluid")
        }
        (Some("capillary_whole_blood" | "capillary_plasma"), false) => c(
            "41653-7",
            "Glucose [Mass/volume] in Capillary blood by Glucometer",
        ),
        (Some("capillary_whole_blood" | "capillary_plasma"), true) => c(
            "14743-9",
            "Glucose [Moles/volume] in Capillary blood by Glucometer",
        ),
        (_, false) => c("2339-0", "Glucose [Mass/volume] in Blood"),
        (_, true) => c("15074-8", "Glucose [Moles/volume] in Blood"),
    };
    let mdc = match sample {
        Some("capillary_whole_blood") => c("160184", "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"),
        Some("capillary_plasma") => c("160188", "MDC_CONC_GLU_CAPILLARY_PLASMA"),
        Some("venous_whole_blood") => c("160192", "MDC_CONC_GLU_VENOUS_WHOLEBLOOD"),
        Some("venous_plasma") => c("160196", "MDC_CONC_GLU_VENOUS_PLASMA"),
        Some("arterial_whole_blood") => c("160200", "MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD"),
        Some("arterial_plasma") => c("160204", "MDC_CONC_GLU_ARTERIAL_PLASMA"),
        Some("interstitial_fluid") => c("160212", "MDC_CONC_GLU_ISF"),
        Some("control_solution") => c("160208", "MDC_CONC_GLU_CONTROL"),
        Some("undetermined_whole_blood") => c("160364", "MDC_CONC_GLU_UNDETERMINED_WHOLEBLOOD"),
        Some("undetermined_plasma") => c("160368", "MDC_CONC_GLU_UNDETERMINED_PLASMA"),
        _ => c("160184", "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"),
    };
    KindCodes {
        loinc: vec![loinc],
        mdc,
        vital_profile: None,
        category: "laboratory",
    }
}

/// Codes of a blood-pressure panel component: (LOINC, MDC).
pub fn component_codes(kind: ComponentKind) -> (Code, Code) {
    match kind {
        ComponentKind::Systolic => (
            c("8480-6", "Systolic blood pressure"),
            c("150021", "MDC_PRESS_BLD_NONINV_SYS"),
        ),
        ComponentKind::Diastolic => (
            c("8462-4", "Diastolic blood pressure"),
            c("150022", "MDC_PRESS_BLD_NONINV_DIA"),
        ),
        ComponentKind::MeanArterial => (
            c("8478-0", "Mean blood pressure"),
            c("150023", "MDC_PRESS_BLD_NONINV_MEAN"),
        ),
    }
}

/// Human display of a UCUM code (the `unit` element).
pub fn ucum_display(code: &str) -> &str {
    match code {
        "mm[Hg]" => "mmHg",
        "Cel" => "C",
        "[degF]" => "F",
        "[lb_av]" => "lb",
        "[in_i]" => "in",
        other => other,
    }
}
