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
