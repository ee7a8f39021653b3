//! Benchmark: readings per second through the BLE source (hal simulator link, sink that acks at
//! once) next to the baseline of decoding the same bytes alone, in the same run.
//!
//! `cargo run --release --example ble_throughput [-- N]` (N measurements, default 20000).
//! Prints both figures and their ratio; no assertion (figures go to docs/PERFORMANCE.md).

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;
use vectorcare_gateway::config::problems::Problems;
use vectorcare_gateway::decode::{DecodeContext, FeatureContext, readings_from_characteristic};
use vectorcare_gateway::reading::{ClockContext, DeviceIdentity, SourceKind};
use vectorcare_gateway::sources::ReadingSink;
use vectorcare_gateway::sources::ble::config::{RawBleConfig, RawBleDevice};
use vectorcare_gateway::sources::ble::profiles::Profile;
use vectorcare_gateway::sources::ble::simulated::standard_device;
use vectorcare_gateway::sources::ble::{BleSource, InMemoryProgress};
use vectorcare_hal::ble::simulated::SimulatedCentral;
use vectorcare_hal::clock::SimulatedClock;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let central = SimulatedCentral::new();
    let mut device = standard_device(&central, Profile::BloodPressure, 1).expect("encodable");
    let samples: Vec<Vec<u8>> = (0..n).map(|_| device.measure().expect("measure")).collect();

    // Baseline: decode the same bytes, nothing else.
    let ctx = DecodeContext {
        device: DeviceIdentity {
            source: SourceKind::Ble,
            address: device.address().to_string(),
            system_id: None,
            manufacturer: None,
            model: None,
            serial_number: None,
        },
        received_at: OffsetDateTime::now_utc(),
        clock: ClockContext::default(),
        features: FeatureContext::default(),
    };
    let started = Instant::now();
    let mut decoded = 0usize;
    for bytes in &samples {
        decoded += readings_from_characteristic(0x2A35, bytes, &ctx)
            .expect("decodes")
            .len();
    }
    let decode_s = started.elapsed().as_secs_f64();

    // Through the source: all n measurements wait on the device and are indicated once the
    // source has connected and subscribed.
    let raw = RawBleConfig {
        adapter: None,
        devices: vec![RawBleDevice {
            address: device.address().to_string(),
            profile: None,
            delete_after_upload: false,
            passkey: None,
        }],
        accept_any_health_device: false,
        scan_watchdog_minutes: 5,
        backoff_initial_seconds: 1,
        backoff_max_seconds: 2,
    };
    let config = raw
        .validate("sources.ble", &mut Problems::new())
        .expect("valid");
    let through_source = runtime.block_on(async {
        let (sink, mut submissions) = ReadingSink::channel(64);
        let source = BleSource::new(
            central.clone(),
            config,
            sink,
            Arc::new(InMemoryProgress::default()),
            Arc::new(SimulatedClock::new(0, true)),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        let task = tokio::spawn(source.run(async {
            let _ = stopped.await;
        }));
        let mut readings = 0usize;
        while readings < decoded {
            let Some(s) = submissions.recv().await else {
                break;
            };
            readings += s.readings.len();
            let _ = s.done.send(Ok(()));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let _ = stop.send(());
        let _ = task.await;
        (readings, elapsed)
    });
    let (readings, source_s) = through_source;
    println!("BLE blood-pressure measurements: {n} ({decoded} readings)");
    println!(
        "baseline  decode only            : {:>10.0} readings/s ({decode_s:.3} s)",
        decoded as f64 / decode_s
    );
    println!(
        "BLE source (sim link, sink ack)  : {:>10.0} readings/s ({source_s:.3} s, {readings} readings)",
        readings as f64 / source_s
    );
    println!(
        "source / baseline time ratio     : {:>10.1}x",
        source_s / decode_s
    );
}
