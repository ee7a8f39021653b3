//! Decoder throughput for the serial and MQTT sources, printed side by side with a baseline
//! measured in the same run:
//! - MQTT vitals JSON → readings vs. parsing the same bytes into a `serde_json::Value`
//!   (the least any JSON consumer does);
//! - Masimo ASCII line → readings vs. splitting the line into whitespace tokens;
//! - serial framing of 1 MiB of lines vs. `memchr`-style newline counting.
//!
//! Run: `cargo bench --bench serial_mqtt_decode` (figures in docs/PERFORMANCE.md).

use std::hint::black_box;
use std::time::Instant;

use vectorcare_gateway::decode::mqtt::{PayloadContext, PayloadFormat, decode_payload};
use vectorcare_gateway::decode::serial::framing::LineFramer;
use vectorcare_gateway::decode::serial::masimo;
use vectorcare_gateway::reading::{ClockContext, DeviceIdentity, SourceKind};

fn per_op(name: &str, iterations: u32, mut f: impl FnMut()) -> f64 {
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
    let ctx = PayloadContext {
        device: DeviceIdentity {
            source: SourceKind::Mqtt,
            address: "bench".into(),
            system_id: None,
            manufacturer: None,
            model: None,
            serial_number: None,
        },
        received_at: time::OffsetDateTime::UNIX_EPOCH,
        clock: ClockContext::default(),
    };
    let vitals = br#"{"schema":"vectorcare.vitals/1","readings":[{"kind":"blood_pressure","systolic":128,"diastolic":82,"mean":97,"unit":"mmHg","time":"2026-11-28T10:15:00Z"},{"kind":"pulse_rate","value":66,"time":"2026-11-28T10:15:00Z"}]}"#;
    let n = 100_000;
    let base = per_op("baseline: serde_json::Value parse (vitals)", n, || {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(vitals)).ok());
    });
    let ours = per_op("decode_payload(vitals) → 2 readings", n, || {
        black_box(decode_payload(PayloadFormat::Vitals, black_box(vitals), &ctx).ok());
    });
    println!("{:<48} {:>10.2} x baseline\n", "", ours / base);

    let line = "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800";
    let base = per_op("baseline: split_whitespace count (Masimo line)", n, || {
        black_box(black_box(line).split_whitespace().count());
    });
    let ours = per_op("masimo::decode_line → 2 readings", n, || {
        black_box(masimo::decode_line(black_box(line), &ctx).ok());
    });
    println!("{:<48} {:>10.2} x baseline\n", "", ours / base);

    let mut stream = Vec::new();
    while stream.len() < 1 << 20 {
        stream.extend_from_slice(line.as_bytes());
        stream.extend_from_slice(b"\r\n");
    }
    let base = per_op("baseline: count b'\\n' in 1 MiB", 200, || {
        black_box(black_box(&stream).iter().filter(|b| **b == b'\n').count());
    });
    let ours = per_op("LineFramer::push 1 MiB in 4 KiB chunks", 200, || {
        let mut framer = LineFramer::new(1024);
        let mut out = Vec::new();
        for chunk in black_box(&stream).chunks(4096) {
            framer.push(chunk, &mut out);
            out.clear();
        }
    });
    println!("{:<48} {:>10.2} x baseline", "", ours / base);
    println!("framing throughput: {:.0} MiB/s", 1e9 / ours);
}
