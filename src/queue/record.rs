//! The stored record format (pure: no I/O).
//!
//! Every value starts with a 1-byte format version and a CRC-32 (IEEE, little-endian) computed
//! over the record's key id (8 bytes big-endian) followed by everything after the checksum, so
//! a record copied under the wrong key is caught as well as flipped bits. Integers are
//! little-endian; times are Unix milliseconds (0 = none).
//!
//! Waiting record, version 1 (29-byte header):
//! `version u8 | crc u32 | attempts u32 | enqueued_ms u64 | nacked_ms u64 | retry_ms u32 | payload`
//!
//! Dead letter, version 1 (29-byte header + reason):
//! `version u8 | crc u32 | attempts u32 | enqueued_ms u64 | dead_ms u64 | reason_len u32 | reason (UTF-8) | payload`

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Current format version of both record kinds.
pub const VERSION: u8 = 1;
/// Header bytes before the payload of a waiting record.
pub const HEADER_LEN: usize = 29;

/// Why stored bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record shorter than its header ({0} bytes)")]
    Truncated(usize),
    #[error("unknown record format version {0}")]
    Version(u8),
    #[error("checksum mismatch")]
    Checksum,
    #[error("bad dead-letter reason")]
    Reason,
}

/// A waiting record's metadata and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub attempts: u32,
    pub enqueued_ms: u64,
    /// Wall-clock ms of the last nack (0 = never nacked).
    pub nacked_ms: u64,
    /// Delay asked for by the last nack, in ms.
    pub retry_ms: u32,
    pub payload: Vec<u8>,
}

/// A dead letter's metadata and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDead {
    pub attempts: u32,
    pub enqueued_ms: u64,
    pub dead_ms: u64,
    pub reason: String,
    pub payload: Vec<u8>,
}

fn checksum(id: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&id.to_be_bytes());
    hasher.update(body);
    hasher.finalize()
}

fn seal(id: u64, body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(VERSION);
    out.extend_from_slice(&checksum(id, &body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Checks version and checksum; returns the body after the checksum.
fn open(id: u64, bytes: &[u8], header: usize) -> Result<&[u8], DecodeError> {
    if bytes.len() < header {
        return Err(DecodeError::Truncated(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(DecodeError::Version(bytes[0]));
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let body = &bytes[5..];
    if checksum(id, body) != stored {
        return Err(DecodeError::Checksum);
    }
    Ok(body)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Stored {
    pub fn encode(&self, id: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(HEADER_LEN - 5 + self.payload.len());
        body.extend_from_slice(&self.attempts.to_le_bytes());
        body.extend_from_slice(&self.enqueued_ms.to_le_bytes());
        body.extend_from_slice(&self.nacked_ms.to_le_bytes());
        body.extend_from_slice(&self.retry_ms.to_le_bytes());
        body.extend_from_slice(&self.payload);
        seal(id, body)
    }

    pub fn decode(id: u64, bytes: &[u8]) -> Result<Self, DecodeError> {
        let body = open(id, bytes, HEADER_LEN)?;
        Ok(Self {
            attempts: u32_at(body, 0),
            enqueued_ms: u64_at(body, 4),
            nacked_ms: u64_at(body, 12),
            retry_ms: u32_at(body, 20),
            payload: body[24..].to_vec(),
        })
    }
}

impl StoredDead {
    pub fn encode(&self, id: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(24 + self.reason.len() + self.payload.len());
        body.extend_from_slice(&self.attempts.to_le_bytes());
        body.extend_from_slice(&self.enqueued_ms.to_le_bytes());
        body.extend_from_slice(&self.dead_ms.to_le_bytes());
        let reason_len = u32::try_from(self.reason.len()).unwrap_or(u32::MAX);
        body.extend_from_slice(&reason_len.to_le_bytes());
        body.extend_from_slice(&self.reason.as_bytes()[..reason_len as usize]);
        body.extend_from_slice(&self.payload);
        seal(id, body)
    }

    pub fn decode(id: u64, bytes: &[u8]) -> Result<Self, DecodeError> {
        let body = open(id, bytes, HEADER_LEN)?;
        let reason_len = u32_at(body, 20) as usize;
        let rest = &body[24..];
        if reason_len > rest.len() {
            return Err(DecodeError::Reason);
        }
        let reason = std::str::from_utf8(&rest[..reason_len])
            .map_err(|_| DecodeError::Reason)?
            .to_owned();
        Ok(Self {
            attempts: u32_at(body, 0),
            enqueued_ms: u64_at(body, 4),
            dead_ms: u64_at(body, 12),
            reason,
            payload: rest[reason_len..].to_vec(),
        })
    }
}

/// Unix milliseconds of a wall-clock time (0 before 1970).
pub fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stored {
        Stored {
            attempts: 3,
            enqueued_ms: 1_700_000_000_123,
            nacked_ms: 1_700_000_100_000,
            retry_ms: 30_000,
            payload: br#"{"resourceType":"Observation"}"#.to_vec(),
        }
    }

    #[test]
    fn waiting_record_round_trips_with_a_29_byte_header() {
        let rec = sample();
        let bytes = rec.encode(42);
        assert_eq!(bytes.len(), HEADER_LEN + rec.payload.len());
        assert_eq!(Stored::decode(42, &bytes), Ok(rec));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = sample().encode(7);
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[byte] ^= 1 << bit;
                assert!(Stored::decode(7, &bad).is_err(), "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn record_under_another_key_is_detected() {
        let bytes = sample().encode(7);
        assert_eq!(Stored::decode(8, &bytes), Err(DecodeError::Checksum));
    }

    #[test]
    fn truncated_and_unknown_versions_are_errors() {
        let bytes = sample().encode(1);
        assert_eq!(
            Stored::decode(1, &bytes[..10]),
            Err(DecodeError::Truncated(10))
        );
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(Stored::decode(1, &v2), Err(DecodeError::Version(2)));
    }

    #[test]
    fn dead_letter_round_trips() {
        let dead = StoredDead {
            attempts: 5,
            enqueued_ms: 1,
            dead_ms: 2,
            reason: r#"{"resourceType":"OperationOutcome"}"#.into(),
            payload: b"{}".to_vec(),
        };
        let bytes = dead.encode(9);
        assert_eq!(StoredDead::decode(9, &bytes), Ok(dead));
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x10;
        assert_eq!(StoredDead::decode(9, &bad), Err(DecodeError::Checksum));
    }
}
