//! `validate`: check a configuration file and list every problem in it (exit 78 if any).

use std::path::PathBuf;

use crate::config::{self, ConfigError, DEFAULT_CONFIG_PATH};
use crate::exit;

/// Arguments of `validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file to check.
    #[arg(long, short, env = "VECTORCARE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

pub fn execute(args: Args) -> super::Outcome {
    match config::load(&args.config, std::env::vars()) {
        Ok(_) => {
            println!("{}: configuration is valid", args.config.display());
            Ok(())
        }
        Err(err) => Err(config_failure(&args.config, &err)),
    }
}

/// The failure every command reports for a configuration it cannot use: every problem on its
/// own line, exit code 78 (systemd's `RestartPreventExitStatus=78` then stops restarting).
pub fn config_failure(path: &std::path::Path, err: &ConfigError) -> super::Failure {
    // A missing or unreadable file is a configuration problem too: restarting will not fix it.
    let message = match err {
        ConfigError::Invalid(_) => {
            let mut message = format!("{}: {err}", path.display());
            for line in err.lines() {
                message.push_str("\n  - ");
                message.push_str(&line);
            }
            message
        }
        ConfigError::Read { .. } | ConfigError::Syntax { .. } => err.to_string(),
    };
    super::Failure::new(exit::CONFIG, message)
}
