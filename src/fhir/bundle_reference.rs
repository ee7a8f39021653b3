//! The Bundle text as `build_bundle` rendered it before round 3 of issue #5: serde structs
//! around each resource's `RawValue`, every resource text parsed again. Kept as the reference
//! the concatenating builder must equal byte for byte (`unit_format_tests.rs`) and as the
//! baseline of the codec comparison in `benches/upload.rs`. Not used by the gateway.

use serde::Serialize;
use serde_json::value::RawValue;

use super::identity::{device_full_url, if_none_exist, observation_full_url};
use super::{BundleOptions, BundleType, IdentifierRef, UploadUnit, WriteMode};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    method: &'static str,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    if_none_exist: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    full_url: String,
    resource: Resource<'a>,
    request: Request,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Resource<'a> {
    Borrowed(&'a RawValue),
    Owned(Box<RawValue>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bundle<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    entry: Vec<Entry<'a>>,
}

/// The Bundle as serde_json writes it; `None` if a resource text is not JSON.
pub fn serde_bundle_text(units: &[UploadUnit], opts: &BundleOptions) -> Option<String> {
    let mut entry = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for unit in units {
        for (identifier, text) in [
            (unit.gateway_identifier(), unit.gateway_json()),
            (unit.device_identifier(), unit.device_json()),
        ] {
            if seen.insert(identifier) {
                entry.push(Entry {
                    full_url: device_full_url(identifier),
                    resource: Resource::Borrowed(serde_json::from_str(text).ok()?),
                    request: Request {
                        method: "POST",
                        url: "Device".into(),
                        if_none_exist: Some(if_none_exist(identifier)),
                    },
                });
            }
        }
    }
    for unit in units {
        let text = unit.observation_json();
        entry.push(observation(
            text,
            unit.identifier(),
            unit.id(),
            opts.write_mode,
        )?);
        if let Some(s) = unit.status_observation() {
            entry.push(observation(
                s.observation,
                s.identifier,
                s.id,
                opts.write_mode,
            )?);
        }
    }
    serde_json::to_string(&Bundle {
        resource_type: "Bundle",
        kind: match opts.bundle_type {
            BundleType::Batch => "batch",
            BundleType::Transaction => "transaction",
        },
        entry,
    })
    .ok()
}

fn observation<'a>(
    text: &'a str,
    identifier: IdentifierRef<'_>,
    id: &str,
    mode: WriteMode,
) -> Option<Entry<'a>> {
    let (resource, request) = match mode {
        WriteMode::ConditionalCreate => (
            Resource::Borrowed(serde_json::from_str(text).ok()?),
            Request {
                method: "POST",
                url: "Observation".into(),
                if_none_exist: Some(if_none_exist(identifier)),
            },
        ),
        WriteMode::Put => {
            let rest = text.strip_prefix('{').unwrap_or(text);
            (
                Resource::Owned(RawValue::from_string(format!("{{\"id\":\"{id}\",{rest}")).ok()?),
                Request {
                    method: "PUT",
                    url: format!("Observation/{id}"),
                    if_none_exist: None,
                },
            )
        }
    };
    Some(Entry {
        full_url: observation_full_url(id),
        resource,
        request,
    })
}
