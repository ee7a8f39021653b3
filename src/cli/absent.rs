//! Commands this build was compiled without (device builds leave out the demo/QA-only cargo
//! features, see Cargo.toml `[features]`). They still parse, so that asking for one says which
//! feature it needs instead of clap's bare "unrecognized subcommand".

use std::ffi::OsString;

use super::Failure;
use crate::exit;

/// Whatever follows a left-out command: accepted as-is, never used.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<OsString>,
}

/// The failure for `what` (a command or option) when `feature` was left out: usage (64).
pub fn failure(what: &str, feature: &str) -> Failure {
    Failure::new(
        exit::USAGE,
        format!("this build has no `{what}` (built without the `{feature}` feature)"),
    )
}

#[cfg(test)]
mod tests {
    use clap::{Parser, Subcommand};

    use super::*;

    /// A command line with one left-out command, as a device build has for `demo`.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, Subcommand)]
    enum Command {
        Demo(Args),
    }

    #[test]
    fn a_left_out_command_parses_with_its_usual_arguments() {
        let cli = Cli::try_parse_from(["gw", "demo", "--duration", "3", "--data-dir", "/tmp/x"])
            .expect("the left-out command still parses");
        let Command::Demo(args) = cli.command;
        assert_eq!(args.rest, ["--duration", "3", "--data-dir", "/tmp/x"]);
    }

    #[test]
    fn the_failure_names_the_command_and_the_feature_and_is_a_usage_error() {
        let failure = failure("demo", "demo");
        assert_eq!(failure.code, exit::USAGE);
        assert_eq!(
            failure.message,
            "this build has no `demo` (built without the `demo` feature)"
        );
    }
}
