//! What the BLE source shares with the rest of the gateway: its status (for `status`) and the
//! stored-record progress it reads (provided by the uploader).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use vectorcare_hal::ble::BleAddress;

/// The uploader's view of stored-record progress: which records the FHIR server confirmed.
/// [`super::progress::FileProgressStore`] is the persisted implementation (the uploader
/// confirms into it through `runtime::confirm`); [`InMemoryProgress`] is for tests
/// and the demo.
pub trait StoredRecordProgress: Send + Sync + fmt::Debug {
    /// Highest stored-record sequence number of `device` the server confirmed, if any.
    fn confirmed_sequence(&self, device: BleAddress) -> Option<u32>;
}

#[derive(Debug, Default)]
pub struct InMemoryProgress {
    confirmed: Mutex<HashMap<BleAddress, u32>>,
}

impl InMemoryProgress {
    pub fn confirm(&self, device: BleAddress, sequence: u32) {
        let mut map = self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(device).or_insert(sequence);
        *entry = (*entry).max(sequence);
    }
}

impl StoredRecordProgress for InMemoryProgress {
    fn confirmed_sequence(&self, device: BleAddress) -> Option<u32> {
        self.confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&device)
            .copied()
    }
}

/// What `status` shows about BLE. Keys of `devices` are addresses (status output is not a log).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BleStatus {
    pub adapter: Option<String>,
    pub scanning: bool,
    pub discovery_restarts: u32,
    pub adapter_power_cycles: u32,
    pub devices: BTreeMap<String, DeviceStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceStatus {
    pub connected: bool,
    pub connects: u32,
    pub readings: u64,
    pub last_error: Option<String>,
}

/// A shared, always-current view of [`BleStatus`].
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<BleStatus>>);

impl StatusHandle {
    pub fn snapshot(&self) -> BleStatus {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut BleStatus)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub(super) fn device(&self, address: BleAddress, f: impl FnOnce(&mut DeviceStatus)) {
        self.update(|s| f(s.devices.entry(address.to_string()).or_default()));
    }
}
