//! Deterministic identities: Observation.identifier (PHD IG style), the resource id for
//! update-as-create (PUT), device identifiers and `urn:uuid:` fullUrls.
//!
//! Everything here is a pure function of its inputs so the same reading always gets the same
//! identifier, id and fullUrls (de-duplication across retries, restarts and re-reads).

use std::fmt::Write as _;

use super::model::Identifier;
use super::unit::IdentifierRef;
use crate::reading::{DeviceIdentity, SourceKind};

/// IEEE EUI-64 System ID identifier system (as used by the PHD IG).
pub const EUI64_SYSTEM: &str = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680";
/// Bluetooth device address identifier system (as used by the PHD IG).
pub const BLUETOOTH_SYSTEM: &str = "http://hl7.org/fhir/sid/eui-48/bluetooth";
/// Identifier systems for addresses that have no public system (serial ports, MQTT ids,
/// the gateway itself): project URNs, unique to this gateway software.
pub const SERIAL_ADDRESS_SYSTEM: &str = "urn:vectorcare:device-address:serial";
pub const MQTT_ADDRESS_SYSTEM: &str = "urn:vectorcare:device-address:mqtt";
pub const GATEWAY_SYSTEM: &str = "urn:vectorcare:gateway";
/// Default Observation.identifier system (overridable with `[fhir] identifier_system`).
pub const DEFAULT_OBSERVATION_SYSTEM: &str = "urn:vectorcare:observation";

/// FHIR limits an identifier value we emit to 128 characters (PHD IG guidance).
pub const MAX_IDENTIFIER_LEN: usize = 128;

pub fn sha256_hex(input: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, input.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A version-8 (custom) UUID from the SHA-256 of `name`: deterministic, RFC 9562 layout.
pub fn deterministic_uuid(name: &str) -> uuid::Uuid {
    deterministic_uuid_of(&[name])
}

/// [`deterministic_uuid`] of the concatenation of `parts` (without building it).
fn deterministic_uuid_of(parts: &[&str]) -> uuid::Uuid {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part.as_bytes());
    }
    let digest = context.finish();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    bytes[6] = (bytes[6] & 0x0F) | 0x80;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    uuid::Uuid::from_bytes(bytes)
}

pub fn urn_uuid(name: &str) -> String {
    let mut out = String::with_capacity(45);
    push_urn_uuid(&mut out, &[name]);
    out
}

/// Appends [`urn_uuid`] of the concatenation of `parts` (the Bundle builder's hot path: no
/// intermediate strings).
pub fn push_urn_uuid(out: &mut String, parts: &[&str]) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push_str("urn:uuid:");
    out.push_str(
        deterministic_uuid_of(parts)
            .hyphenated()
            .encode_lower(&mut buf),
    );
}

/// "E8-60-0A-FF-FE-79-3E-98".
pub fn eui64_text(id: &[u8; 8]) -> String {
    id.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join("-")
}

/// The device's identifiers, the most stable first (EUI-64 system id, then transport
/// address). The first one is the key used for conditional create and the fullUrl.
pub fn device_identifiers(device: &DeviceIdentity) -> Vec<Identifier> {
    let mut ids = Vec::new();
    if let Some(system_id) = &device.system_id {
        ids.push(Identifier {
            system: EUI64_SYSTEM.into(),
            value: eui64_text(system_id),
        });
    }
    let (system, value) = match device.source {
        SourceKind::Ble => (
            BLUETOOTH_SYSTEM,
            device.address.to_ascii_uppercase().replace(':', "-"),
        ),
        SourceKind::Serial => (SERIAL_ADDRESS_SYSTEM, device.address.clone()),
        SourceKind::Mqtt => (MQTT_ADDRESS_SYSTEM, device.address.clone()),
    };
    ids.push(Identifier {
        system: system.into(),
        value,
    });
    ids
}

/// The device key used inside Observation identifiers.
pub fn device_key(device: &DeviceIdentity) -> String {
    match &device.system_id {
        Some(id) => eui64_text(id),
        None => device.address.to_ascii_uppercase().replace(':', "-"),
    }
}

/// Keeps a readable identifier value when it fits, else a SHA-256 digest of it.
pub fn bounded_identifier_value(readable: &str) -> String {
    if readable.len() <= MAX_IDENTIFIER_LEN {
        readable.to_owned()
    } else {
        format!("sha256-{}", sha256_hex(readable))
    }
}

/// The deterministic resource id: 64 lowercase hex characters (FHIR ids allow up to 64 of
/// `[A-Za-z0-9\-\.]`).
pub fn resource_id(identifier: &Identifier) -> String {
    sha256_hex(&format!("{}|{}", identifier.system, identifier.value))
}

/// `identifier=system|value` for `ifNoneExist`, percent-encoding what a query needs.
pub fn if_none_exist<'a>(identifier: impl Into<IdentifierRef<'a>>) -> String {
    let mut out = String::new();
    push_if_none_exist(&mut out, identifier.into());
    out
}

/// Appends [`if_none_exist`]. Its text never needs JSON escaping: everything but ASCII
/// letters, digits and `-._~:/` is percent-encoded, and `=`, `|` need no escape either.
pub fn push_if_none_exist(out: &mut String, identifier: IdentifierRef<'_>) {
    out.push_str("identifier=");
    push_percent_encoded(out, identifier.system);
    out.push('|');
    push_percent_encoded(out, identifier.value);
}

fn push_percent_encoded(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// fullUrl of an Observation in a bundle (from its deterministic id); a status-bits
/// Observation's `derivedFrom` uses it to point at its measurement.
pub fn observation_full_url(id: &str) -> String {
    let mut out = String::with_capacity(45);
    push_observation_full_url(&mut out, id);
    out
}

/// Appends [`observation_full_url`].
pub fn push_observation_full_url(out: &mut String, id: &str) {
    push_urn_uuid(out, &["Observation|", id]);
}

/// fullUrl of a Device within a bundle, derived from its key identifier.
pub fn device_full_url<'a>(identifier: impl Into<IdentifierRef<'a>>) -> String {
    let mut out = String::with_capacity(45);
    push_device_full_url(&mut out, identifier.into());
    out
}

/// Appends [`device_full_url`].
pub fn push_device_full_url(out: &mut String, identifier: IdentifierRef<'_>) {
    push_urn_uuid(out, &["Device|", identifier.system, "|", identifier.value]);
}
