//! `SledQueue`: the [`DurableQueue`] engine on sled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::commit::{self, Pending, Request, Shared};
use super::lock::DirLock;
use super::read_span::AckedRun;
use super::record::{Stored, StoredDead, from_ms, to_ms};
use super::segments::Segments;
use super::store::{Counters, DEAD, QUARANTINE, READY, Store, from_sled, id_of, key};
use super::{
    DeadLetter, DurableQueue, QueueConfig, QueueError, QueueStats, QueuedRecord, RecordId,
};

/// Any stored entry, for `queue show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Waiting(QueuedRecord),
    Dead(DeadLetter),
    /// Raw bytes of a record that failed its checksum.
    Quarantined(Vec<u8>),
}

/// The durable queue on sled (see the module doc for layout and guarantees).
pub struct SledQueue {
    shared: Arc<Shared>,
    committer: Option<JoinHandle<()>>,
    dir: PathBuf,
    // Declared last: released only after sled is closed.
    _lock: DirLock,
}

impl std::fmt::Debug for SledQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledQueue").field("dir", &self.dir).finish()
    }
}

impl SledQueue {
    /// Opens (or creates) the queue in `dir`, taking its exclusive lock.
    pub fn open(dir: &Path, cfg: &QueueConfig) -> Result<Self, QueueError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| QueueError::Io(format!("create {}: {e}", dir.display())))?;
        let lock = DirLock::acquire(dir)?;
        let segs = Segments::open(dir, cfg)?;
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            segs: Mutex::new(segs),
            pending: Mutex::new(Pending::default()),
            wake: parking_lot::Condvar::new(),
            commits: Default::default(),
        });
        let thread_shared = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("queue-commit".into())
            .spawn(move || commit::run(thread_shared))
            .map_err(|e| QueueError::Io(format!("start commit thread: {e}")))?;
        Ok(Self {
            shared,
            committer: Some(committer),
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// Queues the payloads for the next group commit; the receiver resolves once durable.
    fn submit(
        &self,
        payloads: Vec<Vec<u8>>,
    ) -> Result<oneshot::Receiver<Result<Vec<RecordId>, QueueError>>, QueueError> {
        let limit = self.shared.cfg.max_record_bytes;
        if let Some(p) = payloads.iter().find(|p| p.len() > limit) {
            return Err(QueueError::TooLarge {
                size: p.len(),
                limit,
            });
        }
        let (reply, rx) = oneshot::channel();
        let mut pending = self.shared.pending.lock();
        if pending.shutdown {
            return Err(QueueError::Closed);
        }
        pending.requests.push(Request { payloads, reply });
        drop(pending);
        self.shared.wake.notify_one();
        Ok(rx)
    }

    /// `append` for callers without an async runtime (CLI, benchmark, tests). Must not be
    /// called from inside an async task.
    pub fn append_blocking(&self, payloads: Vec<Vec<u8>>) -> Result<Vec<RecordId>, QueueError> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(payloads)?
            .blocking_recv()
            .unwrap_or(Err(QueueError::Closed))
    }

    /// How many group commits (durable flushes of appends) ran since open.
    pub fn commits(&self) -> u64 {
        self.shared
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Flushes the head segment's sled log; returns the bytes sled wrote (tests: what reads
    /// left to write).
    #[cfg(test)]
    pub(super) fn flush_head(&self) -> usize {
        let mut segs = self.shared.segs.lock();
        let db = segs.head_store().expect("head").db().expect("open");
        db.flush().expect("flush")
    }

    /// How many segment databases are open now (the head included); at most 1 + 2.
    pub fn open_segments(&self) -> usize {
        self.shared.segs.lock().open_count()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waiting records (ready and delayed) with id ≥ `from`, in order.
    pub fn list_waiting(
        &self,
        from: RecordId,
        max: usize,
    ) -> Result<Vec<QueuedRecord>, QueueError> {
        self.scan_ready(from, max, None, &[])
    }

    /// Quarantined entries (id, raw bytes) in order.
    pub fn list_quarantined(&self, max: usize) -> Result<Vec<(RecordId, Vec<u8>)>, QueueError> {
        let mut segs = self.shared.segs.lock();
        let mut out = Vec::new();
        for first in segs.firsts() {
            if out.len() >= max {
                break;
            }
            if segs
                .segment(first)
                .is_none_or(|s| s.counters().quarantined == 0)
            {
                continue;
            }
            let store = segs.store(first)?;
            for item in store.db()?.scan_prefix([QUARANTINE]).take(max - out.len()) {
                let (k, v) = item.map_err(from_sled)?;
                if let Some(id) = id_of(&k) {
                    out.push((RecordId(id), v.to_vec()));
                }
            }
        }
        Ok(out)
    }

    /// One entry by id, whatever its state.
    pub fn get(&self, id: RecordId) -> Result<Entry, QueueError> {
        let mut segs = self.shared.segs.lock();
        let first = segs.route(id).ok_or(QueueError::NotFound(id))?;
        let store = segs.store(first)?;
        let acked = id.0 < store.acked_below;
        let db = store.db()?;
        if let Some(raw) = db
            .get(key(READY, id.0))
            .map_err(from_sled)?
            .filter(|_| !acked)
        {
            return match Stored::decode(id.0, &raw) {
                Ok(rec) => Ok(Entry::Waiting(waiting(id.0, rec))),
                Err(e) => {
                    store.quarantine(READY, id.0, &raw, &e.to_string());
                    Ok(Entry::Quarantined(raw.to_vec()))
                }
            };
        }
        if let Some(raw) = db.get(key(DEAD, id.0)).map_err(from_sled)? {
            return match StoredDead::decode(id.0, &raw) {
                Ok(rec) => Ok(Entry::Dead(dead(id.0, rec))),
                Err(e) => {
                    store.quarantine(DEAD, id.0, &raw, &e.to_string());
                    Ok(Entry::Quarantined(raw.to_vec()))
                }
            };
        }
        if let Some(raw) = db.get(key(QUARANTINE, id.0)).map_err(from_sled)? {
            return Ok(Entry::Quarantined(raw.to_vec()));
        }
        Err(QueueError::NotFound(id))
    }

    /// Flushes, stops the commit thread and closes every segment (also done on drop).
    pub fn close(mut self) -> Result<(), QueueError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), QueueError> {
        self.shared.pending.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
        self.shared.segs.lock().close_all()
    }

    /// Ready records from `from` on, oldest segment first; with `now`, records delayed past
    /// `now` are skipped, and so are segments known to hold only delayed records.
    fn scan_ready(
        &self,
        from: RecordId,
        max: usize,
        now: Option<Instant>,
        skip: &[RecordId],
    ) -> Result<Vec<QueuedRecord>, QueueError> {
        let mut segs = self.shared.segs.lock();
        let firsts = segs.firsts();
        let mut out = Vec::new();
        for (i, first) in firsts.iter().copied().enumerate() {
            if out.len() >= max {
                break;
            }
            if firsts.get(i + 1).is_some_and(|next| *next <= from.0) {
                continue;
            }
            let Some(seg) = segs.segment(first) else {
                continue;
            };
            if seg.counters().ready == 0 {
                continue;
            }
            if let (Some(now), Some(idle)) = (now, seg.idle_until)
                && idle > now
            {
                continue;
            }
            let store = segs.store(first)?;
            let scan = scan_store(store, from, max - out.len(), now, skip)?;
            out.extend(scan.records);
            if let Some(seg) = segs.segment_mut(first) {
                seg.idle_until = scan.idle_until;
            }
        }
        Ok(out)
    }

    fn after_removal(segs: &mut Segments) {
        let head = segs.head_first();
        if let Some(store) = segs.open_store_mut(head)
            && matches!(
                store.refusal,
                Some(super::FullReason::Records { .. } | super::FullReason::Bytes { .. })
            )
        {
            store.refusal = None;
        }
    }
}

/// What one segment's scan found.
struct Scan {
    records: Vec<QueuedRecord>,
    /// Set when the whole segment was scanned and every ready record in it is delayed: the
    /// earliest retry deadline among them.
    idle_until: Option<Instant>,
}

/// Ready records are read by id (`Tree::get`), not with a range iterator: ids are dense (one
/// per append, gaps only where records were dead-lettered or removed out of order), and in
/// sled 0.34 the pages a range iterator loads stay resident — draining a 100 000-record
/// backlog through iterators left +122 MiB resident, by id +39 MiB (docs/PERFORMANCE.md,
/// "Round 5"). Most likely why: its LRU settles accesses per shard (256
/// shards) only once 64 have queued up, and an iterator touches each leaf once, so shards
/// rarely settle and nothing is evicted; a lookup by id touches the leaf for every record
/// (and the index nodes above it), so they do. After this many ids in a row are missing, the
/// next stored id is found with one range lookup instead of probing on.
const PROBE_GAP: u64 = 32;

/// The stored ready record `id`, if any.
fn ready_record(db: &sled::Db, id: u64) -> Result<Option<sled::IVec>, QueueError> {
    db.get(key(READY, id)).map_err(from_sled)
}

/// The lowest stored ready id in `from..end` (one range lookup: a single page is read).
fn next_ready_id(db: &sled::Db, from: u64, end: u64) -> Result<Option<u64>, QueueError> {
    match db.range(key(READY, from)..key(READY, end)).keys().next() {
        None => Ok(None),
        Some(k) => Ok(id_of(&k.map_err(from_sled)?)),
    }
}

/// Steps through the stored ready ids of `from..end` in order, by id (see [`PROBE_GAP`]).
struct ReadyIds {
    next: u64,
    end: u64,
    misses: u64,
}

impl ReadyIds {
    fn new(from: u64, end: u64) -> Self {
        Self {
            next: from,
            end,
            misses: 0,
        }
    }

    /// Moves past `n` ids without reading them.
    fn skip(&mut self, n: u64) {
        self.next = self.next.saturating_add(n);
        self.misses = 0;
    }

    /// The next stored id and its record, or `None` at `end`.
    fn next(&mut self, db: &sled::Db) -> Result<Option<(u64, sled::IVec)>, QueueError> {
        while self.next < self.end {
            if self.misses >= PROBE_GAP {
                self.misses = 0;
                match next_ready_id(db, self.next, self.end)? {
                    Some(id) => self.next = id,
                    None => self.next = self.end,
                }
                continue;
            }
            let id = self.next;
            self.next += 1;
            match ready_record(db, id)? {
                Some(raw) => {
                    self.misses = 0;
                    return Ok(Some((id, raw)));
                }
                None => self.misses += 1,
            }
        }
        Ok(None)
    }

    /// The id `next` would try first.
    fn position(&self) -> u64 {
        self.next
    }
}

/// The ready ids to remove, counters and watermark that ack `ids` (sorted, unique) in `store`.
///
/// The watermark moves over the run of acked ids that starts at the lowest ready key and stops
/// at the first ready key that is not acked, so the common case — the uploader acks the oldest
/// records in order — writes one key instead of one remove per record (module doc, "Acks").
/// The run and its sizes (for the byte counter) come from what the peeks read
/// (`read_span.rs`), or else from one range walk over sled. Acked ids after that key are
/// removed one by one, as are all when the run is empty.
fn ack_plan(store: &Store, ids: &[u64]) -> Result<(Vec<u64>, Counters, u64), QueueError> {
    let db = store.db()?;
    let mut removed = Vec::new();
    let mut c = store.counters;
    let ids: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| *id >= store.acked_below)
        .collect();
    if ids.is_empty() {
        return Ok((removed, c, store.acked_below));
    }
    let run = match store.read_span.plan(store.acked_below, &ids) {
        Some(run) => run,
        None => walk_acked_run(db, store.acked_below, &ids)?,
    };
    c.ready = c.ready.saturating_sub(run.passed);
    c.ready_bytes = c.ready_bytes.saturating_sub(run.passed_bytes);
    for id in &ids[run.consumed..] {
        if let Some(raw) = ready_record(db, *id)? {
            removed.push(*id);
            c.ready = c.ready.saturating_sub(1);
            c.ready_bytes = c.ready_bytes.saturating_sub(raw.len() as u64);
        }
    }
    Ok((removed, c, run.acked_below))
}

#[cfg(test)]
thread_local! {
    /// How many acks on this thread walked sled for their run (tests: the read span is used).
    pub(super) static ACK_WALKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The run of acked `ids` (sorted, unique, not empty) from the watermark `acked_below`, read
/// from sled: one range walk that stops at the first ready key not acked.
fn walk_acked_run(db: &sled::Db, acked_below: u64, ids: &[u64]) -> Result<AckedRun, QueueError> {
    #[cfg(test)]
    ACK_WALKS.with(|walks| walks.set(walks.get() + 1));
    let last = ids.last().copied().unwrap_or(acked_below);
    let mut run = AckedRun {
        passed: 0,
        passed_bytes: 0,
        acked_below,
        consumed: 0,
    };
    // A range walk here, unlike peek: it visits pages the uploader's peek just read, so they
    // are in the cache already (and counted by its LRU).
    for item in db.range(key(READY, acked_below)..key(READY, last + 1)) {
        let (k, raw) = item.map_err(from_sled)?;
        let Some(id) = id_of(&k) else { continue };
        while ids.get(run.consumed).is_some_and(|acked| *acked < id) {
            run.consumed += 1; // acked ids that are not stored (already gone)
        }
        if ids.get(run.consumed) != Some(&id) {
            break; // a ready record that is not acked: the watermark stops here
        }
        run.passed += 1;
        run.passed_bytes += raw.len() as u64;
        run.acked_below = id + 1;
        run.consumed += 1;
    }
    Ok(run)
}

/// How many ids at the start of `ids` are consecutive (1 for a lone id, 0 for none).
fn consecutive_run(ids: &[RecordId]) -> usize {
    let Some(first) = ids.first() else { return 0 };
    ids.iter()
        .zip(first.0..)
        .take_while(|(id, expected)| id.0 == *expected)
        .count()
}

/// Ready records of one store from `from` on (see `SledQueue::scan_ready`).
fn scan_store(
    store: &mut Store,
    from: RecordId,
    max: usize,
    now: Option<Instant>,
    skip: &[RecordId],
) -> Result<Scan, QueueError> {
    let mut out = Vec::with_capacity(max.min(1024));
    let mut bad = Vec::new();
    let mut complete = true;
    let mut skipped = 0usize;
    let mut earliest: Option<Instant> = None;
    let (opened_instant, opened_ms) = store.opened_at;
    let db = store.db()?.clone();
    // Acked keys below the watermark are never read; nothing is stored at or past next_id.
    let start = from.0.max(store.acked_below);
    let mut ids = ReadyIds::new(start, store.counters.next_id);
    // Whether what this scan reads extends the store's read span (`read_span.rs`).
    let mut noting = store.read_span.scan_from(start, store.acked_below);
    loop {
        if out.len() >= max {
            complete = false;
            break;
        }
        // The uploader's pending acks are runs of consecutive ids: pass a run without reading
        // it (usually the one right at the start).
        if let Ok(at) = skip.binary_search(&RecordId(ids.position())) {
            let run = consecutive_run(&skip[at..]);
            skipped += run;
            ids.skip(run as u64);
            continue;
        }
        let at = ids.position();
        let Some((id, raw)) = ids.next(&db)? else {
            if noting {
                store.read_span.read_to_end(at, store.counters.next_id);
            }
            break;
        };
        if noting {
            noting = store.read_span.read(at, id, raw.len() as u64);
        }
        if skip.binary_search(&RecordId(id)).is_ok() {
            // Reached after a gap: pass it and its run next time round.
            skipped += 1;
            continue;
        }
        if let (Some(now), Some(due)) = (now, store.delays.get(&id))
            && *due > now
        {
            earliest = Some(earliest.map_or(*due, |e| e.min(*due)));
            continue;
        }
        let rec = match Stored::decode(id, &raw) {
            Ok(rec) => rec,
            Err(e) => {
                bad.push((id, raw.to_vec(), e.to_string()));
                continue;
            }
        };
        if rec.nacked_ms != 0 && !store.delays.contains_key(&id) {
            // Nacked before this open: remaining delay from the wall clock, clamped.
            let due_ms = rec.nacked_ms.saturating_add(u64::from(rec.retry_ms));
            let left = due_ms
                .saturating_sub(opened_ms)
                .min(u64::from(rec.retry_ms));
            let due = opened_instant + Duration::from_millis(left);
            store.delays.insert(id, due);
            if now.is_some_and(|now| due > now) {
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
                continue;
            }
        }
        out.push(waiting(id, rec));
    }
    for (id, raw, why) in bad {
        store.quarantine(READY, id, &raw, &why);
    }
    let idle_until = if complete && out.is_empty() && skipped == 0 && from.0 == 0 {
        earliest
    } else {
        None
    };
    Ok(Scan {
        records: out,
        idle_until,
    })
}

impl Drop for SledQueue {
    fn drop(&mut self) {
        if self.committer.is_some()
            && let Err(e) = self.shutdown()
        {
            tracing::warn!(error = %e, "queue close failed");
        }
    }
}

fn waiting(id: u64, rec: Stored) -> QueuedRecord {
    QueuedRecord {
        id: RecordId(id),
        attempts: rec.attempts,
        enqueued_at: from_ms(rec.enqueued_ms),
        next_attempt_at: (rec.nacked_ms != 0)
            .then(|| from_ms(rec.nacked_ms.saturating_add(u64::from(rec.retry_ms)))),
        payload: rec.payload,
    }
}

fn dead(id: u64, rec: StoredDead) -> DeadLetter {
    DeadLetter {
        id: RecordId(id),
        payload: rec.payload,
        reason: rec.reason,
        attempts: rec.attempts,
        enqueued_at: from_ms(rec.enqueued_ms),
        dead_at: from_ms(rec.dead_ms),
    }
}

impl DurableQueue for SledQueue {
    fn append(&self, payloads: Vec<Vec<u8>>) -> BoxFuture<'_, Result<Vec<RecordId>, QueueError>> {
        let submitted = if payloads.is_empty() {
            None
        } else {
            Some(self.submit(payloads))
        };
        Box::pin(async move {
            match submitted {
                None => Ok(Vec::new()),
                Some(Err(e)) => Err(e),
                Some(Ok(rx)) => rx.await.unwrap_or(Err(QueueError::Closed)),
            }
        })
    }

    fn peek(&self, max: usize) -> Result<Vec<QueuedRecord>, QueueError> {
        self.scan_ready(RecordId(0), max, Some(Instant::now()), &[])
    }

    fn peek_skipping(
        &self,
        max: usize,
        skip: &[RecordId],
    ) -> Result<Vec<QueuedRecord>, QueueError> {
        self.scan_ready(RecordId(0), max, Some(Instant::now()), skip)
    }

    fn ack(&self, ids: &[RecordId]) -> Result<(), QueueError> {
        let mut segs = self.shared.segs.lock();
        let mut by_segment: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for id in ids {
            if let Some(first) = segs.route(*id) {
                by_segment.entry(first).or_default().push(id.0);
            }
        }
        let mut removed = false;
        for (first, mut ids) in by_segment {
            ids.sort_unstable();
            ids.dedup();
            let store = segs.store(first)?;
            let (gone, c, acked_below) = ack_plan(store, &ids)?;
            if c == store.counters {
                continue;
            }
            store.apply_acks(&gone, c, acked_below)?;
            for id in &ids {
                store.delays.remove(id);
            }
            removed = true;
            if !segs.delete_if_drained(first)? {
                segs.roll_if_drained_head(first)?;
            }
        }
        if removed {
            Self::after_removal(&mut segs);
        }
        Ok(())
    }

    fn nack(&self, id: RecordId, retry_after: Duration) -> Result<(), QueueError> {
        let mut segs = self.shared.segs.lock();
        let first = segs.route(id).ok_or(QueueError::NotFound(id))?;
        let store = segs.store(first)?;
        let raw = store
            .db()?
            .get(key(READY, id.0))
            .map_err(from_sled)?
            .filter(|_| id.0 >= store.acked_below)
            .ok_or(QueueError::NotFound(id))?;
        let mut rec = match Stored::decode(id.0, &raw) {
            Ok(rec) => rec,
            Err(e) => {
                store.quarantine(READY, id.0, &raw, &e.to_string());
                return Err(QueueError::Corrupt(format!("record {id}: {e}")));
            }
        };
        rec.attempts = rec.attempts.saturating_add(1);
        rec.nacked_ms = to_ms(SystemTime::now()).max(1);
        rec.retry_ms = u32::try_from(retry_after.as_millis()).unwrap_or(u32::MAX);
        let mut batch = sled::Batch::default();
        batch.insert(&key(READY, id.0), rec.encode(id.0));
        let c = store.counters;
        store.apply(batch, c)?;
        let due = Instant::now()
            .checked_add(retry_after)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(u64::from(u32::MAX)));
        store.delays.insert(id.0, due);
        Ok(())
    }

    fn dead_letter(&self, id: RecordId, reason: String) -> Result<(), QueueError> {
        let mut segs = self.shared.segs.lock();
        let first = segs.route(id).ok_or(QueueError::NotFound(id))?;
        let store = segs.store(first)?;
        let raw = store
            .db()?
            .get(key(READY, id.0))
            .map_err(from_sled)?
            .filter(|_| id.0 >= store.acked_below)
            .ok_or(QueueError::NotFound(id))?;
        let rec = match Stored::decode(id.0, &raw) {
            Ok(rec) => rec,
            Err(e) => {
                store.quarantine(READY, id.0, &raw, &e.to_string());
                return Err(QueueError::Corrupt(format!("record {id}: {e}")));
            }
        };
        let dead = StoredDead {
            attempts: rec.attempts,
            enqueued_ms: rec.enqueued_ms,
            dead_ms: to_ms(SystemTime::now()),
            reason,
            payload: rec.payload,
        }
        .encode(id.0);
        let mut c = store.counters;
        c.ready = c.ready.saturating_sub(1);
        c.ready_bytes = c.ready_bytes.saturating_sub(raw.len() as u64);
        c.dead += 1;
        c.dead_bytes += dead.len() as u64;
        let mut batch = sled::Batch::default();
        batch.remove(&key(READY, id.0));
        batch.insert(&key(DEAD, id.0), dead);
        store.apply(batch, c)?;
        store.delays.remove(&id.0);
        store.durable_flush()
    }

    fn requeue_dead(&self, id: Option<RecordId>) -> Result<u64, QueueError> {
        let mut segs = self.shared.segs.lock();
        let targets: Vec<u64> = match id {
            Some(id) => vec![segs.route(id).ok_or(QueueError::NotFound(id))?],
            None => segs
                .firsts()
                .into_iter()
                .filter(|f| segs.segment(*f).is_some_and(|s| s.counters().dead > 0))
                .collect(),
        };
        let mut moved = 0;
        for first in targets {
            let store = segs.store(first)?;
            let n = requeue_in(store, id)?;
            if n > 0
                && let Some(seg) = segs.segment_mut(first)
            {
                seg.idle_until = None;
            }
            moved += n;
        }
        Ok(moved)
    }

    fn purge_dead(&self) -> Result<u64, QueueError> {
        let mut segs = self.shared.segs.lock();
        let mut purged = 0;
        for first in segs.firsts() {
            if segs.segment(first).is_none_or(|s| s.counters().dead == 0) {
                continue;
            }
            let store = segs.store(first)?;
            let mut batch = sled::Batch::default();
            let mut c = store.counters;
            let mut n = 0;
            for item in store.db()?.scan_prefix([DEAD]) {
                let (k, _) = item.map_err(from_sled)?;
                batch.remove(k);
                n += 1;
            }
            if n == 0 {
                continue;
            }
            c.dead = 0;
            c.dead_bytes = 0;
            store.apply(batch, c)?;
            store.durable_flush()?;
            purged += n;
            segs.delete_if_drained(first)?;
        }
        if purged > 0 {
            Self::after_removal(&mut segs);
        }
        Ok(purged)
    }

    fn list_dead(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut segs = self.shared.segs.lock();
        let mut out = Vec::new();
        for first in segs.firsts() {
            if out.len() >= max {
                break;
            }
            if segs.segment(first).is_none_or(|s| s.counters().dead == 0) {
                continue;
            }
            let store = segs.store(first)?;
            let mut bad = Vec::new();
            for item in store.db()?.scan_prefix([DEAD]) {
                if out.len() >= max {
                    break;
                }
                let (k, raw) = item.map_err(from_sled)?;
                let Some(id) = id_of(&k) else { continue };
                match StoredDead::decode(id, &raw) {
                    Ok(rec) => out.push(dead(id, rec)),
                    Err(e) => bad.push((id, raw.to_vec(), e.to_string())),
                }
            }
            for (id, raw, why) in bad {
                store.quarantine(DEAD, id, &raw, &why);
            }
        }
        Ok(out)
    }

    fn oldest_waiting(&self) -> Result<Option<RecordId>, QueueError> {
        let mut segs = self.shared.segs.lock();
        for first in segs.firsts() {
            if segs.segment(first).is_none_or(|s| s.counters().ready == 0) {
                continue;
            }
            if let Some(id) = segs.store(first)?.first_id(READY)? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut segs = self.shared.segs.lock();
        let head = segs.head_first();
        // A broken store still answers from its counters; the error shows in `full`.
        let _ = segs.store(head);
        let c = segs.totals();
        let oldest = segs
            .firsts()
            .into_iter()
            .find(|f| segs.segment(*f).is_some_and(|s| s.counters().ready > 0));
        let oldest_age = oldest.and_then(|first| {
            let store = segs.store(first).ok()?;
            let id = store.first_id(READY).ok()??;
            let raw = store.db().ok()?.get(key(READY, id.0)).ok()??;
            let rec = Stored::decode(id.0, &raw).ok()?;
            Some(
                SystemTime::now()
                    .duration_since(from_ms(rec.enqueued_ms))
                    .unwrap_or_default(),
            )
        });
        let now = Instant::now();
        let delayed = segs
            .firsts()
            .into_iter()
            .filter_map(|f| segs.segment(f))
            .map(|s| s.delays().values().filter(|due| **due > now).count() as u64)
            .sum();
        let full = segs.open_store_mut(head).and_then(|store| {
            store
                .refusal
                .as_ref()
                .map(|r| r.to_string())
                .or_else(|| store.broken.as_ref().map(|e| e.to_string()))
        });
        Ok(QueueStats {
            depth: c.ready,
            delayed,
            bytes: c.ready_bytes,
            oldest_age,
            bytes_on_disk: segs.bytes_on_disk(),
            dead_letters: c.dead,
            dead_letter_bytes: c.dead_bytes,
            quarantined: c.quarantined,
            next_id: c.next_id,
            full,
        })
    }
}

/// Moves dead letters of one store back to ready: the one with `id`, or all.
fn requeue_in(store: &mut Store, id: Option<RecordId>) -> Result<u64, QueueError> {
    let entries: Vec<(u64, sled::IVec)> = match id {
        Some(id) => {
            let raw = store
                .db()?
                .get(key(DEAD, id.0))
                .map_err(from_sled)?
                .ok_or(QueueError::NotFound(id))?;
            vec![(id.0, raw)]
        }
        None => {
            let mut all = Vec::new();
            for item in store.db()?.scan_prefix([DEAD]) {
                let (k, v) = item.map_err(from_sled)?;
                if let Some(id) = id_of(&k) {
                    all.push((id, v));
                }
            }
            all
        }
    };
    // A dead letter goes back under its own id, which the ack watermark may have passed.
    if entries.iter().any(|(id, _)| *id < store.acked_below) {
        store.materialize_acks()?;
    }
    let mut batch = sled::Batch::default();
    let mut c = store.counters;
    let mut moved = 0;
    for (id, raw) in entries {
        let dead = match StoredDead::decode(id, &raw) {
            Ok(d) => d,
            Err(e) => {
                store.quarantine(DEAD, id, &raw, &e.to_string());
                c = store.counters;
                continue;
            }
        };
        let rec = Stored {
            attempts: 0,
            enqueued_ms: dead.enqueued_ms,
            nacked_ms: 0,
            retry_ms: 0,
            payload: dead.payload,
        }
        .encode(id);
        c.dead = c.dead.saturating_sub(1);
        c.dead_bytes = c.dead_bytes.saturating_sub(raw.len() as u64);
        c.ready += 1;
        c.ready_bytes += rec.len() as u64;
        batch.remove(&key(DEAD, id));
        batch.insert(&key(READY, id), rec);
        moved += 1;
    }
    if moved > 0 {
        store.apply(batch, c)?;
        store.durable_flush()?;
    }
    Ok(moved)
}
