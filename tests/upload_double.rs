//! The uploader against the in-process FHIR + token test double, with a real sled queue.
//! Fast (seconds): the Node peers (real servers) are exercised in `upload_peers.rs`.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use vectorcare_gateway::fhir::examples::{example_map_context, example_readings};
use vectorcare_gateway::fhir::{
    BundleOptions, BundleType, UploadUnit, WriteMode, encode_unit, map_reading,
};
use vectorcare_gateway::queue::{DurableQueue, QueueConfig, SledQueue};
use vectorcare_gateway::telemetry::{Telemetry, TelemetryOptions};
use vectorcare_gateway::test_double::{self, Fault, TestDouble, TestDoubleOptions};
use vectorcare_gateway::upload::assertion::AssertionSigner;
use vectorcare_gateway::upload::auth::{AuthSettings, Authorizer};
use vectorcare_gateway::upload::client::{HttpSettings, build_http_client};
use vectorcare_gateway::upload::keys::{SigningAlg, SigningKey, generate_private_key_pem};
use vectorcare_gateway::upload::retry::Backoff;
use vectorcare_gateway::upload::uploader::{
    AckGrouping, Step, UploadState, Uploader, UploaderSettings,
};
use vectorcare_hal::clock::{Clock, SimulatedClock};

fn units(n: usize) -> Vec<UploadUnit> {
    let (_, base) = example_readings()
        .into_iter()
        .find(|(name, _)| *name == "heart_rate")
        .expect("heart rate example");
    let ctx = example_map_context(true);
    (0..n)
        .map(|i| {
            let mut r = base.clone();
            r.received_at += time::Duration::seconds(i as i64);
            map_reading(&r, &ctx).expect("map")
        })
        .collect()
}

struct Rig {
    double: TestDouble,
    queue: Arc<SledQueue>,
    uploader: Uploader,
    _dir: tempfile::TempDir,
}

struct RigOptions {
    bundle: BundleOptions,
    bundle_size: usize,
    wrong_kid: bool,
    clock: Arc<dyn Clock>,
    max_tx_conditional: Option<usize>,
    /// The double enforces `max_tx_conditional` but the uploader is not configured with it.
    limit_not_configured: bool,
    /// Counts the uploader's events (the status endpoint's view).
    telemetry: Option<Arc<Telemetry>>,
    ack_grouping: AckGrouping,
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            bundle: BundleOptions {
                bundle_type: BundleType::Transaction,
                write_mode: WriteMode::ConditionalCreate,
            },
            bundle_size: 10,
            wrong_kid: false,
            clock: Arc::new(SimulatedClock::new(0, true)),
            max_tx_conditional: None,
            limit_not_configured: false,
            telemetry: None,
            ack_grouping: AckGrouping::IMMEDIATE,
        }
    }
}

async fn rig(opts: RigOptions) -> Rig {
    vectorcare_gateway::crypto::install_providers();
    let key = SigningKey::from_pem(
        generate_private_key_pem(SigningAlg::ES384)
            .expect("gen")
            .as_bytes(),
        SigningAlg::ES384,
    )
    .expect("key");
    let jwk = key.public_jwk().expect("jwk");
    let kid = if opts.wrong_kid {
        "not-registered".to_owned()
    } else {
        jwk.common.key_id.clone().expect("kid")
    };
    let mut double_opts = TestDoubleOptions::new("gw-1", JwkSet { keys: vec![jwk] });
    double_opts.max_transaction_conditional_creates = opts.max_tx_conditional;
    let double = test_double::start(double_opts).await.expect("double");
    let http = build_http_client(&HttpSettings {
        request_timeout: Some(Duration::from_secs(5)),
        ..HttpSettings::default()
    })
    .expect("http");
    let base = url::Url::parse(double.fhir_base_url()).expect("url");
    let auth = Arc::new(Authorizer::new(
        http.clone(),
        AssertionSigner {
            client_id: "gw-1".into(),
            kid,
            jku: None,
            key,
            lifetime: Duration::from_secs(120),
        },
        opts.clock,
        AuthSettings {
            fhir_base_url: base,
            scopes: None,
            write_mode: opts.bundle.write_mode,
            refresh_margin: Duration::from_secs(10),
            allow_unsynchronized_clock: false,
        },
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Arc::new(SledQueue::open(dir.path(), &QueueConfig::default()).expect("queue"));
    let mut uploader = Uploader::new(
        queue.clone(),
        http,
        auth,
        UploaderSettings {
            fhir_base_url: double.fhir_base_url().to_owned(),
            bundle: opts.bundle,
            bundle_size: opts.bundle_size,
            max_bundle_entries: opts
                .max_tx_conditional
                .filter(|_| !opts.limit_not_configured),
            backoff: Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(5),
                max_retry_after: Duration::from_secs(60),
            },
            config_error_backoff: Duration::from_secs(3600),
            idle_poll: Duration::from_millis(10),
        },
    )
    .with_ack_grouping(opts.ack_grouping);
    if let Some(telemetry) = opts.telemetry {
        uploader = uploader.with_telemetry(telemetry);
    }
    Rig {
        double,
        queue,
        uploader,
        _dir: dir,
    }
}

impl Rig {
    async fn enqueue(&self, units: &[UploadUnit]) {
        let payloads = units
            .iter()
            .map(|u| encode_unit(u).expect("encode"))
            .collect();
        self.queue.append(payloads).await.expect("append");
    }

    /// Steps until the queue is empty (nacked records wait their few-ms backoff).
    async fn drain(&mut self) -> Vec<Step> {
        let mut steps = Vec::new();
        for _ in 0..200 {
            let step = self.uploader.step().await.expect("step");
            match &step {
                Step::Empty if self.queue.stats().expect("stats").depth == 0 => {
                    steps.push(step);
                    return steps;
                }
                Step::Wait(d) => tokio::time::sleep(*d).await,
                Step::Empty => tokio::time::sleep(Duration::from_millis(5)).await,
                Step::Sent { .. } => {}
            }
            steps.push(step);
        }
        panic!("queue did not drain: {steps:?}");
    }
}

#[tokio::test]
async fn drains_everything_exactly_once_in_both_write_modes() {
    for write_mode in [WriteMode::ConditionalCreate, WriteMode::Put] {
        let mut rig = rig(RigOptions {
            bundle: BundleOptions {
                bundle_type: BundleType::Transaction,
                write_mode,
            },
            ..RigOptions::default()
        })
        .await;
        let batch = units(25);
        rig.enqueue(&batch).await;
        rig.drain().await;
        assert_eq!(rig.double.count("Observation"), 25, "{write_mode:?}");
        // The same readings queued again (a source re-delivering) change nothing.
        rig.enqueue(&batch).await;
        rig.drain().await;
        assert_eq!(rig.double.count("Observation"), 25, "{write_mode:?}");
        let status = rig.uploader.status().borrow().clone();
        assert_eq!(status.uploaded, 25);
        assert_eq!(status.duplicates_or_updates, 25);
        assert_eq!(
            rig.double.auth_stats().tokens_issued,
            1,
            "token must be cached"
        );
    }
}

#[tokio::test]
async fn resend_after_a_lost_reply_holds_one_observation_per_reading() {
    let mut rig = rig(RigOptions::default()).await;
    let batch = units(5);
    rig.enqueue(&batch).await;
    // The server stores the Bundle, then the connection dies before the reply: from the
    // gateway's side this is a crash with a Bundle in flight; the records stay queued.
    rig.double.inject(Fault::ProcessThenReset);
    let first = rig.uploader.step().await.expect("step");
    assert!(matches!(first, Step::Wait(_)), "{first:?}");
    assert_eq!(rig.double.count("Observation"), 5);
    assert_eq!(rig.queue.stats().expect("stats").depth, 5);
    rig.drain().await;
    assert_eq!(rig.double.count("Observation"), 5);
    for unit in &batch {
        let key = format!("{}|{}", unit.identifier().system, unit.identifier().value);
        assert_eq!(rig.double.find_by_identifier("Observation", &key).len(), 1);
    }
}

#[tokio::test]
async fn honours_retry_after_and_probes_with_one_record() {
    let mut rig = rig(RigOptions::default()).await;
    rig.enqueue(&units(6)).await;
    rig.double.inject(Fault::Status {
        status: 503,
        retry_after: Some("2".into()),
    });
    rig.double.inject(Fault::Status {
        status: 429,
        retry_after: None,
    });
    let first = rig.uploader.step().await.expect("step");
    assert_eq!(
        first,
        Step::Wait(Duration::from_secs(2)),
        "Retry-After is the floor"
    );
    assert_eq!(
        rig.uploader.status().borrow().state,
        UploadState::BackingOff
    );
    // Nacked records are hidden for the wait; skip it by requeue-free polling after it passes.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let second = rig.uploader.step().await.expect("step");
    assert!(
        matches!(second, Step::Wait(_)),
        "429 is transient: {second:?}"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    // After failures the next Bundle is a single-record probe.
    let probe = rig.uploader.step().await.expect("step");
    assert_eq!(
        probe,
        Step::Sent {
            acked: 1,
            dead: 0,
            retried: 0
        }
    );
    rig.drain().await;
    assert_eq!(rig.double.count("Observation"), 6);
}

#[tokio::test]
async fn token_expiry_mid_drain_is_handled_by_reminting_once() {
    let mut rig = rig(RigOptions {
        bundle_size: 2,
        ..RigOptions::default()
    })
    .await;
    rig.enqueue(&units(6)).await;
    assert!(matches!(
        rig.uploader.step().await.expect("step"),
        Step::Sent { acked: 2, .. }
    ));
    rig.double.expire_tokens();
    assert!(matches!(
        rig.uploader.step().await.expect("step"),
        Step::Sent { acked: 2, .. }
    ));
    rig.drain().await;
    assert_eq!(rig.double.count("Observation"), 6);
    assert_eq!(rig.double.auth_stats().tokens_issued, 2);
    assert_eq!(rig.double.auth_stats().unauthorized, 1);
}

#[tokio::test]
async fn connection_reset_is_transient() {
    let mut rig = rig(RigOptions::default()).await;
    rig.enqueue(&units(3)).await;
    rig.double.inject(Fault::ResetConnection);
    assert!(matches!(
        rig.uploader.step().await.expect("step"),
        Step::Wait(_)
    ));
    assert_eq!(rig.uploader.status().borrow().consecutive_failures, 1);
    rig.drain().await;
    assert_eq!(rig.double.count("Observation"), 3);
}

#[tokio::test]
async fn unregistered_kid_is_a_configuration_problem_not_a_retry_storm() {
    let mut rig = rig(RigOptions {
        wrong_kid: true,
        ..RigOptions::default()
    })
    .await;
    rig.enqueue(&units(2)).await;
    let step = rig.uploader.step().await.expect("step");
    assert_eq!(step, Step::Wait(Duration::from_secs(3600)));
    let status = rig.uploader.status().borrow().clone();
    assert_eq!(status.state, UploadState::NeedsConfiguration);
    assert!(
        status
            .last_error
            .unwrap_or_default()
            .contains("invalid_client")
    );
    assert_eq!(rig.double.auth_stats().token_requests_rejected, 1);
    assert_eq!(
        rig.queue.stats().expect("stats").depth,
        2,
        "records untouched"
    );
}

#[tokio::test]
async fn unsynchronised_clock_blocks_signing() {
    let clock = SimulatedClock::new(0, false);
    let mut rig = rig(RigOptions {
        clock: Arc::new(clock.clone()),
        ..RigOptions::default()
    })
    .await;
    rig.enqueue(&units(1)).await;
    assert!(matches!(
        rig.uploader.step().await.expect("step"),
        Step::Wait(_)
    ));
    assert_eq!(
        rig.uploader.status().borrow().state,
        UploadState::WaitingForClock
    );
    assert_eq!(rig.double.auth_stats().tokens_issued, 0);
    clock.set_synchronized(true);
    rig.drain().await;
    assert_eq!(rig.double.count("Observation"), 1);
}

#[tokio::test]
async fn a_bad_record_in_a_transaction_is_isolated_and_dead_lettered() {
    let mut rig = rig(RigOptions::default()).await;
    let good = units(3);
    rig.enqueue(&good[..1]).await;
    // A payload that decodes as an UploadUnit but whose Observation the server refuses, in
    // the JSON form older gateways queued (so one Bundle mixes both queued formats).
    let mut bad: serde_json::Value = serde_json::to_value(&good[1]).expect("value");
    let obs = bad["observation"]
        .as_str()
        .expect("text")
        .replace("\"status\":\"final\"", "\"status\":\"bogus\"");
    bad["observation"] = serde_json::Value::String(obs);
    rig.queue
        .append(vec![serde_json::to_vec(&bad).expect("ser")])
        .await
        .expect("append");
    rig.enqueue(&good[2..]).await;
    rig.drain().await;
    assert_eq!(rig.double.count("Observation"), 2);
    let dead = rig.queue.list_dead(10).expect("dead");
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("OperationOutcome"),
        "{}",
        dead[0].reason
    );
}

#[tokio::test]
async fn medplum_limit_is_respected_with_max_bundle_entries() {
    let mut rig = rig(RigOptions {
        max_tx_conditional: Some(8),
        bundle_size: 50,
        ..RigOptions::default()
    })
    .await;
    rig.enqueue(&units(20)).await;
    rig.drain().await;
    assert_eq!(rig.double.count("Observation"), 20);
    assert_eq!(rig.double.stats().rejected, 0);
}

/// Without `max_bundle_entries` a Medplum-like server refuses every big transaction; the
/// uploader still delivers everything (one record per Bundle) but must say so.
#[tokio::test]
async fn a_server_bundle_size_limit_is_surfaced_not_silent() {
    let clock: Arc<dyn Clock> = Arc::new(SimulatedClock::new(0, true));
    let telemetry = Arc::new(Telemetry::new(TelemetryOptions::default(), clock.clone()));
    let mut rig = rig(RigOptions {
        clock,
        telemetry: Some(telemetry.clone()),
        bundle_size: 10,
        max_tx_conditional: Some(8),
        limit_not_configured: true,
        ..RigOptions::default()
    })
    .await;
    // The double refuses transactions of more than 8 conditional creates, but the uploader
    // is not told (no max_bundle_entries): 10 readings + 2 Devices are refused.
    rig.enqueue(&units(10)).await;
    rig.drain().await;
    assert_eq!(rig.double.count("Observation"), 10, "nothing lost");
    assert!(rig.queue.list_dead(10).expect("dead").is_empty());
    let status = rig.uploader.status().borrow().clone();
    assert_eq!(status.bundles_split, 1, "{status:?}");
    assert!(status.bundle_size_limited, "{status:?}");
    assert_eq!(telemetry.snapshot().upload.bundles_split, 1);
    let metrics = vectorcare_gateway::telemetry::prometheus::render(&telemetry.snapshot());
    assert!(
        metrics.contains("vectorcare_upload_bundles_split_total 1"),
        "{metrics}"
    );
}

/// A Bundle refused because of one bad record is split too, but that is not a size limit.
#[tokio::test]
async fn a_bad_record_is_not_mistaken_for_a_size_limit() {
    let mut rig = rig(RigOptions::default()).await;
    let good = units(3);
    rig.enqueue(&good[..2]).await;
    let mut bad: serde_json::Value = serde_json::to_value(&good[2]).expect("value");
    let obs = bad["observation"]
        .as_str()
        .expect("text")
        .replace("\"status\":\"final\"", "\"status\":\"bogus\"");
    bad["observation"] = serde_json::Value::String(obs);
    rig.queue
        .append(vec![serde_json::to_vec(&bad).expect("ser")])
        .await
        .expect("append");
    rig.drain().await;
    let status = rig.uploader.status().borrow().clone();
    assert_eq!(status.bundles_split, 1, "{status:?}");
    assert_eq!(status.dead_lettered, 1, "{status:?}");
    assert!(!status.bundle_size_limited, "{status:?}");
}

#[tokio::test]
async fn telemetry_counts_what_the_uploader_and_the_server_saw() {
    let clock: Arc<dyn Clock> = Arc::new(SimulatedClock::new(0, true));
    let telemetry = Arc::new(Telemetry::new(TelemetryOptions::default(), clock.clone()));
    let mut rig = rig(RigOptions {
        clock,
        telemetry: Some(telemetry.clone()),
        ..RigOptions::default()
    })
    .await;
    rig.enqueue(&units(6)).await;
    rig.double.inject(Fault::Status {
        status: 503,
        retry_after: None,
    });
    let mut steps = vec![rig.uploader.step().await.expect("step")];
    if let Step::Wait(d) = steps[0] {
        tokio::time::sleep(d).await;
    }
    steps.extend(rig.drain().await);
    let posts = steps
        .iter()
        .filter(|s| matches!(s, Step::Sent { .. } | Step::Wait(_)))
        .count() as u64;

    let upload = telemetry.snapshot().upload;
    assert_eq!(
        upload.attempts, posts,
        "one attempt per Bundle sent: {steps:?}"
    );
    assert_eq!(upload.successes, 6);
    assert_eq!(upload.successes, rig.double.count("Observation") as u64);
    assert_eq!(
        upload.retries, 6,
        "the refused Bundle's records are retried"
    );
    assert_eq!(upload.dead_letters, 0);
    assert_eq!(
        upload
            .recent
            .last()
            .and_then(|e| e.error.clone())
            .as_deref(),
        Some("HTTP 503")
    );
    let token = telemetry.snapshot().token;
    assert_eq!(token.refreshes, rig.double.auth_stats().tokens_issued);
    assert_eq!(token.failures, 0);
    assert!(token.valid_for_seconds.is_some_and(|s| s > 0));
    let status = rig.uploader.status().borrow().clone();
    assert_eq!(
        status.uploaded + status.duplicates_or_updates,
        upload.successes
    );
}

#[tokio::test]
async fn grouped_acks_never_resend_within_a_run_and_are_applied_when_idle_or_dropped() {
    let mut rig = rig(RigOptions {
        bundle_size: 5,
        ack_grouping: AckGrouping {
            records: 20,
            max_delay: Duration::from_secs(3600),
        },
        ..RigOptions::default()
    })
    .await;
    rig.enqueue(&units(12)).await;
    for (sent, stored) in [(5, 5), (5, 10), (2, 12)] {
        let step = rig.uploader.step().await.expect("step");
        assert_eq!(
            step,
            Step::Sent {
                acked: sent,
                dead: 0,
                retried: 0
            }
        );
        assert_eq!(rig.double.count("Observation"), stored);
        // The acks wait (fewer than 20), so the records are still in the queue ...
        assert_eq!(rig.queue.stats().expect("stats").depth, 12);
    }
    // ... but none was put in a second Bundle: 12 Observations + 2 Devices created, and the
    // only duplicates are the 2 Devices that each later Bundle carries again.
    let stats = rig.double.stats();
    assert_eq!(
        (stats.bundles, stats.accepted, stats.duplicate),
        (3, 14, 4),
        "{stats:?}"
    );
    // Nothing left to send: the pending acks are applied before saying so.
    assert_eq!(rig.uploader.step().await.expect("step"), Step::Empty);
    assert_eq!(rig.queue.stats().expect("stats").depth, 0);
    assert_eq!(rig.double.stats().bundles, 3);

    // Acks still pending when the uploader goes away (shutdown) are applied too.
    rig.enqueue(&units(15)[12..]).await;
    assert!(matches!(
        rig.uploader.step().await.expect("step"),
        Step::Sent { acked: 3, .. }
    ));
    assert_eq!(rig.queue.stats().expect("stats").depth, 3);
    let Rig {
        queue, uploader, ..
    } = rig;
    drop(uploader);
    assert_eq!(queue.stats().expect("stats").depth, 0);
}

#[tokio::test]
async fn grouped_acks_are_applied_once_the_group_is_full() {
    let mut rig = rig(RigOptions {
        bundle_size: 4,
        ack_grouping: AckGrouping {
            records: 8,
            max_delay: Duration::from_secs(3600),
        },
        ..RigOptions::default()
    })
    .await;
    rig.enqueue(&units(10)).await;
    rig.uploader.step().await.expect("step");
    assert_eq!(rig.queue.stats().expect("stats").depth, 10);
    rig.uploader.step().await.expect("step");
    assert_eq!(rig.queue.stats().expect("stats").depth, 2, "8 acks applied");
}

#[tokio::test]
async fn a_refused_status_bits_entry_dead_letters_its_record_instead_of_being_lost() {
    let (_, bp) = example_readings()
        .into_iter()
        .find(|(name, _)| *name == "blood_pressure")
        .expect("blood pressure example");
    let unit = map_reading(&bp, &example_map_context(true)).expect("map");
    assert!(
        unit.status_observation().is_some(),
        "the example sets status bits"
    );
    // The measurement is valid; its status-bits Observation is not (the server refuses it).
    let mut payload: serde_json::Value = serde_json::to_value(&unit).expect("value");
    let status_text = payload["status"]["observation"]
        .as_str()
        .expect("status observation text")
        .to_owned();
    let broken = status_text.replace("\"status\":\"final\"", "\"status\":\"bogus\"");
    assert_ne!(
        broken, status_text,
        "the status Observation has status final"
    );
    payload["status"]["observation"] = serde_json::Value::String(broken);

    let mut rig = rig(RigOptions {
        bundle: BundleOptions {
            // Per-entry answers: the measurement is stored, its status entry refused.
            bundle_type: BundleType::Batch,
            write_mode: WriteMode::ConditionalCreate,
        },
        ..RigOptions::default()
    })
    .await;
    rig.queue
        .append(vec![
            serde_json::to_vec(&payload).expect("ser"),
            serde_json::to_vec(&units(1)[0]).expect("ser"),
        ])
        .await
        .expect("append");
    rig.drain().await;
    let status = rig.uploader.status().borrow().clone();
    assert_eq!(status.dead_lettered, 1, "{status:?}");
    assert_eq!(status.uploaded, 1, "the heart rate: {status:?}");
    let dead = rig.queue.list_dead(10).expect("dead");
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("Observation.status"),
        "the server's outcome is kept: {}",
        dead[0].reason
    );
}
