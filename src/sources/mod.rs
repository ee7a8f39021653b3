//! Sources: BLE, serial and MQTT adapters. Each emits device-neutral `Reading`s and never sees
//! FHIR, the queue's storage or HTTP.
//!
//! ## The acknowledgement contract
//! A source hands readings to a [`ReadingSink`] and awaits the result. `Ok(())` means the
//! readings are durable in the queue (on the storage device), so the source may now tell its
//! device or broker that they are safe (MQTT PUBACK, BLE stored-record delete is a separate,
//! later step that waits for the *server's* confirmation). Any error means "not stored": the
//! source must not acknowledge, so the device or broker keeps the data.

pub mod ble;

use tokio::sync::{mpsc, oneshot};

use crate::reading::Reading;

/// Why readings were not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The queue hit its configured limit or the disk is full. Temporary: retry later; do not
    /// acknowledge meanwhile.
    #[error("queue full: {0}")]
    QueueFull(String),
    /// Storage failed for another reason (I/O error). Temporary from the source's view.
    #[error("storage error: {0}")]
    Storage(String),
    /// The reading cannot be mapped to FHIR and never will be (e.g. a kind with no code).
    /// Permanent: the source may acknowledge and record it in its reject log.
    #[error("reading rejected: {0}")]
    Rejected(String),
    /// The gateway is shutting down; nothing was stored.
    #[error("gateway is shutting down")]
    ShuttingDown,
}

impl IngestError {
    /// True when the same readings will never be accepted (acknowledge and record the reject).
    pub fn is_permanent(&self) -> bool {
        matches!(self, IngestError::Rejected(_))
    }
}

/// Readings on their way to the mapper, with the channel that reports their fate.
#[derive(Debug)]
pub struct Submission {
    pub readings: Vec<Reading>,
    pub done: oneshot::Sender<Result<(), IngestError>>,
}

/// The handle a source uses to hand over readings. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReadingSink {
    tx: mpsc::Sender<Submission>,
}

impl ReadingSink {
    /// A sink and the receiving end the runtime's ingest task reads from. `capacity` bounds how
    /// many submissions can wait (back-pressure reaches the sources when the mapper is slow).
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Submission>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }

    /// Hands readings over and waits until they are durable (or refused).
    pub async fn submit(&self, readings: Vec<Reading>) -> Result<(), IngestError> {
        let (done, result) = oneshot::channel();
        self.tx
            .send(Submission { readings, done })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        result.await.unwrap_or(Err(IngestError::ShuttingDown))
    }
}

pub mod backoff;
pub mod mqtt;
pub mod serial;
#[cfg(test)]
pub(crate) mod test_sink;
