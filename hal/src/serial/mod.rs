//! Serial ports: finding a port (by path or by USB VID:PID through sysfs), opening it with line
//! settings, and reading bytes asynchronously.
//!
//! Real backend: [`tokio_serial::TokioSerialOpener`] (tokio-serial, built without libudev: a
//! USB match reads `/sys/class/tty/<name>/device/../idVendor|idProduct|serial`). Simulated
//! backend: [`simulated::SimulatedOpener`] hands out in-memory streams for tests.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncRead;

pub mod simulated;
pub mod tokio_serial;

/// Where a port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortLocator {
    /// A device path; prefer the stable `/dev/serial/by-id/...` symlinks.
    Path(PathBuf),
    /// The tty whose USB device has this vendor/product id (and serial number, if given).
    Usb {
        vendor_id: u16,
        product_id: u16,
        serial_number: Option<String>,
    },
}

impl fmt::Display for PortLocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortLocator::Path(p) => write!(f, "{}", p.display()),
            PortLocator::Usb {
                vendor_id,
                product_id,
                serial_number,
            } => {
                write!(f, "usb {vendor_id:04x}:{product_id:04x}")?;
                if let Some(s) = serial_number {
                    write!(f, " serial {s}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Odd,
    Even,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControl {
    None,
    Software,
    Hardware,
}

/// Line settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSettings {
    pub baud_rate: u32,
    /// 5..=8
    pub data_bits: u8,
    pub parity: Parity,
    /// 1 or 2
    pub stop_bits: u8,
    pub flow_control: FlowControl,
}

impl Default for LineSettings {
    fn default() -> Self {
        Self {
            baud_rate: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::None,
        }
    }
}

/// Why a port could not be found or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerialError {
    /// Nothing matches the locator right now (unplugged). Retry later.
    #[error("no port matches {0}")]
    NotPresent(String),
    #[error("opening the port failed: {0}")]
    Open(String),
    #[error("unsupported line settings: {0}")]
    Settings(String),
}

/// An open port: a byte stream. Writing is not needed by any supported protocol.
pub trait SerialStream: AsyncRead + Send + Unpin + fmt::Debug {}
impl<T: AsyncRead + Send + Unpin + fmt::Debug> SerialStream for T {}

/// Finds and opens ports.
pub trait SerialOpener: Send + Sync + fmt::Debug {
    /// Opens the port `locator` designates. `Ok` carries the resolved device path too.
    fn open(
        &self,
        locator: &PortLocator,
        settings: &LineSettings,
    ) -> Result<(PathBuf, Box<dyn SerialStream>), SerialError>;
}

/// Finds the `/dev/<name>` of a USB tty by reading sysfs under `sysfs_tty` (normally
/// `/sys/class/tty`). For each `<name>`, `device` links to the USB interface; its parent
/// directory is the USB device holding `idVendor`, `idProduct` and `serial`.
pub fn find_usb_tty(
    sysfs_tty: &Path,
    dev_dir: &Path,
    vendor_id: u16,
    product_id: u16,
    serial_number: Option<&str>,
) -> Option<PathBuf> {
    let read_hex = |p: PathBuf| -> Option<u16> {
        let text = std::fs::read_to_string(p).ok()?;
        u16::from_str_radix(text.trim(), 16).ok()
    };
    let mut names: Vec<_> = std::fs::read_dir(sysfs_tty)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let device = sysfs_tty.join(&name).join("device");
        // `device/..` resolved through the symlink, as the kernel lays it out.
        let usb = std::fs::canonicalize(&device).ok()?.parent()?.to_path_buf();
        if read_hex(usb.join("idVendor"))? != vendor_id
            || read_hex(usb.join("idProduct"))? != product_id
        {
            return None;
        }
        if let Some(want) = serial_number {
            let have = std::fs::read_to_string(usb.join("serial")).ok()?;
            if have.trim() != want {
                return None;
            }
        }
        Some(dev_dir.join(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays out a fake sysfs the way the kernel does for a USB CDC/FTDI tty.
    fn fake_tty(root: &Path, name: &str, vid: &str, pid: &str, serial: &str) {
        let usb = root.join(format!("devices/usb-{name}"));
        let iface = usb.join("1-1:1.0");
        std::fs::create_dir_all(&iface).expect("mkdir");
        std::fs::write(usb.join("idVendor"), format!("{vid}\n")).expect("write");
        std::fs::write(usb.join("idProduct"), format!("{pid}\n")).expect("write");
        std::fs::write(usb.join("serial"), format!("{serial}\n")).expect("write");
        let tty = root.join("class/tty").join(name);
        std::fs::create_dir_all(&tty).expect("mkdir");
        std::os::unix::fs::symlink(&iface, tty.join("device")).expect("symlink");
    }

    #[test]
    fn usb_match_reads_sysfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake_tty(dir.path(), "ttyUSB0", "0403", "6001", "A1");
        fake_tty(dir.path(), "ttyUSB1", "0403", "6001", "B2");
        fake_tty(dir.path(), "ttyACM0", "2341", "0043", "X");
        std::fs::create_dir_all(dir.path().join("class/tty/ttyS0")).expect("no device link");
        let tty = dir.path().join("class/tty");
        let dev = Path::new("/dev");
        assert_eq!(
            find_usb_tty(&tty, dev, 0x0403, 0x6001, None),
            Some(PathBuf::from("/dev/ttyUSB0"))
        );
        assert_eq!(
            find_usb_tty(&tty, dev, 0x0403, 0x6001, Some("B2")),
            Some(PathBuf::from("/dev/ttyUSB1"))
        );
        assert_eq!(
            find_usb_tty(&tty, dev, 0x2341, 0x0043, None),
            Some(PathBuf::from("/dev/ttyACM0"))
        );
        assert_eq!(find_usb_tty(&tty, dev, 0x1234, 0x5678, None), None);
    }
}
