//! Crash test: a child process appends and acks; it is killed with SIGKILL at random points
//! (with small segments, so also inside rolls and segment removals).
//! After each kill the queue is reopened and every record whose append had resolved (and was
//! not acked) must be present exactly once, intact; nothing may be quarantined.
//!
//! The child is this same test binary re-executed with `VC_QUEUE_CRASH_CHILD` set.
//! Normal run: 50 kills (a few seconds). Long run:
//! `VC_QUEUE_CRASH_ROUNDS=1000 cargo test --test queue_crash -- --nocapture`

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng;
use vectorcare_gateway::queue::{DurableQueue, QueueConfig, RecordId, SledQueue};

/// Segments of 16 records (the smallest allowed): kills also land inside rolls (new head,
/// sealing) and inside the removal of drained segments.
fn cfg() -> QueueConfig {
    QueueConfig {
        segment_records: 16,
        ..QueueConfig::default()
    }
}

const CHILD_ENV: &str = "VC_QUEUE_CRASH_CHILD";
const TEST_NAME: &str = "sigkill_at_random_points_loses_no_resolved_append";

/// Child: append batches forever, printing each resolved append; ack now and then.
fn child(dir: &Path) -> ! {
    let q = SledQueue::open(dir, &cfg()).expect("child open");
    let mut out = std::io::stdout().lock();
    let mut rng = rand::rng();
    let start = q.stats().expect("stats").next_id;
    writeln!(out, "READY").expect("stdout");
    out.flush().expect("flush");
    for round in 0u64.. {
        let n = rng.random_range(1..=5);
        let payloads: Vec<Vec<u8>> = (0..n)
            .map(|k| format!(r#"{{"c":"{start}-{round}-{k}"}}"#).into_bytes())
            .collect();
        let ids = q.append_blocking(payloads.clone()).expect("append");
        for (id, p) in ids.iter().zip(&payloads) {
            writeln!(out, "A {} {}", id.0, String::from_utf8_lossy(p)).expect("stdout");
        }
        out.flush().expect("flush");
        // Acks outpace appends a little, so segments drain and are removed.
        if round % 3 == 1 {
            let peeked = q.peek(12).expect("peek");
            let ids: Vec<RecordId> = peeked.iter().map(|r| r.id).collect();
            // A kill inside `ack` may or may not have removed them (an ack that drains a
            // segment also closes and removes it, which takes a few ms): say so first.
            for id in &ids {
                writeln!(out, "P {}", id.0).expect("stdout");
            }
            out.flush().expect("flush");
            q.ack(&ids).expect("ack");
            for id in ids {
                writeln!(out, "K {}", id.0).expect("stdout");
            }
            out.flush().expect("flush");
        }
    }
    unreachable!("the loop only ends by SIGKILL")
}

#[test]
fn sigkill_at_random_points_loses_no_resolved_append() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let rounds: usize = std::env::var("VC_QUEUE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = rand::rng();
    // id → payload of every append that resolved and was not acked.
    let mut resolved: BTreeMap<u64, String> = BTreeMap::new();
    let mut total_resolved = 0usize;
    for round in 0..rounds {
        let mut proc = Command::new(&exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = proc.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lines = Vec::new();
        if round % 5 == 0 {
            // Sometimes kill during start-up (open / recovery) too.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
        } else {
            // Otherwise kill while appending: wait for READY, whatever the machine's load.
            // Bounded: a child that never gets ready is killed after 30 s anyway.
            while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
                // The harness prints "test NAME ... " without a newline before the test runs.
                let ready = line.ends_with("READY");
                lines.push(line);
                if ready {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(1..60)));
        }
        proc.kill().expect("SIGKILL child"); // Child::kill sends SIGKILL on Unix.
        proc.wait().expect("reap child");
        reader.join().expect("reader");
        lines.extend(rx.try_iter());
        for line in lines {
            let mut parts = line.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("A"), Some(id), Some(payload)) => {
                    let id: u64 = id.parse().expect("id");
                    resolved.insert(id, payload.to_owned());
                    total_resolved += 1;
                }
                // Ack started: the record may be gone or still there (at-least-once).
                (Some("P" | "K"), Some(id), None) => {
                    resolved.remove(&id.parse().expect("id"));
                }
                // Test-harness chatter ("running 1 test") or a line cut by the kill.
                _ => {}
            }
        }

        let q = match SledQueue::open(dir.path(), &cfg()) {
            Ok(q) => q,
            Err(e) => {
                let out = Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "ls -la {0}/segments; for d in {0}/segments/*; do echo $d; ls -la $d; done",
                        dir.path().display()
                    ))
                    .output()
                    .expect("ls");
                eprintln!("{}", String::from_utf8_lossy(&out.stdout));
                panic!("reopen: {e:?}");
            }
        };
        let present = q.list_waiting(RecordId(0), usize::MAX).expect("list");
        let stats = q.stats().expect("stats");
        assert_eq!(stats.quarantined, 0, "round {round}: corrupt records");
        if let Some(last) = resolved.keys().next_back() {
            assert!(
                stats.next_id > *last,
                "round {round}: next id {} reuses {last}",
                stats.next_id
            );
        }
        assert_eq!(stats.depth, present.len() as u64, "round {round}: counters");
        let mut payloads = HashSet::new();
        let by_id: BTreeMap<u64, String> = present
            .iter()
            .map(|r| {
                let text = String::from_utf8(r.payload.clone()).expect("utf8 payload");
                assert!(
                    payloads.insert(text.clone()),
                    "round {round}: duplicate {text}"
                );
                (r.id.0, text)
            })
            .collect();
        for (id, payload) in &resolved {
            assert_eq!(
                by_id.get(id),
                Some(payload),
                "round {round}: resolved append {id} missing or changed"
            );
        }
        drop(q);
    }
    assert!(
        total_resolved > rounds,
        "children resolved only {total_resolved} appends in {rounds} rounds: kills came too early to test anything"
    );
    eprintln!("{rounds} SIGKILLs, {total_resolved} resolved appends checked");
}
