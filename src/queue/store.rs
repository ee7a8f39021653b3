//! sled handles, the key layout, the exact counters and the real-durability flush.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub(super) use super::counters::Counters;
use super::counters::{StoredState, decode_legacy_watermark, decode_state, encode_state};
use super::read_span::ReadSpan;
use super::record::to_ms;
use super::{FullReason, QueueError, RecordId};

pub(super) const READY: u8 = b'R';
pub(super) const DEAD: u8 = b'D';
pub(super) const QUARANTINE: u8 = b'Q';
/// The counters and the ack watermark (`counters.rs`, "The state value").
pub(super) const COUNTERS_KEY: &[u8] = b"Mcounters";
/// Where gateways before round 6 of issue #5 kept the ack watermark (read, then removed).
pub(super) const ACKED_BELOW_KEY: &[u8] = b"Macked_below";
/// How long a sled database lock that looks held is retried (see `Store::open_db`).
const SLED_LOCK_RETRY: Duration = Duration::from_secs(2);

/// Appends of at most this many records leave no leaf past sled's split point (17 items).
const SPLIT_PASS_MIN_RECORDS: u64 = 16;
/// The stride of `Store::split_appended_leaves`: every run of 8 consecutive appended ids has
/// one looked up, and a leaf left past 16 items holds a longer run (or, the first leaf, the
/// append's first id, which is looked up too).
const SPLIT_PASS_STEP: usize = 8;

/// Key of a record: state prefix + big-endian id, so key order is queue order.
pub(super) fn key(prefix: u8, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Id of a record key (None for a key of unexpected length).
pub(super) fn id_of(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    (key.len() == 9).then(|| u64::from_be_bytes(bytes))
}

/// Maps a sled error to the queue's: ENOSPC (and EDQUOT) mean "full", temporarily.
pub(super) fn from_sled(err: sled::Error) -> QueueError {
    match err {
        sled::Error::Io(io) => from_io("storage", &io),
        sled::Error::Corruption { .. } => QueueError::Corrupt(err.to_string()),
        // sled says this for files it cannot read as its own (a damaged `conf`): permanent.
        sled::Error::Unsupported(_) => QueueError::Corrupt(err.to_string()),
        other => QueueError::Io(other.to_string()),
    }
}

pub(super) fn from_io(what: &str, io: &std::io::Error) -> QueueError {
    // sled re-wraps some OS errors, keeping the kind but not the errno.
    let full = matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || matches!(
            io.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        );
    if full {
        QueueError::Full(FullReason::Disk(format!("{what}: {io}")))
    } else {
        QueueError::Io(format!("{what}: {io}"))
    }
}

/// The open sled database and the engine state that must change with it.
pub(super) struct Store {
    path: PathBuf,
    /// First id of the segment this store holds (ids below it are never stored here).
    first: u64,
    cache_bytes: u64,
    db: Option<sled::Db>,
    /// sled's log file, opened separately so that it can be fdatasync'ed.
    log: Option<File>,
    synced_blobs: HashSet<OsString>,
    pub counters: Counters,
    /// Ready keys with an id below this are acked: still in sled, never read (module doc,
    /// "Acks"). Stored with the counters, under `COUNTERS_KEY`.
    pub acked_below: u64,
    /// `ACKED_BELOW_KEY` (an older gateway's) is still stored: the next write removes it.
    legacy_watermark_key: bool,
    /// Set after a storage error: sled poisons itself, so the next operation reopens it.
    pub broken: Option<QueueError>,
    /// Changes (acks, nacks) not yet flushed.
    pub dirty: bool,
    /// Why the last append was refused; cleared by a successful commit or freed space.
    pub refusal: Option<FullReason>,
    /// Monotonic retry deadlines of nacked records (see the module doc).
    pub delays: HashMap<u64, Instant>,
    /// Monotonic and wall-clock time at open, to turn stored nack times into deadlines.
    pub opened_at: (Instant, u64),
    /// The ready records scans have read from the watermark on (`read_span.rs`).
    pub read_span: ReadSpan,
}

impl Store {
    /// Opens the segment store at `path` holding ids from `first` on. A store without a
    /// counters key (new, or created by a roll that crashed before its first flush) is the
    /// empty segment whose next id is `first`.
    pub fn open(path: &Path, cache_bytes: u64, first: u64) -> Result<Self, QueueError> {
        let mut store = Self {
            path: path.to_owned(),
            first,
            cache_bytes,
            db: None,
            log: None,
            synced_blobs: HashSet::new(),
            counters: Counters::default(),
            acked_below: 0,
            legacy_watermark_key: false,
            broken: None,
            dirty: false,
            refusal: None,
            delays: HashMap::new(),
            opened_at: (Instant::now(), to_ms(SystemTime::now())),
            read_span: ReadSpan::default(),
        };
        store.open_db()?;
        Ok(store)
    }

    fn open_db(&mut self) -> Result<(), QueueError> {
        std::fs::create_dir_all(&self.path)
            .map_err(|e| from_io(&format!("create {}", self.path.display()), &e))?;
        remove_unfinished_snapshots(&self.path)?;
        let config = sled::Config::new()
            .path(&self.path)
            .cache_capacity(self.cache_bytes)
            // No background flusher: the engine flushes (and fdatasyncs) itself, see commit.rs.
            .flush_every_ms(None);
        let db = open_retrying_lock(&config, &self.path)?;
        let log =
            File::open(self.path.join("db")).map_err(|e| from_io("open sled log for fsync", &e))?;
        // The directory entries of sled's files must be durable too (first open).
        for dir in [
            self.path.as_path(),
            self.path.parent().unwrap_or(&self.path),
        ] {
            if let Ok(d) = File::open(dir) {
                d.sync_all()
                    .map_err(|e| from_io("fsync data directory", &e))?;
            }
        }
        let legacy = db.get(ACKED_BELOW_KEY).map_err(from_sled)?;
        self.legacy_watermark_key = legacy.is_some();
        // The watermark as gateways before round 6 stored it; a damaged one reads as 0:
        // records below it are read (and uploaded) again, harmless (uploads are idempotent).
        let legacy_watermark = || match legacy.as_deref().map(decode_legacy_watermark) {
            None => (0, true),
            Some(Some(w)) => (w, true),
            Some(None) => {
                tracing::warn!(
                    "queue ack watermark failed its checksum; acked records may be sent again"
                );
                (0, false)
            }
        };
        let (counters, acked_below) = match db.get(COUNTERS_KEY).map_err(from_sled)? {
            Some(raw) => match decode_state(&raw) {
                StoredState::State(c, w) => (c, w),
                StoredState::CountersOnly(c) => match legacy_watermark() {
                    (w, true) => (c, w),
                    (w, false) => (recount(&db, self.first, w)?, w),
                },
                StoredState::Damaged => {
                    tracing::warn!(
                        "queue counters failed their checksum; recounting (acked records may be sent again)"
                    );
                    let (w, _) = legacy_watermark();
                    (recount(&db, self.first, w)?, w)
                }
            },
            None => match legacy_watermark() {
                (w, true) => (Counters::starting_at(self.first), w),
                (w, false) => (recount(&db, self.first, w)?, w),
            },
        };
        self.counters = counters;
        self.acked_below = acked_below;
        self.read_span.forget();
        self.db = Some(db);
        self.log = Some(log);
        self.synced_blobs.clear();
        self.broken = None;
        Ok(())
    }

    /// Reopens sled if a storage error poisoned it.
    pub fn ensure_open(&mut self) -> Result<(), QueueError> {
        if self.broken.is_none() && self.db.is_some() {
            return Ok(());
        }
        // Dropping the old handle lets sled release its file lock before reopening.
        self.db = None;
        self.log = None;
        self.open_db()
            .inspect_err(|e| self.broken = Some(e.clone()))?;
        tracing::info!("queue storage reopened after an error");
        Ok(())
    }

    pub fn db(&self) -> Result<&sled::Db, QueueError> {
        self.db.as_ref().ok_or(QueueError::Closed)
    }

    /// Applies `batch` and the new counters atomically.
    pub fn apply(&mut self, batch: sled::Batch, counters: Counters) -> Result<(), QueueError> {
        self.read_span.forget();
        self.apply_state(batch, counters, self.acked_below)
    }

    /// Applies an append: `batch` only inserts ready records at or past `next_id`, which no
    /// scan has passed, so what scans read stays true (`read_span.rs`). Then passes the
    /// appended records' leaves, so that sled splits them now (see below).
    pub fn apply_append(
        &mut self,
        batch: sled::Batch,
        counters: Counters,
    ) -> Result<(), QueueError> {
        let first = self.counters.next_id;
        self.apply_state(batch, counters, self.acked_below)?;
        self.split_appended_leaves(first, counters.next_id)
    }

    /// Looks up every [`SPLIT_PASS_STEP`]th record of `from..to` (and the last), so that sled
    /// splits the leaves the append's batch filled past its threshold now, on the appending
    /// thread and before the append's flush.
    ///
    /// Why: sled 0.34 splits a leaf of more than 16 items only when a traversal passes it,
    /// and a batch inserting more than about 20 records in key order leaves such leaves behind
    /// (why inside sled was not pinned down). Left alone, the first reader split them: the
    /// uploader's peek, which then rewrote part of what it read (≈ 400 B per 2 300-B record)
    /// while draining. The split work is the same wherever it runs; here it is paid as records
    /// arrive, not when a backlog is uploaded. `cargo bench --bench sled_batches` measures it;
    /// `tests.rs` checks that reading a large append back writes nothing.
    fn split_appended_leaves(&mut self, from: u64, to: u64) -> Result<(), QueueError> {
        if to.saturating_sub(from) <= SPLIT_PASS_MIN_RECORDS {
            return Ok(());
        }
        let db = self.db()?.clone();
        let result = (from..to)
            .step_by(SPLIT_PASS_STEP)
            .chain([to - 1])
            .try_for_each(|id| db.get(key(READY, id)).map(drop))
            .map_err(from_sled);
        result.map_err(|e| self.fail(e))
    }

    /// Applies `batch`, the new counters and the watermark `acked_below` atomically. Callers
    /// other than appends forget the read span first (it may no longer be true).
    fn apply_state(
        &mut self,
        mut batch: sled::Batch,
        counters: Counters,
        acked_below: u64,
    ) -> Result<(), QueueError> {
        batch.insert(COUNTERS_KEY, encode_state(&counters, acked_below));
        if self.legacy_watermark_key {
            batch.remove(ACKED_BELOW_KEY);
        }
        let result = self.db()?.apply_batch(batch).map_err(from_sled);
        self.settle(result, counters, acked_below)
    }

    fn settle(
        &mut self,
        result: Result<(), QueueError>,
        counters: Counters,
        acked_below: u64,
    ) -> Result<(), QueueError> {
        match result {
            Ok(()) => {
                self.counters = counters;
                self.acked_below = acked_below;
                self.legacy_watermark_key = false;
                self.dirty = true;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Acks: removes the ready records `removed` and sets the new counters and watermark,
    /// atomically. An ack in order removes nothing, and then it is one sled insert instead
    /// of a batch (see `counters.rs`: a batch costs sled's I/O threads a wake-up storm).
    pub fn apply_acks(
        &mut self,
        removed: &[u64],
        counters: Counters,
        acked_below: u64,
    ) -> Result<(), QueueError> {
        if removed.is_empty() && !self.legacy_watermark_key {
            let value = encode_state(&counters, acked_below);
            let result = self
                .db()?
                .insert(COUNTERS_KEY, value)
                .map(drop)
                .map_err(from_sled);
            let from = self.acked_below;
            self.settle(result, counters, acked_below)?;
            self.read_span.advanced(from, acked_below);
            return Ok(());
        }
        self.read_span.forget();
        let mut batch = sled::Batch::default();
        for id in removed {
            batch.remove(&key(READY, *id));
        }
        self.apply_state(batch, counters, acked_below)
    }

    /// Removes the acked keys below the watermark for real and resets it to 0, for an
    /// operation that must put a ready key back below it (requeueing a dead letter). Costs
    /// one remove per acked key still stored: rare (an operator's command).
    pub fn materialize_acks(&mut self) -> Result<(), QueueError> {
        if self.acked_below == 0 {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for item in self
            .db()?
            .range(key(READY, 0)..key(READY, self.acked_below))
        {
            let (k, _) = item.map_err(from_sled)?;
            batch.remove(k);
        }
        let c = self.counters;
        self.read_span.forget();
        self.apply_state(batch, c, 0)
    }

    /// Records a storage error (so the next operation reopens sled) and returns it.
    pub fn fail(&mut self, err: QueueError) -> QueueError {
        if let QueueError::Full(reason) = &err {
            self.refusal = Some(reason.clone());
        }
        tracing::warn!(error = %err, "queue storage error");
        self.broken = Some(err.clone());
        self.read_span.forget();
        err
    }

    /// Everything written so far reaches the storage device: sled's flush (write +
    /// sync_file_range), then fdatasync of the log and of any new blob file.
    pub fn durable_flush(&mut self) -> Result<(), QueueError> {
        let result = self.flush_and_sync();
        result.map_err(|e| self.fail(e))
    }

    fn flush_and_sync(&mut self) -> Result<(), QueueError> {
        self.db()?.flush().map_err(from_sled)?;
        let log = self.log.as_ref().ok_or(QueueError::Closed)?;
        log.sync_data()
            .map_err(|e| from_io("fdatasync sled log", &e))?;
        self.sync_new_blobs()?;
        self.dirty = false;
        Ok(())
    }

    fn sync_new_blobs(&mut self) -> Result<(), QueueError> {
        let dir = self.path.join("blobs");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        let mut any = false;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if self.synced_blobs.contains(&name) {
                continue;
            }
            if let Ok(f) = File::open(entry.path()) {
                f.sync_data()
                    .map_err(|e| from_io("fdatasync sled blob", &e))?;
            }
            self.synced_blobs.insert(name);
            any = true;
        }
        if any {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| from_io("fsync sled blob directory", &e))?;
        }
        Ok(())
    }

    /// Bytes of every file under the sled directory.
    pub fn bytes_on_disk(&self) -> u64 {
        dir_bytes(&self.path)
    }

    /// Moves a record that failed decoding to the quarantine range (raw bytes kept).
    pub fn quarantine(&mut self, prefix: u8, id: u64, raw: &[u8], why: &str) {
        tracing::warn!(id, state = %(prefix as char), why, "queue record quarantined");
        let mut batch = sled::Batch::default();
        batch.remove(&key(prefix, id));
        batch.insert(&key(QUARANTINE, id), raw);
        let mut c = self.counters;
        let len = raw.len() as u64;
        if prefix == READY {
            c.ready = c.ready.saturating_sub(1);
            c.ready_bytes = c.ready_bytes.saturating_sub(len);
        } else {
            c.dead = c.dead.saturating_sub(1);
            c.dead_bytes = c.dead_bytes.saturating_sub(len);
        }
        c.quarantined += 1;
        self.delays.remove(&id);
        // Best effort: if this fails the record is simply met (and quarantined) again later.
        let _ = self.apply(batch, c);
    }

    pub fn first_id(&self, prefix: u8) -> Result<Option<RecordId>, QueueError> {
        let from = if prefix == READY { self.acked_below } else { 0 };
        let hit = self
            .db()?
            .range(key(prefix, from)..key(prefix + 1, 0))
            .next()
            .transpose()
            .map_err(from_sled)?;
        Ok(hit.and_then(|(k, _)| id_of(&k)).map(RecordId))
    }

    /// Flushes and closes (for shutdown).
    pub fn close(&mut self) -> Result<(), QueueError> {
        let result = if self.db.is_some() && self.broken.is_none() {
            self.flush_and_sync()
        } else {
            Ok(())
        };
        self.db = None;
        self.log = None;
        result
    }
}

/// Removes `snap.*.generating` files: snapshots sled was writing when the process died. sled
/// 0.34 renames a snapshot to `snap.<lsn>` only once it is complete and synced, but when it
/// looks for snapshots at open it skips only `*.in___motion`, so a leftover `.generating` file
/// (the highest lsn) is read as the snapshot and the open fails with "Read corrupted data".
/// Found by `tests/queue_crash.rs` (SIGKILL during a segment open); the file is never the
/// committed snapshot, so removing it loses nothing.
fn remove_unfinished_snapshots(dir: &Path) -> Result<(), QueueError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path())
                .map_err(|e| from_io("remove an unfinished sled snapshot", &e))?;
            tracing::debug!(file = %name, "unfinished sled snapshot removed");
        }
    }
    Ok(())
}

/// Bytes of every file under `p`.
pub(super) fn dir_bytes(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Rebuilds the counters by scanning (only when the stored ones are damaged); ready keys
/// below the ack watermark are acked, not counted.
fn recount(db: &sled::Db, first: u64, acked_below: u64) -> Result<Counters, QueueError> {
    let mut c = Counters::starting_at(first);
    for item in db.iter() {
        let (k, v) = item.map_err(from_sled)?;
        // Only record keys carry ids: `b"Mcounters"` is 9 bytes long too.
        if !matches!(k.first(), Some(&(READY | DEAD | QUARANTINE))) {
            continue;
        }
        let Some(id) = id_of(&k) else { continue };
        c.next_id = c.next_id.max(id + 1);
        match k[0] {
            READY if id < acked_below => {}
            READY => {
                c.ready += 1;
                c.ready_bytes += v.len() as u64;
            }
            DEAD => {
                c.dead += 1;
                c.dead_bytes += v.len() as u64;
            }
            QUARANTINE => c.quarantined += 1,
            _ => {}
        }
    }
    Ok(c)
}

/// Opens the sled database at `path`. A database this process just closed can still look
/// locked for a moment (sled's threads drop their file handles asynchronously); segments are
/// closed and reopened often (LRU, roll), so retry briefly before calling it held by someone else.
pub(super) fn open_retrying_lock(
    config: &sled::Config,
    path: &Path,
) -> Result<sled::Db, QueueError> {
    let give_up = Instant::now() + SLED_LOCK_RETRY;
    loop {
        // sled panics on some damage instead of failing (`exit::opening_storage`).
        match crate::exit::opening_storage(path, || config.open()) {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if Instant::now() >= give_up {
                    return Err(QueueError::Locked {
                        path: path.display().to_string(),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(other) => {
                return Err(match from_sled(other) {
                    QueueError::Corrupt(why) => {
                        QueueError::Corrupt(format!("{}: {why}", path.display()))
                    }
                    e => e,
                });
            }
        }
    }
}
