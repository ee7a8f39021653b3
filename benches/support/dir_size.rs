//! Disk use of a directory tree (the queue's files), shared by the queue and footprint benches.

use std::path::Path;

/// Bytes of every file below `p` (unreadable entries count as 0).
pub fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
