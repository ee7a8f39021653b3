//! Tests of the stored state (`super::counters`): counters and watermark under one key, the
//! older two-key form read and replaced, a damaged state recounted.

use std::path::{Path, PathBuf};

use super::counters::{StoredState, decode_state, encode_legacy_watermark};
use super::record::HEADER_LEN;
use super::store::{ACKED_BELOW_KEY, COUNTERS_KEY, open_retrying_lock};
use super::*;

fn payload(i: u64) -> Vec<u8> {
    format!(r#"{{"resourceType":"Observation","n":{i}}}"#).into_bytes()
}

fn ids(records: &[QueuedRecord]) -> Vec<u64> {
    records.iter().map(|r| r.id.0).collect()
}

fn bytes_of(ids: impl IntoIterator<Item = u64>) -> u64 {
    ids.into_iter()
        .map(|i| (HEADER_LEN + payload(i).len()) as u64)
        .sum()
}

/// `q` holds exactly the ready records `expected`, and its stats count them and their bytes.
fn assert_ready(q: &SledQueue, expected: std::ops::RangeInclusive<u64>) {
    assert_eq!(
        ids(&q.list_waiting(RecordId(0), 100).expect("list")),
        expected.clone().collect::<Vec<u64>>()
    );
    let stats = q.stats().expect("stats");
    assert_eq!(
        (stats.depth, stats.bytes),
        (expected.clone().count() as u64, bytes_of(expected))
    );
}

/// The first segment's sled database, opened directly (the queue that wrote it was closed).
fn first_segment(dir: &Path) -> sled::Db {
    let path: PathBuf = dir.join("segments").join(format!("{:020}", 1));
    open_retrying_lock(&sled::Config::new().path(&path), &path).expect("sled")
}

/// Ten records appended, the first four acked in order, the queue closed.
fn ten_with_four_acked(dir: &Path) -> Vec<RecordId> {
    let q = SledQueue::open(dir, &QueueConfig::default()).expect("open");
    let all = q
        .append_blocking((1..=10).map(payload).collect())
        .expect("append");
    q.ack(&all[..4]).expect("ack");
    all
}

#[test]
fn an_ack_in_order_stores_counters_and_watermark_in_one_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    ten_with_four_acked(dir.path());
    let db = first_segment(dir.path());
    let raw = db.get(COUNTERS_KEY).expect("get").expect("state stored");
    match decode_state(&raw) {
        StoredState::State(c, acked_below) => {
            assert_eq!(acked_below, 5);
            assert_eq!((c.next_id, c.ready), (11, 6));
            assert_eq!(c.ready_bytes, bytes_of(5..=10));
        }
        other => panic!("expected the state value, got {other:?}"),
    }
    assert_eq!(db.get(ACKED_BELOW_KEY).expect("get"), None);
}

/// A segment as a gateway before round 6 left it (52-byte counters, the watermark under its
/// own key) opens with both, and the next ack replaces them with the one state value.
#[test]
fn an_older_gateways_counters_and_watermark_are_read_and_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = ten_with_four_acked(dir.path());
    {
        let db = first_segment(dir.path());
        let raw = db.get(COUNTERS_KEY).expect("get").expect("state");
        let StoredState::State(c, acked_below) = decode_state(&raw) else {
            panic!("state value expected");
        };
        db.insert(COUNTERS_KEY, c.encode()).expect("old counters");
        db.insert(ACKED_BELOW_KEY, encode_legacy_watermark(acked_below))
            .expect("old watermark");
        db.flush().expect("flush");
    }
    let q = SledQueue::open(dir.path(), &QueueConfig::default()).expect("open the old form");
    assert_ready(&q, 5..=10);
    q.ack(&all[4..5]).expect("ack");
    drop(q);
    let db = first_segment(dir.path());
    assert_eq!(
        db.get(ACKED_BELOW_KEY).expect("get"),
        None,
        "old key removed"
    );
    let raw = db.get(COUNTERS_KEY).expect("get").expect("state");
    assert!(matches!(decode_state(&raw), StoredState::State(_, 6)));
    drop(db);
    let q = SledQueue::open(dir.path(), &QueueConfig::default()).expect("reopen");
    assert_ready(&q, 6..=10);
}

/// A state value that fails its checksum loses the watermark too: the counters are
/// recounted exactly, the acked records are ready again (sent again, harmlessly), and ids
/// keep increasing.
#[test]
fn a_damaged_state_is_recounted_and_acked_records_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    ten_with_four_acked(dir.path());
    {
        let db = first_segment(dir.path());
        let mut raw = db.get(COUNTERS_KEY).expect("get").expect("state").to_vec();
        raw[50] ^= 0x10; // inside the watermark
        db.insert(COUNTERS_KEY, raw).expect("damage");
        db.flush().expect("flush");
    }
    let q = SledQueue::open(dir.path(), &QueueConfig::default()).expect("open");
    assert_ready(&q, 1..=10);
    let next = q.append_blocking(vec![payload(11)]).expect("append");
    assert_eq!(next, [RecordId(11)]);
}
