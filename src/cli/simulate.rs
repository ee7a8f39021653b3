//! `simulate`: play a scenario file (docs/SIMULATOR.md) against a target.
//!
//! - `inprocess` (default): hal's in-process simulator, read back through the gateway's
//!   decoders — a self-check that prints what decoded per device;
//! - `ble` / `ble:hci1`: a real BLE peripheral on a BlueZ adapter (one BLE device: `--device`);
//! - `pty`: serial devices on pseudo-terminals (their paths are printed);
//! - `serial:/dev/ttyUSB0`: the serial device on a real port;
//! - `mqtt://127.0.0.1:1883`: MQTT devices publishing to a broker.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::run::tokio_runtime;
use super::{Failure, Outcome};
use crate::exit;
use crate::simulator::bluer_peripheral::BluerTarget;
use crate::simulator::engine::PlayOptions;
use crate::simulator::mqtt::MqttTarget;
use crate::simulator::pty::SerialTarget;
use crate::simulator::scenario::ScenarioError;
use crate::simulator::{PlayReport, Scenario, SimError, Target, loopback};

/// Arguments of `simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenario file (TOML), e.g. config/scenarios/home-hub-week.toml.
    #[arg(long)]
    pub scenario: PathBuf,
    /// inprocess | ble[:hciN] | pty | serial:/dev/… | mqtt://host:port
    #[arg(long, default_value = "inprocess")]
    pub target: String,
    /// Overrides the scenario's seed (values, timing jitter, garbage bytes).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Time compression: 60 plays a minute of scenario time per second; 0 plays as fast as
    /// the target takes it.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Play only these devices (repeatable); needed for `ble` and `serial:` with several.
    #[arg(long = "device")]
    pub devices: Vec<String>,
    /// Baud rate for `serial:` targets.
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,
    /// Play the scenario again and again (next seed, clocks running on) until Ctrl-C.
    #[arg(long = "loop")]
    pub repeat: bool,
}

pub fn execute(args: Args) -> Outcome {
    crate::crypto::install_providers();
    let mut scenario = crate::simulator::load_file(&args.scenario).map_err(|err| match err {
        ScenarioError::Read { .. } => Failure::new(exit::USAGE, err.to_string()),
        ScenarioError::Invalid(_) => {
            Failure::new(exit::CONFIG, format!("{}: {err}", args.scenario.display()))
        }
    })?;
    if !args.devices.is_empty() {
        for wanted in &args.devices {
            if !scenario.devices.iter().any(|d| &d.name == wanted) {
                return Err(Failure::new(
                    exit::USAGE,
                    format!("--device {wanted}: no such device in the scenario"),
                ));
            }
        }
        scenario.devices.retain(|d| args.devices.contains(&d.name));
    }
    if !(args.speed >= 0.0 && args.speed.is_finite()) {
        return Err(Failure::new(exit::USAGE, "--speed must be 0 or more"));
    }
    let options = PlayOptions {
        seed: args.seed,
        speed: args.speed,
        start: None,
        repeat: args.repeat,
    };
    let tokio = tokio_runtime()?;
    tokio.block_on(run(&args.target, args.baud, &scenario, options))
}

fn failure(err: SimError) -> Failure {
    let code = match err {
        SimError::Scenario(_) => exit::CONFIG,
        SimError::Encode(_) => exit::SOFTWARE,
        SimError::Ble(_) | SimError::Serial(_) | SimError::Mqtt(_) => exit::UNAVAILABLE,
    };
    Failure::new(code, err.to_string())
}

async fn interrupted() {
    let _ = crate::runtime::shutdown::termination_signal().await;
}

async fn play_on<T: Target>(
    scenario: &Scenario,
    target: &mut T,
    options: PlayOptions,
) -> Result<PlayReport, Failure> {
    crate::simulator::play(scenario, target, options, interrupted())
        .await
        .map_err(failure)
}

async fn run(target: &str, baud: u32, scenario: &Scenario, options: PlayOptions) -> Outcome {
    println!(
        "scenario {:?}: {} device(s), {} s of scenario time at speed {}",
        scenario.name,
        scenario.devices.len(),
        scenario.duration,
        options.speed
    );
    let report = if target == "inprocess" {
        let (report, counts) = loopback::play_inprocess_checked(scenario, options)
            .await
            .map_err(failure)?;
        println!(
            "{:<20} {:>8} {:>9} {:>8}",
            "device", "decoded", "readings", "refused"
        );
        for (name, c) in &counts {
            println!(
                "{name:<20} {:>8} {:>9} {:>8}",
                c.values, c.readings, c.refused
            );
        }
        report
    } else if target == "pty" {
        let mut t = SerialTarget::pty();
        let report = play_with_paths(scenario, &mut t, options).await?;
        if t.dropped() > 0 {
            println!("{} line(s) dropped: nobody was reading", t.dropped());
        }
        report
    } else if let Some(path) = target.strip_prefix("serial:") {
        let mut t = SerialTarget::port(std::path::Path::new(path), baud);
        play_on(scenario, &mut t, options).await?
    } else if target.starts_with("mqtt://") {
        let mut t = MqttTarget::from_url(target).map_err(failure)?;
        let report = play_on(scenario, &mut t, options).await?;
        println!("{} message(s) acknowledged by the broker", t.published());
        report
    } else if target == "ble" || target.starts_with("ble:") {
        let adapter = target.strip_prefix("ble:").map(str::to_owned);
        let start = scenario.start.unwrap_or_else(OffsetDateTime::now_utc);
        let mut t = BluerTarget::new(adapter, start);
        let options = PlayOptions {
            start: Some(start),
            ..options
        };
        play_on(scenario, &mut t, options).await?
    } else {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "unknown --target {target:?}: inprocess, ble[:hciN], pty, serial:/dev/…, mqtt://host:port"
            ),
        ));
    };
    print_report(&report);
    Ok(())
}

/// Plays on ptys, printing each device's path once they exist (before the first event).
async fn play_with_paths(
    scenario: &Scenario,
    target: &mut SerialTarget,
    options: PlayOptions,
) -> Result<PlayReport, Failure> {
    struct Announcing<'a>(&'a mut SerialTarget);
    impl Target for Announcing<'_> {
        async fn start(&mut self, scenario: &Scenario) -> Result<(), SimError> {
            self.0.start(scenario).await?;
            for (i, path) in self.0.paths() {
                println!(
                    "serial device {}: {}",
                    scenario.devices[i].name,
                    path.display()
                );
            }
            Ok(())
        }
        fn plays(&self, transport: &crate::simulator::scenario::Transport) -> bool {
            self.0.plays(transport)
        }
        async fn apply(
            &mut self,
            device: &crate::simulator::scenario::DeviceSpec,
            index: usize,
            action: &crate::simulator::engine::Action,
        ) -> Result<(), SimError> {
            self.0.apply(device, index, action).await
        }
        async fn finish(&mut self) -> Result<(), SimError> {
            self.0.finish().await
        }
    }
    play_on(scenario, &mut Announcing(target), options).await
}

fn print_report(report: &PlayReport) {
    println!(
        "{:<20} {:>12} {:>8} {:>8} {:>11}",
        "device", "measurements", "stored", "garbage", "disconnects"
    );
    for (name, c) in &report.devices {
        println!(
            "{name:<20} {:>12} {:>8} {:>8} {:>11}",
            c.measurements, c.stored_records, c.garbage, c.disconnects
        );
    }
    if !report.skipped_devices.is_empty() {
        println!(
            "not played on this target: {}",
            report.skipped_devices.join(", ")
        );
    }
}
