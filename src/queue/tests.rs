//! Engine tests: behaviour, limits, locking, corruption, and a model-based property test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn cfg() -> QueueConfig {
    QueueConfig::default()
}

fn payload(i: u64) -> Vec<u8> {
    format!(r#"{{"resourceType":"Observation","n":{i}}}"#).into_bytes()
}

/// Payloads whose lengths differ widely, so that a byte counter off by one record shows.
fn varied_payload(i: u64) -> Vec<u8> {
    let pad = "x".repeat((i * 37 % 300) as usize);
    format!(r#"{{"resourceType":"Observation","n":{i},"pad":"{pad}"}}"#).into_bytes()
}

fn ids(records: &[QueuedRecord]) -> Vec<u64> {
    records.iter().map(|r| r.id.0).collect()
}

#[test]
fn append_peek_ack_in_order_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &cfg()).expect("open");
    let a = q
        .append_blocking(vec![payload(1), payload(2)])
        .expect("append");
    let b = q.append_blocking(vec![payload(3)]).expect("append");
    assert_eq!(a, vec![RecordId(1), RecordId(2)]);
    assert_eq!(b, vec![RecordId(3)]);
    let peeked = q.peek(10).expect("peek");
    assert_eq!(ids(&peeked), [1, 2, 3]);
    assert_eq!(peeked[1].payload, payload(2));
    q.ack(&[RecordId(1)]).expect("ack");
    drop(q);

    let q = SledQueue::open(dir.path(), &cfg()).expect("reopen");
    assert_eq!(ids(&q.peek(10).expect("peek")), [2, 3]);
    // Ids are never reused, even after every record was acked.
    q.ack(&[RecordId(2), RecordId(3)]).expect("ack");
    drop(q);
    let q = SledQueue::open(dir.path(), &cfg()).expect("reopen");
    assert_eq!(
        q.append_blocking(vec![payload(4)]).expect("append"),
        [RecordId(4)]
    );
    let stats = q.stats().expect("stats");
    assert_eq!((stats.depth, stats.next_id), (1, 5));
}

#[test]
fn nack_hides_until_retry_and_counts_attempts_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &cfg()).expect("open");
    q.append_blocking(vec![payload(1), payload(2)])
        .expect("append");
    q.nack(RecordId(1), Duration::from_secs(3600))
        .expect("nack");
    q.nack(RecordId(2), Duration::ZERO).expect("nack");
    let peeked = q.peek(10).expect("peek");
    assert_eq!(ids(&peeked), [2]);
    assert_eq!(peeked[0].attempts, 1);
    assert_eq!(q.stats().expect("stats").delayed, 1);
    drop(q);
    let q = SledQueue::open(dir.path(), &cfg()).expect("reopen");
    assert_eq!(
        ids(&q.peek(10).expect("peek")),
        [2],
        "delay survives reopen"
    );
    assert_eq!(ids(&q.list_waiting(RecordId(0), 10).expect("list")), [1, 2]);
}

#[test]
fn dead_letters_keep_reason_and_can_be_requeued_or_purged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &cfg()).expect("open");
    q.append_blocking((1..=3).map(payload).collect())
        .expect("append");
    q.nack(RecordId(2), Duration::ZERO).expect("nack");
    q.dead_letter(RecordId(2), "OperationOutcome: invalid".into())
        .expect("dead");
    q.dead_letter(RecordId(3), "gone".into()).expect("dead");
    assert_eq!(ids(&q.peek(10).expect("peek")), [1]);
    let dead = q.list_dead(10).expect("list");
    assert_eq!(dead.len(), 2);
    assert_eq!(
        (dead[0].reason.as_str(), dead[0].attempts),
        ("OperationOutcome: invalid", 1)
    );
    assert_eq!(dead[0].payload, payload(2));
    assert_eq!(q.requeue_dead(Some(RecordId(2))).expect("requeue"), 1);
    let peeked = q.peek(10).expect("peek");
    assert_eq!(ids(&peeked), [1, 2], "requeued record keeps its place");
    assert_eq!(peeked[1].attempts, 0);
    assert_eq!(q.purge_dead().expect("purge"), 1);
    let stats = q.stats().expect("stats");
    assert_eq!((stats.depth, stats.dead_letters), (2, 0));
    assert_eq!(
        q.dead_letter(RecordId(9), "x".into()),
        Err(QueueError::NotFound(RecordId(9)))
    );
}

#[test]
fn limits_refuse_then_recover_after_ack_without_dropping_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limited = QueueConfig {
        max_records: 3,
        ..cfg()
    };
    let q = SledQueue::open(dir.path(), &limited).expect("open");
    q.append_blocking((1..=3).map(payload).collect())
        .expect("append");
    let refused = q.append_blocking(vec![payload(4)]);
    assert_eq!(
        refused,
        Err(QueueError::Full(FullReason::Records { limit: 3 }))
    );
    assert!(q.stats().expect("stats").full.is_some());
    assert_eq!(
        ids(&q.peek(10).expect("peek")),
        [1, 2, 3],
        "nothing dropped"
    );
    q.ack(&[RecordId(1)]).expect("ack");
    assert_eq!(q.stats().expect("stats").full, None);
    assert_eq!(q.append_blocking(vec![payload(4)]), Ok(vec![RecordId(4)]));

    let big = vec![0u8; limited.max_record_bytes + 1];
    assert!(matches!(
        q.append_blocking(vec![big]),
        Err(QueueError::TooLarge { .. })
    ));
}

#[test]
fn byte_limit_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limited = QueueConfig {
        max_bytes: 1000,
        ..cfg()
    };
    let q = SledQueue::open(dir.path(), &limited).expect("open");
    let payload = vec![b'x'; 400];
    q.append_blocking(vec![payload.clone(), payload.clone()])
        .expect("fits");
    assert_eq!(
        q.append_blocking(vec![payload]),
        Err(QueueError::Full(FullReason::Bytes { limit: 1000 }))
    );
}

#[test]
fn second_open_of_a_held_directory_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &cfg()).expect("open");
    let second = SledQueue::open(dir.path(), &cfg());
    assert!(
        matches!(second, Err(QueueError::Locked { .. })),
        "{second:?}"
    );
    drop(q);
    SledQueue::open(dir.path(), &cfg()).expect("free again after close");
}

#[test]
fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Arc::new(SledQueue::open(dir.path(), &cfg()).expect("open"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        q.append_blocking(vec![payload(t * 1000 + i)])
                            .expect("append")[0]
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .map(|id| id.0)
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
    let commits = q.commits();
    assert!(
        commits < 400,
        "8 concurrent appenders must share flushes, got {commits}"
    );
}

/// sled leaves the leaves of one large batch unsplit for the next traversal to split; the
/// append passes them (`Store::split_appended_leaves`), so reading the records back writes
/// nothing: the uploader's peek only reads. (Without that pass the flush after the peek wrote
/// ≈ 0.27 MB here.)
#[test]
fn reading_a_large_append_back_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &cfg()).expect("open");
    let unit_sized = |i: u64| {
        let mut p = payload(i);
        p.resize(2_300, b' ');
        p
    };
    q.append_blocking((1..=1000).map(unit_sized).collect())
        .expect("append");
    assert_eq!(q.commits(), 1, "one append, one group commit");
    assert_eq!(q.flush_head(), 0, "the append's flush wrote everything");
    let peeked = q.peek(1000).expect("peek");
    assert_eq!(ids(&peeked), (1..=1000).collect::<Vec<_>>());
    assert_eq!(q.flush_head(), 0, "reading the records made sled write");
}

#[tokio::test]
async fn async_append_resolves_after_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &cfg()).expect("open");
    let (a, b) = futures::join!(q.append(vec![payload(1)]), q.append(vec![payload(2)]));
    let mut got = vec![a.expect("a")[0].0, b.expect("b")[0].0];
    got.sort_unstable();
    assert_eq!(got, [1, 2]);
    assert_eq!(q.append(Vec::new()).await, Ok(Vec::new()));
}

/// Flips one byte of record `id`'s stored value through sled itself, as bit rot below the
/// record format (but above sled's own checksums) would.
fn corrupt_record(dir: &std::path::Path, prefix: u8, id: u64) {
    let path = dir.join("segments").join(format!("{:020}", 1));
    // The queue that wrote it was just closed: its lock can linger for a moment.
    let db = store::open_retrying_lock(&sled::Config::new().path(&path), &path).expect("sled");
    let k = store::key(prefix, id);
    let mut raw = db.get(k).expect("get").expect("present").to_vec();
    let at = raw.len() - 3;
    raw[at] ^= 0x40;
    db.insert(k, raw).expect("insert");
    db.flush().expect("flush");
}

#[test]
fn corrupt_records_are_quarantined_and_the_rest_keeps_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &cfg()).expect("open");
    q.append_blocking((1..=5).map(payload).collect())
        .expect("append");
    q.dead_letter(RecordId(5), "bad".into()).expect("dead");
    drop(q);
    corrupt_record(dir.path(), store::READY, 2);
    corrupt_record(dir.path(), store::DEAD, 5);

    let q = SledQueue::open(dir.path(), &cfg()).expect("reopen");
    let peeked = q.peek(10).expect("peek");
    assert_eq!(ids(&peeked), [1, 3, 4]);
    assert_eq!(peeked[1].payload, payload(3));
    assert!(q.list_dead(10).expect("dead").is_empty());
    let stats = q.stats().expect("stats");
    assert_eq!(
        (stats.depth, stats.dead_letters, stats.quarantined),
        (3, 0, 2)
    );
    let quarantined = q.list_quarantined(10).expect("list");
    assert_eq!(
        quarantined.iter().map(|(id, _)| id.0).collect::<Vec<_>>(),
        [2, 5]
    );
    assert!(matches!(q.get(RecordId(2)), Ok(Entry::Quarantined(_))));
    q.ack(&[RecordId(1), RecordId(3)]).expect("ack");
    assert_eq!(q.append_blocking(vec![payload(6)]), Ok(vec![RecordId(6)]));
    assert_eq!(ids(&q.peek(10).expect("peek")), [4, 6]);
}

// ---- model-based property test ----

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Peek(u8),
    /// Peek past the first `n` ready records, given as the ids to skip (the uploader's
    /// pending acks; runs of 4 or more are passed by a seek).
    PeekSkipping(u8),
    AckFirst(u8),
    /// Ack the second ready record alone (out of order: it is removed, not passed).
    AckSecond,
    /// Nack the first ready record; `true` hides it for an hour.
    NackFirst(bool),
    DeadFirst,
    RequeueAll,
    PurgeDead,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..4).prop_map(Op::Append),
        2 => (1u8..6).prop_map(Op::Peek),
        1 => (1u8..9).prop_map(Op::PeekSkipping),
        2 => (1u8..4).prop_map(Op::AckFirst),
        1 => Just(Op::AckSecond),
        1 => any::<bool>().prop_map(Op::NackFirst),
        1 => Just(Op::DeadFirst),
        1 => Just(Op::RequeueAll),
        1 => Just(Op::PurgeDead),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelRecord {
    payload: Vec<u8>,
    attempts: u32,
    hidden: bool,
}

#[derive(Default)]
struct Model {
    next_id: u64,
    waiting: BTreeMap<u64, ModelRecord>,
    dead: BTreeMap<u64, ModelRecord>,
}

impl Model {
    fn ready(&self, max: usize) -> Vec<(u64, Vec<u8>, u32)> {
        self.waiting
            .iter()
            .filter(|(_, r)| !r.hidden)
            .take(max)
            .map(|(id, r)| (*id, r.payload.clone(), r.attempts))
            .collect()
    }
}

fn view(records: Vec<QueuedRecord>) -> Vec<(u64, Vec<u8>, u32)> {
    records
        .into_iter()
        .map(|r| (r.id.0, r.payload, r.attempts))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn queue_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(&cfg(), ops)?;
    }

}

proptest! {
    // Fewer cases: every roll and removal fsyncs, so a case costs ~10× the one above.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Segments of 4 records: rolls, routing across segments, removal of drained segments
    /// and reopen with many segments are exercised by the same model.
    #[test]
    fn tiny_segments_behave_like_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_model(&tiny_segments(), ops)?;
    }
}

fn tiny_segments() -> QueueConfig {
    QueueConfig {
        segment_records: 4,
        ..cfg()
    }
}

fn run_model(cfg: &QueueConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = SledQueue::open(dir.path(), cfg).expect("open");
        let mut m = Model {
            next_id: 1,
            ..Model::default()
        };
        let mut counter = 0u64;
        for op in ops {
            match op {
                Op::Append(n) => {
                    let payloads: Vec<Vec<u8>> = (0..n)
                        .map(|_| {
                            counter += 1;
                            varied_payload(counter)
                        })
                        .collect();
                    let got = q.append_blocking(payloads.clone()).expect("append");
                    let want: Vec<RecordId> =
                        (0..u64::from(n)).map(|i| RecordId(m.next_id + i)).collect();
                    prop_assert_eq!(got, want);
                    for p in payloads {
                        m.waiting.insert(
                            m.next_id,
                            ModelRecord {
                                payload: p,
                                attempts: 0,
                                hidden: false,
                            },
                        );
                        m.next_id += 1;
                    }
                }
                Op::Peek(max) => {
                    prop_assert_eq!(view(q.peek(max.into()).expect("peek")), m.ready(max.into()));
                }
                Op::PeekSkipping(n) => {
                    let ready = m.ready(usize::from(n) + 3);
                    let skip: Vec<RecordId> =
                        ready.iter().take(n.into()).map(|r| RecordId(r.0)).collect();
                    let want: Vec<_> = ready.into_iter().skip(n.into()).collect();
                    prop_assert_eq!(view(q.peek_skipping(3, &skip).expect("peek")), want);
                }
                Op::AckFirst(k) => {
                    let ids: Vec<u64> = m.ready(k.into()).into_iter().map(|r| r.0).collect();
                    q.ack(&ids.iter().copied().map(RecordId).collect::<Vec<_>>())
                        .expect("ack");
                    for id in ids {
                        m.waiting.remove(&id);
                    }
                }
                Op::AckSecond => {
                    if let Some((id, ..)) = m.ready(2).into_iter().nth(1) {
                        q.ack(&[RecordId(id)]).expect("ack");
                        m.waiting.remove(&id);
                    }
                }
                Op::NackFirst(hide) => {
                    if let Some((id, ..)) = m.ready(1).into_iter().next() {
                        let delay = if hide {
                            Duration::from_secs(3600)
                        } else {
                            Duration::ZERO
                        };
                        q.nack(RecordId(id), delay).expect("nack");
                        let r = m.waiting.get_mut(&id).expect("model has it");
                        r.attempts += 1;
                        r.hidden = hide;
                    }
                }
                Op::DeadFirst => {
                    if let Some((id, ..)) = m.ready(1).into_iter().next() {
                        q.dead_letter(RecordId(id), format!("reason {id}"))
                            .expect("dead");
                        let r = m.waiting.remove(&id).expect("model has it");
                        m.dead.insert(id, r);
                    }
                }
                Op::RequeueAll => {
                    let moved = q.requeue_dead(None).expect("requeue");
                    prop_assert_eq!(moved, m.dead.len() as u64);
                    for (id, mut r) in std::mem::take(&mut m.dead) {
                        r.attempts = 0;
                        r.hidden = false;
                        m.waiting.insert(id, r);
                    }
                }
                Op::PurgeDead => {
                    prop_assert_eq!(q.purge_dead().expect("purge"), m.dead.len() as u64);
                    m.dead.clear();
                }
                Op::Reopen => {
                    drop(q);
                    q = SledQueue::open(dir.path(), cfg).expect("reopen");
                }
            }
            let oldest = m.waiting.keys().next().copied().map(RecordId);
            prop_assert_eq!(q.oldest_waiting().expect("oldest"), oldest);
            let all_waiting: Vec<u64> = ids(&q.list_waiting(RecordId(0), 1000).expect("list"));
            prop_assert_eq!(all_waiting, m.waiting.keys().copied().collect::<Vec<_>>());
            let stats = q.stats().expect("stats");
            prop_assert_eq!(stats.depth, m.waiting.len() as u64);
            let model_bytes: u64 = m
                .waiting
                .values()
                .map(|r| (record::HEADER_LEN + r.payload.len()) as u64)
                .sum();
            prop_assert_eq!(stats.bytes, model_bytes);
            prop_assert_eq!(stats.dead_letters, m.dead.len() as u64);
            prop_assert_eq!(stats.next_id, m.next_id);
            let dead: Vec<(u64, Vec<u8>, String)> = q
                .list_dead(1000)
                .expect("dead")
                .into_iter()
                .map(|d| (d.id.0, d.payload, d.reason))
                .collect();
            let model_dead: Vec<(u64, Vec<u8>, String)> = m
                .dead
                .iter()
                .map(|(id, r)| (*id, r.payload.clone(), format!("reason {id}")))
                .collect();
            prop_assert_eq!(dead, model_dead);
        }
    }
    Ok(())
}

#[test]
fn oldest_waiting_counts_delayed_records_but_not_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &cfg()).expect("open");
    assert_eq!(q.oldest_waiting().expect("oldest"), None);
    q.append_blocking(vec![payload(1), payload(2), payload(3)])
        .expect("append");
    q.nack(RecordId(1), Duration::from_secs(3600))
        .expect("nack");
    // Hidden from peek, still the oldest waiting record.
    assert_eq!(ids(&q.peek(10).expect("peek")), [2, 3]);
    assert_eq!(q.oldest_waiting().expect("oldest"), Some(RecordId(1)));
    q.dead_letter(RecordId(1), "refused".into()).expect("dead");
    assert_eq!(q.oldest_waiting().expect("oldest"), Some(RecordId(2)));
    q.ack(&[RecordId(2), RecordId(3)]).expect("ack");
    assert_eq!(q.oldest_waiting().expect("oldest"), None);
}

#[test]
fn files_sled_cannot_read_as_its_own_are_corruption_not_a_temporary_error() {
    // A damaged `conf` file makes sled answer `Unsupported` at open (seen in
    // tests/reliability_bad_input.rs); restarting cannot fix it.
    let err = store::from_sled(sled::Error::Unsupported("failed to open database".into()));
    assert!(matches!(err, QueueError::Corrupt(_)), "{err:?}");
    assert!(!err.is_temporary());
}

#[test]
fn peek_skipping_passes_over_the_given_ids_like_the_default_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &cfg()).expect("open");
    let all = q
        .append_blocking((1..=6).map(payload).collect())
        .expect("append");
    q.nack(all[4], Duration::from_secs(3600)).expect("nack");
    let skip = [all[0], all[1], all[3]];
    let got = q.peek_skipping(2, &skip).expect("peek");
    assert_eq!(
        ids(&got),
        vec![all[2].0, all[5].0],
        "skipped and delayed left out"
    );
    assert_eq!(
        q.stats().expect("stats").depth,
        6,
        "skipping removes nothing"
    );
}
