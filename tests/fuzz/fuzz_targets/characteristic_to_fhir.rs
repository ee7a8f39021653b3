//! Fuzz target: the whole pure pipeline — any UUID + bytes → readings → FHIR units → bundle.
//! Never panics; every produced unit maps and bundles.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::{DecodeContext, FeatureContext, readings_from_characteristic};
use vectorcare_gateway::fhir::examples::{example_device, example_map_context};
use vectorcare_gateway::fhir::{BundleOptions, BundleType, WriteMode, build_bundle, map_reading};
use vectorcare_gateway::reading::ClockContext;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let uuid = 0x2A00 | u16::from(data[0]);
    let ctx = DecodeContext {
        device: example_device(),
        received_at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        clock: ClockContext {
            device_offset_seconds: Some(i64::from(i16::from_le_bytes([data[1], data[2]])) * 60),
            gateway_clock_synchronized: data[1] & 1 == 0,
        },
        features: FeatureContext { cgm_e2e_crc: data[2] & 1 != 0, ..FeatureContext::default() },
    };
    let Ok(readings) = readings_from_characteristic(uuid, &data[3..], &ctx) else { return };
    let units: Vec<_> = readings
        .iter()
        .map(|r| map_reading(r, &example_map_context(true)).expect("every decoded reading maps"))
        .collect();
    let built = build_bundle(
        &units,
        &BundleOptions { bundle_type: BundleType::Transaction, write_mode: WriteMode::Put },
    );
    assert_eq!(built.observation_entries.len(), units.len());
});
