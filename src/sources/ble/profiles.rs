//! The standard Bluetooth SIG health profiles the BLE source speaks: which service identifies
//! each, which characteristics carry measurements, which describe the device's features.

use serde::{Deserialize, Serialize};
use vectorcare_hal::ble::{CharacteristicRef, uuid16};

use crate::decode::gatt::{clock, uuids};
use crate::reading::DeviceTime;

/// Service UUIDs (16-bit SIG numbers).
pub mod services {
    pub const HEALTH_THERMOMETER: u16 = 0x1809;
    pub const HEART_RATE: u16 = 0x180D;
    pub const BLOOD_PRESSURE: u16 = 0x1810;
    pub const GLUCOSE: u16 = 0x1808;
    pub const WEIGHT_SCALE: u16 = 0x181D;
    pub const PULSE_OXIMETER: u16 = 0x1822;
    pub const CONTINUOUS_GLUCOSE_MONITORING: u16 = 0x181F;
    pub const CURRENT_TIME: u16 = 0x1805;
    pub const DEVICE_INFORMATION: u16 = 0x180A;
}

/// Device Information characteristics read at connect (when present).
pub mod device_information {
    pub const SYSTEM_ID: u16 = 0x2A23;
    pub const MODEL_NUMBER: u16 = 0x2A24;
    pub const SERIAL_NUMBER: u16 = 0x2A25;
    pub const MANUFACTURER_NAME: u16 = 0x2A29;
}

/// Glucose Feature (read; not decoded, only checked for presence).
pub const GLUCOSE_FEATURE: u16 = 0x2A51;
/// CGM Feature: says whether records carry an E2E-CRC.
pub const CGM_FEATURE: u16 = 0x2AA8;
/// CGM Session Start Time: turns record time offsets into device times.
pub const CGM_SESSION_START_TIME: u16 = 0x2AAA;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    HeartRate,
    BloodPressure,
    Thermometer,
    PulseOximeter,
    WeightScale,
    Glucose,
    /// Continuous glucose monitor (records fetched through RACP by time offset).
    Cgm,
}

impl Profile {
    pub const ALL: [Profile; 7] = [
        Profile::HeartRate,
        Profile::BloodPressure,
        Profile::Thermometer,
        Profile::PulseOximeter,
        Profile::WeightScale,
        Profile::Glucose,
        Profile::Cgm,
    ];

    /// The config spelling ("heart_rate", …).
    pub fn name(self) -> &'static str {
        match self {
            Profile::HeartRate => "heart_rate",
            Profile::BloodPressure => "blood_pressure",
            Profile::Thermometer => "thermometer",
            Profile::PulseOximeter => "pulse_oximeter",
            Profile::WeightScale => "weight_scale",
            Profile::Glucose => "glucose",
            Profile::Cgm => "cgm",
        }
    }

    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// 16-bit number of the service that identifies the profile.
    pub fn service(self) -> u16 {
        match self {
            Profile::HeartRate => services::HEART_RATE,
            Profile::BloodPressure => services::BLOOD_PRESSURE,
            Profile::Thermometer => services::HEALTH_THERMOMETER,
            Profile::PulseOximeter => services::PULSE_OXIMETER,
            Profile::WeightScale => services::WEIGHT_SCALE,
            Profile::Glucose => services::GLUCOSE,
            Profile::Cgm => services::CONTINUOUS_GLUCOSE_MONITORING,
        }
    }

    pub fn from_service(service: u16) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.service() == service)
    }

    /// Characteristics whose pushed values are final measurements (subscribe to each present).
    pub fn measurements(self) -> &'static [u16] {
        match self {
            Profile::HeartRate => &[uuids::HEART_RATE_MEASUREMENT],
            Profile::BloodPressure => &[uuids::BLOOD_PRESSURE_MEASUREMENT],
            Profile::Thermometer => &[uuids::TEMPERATURE_MEASUREMENT],
            Profile::PulseOximeter => &[
                uuids::PLX_SPOT_CHECK_MEASUREMENT,
                uuids::PLX_CONTINUOUS_MEASUREMENT,
            ],
            Profile::WeightScale => &[uuids::WEIGHT_MEASUREMENT],
            Profile::Glucose => &[
                uuids::GLUCOSE_MEASUREMENT,
                uuids::GLUCOSE_MEASUREMENT_CONTEXT,
            ],
            Profile::Cgm => &[uuids::CGM_MEASUREMENT],
        }
    }

    /// Feature characteristics read once per connection (they change how values decode).
    pub fn features(self) -> &'static [u16] {
        match self {
            Profile::BloodPressure => &[uuids::BLOOD_PRESSURE_FEATURE],
            Profile::PulseOximeter => &[uuids::PLX_FEATURES],
            Profile::WeightScale => &[uuids::WEIGHT_SCALE_FEATURE],
            Profile::Glucose => &[GLUCOSE_FEATURE],
            Profile::Cgm => &[CGM_FEATURE, CGM_SESSION_START_TIME],
            Profile::HeartRate | Profile::Thermometer => &[],
        }
    }

    /// Stored records are fetched through the Record Access Control Point. Their "sequence"
    /// (RACP filter type 0x01) is the sequence number for Glucose, the time offset for CGM.
    pub fn uses_racp(self) -> bool {
        matches!(self, Profile::Glucose | Profile::Cgm)
    }

    /// The characteristic stored records arrive on.
    pub fn record_measurement(self) -> Option<CharacteristicRef> {
        match self {
            Profile::Glucose => Some(self.characteristic(uuids::GLUCOSE_MEASUREMENT)),
            Profile::Cgm => Some(self.characteristic(uuids::CGM_MEASUREMENT)),
            _ => None,
        }
    }

    pub fn characteristic(self, characteristic: u16) -> CharacteristicRef {
        CharacteristicRef::sig(self.service(), characteristic)
    }

    pub fn racp(self) -> CharacteristicRef {
        self.characteristic(uuids::RECORD_ACCESS_CONTROL_POINT)
    }
}

/// Every service UUID of a supported profile (the scan filter of accept-any mode).
pub fn supported_services() -> Vec<uuid::Uuid> {
    Profile::ALL.iter().map(|p| uuid16(p.service())).collect()
}

/// The current time characteristic (Current Time Service).
pub fn current_time() -> CharacteristicRef {
    CharacteristicRef::sig(services::CURRENT_TIME, uuids::CURRENT_TIME)
}

/// CGM Feature (0x2AA8): 24 feature bits, type/location, E2E-CRC. Bit 12 = "E2E-CRC
/// supported" (records then end in a CRC). `None` when too short.
// Belongs with the CGM decoder in `decode::gatt::cgm` once core grows a Feature decoder.
pub fn cgm_e2e_crc_supported(bytes: &[u8]) -> Option<bool> {
    let features = u32::from_le_bytes([*bytes.first()?, *bytes.get(1)?, *bytes.get(2)?, 0]);
    Some(features & (1 << 12) != 0)
}

/// CGM Session Start Time (0x2AAA): Date Time, time zone, DST offset (+ optional CRC). Only the
/// Date Time is used (record times are in the device's clock, corrected by the clock offset);
/// `None` when unset (year 0) or malformed.
pub fn cgm_session_start(bytes: &[u8]) -> Option<DeviceTime> {
    let start = clock::decode_date_time(bytes.get(..7)?).ok()?;
    (start.year != 0).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgm_feature_and_session_start() {
        assert_eq!(
            cgm_e2e_crc_supported(&[0x00, 0x10, 0x00, 0x11, 0xFF, 0xFF]),
            Some(true)
        );
        assert_eq!(
            cgm_e2e_crc_supported(&[0xFF, 0xEF, 0xFF, 0x11, 0xFF, 0xFF]),
            Some(false)
        );
        assert_eq!(cgm_e2e_crc_supported(&[0x00]), None);
        let start = [0xEA, 0x07, 11, 28, 23, 59, 30, 0, 0];
        assert_eq!(
            cgm_session_start(&start),
            Some(DeviceTime {
                year: 2026,
                month: 11,
                day: 28,
                hours: 23,
                minutes: 59,
                seconds: 30
            })
        );
        assert_eq!(
            cgm_session_start(&[0, 0, 11, 28, 23, 59, 30, 0, 0]),
            None,
            "year 0 = unset"
        );
        assert_eq!(cgm_session_start(&[0xEA, 0x07]), None);
    }

    #[test]
    fn names_and_services_round_trip() {
        for p in Profile::ALL {
            assert_eq!(Profile::from_name(p.name()), Some(p));
            assert_eq!(Profile::from_service(p.service()), Some(p));
            assert!(!p.measurements().is_empty());
        }
        assert_eq!(Profile::from_name("spirometer"), None);
        assert_eq!(
            Profile::from_service(0x180F),
            None,
            "battery is not a health profile"
        );
    }
}
