//! The ingest stage: readings from every source → FHIR upload units → durable queue, and the
//! answer back to each source (Ok only once durable).
//!
//! Submissions that arrive while an append is being made durable are gathered into the next
//! append, so the queue's fsync cost is shared (group commit at the pipeline level too).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::queue::DurableQueue;
use crate::reading::Reading;
use crate::sources::{IngestError, Submission};

/// Most submissions gathered into one append.
const MAX_SUBMISSIONS_PER_APPEND: usize = 256;

/// Turns one reading into the queue payload (the compact upload unit). Pure; an error is
/// permanent for that reading.
pub type MapFn = dyn Fn(&Reading) -> Result<Vec<u8>, String> + Send + Sync;

/// What the ingest stage did, for the demo summary and telemetry.
pub trait IngestObserver: Send + Sync {
    fn stored(&self, readings: &[Reading]);
    fn rejected(&self, readings: &[Reading], reason: &str);
}

/// Tells several observers (telemetry and the demo's summary).
pub struct Observers(pub Vec<Arc<dyn IngestObserver>>);

impl IngestObserver for Observers {
    fn stored(&self, readings: &[Reading]) {
        for observer in &self.0 {
            observer.stored(readings);
        }
    }
    fn rejected(&self, readings: &[Reading], reason: &str) {
        for observer in &self.0 {
            observer.rejected(readings, reason);
        }
    }
}

/// Observer that records nothing.
#[derive(Debug, Default)]
pub struct NoObserver;

impl IngestObserver for NoObserver {
    fn stored(&self, _: &[Reading]) {}
    fn rejected(&self, _: &[Reading], _: &str) {}
}

pub struct Ingest {
    pub submissions: mpsc::Receiver<Submission>,
    pub queue: Arc<dyn DurableQueue>,
    pub map: Arc<MapFn>,
    pub observer: Arc<dyn IngestObserver>,
}

impl Ingest {
    /// Runs until every source's sink is dropped (the channel closes), answering every
    /// submission it took: nothing a source waits on is left unanswered at shutdown.
    pub async fn run(mut self) {
        let mut batch = Vec::new();
        while let Some(first) = self.submissions.recv().await {
            batch.push(first);
            while batch.len() < MAX_SUBMISSIONS_PER_APPEND {
                match self.submissions.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.store(std::mem::take(&mut batch)).await;
        }
        tracing::debug!("ingest stage finished: every source has stopped");
    }

    async fn store(&self, batch: Vec<Submission>) {
        let mut payloads = Vec::new();
        let mut accepted = Vec::new();
        for submission in batch {
            match self.map_all(&submission.readings) {
                Ok(mapped) => {
                    payloads.extend(mapped);
                    accepted.push(submission);
                }
                Err(reason) => {
                    tracing::warn!(
                        readings = submission.readings.len(),
                        "reading rejected: it cannot be mapped to FHIR"
                    );
                    tracing::debug!(%reason, "mapping failure detail");
                    self.observer.rejected(&submission.readings, &reason);
                    let _ = submission.done.send(Err(IngestError::Rejected(reason)));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let result = if payloads.is_empty() {
            Ok(Vec::new())
        } else {
            self.queue.append(payloads).await
        };
        match result {
            Ok(_) => {
                for submission in accepted {
                    self.observer.stored(&submission.readings);
                    let _ = submission.done.send(Ok(()));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, submissions = accepted.len(), "readings not stored; sources will not acknowledge");
                let answer: IngestError = err.into();
                for submission in accepted {
                    let _ = submission.done.send(Err(answer.clone()));
                }
            }
        }
    }

    /// All readings of one submission map, or the submission is rejected as a whole (a source
    /// acknowledges per submission, so it must not be half stored).
    fn map_all(&self, readings: &[Reading]) -> Result<Vec<Vec<u8>>, String> {
        readings.iter().map(|reading| (self.map)(reading)).collect()
    }
}

#[cfg(test)]
mod tests;
