//! The last 24 hours, hour by hour (wall-clock hours since the Unix epoch): readings stored and
//! the highest queue depth sampled. Hours the gateway did not run have no depth sample.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Hours kept.
pub const HOURS: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    hour: u64,
    readings: u64,
    depth_max: Option<u64>,
}

/// A ring of hourly buckets, newest last.
#[derive(Debug, Default, Clone)]
pub struct HourlyHistory {
    buckets: VecDeque<Bucket>,
}

/// The 24 hours ending with the current one, oldest first (for the chart and `/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistorySeries {
    /// Start of each hour, Unix seconds.
    pub hour_start_unix: Vec<u64>,
    pub readings: Vec<u64>,
    /// Highest queue depth sampled in that hour; `null` when the gateway did not run.
    pub queue_depth_max: Vec<Option<u64>>,
}

impl HourlyHistory {
    fn bucket(&mut self, unix_seconds: u64) -> &mut Bucket {
        let hour = unix_seconds / 3600;
        // A clock stepped backwards (NTP after boot) restarts the history rather than
        // writing into the wrong hour.
        if self.buckets.back().is_some_and(|b| b.hour > hour) {
            self.buckets.clear();
        }
        if self.buckets.back().is_none_or(|b| b.hour != hour) {
            self.buckets.push_back(Bucket {
                hour,
                readings: 0,
                depth_max: None,
            });
        }
        while self
            .buckets
            .front()
            .is_some_and(|b| b.hour + (HOURS as u64) <= hour)
        {
            self.buckets.pop_front();
        }
        self.buckets
            .back_mut()
            .expect("invariant: a bucket was just ensured")
    }

    pub fn add_readings(&mut self, unix_seconds: u64, count: u64) {
        let bucket = self.bucket(unix_seconds);
        bucket.readings = bucket.readings.saturating_add(count);
    }

    pub fn sample_depth(&mut self, unix_seconds: u64, depth: u64) {
        let bucket = self.bucket(unix_seconds);
        bucket.depth_max = Some(bucket.depth_max.map_or(depth, |d| d.max(depth)));
    }

    /// The 24 hours ending with the hour of `unix_seconds`, gaps filled.
    pub fn series(&self, unix_seconds: u64) -> HistorySeries {
        let now_hour = unix_seconds / 3600;
        let first = now_hour.saturating_sub(HOURS as u64 - 1);
        let mut series = HistorySeries {
            hour_start_unix: Vec::with_capacity(HOURS),
            readings: Vec::with_capacity(HOURS),
            queue_depth_max: Vec::with_capacity(HOURS),
        };
        for hour in first..=now_hour {
            let bucket = self.buckets.iter().find(|b| b.hour == hour);
            series.hour_start_unix.push(hour * 3600);
            series.readings.push(bucket.map_or(0, |b| b.readings));
            series
                .queue_depth_max
                .push(bucket.and_then(|b| b.depth_max));
        }
        series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000 / 3600 * 3600;

    #[test]
    fn hours_are_bucketed_and_gaps_filled() {
        let mut history = HourlyHistory::default();
        history.add_readings(T0 + 10, 3);
        history.add_readings(T0 + 3599, 2);
        history.sample_depth(T0 + 20, 7);
        history.sample_depth(T0 + 30, 4);
        history.add_readings(T0 + 2 * 3600 + 1, 5);
        let series = history.series(T0 + 2 * 3600 + 100);
        assert_eq!(series.readings.len(), HOURS);
        assert_eq!(series.hour_start_unix[HOURS - 1], T0 + 2 * 3600);
        assert_eq!(series.readings[HOURS - 3..], [5, 0, 5]);
        assert_eq!(series.queue_depth_max[HOURS - 3..], [Some(7), None, None]);
        assert_eq!(series.readings[..HOURS - 3].iter().sum::<u64>(), 0);
    }

    #[test]
    fn old_hours_fall_out_and_a_backwards_clock_restarts() {
        let mut history = HourlyHistory::default();
        history.add_readings(T0, 1);
        history.add_readings(T0 + 24 * 3600, 2);
        let series = history.series(T0 + 24 * 3600);
        assert_eq!(
            series.readings.iter().sum::<u64>(),
            2,
            "hour T0 is 24 h old"
        );
        assert_eq!(history.buckets.len(), 1);
        history.add_readings(T0, 9);
        assert_eq!(history.series(T0).readings.iter().sum::<u64>(), 9);
    }
}
