//! The queued form of an [`UploadUnit`] (issue #5): what `runtime::build` appends to the
//! durable queue and the uploader reads back for every record it sends.
//!
//! ## Format 1 (written since round 3 of issue #5)
//! ```text
//! 0xF5 0x01 flags field…
//! ```
//! - `0xF5` marks the format: it never occurs in UTF-8, so a unit can never be mistaken for
//!   text (the older JSON payloads start with `{`); `0x01` is the format version.
//! - `flags`: bit 0 = a status-bits Observation follows, bit 1 = a source record follows;
//!   other bits must be 0 (a newer writer's unit is refused, not misread).
//! - Each field is a little-endian `u32` byte length followed by that many bytes of UTF-8, in
//!   this order: observation JSON, measuring-device JSON, gateway-device JSON, Observation
//!   identifier system, value, Observation id, device identifier system, value, gateway
//!   identifier system, value; with bit 0: status Observation JSON, its identifier system,
//!   value, its id; with bit 1: the record's device address, then its sequence as a
//!   little-endian `u32` (no length). Nothing may follow.
//!
//! The resources are the JSON texts themselves, side by side, not JSON strings inside JSON, so
//! reading a unit is bounds-checked slicing plus a UTF-8 check, and a Bundle is built by
//! concatenating them ([`super::bundle`]).
//!
//! **Why the JSON texts are not parsed again when read.** They were rendered by the mapper and
//! checked to be JSON objects by [`UploadUnit`]'s constructor before this encoder ever saw them,
//! and the queue guards every record with a CRC-32 (`src/queue/record.rs`), so a stored unit
//! that decodes is the unit that was written. What the decoder still refuses — truncation,
//! a wrong length, bad UTF-8, unknown flags or version, trailing bytes, a resource text that
//! does not start with `{` and end with `}` — is an error, which the uploader turns into a
//! dead letter; it never panics (property test in `tests.rs`). Should a hand-made payload still
//! carry broken JSON inside well-formed framing, the server refuses that record and it is
//! dead-lettered like any refused record.
//!
//! ## Format 0 (JSON, read for units queued before round 3)
//! `serde_json` of [`UploadUnit`]: an object whose resources are JSON strings. Records queued
//! by an older gateway stay in the queue across an upgrade, so [`decode_unit`] keeps reading
//! them (fully validated: that path is not hot). `src/fhir/fixtures/upload_units_json_v0.ndjson`
//! holds such payloads as the old encoder (`serde_json::to_vec(&unit)`) wrote them.

use std::borrow::Cow;

use super::unit::{IdentifierRef, StatusRef, UnitParts};
use super::{SourceRecord, UploadUnit};

/// First byte of format 1 (never part of UTF-8 text).
pub const UNIT_MAGIC: u8 = 0xF5;
/// The format version this gateway writes and reads.
pub const UNIT_VERSION: u8 = 1;

const HAS_STATUS: u8 = 1;
const HAS_SOURCE_RECORD: u8 = 2;

/// Why a queue payload is not an upload unit. Permanent for that payload (dead letter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitFormatError {
    #[error("empty payload")]
    Empty,
    #[error("payload is neither a format-1 unit nor a JSON object (first byte {0:#04x})")]
    UnknownFormat(u8),
    #[error("unit format version {0} is not one this gateway reads (it reads {UNIT_VERSION})")]
    UnknownVersion(u8),
    #[error("unit flags {0:#04x} name fields this gateway does not know")]
    UnknownFlags(u8),
    #[error("unit ends inside {0}")]
    Truncated(&'static str),
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("{0} is not a JSON object text")]
    NotJsonObject(&'static str),
    #[error("{0} bytes follow the last field")]
    TrailingBytes(usize),
    #[error("field {0} is longer than a unit can hold")]
    TooLong(&'static str),
    #[error("JSON unit: {0}")]
    Json(String),
}

/// Encodes a unit in format 1 (the queue payload).
pub fn encode_unit(unit: &UploadUnit) -> Result<Vec<u8>, UnitFormatError> {
    let status = unit.status_observation();
    let source = unit.source_record();
    let identifier = unit.identifier();
    let device = unit.device_identifier();
    let gateway = unit.gateway_identifier();
    let mut fields: Vec<(&'static str, &str)> = vec![
        ("observation", unit.observation_json()),
        ("device", unit.device_json()),
        ("gateway", unit.gateway_json()),
        ("identifier system", identifier.system),
        ("identifier value", identifier.value),
        ("id", unit.id()),
        ("device identifier system", device.system),
        ("device identifier value", device.value),
        ("gateway identifier system", gateway.system),
        ("gateway identifier value", gateway.value),
    ];
    if let Some(s) = &status {
        fields.extend([
            ("status observation", s.observation),
            ("status identifier system", s.identifier.system),
            ("status identifier value", s.identifier.value),
            ("status id", s.id),
        ]);
    }
    if let Some(r) = source {
        fields.push(("source record device", &r.device));
    }
    let capacity = 3 + 4 + fields.iter().map(|(_, t)| 4 + t.len()).sum::<usize>();
    let mut out = Vec::with_capacity(capacity);
    let mut flags = 0;
    if status.is_some() {
        flags |= HAS_STATUS;
    }
    if source.is_some() {
        flags |= HAS_SOURCE_RECORD;
    }
    out.extend_from_slice(&[UNIT_MAGIC, UNIT_VERSION, flags]);
    for (name, text) in fields {
        let len = u32::try_from(text.len()).map_err(|_| UnitFormatError::TooLong(name))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    if let Some(r) = source {
        out.extend_from_slice(&r.sequence.to_le_bytes());
    }
    Ok(out)
}

/// Reads a queue payload: format 1, or the JSON of units queued by older gateways.
pub fn decode_unit(payload: &[u8]) -> Result<UploadUnit, UnitFormatError> {
    match payload.first() {
        None => Err(UnitFormatError::Empty),
        Some(&UNIT_MAGIC) => decode_v1(payload),
        Some(_) if is_json_object_start(payload) => {
            serde_json::from_slice(payload).map_err(|e| UnitFormatError::Json(e.to_string()))
        }
        Some(&first) => Err(UnitFormatError::UnknownFormat(first)),
    }
}

/// A payload as JSON for people and exports (`queue show`, `queue export`): a format-1 unit
/// is rendered as the JSON form older gateways queued; anything else is returned as it is.
pub fn payload_as_json(payload: &[u8]) -> Cow<'_, [u8]> {
    if payload.first() != Some(&UNIT_MAGIC) {
        return Cow::Borrowed(payload);
    }
    match decode_v1(payload).map(|unit| serde_json::to_vec(&unit)) {
        Ok(Ok(json)) => Cow::Owned(json),
        _ => Cow::Borrowed(payload),
    }
}

fn is_json_object_start(payload: &[u8]) -> bool {
    payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// Bounds-checked reader over a format-1 payload.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, name: &'static str) -> Result<&'a [u8], UnitFormatError> {
        if n > self.rest.len() {
            return Err(UnitFormatError::Truncated(name));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self, name: &'static str) -> Result<u32, UnitFormatError> {
        let bytes = self.take(4, name)?;
        let mut le = [0u8; 4];
        le.copy_from_slice(bytes);
        Ok(u32::from_le_bytes(le))
    }

    fn str(&mut self, name: &'static str) -> Result<&'a str, UnitFormatError> {
        let len = self.u32(name)?;
        let len = usize::try_from(len).map_err(|_| UnitFormatError::Truncated(name))?;
        let bytes = self.take(len, name)?;
        std::str::from_utf8(bytes).map_err(|_| UnitFormatError::NotUtf8(name))
    }

    /// A resource text: only its outer braces are checked (module doc: why no full parse).
    fn object(&mut self, name: &'static str) -> Result<&'a str, UnitFormatError> {
        let text = self.str(name)?;
        if text.len() < 2 || !text.starts_with('{') || !text.ends_with('}') {
            return Err(UnitFormatError::NotJsonObject(name));
        }
        Ok(text)
    }

    fn identifier(
        &mut self,
        system: &'static str,
        value: &'static str,
    ) -> Result<IdentifierRef<'a>, UnitFormatError> {
        Ok(IdentifierRef {
            system: self.str(system)?,
            value: self.str(value)?,
        })
    }
}

fn decode_v1(payload: &[u8]) -> Result<UploadUnit, UnitFormatError> {
    let mut r = Reader { rest: payload };
    let &[_magic, version, flags] = r.take(3, "header")? else {
        return Err(UnitFormatError::Truncated("header"));
    };
    if version != UNIT_VERSION {
        return Err(UnitFormatError::UnknownVersion(version));
    }
    if flags & !(HAS_STATUS | HAS_SOURCE_RECORD) != 0 {
        return Err(UnitFormatError::UnknownFlags(flags));
    }
    let parts = UnitParts {
        observation: r.object("observation")?,
        device: r.object("device")?,
        gateway: r.object("gateway")?,
        identifier: r.identifier("identifier system", "identifier value")?,
        id: r.str("id")?,
        device_identifier: r.identifier("device identifier system", "device identifier value")?,
        gateway_identifier: r
            .identifier("gateway identifier system", "gateway identifier value")?,
        status: if flags & HAS_STATUS != 0 {
            Some(StatusRef {
                observation: r.object("status observation")?,
                identifier: r.identifier("status identifier system", "status identifier value")?,
                id: r.str("status id")?,
            })
        } else {
            None
        },
        source_record: if flags & HAS_SOURCE_RECORD != 0 {
            Some(SourceRecord {
                device: r.str("source record device")?.to_owned(),
                sequence: r.u32("source record sequence")?,
            })
        } else {
            None
        },
    };
    if !r.rest.is_empty() {
        return Err(UnitFormatError::TrailingBytes(r.rest.len()));
    }
    UploadUnit::pack(parts).map_err(|_| UnitFormatError::TooLong("unit"))
}
