//! Group commit: one thread turns every append that arrived while the previous flush ran into
//! one sled batch and one durable flush, then resolves them all.
//!
//! The thread belongs to the engine (like sled's own threads), not to the runtime: the queue
//! must give the same guarantee to the daemon, the CLI and the benchmark, with or without tokio.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use super::record::{HEADER_LEN, Stored, to_ms};
use super::segments::Segments;
use super::store::{READY, key};
use super::{FullReason, QueueConfig, QueueError, RecordId};

/// How long acks and nacks may stay unflushed.
pub(super) const LAZY_FLUSH: Duration = Duration::from_millis(1000);

pub(super) type Reply = oneshot::Sender<Result<Vec<RecordId>, QueueError>>;

pub(super) struct Request {
    pub payloads: Vec<Vec<u8>>,
    pub reply: Reply,
}

#[derive(Default)]
pub(super) struct Pending {
    pub requests: Vec<Request>,
    pub shutdown: bool,
}

/// State shared by the handle and the commit thread.
pub(super) struct Shared {
    pub cfg: QueueConfig,
    pub segs: Mutex<Segments>,
    pub pending: Mutex<Pending>,
    pub wake: Condvar,
    /// Group commits done (each is one durable flush), for tests and the benchmark.
    pub commits: AtomicU64,
}

pub(super) fn run(shared: Arc<Shared>) {
    loop {
        let (requests, shutdown) = {
            let mut pending = shared.pending.lock();
            if pending.requests.is_empty() && !pending.shutdown {
                shared.wake.wait_for(&mut pending, LAZY_FLUSH);
            }
            (std::mem::take(&mut pending.requests), pending.shutdown)
        };
        if !requests.is_empty() {
            commit(&shared, requests);
        } else if !shutdown {
            shared.segs.lock().flush_dirty();
        }
        if shutdown && shared.pending.lock().requests.is_empty() {
            return;
        }
    }
}

fn commit(shared: &Shared, requests: Vec<Request>) {
    let mut segs = shared.segs.lock();
    // Roll before appending: once the head is full nothing more may go into it (see
    // `Segments::roll_if_full`).
    if let Err(err) = segs.roll_if_full() {
        let head_first = segs.head_first();
        if let QueueError::Full(reason) = &err
            && let Some(head) = segs.open_store_mut(head_first)
        {
            head.refusal = Some(reason.clone());
        }
        tracing::warn!(error = %err, "queue could not start a new segment");
        for req in requests {
            let _ = req.reply.send(Err(err.clone()));
        }
        return;
    }
    let totals = segs.totals();
    let head_first = segs.head_first();
    if let Some(seg) = segs.segment_mut(head_first) {
        seg.idle_until = None;
    }
    let store = match segs.head_store() {
        Ok(store) => store,
        Err(err) => {
            for req in requests {
                let _ = req.reply.send(Err(err.clone()));
            }
            return;
        }
    };
    let cfg = &shared.cfg;
    let now_ms = to_ms(SystemTime::now());
    let mut counters = store.counters;
    // Records and bytes already stored in every segment, plus those accepted in this batch.
    let mut stored_records = totals.ready + totals.dead;
    let mut stored_bytes = totals.ready_bytes + totals.dead_bytes;
    let mut batch = sled::Batch::default();
    let mut accepted: Vec<(Reply, Vec<RecordId>)> = Vec::new();
    let mut refused = None;
    for req in requests {
        let n = req.payloads.len() as u64;
        let bytes: u64 = req
            .payloads
            .iter()
            .map(|p| (HEADER_LEN + p.len()) as u64)
            .sum();
        let refusal = if stored_records + n > cfg.max_records {
            Some(FullReason::Records {
                limit: cfg.max_records,
            })
        } else if stored_bytes + bytes > cfg.max_bytes {
            Some(FullReason::Bytes {
                limit: cfg.max_bytes,
            })
        } else {
            None
        };
        if let Some(reason) = refusal {
            let _ = req.reply.send(Err(QueueError::Full(reason.clone())));
            refused = Some(reason);
            continue;
        }
        let mut ids = Vec::with_capacity(req.payloads.len());
        for payload in req.payloads {
            let id = counters.next_id;
            counters.next_id += 1;
            let record = Stored {
                attempts: 0,
                enqueued_ms: now_ms,
                nacked_ms: 0,
                retry_ms: 0,
                payload,
            };
            batch.insert(&key(READY, id), record.encode(id));
            ids.push(RecordId(id));
        }
        counters.ready += n;
        counters.ready_bytes += bytes;
        stored_records += n;
        stored_bytes += bytes;
        accepted.push((req.reply, ids));
    }
    if let Some(reason) = &refused {
        tracing::warn!(reason = %reason, "queue full: appends refused");
    }
    store.refusal = refused;
    if accepted.is_empty() {
        return;
    }
    let result = store
        .apply_append(batch, counters)
        .and_then(|()| store.durable_flush());
    drop(segs);
    shared.commits.fetch_add(1, Ordering::Relaxed);
    for (reply, ids) in accepted {
        let _ = reply.send(result.clone().map(|()| ids));
    }
}
