//! `run`: the gateway daemon (what the systemd unit starts).

use std::path::PathBuf;
use std::sync::Arc;

use super::{Failure, Outcome};
use crate::config::{self, DEFAULT_CONFIG_PATH};
use crate::exit;
use crate::runtime::{self, Hardware, RuntimeError, ingest::NoObserver};

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, short, env = "VECTORCARE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

pub fn execute(args: Args) -> Outcome {
    let config = config::load(&args.config, std::env::vars())
        .map_err(|err| super::validate::config_failure(&args.config, &err))?;
    crate::telemetry::init(&config.log);
    crate::crypto::install_providers();
    let tokio = tokio_runtime()?;
    tokio.block_on(async {
        let queue = runtime::open_queue(&config).map_err(runtime_failure)?;
        let hardware = Hardware::real(&config);
        let observability = runtime::observability(&config, hardware.clock.clone())
            .await
            .map_err(runtime_failure)?;
        let stop = async {
            match runtime::shutdown::termination_signal().await {
                Ok(signal) => signal.to_owned(),
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for termination signals");
                    std::future::pending::<String>().await
                }
            }
        };
        let result = runtime::run(
            &config,
            hardware,
            queue.clone(),
            Arc::new(NoObserver),
            observability,
            stop,
        )
        .await;
        close_queue(queue);
        result.map(|_| ()).map_err(runtime_failure)
    })
}

/// A multi-threaded runtime with two workers: enough for a Pi-class hub, small in memory.
pub(crate) fn tokio_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| {
            Failure::new(
                exit::SOFTWARE,
                format!("cannot start the async runtime: {err}"),
            )
        })
}

/// Flushes and closes the queue once every task holding it has ended.
pub(crate) fn close_queue(queue: Arc<crate::queue::SledQueue>) {
    match Arc::try_unwrap(queue) {
        Ok(queue) => {
            if let Err(err) = queue.close() {
                tracing::error!(error = %err, "closing the queue failed");
            }
        }
        // A task aborted at the deadline may still hold it: dropping the last handle later
        // closes it too (appends already resolved are durable either way).
        Err(_) => tracing::debug!("queue still shared at exit; closed on drop"),
    }
}

pub(crate) fn runtime_failure(err: RuntimeError) -> Failure {
    let code = match &err {
        RuntimeError::Queue { .. } | RuntimeError::Progress(_) => exit::UNAVAILABLE,
        RuntimeError::TaskEnded(_) => exit::SOFTWARE,
        RuntimeError::Upload(_) => exit::CONFIG,
        RuntimeError::Status(_) => exit::CONFIG,
    };
    Failure::new(code, err.to_string())
}
