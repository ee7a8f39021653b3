//! A segment's bookkeeping as sled stores it: the exact counters and the ack watermark.
//!
//! ## The state value (`b"Mcounters"`, since round 6 of issue #5)
//! ```text
//! next_id ready ready_bytes dead dead_bytes quarantined acked_below   crc32
//! 7 × u64 little-endian                                               u32 LE  = 60 bytes
//! ```
//! The counters and the ack watermark share one value and one CRC-32, so an ack in order —
//! which changes only these — is ONE sled `insert`, atomic by itself. It used to be a sled
//! batch (counters and a separate watermark key), and every sled batch seals its log buffer:
//! sled then hands the write to its I/O thread pool, whose `notify_all` wakes all of its
//! idle threads (≈ 14 thread wake-ups per batch measured); with the uploader's grouped acks
//! that was ≈ 12 % of its CPU (docs/PERFORMANCE.md, "Round 6").
//!
//! ## Older forms, still read
//! - 52 bytes under `b"Mcounters"`: the six counters and their CRC-32 alone (also the form of
//!   a sealed segment's `summary`, [`Counters::encode`]); the watermark is then the 12-byte
//!   value under `b"Macked_below"` (u64 LE + CRC-32; absent = 0). The next write of the
//!   state removes that key.
//! - A gateway older than round 6 reads a 60-byte state as damaged counters and recounts,
//!   with the watermark it last wrote (or 0): the records acked since are uploaded again,
//!   which is harmless (uploads are idempotent).

/// Length of the state value (see the module doc).
const STATE_LEN: usize = 60;
/// Length of the older counters-only value.
const COUNTERS_LEN: usize = 52;

/// Exact counts, stored with every change they describe (see [`encode_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counters {
    pub next_id: u64,
    pub ready: u64,
    pub ready_bytes: u64,
    pub dead: u64,
    pub dead_bytes: u64,
    pub quarantined: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            next_id: 1,
            ready: 0,
            ready_bytes: 0,
            dead: 0,
            dead_bytes: 0,
            quarantined: 0,
        }
    }
}

impl Counters {
    /// The counters of an empty segment whose first id is `first`.
    pub fn starting_at(first: u64) -> Self {
        Self {
            next_id: first,
            ..Self::default()
        }
    }

    /// Records of any state the segment still holds.
    pub fn held(&self) -> u64 {
        self.ready + self.dead + self.quarantined
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(52);
        for v in [
            self.next_id,
            self.ready,
            self.ready_bytes,
            self.dead,
            self.dead_bytes,
            self.quarantined,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 52 {
            return None;
        }
        let (body, crc) = bytes.split_at(48);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return None;
        }
        let v: Vec<u64> = body
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        Some(Self {
            next_id: v[0],
            ready: v[1],
            ready_bytes: v[2],
            dead: v[3],
            dead_bytes: v[4],
            quarantined: v[5],
        })
    }
}

/// The state value of `counters` with the watermark `acked_below`.
pub(super) fn encode_state(counters: &Counters, acked_below: u64) -> Vec<u8> {
    let mut out = counters.encode();
    out.truncate(COUNTERS_LEN - 4);
    out.extend_from_slice(&acked_below.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// What a stored `b"Mcounters"` value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StoredState {
    /// The state value: counters and watermark.
    State(Counters, u64),
    /// The older counters-only value: the watermark is under its own key.
    CountersOnly(Counters),
    /// Neither form, or a failed checksum: recount.
    Damaged,
}

pub(super) fn decode_state(raw: &[u8]) -> StoredState {
    match raw.len() {
        STATE_LEN => {
            let (body, crc) = raw.split_at(STATE_LEN - 4);
            if crc32fast::hash(body).to_le_bytes() != crc {
                return StoredState::Damaged;
            }
            let word =
                |i: usize| u64::from_le_bytes(body[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            StoredState::State(
                Counters {
                    next_id: word(0),
                    ready: word(1),
                    ready_bytes: word(2),
                    dead: word(3),
                    dead_bytes: word(4),
                    quarantined: word(5),
                },
                word(6),
            )
        }
        COUNTERS_LEN => {
            Counters::decode(raw).map_or(StoredState::Damaged, StoredState::CountersOnly)
        }
        _ => StoredState::Damaged,
    }
}

/// The older watermark value (`b"Macked_below"`): u64 LE + CRC-32. `None` if damaged.
pub(super) fn decode_legacy_watermark(raw: &[u8]) -> Option<u64> {
    let (body, crc) = (raw.get(..8)?, raw.get(8..)?);
    (raw.len() == 12 && crc32fast::hash(body).to_le_bytes() == crc)
        .then(|| u64::from_le_bytes(body.try_into().unwrap_or([0; 8])))
}

/// The older watermark value, as gateways before round 6 wrote it (for tests of the upgrade).
#[cfg(test)]
pub(super) fn encode_legacy_watermark(w: u64) -> Vec<u8> {
    let mut out = w.to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(&out).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Counters {
        Counters {
            next_id: 70_001,
            ready: 12,
            ready_bytes: 34_567,
            dead: 2,
            dead_bytes: 890,
            quarantined: 1,
        }
    }

    #[test]
    fn state_round_trips_and_every_flipped_bit_is_caught() {
        let raw = encode_state(&sample(), 69_990);
        assert_eq!(raw.len(), STATE_LEN);
        assert_eq!(decode_state(&raw), StoredState::State(sample(), 69_990));
        for bit in 0..raw.len() * 8 {
            let mut bad = raw.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_state(&bad), StoredState::Damaged, "bit {bit}");
        }
        assert_eq!(decode_state(&raw[..STATE_LEN - 1]), StoredState::Damaged);
        assert_eq!(decode_state(&[]), StoredState::Damaged);
    }

    #[test]
    fn older_values_are_read() {
        assert_eq!(
            decode_state(&sample().encode()),
            StoredState::CountersOnly(sample())
        );
        let mut bad = sample().encode();
        bad[3] ^= 4;
        assert_eq!(decode_state(&bad), StoredState::Damaged);
        assert_eq!(
            decode_legacy_watermark(&encode_legacy_watermark(5)),
            Some(5)
        );
        let mut bad = encode_legacy_watermark(5);
        bad[0] ^= 1;
        assert_eq!(decode_legacy_watermark(&bad), None);
        assert_eq!(decode_legacy_watermark(&[0; 8]), None);
    }
}
