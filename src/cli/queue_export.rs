//! `queue export`: waiting records or dead letters to NDJSON or one FHIR Bundle.

use std::io::{BufWriter, Write};
use std::path::Path;

use super::Failure;
use super::queue::{ExportFormat, Progress};
use crate::exit;
use crate::fhir::unit_format::payload_as_json;
use crate::queue::{DurableQueue, RecordId, SledQueue};

const PAGE: usize = 1000;

/// Writes the records; returns how many were written.
pub fn export(
    q: &SledQueue,
    format: ExportFormat,
    dead: bool,
    file: &Path,
) -> Result<u64, Failure> {
    let io =
        |e: std::io::Error| Failure::new(exit::UNAVAILABLE, format!("{}: {e}", file.display()));
    let queue_err = |e: crate::queue::QueueError| Failure::new(exit::UNAVAILABLE, e.to_string());
    let stats = q.stats().map_err(queue_err)?;
    let total = if dead {
        stats.dead_letters
    } else {
        stats.depth
    };
    let mut progress = Progress::new(total);
    let mut w = BufWriter::new(std::fs::File::create(file).map_err(io)?);
    let mut written = 0u64;
    let mut skipped = 0u64;
    if format == ExportFormat::Bundle {
        w.write_all(br#"{"resourceType":"Bundle","type":"collection","entry":["#)
            .map_err(io)?;
    }
    let mut emit = |payload: &[u8], w: &mut BufWriter<std::fs::File>| -> Result<(), Failure> {
        match format {
            ExportFormat::Ndjson => {
                if payload.contains(&b'\n') {
                    skipped += 1;
                    return Ok(());
                }
                w.write_all(payload).map_err(io)?;
                w.write_all(b"\n").map_err(io)?;
            }
            ExportFormat::Bundle => {
                let is_object = serde_json::from_slice::<serde_json::Value>(payload)
                    .is_ok_and(|v| v.is_object());
                if !is_object {
                    skipped += 1;
                    return Ok(());
                }
                if written > 0 {
                    w.write_all(b",").map_err(io)?;
                }
                w.write_all(br#"{"resource":"#).map_err(io)?;
                w.write_all(payload).map_err(io)?;
                w.write_all(b"}").map_err(io)?;
            }
        }
        written += 1;
        Ok(())
    };
    if dead {
        // Dead letters are few (they need an operator); one listing is enough.
        let all = q.list_dead(usize::MAX).map_err(queue_err)?;
        for d in &all {
            emit(&payload_as_json(&d.payload), &mut w)?;
            progress.advance(1);
        }
    } else {
        let mut from = RecordId(0);
        loop {
            let page = q.list_waiting(from, PAGE).map_err(queue_err)?;
            let Some(last) = page.last() else { break };
            from = RecordId(last.id.0 + 1);
            for r in &page {
                emit(&payload_as_json(&r.payload), &mut w)?;
            }
            progress.advance(page.len() as u64);
        }
    }
    if format == ExportFormat::Bundle {
        w.write_all(b"]}\n").map_err(io)?;
    }
    w.flush().map_err(io)?;
    progress.finish();
    if skipped > 0 {
        eprintln!("skipped {skipped} record(s) that are not single-line JSON objects");
    }
    Ok(written)
}
