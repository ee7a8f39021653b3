//! The uploader → BLE source confirmation path: server-confirmed upload units that came from a
//! BLE device's stored record move that device's persisted progress forward, so the source
//! asks only for newer records and may delete confirmed ones on the device.

use std::collections::HashMap;
use std::sync::Arc;

use vectorcare_hal::ble::BleAddress;

use crate::fhir::UploadUnit;
use crate::sources::ble::FileProgressStore;
use crate::upload::UploadObserver;

/// Feeds confirmations into the BLE progress store.
#[derive(Debug, Clone)]
pub struct BleProgressConfirmer {
    store: Arc<FileProgressStore>,
}

impl BleProgressConfirmer {
    pub fn new(store: Arc<FileProgressStore>) -> Self {
        Self { store }
    }
}

impl UploadObserver for BleProgressConfirmer {
    fn confirmed(&self, units: &[UploadUnit]) {
        // One write per device: the highest confirmed sequence. Units from serial or MQTT
        // devices (not a Bluetooth address) have no BLE progress.
        let mut highest: HashMap<BleAddress, u32> = HashMap::new();
        for record in units.iter().filter_map(UploadUnit::source_record) {
            let Ok(device) = record.device.parse::<BleAddress>() else {
                continue;
            };
            let entry = highest.entry(device).or_insert(record.sequence);
            *entry = (*entry).max(record.sequence);
        }
        for (device, sequence) in highest {
            if let Err(err) = self.store.confirm(device, sequence) {
                // Not fatal: the device's records are fetched again and kept on the device.
                tracing::warn!(error = %err, "cannot persist stored-record progress");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::examples::{example_map_context, example_readings};
    use crate::fhir::map_reading;
    use crate::sources::ble::StoredRecordProgress;

    fn unit(address: &str, sequence: Option<u32>) -> UploadUnit {
        let mut reading = example_readings()
            .into_iter()
            .find(|(n, _)| *n == "blood_glucose_mass")
            .expect("example")
            .1;
        reading.device.address = address.into();
        reading.sequence = sequence;
        map_reading(&reading, &example_map_context(true)).expect("map")
    }

    #[test]
    fn confirms_the_highest_sequence_per_ble_device_only() {
        let state = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(FileProgressStore::open(state.path()).expect("open"));
        let confirmer = BleProgressConfirmer::new(store.clone());
        confirmer.confirmed(&[
            unit("C0:FF:EE:00:00:01", Some(3)),
            unit("C0:FF:EE:00:00:01", Some(5)),
            unit("C0:FF:EE:00:00:01", Some(4)),
            unit("C0:FF:EE:00:00:02", None),
            unit("/dev/ttyUSB0", Some(9)),
        ]);
        let meter: BleAddress = "C0:FF:EE:00:00:01".parse().expect("address");
        let live: BleAddress = "C0:FF:EE:00:00:02".parse().expect("address");
        assert_eq!(store.confirmed_sequence(meter), Some(5));
        assert_eq!(store.confirmed_sequence(live), None);
        let files = std::fs::read_dir(state.path().join("ble-progress"))
            .expect("dir")
            .count();
        assert_eq!(files, 1, "only the BLE meter has progress");
    }
}
