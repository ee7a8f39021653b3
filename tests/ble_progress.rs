//! Server-confirmed stored-record progress, end to end: a simulated glucose meter (hal's
//! simulator) → the BLE source → ingest → the real sled queue → the real uploader with the
//! runtime's confirmation hook → the in-process FHIR test double. The meter deletes records
//! only after the double stored them; a restarted source (same state dir) asks only for newer
//! records; a refusing server (503) means no delete. Real time, a few seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vectorcare_gateway::config::problems::Problems;
use vectorcare_gateway::fhir::examples::example_map_context;
use vectorcare_gateway::fhir::{BundleOptions, BundleType, WriteMode, encode_unit, map_reading};
use vectorcare_gateway::queue::{DurableQueue, QueueConfig, SledQueue};
use vectorcare_gateway::runtime::confirm::BleProgressConfirmer;
use vectorcare_gateway::runtime::ingest::{Ingest, NoObserver};
use vectorcare_gateway::sources::ReadingSink;
use vectorcare_gateway::sources::ble::config::{RawBleConfig, RawBleDevice};
use vectorcare_gateway::sources::ble::profiles::Profile;
use vectorcare_gateway::sources::ble::simulated::{SimulatedHealthDevice, standard_device};
use vectorcare_gateway::sources::ble::{BleSource, FileProgressStore, StoredRecordProgress};
use vectorcare_gateway::test_double::{self, Fault, TestDouble, TestDoubleOptions};
use vectorcare_gateway::upload::assertion::AssertionSigner;
use vectorcare_gateway::upload::auth::{AuthSettings, Authorizer};
use vectorcare_gateway::upload::client::{HttpSettings, build_http_client};
use vectorcare_gateway::upload::keys::{SigningAlg, SigningKey, generate_private_key_pem};
use vectorcare_gateway::upload::retry::Backoff;
use vectorcare_gateway::upload::uploader::{Step, Uploader, UploaderSettings};
use vectorcare_hal::ble::simulated::SimulatedCentral;
use vectorcare_hal::clock::SimulatedClock;

const PATIENCE: Duration = Duration::from_secs(20);

/// RACP requests as the meter received them.
const REPORT_ALL: [u8; 2] = [1, 1];
fn report_from(sequence: u16) -> Vec<u8> {
    let [lo, hi] = sequence.to_le_bytes();
    vec![1, 3, 1, lo, hi]
}
fn delete_up_to(sequence: u16) -> Vec<u8> {
    let [lo, hi] = sequence.to_le_bytes();
    vec![2, 2, 1, lo, hi]
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn racp_writes(meter: &SimulatedHealthDevice) -> Vec<Vec<u8>> {
    meter
        .device()
        .writes()
        .into_iter()
        .map(|(_, w)| w)
        .collect()
}

/// The BLE source and the ingest task for one "process lifetime" of the gateway.
struct Collecting {
    stop: oneshot::Sender<()>,
    source: JoinHandle<()>,
    ingest: JoinHandle<()>,
}

fn start_collecting(
    central: &SimulatedCentral,
    meter: &SimulatedHealthDevice,
    queue: Arc<SledQueue>,
    progress: Arc<FileProgressStore>,
) -> Collecting {
    let raw = RawBleConfig {
        adapter: None,
        devices: vec![RawBleDevice {
            address: meter.address().to_string(),
            profile: None,
            delete_after_upload: true,
            passkey: None,
        }],
        accept_any_health_device: false,
        scan_watchdog_minutes: 5,
        backoff_initial_seconds: 1,
        backoff_max_seconds: 1,
    };
    let mut problems = Problems::new();
    let config = raw
        .validate("sources.ble", &mut problems)
        .expect("test config is valid");
    let (sink, submissions) = ReadingSink::channel(4);
    let context = example_map_context(true);
    let ingest = Ingest {
        submissions,
        queue: queue as Arc<dyn DurableQueue>,
        map: Arc::new(move |reading| {
            let unit = map_reading(reading, &context).map_err(|e| e.to_string())?;
            encode_unit(&unit).map_err(|e| e.to_string())
        }),
        observer: Arc::new(NoObserver),
    };
    let source = BleSource::new(
        central.clone(),
        config,
        sink,
        progress,
        Arc::new(SimulatedClock::new(0, true)),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    Collecting {
        stop,
        source: tokio::spawn(source.run(async {
            let _ = stopped.await;
        })),
        ingest: tokio::spawn(ingest.run()),
    }
}

impl Collecting {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE, self.source)
            .await
            .expect("source stops")
            .expect("source did not panic");
        // The source held the last sink: ingest ends once it is gone.
        tokio::time::timeout(PATIENCE, self.ingest)
            .await
            .expect("ingest stops")
            .expect("ingest did not panic");
    }
}

/// The FHIR + token test double and an uploader registered with it, confirming into
/// `progress` through the runtime's hook.
async fn server_and_uploader(
    queue: Arc<SledQueue>,
    progress: Arc<FileProgressStore>,
) -> (TestDouble, Uploader) {
    vectorcare_gateway::crypto::install_providers();
    let key = SigningKey::from_pem(
        generate_private_key_pem(SigningAlg::ES384)
            .expect("gen")
            .as_bytes(),
        SigningAlg::ES384,
    )
    .expect("key");
    let jwk = key.public_jwk().expect("jwk");
    let kid = jwk.common.key_id.clone().expect("kid");
    let double = test_double::start(TestDoubleOptions::new("gw-1", JwkSet { keys: vec![jwk] }))
        .await
        .expect("double");
    let http = build_http_client(&HttpSettings {
        request_timeout: Some(Duration::from_secs(5)),
        ..HttpSettings::default()
    })
    .expect("http");
    let auth = Arc::new(Authorizer::new(
        http.clone(),
        AssertionSigner {
            client_id: "gw-1".into(),
            kid,
            jku: None,
            key,
            lifetime: Duration::from_secs(120),
        },
        Arc::new(SimulatedClock::new(0, true)),
        AuthSettings {
            fhir_base_url: url::Url::parse(double.fhir_base_url()).expect("url"),
            scopes: None,
            write_mode: WriteMode::ConditionalCreate,
            refresh_margin: Duration::from_secs(10),
            allow_unsynchronized_clock: false,
        },
    ));
    let uploader = Uploader::new(
        queue,
        http,
        auth,
        UploaderSettings {
            fhir_base_url: double.fhir_base_url().to_owned(),
            bundle: BundleOptions {
                bundle_type: BundleType::Transaction,
                write_mode: WriteMode::ConditionalCreate,
            },
            bundle_size: 10,
            max_bundle_entries: None,
            backoff: Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(5),
                max_retry_after: Duration::from_secs(60),
            },
            config_error_backoff: Duration::from_secs(3600),
            idle_poll: Duration::from_millis(10),
        },
    )
    .with_observer(Arc::new(BleProgressConfirmer::new(progress)));
    (double, uploader)
}

/// Steps the uploader until the queue is empty.
async fn drain(uploader: &mut Uploader, queue: &SledQueue) {
    let start = Instant::now();
    while queue.stats().expect("stats").depth > 0 || start.elapsed().is_zero() {
        assert!(start.elapsed() < PATIENCE, "queue did not drain");
        match uploader.step().await.expect("step") {
            Step::Wait(d) => tokio::time::sleep(d).await,
            Step::Empty => tokio::time::sleep(Duration::from_millis(10)).await,
            Step::Sent { .. } => {}
        }
    }
    // One more step releases confirmations held behind records settled in the last one.
    uploader.step().await.expect("step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_only_after_the_server_stored_them_and_restart_asks_for_newer_only() {
    let state = tempfile::tempdir().expect("tempdir");
    let central = SimulatedCentral::new();
    let mut meter = standard_device(&central, Profile::Glucose, 21).expect("encodable");
    for _ in 0..3 {
        meter.measure().expect("measure");
    }
    let queue = Arc::new(SledQueue::open(state.path(), &QueueConfig::default()).expect("queue"));
    let progress = Arc::new(FileProgressStore::open(state.path()).expect("progress"));
    let (double, mut uploader) = server_and_uploader(queue.clone(), progress.clone()).await;

    // 1. The meter's three records reach the queue; nothing is confirmed, nothing deleted.
    let gateway = start_collecting(&central, &meter, queue.clone(), progress.clone());
    wait_until("three records queued", || {
        queue.stats().expect("stats").depth == 3
    })
    .await;
    assert_eq!(racp_writes(&meter), [REPORT_ALL.to_vec()]);

    // 2. The server refuses (503): records stay queued, no progress, and a reconnect (which
    //    would delete confirmed records) deletes nothing.
    double.inject(Fault::Status {
        status: 503,
        retry_after: None,
    });
    assert!(matches!(
        uploader.step().await.expect("step"),
        Step::Wait(_)
    ));
    assert_eq!(double.count("Observation"), 0);
    assert_eq!(progress.confirmed_sequence(meter.address()), None);
    meter.device().drop_link();
    wait_until("reconnected and asked for newer records", || {
        racp_writes(&meter).len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(racp_writes(&meter)[1], report_from(4));
    assert_eq!(
        meter.stored_sequences(),
        [1, 2, 3],
        "refused: nothing deleted"
    );
    assert!(
        !racp_writes(&meter).iter().any(|w| w[0] == 2),
        "no delete sent"
    );

    // 3. The server accepts: the double stores all three, then progress moves to 3 (durable);
    //    the device still holds them until the next connection deletes exactly ≤ 3.
    drain(&mut uploader, &queue).await;
    assert_eq!(double.count("Observation"), 3);
    assert_eq!(progress.confirmed_sequence(meter.address()), Some(3));
    assert_eq!(meter.stored_sequences(), [1, 2, 3]);
    meter.device().drop_link();
    wait_until("confirmed records deleted on the meter", || {
        meter.stored_sequences().is_empty()
    })
    .await;
    let writes = racp_writes(&meter);
    assert_eq!(writes[2..], [report_from(4), delete_up_to(3)]);
    gateway.stop().await;

    // 4. Restart: a new store on the same state dir and a new source (no in-process memory).
    //    Two new records; the meter is asked only for records after 3.
    drop(progress);
    meter.measure().expect("measure");
    meter.measure().expect("measure");
    let progress = Arc::new(FileProgressStore::open(state.path()).expect("reopen progress"));
    assert_eq!(progress.confirmed_sequence(meter.address()), Some(3));
    let before = racp_writes(&meter).len();
    let gateway = start_collecting(&central, &meter, queue.clone(), progress.clone());
    wait_until("two new records queued", || {
        queue.stats().expect("stats").depth == 2
    })
    .await;
    let writes = racp_writes(&meter);
    assert_eq!(
        writes[before..],
        [report_from(4), delete_up_to(3)],
        "after a restart only newer records are asked for; the delete repeats only what was confirmed"
    );
    assert_eq!(meter.stored_sequences(), [4, 5], "unconfirmed records stay");
    gateway.stop().await;
    // The uploader of this "process" would confirm them as before.
    let (double, mut uploader) = server_and_uploader(queue.clone(), progress.clone()).await;
    drain(&mut uploader, &queue).await;
    assert_eq!(double.count("Observation"), 2);
    assert_eq!(progress.confirmed_sequence(meter.address()), Some(5));
}

#[tokio::test]
async fn a_confirmation_waits_while_an_older_record_is_still_unanswered() {
    use vectorcare_gateway::fhir::examples::example_readings;
    let state = tempfile::tempdir().expect("tempdir");
    let queue = Arc::new(SledQueue::open(state.path(), &QueueConfig::default()).expect("queue"));
    let progress = Arc::new(FileProgressStore::open(state.path()).expect("progress"));
    let (double, mut uploader) = server_and_uploader(queue.clone(), progress.clone()).await;
    let meter: vectorcare_hal::ble::BleAddress = "C0:FF:EE:00:00:07".parse().expect("address");
    let record = |sequence: u32| {
        let mut reading = example_readings()
            .into_iter()
            .find(|(n, _)| *n == "blood_glucose_mass")
            .expect("example")
            .1;
        reading.device.address = meter.to_string();
        reading.sequence = Some(sequence);
        let unit = map_reading(&reading, &example_map_context(true)).expect("map");
        encode_unit(&unit).expect("encode")
    };

    // Record 1 is refused for now (503, retry in a minute): it waits, delayed, in the queue.
    queue.append(vec![record(1)]).await.expect("append");
    double.inject(Fault::Status {
        status: 503,
        retry_after: Some("60".into()),
    });
    assert!(matches!(
        uploader.step().await.expect("step"),
        Step::Wait(_)
    ));
    // Record 2 is stored by the server and acked, but confirming sequence 2 would let the
    // meter delete record 1, which the server has not stored: the confirmation waits.
    queue.append(vec![record(2)]).await.expect("append");
    assert!(matches!(
        uploader.step().await.expect("step"),
        Step::Sent { acked: 1, .. }
    ));
    uploader.step().await.expect("step");
    assert_eq!(double.count("Observation"), 1);
    assert_eq!(progress.confirmed_sequence(meter), None);

    // Once record 1 is settled for good (here: dead-lettered by an operator's tool), the
    // held confirmation is released.
    let oldest = queue
        .oldest_waiting()
        .expect("oldest")
        .expect("record 1 waits");
    queue
        .dead_letter(oldest, "test".into())
        .expect("dead letter");
    uploader.step().await.expect("step");
    assert_eq!(progress.confirmed_sequence(meter), Some(2));
}
