//! Standard-profile health devices for hal's BLE simulator, built with the clinical core's
//! encoders: what the demo and the source's tests connect to.
//!
//! [`standard_device`] puts one device in range of a [`SimulatedCentral`] with the GATT
//! database a real device of that profile has (measurement, feature, Current Time and Device
//! Information characteristics; a Record Access Control Point for glucose meters).
//! [`SimulatedHealthDevice::measure`] takes one plausible measurement (deterministic per seed):
//! pushed as a notification/indication, or, for glucose, stored as a record the gateway fetches
//! through RACP.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;
use vectorcare_hal::ble::simulated::{
    PeripheralSpec, SimCharacteristic, SimService, SimulatedCentral, SimulatedDevice,
};
use vectorcare_hal::ble::{
    BleAddress, BleError, CharProps, CharacteristicRef, Notification, uuid16,
};

use super::profiles::{GLUCOSE_FEATURE, Profile, current_time, device_information, services};
use crate::decode::EncodeError;
use crate::decode::gatt::racp::{
    FilterValue, RacpOpCode, RacpOperator, RacpResponse, RacpResponseCode,
};
use crate::decode::gatt::{
    blood_pressure, clock, glucose, heart_rate, plx, racp, thermometer, uuids, weight,
};
use crate::reading::{Decimal, DeviceTime, MeasuredValue};

/// A simulated standard-profile device in range of a simulated adapter.
#[derive(Debug)]
pub struct SimulatedHealthDevice {
    device: SimulatedDevice,
    profile: Profile,
    state: u64,
    next_sequence: u16,
    records: Arc<Mutex<BTreeMap<u16, Vec<u8>>>>,
}

/// Address of the simulated device for `profile` and `seed` (stable, so configs can list it).
pub fn simulated_address(profile: Profile, seed: u16) -> BleAddress {
    let [hi, lo] = seed.to_be_bytes();
    BleAddress([0xC0, 0xFF, 0xEE, profile.service() as u8, hi, lo])
}

fn device_time(at: OffsetDateTime) -> DeviceTime {
    DeviceTime {
        year: u16::try_from(at.year()).unwrap_or(0),
        month: u8::from(at.month()),
        day: at.day(),
        hours: at.hour(),
        minutes: at.minute(),
        seconds: at.second(),
    }
}

fn current_time_bytes() -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    clock::encode_current_time(&clock::CurrentTime {
        date_time: device_time(now),
        day_of_week: now.weekday().number_from_monday(),
        fractions256: 0,
        adjust_reason: 0,
    })
}

/// The advertisement and GATT database of the simulated `profile` device with `seed` (also
/// used to build the same device in the BlueZ D-Bus mock).
pub fn standard_spec(profile: Profile, seed: u16) -> Result<PeripheralSpec, EncodeError> {
    let c = |uuid: u16, props: CharProps| SimCharacteristic::new(uuid16(uuid), props);
    let mut chars: Vec<SimCharacteristic> = Vec::new();
    match profile {
        Profile::HeartRate => chars.push(c(uuids::HEART_RATE_MEASUREMENT, CharProps::NOTIFY)),
        Profile::BloodPressure => {
            chars.push(c(uuids::BLOOD_PRESSURE_MEASUREMENT, CharProps::INDICATE));
            chars.push(
                c(uuids::BLOOD_PRESSURE_FEATURE, CharProps::READ).with_value(
                    blood_pressure::encode_feature(&blood_pressure::BloodPressureFeature {
                        bits: 0,
                    }),
                ),
            );
        }
        Profile::Thermometer => {
            chars.push(c(uuids::TEMPERATURE_MEASUREMENT, CharProps::INDICATE));
            chars.push(
                c(uuids::TEMPERATURE_TYPE, CharProps::READ)
                    .with_value(thermometer::encode_type(thermometer::TemperatureType::Ear)),
            );
        }
        Profile::PulseOximeter => {
            chars.push(c(uuids::PLX_SPOT_CHECK_MEASUREMENT, CharProps::INDICATE));
            chars.push(
                c(uuids::PLX_FEATURES, CharProps::READ).with_value(plx::encode_features(
                    &plx::PlxFeatures {
                        supported: 0,
                        measurement_status_support: None,
                        device_sensor_status_support: None,
                    },
                )?),
            );
        }
        Profile::WeightScale => {
            chars.push(c(uuids::WEIGHT_MEASUREMENT, CharProps::INDICATE));
            chars.push(c(uuids::WEIGHT_SCALE_FEATURE, CharProps::READ).with_value(
                weight::encode_feature(&weight::WeightScaleFeature {
                    timestamp_supported: true,
                    multiple_users_supported: false,
                    bmi_supported: false,
                    weight_resolution: 0,
                    height_resolution: 0,
                })?,
            ));
        }
        Profile::Glucose => {
            chars.push(c(uuids::GLUCOSE_MEASUREMENT, CharProps::NOTIFY));
            chars.push(c(uuids::GLUCOSE_MEASUREMENT_CONTEXT, CharProps::NOTIFY));
            chars.push(c(GLUCOSE_FEATURE, CharProps::READ).with_value(vec![0, 0]));
            chars.push(c(
                uuids::RECORD_ACCESS_CONTROL_POINT,
                CharProps::WRITE_INDICATE,
            ));
        }
    }
    let text = |s: &str| s.as_bytes().to_vec();
    Ok(PeripheralSpec {
        address: simulated_address(profile, seed),
        name: Some(format!("VC-SIM {} {seed}", profile.name())),
        rssi: Some(-55 - (seed % 30) as i16),
        advertised_services: vec![uuid16(profile.service())],
        services: vec![
            SimService {
                uuid: uuid16(profile.service()),
                characteristics: chars,
            },
            SimService {
                uuid: uuid16(services::CURRENT_TIME),
                characteristics: vec![
                    c(uuids::CURRENT_TIME, CharProps::READ).with_value(current_time_bytes()),
                ],
            },
            SimService {
                uuid: uuid16(services::DEVICE_INFORMATION),
                characteristics: vec![
                    c(device_information::MANUFACTURER_NAME, CharProps::READ)
                        .with_value(text("VectorCare Simulated Devices")),
                    c(device_information::MODEL_NUMBER, CharProps::READ)
                        .with_value(text(profile.name())),
                    c(device_information::SERIAL_NUMBER, CharProps::READ)
                        .with_value(text(&format!("SIM-{seed:05}"))),
                ],
            },
        ],
    })
}

/// Answers RACP writes from `records` the way a glucose meter does.
fn racp_handler(
    records: Arc<Mutex<BTreeMap<u16, Vec<u8>>>>,
    measurement: CharacteristicRef,
    control_point: CharacteristicRef,
) -> vectorcare_hal::ble::simulated::WriteHandler {
    Box::new(move |request: &[u8]| {
        let response = |op: u8, code: RacpResponseCode| Notification {
            characteristic: control_point,
            value: racp::encode_response(&RacpResponse::ResponseCode {
                request_op_code: op,
                code,
            }),
        };
        let op = request.first().copied().unwrap_or(0);
        let Ok(req) = racp::decode_request(request) else {
            return Ok(vec![response(op, RacpResponseCode::InvalidOperator)]);
        };
        let mut store = records.lock().unwrap_or_else(PoisonError::into_inner);
        let chosen: Vec<u16> = match req.operator {
            RacpOperator::All => store.keys().copied().collect(),
            RacpOperator::GreaterOrEqual(FilterValue::Sequence(s)) => {
                store.range(s..).map(|(k, _)| *k).collect()
            }
            RacpOperator::LessOrEqual(FilterValue::Sequence(s)) => {
                store.range(..=s).map(|(k, _)| *k).collect()
            }
            _ => return Ok(vec![response(op, RacpResponseCode::OperatorNotSupported)]),
        };
        let mut out = Vec::new();
        match req.op_code {
            RacpOpCode::ReportNumberOfRecords => {
                out.push(Notification {
                    characteristic: control_point,
                    value: racp::encode_response(&RacpResponse::NumberOfRecords {
                        count: u16::try_from(chosen.len()).unwrap_or(u16::MAX),
                    }),
                });
                return Ok(out);
            }
            _ if chosen.is_empty() => out.push(response(op, RacpResponseCode::NoRecordsFound)),
            RacpOpCode::ReportStoredRecords => {
                for seq in &chosen {
                    if let Some(bytes) = store.get(seq) {
                        out.push(Notification {
                            characteristic: measurement,
                            value: bytes.clone(),
                        });
                    }
                }
                out.push(response(op, RacpResponseCode::Success));
            }
            RacpOpCode::DeleteStoredRecords => {
                for seq in &chosen {
                    store.remove(seq);
                }
                out.push(response(op, RacpResponseCode::Success));
            }
            RacpOpCode::Abort => out.push(response(op, RacpResponseCode::Success)),
        }
        Ok::<_, BleError>(out)
    })
}

/// Puts a standard `profile` device in range of `central`. `seed` picks its address and its
/// stream of values.
pub fn standard_device(
    central: &SimulatedCentral,
    profile: Profile,
    seed: u16,
) -> Result<SimulatedHealthDevice, EncodeError> {
    let device = central.add_device(standard_spec(profile, seed)?);
    let records = Arc::new(Mutex::new(BTreeMap::new()));
    if profile.uses_racp() {
        device.on_write(
            profile.racp(),
            racp_handler(
                records.clone(),
                profile.characteristic(uuids::GLUCOSE_MEASUREMENT),
                profile.racp(),
            ),
        );
    }
    Ok(SimulatedHealthDevice {
        device,
        profile,
        state: u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        next_sequence: 1,
        records,
    })
}

impl SimulatedHealthDevice {
    /// The simulator's control handle (drop the link, script errors, …).
    pub fn device(&self) -> &SimulatedDevice {
        &self.device
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    pub fn address(&self) -> BleAddress {
        self.device.address()
    }

    /// Sequence numbers of the glucose records still stored on the device.
    pub fn stored_sequences(&self) -> Vec<u16> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    /// A deterministic pseudo-random number in `low..=high` (xorshift64).
    fn next_in(&mut self, low: i64, high: i64) -> i64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let span = u64::try_from(high - low + 1).unwrap_or(1);
        low + i64::try_from(self.state % span).unwrap_or(0)
    }

    /// Takes one measurement: pushes it (delivered now or on the next connection), or for a
    /// glucose meter stores it as the next record. Returns the encoded bytes.
    pub fn measure(&mut self) -> Result<Vec<u8>, EncodeError> {
        let now = device_time(OffsetDateTime::now_utc());
        let n = |m: i64, e: i8| MeasuredValue::Number(Decimal::new(m, e));
        self.device.set_value(current_time(), current_time_bytes());
        let (characteristic, bytes) = match self.profile {
            Profile::HeartRate => (
                uuids::HEART_RATE_MEASUREMENT,
                heart_rate::encode(&heart_rate::HeartRateMeasurement {
                    heart_rate: u16::try_from(self.next_in(55, 100)).unwrap_or(70),
                    wide_format: false,
                    sensor_contact: heart_rate::SensorContact::Detected,
                    energy_expended_kj: None,
                    rr_intervals: Vec::new(),
                })?,
            ),
            Profile::BloodPressure => {
                let systolic = self.next_in(105, 145);
                let diastolic = self.next_in(65, 92);
                (
                    uuids::BLOOD_PRESSURE_MEASUREMENT,
                    blood_pressure::encode(&blood_pressure::BloodPressureMeasurement {
                        unit: blood_pressure::PressureUnit::MillimetresOfMercury,
                        systolic: n(systolic, 0),
                        diastolic: n(diastolic, 0),
                        mean_arterial: n((systolic + 2 * diastolic) / 3, 0),
                        timestamp: Some(now),
                        pulse_rate: Some(n(self.next_in(55, 95), 0)),
                        user_id: None,
                        status: None,
                    })?,
                )
            }
            Profile::Thermometer => (
                uuids::TEMPERATURE_MEASUREMENT,
                thermometer::encode(&thermometer::TemperatureMeasurement {
                    unit: thermometer::TemperatureUnit::Celsius,
                    value: n(self.next_in(361, 378), -1),
                    timestamp: Some(now),
                    temperature_type: Some(thermometer::TemperatureType::Ear),
                })?,
            ),
            Profile::PulseOximeter => (
                uuids::PLX_SPOT_CHECK_MEASUREMENT,
                plx::encode_spot_check(&plx::PlxSpotCheck {
                    spo2: n(self.next_in(93, 99), 0),
                    pulse_rate: n(self.next_in(55, 95), 0),
                    timestamp: Some(now),
                    measurement_status: None,
                    device_sensor_status: None,
                    pulse_amplitude_index: None,
                    device_clock_not_set: false,
                })?,
            ),
            Profile::WeightScale => (
                uuids::WEIGHT_MEASUREMENT,
                weight::encode(&weight::WeightMeasurement {
                    units: weight::WeightUnits::Si,
                    // 0.005 kg steps: 55.000..=95.000 kg.
                    weight_raw: u16::try_from(self.next_in(11_000, 19_000)).unwrap_or(14_000),
                    timestamp: Some(now),
                    user_id: None,
                    bmi_and_height: None,
                })?,
            ),
            Profile::Glucose => {
                let sequence = self.next_sequence;
                self.next_sequence = self.next_sequence.wrapping_add(1);
                let bytes = glucose::encode(&glucose::GlucoseMeasurement {
                    sequence,
                    base_time: now,
                    time_offset_minutes: Some(0),
                    concentration: Some(glucose::GlucoseConcentration {
                        // mg/dL 70..=160 as kg/L: 100 mg/dL = 100e-5 kg/L.
                        value: n(self.next_in(70, 160), -5),
                        unit: glucose::GlucoseUnit::KilogramPerLitre,
                        sample_type: 1,
                        sample_location: 1,
                    }),
                    sensor_status: None,
                    context_follows: false,
                })?;
                self.records
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(sequence, bytes.clone());
                return Ok(bytes);
            }
        };
        self.device
            .push(self.profile.characteristic(characteristic), bytes.clone());
        Ok(bytes)
    }
}
