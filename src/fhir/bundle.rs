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

use serde::Serialize;

use super::identity::{push_device_full_url, push_if_none_exist, push_observation_full_url};
use super::{IdentifierRef, UploadUnit};

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
    /// The Bundle JSON text with exact decimals ([`BundleJson::get`] to read or parse it).
    pub json: BundleJson,
    /// `observation_entries[i]` = index in `Bundle.entry` of `units[i]`'s Observation, to map
    /// the per-entry responses back to units.
    pub observation_entries: Vec<usize>,
    /// `status_entries[i]` = index of `units[i]`'s status-bits Observation, if it has one
    /// (written right after its measurement, the same way).
    pub status_entries: Vec<Option<usize>>,
}

/// A Bundle's JSON text, built by concatenation (module doc) and never re-parsed: its pieces
/// are the units' resource texts, checked when each unit was built, and strings this module
/// escapes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleJson(String);

impl BundleJson {
    pub fn get(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Bytes of one entry besides its resource text (fullUrl, request, keys), for the capacity.
const ENTRY_OVERHEAD: usize = 320;

/// Builds the Bundle text by appending each entry's pieces to one String: the same text
/// serde_json wrote from `{resourceType, type, entry: [{fullUrl, resource, request: {method,
/// url, ifNoneExist?}}]}` (snapshot `bundle_transaction_conditional.json`; property test
/// `bundle_text_equals_the_serde_rendering` in `tests.rs`), without re-reading the resources.
pub fn build_bundle(units: &[UploadUnit], opts: &BundleOptions) -> BuiltBundle {
    let capacity = units
        .iter()
        .map(|u| {
            u.observation_json().len()
                + u.status_observation()
                    .map_or(0, |s| s.observation.len() + ENTRY_OVERHEAD)
                + ENTRY_OVERHEAD
        })
        .sum::<usize>()
        + 2 * (ENTRY_OVERHEAD + units.first().map_or(0, |u| u.device_json().len()))
        + 64;
    let mut out = String::with_capacity(capacity);
    out.push_str(match opts.bundle_type {
        BundleType::Batch => r#"{"resourceType":"Bundle","type":"batch","entry":["#,
        BundleType::Transaction => r#"{"resourceType":"Bundle","type":"transaction","entry":["#,
    });
    let mut entries = 0usize;
    // The Devices already written: a Bundle names few (one hub, a few devices), so a list
    // beats hashing every unit's two identifiers.
    let mut seen: Vec<IdentifierRef<'_>> = Vec::with_capacity(4);
    for unit in units {
        for (identifier, text) in [
            (unit.gateway_identifier(), unit.gateway_json()),
            (unit.device_identifier(), unit.device_json()),
        ] {
            if !seen.contains(&identifier) {
                seen.push(identifier);
                entry_start(&mut out, entries, FullUrl::Device(identifier));
                out.push_str(text);
                request(&mut out, "POST", "Device", Some(identifier));
                entries += 1;
            }
        }
    }
    let mut observation_entries = Vec::with_capacity(units.len());
    let mut status_entries = Vec::with_capacity(units.len());
    for unit in units {
        observation_entries.push(entries);
        observation_entry(
            &mut out,
            entries,
            unit.observation_json(),
            unit.identifier(),
            unit.id(),
            opts.write_mode,
        );
        entries += 1;
        status_entries.push(unit.status_observation().map(|status| {
            observation_entry(
                &mut out,
                entries,
                status.observation,
                status.identifier,
                status.id,
                opts.write_mode,
            );
            entries += 1;
            entries - 1
        }));
    }
    out.push_str("]}");
    BuiltBundle {
        json: BundleJson(out),
        observation_entries,
        status_entries,
    }
}

/// `{"fullUrl":"…","resource":` (after a comma unless it is the first entry).
fn entry_start(out: &mut String, index: usize, full_url: FullUrl<'_>) {
    if index > 0 {
        out.push(',');
    }
    // A `urn:uuid:` needs no JSON escaping.
    out.push_str(r#"{"fullUrl":""#);
    match full_url {
        FullUrl::Device(identifier) => push_device_full_url(out, identifier),
        FullUrl::Observation(id) => push_observation_full_url(out, id),
    }
    out.push_str(r#"","resource":"#);
}

/// Whose `fullUrl` an entry gets (written straight into the Bundle text).
#[derive(Clone, Copy)]
enum FullUrl<'a> {
    Device(IdentifierRef<'a>),
    Observation(&'a str),
}

/// `,"request":{…}}`: closes the entry the resource text left open.
fn request(out: &mut String, method: &str, url: &str, if_none_exist_of: Option<IdentifierRef<'_>>) {
    out.push_str(r#","request":{"method":""#);
    out.push_str(method);
    out.push_str(r#"","url":"#);
    push_json_string(out, url);
    if let Some(identifier) = if_none_exist_of {
        // Percent-encoded: needs no JSON escaping (`push_if_none_exist`).
        out.push_str(r#","ifNoneExist":""#);
        push_if_none_exist(out, identifier);
        out.push('"');
    }
    out.push_str("}}");
}

/// One Observation entry: conditional create on its identifier, or PUT with its id (spliced
/// into the stored text, which has none).
fn observation_entry(
    out: &mut String,
    index: usize,
    text: &str,
    identifier: IdentifierRef<'_>,
    id: &str,
    mode: WriteMode,
) {
    entry_start(out, index, FullUrl::Observation(id));
    match mode {
        WriteMode::ConditionalCreate => {
            out.push_str(text);
            request(out, "POST", "Observation", Some(identifier));
        }
        WriteMode::Put => {
            let rest = text.strip_prefix('{').unwrap_or(text);
            out.push_str(r#"{"id":"#);
            push_json_string(out, id);
            if !rest.trim_start().starts_with('}') {
                out.push(',');
            }
            out.push_str(rest);
            request(out, "PUT", &format!("Observation/{id}"), None);
        }
    }
}

/// Appends `s` as a JSON string literal, escaped exactly as serde_json escapes it (`"`, `\`
/// and control characters; `\u00xx` with lowercase hex for those without a short form).
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}
