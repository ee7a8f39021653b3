//! [`Telemetry`]: every counter and gauge of the gateway, and the [`Snapshot`] built from them.
//!
//! Events are counted as they happen (ingest observer, uploader, pipeline liveness). Gauges that
//! other components already keep (queue stats, device connection state, upload state, clock
//! sync) are read from their live views when a snapshot is taken, so nothing is copied twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::watch;
use vectorcare_hal::clock::{Clock, SyncState};

use super::history::HourlyHistory;
pub use super::snapshot::{
    ClockView, DeviceView, ErrorEvent, QueueView, ReadingCount, Snapshot, SourceCount, TaskView,
    TokenView, UploadEvent, UploadView,
};
use super::snapshot::{health, warnings};
use crate::config::Config;
use crate::queue::DurableQueue;
use crate::reading::{Kind, Reading, SourceKind};
use crate::runtime::build::DeviceIdPattern;
use crate::runtime::ingest::IngestObserver;
use crate::sources::ble::source::StatusHandle;
use crate::sources::mqtt::source::MqttStatus;
use crate::sources::serial::source::{PortState, SerialStatus};
use crate::upload::uploader::{UploadState, UploadStatus};

/// Entries kept in the "last uploads" and "recent errors" lists.
const RECENT: usize = 10;

/// A configured device as telemetry names it.
#[derive(Debug, Clone)]
pub struct DeviceSlot {
    /// Configuration path (`sources.ble.devices[0]`) or the configured label.
    pub label: String,
    pub source: SourceKind,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// BLE address, upper case.
    Ble(String),
    /// Serial port: its index in `sources.serial.ports` and the device id its readings carry.
    Serial { index: usize, device_id: String },
    /// MQTT topic: the device id template (`mqtt:{1}`).
    Mqtt(DeviceIdPattern),
    /// Readings of devices not listed in the configuration (BLE `accept_any_health_device`).
    Unlisted,
}

impl DeviceSlot {
    fn matches(&self, reading: &Reading) -> bool {
        if reading.device.source != self.source {
            return false;
        }
        match &self.matcher {
            Matcher::Ble(address) => reading.device.address.eq_ignore_ascii_case(address),
            Matcher::Serial { device_id, .. } => &reading.device.address == device_id,
            Matcher::Mqtt(pattern) => pattern.matches(&reading.device.address),
            Matcher::Unlisted => true,
        }
    }
}

/// What telemetry needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct TelemetryOptions {
    pub gateway_id: String,
    /// Show device addresses and the last reading of each device (`[status] show_readings`).
    pub show_readings: bool,
    pub devices: Vec<DeviceSlot>,
    pub upload_configured: bool,
}

impl TelemetryOptions {
    /// Device slots from the configured sources; `labels` maps a configuration path to a label.
    pub fn from_config(
        config: &Config,
        show_readings: bool,
        labels: &BTreeMap<String, String>,
    ) -> Self {
        let label = |path: String| labels.get(&path).cloned().unwrap_or(path);
        let mut devices = Vec::new();
        if let Some(ble) = &config.sources.ble {
            for (i, device) in ble.devices.iter().enumerate() {
                devices.push(DeviceSlot {
                    label: label(format!("sources.ble.devices[{i}]")),
                    source: SourceKind::Ble,
                    matcher: Matcher::Ble(device.address.to_string()),
                });
            }
            if ble.accept_any_health_device {
                devices.push(DeviceSlot {
                    label: "sources.ble (unlisted devices)".into(),
                    source: SourceKind::Ble,
                    matcher: Matcher::Unlisted,
                });
            }
        }
        if let Some(serial) = &config.sources.serial {
            for (index, port) in serial.ports.iter().enumerate() {
                devices.push(DeviceSlot {
                    label: label(format!("sources.serial.ports[{index}]")),
                    source: SourceKind::Serial,
                    matcher: Matcher::Serial {
                        index,
                        device_id: port.device_id.clone(),
                    },
                });
            }
        }
        if let Some(mqtt) = &config.sources.mqtt {
            for (i, topic) in mqtt.topics.iter().enumerate() {
                devices.push(DeviceSlot {
                    label: label(format!("sources.mqtt.topics[{i}]")),
                    source: SourceKind::Mqtt,
                    matcher: Matcher::Mqtt(DeviceIdPattern::new(&topic.device_id)),
                });
            }
        }
        Self {
            gateway_id: config.gateway.id.clone(),
            show_readings,
            devices,
            upload_configured: config.upload.is_some(),
        }
    }
}

#[derive(Debug, Default)]
struct DeviceCounters {
    readings: u64,
    last_reading: Option<SystemTime>,
    /// Only kept with `show_readings`.
    last_address: Option<String>,
    last_value: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Keyed by the enums (no allocation per reading); named and sorted in snapshots.
    readings: HashMap<(SourceKind, Kind), u64>,
    mapping_failures: HashMap<SourceKind, u64>,
    devices: Vec<DeviceCounters>,
    upload: UploadCounters,
    token: TokenCounters,
    recent_uploads: VecDeque<UploadEvent>,
    recent_errors: VecDeque<ErrorEvent>,
    history: HourlyHistory,
    tasks: Vec<TaskView>,
    stopping: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct UploadCounters {
    attempts: u64,
    successes: u64,
    retries: u64,
    dead_letters: u64,
    bundles_split: u64,
    last_success: Option<SystemTime>,
}

#[derive(Debug, Default, Clone, Copy)]
struct TokenCounters {
    refreshes: u64,
    failures: u64,
    valid_until: Option<SystemTime>,
}

#[derive(Default)]
struct Views {
    ble: Option<StatusHandle>,
    serial: Option<watch::Receiver<SerialStatus>>,
    mqtt: Option<watch::Receiver<MqttStatus>>,
    upload: Option<watch::Receiver<UploadStatus>>,
    queue: Option<Arc<dyn DurableQueue>>,
}

/// The gateway's counters and gauges. One per process, shared as `Arc<Telemetry>`.
pub struct Telemetry {
    options: TelemetryOptions,
    clock: Arc<dyn Clock>,
    started: Instant,
    state: Mutex<State>,
    views: Mutex<Views>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("devices", &self.options.devices.len())
            .finish_non_exhaustive()
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn source_name(source: SourceKind) -> &'static str {
    match source {
        SourceKind::Ble => "ble",
        SourceKind::Serial => "serial",
        SourceKind::Mqtt => "mqtt",
    }
}

fn kind_name(kind: Kind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

impl Telemetry {
    pub fn new(options: TelemetryOptions, clock: Arc<dyn Clock>) -> Self {
        let state = State {
            devices: options
                .devices
                .iter()
                .map(|_| DeviceCounters::default())
                .collect(),
            ..State::default()
        };
        Self {
            options,
            clock,
            started: Instant::now(),
            state: Mutex::new(state),
            views: Mutex::new(Views::default()),
        }
    }

    pub fn show_readings(&self) -> bool {
        self.options.show_readings
    }

    // ---- live views (attached by the runtime as components are built) ----

    pub fn attach_ble(&self, status: StatusHandle) {
        self.views.lock().ble = Some(status);
    }
    pub fn attach_serial(&self, status: watch::Receiver<SerialStatus>) {
        self.views.lock().serial = Some(status);
    }
    pub fn attach_mqtt(&self, status: watch::Receiver<MqttStatus>) {
        self.views.lock().mqtt = Some(status);
    }
    pub fn attach_upload(&self, status: watch::Receiver<UploadStatus>) {
        self.views.lock().upload = Some(status);
    }
    pub fn attach_queue(&self, queue: Arc<dyn DurableQueue>) {
        self.views.lock().queue = Some(queue);
    }

    // ---- task liveness (the pipeline's watchdog view) ----

    /// The pipeline started these tasks.
    pub fn tasks_started(&self, names: impl IntoIterator<Item = String>) {
        let mut state = self.state.lock();
        state.stopping = false;
        state.tasks = names
            .into_iter()
            .map(|name| TaskView { name, alive: true })
            .collect();
    }

    /// The pipeline saw this task end.
    pub fn task_ended(&self, name: &str) {
        let mut state = self.state.lock();
        for task in state.tasks.iter_mut().filter(|t| t.name == name) {
            task.alive = false;
        }
    }

    /// The pipeline is shutting down: not healthy any more.
    pub fn stopping(&self) {
        self.state.lock().stopping = true;
    }

    // ---- upload events (the uploader) ----

    /// One Bundle of `records` readings is being sent.
    pub fn upload_attempt(&self, records: usize) {
        self.state.lock().upload.attempts += 1;
        tracing::debug!(records, "upload attempt");
    }

    /// A Bundle was answered: `acked` readings stored on the server, `retried` to send again,
    /// `dead` refused for good.
    pub fn upload_settled(&self, acked: usize, retried: usize, dead: usize) {
        let now = self.clock.now();
        let mut state = self.state.lock();
        state.upload.successes += acked as u64;
        state.upload.retries += retried as u64;
        state.upload.dead_letters += dead as u64;
        if acked > 0 {
            state.upload.last_success = Some(now);
        }
        push_recent(
            &mut state.recent_uploads,
            UploadEvent {
                at_unix: unix_seconds(now),
                acked: acked as u64,
                retried: retried as u64,
                dead: dead as u64,
                error: None,
            },
        );
    }

    /// A Bundle could not be delivered (`records` stay queued and are retried). `error` must be
    /// PHI-free (HTTP status, transport error kind, OAuth error code).
    pub fn upload_failed(&self, records: usize, error: &str) {
        let now = self.clock.now();
        let mut state = self.state.lock();
        state.upload.retries += records as u64;
        push_recent(
            &mut state.recent_uploads,
            UploadEvent {
                at_unix: unix_seconds(now),
                acked: 0,
                retried: records as u64,
                dead: 0,
                error: Some(error.to_owned()),
            },
        );
        push_error(&mut state, now, "upload", error);
    }

    /// The server refused a multi-record Bundle as a whole; its records go one by one.
    pub fn upload_bundle_split(&self) {
        self.state.lock().upload.bundles_split += 1;
    }

    /// Records dead-lettered outside a Bundle reply (undecodable payloads).
    pub fn upload_dead_lettered(&self, records: usize) {
        self.state.lock().upload.dead_letters += records as u64;
    }

    pub fn token_refreshed(&self, expires_in: Duration) {
        let now = self.clock.now();
        let mut state = self.state.lock();
        state.token.refreshes += 1;
        state.token.valid_until = Some(now + expires_in);
    }

    /// A token request failed; `error` is PHI-free (an OAuth error code or status).
    pub fn token_failed(&self, error: &str) {
        let now = self.clock.now();
        let mut state = self.state.lock();
        state.token.failures += 1;
        push_error(&mut state, now, "token", error);
    }

    // ---- sampling (the telemetry task) ----

    /// Samples the queue depth into the hourly history; returns the snapshot the MQTT health
    /// message carries.
    pub fn sample(&self) -> crate::sources::mqtt::source::HealthSnapshot {
        let snapshot = self.snapshot();
        crate::sources::mqtt::source::HealthSnapshot {
            queue_depth: snapshot.queue.as_ref().map_or(0, |q| q.depth),
            last_upload_ok_unix: snapshot
                .upload
                .last_success_age_seconds
                .map(|age| snapshot.now_unix.saturating_sub(age) as i64),
            devices_connected: snapshot
                .devices
                .iter()
                .filter(|d| d.connected == Some(true))
                .count() as u32,
        }
    }

    /// Everything, as `/status` shows it.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.clock.now();
        let now_unix = unix_seconds(now);
        let age = |at: Option<SystemTime>| {
            at.map(|t| now.duration_since(t).unwrap_or_default().as_secs())
        };
        let views = self.read_views();
        if let Some(queue) = &views.queue {
            self.state
                .lock()
                .history
                .sample_depth(now_unix, queue.depth);
        }
        let state = self.state.lock();
        let devices = self
            .options
            .devices
            .iter()
            .zip(&state.devices)
            .map(|(slot, counters)| DeviceView {
                label: slot.label.clone(),
                source: source_name(slot.source).to_owned(),
                connected: views.connected(slot),
                readings: counters.readings,
                last_reading_age_seconds: age(counters.last_reading),
                address: counters.last_address.clone(),
                last_reading: counters.last_value.clone(),
            })
            .collect();
        let (healthy, failing) = health(&state.tasks, state.stopping);
        let sync = self.clock.sync_state();
        let mut snapshot = Snapshot {
            gateway_id: self.options.gateway_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            now_unix,
            uptime_seconds: self.started.elapsed().as_secs(),
            healthy,
            failing,
            warnings: Vec::new(),
            tasks: state.tasks.clone(),
            clock: ClockView {
                synchronized: sync.is_synchronized(),
                state: match sync {
                    SyncState::Synchronized => "synchronized".into(),
                    SyncState::Unsynchronized => "unsynchronized".into(),
                    SyncState::Unknown(why) => format!("unknown: {why}"),
                },
            },
            devices,
            readings: {
                let mut counts: Vec<ReadingCount> = state
                    .readings
                    .iter()
                    .map(|((source, kind), count)| ReadingCount {
                        source: source_name(*source).to_owned(),
                        kind: kind_name(*kind),
                        count: *count,
                    })
                    .collect();
                counts.sort_by(|a, b| (&a.source, &a.kind).cmp(&(&b.source, &b.kind)));
                counts
            },
            mapping_failures: {
                let mut counts: Vec<SourceCount> = state
                    .mapping_failures
                    .iter()
                    .map(|(source, count)| SourceCount {
                        source: source_name(*source).to_owned(),
                        count: *count,
                    })
                    .collect();
                counts.sort_by(|a, b| a.source.cmp(&b.source));
                counts
            },
            queue: views.queue,
            upload: UploadView {
                configured: self.options.upload_configured,
                state: views
                    .upload
                    .as_ref()
                    .map(|u| upload_state_name(&u.state).to_owned()),
                attempts: state.upload.attempts,
                successes: state.upload.successes,
                retries: state.upload.retries,
                dead_letters: state.upload.dead_letters,
                bundles_split: state.upload.bundles_split,
                consecutive_failures: views.upload.as_ref().map_or(0, |u| u.consecutive_failures),
                last_success_age_seconds: age(state.upload.last_success),
                last_error: views.upload.as_ref().and_then(|u| u.last_error.clone()),
                recent: state.recent_uploads.iter().rev().cloned().collect(),
            },
            token: TokenView {
                refreshes: state.token.refreshes,
                failures: state.token.failures,
                valid_for_seconds: state
                    .token
                    .valid_until
                    .map(|until| until.duration_since(now).unwrap_or_default().as_secs()),
            },
            recent_errors: state.recent_errors.iter().rev().cloned().collect(),
            history: state.history.series(now_unix),
            show_readings: self.options.show_readings,
        };
        snapshot.warnings = warnings(&snapshot, views.upload.as_ref());
        snapshot
    }

    fn read_views(&self) -> LiveViews {
        let views = self.views.lock();
        LiveViews {
            ble: views.ble.as_ref().map(StatusHandle::snapshot),
            serial: views.serial.as_ref().map(|rx| rx.borrow().clone()),
            mqtt_connected: views.mqtt.as_ref().map(|rx| rx.borrow().connected),
            upload: views.upload.as_ref().map(|rx| rx.borrow().clone()),
            queue: views.queue.as_ref().map(|q| match q.stats() {
                Ok(stats) => QueueView {
                    depth: stats.depth,
                    delayed: stats.delayed,
                    bytes: stats.bytes,
                    oldest_age_seconds: stats.oldest_age.map(|a| a.as_secs_f64()),
                    dead_letters: stats.dead_letters,
                    quarantined: stats.quarantined,
                    full: stats.full,
                },
                Err(err) => QueueView {
                    full: Some(format!("stats unavailable: {err}")),
                    ..QueueView::default()
                },
            }),
        }
    }

    fn count(&self, readings: &[Reading], rejected: bool) {
        let now = self.clock.now();
        let mut state = self.state.lock();
        for reading in readings {
            let source = reading.device.source;
            *state.readings.entry((source, reading.kind)).or_default() += 1;
            if rejected {
                *state.mapping_failures.entry(source).or_default() += 1;
                continue;
            }
            if let Some(index) = self.options.devices.iter().position(|d| d.matches(reading))
                && let Some(device) = state.devices.get_mut(index)
            {
                device.readings += 1;
                device.last_reading = Some(now);
                if self.options.show_readings {
                    device.last_address = Some(reading.device.address.clone());
                    device.last_value = Some(reading_text(reading));
                }
            }
        }
        if !rejected {
            state
                .history
                .add_readings(unix_seconds(now), readings.len() as u64);
        } else {
            let what = format!("{} reading(s) could not be mapped to FHIR", readings.len());
            push_error(&mut state, now, "mapping", &what);
        }
    }
}

impl IngestObserver for Telemetry {
    fn stored(&self, readings: &[Reading]) {
        self.count(readings, false);
    }

    fn rejected(&self, readings: &[Reading], _reason: &str) {
        // The reason may quote a value: it is not kept (the ingest stage logs it at debug).
        self.count(readings, true);
    }
}

struct LiveViews {
    ble: Option<crate::sources::ble::source::BleStatus>,
    serial: Option<SerialStatus>,
    mqtt_connected: Option<bool>,
    upload: Option<UploadStatus>,
    queue: Option<QueueView>,
}

impl LiveViews {
    fn connected(&self, slot: &DeviceSlot) -> Option<bool> {
        match &slot.matcher {
            Matcher::Ble(address) => self
                .ble
                .as_ref()
                .map(|ble| ble.devices.get(address).is_some_and(|d| d.connected)),
            Matcher::Serial { index, .. } => self
                .serial
                .as_ref()
                .and_then(|ports| ports.get(*index))
                .map(|port| port.state == PortState::Connected),
            // MQTT devices reach the hub through the broker: connected while it is.
            Matcher::Mqtt(_) => self.mqtt_connected,
            Matcher::Unlisted => None,
        }
    }
}

/// `kind value unit` (panels: components joined by '/'), for `show_readings` only.
fn reading_text(reading: &Reading) -> String {
    use crate::reading::{MeasuredValue, Quantity};
    fn number(q: &Quantity) -> String {
        match q.value {
            MeasuredValue::Number(d) => d.to_string(),
            MeasuredValue::NotANumber => "NaN".into(),
            MeasuredValue::NotAtThisResolution => "NRes".into(),
            MeasuredValue::PositiveInfinity => "+INF".into(),
            MeasuredValue::NegativeInfinity => "-INF".into(),
        }
    }
    let (value, unit) = match &reading.value {
        Some(q) => (number(q), q.ucum.clone()),
        None => (
            reading
                .components
                .iter()
                .map(|c| number(&c.quantity))
                .collect::<Vec<_>>()
                .join("/"),
            reading
                .components
                .first()
                .map(|c| c.quantity.ucum.clone())
                .unwrap_or_default(),
        ),
    };
    format!("{} {value} {unit}", kind_name(reading.kind))
        .trim()
        .to_owned()
}

fn push_recent<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() == RECENT {
        list.pop_front();
    }
    list.push_back(item);
}

fn push_error(state: &mut State, at: SystemTime, part: &str, message: &str) {
    push_recent(
        &mut state.recent_errors,
        ErrorEvent {
            at_unix: unix_seconds(at),
            part: part.to_owned(),
            message: message.to_owned(),
        },
    );
}

fn upload_state_name(state: &UploadState) -> &'static str {
    match state {
        UploadState::Idle => "idle",
        UploadState::Uploading => "uploading",
        UploadState::BackingOff => "backing_off",
        UploadState::NeedsConfiguration => "needs_configuration",
        UploadState::WaitingForClock => "waiting_for_clock",
    }
}

#[cfg(test)]
pub(crate) mod tests;
