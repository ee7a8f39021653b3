//! The BLE source: finds the configured (or any standard) health devices, keeps a session with
//! each, and hands their measurements to the [`ReadingSink`].
//!
//! One future ([`BleSource::run`]) drives everything: the adapter supervisor (discovery, scan
//! watchdog, adapter power state) and one session per device, polled together; nothing is
//! spawned. A session is: connect (serialised across devices: BlueZ answers parallel connects
//! with `InProgress`) → discover → read Device Information, feature characteristics and
//! Current Time (device clock offset) → subscribe to every measurement characteristic →
//! for Glucose, fetch stored records through RACP → decode and submit each pushed value until
//! the link drops → back off (exponential, jittered) → again.
//!
//! Stored records (RACP): the source asks only for records after the highest sequence number
//! already durable in the queue (this process) or confirmed by the FHIR server
//! ([`StoredRecordProgress`], persisted by the uploader); it deletes records on the device
//! only up to the sequence the server confirmed, and only when the device's config says so.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::Notify;
use tokio::time::Instant;
use vectorcare_hal::ble::{
    AdapterState, BleAddress, BleCentral, BleError, BoxStream, CentralEvent, ScanFilter,
};
use vectorcare_hal::clock::Clock;

use super::config::BleConfig;
use super::profiles::supported_services;
use crate::sources::ReadingSink;

/// How often a session checks that its link is still up (btleplug's notification stream does
/// not end when BlueZ drops the link).
pub(super) const LINK_CHECK: Duration = Duration::from_secs(5);
/// Longest wait between looks for a missing or powered-off adapter.
const ADAPTER_RETRY_MAX: Duration = Duration::from_secs(30);

pub use super::status::{
    BleStatus, DeviceStatus, InMemoryProgress, StatusHandle, StoredRecordProgress,
};

/// Delay before retry number `attempt` (0-based): exponential from `initial`, capped at `max`,
/// with "equal jitter" (half fixed, half random from `jitter` in 0..=1) so devices that failed
/// together do not retry together, and no retry comes sooner than half its step.
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let step = initial.saturating_mul(2u32.saturating_pow(attempt.min(31)));
    let cap = step.min(max);
    cap / 2 + cap.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error(transparent)]
    Ble(#[from] BleError),
    #[error("device offers no supported health service")]
    NoSupportedService,
    #[error("gateway is shutting down")]
    ShuttingDown,
}

/// The BLE source. Build with [`BleSource::new`], run with [`BleSource::run`].
pub struct BleSource<C: BleCentral> {
    shared: Arc<Shared<C>>,
}

pub(super) struct Shared<C: BleCentral> {
    pub(super) central: C,
    pub(super) config: BleConfig,
    pub(super) sink: ReadingSink,
    pub(super) progress: Arc<dyn StoredRecordProgress>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) status: StatusHandle,
    /// Held from connect to the end of service discovery: one connect at a time per adapter.
    pub(super) connect_lock: tokio::sync::Mutex<()>,
    /// Per connected device: woken when the adapter reports the link down.
    pub(super) links: Mutex<HashMap<BleAddress, Arc<Notify>>>,
    /// Highest stored-record sequence durable in the queue, per device (this process).
    pub(super) durable: Mutex<HashMap<BleAddress, u32>>,
}

type Session = Pin<Box<dyn Future<Output = BleAddress> + Send>>;

impl<C: BleCentral> BleSource<C> {
    pub fn new(
        central: C,
        config: BleConfig,
        sink: ReadingSink,
        progress: Arc<dyn StoredRecordProgress>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                central,
                config,
                sink,
                progress,
                clock,
                status: StatusHandle::default(),
                connect_lock: tokio::sync::Mutex::new(()),
                links: Mutex::new(HashMap::new()),
                durable: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn status(&self) -> StatusHandle {
        self.shared.status.clone()
    }

    /// Runs until `shutdown` completes. Never gives up on the adapter or a device.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        tokio::select! {
            () = shutdown => {}
            () = self.shared.clone().supervise() => {}
        }
        let links = self
            .shared
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        tracing::info!(connected = links, "BLE source stopped");
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn next_event(events: &mut Option<BoxStream<CentralEvent>>) -> Option<CentralEvent> {
    match events.as_mut() {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

impl<C: BleCentral> Shared<C> {
    fn jitter() -> f64 {
        rand::random::<f64>()
    }

    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        backoff_delay(
            attempt,
            self.config.backoff_initial,
            self.config.backoff_max,
            Self::jitter(),
        )
    }

    /// Allowlist position for logs above debug level (never the address).
    pub(super) fn label(&self, address: BleAddress) -> String {
        match self
            .config
            .devices
            .iter()
            .position(|d| d.address == address)
        {
            Some(i) => format!("devices[{i}]"),
            None => "discovered".to_owned(),
        }
    }

    fn wanted(&self, address: BleAddress, advertised: &[uuid::Uuid]) -> bool {
        if self.config.device(address).is_some() {
            return true;
        }
        self.config.accept_any_health_device
            && advertised.iter().any(|u| supported_services().contains(u))
    }

    fn scan_filter(&self) -> ScanFilter {
        if self.config.accept_any_health_device && self.config.devices.is_empty() {
            ScanFilter {
                services: supported_services(),
            }
        } else {
            // Listed devices may not advertise their service UUIDs: see everything.
            ScanFilter::default()
        }
    }

    async fn start_discovery(&self) -> Result<BoxStream<CentralEvent>, BleError> {
        let state = self.central.adapter_state().await?;
        self.status
            .update(|s| s.adapter = Some(format!("{state:?}").to_lowercase()));
        match state {
            AdapterState::PoweredOn => {}
            AdapterState::PoweredOff => return Err(BleError::NotReady),
            AdapterState::Unavailable => {
                return Err(BleError::AdapterUnavailable("adapter not present".into()));
            }
        }
        let events = self.central.events().await?;
        self.central.start_scan(&self.scan_filter()).await?;
        self.status.update(|s| s.scanning = true);
        Ok(events)
    }

    async fn supervise(self: Arc<Self>) {
        let mut events: Option<BoxStream<CentralEvent>> = None;
        let mut sessions: FuturesUnordered<Session> = FuturesUnordered::new();
        let mut active: HashSet<BleAddress> = HashSet::new();
        let mut adapter_attempt = 0u32;
        let mut adapter_retry = Instant::now();
        let watchdog = self.config.scan_watchdog;
        let mut last_activity = Instant::now();
        let mut watchdog_stage = 0u8;
        let mut tick = tokio::time::interval((watchdog / 4).max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if events.is_none() && Instant::now() >= adapter_retry {
                match self.start_discovery().await {
                    Ok(stream) => {
                        tracing::info!("BLE discovery started");
                        events = Some(stream);
                        adapter_attempt = 0;
                        last_activity = Instant::now();
                    }
                    Err(e) => {
                        if adapter_attempt == 0 {
                            tracing::warn!(error = %e, "Bluetooth adapter not usable; will keep trying");
                        }
                        self.status.update(|s| s.scanning = false);
                        // Looking for the adapter is cheap: never wait long for a replugged one.
                        adapter_retry =
                            Instant::now() + self.backoff(adapter_attempt).min(ADAPTER_RETRY_MAX);
                        adapter_attempt = adapter_attempt.saturating_add(1);
                    }
                }
            }
            tokio::select! {
                event = next_event(&mut events) => match event {
                    None => {
                        tracing::warn!("Bluetooth adapter event stream ended; reopening");
                        events = None;
                        self.status.update(|s| s.scanning = false);
                    }
                    Some(CentralEvent::Advertised(ad)) => {
                        last_activity = Instant::now();
                        watchdog_stage = 0;
                        if self.wanted(ad.address, &ad.services) && active.insert(ad.address) {
                            tracing::debug!(address = %ad.address, "starting device session");
                            sessions.push(Box::pin(self.clone().session(ad.address)));
                        }
                    }
                    Some(CentralEvent::Disconnected(address)) => {
                        if let Some(link) = lock(&self.links).get(&address) {
                            link.notify_one();
                        }
                    }
                    Some(CentralEvent::Connected(_)) => {}
                    Some(CentralEvent::AdapterState(state)) => {
                        tracing::info!(?state, "Bluetooth adapter state changed");
                        self.status.update(|s| s.adapter = Some(format!("{state:?}").to_lowercase()));
                        match state {
                            // Only when discovery stopped: starting it (re)sets Powered, which
                            // reports PoweredOn again.
                            AdapterState::PoweredOn if !self.status.snapshot().scanning => {
                                if let Err(e) = self.central.start_scan(&self.scan_filter()).await {
                                    tracing::warn!(error = %e, "restarting discovery after power-on failed");
                                } else {
                                    self.status.update(|s| s.scanning = true);
                                }
                                last_activity = Instant::now();
                            }
                            AdapterState::PoweredOn => {}
                            AdapterState::PoweredOff => self.status.update(|s| s.scanning = false),
                            AdapterState::Unavailable => {
                                events = None;
                                self.status.update(|s| s.scanning = false);
                            }
                        }
                    }
                },
                Some(address) = sessions.next(), if !sessions.is_empty() => {
                    active.remove(&address);
                }
                _ = tick.tick() => {
                    let connected = !lock(&self.links).is_empty();
                    if connected || events.is_none() {
                        last_activity = Instant::now();
                        watchdog_stage = 0;
                    } else if last_activity.elapsed() >= watchdog {
                        watchdog_stage = self.watchdog_step(watchdog_stage).await;
                        last_activity = Instant::now();
                    }
                }
                () = tokio::time::sleep_until(adapter_retry), if events.is_none() => {}
            }
        }
    }

    /// No advertisement for a watchdog period: first restart discovery, the next time
    /// power-cycle the adapter. Returns the next stage.
    async fn watchdog_step(&self, stage: u8) -> u8 {
        if stage == 0 {
            tracing::warn!("no BLE advertisements for the watchdog period; restarting discovery");
            self.status.update(|s| s.discovery_restarts += 1);
            let _ = self.central.stop_scan().await;
            if let Err(e) = self.central.start_scan(&self.scan_filter()).await {
                tracing::warn!(error = %e, "restarting discovery failed");
            }
            1
        } else {
            tracing::warn!("still no BLE advertisements; power-cycling the adapter");
            self.status.update(|s| s.adapter_power_cycles += 1);
            if let Err(e) = self.central.set_powered(false).await {
                tracing::warn!(error = %e, "powering the adapter off failed");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Err(e) = self.central.set_powered(true).await {
                tracing::warn!(error = %e, "powering the adapter on failed");
            }
            if let Err(e) = self.central.start_scan(&self.scan_filter()).await {
                tracing::warn!(error = %e, "restarting discovery after power-cycle failed");
            }
            0
        }
    }

    /// One device, for as long as the adapter knows it: connect, collect, back off, again.
    async fn session(self: Arc<Self>, address: BleAddress) -> BleAddress {
        let label = self.label(address);
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let result = self.connect_and_collect(address).await;
            let error = match result {
                Ok(()) => None,
                Err(SessionError::ShuttingDown) => return address,
                Err(e) => Some(e),
            };
            if let Some(e) = &error {
                tracing::warn!(device = %label, error = %e, "BLE device session failed");
                self.status
                    .device(address, |d| d.last_error = Some(e.to_string()));
            } else {
                tracing::info!(device = %label, "BLE device disconnected");
            }
            match &error {
                Some(SessionError::Ble(BleError::DeviceNotFound)) => return address,
                Some(SessionError::Ble(e)) if e.wants_device_removal() => {
                    // A stale BlueZ device object wedges every later connect: drop it; the
                    // next advertisement recreates it and restarts the session.
                    if let Err(e) = self.central.remove_device(address).await {
                        tracing::warn!(device = %label, error = %e, "removing stale device failed");
                    }
                    return address;
                }
                _ => {}
            }
            // A session that ran a while was healthy: start backing off from the beginning.
            if error.is_none() && started.elapsed() >= self.config.backoff_max {
                attempt = 0;
            }
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt = attempt.saturating_add(1);
        }
    }
}

// The source is a future the runtime spawns: it must be Send.
const _: () = {
    fn assert_send<T: Send>(_: &T) {}
    #[allow(dead_code)]
    fn run_is_send(source: BleSource<vectorcare_hal::ble::simulated::SimulatedCentral>) {
        assert_send(&source.run(std::future::pending()));
    }
    #[allow(dead_code)]
    fn real_run_is_send(source: BleSource<vectorcare_hal::ble::btleplug::BtleplugCentral>) {
        assert_send(&source.run(std::future::pending()));
    }
};
