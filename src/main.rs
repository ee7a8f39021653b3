//! Binary edge: parse the command line, run the command, turn its outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use vectorcare_gateway::{cli, exit};

fn main() -> ExitCode {
    // Before anything else: a panic anywhere logs one line and exits 101 (systemd restarts).
    exit::install_panic_hook();
    let parsed = match cli::Cli::try_parse() {
        Ok(parsed) => parsed,
        Err(err) => {
            let code = if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match cli::execute(parsed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("error: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}
