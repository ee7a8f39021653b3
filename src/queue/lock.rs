//! The exclusive lock on a data directory (`queue.lock`, `flock(2)`), so the CLI cannot open
//! the queue while the daemon runs. The kernel drops the lock when the holder dies, so a crash
//! never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::QueueError;

/// Held for as long as the queue is open.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<Self, QueueError> {
        let path = dir.join("queue.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| QueueError::Io(format!("open {}: {e}", path.display())))?;
        // SAFETY: flock on a valid open descriptor; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(QueueError::Locked {
                    path: dir.display().to_string(),
                });
            }
            return Err(QueueError::Io(format!("lock {}: {err}", path.display())));
        }
        Ok(Self { _file: file })
    }
}
