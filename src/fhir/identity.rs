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
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    bytes[6] = (bytes[6] & 0x0F) | 0x80;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    uuid::Uuid::from_bytes(bytes)
}

pub fn urn_uuid(name: &str) -> String {
    format!("urn:uuid:{}", deterministic_uuid(name).hyphenated())
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
    let identifier = identifier.into();
    format!(
        "identifier={}|{}",
        percent_encode(identifier.system),
        percent_encode(identifier.value)
    )
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// fullUrl of an Observation in a bundle (from its deterministic id); a status-bits
/// Observation's `derivedFrom` uses it to point at its measurement.
pub fn observation_full_url(id: &str) -> String {
    urn_uuid(&format!("Observation|{id}"))
}

/// fullUrl of a Device within a bundle, derived from its key identifier.
pub fn device_full_url<'a>(identifier: impl Into<IdentifierRef<'a>>) -> String {
    let identifier = identifier.into();
    urn_uuid(&format!(
        "Device|{}|{}",
        identifier.system, identifier.value
    ))
}
