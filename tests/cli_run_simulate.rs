//! `run --simulate-devices` as QA rigs use it: exit codes for a bad or missing scenario, and a
//! short run on simulated BLE devices that leaves readings in the durable queue.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn gateway() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vectorcare-gateway"));
    command
        .env_remove("VECTORCARE_CONFIG")
        .env_remove("VECTORCARE_DATA_DIR")
        .env("NO_COLOR", "1");
    command
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A gateway with one BLE cuff, no uploader (readings stay queued), no status endpoint.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nid = \"hub-cli\"\npatient = \"Patient/cli\"\nstate_dir = {:?}\n\
             [clock]\nassume_synchronized = true\n[status]\nenabled = false\n\
             [sources.ble]\n[[sources.ble.devices]]\naddress = \"C0:FF:EE:10:00:01\"\n",
            dir.join("state").display().to_string()
        ),
    )
    .expect("write config");
    path
}

fn scenario(dir: &Path, profile: &str) -> PathBuf {
    let path = dir.join("scenario.toml");
    std::fs::write(
        &path,
        format!(
            "[scenario]\nname = \"cli\"\nduration_seconds = 3600\n\n[[devices]]\nname = \"cuff\"\n\
             transport = \"ble\"\nprofile = {profile:?}\naddress = \"C0:FF:EE:10:00:01\"\n\
             interval_seconds = 10\n"
        ),
    )
    .expect("write scenario");
    path
}

#[test]
fn an_invalid_scenario_exits_78_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = gateway()
        .arg("run")
        .arg("--config")
        .arg(config(dir.path()))
        .arg("--simulate-devices")
        .arg(scenario(dir.path(), "blood_presure"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("devices[0].profile"), "{}", text(&out));
    assert!(stderr.contains("scenario.toml"), "{}", text(&out));
    for queue_dir in ["segments", "queue"] {
        assert!(
            !dir.path().join("state").join(queue_dir).exists(),
            "nothing may start on a bad scenario"
        );
    }
}

#[test]
fn a_missing_scenario_or_a_bad_speed_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let missing = gateway()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--simulate-devices")
        .arg(dir.path().join("no-such-scenario.toml"))
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(64), "{}", text(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no-such-scenario.toml"),
        "{}",
        text(&missing)
    );
    let speed = gateway()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--simulate-devices")
        .arg(scenario(dir.path(), "blood_pressure"))
        .args(["--simulate-speed", "0"])
        .output()
        .expect("run");
    assert_eq!(speed.status.code(), Some(64), "{}", text(&speed));
    // --simulate-speed alone is meaningless: a usage error too.
    let orphan = gateway()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--simulate-speed", "60"])
        .output()
        .expect("run");
    assert_eq!(orphan.status.code(), Some(64), "{}", text(&orphan));
}

#[test]
fn a_short_run_on_simulated_devices_queues_readings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let mut child = gateway()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--simulate-devices")
        .arg(scenario(dir.path(), "blood_pressure"))
        .args(["--simulate-speed", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run");
    // Six cuff measurements a second at this speed; three seconds is plenty.
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: signalling our own child by its PID.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "run did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    assert_eq!(status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SIMULATED"),
        "the run must say loudly that its devices are simulated: {}",
        text(&out)
    );

    let stats = gateway()
        .args(["queue", "--data-dir"])
        .arg(dir.path().join("state"))
        .args(["stats", "--json"])
        .output()
        .expect("queue stats");
    assert!(stats.status.success(), "{}", text(&stats));
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("json");
    let depth = stats["depth"].as_u64().expect("depth");
    assert!(
        depth >= 3,
        "readings queued by a 3 s run at speed 60: {stats}"
    );
}
