//! Tests of the segment set: legacy layout, rolls, crash leftovers, removal, bounded memory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::record::{HEADER_LEN, Stored};
use super::store::{Counters, READY, Store, key};
use super::*;

fn tiny() -> QueueConfig {
    QueueConfig {
        segment_records: 4,
        ..QueueConfig::default()
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!(r#"{{"n":{i}}}"#).into_bytes()
}

fn ids(records: &[QueuedRecord]) -> Vec<u64> {
    records.iter().map(|r| r.id.0).collect()
}

/// Names of the entries of `DATA_DIR/segments`, sorted.
fn segment_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("segments"))
        .expect("segments dir")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn seg(first: u64) -> String {
    format!("{first:020}")
}

fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join("segments").join(seg(first))
}

/// Appends `n` records in batches of 4 (one commit each, so one segment each with `tiny`).
fn append_n(q: &SledQueue, from: u64, n: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut i = from;
    while i < from + n {
        let end = (i + 4).min(from + n);
        let got = q
            .append_blocking((i..end).map(payload).collect())
            .expect("append");
        out.extend(got.into_iter().map(|id| id.0));
        i = end;
    }
    out
}

/// A queue as the code before segments wrote it: one sled database in `DATA_DIR/queue`
/// with the same key layout and counters.
fn write_legacy_queue(dir: &Path, n: u64) {
    let mut store = Store::open(&dir.join("queue"), 4 << 20, 1).expect("legacy store");
    let mut batch = sled::Batch::default();
    let mut c = Counters::default();
    for id in 1..=n {
        let rec = Stored {
            attempts: 0,
            enqueued_ms: 1_700_000_000_000,
            nacked_ms: 0,
            retry_ms: 0,
            payload: payload(id),
        }
        .encode(id);
        c.ready += 1;
        c.ready_bytes += rec.len() as u64;
        batch.insert(&key(READY, id), rec);
    }
    c.next_id = n + 1;
    store.apply(batch, c).expect("apply");
    store.close().expect("close");
}

#[test]
fn a_legacy_queue_dir_is_read_as_the_first_segment_and_removed_once_drained() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_legacy_queue(dir.path(), 10);
    let q = SledQueue::open(dir.path(), &tiny()).expect("open");
    assert_eq!(q.stats().expect("stats").depth, 10);
    // The legacy database is the full head: the next commit rolls to `segments/…11`.
    assert_eq!(append_n(&q, 11, 6), (11..=16).collect::<Vec<_>>());
    assert!(seg_path(dir.path(), 11).is_dir());
    let peeked = q.peek(100).expect("peek");
    assert_eq!(ids(&peeked), (1..=16).collect::<Vec<_>>());
    assert_eq!(peeked[0].payload, payload(1));
    drop(q);

    let q = SledQueue::open(dir.path(), &tiny()).expect("reopen");
    assert_eq!(q.stats().expect("stats").depth, 16);
    let legacy: Vec<RecordId> = (1..=10).map(RecordId).collect();
    q.ack(&legacy).expect("ack legacy records");
    assert!(
        !dir.path().join("queue").exists(),
        "drained legacy db removed"
    );
    assert_eq!(
        ids(&q.peek(100).expect("peek")),
        (11..=16).collect::<Vec<_>>()
    );
    assert_eq!(q.stats().expect("stats").next_id, 17);
}

#[test]
fn ids_increase_strictly_across_rolls_and_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &tiny()).expect("open");
    let mut all = append_n(&q, 1, 10);
    drop(q);
    let q = SledQueue::open(dir.path(), &tiny()).expect("reopen");
    all.extend(append_n(&q, 11, 7));
    assert_eq!(all, (1..=17).collect::<Vec<_>>());
    // 9..=14 share a segment: the roll happens before the commit that finds the head full.
    assert_eq!(segment_dirs(dir.path()), [seg(1), seg(5), seg(9), seg(15)]);
    // Everything acked (every sealed segment removed), reopened: ids are not reused.
    q.ack(&all.iter().copied().map(RecordId).collect::<Vec<_>>())
        .expect("ack");
    assert_eq!(segment_dirs(dir.path()), [seg(15)], "only the head is kept");
    drop(q);
    let q = SledQueue::open(dir.path(), &tiny()).expect("reopen");
    assert_eq!(append_n(&q, 18, 1), [18]);
}

#[test]
fn a_drained_segment_is_removed_from_disk_and_dead_letters_keep_theirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &tiny()).expect("open");
    append_n(&q, 1, 12);
    assert_eq!(segment_dirs(dir.path()), [seg(1), seg(5), seg(9)]);
    q.dead_letter(RecordId(6), "refused".into()).expect("dead");
    q.ack(&(1..=8).map(RecordId).collect::<Vec<_>>())
        .expect("ack");
    assert_eq!(
        segment_dirs(dir.path()),
        [seg(5), seg(9)],
        "segment 1 removed; segment 5 keeps its dead letter"
    );
    assert_eq!(q.purge_dead().expect("purge"), 1);
    assert_eq!(segment_dirs(dir.path()), [seg(9)]);
    let stats = q.stats().expect("stats");
    assert_eq!((stats.depth, stats.dead_letters), (4, 0));
    assert_eq!(
        stats.bytes_on_disk,
        super::store::dir_bytes(&seg_path(dir.path(), 9))
    );
}

#[test]
fn a_crash_inside_a_roll_or_a_delete_leaves_a_queue_that_opens_consistently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &tiny()).expect("open");
    append_n(&q, 1, 8);
    q.ack(&[RecordId(5), RecordId(6)]).expect("ack");
    drop(q);
    // Crash right after the roll created the new head's directory (no database, no counters
    // yet), and in the middle of removing two segments.
    std::fs::create_dir(seg_path(dir.path(), 9)).expect("empty new head");
    let doomed = dir
        .path()
        .join("segments")
        .join(format!("{}.deleting", seg(3)));
    std::fs::create_dir_all(doomed.join("blobs")).expect("half-removed segment");
    std::fs::write(doomed.join("db"), b"partial").expect("write");
    std::fs::create_dir(dir.path().join("queue.deleting")).expect("half-removed legacy");
    // And a crash while a later roll was creating its segment (never renamed to its name).
    let creating = dir
        .path()
        .join("segments")
        .join(format!("{}.creating", seg(11)));
    std::fs::create_dir_all(&creating).expect("half-created segment");
    std::fs::write(creating.join("conf"), b"partial").expect("write");

    let q = SledQueue::open(dir.path(), &tiny()).expect("reopen");
    assert!(!doomed.exists() && !dir.path().join("queue.deleting").exists());
    assert!(!creating.exists(), "a half-created segment is removed");
    assert_eq!(segment_dirs(dir.path()), [seg(1), seg(5), seg(9)]);
    assert_eq!(ids(&q.peek(10).expect("peek")), [1, 2, 3, 4, 7, 8]);
    assert_eq!(
        append_n(&q, 9, 2),
        [9, 10],
        "the empty head's next id is its name"
    );
    drop(q);
    let q = SledQueue::open(dir.path(), &tiny()).expect("reopen");
    assert_eq!(q.stats().expect("stats").next_id, 11);
}

#[test]
fn stats_totals_equal_the_sum_over_segments_after_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &tiny()).expect("open");
    append_n(&q, 1, 14);
    q.dead_letter(RecordId(2), "a".into()).expect("dead");
    q.dead_letter(RecordId(10), "b".into()).expect("dead");
    q.nack(RecordId(6), Duration::from_secs(3600))
        .expect("nack");
    q.ack(&[RecordId(7), RecordId(13)]).expect("ack");
    let before = q.stats().expect("stats");
    drop(q);
    let q = SledQueue::open(dir.path(), &tiny()).expect("reopen");
    let after = q.stats().expect("stats");
    let waiting = q.list_waiting(RecordId(0), 100).expect("list");
    let dead = q.list_dead(100).expect("dead");
    let want_bytes: u64 = waiting
        .iter()
        .map(|r| (HEADER_LEN + r.payload.len()) as u64)
        .sum();
    assert_eq!(after.depth, waiting.len() as u64);
    assert_eq!(after.depth, 10);
    assert_eq!(after.bytes, want_bytes);
    assert_eq!(after.dead_letters, dead.len() as u64);
    assert_eq!(
        (
            after.depth,
            after.bytes,
            after.dead_letters,
            after.dead_letter_bytes,
            after.next_id
        ),
        (
            before.depth,
            before.bytes,
            before.dead_letters,
            before.dead_letter_bytes,
            before.next_id
        )
    );
    assert_eq!(ids(&q.peek(3).expect("peek")), [1, 3, 4], "delay survives");
    assert_eq!(q.oldest_waiting().expect("oldest"), Some(RecordId(1)));
}

#[test]
fn at_most_two_sealed_segments_are_open_besides_the_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &tiny()).expect("open");
    append_n(&q, 1, 40);
    drop(q);
    let q = SledQueue::open(dir.path(), &tiny()).expect("reopen");
    assert_eq!(q.open_segments(), 1, "only the head is opened at start");
    assert_eq!(q.peek(100).expect("peek").len(), 40);
    assert_eq!(q.list_dead(10).expect("dead").len(), 0);
    assert!(q.open_segments() <= 3, "{} open", q.open_segments());
    // A segment whose ready records are all delayed is passed over for the next one.
    for id in 1..=4 {
        q.nack(RecordId(id), Duration::from_secs(3600))
            .expect("nack");
    }
    assert_eq!(ids(&q.peek(2).expect("peek")), [5, 6]);
    assert_eq!(q.stats().expect("stats").delayed, 4);
}

#[test]
fn the_limits_count_every_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limited = QueueConfig {
        max_records: 10,
        ..tiny()
    };
    let q = SledQueue::open(dir.path(), &limited).expect("open");
    append_n(&q, 1, 10);
    assert_eq!(
        q.append_blocking(vec![payload(11)]),
        Err(QueueError::Full(FullReason::Records { limit: 10 }))
    );
    q.ack(&[RecordId(1)]).expect("ack");
    assert_eq!(q.append_blocking(vec![payload(11)]), Ok(vec![RecordId(11)]));
}

#[test]
fn a_snapshot_sled_was_writing_at_a_crash_does_not_fail_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &tiny()).expect("open");
    append_n(&q, 1, 3);
    drop(q);
    // What a SIGKILL during sled's snapshot write leaves: an empty `.generating` file with a
    // higher lsn than the real snapshot (sled 0.34 would read it as the snapshot).
    let leftover = seg_path(dir.path(), 1).join("snap.7FFFFFFFFFFFFFFF.generating");
    std::fs::write(&leftover, b"").expect("write");
    let q = SledQueue::open(dir.path(), &tiny()).expect("reopen");
    assert_eq!(ids(&q.peek(10).expect("peek")), [1, 2, 3]);
    assert!(!leftover.exists());
}

/// Acks in order move the watermark instead of removing records; acked records stay acked
/// across a reopen, a nack or dead letter of an acked id finds nothing, and a dead letter
/// below the watermark can still be requeued under its own id.
#[test]
fn acks_in_order_move_the_watermark_and_acked_records_stay_acked_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = QueueConfig::default();
    let q = SledQueue::open(dir.path(), &cfg).expect("open");
    let all: Vec<RecordId> = q
        .append_blocking((1..=10).map(payload).collect())
        .expect("append");
    q.dead_letter(all[1], "refused".into()).expect("dead");
    q.nack(all[5], Duration::from_secs(3600)).expect("nack");
    // 1, 3, 4, 5 are the run from the oldest ready key (2 is dead): the watermark moves to 6;
    // 6 is delayed and not acked, so 7 and 8 are removed one by one.
    let acked = [all[0], all[2], all[3], all[4], all[6], all[7]];
    q.ack(&acked).expect("ack");
    let left = [all[5].0, all[8].0, all[9].0];
    assert_eq!(ids(&q.list_waiting(RecordId(0), 100).expect("list")), left);
    assert_eq!(q.stats().expect("stats").depth, 3);
    drop(q);
    let q = SledQueue::open(dir.path(), &cfg).expect("reopen");
    assert_eq!(ids(&q.list_waiting(RecordId(0), 100).expect("list")), left);
    let stats = q.stats().expect("stats");
    assert_eq!(stats.depth, 3);
    assert_eq!(
        stats.bytes,
        [6u64, 9, 10]
            .iter()
            .map(|i| (HEADER_LEN + payload(*i).len()) as u64)
            .sum::<u64>()
    );
    assert_eq!(q.oldest_waiting().expect("oldest"), Some(all[5]));
    assert!(matches!(
        q.nack(all[0], Duration::ZERO),
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(
        q.dead_letter(all[3], "late".into()),
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(q.get(all[4]), Err(QueueError::NotFound(_))));
    // Record 2 went dead below the watermark: requeued under its own id, ready again.
    assert_eq!(q.requeue_dead(None).expect("requeue"), 1);
    assert_eq!(
        ids(&q.list_waiting(RecordId(0), 100).expect("list")),
        [all[1].0, all[5].0, all[8].0, all[9].0]
    );
    q.ack(&[all[1], all[8], all[9]]).expect("ack");
    assert_eq!(
        ids(&q.peek(10).expect("peek")),
        Vec::<u64>::new(),
        "6 is delayed"
    );
    assert_eq!(q.stats().expect("stats").depth, 1);
}

/// A head that the uploader keeps drained rolls once enough acked records sit below its
/// watermark, so their disk space comes back with the old head's directory.
#[test]
fn a_drained_head_with_many_acked_records_rolls_and_gives_their_space_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SledQueue::open(dir.path(), &QueueConfig::default()).expect("open");
    let mut acked = 0u64;
    while acked < 5000 {
        let got = q
            .append_blocking((0..500).map(|i| payload(acked + i)).collect())
            .expect("append");
        q.ack(&got).expect("ack");
        acked += 500;
        if acked < 4096 {
            assert_eq!(
                segment_dirs(dir.path()),
                [seg(1)],
                "no roll before 4096 acked"
            );
        }
    }
    assert_eq!(
        segment_dirs(dir.path()),
        [seg(4501)],
        "the drained head rolled at the ack that passed 4096 and its directory is gone"
    );
    let stats = q.stats().expect("stats");
    assert_eq!((stats.depth, stats.next_id), (0, 5001));
    let next = q.append_blocking(vec![payload(1)]).expect("append");
    assert_eq!(next, [RecordId(5001)]);
}

/// Reads go by id and find the next stored one with a range lookup after 32 missing ids: a
/// run of 100 dead letters in the middle is passed by peek, by an ack's watermark walk and
/// after a reopen, and pending-ack runs on either side of it are skipped.
#[test]
fn peeks_and_acks_pass_long_runs_of_missing_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = QueueConfig::default();
    let q = SledQueue::open(dir.path(), &cfg).expect("open");
    let all: Vec<RecordId> = q
        .append_blocking((1..=300).map(payload).collect())
        .expect("append");
    for id in &all[100..200] {
        q.dead_letter(*id, "refused".into()).expect("dead");
    }
    let expected: Vec<u64> = (1..=100).chain(201..=300).collect();
    assert_eq!(ids(&q.peek(1000).expect("peek")), expected);
    // Records 1..=90 wait for their ack: the peek starts after them and crosses the gap.
    let pending: Vec<RecordId> = all[..90].to_vec();
    assert_eq!(
        ids(&q.peek_skipping(20, &pending).expect("peek")),
        (91..=100).chain(201..=210).collect::<Vec<u64>>()
    );
    // A pending run just after the gap is skipped too.
    let pending: Vec<RecordId> = all[..100].iter().chain(&all[200..250]).copied().collect();
    assert_eq!(
        ids(&q.peek_skipping(5, &pending).expect("peek")),
        [251, 252, 253, 254, 255]
    );
    // Acking 1..=250 moves the watermark over the gap: one key, no removes.
    q.ack(&pending).expect("ack");
    assert_eq!(q.stats().expect("stats").depth, 50);
    drop(q);
    let q = SledQueue::open(dir.path(), &cfg).expect("reopen");
    assert_eq!(
        ids(&q.peek(1000).expect("peek")),
        (251..=300).collect::<Vec<u64>>()
    );
    assert_eq!(q.stats().expect("stats").depth, 50);
    // The dead letters are still there and come back under their ids, below the watermark.
    assert_eq!(q.requeue_dead(None).expect("requeue"), 100);
    let waiting = ids(&q.list_waiting(RecordId(0), 1000).expect("list"));
    assert_eq!(waiting, (101..=200).chain(251..=300).collect::<Vec<u64>>());
    assert_eq!(ids(&q.peek(1000).expect("peek")), waiting);
}
