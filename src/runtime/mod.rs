//! Runtime: builds components from `Config`, spawns every task, wires the bounded channels,
//! shuts down in order, and feeds systemd's watchdog.
//!
//! | file | owns |
//! |---|---|
//! | [`build`] | hardware seams, the mapper, one source starter per configured adapter, the uploader |
//! | [`confirm`] | server confirmations → the BLE source's persisted stored-record progress |
//! | [`pipeline`] | spawning, supervision, the watchdog, ordered shutdown |
//! | [`ingest`] | readings → upload units → durable queue, answering each source |
//! | [`notify`] | sd_notify (READY, WATCHDOG, STOPPING) |
//! | [`shutdown`] | the named shutdown trigger and listeners, termination signals |
//! | [`observe`] | telemetry and the status endpoint: built before the run, served as tasks |

pub mod build;
pub mod confirm;
pub mod ingest;
pub mod notify;
pub mod observe;
pub mod pipeline;
pub mod shutdown;
#[cfg(test)]
pub(crate) mod testing;

use std::future::Future;
use std::sync::Arc;

pub use build::{BleHardware, Hardware};
pub use observe::{Observability, observability};
pub use pipeline::{Pipeline, RunOutcome, StopReason};
pub use shutdown::{Shutdown, ShutdownTrigger, shutdown_pair};

use crate::config::Config;
use crate::queue::{DurableQueue, QueueError, SledQueue};
use ingest::IngestObserver;
use notify::Notifier;

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The state directory's queue cannot be opened (in use, unreadable, corrupt).
    #[error("cannot open the queue in {dir}: {source}")]
    Queue {
        dir: String,
        #[source]
        source: QueueError,
    },
    /// The upload side cannot be built (private key, CA or client certificate files).
    #[error("upload configuration: {0}")]
    Upload(#[from] crate::upload::build::UploadBuildError),
    /// The BLE stored-record progress directory cannot be created or read.
    #[error("{0}")]
    Progress(#[from] crate::sources::ble::progress::ProgressError),
    /// A pipeline task ended on its own; the process should exit non-zero so systemd restarts it.
    #[error("pipeline task `{0}` ended unexpectedly")]
    TaskEnded(String),
    /// The status endpoint cannot listen or read its token.
    #[error("status endpoint: {0}")]
    Status(#[from] crate::status::StatusError),
}

/// Opens the durable queue in the configured state directory.
pub fn open_queue(config: &Config) -> Result<Arc<SledQueue>, RuntimeError> {
    SledQueue::open(&config.gateway.state_dir, &config.queue)
        .map(Arc::new)
        .map_err(|source| RuntimeError::Queue {
            dir: config.gateway.state_dir.display().to_string(),
            source,
        })
}

/// Runs the whole gateway until `stop` resolves (a signal, the end of a demo) or a task dies.
/// `observer` is told about stored/rejected readings besides telemetry (the demo's summary).
pub async fn run(
    config: &Config,
    hardware: Hardware,
    queue: Arc<SledQueue>,
    observer: Arc<dyn IngestObserver>,
    observability: Observability,
    stop: impl Future<Output = String>,
) -> Result<RunOutcome, RuntimeError> {
    let notifier = Notifier::from_env();
    let sync = hardware.clock.sync_state();
    if config.clock.assume_synchronized {
        tracing::warn!(
            "clock.assume_synchronized is set: the clock is trusted without NTP (test rigs only)"
        );
    } else if !sync.is_synchronized() {
        tracing::warn!(state = ?sync, "system clock not synchronised yet: no token is signed until it is");
    }
    let ble_progress = build::ble_progress(config)?;
    let telemetry = observability.telemetry.clone();
    telemetry.attach_queue(queue.clone() as Arc<dyn DurableQueue>);
    let uploader = match &config.upload {
        Some(upload) => Some(uploader_starter(
            upload,
            queue.clone(),
            &hardware,
            ble_progress.clone(),
            &telemetry,
        )?),
        None => {
            tracing::warn!("no [upload] section: readings are queued but not uploaded");
            None
        }
    };
    let (services, health) = observability.services();
    let pipeline = Pipeline {
        queue: queue.clone() as Arc<dyn DurableQueue>,
        map: build::mapper(config),
        observer: Arc::new(ingest::Observers(vec![
            telemetry.clone() as Arc<dyn IngestObserver>,
            observer,
        ])),
        sources: build::sources(config, &hardware, ble_progress, &telemetry, health),
        uploader,
        services,
        telemetry: Some(telemetry),
    };
    let outcome = pipeline.run(stop, &notifier).await;
    match &outcome.reason {
        StopReason::TaskEnded(task) => Err(RuntimeError::TaskEnded(task.clone())),
        StopReason::Requested(_) => Ok(outcome),
    }
}

fn uploader_starter(
    upload: &crate::upload::UploadConfig,
    queue: Arc<SledQueue>,
    hardware: &Hardware,
    ble_progress: Option<Arc<crate::sources::ble::FileProgressStore>>,
    telemetry: &Arc<crate::telemetry::Telemetry>,
) -> Result<pipeline::UploaderStarter, RuntimeError> {
    let mut uploader = crate::upload::build::uploader(upload, queue, hardware.clock.clone())?
        .with_telemetry(telemetry.clone());
    if let Some(store) = ble_progress {
        uploader = uploader.with_observer(Arc::new(confirm::BleProgressConfirmer::new(store)));
    }
    telemetry.attach_upload(uploader.status());
    Ok(Box::new(move |shutdown: Shutdown| {
        Box::pin(async move {
            if let Err(err) = uploader.run(shutdown.wait()).await {
                tracing::error!(error = %err, "uploader stopped");
            }
        })
    }))
}
