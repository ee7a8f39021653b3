use super::*;
use crate::reading::Kind;
use crate::runtime::testing::{MemoryQueue, reading};
use crate::sources::ReadingSink;

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
