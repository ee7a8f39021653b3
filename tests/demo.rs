//! The demo as users run it (the binary, a short duration), and the promises it shows:
//! every reading uploaded, graceful shutdown on SIGTERM loses nothing queued, and no health
//! data or identifiers in the logs at info level.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn demo_command(dir: &Path, duration: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vectorcare-gateway"));
    command
        .args(["demo", "--duration", &duration.to_string(), "--data-dir"])
        .arg(dir.join("data"))
        .arg("--out")
        .arg(dir.join("out"))
        .env("VECTORCARE_LOG__FORMAT", "plain")
        .env_remove("VECTORCARE_LOG__LEVEL");
    command
}

/// The number on the summary line that starts with `label`.
fn summary_figure(stdout: &str, label: &str) -> u64 {
    stdout
        .lines()
        .find(|line| line.starts_with(label))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"))
}

fn observation_files(out: &Path) -> Vec<serde_json::Value> {
    let dir = out.join("Observation");
    let mut observations = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("Observation dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        observations.push(serde_json::from_str(&text).expect("JSON"));
    }
    observations
}

#[test]
fn demo_uploads_every_reading_and_logs_no_health_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output: Output = demo_command(dir.path(), 8).output().expect("run demo");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let queued = summary_figure(&stdout, "queued durably");
    let on_server = summary_figure(&stdout, "on the FHIR server");
    assert!(
        queued >= 20,
        "the simulated devices produced readings: {queued}\n{stdout}"
    );
    assert_eq!(
        on_server, queued,
        "every queued reading is one Observation on the server"
    );
    assert_eq!(summary_figure(&stdout, "still queued"), 0);
    assert_eq!(summary_figure(&stdout, "dead letters"), 0);
    for kind in [
        "heart_rate",
        "blood_pressure",
        "body_temperature",
        "oxygen_saturation",
        "body_weight",
        "blood_glucose",
    ] {
        assert!(
            stdout.contains(kind),
            "{kind} missing from the summary:\n{stdout}"
        );
    }
    for source in ["ble:", "serial:", "mqtt:"] {
        assert!(
            stdout.contains(source),
            "no {source} device in the summary:\n{stdout}"
        );
    }
    let observations = observation_files(&dir.path().join("out"));
    // Measurements, plus the PHD status-bits Observations (which point at their measurement).
    let measurements = observations
        .iter()
        .filter(|o| o.get("derivedFrom").is_none())
        .count();
    assert_eq!(measurements as u64, on_server);
    assert_no_phi_in_logs(&stderr, &observations);
}

/// Health data and identifiers that must not appear in info-level logs: patient and device
/// identifiers, Observation identifiers, and every measured value with a decimal point (whole
/// numbers are too common in ordinary log fields — ports, counts — to check this way; their
/// absence is covered by the identifiers and by the log fields being checked by name below).
fn assert_no_phi_in_logs(logs: &str, observations: &[serde_json::Value]) {
    assert!(logs.contains("level=info"), "logs were captured:\n{logs}");
    let mut forbidden: BTreeSet<String> = BTreeSet::new();
    forbidden.insert("demo-patient".into());
    forbidden.insert("C0:FF:EE".into());
    forbidden.insert("c0:ff:ee".into());
    forbidden.insert("0000056661".into());
    forbidden.insert("SIM-0001".into());
    forbidden.insert("ttyDEMO0".into());
    forbidden.insert("cuff-1".into());
    for observation in observations {
        for identifier in observation["identifier"].as_array().into_iter().flatten() {
            if let Some(value) = identifier["value"].as_str() {
                forbidden.insert(value.to_owned());
            }
        }
        let mut values = Vec::new();
        if let Some(v) = observation.pointer("/valueQuantity/value") {
            values.push(v.to_string());
        }
        for component in observation["component"].as_array().into_iter().flatten() {
            if let Some(v) = component.pointer("/valueQuantity/value") {
                values.push(v.to_string());
            }
        }
        forbidden.extend(values.into_iter().filter(|v| v.contains('.')));
    }
    for needle in &forbidden {
        let hit = logs.lines().find(|line| line.contains(needle.as_str()));
        assert!(
            hit.is_none(),
            "`{needle}` appears in an info-level log line: {hit:?}"
        );
    }
    for field in [
        "value=",
        "systolic=",
        "diastolic=",
        "spo2=",
        "patient=",
        "address=",
    ] {
        assert!(
            !logs.contains(field),
            "log field `{field}` at info level:\n{logs}"
        );
    }
}

fn wait_for_line(
    child: &mut Child,
    predicate: impl Fn(&str) -> bool,
    limit: Duration,
) -> Vec<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let done = predicate(&line);
            lines.push(line);
            if done {
                // Keep collecting the rest in the background into `lines` via the caller.
                std::thread::spawn(move || for _ in rx {});
                return lines;
            }
        }
    }
    panic!("no matching line within {limit:?}: {lines:?}");
}

#[test]
fn sigterm_during_the_demo_loses_nothing_that_was_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = demo_command(dir.path(), 120)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start demo");
    // Wait until readings are flowing.
    wait_for_line(
        &mut child,
        |line| {
            line.split("readings stored")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= 10)
        },
        Duration::from_secs(60),
    );
    let pid = child.id() as libc::pid_t;
    let sent = Instant::now();
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().expect("wait");
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");

    // Everything the sources were told is safe is on the server or still in the queue: export
    // what is still queued (upload units, one per line) and remember their identifiers.
    let backlog_file = dir.path().join("backlog.ndjson");
    let export = Command::new(env!("CARGO_BIN_EXE_vectorcare-gateway"))
        .args(["queue", "export", "--format", "ndjson", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg(&backlog_file)
        .output()
        .expect("queue export");
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let backlog: BTreeSet<String> = std::fs::read_to_string(&backlog_file)
        .expect("backlog file")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let unit: serde_json::Value = serde_json::from_str(line).expect("upload unit JSON");
            unit["identifier"]["value"]
                .as_str()
                .expect("identifier")
                .to_owned()
        })
        .collect();

    // A second, short run uploads the backlog: its server then holds every reading the first
    // run left queued (identical readings of both runs are one Observation: conditional create).
    // Only what the second run's server holds counts.
    let _ = std::fs::remove_dir_all(dir.path().join("out"));
    let second = demo_command(dir.path(), 6).output().expect("second run");
    let stdout = String::from_utf8_lossy(&second.stdout).into_owned();
    assert_eq!(second.status.code(), Some(0), "{stdout}");
    assert_eq!(summary_figure(&stdout, "still queued"), 0, "{stdout}");
    let on_server: BTreeSet<String> = observation_files(&dir.path().join("out"))
        .iter()
        .flat_map(|o| o["identifier"].as_array().cloned().unwrap_or_default())
        .filter_map(|id| id["value"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = backlog.difference(&on_server).collect();
    assert!(
        missing.is_empty(),
        "{} of the {} readings left queued by SIGTERM never reached the server: {missing:?}",
        missing.len(),
        backlog.len()
    );
}
