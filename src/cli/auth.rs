//! `auth check`: SMART discovery and one token request with the configured key; prints the
//! token endpoint, the granted scopes and the expiry (the token itself only with
//! `--show-token`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::problems::Problems;
use crate::upload::RawUploadConfig;
use crate::upload::assertion::{AssertionSigner, MAX_LIFETIME};
use crate::upload::auth::{AuthSettings, Authorizer};
use crate::upload::client::{HttpSettings, build_http_client};
use crate::upload::keys::load_private_key;

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
        /// Configuration file (its `[upload]` section is used).
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
    let text = std::fs::read_to_string(&config).map_err(|e| {
        fail(
            crate::exit::CONFIG,
            format!("cannot read {}: {e}", config.display()),
        )
    })?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| fail(crate::exit::CONFIG, format!("{}: {e}", config.display())))?;
    let section = table
        .remove("upload")
        .ok_or_else(|| fail(crate::exit::CONFIG, "upload: section missing"))?;
    let raw: RawUploadConfig = section
        .try_into()
        .map_err(|e| fail(crate::exit::CONFIG, format!("upload: {e}")))?;
    let mut problems = Problems::new();
    let Some(cfg) = raw.validate("upload", &mut problems) else {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(fail(crate::exit::CONFIG, list.join("\n")));
    };
    crate::crypto::install_providers();
    let key = load_private_key(&cfg.private_key, cfg.alg)
        .map_err(|e| fail(crate::exit::CONFIG, e.to_string()))?;
    let http = build_http_client(&HttpSettings::from(&cfg))
        .map_err(|e| fail(crate::exit::CONFIG, e.to_string()))?;
    let clock: Arc<dyn vectorcare_hal::clock::Clock> = Arc::new(vectorcare_hal::clock::SystemClock);
    let authorizer = Authorizer::new(
        http,
        AssertionSigner {
            client_id: cfg.client_id.clone(),
            kid: cfg.active_kid.clone(),
            jku: cfg.jku.clone(),
            key,
            lifetime: MAX_LIFETIME,
        },
        clock,
        AuthSettings {
            fhir_base_url: cfg.fhir_base_url.clone(),
            scopes: cfg.scopes.clone(),
            write_mode: cfg.write_mode,
            refresh_margin: cfg.token_refresh_margin,
            allow_unsynchronized_clock: cfg.allow_unsynchronized_clock,
        },
    );
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
