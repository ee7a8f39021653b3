//! `demo`: the real pipeline on one machine, with no setup and no network.
//!
//! Simulated devices (one per BLE health profile through hal's simulator, a Masimo oximeter on
//! a simulated serial port, an MQTT cuff through an embedded broker), played by the device
//! simulator from the embedded scenario config/scenarios/demo.toml, feed the real runtime: the
//! real mapper, the real durable queue in `--data-dir`, and the real SMART uploader, which
//! signs client assertions with a freshly generated key and uploads over loopback HTTP to the
//! FHIR + token **test double** (`crate::test_double`). Device generation runs for most of
//! `--duration`; the rest drains the queue. The received resources are written to `--out`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use vectorcare_hal::ble::simulated::SimulatedCentral;
use vectorcare_hal::clock::AssumedSynchronizedClock;
use vectorcare_hal::serial::simulated::SimulatedOpener;

use super::run::{close_queue, runtime_failure, tokio_runtime};
use super::{Failure, Outcome};
use crate::exit;
use crate::queue::DurableQueue;
use crate::reading::Reading;
use crate::runtime::ingest::IngestObserver;
use crate::runtime::{self, BleHardware, Hardware};
use crate::simulator::engine::PlayOptions;
use crate::simulator::inprocess::InProcessTarget;
use crate::simulator::mqtt::MqttTarget;
use crate::simulator::scenario::Transport;
use crate::simulator::{Scenario, Target};
use crate::test_double::{self, TestDouble, TestDoubleOptions};
use crate::upload::keys::{SigningAlg, generate_into_dir};

const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");
const DEMO_SCENARIO: &str = include_str!("../../config/scenarios/demo.toml");
const CLIENT_ID: &str = "vectorcare-demo";
/// The stop reason of a demo that ran its full duration.
const FINISHED: &str = "demo finished";

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Total run time in seconds: devices measure for about 70% of it, the rest drains.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub duration: u64,
    /// Where the durable queue and the demo's signing key live.
    #[arg(long, default_value = "./demo-data")]
    pub data_dir: PathBuf,
    /// Where the resources the test double received are written.
    #[arg(long, default_value = "./demo-out")]
    pub out: PathBuf,
}

pub fn execute(args: Args) -> Outcome {
    crate::crypto::install_providers();
    let tokio = tokio_runtime()?;
    tokio.block_on(run_demo(args))
}

async fn run_demo(args: Args) -> Outcome {
    std::fs::create_dir_all(&args.data_dir).map_err(|err| {
        Failure::new(
            exit::UNAVAILABLE,
            format!("cannot create {}: {err}", args.data_dir.display()),
        )
    })?;
    // A new key each run (the JWKS in the keys dir grows, as it would on key rotation).
    let key = generate_into_dir(&args.data_dir.join("keys"), SigningAlg::ES384)
        .map_err(|err| Failure::new(exit::SOFTWARE, format!("demo key: {err}")))?;
    let jwks = std::fs::read(&key.jwks_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| Failure::new(exit::SOFTWARE, "demo key: unreadable JWKS"))?;
    let double = test_double::start(TestDoubleOptions::new(CLIENT_ID, jwks))
        .await
        .map_err(|err| Failure::new(exit::UNAVAILABLE, format!("FHIR test double: {err}")))?;
    let broker = crate::sources::mqtt::embedded_broker::start()
        .map_err(|err| Failure::new(exit::UNAVAILABLE, format!("embedded MQTT broker: {err}")))?;

    let overrides = vec![
        ("VECTORCARE_GATEWAY__STATE_DIR", path_text(&args.data_dir)),
        (
            "VECTORCARE_UPLOAD__FHIR_BASE_URL",
            double.fhir_base_url().to_owned(),
        ),
        (
            "VECTORCARE_UPLOAD__PRIVATE_KEY",
            path_text(&key.private_key_path),
        ),
        ("VECTORCARE_UPLOAD__ACTIVE_KID", key.kid.clone()),
        ("VECTORCARE_SOURCES__MQTT__PORT", broker.port.to_string()),
    ];
    let env = std::env::vars().chain(overrides.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let config = crate::config::load_str(DEMO_CONFIG, Path::new("config/demo.toml"), env)
        .map_err(|err| super::validate::config_failure(Path::new("config/demo.toml"), &err))?;
    crate::telemetry::init(&config.log);

    let central = SimulatedCentral::new();
    let serial = SimulatedOpener::new();
    let hardware = Hardware {
        clock: Arc::new(AssumedSynchronizedClock),
        ble: BleHardware::Simulated(central.clone()),
        serial: Arc::new(serial.clone()),
    };
    // The devices are those of the embedded scenario, played by the simulator's engine.
    let scenario = crate::simulator::load_str(DEMO_SCENARIO)
        .map_err(|err| Failure::new(exit::SOFTWARE, format!("demo scenario: {err}")))?;
    let mut target = InProcessTarget::new(central.clone(), serial.clone())
        .with_mqtt(MqttTarget::new("127.0.0.1", broker.port));
    // Devices in range before the gateway starts scanning.
    target
        .start(&scenario)
        .await
        .map_err(|err| Failure::new(exit::SOFTWARE, format!("simulated devices: {err}")))?;
    let ble_devices = scenario
        .devices
        .iter()
        .filter(|d| matches!(d.transport, Transport::Ble { .. }))
        .count();

    let queue = runtime::open_queue(&config).map_err(runtime_failure)?;
    let observability = runtime::observability(&config, hardware.clock.clone())
        .await
        .map_err(runtime_failure)?;
    let observer = Arc::new(DemoObserver::default());
    let total = Duration::from_secs(args.duration);
    let measuring = Duration::from_secs_f64(args.duration as f64 * 0.7);
    let generating = Arc::new(AtomicBool::new(true));
    let started = Instant::now();

    println!(
        "VectorCare Gateway demo: {} BLE devices, 1 serial oximeter, 1 MQTT cuff → FHIR test double at {}",
        ble_devices,
        double.fhir_base_url()
    );
    if let Some(url) = observability.status_url() {
        println!("status page: {url}  (also {url}status, {url}metrics, {url}healthz)");
    }
    println!(
        "measuring for {}s, then draining the queue (data: {})",
        measuring.as_secs(),
        args.data_dir.display()
    );

    let queue_for_stop = queue.clone();
    let generating_for_stop = generating.clone();
    let stop = async move {
        tokio::select! {
            _ = tokio::time::sleep(measuring) => {}
            signal = runtime::shutdown::termination_signal() => {
                generating_for_stop.store(false, Ordering::SeqCst);
                return signal.map(str::to_owned).unwrap_or_else(|err| err.to_string());
            }
        }
        generating_for_stop.store(false, Ordering::SeqCst);
        // Let the last notifications and publishes reach the queue, then drain it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        loop {
            let drained = queue_for_stop
                .stats()
                .map(|s| s.depth == 0)
                .unwrap_or(false);
            if drained || started.elapsed() >= total {
                return FINISHED.to_owned();
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                signal = runtime::shutdown::termination_signal() => {
                    return signal.map(str::to_owned).unwrap_or_else(|err| err.to_string());
                }
            }
        }
    };

    let pipeline = runtime::run(
        &config,
        hardware,
        queue.clone(),
        observer.clone(),
        observability,
        stop,
    );
    let drive = drive_devices(&scenario, target, generating.clone());
    let progress = show_progress(
        &double,
        queue.clone(),
        observer.clone(),
        generating.clone(),
        started,
    );
    let (result, (), ()) = tokio::join!(pipeline, drive, progress_until(progress, &generating));
    let stats = queue.stats().ok();
    close_queue(queue);
    let outcome = result.map_err(runtime_failure)?;
    let interrupted = outcome.reason != runtime::StopReason::Requested(FINISHED.to_owned());

    let written = double.dump_to_dir(&args.out).map_err(|err| {
        Failure::new(
            exit::UNAVAILABLE,
            format!("cannot write {}: {err}", args.out.display()),
        )
    })?;
    let summary = Summary {
        per_device: observer.snapshot(),
        rejected: observer.rejected(),
        still_queued: stats.as_ref().map_or(0, |s| s.depth),
        dead_letters: stats.as_ref().map_or(0, |s| s.dead_letters),
        observations_on_server: measurement_observations(&double),
        status_observations_on_server: double.count("Observation")
            - measurement_observations(&double),
        devices_on_server: double.count("Device"),
        written,
        out: args.out.clone(),
    };
    double.shutdown().await;
    summary.print();
    if interrupted {
        // Stopped by a signal: what is still queued is safe on disk and goes out next run.
        println!(
            "interrupted: {} reading(s) stay queued in {} and are uploaded by the next run",
            summary.still_queued,
            args.data_dir.display()
        );
        return Ok(());
    }
    if summary.still_queued > 0 || summary.dead_letters > 0 {
        return Err(Failure::new(
            exit::UNAVAILABLE,
            format!(
                "{} reading(s) not uploaded ({} still queued, {} dead letters): see `vectorcare-gateway queue stats --data-dir {}`",
                summary.still_queued + summary.dead_letters,
                summary.still_queued,
                summary.dead_letters,
                args.data_dir.display()
            ),
        ));
    }
    Ok(())
}

/// Measurement Observations the double holds: every Observation except the PHD status-bits
/// ones, which point at their measurement with `derivedFrom`.
fn measurement_observations(double: &TestDouble) -> usize {
    double
        .resources()
        .iter()
        .filter(|r| r["resourceType"] == "Observation" && r.get("derivedFrom").is_none())
        .count()
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Plays the demo scenario (config/scenarios/demo.toml) in real time, again and again, while
/// `generating` is set.
async fn drive_devices(
    scenario: &Scenario,
    mut target: InProcessTarget,
    generating: Arc<AtomicBool>,
) {
    let options = PlayOptions {
        seed: None,
        speed: 1.0,
        start: None,
        repeat: true,
    };
    let stop = async {
        while generating.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if let Err(err) = crate::simulator::play(scenario, &mut target, options, stop).await {
        tracing::warn!(error = %err, "the simulated devices stopped");
    }
}

/// Prints a progress line every two seconds until generation and draining are over.
async fn show_progress(
    double: &TestDouble,
    queue: Arc<crate::queue::SledQueue>,
    observer: Arc<DemoObserver>,
    generating: Arc<AtomicBool>,
    started: Instant,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tick.tick().await;
        let depth = queue.stats().map(|s| s.depth).unwrap_or(0);
        let phase = if generating.load(Ordering::SeqCst) {
            "measuring"
        } else {
            "draining "
        };
        println!(
            "[{:>3}s] {phase}  readings stored {:>4}  uploaded observations {:>4}  queued {:>4}",
            started.elapsed().as_secs(),
            observer.total(),
            measurement_observations(double),
            depth
        );
    }
}

/// Runs `progress` until the pipeline is done (generation over and the run future returned).
async fn progress_until(progress: impl std::future::Future<Output = ()>, generating: &AtomicBool) {
    let done = async {
        while generating.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        () = progress => {}
        () = done => {}
    }
}

/// Counts stored and rejected readings per device and kind (for the summary table).
#[derive(Debug, Default)]
struct DemoObserver {
    stored: Mutex<BTreeMap<(String, String), u64>>,
    rejected: Mutex<u64>,
}

impl DemoObserver {
    fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.stored
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
    fn rejected(&self) -> u64 {
        *self.rejected.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn device_label(reading: &Reading) -> String {
    let source = serde_json::to_value(reading.device.source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let name = reading
        .device
        .model
        .clone()
        .unwrap_or_else(|| reading.device.address.clone());
    format!("{source}: {name}")
}

fn kind_label(reading: &Reading) -> String {
    serde_json::to_value(reading.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl IngestObserver for DemoObserver {
    fn stored(&self, readings: &[Reading]) {
        let mut stored = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        for reading in readings {
            *stored
                .entry((device_label(reading), kind_label(reading)))
                .or_default() += 1;
        }
    }

    fn rejected(&self, readings: &[Reading], _reason: &str) {
        *self.rejected.lock().unwrap_or_else(PoisonError::into_inner) += readings.len() as u64;
    }
}

struct Summary {
    per_device: BTreeMap<(String, String), u64>,
    rejected: u64,
    still_queued: u64,
    dead_letters: u64,
    /// Measurement Observations (one per reading).
    observations_on_server: usize,
    /// PHD status-bits Observations that travel with readings whose device set status bits.
    status_observations_on_server: usize,
    devices_on_server: usize,
    written: usize,
    out: PathBuf,
}

impl Summary {
    fn print(&self) {
        let device_width = self
            .per_device
            .keys()
            .map(|(device, _)| device.len())
            .max()
            .unwrap_or(6)
            .max(6);
        println!();
        println!(
            "{:<device_width$}  {:<18}  {:>8}",
            "device", "kind", "readings"
        );
        println!("{:-<device_width$}  {:-<18}  {:->8}", "", "", "");
        for ((device, kind), count) in &self.per_device {
            println!("{device:<device_width$}  {kind:<18}  {count:>8}");
        }
        let stored: u64 = self.per_device.values().sum();
        println!("{:-<device_width$}  {:-<18}  {:->8}", "", "", "");
        println!(
            "{:<device_width$}  {:<18}  {stored:>8}",
            "queued durably", ""
        );
        println!(
            "{:<device_width$}  {:<18}  {:>8}",
            "rejected by the mapper", "", self.rejected
        );
        println!(
            "{:<device_width$}  {:<18}  {:>8}",
            "still queued", "", self.still_queued
        );
        println!(
            "{:<device_width$}  {:<18}  {:>8}",
            "dead letters", "", self.dead_letters
        );
        println!(
            "{:<device_width$}  {:<18}  {:>8}",
            "on the FHIR server", "Observations", self.observations_on_server
        );
        println!(
            "{:<device_width$}  {:<18}  {:>8}",
            "", "+ status bits", self.status_observations_on_server
        );
        println!(
            "{:<device_width$}  {:<18}  {:>8}",
            "", "Devices", self.devices_on_server
        );
        println!();
        println!(
            "{} resources written to {}",
            self.written,
            self.out.display()
        );
    }
}
