//! The real BLE backend: btleplug on BlueZ (D-Bus), plus the BlueZ calls btleplug lacks.
//!
//! btleplug gives scanning, connections and GATT; it cannot remove a device object or power
//! the adapter, so [`BtleplugCentral::remove_device`] and [`BtleplugCentral::set_powered`] call
//! `org.bluez.Adapter1` directly over the system bus (blocking libdbus calls on tokio's
//! blocking pool, with a short timeout). `DBUS_SYSTEM_BUS_ADDRESS` redirects both to another
//! bus, which is how the integration tests put a BlueZ mock in front of them.
//!
//! BlueZ errors arrive as `btleplug::Error::Other(bluez_async::BluetoothError::DbusError)`;
//! [`map_error`] digs the D-Bus error name out so callers see `InProgress`, `NotReady`, ….

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use btleplug::api::{
    BDAddr, Central as _, CentralEvent as BtCentralEvent, CentralState, Manager as _,
    Peripheral as _, ScanFilter as BtScanFilter, WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral};
use futures::StreamExt;

use super::{
    AdapterState, Advertisement, BleAddress, BleCentral, BleError, BlePeripheral, BoxStream,
    CentralEvent, CharProps, CharacteristicRef, GattCharacteristic, GattService, Notification,
    ScanFilter, WriteKind, bluez_error,
};

/// How long one direct D-Bus call to BlueZ may take.
const DBUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for a connect (BlueZ's own page timeout is shorter; this guards a wedged stack).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Maps a btleplug error, reading BlueZ's D-Bus error name when there is one.
pub fn map_error(error: btleplug::Error) -> BleError {
    use btleplug::Error as E;
    match error {
        E::NotConnected => BleError::NotConnected,
        E::DeviceNotFound => BleError::DeviceNotFound,
        E::NoAdapterAvailable => BleError::AdapterUnavailable("no Bluetooth adapter".into()),
        E::TimedOut(_) => BleError::TimedOut,
        E::PermissionDenied => BleError::InsufficientSecurity,
        E::Other(boxed) => match boxed.downcast_ref::<bluez_async::BluetoothError>() {
            Some(bluez_async::BluetoothError::DbusError(e)) => {
                bluez_error(e.name().unwrap_or(""), e.message().unwrap_or(""))
            }
            Some(bluez_async::BluetoothError::NoBluetoothAdapters) => {
                BleError::AdapterUnavailable("no Bluetooth adapter".into())
            }
            Some(bluez_async::BluetoothError::ServiceDiscoveryTimedOut) => BleError::TimedOut,
            _ => BleError::Other(boxed.to_string()),
        },
        other => BleError::Other(other.to_string()),
    }
}

fn dbus_error(e: dbus::Error) -> BleError {
    bluez_error(e.name().unwrap_or(""), e.message().unwrap_or(""))
}

/// One BlueZ adapter through btleplug. The adapter is looked up lazily (and again after it
/// disappeared), so a gateway that starts before its USB dongle or bluetoothd keeps trying
/// instead of failing.
#[derive(Clone)]
pub struct BtleplugCentral {
    manager: Manager,
    /// Configured adapter name ("hci0"); `None` = the first one.
    wanted: Option<String>,
    found: Arc<Mutex<Option<(Adapter, String)>>>,
}

impl std::fmt::Debug for BtleplugCentral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BtleplugCentral")
            .field("adapter", &self.wanted)
            .finish_non_exhaustive()
    }
}

impl BtleplugCentral {
    /// Connects to BlueZ over the system bus. The adapter `name` ("hci0", or the first one when
    /// `None`) need not exist yet: operations fail with `AdapterUnavailable` until it does.
    pub async fn open(name: Option<&str>) -> Result<Self, BleError> {
        let manager = Manager::new().await.map_err(map_error)?;
        Ok(Self {
            manager,
            wanted: name.map(str::to_owned),
            found: Arc::new(Mutex::new(None)),
        })
    }

    /// The adapter's BlueZ name once found.
    pub async fn adapter_name(&self) -> Result<String, BleError> {
        Ok(self.adapter().await?.1)
    }

    async fn adapter(&self) -> Result<(Adapter, String), BleError> {
        if let Some(found) = self
            .found
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(found);
        }
        let adapters = self.manager.adapters().await.map_err(map_error)?;
        for adapter in adapters {
            // BlueZ adapter info reads "hci0 (usb:v1D6Bp0246d0540)".
            let info = adapter.adapter_info().await.map_err(map_error)?;
            let id = info.split_whitespace().next().unwrap_or("").to_owned();
            if self.wanted.as_deref().is_none_or(|n| n == id) {
                let found = (adapter, id);
                *self.found.lock().unwrap_or_else(PoisonError::into_inner) = Some(found.clone());
                return Ok(found);
            }
        }
        Err(BleError::AdapterUnavailable(match &self.wanted {
            Some(n) => format!("adapter {n} not found"),
            None => "no Bluetooth adapter".into(),
        }))
    }

    /// Forgets the adapter after it vanished, so the next operation looks it up again.
    fn forget_on_absence<T>(&self, result: Result<T, BleError>) -> Result<T, BleError> {
        if matches!(
            result,
            Err(BleError::AdapterUnavailable(_) | BleError::DeviceNotFound)
        ) {
            *self.found.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        result
    }

    async fn find(&self, address: BleAddress) -> Result<Peripheral, BleError> {
        let (adapter, _) = self.adapter().await?;
        let wanted = BDAddr::from(address.0);
        let peripherals = adapter.peripherals().await.map_err(map_error);
        self.forget_on_absence(peripherals)?
            .into_iter()
            .find(|p| p.address() == wanted)
            .ok_or(BleError::DeviceNotFound)
    }

    /// A blocking call on `/org/bluez/<adapter>` on the system bus.
    async fn adapter_call<T: Send + 'static>(
        &self,
        call: impl FnOnce(
            &dbus::blocking::Proxy<'_, &dbus::blocking::Connection>,
        ) -> Result<T, dbus::Error>
        + Send
        + 'static,
    ) -> Result<T, BleError> {
        let path = format!("/org/bluez/{}", self.adapter().await?.1);
        tokio::task::spawn_blocking(move || {
            let conn = dbus::blocking::Connection::new_system().map_err(dbus_error)?;
            let proxy = conn.with_proxy("org.bluez", path, DBUS_TIMEOUT);
            call(&proxy).map_err(dbus_error)
        })
        .await
        .map_err(|e| BleError::Other(format!("D-Bus call task failed: {e}")))?
    }
}

async fn advertisement(peripheral: &Peripheral) -> Result<Advertisement, BleError> {
    let props = peripheral.properties().await.map_err(map_error)?;
    let address = BleAddress(peripheral.address().into_inner());
    Ok(match props {
        Some(p) => Advertisement {
            address,
            name: p.local_name.or(p.advertisement_name),
            rssi: p.rssi,
            services: p.services,
        },
        None => Advertisement {
            address,
            name: None,
            rssi: None,
            services: Vec::new(),
        },
    })
}

async fn translate(adapter: &Adapter, event: BtCentralEvent) -> Option<CentralEvent> {
    use BtCentralEvent as E;
    let id = match event {
        E::StateUpdate(state) => {
            return Some(CentralEvent::AdapterState(match state {
                CentralState::PoweredOn => AdapterState::PoweredOn,
                CentralState::PoweredOff => AdapterState::PoweredOff,
                CentralState::Unknown => AdapterState::Unavailable,
            }));
        }
        E::DeviceConnected(id) => {
            let p = adapter.peripheral(&id).await.ok()?;
            return Some(CentralEvent::Connected(BleAddress(
                p.address().into_inner(),
            )));
        }
        E::DeviceDisconnected(id) => {
            let p = adapter.peripheral(&id).await.ok()?;
            return Some(CentralEvent::Disconnected(BleAddress(
                p.address().into_inner(),
            )));
        }
        E::DeviceDiscovered(id)
        | E::ServicesAdvertisement { id, .. }
        | E::ServiceDataAdvertisement { id, .. }
        | E::ManufacturerDataAdvertisement { id, .. }
        | E::RssiUpdate { id, .. } => id,
        E::DeviceUpdated(_) | E::DeviceServicesModified(_) => return None,
    };
    let p = adapter.peripheral(&id).await.ok()?;
    advertisement(&p).await.ok().map(CentralEvent::Advertised)
}

impl BleCentral for BtleplugCentral {
    type Peripheral = BtleplugPeripheral;

    async fn adapter_state(&self) -> Result<AdapterState, BleError> {
        let adapter = match self.adapter().await {
            Ok((adapter, _)) => adapter,
            Err(BleError::AdapterUnavailable(_)) => return Ok(AdapterState::Unavailable),
            Err(e) => return Err(e),
        };
        match adapter.adapter_state().await {
            Ok(CentralState::PoweredOn) => Ok(AdapterState::PoweredOn),
            Ok(CentralState::PoweredOff) => Ok(AdapterState::PoweredOff),
            Ok(CentralState::Unknown) => Ok(AdapterState::Unavailable),
            Err(e) => match map_error(e) {
                BleError::AdapterUnavailable(_) | BleError::DeviceNotFound => {
                    *self.found.lock().unwrap_or_else(PoisonError::into_inner) = None;
                    Ok(AdapterState::Unavailable)
                }
                other => Err(other),
            },
        }
    }

    async fn events(&self) -> Result<BoxStream<CentralEvent>, BleError> {
        let (adapter, _) = self.adapter().await?;
        let events = adapter.events().await.map_err(map_error)?;
        Ok(Box::pin(events.filter_map(move |event| {
            let adapter = adapter.clone();
            async move { translate(&adapter, event).await }
        })))
    }

    async fn start_scan(&self, filter: &ScanFilter) -> Result<(), BleError> {
        let (adapter, _) = self.adapter().await?;
        let result = adapter
            .start_scan(BtScanFilter {
                services: filter.services.clone(),
            })
            .await
            .map_err(map_error);
        self.forget_on_absence(result)
    }

    async fn stop_scan(&self) -> Result<(), BleError> {
        let (adapter, _) = self.adapter().await?;
        adapter.stop_scan().await.map_err(map_error)
    }

    async fn known_devices(&self) -> Result<Vec<Advertisement>, BleError> {
        let (adapter, _) = self.adapter().await?;
        let peripherals = adapter.peripherals().await.map_err(map_error)?;
        let mut out = Vec::with_capacity(peripherals.len());
        for p in &peripherals {
            out.push(advertisement(p).await?);
        }
        Ok(out)
    }

    async fn peripheral(&self, address: BleAddress) -> Result<BtleplugPeripheral, BleError> {
        Ok(BtleplugPeripheral {
            inner: self.find(address).await?,
        })
    }

    async fn remove_device(&self, address: BleAddress) -> Result<(), BleError> {
        let a = address.0;
        let device = format!(
            "/org/bluez/{}/dev_{:02X}_{:02X}_{:02X}_{:02X}_{:02X}_{:02X}",
            self.adapter().await?.1,
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            a[5]
        );
        self.adapter_call(move |proxy| {
            let path = dbus::Path::new(device)
                .map_err(|e| dbus::Error::new_custom("org.bluez.Error.InvalidArguments", &e))?;
            proxy.method_call::<(), _, _, _>("org.bluez.Adapter1", "RemoveDevice", (path,))
        })
        .await
    }

    async fn set_powered(&self, on: bool) -> Result<(), BleError> {
        self.adapter_call(move |proxy| {
            use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
            proxy.set("org.bluez.Adapter1", "Powered", on)
        })
        .await
    }
}

/// A BlueZ device through btleplug.
#[derive(Clone, Debug)]
pub struct BtleplugPeripheral {
    inner: Peripheral,
}

impl BtleplugPeripheral {
    fn characteristic(
        &self,
        id: CharacteristicRef,
    ) -> Result<btleplug::api::Characteristic, BleError> {
        self.inner
            .characteristics()
            .into_iter()
            .find(|c| c.uuid == id.characteristic && c.service_uuid == id.service)
            .ok_or(BleError::NoSuchCharacteristic(id))
    }
}

fn props(flags: btleplug::api::CharPropFlags) -> CharProps {
    use btleplug::api::CharPropFlags as F;
    CharProps {
        read: flags.contains(F::READ),
        write: flags.contains(F::WRITE),
        write_without_response: flags.contains(F::WRITE_WITHOUT_RESPONSE),
        notify: flags.contains(F::NOTIFY),
        indicate: flags.contains(F::INDICATE),
    }
}

impl BlePeripheral for BtleplugPeripheral {
    fn address(&self) -> BleAddress {
        BleAddress(self.inner.address().into_inner())
    }

    async fn connect(&self) -> Result<(), BleError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.inner.connect()).await {
            Ok(result) => result.map_err(map_error),
            Err(_) => Err(BleError::TimedOut),
        }
    }

    async fn disconnect(&self) -> Result<(), BleError> {
        self.inner.disconnect().await.map_err(map_error)
    }

    async fn is_connected(&self) -> Result<bool, BleError> {
        self.inner.is_connected().await.map_err(map_error)
    }

    async fn discover_services(&self) -> Result<Vec<GattService>, BleError> {
        self.inner.discover_services().await.map_err(map_error)?;
        Ok(self
            .inner
            .services()
            .into_iter()
            .map(|s| GattService {
                uuid: s.uuid,
                primary: s.primary,
                characteristics: s
                    .characteristics
                    .into_iter()
                    .map(|c| GattCharacteristic {
                        id: CharacteristicRef::new(c.service_uuid, c.uuid),
                        props: props(c.properties),
                    })
                    .collect(),
            })
            .collect())
    }

    async fn read(&self, characteristic: CharacteristicRef) -> Result<Vec<u8>, BleError> {
        let c = self.characteristic(characteristic)?;
        self.inner.read(&c).await.map_err(map_error)
    }

    async fn write(
        &self,
        characteristic: CharacteristicRef,
        value: &[u8],
        kind: WriteKind,
    ) -> Result<(), BleError> {
        let c = self.characteristic(characteristic)?;
        let kind = match kind {
            WriteKind::WithResponse => WriteType::WithResponse,
            WriteKind::WithoutResponse => WriteType::WithoutResponse,
        };
        self.inner.write(&c, value, kind).await.map_err(map_error)
    }

    async fn subscribe(&self, characteristic: CharacteristicRef) -> Result<(), BleError> {
        let c = self.characteristic(characteristic)?;
        self.inner.subscribe(&c).await.map_err(map_error)
    }

    async fn unsubscribe(&self, characteristic: CharacteristicRef) -> Result<(), BleError> {
        let c = self.characteristic(characteristic)?;
        self.inner.unsubscribe(&c).await.map_err(map_error)
    }

    async fn notifications(&self) -> Result<BoxStream<Notification>, BleError> {
        let stream = self.inner.notifications().await.map_err(map_error)?;
        Ok(Box::pin(stream.map(|n| Notification {
            characteristic: CharacteristicRef::new(n.service_uuid, n.uuid),
            value: n.value,
        })))
    }
}
