//! A real BLE peripheral on a BlueZ adapter (the `bluer` crate): the device's GATT database
//! ([`super::gatt_db`]) as a GATT application registered with BlueZ's GattManager1, and an LE
//! advertisement of its profile service. A gateway on another adapter (or another Pi) reads it
//! over the air like a real device.
//!
//! One adapter is one peripheral identity, so this target serves ONE BLE device of the
//! scenario (choose it with `--device`; run one `simulate` per adapter for more).
//! Pushed values wait until the central subscribes (a cuff keeps its measurement until the
//! hub connects; nothing is dropped, so a device left unread for days holds days of values); glucose and CGM records are served through RACP from the shared
//! [`RecordStore`]. A `disconnect` fault disconnects every connected central and stops
//! advertising for its duration.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};

use bluer::adv::{Advertisement, AdvertisementHandle, Type as AdvType};
use bluer::gatt::local::{
    Application, ApplicationHandle, Characteristic, CharacteristicNotifier, CharacteristicNotify,
    CharacteristicNotifyMethod, CharacteristicRead, CharacteristicWrite, CharacteristicWriteMethod,
    ReqError, Service,
};
use futures::FutureExt;
use tokio::sync::{Mutex, Notify};
use vectorcare_hal::ble::uuid16;

use super::SimError;
use super::encode::{Delivery, ble_value};
use super::engine::{Action, Sample, Target};
use super::gatt_db::{self, CGM_SESSION_START_TIME, CGM_SOCP, ServiceDef, current_time_value};
use super::racp_store::{RacpOutput, RecordStore};
use super::scenario::{BleProfile, DeviceSpec, Scenario, Transport};
use crate::decode::gatt::{cgm, uuids};
use crate::sources::ble::profiles::services;

/// Most values a device keeps for a central that has not subscribed yet.
const MAX_PENDING: usize = 10_000;

/// How long an indication waits for the central's confirmation.
const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The live state behind the GATT callbacks. Pushed values wait in a queue per
/// characteristic until a central is subscribed. The callbacks never wait on the central
/// (bluer answers StartNotify and WriteValue only when they return): they queue and wake the
/// target, whose [`BluerTarget::idle`] / `apply` deliver — so nothing here spawns a task.
#[derive(Default)]
pub struct PeripheralState {
    /// (characteristic, value) in the order the device produced them: records before the
    /// RACP response that ends the procedure.
    pending: StdMutex<VecDeque<(u16, Vec<u8>)>>,
    notifiers: Mutex<HashMap<u16, CharacteristicNotifier>>,
    wake: Notify,
    store: StdMutex<RecordStore>,
}

pub type Shared = Arc<PeripheralState>;
/// Values reads return, by characteristic (Current Time changes with every measurement).
pub type Readable = Arc<StdMutex<HashMap<u16, Vec<u8>>>>;

impl PeripheralState {
    /// Queues `bytes` for `uuid` and wakes the deliverer.
    fn send(&self, uuid: u16, bytes: Vec<u8>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
        }
        pending.push_back((uuid, bytes));
        drop(pending);
        self.wake.notify_one();
    }

    fn store(&self) -> std::sync::MutexGuard<'_, RecordStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers, oldest first, every queued value whose characteristic has a subscribed
    /// central; the others keep their place.
    pub async fn flush(&self) {
        let mut notifiers = self.notifiers.lock().await;
        notifiers.retain(|_, n| !n.is_stopped());
        let mut kept = VecDeque::new();
        loop {
            let next = self
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some((uuid, bytes)) = next else { break };
            let Some(notifier) = notifiers.get_mut(&uuid) else {
                kept.push_back((uuid, bytes));
                continue;
            };
            // An indication waits for the central's confirmation: not forever.
            let sent = tokio::time::timeout(CONFIRM_TIMEOUT, notifier.notify(bytes.clone())).await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::debug!("notification not delivered; kept for the next subscription");
                notifiers.remove(&uuid);
                kept.push_back((uuid, bytes));
            }
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        // Values queued during the flush go after the ones kept.
        kept.extend(pending.drain(..));
        *pending = kept;
    }

    /// Forgets every subscription: after the device dropped its links, bluetoothd may keep a
    /// notify session open a while and accept values for nobody (seen on the real stack,
    /// tests/hil `reconnect`: 12 of 40 heart-rate values lost). Values then wait for the next
    /// subscription, as they do before the first one.
    async fn forget_subscriptions(&self) {
        self.notifiers.lock().await.clear();
    }

    async fn subscribed(&self, uuid: u16, notifier: CharacteristicNotifier) {
        self.notifiers.lock().await.insert(uuid, notifier);
        self.wake.notify_one();
    }
}

fn measurement_uuid(profile: BleProfile) -> u16 {
    match profile {
        BleProfile::HeartRate => uuids::HEART_RATE_MEASUREMENT,
        BleProfile::BloodPressure => uuids::BLOOD_PRESSURE_MEASUREMENT,
        BleProfile::Thermometer => uuids::TEMPERATURE_MEASUREMENT,
        BleProfile::PulseOximeter => uuids::PLX_SPOT_CHECK_MEASUREMENT,
        BleProfile::WeightScale => uuids::WEIGHT_MEASUREMENT,
        BleProfile::Glucose => uuids::GLUCOSE_MEASUREMENT,
        BleProfile::Cgm => uuids::CGM_MEASUREMENT,
    }
}

/// Answers a control-point write at once; responses and records go out through the queues.
fn control_point_write(
    profile: BleProfile,
    uuid: u16,
    value: &[u8],
    state: &PeripheralState,
    readable: &Readable,
) -> Result<(), ReqError> {
    match uuid {
        uuids::RECORD_ACCESS_CONTROL_POINT => {
            let out = state.store().answer(value);
            for o in out {
                match o {
                    RacpOutput::Record(bytes) => state.send(measurement_uuid(profile), bytes),
                    RacpOutput::ControlPoint(bytes) => state.send(uuid, bytes),
                }
            }
            Ok(())
        }
        CGM_SOCP => {
            // Every SOCP op code succeeds (a session is always running): Response Code 0x1C,
            // the request op code, Success; with the E2E-CRC the CGM Feature announces.
            let op = value.first().copied().unwrap_or(0);
            let mut resp = vec![0x1C, op, 0x01];
            let crc = cgm::crc16_mcrf4xx(&resp);
            resp.extend_from_slice(&crc.to_le_bytes());
            state.send(uuid, resp);
            Ok(())
        }
        CGM_SESSION_START_TIME => {
            readable
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(uuid, value.to_vec());
            Ok(())
        }
        _ => Err(ReqError::NotSupported),
    }
}

/// The GATT application for `db`: flags from the database, reads from `readable`, pushed
/// values and control points through `shared`.
pub fn application(
    profile: BleProfile,
    db: &[ServiceDef],
    shared: &Shared,
    readable: &Readable,
) -> Application {
    let services = db
        .iter()
        .map(|s| Service {
            uuid: uuid16(s.uuid),
            primary: true,
            characteristics: s
                .characteristics
                .iter()
                .map(|c| {
                    let uuid = c.uuid;
                    let read = c.props.read.then(|| {
                        let readable = readable.clone();
                        CharacteristicRead {
                            read: true,
                            fun: Box::new(move |_req| {
                                let value = readable
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .get(&uuid)
                                    .cloned()
                                    .unwrap_or_default();
                                async move { Ok(value) }.boxed()
                            }),
                            ..Default::default()
                        }
                    });
                    let write = c.props.write.then(|| {
                        let shared = shared.clone();
                        let readable = readable.clone();
                        CharacteristicWrite {
                            write: true,
                            method: CharacteristicWriteMethod::Fun(Box::new(move |value, _req| {
                                let result =
                                    control_point_write(profile, uuid, &value, &shared, &readable);
                                async move { result }.boxed()
                            })),
                            ..Default::default()
                        }
                    });
                    let notify = c.props.pushes().then(|| {
                        let shared = shared.clone();
                        CharacteristicNotify {
                            notify: c.props.notify,
                            indicate: c.props.indicate,
                            method: CharacteristicNotifyMethod::Fun(Box::new(move |notifier| {
                                let shared = shared.clone();
                                async move { shared.subscribed(uuid, notifier).await }.boxed()
                            })),
                            ..Default::default()
                        }
                    });
                    Characteristic {
                        uuid: uuid16(c.uuid),
                        read,
                        write,
                        notify,
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    Application {
        services,
        ..Default::default()
    }
}

/// The advertisement: connectable, discoverable, the profile's service UUID and a name.
pub fn advertisement(profile: BleProfile, name: &str) -> Advertisement {
    Advertisement {
        advertisement_type: AdvType::Peripheral,
        service_uuids: BTreeSet::from([uuid16(gatt_db::service_uuid(profile))]),
        local_name: Some(name.to_owned()),
        discoverable: Some(true),
        ..Default::default()
    }
}

struct Served {
    index: usize,
    profile: BleProfile,
    name: String,
    shared: Shared,
    readable: Readable,
    _app: ApplicationHandle,
    advertising: Option<AdvertisementHandle>,
}

/// Serves one BLE device of the scenario on a BlueZ adapter.
pub struct BluerTarget {
    adapter_name: Option<String>,
    start_time: time::OffsetDateTime,
    adapter: Option<bluer::Adapter>,
    served: Option<Served>,
    /// Kept alive for the adapter's D-Bus connection.
    _session: Option<bluer::Session>,
}

fn ble_error(context: &str, err: impl std::fmt::Display) -> SimError {
    SimError::Ble(format!("{context}: {err}"))
}

impl BluerTarget {
    /// `adapter_name`: e.g. "hci1" (default: BlueZ's default adapter).
    pub fn new(adapter_name: Option<String>, start_time: time::OffsetDateTime) -> Self {
        Self {
            adapter_name,
            start_time,
            adapter: None,
            served: None,
            _session: None,
        }
    }

    /// The adapter's name and address, once started.
    pub async fn identity(&self) -> Option<(String, String)> {
        let adapter = self.adapter.as_ref()?;
        let address = adapter.address().await.ok()?;
        Some((adapter.name().to_owned(), address.to_string()))
    }

    fn store(served: &Served, sample: &Sample) -> Result<(), SimError> {
        let v = ble_value(served.profile, sample)?;
        served.shared.store().insert(v.record_key, v.bytes);
        Ok(())
    }

    async fn disconnect_all(&self) -> Result<(), SimError> {
        let Some(adapter) = &self.adapter else {
            return Ok(());
        };
        let addresses = adapter
            .device_addresses()
            .await
            .map_err(|e| ble_error("listing devices", e))?;
        for address in addresses {
            if let Ok(device) = adapter.device(address)
                && device.is_connected().await.unwrap_or(false)
            {
                let _ = device.disconnect().await;
            }
        }
        Ok(())
    }
}

impl Target for BluerTarget {
    async fn start(&mut self, scenario: &Scenario) -> Result<(), SimError> {
        let ble: Vec<(usize, &DeviceSpec, BleProfile)> = scenario
            .devices
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match d.transport {
                Transport::Ble { profile, .. } => Some((i, d, profile)),
                _ => None,
            })
            .collect();
        let [(index, device, profile)] = ble.as_slice() else {
            return Err(SimError::Ble(format!(
                "{} BLE devices in the scenario but one adapter is one peripheral: pick one with --device",
                ble.len()
            )));
        };
        let session = bluer::Session::new()
            .await
            .map_err(|e| ble_error("connecting to BlueZ", e))?;
        let adapter = match &self.adapter_name {
            Some(name) => session.adapter(name),
            None => session.default_adapter().await,
        }
        .map_err(|e| ble_error("adapter", e))?;
        adapter
            .set_powered(true)
            .await
            .map_err(|e| ble_error("powering the adapter", e))?;
        let db = gatt_db::database(
            *profile,
            profile.name(),
            &device.serial_number,
            self.start_time,
        )?;
        let readable: Readable = Arc::new(StdMutex::new(
            db.iter()
                .flat_map(|s| s.characteristics.iter())
                .filter(|c| c.props.read)
                .map(|c| (c.uuid, c.value.clone()))
                .collect(),
        ));
        let shared: Shared = Arc::default();
        let app = adapter
            .serve_gatt_application(application(*profile, &db, &shared, &readable))
            .await
            .map_err(|e| ble_error("registering the GATT application", e))?;
        let name = format!("VC-SIM {}", device.name);
        let advertising = adapter
            .advertise(advertisement(*profile, &name))
            .await
            .map_err(|e| ble_error("advertising", e))?;
        self.served = Some(Served {
            index: *index,
            profile: *profile,
            name,
            shared,
            readable,
            _app: app,
            advertising: Some(advertising),
        });
        self.adapter = Some(adapter);
        self._session = Some(session);
        Ok(())
    }

    fn plays(&self, transport: &Transport) -> bool {
        matches!(transport, Transport::Ble { .. })
    }

    async fn apply(
        &mut self,
        _device: &DeviceSpec,
        index: usize,
        action: &Action,
    ) -> Result<(), SimError> {
        let Some(served) = self.served.as_ref().filter(|s| s.index == index) else {
            return Ok(());
        };
        let profile = served.profile;
        match action {
            Action::Measure(sample) => {
                served
                    .readable
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(uuids::CURRENT_TIME, current_time_value(sample.time));
                let v = ble_value(profile, sample)?;
                if v.delivery != Delivery::Push {
                    Self::store(served, sample)?;
                }
                if v.delivery != Delivery::Store {
                    served.shared.send(v.characteristic, v.bytes);
                }
            }
            Action::Store(samples) => {
                for s in samples {
                    Self::store(served, s)?;
                }
            }
            Action::Garbage(bytes) => {
                served.shared.send(measurement_uuid(profile), bytes.clone());
            }
            Action::Disconnect => {
                if let Some(s) = self.served.as_mut() {
                    s.advertising = None;
                }
                self.disconnect_all().await?;
                if let Some(s) = &self.served {
                    s.shared.forget_subscriptions().await;
                }
            }
            Action::Reconnect => {
                if let (Some(adapter), Some(s)) = (&self.adapter, self.served.as_mut()) {
                    s.advertising = Some(
                        adapter
                            .advertise(advertisement(s.profile, &s.name))
                            .await
                            .map_err(|e| ble_error("advertising", e))?,
                    );
                }
            }
        }
        if let Some(served) = &self.served {
            served.shared.flush().await;
        }
        Ok(())
    }

    async fn idle(&mut self) {
        match &self.served {
            Some(served) => {
                served.shared.wake.notified().await;
                served.shared.flush().await;
            }
            None => std::future::pending().await,
        }
    }

    async fn finish(&mut self) -> Result<(), SimError> {
        if let Some(served) = &self.served {
            served.shared.flush().await;
        }
        // Dropping the handles unregisters the application and the advertisement.
        self.served = None;
        Ok(())
    }
}

/// Service UUIDs every simulated peripheral serves besides its profile's.
pub const COMMON_SERVICES: [u16; 2] = [services::CURRENT_TIME, services::DEVICE_INFORMATION];
