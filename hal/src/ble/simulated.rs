//! In-process BLE simulator: a central with GATT peripherals whose bytes the caller supplies.
//!
//! One [`SimulatedCentral`] is one adapter. [`SimulatedCentral::add_device`] puts a peripheral
//! in range and returns its [`SimulatedDevice`] control handle, with which a test or the demo
//! plays the device: push measurements ([`SimulatedDevice::push`]), answer writes
//! ([`SimulatedDevice::on_write`], e.g. a Record Access Control Point), drop the link, script
//! BlueZ errors. The gateway side talks to the same peripheral through [`SimulatedPeripheral`]
//! via the [`BleCentral`]/[`BlePeripheral`] traits, exactly as it would to btleplug.
//!
//! Semantics kept from real devices:
//! - pushed values wait on the device until the central is connected and subscribed to that
//!   characteristic (a cuff keeps a measurement taken out of range and indicates it on the next
//!   connection); once delivered they are gone from the device;
//! - a link drop ends every notification stream and forgets subscriptions;
//! - powering the adapter off drops every link; operations then fail with `NotReady`;
//! - a peripheral is reachable only after a scan has seen it (BlueZ creates the device object on
//!   discovery), and again after [`BleCentral::remove_device`] only after the next scan.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::channel::mpsc;
use uuid::Uuid;

use super::{
    AdapterState, Advertisement, BleAddress, BleCentral, BleError, BlePeripheral, BoxStream,
    CentralEvent, CharProps, CharacteristicRef, GattCharacteristic, GattService, Notification,
    ScanFilter, WriteKind,
};

/// One characteristic of a simulated device.
#[derive(Debug, Clone)]
pub struct SimCharacteristic {
    pub uuid: Uuid,
    pub props: CharProps,
    /// Value returned by reads.
    pub value: Vec<u8>,
    /// Subscribing needs a paired (encrypted) link.
    pub requires_pairing: bool,
}

impl SimCharacteristic {
    pub fn new(uuid: Uuid, props: CharProps) -> Self {
        Self {
            uuid,
            props,
            value: Vec::new(),
            requires_pairing: false,
        }
    }

    pub fn with_value(mut self, value: Vec<u8>) -> Self {
        self.value = value;
        self
    }

    pub fn requiring_pairing(mut self) -> Self {
        self.requires_pairing = true;
        self
    }
}

#[derive(Debug, Clone)]
pub struct SimService {
    pub uuid: Uuid,
    pub characteristics: Vec<SimCharacteristic>,
}

/// What a simulated device is: its advertisement and its GATT database.
#[derive(Debug, Clone)]
pub struct PeripheralSpec {
    pub address: BleAddress,
    pub name: Option<String>,
    pub rssi: Option<i16>,
    /// Service UUIDs in the advertisement.
    pub advertised_services: Vec<Uuid>,
    pub services: Vec<SimService>,
}

/// An operation a scripted failure applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimOp {
    Connect,
    Discover,
    Read,
    Write,
    Subscribe,
}

/// Answers a write: the values the device pushes in response (e.g. stored records and a RACP
/// response indication). Called with the simulator locked: it must not call back into it.
pub type WriteHandler =
    Box<dyn FnMut(&[u8]) -> Result<Vec<Notification>, BleError> + Send + 'static>;

/// Counters a test can assert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CentralStats {
    pub scans_started: u32,
    pub power_offs: u32,
    pub devices_removed: u32,
}

struct DeviceState {
    spec: PeripheralSpec,
    values: HashMap<CharacteristicRef, Vec<u8>>,
    handlers: HashMap<CharacteristicRef, WriteHandler>,
    advertising: bool,
    known: bool,
    connected: bool,
    paired: bool,
    connects: u32,
    subscribed: HashSet<CharacteristicRef>,
    pending: VecDeque<Notification>,
    listeners: Vec<mpsc::UnboundedSender<Notification>>,
    failures: VecDeque<(SimOp, BleError)>,
    writes: Vec<(CharacteristicRef, Vec<u8>)>,
}

impl DeviceState {
    fn characteristic(&self, id: CharacteristicRef) -> Result<&SimCharacteristic, BleError> {
        self.spec
            .services
            .iter()
            .filter(|s| s.uuid == id.service)
            .flat_map(|s| s.characteristics.iter())
            .find(|c| c.uuid == id.characteristic)
            .ok_or(BleError::NoSuchCharacteristic(id))
    }

    fn take_failure(&mut self, op: SimOp) -> Result<(), BleError> {
        match self.failures.iter().position(|(o, _)| *o == op) {
            Some(i) => match self.failures.remove(i) {
                Some((_, err)) => Err(err),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    fn advertisement(&self) -> Advertisement {
        Advertisement {
            address: self.spec.address,
            name: self.spec.name.clone(),
            rssi: self.spec.rssi,
            services: self.spec.advertised_services.clone(),
        }
    }

    /// Delivers now if someone listens on a subscribed link, else keeps it for later.
    fn deliver(&mut self, n: Notification) {
        self.listeners.retain(|l| !l.is_closed());
        if self.connected
            && self.subscribed.contains(&n.characteristic)
            && !self.listeners.is_empty()
        {
            for l in &self.listeners {
                // A listener closed between retain and here just misses it, like a dropped stream.
                let _ = l.unbounded_send(n.clone());
            }
        } else {
            self.pending.push_back(n);
        }
    }

    fn flush_pending(&mut self) {
        let waiting: Vec<Notification> = self.pending.drain(..).collect();
        for n in waiting {
            self.deliver(n);
        }
    }

    fn drop_link(&mut self) -> bool {
        let was = self.connected;
        self.connected = false;
        self.subscribed.clear();
        self.listeners.clear();
        was
    }
}

struct World {
    present: bool,
    powered: bool,
    scanning: Option<ScanFilter>,
    devices: BTreeMap<BleAddress, DeviceState>,
    events: Vec<mpsc::UnboundedSender<CentralEvent>>,
    stats: CentralStats,
}

impl World {
    fn emit(&mut self, event: CentralEvent) {
        self.events
            .retain(|tx| tx.unbounded_send(event.clone()).is_ok());
    }

    fn check_adapter(&self) -> Result<(), BleError> {
        if !self.present {
            return Err(BleError::AdapterUnavailable("no simulated adapter".into()));
        }
        if !self.powered {
            return Err(BleError::NotReady);
        }
        Ok(())
    }

    fn device(&mut self, address: BleAddress) -> Result<&mut DeviceState, BleError> {
        self.check_adapter()?;
        match self.devices.get_mut(&address) {
            Some(d) if d.known => Ok(d),
            _ => Err(BleError::DeviceNotFound),
        }
    }

    fn connected_device(&mut self, address: BleAddress) -> Result<&mut DeviceState, BleError> {
        let d = self.device(address)?;
        if d.connected {
            Ok(d)
        } else {
            Err(BleError::NotConnected)
        }
    }

    fn advertise(&mut self, address: BleAddress) {
        let Some(filter) = self.scanning.clone() else {
            return;
        };
        if !(self.present && self.powered) {
            return;
        }
        let Some(d) = self.devices.get_mut(&address) else {
            return;
        };
        if !d.advertising {
            return;
        }
        let matches = filter.services.is_empty()
            || filter
                .services
                .iter()
                .any(|s| d.spec.advertised_services.contains(s));
        if matches {
            d.known = true;
            let ad = d.advertisement();
            self.emit(CentralEvent::Advertised(ad));
        }
    }

    fn disconnect(&mut self, address: BleAddress) {
        let dropped = self
            .devices
            .get_mut(&address)
            .map(DeviceState::drop_link)
            .unwrap_or(false);
        if dropped {
            self.emit(CentralEvent::Disconnected(address));
        }
    }
}

type Shared = Arc<Mutex<World>>;

fn lock(world: &Shared) -> MutexGuard<'_, World> {
    // A panic while locked leaves plain data behind; keep simulating rather than cascade.
    world.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A simulated adapter. Clones share the same radio world.
#[derive(Clone)]
pub struct SimulatedCentral {
    world: Shared,
}

impl std::fmt::Debug for SimulatedCentral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedCentral").finish_non_exhaustive()
    }
}

impl Default for SimulatedCentral {
    fn default() -> Self {
        Self::new()
    }
}

impl SimulatedCentral {
    /// A present, powered adapter with no devices in range.
    pub fn new() -> Self {
        Self {
            world: Arc::new(Mutex::new(World {
                present: true,
                powered: true,
                scanning: None,
                devices: BTreeMap::new(),
                events: Vec::new(),
                stats: CentralStats::default(),
            })),
        }
    }

    /// Brings a device into range (advertising). Replaces a device with the same address.
    pub fn add_device(&self, spec: PeripheralSpec) -> SimulatedDevice {
        let address = spec.address;
        let mut values = HashMap::new();
        for s in &spec.services {
            for c in &s.characteristics {
                values.insert(CharacteristicRef::new(s.uuid, c.uuid), c.value.clone());
            }
        }
        let mut w = lock(&self.world);
        w.devices.insert(
            address,
            DeviceState {
                spec,
                values,
                handlers: HashMap::new(),
                advertising: true,
                known: false,
                connected: false,
                paired: false,
                connects: 0,
                subscribed: HashSet::new(),
                pending: VecDeque::new(),
                listeners: Vec::new(),
                failures: VecDeque::new(),
                writes: Vec::new(),
            },
        );
        w.advertise(address);
        drop(w);
        SimulatedDevice {
            world: self.world.clone(),
            address,
        }
    }

    /// Plugs the adapter in or out (out: every link drops, every operation fails).
    pub fn set_present(&self, present: bool) {
        let mut w = lock(&self.world);
        w.present = present;
        if !present {
            let addresses: Vec<BleAddress> = w.devices.keys().copied().collect();
            for a in addresses {
                w.disconnect(a);
            }
            w.scanning = None;
            w.emit(CentralEvent::AdapterState(AdapterState::Unavailable));
        }
    }

    pub fn stats(&self) -> CentralStats {
        lock(&self.world).stats
    }

    pub fn is_scanning(&self) -> bool {
        lock(&self.world).scanning.is_some()
    }
}

impl BleCentral for SimulatedCentral {
    type Peripheral = SimulatedPeripheral;

    async fn adapter_state(&self) -> Result<AdapterState, BleError> {
        let w = lock(&self.world);
        Ok(match (w.present, w.powered) {
            (false, _) => AdapterState::Unavailable,
            (true, true) => AdapterState::PoweredOn,
            (true, false) => AdapterState::PoweredOff,
        })
    }

    async fn events(&self) -> Result<BoxStream<CentralEvent>, BleError> {
        let (tx, rx) = mpsc::unbounded();
        let mut w = lock(&self.world);
        if !w.present {
            return Err(BleError::AdapterUnavailable("no simulated adapter".into()));
        }
        w.events.push(tx);
        Ok(Box::pin(rx))
    }

    async fn start_scan(&self, filter: &ScanFilter) -> Result<(), BleError> {
        let mut w = lock(&self.world);
        w.check_adapter()?;
        w.scanning = Some(filter.clone());
        w.stats.scans_started += 1;
        let addresses: Vec<BleAddress> = w.devices.keys().copied().collect();
        for a in addresses {
            w.advertise(a);
        }
        Ok(())
    }

    async fn stop_scan(&self) -> Result<(), BleError> {
        let mut w = lock(&self.world);
        w.check_adapter()?;
        w.scanning = None;
        Ok(())
    }

    async fn known_devices(&self) -> Result<Vec<Advertisement>, BleError> {
        let w = lock(&self.world);
        w.check_adapter()?;
        Ok(w.devices
            .values()
            .filter(|d| d.known)
            .map(DeviceState::advertisement)
            .collect())
    }

    async fn peripheral(&self, address: BleAddress) -> Result<SimulatedPeripheral, BleError> {
        lock(&self.world).device(address)?;
        Ok(SimulatedPeripheral {
            world: self.world.clone(),
            address,
        })
    }

    async fn remove_device(&self, address: BleAddress) -> Result<(), BleError> {
        let mut w = lock(&self.world);
        w.device(address)?;
        w.disconnect(address);
        if let Some(d) = w.devices.get_mut(&address) {
            d.known = false;
        }
        w.stats.devices_removed += 1;
        Ok(())
    }

    async fn set_powered(&self, on: bool) -> Result<(), BleError> {
        let mut w = lock(&self.world);
        if !w.present {
            return Err(BleError::AdapterUnavailable("no simulated adapter".into()));
        }
        if w.powered == on {
            return Ok(());
        }
        w.powered = on;
        if on {
            w.emit(CentralEvent::AdapterState(AdapterState::PoweredOn));
        } else {
            w.stats.power_offs += 1;
            let addresses: Vec<BleAddress> = w.devices.keys().copied().collect();
            for a in addresses {
                w.disconnect(a);
            }
            w.scanning = None;
            w.emit(CentralEvent::AdapterState(AdapterState::PoweredOff));
        }
        Ok(())
    }
}

/// The gateway's handle on a simulated device.
#[derive(Clone)]
pub struct SimulatedPeripheral {
    world: Shared,
    address: BleAddress,
}

impl std::fmt::Debug for SimulatedPeripheral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedPeripheral")
            .finish_non_exhaustive()
    }
}

impl BlePeripheral for SimulatedPeripheral {
    fn address(&self) -> BleAddress {
        self.address
    }

    async fn connect(&self) -> Result<(), BleError> {
        let mut w = lock(&self.world);
        let d = w.device(self.address)?;
        d.take_failure(SimOp::Connect)?;
        if d.connected {
            return Ok(());
        }
        d.connected = true;
        d.connects += 1;
        w.emit(CentralEvent::Connected(self.address));
        Ok(())
    }

    async fn disconnect(&self) -> Result<(), BleError> {
        let mut w = lock(&self.world);
        w.device(self.address)?;
        w.disconnect(self.address);
        Ok(())
    }

    async fn is_connected(&self) -> Result<bool, BleError> {
        Ok(lock(&self.world).device(self.address)?.connected)
    }

    async fn discover_services(&self) -> Result<Vec<GattService>, BleError> {
        let mut w = lock(&self.world);
        let d = w.connected_device(self.address)?;
        d.take_failure(SimOp::Discover)?;
        Ok(d.spec
            .services
            .iter()
            .map(|s| GattService {
                uuid: s.uuid,
                primary: true,
                characteristics: s
                    .characteristics
                    .iter()
                    .map(|c| GattCharacteristic {
                        id: CharacteristicRef::new(s.uuid, c.uuid),
                        props: c.props,
                    })
                    .collect(),
            })
            .collect())
    }

    async fn read(&self, characteristic: CharacteristicRef) -> Result<Vec<u8>, BleError> {
        let mut w = lock(&self.world);
        let d = w.connected_device(self.address)?;
        d.take_failure(SimOp::Read)?;
        if !d.characteristic(characteristic)?.props.read {
            return Err(BleError::Failed("read not permitted".into()));
        }
        Ok(d.values.get(&characteristic).cloned().unwrap_or_default())
    }

    async fn write(
        &self,
        characteristic: CharacteristicRef,
        value: &[u8],
        kind: WriteKind,
    ) -> Result<(), BleError> {
        let mut w = lock(&self.world);
        let d = w.connected_device(self.address)?;
        d.take_failure(SimOp::Write)?;
        let props = d.characteristic(characteristic)?.props;
        let allowed = match kind {
            WriteKind::WithResponse => props.write,
            WriteKind::WithoutResponse => props.write_without_response,
        };
        if !allowed {
            return Err(BleError::Failed("write not permitted".into()));
        }
        d.writes.push((characteristic, value.to_vec()));
        let replies = match d.handlers.get_mut(&characteristic) {
            Some(handler) => handler(value)?,
            None => {
                d.values.insert(characteristic, value.to_vec());
                Vec::new()
            }
        };
        for n in replies {
            d.deliver(n);
        }
        Ok(())
    }

    async fn subscribe(&self, characteristic: CharacteristicRef) -> Result<(), BleError> {
        let mut w = lock(&self.world);
        let d = w.connected_device(self.address)?;
        d.take_failure(SimOp::Subscribe)?;
        let c = d.characteristic(characteristic)?;
        if !c.props.pushes() {
            return Err(BleError::Failed("characteristic cannot notify".into()));
        }
        if c.requires_pairing && !d.paired {
            return Err(BleError::InsufficientSecurity);
        }
        d.subscribed.insert(characteristic);
        d.flush_pending();
        Ok(())
    }

    async fn unsubscribe(&self, characteristic: CharacteristicRef) -> Result<(), BleError> {
        let mut w = lock(&self.world);
        let d = w.connected_device(self.address)?;
        d.subscribed.remove(&characteristic);
        Ok(())
    }

    async fn notifications(&self) -> Result<BoxStream<Notification>, BleError> {
        let mut w = lock(&self.world);
        let d = w.connected_device(self.address)?;
        let (tx, rx) = mpsc::unbounded();
        d.listeners.push(tx);
        d.flush_pending();
        Ok(Box::pin(rx))
    }
}

/// The device side of a simulated peripheral: what a test or the demo uses to play it.
#[derive(Clone)]
pub struct SimulatedDevice {
    world: Shared,
    address: BleAddress,
}

impl std::fmt::Debug for SimulatedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedDevice").finish_non_exhaustive()
    }
}

impl SimulatedDevice {
    pub fn address(&self) -> BleAddress {
        self.address
    }

    fn with<T>(&self, f: impl FnOnce(&mut World, BleAddress) -> T) -> T {
        let mut w = lock(&self.world);
        f(&mut w, self.address)
    }

    fn with_device<T: Default>(&self, f: impl FnOnce(&mut DeviceState) -> T) -> T {
        self.with(|w, a| w.devices.get_mut(&a).map(f).unwrap_or_default())
    }

    /// The device pushes a value (notification or indication): delivered now if the central
    /// is connected and subscribed, else kept until it is.
    pub fn push(&self, characteristic: CharacteristicRef, value: Vec<u8>) {
        self.with_device(|d| {
            d.deliver(Notification {
                characteristic,
                value,
            })
        });
    }

    /// Answers writes to `characteristic` with `handler`.
    pub fn on_write(&self, characteristic: CharacteristicRef, handler: WriteHandler) {
        self.with_device(|d| {
            d.handlers.insert(characteristic, handler);
        });
    }

    /// Changes the value reads return.
    pub fn set_value(&self, characteristic: CharacteristicRef, value: Vec<u8>) {
        self.with_device(|d| {
            d.values.insert(characteristic, value);
        });
    }

    /// The link drops (device out of range, battery pulled).
    pub fn drop_link(&self) {
        self.with(|w, a| w.disconnect(a));
    }

    /// Starts or stops advertising; starting re-announces it to a running scan.
    pub fn set_advertising(&self, advertising: bool) {
        self.with(|w, a| {
            if let Some(d) = w.devices.get_mut(&a) {
                d.advertising = advertising;
            }
            if advertising {
                w.advertise(a);
            }
        });
    }

    /// Sends one more advertisement to a running scan.
    pub fn advertise(&self) {
        self.with(|w, a| w.advertise(a));
    }

    /// The next `op` on this device fails with `error` (scripted BlueZ errors).
    pub fn fail_next(&self, op: SimOp, error: BleError) {
        self.with_device(|d| d.failures.push_back((op, error)));
    }

    pub fn set_paired(&self, paired: bool) {
        self.with_device(|d| d.paired = paired);
    }

    pub fn is_connected(&self) -> bool {
        self.with_device(|d| d.connected)
    }

    /// How many times the central connected.
    pub fn connect_count(&self) -> u32 {
        self.with_device(|d| d.connects)
    }

    /// Pushed values not yet delivered.
    pub fn pending_count(&self) -> usize {
        self.with_device(|d| d.pending.len())
    }

    /// Every write the central made, in order.
    pub fn writes(&self) -> Vec<(CharacteristicRef, Vec<u8>)> {
        self.with_device(|d| d.writes.clone())
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::ble::uuid16;

    const HR: CharacteristicRef = CharacteristicRef::sig(0x180D, 0x2A37);
    const CP: CharacteristicRef = CharacteristicRef::sig(0x1808, 0x2A52);

    fn spec() -> PeripheralSpec {
        PeripheralSpec {
            address: "00:11:22:33:44:55".parse().expect("valid address"),
            name: Some("HRM".into()),
            rssi: Some(-60),
            advertised_services: vec![uuid16(0x180D)],
            services: vec![
                SimService {
                    uuid: uuid16(0x180D),
                    characteristics: vec![SimCharacteristic::new(
                        uuid16(0x2A37),
                        CharProps::NOTIFY,
                    )],
                },
                SimService {
                    uuid: uuid16(0x1808),
                    characteristics: vec![SimCharacteristic::new(
                        uuid16(0x2A52),
                        CharProps::WRITE_INDICATE,
                    )],
                },
            ],
        }
    }

    async fn connected(central: &SimulatedCentral) -> SimulatedPeripheral {
        central
            .start_scan(&ScanFilter::default())
            .await
            .expect("scan");
        let p = central
            .peripheral("00:11:22:33:44:55".parse().expect("valid address"))
            .await
            .expect("known after scan");
        p.connect().await.expect("connect");
        p
    }

    #[tokio::test]
    async fn device_is_unknown_until_scanned() {
        let central = SimulatedCentral::new();
        let dev = central.add_device(spec());
        assert_eq!(
            central.peripheral(dev.address()).await.err(),
            Some(BleError::DeviceNotFound)
        );
        let mut events = central.events().await.expect("events");
        central
            .start_scan(&ScanFilter {
                services: vec![uuid16(0x1810)],
            })
            .await
            .expect("scan");
        assert!(central.known_devices().await.expect("known").is_empty());
        central
            .start_scan(&ScanFilter {
                services: vec![uuid16(0x180D)],
            })
            .await
            .expect("scan");
        match events.next().await {
            Some(CentralEvent::Advertised(ad)) => {
                assert_eq!(ad.address, dev.address());
                assert_eq!(ad.name.as_deref(), Some("HRM"));
            }
            other => panic!("expected an advertisement, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn pushed_values_wait_for_subscription_and_stream_ends_on_link_drop() {
        let central = SimulatedCentral::new();
        let dev = central.add_device(spec());
        dev.push(HR, vec![0, 72]);
        let p = connected(&central).await;
        let mut stream = p.notifications().await.expect("stream");
        assert_eq!(dev.pending_count(), 1, "not subscribed yet");
        p.subscribe(HR).await.expect("subscribe");
        assert_eq!(stream.next().await.map(|n| n.value), Some(vec![0, 72]));
        dev.push(HR, vec![0, 73]);
        assert_eq!(stream.next().await.map(|n| n.value), Some(vec![0, 73]));
        dev.drop_link();
        assert_eq!(stream.next().await, None);
        dev.push(HR, vec![0, 74]);
        assert_eq!(dev.pending_count(), 1);
        assert_eq!(p.read(HR).await.err(), Some(BleError::NotConnected));
    }

    #[tokio::test]
    async fn write_handler_replies_by_indication() {
        let central = SimulatedCentral::new();
        let dev = central.add_device(spec());
        dev.on_write(
            CP,
            Box::new(|req| {
                Ok(vec![Notification {
                    characteristic: CP,
                    value: vec![6, 0, req[0], 1],
                }])
            }),
        );
        let p = connected(&central).await;
        let mut stream = p.notifications().await.expect("stream");
        p.subscribe(CP).await.expect("subscribe");
        p.write(CP, &[1, 1], WriteKind::WithResponse)
            .await
            .expect("write");
        assert_eq!(stream.next().await.map(|n| n.value), Some(vec![6, 0, 1, 1]));
        assert_eq!(dev.writes(), vec![(CP, vec![1, 1])]);
        assert!(
            p.write(CP, &[1], WriteKind::WithoutResponse).await.is_err(),
            "RACP takes only writes with response"
        );
    }

    #[tokio::test]
    async fn scripted_errors_power_and_pairing() {
        let central = SimulatedCentral::new();
        let dev = central.add_device(PeripheralSpec {
            services: vec![SimService {
                uuid: uuid16(0x180D),
                characteristics: vec![
                    SimCharacteristic::new(uuid16(0x2A37), CharProps::NOTIFY).requiring_pairing(),
                ],
            }],
            ..spec()
        });
        central
            .start_scan(&ScanFilter::default())
            .await
            .expect("scan");
        let p = central.peripheral(dev.address()).await.expect("known");
        dev.fail_next(SimOp::Connect, BleError::InProgress);
        assert_eq!(p.connect().await, Err(BleError::InProgress));
        p.connect().await.expect("second connect succeeds");
        assert_eq!(p.subscribe(HR).await, Err(BleError::InsufficientSecurity));
        dev.set_paired(true);
        p.subscribe(HR).await.expect("paired subscribe");

        central.set_powered(false).await.expect("power off");
        assert!(!dev.is_connected());
        assert_eq!(
            central.adapter_state().await.expect("state"),
            AdapterState::PoweredOff
        );
        assert_eq!(p.connect().await, Err(BleError::NotReady));
        central.set_powered(true).await.expect("power on");
        p.connect().await.expect("connect after power on");
        assert_eq!(dev.connect_count(), 2);
        assert_eq!(central.stats().power_offs, 1);

        central.remove_device(dev.address()).await.expect("remove");
        assert_eq!(p.connect().await, Err(BleError::DeviceNotFound));
    }
}
