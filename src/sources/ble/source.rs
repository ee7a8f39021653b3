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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::time::Instant;
use vectorcare_hal::ble::{
    AdapterState, BleAddress, BleCentral, BleError, BlePeripheral, BoxStream, CentralEvent,
    CharacteristicRef, GattService, Notification, ScanFilter, WriteKind, short_uuid,
};
use vectorcare_hal::clock::Clock;

use super::config::BleConfig;
use super::profiles::{Profile, current_time, device_information, services, supported_services};
use crate::decode::gatt::racp::{
    self, FilterValue, RacpOpCode, RacpOperator, RacpRequest, RacpResponse, RacpResponseCode,
};
use crate::decode::gatt::{DecodeContext, FeatureContext, clock, uuids, weight};
use crate::decode::readings_from_characteristic;
use crate::reading::{ClockContext, DeviceIdentity, Reading, SourceKind};
use crate::sources::{IngestError, ReadingSink};

/// How often a session checks that its link is still up (btleplug's notification stream does
/// not end when BlueZ drops the link).
const LINK_CHECK: Duration = Duration::from_secs(5);
/// Longest wait between looks for a missing or powered-off adapter.
const ADAPTER_RETRY_MAX: Duration = Duration::from_secs(30);

/// The uploader's view of stored-record progress: which records the FHIR server confirmed.
/// The queue/uploader provides the persisted implementation; [`InMemoryProgress`] is for tests
/// and the demo.
pub trait StoredRecordProgress: Send + Sync + fmt::Debug {
    /// Highest stored-record sequence number of `device` the server confirmed, if any.
    fn confirmed_sequence(&self, device: BleAddress) -> Option<u32>;
}

#[derive(Debug, Default)]
pub struct InMemoryProgress {
    confirmed: Mutex<HashMap<BleAddress, u32>>,
}

impl InMemoryProgress {
    pub fn confirm(&self, device: BleAddress, sequence: u32) {
        let mut map = self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(device).or_insert(sequence);
        *entry = (*entry).max(sequence);
    }
}

impl StoredRecordProgress for InMemoryProgress {
    fn confirmed_sequence(&self, device: BleAddress) -> Option<u32> {
        self.confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&device)
            .copied()
    }
}

/// What `status` shows about BLE. Keys of `devices` are addresses (status output is not a log).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BleStatus {
    pub adapter: Option<String>,
    pub scanning: bool,
    pub discovery_restarts: u32,
    pub adapter_power_cycles: u32,
    pub devices: BTreeMap<String, DeviceStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceStatus {
    pub connected: bool,
    pub connects: u32,
    pub readings: u64,
    pub last_error: Option<String>,
}

/// A shared, always-current view of [`BleStatus`].
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<BleStatus>>);

impl StatusHandle {
    pub fn snapshot(&self) -> BleStatus {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut BleStatus)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn device(&self, address: BleAddress, f: impl FnOnce(&mut DeviceStatus)) {
        self.update(|s| f(s.devices.entry(address.to_string()).or_default()));
    }
}

/// Delay before retry number `attempt` (0-based): exponential from `initial`, capped at `max`,
/// with "equal jitter" (half fixed, half random from `jitter` in 0..=1) so devices that failed
/// together do not retry together, and no retry comes sooner than half its step.
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let step = initial.saturating_mul(2u32.saturating_pow(attempt.min(31)));
    let cap = step.min(max);
    cap / 2 + cap.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
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

struct Shared<C: BleCentral> {
    central: C,
    config: BleConfig,
    sink: ReadingSink,
    progress: Arc<dyn StoredRecordProgress>,
    clock: Arc<dyn Clock>,
    status: StatusHandle,
    /// Held from connect to the end of service discovery: one connect at a time per adapter.
    connect_lock: tokio::sync::Mutex<()>,
    /// Per connected device: woken when the adapter reports the link down.
    links: Mutex<HashMap<BleAddress, Arc<Notify>>>,
    /// Highest stored-record sequence durable in the queue, per device (this process).
    durable: Mutex<HashMap<BleAddress, u32>>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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

    fn backoff(&self, attempt: u32) -> Duration {
        backoff_delay(
            attempt,
            self.config.backoff_initial,
            self.config.backoff_max,
            Self::jitter(),
        )
    }

    /// Allowlist position for logs above debug level (never the address).
    fn label(&self, address: BleAddress) -> String {
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

    async fn connect_and_collect(&self, address: BleAddress) -> Result<(), SessionError> {
        let (peripheral, services) = {
            let _one_at_a_time = self.connect_lock.lock().await;
            let peripheral = self.central.peripheral(address).await?;
            peripheral.connect().await?;
            match peripheral.discover_services().await {
                Ok(services) => (peripheral, services),
                Err(e) => {
                    let _ = peripheral.disconnect().await;
                    return Err(e.into());
                }
            }
        };
        let link = Arc::new(Notify::new());
        lock(&self.links).insert(address, link.clone());
        self.status.device(address, |d| {
            d.connected = true;
            d.connects += 1;
        });
        let result = self.collect(&peripheral, &services, &link).await;
        lock(&self.links).remove(&address);
        self.status.device(address, |d| d.connected = false);
        if peripheral.is_connected().await.unwrap_or(false) {
            let _ = peripheral.disconnect().await;
        }
        result
    }

    async fn read_optional(
        &self,
        peripheral: &C::Peripheral,
        present: &HashSet<CharacteristicRef>,
        characteristic: CharacteristicRef,
    ) -> Option<Vec<u8>> {
        if !present.contains(&characteristic) {
            return None;
        }
        match peripheral.read(characteristic).await {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::debug!(?characteristic, error = %e, "optional read failed");
                None
            }
        }
    }

    async fn identity(
        &self,
        peripheral: &C::Peripheral,
        present: &HashSet<CharacteristicRef>,
    ) -> DeviceIdentity {
        let info = |c: u16| CharacteristicRef::sig(services::DEVICE_INFORMATION, c);
        let text = |v: Option<Vec<u8>>| {
            v.map(|b| {
                String::from_utf8_lossy(&b)
                    .trim_end_matches('\0')
                    .to_owned()
            })
            .filter(|s| !s.is_empty())
        };
        let system_id = self
            .read_optional(peripheral, present, info(device_information::SYSTEM_ID))
            .await
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok());
        DeviceIdentity {
            source: SourceKind::Ble,
            address: peripheral.address().to_string(),
            system_id,
            manufacturer: text(
                self.read_optional(
                    peripheral,
                    present,
                    info(device_information::MANUFACTURER_NAME),
                )
                .await,
            ),
            model: text(
                self.read_optional(peripheral, present, info(device_information::MODEL_NUMBER))
                    .await,
            ),
            serial_number: text(
                self.read_optional(peripheral, present, info(device_information::SERIAL_NUMBER))
                    .await,
            ),
        }
    }

    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from(self.clock.now())
    }

    async fn collect(
        &self,
        peripheral: &C::Peripheral,
        services: &[GattService],
        link: &Notify,
    ) -> Result<(), SessionError> {
        let address = peripheral.address();
        let configured = self.config.device(address);
        let present: HashSet<CharacteristicRef> = services
            .iter()
            .flat_map(|s| s.characteristics.iter().map(|c| c.id))
            .collect();
        let profiles: Vec<Profile> = services
            .iter()
            .filter_map(|s| short_uuid(&s.uuid).and_then(Profile::from_service))
            .filter(|p| {
                configured
                    .and_then(|d| d.profile)
                    .is_none_or(|only| only == *p)
            })
            .collect();
        if profiles.is_empty() {
            return Err(SessionError::NoSupportedService);
        }

        let device = self.identity(peripheral, &present).await;
        let mut features = FeatureContext::default();
        for profile in &profiles {
            for &f in profile.features() {
                let Some(bytes) = self
                    .read_optional(peripheral, &present, profile.characteristic(f))
                    .await
                else {
                    continue;
                };
                if f == uuids::WEIGHT_SCALE_FEATURE {
                    features.weight_scale = weight::decode_feature(&bytes).ok();
                }
            }
        }
        let device_offset_seconds = self
            .read_optional(peripheral, &present, current_time())
            .await
            .and_then(|b| clock::decode_current_time(&b).ok())
            .and_then(|t| clock::to_primitive(&t.date_time))
            .map(|device_now| (device_now.assume_utc() - self.now()).whole_seconds());
        let mut ctx = DecodeContext {
            device,
            received_at: self.now(),
            clock: ClockContext {
                device_offset_seconds,
                gateway_clock_synchronized: self.clock.sync_state().is_synchronized(),
            },
            features,
        };

        let mut stream = peripheral.notifications().await?;
        for profile in &profiles {
            for &m in profile.measurements() {
                let c = profile.characteristic(m);
                if present.contains(&c) {
                    peripheral.subscribe(c).await?;
                }
            }
        }
        let mut racp = RacpSession::default();
        if let Some(profile) = profiles
            .iter()
            .find(|p| p.uses_racp() && present.contains(&p.racp()))
        {
            peripheral.subscribe(profile.racp()).await?;
            racp.control_point = Some(profile.racp());
            racp.delete_after_upload = configured.is_some_and(|d| d.delete_after_upload);
            let after = self.fetched_up_to(address);
            let operator = match after.and_then(|s| u16::try_from(s).ok()) {
                Some(s) if s == u16::MAX => None,
                Some(s) => Some(RacpOperator::GreaterOrEqual(FilterValue::Sequence(s + 1))),
                None => Some(RacpOperator::All),
            };
            if let Some(operator) = operator {
                self.racp_write(
                    peripheral,
                    profile.racp(),
                    RacpOpCode::ReportStoredRecords,
                    operator,
                )
                .await?;
                racp.awaiting = Some(RacpOpCode::ReportStoredRecords);
            } else {
                self.maybe_delete(peripheral, &mut racp).await?;
            }
        }

        let mut check = tokio::time::interval(LINK_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = stream.next() => match n {
                    None => return Ok(()),
                    Some(n) => self.on_value(peripheral, n, &mut ctx, &mut racp).await?,
                },
                () = link.notified() => return Ok(()),
                _ = check.tick() => {
                    if !peripheral.is_connected().await.unwrap_or(false) {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn fetched_up_to(&self, address: BleAddress) -> Option<u32> {
        let confirmed = self.progress.confirmed_sequence(address);
        let durable = lock(&self.durable).get(&address).copied();
        confirmed.max(durable)
    }

    async fn racp_write(
        &self,
        peripheral: &C::Peripheral,
        control_point: CharacteristicRef,
        op_code: RacpOpCode,
        operator: RacpOperator,
    ) -> Result<(), SessionError> {
        let bytes = racp::encode_request(&RacpRequest { op_code, operator })
            .map_err(|e| BleError::Other(format!("RACP request: {e}")))?;
        peripheral
            .write(control_point, &bytes, WriteKind::WithResponse)
            .await?;
        Ok(())
    }

    /// Deletes records on the device up to the server-confirmed sequence, when configured.
    async fn maybe_delete(
        &self,
        peripheral: &C::Peripheral,
        racp: &mut RacpSession,
    ) -> Result<(), SessionError> {
        let Some(control_point) = racp.control_point else {
            return Ok(());
        };
        if !racp.delete_after_upload || racp.delete_sent {
            return Ok(());
        }
        let Some(confirmed) = self
            .progress
            .confirmed_sequence(peripheral.address())
            .and_then(|s| u16::try_from(s).ok())
        else {
            return Ok(());
        };
        racp.delete_sent = true;
        self.racp_write(
            peripheral,
            control_point,
            RacpOpCode::DeleteStoredRecords,
            RacpOperator::LessOrEqual(FilterValue::Sequence(confirmed)),
        )
        .await?;
        racp.awaiting = Some(RacpOpCode::DeleteStoredRecords);
        Ok(())
    }

    async fn on_value(
        &self,
        peripheral: &C::Peripheral,
        n: Notification,
        ctx: &mut DecodeContext,
        racp: &mut RacpSession,
    ) -> Result<(), SessionError> {
        let Some(uuid) = short_uuid(&n.characteristic.characteristic) else {
            return Ok(());
        };
        if Some(n.characteristic) == racp.control_point {
            match racp::decode_response(&n.value) {
                Ok(RacpResponse::ResponseCode {
                    request_op_code,
                    code,
                }) => {
                    tracing::debug!(request_op_code, ?code, "RACP response");
                    if request_op_code == RacpOpCode::ReportStoredRecords as u8 {
                        racp.awaiting = None;
                        if matches!(
                            code,
                            RacpResponseCode::Success | RacpResponseCode::NoRecordsFound
                        ) {
                            self.maybe_delete(peripheral, racp).await?;
                        }
                    } else if request_op_code == RacpOpCode::DeleteStoredRecords as u8 {
                        racp.awaiting = None;
                    }
                }
                Ok(RacpResponse::NumberOfRecords { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "undecodable RACP response"),
            }
            return Ok(());
        }
        ctx.received_at = self.now();
        ctx.clock.gateway_clock_synchronized = self.clock.sync_state().is_synchronized();
        let readings = match readings_from_characteristic(uuid, &n.value, ctx) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(characteristic = uuid, error = %e, "undecodable BLE value dropped");
                return Ok(());
            }
        };
        if readings.is_empty() {
            return Ok(());
        }
        let highest_sequence = readings.iter().filter_map(|r| r.sequence).max();
        let count = readings.len() as u64;
        self.submit(readings).await?;
        let address = peripheral.address();
        self.status.device(address, |d| d.readings += count);
        if let Some(seq) = highest_sequence {
            let mut durable = lock(&self.durable);
            let entry = durable.entry(address).or_insert(seq);
            *entry = (*entry).max(seq);
        }
        Ok(())
    }

    /// Hands readings to the sink until they are durable (or refused for good).
    async fn submit(&self, readings: Vec<Reading>) -> Result<(), SessionError> {
        let mut attempt = 0u32;
        loop {
            match self.sink.submit(readings.clone()).await {
                Ok(()) => return Ok(()),
                Err(IngestError::ShuttingDown) => return Err(SessionError::ShuttingDown),
                Err(e) if e.is_permanent() => {
                    tracing::warn!(error = %e, "readings rejected for good");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "readings not stored yet; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}

/// Where a session's Record Access Control Point conversation stands.
#[derive(Debug, Default)]
struct RacpSession {
    control_point: Option<CharacteristicRef>,
    delete_after_upload: bool,
    delete_sent: bool,
    awaiting: Option<RacpOpCode>,
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
