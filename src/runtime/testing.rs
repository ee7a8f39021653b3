//! Test support for the runtime's unit tests: an in-memory queue and a plain reading.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::queue::{
    DeadLetter, DurableQueue, FullReason, QueueError, QueueStats, QueuedRecord, RecordId,
};
use crate::reading::{DeviceIdentity, Kind, Reading, SourceKind};

/// Stores payloads in memory; can refuse appends (`full`), take time per append (`delay`) and
/// fail its first `peek_refusals.1` peeks with `peek_refusals.0` (peeks are counted in `peeks`;
/// otherwise a peek finds nothing).
#[derive(Default)]
pub struct MemoryQueue {
    pub stored: Mutex<Vec<Vec<u8>>>,
    pub appends: Mutex<usize>,
    pub full: Mutex<bool>,
    pub delay: Option<Duration>,
    pub peek_refusals: Option<(fn() -> QueueError, usize)>,
    pub peeks: AtomicUsize,
}

impl MemoryQueue {
    pub fn slow(delay: Duration) -> Self {
        Self {
            delay: Some(delay),
            ..Self::default()
        }
    }

    /// A queue whose first `times` peeks fail with `error()`.
    pub fn refusing_peeks(error: fn() -> QueueError, times: usize) -> Self {
        Self {
            peek_refusals: Some((error, times)),
            ..Self::default()
        }
    }

    pub fn stored_len(&self) -> usize {
        self.stored.lock().expect("lock").len()
    }
}

impl DurableQueue for MemoryQueue {
    fn append(&self, payloads: Vec<Vec<u8>>) -> BoxFuture<'_, Result<Vec<RecordId>, QueueError>> {
        Box::pin(async move {
            if let Some(delay) = self.delay {
                tokio::time::sleep(delay).await;
            }
            if *self.full.lock().expect("lock") {
                return Err(QueueError::Full(FullReason::Records { limit: 1 }));
            }
            *self.appends.lock().expect("lock") += 1;
            let mut stored = self.stored.lock().expect("lock");
            let first = stored.len() as u64;
            let n = payloads.len() as u64;
            stored.extend(payloads);
            Ok((first..first + n).map(RecordId).collect())
        })
    }
    fn peek(&self, _: usize) -> Result<Vec<QueuedRecord>, QueueError> {
        let seen = self.peeks.fetch_add(1, Ordering::SeqCst);
        match self.peek_refusals {
            Some((error, times)) if seen < times => Err(error()),
            _ => Ok(Vec::new()),
        }
    }
    fn ack(&self, _: &[RecordId]) -> Result<(), QueueError> {
        Ok(())
    }
    fn nack(&self, _: RecordId, _: Duration) -> Result<(), QueueError> {
        Ok(())
    }
    fn dead_letter(&self, _: RecordId, _: String) -> Result<(), QueueError> {
        Ok(())
    }
    fn requeue_dead(&self, _: Option<RecordId>) -> Result<u64, QueueError> {
        Ok(0)
    }
    fn purge_dead(&self) -> Result<u64, QueueError> {
        Ok(0)
    }
    fn list_dead(&self, _: usize) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(Vec::new())
    }
    fn stats(&self) -> Result<QueueStats, QueueError> {
        Ok(QueueStats::default())
    }
    fn oldest_waiting(&self) -> Result<Option<RecordId>, QueueError> {
        Ok(None)
    }
}

/// A reading with no value (the runtime tests map it with their own closures).
pub fn reading(kind: Kind, sequence: u32) -> Reading {
    Reading {
        device: DeviceIdentity {
            source: SourceKind::Ble,
            address: "C0:FF:EE:00:00:01".into(),
            system_id: None,
            manufacturer: None,
            model: None,
            serial_number: None,
        },
        kind,
        value: None,
        components: Vec::new(),
        device_time: None,
        received_at: time::OffsetDateTime::UNIX_EPOCH,
        clock: Default::default(),
        status: Vec::new(),
        sequence: Some(sequence),
        user_id: None,
        qualifiers: Default::default(),
    }
}
