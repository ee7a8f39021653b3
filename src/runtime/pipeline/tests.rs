use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::reading::{Kind, Reading};
use crate::runtime::ingest::NoObserver;
use crate::runtime::testing::{MemoryQueue, reading};

/// Appends slowly enough that shutdown really has to wait for the ingest task.
type SlowQueue = MemoryQueue;

fn slow_queue() -> Arc<SlowQueue> {
    Arc::new(MemoryQueue::slow(Duration::from_millis(5)))
}

/// A source that submits readings until shutdown and counts the ones it was told are durable.
fn counting_source(acknowledged: Arc<AtomicUsize>) -> SourceStarter {
    Box::new(move |sink: ReadingSink, mut shutdown: Shutdown| {
        Box::pin(async move {
            let mut sequence = 0;
            loop {
                tokio::select! {
                    _ = shutdown.requested() => break,
                    result = sink.submit(vec![reading(Kind::HeartRate, sequence)]) => {
                        if result.is_ok() {
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                        sequence += 1;
                    }
                }
            }
        })
    })
}

fn pipeline(queue: Arc<SlowQueue>, sources: Vec<(String, SourceStarter)>) -> Pipeline {
    Pipeline {
        queue,
        map: Arc::new(|r: &Reading| Ok(r.sequence.unwrap_or(0).to_le_bytes().to_vec())),
        observer: Arc::new(NoObserver),
        sources,
        uploader: None,
        services: Vec::new(),
        telemetry: None,
    }
}

#[tokio::test]
async fn shutdown_loses_nothing_that_was_acknowledged() {
    let queue = slow_queue();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let sources = (0..3)
        .map(|i| (format!("source-{i}"), counting_source(acknowledged.clone())))
        .collect();
    let stop = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        "test".to_owned()
    };
    let outcome = pipeline(queue.clone(), sources)
        .run(stop, &Notifier::new(None, None, None))
        .await;
    assert_eq!(outcome.reason, StopReason::Requested("test".into()));
    assert!(outcome.aborted.is_empty(), "{:?}", outcome.aborted);
    let acked = acknowledged.load(Ordering::SeqCst);
    assert!(acked > 0, "sources made progress");
    // Every acknowledged reading is stored; stored may exceed acked by submissions whose
    // answer arrived after the source stopped listening (stored but not acknowledged: safe).
    assert!(queue.stored_len() >= acked);
}

#[tokio::test]
async fn a_task_that_ends_on_its_own_stops_the_gateway() {
    let queue = slow_queue();
    let quitter: SourceStarter = Box::new(|_sink, _shutdown| Box::pin(async {}));
    let stop = std::future::pending::<String>();
    let outcome = pipeline(queue, vec![("quitter".into(), quitter)])
        .run(stop, &Notifier::new(None, None, None))
        .await;
    assert_eq!(outcome.reason, StopReason::TaskEnded("quitter".into()));
}

#[tokio::test]
async fn with_no_sources_the_pipeline_runs_until_stopped() {
    let queue = slow_queue();
    let stop = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        "done".to_owned()
    };
    let outcome = pipeline(queue, Vec::new())
        .run(stop, &Notifier::new(None, None, None))
        .await;
    assert_eq!(outcome.reason, StopReason::Requested("done".into()));
}

#[tokio::test(start_paused = true)]
async fn a_stuck_uploader_is_aborted_at_the_deadline() {
    let queue = slow_queue();
    let mut p = pipeline(queue, Vec::new());
    p.uploader = Some(Box::new(|_shutdown| Box::pin(std::future::pending::<()>())));
    let started = tokio::time::Instant::now();
    let outcome = p
        .run(
            async { "stop".to_owned() },
            &Notifier::new(None, None, None),
        )
        .await;
    assert_eq!(outcome.aborted, vec!["uploader".to_owned()]);
    assert!(started.elapsed() <= SHUTDOWN_BUDGET + Duration::from_millis(10));
}

#[tokio::test]
async fn watchdog_pings_while_alive_and_stops_when_a_task_dies() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&path).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    // 200 ms watchdog → ping every 100 ms.
    let notifier = Notifier::new(path.to_str(), Some("200000"), None);
    let queue = slow_queue();
    let dies_later: SourceStarter = Box::new(|_sink, _shutdown| {
        Box::pin(async { tokio::time::sleep(Duration::from_millis(350)).await })
    });
    let outcome = pipeline(queue, vec![("dies".into(), dies_later)])
        .run(std::future::pending::<String>(), &notifier)
        .await;
    assert_eq!(outcome.reason, StopReason::TaskEnded("dies".into()));
    let mut messages = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(n) = listener.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(messages.first().map(String::as_str), Some("READY=1"));
    assert_eq!(messages.last().map(String::as_str), Some("STOPPING=1"));
    let pings = messages.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!((2..=5).contains(&pings), "pings while alive: {messages:?}");
}
