//! The stated MSRV (`rust-version` in Cargo.toml) is at least what every dependency needs.

use std::process::Command;

fn version(text: &str) -> Vec<u64> {
    text.split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

#[test]
fn stated_msrv_covers_every_dependency() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
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
    let mut needed = (vec![0], String::new());
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
