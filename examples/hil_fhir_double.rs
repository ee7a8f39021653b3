//! The upload target of the hardware-in-loop harness (tests/hil, docs/HIL.md): the in-binary
//! FHIR + SMART token test double, run as its own process inside the UML guest.
//!
//! `hil_fhir_double <keys-dir> <env-file> <out-dir>`
//!
//! Generates an ES384 client key in `<keys-dir>` (registered with the double), starts the double
//! on a loopback port and writes the gateway's upload settings as `KEY=value` lines
//! (`VECTORCARE_UPLOAD__…`) to `<env-file>`. While it runs, `<out-dir>/observations.count` holds
//! how many Observations it has stored. On SIGTERM or SIGINT it writes every stored resource to
//! `<out-dir>/<Type>/<id>.json` and exits 0.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use vectorcare_gateway::test_double::{self, TestDoubleOptions};
use vectorcare_gateway::upload::keys::{SigningAlg, generate_into_dir};

/// The client id in tests/hil/gateway.toml.
const CLIENT_ID: &str = "vectorcare-hil";

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [keys, env_file, out] = args.as_slice() else {
        eprintln!("usage: hil_fhir_double <keys-dir> <env-file> <out-dir>");
        return ExitCode::from(64);
    };
    vectorcare_gateway::crypto::install_providers();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hil_fhir_double: tokio runtime: {err}");
            return ExitCode::from(70);
        }
    };
    match runtime.block_on(serve(keys, env_file, out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hil_fhir_double: {message}");
            ExitCode::from(69)
        }
    }
}

async fn serve(keys: &Path, env_file: &Path, out: &Path) -> Result<(), String> {
    let key = generate_into_dir(keys, SigningAlg::ES384).map_err(|e| format!("key: {e}"))?;
    let jwks =
        std::fs::read(&key.jwks_path).map_err(|e| format!("{}: {e}", key.jwks_path.display()))?;
    let jwks = serde_json::from_slice(&jwks).map_err(|e| format!("JWKS: {e}"))?;
    let double = test_double::start(TestDoubleOptions::new(CLIENT_ID, jwks))
        .await
        .map_err(|e| format!("start: {e}"))?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let env = format!(
        "VECTORCARE_UPLOAD__FHIR_BASE_URL={}\nVECTORCARE_UPLOAD__PRIVATE_KEY={}\nVECTORCARE_UPLOAD__ACTIVE_KID={}\n",
        double.fhir_base_url(),
        key.private_key_path.display(),
        key.kid
    );
    // Written whole, then renamed: the guest script waits for the file to appear.
    let tmp = env_file.with_extension("tmp");
    std::fs::write(&tmp, env)
        .and_then(|()| std::fs::rename(&tmp, env_file))
        .map_err(|e| format!("{}: {e}", env_file.display()))?;

    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
    let count_file = out.join("observations.count");
    let mut written = None;
    loop {
        let count = double.count("Observation");
        if written != Some(count) {
            std::fs::write(&count_file, format!("{count}\n"))
                .map_err(|e| format!("{}: {e}", count_file.display()))?;
            written = Some(count);
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let stored = double
        .dump_to_dir(out)
        .map_err(|e| format!("dump to {}: {e}", out.display()))?;
    println!(
        "hil_fhir_double: {stored} resources written to {}",
        out.display()
    );
    double.shutdown().await;
    Ok(())
}
