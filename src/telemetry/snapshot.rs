//! The [`Snapshot`]: the whole picture as `/status`, `/metrics`, the page and the `status`
//! command show it, and the rules for "healthy" and for warnings.

use serde::{Deserialize, Serialize};

use super::history::HistorySeries;
use crate::upload::uploader::{UploadState, UploadStatus};

/// The whole picture (`/status`, the page, the `status` command).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub gateway_id: String,
    pub version: String,
    pub now_unix: u64,
    pub uptime_seconds: u64,
    /// Every pipeline task alive (what `/healthz` answers).
    pub healthy: bool,
    /// Why not healthy.
    pub failing: Vec<String>,
    pub warnings: Vec<String>,
    pub tasks: Vec<TaskView>,
    pub clock: ClockView,
    pub devices: Vec<DeviceView>,
    pub readings: Vec<ReadingCount>,
    pub mapping_failures: Vec<SourceCount>,
    pub queue: Option<QueueView>,
    pub upload: UploadView,
    pub token: TokenView,
    pub recent_errors: Vec<ErrorEvent>,
    pub history: HistorySeries,
    pub show_readings: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub name: String,
    pub alive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockView {
    pub synchronized: bool,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceView {
    pub label: String,
    pub source: String,
    /// `None` when the source does not say (not started, unlisted devices).
    pub connected: Option<bool>,
    pub readings: u64,
    pub last_reading_age_seconds: Option<u64>,
    /// Only with `show_readings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Only with `show_readings`: the last reading, e.g. `blood_pressure 120/80 mm[Hg]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reading: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadingCount {
    pub source: String,
    pub kind: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    pub source: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    pub depth: u64,
    pub delayed: u64,
    pub bytes: u64,
    pub oldest_age_seconds: Option<f64>,
    pub dead_letters: u64,
    pub quarantined: u64,
    pub full: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadView {
    pub configured: bool,
    pub state: Option<String>,
    /// Bundles sent.
    pub attempts: u64,
    /// Readings the server stored.
    pub successes: u64,
    /// Readings put back to be sent again.
    pub retries: u64,
    /// Readings the server refused for good.
    pub dead_letters: u64,
    /// Multi-record Bundles refused as a whole and split into one-record Bundles.
    #[serde(default)]
    pub bundles_split: u64,
    pub consecutive_failures: u32,
    pub last_success_age_seconds: Option<u64>,
    pub last_error: Option<String>,
    /// Newest first.
    pub recent: Vec<UploadEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadEvent {
    pub at_unix: u64,
    pub acked: u64,
    pub retried: u64,
    pub dead: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub refreshes: u64,
    pub failures: u64,
    /// Seconds the current token is still valid; `None` before the first one.
    pub valid_for_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    pub at_unix: u64,
    /// Which part: upload, token, mapping.
    pub part: String,
    pub message: String,
}

/// Healthy = the pipeline runs and every one of its tasks is alive (what the watchdog checks).
pub(super) fn health(tasks: &[TaskView], stopping: bool) -> (bool, Vec<String>) {
    let mut failing: Vec<String> = tasks
        .iter()
        .filter(|t| !t.alive)
        .map(|t| format!("task `{}` is not running", t.name))
        .collect();
    if tasks.is_empty() {
        failing.push("the pipeline has not started".into());
    }
    if stopping {
        failing.push("the gateway is shutting down".into());
    }
    (failing.is_empty(), failing)
}

/// Things a person should look at that do not make the gateway unhealthy.
pub(super) fn warnings(snapshot: &Snapshot, upload: Option<&UploadStatus>) -> Vec<String> {
    let mut warnings = Vec::new();
    if !snapshot.clock.synchronized {
        warnings.push("system clock not synchronised: no token is signed until it is".into());
    }
    if !snapshot.upload.configured {
        warnings.push("no [upload] section: readings are queued but not uploaded".into());
    }
    match upload.map(|u| &u.state) {
        Some(UploadState::NeedsConfiguration) => {
            warnings.push("uploads need a configuration fix (keys, registration, scopes)".into())
        }
        Some(UploadState::BackingOff) => {
            warnings.push("the FHIR server is failing; uploads are backing off".into())
        }
        _ => {}
    }
    if upload.is_some_and(|u| u.bundle_size_limited) {
        warnings.push(
            "the FHIR server limits Bundle size: readings go one per request; \
             set upload.max_bundle_entries"
                .into(),
        );
    }
    if let Some(queue) = &snapshot.queue {
        if let Some(full) = &queue.full {
            warnings.push(format!("queue refuses new readings: {full}"));
        }
        if queue.dead_letters > 0 {
            warnings.push(format!(
                "{} dead letter(s): see `vectorcare-gateway queue dead`",
                queue.dead_letters
            ));
        }
    }
    warnings
}
