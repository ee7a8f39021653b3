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
    /// QA rigs: replace BLE and serial hardware with the simulated devices of this scenario
    /// file (played in-process, again and again, until the gateway stops). MQTT devices of the
    /// scenario are not played here: run `simulate --target mqtt://…` next to the gateway.
    #[arg(long, value_name = "SCENARIO")]
    pub simulate_devices: Option<PathBuf>,
    /// With --simulate-devices: scenario time per real second (1 = real time, 60 = a minute
    /// per second).
    #[arg(long, default_value_t = 1.0, requires = "simulate_devices")]
    pub simulate_speed: f64,
}

pub fn execute(args: Args) -> Outcome {
    let config = config::load(&args.config, std::env::vars())
        .map_err(|err| super::validate::config_failure(&args.config, &err))?;
    let simulation = match &args.simulate_devices {
        Some(path) => Some(SimulatedDevices::load(path, args.simulate_speed)?),
        None => None,
    };
    crate::telemetry::init(&config.log);
    crate::crypto::install_providers();
    let tokio = tokio_runtime()?;
    tokio.block_on(async {
        // Handlers first: systemd may send SIGTERM as soon as READY=1 is out.
        let signals = runtime::shutdown::termination_listener();
        let queue = runtime::open_queue(&config).map_err(runtime_failure)?;
        let mut hardware = Hardware::real(&config);
        let devices_stop = Arc::new(tokio::sync::Notify::new());
        let devices = match simulation {
            Some(simulation) => {
                let (simulated, play) = simulation.start(&hardware, devices_stop.clone()).await?;
                hardware = simulated;
                Some(play)
            }
            None => None,
        };
        let observability = runtime::observability(&config, hardware.clock.clone())
            .await
            .map_err(runtime_failure)?;
        let stop = async {
            match signals {
                Ok(signal) => signal.await.to_owned(),
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for termination signals");
                    std::future::pending::<String>().await
                }
            }
        };
        let pipeline = runtime::run(
            &config,
            hardware,
            queue.clone(),
            Arc::new(NoObserver),
            observability,
            stop,
        );
        let result = match devices {
            None => pipeline.await,
            Some(play) => {
                let stop_devices = async {
                    let result = pipeline.await;
                    devices_stop.notify_one();
                    result
                };
                tokio::join!(stop_devices, play).0
            }
        };
        close_queue(queue);
        result.map(|_| ()).map_err(runtime_failure)
    })
}

/// `--simulate-devices` in a build without the `simulator` feature (device builds): no value
/// of this type exists, so the daemon never runs on simulated devices there.
#[cfg(not(feature = "simulator"))]
enum SimulatedDevices {}

#[cfg(not(feature = "simulator"))]
impl SimulatedDevices {
    fn load(_path: &std::path::Path, _speed: f64) -> Result<Self, Failure> {
        Err(super::absent::failure(
            "run --simulate-devices",
            "simulator",
        ))
    }

    async fn start(
        self,
        _real: &Hardware,
        _stop: Arc<tokio::sync::Notify>,
    ) -> Result<(Hardware, std::future::Ready<()>), Failure> {
        match self {}
    }
}

/// `--simulate-devices`: a scenario's BLE and serial devices on hal's simulated hardware.
#[cfg(feature = "simulator")]
struct SimulatedDevices {
    scenario: crate::simulator::Scenario,
    speed: f64,
}

#[cfg(feature = "simulator")]
impl SimulatedDevices {
    fn load(path: &std::path::Path, speed: f64) -> Result<Self, Failure> {
        use crate::simulator::scenario::ScenarioError;
        if !(speed > 0.0 && speed.is_finite()) {
            return Err(Failure::new(
                exit::USAGE,
                "--simulate-speed must be more than 0",
            ));
        }
        let scenario = crate::simulator::load_file(path).map_err(|err| match err {
            ScenarioError::Read { .. } => Failure::new(exit::USAGE, err.to_string()),
            ScenarioError::Invalid(_) => {
                Failure::new(exit::CONFIG, format!("{}: {err}", path.display()))
            }
        })?;
        Ok(Self { scenario, speed })
    }

    /// Puts the devices in range (before the sources start scanning) and returns the hardware
    /// to run on, plus the future that plays the scenario until `stop` is notified.
    async fn start(
        self,
        real: &Hardware,
        stop: Arc<tokio::sync::Notify>,
    ) -> Result<(Hardware, impl Future<Output = ()> + use<>), Failure> {
        use crate::simulator::Target;
        use crate::simulator::engine::PlayOptions;
        use crate::simulator::inprocess::InProcessTarget;
        use vectorcare_hal::ble::simulated::SimulatedCentral;
        use vectorcare_hal::serial::simulated::SimulatedOpener;

        tracing::warn!(
            devices = self.scenario.devices.len(),
            "running on SIMULATED BLE and serial devices (--simulate-devices), not on this hub's hardware"
        );
        let central = SimulatedCentral::new();
        let serial = SimulatedOpener::new();
        let hardware = Hardware {
            clock: real.clock.clone(),
            ble: runtime::BleHardware::Simulated(central.clone()),
            serial: Arc::new(serial.clone()),
        };
        let mut target = InProcessTarget::new(central, serial);
        target
            .start(&self.scenario)
            .await
            .map_err(|err| Failure::new(exit::SOFTWARE, format!("simulated devices: {err}")))?;
        let play = async move {
            let options = PlayOptions {
                seed: None,
                speed: self.speed,
                start: None,
                repeat: true,
            };
            let stopped = stop.notified();
            if let Err(err) =
                crate::simulator::play(&self.scenario, &mut target, options, stopped).await
            {
                tracing::warn!(error = %err, "the simulated devices stopped");
            }
        };
        Ok((hardware, play))
    }
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
    // Damaged queue files stay damaged: exit 65, which the unit's RestartPreventExitStatus
    // lists, so systemd does not restart into the same failure (docs/RELIABILITY.md).
    if let RuntimeError::Queue {
        dir,
        source: crate::queue::QueueError::Corrupt(_),
    } = &err
    {
        return Failure::new(
            exit::DATA_ERR,
            format!(
                "{err}\nthe queue's files are damaged; restarting will not help. Stop the service, \
                 move {dir}/segments (and {dir}/queue, if present) aside (keep them for \
                 analysis) and start again with an empty queue"
            ),
        );
    }
    let code = match &err {
        RuntimeError::Queue { .. } | RuntimeError::Progress(_) => exit::UNAVAILABLE,
        RuntimeError::TaskEnded(_) => exit::SOFTWARE,
        RuntimeError::Upload(_) => exit::CONFIG,
        RuntimeError::Status(_) => exit::CONFIG,
    };
    Failure::new(code, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueError;

    fn queue_error(source: QueueError) -> RuntimeError {
        RuntimeError::Queue {
            dir: "/var/lib/vectorcare-gateway".into(),
            source,
        }
    }

    #[test]
    fn a_damaged_queue_exits_65_and_says_what_to_do() {
        let failure = runtime_failure(queue_error(QueueError::Corrupt("bad crc".into())));
        assert_eq!(failure.code, exit::DATA_ERR);
        assert!(failure.message.contains("bad crc"));
        assert!(
            failure
                .message
                .contains("move /var/lib/vectorcare-gateway/segments (and")
        );
    }

    #[test]
    fn a_queue_held_by_another_process_stays_unavailable() {
        let failure = runtime_failure(queue_error(QueueError::Locked {
            path: "/var/lib/vectorcare-gateway".into(),
        }));
        assert_eq!(failure.code, exit::UNAVAILABLE);
    }
}
