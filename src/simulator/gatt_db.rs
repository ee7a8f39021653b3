//! The GATT database a simulated peripheral serves, per profile, as plain data: the profile's
//! service (Bluetooth SIG service specifications: characteristic UUIDs and properties), the
//! Current Time Service and Device Information. Both BLE targets build from it: hal's
//! in-process device ([`peripheral_spec`]) and the BlueZ GATT application
//! ([`super::bluer_peripheral`]).

use vectorcare_hal::ble::simulated::{PeripheralSpec, SimCharacteristic, SimService};
use vectorcare_hal::ble::{BleAddress, CharProps, uuid16};

use time::OffsetDateTime;

use super::engine::CGM_SESSION_LEAD_SECONDS;
use super::scenario::BleProfile;
use crate::decode::EncodeError;
use crate::decode::gatt::{blood_pressure, cgm, clock, plx, thermometer, uuids, weight};
use crate::reading::DeviceTime;
use crate::sources::ble::profiles::{GLUCOSE_FEATURE, device_information, services};

pub const CGM_SERVICE: u16 = 0x181F;
pub const CGM_FEATURE: u16 = 0x2AA8;
pub const CGM_STATUS: u16 = 0x2AA9;
pub const CGM_SESSION_START_TIME: u16 = 0x2AAA;
pub const CGM_SESSION_RUN_TIME: u16 = 0x2AAB;
pub const CGM_SOCP: u16 = 0x2AAC;

/// Read + notify (Current Time).
pub const READ_NOTIFY: CharProps = CharProps {
    read: true,
    notify: true,
    ..CharProps::NONE
};
/// Read + write (CGM Session Start Time).
pub const READ_WRITE: CharProps = CharProps {
    read: true,
    write: true,
    ..CharProps::NONE
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharDef {
    pub uuid: u16,
    pub props: CharProps,
    /// The value reads return (empty for pushed-only characteristics).
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDef {
    pub uuid: u16,
    pub characteristics: Vec<CharDef>,
}

pub fn service_uuid(profile: BleProfile) -> u16 {
    match profile {
        BleProfile::HeartRate => services::HEART_RATE,
        BleProfile::BloodPressure => services::BLOOD_PRESSURE,
        BleProfile::Thermometer => services::HEALTH_THERMOMETER,
        BleProfile::PulseOximeter => services::PULSE_OXIMETER,
        BleProfile::WeightScale => services::WEIGHT_SCALE,
        BleProfile::Glucose => services::GLUCOSE,
        BleProfile::Cgm => CGM_SERVICE,
    }
}

/// The characteristic that answers RACP (Glucose, CGM).
pub fn has_racp(profile: BleProfile) -> bool {
    matches!(profile, BleProfile::Glucose | BleProfile::Cgm)
}

/// Default address in hal's in-process simulator: C0:FF:EE:<service low byte>:<index>
/// (the same scheme as `sources::ble::simulated::simulated_address` with seed = index + 1).
pub fn default_address(profile: BleProfile, index: usize) -> BleAddress {
    let [hi, lo] = u16::try_from(index + 1).unwrap_or(u16::MAX).to_be_bytes();
    BleAddress([0xC0, 0xFF, 0xEE, service_uuid(profile) as u8, hi, lo])
}

pub fn current_time_value(t: DeviceTime) -> Vec<u8> {
    clock::encode_current_time(&clock::CurrentTime {
        date_time: t,
        day_of_week: 0,
        fractions256: 0,
        adjust_reason: 0,
    })
}

fn with_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    let crc = cgm::crc16_mcrf4xx(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// CGM Feature: E2E-CRC supported (bit 12); type capillary whole blood (1), location finger (1).
pub fn cgm_feature_value() -> Vec<u8> {
    let features: u32 = 1 << 12;
    let [a, b, c, _] = features.to_le_bytes();
    with_crc(vec![a, b, c, 0x11])
}

fn date_time_bytes(t: DeviceTime) -> Vec<u8> {
    let mut v = t.year.to_le_bytes().to_vec();
    v.extend([t.month, t.day, t.hours, t.minutes, t.seconds]);
    v
}

/// Device time of `t` (simulated clocks run in UTC).
pub fn device_time(t: OffsetDateTime) -> DeviceTime {
    DeviceTime {
        year: u16::try_from(t.year()).unwrap_or(2000),
        month: u8::from(t.month()),
        day: t.day(),
        hours: t.hour(),
        minutes: t.minute(),
        seconds: t.second(),
    }
}

/// The database of a `profile` device; `run_start` is when the run (and its clock) starts.
pub fn database(
    profile: BleProfile,
    model: &str,
    serial: &str,
    run_start: OffsetDateTime,
) -> Result<Vec<ServiceDef>, EncodeError> {
    let start = device_time(run_start);
    let session_start =
        device_time(run_start - time::Duration::seconds_f64(CGM_SESSION_LEAD_SECONDS));
    let c = |uuid: u16, props: CharProps| CharDef {
        uuid,
        props,
        value: Vec::new(),
    };
    let v = |uuid: u16, props: CharProps, value: Vec<u8>| CharDef { uuid, props, value };
    let chars = match profile {
        BleProfile::HeartRate => vec![c(uuids::HEART_RATE_MEASUREMENT, CharProps::NOTIFY)],
        BleProfile::BloodPressure => vec![
            c(uuids::BLOOD_PRESSURE_MEASUREMENT, CharProps::INDICATE),
            v(
                uuids::BLOOD_PRESSURE_FEATURE,
                CharProps::READ,
                blood_pressure::encode_feature(&blood_pressure::BloodPressureFeature { bits: 0 }),
            ),
        ],
        BleProfile::Thermometer => vec![
            c(uuids::TEMPERATURE_MEASUREMENT, CharProps::INDICATE),
            v(
                uuids::TEMPERATURE_TYPE,
                CharProps::READ,
                thermometer::encode_type(thermometer::TemperatureType::Ear),
            ),
        ],
        BleProfile::PulseOximeter => vec![
            c(uuids::PLX_SPOT_CHECK_MEASUREMENT, CharProps::INDICATE),
            v(
                uuids::PLX_FEATURES,
                CharProps::READ,
                plx::encode_features(&plx::PlxFeatures {
                    supported: 0,
                    measurement_status_support: None,
                    device_sensor_status_support: None,
                })?,
            ),
        ],
        BleProfile::WeightScale => vec![
            c(uuids::WEIGHT_MEASUREMENT, CharProps::INDICATE),
            v(
                uuids::WEIGHT_SCALE_FEATURE,
                CharProps::READ,
                weight::encode_feature(&weight::WeightScaleFeature {
                    timestamp_supported: true,
                    multiple_users_supported: false,
                    bmi_supported: false,
                    weight_resolution: 0,
                    height_resolution: 0,
                })?,
            ),
        ],
        BleProfile::Glucose => vec![
            c(uuids::GLUCOSE_MEASUREMENT, CharProps::NOTIFY),
            c(uuids::GLUCOSE_MEASUREMENT_CONTEXT, CharProps::NOTIFY),
            v(GLUCOSE_FEATURE, CharProps::READ, vec![0, 0]),
            c(
                uuids::RECORD_ACCESS_CONTROL_POINT,
                CharProps::WRITE_INDICATE,
            ),
        ],
        BleProfile::Cgm => vec![
            c(uuids::CGM_MEASUREMENT, CharProps::NOTIFY),
            v(CGM_FEATURE, CharProps::READ, cgm_feature_value()),
            // Status: time offset 0, no annunciation.
            v(CGM_STATUS, CharProps::READ, with_crc(vec![0, 0, 0, 0, 0])),
            // Session Start Time: date time, time zone UTC (0), DST standard (0).
            v(CGM_SESSION_START_TIME, READ_WRITE, {
                let mut b = date_time_bytes(session_start);
                b.extend([0, 0]);
                with_crc(b)
            }),
            // Session Run Time: 14 days.
            v(
                CGM_SESSION_RUN_TIME,
                CharProps::READ,
                with_crc(336u16.to_le_bytes().to_vec()),
            ),
            c(
                uuids::RECORD_ACCESS_CONTROL_POINT,
                CharProps::WRITE_INDICATE,
            ),
            c(CGM_SOCP, CharProps::WRITE_INDICATE),
        ],
    };
    let text = |s: &str| s.as_bytes().to_vec();
    Ok(vec![
        ServiceDef {
            uuid: service_uuid(profile),
            characteristics: chars,
        },
        ServiceDef {
            uuid: services::CURRENT_TIME,
            characteristics: vec![v(
                uuids::CURRENT_TIME,
                READ_NOTIFY,
                current_time_value(start),
            )],
        },
        ServiceDef {
            uuid: services::DEVICE_INFORMATION,
            characteristics: vec![
                v(
                    device_information::MANUFACTURER_NAME,
                    CharProps::READ,
                    text("VectorCare Simulated Devices"),
                ),
                v(
                    device_information::MODEL_NUMBER,
                    CharProps::READ,
                    text(model),
                ),
                v(
                    device_information::SERIAL_NUMBER,
                    CharProps::READ,
                    text(serial),
                ),
            ],
        },
    ])
}

/// The database as a device of hal's in-process simulator.
pub fn peripheral_spec(
    profile: BleProfile,
    address: BleAddress,
    name: &str,
    db: &[ServiceDef],
) -> PeripheralSpec {
    PeripheralSpec {
        address,
        name: Some(name.to_owned()),
        rssi: Some(-60),
        advertised_services: vec![uuid16(service_uuid(profile))],
        services: db
            .iter()
            .map(|s| SimService {
                uuid: uuid16(s.uuid),
                characteristics: s
                    .characteristics
                    .iter()
                    .map(|c| {
                        SimCharacteristic::new(uuid16(c.uuid), c.props).with_value(c.value.clone())
                    })
                    .collect(),
            })
            .collect(),
    }
}
