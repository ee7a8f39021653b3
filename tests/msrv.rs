//! The stated MSRV (`rust-version` in Cargo.toml) is at least what every dependency needs.

use std::process::Command;

/// "1.88" and "1.88.0" are the same version: compare three components.
fn version(text: &str) -> [u64; 3] {
    let mut parts = text.split('.').map(|part| part.parse().unwrap_or(0));
    [0; 3].map(|_| parts.next().unwrap_or(0))
}

#[test]
fn stated_msrv_covers_every_dependency() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Not `--offline`: metadata needs every package's manifest, including the ones only other
    // platforms build (e.g. Windows console crates), which a Linux build never downloads; a
    // fresh machine's cache lacks them. `--locked` fetches exactly the locked versions.
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let stated = version(env!("CARGO_PKG_RUST_VERSION"));
    let mut needed = ([0; 3], String::new());
    for package in metadata["packages"].as_array().expect("packages") {
        if let Some(rv) = package["rust_version"].as_str() {
            let v = version(rv);
            if v > needed.0 {
                needed = (v, format!("{} {}", package["name"], package["version"]));
            }
        }
    }
    assert!(
        stated >= needed.0,
        "rust-version {stated:?} is below {:?} needed by {}",
        needed.0,
        needed.1
    );
}
