//! `[queue]` configuration: limits and sled tuning.

use serde::Deserialize;

use crate::config::problems::{Problems, join};

/// Largest payload accepted (sled stores larger values as separate blob files; keeping records
/// small keeps every write inside sled's log).
pub const MAX_RECORD_BYTES_CEILING: usize = 1 << 20;

/// `[queue]` as written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQueueConfig {
    /// Refuse appends when the stored records (waiting + dead letters) would exceed this.
    pub max_bytes: u64,
    /// Refuse appends when this many records (waiting + dead letters) are stored.
    pub max_records: u64,
    /// Refuse (permanently) a single payload larger than this.
    pub max_record_bytes: usize,
    /// sled page-cache capacity.
    pub cache_bytes: u64,
    /// Records per segment (one sled database each): bounds memory and reopen time, see the
    /// module doc of `queue`.
    pub segment_records: u64,
}

impl Default for RawQueueConfig {
    fn default() -> Self {
        let typed = QueueConfig::default();
        Self {
            max_bytes: typed.max_bytes,
            max_records: typed.max_records,
            max_record_bytes: typed.max_record_bytes,
            cache_bytes: typed.cache_bytes,
            segment_records: typed.segment_records,
        }
    }
}

/// Validated queue configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub max_bytes: u64,
    pub max_records: u64,
    pub max_record_bytes: usize,
    pub cache_bytes: u64,
    pub segment_records: u64,
}

/// Smallest accepted `segment_records` (tests use it to exercise rolls).
pub const MIN_SEGMENT_RECORDS: u64 = 16;

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024 * 1024,
            max_records: 1_000_000,
            max_record_bytes: 64 * 1024,
            cache_bytes: 4 * 1024 * 1024,
            segment_records: 65_536,
        }
    }
}

impl RawQueueConfig {
    /// Checks every field; `path` is the section's key path (normally `queue`).
    pub fn validate(&self, path: &str, problems: &mut Problems) -> Option<QueueConfig> {
        let before = problems.len();
        if self.max_bytes < 64 * 1024 {
            problems.push(
                join(path, "max_bytes"),
                format!("{} bytes is too small", self.max_bytes),
                Some("use at least 65536; size it for weeks offline, e.g. 536870912 (512 MiB)"),
            );
        }
        if self.max_records == 0 {
            problems.push(
                join(path, "max_records"),
                "must be at least 1",
                Some("e.g. 1000000"),
            );
        }
        if self.max_record_bytes < 1024 || self.max_record_bytes > MAX_RECORD_BYTES_CEILING {
            problems.push(
                join(path, "max_record_bytes"),
                format!("{} is out of range", self.max_record_bytes),
                Some("use 1024 ..= 1048576; the default 65536 fits any observation"),
            );
        }
        if self.cache_bytes < 256 * 1024 {
            problems.push(
                join(path, "cache_bytes"),
                format!("{} bytes is too small", self.cache_bytes),
                Some("use at least 262144; the default is 4194304 (4 MiB)"),
            );
        }
        if self.segment_records < MIN_SEGMENT_RECORDS {
            problems.push(
                join(path, "segment_records"),
                format!("{} is too small", self.segment_records),
                Some("use at least 16; the default 65536 keeps memory and restart time low"),
            );
        }
        if problems.len() > before {
            return None;
        }
        Some(QueueConfig {
            max_bytes: self.max_bytes,
            max_records: self.max_records,
            max_record_bytes: self.max_record_bytes,
            cache_bytes: self.cache_bytes,
            segment_records: self.segment_records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let mut problems = Problems::new();
        let typed = RawQueueConfig::default().validate("queue", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(typed, Some(QueueConfig::default()));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let raw: RawQueueConfig = toml::from_str(
            "max_bytes = 1\nmax_records = 0\nmax_record_bytes = 5\ncache_bytes = 7\n\
                 segment_records = 15",
        )
        .expect("parses");
        let mut problems = Problems::new();
        assert_eq!(raw.validate("queue", &mut problems), None);
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "queue.max_bytes",
                "queue.max_records",
                "queue.max_record_bytes",
                "queue.cache_bytes",
                "queue.segment_records"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let parsed: Result<RawQueueConfig, _> = toml::from_str("max_byte = 10");
        assert!(parsed.is_err());
    }
}
