//! `queue` command: inspect and repair the durable queue while the daemon is stopped.
//!
//! Every subcommand takes the data directory's lock; if the daemon holds it the command says so
//! and exits with 69 (unavailable). Listings show metadata only; `show` prints one payload
//! (an upload unit as JSON, whatever its queued format).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::{Subcommand, ValueEnum};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Failure, Outcome};
use crate::exit;
use crate::fhir::unit_format::payload_as_json;
use crate::queue::{
    DeadLetter, DurableQueue, Entry, QueueConfig, QueueError, QueuedRecord, RecordId, SledQueue,
};

/// Default data directory of the daemon.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/vectorcare-gateway";

/// Arguments of `queue`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data directory holding the queue.
    #[arg(long, global = true, default_value = DEFAULT_DATA_DIR, env = "VECTORCARE_DATA_DIR")]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: QueueCommand,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Depth, oldest age, bytes on disk, dead letters, quarantined records.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// List waiting records (or dead letters) without their payloads.
    List {
        #[arg(long)]
        dead: bool,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Print one record (any state) with its payload.
    Show { id: u64 },
    /// Move dead letters back to the queue.
    Requeue {
        /// Required: requeue works on dead letters.
        #[arg(long, required = true)]
        dead: bool,
        /// Requeue every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// The dead letter to requeue.
        #[arg(required_unless_present = "all")]
        id: Option<u64>,
    },
    /// Delete dead letters.
    Purge {
        #[arg(long, required = true)]
        dead: bool,
    },
    /// Write every waiting record (or dead letter) to FILE.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Export dead letters instead of waiting records.
        #[arg(long)]
        dead: bool,
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One payload per line.
    Ndjson,
    /// One FHIR Bundle (type collection) with every JSON-object payload as an entry.
    Bundle,
}

fn fail(err: QueueError) -> Failure {
    let code = match err {
        QueueError::Locked { .. } | QueueError::Io(_) | QueueError::Full(_) => exit::UNAVAILABLE,
        QueueError::NotFound(_) | QueueError::Corrupt(_) | QueueError::TooLarge { .. } => {
            exit::DATA_ERR
        }
        QueueError::Closed => exit::SOFTWARE,
    };
    Failure::new(code, err.to_string())
}

fn open(dir: &Path) -> Result<SledQueue, Failure> {
    // `segments/` since issue #9; `queue/` is the single database of older installations.
    if !dir.join("segments").is_dir() && !dir.join("queue").is_dir() {
        return Err(Failure::new(
            exit::UNAVAILABLE,
            format!("no queue in {} (wrong --data-dir?)", dir.display()),
        ));
    }
    SledQueue::open(dir, &QueueConfig::default()).map_err(fail)
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

pub fn execute(args: Args) -> Outcome {
    let q = open(&args.data_dir)?;
    let mut out = std::io::stdout().lock();
    let io = |e: std::io::Error| Failure::new(exit::UNAVAILABLE, format!("write: {e}"));
    match args.command {
        QueueCommand::Stats { json } => {
            let s = q.stats().map_err(fail)?;
            if json {
                let value = serde_json::json!({
                    "depth": s.depth,
                    "delayed": s.delayed,
                    "bytes": s.bytes,
                    "oldest_age_seconds": s.oldest_age.map(|d| d.as_secs()),
                    "bytes_on_disk": s.bytes_on_disk,
                    "dead_letters": s.dead_letters,
                    "dead_letter_bytes": s.dead_letter_bytes,
                    "quarantined": s.quarantined,
                    "next_id": s.next_id,
                    "full": s.full,
                });
                writeln!(out, "{value}").map_err(io)?;
            } else {
                let age = s
                    .oldest_age
                    .map_or("-".into(), |d| format!("{}s", d.as_secs()));
                writeln!(out, "waiting:       {} ({} bytes)", s.depth, s.bytes).map_err(io)?;
                writeln!(out, "oldest age:    {age}").map_err(io)?;
                writeln!(out, "dead letters:  {}", s.dead_letters).map_err(io)?;
                writeln!(out, "quarantined:   {}", s.quarantined).map_err(io)?;
                writeln!(out, "bytes on disk: {}", s.bytes_on_disk).map_err(io)?;
                writeln!(out, "next id:       {}", s.next_id).map_err(io)?;
                if let Some(full) = s.full {
                    writeln!(out, "REFUSING APPENDS: {full}").map_err(io)?;
                }
            }
        }
        QueueCommand::List { dead: false, limit } => {
            writeln!(
                out,
                "{:>10} {:>8} {:>7}  enqueued_at",
                "id", "attempts", "bytes"
            )
            .map_err(io)?;
            for r in q.list_waiting(RecordId(0), limit).map_err(fail)? {
                writeln!(out, "{}", waiting_line(&r)).map_err(io)?;
            }
        }
        QueueCommand::List { dead: true, limit } => {
            writeln!(out, "{:>10} {:>8}  dead_at  reason", "id", "attempts").map_err(io)?;
            for d in q.list_dead(limit).map_err(fail)? {
                writeln!(out, "{}", dead_line(&d)).map_err(io)?;
            }
        }
        QueueCommand::Show { id } => match q.get(RecordId(id)).map_err(fail)? {
            Entry::Waiting(r) => {
                writeln!(out, "state: waiting\n{}", waiting_line(&r)).map_err(io)?;
                writeln!(
                    out,
                    "{}",
                    String::from_utf8_lossy(&payload_as_json(&r.payload))
                )
                .map_err(io)?;
            }
            Entry::Dead(d) => {
                writeln!(out, "state: dead letter\n{}", dead_line(&d)).map_err(io)?;
                writeln!(out, "reason: {}", d.reason).map_err(io)?;
                writeln!(
                    out,
                    "{}",
                    String::from_utf8_lossy(&payload_as_json(&d.payload))
                )
                .map_err(io)?;
            }
            Entry::Quarantined(raw) => {
                writeln!(
                    out,
                    "state: quarantined (failed its checksum), {} raw bytes",
                    raw.len()
                )
                .map_err(io)?;
            }
        },
        QueueCommand::Requeue { all, id, .. } => {
            let which = if all { None } else { id.map(RecordId) };
            let moved = q.requeue_dead(which).map_err(fail)?;
            writeln!(out, "requeued {moved} dead letter(s)").map_err(io)?;
        }
        QueueCommand::Purge { .. } => {
            let purged = q.purge_dead().map_err(fail)?;
            writeln!(out, "purged {purged} dead letter(s)").map_err(io)?;
        }
        QueueCommand::Export { format, dead, file } => {
            let written = super::queue_export::export(&q, format, dead, &file)?;
            writeln!(out, "exported {written} record(s) to {}", file.display()).map_err(io)?;
        }
    }
    q.close().map_err(fail)
}

fn waiting_line(r: &QueuedRecord) -> String {
    let retry = r
        .next_attempt_at
        .map(|t| format!("  next attempt after {}", rfc3339(t)))
        .unwrap_or_default();
    format!(
        "{:>10} {:>8} {:>7}  {}{retry}",
        r.id.0,
        r.attempts,
        r.payload.len(),
        rfc3339(r.enqueued_at)
    )
}

fn dead_line(d: &DeadLetter) -> String {
    let reason: String = d.reason.chars().take(60).collect();
    format!(
        "{:>10} {:>8}  {}  {}",
        d.id.0,
        d.attempts,
        rfc3339(d.dead_at),
        reason.replace('\n', " ")
    )
}

/// Progress on stderr: a redrawn bar on a terminal, nothing otherwise.
pub(super) struct Progress {
    total: u64,
    done: u64,
    shown_pct: u64,
    tty: bool,
}

impl Progress {
    pub fn new(total: u64) -> Self {
        Self {
            total: total.max(1),
            done: 0,
            shown_pct: u64::MAX,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn advance(&mut self, n: u64) {
        self.done += n;
        let pct = (self.done * 100 / self.total).min(100);
        if self.tty && pct != self.shown_pct {
            self.shown_pct = pct;
            let filled = (pct / 4) as usize;
            eprint!(
                "\r[{}{}] {pct:>3}% {}/{}",
                "#".repeat(filled),
                " ".repeat(25 - filled),
                self.done,
                self.total
            );
        }
    }

    pub fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
