//! Tests of acks served by what the peeks read (`super::read_span`): the uploader's drain
//! pattern acks without walking sled again, and anything that could make the span untrue
//! sends the ack back to the walk, with exact counters either way.

use std::time::Duration;

use super::record::HEADER_LEN;
use super::sled_queue::ACK_WALKS;
use super::*;

/// Payloads of widely different lengths (a byte counter off by one record shows).
fn payload(i: u64) -> Vec<u8> {
    format!(
        r#"{{"n":{i},"pad":"{}"}}"#,
        "x".repeat((i * 53 % 900) as usize)
    )
    .into_bytes()
}

fn walks() -> u64 {
    ACK_WALKS.with(|w| w.get())
}

/// The queue's stats count exactly the waiting records it lists, and their bytes.
fn assert_counted(q: &SledQueue) {
    let waiting = q.list_waiting(RecordId(0), 10_000).expect("list");
    let stats = q.stats().expect("stats");
    let bytes: u64 = waiting
        .iter()
        .map(|r| (HEADER_LEN + r.payload.len()) as u64)
        .sum();
    assert_eq!((stats.depth, stats.bytes), (waiting.len() as u64, bytes));
}

fn open(dir: &std::path::Path) -> SledQueue {
    SledQueue::open(dir, &QueueConfig::default()).expect("open")
}

/// A fresh queue holding records 1..=`n`.
fn filled(n: u64) -> (tempfile::TempDir, SledQueue) {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = open(dir.path());
    q.append_blocking((1..=n).map(payload).collect())
        .expect("append");
    (dir, q)
}

fn peeked_ids(q: &SledQueue, max: usize) -> Vec<RecordId> {
    q.peek(max).expect("peek").iter().map(|r| r.id).collect()
}

#[test]
fn the_uploaders_drain_acks_from_what_it_peeked_without_walking_sled() {
    let (_dir, q) = filled(500);
    let before = walks();
    // As the uploader does: Bundles of 48 peeked past the pending acks, acked by 96.
    let mut pending: Vec<RecordId> = Vec::new();
    let (mut drained, mut appended) = (0, 0);
    loop {
        let records = q.peek_skipping(48, &pending).expect("peek");
        if records.is_empty() {
            break;
        }
        drained += records.len();
        pending.extend(records.iter().map(|r| r.id));
        // New readings keep arriving during a drain: appends do not spoil the span.
        q.append_blocking(vec![payload(10_000 + drained as u64)])
            .expect("append");
        appended += 1;
        if pending.len() >= 96 {
            q.ack(&pending).expect("ack");
            pending.clear();
            assert_counted(&q);
        }
        if drained >= 500 {
            break;
        }
    }
    q.ack(&pending).expect("ack");
    assert_eq!(walks(), before, "every ack came from the read span");
    assert_counted(&q);
    let left = 500 + appended - drained;
    assert!(left > 0, "some appended readings were not peeked");
    assert_eq!(q.stats().expect("stats").depth, left as u64);
}

#[test]
fn an_ack_of_records_never_peeked_walks_sled() {
    let (_dir, q) = filled(20);
    let before = walks();
    q.ack(&(1..=5).map(RecordId).collect::<Vec<_>>())
        .expect("ack");
    assert_eq!(walks(), before + 1);
    assert_counted(&q);
}

#[test]
fn a_nack_or_dead_letter_between_peek_and_ack_sends_the_ack_to_the_walk() {
    let (_dir, q) = filled(30);
    let peeked = peeked_ids(&q, 10);
    q.nack(RecordId(3), Duration::from_secs(3600))
        .expect("nack");
    let before = walks();
    // 3 is delayed, not acked: the watermark stops before it and the rest are removed.
    let acked: Vec<RecordId> = peeked.into_iter().filter(|id| id.0 != 3).collect();
    q.ack(&acked).expect("ack");
    assert_eq!(walks(), before + 1);
    assert_counted(&q);
    assert_eq!(q.oldest_waiting().expect("oldest"), Some(RecordId(3)));

    let peeked = peeked_ids(&q, 5);
    q.dead_letter(peeked[0], "refused".into()).expect("dead");
    q.ack(&peeked[1..]).expect("ack");
    assert_eq!(walks(), before + 2);
    assert_counted(&q);
}

#[test]
fn a_reopened_queue_does_not_trust_an_earlier_opens_reads() {
    let (dir, q) = filled(40);
    let peeked = peeked_ids(&q, 20);
    drop(q);
    let q = open(dir.path());
    let before = walks();
    q.ack(&peeked).expect("ack");
    assert_eq!(walks(), before + 1);
    assert_counted(&q);
    assert_eq!(q.oldest_waiting().expect("oldest"), Some(RecordId(21)));
}
