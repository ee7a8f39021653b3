//! # The durable queue (issue #4)
//!
//! Readings that a device or broker was told are safe wait here until the FHIR server has
//! confirmed them. The queue stores opaque payloads (the uploader puts compact JSON of one
//! "upload unit" in each); it knows nothing of FHIR.
//!
//! ## API and guarantees
//! [`DurableQueue`] is the contract; [`SledQueue`] is the engine (sled 0.34, one database per
//! segment of the id range).
//! - **append** resolves only once its records are on the storage device (not merely in the
//!   page cache, see "Durability" below). Concurrent appends share one flush (group commit).
//!   Sources acknowledge to their device/broker only after append resolved (persist before ack).
//! - **Order**: [`RecordId`]s increase strictly with commit order and are never reused (the
//!   high-water mark is persisted with every commit). `peek` returns ready records in id order.
//! - **At-least-once**: a record leaves the queue only by `ack` (server confirmed),
//!   `dead_letter` (server refused it permanently) or `purge_dead`. A crash may lose a recent
//!   ack or nack (they are flushed lazily, at most ~1 s later), so a record can be uploaded
//!   twice; uploads are idempotent (conditional create on the Observation identifier), so
//!   "exactly once in effect" holds end to end.
//! - **Retry time** is monotonic: `nack(id, retry_after)` makes the record invisible to `peek`
//!   until `Instant::now() + retry_after`. Wall-clock jumps (a Pi boots with a stale clock until
//!   NTP) therefore neither stall nor hurry retries. On disk the nack time and the delay are
//!   kept; after a reopen the remaining delay is recomputed from the wall clock and clamped to
//!   `[0, retry_after]`, so a clock jump across a restart can at worst make a record ready
//!   early, never hide it longer than its own delay.
//!
//! ## On-disk layout
//! ```text
//! DATA_DIR/queue.lock                  exclusive flock while open (second opener: Locked)
//! DATA_DIR/segments/<first id, 20 digits>/   one sled database per segment
//! DATA_DIR/segments/<…>/summary        counters + size of a closed sealed segment (60 bytes)
//! DATA_DIR/segments/<…>.deleting/      a drained segment being removed
//! DATA_DIR/segments/<…>.creating/      a new segment not yet durable (renamed when it is)
//! DATA_DIR/queue/                      installations before segments: read as segment 1
//! ```
//! The queue is split into **segments** by id range (issue #9): a segment holds the records
//! whose id is ≥ its name and < the next segment's name. Each segment is a complete store with
//! the same key layout and exact counters, so every state change is a single atomic sled batch
//! in ONE segment and each segment is crash-consistent by itself:
//!
//! | key | value |
//! |---|---|
//! | `b'R'` + id (u64 big-endian) | ready record (see [`record`]) |
//! | `b'D'` + id | dead letter: record + the server's reason |
//! | `b'Q'` + id | quarantined raw bytes of a record that failed its checksum |
//! | `b'M'` + `"counters"` | next id, record/byte counts per state (kept exact with every change) and the ack watermark (see "Acks"), one CRC-32: `counters.rs` |
//! | `b'M'` + `"acked_below"` | only in segments written before round 6 of issue #5: the watermark (read, removed by the next write) |
//!
//! Big-endian ids make sled's key order the queue order. Records are versioned and
//! checksummed with CRC-32 (see [`record`]); the header is 29 bytes, the payload is stored as given.
//! A store without a counters key is the empty segment whose next id is its name.
//!
//! The **head** (highest first id) takes every append; its next id is the queue's. When the
//! head holds `segment_records` ids (`[queue]`, default 65 536) the commit thread **rolls**
//! before the next append: it creates the new head (directory, sled, counters with next id =
//! its name, flushed, parent directories fsynced), then **seals** the old head (closed and
//! reopened once, so sled writes its snapshot and later opens need not replay its log) and
//! writes its summary. Once a roll was due nothing more goes into the old head; if the roll
//! fails the appends fail (temporary) and the next commit retries it.
//!
//! A sealed segment with no ready, dead or quarantined record left is **deleted**: closed,
//! renamed to `<name>.deleting` (atomic), parent fsynced, removed; `open` finishes any
//! leftover `*.deleting`. The head is never deleted (ids are never reused). Dead letters and
//! quarantined records keep their segment until they are purged or requeued.
//!
//! **Summaries**: a closed sealed segment has a `summary` file (its counters, CRC-checked, and
//! its size on disk), written atomically when it is closed and removed (durably) before it is
//! opened, so it is never stale. `open` reads the summaries and opens only the head, plus —
//! one at a time, to read their counters — sealed segments without a summary (those open at a
//! crash). Stats and the limits are sums of per-segment counters held in memory.
//!
//! ## Acks (issue #5)
//! Removing each acked record from sled cost the uploader more CPU than everything else it does
//! per reading (a tree update per key, then sled's threads rewriting the pages). So an `ack`
//! moves a per-segment **watermark** instead: every ready key below `acked_below` is acked —
//! still stored, never read. `ack` walks the ready keys from the watermark up to its highest
//! id; the run of acked ids it meets first (the uploader acks the oldest records, in order)
//! moves the watermark past them with ONE key written — the counters' value, which holds the
//! watermark too, so such an ack is one sled insert and no batch (the walk also gives their
//! sizes for the byte counter; why not a batch: `counters.rs`); the walk stops at the first ready key
//! that is not acked (a delayed or in-flight record), and acked ids after it are removed one
//! by one as before. The walk is usually not a sled read: the peeks that read those records
//! noted their ids and sizes (`read_span.rs`, trusted only while nothing but appends and
//! in-order acks changed the segment since). Every reader starts at the watermark (`peek`, `list_waiting`,
//! `oldest_waiting`, `get`, `nack`, `dead_letter`, a recount). Requeueing a dead letter whose
//! id the watermark passed first removes the acked keys below it for real and resets the
//! watermark (rare: an operator's command). Space: acked records stay on disk until their
//! segment is deleted — a drained sealed segment at once, and the head when it holds nothing
//! and at least 4 096 acked records (it rolls, `DRAINED_HEAD_ROLL`), so a gateway that keeps
//! up with its readings keeps ≈ 10 MB of them at most. A damaged counters value loses the
//! watermark with it: acked records are uploaded again (harmless, uploads are idempotent) and
//! the counters recounted. A gateway from before the watermark would read the watermark's
//! records as ready again (the same harmless resend); one from before round 6 reads the
//! combined value as damaged and recounts (see `counters.rs`).
//!
//! ## Durability
//! sled's `Db::flush()` only issues `sync_file_range`, which starts write-back of the data
//! range but neither persists file metadata (the file size of a grown log) nor flushes the
//! device's volatile write cache; sled calls `sync_all` only from its periodic flusher. After
//! each group commit's `flush()` the engine therefore calls `fdatasync` on sled's log file, and
//! on any new file in sled's `blobs/` directory (plus `fsync` of that directory). Only then are
//! the waiting appends resolved.
//!
//! ## What happens on …
//! - **crash / power cut**: sled recovers each segment's log up to its last complete flush;
//!   everything an append resolved for is in it. Appends that had not resolved may or may not
//!   be present (their sources did not acknowledge, so the device or broker resends:
//!   duplicates are harmless). Crash inside a roll: the new head's directory may exist without
//!   counters (= empty segment starting at its name; nothing was appended past the old head's
//!   next id) and the old head may be unsealed (its next open replays its log once). Crash
//!   inside a delete: a `*.deleting` directory, removed at the next open; a crash while a
//!   segment is created: a `*.creating` directory, removed too. A crash while sled writes its
//!   snapshot (at every open) leaves `snap.*.generating`, which sled 0.34 would misread as its
//!   snapshot ("corrupted data"); the engine removes it before opening. At open the head's
//!   next id is also raised to the highest next id of any segment.
//! - **corruption**: a record whose checksum or version does not match is moved to the `Q`
//!   range (raw bytes kept for forensics), counted in `stats().quarantined`, logged at warn
//!   level without its content, and skipped; the rest of the queue keeps working. Damage to
//!   sled's own log is detected by sled's checksums; sled then stops recovery at the damaged
//!   message, which is reported as [`QueueError::Corrupt`] or loses the tail after it. A
//!   damaged summary is ignored (the segment is opened to read its counters).
//! - **full** (configured `max_records`/`max_bytes` over all segments, or the disk returns
//!   ENOSPC): appends fail with [`QueueError::Full`]; sources do not acknowledge, so devices
//!   and brokers keep the readings. Nothing already queued is dropped. `stats().full` shows
//!   why. The condition clears by itself: limits are checked per commit, and after an I/O
//!   error a segment's sled is reopened on its next use, so appends succeed again once acks
//!   or freed space allow. Deleting drained segments gives their disk space back.
//!
//! ## Memory
//! sled's tables grow with the number of keys in one open database (≈ 40 B per key, whatever
//! the value size), so at most the head + 2 sealed segments (`OPEN_SEALED`, least recently
//! used closed first, `segments.rs`) are open; each has a page cache capped by `cache_bytes`
//! (default 4 MiB). `peek` walks segments oldest first, skipping those without ready records
//! and those whose ready records are all delayed (the earliest retry deadline is remembered
//! per segment, so a segment full of nacked records is not reopened by every peek). CLI paths
//! (`list_dead`, `list_waiting`, `get`, …) open segments on demand through the same bound.
//! In memory per segment: counters, size, and the retry deadlines of nacked records.
//! `peek` reads ready records by id (`Tree::get`), not with sled's range iterator: pages an
//! iterator loads are not evicted by sled 0.34's cache, so draining a backlog that way kept
//! every page read resident (+122 MiB over a 100 000-record drain; by id +39 MiB: the queue
//! line of `cargo bench --bench upload`, docs/PERFORMANCE.md "Round 5"). Runs of missing ids (dead
//! letters) are passed with one range lookup after 32 misses (`sled_queue.rs`).
//!
//! ## Measured cost and known limits (docs/PERFORMANCE.md, `cargo bench --bench queue`,
//! `cargo bench --bench footprint`)
//! Durable ingest matches an fdatasync-per-batch append-only file. sled writes ~8.5× the
//! payload bytes over append → ack; disk space comes back per drained segment (sled itself
//! never shrinks a file). Reopen + first peek with 1M records: 41 ms (one database: 0.8 s);
//! the gateway with a 1M backlog: READY 47 ms, peak RSS 19.2 MiB. A roll costs the append that
//! triggers it one sled open + close of the old head (its snapshot); removing a drained
//! segment costs the `ack` that drains it a close, an fdatasync and the file removal.
//!
//! ## Tests
//! Unit and model-based property tests (`src/queue/tests.rs`), 50 SIGKILLs
//! (`tests/queue_crash.rs`), ENOSPC on a tmpfs (`tests/queue_enospc.rs`, needs root), and a
//! power-cut test in a QEMU guest with a raw-sled negative control
//! (`scripts/powercut/queue.sh`, not part of the everyday run).

#[cfg(test)]
mod ack_tests;
mod commit;
pub mod config;
mod counters;
mod lock;
mod read_span;
pub mod record;
#[cfg(test)]
mod segment_tests;
mod segments;
mod sled_queue;
#[cfg(test)]
mod state_tests;
mod store;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

pub use config::{QueueConfig, RawQueueConfig};
pub use sled_queue::{Entry, SledQueue};

/// Position of a record in the queue: strictly increasing in commit order, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(pub u64);

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A record waiting for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecord {
    pub id: RecordId,
    pub payload: Vec<u8>,
    /// How many upload attempts failed (`nack` count).
    pub attempts: u32,
    /// Wall-clock time of the append (for display and age only).
    pub enqueued_at: SystemTime,
    /// Wall-clock time of the last nack plus its delay (informational; scheduling itself uses
    /// the monotonic clock, see the module doc).
    pub next_attempt_at: Option<SystemTime>,
}

/// A record the server refused permanently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: RecordId,
    pub payload: Vec<u8>,
    /// The server's reason, e.g. its OperationOutcome JSON.
    pub reason: String,
    pub attempts: u32,
    pub enqueued_at: SystemTime,
    pub dead_at: SystemTime,
}

/// Why the queue refuses new records right now (temporary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullReason {
    /// `max_records` reached.
    Records { limit: u64 },
    /// `max_bytes` of stored records reached.
    Bytes { limit: u64 },
    /// The file system returned ENOSPC (or another write error).
    Disk(String),
}

impl std::fmt::Display for FullReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FullReason::Records { limit } => write!(f, "record limit of {limit} reached"),
            FullReason::Bytes { limit } => write!(f, "byte limit of {limit} reached"),
            FullReason::Disk(msg) => write!(f, "storage refused writes: {msg}"),
        }
    }
}

/// What the queue holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct QueueStats {
    /// Records waiting for upload (ready and delayed).
    pub depth: u64,
    /// Of those, records delayed by a nack whose retry time has not come.
    pub delayed: u64,
    /// Bytes of stored records (header + payload) waiting for upload.
    pub bytes: u64,
    /// Age of the oldest waiting record (wall clock; `None` when empty).
    pub oldest_age: Option<Duration>,
    /// Size of the queue's files on disk.
    pub bytes_on_disk: u64,
    pub dead_letters: u64,
    pub dead_letter_bytes: u64,
    /// Records that failed their checksum and were set aside.
    pub quarantined: u64,
    /// Next id to be assigned.
    pub next_id: u64,
    /// Why appends are refused right now, if they are.
    pub full: Option<String>,
}

/// Errors of the queue boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Temporary: a limit was reached or the disk is full. Do not acknowledge; retry later.
    #[error("queue full: {0}")]
    Full(FullReason),
    /// Permanent for this payload: larger than `max_record_bytes`.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// Another process (normally the daemon) holds the data directory.
    #[error("data directory {path} is in use by another process (is the daemon running?)")]
    Locked { path: String },
    #[error("I/O error: {0}")]
    Io(String),
    /// Stored data failed a checksum or could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("no record with id {0}")]
    NotFound(RecordId),
    /// The queue was closed (shutdown).
    #[error("queue is closed")]
    Closed,
}

impl QueueError {
    /// True when retrying the same operation later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, QueueError::Full(_) | QueueError::Io(_))
    }
}

impl From<QueueError> for crate::sources::IngestError {
    fn from(err: QueueError) -> Self {
        use crate::sources::IngestError;
        match err {
            QueueError::Full(reason) => IngestError::QueueFull(reason.to_string()),
            QueueError::TooLarge { .. } => IngestError::Rejected(err.to_string()),
            QueueError::Closed => IngestError::ShuttingDown,
            other => IngestError::Storage(other.to_string()),
        }
    }
}

/// The durable queue contract (see the module doc for the guarantees).
///
/// Only `append` is async (it waits for the group commit's fsync). The other operations are
/// short sled operations; `dead_letter`, `requeue_dead` and `purge_dead` also wait for an
/// fdatasync, so call them from a blocking-tolerant context when latency matters.
pub trait DurableQueue: Send + Sync {
    /// Stores payloads; resolves with their ids (in order) once they are durable.
    /// All-or-nothing: on error none of them is stored.
    fn append(&self, payloads: Vec<Vec<u8>>) -> BoxFuture<'_, Result<Vec<RecordId>, QueueError>>;
    /// Up to `max` ready records in id order (delayed records are skipped).
    fn peek(&self, max: usize) -> Result<Vec<QueuedRecord>, QueueError>;
    /// Like `peek`, but records whose id is in `skip` (sorted ascending) are passed over as if
    /// they were not there: the uploader's acks that it has not applied yet (grouped acks,
    /// `src/upload/uploader.rs`). An engine can skip them without decoding them.
    fn peek_skipping(
        &self,
        max: usize,
        skip: &[RecordId],
    ) -> Result<Vec<QueuedRecord>, QueueError> {
        let mut records = self.peek(max.saturating_add(skip.len()))?;
        records.retain(|r| skip.binary_search(&r.id).is_err());
        records.truncate(max);
        Ok(records)
    }
    /// Removes records the server confirmed. Unknown ids are ignored (acks are idempotent).
    fn ack(&self, ids: &[RecordId]) -> Result<(), QueueError>;
    /// An upload attempt failed temporarily: count it and hide the record for `retry_after`.
    fn nack(&self, id: RecordId, retry_after: Duration) -> Result<(), QueueError>;
    /// Moves a record to the dead letters with the server's reason.
    fn dead_letter(&self, id: RecordId, reason: String) -> Result<(), QueueError>;
    /// Moves one dead letter (or all, with `None`) back to the queue, keeping its id and order,
    /// with the attempt count reset. Returns how many were moved.
    fn requeue_dead(&self, id: Option<RecordId>) -> Result<u64, QueueError>;
    /// Deletes every dead letter. Returns how many were deleted.
    fn purge_dead(&self) -> Result<u64, QueueError>;
    /// Up to `max` dead letters in id order.
    fn list_dead(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError>;
    fn stats(&self) -> Result<QueueStats, QueueError>;
    /// Id of the oldest record waiting for upload, ready or delayed by a nack (`None` when
    /// nothing waits). Dead letters do not count: the server has answered them for good.
    fn oldest_waiting(&self) -> Result<Option<RecordId>, QueueError>;
}
