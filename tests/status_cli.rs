//! `vectorcare-gateway status` exit codes against the real status endpoint: 0 for a healthy
//! gateway, 1 for an unhealthy one (a pipeline task down), 69 when nothing answers.
//!
//! The unhealthy gateway is the library's status endpoint serving a telemetry whose uploader
//! task has ended: a real daemon exits as soon as a task ends (systemd restarts it), so it is
//! unhealthy only for a moment. The healthy case against a whole running daemon (the demo) is
//! in tests/status_page.rs.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use vectorcare_gateway::runtime::shutdown_pair;
use vectorcare_gateway::status::{StatusConfig, StatusServer};
use vectorcare_gateway::telemetry::{Telemetry, TelemetryOptions};

fn status_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vectorcare-gateway"));
    command
        .arg("status")
        .args(args)
        .env_remove("VECTORCARE_CONFIG")
        .env("NO_COLOR", "1");
    command
}

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run status"))
        .await
        .expect("join")
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn telemetry() -> Arc<Telemetry> {
    Arc::new(Telemetry::new(
        TelemetryOptions {
            gateway_id: "hub-test".into(),
            ..TelemetryOptions::default()
        },
        Arc::new(vectorcare_hal::clock::AssumedSynchronizedClock),
    ))
}

fn config_file(dir: &Path, port: u16, token_file: Option<&Path>) -> std::path::PathBuf {
    let token = token_file
        .map(|f| format!("token_file = {:?}\n", f.display().to_string()))
        .unwrap_or_default();
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nid = \"hub-test\"\npatient = \"Patient/p1\"\nstate_dir = {:?}\n\n[status]\nlisten = \"127.0.0.1:{port}\"\n{token}",
            dir.display().to_string()
        ),
    )
    .expect("config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_for_healthy_unhealthy_and_unreachable_gateways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("status.token");
    std::fs::write(&token_file, "tok-123\n").expect("token");
    let telemetry = telemetry();
    let config = StatusConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        token_file: Some(token_file.clone()),
        ..StatusConfig::default()
    };
    let server = StatusServer::bind(&config, telemetry.clone())
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    let (trigger, shutdown) = shutdown_pair();
    let serving = tokio::spawn(server.run(shutdown.wait()));
    let config_path = config_file(dir.path(), addr.port(), Some(&token_file));
    let by_config = || status_command(&["--config", config_path.to_str().expect("utf8")]);

    telemetry.tasks_started(["ble".to_owned(), "uploader".to_owned()]);
    let healthy = run(by_config()).await;
    assert_eq!(healthy.status.code(), Some(0), "{}", text(&healthy));
    let stdout = String::from_utf8_lossy(&healthy.stdout);
    assert!(
        stdout.contains("gateway hub-test  healthy"),
        "{}",
        text(&healthy)
    );
    assert!(
        !stdout.contains('\x1b'),
        "NO_COLOR and a pipe: no colour codes"
    );

    telemetry.task_ended("uploader");
    let unhealthy = run(by_config()).await;
    assert_eq!(unhealthy.status.code(), Some(1), "{}", text(&unhealthy));
    assert!(
        String::from_utf8_lossy(&unhealthy.stderr).contains("task `uploader` is not running"),
        "{}",
        text(&unhealthy)
    );
    let mut json = by_config();
    json.arg("--json");
    let json = run(json).await;
    assert_eq!(json.status.code(), Some(1), "{}", text(&json));
    let value: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("--json prints JSON");
    assert_eq!(value["healthy"], false);
    assert_eq!(value["gateway_id"], "hub-test");

    // Without the token the endpoint refuses: reported as unavailable, not as unhealthy.
    let url = format!("http://{addr}/");
    let no_token = run(status_command(&["--url", &url])).await;
    assert_eq!(no_token.status.code(), Some(69), "{}", text(&no_token));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("token"));

    trigger.trigger();
    serving.await.expect("server stopped");
    // Nothing listens there any more.
    let gone = run(status_command(&["--url", &url])).await;
    assert_eq!(gone.status.code(), Some(69), "{}", text(&gone));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("not reachable"),
        "{}",
        text(&gone)
    );
}

#[test]
fn a_bad_configuration_exits_78() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, "[status]\nlisten = \"0.0.0.0:9180\"\n").expect("config");
    let output = status_command(&["--config", path.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(78), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("status.token_file"),
        "{}",
        text(&output)
    );
}
