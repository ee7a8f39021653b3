//! Device builds (`--no-default-features`: scripts/cross-build, scripts/build-deb, the Yocto
//! recipe) leave out the demo/QA-only crates: the embedded MQTT broker with its HTTP stack,
//! and the BlueZ peripheral library. Checked on the resolved dependency graph with `cargo
//! tree`, against the default build as the control (so the check can fail). That the device
//! binary answers for the left-out commands is checked by scripts/cross-test (it runs one).

use std::path::Path;
use std::process::{Command, Output};

/// `cargo tree -e normal -i CRATE` for the gateway package, with or without default features.
fn invert_tree(krate: &str, default_features: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--locked",
            "-p",
            "vectorcare-gateway",
            "-e",
            "normal",
        ])
        .args(["-i", krate]);
    if !default_features {
        cmd.arg("--no-default-features");
    }
    cmd.output().expect("cargo tree runs")
}

#[test]
fn device_build_links_no_demo_or_simulator_only_crates() {
    // rumqttd: the demo's embedded broker (it brings axum, hyper 0.14 and a Prometheus
    // exporter along); bluer: the simulator's BLE peripheral (with dbus-crossroads).
    for krate in [
        "rumqttd",
        "axum",
        "metrics-exporter-prometheus",
        "bluer",
        "dbus-crossroads",
    ] {
        let default = invert_tree(krate, true);
        let stdout = String::from_utf8_lossy(&default.stdout);
        assert!(
            default.status.success() && stdout.starts_with(&format!("{krate} v")),
            "control: the default build should depend on {krate}:\n{stdout}\n{}",
            String::from_utf8_lossy(&default.stderr)
        );

        let device = invert_tree(krate, false);
        let stderr = String::from_utf8_lossy(&device.stderr);
        assert!(
            !device.status.success() && stderr.contains("did not match any packages"),
            "the device build (--no-default-features) still depends on {krate}:\n{}\n{stderr}",
            String::from_utf8_lossy(&device.stdout)
        );
    }
}

#[test]
fn device_build_scripts_and_recipe_leave_default_features_out() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).expect(rel);
    for script in ["scripts/cross-build", "scripts/build-deb"] {
        assert!(
            read(script).contains("--no-default-features"),
            "{script} must build the device binary without the default (demo/QA) features"
        );
    }
    let recipe = read(
        "yocto/meta-vectorcare/recipes-connectivity/vectorcare-gateway/vectorcare-gateway_git.bb",
    );
    assert!(
        recipe.contains("oe_cargo_build --no-default-features"),
        "the recipe must build without default features, adding them back through PACKAGECONFIG"
    );
    // Every cargo feature can be switched on from an image (tests/deploy_yocto.rs checks the
    // other direction: PACKAGECONFIG names only features the crate has).
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let features = manifest["features"].as_table().expect("[features]");
    assert!(features.len() > 1, "{features:?}");
    for name in features.keys().filter(|name| *name != "default") {
        assert!(
            recipe.contains(&format!("PACKAGECONFIG[{name}] = \"--features {name}")),
            "feature {name} has no PACKAGECONFIG[{name}] in the recipe"
        );
    }
}
