//! Observation time: the device timestamp corrected by the known device-clock offset, or the
//! gateway receive time with a flag saying why. Never a reading dated in year 0 or after the
//! moment the gateway received it.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::decode::gatt::clock::to_primitive;
use crate::reading::{DeviceTime, Reading, StatusFlag};

/// Tolerance for device-clock jitter before a corrected time counts as "in the future".
const FUTURE_TOLERANCE_SECONDS: i64 = 60;

/// Why the gateway's receive time was used instead of the device's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// Device time corrected by the measured device-clock offset.
    DeviceCorrected,
    /// No device timestamp in the message.
    GatewayNoDeviceTime,
    /// The device reported its clock is not set, or sent year/month/day 0.
    GatewayDeviceClockUnset,
    /// A device timestamp, but no measured device-clock offset to place it in UTC.
    GatewayOffsetUnknown,
    /// The corrected time lay after the receive time.
    GatewayDeviceTimeInFuture,
}

impl TimeSource {
    /// Text of the flag carried on the Observation when the gateway's time was used.
    pub fn flag_text(self) -> Option<&'static str> {
        match self {
            TimeSource::DeviceCorrected => None,
            TimeSource::GatewayNoDeviceTime => Some("time-from-gateway: device sent no timestamp"),
            TimeSource::GatewayDeviceClockUnset => Some("time-from-gateway: device clock not set"),
            TimeSource::GatewayOffsetUnknown => {
                Some("time-from-gateway: device clock offset unknown")
            }
            TimeSource::GatewayDeviceTimeInFuture => {
                Some("time-from-gateway: device time was in the future")
            }
        }
    }
}

pub fn effective_time(reading: &Reading) -> (OffsetDateTime, TimeSource) {
    let received = reading.received_at;
    let Some(device_time) = reading.device_time else {
        return (received, TimeSource::GatewayNoDeviceTime);
    };
    if reading.status.contains(&StatusFlag::DeviceClockNotSet) {
        return (received, TimeSource::GatewayDeviceClockUnset);
    }
    let Some(local) = to_primitive(&device_time) else {
        return (received, TimeSource::GatewayDeviceClockUnset);
    };
    let Some(offset) = reading.clock.device_offset_seconds else {
        return (received, TimeSource::GatewayOffsetUnknown);
    };
    // device clock = gateway clock + offset  ⇒  gateway time = device time − offset.
    let corrected = local
        .assume_utc()
        .checked_sub(time::Duration::seconds(offset));
    match corrected {
        // Within the jitter tolerance (whole-second clocks, an offset read once per connection)
        // the device time stands, but never later than the receipt: a reading is never dated
        // after the gateway's clock when it arrived.
        Some(t) if t <= received + time::Duration::seconds(FUTURE_TOLERANCE_SECONDS) => {
            (t.min(received), TimeSource::DeviceCorrected)
        }
        _ => (received, TimeSource::GatewayDeviceTimeInFuture),
    }
}

/// RFC 3339 in UTC, e.g. "2026-01-02T03:04:05Z" (a FHIR dateTime with seconds and zone).
/// Fails only for years outside 0000..=9999, which RFC 3339 cannot write.
pub fn fhir_instant(t: OffsetDateTime) -> Result<String, time::error::Format> {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339)
}

/// The raw device time exactly as sent, zone-less: "2026-01-02T03:04:05" (zeros kept).
pub fn raw_device_time(t: &DeviceTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hours, t.minutes, t.seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::examples::example_readings;

    /// A device clock a little ahead of its measured offset (drift since the connection, or
    /// whole-second truncation) must not date the reading after its receipt (issue #9, clock).
    #[test]
    fn corrected_time_within_the_tolerance_is_never_after_the_receipt() {
        let mut reading = example_readings().remove(0).1;
        let received = reading.received_at;
        let ahead = received + time::Duration::seconds(30);
        reading.device_time = Some(DeviceTime {
            year: ahead.year() as u16,
            month: ahead.month() as u8,
            day: ahead.day(),
            hours: ahead.hour(),
            minutes: ahead.minute(),
            seconds: ahead.second(),
        });
        reading.status.clear();
        reading.clock.device_offset_seconds = Some(0);
        let (effective, source) = effective_time(&reading);
        assert_eq!(source, TimeSource::DeviceCorrected);
        assert_eq!(effective, received, "dated after its receipt");
        // Behind the receipt: the device time stands as it is.
        reading.clock.device_offset_seconds = Some(60);
        let (effective, _) = effective_time(&reading);
        assert_eq!(effective, received - time::Duration::seconds(30));
    }
}
