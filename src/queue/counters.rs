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

    fn words(&self) -> [u64; 6] {
        [
            self.next_id,
            self.ready,
            self.ready_bytes,
            self.dead,
            self.dead_bytes,
            self.quarantined,
        ]
    }

    fn from_words(w: &[u64]) -> Self {
        Self {
            next_id: w[0],
            ready: w[1],
            ready_bytes: w[2],
            dead: w[3],
            dead_bytes: w[4],
            quarantined: w[5],
        }
    }

    /// The counters-only value (52 bytes): a sealed segment's `summary`, and what gateways
    /// before round 6 stored under `b"Mcounters"`.
    pub fn encode(&self) -> Vec<u8> {
        seal(&self.words())
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        unseal::<6>(bytes).map(|w| Self::from_words(&w))
    }
}

/// Every value here has one layout: `N` little-endian u64 words, then the CRC-32 of them.
fn seal(words: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 8 + 4);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The `N` words of a sealed value; `None` for another length or a failed checksum.
fn unseal<const N: usize>(raw: &[u8]) -> Option<[u64; N]> {
    if raw.len() != N * 8 + 4 {
        return None;
    }
    let (body, crc) = raw.split_at(N * 8);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let mut words = [0u64; N];
    for (w, chunk) in words.iter_mut().zip(body.chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
    }
    Some(words)
}

/// The state value of `counters` with the watermark `acked_below`.
pub(super) fn encode_state(counters: &Counters, acked_below: u64) -> Vec<u8> {
    let [a, b, c, d, e, f] = counters.words();
    seal(&[a, b, c, d, e, f, acked_below])
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
    if let Some(w) = unseal::<7>(raw) {
        return StoredState::State(Counters::from_words(&w[..6]), w[6]);
    }
    Counters::decode(raw).map_or(StoredState::Damaged, StoredState::CountersOnly)
}

/// The older watermark value (`b"Macked_below"`, one sealed word). `None` if damaged.
pub(super) fn decode_legacy_watermark(raw: &[u8]) -> Option<u64> {
    unseal::<1>(raw).map(|[w]| w)
}

/// The older watermark value, as gateways before round 6 wrote it (for tests of the upgrade).
#[cfg(test)]
pub(super) fn encode_legacy_watermark(w: u64) -> Vec<u8> {
    seal(&[w])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Length of the state value (see the module doc).
    const STATE_LEN: usize = 60;

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
        // Byte for byte what gateways before round 6 wrote: u64 LE, then CRC-32 of those 8.
        let mut old = 5u64.to_le_bytes().to_vec();
        old.extend_from_slice(&crc32fast::hash(&5u64.to_le_bytes()).to_le_bytes());
        assert_eq!(encode_legacy_watermark(5), old);
        assert_eq!(decode_legacy_watermark(&old), Some(5));
        let mut bad = encode_legacy_watermark(5);
        bad[0] ^= 1;
        assert_eq!(decode_legacy_watermark(&bad), None);
        assert_eq!(decode_legacy_watermark(&[0; 8]), None);
    }
}
