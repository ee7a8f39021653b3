//! `run` command.

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn execute(_args: Args) -> super::Outcome {
    Err(super::Failure::new(
        crate::exit::SOFTWARE,
        "not implemented yet",
    ))
}
