//! Durable-queue benchmark against the physical limit (issue #4).
//!
//! `cargo bench --bench queue -- --records 100000 [--batch 100] [--cycles 10]
//!  [--cycle-records 20000] [--reopen-records 1000000] [--dir PATH]`
//!
//! Prints, side by side in one run:
//! - durable ingest rate of the sled queue vs an append-only file that fdatasyncs once per the
//!   same batch size (the physical-limit baseline), and with concurrent single-record appenders
//!   (group commit);
//! - bytes written to the block device (`/proc/self/io` write_bytes) per record over the whole
//!   cycle append → ack, relative to the record's JSON size;
//! - peak RSS (VmHWM, reset before the queue phases through /proc/self/clear_refs);
//! - on-disk size after draining, over fill/drain cycles;
//! - reopen time with a large queue.
//!
//! The directory (default /var/tmp) must be on the storage device being measured, not tmpfs.

#[path = "support/dir_size.rs"]
mod dir_size;
use dir_size::dir_size;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use vectorcare_gateway::queue::{DurableQueue, QueueConfig, RecordId, SledQueue};

struct Opts {
    records: usize,
    batch: usize,
    cycles: usize,
    cycle_records: usize,
    reopen_records: usize,
    cache_bytes: Option<u64>,
    dir: PathBuf,
}

fn opts() -> Opts {
    let mut o = Opts {
        records: 100_000,
        batch: 100,
        cycles: 10,
        cycle_records: 20_000,
        reopen_records: 1_000_000,
        cache_bytes: None,
        dir: PathBuf::from("/var/tmp"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let num = || {
            value
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("{} needs a number", args[i]))
        };
        match args[i].as_str() {
            "--records" => o.records = num().max(1),
            "--batch" => o.batch = num().max(1),
            "--cycles" => o.cycles = num(),
            "--cycle-records" => o.cycle_records = num().max(1),
            "--reopen-records" => o.reopen_records = num(),
            "--cache-bytes" => o.cache_bytes = Some(num() as u64),
            "--dir" => o.dir = PathBuf::from(&value),
            // `cargo bench` passes `--bench`; skip flags without a value.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// An observation-sized compact FHIR JSON record (~620 bytes), unique per `i`.
fn observation(i: usize) -> Vec<u8> {
    format!(
        concat!(
            r#"{{"resourceType":"Observation","id":"obs-{:010}","meta":{{"profile":["http://hl7.org/fhir/uv/phd/StructureDefinition/PhdNumericObservation"]}},"#,
            r#""identifier":[{{"system":"urn:ietf:rfc:3986","value":"urn:uuid:6f1c3c7e-2b7d-4a47-9a1e-{:012}"}}],"status":"final","#,
            r#""category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}}]}}],"#,
            r#""code":{{"coding":[{{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}},{{"system":"urn:iso:std:iso:11073:10101","code":"147842"}}]}},"#,
            r#""subject":{{"reference":"Patient/p-000123"}},"effectiveDateTime":"2026-11-29T08:15:{:02}Z","#,
            r#""valueQuantity":{{"value":{},"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}},"device":{{"reference":"Device/dev-aabbccddeeff"}}}}"#
        ),
        i,
        i,
        i % 60,
        60 + i % 40
    )
    .into_bytes()
}

fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("write_bytes:")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// The physical limit: records appended to one file, one fdatasync per batch; acks appended
/// as 8-byte ids, one fdatasync per batch too. Returns (rate, insert bytes, cycle bytes).
fn baseline(dir: &Path, batch: usize, n: usize) -> (f64, u64, u64) {
    let path = dir.join("baseline.log");
    let mut f: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("baseline file");
    let w0 = write_bytes();
    let start = Instant::now();
    for chunk in chunks(n, batch) {
        let mut buf = Vec::with_capacity(chunk.len() * 800);
        for r in &chunk {
            buf.extend_from_slice(&(r.len() as u32).to_le_bytes());
            buf.extend_from_slice(r);
        }
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let w_insert = write_bytes() - w0;
    for start in (0..n).step_by(batch) {
        let ids: Vec<u8> = (start..(start + batch).min(n))
            .flat_map(|i| (i as u64).to_le_bytes())
            .collect();
        f.write_all(&ids).expect("write");
        f.sync_data().expect("fdatasync");
    }
    let w_cycle = write_bytes() - w0;
    let _ = std::fs::remove_file(&path);
    (rate, w_insert, w_cycle)
}

/// Records `0..n` in batches, generated on the fly (so they do not count in peak RSS).
fn chunks(n: usize, batch: usize) -> impl Iterator<Item = Vec<Vec<u8>>> {
    (0..n)
        .step_by(batch)
        .map(move |start| (start..(start + batch).min(n)).map(observation).collect())
}

fn drain(q: &SledQueue, batch: usize) {
    loop {
        let peeked = q.peek(batch).expect("peek");
        if peeked.is_empty() {
            return;
        }
        let ids: Vec<RecordId> = peeked.iter().map(|r| r.id).collect();
        q.ack(&ids).expect("ack");
    }
}

fn main() {
    let o = opts();
    let root = tempfile::Builder::new()
        .prefix("vc-queue-bench")
        .tempdir_in(&o.dir)
        .expect("bench dir");
    let mut cfg = QueueConfig {
        max_records: u64::MAX,
        max_bytes: u64::MAX,
        ..QueueConfig::default()
    };
    if let Some(cache) = o.cache_bytes {
        cfg.cache_bytes = cache;
    }
    let json_bytes: u64 = (0..o.records).map(|i| observation(i).len() as u64).sum();
    println!(
        "queue benchmark: {} records of {:.0} B compact JSON, batch {}, sled cache {} B, dir {}",
        o.records,
        json_bytes as f64 / o.records as f64,
        o.batch,
        cfg.cache_bytes,
        o.dir.display()
    );

    // 1. Baseline.
    let (base_rate, base_ins, base_cycle) = baseline(root.path(), o.batch, o.records);

    // 2. sled queue: append in batches, then drain with peek + ack.
    reset_peak_rss();
    let qdir = root.path().join("q");
    let q = SledQueue::open(&qdir, &cfg).expect("open");
    let w0 = write_bytes();
    let start = Instant::now();
    for chunk in chunks(o.records, o.batch) {
        q.append_blocking(chunk).expect("append");
    }
    let q_rate = o.records as f64 / start.elapsed().as_secs_f64();
    let q_ins = write_bytes() - w0;
    let full_size = dir_size(&qdir);
    let start = Instant::now();
    drain(&q, o.batch);
    let drain_rate = o.records as f64 / start.elapsed().as_secs_f64();
    q.close().expect("close");
    let q_cycle = write_bytes() - w0;
    let drained_size = dir_size(&qdir);
    let peak_rss = status_kib("VmHWM:");

    println!();
    println!("| measure | sled queue | append-only file (baseline) | ratio | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| durable ingest, records/s (batch {}) | {:.0} | {:.0} | {:.2}× | ≥ 0.7× |",
        o.batch,
        q_rate,
        base_rate,
        q_rate / base_rate
    );
    println!(
        "| write_bytes / JSON bytes, append only | {:.2}× | {:.2}× | | |",
        q_ins as f64 / json_bytes as f64,
        base_ins as f64 / json_bytes as f64
    );
    println!(
        "| write_bytes / JSON bytes, append → ack | {:.2}× | {:.2}× | | ≤ 1.0× |",
        q_cycle as f64 / json_bytes as f64,
        base_cycle as f64 / json_bytes as f64
    );
    println!("| drain (peek + ack), records/s | {drain_rate:.0} | | | |");
    println!(
        "| peak RSS in queue phase (VmHWM) | {:.1} MiB | | | ≤ 24 MiB |",
        peak_rss as f64 / 1024.0
    );
    println!(
        "| on disk: full / after drain | {:.1} / {:.1} MiB | | | |",
        mib(full_size),
        mib(drained_size)
    );

    // 3. Group commit with concurrent single-record appenders.
    let cdir = root.path().join("c");
    let q = Arc::new(SledQueue::open(&cdir, &cfg).expect("open"));
    let threads = 16;
    let per = (o.records / 10 / threads).max(1);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                for i in 0..per {
                    q.append_blocking(vec![observation(t * per + i)])
                        .expect("append");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("appender");
    }
    let c_rate = (threads * per) as f64 / start.elapsed().as_secs_f64();
    println!(
        "| {threads} concurrent 1-record appenders, records/s | {:.0} ({} records, {} group commits) | | | |",
        c_rate,
        threads * per,
        q.commits()
    );
    drop(q);

    // 4. Fill/drain cycles: the on-disk size must not keep growing.
    if o.cycles > 0 {
        let ddir = root.path().join("d");
        let q = SledQueue::open(&ddir, &cfg).expect("open");
        let n = o.cycle_records.min(o.records);
        let mut sizes = Vec::new();
        for _ in 0..o.cycles {
            for chunk in chunks(n, o.batch) {
                q.append_blocking(chunk).expect("append");
            }
            let peak = dir_size(&ddir);
            drain(&q, o.batch);
            sizes.push((peak, dir_size(&ddir)));
        }
        let first_peak = sizes.first().map_or(0, |s| s.0);
        let worst = sizes.iter().map(|s| s.0.max(s.1)).max().unwrap_or(0);
        println!(
            "| {} fill/drain cycles of {n}: first peak / largest / ratio | {:.1} / {:.1} MiB / {:.2}× | | | ≤ 1.2× |",
            o.cycles,
            mib(first_peak),
            mib(worst),
            worst as f64 / first_peak.max(1) as f64
        );
        let after: Vec<String> = sizes.iter().map(|s| format!("{:.1}", mib(s.1))).collect();
        println!(
            "|   size after each drain, MiB | {} | | | |",
            after.join(" ")
        );
    }

    // 5. Reopen time with many records.
    if o.reopen_records > 0 {
        let rdir = root.path().join("r");
        let q = SledQueue::open(&rdir, &cfg).expect("open");
        for chunk in chunks(o.reopen_records, 1000) {
            q.append_blocking(chunk).expect("append");
        }
        q.close().expect("close");
        let start = Instant::now();
        let q = SledQueue::open(&rdir, &cfg).expect("reopen");
        let first = q.peek(1).expect("peek");
        let opened = start.elapsed();
        let stats = q.stats().expect("stats");
        assert_eq!(stats.depth, o.reopen_records as u64);
        assert_eq!(first.len(), 1);
        println!(
            "| reopen + first peek with {} records ({:.0} MiB on disk) | {:.0} ms | | | ≤ 300 ms |",
            o.reopen_records,
            mib(stats.bytes_on_disk),
            opened.as_secs_f64() * 1000.0
        );
    }
}
