//! The wall clock misbehaving under a whole gateway (issue #9, "Clock"), in-process: the
//! runtime exactly as `run --simulate-devices` builds it (simulated BLE devices on hal's
//! in-process central, a real sled queue, the real uploader) but on hal's `SimulatedClock`,
//! which the test starts unsynchronised and three days behind, then synchronises, jumps a day
//! forward, steps back a day and then 30 s more, and loses synchronisation again. The FHIR + SMART token test double
//! counts every token request.
//!
//! - no client assertion is signed while the clock is unsynchronised (token requests at the
//!   double: zero), and uploads resume by themselves once it is synchronised;
//! - no reading is dated in the future: every Observation's effectiveDateTime ≤ the gateway's
//!   wall clock when the Observation appeared on the server (polled every 20 ms);
//! - backoff and Retry-After waits run on the monotonic clock: a wall jump of a day forward or
//!   back during a 2 s Retry-After neither fires nor stretches it.
//!
//! `cargo test --test reliability_clock -- --nocapture` (about 25 s).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vectorcare_gateway::queue::DurableQueue;
use vectorcare_gateway::runtime::{self, BleHardware, Hardware, ingest::NoObserver};
use vectorcare_gateway::simulator::engine::PlayOptions;
use vectorcare_gateway::simulator::inprocess::InProcessTarget;
use vectorcare_gateway::test_double::{self, Fault, TestDouble, TestDoubleOptions};
use vectorcare_gateway::upload::keys::{SigningAlg, generate_into_dir};
use vectorcare_hal::ble::simulated::SimulatedCentral;
use vectorcare_hal::clock::{Clock, SimulatedClock};
use vectorcare_hal::serial::simulated::SimulatedOpener;

const CLIENT_ID: &str = "gw-clock";
const DAY_MS: i64 = 86_400_000;

/// Real-time devices: a heart-rate strap (no device timestamp: dated by the gateway) and a
/// blood-pressure cuff (device timestamp, placed on the gateway's clock by the Current Time
/// offset read at connection).
const SCENARIO: &str = r#"
[scenario]
name = "clock"
seed = 7
duration_seconds = 3600

[[devices]]
name = "strap"
transport = "ble"
profile = "heart_rate"
address = "C0:FF:EE:0D:00:01"
interval_seconds = 1

[[devices]]
name = "cuff"
transport = "ble"
profile = "blood_pressure"
address = "C0:FF:EE:10:00:01"
interval_seconds = 2
"#;

struct Gateway {
    double: TestDouble,
    clock: SimulatedClock,
    queue: Arc<vectorcare_gateway::queue::SledQueue>,
    stop: Arc<tokio::sync::Notify>,
    telemetry: Arc<vectorcare_gateway::telemetry::Telemetry>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// The test double, a key registered with it, and a whole gateway running on `clock`.
async fn gateway(clock: SimulatedClock, upload_extra: &str) -> Gateway {
    vectorcare_gateway::crypto::install_providers();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = generate_into_dir(&dir.path().join("keys"), SigningAlg::ES384).expect("keygen");
    let jwks: JwkSet =
        serde_json::from_slice(&std::fs::read(&key.jwks_path).expect("jwks")).expect("jwks");
    let double = test_double::start(TestDoubleOptions::new(CLIENT_ID, jwks))
        .await
        .expect("double");
    let text = format!(
        "[gateway]\nid = \"hub-clock\"\npatient = \"Patient/clock\"\nstate_dir = {state:?}\n\
         [clock]\nassume_synchronized = false\n\
         [status]\nenabled = false\n\
         [upload]\nfhir_base_url = {base:?}\nclient_id = {CLIENT_ID:?}\nprivate_key = {pem:?}\n\
         active_kid = {kid:?}\nalg = \"ES384\"\nbundle_size = 20\n{upload_extra}\n\
         [sources.ble]\nbackoff_initial_seconds = 1\nbackoff_max_seconds = 2\n\
         [[sources.ble.devices]]\naddress = \"C0:FF:EE:0D:00:01\"\n\
         [[sources.ble.devices]]\naddress = \"C0:FF:EE:10:00:01\"\n",
        state = dir.path().join("state").display().to_string(),
        base = double.fhir_base_url(),
        pem = key.private_key_path.display().to_string(),
        kid = key.kid,
    );
    let config = vectorcare_gateway::config::load_str(
        &text,
        std::path::Path::new("clock.toml"),
        std::iter::empty(),
    )
    .expect("valid config");

    let central = SimulatedCentral::new();
    let serial = SimulatedOpener::new();
    let hardware = Hardware {
        clock: Arc::new(clock.clone()),
        ble: BleHardware::Simulated(central.clone()),
        serial: Arc::new(serial.clone()),
    };
    let scenario = vectorcare_gateway::simulator::load_str(SCENARIO).expect("scenario");
    let mut target = InProcessTarget::new(central, serial);
    {
        use vectorcare_gateway::simulator::Target;
        target.start(&scenario).await.expect("devices in range");
    }
    let queue = runtime::open_queue(&config).expect("queue");
    let observability = runtime::observability(&config, hardware.clock.clone())
        .await
        .expect("observability");
    let telemetry = observability.telemetry.clone();
    let stop = Arc::new(tokio::sync::Notify::new());
    let task = {
        let stop = stop.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let devices_stop = Arc::new(tokio::sync::Notify::new());
            let play = {
                let devices_stop = devices_stop.clone();
                async move {
                    let options = PlayOptions {
                        seed: None,
                        speed: 1.0,
                        start: None,
                        repeat: true,
                    };
                    let _ = vectorcare_gateway::simulator::play(
                        &scenario,
                        &mut target,
                        options,
                        devices_stop.notified(),
                    )
                    .await;
                }
            };
            let pipeline = async {
                let result = runtime::run(
                    &config,
                    hardware,
                    queue,
                    Arc::new(NoObserver),
                    observability,
                    async move {
                        stop.notified().await;
                        "test".to_owned()
                    },
                )
                .await;
                devices_stop.notify_one();
                result.expect("the gateway ran");
            };
            tokio::join!(pipeline, play);
        })
    };
    Gateway {
        double,
        clock,
        queue,
        stop,
        telemetry,
        task,
        _dir: dir,
    }
}

impl Gateway {
    fn token_requests(&self) -> u64 {
        let a = self.double.auth_stats();
        a.tokens_issued + a.token_requests_rejected
    }

    fn depth(&self) -> u64 {
        self.queue.stats().expect("stats").depth
    }

    async fn shutdown(self) {
        self.stop.notify_one();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the gateway stopped")
            .expect("gateway task");
        self.double.shutdown().await;
    }
}

/// Every Observation the double holds, with the gateway's wall clock when the poller first saw
/// it (an upper bound of the clock at upload, within one 20 ms poll).
#[derive(Default)]
struct Seen {
    /// identifier → (effectiveDateTime, gateway clock when first seen, resource)
    first_seen: HashMap<String, (OffsetDateTime, OffsetDateTime, Value)>,
}

impl Seen {
    fn poll(&mut self, gw: &Gateway) {
        let now = OffsetDateTime::from(gw.clock.now());
        for r in gw.double.resources() {
            if r["resourceType"] != "Observation" {
                continue;
            }
            let id = r["identifier"][0]["value"].as_str().expect("identifier");
            if self.first_seen.contains_key(id) {
                continue;
            }
            let effective = r["effectiveDateTime"]
                .as_str()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                .unwrap_or_else(|| panic!("no effectiveDateTime: {r}"));
            self.first_seen.insert(id.to_owned(), (effective, now, r));
        }
    }

    /// Observations dated after the gateway's clock at upload.
    fn in_the_future(&self) -> Vec<String> {
        self.first_seen
            .values()
            .filter(|(effective, seen, _)| effective > seen)
            .map(|(effective, seen, r)| {
                format!(
                    "effective {effective} > clock {seen}: {}",
                    r["code"]["coding"][0]["display"]
                )
            })
            .collect()
    }
}

/// Polls for `duration`, every 20 ms.
async fn watch(gw: &Gateway, seen: &mut Seen, duration: Duration) {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        seen.poll(gw);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen.poll(gw);
}

/// Polls until `done` holds (bounded).
async fn watch_until(gw: &Gateway, seen: &mut Seen, what: &str, done: impl Fn(&Gateway) -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !done(gw) {
        if Instant::now() > end {
            let snapshot = gw.telemetry.snapshot();
            panic!(
                "timed out waiting for {what}: depth {}, upload {:?}, token {:?}, auth {:?}, last auth error {:?}",
                gw.depth(),
                snapshot.upload,
                snapshot.token,
                gw.double.auth_stats(),
                gw.double.last_auth_error()
            );
        }
        seen.poll(gw);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen.poll(gw);
}

fn has_component(r: &Value, text: &str) -> bool {
    r["component"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["code"]["text"] == text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsynchronised_start_and_wall_jumps_sign_nothing_early_and_date_nothing_ahead() {
    // A Pi without RTC: booted three days behind, not synchronised.
    let clock = SimulatedClock::new(-3 * DAY_MS, false);
    let gw = gateway(clock, "backoff_base_ms = 50\nbackoff_cap_seconds = 1\n").await;
    let mut seen = Seen::default();

    // 1. Unsynchronised: readings are queued, nothing is signed or sent.
    watch(&gw, &mut seen, Duration::from_secs(4)).await;
    let queued_unsynced = gw.depth();
    assert_eq!(
        gw.token_requests(),
        0,
        "a token was requested while unsynchronised"
    );
    assert!(seen.first_seen.is_empty(), "uploaded while unsynchronised");
    assert!(
        queued_unsynced > 0,
        "no reading was queued while unsynchronised"
    );

    // 2. NTP synchronises: the clock jumps three days forward; the backlog goes up.
    gw.clock.set_offset_ms(0);
    gw.clock.set_synchronized(true);
    watch_until(&gw, &mut seen, "the backlog to upload", |gw| {
        gw.depth() == 0 && gw.double.count("Observation") as u64 >= queued_unsynced
    })
    .await;
    let tokens_after_sync = gw.token_requests();
    assert!(tokens_after_sync >= 1, "no token after synchronisation");
    watch(&gw, &mut seen, Duration::from_secs(3)).await;
    let flagged = seen
        .first_seen
        .values()
        .filter(|(_, _, r)| has_component(r, "gateway-clock-unsynchronized"))
        .count();
    assert!(
        flagged as u64 >= queued_unsynced,
        "readings received on the unsynchronised clock must say so ({flagged} of {queued_unsynced})"
    );

    // 3. The wall clock jumps a day forward while still claiming synchronisation (a bad time
    //    source). The cached token keeps working (the server checks only assertions' times).
    gw.clock.set_offset_ms(DAY_MS);
    watch(&gw, &mut seen, Duration::from_secs(4)).await;

    // 4. ... and is stepped a day back to the right time. Drained first, so what is uploaded
    //    from here on was received on the stepped-back clock (docs/RELIABILITY.md, "Clock",
    //    says what happens to readings received before a backward step).
    watch_until(&gw, &mut seen, "the queue to drain", |gw| gw.depth() == 0).await;
    gw.clock.set_offset_ms(0);
    watch(&gw, &mut seen, Duration::from_secs(4)).await;

    // 4b. A small step back (30 s, as NTP steps a clock that ran ahead): the cuff's clock
    //     offset, read at connection, is now 30 s stale, so its corrected times lie up to 30 s
    //     after the receipt — inside the 60 s jitter tolerance. They must still not be dated
    //     after the gateway's clock.
    watch_until(&gw, &mut seen, "the queue to drain", |gw| gw.depth() == 0).await;
    gw.clock.set_offset_ms(-30_000);
    watch(&gw, &mut seen, Duration::from_secs(5)).await;

    // 5. Synchronisation is lost and the token expires: nothing is signed, readings wait.
    watch_until(&gw, &mut seen, "the queue to drain", |gw| gw.depth() == 0).await;
    gw.clock.set_synchronized(false);
    gw.double.expire_tokens();
    let tokens_before = gw.token_requests();
    let uploaded_before = gw.double.count("Observation");
    watch(&gw, &mut seen, Duration::from_secs(4)).await;
    assert_eq!(
        gw.token_requests(),
        tokens_before,
        "a token was requested while unsynchronised"
    );
    assert_eq!(gw.double.count("Observation"), uploaded_before);
    assert!(gw.depth() > 0, "readings kept arriving and wait");

    // 6. Synchronised again: everything goes up.
    gw.clock.set_synchronized(true);
    watch_until(&gw, &mut seen, "the final drain", |gw| gw.depth() == 0).await;
    watch(&gw, &mut seen, Duration::from_millis(500)).await;

    let future = seen.in_the_future();
    // How each Observation was dated: device time corrected by the measured offset, or the
    // gateway's receipt (with the reason).
    let mut sources: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, _, r) in seen.first_seen.values() {
        let source = r["component"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["code"]["text"] == "effective-time-source")
            .and_then(|c| c["valueString"].as_str())
            .unwrap_or("device time, corrected")
            .to_owned();
        *sources.entry(source).or_default() += 1;
    }
    eprintln!("clock: effective time sources {sources:?}");
    // Device-dated readings taken on a synchronised clock are dated near their upload: the
    // device-clock offset read while the hub was three days behind must follow the hub's
    // jumps (a cuff stays connected through all of them).
    let misdated: Vec<String> = seen
        .first_seen
        .values()
        .filter(|(_, _, r)| {
            !has_component(r, "gateway-clock-unsynchronized")
                && !has_component(r, "effective-time-source")
        })
        .filter(|(effective, seen, _)| *seen - *effective > time::Duration::seconds(120))
        .map(|(effective, seen, r)| {
            format!(
                "effective {effective}, uploaded at {seen}: {}",
                r["code"]["coding"][0]["display"]
            )
        })
        .collect();
    eprintln!(
        "clock: {} Observations; {queued_unsynced} queued while unsynchronised ({flagged} flagged); \
         token requests {} (0 while unsynchronised); dated after the gateway clock at upload: {}; \
         device-dated more than 120 s before upload on a synchronised clock: {}",
        seen.first_seen.len(),
        gw.token_requests(),
        future.len(),
        misdated.len()
    );
    assert!(
        misdated.is_empty(),
        "device-dated readings misdated by a stale clock offset: {misdated:#?}"
    );
    assert!(
        future.is_empty(),
        "readings dated in the future: {future:#?}"
    );
    gw.shutdown().await;
}

/// A 503 with `Retry-After: 2`, and the wall clock jumps a day (forward, then back) during the
/// wait: the retry comes after 2 s of monotonic time either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_waits_ignore_wall_clock_jumps() {
    let clock = SimulatedClock::new(0, true);
    // Exponential backoff far below the Retry-After floor: the wait is the server's 2 s.
    let gw = gateway(clock, "backoff_base_ms = 1\nbackoff_cap_seconds = 1\n").await;
    let mut seen = Seen::default();
    watch_until(&gw, &mut seen, "a first upload", |gw| {
        gw.double.count("Observation") > 0
    })
    .await;

    let mut waits = Vec::new();
    for jump_ms in [DAY_MS, -DAY_MS] {
        gw.double.inject(Fault::Status {
            status: 503,
            retry_after: Some("2".into()),
        });
        // The next Bundle takes the 503: the gateway has no way to tell it from the one after.
        let bundles = gw.double.stats().bundles;
        let retries = gw.telemetry.snapshot().upload.retries;
        let faulted_at = {
            let deadline = Instant::now() + Duration::from_secs(10);
            while gw.telemetry.snapshot().upload.retries == retries {
                assert!(Instant::now() < deadline, "no 503 taken");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Instant::now()
        };
        gw.clock.set_offset_ms(jump_ms);
        let deadline = Instant::now() + Duration::from_secs(15);
        while gw.double.stats().bundles == bundles {
            assert!(
                Instant::now() < deadline,
                "no retry 15 s after a 2 s Retry-After (wall jump {jump_ms} ms)"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        waits.push((jump_ms, faulted_at.elapsed()));
    }
    eprintln!("clock: Retry-After 2 s with wall jumps → retried after {waits:?}");
    for (jump_ms, wait) in &waits {
        // The 503 is observed a poll after the uploader took it (≤ 5 ms, more on a loaded
        // machine): 1.5 s still tells a 2 s wait from one a wall jump fired at once.
        assert!(
            *wait >= Duration::from_millis(1500),
            "wall jump {jump_ms} ms cut the 2 s Retry-After short: {wait:?}"
        );
        assert!(
            *wait < Duration::from_secs(8),
            "wall jump {jump_ms} ms stretched the 2 s Retry-After: {wait:?}"
        );
    }
    gw.shutdown().await;
}
