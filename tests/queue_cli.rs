//! The `queue` command against a real data directory.

use std::path::Path;
use std::process::{Command, Output};

use vectorcare_gateway::queue::{DurableQueue, QueueConfig, RecordId, SledQueue};

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vectorcare-gateway"))
        .arg("queue")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run binary")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn seed(dir: &Path) {
    let q = SledQueue::open(dir, &QueueConfig::default()).expect("open");
    let payloads = (1..=4)
        .map(|i| format!(r#"{{"resourceType":"Observation","id":"o{i}"}}"#).into_bytes())
        .collect();
    q.append_blocking(payloads).expect("append");
    q.dead_letter(RecordId(2), r#"{"resourceType":"OperationOutcome"}"#.into())
        .expect("dead");
}

#[test]
fn queue_commands_inspect_export_and_repair() {
    let dir = tempfile::tempdir().expect("tempdir");
    seed(dir.path());

    let stats: serde_json::Value =
        serde_json::from_str(&stdout(&run(dir.path(), &["stats", "--json"]))).expect("json");
    assert_eq!(stats["depth"], 3);
    assert_eq!(stats["dead_letters"], 1);

    let list = stdout(&run(dir.path(), &["list"]));
    assert_eq!(list.lines().count(), 4, "header + 3 records:\n{list}");
    assert!(
        !list.contains("Observation"),
        "listings must not print payloads"
    );
    let dead = stdout(&run(dir.path(), &["list", "--dead"]));
    assert!(dead.contains("OperationOutcome"), "{dead}");
    let show = stdout(&run(dir.path(), &["show", "3"]));
    assert!(show.contains(r#""id":"o3""#), "{show}");
    let missing = run(dir.path(), &["show", "99"]);
    assert_eq!(missing.status.code(), Some(65));

    let ndjson = dir.path().join("out.ndjson");
    stdout(&run(
        dir.path(),
        &[
            "export",
            "--format",
            "ndjson",
            ndjson.to_str().expect("utf8"),
        ],
    ));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&ndjson)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|v| v["id"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["o1", "o3", "o4"]
    );

    let bundle = dir.path().join("out.json");
    stdout(&run(
        dir.path(),
        &[
            "export",
            "--format",
            "bundle",
            bundle.to_str().expect("utf8"),
        ],
    ));
    let bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle).expect("read")).expect("json");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(3));
    assert_eq!(bundle["entry"][1]["resource"]["id"], "o3");

    assert!(stdout(&run(dir.path(), &["requeue", "--dead", "--all"])).contains("requeued 1"));
    assert!(stdout(&run(dir.path(), &["purge", "--dead"])).contains("purged 0"));
    let stats: serde_json::Value =
        serde_json::from_str(&stdout(&run(dir.path(), &["stats", "--json"]))).expect("json");
    assert_eq!(
        (stats["depth"].as_u64(), stats["dead_letters"].as_u64()),
        (Some(4), Some(0))
    );
}

#[test]
fn queue_command_refuses_while_the_daemon_holds_the_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    seed(dir.path());
    let held = SledQueue::open(dir.path(), &QueueConfig::default()).expect("open");
    let out = run(dir.path(), &["stats"]);
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("daemon"), "{err}");
    drop(held);
    stdout(&run(dir.path(), &["stats"]));
}

#[test]
fn queue_command_on_a_missing_directory_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&dir.path().join("nope"), &["stats"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no queue"));
}

/// Upload units are queued in a binary framing (`fhir::unit_format`); `show` and `export`
/// print them as the JSON units older gateways queued, so operators and exports see JSON.
#[test]
fn queued_upload_units_are_shown_and_exported_as_json() {
    use vectorcare_gateway::fhir::examples::{example_map_context, example_readings};
    use vectorcare_gateway::fhir::{encode_unit, map_reading};

    let dir = tempfile::tempdir().expect("tempdir");
    let unit = map_reading(&example_readings()[0].1, &example_map_context(true)).expect("map");
    let payload = encode_unit(&unit).expect("encode");
    assert!(std::str::from_utf8(&payload).is_err(), "binary, not text");
    {
        let q = SledQueue::open(dir.path(), &QueueConfig::default()).expect("open");
        q.append_blocking(vec![payload]).expect("append");
    }
    let show = stdout(&run(dir.path(), &["show", "1"]));
    let json_line = show
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    let shown: serde_json::Value = serde_json::from_str(json_line).expect("json");
    assert_eq!(shown, serde_json::to_value(&unit).expect("unit json"));

    let ndjson = dir.path().join("units.ndjson");
    stdout(&run(
        dir.path(),
        &[
            "export",
            "--format",
            "ndjson",
            ndjson.to_str().expect("utf8"),
        ],
    ));
    let exported: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&ndjson).expect("read").trim())
            .expect("json line");
    assert_eq!(exported["id"], unit.id());
}
