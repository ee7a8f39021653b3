//! Cost of the status endpoint and of telemetry on the ingest path, printed side by side with
//! a baseline measured in the same run:
//! - counting one stored reading in telemetry (called by the ingest stage for every reading)
//!   vs. serialising that reading's kind, the least a per-kind counter does;
//! - building the snapshot and rendering `/metrics`, `/status` JSON and the page (one request
//!   each) vs. encoding the same snapshot with `serde_json::to_vec` (the least `/status` does).
//!
//! The gateway is the demo's (6 BLE devices, a serial port, an MQTT topic), with 24 h of history.
//! Run: `cargo bench --bench status` (figures in docs/PERFORMANCE.md).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use vectorcare_gateway::reading::{
    Decimal, DeviceIdentity, Kind, MeasuredValue, Quantity, Reading, SourceKind,
};
use vectorcare_gateway::runtime::ingest::IngestObserver;
use vectorcare_gateway::telemetry::{Telemetry, TelemetryOptions, prometheus};

fn per_op(name: &str, iterations: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{name:<56} {ns:>10.0} ns/op");
    ns
}

fn reading() -> Reading {
    Reading {
        device: DeviceIdentity {
            source: SourceKind::Ble,
            address: "C0:FF:EE:08:00:01".into(),
            system_id: None,
            manufacturer: None,
            model: None,
            serial_number: None,
        },
        kind: Kind::BloodGlucose,
        value: Some(Quantity {
            value: MeasuredValue::Number(Decimal::new(94, 0)),
            ucum: "mg/dL".into(),
        }),
        components: Vec::new(),
        device_time: None,
        received_at: time::OffsetDateTime::UNIX_EPOCH,
        clock: Default::default(),
        status: Vec::new(),
        sequence: None,
        user_id: None,
        qualifiers: Default::default(),
    }
}

fn main() {
    let env = [
        (
            "VECTORCARE_UPLOAD__FHIR_BASE_URL",
            "http://127.0.0.1:9/fhir",
        ),
        ("VECTORCARE_GATEWAY__STATE_DIR", "/tmp/unused"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let config = vectorcare_gateway::config::load_str(
        include_str!("../config/demo.toml"),
        Path::new("config/demo.toml"),
        env,
    )
    .expect("demo config");
    let options = TelemetryOptions::from_config(&config, false, &Default::default());
    let telemetry = Telemetry::new(
        options,
        Arc::new(vectorcare_hal::clock::AssumedSynchronizedClock),
    );
    telemetry.tasks_started(["ble", "serial", "mqtt", "ingest", "uploader"].map(str::to_owned));
    let one = [reading()];
    for _ in 0..1000 {
        telemetry.stored(&one);
        telemetry.upload_settled(1, 0, 0);
    }

    let n = 200_000;
    let base = per_op("baseline: serde_json::to_value(reading.kind)", n, || {
        black_box(serde_json::to_value(black_box(one[0].kind)).ok());
    });
    let ours = per_op("Telemetry::stored (1 reading)", n, || {
        telemetry.stored(black_box(&one));
    });
    println!("{:<56} {:>10.2} x baseline\n", "", ours / base);

    let n = 5_000;
    let snapshot = telemetry.snapshot();
    let base = per_op("baseline: serde_json::to_vec(snapshot)", n, || {
        black_box(serde_json::to_vec(black_box(&snapshot)).ok());
    });
    for (name, f) in [
        (
            "snapshot + /metrics text",
            Box::new(|| prometheus::render(&telemetry.snapshot()).len()) as Box<dyn Fn() -> usize>,
        ),
        (
            "snapshot + /status JSON (pretty)",
            Box::new(|| {
                serde_json::to_string_pretty(&telemetry.snapshot())
                    .map(|s| s.len())
                    .unwrap_or(0)
            }),
        ),
        (
            "snapshot + / (page with embedded JSON)",
            Box::new(|| vectorcare_gateway::status::page(&telemetry.snapshot()).len()),
        ),
    ] {
        let ours = per_op(name, n, || {
            black_box(f());
        });
        println!("{:<56} {:>10.2} x baseline", "", ours / base);
    }
    println!(
        "\nsizes: /metrics {} bytes, /status {} bytes, page {} bytes",
        prometheus::render(&snapshot).len(),
        serde_json::to_string_pretty(&snapshot).map_or(0, |s| s.len()),
        vectorcare_gateway::status::page(&snapshot).len()
    );
}
