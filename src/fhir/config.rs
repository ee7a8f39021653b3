//! `[fhir]` section (optional): how Observations are identified on the server. Who the
//! patient and the gateway are lives in `[gateway]` (`config::gateway`).

use serde::Deserialize;

use crate::config::problems::{Problems, join};

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawMappingConfig {
    /// Observation.identifier system; default [`super::identity::DEFAULT_OBSERVATION_SYSTEM`].
    #[serde(default)]
    pub identifier_system: Option<String>,
    /// Serial number of the hub, carried on the gateway Device.
    #[serde(default)]
    pub gateway_serial: Option<String>,
}

/// Validated mapping settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingConfig {
    pub identifier_system: Option<String>,
    pub gateway_serial: Option<String>,
}

impl RawMappingConfig {
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<MappingConfig> {
        let before = problems.len();
        if let Some(s) = &self.identifier_system
            && !(s.starts_with("urn:") || s.starts_with("http://") || s.starts_with("https://"))
        {
            problems.push(
                join(path, "identifier_system"),
                "not an absolute URI",
                Some("use a urn: or https:// URI that your organisation controls"),
            );
        }
        if self.gateway_serial.as_deref().is_some_and(str::is_empty) {
            problems.push(
                join(path, "gateway_serial"),
                "must not be empty",
                Some("leave it out or write the hub's serial number"),
            );
        }
        if problems.len() > before {
            return None;
        }
        Some(MappingConfig {
            identifier_system: self.identifier_system.clone(),
            gateway_serial: self.gateway_serial.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_problem_reported() {
        let mut problems = Problems::new();
        let ok = RawMappingConfig::default()
            .validate("fhir", &mut problems)
            .expect("defaults are valid");
        assert!(problems.is_empty());
        assert_eq!(ok, MappingConfig::default());

        let raw: RawMappingConfig =
            toml::from_str("identifier_system = \"my-system\"\ngateway_serial = \"\"")
                .expect("parses");
        let mut problems = Problems::new();
        assert!(raw.validate("fhir", &mut problems).is_none());
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["fhir.identifier_system", "fhir.gateway_serial"]);
        assert!(toml::from_str::<RawMappingConfig>("identifer_system = \"urn:x\"").is_err());
    }
}
