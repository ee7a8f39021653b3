//! The command line: one file per command. `main.rs` parses, calls [`execute`] and exits
//! with the code of the returned [`Failure`] (see [`crate::exit`]).

use clap::{Parser, Subcommand};

pub mod absent;
pub mod auth;
pub mod decode;
#[cfg(feature = "demo")]
pub mod demo;
pub mod devices;
pub mod keygen;
pub mod queue;
mod queue_export;
pub mod run;
#[cfg(feature = "simulator")]
pub mod simulate;
pub mod status;
pub mod validate;

/// VectorCare Gateway: vital signs from BLE, serial and MQTT devices to a FHIR R4 server.
#[derive(Debug, Parser)]
#[command(name = "vectorcare-gateway", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway daemon.
    Run(run::Args),
    /// Check a configuration file and list every problem in it.
    Validate(validate::Args),
    /// Decode one GATT characteristic value and print the readings and FHIR resources.
    Decode(decode::Args),
    /// Bluetooth LE devices: `devices scan` lists nearby health devices.
    Devices(devices::Args),
    /// Run the whole pipeline locally with simulated devices and a FHIR test double.
    #[cfg(feature = "demo")]
    Demo(demo::Args),
    /// Not in this build: it was built without the `demo` feature (device builds).
    #[cfg(not(feature = "demo"))]
    Demo(absent::Args),
    /// Inspect and repair the durable queue (daemon stopped).
    Queue(queue::Args),
    /// Generate a client signing key (ES384 or RS384) and the public JWKS to register.
    Keygen(keygen::Args),
    /// Check SMART Backend Services authorisation against the configured server.
    Auth(auth::Args),
    /// Play a device scenario (BLE, serial, MQTT) for QA rigs: see docs/SIMULATOR.md.
    #[cfg(feature = "simulator")]
    Simulate(simulate::Args),
    /// Not in this build: it was built without the `simulator` feature (device builds).
    #[cfg(not(feature = "simulator"))]
    Simulate(absent::Args),
    /// Ask the running daemon how it is: exit 0 healthy, 1 unhealthy, 69 unreachable.
    Status(status::Args),
}

/// Why a command failed, and the exit code to report it with.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub type Outcome = Result<(), Failure>;

/// Runs the parsed command.
pub fn execute(cli: Cli) -> Outcome {
    match cli.command {
        Command::Run(args) => run::execute(args),
        Command::Validate(args) => validate::execute(args),
        Command::Decode(args) => decode::execute(args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::execute(args),
        #[cfg(not(feature = "demo"))]
        Command::Demo(_) => Err(absent::failure("demo", "demo")),
        Command::Queue(args) => queue::execute(args),
        Command::Devices(args) => devices::execute(args),
        Command::Keygen(args) => keygen::execute(args),
        Command::Auth(args) => auth::execute(args),
        #[cfg(feature = "simulator")]
        Command::Simulate(args) => simulate::execute(args),
        #[cfg(not(feature = "simulator"))]
        Command::Simulate(_) => Err(absent::failure("simulate", "simulator")),
        Command::Status(args) => status::execute(args),
    }
}
