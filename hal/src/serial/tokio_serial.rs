//! The real backend: tokio-serial (mio-serial/serialport) on Linux ttys, without libudev.

use std::path::{Path, PathBuf};

use tokio_serial::SerialPortBuilderExt;

use super::{
    FlowControl, LineSettings, Parity, PortLocator, SerialError, SerialOpener, SerialStream,
    find_usb_tty,
};

#[derive(Debug, Clone)]
pub struct TokioSerialOpener {
    sysfs_tty: PathBuf,
    dev_dir: PathBuf,
}

impl Default for TokioSerialOpener {
    fn default() -> Self {
        Self {
            sysfs_tty: PathBuf::from("/sys/class/tty"),
            dev_dir: PathBuf::from("/dev"),
        }
    }
}

impl TokioSerialOpener {
    /// An opener that looks for USB ttys under other directories (tests).
    pub fn with_roots(sysfs_tty: &Path, dev_dir: &Path) -> Self {
        Self {
            sysfs_tty: sysfs_tty.to_path_buf(),
            dev_dir: dev_dir.to_path_buf(),
        }
    }

    fn resolve(&self, locator: &PortLocator) -> Result<PathBuf, SerialError> {
        match locator {
            PortLocator::Path(p) => {
                if std::fs::metadata(p).is_err() {
                    return Err(SerialError::NotPresent(locator.to_string()));
                }
                Ok(p.clone())
            }
            PortLocator::Usb {
                vendor_id,
                product_id,
                serial_number,
            } => find_usb_tty(
                &self.sysfs_tty,
                &self.dev_dir,
                *vendor_id,
                *product_id,
                serial_number.as_deref(),
            )
            .ok_or_else(|| SerialError::NotPresent(locator.to_string())),
        }
    }
}

impl SerialOpener for TokioSerialOpener {
    fn open(
        &self,
        locator: &PortLocator,
        settings: &LineSettings,
    ) -> Result<(PathBuf, Box<dyn SerialStream>), SerialError> {
        let path = self.resolve(locator)?;
        let data_bits = match settings.data_bits {
            5 => tokio_serial::DataBits::Five,
            6 => tokio_serial::DataBits::Six,
            7 => tokio_serial::DataBits::Seven,
            8 => tokio_serial::DataBits::Eight,
            n => return Err(SerialError::Settings(format!("{n} data bits"))),
        };
        let stop_bits = match settings.stop_bits {
            1 => tokio_serial::StopBits::One,
            2 => tokio_serial::StopBits::Two,
            n => return Err(SerialError::Settings(format!("{n} stop bits"))),
        };
        let parity = match settings.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Odd => tokio_serial::Parity::Odd,
            Parity::Even => tokio_serial::Parity::Even,
        };
        let flow = match settings.flow_control {
            FlowControl::None => tokio_serial::FlowControl::None,
            FlowControl::Software => tokio_serial::FlowControl::Software,
            FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
        };
        let stream = tokio_serial::new(path.to_string_lossy(), settings.baud_rate)
            .data_bits(data_bits)
            .stop_bits(stop_bits)
            .parity(parity)
            .flow_control(flow)
            .open_native_async()
            .map_err(|e| match e.kind {
                tokio_serial::ErrorKind::NoDevice => {
                    SerialError::NotPresent(path.display().to_string())
                }
                _ => SerialError::Open(e.description),
            })?;
        Ok((path, Box::new(stream)))
    }
}

// The opener is shared between tasks.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TokioSerialOpener>();
};
