//! Throughput of the pure clinical core, printed side by side with a baseline measured in the
//! same run (serde_json serialisation of the same Reading: a floor any mapper pays at least).
//! Run: `cargo bench --bench clinical_core` (optimised build). Figures go to docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::Instant;

use vectorcare_gateway::decode::gatt::{
    DecodeContext, FeatureContext, readings_from_characteristic, uuids,
};
use vectorcare_gateway::fhir::examples::{example_device, example_map_context, example_readings};
use vectorcare_gateway::fhir::{BundleOptions, BundleType, WriteMode, build_bundle, map_reading};
use vectorcare_gateway::reading::ClockContext;

fn time_per_op(name: &str, iterations: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{name:<48} {ns:>10.0} ns/op");
    ns
}

fn main() {
    let ctx = DecodeContext {
        device: example_device(),
        received_at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        clock: ClockContext {
            device_offset_seconds: Some(30),
            gateway_clock_synchronized: true,
        },
        features: FeatureContext::default(),
    };
    let bp = [
        0x1E, 0x8A, 0x00, 0x58, 0x00, 0x78, 0x00, 0xEA, 0x07, 0x01, 0x02, 0x09, 0x31, 0x00, 0x3C,
        0x00, 0x01, 0x27, 0x00,
    ];
    let map_ctx = example_map_context(true);
    let reading = example_readings().remove(1).1; // blood pressure panel
    println!("clinical core (release build, one thread)");
    let baseline = time_per_op(
        "baseline: serde_json::to_string(&Reading) [BP]",
        200_000,
        || {
            black_box(serde_json::to_string(black_box(&reading)).ok());
        },
    );
    let decode = time_per_op(
        "decode 0x2A35 BP (19 bytes) → 2 readings",
        200_000,
        || {
            black_box(
                readings_from_characteristic(
                    uuids::BLOOD_PRESSURE_MEASUREMENT,
                    black_box(&bp),
                    &ctx,
                )
                .ok(),
            );
        },
    );
    let map = time_per_op("map_reading BP → UploadUnit", 100_000, || {
        black_box(map_reading(black_box(&reading), &map_ctx).ok());
    });
    let units: Vec<_> = (0..100)
        .map(|i| {
            let mut r = reading.clone();
            r.sequence = Some(i);
            r.device_time = None;
            map_reading(&r, &map_ctx).expect("maps")
        })
        .collect();
    let bundle = time_per_op("build_bundle 100 units (transaction, PUT)", 2_000, || {
        black_box(build_bundle(
            black_box(&units),
            &BundleOptions {
                bundle_type: BundleType::Transaction,
                write_mode: WriteMode::Put,
            },
        ));
    });
    println!();
    println!(
        "relative to baseline: decode {:.2}x, map {:.2}x, bundle/unit {:.2}x",
        decode / baseline,
        map / baseline,
        bundle / 100.0 / baseline
    );
}
