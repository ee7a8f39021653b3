//! Test helper: a `ReadingSink` whose far end answers every submission with a scripted result
//! and forwards accepted readings to the test.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{IngestError, ReadingSink};
use crate::reading::Reading;

/// What the fake queue answers.
#[derive(Debug, Clone)]
pub enum Answer {
    Store,
    Refuse(IngestError),
    /// Never answer (a gateway that dies before the reading is durable).
    Hang,
}

#[derive(Debug, Clone)]
pub struct Script(Arc<Mutex<Answer>>);

impl Script {
    pub fn set(&self, answer: Answer) {
        *self.0.lock().expect("script lock") = answer;
    }
}

/// A sink, the script controlling its answers, and the stream of stored readings.
pub fn sink() -> (ReadingSink, Script, mpsc::UnboundedReceiver<Reading>) {
    let (sink, mut rx) = ReadingSink::channel(16);
    let script = Script(Arc::new(Mutex::new(Answer::Store)));
    let (stored_tx, stored_rx) = mpsc::unbounded_channel();
    let answers = script.clone();
    tokio::spawn(async move {
        let mut hung = Vec::new();
        while let Some(sub) = rx.recv().await {
            let answer = answers.0.lock().expect("script lock").clone();
            match answer {
                Answer::Store => {
                    for r in sub.readings {
                        let _ = stored_tx.send(r);
                    }
                    let _ = sub.done.send(Ok(()));
                }
                Answer::Refuse(e) => {
                    let _ = sub.done.send(Err(e));
                }
                Answer::Hang => hung.push(sub.done),
            }
        }
    });
    (sink, script, stored_rx)
}

/// Receives the next stored reading or fails after `secs`.
pub async fn next(rx: &mut mpsc::UnboundedReceiver<Reading>, secs: u64) -> Reading {
    tokio::time::timeout(std::time::Duration::from_secs(secs), rx.recv())
        .await
        .expect("a reading arrives in time")
        .expect("sink open")
}
