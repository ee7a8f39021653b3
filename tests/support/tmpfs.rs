//! A small tmpfs mounted for one test (the disk-full tests): `TmpfsMount::new("8m")` mounts it on
//! a fresh temporary directory and unmounts it on drop. Needs root (CAP_SYS_ADMIN); without it
//! the test fails and says so. `VECTORCARE_SKIP_MOUNT_TESTS=1` skips such tests explicitly:
//! `TmpfsMount::new` then returns `None`.

use std::path::Path;
use std::process::Command;

pub struct TmpfsMount {
    dir: tempfile::TempDir,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (mount(8)'s `size=` syntax, e.g. "16m"), or `None` when mount
    /// tests are skipped.
    pub fn new(size: &str) -> Option<Self> {
        if std::env::var_os("VECTORCARE_SKIP_MOUNT_TESTS").is_some() {
            eprintln!("skipped: VECTORCARE_SKIP_MOUNT_TESTS is set");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount(8)");
        assert!(
            status.success(),
            "mounting a tmpfs needs root/CAP_SYS_ADMIN; set VECTORCARE_SKIP_MOUNT_TESTS=1 to skip"
        );
        Some(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
