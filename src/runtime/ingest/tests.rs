use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

use super::*;
use crate::queue::{DeadLetter, FullReason, QueueError, QueueStats, QueuedRecord, RecordId};
use crate::reading::{DeviceIdentity, Kind, SourceKind};
use crate::sources::ReadingSink;

/// In-memory stand-in for the durable queue: stores payloads, or refuses when `full`.
#[derive(Default)]
struct MemoryQueue {
    stored: Mutex<Vec<Vec<u8>>>,
    appends: Mutex<usize>,
    full: Mutex<bool>,
}

impl DurableQueue for MemoryQueue {
    fn append(&self, payloads: Vec<Vec<u8>>) -> BoxFuture<'_, Result<Vec<RecordId>, QueueError>> {
        Box::pin(async move {
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
        Ok(Vec::new())
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
}

fn reading(kind: Kind, sequence: u32) -> Reading {
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

/// Maps every kind but respiratory rate (to exercise rejection).
fn test_map(reading: &Reading) -> Result<Vec<u8>, String> {
    if reading.kind == Kind::RespiratoryRate {
        return Err("no mapping".into());
    }
    Ok(format!("{:?}-{}", reading.kind, reading.sequence.unwrap_or(0)).into_bytes())
}

fn start(queue: Arc<MemoryQueue>) -> (ReadingSink, tokio::task::JoinHandle<()>) {
    let (sink, submissions) = ReadingSink::channel(16);
    let ingest = Ingest {
        submissions,
        queue,
        map: Arc::new(test_map),
        observer: Arc::new(NoObserver),
    };
    (sink, tokio::spawn(ingest.run()))
}

#[tokio::test]
async fn stored_readings_are_acknowledged_after_append() {
    let queue = Arc::new(MemoryQueue::default());
    let (sink, task) = start(queue.clone());
    sink.submit(vec![
        reading(Kind::HeartRate, 1),
        reading(Kind::HeartRate, 2),
    ])
    .await
    .expect("stored");
    assert_eq!(
        *queue.stored.lock().expect("lock"),
        vec![b"HeartRate-1".to_vec(), b"HeartRate-2".to_vec()]
    );
    drop(sink);
    task.await.expect("ingest ends when sinks are gone");
}

#[tokio::test]
async fn an_unmappable_submission_is_rejected_whole_and_others_still_stored() {
    let queue = Arc::new(MemoryQueue::default());
    let (sink, _task) = start(queue.clone());
    let bad = sink.submit(vec![
        reading(Kind::HeartRate, 1),
        reading(Kind::RespiratoryRate, 2),
    ]);
    let good = sink.submit(vec![reading(Kind::BodyWeight, 3)]);
    let (bad, good) = tokio::join!(bad, good);
    let err = bad.expect_err("rejected");
    assert!(err.is_permanent(), "{err:?}");
    good.expect("stored");
    assert_eq!(
        *queue.stored.lock().expect("lock"),
        vec![b"BodyWeight-3".to_vec()]
    );
}

#[tokio::test]
async fn a_full_queue_refuses_temporarily() {
    let queue = Arc::new(MemoryQueue::default());
    *queue.full.lock().expect("lock") = true;
    let (sink, _task) = start(queue.clone());
    let err = sink
        .submit(vec![reading(Kind::HeartRate, 1)])
        .await
        .expect_err("full");
    assert!(matches!(err, IngestError::QueueFull(_)), "{err:?}");
    assert!(!err.is_permanent());
    *queue.full.lock().expect("lock") = false;
    sink.submit(vec![reading(Kind::HeartRate, 1)])
        .await
        .expect("recovers by itself");
}

#[tokio::test]
async fn waiting_submissions_share_one_append() {
    let queue = Arc::new(MemoryQueue::default());
    let (sink, submissions) = ReadingSink::channel(64);
    let submits: Vec<_> = (0..50)
        .map(|i| {
            let sink = sink.clone();
            tokio::spawn(async move { sink.submit(vec![reading(Kind::HeartRate, i)]).await })
        })
        .collect();
    // Let every submitter enqueue before the ingest stage starts (current-thread runtime).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let ingest = Ingest {
        submissions,
        queue: queue.clone(),
        map: Arc::new(test_map),
        observer: Arc::new(NoObserver),
    };
    let _task = tokio::spawn(ingest.run());
    for submit in submits {
        submit.await.expect("joined").expect("stored");
    }
    assert_eq!(queue.stored.lock().expect("lock").len(), 50);
    assert_eq!(
        *queue.appends.lock().expect("lock"),
        1,
        "one group commit for all waiting submissions"
    );
}
