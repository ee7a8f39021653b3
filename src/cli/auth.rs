//! `auth check`: SMART discovery and one token request with the configured key; prints the
//! token endpoint, the granted scopes and the expiry (the token itself only with
//! `--show-token`).

use std::path::PathBuf;

/// Arguments of `auth`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: AuthCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Discovery + token request against the configured FHIR server.
    Check {
        /// Configuration file (its `[upload]` section must be present).
        #[arg(long)]
        config: PathBuf,
        /// Also print the access token.
        #[arg(long)]
        show_token: bool,
    },
}

fn fail(code: u8, message: impl Into<String>) -> super::Failure {
    super::Failure::new(code, message)
}

pub fn execute(args: Args) -> super::Outcome {
    let AuthCommand::Check { config, show_token } = args.command;
    let loaded = crate::config::load(&config, std::env::vars())
        .map_err(|err| super::validate::config_failure(&config, &err))?;
    let clock = crate::runtime::Hardware::real(&loaded).clock;
    let Some(upload) = loaded.upload else {
        return Err(fail(
            crate::exit::CONFIG,
            format!(
                "{}: upload: section missing (see config/gateway.example.toml)",
                config.display()
            ),
        ));
    };
    crate::crypto::install_providers();
    let (_http, authorizer) = crate::upload::build::authorizer(&upload, clock)
        .map_err(|e| fail(crate::exit::CONFIG, e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(crate::exit::SOFTWARE, e.to_string()))?;
    let token = runtime.block_on(authorizer.request_token()).map_err(|e| {
        let code = if e.is_config_problem() {
            crate::exit::CONFIG
        } else {
            crate::exit::UNAVAILABLE
        };
        fail(code, e.to_string())
    })?;
    println!("token endpoint: {}", token.token_endpoint);
    println!("granted scopes: {}", token.granted_scope);
    println!("expires in:     {} s", token.expires_in.as_secs());
    if show_token {
        println!("access token:   {}", token.access_token);
    }
    Ok(())
}
