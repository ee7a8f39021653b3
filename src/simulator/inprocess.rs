//! The in-process target: BLE devices in hal's simulator ([`SimulatedCentral`]), serial devices
//! on hal's simulated serial ports ([`SimulatedOpener`], one `plug` per device in scenario
//! order), MQTT devices through an optional broker. `demo` and the tests use it; the gateway
//! reads these devices exactly as it reads real ones (through the hal traits).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, DuplexStream};
use vectorcare_hal::ble::simulated::{SimulatedCentral, SimulatedDevice, WriteHandler};
use vectorcare_hal::ble::{BleError, CharacteristicRef, Notification};
use vectorcare_hal::serial::simulated::SimulatedOpener;

use super::SimError;
use super::encode::{Delivery, ble_value, serial_lines};
use super::engine::{Action, Sample, Target};
use super::gatt_db::{self, current_time_value};
use super::mqtt::MqttTarget;
use super::racp_store::{RacpOutput, RecordStore};
use super::scenario::{BleProfile, DeviceSpec, Scenario, Transport};
use crate::decode::gatt::uuids;
use time::OffsetDateTime;

/// How long a serial write may wait for the reader before the device counts as unplugged.
const SERIAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

struct BleDevice {
    profile: BleProfile,
    device: SimulatedDevice,
    store: Arc<Mutex<RecordStore>>,
}

struct SerialDevice {
    stream: DuplexStream,
    silent: bool,
}

pub struct InProcessTarget {
    central: SimulatedCentral,
    serial: SimulatedOpener,
    mqtt: Option<MqttTarget>,
    ble: HashMap<usize, BleDevice>,
    ports: HashMap<usize, SerialDevice>,
    start_time: Option<OffsetDateTime>,
    started: bool,
}

impl InProcessTarget {
    pub fn new(central: SimulatedCentral, serial: SimulatedOpener) -> Self {
        Self {
            central,
            serial,
            mqtt: None,
            ble: HashMap::new(),
            ports: HashMap::new(),
            start_time: None,
            started: false,
        }
    }

    /// MQTT devices publish to this broker (else they are skipped).
    pub fn with_mqtt(mut self, mqtt: MqttTarget) -> Self {
        self.mqtt = Some(mqtt);
        self
    }

    /// Device clocks at the start (for the CGM session start and the first Current Time).
    pub fn with_start_time(mut self, t: OffsetDateTime) -> Self {
        self.start_time = Some(t);
        self
    }

    /// The hal device of BLE device `index` (to script link errors, check pending values).
    pub fn ble_device(&self, index: usize) -> Option<&SimulatedDevice> {
        self.ble.get(&index).map(|d| &d.device)
    }

    /// Sequence numbers / time offsets still stored on BLE device `index`.
    pub fn stored_records(&self, index: usize) -> Vec<u16> {
        self.ble.get(&index).map_or_else(Vec::new, |d| {
            d.store
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keys()
        })
    }

    fn store_sample(d: &BleDevice, sample: &Sample) -> Result<(), SimError> {
        let v = ble_value(d.profile, sample)?;
        d.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(v.record_key, v.bytes);
        Ok(())
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

fn characteristic(profile: BleProfile, uuid: u16) -> CharacteristicRef {
    CharacteristicRef::sig(gatt_db::service_uuid(profile), uuid)
}

/// Answers RACP writes from the shared store.
fn racp_handler(profile: BleProfile, store: Arc<Mutex<RecordStore>>) -> WriteHandler {
    let measurement = characteristic(profile, measurement_uuid(profile));
    let control_point = characteristic(profile, uuids::RECORD_ACCESS_CONTROL_POINT);
    Box::new(move |request: &[u8]| {
        let out = store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .answer(request);
        Ok::<_, BleError>(
            out.into_iter()
                .map(|o| match o {
                    RacpOutput::Record(value) => Notification {
                        characteristic: measurement,
                        value,
                    },
                    RacpOutput::ControlPoint(value) => Notification {
                        characteristic: control_point,
                        value,
                    },
                })
                .collect(),
        )
    })
}

impl Target for InProcessTarget {
    /// Idempotent: a caller may start the target (devices in range) before playing.
    async fn start(&mut self, scenario: &Scenario) -> Result<(), SimError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        let start = self
            .start_time
            .or(scenario.start)
            .unwrap_or_else(OffsetDateTime::now_utc);
        for (i, d) in scenario.devices.iter().enumerate() {
            match &d.transport {
                Transport::Ble { profile, address } => {
                    let db = gatt_db::database(*profile, profile.name(), &d.serial_number, start)?;
                    let address = address.unwrap_or_else(|| gatt_db::default_address(*profile, i));
                    let spec = gatt_db::peripheral_spec(
                        *profile,
                        address,
                        &format!("VC-SIM {}", d.name),
                        &db,
                    );
                    let device = self.central.add_device(spec);
                    let store = Arc::new(Mutex::new(RecordStore::default()));
                    if gatt_db::has_racp(*profile) {
                        device.on_write(
                            characteristic(*profile, uuids::RECORD_ACCESS_CONTROL_POINT),
                            racp_handler(*profile, store.clone()),
                        );
                    }
                    self.ble.insert(
                        i,
                        BleDevice {
                            profile: *profile,
                            device,
                            store,
                        },
                    );
                }
                Transport::Serial { .. } => {
                    self.ports.insert(
                        i,
                        SerialDevice {
                            stream: self.serial.plug(),
                            silent: false,
                        },
                    );
                }
                Transport::Mqtt { .. } => {}
            }
        }
        if let Some(mqtt) = self.mqtt.as_mut() {
            mqtt.start(scenario).await?;
        }
        Ok(())
    }

    fn plays(&self, transport: &Transport) -> bool {
        match transport {
            Transport::Ble { .. } | Transport::Serial { .. } => true,
            Transport::Mqtt { .. } => self.mqtt.is_some(),
        }
    }

    async fn apply(
        &mut self,
        device: &DeviceSpec,
        index: usize,
        action: &Action,
    ) -> Result<(), SimError> {
        match &device.transport {
            Transport::Mqtt { .. } => match self.mqtt.as_mut() {
                Some(mqtt) => mqtt.apply(device, index, action).await,
                None => Ok(()),
            },
            Transport::Ble { profile, .. } => {
                let Some(d) = self.ble.get(&index) else {
                    return Ok(());
                };
                let measurement = characteristic(*profile, measurement_uuid(*profile));
                match action {
                    Action::Measure(sample) => {
                        d.device.set_value(
                            crate::sources::ble::profiles::current_time(),
                            current_time_value(sample.time),
                        );
                        let v = ble_value(*profile, sample)?;
                        if v.delivery != Delivery::Push {
                            Self::store_sample(d, sample)?;
                        }
                        if v.delivery != Delivery::Store {
                            d.device
                                .push(characteristic(*profile, v.characteristic), v.bytes);
                        }
                    }
                    Action::Store(samples) => {
                        for s in samples {
                            Self::store_sample(d, s)?;
                        }
                    }
                    Action::Garbage(bytes) => d.device.push(measurement, bytes.clone()),
                    Action::Disconnect => {
                        d.device.set_advertising(false);
                        d.device.drop_link();
                    }
                    Action::Reconnect => d.device.set_advertising(true),
                }
                Ok(())
            }
            Transport::Serial { protocol } => {
                let Some(port) = self.ports.get_mut(&index) else {
                    return Ok(());
                };
                let bytes = match action {
                    Action::Measure(sample) => serial_lines(*protocol, index, sample).into_bytes(),
                    Action::Garbage(bytes) => {
                        let mut b = bytes.clone();
                        b.extend_from_slice(b"\r\n");
                        b
                    }
                    Action::Disconnect => {
                        port.silent = true;
                        return Ok(());
                    }
                    Action::Reconnect => {
                        port.silent = false;
                        return Ok(());
                    }
                    Action::Store(_) => return Ok(()),
                };
                if port.silent {
                    return Ok(());
                }
                let write =
                    tokio::time::timeout(SERIAL_WRITE_TIMEOUT, port.stream.write_all(&bytes));
                if !matches!(write.await, Ok(Ok(()))) {
                    // The gateway closed the port or stopped reading: plug the device in again.
                    tracing::debug!(device = %device.name, "simulated serial port re-plugged");
                    port.stream = self.serial.plug();
                }
                Ok(())
            }
        }
    }

    async fn finish(&mut self) -> Result<(), SimError> {
        for port in self.ports.values_mut() {
            let _ = port.stream.flush().await;
        }
        if let Some(mqtt) = self.mqtt.as_mut() {
            mqtt.finish().await?;
        }
        Ok(())
    }
}
