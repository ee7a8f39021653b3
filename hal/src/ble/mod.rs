//! BLE central: the small set of operations the gateway needs from a Bluetooth LE adapter.
//!
//! Two backends implement [`BleCentral`] / [`BlePeripheral`]:
//! - [`btleplug`] — the real one (BlueZ over D-Bus on Linux), plus the BlueZ-only extras
//!   btleplug lacks (remove a stale device object, power-cycle the adapter);
//! - [`bluez_agent`] — a BlueZ pairing agent (org.bluez.Agent1), since btleplug cannot pair;
//! - [`simulated`] — an in-process GATT server: characteristic values, notification and
//!   indication streams and write handlers are all supplied by the caller, so this crate
//!   stays ignorant of vital signs.
//!
//! Characteristics are named by (service UUID, characteristic UUID): the same characteristic
//! UUID (e.g. Record Access Control Point 0x2A52) appears in several services.
//! Indications and notifications arrive on the same stream: the central acknowledges
//! indications itself (BlueZ does), so callers treat both alike.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use futures::Stream;
use uuid::Uuid;

pub mod bluez_agent;
pub mod btleplug;
pub mod simulated;

/// A boxed stream, as both backends hand them out.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;

/// The Bluetooth base UUID with a 16-bit SIG-assigned number filled in (0x180D → 0000180d-…).
pub const fn uuid16(short: u16) -> Uuid {
    Uuid::from_u128(((short as u128) << 96) | 0x0000_0000_0000_1000_8000_0080_5f9b_34fb)
}

/// The 16-bit SIG number of a base-UUID UUID, if it is one.
pub fn short_uuid(uuid: &Uuid) -> Option<u16> {
    let value = uuid.as_u128();
    let base = uuid16(0).as_u128();
    if value & !(0xffff_u128 << 96) == base {
        Some((value >> 96) as u16)
    } else {
        None
    }
}

/// A 48-bit Bluetooth device address, written "AA:BB:CC:DD:EE:FF".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BleAddress(pub [u8; 6]);

impl fmt::Display for BleAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The text is not six ':'-separated hex pairs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Bluetooth address (want six hex pairs separated by ':')")]
pub struct ParseAddressError;

impl FromStr for BleAddress {
    type Err = ParseAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or(ParseAddressError)?;
            if part.len() != 2 {
                return Err(ParseAddressError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseAddressError)?;
        }
        if parts.next().is_some() {
            return Err(ParseAddressError);
        }
        Ok(BleAddress(out))
    }
}

/// Names one characteristic: its service and its own UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CharacteristicRef {
    pub service: Uuid,
    pub characteristic: Uuid,
}

impl CharacteristicRef {
    pub const fn new(service: Uuid, characteristic: Uuid) -> Self {
        Self {
            service,
            characteristic,
        }
    }

    /// Both given as 16-bit SIG numbers.
    pub const fn sig(service: u16, characteristic: u16) -> Self {
        Self::new(uuid16(service), uuid16(characteristic))
    }
}

/// What a characteristic supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CharProps {
    pub read: bool,
    pub write: bool,
    pub write_without_response: bool,
    pub notify: bool,
    pub indicate: bool,
}

impl CharProps {
    pub const READ: CharProps = CharProps {
        read: true,
        write: false,
        write_without_response: false,
        notify: false,
        indicate: false,
    };
    pub const NOTIFY: CharProps = CharProps {
        notify: true,
        ..CharProps::NONE
    };
    pub const INDICATE: CharProps = CharProps {
        indicate: true,
        ..CharProps::NONE
    };
    /// Control points (RACP, SOCP): written with response, answer by indication.
    pub const WRITE_INDICATE: CharProps = CharProps {
        write: true,
        indicate: true,
        ..CharProps::NONE
    };
    pub const NONE: CharProps = CharProps {
        read: false,
        write: false,
        write_without_response: false,
        notify: false,
        indicate: false,
    };

    /// The device can push values (notification or indication).
    pub fn pushes(&self) -> bool {
        self.notify || self.indicate
    }
}

/// A discovered characteristic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GattCharacteristic {
    pub id: CharacteristicRef,
    pub props: CharProps,
}

/// A discovered service with its characteristics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GattService {
    pub uuid: Uuid,
    pub primary: bool,
    pub characteristics: Vec<GattCharacteristic>,
}

/// What a device advertised (or what the adapter remembers of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    pub address: BleAddress,
    pub name: Option<String>,
    pub rssi: Option<i16>,
    /// Advertised service UUIDs (may be incomplete: devices advertise a subset).
    pub services: Vec<Uuid>,
}

/// Adapter power state as the central sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterState {
    PoweredOn,
    PoweredOff,
    /// No adapter, or its state cannot be read.
    Unavailable,
}

/// Things the adapter reports without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CentralEvent {
    /// A device was seen advertising (first time or again).
    Advertised(Advertisement),
    Connected(BleAddress),
    Disconnected(BleAddress),
    AdapterState(AdapterState),
}

/// Which devices a scan reports: those advertising any of `services` (all when empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanFilter {
    pub services: Vec<Uuid>,
}

/// A value pushed by the device (notification or indication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub characteristic: CharacteristicRef,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    WithResponse,
    WithoutResponse,
}

/// Why a BLE operation failed. BlueZ's D-Bus error names map to the named variants so callers
/// can pick the recovery (wait and retry, remove the stale device, pair, power-cycle).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BleError {
    /// No adapter (unplugged, BlueZ not running, no D-Bus). Keep trying.
    #[error("Bluetooth adapter unavailable: {0}")]
    AdapterUnavailable(String),
    /// The adapter is powered off (org.bluez.Error.NotReady).
    #[error("Bluetooth adapter not ready (powered off)")]
    NotReady,
    /// Another operation is running on the adapter or device (org.bluez.Error.InProgress).
    #[error("operation already in progress")]
    InProgress,
    /// The adapter gave up the connection itself (le-connection-abort-by-local): the device
    /// object is usually stale; remove it and rediscover.
    #[error("connection aborted by local adapter")]
    ConnectionAbortedLocally,
    /// The device is not known to the adapter (not seen in a scan yet).
    #[error("device not found")]
    DeviceNotFound,
    #[error("device not connected")]
    NotConnected,
    #[error("characteristic {0:?} not found on the device")]
    NoSuchCharacteristic(CharacteristicRef),
    /// The device wants an encrypted (paired) link for this operation.
    #[error("insufficient security: the device must be paired")]
    InsufficientSecurity,
    #[error("timed out")]
    TimedOut,
    /// org.bluez.Error.Failed and anything else BlueZ reports as a plain failure.
    #[error("operation failed: {0}")]
    Failed(String),
    #[error("{0}")]
    Other(String),
}

impl BleError {
    /// The stale device object should be removed before the next connect.
    pub fn wants_device_removal(&self) -> bool {
        matches!(self, BleError::ConnectionAbortedLocally)
    }

    /// The adapter itself is the problem (missing or off): waiting on the device won't help.
    pub fn is_adapter_problem(&self) -> bool {
        matches!(self, BleError::AdapterUnavailable(_) | BleError::NotReady)
    }
}

/// Maps a BlueZ D-Bus error (name and message) to a [`BleError`].
pub fn bluez_error(name: &str, message: &str) -> BleError {
    if message.contains("le-connection-abort-by-local") {
        return BleError::ConnectionAbortedLocally;
    }
    match name.rsplit('.').next().unwrap_or(name) {
        "InProgress" => BleError::InProgress,
        "NotReady" => BleError::NotReady,
        "DoesNotExist" | "UnknownObject" => BleError::DeviceNotFound,
        "NotConnected" => BleError::NotConnected,
        "NotPermitted" | "NotAuthorized" | "AuthenticationFailed" => {
            if message.to_ascii_lowercase().contains("insufficient")
                || name.ends_with("NotAuthorized")
            {
                BleError::InsufficientSecurity
            } else {
                BleError::Failed(message.to_owned())
            }
        }
        "ServiceUnknown" | "NoReply" | "Disconnected"
            if name.starts_with("org.freedesktop.DBus") =>
        {
            BleError::AdapterUnavailable(message.to_owned())
        }
        "Failed" => BleError::Failed(message.to_owned()),
        _ => BleError::Other(format!("{name}: {message}")),
    }
}

/// A future that is `Send`, as trait methods return them.
pub trait SendFuture<T>: Future<Output = T> + Send {}
impl<T, F: Future<Output = T> + Send> SendFuture<T> for F {}

/// A BLE adapter acting as central.
pub trait BleCentral: Send + Sync + fmt::Debug + 'static {
    type Peripheral: BlePeripheral;

    /// Power state of the adapter.
    fn adapter_state(&self) -> impl SendFuture<Result<AdapterState, BleError>>;

    /// Events from now on. Each call gets its own stream.
    fn events(&self) -> impl SendFuture<Result<BoxStream<CentralEvent>, BleError>>;

    fn start_scan(&self, filter: &ScanFilter) -> impl SendFuture<Result<(), BleError>>;

    fn stop_scan(&self) -> impl SendFuture<Result<(), BleError>>;

    /// Devices the adapter currently knows (seen advertising, or bonded).
    fn known_devices(&self) -> impl SendFuture<Result<Vec<Advertisement>, BleError>>;

    /// A handle on a known device.
    fn peripheral(
        &self,
        address: BleAddress,
    ) -> impl SendFuture<Result<Self::Peripheral, BleError>>;

    /// Forgets a device (BlueZ: Adapter1.RemoveDevice) so a stale object cannot wedge connects.
    fn remove_device(&self, address: BleAddress) -> impl SendFuture<Result<(), BleError>>;

    /// Powers the adapter on or off (used to power-cycle a wedged adapter).
    fn set_powered(&self, on: bool) -> impl SendFuture<Result<(), BleError>>;
}

/// A remote device, as the central talks to it.
pub trait BlePeripheral: Send + Sync + Clone + fmt::Debug + 'static {
    fn address(&self) -> BleAddress;

    fn connect(&self) -> impl SendFuture<Result<(), BleError>>;

    fn disconnect(&self) -> impl SendFuture<Result<(), BleError>>;

    fn is_connected(&self) -> impl SendFuture<Result<bool, BleError>>;

    /// Discovers (or returns the cached) GATT database.
    fn discover_services(&self) -> impl SendFuture<Result<Vec<GattService>, BleError>>;

    fn read(&self, characteristic: CharacteristicRef)
    -> impl SendFuture<Result<Vec<u8>, BleError>>;

    fn write(
        &self,
        characteristic: CharacteristicRef,
        value: &[u8],
        kind: WriteKind,
    ) -> impl SendFuture<Result<(), BleError>>;

    /// Enables notifications or indications (whichever the characteristic supports).
    fn subscribe(&self, characteristic: CharacteristicRef)
    -> impl SendFuture<Result<(), BleError>>;

    fn unsubscribe(
        &self,
        characteristic: CharacteristicRef,
    ) -> impl SendFuture<Result<(), BleError>>;

    /// Values pushed by the device from now on, for every subscribed characteristic. The stream
    /// ends when the link drops.
    fn notifications(&self) -> impl SendFuture<Result<BoxStream<Notification>, BleError>>;
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<btleplug::BtleplugCentral>();
    assert_send_sync::<btleplug::BtleplugPeripheral>();
    assert_send_sync::<simulated::SimulatedCentral>();
    assert_send_sync::<simulated::SimulatedPeripheral>();
    assert_send_sync::<BleError>();
    assert_send_sync::<bluez_agent::PairingAgent>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sig_uuids_round_trip() {
        let hr = uuid16(0x180D);
        assert_eq!(hr.to_string(), "0000180d-0000-1000-8000-00805f9b34fb");
        assert_eq!(short_uuid(&hr), Some(0x180D));
        assert_eq!(short_uuid(&Uuid::from_u128(1)), None);
    }

    #[test]
    fn addresses_parse_and_print() {
        let a: BleAddress = "aa:BB:0c:DD:EE:01".parse().expect("valid address");
        assert_eq!(a.to_string(), "AA:BB:0C:DD:EE:01");
        for bad in [
            "",
            "AA:BB",
            "AA:BB:CC:DD:EE:FF:00",
            "AAB:B:CC:DD:EE:FF",
            "GG:BB:CC:DD:EE:FF",
        ] {
            assert!(bad.parse::<BleAddress>().is_err(), "{bad} must not parse");
        }
    }

    #[test]
    fn bluez_errors_map_to_recoveries() {
        assert_eq!(
            bluez_error("org.bluez.Error.InProgress", "busy"),
            BleError::InProgress
        );
        assert_eq!(
            bluez_error("org.bluez.Error.NotReady", "x"),
            BleError::NotReady
        );
        assert_eq!(
            bluez_error("org.bluez.Error.Failed", "le-connection-abort-by-local"),
            BleError::ConnectionAbortedLocally
        );
        assert!(
            bluez_error("org.bluez.Error.Failed", "le-connection-abort-by-local")
                .wants_device_removal()
        );
        assert_eq!(
            bluez_error("org.bluez.Error.Failed", "Software caused connection abort"),
            BleError::Failed("Software caused connection abort".into())
        );
        assert_eq!(
            bluez_error("org.bluez.Error.NotPermitted", "Insufficient encryption"),
            BleError::InsufficientSecurity
        );
        assert!(
            bluez_error("org.freedesktop.DBus.Error.ServiceUnknown", "no bluez")
                .is_adapter_problem()
        );
    }
}
