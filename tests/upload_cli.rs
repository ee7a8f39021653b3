//! `keygen` and `auth check` end to end: the binary against the in-process test double.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use jsonwebtoken::jwk::JwkSet;
use vectorcare_gateway::test_double::{self, TestDoubleOptions};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vectorcare-gateway"))
}

#[tokio::test]
async fn keygen_then_auth_check_against_the_double() {
    vectorcare_gateway::crypto::install_providers();
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    let out = bin()
        .args(["keygen", "--alg", "ES384", "--out"])
        .arg(&keys)
        .output()
        .expect("run keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let kid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kid:"))
        .expect("kid line")
        .trim()
        .to_owned();
    let jwks: JwkSet =
        serde_json::from_slice(&std::fs::read(keys.join("jwks.json")).expect("jwks"))
            .expect("parse");
    let double = test_double::start(TestDoubleOptions::new("gw-cli", jwks))
        .await
        .expect("double");
    let key_path = keys.join(format!("{kid}.key.pem"));
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"hub-cli\"\npatient = \"Patient/cli\"\n\n[upload]\nfhir_base_url = \"{}\"\nclient_id = \"gw-cli\"\nprivate_key = \"{}\"\n\
             active_kid = \"{kid}\"\nallow_unsynchronized_clock = true\n",
            double.fhir_base_url(),
            key_path.display()
        ),
    )
    .expect("config");

    let check = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            bin()
                .args(["auth", "check", "--config"])
                .arg(&config)
                .output()
        })
    };
    let out = check.await.expect("join").expect("run auth");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(double.token_url()), "{stdout}");
    assert!(
        stdout.contains("granted scopes: system/Observation.cus system/Device.cus"),
        "{stdout}"
    );
    assert!(stdout.contains("expires in:     300 s"), "{stdout}");
    assert!(
        !stdout.contains("access token"),
        "token printed without --show-token"
    );

    // A key readable by others is refused with the fix, as a configuration error.
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["auth", "check", "--config"])
            .arg(&config)
            .output()
    })
    .await
    .expect("join")
    .expect("run auth");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    double.shutdown().await;
}
