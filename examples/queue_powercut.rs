//! Power-cut test driver (run by `scripts/powercut/queue.sh`, inside and outside a VM).
//!
//! `queue_powercut child DIR [--raw-sled]` appends forever and prints `A <id>` for every
//! append that resolved (i.e. was reported durable). With `--raw-sled` it uses plain sled
//! (`insert` + `Db::flush()`, no fdatasync) as the negative control.
//!
//! `queue_powercut verify DIR LOG [--raw-sled]` reopens after the power cut and checks that
//! every id printed in LOG is present and nothing is corrupt. Exit 1 when something is lost.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use vectorcare_gateway::queue::{DurableQueue, QueueConfig, RecordId, SledQueue};

fn payload(id_hint: u64) -> Vec<u8> {
    format!(
        r#"{{"resourceType":"Observation","n":{id_hint},"pad":"{}"}}"#,
        "x".repeat(560)
    )
    .into_bytes()
}

fn child(dir: &Path, raw: bool) -> ! {
    let mut out = std::io::stdout().lock();
    if raw {
        let db = sled::open(dir.join("raw")).expect("sled open");
        let mut next: u64 = db
            .last()
            .ok()
            .flatten()
            .map(|(k, _)| u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])) + 1)
            .unwrap_or(1);
        writeln!(out, "READY").expect("stdout");
        loop {
            let mut batch = sled::Batch::default();
            let ids: Vec<u64> = (next..next + 10).collect();
            for id in &ids {
                batch.insert(&id.to_be_bytes(), payload(*id));
            }
            next += 10;
            db.apply_batch(batch).expect("apply");
            db.flush().expect("flush");
            for id in ids {
                writeln!(out, "A {id}").expect("stdout");
            }
            out.flush().expect("flush stdout");
        }
    }
    let q = SledQueue::open(dir, &QueueConfig::default()).expect("queue open");
    writeln!(out, "READY").expect("stdout");
    let mut n = 0;
    loop {
        let ids = q
            .append_blocking((0..10).map(|i| payload(n + i)).collect())
            .expect("append");
        n += 10;
        for id in ids {
            writeln!(out, "A {id}").expect("stdout");
        }
        out.flush().expect("flush stdout");
    }
}

fn verify(dir: &Path, log: &Path, raw: bool) -> i32 {
    let text = std::fs::read_to_string(log).expect("read log");
    let resolved: BTreeSet<u64> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("A "))
        .filter_map(|id| id.trim().parse().ok())
        .collect();
    let present: BTreeSet<u64> = if raw {
        let db = sled::open(dir.join("raw")).expect("sled reopen");
        db.iter()
            .keys()
            .map(|k| {
                let k = k.expect("sled read");
                u64::from_be_bytes(k.as_ref().try_into().expect("8-byte key"))
            })
            .collect()
    } else {
        let q = SledQueue::open(dir, &QueueConfig::default()).expect("queue reopen");
        let stats = q.stats().expect("stats");
        if stats.quarantined > 0 {
            println!("CORRUPT: {} quarantined records", stats.quarantined);
            return 1;
        }
        q.list_waiting(RecordId(0), usize::MAX)
            .expect("list")
            .into_iter()
            .map(|r| r.id.0)
            .collect()
    };
    let missing: Vec<u64> = resolved.difference(&present).copied().collect();
    println!(
        "resolved {} (max id {}), present {}, missing {}{}",
        resolved.len(),
        resolved.last().copied().unwrap_or(0),
        present.len(),
        missing.len(),
        missing
            .first()
            .map(|m| format!(" (first missing id {m})"))
            .unwrap_or_default()
    );
    i32::from(!missing.is_empty())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let raw = args.iter().any(|a| a == "--raw-sled");
    match args.first().map(String::as_str) {
        Some("child") if args.len() >= 2 => child(Path::new(&args[1]), raw),
        Some("verify") if args.len() >= 3 => {
            std::process::exit(verify(Path::new(&args[1]), Path::new(&args[2]), raw))
        }
        _ => {
            eprintln!("usage: queue_powercut child DIR [--raw-sled] | verify DIR LOG [--raw-sled]");
            std::process::exit(64);
        }
    }
}
