//! The uploader: drains the durable queue into FHIR Bundles.
//!
//! One loop, one bundle in flight. Per record: 2xx → `ack`; permanent 4xx → `dead_letter` with
//! the OperationOutcome; 408/429/5xx/network → `nack` with backoff. A whole-Bundle permanent
//! refusal of several records (a transaction fails as a unit) switches to one record per Bundle
//! until those records are settled, so only the bad one is dead-lettered. Such splits are
//! counted (`bundles_split`); when every record of a split Bundle is then accepted alone, the
//! server limits Bundle size rather than refusing content (Medplum: transactions of at most 8
//! conditional creates), which is logged once and shown as `bundle_size_limited` until a
//! multi-record Bundle is stored whole again, since uploads otherwise go on one record per
//! request without anyone noticing.
//!
//! A server that is down is probed, not flooded: after a failure the uploader itself waits the
//! backoff (full jitter, Retry-After as a floor) and then sends a single-record Bundle; full-size
//! Bundles resume after a success. Configuration-class auth errors (invalid_client, ...) are
//! logged once and wait `config_error_backoff`.
//!
//! Idempotency: every Observation is written by conditional create on its identifier or by PUT
//! to its deterministic id, and Devices by conditional create, so re-sending a Bundle whose reply
//! was lost (crash, reset) cannot duplicate anything; records are acked only after the reply.
//!
//! Confirmations ([`UploadObserver`]): units naming a device record (`source_record`) are
//! reported as confirmed only after their queue ack succeeded, and in queue order: a unit is
//! held back while any older record still waits in the queue (ready or delayed by a nack), so
//! a confirmed sequence never covers a record the server has not answered yet. Dead-lettered
//! records do not hold others back (the server answered them for good; they stay in the
//! dead letters) and are never reported. Held-back confirmations live in memory: a crash loses
//! them, which at worst makes a device send records again, never delete one too early.
//!
//! ## Grouped acks ([`AckGrouping`], issue #5)
//! Each queue `ack` is one sled batch, and sled's background threads spent ≈ 230 µs of CPU per
//! batch (docs/PERFORMANCE.md; measured before the queue's ack watermark, which now writes one
//! key per in-order run instead of a remove per record, and since round 6 without a batch):
//! with Bundles of 6 that was most of the uploader's CPU. So the
//! ids the server confirmed are kept in `pending_acks` and applied to the queue in one `ack`
//! once `records` of them have gathered or the oldest waited `max_delay`, and always when the
//! queue has nothing more to send (`Step::Empty`), before any wait (`Step::Wait`: backoff,
//! auth or clock problems), on shutdown and when the uploader is dropped.
//! - Nothing is sent twice within a run: `peek_skipping` passes over the pending ids, so a
//!   confirmed record is never put in another Bundle while its ack waits.
//! - Nothing is lost by a crash: the queue's acks were already lazy (no fsync per ack, the
//!   queue module's "At-least-once"), so a crash could already lose recent acks; it can now
//!   lose at most `records` (or `max_delay` worth of) acks more. Each such record is sent again
//!   after the restart, which conditional create / PUT on its deterministic identity makes
//!   harmless (`tests/upload_peers.rs` proves it against Medplum and HAPI-style peers).
//! - Nacks and dead letters are not grouped: they concern other records (a pending id is never
//!   peeked, so never nacked or dead-lettered) and keep their meaning and timing.
//! - Confirmations wait for the grouped ack: a pending record still counts as waiting in
//!   `oldest_waiting`, so its unit stays held until the `ack` succeeded, as before.
//!
//! [`Uploader::new`] acks every Bundle at once ([`AckGrouping::IMMEDIATE`], which callers
//! stepping the uploader by hand rely on); `build::uploader` (the daemon, the benchmark)
//! groups ([`AckGrouping::DEFAULT`]).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::auth::{AccessToken, AuthError, Authorizer};
use super::client::{BundleReply, bundle_body, post_bundle};
use super::reply::ReplyBundle;
use super::retry::{Backoff, StatusClass, classify_status};
use crate::fhir::{BundleOptions, UploadUnit, build_bundle, decode_unit_owned};
use crate::queue::{DurableQueue, QueueError, QueuedRecord, RecordId};
use crate::telemetry::Telemetry;

/// Told which upload units the FHIR server confirmed (2xx), after their queue ack
/// succeeded. Called from the uploader's loop: keep it short (a small file write is fine).
pub trait UploadObserver: Send + Sync {
    fn confirmed(&self, units: &[UploadUnit]);
}

/// At most this many confirmations are held back behind an older waiting record; beyond it
/// the oldest held ones are dropped (their records are fetched again later, nothing is lost).
const MAX_HELD_CONFIRMATIONS: usize = 10_000;

/// Wait after a token request refused while this gateway's clock is off from the server's
/// (`AuthError::ClockOffset`; capped by `config_error_backoff`).
const CLOCK_OFFSET_RETRY: Duration = Duration::from_secs(60);

/// When the confirmed ids of consecutive Bundles are applied to the queue (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckGrouping {
    /// Apply once this many confirmed records wait.
    pub records: usize,
    /// Apply once the oldest confirmed record waited this long.
    pub max_delay: Duration,
}

impl AckGrouping {
    /// One `ack` per Bundle, right after its reply.
    pub const IMMEDIATE: AckGrouping = AckGrouping {
        records: 1,
        max_delay: Duration::ZERO,
    };
    /// What the daemon uses: at most 256 records or 1 s of acks are lost by a crash (resent,
    /// harmlessly).
    pub const DEFAULT: AckGrouping = AckGrouping {
        records: 256,
        max_delay: Duration::from_secs(1),
    };
}

/// What the uploader is doing (for `status`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadStatus {
    pub state: UploadState,
    pub uploaded: u64,
    pub duplicates_or_updates: u64,
    pub dead_lettered: u64,
    pub consecutive_failures: u32,
    /// Multi-record Bundles the server refused as a whole, which were then split into
    /// one-record Bundles to find the bad record.
    pub bundles_split: u64,
    /// Set when a refused Bundle's records were all accepted one by one: the server limits
    /// Bundle size, not content (Medplum: transactions of at most 8 conditional creates).
    /// Uploads still work, one record per request; `upload.max_bundle_entries` fixes it.
    pub bundle_size_limited: bool,
    /// Last error shown to the user (no PHI: statuses and OAuth error codes only).
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UploadState {
    #[default]
    Idle,
    Uploading,
    BackingOff,
    /// A person must act (keys, registration, scopes, discovery); retried rarely.
    NeedsConfiguration,
    /// Waiting for NTP before signing, or for a clock the token server's `Date` shows to be
    /// off (`last_error` says which).
    WaitingForClock,
}

/// Uploader settings (from [`super::config::UploadConfig`]).
#[derive(Debug, Clone)]
pub struct UploaderSettings {
    pub fhir_base_url: String,
    pub bundle: BundleOptions,
    pub bundle_size: usize,
    pub max_bundle_entries: Option<usize>,
    pub backoff: Backoff,
    pub config_error_backoff: Duration,
    /// How often an empty queue is polled.
    pub idle_poll: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The queue had nothing ready.
    Empty,
    /// A Bundle was settled (some records may have been nacked or dead-lettered).
    Sent {
        acked: usize,
        dead: usize,
        retried: usize,
    },
    /// Nothing was sent or settled; wait this long before the next step.
    Wait(Duration),
}

pub struct Uploader {
    queue: Arc<dyn DurableQueue>,
    http: reqwest::Client,
    auth: Arc<Authorizer>,
    settings: UploaderSettings,
    status: watch::Sender<UploadStatus>,
    /// Records up to this id go one per Bundle (isolating a bad record).
    solo_until: Option<RecordId>,
    /// `dead_lettered` when the isolation began and how many records the refused Bundle had.
    isolation_started: Option<(u64, usize)>,
    rng: rand::rngs::StdRng,
    config_error_logged: bool,
    observer: Option<Arc<dyn UploadObserver>>,
    /// Acked units naming a device record, waiting for every older queued record to settle.
    held: Vec<(RecordId, UploadUnit)>,
    /// Where attempts, outcomes and token refreshes are counted (`status`, `/metrics`).
    telemetry: Option<Arc<Telemetry>>,
    /// The token last used: a different one means the authorizer minted a new one.
    last_token: Option<Arc<AccessToken>>,
    ack_grouping: AckGrouping,
    /// Confirmed by the server, not yet acked in the queue (sorted ascending, module doc).
    pending_acks: Vec<RecordId>,
    /// When the oldest of `pending_acks` was confirmed.
    pending_since: Option<Instant>,
    /// `settings.fhir_base_url` parsed once (not per request).
    post_url: Option<reqwest::Url>,
}

impl Uploader {
    pub fn new(
        queue: Arc<dyn DurableQueue>,
        http: reqwest::Client,
        auth: Arc<Authorizer>,
        settings: UploaderSettings,
    ) -> Self {
        use rand::SeedableRng;
        let post_url = reqwest::Url::parse(&settings.fhir_base_url).ok();
        Self {
            queue,
            http,
            auth,
            settings,
            status: watch::Sender::new(UploadStatus::default()),
            solo_until: None,
            isolation_started: None,
            rng: rand::rngs::StdRng::from_os_rng(),
            config_error_logged: false,
            observer: None,
            held: Vec::new(),
            telemetry: None,
            last_token: None,
            ack_grouping: AckGrouping::IMMEDIATE,
            pending_acks: Vec::new(),
            pending_since: None,
            post_url,
        }
    }

    /// Groups the queue acks of consecutive Bundles (module doc, "Grouped acks").
    #[must_use]
    pub fn with_ack_grouping(mut self, grouping: AckGrouping) -> Self {
        self.ack_grouping = grouping;
        self
    }

    /// Applies the pending acks to the queue now, then reports the confirmations they release.
    pub fn flush_acks(&mut self) -> Result<(), QueueError> {
        if self.pending_acks.is_empty() {
            return Ok(());
        }
        self.queue.ack(&self.pending_acks)?;
        self.pending_acks.clear();
        self.pending_since = None;
        self.release_confirmations()
    }

    fn acks_due(&self) -> bool {
        self.pending_acks.len() >= self.ack_grouping.records
            || self
                .pending_since
                .is_some_and(|since| since.elapsed() >= self.ack_grouping.max_delay)
    }

    /// Counts this uploader's events in `telemetry` too.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    fn count(&self, event: impl FnOnce(&Telemetry)) {
        if let Some(telemetry) = &self.telemetry {
            event(telemetry);
        }
    }

    /// Reports server-confirmed units to `observer` (see the module doc for when).
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn UploadObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn status(&self) -> watch::Receiver<UploadStatus> {
        self.status.subscribe()
    }

    /// Drains until `shutdown` completes. Never returns early on server or auth errors, nor on
    /// a temporary queue error (full disk); only a permanent queue error (corruption) ends it.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), UploadError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut queue_failures = 0u32;
        loop {
            let wait = match self.step().await {
                Ok(Step::Sent { .. }) => {
                    queue_failures = 0;
                    continue;
                }
                Ok(Step::Empty) => {
                    queue_failures = 0;
                    self.settings.idle_poll
                }
                Ok(Step::Wait(d)) => {
                    queue_failures = 0;
                    d
                }
                Err(UploadError::Queue(e)) if e.is_temporary() => {
                    self.queue_refused(&e, &mut queue_failures)
                }
                Err(e) => return Err(e),
            };
            tokio::select! {
                () = &mut shutdown => {
                    self.flush_acks()?;
                    return Ok(());
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// A full disk refuses even an ack or a nack (sled writes either). Those records stay
    /// queued and are sent again later (the server deduplicates them), so the uploader waits
    /// (backoff with jitter) and carries on: stopping it would stop the whole gateway, and
    /// systemd would restart it into the same full disk.
    fn queue_refused(&mut self, error: &QueueError, failures: &mut u32) -> Duration {
        if *failures == 0 {
            tracing::warn!(%error, "the queue refused an update; uploads pause and retry");
        }
        let wait = self.settings.backoff.delay(*failures, None, &mut self.rng);
        *failures = failures.saturating_add(1);
        self.set_status(|s| s.last_error = Some(format!("queue: {error}")));
        wait
    }

    fn probing(&self) -> bool {
        self.status.borrow().consecutive_failures > 0
    }

    /// Picks the records of the next Bundle: at most `bundle_size` (1 when probing or isolating)
    /// and at most `max_bundle_entries` entries including the Devices.
    fn choose(&self, records: &[QueuedRecord], units: &[UploadUnit]) -> usize {
        let solo = self.probing()
            || self
                .solo_until
                .zip(records.first())
                .is_some_and(|(until, first)| first.id <= until);
        if solo {
            return 1.min(units.len());
        }
        let Some(max_entries) = self.settings.max_bundle_entries else {
            return units.len();
        };
        let mut devices = std::collections::HashSet::new();
        let mut take = 0;
        // Observation entries so far: the measurement, plus its PHD status-bits Observation.
        let mut observations = 0;
        for unit in units {
            let unit_observations = 1 + usize::from(unit.status_observation().is_some());
            let mut added = unit_observations;
            for identifier in [unit.gateway_identifier(), unit.device_identifier()] {
                if !devices.contains(&identifier) {
                    added += 1;
                }
            }
            if take > 0 && devices.len() + observations + added > max_entries {
                break;
            }
            devices.insert(unit.gateway_identifier());
            devices.insert(unit.device_identifier());
            observations += unit_observations;
            take += 1;
        }
        take
    }

    fn set_status(&self, f: impl FnOnce(&mut UploadStatus)) {
        self.status.send_modify(f);
    }

    fn failure_wait(&mut self, retry_after: Option<Duration>, error: String) -> Duration {
        let attempt = self.status.borrow().consecutive_failures;
        let wait = self
            .settings
            .backoff
            .delay(attempt, retry_after, &mut self.rng);
        self.set_status(|s| {
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.state = UploadState::BackingOff;
            s.last_error = Some(error);
        });
        wait
    }

    /// One Bundle: peek, build, authorise, send, settle. Pending acks are applied when due,
    /// and always before `Step::Empty` or `Step::Wait` is returned (module doc).
    pub async fn step(&mut self) -> Result<Step, UploadError> {
        let step = self.send_one().await?;
        if !matches!(step, Step::Sent { .. }) || self.acks_due() {
            self.flush_acks()?;
        }
        Ok(step)
    }

    async fn send_one(&mut self) -> Result<Step, UploadError> {
        // Older records may have settled since (dead-lettered, acked): release what waited.
        self.release_confirmations()?;
        let records = self
            .queue
            .peek_skipping(self.settings.bundle_size, &self.pending_acks)?;
        if records.is_empty() {
            self.set_status(|s| s.state = UploadState::Idle);
            return Ok(Step::Empty);
        }
        // Undecodable payloads can never be uploaded: dead-letter them now.
        let mut good = Vec::with_capacity(records.len());
        let mut units = Vec::with_capacity(records.len());
        let mut dead = 0;
        for mut record in records {
            // The unit takes the payload's buffer (no copy); only the id is used afterwards.
            match decode_unit_owned(std::mem::take(&mut record.payload)) {
                Ok(unit) => {
                    good.push(record);
                    units.push(unit);
                }
                Err(e) => {
                    self.queue
                        .dead_letter(record.id, format!("payload is not an upload unit: {e}"))?;
                    dead += 1;
                }
            }
        }
        self.count(|t| t.upload_dead_lettered(dead));
        if units.is_empty() {
            self.set_status(|s| s.dead_lettered += dead as u64);
            return Ok(Step::Sent {
                acked: 0,
                dead,
                retried: 0,
            });
        }
        let take = self.choose(&good, &units);
        good.truncate(take);
        units.truncate(take);
        let built = build_bundle(&units, &self.settings.bundle);
        let body = bundle_body(built.json);
        self.set_status(|s| s.state = UploadState::Uploading);

        let mut reauthorised = false;
        let reply = loop {
            let token = match self.auth.token().await {
                Ok(t) => t,
                Err(e) => {
                    self.count(|t| t.token_failed(&e.to_string()));
                    return Ok(Step::Wait(self.auth_failure(e)));
                }
            };
            if !self
                .last_token
                .as_ref()
                .is_some_and(|last| Arc::ptr_eq(last, &token))
            {
                self.count(|t| t.token_refreshed(token.expires_in));
                self.last_token = Some(Arc::clone(&token));
            }
            self.config_error_logged = false;
            self.count(|t| t.upload_attempt(good.len()));
            let posted = match &self.post_url {
                Some(url) => {
                    post_bundle(&self.http, url.clone(), &token.access_token, body.clone()).await
                }
                // Not a URL: reqwest reports it as the request's error, as it always did.
                None => {
                    let url = self.settings.fhir_base_url.as_str();
                    post_bundle(&self.http, url, &token.access_token, body.clone()).await
                }
            };
            match posted {
                Ok(reply) if reply.status == 401 && !reauthorised => {
                    tracing::info!("FHIR server refused the bearer token; requesting a new one");
                    self.auth.invalidate().await;
                    reauthorised = true;
                }
                Ok(reply) => break reply,
                Err(e) => {
                    tracing::warn!(kind = e.kind, "FHIR request failed; will retry");
                    tracing::debug!(error = %e, "FHIR transport error detail");
                    let error = format!("{}: {}", e.kind, e.message);
                    self.count(|t| t.upload_failed(good.len(), &error));
                    let wait = self.failure_wait(None, error);
                    self.nack_all(&good, wait)?;
                    return Ok(Step::Wait(wait));
                }
            }
        };
        self.settle(
            &good,
            &units,
            &built.observation_entries,
            &built.status_entries,
            reply,
        )
    }

    fn auth_failure(&mut self, e: AuthError) -> Duration {
        // Clock problems fix themselves once NTP works (nobody needs to act): look again far
        // sooner than after a configuration problem. An unsynchronised clock is a local check
        // (every 5 s); a clock the token server's Date shows to be off costs a token request
        // per try, so once a minute.
        let clock_wait = match e {
            AuthError::ClockUnsynchronized => Some(Duration::from_secs(5)),
            AuthError::ClockOffset { .. } => Some(CLOCK_OFFSET_RETRY),
            _ => None,
        };
        if let Some(wait) = clock_wait {
            if !self.config_error_logged {
                tracing::warn!("{e}; uploads wait for the clock");
                self.config_error_logged = true;
            }
            self.set_status(|s| {
                s.state = UploadState::WaitingForClock;
                s.last_error = Some(e.to_string());
            });
            return wait.min(self.settings.config_error_backoff);
        }
        if e.is_config_problem() {
            if !self.config_error_logged {
                tracing::error!("{e}; fix the upload configuration or the client registration");
                self.config_error_logged = true;
            }
            self.set_status(|s| {
                s.state = UploadState::NeedsConfiguration;
                s.last_error = Some(e.to_string());
            });
            return self.settings.config_error_backoff;
        }
        tracing::warn!("authorisation failed, will retry: {e}");
        self.failure_wait(None, e.to_string())
    }

    /// Reports held confirmations that no older waiting record precedes (module doc).
    fn release_confirmations(&mut self) -> Result<(), QueueError> {
        let Some(observer) = self.observer.clone() else {
            return Ok(());
        };
        if self.held.is_empty() {
            return Ok(());
        }
        let oldest = self.queue.oldest_waiting()?;
        let (ready, still_held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(id, _)| oldest.is_none_or(|oldest| *id < oldest));
        self.held = still_held;
        if self.held.len() > MAX_HELD_CONFIRMATIONS {
            let excess = self.held.len() - MAX_HELD_CONFIRMATIONS;
            self.held.drain(..excess);
        }
        if !ready.is_empty() {
            let units: Vec<UploadUnit> = ready.into_iter().map(|(_, unit)| unit).collect();
            observer.confirmed(&units);
        }
        Ok(())
    }

    /// The records of a refused Bundle have been sent one by one. None refused (`dead` is this
    /// step's count, not yet in the status): the server limits Bundle size, which the
    /// configuration must say, or every Bundle is refused and split again.
    fn isolation_ended(&mut self, dead: usize) {
        let Some((dead_before, records)) = self.isolation_started.take() else {
            return;
        };
        let dead_during = self.status.borrow().dead_lettered + dead as u64 - dead_before;
        if dead_during > 0 {
            return;
        }
        if !self.status.borrow().bundle_size_limited {
            tracing::warn!(
                records,
                "the FHIR server refused a Bundle of {records} records but accepted each of them \
                 alone: it limits Bundle size. Uploads go on one record per request until \
                 upload.max_bundle_entries is set (Medplum: 8 for transactions) or \
                 upload.bundle_type = \"batch\""
            );
        }
        self.set_status(|s| s.bundle_size_limited = true);
    }

    fn nack_all(&self, records: &[QueuedRecord], wait: Duration) -> Result<(), QueueError> {
        for r in records {
            self.queue.nack(r.id, wait)?;
        }
        Ok(())
    }

    fn settle(
        &mut self,
        records: &[QueuedRecord],
        units: &[UploadUnit],
        observation_entries: &[usize],
        status_entries: &[Option<usize>],
        reply: BundleReply,
    ) -> Result<Step, UploadError> {
        match classify_status(reply.status) {
            StatusClass::Success => {}
            StatusClass::Transient | StatusClass::Unauthorized => {
                tracing::warn!(
                    status = reply.status,
                    "FHIR server busy or unavailable; backing off"
                );
                let error = format!("HTTP {}", reply.status);
                self.count(|t| t.upload_failed(records.len(), &error));
                let wait = self.failure_wait(reply.retry_after, error);
                self.nack_all(records, wait)?;
                return Ok(Step::Wait(wait));
            }
            StatusClass::Permanent => {
                let outcome = String::from_utf8_lossy(&reply.body).into_owned();
                if records.len() > 1 {
                    // Which record is bad is unknown: settle them one by one.
                    tracing::warn!(
                        status = reply.status,
                        records = records.len(),
                        "Bundle refused; isolating records"
                    );
                    self.solo_until = records.last().map(|r| r.id);
                    let dead_so_far = self.status.borrow().dead_lettered;
                    self.isolation_started = Some((dead_so_far, records.len()));
                    self.set_status(|s| s.bundles_split += 1);
                    self.count(|t| {
                        t.upload_bundle_split();
                        t.upload_settled(0, records.len(), 0);
                    });
                    return Ok(Step::Sent {
                        acked: 0,
                        dead: 0,
                        retried: records.len(),
                    });
                }
                for r in records {
                    self.queue
                        .dead_letter(r.id, format!("HTTP {}: {outcome}", reply.status))?;
                }
                self.set_status(|s| {
                    s.dead_lettered += records.len() as u64;
                    s.consecutive_failures = 0;
                });
                self.count(|t| t.upload_settled(0, 0, records.len()));
                return Ok(Step::Sent {
                    acked: 0,
                    dead: records.len(),
                    retried: 0,
                });
            }
        }
        let body = match ReplyBundle::parse(&reply.body) {
            Ok(parsed) => parsed,
            Err(_) => {
                self.count(|t| t.upload_failed(records.len(), "unparseable Bundle response"));
                let wait = self.failure_wait(None, "unparseable Bundle response".into());
                self.nack_all(records, wait)?;
                return Ok(Step::Wait(wait));
            }
        };
        let mut acks = Vec::with_capacity(records.len());
        let mut confirmed = Vec::new();
        let (mut dead, mut retried, mut created) = (0, 0, 0u64);
        let retry_after = reply.retry_after;
        let mut transient = Vec::new();
        for (((record, unit), index), status_index) in records
            .iter()
            .zip(units)
            .zip(observation_entries)
            .zip(status_entries)
        {
            // A record is its measurement and, if any, its status-bits Observation: settled by
            // the worse of the two answers (a refused status entry dead-letters the record, one
            // that failed temporarily retries both; resending the stored one is harmless).
            let (answer, status) = [Some(*index), *status_index]
                .into_iter()
                .flatten()
                .map(|i| {
                    let answer = body.entry(i);
                    (answer, answer.and_then(|a| a.status))
                })
                // On a tie the measurement's answer counts (`created` is about it).
                .reduce(|worst, next| {
                    if settle_rank(next.1) > settle_rank(worst.1) {
                        next
                    } else {
                        worst
                    }
                })
                .expect("invariant: every record has its measurement entry");
            match status.map(classify_status) {
                Some(StatusClass::Success) => {
                    if status == Some(201) {
                        created += 1;
                    }
                    acks.push(record.id);
                    if self.observer.is_some() && unit.source_record().is_some() {
                        confirmed.push((record.id, unit.clone()));
                    }
                }
                Some(StatusClass::Permanent) => {
                    let outcome = answer
                        .and_then(|a| a.outcome)
                        .map_or_else(|| format!("entry status {status:?}"), str::to_owned);
                    self.queue.dead_letter(record.id, outcome)?;
                    dead += 1;
                }
                _ => {
                    transient.push(record.id);
                    retried += 1;
                }
            }
        }
        let acked = acks.len();
        if acked > 0 {
            self.pending_since.get_or_insert_with(Instant::now);
            self.pending_acks.extend(acks);
            self.pending_acks.sort_unstable();
            self.pending_acks.dedup();
        }
        self.held.extend(confirmed);
        self.release_confirmations()?;
        self.count(|t| t.upload_settled(acked, retried, dead));
        if let Some(until) = self.solo_until
            && records.last().is_some_and(|r| r.id >= until)
        {
            self.solo_until = None;
            self.isolation_ended(dead);
        }
        self.set_status(|s| {
            s.uploaded += created;
            s.duplicates_or_updates += acked as u64 - created;
            s.dead_lettered += dead as u64;
        });
        if !transient.is_empty() {
            let wait = self.failure_wait(retry_after, "some entries failed temporarily".into());
            for id in transient {
                self.queue.nack(id, wait)?;
            }
            return Ok(Step::Wait(wait));
        }
        let whole_bundle_stored = records.len() > 1 && acked == records.len();
        self.set_status(|s| {
            s.consecutive_failures = 0;
            s.last_error = None;
            if whole_bundle_stored {
                s.bundle_size_limited = false;
            }
        });
        Ok(Step::Sent {
            acked,
            dead,
            retried,
        })
    }
}

impl Drop for Uploader {
    /// Confirmed records are acked on the way out too; if that fails they are only sent again.
    fn drop(&mut self) {
        if let Err(e) = self.flush_acks() {
            tracing::warn!(
                "could not ack confirmed records at shutdown (they will be resent): {e}"
            );
        }
    }
}

/// How bad an entry's answer is for settling its record: success < temporary or missing <
/// permanent refusal.
fn settle_rank(status: Option<u16>) -> u8 {
    match status.map(classify_status) {
        Some(StatusClass::Success) => 0,
        Some(StatusClass::Permanent) => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use vectorcare_hal::clock::SimulatedClock;

    use super::*;
    use crate::fhir::{BundleType, WriteMode};
    use crate::queue::FullReason;
    use crate::runtime::testing::MemoryQueue;
    use crate::upload::assertion::AssertionSigner;
    use crate::upload::auth::AuthSettings;
    use crate::upload::keys::{SigningAlg, SigningKey, generate_private_key_pem};

    fn uploader(queue: Arc<MemoryQueue>) -> Uploader {
        crate::crypto::install_providers();
        let pem = generate_private_key_pem(SigningAlg::ES384).expect("key");
        let key = SigningKey::from_pem(pem.as_bytes(), SigningAlg::ES384).expect("key");
        let http = reqwest::Client::new();
        let base = url::Url::parse("http://127.0.0.1:9/fhir").expect("url");
        let auth = Authorizer::new(
            http.clone(),
            AssertionSigner {
                client_id: "gw".into(),
                kid: "kid".into(),
                jku: None,
                key,
                lifetime: Duration::from_secs(120),
            },
            Arc::new(SimulatedClock::new(0, true)),
            AuthSettings {
                fhir_base_url: base.clone(),
                scopes: None,
                write_mode: WriteMode::ConditionalCreate,
                refresh_margin: Duration::from_secs(10),
                allow_unsynchronized_clock: false,
            },
        );
        Uploader::new(
            queue,
            http,
            Arc::new(auth),
            UploaderSettings {
                fhir_base_url: base.to_string(),
                bundle: BundleOptions {
                    bundle_type: BundleType::Transaction,
                    write_mode: WriteMode::ConditionalCreate,
                },
                bundle_size: 8,
                max_bundle_entries: None,
                backoff: Backoff {
                    base: Duration::from_millis(100),
                    cap: Duration::from_secs(1),
                    max_retry_after: Duration::from_secs(60),
                },
                config_error_backoff: Duration::from_secs(3600),
                idle_poll: Duration::from_millis(200),
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_disk_pauses_the_uploader_instead_of_stopping_it() {
        let queue = Arc::new(MemoryQueue::refusing_peeks(
            || QueueError::Full(FullReason::Disk("No space left on device".into())),
            5,
        ));
        let uploader = uploader(queue.clone());
        let status = uploader.status();
        let result = uploader
            .run(tokio::time::sleep(Duration::from_secs(30)))
            .await;
        assert!(result.is_ok(), "{result:?}");
        // Retried past the refusals (backoff at most 1 s each), then polled the empty queue.
        assert!(queue.peeks.load(Ordering::SeqCst) > 10);
        assert!(
            status
                .borrow()
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("queue full"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_corrupt_queue_still_stops_the_uploader() {
        let queue = Arc::new(MemoryQueue::refusing_peeks(
            || QueueError::Corrupt("bad checksum".into()),
            1,
        ));
        let result = uploader(queue.clone())
            .run(tokio::time::sleep(Duration::from_secs(30)))
            .await;
        assert!(matches!(
            result,
            Err(UploadError::Queue(QueueError::Corrupt(_)))
        ));
        assert_eq!(queue.peeks.load(Ordering::SeqCst), 1);
    }
}
