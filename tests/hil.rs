//! Hardware-in-loop harness (docs/HIL.md).
//!
//! `hil_scenarios_pass_on_the_real_stack` boots User-Mode Linux with the real Bluetooth stack
//! and runs every scenario of tests/hil through `scripts/hil`. It is `#[ignore]`d: it needs
//! root (UML, debootstrap) and the cache (about 20 minutes to build from nothing, about a
//! minute and a half per run after). Run it with
//!
//! ```sh
//! CARGO_TARGET_DIR=… cargo test --test hil -- --ignored --nocapture
//! ```
//!
//! The other tests run everywhere in seconds: they feed the harness's checker
//! (tests/hil/check.py) made-up results and prove it refuses lost, extra and wrong values.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
#[ignore = "boots User-Mode Linux (root, cache of ~1 GB): scripts/hil, see docs/HIL.md"]
fn hil_scenarios_pass_on_the_real_stack() {
    let output = Command::new(repo().join("scripts/hil"))
        .env(
            "CARGO_TARGET_DIR",
            std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned()),
        )
        .output()
        .expect("scripts/hil runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "scripts/hil failed");
    assert!(
        stdout.lines().any(|l| l.ends_with(" passed, 0 failed")),
        "no 'N passed, 0 failed' line"
    );
}

// ---------------------------------------------------------------------------------------------
// The checker, on made-up results.

/// A run directory as the guest leaves it, for the heart-rate scenario.
struct FakeRun {
    dir: tempfile::TempDir,
}

impl FakeRun {
    fn heart_rate(sent: usize, values: &[f64]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path();
        write(run, "guest.result", "completed\n");
        write(
            run,
            "logs/simulate.log",
            &format!(
                "scenario \"hil-heart-rate\": 1 device(s)\n\
                 device               measurements   stored  garbage disconnects\n\
                 strap                {sent:>12}        0        0           0\n"
            ),
        );
        write(run, "logs/gateway.log", "starting device session\n");
        write(
            run,
            "fhir/Device/d1.json",
            r#"{"resourceType":"Device","serialNumber":"HIL-HR-1"}"#,
        );
        for (i, value) in values.iter().enumerate() {
            let observation = format!(
                r#"{{"resourceType":"Observation","identifier":[{{"system":"urn:x","value":"{i}"}}],
                "code":{{"coding":[{{"system":"http://loinc.org","code":"8867-4"}}]}},
                "valueQuantity":{{"value":{value},"unit":"/min","code":"/min"}}}}"#
            );
            write(run, &format!("fhir/Observation/o{i}.json"), &observation);
        }
        Self { dir }
    }

    fn check(&self, scenario: &str) -> (bool, String) {
        let output = Command::new("python3")
            .arg(repo().join("tests/hil/check.py"))
            .arg(scenario)
            .arg(self.dir.path())
            .output()
            .expect("python3 runs tests/hil/check.py (install python3)");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }
}

fn write(run: &Path, rel: &str, text: &str) {
    let path: PathBuf = run.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[test]
fn checker_accepts_every_value_sent_once() {
    let (ok, out) = FakeRun::heart_rate(3, &[72.0, 74.0, 75.0]).check("heart-rate");
    assert!(ok, "{out}");
    assert!(out.contains("3 of 3"), "{out}");
}

#[test]
fn checker_refuses_a_lost_value() {
    let (ok, out) = FakeRun::heart_rate(3, &[72.0, 74.0]).check("heart-rate");
    assert!(!ok, "{out}");
    assert!(
        out.contains("2 heart-rate Observations, the device sent 3"),
        "{out}"
    );
}

#[test]
fn checker_refuses_a_value_out_of_the_streams_range() {
    let (ok, out) = FakeRun::heart_rate(2, &[72.0, 7.2]).check("heart-rate");
    assert!(!ok, "{out}");
    assert!(out.contains("outside"), "{out}");
}

#[test]
fn checker_refuses_a_guest_that_did_not_complete() {
    let run = FakeRun::heart_rate(1, &[72.0]);
    write(
        run.dir.path(),
        "guest.result",
        "timeout waiting for hci0 and hci1\n",
    );
    let (ok, out) = run.check("heart-rate");
    assert!(!ok, "{out}");
    assert!(out.contains("timeout waiting for hci0"), "{out}");
}

#[test]
fn checker_refuses_a_reconnect_scenario_without_a_reconnection() {
    // One session only, though the simulator dropped the link once.
    let run = FakeRun::heart_rate(2, &[72.0, 73.0]);
    write(
        run.dir.path(),
        "logs/simulate.log",
        "device               measurements   stored  garbage disconnects\n\
         strap                           2        0        0           1\n",
    );
    write(
        run.dir.path(),
        "fhir/Device/d1.json",
        r#"{"resourceType":"Device","serialNumber":"HIL-HR-2"}"#,
    );
    let (ok, out) = run.check("reconnect");
    assert!(!ok, "{out}");
    assert!(out.contains("expected a reconnection"), "{out}");
}
