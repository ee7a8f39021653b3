//! Why the queue's append looks up its records once more after writing them (issue #5,
//! `Store::split_appended_leaves` in `src/queue/store.rs`), side by side in one run:
//! - baseline: records written in sled batches of 1 000 (one group commit), nothing else;
//! - the queue: the same, then every 8th record of each batch looked up (sled splits the
//!   leaves the batch left oversized now, not when the records are first read);
//! - the alternative not taken: batches of 16 (no oversized leaves, but a batch seals sled's
//!   log buffer and wakes its I/O threads, so writing costs more).
//!
//! `cargo bench --bench sled_batches -- [--records 60000] [--value-bytes 2300] [--rounds 2]
//! [--dir /var/tmp]`
//!
//! Bare sled 0.34 with the queue's settings (4 MiB cache, no background flusher, a flush per
//! 1 000 records as a group commit would do), keys as the queue's (`b'R'` + big-endian id),
//! values of the size of an upload unit. For each way: a fresh database is filled, then every
//! record is read by key twice, as the uploader's peek does. Printed per record: the fill's CPU
//! time (all threads: sled's own included) and bytes written; per read pass the reading
//! thread's CPU time, `read` syscalls (`pread`s of sled's log: fragments pulled) and bytes
//! written while only reading (sled splitting leaves the fill left oversized). The three ways
//! run in turn, `--rounds` times (the first round also warms the process up).

#[path = "support/cpu_time.rs"]
mod cpu_time;

use std::path::{Path, PathBuf};

use cpu_time::{cpu_process, cpu_thread};

const FLUSH_EVERY: u64 = 1_000;

struct Opts {
    records: u64,
    value_bytes: usize,
    rounds: u64,
    dir: PathBuf,
}

fn opts() -> Opts {
    let mut o = Opts {
        records: 60_000,
        value_bytes: 2_300,
        rounds: 2,
        dir: PathBuf::from("/var/tmp"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--bench" {
            continue;
        }
        let value = args.next().unwrap_or_default();
        let num = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag} needs a number, got {value:?}"))
        };
        match flag.as_str() {
            "--records" => o.records = num().max(1),
            "--value-bytes" => o.value_bytes = num() as usize,
            "--rounds" => o.rounds = num().max(1),
            "--dir" => o.dir = PathBuf::from(&value),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

fn key(id: u64) -> [u8; 9] {
    let mut k = [b'R'; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// How a way of writing fills the database.
#[derive(Clone, Copy)]
struct Way {
    name: &'static str,
    per_batch: u64,
    /// Look up every this-many records of a batch after applying it (0: never).
    split_pass_step: u64,
}

const WAYS: [Way; 3] = [
    Way {
        name: "baseline: batches of 1000",
        per_batch: 1_000,
        split_pass_step: 0,
    },
    Way {
        name: "queue: 1000 + split pass",
        per_batch: 1_000,
        split_pass_step: 8,
    },
    Way {
        name: "not taken: batches of 16",
        per_batch: 16,
        split_pass_step: 0,
    },
];

/// `read` syscalls and bytes written so far by this process (`/proc/self/io`).
fn io_counts() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing in /proc/self/io"))
    };
    (field("syscr:"), field("wchar:"))
}

fn open(path: &Path) -> sled::Db {
    sled::Config::new()
        .path(path)
        .cache_capacity(4 << 20)
        .flush_every_ms(None)
        .open()
        .expect("open sled")
}

fn fill(db: &sled::Db, records: u64, way: Way, value: &[u8]) {
    let mut id = 0;
    while id < records {
        let first = id;
        let mut batch = sled::Batch::default();
        for _ in 0..way.per_batch.min(records - id) {
            batch.insert(&key(id), value);
            id += 1;
        }
        batch.insert(b"Mcounters", &[0u8; 60][..]);
        db.apply_batch(batch).expect("apply_batch");
        if way.split_pass_step > 0 {
            for passed in (first..id)
                .step_by(way.split_pass_step as usize)
                .chain([id - 1])
            {
                db.get(key(passed)).expect("get");
            }
        }
        if id % FLUSH_EVERY == 0 || id == records {
            db.flush().expect("flush");
        }
    }
}

/// One read pass by key: (CPU µs, reads, bytes written) per record.
fn read_pass(db: &sled::Db, records: u64, value_bytes: usize) -> (f64, f64, f64) {
    let (reads, written) = io_counts();
    let cpu = cpu_thread();
    for id in 0..records {
        let value = db.get(key(id)).expect("get").expect("record");
        assert_eq!(value.len(), value_bytes, "record {id} read back whole");
    }
    let cpu = cpu_thread() - cpu;
    let (reads_after, written_after) = io_counts();
    let n = records as f64;
    (
        cpu.as_secs_f64() * 1e6 / n,
        (reads_after - reads) as f64 / n,
        (written_after - written) as f64 / n,
    )
}

fn main() {
    let o = opts();
    let value = vec![b'x'; o.value_bytes];
    println!(
        "{} records of {} B, flushed every {FLUSH_EVERY}, each read back by key twice",
        o.records, o.value_bytes
    );
    for (round, way) in (1..=o.rounds).flat_map(|r| WAYS.map(|w| (r, w))) {
        let dir = tempfile::tempdir_in(&o.dir).expect("bench dir");
        let db = open(dir.path());
        let (_, written) = io_counts();
        let cpu = cpu_process();
        fill(&db, o.records, way, &value);
        let cpu = (cpu_process() - cpu).as_secs_f64() * 1e6 / o.records as f64;
        let written = (io_counts().1 - written) as f64 / o.records as f64;
        let name = format!("{round}. {}", way.name);
        println!("{name:<29} fill: CPU {cpu:5.2} µs/record, {written:6.0} B/record written");
        for pass in 1..=2 {
            let (cpu, reads, written) = read_pass(&db, o.records, o.value_bytes);
            println!(
                "{name:<29} read pass {pass}: CPU {cpu:5.2} µs/record, {reads:5.3} reads/record, {written:6.0} B/record written while reading"
            );
        }
    }
}
