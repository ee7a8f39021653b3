//! Configuration: TOML → raw serde types (`deny_unknown_fields`) → validated typed [`Config`].
//!
//! Three layers, later ones win: the embedded defaults (`config/defaults.toml`), the file, then
//! `VECTORCARE_*` environment variables (see [`layers`]). Validation reports EVERY problem at
//! once — unknown keys, wrong types and invalid values — each with its key path and a hint.
//! This module never opens a device or a socket; the runtime builds components from `Config`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod gateway;
pub mod layers;
pub mod problems;
pub mod sources;

pub use gateway::{ClockConfig, GatewayConfig, LogConfig, LogFormat};
pub use problems::{ConfigProblem, Problems};

/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vectorcare-gateway/gateway.toml";

const EMBEDDED_DEFAULTS: &str = include_str!("../../config/defaults.toml");

/// The file as written, after merging layers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub gateway: gateway::RawGatewayConfig,
    pub log: gateway::RawLogConfig,
    pub clock: gateway::RawClockConfig,
    pub queue: crate::queue::RawQueueConfig,
    pub sources: sources::RawSourcesConfig,
    pub upload: Option<crate::upload::RawUploadConfig>,
    pub fhir: crate::fhir::config::RawMappingConfig,
    pub status: crate::status::RawStatusConfig,
}

/// The validated configuration every component is built from.
#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub log: LogConfig,
    pub clock: ClockConfig,
    pub queue: crate::queue::QueueConfig,
    pub sources: sources::SourcesConfig,
    /// `None`: readings are queued but not uploaded (the section is absent).
    pub upload: Option<crate::upload::UploadConfig>,
    pub fhir: crate::fhir::config::MappingConfig,
    /// The local status endpoint.
    pub status: crate::status::StatusConfig,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{} problem(s) in the configuration", .0.len())]
    Invalid(Problems),
}

impl ConfigError {
    /// Every problem as a printable line (one for read and syntax errors).
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// Loads the file at `path` over the embedded defaults, applies environment overrides from
/// `env`, and validates.
pub fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    load_str(&text, path, env)
}

/// Like [`load`] for text already read (`origin` names it in messages).
pub fn load_str(
    text: &str,
    origin: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut merged: toml::Table =
        toml::from_str(EMBEDDED_DEFAULTS).expect("invariant: embedded defaults are valid TOML");
    let file: toml::Table = toml::from_str(text).map_err(|err| ConfigError::Syntax {
        path: origin.to_owned(),
        message: first_line(&err.to_string()),
    })?;
    layers::merge(&mut merged, file);
    let (overrides, rejected_env) = layers::env_overrides(env);
    layers::merge(&mut merged, overrides);

    let mut problems = Problems::new();
    for (name, why) in rejected_env {
        problems.push(
            format!("env {name}"),
            why,
            Some("e.g. VECTORCARE_UPLOAD__CLIENT_ID=abc"),
        );
    }
    let raw = deserialize_collecting(merged, &mut problems);
    let config = raw.validate(&mut problems);
    problems.dedup_by_path();
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid(problems)),
    }
}

/// Deserialises, recording each unknown key or wrong type and removing it so the next one is
/// found too (serde stops at the first). Removed keys fall back to their defaults.
fn deserialize_collecting(mut table: toml::Table, problems: &mut Problems) -> RawConfig {
    const MAX_PASSES: usize = 100;
    for _ in 0..MAX_PASSES {
        match serde_path_to_error::deserialize::<_, RawConfig>(table.clone()) {
            Ok(raw) => return raw,
            Err(err) => {
                let path = err.path().to_string();
                let message = first_line(&err.inner().to_string());
                let hint = if message.starts_with("unknown field") {
                    Some("remove it or check its spelling against config/gateway.example.toml")
                } else {
                    None
                };
                problems.push(path.clone(), message, hint);
                if !layers::remove_path(&mut table, &path) {
                    break;
                }
            }
        }
    }
    RawConfig::default()
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().trim().to_owned()
}

impl RawConfig {
    /// Checks every section, pushing every problem; returns the typed config when all are valid.
    pub fn validate(&self, problems: &mut Problems) -> Option<Config> {
        // Validate every section before combining, so all problems are reported.
        let gateway = self.gateway.validate("gateway", problems);
        let log = self.log.validate("log", problems);
        let clock = self.clock.validate("clock", problems);
        let queue = self.queue.validate("queue", problems);
        let sources = self.sources.validate("sources", problems);
        let upload = self
            .upload
            .as_ref()
            .map(|raw| raw.validate("upload", problems));
        let fhir = self.fhir.validate("fhir", problems);
        let status = self.status.validate("status", problems);
        Some(Config {
            gateway: gateway?,
            log: log?,
            clock: clock?,
            queue: queue?,
            sources: sources?,
            upload: match upload {
                Some(validated) => Some(validated?),
                None => None,
            },
            fhir: fhir?,
            status: status?,
        })
    }
}

#[cfg(test)]
mod tests;
