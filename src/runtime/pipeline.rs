//! The running pipeline: spawns every task, feeds the watchdog while all of them are alive, and
//! shuts down in data-flow order so nothing a source was told is safe gets lost.
//!
//! ```text
//! source tasks ──ReadingSink──▶ ingest task ──append──▶ durable queue ◀──peek/ack── uploader task
//! ```
//!
//! Shutdown order (the whole sequence is bounded by [`SHUTDOWN_BUDGET`], under systemd's and the
//! issue's 5 s): stop sources → the ingest task stores what they already handed over and ends
//! when the last sink is dropped → stop the uploader (it finishes or abandons its in-flight
//! request; an abandoned bundle stays queued and is resent idempotently) → close the queue.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use super::ingest::{Ingest, IngestObserver, MapFn};
use super::notify::Notifier;
use super::shutdown::{Shutdown, shutdown_pair};
use crate::queue::DurableQueue;
use crate::sources::ReadingSink;
use crate::telemetry::Telemetry;

/// Upper bound of the whole shutdown sequence.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_millis(4500);
/// Bound of the per-source channel: back-pressure reaches sources when ingest is slow.
const SUBMISSION_CHANNEL: usize = 256;

/// Starts a source: gets its sink and its shutdown listener, returns its future.
pub type SourceStarter = Box<dyn FnOnce(ReadingSink, Shutdown) -> BoxFuture<'static, ()> + Send>;
/// Starts the uploader with its shutdown listener.
pub type UploaderStarter = Box<dyn FnOnce(Shutdown) -> BoxFuture<'static, ()> + Send>;
/// Starts a service task (status endpoint, telemetry sampling) with its shutdown listener.
pub type ServiceStarter = Box<dyn FnOnce(Shutdown) -> BoxFuture<'static, ()> + Send>;

/// Everything the runtime built from the configuration, ready to run.
pub struct Pipeline {
    pub queue: Arc<dyn DurableQueue>,
    pub map: Arc<MapFn>,
    pub observer: Arc<dyn IngestObserver>,
    pub sources: Vec<(String, SourceStarter)>,
    pub uploader: Option<UploaderStarter>,
    /// Tasks that watch the pipeline (status endpoint, telemetry sampling): started first,
    /// stopped last, supervised like the others.
    pub services: Vec<(String, ServiceStarter)>,
    /// Told which tasks run and when one ends (`/healthz` answers from it).
    pub telemetry: Option<Arc<Telemetry>>,
}

/// Why the pipeline stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Asked to stop (signal, demo duration over): a clean exit.
    Requested(String),
    /// A task ended on its own: the gateway is broken, let systemd restart it.
    TaskEnded(String),
}

/// How the shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub reason: StopReason,
    /// Tasks that did not finish within the budget and were aborted.
    pub aborted: Vec<String>,
}

struct Running {
    name: String,
    handle: JoinHandle<()>,
}

impl Pipeline {
    /// Runs until `stop` resolves or a task ends unexpectedly, then shuts down in order.
    pub async fn run(self, stop: impl Future<Output = String>, notifier: &Notifier) -> RunOutcome {
        let (sources_trigger, sources_shutdown) = shutdown_pair();
        let (uploader_trigger, uploader_shutdown) = shutdown_pair();
        let (services_trigger, services_shutdown) = shutdown_pair();
        let services: Vec<Running> = self
            .services
            .into_iter()
            .map(|(name, start)| Running {
                handle: tokio::spawn(start(services_shutdown.clone())),
                name,
            })
            .collect();
        let (sink, submissions) = ReadingSink::channel(SUBMISSION_CHANNEL);

        let mut sources: Vec<Running> = self
            .sources
            .into_iter()
            .map(|(name, start)| Running {
                handle: tokio::spawn(start(sink.clone(), sources_shutdown.clone())),
                name,
            })
            .collect();
        // This sink keeps the ingest task alive with zero sources; dropped at shutdown so ingest
        // ends once the sources' sinks are gone too.
        let runtime_sink = sink;
        let ingest = Running {
            name: "ingest".into(),
            handle: tokio::spawn(
                Ingest {
                    submissions,
                    queue: self.queue.clone(),
                    map: self.map,
                    observer: self.observer,
                }
                .run(),
            ),
        };
        let uploader = self.uploader.map(|start| Running {
            name: "uploader".into(),
            handle: tokio::spawn(start(uploader_shutdown)),
        });

        if let Some(telemetry) = &self.telemetry {
            let names = sources
                .iter()
                .chain(std::iter::once(&ingest))
                .chain(uploader.as_ref())
                .chain(&services);
            telemetry.tasks_started(names.map(|task| task.name.clone()));
        }
        notifier.ready();
        tracing::info!(
            sources = sources.len(),
            uploader = uploader.is_some(),
            "gateway running"
        );

        let reason = {
            let watch = watch_tasks(&sources, &ingest, uploader.as_ref(), &services, notifier);
            tokio::select! {
                why = stop => StopReason::Requested(why),
                dead = watch => StopReason::TaskEnded(dead),
            }
        };
        if let Some(telemetry) = &self.telemetry {
            if let StopReason::TaskEnded(task) = &reason {
                telemetry.task_ended(task);
            }
            telemetry.stopping();
        }
        match &reason {
            StopReason::Requested(why) => tracing::info!(reason = %why, "shutting down"),
            StopReason::TaskEnded(task) => {
                tracing::error!(task = %task, "a pipeline task ended unexpectedly; shutting down")
            }
        }
        notifier.stopping();

        let deadline = tokio::time::Instant::now() + SHUTDOWN_BUDGET;
        let mut aborted = Vec::new();
        sources_trigger.trigger();
        for source in sources.drain(..) {
            finish(source, deadline, &mut aborted).await;
        }
        // Sources are gone, so their sinks are dropped and ingest drains and ends.
        drop(runtime_sink);
        finish(ingest, deadline, &mut aborted).await;
        uploader_trigger.trigger();
        if let Some(uploader) = uploader {
            finish(uploader, deadline, &mut aborted).await;
        }
        // Last: the status endpoint answers "shutting down" until the data path is closed.
        services_trigger.trigger();
        for service in services {
            finish(service, deadline, &mut aborted).await;
        }
        if !aborted.is_empty() {
            tracing::warn!(tasks = ?aborted, "tasks aborted at the shutdown deadline");
        }
        RunOutcome { reason, aborted }
    }
}

async fn finish(task: Running, deadline: tokio::time::Instant, aborted: &mut Vec<String>) {
    let abort = task.handle.abort_handle();
    if tokio::time::timeout_at(deadline, task.handle)
        .await
        .is_err()
    {
        abort.abort();
        aborted.push(task.name);
    }
}

/// Resolves with the name of the first task that ended; meanwhile pings the watchdog only while
/// every task is alive (a hung or dead pipeline is then restarted by systemd).
async fn watch_tasks(
    sources: &[Running],
    ingest: &Running,
    uploader: Option<&Running>,
    services: &[Running],
    notifier: &Notifier,
) -> String {
    let interval = notifier
        .watchdog_ping_interval()
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let all = sources
            .iter()
            .chain(std::iter::once(ingest))
            .chain(uploader)
            .chain(services);
        let mut dead = None;
        for task in all {
            if task.handle.is_finished() {
                dead = Some(task.name.clone());
                break;
            }
        }
        match dead {
            Some(name) => return name,
            None => notifier.watchdog(),
        }
    }
}

#[cfg(test)]
mod tests;
