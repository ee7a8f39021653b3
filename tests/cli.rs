//! The command line as users and systemd see it: help, exit codes, configuration errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vectorcare-gateway"))
        .args(args)
        .env_remove("VECTORCARE_CONFIG")
        .output()
        .expect("run the gateway binary")
}

fn repo_file(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn every_command_has_help() {
    let top = gateway(&["--help"]);
    assert_eq!(top.status.code(), Some(0));
    let text = String::from_utf8_lossy(&top.stdout).into_owned();
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    for expected in ["run", "validate", "demo"] {
        assert!(
            commands.contains(&expected),
            "{expected} missing from {commands:?}"
        );
    }
    for command in commands {
        let out = gateway(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{command} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: vectorcare-gateway"),
            "{command} --help prints usage"
        );
    }
}

#[test]
fn version_is_printed() {
    let out = gateway(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(concat!("vectorcare-gateway ", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn usage_errors_exit_64() {
    assert_eq!(gateway(&["no-such-command"]).status.code(), Some(64));
    assert_eq!(
        gateway(&["validate", "--no-such-flag"]).status.code(),
        Some(64)
    );
}

#[test]
fn the_example_config_is_valid() {
    let out = gateway(&[
        "validate",
        "--config",
        &repo_file("config/gateway.example.toml"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn three_mistakes_are_all_reported_with_key_paths_and_exit_78() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    let example = std::fs::read_to_string(repo_file("config/gateway.example.toml")).expect("read");
    let bad = example
        .replace("id = \"hub-0001\"", "id = \"hub 0001\"")
        .replace(
            "patient = \"Patient/example-123\"",
            "patient = \"example-123\"",
        )
        .replace("format = \"auto\"", "format = \"auto\"\ncolour = true");
    assert_ne!(bad, example);
    std::fs::write(&path, bad).expect("write");
    let out = gateway(&["validate", "--config", path.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "gateway.id:",
        "gateway.patient:",
        "log.colour:",
        "3 problem(s)",
    ] {
        assert!(stderr.contains(needle), "{needle} missing in:\n{stderr}");
    }
}

#[test]
fn a_missing_config_file_exits_78_and_names_it() {
    let out = gateway(&["validate", "--config", "/nonexistent/gateway.toml"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/gateway.toml"));
}
