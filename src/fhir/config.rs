//! `[fhir]` mapping section (optional): how Observations are identified and who the
//! patient and gateway are. The lead wires it into the top-level config.

use serde::Deserialize;

use super::GatewayIdentity;
use crate::config::problems::{Problems, join};

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawMappingConfig {
    /// "Patient/123", an absolute Patient URL or a urn:uuid.
    #[serde(default)]
    pub patient: Option<String>,
    /// Observation.identifier system; default `urn:vectorcare:observation`.
    #[serde(default)]
    pub identifier_system: Option<String>,
    /// Gateway Device identifier (default: "vectorcare-gateway").
    #[serde(default)]
    pub gateway_id: Option<String>,
    #[serde(default)]
    pub gateway_serial: Option<String>,
    #[serde(default)]
    pub gateway_name: Option<String>,
}

/// Validated mapping settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingConfig {
    pub patient: Option<String>,
    pub identifier_system: Option<String>,
    pub gateway: GatewayIdentity,
}

impl MappingConfig {
    pub fn map_context(&self) -> super::MapContext {
        super::MapContext {
            patient: self.patient.clone(),
            gateway: self.gateway.clone(),
            identifier_system: self.identifier_system.clone(),
        }
    }
}

impl RawMappingConfig {
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<MappingConfig> {
        let before = problems.len();
        if let Some(p) = &self.patient
            && !super::observation::is_valid_reference(p)
        {
            problems.push(
                join(path, "patient"),
                "not a FHIR reference",
                Some("write Patient/<id> (e.g. Patient/123), an absolute URL or urn:uuid:<uuid>"),
            );
        }
        if let Some(s) = &self.identifier_system
            && !(s.starts_with("urn:") || s.starts_with("http://") || s.starts_with("https://"))
        {
            problems.push(
                join(path, "identifier_system"),
                "not an absolute URI",
                Some("use a urn: or https:// URI that your organisation controls"),
            );
        }
        if self.gateway_id.as_deref().is_some_and(str::is_empty) {
            problems.push(
                join(path, "gateway_id"),
                "must not be empty",
                Some("leave it out for the default or give this hub a stable name"),
            );
        }
        if problems.len() > before {
            return None;
        }
        Some(MappingConfig {
            patient: self.patient.clone(),
            identifier_system: self.identifier_system.clone(),
            gateway: GatewayIdentity {
                id: self
                    .gateway_id
                    .clone()
                    .unwrap_or_else(|| "vectorcare-gateway".into()),
                serial: self.gateway_serial.clone(),
                name: self
                    .gateway_name
                    .clone()
                    .unwrap_or_else(|| "VectorCare Gateway".into()),
            },
        })
    }
}
