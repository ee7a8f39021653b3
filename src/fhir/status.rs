//! Device status bits as the HL7 PHD IG carries them: a separate `PhdBitsEnumerationObservation`
//! whose `code` is the MDC code of the bits measurement (e.g. 8410608
//! MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS), with one `component` per set bit coded in the
//! ASN1ToHL7 code system (`{MDC code}.{MDER bit}`, MDER bit 0 = the first named bit) and
//! `valueCodeableConcept` = v2-0136 `Y`; `derivedFrom` points at the measurement the bits
//! describe. Codes and sources: docs/MAPPING.md, "Device status bits".
//!
//! Only bits the IG's ASN1ToHL7 tables name are mapped this way; the rest stay text-coded
//! components of the measurement Observation (see observation.rs).

use crate::reading::{Kind, Reading, StatusFlag};

/// ASN1ToHL7 code system (PHD IG STU 2 publishes it under terminology.hl7.org).
pub const ASN1_TO_HL7: &str = "http://terminology.hl7.org/CodeSystem/ASN1ToHL7";
/// HL7 v2 table 0136 (Yes/No indicator), the value of a set bit.
pub const YES_NO: &str = "http://terminology.hl7.org/CodeSystem/v2-0136";
pub const PHD_BITS_PROFILE: &str =
    "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBitsEnumerationObservation";

/// One bits measurement: its MDC code and reference id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitsMeasurement {
    pub mdc: &'static str,
    pub reference_id: &'static str,
    /// ASN1 name of each MDER bit (index = bit; "" = not defined by the IG).
    names: &'static [&'static str],
}

const BP: BitsMeasurement = BitsMeasurement {
    mdc: "8410608",
    reference_id: "MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS",
    names: &[
        "body-movement",
        "cuff-too-loose",
        "irregular-pulse",
        "pulse-over-range-limit",
        "pulse-under-range-limit",
        "improper-body-position",
    ],
};

const PULSE_OXIMETER: BitsMeasurement = BitsMeasurement {
    mdc: "150604",
    reference_id: "MDC_PULS_OXIM_DEV_STATUS",
    names: &[
        "sensor-disconnected",
        "sensor-malfunction",
        "sensor-displaced",
        "sensor-unsupported",
        "sensor-off",
        "sensor-interference",
        "signal-searching",
        "signal-pulse-questionable",
        "signal-non-pulsatile",
        "signal-erratic",
        "signal-low-perfusion",
        "signal-poor",
        "signal-inadequate",
        "signal-processing-irregularity",
        "device-equipment-malfunction",
        "device-extended-update",
    ],
};

const GLUCOSE_METER: BitsMeasurement = BitsMeasurement {
    mdc: "8417752",
    reference_id: "MDC_GLU_METER_DEV_STATUS",
    names: &[
        "device-battery-low",
        "sensor-malfunction",
        "sensor-sample-size-insufficient",
        "sensor-strip-insertion",
        "sensor-strip-type-incorrect",
        "sensor-result-too-high",
        "sensor-result-too-low",
        "sensor-temp-too-high",
        "sensor-temp-too-low",
        "sensor-read-interrupt",
        "device-gen-fault",
    ],
};

const CGM: BitsMeasurement = BitsMeasurement {
    mdc: "8418060",
    reference_id: "MDC_CGM_DEV_STAT",
    names: &[
        "sensor-session-stopped",
        "",
        "sensor-type-incorrect",
        "sensor-malfunction",
        "device-specific-alert",
        "",
        "",
        "sensor-calibration-not-allowed",
        "sensor-calibration-recommended",
        "sensor-calibration-required",
        "sensor-temp-too-high",
        "sensor-temp-too-low",
        "sensor-result-below-patient-low",
        "sensor-result-above-patient-high",
        "sensor-low-hypo",
        "sensor-high-hyper",
        "sensor-rate-decrease-exceeded",
        "sensor-rate-increase-exceeded",
        "sensor-result-too-low",
        "sensor-result-too-high",
    ],
};

/// One set bit: `code` = "{MDC}.{MDER bit}", `name` = its ASN1 name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetBit {
    pub code: String,
    pub name: &'static str,
}

/// The reading's status flags split into the bits measurement they belong to (with the set
/// bits, in MDER bit order) and the flags the IG has no ASN1 code for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitStatus {
    pub bits: Option<(BitsMeasurement, Vec<SetBit>)>,
    pub unmapped: Vec<StatusFlag>,
}

/// Which device the reading's status bits came from, from its kind and qualifiers.
fn measurement_of(reading: &Reading) -> Option<BitsMeasurement> {
    let q = |k: &str| reading.qualifiers.get(k).map(String::as_str);
    match reading.kind {
        Kind::BloodPressure => Some(BP),
        Kind::PulseRate if q("pulse_source") == Some("blood_pressure_cuff") => Some(BP),
        Kind::PulseRate if q("pulse_source") == Some("oximeter") => Some(PULSE_OXIMETER),
        Kind::OxygenSaturation => Some(PULSE_OXIMETER),
        Kind::BloodGlucose if q("glucose_source") == Some("cgm") => Some(CGM),
        Kind::BloodGlucose => Some(GLUCOSE_METER),
        _ => None,
    }
}

/// MDER bit of `flag` within `m`, when the IG defines one.
///
/// GATT bit → MDER bit: BP Measurement Status b0–b5 → 0–5 (b3–b4 are the pulse-rate range
/// field); PLX Device and Sensor Status bit n → 15 − n (the IG lists the same 16 conditions in
/// reverse order); Glucose Sensor Status Annunciation b0–b10 → 0–10 (b11 time fault has no
/// code); CGM annunciation: status octet b0, b2–b4 → same; cal/temp b9–b13 → 7–11; warning
/// b16–b23 → 12–19 (CGM b1 battery low, b5 device fault, b8 time sync have no code).
fn mder_bit(m: BitsMeasurement, flag: StatusFlag) -> Option<u16> {
    use StatusFlag as F;
    let bit = match (m.mdc, flag) {
        ("8410608", F::BodyMovement) => 0,
        ("8410608", F::CuffTooLoose) => 1,
        ("8410608", F::IrregularPulse) => 2,
        ("8410608", F::PulseRateAboveRange) => 3,
        ("8410608", F::PulseRateBelowRange) => 4,
        ("8410608", F::ImproperMeasurementPosition) => 5,
        ("150604", F::SensorMalfunction) => 1,
        ("150604", F::ImproperMeasurementPosition) => 2,
        ("150604", F::SensorContactNotDetected) => 4,
        ("150604", F::LowPerfusion) => 10,
        ("150604", F::Other(c)) if (0x0200..0x0210).contains(&c) => 15 - (c - 0x0200),
        ("8417752", F::SensorMalfunction) => 1,
        ("8417752", F::Other(c)) if (0x0300..=0x030a).contains(&c) => c - 0x0300,
        ("8418060", F::SensorMalfunction) => 3,
        ("8418060", F::Other(c)) => match c.checked_sub(0x0400)? {
            b @ (0 | 2..=4) => b,
            b @ 9..=13 => b - 2,
            b @ 16..=23 => b - 4,
            _ => return None,
        },
        _ => return None,
    };
    Some(bit)
}

pub fn split_status(reading: &Reading) -> SplitStatus {
    let Some(m) = measurement_of(reading) else {
        return SplitStatus {
            bits: None,
            unmapped: reading.status.clone(),
        };
    };
    let mut set: Vec<u16> = Vec::new();
    let mut unmapped = Vec::new();
    for flag in &reading.status {
        match mder_bit(m, *flag).filter(|b| {
            m.names
                .get(usize::from(*b))
                .is_some_and(|name| !name.is_empty())
        }) {
            Some(bit) => set.push(bit),
            None => unmapped.push(*flag),
        }
    }
    set.sort_unstable();
    set.dedup();
    let bits: Vec<SetBit> = set
        .into_iter()
        .filter_map(|b| {
            Some(SetBit {
                code: format!("{}.{b}", m.mdc),
                name: m.names.get(usize::from(b))?,
            })
        })
        .collect();
    SplitStatus {
        bits: (!bits.is_empty()).then_some((m, bits)),
        unmapped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::examples::example_readings;

    fn reading(kind_name: &str) -> Reading {
        example_readings()
            .into_iter()
            .find(|(n, _)| *n == kind_name)
            .map(|(_, r)| r)
            .expect("example exists")
    }

    #[test]
    fn bp_flags_become_ieee_bits_in_mder_order() {
        let mut r = reading("blood_pressure");
        r.status = vec![
            StatusFlag::ImproperMeasurementPosition,
            StatusFlag::BodyMovement,
            StatusFlag::PulseRateBelowRange,
        ];
        let split = split_status(&r);
        let (m, bits) = split.bits.expect("bits");
        assert_eq!(m.mdc, "8410608");
        let codes: Vec<_> = bits.iter().map(|b| (b.code.as_str(), b.name)).collect();
        assert_eq!(
            codes,
            [
                ("8410608.0", "body-movement"),
                ("8410608.4", "pulse-under-range-limit"),
                ("8410608.5", "improper-body-position")
            ]
        );
        assert!(split.unmapped.is_empty());
    }

    #[test]
    fn plx_bits_are_reversed_and_unknown_flags_stay_unmapped() {
        let mut r = reading("oxygen_saturation");
        r.status = vec![
            StatusFlag::Other(0x0200), // GATT b0 extended display update
            StatusFlag::Other(0x020f), // GATT b15 sensor disconnected
            StatusFlag::LowPerfusion,  // GATT b5
            StatusFlag::QuestionableMeasurement,
        ];
        let split = split_status(&r);
        let (_, bits) = split.bits.expect("bits");
        let codes: Vec<_> = bits.iter().map(|b| b.code.as_str()).collect();
        assert_eq!(codes, ["150604.0", "150604.10", "150604.15"]);
        assert_eq!(split.unmapped, vec![StatusFlag::QuestionableMeasurement]);
    }

    #[test]
    fn cgm_and_glucose_bits_follow_the_ig_tables() {
        let mut r = reading("cgm_glucose");
        r.status = vec![
            StatusFlag::Other(0x0401), // battery low: no ASN1 code
            StatusFlag::SensorMalfunction,
            StatusFlag::Other(0x040b), // calibration required
            StatusFlag::Other(0x0417), // result higher than the device can process
        ];
        let split = split_status(&r);
        let (m, bits) = split.bits.expect("bits");
        assert_eq!(m.mdc, "8418060");
        let codes: Vec<_> = bits.iter().map(|b| b.code.as_str()).collect();
        assert_eq!(codes, ["8418060.3", "8418060.9", "8418060.19"]);
        assert_eq!(split.unmapped, vec![StatusFlag::Other(0x0401)]);

        let mut g = reading("blood_glucose_mass");
        g.status = vec![StatusFlag::Other(0x0303), StatusFlag::Other(0x030b)];
        let split = split_status(&g);
        let (_, bits) = split.bits.expect("bits");
        assert_eq!(bits[0].name, "sensor-strip-insertion");
        assert_eq!(split.unmapped, vec![StatusFlag::Other(0x030b)]);
    }

    #[test]
    fn heart_rate_contact_has_no_bits_measurement() {
        let mut r = reading("heart_rate");
        r.status = vec![StatusFlag::SensorContactNotDetected];
        let split = split_status(&r);
        assert!(split.bits.is_none());
        assert_eq!(split.unmapped, r.status);
    }
}
