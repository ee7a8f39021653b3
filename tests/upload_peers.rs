//! The uploader against REAL peers: Medplum's FHIR router (in-memory repository, Medplum's own
//! validator, transactions of at most 8 conditional creates) and oidc-provider (client
//! credentials + private_key_jwt, jti replay detection, JWT access tokens), both Node, started
//! from `tests/peers/fhir-server` (install: scripts/install/fhir-server.sh).
//!
//! The gateway side is built exactly as the daemon builds it: `[upload]` TOML → `UploadConfig`
//! → `upload::build::uploader` with key files from `keygen`'s code and a sled queue.

// Shared with benches/upload.rs, which uses parts these tests do not.
#[allow(dead_code)]
#[path = "support/node_peers.rs"]
mod node_peers;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::jwk::JwkSet;
use node_peers::{NodePeers, PeerOptions};
use serde_json::{Value, json};
use vectorcare_gateway::config::problems::Problems;
use vectorcare_gateway::fhir::examples::{example_map_context, example_readings};
use vectorcare_gateway::fhir::{UploadUnit, encode_unit, map_reading};
use vectorcare_gateway::queue::{DurableQueue, QueueConfig, SledQueue};
use vectorcare_gateway::upload::auth::AuthError;
use vectorcare_gateway::upload::client::{HttpSettings, build_http_client};
use vectorcare_gateway::upload::keys::{GeneratedKey, SigningAlg, generate_into_dir};
use vectorcare_gateway::upload::uploader::{Step, UploadState, Uploader};
use vectorcare_gateway::upload::{RawUploadConfig, UploadConfig, build};
use vectorcare_hal::clock::{Clock, SimulatedClock};

const CLIENT_ID: &str = "gw-peer";

/// `n` distinct upload units cycling through every example reading (heart rate, blood
/// pressure, glucose, SpO2, weight, temperature...), so Medplum validates every shape.
/// `n` distinct readings without device status flags, so every unit is exactly one
/// Observation and Bundle arithmetic stays simple (status Observations: see
/// `status_bits_observations_are_accepted_by_medplum`).
fn units(n: usize) -> Vec<UploadUnit> {
    units_with_status(n, false)
}

fn units_with_status(n: usize, keep_status: bool) -> Vec<UploadUnit> {
    let examples = example_readings();
    let ctx = example_map_context(true);
    let units: Vec<UploadUnit> = (0..n)
        .map(|i| {
            let mut r = examples[i % examples.len()].1.clone();
            // Each round through the examples is a different measurement: later device times,
            // record numbers and arrival times (identity comes from whichever the reading has).
            let round = i / examples.len();
            r.received_at += time::Duration::seconds(i as i64);
            if let Some(t) = &mut r.device_time {
                t.year += round as u16;
            }
            if let Some(seq) = &mut r.sequence {
                *seq += round as u32 * 1000;
            }
            if !keep_status {
                r.status.clear();
            }
            map_reading(&r, &ctx).expect("map example")
        })
        .collect();
    let distinct: std::collections::HashSet<_> = units
        .iter()
        .map(|u| u.identifier().value.to_owned())
        .collect();
    assert_eq!(
        distinct.len(),
        n,
        "test readings must be distinct measurements"
    );
    units
}

struct Key {
    generated: GeneratedKey,
    jwks: JwkSet,
    alg: SigningAlg,
    _dir: tempfile::TempDir,
}

fn key(alg: SigningAlg) -> Key {
    vectorcare_gateway::crypto::install_providers();
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = generate_into_dir(dir.path(), alg).expect("keygen");
    let jwks = serde_json::from_slice(&std::fs::read(&generated.jwks_path).expect("jwks"))
        .expect("jwks json");
    Key {
        generated,
        jwks,
        alg,
        _dir: dir,
    }
}

/// The `[upload]` section as an operator would write it for Medplum, plus `extra` lines.
fn upload_config(fhir_base: &str, key: &Key, extra: &str) -> UploadConfig {
    // Medplum's limit, unless a test sets its own.
    let max_entries = if extra.contains("max_bundle_entries") {
        ""
    } else {
        "max_bundle_entries = 8\n"
    };
    let bundle_type = if extra.contains("bundle_type") {
        ""
    } else {
        "bundle_type = \"transaction\"\n"
    };
    let text = format!(
        "fhir_base_url = {fhir_base:?}\nclient_id = {CLIENT_ID:?}\nprivate_key = {:?}\n\
         active_kid = {:?}\nalg = {:?}\nbundle_size = 20\n{max_entries}\
         {bundle_type}backoff_base_ms = 1\nbackoff_cap_seconds = 1\n\
         config_error_backoff_seconds = 3600\nrequest_timeout_seconds = 10\n{extra}\n",
        key.generated.private_key_path,
        key.generated.kid,
        key.alg.as_str(),
    );
    let raw: RawUploadConfig = toml::from_str(&text).expect("upload toml");
    let mut problems = Problems::new();
    let cfg = raw.validate("upload", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    cfg.expect("valid upload config")
}

struct Rig {
    peers: NodePeers,
    queue: Arc<SledQueue>,
    queue_dir: tempfile::TempDir,
    uploader: Uploader,
    config: UploadConfig,
    clock: Arc<dyn Clock>,
    /// For control calls and reads (trusts the test CA when TLS is on).
    http: reqwest::Client,
}

fn synced_clock() -> Arc<dyn Clock> {
    Arc::new(SimulatedClock::new(0, true))
}

fn start(peer_opts: &PeerOptions, key: &Key, extra: &str, clock: Arc<dyn Clock>) -> Rig {
    let peers = NodePeers::start(peer_opts);
    let config = upload_config(&peers.fhir_base, key, extra);
    let http = build_http_client(&HttpSettings {
        request_timeout: Some(Duration::from_secs(10)),
        extra_ca_file: config.extra_ca_file.as_deref(),
        ..HttpSettings::default()
    })
    .expect("http");
    let queue_dir = tempfile::tempdir().expect("tempdir");
    let queue =
        Arc::new(SledQueue::open(queue_dir.path(), &QueueConfig::default()).expect("queue"));
    let uploader = build::uploader(&config, queue.clone(), clock.clone()).expect("uploader");
    Rig {
        peers,
        queue,
        queue_dir,
        uploader,
        config,
        clock,
        http,
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

    /// Steps until the queue is empty; returns the steps taken.
    async fn drain(&mut self) -> Vec<Step> {
        let mut steps = Vec::new();
        for _ in 0..400 {
            let step = self.uploader.step().await.expect("step");
            match &step {
                Step::Empty if self.queue.stats().expect("stats").depth == 0 => {
                    steps.push(step);
                    return steps;
                }
                Step::Wait(d) => tokio::time::sleep((*d).min(Duration::from_secs(5))).await,
                Step::Empty => tokio::time::sleep(Duration::from_millis(5)).await,
                Step::Sent { .. } => {}
            }
            steps.push(step);
        }
        panic!(
            "queue did not drain: {steps:?}; status {:?}",
            self.uploader.status().borrow()
        );
    }

    /// A bearer token from the gateway's own authorizer (for reads through Medplum's search).
    async fn token(&self) -> String {
        let (_, auth) = build::authorizer(&self.config, self.clock.clone()).expect("auth");
        auth.token().await.expect("token").access_token.clone()
    }

    fn search_url(&self, ty: &str, query: &[(&str, &str)]) -> url::Url {
        let mut url = url::Url::parse(&format!("{}/{ty}", self.peers.fhir_base)).expect("url");
        url.query_pairs_mut().extend_pairs(query);
        url
    }

    /// Medplum's search: how many `type` resources carry `system|value`.
    async fn count_by_identifier(&self, token: &str, ty: &str, system: &str, value: &str) -> u64 {
        let bundle: Value = self
            .http
            .get(self.search_url(ty, &[("identifier", &format!("{system}|{value}"))]))
            .bearer_auth(token)
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("searchset");
        assert_eq!(bundle["resourceType"], "Bundle", "{bundle}");
        bundle["total"].as_u64().expect("total")
    }

    /// Medplum's search: total Observations held.
    async fn observation_total(&self, token: &str) -> u64 {
        let bundle: Value = self
            .http
            .get(self.search_url("Observation", &[("_total", "accurate"), ("_count", "0")]))
            .bearer_auth(token)
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("searchset");
        bundle["total"].as_u64().expect("total")
    }

    /// Exactly one Observation per reading, checked one by one through Medplum's search.
    async fn assert_one_per_reading(&self, units: &[UploadUnit]) {
        let token = self.token().await;
        for unit in units {
            let id = unit.identifier();
            assert_eq!(
                self.count_by_identifier(&token, "Observation", id.system, id.value)
                    .await,
                1,
                "Observations for {}",
                id.value
            );
        }
        // One Observation per reading, plus its PHD status-bits Observation when it has one.
        let expected: u64 = units
            .iter()
            .map(|unit| 1 + u64::from(unit.status_observation().is_some()))
            .sum();
        assert_eq!(self.observation_total(&token).await, expected);
    }

    fn status(&self) -> vectorcare_gateway::upload::UploadStatus {
        self.uploader.status().borrow().clone()
    }
}

async fn happy_path(alg: SigningAlg, write_mode: &str) {
    let key = key(alg);
    let mut rig = start(
        &PeerOptions::new(CLIENT_ID, key.jwks.clone()),
        &key,
        &format!("write_mode = {write_mode:?}"),
        synced_clock(),
    );
    let batch = units(30);
    rig.enqueue(&batch).await;
    let steps = rig.drain().await;
    let status = rig.status();
    if write_mode == "put" {
        // Medplum answers update-as-create with 200, not 201: all count as "updates".
        assert_eq!(
            status.uploaded + status.duplicates_or_updates,
            30,
            "{status:?}"
        );
    } else {
        assert_eq!(status.uploaded, 30, "{status:?} {steps:?}");
    }
    assert_eq!(status.dead_lettered, 0, "{:?}", rig.queue.list_dead(5));
    // Medplum accepted 8-entry transactions (gateway + device Devices + 6 Observations).
    let sent = steps
        .iter()
        .filter(|s| matches!(s, Step::Sent { .. }))
        .count();
    assert_eq!(sent, 5, "30 readings in Bundles of 6: {steps:?}");
    let stats = rig.peers.stats(&rig.http).await;
    assert_eq!(stats["tokens_issued"], 1, "token must be cached: {stats}");
    assert_eq!(stats["unauthorized"], 0, "{stats}");
    assert_eq!(stats["bundles"], 5, "{stats}");
    rig.assert_one_per_reading(&batch).await;
}

/// Readings with device status bits travel with their PHD status-bits Observation; Medplum
/// validates and stores both, once each.
#[tokio::test]
async fn status_bits_observations_are_accepted_by_medplum() {
    let key = key(SigningAlg::ES384);
    let mut rig = start(
        &PeerOptions::new(CLIENT_ID, key.jwks.clone()),
        &key,
        "",
        synced_clock(),
    );
    let batch = units_with_status(12, true);
    let with_status = batch
        .iter()
        .filter(|u| u.status_observation().is_some())
        .count();
    assert!(
        with_status > 0,
        "the examples include readings with status bits"
    );
    rig.enqueue(&batch).await;
    rig.drain().await;
    let status = rig.status();
    assert_eq!(status.dead_lettered, 0, "{:?}", rig.queue.list_dead(5));
    assert_eq!(rig.queue.stats().expect("stats").depth, 0);
    rig.assert_one_per_reading(&batch).await;
}

#[tokio::test]
async fn es384_conditional_create_transactions_to_medplum() {
    happy_path(SigningAlg::ES384, "conditional_create").await;
}

#[tokio::test]
async fn rs384_put_transactions_to_medplum() {
    happy_path(SigningAlg::RS384, "put").await;
}

#[tokio::test]
async fn resend_after_a_crash_with_a_bundle_in_flight_holds_one_observation_per_reading() {
    let key = key(SigningAlg::ES384);
    let mut rig = start(
        &PeerOptions::new(CLIENT_ID, key.jwks.clone()),
        &key,
        "",
        synced_clock(),
    );
    let batch = units(12);
    rig.enqueue(&batch).await;
    // Medplum stores the first Bundle, then the connection dies before the reply: the gateway
    // cannot know, so the records stay queued. Then the gateway "crashes": uploader and queue
    // are dropped and reopened from disk, as after a restart.
    rig.peers
        .inject(&rig.http, json!([{"process_then_reset": true}]))
        .await;
    let first = rig.uploader.step().await.expect("step");
    assert!(matches!(first, Step::Wait(_)), "{first:?}");
    assert_eq!(rig.queue.stats().expect("stats").depth, 12);
    let stats = rig.peers.stats(&rig.http).await;
    assert_eq!(stats["faults_applied"], 1, "{stats}");

    let Rig {
        peers,
        queue,
        queue_dir,
        uploader,
        config,
        clock,
        http,
    } = rig;
    drop(uploader);
    drop(queue);
    let queue =
        Arc::new(SledQueue::open(queue_dir.path(), &QueueConfig::default()).expect("reopen"));
    assert_eq!(queue.stats().expect("stats").depth, 12, "nothing was acked");
    let uploader = build::uploader(&config, queue.clone(), clock.clone()).expect("uploader");
    let mut rig = Rig {
        peers,
        queue,
        queue_dir,
        uploader,
        config,
        clock,
        http,
    };
    rig.drain().await;
    // The 6 readings of the lost reply came back as "already there" (200), not new.
    let status = rig.status();
    assert_eq!(status.uploaded, 6, "{status:?}");
    assert_eq!(status.duplicates_or_updates, 6, "{status:?}");
    rig.assert_one_per_reading(&batch).await;

    // A source re-delivering the same readings (queued twice) changes nothing either.
    rig.enqueue(&batch).await;
    rig.drain().await;
    rig.assert_one_per_reading(&batch).await;
}

#[tokio::test]
async fn retry_after_429_and_connection_reset_are_transient() {
    let key = key(SigningAlg::ES384);
    let mut rig = start(
        &PeerOptions::new(CLIENT_ID, key.jwks.clone()),
        &key,
        "",
        synced_clock(),
    );
    let batch = units(8);
    rig.enqueue(&batch).await;
    rig.peers
        .inject(
            &rig.http,
            json!([{"status": 503, "retry_after": "1"}, {"status": 429}, {"reset": true}]),
        )
        .await;
    let first = rig.uploader.step().await.expect("step");
    assert_eq!(
        first,
        Step::Wait(Duration::from_secs(1)),
        "Retry-After is the floor of the wait"
    );
    assert_eq!(rig.status().state, UploadState::BackingOff);
    assert_eq!(rig.status().last_error.as_deref(), Some("HTTP 503"));
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let second = rig.uploader.step().await.expect("step");
    assert!(matches!(second, Step::Wait(_)), "429: {second:?}");
    assert_eq!(rig.status().last_error.as_deref(), Some("HTTP 429"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let third = rig.uploader.step().await.expect("step");
    assert!(matches!(third, Step::Wait(_)), "reset: {third:?}");
    let status = rig.status();
    assert_eq!(status.consecutive_failures, 3, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("transport") || e.contains("reset")),
        "{status:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The server is probed with a single-record Bundle before full Bundles resume.
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
    rig.assert_one_per_reading(&batch).await;
    let stats = rig.peers.stats(&rig.http).await;
    assert_eq!(stats["faults_applied"], 3, "{stats}");
}

#[tokio::test]
async fn token_expiry_in_the_middle_of_a_drain() {
    let key = key(SigningAlg::ES384);
    let mut peer_opts = PeerOptions::new(CLIENT_ID, key.jwks.clone());
    peer_opts.access_token_ttl_seconds = 2;
    let mut rig = start(
        &peer_opts,
        &key,
        "token_refresh_margin_seconds = 0",
        synced_clock(),
    );
    let batch = units(18);
    rig.enqueue(&batch).await;
    assert!(matches!(
        rig.uploader.step().await.expect("step"),
        Step::Sent { acked: 6, .. }
    ));
    // The token runs out between two Bundles: a new one is minted (before or on the 401).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(matches!(
        rig.uploader.step().await.expect("step"),
        Step::Sent { acked: 6, .. }
    ));
    // The server revokes the live token: the 401 makes the gateway re-mint once and resend.
    rig.peers.revoke_tokens(&rig.http).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    rig.drain().await;
    rig.assert_one_per_reading(&batch).await;
    let stats = rig.peers.stats(&rig.http).await;
    let issued = stats["tokens_issued"].as_u64().expect("n");
    // 3 for the uploader (start, expiry, revocation) + 1 for the test's own reads.
    assert!((4..=5).contains(&issued), "{stats}");
    assert!(stats["unauthorized"].as_u64().expect("n") >= 1, "{stats}");
    assert!(stats["token_errors"].as_array().expect("list").is_empty());
}

/// Runs one step and expects a configuration-class refusal by oidc-provider.
async fn expect_refused(rig: &mut Rig, detail: &str) {
    rig.enqueue(&units(2)).await;
    let step = rig.uploader.step().await.expect("step");
    assert_eq!(step, Step::Wait(Duration::from_secs(3600)), "long back-off");
    let status = rig.status();
    assert_eq!(status.state, UploadState::NeedsConfiguration, "{status:?}");
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("token endpoint refused the client: invalid_client"),
        "{error}"
    );
    assert_one_refusal_kept_two_records(rig, detail).await;
}

/// The token server refused exactly one request, for `detail`, and both records are queued.
async fn assert_one_refusal_kept_two_records(rig: &Rig, detail: &str) {
    assert_eq!(rig.queue.stats().expect("stats").depth, 2, "records kept");
    let stats = rig.peers.stats(&rig.http).await;
    let errors = stats["token_errors"].as_array().expect("list");
    assert_eq!(errors.len(), 1, "one request, no retry storm: {stats}");
    assert!(
        errors[0]["detail"].as_str().unwrap_or("").contains(detail),
        "oidc-provider's reason: {stats}"
    );
}

#[tokio::test]
async fn an_unregistered_key_is_refused_and_reported_as_configuration() {
    let registered = key(SigningAlg::ES384);
    let mut wrong = key(SigningAlg::ES384);
    // Same kid as the registered key, different private key: the signature cannot verify.
    let wrong_path = wrong._dir.path().join("impostor.key.pem");
    std::fs::copy(&wrong.generated.private_key_path, &wrong_path).expect("copy");
    wrong.generated.kid = registered.generated.kid.clone();
    wrong.generated.private_key_path = wrong_path;
    let mut rig = start(
        &PeerOptions::new(CLIENT_ID, registered.jwks.clone()),
        &wrong,
        "",
        synced_clock(),
    );
    expect_refused(&mut rig, "signature verification failed").await;
}

/// A token refusal caused by a clock that the kernel calls synchronised but is `offset_s` off:
/// the gateway names the clock (from the token server's `Date`), waits a minute rather than an
/// hour, and sends nothing more meanwhile.
async fn expect_clock_named(offset_s: i64, detail: &str, direction: &str) {
    let key = key(SigningAlg::ES384);
    let clock: Arc<dyn Clock> = Arc::new(SimulatedClock::new(offset_s * 1000, true));
    let mut rig = start(
        &PeerOptions::new(CLIENT_ID, key.jwks.clone()),
        &key,
        "",
        clock,
    );
    rig.enqueue(&units(2)).await;
    let step = rig.uploader.step().await.expect("step");
    assert_eq!(
        step,
        Step::Wait(Duration::from_secs(60)),
        "a minute, not an hour"
    );
    let status = rig.status();
    assert_eq!(status.state, UploadState::WaitingForClock, "{status:?}");
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("token endpoint refused the client: invalid_client"),
        "{error}"
    );
    // `Date` has whole seconds: the offset read from it is within a second of the real one.
    let named = [offset_s.abs() - 1, offset_s.abs()]
        .iter()
        .any(|s| error.contains(&format!("clock is {s} s {direction} the token server's")));
    assert!(named, "{error}");
    assert!(
        error.contains("fix this gateway's time synchronisation"),
        "{error}"
    );
    assert_one_refusal_kept_two_records(&rig, detail).await;
    // What `auth check` gets: a clock problem, so it exits "unavailable", not "config".
    let (_, auth) = build::authorizer(&rig.config, rig.clock.clone()).expect("auth");
    let err = auth.request_token().await.expect_err("refused");
    assert!(
        matches!(err, AuthError::ClockOffset { .. }) && !err.is_config_problem(),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_expired_assertion_is_refused_and_the_clock_named() {
    // An hour behind: every assertion the gateway signs has already expired when
    // oidc-provider sees it.
    expect_clock_named(-3600, "exp", "behind").await;
}

#[tokio::test]
async fn an_assertion_from_a_clock_ahead_is_refused_and_the_clock_named() {
    // Ten minutes ahead: the assertion's exp is further ahead than the 300 s the token
    // server allows (SMART's limit; the peer checks it before oidc-provider).
    expect_clock_named(600, "exp must be at most 300 s ahead", "ahead of").await;
}

/// POSTs a hand-made client assertion to the token endpoint: (HTTP status, body).
async fn post_assertion(rig: &Rig, assertion: &str) -> (u16, Value) {
    let r = rig
        .http
        .post(&rig.peers.token_endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/Observation.cus"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.expect("json"))
}

#[tokio::test]
async fn replayed_jti_and_wrong_audience_are_refused_and_the_gateway_makes_neither() {
    let key = key(SigningAlg::ES384);
    let rig = start(
        &PeerOptions::new(CLIENT_ID, key.jwks.clone()),
        &key,
        "",
        synced_clock(),
    );
    let (_, auth) = build::authorizer(&rig.config, rig.clock.clone()).expect("auth");
    // The gateway mints a fresh jti for every request and uses the discovered token endpoint
    // as aud: back-to-back requests all succeed against a real replay detector.
    for _ in 0..3 {
        auth.request_token()
            .await
            .expect("fresh assertion accepted");
    }
    assert!(
        rig.peers.stats(&rig.http).await["token_errors"]
            .as_array()
            .expect("list")
            .is_empty()
    );
    let signer = vectorcare_gateway::upload::assertion::AssertionSigner {
        client_id: CLIENT_ID.into(),
        kid: key.generated.kid.clone(),
        jku: None,
        key: vectorcare_gateway::upload::keys::load_private_key(
            &key.generated.private_key_path,
            key.alg,
        )
        .expect("key"),
        lifetime: Duration::from_secs(300),
    };
    // The same assertion twice: oidc-provider's replay detection refuses the second.
    let assertion = signer
        .sign(&rig.peers.token_endpoint, SystemTime::now())
        .expect("sign");
    let first = post_assertion(&rig, &assertion).await;
    let replay = post_assertion(&rig, &assertion).await;
    assert_eq!(first.0, 200, "{first:?}");
    assert_eq!(replay.0, 401, "{replay:?}");
    assert_eq!(replay.1["error"], "invalid_client");
    // The classic mistake: aud = the FHIR base instead of the token endpoint.
    let wrong_aud = signer
        .sign(&rig.peers.fhir_base, SystemTime::now())
        .expect("sign");
    let refused = post_assertion(&rig, &wrong_aud).await;
    assert_eq!(refused.0, 401, "{refused:?}");
    assert_eq!(refused.1["error"], "invalid_client");

    let stats = rig.peers.stats(&rig.http).await;
    let details: Vec<&str> = stats["token_errors"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert_eq!(details.len(), 2, "{stats}");
    assert!(details[0].contains("only be used once"), "{stats}");
    assert!(details[1].contains("audience"), "{stats}");
    // What the gateway makes of such a reply: a configuration-class refusal (never hammered).
    let as_gateway_sees_it = AuthError::Rejected {
        status: 401,
        error: "invalid_client".into(),
        description: replay.1["error_description"].as_str().map(String::from),
    };
    assert!(as_gateway_sees_it.is_config_problem());
}

#[tokio::test]
async fn an_unsynchronised_clock_signs_nothing_until_time_is_set() {
    let key = key(SigningAlg::ES384);
    let clock = SimulatedClock::new(0, false);
    let mut rig = start(
        &PeerOptions::new(CLIENT_ID, key.jwks.clone()),
        &key,
        "",
        Arc::new(clock.clone()),
    );
    let batch = units(3);
    rig.enqueue(&batch).await;
    assert!(matches!(
        rig.uploader.step().await.expect("step"),
        Step::Wait(_)
    ));
    assert_eq!(rig.status().state, UploadState::WaitingForClock);
    let stats = rig.peers.stats(&rig.http).await;
    assert_eq!(stats["tokens_issued"], 0, "{stats}");
    assert!(stats["token_errors"].as_array().expect("list").is_empty());
    clock.set_synchronized(true);
    rig.drain().await;
    rig.assert_one_per_reading(&batch).await;
}

/// A test CA and a server certificate for 127.0.0.1, as PEM files in `dir`.
fn test_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "VectorCare test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("server key");
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params");
    let server = server_params
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key.pem"),
    );
    std::fs::write(&ca_path, ca.pem()).expect("write");
    std::fs::write(&cert_path, server.pem()).expect("write");
    std::fs::write(&key_path, server_key.serialize_pem()).expect("write");
    (ca_path, cert_path, key_path)
}

#[tokio::test]
async fn tls_with_a_test_ca_through_extra_ca_file() {
    let key = key(SigningAlg::ES384);
    let pki = tempfile::tempdir().expect("tempdir");
    let (ca, cert, server_key) = test_ca(pki.path());
    let mut peer_opts = PeerOptions::new(CLIENT_ID, key.jwks.clone());
    peer_opts.tls = Some((cert, server_key));
    let mut rig = start(
        &peer_opts,
        &key,
        &format!("extra_ca_file = {ca:?}"),
        synced_clock(),
    );
    assert!(rig.peers.fhir_base.starts_with("https://127.0.0.1:"));
    assert!(rig.peers.token_endpoint.starts_with("https://127.0.0.1:"));
    let batch = units(7);
    rig.enqueue(&batch).await;
    rig.drain().await;
    rig.assert_one_per_reading(&batch).await;

    // Without the test CA the same server is not trusted: nothing is sent, nothing is lost.
    let untrusting = upload_config(&rig.peers.fhir_base, &key, "");
    let (_, auth) = build::authorizer(&untrusting, rig.clock.clone()).expect("auth");
    let err = auth.request_token().await.expect_err("unknown CA");
    assert!(
        matches!(err, AuthError::DiscoveryUnavailable { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("certificate") || err.to_string().contains("Unknown"),
        "{err}"
    );
}

#[tokio::test]
async fn without_max_bundle_entries_medplum_refuses_big_transactions_and_nothing_is_lost() {
    let key = key(SigningAlg::ES384);
    let mut rig = start(
        &PeerOptions::new(CLIENT_ID, key.jwks.clone()),
        &key,
        "max_bundle_entries = 1000",
        synced_clock(),
    );
    let batch = units(9);
    rig.enqueue(&batch).await;
    // 9 readings (plus their Devices): more than 8 conditional creates in one transaction, which Medplum
    // refuses as a whole (400). The gateway cannot tell which entry is at fault, so it
    // isolates the records one per Bundle: slower, but nothing is dead-lettered or lost.
    let first = rig.uploader.step().await.expect("step");
    assert_eq!(
        first,
        Step::Sent {
            acked: 0,
            dead: 0,
            retried: 9
        }
    );
    rig.drain().await;
    let status = rig.status();
    assert_eq!(
        (status.uploaded, status.dead_lettered),
        (9, 0),
        "{status:?}"
    );
    let stats = rig.peers.stats(&rig.http).await;
    assert_eq!(stats["bundles"], 10, "1 refused + 9 single-record: {stats}");
    rig.assert_one_per_reading(&batch).await;
    // ...and says so: every record of the refused Bundle was then accepted alone.
    assert_eq!(status.bundles_split, 1, "{status:?}");
    assert!(status.bundle_size_limited, "{status:?}");
}

/// `bundle_type = "batch"` (the benchmark's larger-Bundle configuration): Medplum applies its
/// 8-entry limit to transactions only, and resolves the Devices' urn:uuid references in a
/// batch as well, so Bundles of 20 readings are stored whole, each Observation once, pointing
/// at a stored Device.
#[tokio::test]
async fn batches_of_20_to_medplum_store_each_reading_once_with_resolved_device_references() {
    let key = key(SigningAlg::ES384);
    let mut rig = start(
        &PeerOptions::new(CLIENT_ID, key.jwks.clone()),
        &key,
        "bundle_type = \"batch\"\nmax_bundle_entries = 1000",
        synced_clock(),
    );
    let batch = units(30);
    rig.enqueue(&batch).await;
    let steps = rig.drain().await;
    let status = rig.status();
    assert_eq!(
        (status.uploaded, status.dead_lettered),
        (30, 0),
        "{status:?}"
    );
    assert_eq!(status.bundles_split, 0, "{status:?}");
    let stats = rig.peers.stats(&rig.http).await;
    assert_eq!(stats["bundles"], 2, "20 + 10 readings: {stats} {steps:?}");
    rig.assert_one_per_reading(&batch).await;
    let token = rig.token().await;
    let id = batch[0].identifier();
    let found: Value = rig
        .http
        .get(rig.search_url(
            "Observation",
            &[("identifier", &format!("{}|{}", id.system, id.value))],
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("searchset");
    let device = found["entry"][0]["resource"]["device"]["reference"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        device.starts_with("Device/"),
        "unresolved reference {device:?}: {found}"
    );
    let device_id = &device["Device/".len()..];
    let stored: Value = rig
        .http
        .get(format!("{}/Device/{device_id}", rig.peers.fhir_base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("device");
    assert_eq!(stored["resourceType"], "Device", "{stored}");
}
