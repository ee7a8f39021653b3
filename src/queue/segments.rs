//! The segment set: one [`Store`] (a sled database) per id range, routing by id, the bounded
//! set of open databases, the roll to a new head and the removal of drained segments.
//!
//! Each segment is crash-consistent by itself (every change is one sled batch in one segment).
//! The only steps that touch more than one segment are the roll and the delete; both are
//! ordered so that a crash at any point leaves a state `open` understands (see the module doc).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::store::{Counters, Store, dir_bytes, from_io};
use super::{QueueConfig, QueueError, RecordId};

/// Sealed segments kept open besides the head (least recently used is closed first).
pub(super) const OPEN_SEALED: usize = 2;
/// Directory of the segments inside the data directory.
const SEGMENTS_DIR: &str = "segments";
/// A drained head with at least this many acked records on disk is rolled (and so deleted):
/// ≈ 10 MB of the uploader's units.
const DRAINED_HEAD_ROLL: u64 = 4096;
/// The single sled database of installations before segments; read as the segment with
/// first id 1.
const LEGACY_DIR: &str = "queue";
/// Suffix of a segment being removed (renamed first, so a crash leaves no half segment).
const DELETING: &str = ".deleting";
/// Suffix of a segment being created (renamed to its name once its database and counters are
/// durable, so a crash never leaves a half-created sled database under a segment's name).
const CREATING: &str = ".creating";
/// Per-segment summary written when a sealed segment is closed, removed when it is opened.
const SUMMARY: &str = "summary";
const SUMMARY_TMP: &str = "summary.tmp";

/// One segment: its directory, its store when open, and what is known of it when closed.
pub(super) struct Segment {
    path: PathBuf,
    store: Option<Store>,
    /// Counters as of the last close (the store's own counters while it is open).
    closed_counters: Counters,
    /// Size on disk as of the last close.
    closed_bytes: u64,
    /// Retry deadlines of nacked records, kept while the store is closed.
    closed_delays: HashMap<u64, Instant>,
    /// Every ready record of this segment is delayed until at least this instant: `peek`
    /// passes over the segment without opening it until then.
    pub idle_until: Option<Instant>,
    /// LRU tick of the last use.
    used: u64,
}

impl Segment {
    pub fn counters(&self) -> Counters {
        self.store
            .as_ref()
            .map_or(self.closed_counters, |s| s.counters)
    }

    /// Retry deadlines of nacked records known in memory.
    pub fn delays(&self) -> &HashMap<u64, Instant> {
        self.store
            .as_ref()
            .map_or(&self.closed_delays, |s| &s.delays)
    }

    fn bytes_on_disk(&self) -> u64 {
        self.store
            .as_ref()
            .map_or(self.closed_bytes, |s| s.bytes_on_disk())
    }
}

/// All segments of a data directory.
pub(super) struct Segments {
    root: PathBuf,
    cache_bytes: u64,
    segment_records: u64,
    segs: BTreeMap<u64, Segment>,
    tick: u64,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}")
}

fn fsync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| from_io(&format!("fsync {}", dir.display()), &e))
}

/// Creates the empty segment `first` atomically: sled database and counters (next id =
/// `first`) written and flushed in `<name>.creating`, closed, renamed to `<name>`, parent
/// fsynced. A directory already under the final name (a retried roll) is kept as it is.
fn create_segment(seg_root: &Path, first: u64, cache_bytes: u64) -> Result<PathBuf, QueueError> {
    let path = seg_root.join(segment_name(first));
    if path.is_dir() {
        return Ok(path);
    }
    let tmp = seg_root.join(format!("{}{CREATING}", segment_name(first)));
    if tmp.exists() {
        finish_delete(&tmp)?;
    }
    let mut store = Store::open(&tmp, cache_bytes, first)?;
    let counters = store.counters;
    store.apply(sled::Batch::default(), counters)?;
    store.durable_flush()?;
    store.close()?;
    drop(store);
    std::fs::rename(&tmp, &path).map_err(|e| from_io(&format!("rename {}", tmp.display()), &e))?;
    fsync_dir(seg_root)?;
    Ok(path)
}

/// Removes a directory renamed to `*.deleting` (the tail of an interrupted delete, too).
fn finish_delete(path: &Path) -> Result<(), QueueError> {
    std::fs::remove_dir_all(path).map_err(|e| from_io(&format!("remove {}", path.display()), &e))
}

fn read_summary(dir: &Path) -> Option<(Counters, u64)> {
    let raw = std::fs::read(dir.join(SUMMARY)).ok()?;
    if raw.len() != 60 {
        return None;
    }
    let (counters, bytes) = raw.split_at(52);
    let counters = Counters::decode(counters)?;
    let bytes = u64::from_le_bytes(bytes.try_into().ok()?);
    Some((counters, bytes))
}

/// Writes the summary atomically (temp file, fdatasync, rename, fsync of the directory).
fn write_summary(dir: &Path, counters: &Counters, bytes: u64) -> Result<(), QueueError> {
    let tmp = dir.join(SUMMARY_TMP);
    let mut raw = counters.encode();
    raw.extend_from_slice(&bytes.to_le_bytes());
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&raw)?;
        f.sync_data()?;
        std::fs::rename(&tmp, dir.join(SUMMARY))
    };
    write().map_err(|e| from_io("write segment summary", &e))?;
    fsync_dir(dir)
}

/// Removes the summary before the segment can change, durably (a stale summary must never
/// be read at the next start).
fn drop_summary(dir: &Path) -> Result<(), QueueError> {
    match std::fs::remove_file(dir.join(SUMMARY)) {
        Ok(()) => fsync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(from_io("remove segment summary", &e)),
    }
}

impl Segments {
    /// Finds the segments of `root` (finishing interrupted deletes), reads every sealed
    /// segment's counters (from its summary, else by opening it alone), opens the head.
    pub fn open(root: &Path, cfg: &QueueConfig) -> Result<Self, QueueError> {
        let seg_root = root.join(SEGMENTS_DIR);
        let mut found: BTreeMap<u64, PathBuf> = BTreeMap::new();
        let legacy = root.join(LEGACY_DIR);
        let legacy_deleting = root.join(format!("{LEGACY_DIR}{DELETING}"));
        if legacy_deleting.exists() {
            finish_delete(&legacy_deleting)?;
        }
        if legacy.is_dir() {
            found.insert(1, legacy);
        }
        if seg_root.is_dir() {
            let entries = std::fs::read_dir(&seg_root)
                .map_err(|e| from_io(&format!("read {}", seg_root.display()), &e))?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.ends_with(DELETING) || name.ends_with(CREATING) {
                    finish_delete(&path)?;
                    continue;
                }
                let Ok(first) = name.parse::<u64>() else {
                    continue;
                };
                if name.len() != 20 || first == 0 || !path.is_dir() {
                    continue;
                }
                if found.insert(first, path).is_some() {
                    return Err(QueueError::Corrupt(format!(
                        "both {} and segment {} exist",
                        root.join(LEGACY_DIR).display(),
                        name
                    )));
                }
            }
        }
        let mut set = Self {
            root: root.to_owned(),
            cache_bytes: cfg.cache_bytes,
            segment_records: cfg.segment_records,
            segs: BTreeMap::new(),
            tick: 0,
        };
        if found.is_empty() {
            std::fs::create_dir_all(&seg_root)
                .map_err(|e| from_io(&format!("create {}", seg_root.display()), &e))?;
            fsync_dir(root)?;
            // The first segment is created in place, as the single database always was: a
            // crash before anything was appended can only lose an empty queue.
            found.insert(1, seg_root.join(segment_name(1)));
        }
        let head_first = *found
            .keys()
            .next_back()
            .expect("invariant: found is not empty");
        let mut max_next = 1;
        for (first, path) in found {
            let mut seg = Segment {
                path,
                store: None,
                closed_counters: Counters::starting_at(first),
                closed_bytes: 0,
                closed_delays: HashMap::new(),
                idle_until: None,
                used: 0,
            };
            if first == head_first {
                drop_summary(&seg.path)?;
                seg.store = Some(Store::open(&seg.path, set.cache_bytes, first)?);
            } else if let Some((counters, bytes)) = read_summary(&seg.path) {
                seg.closed_counters = counters;
                seg.closed_bytes = bytes;
            } else {
                // Open at a crash (or a legacy database): read its counters, alone.
                let mut store = Store::open(&seg.path, set.cache_bytes, first)?;
                store.close()?;
                seg.closed_counters = store.counters;
                seg.closed_bytes = dir_bytes(&seg.path);
                write_summary(&seg.path, &seg.closed_counters, seg.closed_bytes)?;
            }
            max_next = max_next.max(seg.counters().next_id);
            set.segs.insert(first, seg);
        }
        // Ids are never reused: the head continues after the highest id any segment saw.
        let head = set.head_store()?;
        head.counters.next_id = head.counters.next_id.max(max_next);
        let sealed: Vec<u64> = set
            .firsts()
            .into_iter()
            .filter(|f| *f != head_first)
            .collect();
        for first in sealed {
            set.delete_if_drained(first)?;
        }
        Ok(set)
    }

    /// How many segments have their database open (the head included).
    pub fn open_count(&self) -> usize {
        self.segs.values().filter(|s| s.store.is_some()).count()
    }

    /// First ids of every segment, oldest first.
    pub fn firsts(&self) -> Vec<u64> {
        self.segs.keys().copied().collect()
    }

    pub fn head_first(&self) -> u64 {
        *self
            .segs
            .keys()
            .next_back()
            .expect("invariant: the head is never removed")
    }

    pub fn segment(&self, first: u64) -> Option<&Segment> {
        self.segs.get(&first)
    }

    pub fn segment_mut(&mut self, first: u64) -> Option<&mut Segment> {
        self.segs.get_mut(&first)
    }

    /// The head's store (always open).
    pub fn head_store(&mut self) -> Result<&mut Store, QueueError> {
        let first = self.head_first();
        self.store(first)
    }

    /// The segment that holds `id`, if any can (ids of removed segments route nowhere).
    pub fn route(&self, id: RecordId) -> Option<u64> {
        let (first, seg) = self.segs.range(..=id.0).next_back()?;
        (id.0 < seg.counters().next_id).then_some(*first)
    }

    /// Sum of every segment's counters; `next_id` is the head's.
    pub fn totals(&self) -> Counters {
        let mut t = Counters::starting_at(0);
        for seg in self.segs.values() {
            let c = seg.counters();
            t.ready += c.ready;
            t.ready_bytes += c.ready_bytes;
            t.dead += c.dead;
            t.dead_bytes += c.dead_bytes;
            t.quarantined += c.quarantined;
            t.next_id = t.next_id.max(c.next_id);
        }
        t
    }

    pub fn bytes_on_disk(&self) -> u64 {
        self.segs.values().map(Segment::bytes_on_disk).sum()
    }

    /// The open store of segment `first`, opening it (and closing the least recently used
    /// sealed one beyond [`OPEN_SEALED`]) when needed.
    pub fn store(&mut self, first: u64) -> Result<&mut Store, QueueError> {
        self.tick += 1;
        let tick = self.tick;
        let head = self.head_first();
        let cache_bytes = self.cache_bytes;
        let seg = self
            .segs
            .get_mut(&first)
            .ok_or(QueueError::NotFound(RecordId(first)))?;
        seg.used = tick;
        if seg.store.is_none() {
            drop_summary(&seg.path)?;
            let mut store = Store::open(&seg.path, cache_bytes, first)?;
            // Deadlines set while it was open before stay (monotonic); others come from disk.
            store.delays = std::mem::take(&mut seg.closed_delays);
            seg.store = Some(store);
            self.evict(head, first)?;
        }
        let seg = self
            .segs
            .get_mut(&first)
            .expect("invariant: segment looked up above");
        let store = seg.store.as_mut().expect("invariant: opened above");
        store.ensure_open()?;
        Ok(store)
    }

    /// Closes least recently used sealed segments until at most [`OPEN_SEALED`] are open.
    fn evict(&mut self, head: u64, keep: u64) -> Result<(), QueueError> {
        loop {
            let open: Vec<(u64, u64)> = self
                .segs
                .iter()
                .filter(|(f, s)| **f != head && s.store.is_some())
                .map(|(f, s)| (s.used, *f))
                .collect();
            if open.len() <= OPEN_SEALED {
                return Ok(());
            }
            let Some((_, victim)) = open.into_iter().filter(|(_, f)| *f != keep).min() else {
                return Ok(());
            };
            self.close_segment(victim)?;
        }
    }

    /// Closes a segment's store (flush + fdatasync), keeping what is known of it in memory.
    /// Returns whether the store was healthy (its counters match the disk).
    fn take_store(seg: &mut Segment) -> Result<bool, QueueError> {
        let Some(mut store) = seg.store.take() else {
            return Ok(true);
        };
        let healthy = store.broken.is_none();
        let closed = store.close();
        seg.closed_counters = store.counters;
        seg.closed_delays = std::mem::take(&mut store.delays);
        drop(store);
        seg.closed_bytes = dir_bytes(&seg.path);
        closed.map(|()| healthy)
    }

    /// Closes a segment's store and writes its summary.
    fn close_segment(&mut self, first: u64) -> Result<(), QueueError> {
        let Some(seg) = self.segs.get_mut(&first) else {
            return Ok(());
        };
        if seg.store.is_none() {
            return Ok(());
        }
        if Self::take_store(seg)? {
            write_summary(&seg.path, &seg.closed_counters, seg.closed_bytes)?;
        }
        Ok(())
    }

    /// Flushes every open store with unflushed acks or nacks (the lazy flush).
    pub fn flush_dirty(&mut self) {
        for seg in self.segs.values_mut() {
            if let Some(store) = seg.store.as_mut()
                && store.dirty
                && store.broken.is_none()
            {
                let _ = store.durable_flush();
            }
        }
    }

    /// The open store of segment `first`, as it is (no reopen after an error).
    pub fn open_store_mut(&mut self, first: u64) -> Option<&mut Store> {
        self.segs.get_mut(&first).and_then(|s| s.store.as_mut())
    }

    /// Rolls to a new head when the head holds `segment_records` ids: the new segment is
    /// created durably first (counters with next id = its name, directory fsynced), then the
    /// old head is sealed (closed and reopened once so sled writes its snapshot) or, if
    /// already drained, deleted. Appends must not go to the old head once this was needed,
    /// so an error here refuses the commit rather than growing the old head past the name
    /// of a half-created successor.
    pub fn roll_if_full(&mut self) -> Result<(), QueueError> {
        let old = self.head_first();
        let next = self.head_store()?.counters.next_id;
        if next.saturating_sub(old) < self.segment_records {
            return Ok(());
        }
        self.roll()
    }

    /// Makes a new head starting at the head's next id; seals or deletes the old head.
    fn roll(&mut self) -> Result<(), QueueError> {
        let old = self.head_first();
        let next = self.head_store()?.counters.next_id;
        let seg_root = self.root.join(SEGMENTS_DIR);
        std::fs::create_dir_all(&seg_root)
            .map_err(|e| from_io(&format!("create {}", seg_root.display()), &e))?;
        let path = create_segment(&seg_root, next, self.cache_bytes)?;
        fsync_dir(&self.root)?;
        let store = Store::open(&path, self.cache_bytes, next)?;
        let counters = store.counters;
        self.tick += 1;
        self.segs.insert(
            next,
            Segment {
                path,
                store: Some(store),
                closed_counters: counters,
                closed_bytes: 0,
                closed_delays: HashMap::new(),
                idle_until: None,
                used: self.tick,
            },
        );
        tracing::debug!(first = next, "queue rolled to a new segment");
        if self.delete_if_drained(old)? {
            return Ok(());
        }
        // Seal: a reopen makes sled write its snapshot, so later opens need not replay the log.
        let seg = self.segs.get_mut(&old).expect("invariant: old head exists");
        let healthy = Self::take_store(seg)?;
        Store::open(&seg.path, self.cache_bytes, old)?.close()?;
        seg.closed_bytes = dir_bytes(&seg.path);
        if healthy {
            write_summary(&seg.path, &seg.closed_counters, seg.closed_bytes)?;
        }
        Ok(())
    }

    /// Rolls to a new head when the head `first` holds nothing any more but keeps at least
    /// `DRAINED_HEAD_ROLL` acked records on disk below its ack watermark: deleting the drained
    /// old head gives their space back (acked records are not removed one by one, module doc
    /// "Acks"). Bounds the disk a gateway that keeps up with its readings uses for them.
    pub fn roll_if_drained_head(&mut self, first: u64) -> Result<(), QueueError> {
        if first != self.head_first() {
            return Ok(());
        }
        let store = self.head_store()?;
        if store.counters.held() != 0 || store.acked_below.saturating_sub(first) < DRAINED_HEAD_ROLL
        {
            return Ok(());
        }
        self.roll()
    }

    /// Removes a sealed segment that holds nothing any more (no ready, dead or quarantined
    /// record): close, rename to `*.deleting`, fsync the parent, remove. Returns whether it
    /// was removed. The head is never removed (its next id is the queue's).
    pub fn delete_if_drained(&mut self, first: u64) -> Result<bool, QueueError> {
        if first == self.head_first() {
            return Ok(false);
        }
        let Some(seg) = self.segs.get_mut(&first) else {
            return Ok(false);
        };
        if seg.counters().held() != 0 {
            return Ok(false);
        }
        if let Some(mut store) = seg.store.take() {
            store.close()?;
        }
        let path = seg.path.clone();
        let parent = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        let mut doomed = path.clone().into_os_string();
        doomed.push(DELETING);
        let doomed = PathBuf::from(doomed);
        std::fs::rename(&path, &doomed)
            .map_err(|e| from_io(&format!("rename {}", path.display()), &e))?;
        self.segs.remove(&first);
        fsync_dir(&parent)?;
        finish_delete(&doomed)?;
        tracing::debug!(first, "drained queue segment removed");
        Ok(true)
    }

    /// Flushes and closes every segment (summaries for the sealed ones).
    pub fn close_all(&mut self) -> Result<(), QueueError> {
        let head = self.head_first();
        let mut result = Ok(());
        for first in self.firsts() {
            let r = if first == head {
                match self.segs.get_mut(&first).and_then(|s| s.store.as_mut()) {
                    Some(store) => store.close(),
                    None => Ok(()),
                }
            } else {
                self.close_segment(first)
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}
