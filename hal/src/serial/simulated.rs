//! A simulated serial backend: each `open` takes the next prepared in-memory stream; with none
//! prepared the port is "unplugged". Tests write device bytes into the other end.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::DuplexStream;

use super::{LineSettings, PortLocator, SerialError, SerialOpener, SerialStream};

#[derive(Debug, Clone, Default)]
pub struct SimulatedOpener {
    ready: Arc<Mutex<VecDeque<DuplexStream>>>,
}

impl SimulatedOpener {
    pub fn new() -> Self {
        Self::default()
    }

    /// "Plugs in" a device: the next `open` succeeds and returns a stream whose other end (the
    /// device side) is returned here. Dropping that end is an unplug.
    pub fn plug(&self) -> DuplexStream {
        let (port, device) = tokio::io::duplex(4096);
        self.ready
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push_back(port);
        device
    }
}

impl SerialOpener for SimulatedOpener {
    fn open(
        &self,
        locator: &PortLocator,
        _settings: &LineSettings,
    ) -> Result<(PathBuf, Box<dyn SerialStream>), SerialError> {
        let next = self
            .ready
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front();
        match next {
            Some(stream) => Ok((PathBuf::from(locator.to_string()), Box::new(stream))),
            None => Err(SerialError::NotPresent(locator.to_string())),
        }
    }
}
