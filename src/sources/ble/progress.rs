//! The persisted stored-record progress: per BLE device, the highest stored-record sequence
//! number the FHIR server confirmed.
//!
//! One small file per device in `<state_dir>/ble-progress/`, named after the address
//! (`AA-BB-CC-DD-EE-FF`), holding the decimal sequence and a newline. A write goes to a temp
//! file, is fsynced, renamed over the old file, and the directory is fsynced: after a crash the
//! file holds the old or the new number, never a torn one. (The queue's sled db belongs to the
//! queue; a few bytes per device do not need a database.)
//!
//! The number only moves forward: a confirmation at or below the stored one is ignored, so a
//! late or repeated confirmation can never make the source delete less carefully or re-ask
//! for less than before.
//!
//! Sequence restarts: a meter whose memory is cleared (or whose 16-bit RACP sequence wraps)
//! numbers its records from low values again. The store does not guess that this happened;
//! it never goes backwards, so such a meter's new records stay below the stored number and
//! are not fetched until the operator removes the device's file (`forget`, or deleting
//! `<state_dir>/ble-progress/<address>` while the daemon is stopped). Going backwards on a
//! guess could re-fetch duplicates at best and, with `delete_after_upload`, delete records the
//! server never saw at worst; staying put can only delay records, never lose them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use vectorcare_hal::ble::BleAddress;

use super::source::lock;
use super::status::StoredRecordProgress;

/// Directory under the state directory that holds the files.
pub const PROGRESS_DIR: &str = "ble-progress";

#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("stored-record progress in {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ProgressError + '_ {
    move |source| ProgressError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Server-confirmed stored-record progress, persisted. Shared by the uploader's confirmation
/// hook (writer) and the BLE source (reader).
#[derive(Debug)]
pub struct FileProgressStore {
    dir: PathBuf,
    confirmed: Mutex<HashMap<BleAddress, u32>>,
    /// Serialises writers so two confirmations of one device cannot race their renames.
    write: Mutex<()>,
}

impl FileProgressStore {
    /// Opens (creating) `<state_dir>/ble-progress` and loads every device's number. Unreadable
    /// or malformed files are skipped with a warning: that device then counts as never
    /// confirmed (records are fetched again and nothing is deleted), which is safe.
    pub fn open(state_dir: &Path) -> Result<Self, ProgressError> {
        let dir = state_dir.join(PROGRESS_DIR);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut confirmed = HashMap::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                // A write that crashed before its rename; the old file (if any) is intact.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Ok(address) = name.replace('-', ":").parse::<BleAddress>() else {
                continue;
            };
            match fs::read_to_string(entry.path()).map(|t| t.trim().parse::<u32>()) {
                Ok(Ok(sequence)) => {
                    confirmed.insert(address, sequence);
                }
                _ => tracing::warn!(
                    file = name,
                    "unreadable stored-record progress file ignored; that device's records will be fetched again"
                ),
            }
        }
        Ok(Self {
            dir,
            confirmed: Mutex::new(confirmed),
            write: Mutex::new(()),
        })
    }

    fn file(&self, device: BleAddress) -> PathBuf {
        self.dir.join(device.to_string().replace(':', "-"))
    }

    /// Records that the server confirmed `device`'s records up to `sequence`. Returns whether
    /// the stored number moved (it only moves forward). Durable when this returns `Ok(true)`.
    pub fn confirm(&self, device: BleAddress, sequence: u32) -> Result<bool, ProgressError> {
        let _writer = lock(&self.write);
        if lock(&self.confirmed)
            .get(&device)
            .is_some_and(|&current| current >= sequence)
        {
            return Ok(false);
        }
        let path = self.file(device);
        write_atomically(&self.dir, &path, format!("{sequence}\n").as_bytes())
            .map_err(io_error(&path))?;
        lock(&self.confirmed).insert(device, sequence);
        Ok(true)
    }

    /// Forgets a device (its meter was reset): its records are fetched from the start again.
    pub fn forget(&self, device: BleAddress) -> Result<(), ProgressError> {
        let _writer = lock(&self.write);
        let path = self.file(device);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir).map_err(io_error(&self.dir))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path)(e)),
        }
        lock(&self.confirmed).remove(&device);
        Ok(())
    }
}

impl StoredRecordProgress for FileProgressStore {
    fn confirmed_sequence(&self, device: BleAddress) -> Option<u32> {
        lock(&self.confirmed).get(&device).copied()
    }
}

/// temp file + fsync + rename + fsync of the directory.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const METER: BleAddress = BleAddress([0xC0, 0xFF, 0xEE, 0, 0, 1]);
    const OTHER: BleAddress = BleAddress([0xC0, 0xFF, 0xEE, 0, 0, 2]);

    #[test]
    fn confirmations_persist_across_reopen_per_device() {
        let state = tempfile::tempdir().expect("tempdir");
        let store = FileProgressStore::open(state.path()).expect("open");
        assert_eq!(store.confirmed_sequence(METER), None);
        assert!(store.confirm(METER, 7).expect("confirm"));
        assert!(store.confirm(OTHER, 3).expect("confirm"));
        drop(store);

        let reopened = FileProgressStore::open(state.path()).expect("reopen");
        assert_eq!(reopened.confirmed_sequence(METER), Some(7));
        assert_eq!(reopened.confirmed_sequence(OTHER), Some(3));
        let text = fs::read_to_string(state.path().join(PROGRESS_DIR).join("C0-FF-EE-00-00-01"))
            .expect("file");
        assert_eq!(text, "7\n");
    }

    #[test]
    fn only_moves_forward() {
        let state = tempfile::tempdir().expect("tempdir");
        let store = FileProgressStore::open(state.path()).expect("open");
        assert!(store.confirm(METER, 10).expect("confirm"));
        assert!(!store.confirm(METER, 4).expect("older"));
        assert!(!store.confirm(METER, 10).expect("same"));
        assert_eq!(store.confirmed_sequence(METER), Some(10));
        drop(store);
        let reopened = FileProgressStore::open(state.path()).expect("reopen");
        assert_eq!(reopened.confirmed_sequence(METER), Some(10));
        assert!(reopened.confirm(METER, 11).expect("newer"));
        assert_eq!(reopened.confirmed_sequence(METER), Some(11));
    }

    #[test]
    fn a_crashed_write_leaves_the_old_number_and_no_temp_file() {
        let state = tempfile::tempdir().expect("tempdir");
        let store = FileProgressStore::open(state.path()).expect("open");
        store.confirm(METER, 5).expect("confirm");
        drop(store);
        // What a crash between writing the temp file and the rename leaves behind.
        let dir = state.path().join(PROGRESS_DIR);
        fs::write(dir.join("C0-FF-EE-00-00-01.tmp"), "9").expect("torn temp");
        let reopened = FileProgressStore::open(state.path()).expect("reopen");
        assert_eq!(reopened.confirmed_sequence(METER), Some(5));
        assert!(!dir.join("C0-FF-EE-00-00-01.tmp").exists());
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("C0-FF-EE-00-00-01")]);
    }

    #[test]
    fn malformed_files_count_as_never_confirmed_and_forget_resets() {
        let state = tempfile::tempdir().expect("tempdir");
        let dir = state.path().join(PROGRESS_DIR);
        fs::create_dir_all(&dir).expect("dir");
        fs::write(dir.join("C0-FF-EE-00-00-01"), "not a number").expect("write");
        fs::write(dir.join("README"), "stray file").expect("write");
        let store = FileProgressStore::open(state.path()).expect("open");
        assert_eq!(store.confirmed_sequence(METER), None);
        store.confirm(OTHER, 8).expect("confirm");
        store.forget(OTHER).expect("forget");
        assert_eq!(store.confirmed_sequence(OTHER), None);
        drop(store);
        let reopened = FileProgressStore::open(state.path()).expect("reopen");
        assert_eq!(reopened.confirmed_sequence(OTHER), None);
    }
}
