//! The BLE source through the REAL btleplug BlueZ backend, against a BlueZ mock on a private
//! D-Bus: `dbus-daemon` + python-dbusmock with this project's GATT template
//! (`tests/bluez_mock/gatt_template.py`). Needs `scripts/install/bluez-mock.sh`.
//!
//! libdbus reads `DBUS_SYSTEM_BUS_ADDRESS` once per process, so every test here uses the same
//! socket path (one bus at a time: each test starts its own daemon + mock there and stops them)
//! and the tests are serialised by a lock.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use dbus::blocking::Connection;
use tokio::sync::{mpsc, oneshot};
use vectorcare_gateway::config::problems::Problems;
use vectorcare_gateway::reading::{Kind, Reading};
use vectorcare_gateway::sources::ReadingSink;
use vectorcare_gateway::sources::ble::config::{RawBleConfig, RawBleDevice};
use vectorcare_gateway::sources::ble::profiles::Profile;
use vectorcare_gateway::sources::ble::simulated::{standard_device, standard_spec};
use vectorcare_gateway::sources::ble::{BleConfig, BleSource, InMemoryProgress, StatusHandle};
use vectorcare_hal::ble::bluez_agent::PairingAgent;
use vectorcare_hal::ble::btleplug::BtleplugCentral;
use vectorcare_hal::ble::simulated::SimulatedCentral;
use vectorcare_hal::ble::{BleAddress, BleCentral, BlePeripheral, CharacteristicRef, ScanFilter};
use vectorcare_hal::clock::SimulatedClock;

const PYTHON: &str = "/usr/bin/python3";
const WAIT: Duration = Duration::from_secs(30);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs one test body alone, on its own runtime (btleplug's D-Bus tasks die with it).
fn run_alone(body: impl std::future::Future<Output = ()>) {
    let _serial = serial();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(body);
}

/// The one bus path of this process (short: unix socket paths are limited to 108 bytes).
fn bus_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from(format!("/tmp/vcble-{}", std::process::id()));
        let address = format!("unix:path={}/bus", dir.display());
        // SAFETY: set once, while holding the serial lock, before any D-Bus use in this process.
        unsafe { std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", &address) };
        dir.join("bus")
    })
}

fn require_tools() {
    let ok = Command::new("dbus-daemon")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new(PYTHON)
            .args(["-c", "import dbusmock, dbus, gi"])
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "dbus-daemon and python3-dbusmock are needed: run scripts/install/bluez-mock.sh"
    );
}

/// `python3 -m dbusmock` with the GATT template on the bus at `address`.
fn spawn_mock(address: &str) -> Child {
    let template =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bluez_mock/gatt_template.py");
    Command::new(PYTHON)
        .args(["-m", "dbusmock", "--system", "--template"])
        .arg(&template)
        .env("DBUS_SYSTEM_BUS_ADDRESS", address)
        // The mock logs every call: kept next to the socket for post-mortems.
        .stdout(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(bus_path().with_file_name("mock.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python3 -m dbusmock")
}

/// A private bus with the BlueZ mock on it. Dropping it stops both processes.
struct BluezMock {
    daemon: Child,
    mock: Child,
    conn: Connection,
}

impl BluezMock {
    fn start() -> BluezMock {
        require_tools();
        let path = bus_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create bus directory");
        }
        let _ = std::fs::remove_file(path);
        let address = format!("unix:path={}", path.display());
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address={address}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let mut line = String::new();
        BufReader::new(daemon.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("dbus-daemon prints its address when ready");
        let mock = spawn_mock(&address);
        let channel = dbus::channel::Channel::open_private(&address).expect("open private bus");
        let mut channel = channel;
        channel.register().expect("register on bus");
        let conn = Connection::from(channel);
        let mock = BluezMock { daemon, mock, conn };
        mock.wait_for_bluez();
        mock
    }

    fn wait_for_bluez(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let proxy = self
                .conn
                .with_proxy("org.freedesktop.DBus", "/org/freedesktop/DBus", WAIT);
            let (owned,): (bool,) = proxy
                .method_call("org.freedesktop.DBus", "NameHasOwner", ("org.bluez",))
                .expect("NameHasOwner");
            if owned {
                return;
            }
            assert!(Instant::now() < deadline, "BlueZ mock did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// bluetoothd restarts: a fresh mock (no adapters, no agents) on the same bus.
    fn restart_bluez(&mut self) {
        let _ = self.mock.kill();
        let _ = self.mock.wait();
        self.mock = spawn_mock(&format!("unix:path={}", bus_path().display()));
        self.wait_for_bluez();
    }

    fn call<A: dbus::arg::AppendAll, R: dbus::arg::ReadAll>(&self, method: &str, args: A) -> R {
        self.conn
            .with_proxy("org.bluez", "/", WAIT)
            .method_call("org.bluez.Mock", method, args)
            .unwrap_or_else(|e| panic!("mock {method} failed: {e}"))
    }

    /// Builds the same device the simulator would serve (standard_spec) in the mock.
    fn add_standard_device(&self, profile: Profile, seed: u16) -> MockDevice {
        let spec = standard_spec(profile, seed).expect("encodable");
        let uuids: Vec<String> = spec
            .advertised_services
            .iter()
            .map(|u| u.to_string())
            .collect();
        let (path,): (dbus::Path<'static>,) = self.call(
            "AddDevice",
            (
                "hci0",
                spec.address.to_string(),
                spec.name.clone().unwrap_or_default(),
                uuids,
                spec.rssi.unwrap_or(-60),
            ),
        );
        let mut chars = Vec::new();
        for service in &spec.services {
            let (service_path,): (dbus::Path<'static>,) =
                self.call("AddService", (path.clone(), service.uuid.to_string()));
            for c in &service.characteristics {
                let mut flags = Vec::new();
                for (on, name) in [
                    (c.props.read, "read"),
                    (c.props.write, "write"),
                    (c.props.write_without_response, "write-without-response"),
                    (c.props.notify, "notify"),
                    (c.props.indicate, "indicate"),
                ] {
                    if on {
                        flags.push(name.to_owned());
                    }
                }
                let (char_path,): (dbus::Path<'static>,) = self.call(
                    "AddCharacteristic",
                    (
                        service_path.clone(),
                        c.uuid.to_string(),
                        flags,
                        c.value.clone(),
                    ),
                );
                chars.push((CharacteristicRef::new(service.uuid, c.uuid), char_path));
            }
        }
        MockDevice {
            address: spec.address,
            path,
            chars,
        }
    }

    fn push(&self, device: &MockDevice, c: CharacteristicRef, value: Vec<u8>) {
        let () = self.call("PushValue", (device.char_path(c), value));
    }
}

impl Drop for BluezMock {
    fn drop(&mut self) {
        let _ = self.mock.kill();
        let _ = self.mock.wait();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        if let Some(dir) = bus_path().parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

struct MockDevice {
    address: BleAddress,
    path: dbus::Path<'static>,
    chars: Vec<(CharacteristicRef, dbus::Path<'static>)>,
}

impl MockDevice {
    fn char_path(&self, c: CharacteristicRef) -> dbus::Path<'static> {
        self.chars
            .iter()
            .find(|(r, _)| *r == c)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("no characteristic {c:?}"))
    }
}

/// Encoded measurements of `profile` from the simulator's generator.
fn measurements(profile: Profile, seed: u16, n: usize) -> Vec<Vec<u8>> {
    let central = SimulatedCentral::new();
    let mut dev = standard_device(&central, profile, seed).expect("encodable");
    (0..n).map(|_| dev.measure().expect("measure")).collect()
}

fn new_mock() -> BluezMock {
    let mock = BluezMock::start();
    let (_adapter,): (dbus::Path<'static>,) =
        mock.call("AddAdapter", ("hci0", "00:1A:7D:DA:71:13"));
    mock
}

struct Rig {
    readings: mpsc::UnboundedReceiver<Vec<Reading>>,
    status: StatusHandle,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Rig {
    async fn start(devices: &[(BleAddress, bool)], progress: Arc<InMemoryProgress>) -> Rig {
        let devices: Vec<(BleAddress, bool, Option<u32>)> =
            devices.iter().map(|(a, d)| (*a, *d, None)).collect();
        Rig::start_with_passkeys(&devices, progress).await.0
    }

    /// Also returns the validated config (for the pairing agent's policy).
    async fn start_with_passkeys(
        devices: &[(BleAddress, bool, Option<u32>)],
        progress: Arc<InMemoryProgress>,
    ) -> (Rig, BleConfig) {
        let raw = RawBleConfig {
            adapter: Some("hci0".into()),
            devices: devices
                .iter()
                .map(|(a, delete, passkey)| RawBleDevice {
                    address: a.to_string(),
                    profile: None,
                    delete_after_upload: *delete,
                    passkey: *passkey,
                })
                .collect(),
            accept_any_health_device: false,
            scan_watchdog_minutes: 5,
            backoff_initial_seconds: 1,
            backoff_max_seconds: 2,
        };
        let config = raw
            .validate("sources.ble", &mut Problems::new())
            .expect("valid config");
        let central = BtleplugCentral::open(Some("hci0"))
            .await
            .expect("btleplug opens the mocked adapter");
        let (sink, mut submissions) = ReadingSink::channel(4);
        let (tx, readings) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(s) = submissions.recv().await {
                let _ = tx.send(s.readings);
                let _ = s.done.send(Ok(()));
            }
        });
        let source = BleSource::new(
            central,
            config.clone(),
            sink,
            progress,
            Arc::new(SimulatedClock::new(0, true)),
        );
        let status = source.status();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(source.run(async {
            let _ = stopped.await;
        }));
        (
            Rig {
                readings,
                status,
                stop: Some(stop),
                task,
            },
            config,
        )
    }

    async fn next(&mut self) -> Vec<Reading> {
        tokio::time::timeout(WAIT, self.readings.recv())
            .await
            .expect("a reading arrives in time")
            .expect("sink open")
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("source stops")
            .expect("source did not panic");
    }
}

#[test]
fn hal_btleplug_notifications_through_the_mock() {
    run_alone(async {
        let mock = new_mock();
        let dev = mock.add_standard_device(Profile::HeartRate, 1);
        let central = BtleplugCentral::open(None).await.expect("open adapter");
        assert_eq!(central.adapter_name().await.expect("adapter found"), "hci0");
        central
            .start_scan(&ScanFilter::default())
            .await
            .expect("scan");
        let p = central
            .peripheral(dev.address)
            .await
            .expect("device known to BlueZ");
        p.connect().await.expect("connect (ServicesResolved)");
        let services = p
            .discover_services()
            .await
            .expect("discover through introspection");
        assert_eq!(services.len(), 3, "HR, Current Time, Device Information");
        let hr = Profile::HeartRate.characteristic(0x2A37);
        let model = p
            .read(CharacteristicRef::sig(0x180A, 0x2A24))
            .await
            .expect("read model");
        assert_eq!(model, b"heart_rate");
        let mut stream = p.notifications().await.expect("notifications");
        p.subscribe(hr).await.expect("subscribe");
        mock.push(&dev, hr, vec![0x06, 72]);
        let n = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut stream))
            .await
            .expect("notification in time")
            .expect("stream open");
        assert_eq!((n.characteristic, n.value), (hr, vec![0x06, 72]));
        p.disconnect().await.expect("disconnect");
        assert!(!p.is_connected().await.expect("state"));
    });
}

#[test]
fn every_profile_through_btleplug_and_bluez() {
    run_alone(async {
        let mock = new_mock();
        let mut devices = Vec::new();
        for (i, profile) in Profile::ALL.into_iter().enumerate() {
            let dev = mock.add_standard_device(profile, 100 + i as u16);
            let bytes = measurements(profile, 100 + i as u16, 2);
            if let Some(meas) = profile.record_measurement() {
                let () = mock.call(
                    "SetStoredRecords",
                    (dev.char_path(meas), dev.char_path(profile.racp()), bytes),
                );
            } else {
                // Taken before the gateway connected: indicated/notified once it subscribes.
                mock.push(
                    &dev,
                    profile.characteristic(profile.measurements()[0]),
                    bytes[0].clone(),
                );
            }
            devices.push((profile, dev));
        }
        let allow: Vec<(BleAddress, bool)> =
            devices.iter().map(|(_, d)| (d.address, false)).collect();
        let mut rig = Rig::start(&allow, Default::default()).await;
        let mut kinds = Vec::new();
        let mut stored = Vec::new();
        while kinds.len() < 9 {
            for r in rig.next().await {
                if r.kind == Kind::BloodGlucose {
                    stored.push((r.device.model.clone(), r.sequence));
                }
                if r.kind != Kind::PulseRate {
                    kinds.push(r.kind);
                }
            }
        }
        kinds.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(
            kinds,
            [
                Kind::BloodGlucose,
                Kind::BloodGlucose,
                Kind::BloodGlucose,
                Kind::BloodGlucose,
                Kind::BloodPressure,
                Kind::BodyTemperature,
                Kind::BodyWeight,
                Kind::HeartRate,
                Kind::OxygenSaturation
            ]
        );
        // Glucose records by sequence number, CGM records by time offset (5-minute steps).
        stored.sort();
        let model = |m: &str| Some(m.to_owned());
        assert_eq!(
            stored,
            [
                (model("cgm"), Some(5)),
                (model("cgm"), Some(10)),
                (model("glucose"), Some(1)),
                (model("glucose"), Some(2)),
            ]
        );
        let status = rig.status.snapshot();
        assert_eq!(status.devices.len(), 7);
        assert!(
            status
                .devices
                .values()
                .all(|d| d.connected && d.connects == 1)
        );
        rig.stop().await;
    });
}

#[test]
fn link_loss_in_progress_error_adapter_power_and_racp_delete() {
    run_alone(async {
        let mock = new_mock();
        let hr = mock.add_standard_device(Profile::HeartRate, 1);
        let gl = mock.add_standard_device(Profile::Glucose, 2);
        let records = measurements(Profile::Glucose, 2, 3);
        let () = mock.call(
            "SetStoredRecords",
            (
                gl.char_path(Profile::Glucose.characteristic(0x2A18)),
                gl.char_path(Profile::Glucose.racp()),
                records,
            ),
        );
        let () = mock.call(
            "FailNext",
            (
                hr.path.clone(),
                "Connect",
                "org.bluez.Error.InProgress",
                "Operation already in progress",
            ),
        );
        let hr_char = Profile::HeartRate.characteristic(0x2A37);
        let beats = measurements(Profile::HeartRate, 1, 3);
        mock.push(&hr, hr_char, beats[0].clone());
        let progress = Arc::new(InMemoryProgress::default());
        let mut rig =
            Rig::start(&[(hr.address, false), (gl.address, true)], progress.clone()).await;

        let mut got = Vec::new();
        while got.len() < 4 {
            got.extend(rig.next().await.into_iter().map(|r| (r.kind, r.sequence)));
        }
        got.sort_by_key(|(k, s)| (format!("{k:?}"), *s));
        assert_eq!(
            got,
            [
                (Kind::BloodGlucose, Some(1)),
                (Kind::BloodGlucose, Some(2)),
                (Kind::BloodGlucose, Some(3)),
                (Kind::HeartRate, None)
            ]
        );
        let (n,): (u32,) = mock.call("ConnectCount", (hr.path.clone(),));
        assert_eq!(n, 1, "the InProgress connect was retried");

        // Link loss mid-stream: a beat measured while out of range arrives after the reconnect.
        let () = mock.call("DropLink", (hr.path.clone(),));
        mock.push(&hr, hr_char, beats[1].clone());
        assert_eq!(rig.next().await[0].kind, Kind::HeartRate);
        let (n,): (u32,) = mock.call("ConnectCount", (hr.path.clone(),));
        assert_eq!(n, 2);

        // Server confirms records 1..=2: after the next connection they, and only they, are gone.
        let (left,): (Vec<u16>,) =
            mock.call("StoredSequences", (gl.char_path(Profile::Glucose.racp()),));
        assert_eq!(
            left,
            [1, 2, 3],
            "nothing deleted before the server confirmed"
        );
        progress.confirm(gl.address, 2);
        let () = mock.call("DropLink", (gl.path.clone(),));
        let deadline = Instant::now() + WAIT;
        loop {
            let (left,): (Vec<u16>,) =
                mock.call("StoredSequences", (gl.char_path(Profile::Glucose.racp()),));
            if left == [3] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "confirmed records not deleted: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Adapter powered off: visible in status; back on: collection resumes.
        let () = mock.call("SetPowered", ("hci0", false));
        let deadline = Instant::now() + WAIT;
        while rig.status.snapshot().adapter.as_deref() != Some("poweredoff") {
            assert!(
                Instant::now() < deadline,
                "power-off not visible: {:?}",
                rig.status.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        mock.push(&hr, hr_char, beats[2].clone());
        let () = mock.call("SetPowered", ("hci0", true));
        assert_eq!(rig.next().await[0].kind, Kind::HeartRate);
        rig.stop().await;
    });
}

#[test]
fn devices_scan_lists_mocked_health_devices() {
    let _serial = serial();
    let mock = BluezMock::start();
    let scan = || {
        Command::new(env!("CARGO_BIN_EXE_vectorcare-gateway"))
            .args(["devices", "scan", "--seconds", "2", "--json"])
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", bus_path().display()),
            )
            .output()
            .expect("run devices scan")
    };
    let no_adapter = scan();
    assert_eq!(
        no_adapter.status.code(),
        Some(69),
        "EX_UNAVAILABLE without an adapter"
    );
    assert!(String::from_utf8_lossy(&no_adapter.stderr).contains("adapter"));
    let (_adapter,): (dbus::Path<'static>,) =
        mock.call("AddAdapter", ("hci0", "00:1A:7D:DA:71:13"));
    let hr = mock.add_standard_device(Profile::HeartRate, 3);
    let output = scan();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let found: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(found[0]["address"], hr.address.to_string());
    assert_eq!(found[0]["services"][0], "heart_rate");
    assert_eq!(found[0]["rssi"], -58);
    assert_eq!(found.as_array().map(Vec::len), Some(1));
}

#[test]
fn pairing_agent_gives_bluez_the_configured_passkey() {
    run_alone(async {
        let mut mock = new_mock();
        let good = mock.add_standard_device(Profile::HeartRate, 4);
        let wrong = mock.add_standard_device(Profile::Thermometer, 5);
        let () = mock.call("RequirePairing", (good.path.clone(), 123_456i32));
        let () = mock.call("RequirePairing", (wrong.path.clone(), 654_321i32));
        let hr_char = Profile::HeartRate.characteristic(0x2A37);
        mock.push(
            &good,
            hr_char,
            measurements(Profile::HeartRate, 4, 1).remove(0),
        );
        let temp_char = Profile::Thermometer.characteristic(0x2A1C);
        mock.push(
            &wrong,
            temp_char,
            measurements(Profile::Thermometer, 5, 1).remove(0),
        );
        let (mut rig, config) = Rig::start_with_passkeys(
            &[
                (good.address, false, Some(123_456)),
                (wrong.address, false, Some(111_111)),
            ],
            Default::default(),
        )
        .await;

        // No agent yet: subscribing fails, visibly, and nothing is collected.
        let deadline = Instant::now() + WAIT;
        loop {
            let status = rig.status.snapshot();
            let error = status
                .devices
                .get(&good.address.to_string())
                .and_then(|d| d.last_error.clone());
            if error.as_deref() == Some("insufficient security: the device must be paired") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no pairing error visible: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(rig.readings.try_recv().is_err());

        let (stop_agent, agent_stopped) = oneshot::channel::<()>();
        let agent = tokio::spawn(PairingAgent::new(config.pairing_policy()).serve(async {
            let _ = agent_stopped.await;
        }));
        let got = rig.next().await;
        assert_eq!(got[0].kind, Kind::HeartRate);
        let (log,): (Vec<String>,) = mock.call("PairingLog", (good.path.clone(),));
        assert_eq!(log.last().map(String::as_str), Some("passkey 123456"));
        let (agents,): (Vec<String>,) = mock.call("Agents", ());
        assert_eq!(agents, ["/org/vectorcare/agent KeyboardOnly"]);

        // The thermometer wants another passkey: the agent's answer is refused, never retried
        // into a reading.
        let deadline = Instant::now() + WAIT;
        loop {
            let (log,): (Vec<String>,) = mock.call("PairingLog", (wrong.path.clone(),));
            if log.iter().any(|l| l == "passkey 111111") {
                break;
            }
            assert!(Instant::now() < deadline, "agent never asked: {log:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            rig.readings.try_recv().is_err(),
            "nothing from the unpaired thermometer"
        );

        rig.stop().await;

        // bluetoothd restarts and forgets every agent: the agent registers again.
        mock.restart_bluez();
        let deadline = Instant::now() + WAIT;
        loop {
            let (agents,): (Vec<String>,) = mock.call("Agents", ());
            if agents == ["/org/vectorcare/agent KeyboardOnly"] {
                break;
            }
            assert!(Instant::now() < deadline, "agent not registered again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let _ = stop_agent.send(());
        tokio::time::timeout(WAIT, agent)
            .await
            .expect("agent stops")
            .expect("agent did not panic");
        let (agents,): (Vec<String>,) = mock.call("Agents", ());
        assert!(agents.is_empty(), "unregistered on shutdown: {agents:?}");
    });
}

#[test]
fn late_adapter_stale_device_removal_and_power_cycle_through_dbus() {
    run_alone(async {
        // The gateway starts before the adapter exists: it keeps trying, visibly.
        let mock = BluezMock::start();
        let address = standard_spec(Profile::HeartRate, 6)
            .expect("encodable")
            .address;
        let mut rig = Rig::start(&[(address, false)], Default::default()).await;
        let deadline = Instant::now() + WAIT;
        while rig.status.snapshot().adapter.as_deref() != Some("unavailable") {
            assert!(Instant::now() < deadline, "missing adapter not visible");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_adapter,): (dbus::Path<'static>,) =
            mock.call("AddAdapter", ("hci0", "00:1A:7D:DA:71:13"));
        let dev = mock.add_standard_device(Profile::HeartRate, 6);
        let hr_char = Profile::HeartRate.characteristic(0x2A37);
        let beats = measurements(Profile::HeartRate, 6, 2);
        mock.push(&dev, hr_char, beats[0].clone());
        // Backoff is capped at 2 s in this rig; the adapter is found on a retry.
        assert_eq!(rig.next().await[0].kind, Kind::HeartRate);

        // le-connection-abort-by-local: the stale device object is removed over D-Bus
        // (Adapter1.RemoveDevice) and the device is collected again after it advertises.
        let () = mock.call(
            "FailNext",
            (
                dev.path.clone(),
                "Connect",
                "org.bluez.Error.Failed",
                "le-connection-abort-by-local",
            ),
        );
        let () = mock.call("DropLink", (dev.path.clone(),));
        let deadline = Instant::now() + WAIT;
        loop {
            let (removed,): (u32,) = mock.call("RemovedCount", ("hci0",));
            if removed == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "stale device not removed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        mock.push(&dev, hr_char, beats[1].clone());
        let () = mock.call("Advertise", (dev.path.clone(),));
        assert_eq!(rig.next().await[0].kind, Kind::HeartRate);
        rig.stop().await;

        // The watchdog's power-cycle goes through Adapter1.Powered.
        let central = BtleplugCentral::open(Some("hci0")).await.expect("open");
        central
            .set_powered(false)
            .await
            .expect("power off over D-Bus");
        assert_eq!(
            central.adapter_state().await.expect("state"),
            vectorcare_hal::ble::AdapterState::PoweredOff
        );
        central
            .set_powered(true)
            .await
            .expect("power on over D-Bus");
        assert_eq!(
            central.adapter_state().await.expect("state"),
            vectorcare_hal::ble::AdapterState::PoweredOn
        );
    });
}

/// bluez-async removes a dropped stream's D-Bus match in a task of its own; upstream unwrapped
/// that removal, which fails when a signal for the stream is dispatched between the drop and
/// the task (dbus drops the match itself then) — a panic, fatal in device builds (panic =
/// "abort"). Streams are dropped here over and over while the mock floods matching signals
/// (RSSI updates); no task may panic in bluez-async (vendor/README.md has the patch).
#[test]
fn dropping_btleplug_streams_while_signals_flow_panics_no_task() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    static STREAM_PANICS: AtomicUsize = AtomicUsize::new(0);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info
            .location()
            .is_some_and(|l| l.file().contains("messagestream.rs"))
        {
            STREAM_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
    run_alone(async {
        let mock = new_mock();
        let dev = mock.add_standard_device(Profile::HeartRate, 7);
        let central = BtleplugCentral::open(None).await.expect("open adapter");
        central
            .start_scan(&ScanFilter::default())
            .await
            .expect("scan");
        let p = central
            .peripheral(dev.address)
            .await
            .expect("device known to BlueZ");
        p.connect().await.expect("connect");
        // A second client floods RSSI PropertiesChanged signals for the device.
        let stop = Arc::new(AtomicBool::new(false));
        let flood = {
            let stop = stop.clone();
            let device = dev.path.clone();
            let address = format!("unix:path={}", bus_path().display());
            std::thread::spawn(move || {
                let mut channel =
                    dbus::channel::Channel::open_private(&address).expect("open private bus");
                channel.register().expect("register on bus");
                let conn = Connection::from(channel);
                let proxy = conn.with_proxy("org.bluez", "/", WAIT);
                let mut sent = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let () = proxy
                        .method_call("org.bluez.Mock", "Advertise", (device.clone(),))
                        .expect("Advertise");
                    sent += 1;
                }
                sent
            })
        };
        for _ in 0..150 {
            let mut events = central.events().await.expect("adapter events");
            let notifications = p.notifications().await.expect("notifications");
            // Let signals reach the fresh streams, then drop them mid-flood.
            let _ = tokio::time::timeout(
                Duration::from_millis(2),
                futures::StreamExt::next(&mut events),
            )
            .await;
            drop(notifications);
            drop(events);
            tokio::task::yield_now().await;
        }
        // Give the spawned removal tasks time to run (and, unpatched, to panic).
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        let sent = flood.join().expect("flood thread");
        assert!(sent > 100, "the mock sent only {sent} signals");
        p.disconnect().await.expect("disconnect");
    });
    let _ = std::panic::take_hook();
    assert_eq!(
        STREAM_PANICS.load(Ordering::SeqCst),
        0,
        "bluez-async stream tasks panicked"
    );
}
