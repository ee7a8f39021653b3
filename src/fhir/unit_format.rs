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

use super::unit::{FIELD_COUNT, Field};
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
    let present = if status.is_some() {
        FIELD_COUNT
    } else {
        BASE_FIELDS
    };
    let mut fields: Vec<(&'static str, &str)> = (0..present)
        .map(|i| (FIELD_NAMES[i], unit.field_text(i)))
        .collect();
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

/// Reads a queue payload it owns, like [`decode_unit`] but keeping a format-1 payload's buffer
/// as the unit's text instead of copying it (the uploader's path).
pub fn decode_unit_owned(payload: Vec<u8>) -> Result<UploadUnit, UnitFormatError> {
    if payload.first() == Some(&UNIT_MAGIC) {
        decode_v1_owned(payload)
    } else {
        decode_unit(&payload)
    }
}

/// Reads a queue payload: format 1, or the JSON of units queued by older gateways.
pub fn decode_unit(payload: &[u8]) -> Result<UploadUnit, UnitFormatError> {
    match payload.first() {
        None => Err(UnitFormatError::Empty),
        // One decoder for format 1: a borrowed payload is copied once, as `pack` would.
        Some(&UNIT_MAGIC) => decode_v1_owned(payload.to_vec()),
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
    match decode_v1_owned(payload.to_vec()).map(|unit| serde_json::to_vec(&unit)) {
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

    /// A length-prefixed field's bytes (UTF-8 is checked by the caller).
    fn field(&mut self, name: &'static str) -> Result<&'a [u8], UnitFormatError> {
        let len = self.u32(name)?;
        let len = usize::try_from(len).map_err(|_| UnitFormatError::Truncated(name))?;
        self.take(len, name)
    }
}

/// The field names of format 1, in their order (`Field`'s order).
const FIELD_NAMES: [&str; FIELD_COUNT] = [
    "observation",
    "device",
    "gateway",
    "identifier system",
    "identifier value",
    "id",
    "device identifier system",
    "device identifier value",
    "gateway identifier system",
    "gateway identifier value",
    "status observation",
    "status identifier system",
    "status identifier value",
    "status id",
];
/// Fields that hold a resource's JSON text: only their outer braces are checked (module doc:
/// why no full parse).
const OBJECT_FIELDS: [usize; 4] = [
    Field::Observation as usize,
    Field::Device as usize,
    Field::Gateway as usize,
    Field::StatusObservation as usize,
];
/// Fields present without the status flag: those before the status Observation.
const BASE_FIELDS: usize = Field::StatusObservation as usize;

/// A format-1 payload cut into its fields, every check made except UTF-8.
struct Framed<'a> {
    /// Each field's bytes (the status fields empty without `has_status`).
    fields: [&'a [u8]; FIELD_COUNT],
    has_status: bool,
    source: Option<(&'a [u8], u32)>,
}

fn frame_v1(payload: &[u8]) -> Result<Framed<'_>, UnitFormatError> {
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
    let has_status = flags & HAS_STATUS != 0;
    let present = if has_status { FIELD_COUNT } else { BASE_FIELDS };
    let mut fields: [&[u8]; FIELD_COUNT] = [&[]; FIELD_COUNT];
    for (i, field) in fields.iter_mut().enumerate().take(present) {
        *field = r.field(FIELD_NAMES[i])?;
        let is_object = OBJECT_FIELDS.contains(&i);
        if is_object && (field.len() < 2 || field[0] != b'{' || field[field.len() - 1] != b'}') {
            return Err(UnitFormatError::NotJsonObject(FIELD_NAMES[i]));
        }
    }
    let source = if flags & HAS_SOURCE_RECORD != 0 {
        Some((
            r.field("source record device")?,
            r.u32("source record sequence")?,
        ))
    } else {
        None
    };
    if !r.rest.is_empty() {
        return Err(UnitFormatError::TrailingBytes(r.rest.len()));
    }
    Ok(Framed {
        fields,
        has_status,
        source,
    })
}

/// Decodes a format-1 payload it owns without copying it (issue #5: the uploader decodes every
/// record it sends; [`decode_unit`] copies a borrowed payload once and comes here too): the
/// payload's buffer becomes the unit's text. The framing bytes (header,
/// lengths, the source record's sequence) are overwritten with ASCII spaces, so the whole
/// buffer is UTF-8 exactly when every field is — one check over the buffer instead of one per
/// field — and every field, bounded by ASCII bytes or the buffer's ends, starts and ends on a
/// character boundary. A UTF-8 error names the first field (in payload order) that is not UTF-8.
fn decode_v1_owned(mut payload: Vec<u8>) -> Result<UploadUnit, UnitFormatError> {
    let framed = frame_v1(&payload)?;
    if u32::try_from(payload.len()).is_err() {
        return Err(UnitFormatError::TooLong("unit"));
    }
    let base = payload.as_ptr() as usize;
    let mut spans = [[0u32; 2]; FIELD_COUNT];
    for (span, bytes) in spans.iter_mut().zip(framed.fields) {
        if !bytes.is_empty() {
            // Inside `payload`, whose length fits a u32 (checked above).
            let start = bytes.as_ptr() as usize - base;
            *span = [start as u32, (start + bytes.len()) as u32];
        }
    }
    let has_status = framed.has_status;
    let source = framed.source.map(|(device, sequence)| {
        let start = device.as_ptr() as usize - base;
        (start..start + device.len(), sequence)
    });
    let source_span = source.as_ref().map(|(span, _)| span.clone());
    // Blank everything that is not field text (fields and the device follow in payload order).
    let mut at = 0usize;
    let texts = spans.iter().map(|[s, e]| *s as usize..*e as usize);
    for range in texts.chain(source_span).filter(|r| !r.is_empty()) {
        payload[at..range.start].fill(b' ');
        at = range.end;
    }
    let len = payload.len();
    payload[at..len].fill(b' ');
    let text = String::from_utf8(payload).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let field = spans
            .iter()
            .position(|[s, e]| (*s as usize..*e as usize).contains(&bad))
            .map_or("source record device", |i| FIELD_NAMES[i]);
        UnitFormatError::NotUtf8(field)
    })?;
    // Checked with the rest of the buffer, and bounded by blanked bytes: a whole string.
    let source_record = source.map(|(span, sequence)| SourceRecord {
        device: text.get(span).unwrap_or_default().to_owned(),
        sequence,
    });
    Ok(UploadUnit::from_framed(
        text,
        spans,
        has_status,
        source_record,
    ))
}
