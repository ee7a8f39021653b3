//! The Prometheus text exposition format (version 0.0.4) of a [`Snapshot`].
//!
//! Every family has `# HELP` and `# TYPE` before its samples; counters end in `_total`; label
//! values are escaped (`\\`, `\"`, `\n`). Devices are labelled as telemetry names them (never by
//! address, see [`super`]).

use std::fmt::Write;

use super::metrics::Snapshot;

/// Content-Type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }
}

fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out }
}

/// A family with one unlabelled sample (most gauges and counters here).
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    family(out, name, kind, help).sample(name, &[], value);
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

/// Renders `snapshot` in the text exposition format.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let o = &mut out;

    family(
        o,
        "vectorcare_build_info",
        "gauge",
        "Version of the running gateway.",
    )
    .sample(
        "vectorcare_build_info",
        &[("version", &snapshot.version)],
        1.0,
    );
    family(
        o,
        "vectorcare_uptime_seconds",
        "gauge",
        "Seconds since the gateway started.",
    )
    .sample(
        "vectorcare_uptime_seconds",
        &[],
        snapshot.uptime_seconds as f64,
    );
    single(
        o,
        "vectorcare_healthy",
        "gauge",
        "1 when every pipeline task is alive (what /healthz answers).",
        flag(snapshot.healthy),
    );
    let mut f = family(
        o,
        "vectorcare_task_up",
        "gauge",
        "1 while the pipeline task runs.",
    );
    for task in &snapshot.tasks {
        f.sample(
            "vectorcare_task_up",
            &[("task", &task.name)],
            flag(task.alive),
        );
    }
    family(
        o,
        "vectorcare_clock_synchronized",
        "gauge",
        "1 when the system clock is synchronised (NTP).",
    )
    .sample(
        "vectorcare_clock_synchronized",
        &[],
        flag(snapshot.clock.synchronized),
    );

    let mut f = family(
        o,
        "vectorcare_readings_received_total",
        "counter",
        "Readings handed to the pipeline, per source and kind.",
    );
    for r in &snapshot.readings {
        f.sample(
            "vectorcare_readings_received_total",
            &[("source", &r.source), ("kind", &r.kind)],
            r.count as f64,
        );
    }
    let mut f = family(
        o,
        "vectorcare_mapping_failures_total",
        "counter",
        "Readings that could not be mapped to FHIR, per source.",
    );
    for r in &snapshot.mapping_failures {
        f.sample(
            "vectorcare_mapping_failures_total",
            &[("source", &r.source)],
            r.count as f64,
        );
    }

    if let Some(queue) = &snapshot.queue {
        single(
            o,
            "vectorcare_queue_depth",
            "gauge",
            "Readings waiting for upload.",
            queue.depth as f64,
        );
        single(
            o,
            "vectorcare_queue_delayed",
            "gauge",
            "Waiting readings delayed by a retry backoff.",
            queue.delayed as f64,
        );
        single(
            o,
            "vectorcare_queue_bytes",
            "gauge",
            "Bytes of readings waiting for upload.",
            queue.bytes as f64,
        );
        family(
            o,
            "vectorcare_queue_oldest_age_seconds",
            "gauge",
            "Age of the oldest waiting reading (0 when empty).",
        )
        .sample(
            "vectorcare_queue_oldest_age_seconds",
            &[],
            queue.oldest_age_seconds.unwrap_or(0.0),
        );
        family(
            o,
            "vectorcare_queue_dead_letters",
            "gauge",
            "Readings the server refused for good, kept for inspection.",
        )
        .sample(
            "vectorcare_queue_dead_letters",
            &[],
            queue.dead_letters as f64,
        );
        single(
            o,
            "vectorcare_queue_full",
            "gauge",
            "1 while the queue refuses new readings.",
            flag(queue.full.is_some()),
        );
    }

    let u = &snapshot.upload;
    single(
        o,
        "vectorcare_upload_attempts_total",
        "counter",
        "FHIR Bundles sent.",
        u.attempts as f64,
    );
    single(
        o,
        "vectorcare_upload_successes_total",
        "counter",
        "Readings the FHIR server stored.",
        u.successes as f64,
    );
    single(
        o,
        "vectorcare_upload_retries_total",
        "counter",
        "Readings put back to be sent again.",
        u.retries as f64,
    );
    family(
        o,
        "vectorcare_upload_dead_letters_total",
        "counter",
        "Readings the FHIR server refused for good.",
    )
    .sample(
        "vectorcare_upload_dead_letters_total",
        &[],
        u.dead_letters as f64,
    );
    single(
        o,
        "vectorcare_upload_bundles_split_total",
        "counter",
        "Multi-record Bundles the FHIR server refused as a whole, then sent one record each.",
        u.bundles_split as f64,
    );
    family(
        o,
        "vectorcare_upload_consecutive_failures",
        "gauge",
        "Failed upload attempts since the last success.",
    )
    .sample(
        "vectorcare_upload_consecutive_failures",
        &[],
        u.consecutive_failures as f64,
    );
    if let Some(age) = u.last_success_age_seconds {
        family(
            o,
            "vectorcare_upload_last_success_age_seconds",
            "gauge",
            "Seconds since the server last stored a reading.",
        )
        .sample(
            "vectorcare_upload_last_success_age_seconds",
            &[],
            age as f64,
        );
    }

    let t = &snapshot.token;
    single(
        o,
        "vectorcare_token_refreshes_total",
        "counter",
        "Access tokens obtained.",
        t.refreshes as f64,
    );
    single(
        o,
        "vectorcare_token_failures_total",
        "counter",
        "Failed access token requests.",
        t.failures as f64,
    );
    if let Some(valid) = t.valid_for_seconds {
        single(
            o,
            "vectorcare_token_valid_seconds",
            "gauge",
            "Seconds the current access token stays valid.",
            valid as f64,
        );
    }

    let mut f = family(
        o,
        "vectorcare_device_connected",
        "gauge",
        "1 while the device (or its broker) is connected.",
    );
    for d in &snapshot.devices {
        if let Some(connected) = d.connected {
            f.sample(
                "vectorcare_device_connected",
                &[("device", &d.label), ("source", &d.source)],
                flag(connected),
            );
        }
    }
    let mut f = family(
        o,
        "vectorcare_device_readings_total",
        "counter",
        "Readings stored per configured device.",
    );
    for d in &snapshot.devices {
        f.sample(
            "vectorcare_device_readings_total",
            &[("device", &d.label), ("source", &d.source)],
            d.readings as f64,
        );
    }
    let mut f = family(
        o,
        "vectorcare_device_last_reading_age_seconds",
        "gauge",
        "Seconds since the device's last reading.",
    );
    for d in &snapshot.devices {
        if let Some(age) = d.last_reading_age_seconds {
            f.sample(
                "vectorcare_device_last_reading_age_seconds",
                &[("device", &d.label), ("source", &d.source)],
                age as f64,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests;
