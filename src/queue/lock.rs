//! The exclusive lock on a data directory (`queue.lock`, `flock(2)`), so the CLI cannot open
//! the queue while the daemon runs. The kernel drops the lock when the holder dies, so a crash
//! never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::QueueError;

/// How long a lock that looks held is retried before `Locked` is reported.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

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
        // A lock we just released can still look held for a moment: a child process that
        // another thread forks shares our descriptors until it execs (close-on-exec), and the
        // flock belongs to the shared open file description. So "held" is retried briefly; a
        // process that really holds the directory (the daemon) still gets `Locked`.
        let deadline = std::time::Instant::now() + LOCK_RETRY;
        loop {
            // SAFETY: flock on a valid open descriptor; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Self { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(QueueError::Io(format!("lock {}: {err}", path.display())));
            }
            if std::time::Instant::now() >= deadline {
                return Err(QueueError::Locked {
                    path: dir.display().to_string(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
