//! Example readings of every kind (and every special value), used by the snapshot tests, the
//! FHIR validator test and the docs. Decoded from real byte layouts where a profile exists,
//! so they exercise the same path as a device.

use std::collections::BTreeMap;

use time::macros::datetime;

use super::{GatewayIdentity, MapContext};
use crate::decode::gatt::{self, DecodeContext, FeatureContext, uuids};
use crate::reading::{
    ClockContext, Decimal, DeviceIdentity, Kind, MeasuredValue, Quantity, Reading, SourceKind,
};

pub fn example_device() -> DeviceIdentity {
    DeviceIdentity {
        source: SourceKind::Ble,
        address: "C4:7C:8D:6A:12:34".into(),
        system_id: Some([0xE8, 0x60, 0x0A, 0xFF, 0xFE, 0x79, 0x3E, 0x98]),
        manufacturer: Some("Example Medical".into()),
        model: Some("BP-100".into()),
        serial_number: Some("SN-0001".into()),
    }
}

pub fn example_map_context(patient: bool) -> MapContext {
    MapContext::new(
        patient.then(|| "Patient/123".to_owned()),
        GatewayIdentity {
            id: "hub-0001".into(),
            serial: Some("PI-0001".into()),
            name: "VectorCare hub".into(),
        },
    )
}

fn decode_ctx() -> DecodeContext {
    DecodeContext {
        device: example_device(),
        received_at: datetime!(2026-01-02 10:00:00 UTC),
        clock: ClockContext {
            // The device clock runs 90 s ahead of the gateway clock.
            device_offset_seconds: Some(90),
            gateway_clock_synchronized: true,
        },
        features: FeatureContext {
            weight_scale: gatt::weight::decode_feature(&[(3 << 3) | (1 << 7), 0, 0, 0]).ok(),
            cgm_e2e_crc: false,
            cgm_session_start: Some(crate::reading::DeviceTime {
                year: 2026,
                month: 1,
                day: 2,
                hours: 6,
                minutes: 0,
                seconds: 0,
            }),
        },
    }
}

fn decoded(uuid: u16, bytes: &[u8]) -> Vec<Reading> {
    gatt::readings_from_characteristic(uuid, bytes, &decode_ctx())
        .expect("invariant: example bytes are valid")
}

fn plain(kind: Kind, value: MeasuredValue, ucum: &str) -> Reading {
    let ctx = decode_ctx();
    Reading {
        device: ctx.device,
        kind,
        value: Some(Quantity {
            value,
            ucum: ucum.into(),
        }),
        components: Vec::new(),
        device_time: None,
        received_at: ctx.received_at,
        clock: ctx.clock,
        status: Vec::new(),
        sequence: None,
        user_id: None,
        qualifiers: BTreeMap::new(),
    }
}

/// (name, reading) for every kind and the special cases the mapper must handle.
pub fn example_readings() -> Vec<(&'static str, Reading)> {
    let mut out = Vec::new();
    // Heart rate strap: 72 bpm, contact detected.
    out.push((
        "heart_rate",
        decoded(uuids::HEART_RATE_MEASUREMENT, &[0x06, 72])[0].clone(),
    ));
    // BP cuff (Nordic "full" vector with a 2026 timestamp): panel + pulse, status flags.
    let bp = decoded(
        uuids::BLOOD_PRESSURE_MEASUREMENT,
        &[
            0x1E, 0x8A, 0x00, 0x58, 0x00, 0x78, 0x00, 0xEA, 0x07, 0x01, 0x02, 0x09, 0x31, 0x00,
            0x3C, 0x00, 0x01, 0x27, 0x00,
        ],
    );
    out.push(("blood_pressure", bp[0].clone()));
    out.push(("pulse_rate_cuff", bp[1].clone()));
    // Thermometer: 36.50 Cel, ear, no timestamp.
    out.push((
        "body_temperature",
        decoded(
            uuids::TEMPERATURE_MEASUREMENT,
            &[0x04, 0x42, 0x0E, 0x00, 0xFE, 0x03],
        )[0]
        .clone(),
    ));
    // Oximeter spot-check: SpO2 98 % (as 980 × 10^-1), PR 72, device clock not set.
    let plx = decoded(
        uuids::PLX_SPOT_CHECK_MEASUREMENT,
        &[0x10, 0xD4, 0xF3, 0x48, 0x00],
    );
    out.push(("oxygen_saturation", plx[0].clone()));
    out.push(("pulse_rate_oximeter", plx[1].clone()));
    // Scale: 70.0 kg (0.1 kg resolution), BMI 22.9, height 175 cm (0.01 m resolution).
    let ws = decoded(
        uuids::WEIGHT_MEASUREMENT,
        &[0x08, 0xB0, 0x36, 0xE5, 0x00, 0xD6, 0x06],
    );
    out.push(("body_weight", ws[0].clone()));
    out.push(("body_mass_index", ws[1].clone()));
    out.push(("body_height", ws[2].clone()));
    // Glucose meter: seq 7, 92 mg/dL capillary whole blood from the finger.
    out.push((
        "blood_glucose_mass",
        decoded(
            uuids::GLUCOSE_MEASUREMENT,
            &[
                0x02, 0x07, 0x00, 0xEA, 0x07, 0x01, 0x02, 0x08, 0x00, 0x00, 0x5C, 0xB0, 0x11,
            ],
        )[0]
        .clone(),
    ));
    // Glucose meter in mol/L: 5.1 mmol/L = 51 × 10^-4 mol/L.
    out.push((
        "blood_glucose_molar",
        decoded(
            uuids::GLUCOSE_MEASUREMENT,
            &[
                0x06, 0x08, 0x00, 0xEA, 0x07, 0x01, 0x02, 0x08, 0x00, 0x00, 0x33, 0xC0, 0x11,
            ],
        )[0]
        .clone(),
    ));
    // CGM: 120 mg/dL at 5 min after session start.
    out.push((
        "cgm_glucose",
        decoded(uuids::CGM_MEASUREMENT, &[6, 0, 0x0C, 0x10, 5, 0])[0].clone(),
    ));
    // Respiratory rate (no GATT profile; from serial/MQTT sources).
    out.push((
        "respiratory_rate",
        plain(
            Kind::RespiratoryRate,
            MeasuredValue::Number(Decimal::new(16, 0)),
            "/min",
        ),
    ));
    // Special values → dataAbsentReason.
    out.push((
        "special_nan",
        plain(Kind::HeartRate, MeasuredValue::NotANumber, "/min"),
    ));
    out.push((
        "special_nres",
        plain(
            Kind::OxygenSaturation,
            MeasuredValue::NotAtThisResolution,
            "%",
        ),
    ));
    out.push((
        "special_pinf",
        plain(
            Kind::BodyTemperature,
            MeasuredValue::PositiveInfinity,
            "Cel",
        ),
    ));
    out.push((
        "special_ninf",
        plain(
            Kind::BodyTemperature,
            MeasuredValue::NegativeInfinity,
            "Cel",
        ),
    ));
    out
}
