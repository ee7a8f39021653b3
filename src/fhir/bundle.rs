//! Bundles of upload units.
//!
//! Layout: every distinct Device first (the gateway and each measuring device once, by
//! conditional create: `POST Device` with `ifNoneExist: identifier=system|value`), then one
//! entry per unit in the order given. Devices get `urn:uuid:` fullUrls derived from their key
//! identifier, and every Observation references its devices by those fullUrls, so the same
//! Observation text works in every bundle. In a **transaction** the server resolves the
//! urn:uuid references to the created or matched Device (FHIR R4 §3.1.0.11.2). In a **batch**
//! entries are independent, and not every server resolves references between batch entries;
//! use transaction mode unless the server is known to (see docs/MAPPING.md, "Bundles").
//!
//! Observations are written by conditional create (`POST` + `ifNoneExist` on the
//! identifier) or by update-as-create (`PUT Observation/{deterministic id}`), so a retried
//! bundle never duplicates a reading.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::value::RawValue;

use super::identity::{device_full_url, if_none_exist, observation_full_url};
use super::{Identifier, UploadUnit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleType {
    Batch,
    Transaction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// `POST Observation` with `ifNoneExist: identifier=system|value`.
    ConditionalCreate,
    /// `PUT Observation/{id}` with the deterministic id (update-as-create).
    Put,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleOptions {
    pub bundle_type: BundleType,
    pub write_mode: WriteMode,
}

/// A bundle ready to send.
#[derive(Debug, Clone)]
pub struct BuiltBundle {
    /// The Bundle JSON text with exact decimals. Serialises verbatim with serde_json (e.g.
    /// `reqwest::RequestBuilder::json(&built.json)`); parse `json.get()` to inspect it.
    pub json: Box<RawValue>,
    /// `observation_entries[i]` = index in `Bundle.entry` of `units[i]`'s Observation, to map
    /// the per-entry responses back to units.
    pub observation_entries: Vec<usize>,
    /// `status_entries[i]` = index of `units[i]`'s status-bits Observation, if it has one
    /// (written right after its measurement, the same way).
    pub status_entries: Vec<Option<usize>>,
}

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

/// A resource's JSON text: the unit's own, or a PUT body with the id spliced in.
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

fn raw(text: &str) -> &RawValue {
    serde_json::from_str(text).expect("invariant: UploadUnit JSON is checked when constructed")
}

pub fn build_bundle(units: &[UploadUnit], opts: &BundleOptions) -> BuiltBundle {
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    for unit in units {
        for (identifier, text) in [
            (unit.gateway_identifier(), unit.gateway_json()),
            (unit.device_identifier(), unit.device_json()),
        ] {
            if seen.insert(identifier.clone()) {
                entries.push(Entry {
                    full_url: device_full_url(identifier),
                    resource: Resource::Borrowed(raw(text)),
                    request: Request {
                        method: "POST",
                        url: "Device".into(),
                        if_none_exist: Some(if_none_exist(identifier)),
                    },
                });
            }
        }
    }
    let mut observation_entries = Vec::with_capacity(units.len());
    let mut status_entries = Vec::with_capacity(units.len());
    for unit in units {
        observation_entries.push(entries.len());
        entries.push(observation_entry(
            unit.observation_json(),
            unit.identifier(),
            unit.id(),
            opts.write_mode,
        ));
        status_entries.push(unit.status_observation().map(|status| {
            entries.push(observation_entry(
                &status.observation,
                &status.identifier,
                &status.id,
                opts.write_mode,
            ));
            entries.len() - 1
        }));
    }
    let bundle = Bundle {
        resource_type: "Bundle",
        kind: match opts.bundle_type {
            BundleType::Batch => "batch",
            BundleType::Transaction => "transaction",
        },
        entry: entries,
    };
    let text =
        serde_json::to_string(&bundle).expect("invariant: bundle of valid JSON parts serialises");
    BuiltBundle {
        json: RawValue::from_string(text).expect("invariant: serde_json output is JSON"),
        observation_entries,
        status_entries,
    }
}

/// One Observation entry: conditional create on its identifier, or PUT with its id (spliced
/// into the stored text, which has none).
fn observation_entry<'a>(
    text: &'a str,
    identifier: &Identifier,
    id: &str,
    mode: WriteMode,
) -> Entry<'a> {
    let (resource, request) = match mode {
        WriteMode::ConditionalCreate => (
            Resource::Borrowed(raw(text)),
            Request {
                method: "POST",
                url: "Observation".into(),
                if_none_exist: Some(if_none_exist(identifier)),
            },
        ),
        WriteMode::Put => {
            let rest = text.strip_prefix('{').unwrap_or(text);
            let body = RawValue::from_string(format!("{{\"id\":\"{id}\",{rest}"))
                .expect("invariant: a hex id spliced into a JSON object stays JSON");
            (
                Resource::Owned(body),
                Request {
                    method: "PUT",
                    url: format!("Observation/{id}"),
                    if_none_exist: None,
                },
            )
        }
    };
    Entry {
        full_url: observation_full_url(id),
        resource,
        request,
    }
}
