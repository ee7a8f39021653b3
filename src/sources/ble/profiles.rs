//! The standard Bluetooth SIG health profiles the BLE source speaks: which service identifies
//! each, which characteristics carry measurements, which describe the device's features.

use serde::{Deserialize, Serialize};
use vectorcare_hal::ble::{CharacteristicRef, uuid16};

use crate::decode::gatt::uuids;

/// Service UUIDs (16-bit SIG numbers).
pub mod services {
    pub const HEALTH_THERMOMETER: u16 = 0x1809;
    pub const HEART_RATE: u16 = 0x180D;
    pub const BLOOD_PRESSURE: u16 = 0x1810;
    pub const GLUCOSE: u16 = 0x1808;
    pub const WEIGHT_SCALE: u16 = 0x181D;
    pub const PULSE_OXIMETER: u16 = 0x1822;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    HeartRate,
    BloodPressure,
    Thermometer,
    PulseOximeter,
    WeightScale,
    Glucose,
}

impl Profile {
    pub const ALL: [Profile; 6] = [
        Profile::HeartRate,
        Profile::BloodPressure,
        Profile::Thermometer,
        Profile::PulseOximeter,
        Profile::WeightScale,
        Profile::Glucose,
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
        }
    }

    /// Feature characteristics read once per connection (they change how values decode).
    pub fn features(self) -> &'static [u16] {
        match self {
            Profile::BloodPressure => &[uuids::BLOOD_PRESSURE_FEATURE],
            Profile::PulseOximeter => &[uuids::PLX_FEATURES],
            Profile::WeightScale => &[uuids::WEIGHT_SCALE_FEATURE],
            Profile::Glucose => &[GLUCOSE_FEATURE],
            Profile::HeartRate | Profile::Thermometer => &[],
        }
    }

    /// Stored records are fetched through the Record Access Control Point.
    pub fn uses_racp(self) -> bool {
        matches!(self, Profile::Glucose)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_services_round_trip() {
        for p in Profile::ALL {
            assert_eq!(Profile::from_name(p.name()), Some(p));
            assert_eq!(Profile::from_service(p.service()), Some(p));
            assert!(!p.measurements().is_empty());
        }
        assert_eq!(Profile::from_name("cgm"), None);
        assert_eq!(
            Profile::from_service(0x180F),
            None,
            "battery is not a health profile"
        );
    }
}
