//! What a store's scans have read of its ready records, so that an ack in order does not read
//! them from sled a second time.
//!
//! An ack moves the watermark over the run of acked ids at its start and needs the stored size
//! of each record it passes (for the byte counter) and the certainty that no ready record
//! which is not acked lies in between (module doc of `queue`, "Acks"). The uploader acks only
//! records it has peeked, and every peek reads them in id order from the watermark on, so the
//! scan can note that as it goes: the ids it passed and the size of each stored one. Walking
//! them again with a sled range iterator was ≈ 6 % of a drain's CPU samples
//! (docs/PERFORMANCE.md, "Round 7").
//!
//! The note is only trusted while nothing but appends and in-order acks changed the store:
//! appends add ids at or past `next_id`, which no scan has passed; every other write (nack,
//! dead letter, quarantine, requeue, an ack that removes records) forgets it
//! (`Store::apply_state`), and so does a reopen. When it does not cover an ack, the ack walks
//! sled as before, so the note only ever saves work.

use std::collections::VecDeque;

/// At most this many sizes are kept (16 bytes each): the uploader's pending acks plus a Bundle
/// are a few hundred; a listing of the whole queue stops extending the span here.
const MAX_SIZES: usize = 4096;

/// Every ready record stored with an id in `start..end` is in `sizes`, with its stored length,
/// in id order; no other id in that range is stored as ready. Empty (`start == end`) when
/// nothing is known.
#[derive(Debug, Default)]
pub(super) struct ReadSpan {
    start: u64,
    end: u64,
    sizes: VecDeque<(u64, u64)>,
}

/// How an ack in order moves the watermark, found from the span.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AckedRun {
    /// Stored ready records the watermark passes, and their bytes.
    pub passed: u64,
    pub passed_bytes: u64,
    /// The new watermark.
    pub acked_below: u64,
    /// How many of the acked ids are at or below the last passed one (the rest lie after a
    /// ready record that is not acked).
    pub consumed: usize,
}

impl ReadSpan {
    /// Forgets everything (a write other than an append or an in-order ack).
    pub fn forget(&mut self) {
        self.start = 0;
        self.end = 0;
        self.sizes.clear();
    }

    /// A scan starts reading at `at` with the store's watermark at `acked_below`: returns
    /// whether what it reads extends the span. A span that does not start at the watermark is
    /// stale and starts over there.
    pub fn scan_from(&mut self, at: u64, acked_below: u64) -> bool {
        if self.start != acked_below {
            self.forget();
            self.start = acked_below;
            self.end = acked_below;
        }
        at <= self.end && self.sizes.len() < MAX_SIZES
    }

    /// The scan, reading from `at` (no stored id in between skipped unread), found the next
    /// stored ready record `id` of `size` bytes. Returns whether the span still follows it.
    pub fn read(&mut self, at: u64, id: u64, size: u64) -> bool {
        if at > self.end || id < at || self.sizes.len() >= MAX_SIZES {
            return false;
        }
        if id >= self.end {
            self.sizes.push_back((id, size));
            self.end = id + 1;
        }
        true
    }

    /// The scan, reading from `at`, found no stored ready id below `end`.
    pub fn read_to_end(&mut self, at: u64, end: u64) {
        if at <= self.end && end > self.end {
            self.end = end;
        }
    }

    /// The watermark move that acks `ids` (sorted, unique, all ≥ `acked_below`), or `None`
    /// when the span does not cover them (the caller walks sled instead).
    pub fn plan(&self, acked_below: u64, ids: &[u64]) -> Option<AckedRun> {
        let last = *ids.last()?;
        if self.start != acked_below || last >= self.end {
            return None;
        }
        let mut plan = AckedRun {
            passed: 0,
            passed_bytes: 0,
            acked_below,
            consumed: 0,
        };
        for &(id, size) in &self.sizes {
            if id > last {
                break;
            }
            while ids.get(plan.consumed).is_some_and(|acked| *acked < id) {
                plan.consumed += 1; // acked ids that are not stored (already gone)
            }
            if ids.get(plan.consumed) != Some(&id) {
                break; // a ready record that is not acked: the watermark stops here
            }
            plan.passed += 1;
            plan.passed_bytes += size;
            plan.acked_below = id + 1;
            plan.consumed += 1;
        }
        if plan.passed == 0 {
            return None; // nothing to pass: the caller's walk decides (and removes)
        }
        Some(plan)
    }

    /// The watermark moved from `from` to `to` (an ack in order that removed nothing).
    pub fn advanced(&mut self, from: u64, to: u64) {
        if self.start != from || to > self.end {
            self.forget();
            return;
        }
        while self.sizes.front().is_some_and(|(id, _)| *id < to) {
            self.sizes.pop_front();
        }
        self.start = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A span over stored ids 10, 11, 13 (12 absent), read to 15.
    fn span() -> ReadSpan {
        let mut s = ReadSpan::default();
        assert!(s.scan_from(10, 10));
        assert!(s.read(10, 10, 100));
        assert!(s.read(11, 11, 101));
        assert!(s.read(12, 13, 103));
        s.read_to_end(14, 15);
        s
    }

    #[test]
    fn an_ack_of_the_first_records_passes_them_and_the_gaps_between() {
        let s = span();
        let plan = s.plan(10, &[10, 11, 12, 13]).expect("covered");
        assert_eq!(
            plan,
            AckedRun {
                passed: 3,
                passed_bytes: 304,
                acked_below: 14,
                consumed: 4
            }
        );
    }

    #[test]
    fn the_watermark_stops_at_the_first_record_not_acked() {
        let s = span();
        let plan = s.plan(10, &[10, 13]).expect("covered");
        assert_eq!((plan.passed, plan.acked_below, plan.consumed), (1, 11, 1));
        assert_eq!(
            s.plan(10, &[11]),
            None,
            "nothing passed: the caller decides"
        );
    }

    #[test]
    fn ids_outside_the_span_are_not_planned() {
        let s = span();
        assert_eq!(s.plan(10, &[10, 15]), None, "15 was never read");
        assert_eq!(s.plan(9, &[10]), None, "another watermark: stale");
        let mut forgotten = span();
        forgotten.forget();
        assert!(forgotten.plan(10, &[10]).is_none());
    }

    #[test]
    fn advancing_drops_the_passed_sizes_and_a_later_scan_extends_the_rest() {
        let mut s = span();
        s.advanced(10, 12);
        assert_eq!(s.plan(12, &[13]).map(|p| p.acked_below), Some(14));
        // A scan from the new watermark that skips the known run (13) reads on from 15.
        assert!(s.scan_from(12, 12));
        assert!(s.read(15, 16, 116));
        assert_eq!(
            s.plan(12, &[13, 16]).map(|p| p.passed_bytes),
            Some(103 + 116)
        );
    }

    #[test]
    fn a_scan_that_skips_past_the_span_does_not_extend_it() {
        let mut s = span();
        assert!(!s.read(20, 21, 1), "ids 15..20 were not read");
        assert_eq!(s.plan(10, &[21]), None);
        // A scan starting past the end does not extend it either.
        assert!(!s.scan_from(30, 10));
    }

    #[test]
    fn an_advance_the_span_did_not_see_forgets_it() {
        let mut s = span();
        s.advanced(11, 12);
        assert_eq!(s.plan(12, &[13]), None);
        let mut s = span();
        s.advanced(10, 99);
        assert_eq!(s.plan(99, &[100]), None);
    }

    #[test]
    fn the_span_stops_growing_at_its_cap() {
        let mut s = ReadSpan::default();
        assert!(s.scan_from(0, 0));
        for id in 0..MAX_SIZES as u64 {
            assert!(s.read(id, id, 1));
        }
        assert!(!s.read(MAX_SIZES as u64, MAX_SIZES as u64, 1));
        assert!(!s.scan_from(0, 0));
        let ids: Vec<u64> = (0..MAX_SIZES as u64).collect();
        assert_eq!(s.plan(0, &ids).map(|p| p.passed), Some(MAX_SIZES as u64));
    }
}
