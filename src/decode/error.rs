//! Typed decode/encode errors. Every decode error names the field and the byte offset (from
//! the start of the characteristic value) where it went wrong, so a `decode` user or a BLE log
//! can point at the faulty byte.

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The value ended inside a field.
    #[error("{field}: truncated at byte {offset} (needs {needed} byte(s), {available} left)")]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// Bytes left over after the last field the flags announce.
    #[error("{field}: {count} unexpected trailing byte(s) at byte {offset}")]
    TrailingBytes {
        field: &'static str,
        offset: usize,
        count: usize,
    },
    /// A reserved value or reserved flag bit (the spec says "reserved for future use").
    #[error("{field}: reserved value {value:#x} at byte {offset}")]
    Reserved {
        field: &'static str,
        offset: usize,
        value: u32,
    },
    /// A value outside the range the spec allows (e.g. month 13).
    #[error("{field}: invalid value {value} at byte {offset} ({reason})")]
    Invalid {
        field: &'static str,
        offset: usize,
        value: u32,
        reason: &'static str,
    },
    /// The E2E-CRC carried in the record does not match the record's bytes.
    #[error(
        "{field}: CRC mismatch at byte {offset} (carried {carried:#06x}, computed {computed:#06x})"
    )]
    CrcMismatch {
        field: &'static str,
        offset: usize,
        carried: u16,
        computed: u16,
    },
    /// The characteristic UUID is not one this gateway decodes.
    #[error("characteristic {uuid:#06x} is not supported")]
    UnsupportedCharacteristic { uuid: u16 },
}

impl DecodeError {
    /// Byte offset of the problem, when it has one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            DecodeError::Truncated { offset, .. }
            | DecodeError::TrailingBytes { offset, .. }
            | DecodeError::Reserved { offset, .. }
            | DecodeError::Invalid { offset, .. }
            | DecodeError::CrcMismatch { offset, .. } => Some(*offset),
            DecodeError::UnsupportedCharacteristic { .. } => None,
        }
    }

    /// Shifts the offset by `base` (a record decoded from the middle of a larger value).
    pub(crate) fn shifted(self, base: usize) -> Self {
        match self {
            DecodeError::Truncated {
                field,
                offset,
                needed,
                available,
            } => DecodeError::Truncated {
                field,
                offset: offset + base,
                needed,
                available,
            },
            DecodeError::TrailingBytes {
                field,
                offset,
                count,
            } => DecodeError::TrailingBytes {
                field,
                offset: offset + base,
                count,
            },
            DecodeError::Reserved {
                field,
                offset,
                value,
            } => DecodeError::Reserved {
                field,
                offset: offset + base,
                value,
            },
            DecodeError::Invalid {
                field,
                offset,
                value,
                reason,
            } => DecodeError::Invalid {
                field,
                offset: offset + base,
                value,
                reason,
            },
            DecodeError::CrcMismatch {
                field,
                offset,
                carried,
                computed,
            } => DecodeError::CrcMismatch {
                field,
                offset: offset + base,
                carried,
                computed,
            },
            other => other,
        }
    }
}

/// Why a typed value could not be encoded (the simulator asked for something the wire format
/// cannot carry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{field}: {reason}")]
    OutOfRange {
        field: &'static str,
        reason: &'static str,
    },
}
