//! The simulator's BLE peripheral (`simulate --target ble`) through REAL `bluer` against the
//! BlueZ mock on a private D-Bus (`dbus-daemon` + python-dbusmock with
//! tests/bluez_mock/gatt_template.py, which plays bluetoothd's GattManager1 and
//! LEAdvertisingManager1: it reads the registered application's object tree and the
//! advertisement's properties back from the simulator, as bluetoothd does).
//!
//! Checked: the registered GATT database matches the SIG service tables (UUIDs, flags), the
//! advertisement, reads, and a RACP exchange end to end (write, notifications, indications
//! with confirmations). Needs `scripts/install/bluez-mock.sh`. One test: libdbus reads
//! `DBUS_SYSTEM_BUS_ADDRESS` once per process.

#[path = "support/gatt_spec.rs"]
mod gatt_spec;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbus::blocking::Connection;
use dbus::message::MatchRule;
use vectorcare_gateway::decode::gatt::racp::{self, RacpResponse};
use vectorcare_gateway::decode::gatt::{glucose, uuids};
use vectorcare_gateway::simulator::Target;
use vectorcare_gateway::simulator::bluer_peripheral::BluerTarget;
use vectorcare_gateway::simulator::engine::{Action, timeline};
use vectorcare_gateway::simulator::load_file;
use vectorcare_gateway::simulator::scenario::BleProfile;

const PYTHON: &str = "/usr/bin/python3";
const WAIT: Duration = Duration::from_secs(20);

struct Mock {
    daemon: Child,
    mock: Child,
    conn: Connection,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.mock.kill();
        let _ = self.mock.wait();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn start_mock(dir: &Path) -> Mock {
    let tools = Command::new("dbus-daemon")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new(PYTHON)
            .args(["-c", "import dbusmock, dbus, gi"])
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        tools,
        "dbus-daemon and python3-dbusmock are needed: run scripts/install/bluez-mock.sh"
    );
    let address = format!("unix:path={}/bus", dir.display());
    let mut daemon = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .arg(format!("--address={address}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbus-daemon");
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("dbus-daemon prints its address when ready");
    let template =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bluez_mock/gatt_template.py");
    let mock = Command::new(PYTHON)
        .args(["-m", "dbusmock", "--system", "--template"])
        .arg(&template)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .stdout(
            std::fs::File::create(dir.join("mock.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python3 -m dbusmock");
    let mut channel = dbus::channel::Channel::open_private(&address).expect("open private bus");
    channel.register().expect("register on bus");
    let conn = Connection::from(channel);
    let deadline = Instant::now() + WAIT;
    loop {
        let proxy = conn.with_proxy("org.freedesktop.DBus", "/org/freedesktop/DBus", WAIT);
        let (owned,): (bool,) = proxy
            .method_call("org.freedesktop.DBus", "NameHasOwner", ("org.bluez",))
            .expect("NameHasOwner");
        if owned {
            break;
        }
        assert!(Instant::now() < deadline, "BlueZ mock did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: set before any bluer/libdbus use of the system bus in this process (one test).
    unsafe { std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", &address) };
    Mock { daemon, mock, conn }
}

/// The options bluetoothd passes with a read or write: which central, over what link.
fn central_options() -> dbus::arg::PropMap {
    use dbus::arg::{RefArg, Variant};
    let mut options: dbus::arg::PropMap = dbus::arg::PropMap::new();
    let device: Box<dyn RefArg> =
        Box::new(dbus::Path::from("/org/bluez/hci0/dev_11_22_33_44_55_66"));
    options.insert("device".to_owned(), Variant(device));
    options.insert("mtu".to_owned(), Variant(Box::new(247u16)));
    options.insert("link".to_owned(), Variant(Box::new("LE".to_owned())));
    options
}

/// (object path, value) of every PropertiesChanged "Value" seen.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

type AppRow = (String, String, String, String, bool, String, Vec<String>);

fn short(text: &str) -> u16 {
    let uuid = uuid::Uuid::parse_str(text).expect("uuid");
    vectorcare_hal::ble::short_uuid(&uuid).expect("SIG 16-bit uuid")
}

fn flags_text(flags: &[String]) -> String {
    let mut out = String::new();
    for (flag, letter) in [
        ("read", 'r'),
        ("write", 'w'),
        ("notify", 'n'),
        ("indicate", 'i'),
    ] {
        if flags.iter().any(|f| f == flag) {
            out.push(letter);
        }
    }
    for other in flags
        .iter()
        .filter(|f| !["read", "write", "notify", "indicate"].contains(&f.as_str()))
    {
        out.push_str(&format!("+{other}"));
    }
    out
}

#[test]
fn the_ble_target_registers_its_gatt_database_and_answers_racp_through_bluez() {
    let dir = PathBuf::from(format!("/tmp/vcsim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bus dir");
    let mock = start_mock(&dir);
    let mock_call = |method: &str| {
        { mock.conn.with_proxy("org.bluez", "/", WAIT) }
            .method_call::<(dbus::Path<'static>,), _, _, _>(
                "org.bluez.Mock",
                method,
                ("hci0", "00:1A:7D:DA:71:13"),
            )
    };
    let _ = mock_call("AddAdapter").expect("AddAdapter");

    let scenario =
        load_file(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/scenarios/glucose.toml"))
            .expect("scenario");
    let start = scenario.start.expect("the glucose scenario has a start");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut target = BluerTarget::new(Some("hci0".to_owned()), start);
    rt.block_on(target.start(&scenario))
        .expect("serves on the mock adapter");

    // 1. The registered database, as bluetoothd read it, against the SIG tables.
    let (rows,): (Vec<AppRow>,) = mock
        .conn
        .with_proxy("org.bluez", "/", WAIT)
        .method_call("org.bluez.Mock", "GattApplications", ())
        .expect("GattApplications");
    let mut registered: BTreeMap<u16, BTreeMap<u16, String>> = BTreeMap::new();
    let mut paths: BTreeMap<u16, String> = BTreeMap::new();
    let client = rows
        .first()
        .map(|r| r.0.clone())
        .expect("an application is registered");
    for (_, _, service, path, primary, characteristic, flags) in &rows {
        assert!(primary, "primary services");
        registered
            .entry(short(service))
            .or_default()
            .insert(short(characteristic), flags_text(flags));
        paths.insert(short(characteristic), path.clone());
    }
    assert_eq!(registered, gatt_spec::spec_table(BleProfile::Glucose));

    // 2. The advertisement.
    let (ads,): (Vec<(String, String, Vec<String>)>,) = mock
        .conn
        .with_proxy("org.bluez", "/", WAIT)
        .method_call("org.bluez.Mock", "Advertisements", ())
        .expect("Advertisements");
    assert_eq!(ads.len(), 1, "{ads:?}");
    assert_eq!(ads[0].0, "peripheral");
    assert_eq!(ads[0].1, "VC-SIM glucose-meter");
    assert_eq!(
        ads[0].2.iter().map(|u| short(u)).collect::<Vec<_>>(),
        vec![0x1808]
    );

    // 3. Play the first events: 10 stored records + the first measurement, all kept as records.
    let events = timeline(&scenario, scenario.seed, start);
    let mut stored = 0;
    for e in events.iter().take(2) {
        stored += match &e.action {
            Action::Store(s) => s.len(),
            Action::Measure(_) => 1,
            _ => 0,
        };
        rt.block_on(target.apply(&scenario.devices[e.device], e.device, &e.action))
            .expect("applies");
    }
    assert_eq!(stored, 11);

    // 4. Act as bluetoothd towards the application: read, subscribe, write RACP, confirm.
    let char_proxy = |uuid: u16| {
        mock.conn
            .with_proxy(client.clone(), dbus::Path::from(paths[&uuid].clone()), WAIT)
    };
    let (manufacturer,): (Vec<u8>,) = char_proxy(0x2A29)
        .method_call(
            "org.bluez.GattCharacteristic1",
            "ReadValue",
            (central_options(),),
        )
        .expect("ReadValue");
    assert_eq!(manufacturer, b"VectorCare Simulated Devices");

    let received: Received = Arc::default();
    let sink = received.clone();
    let rule = MatchRule::new_signal("org.freedesktop.DBus.Properties", "PropertiesChanged");
    mock.conn
        .add_match(rule, move |changed: dbus::blocking::stdintf::org_freedesktop_dbus::PropertiesPropertiesChanged, _, msg| {
            if let Some(value) = changed.changed_properties.get("Value")
                && let Some(bytes) = dbus::arg::cast::<Vec<u8>>(&value.0)
            {
                let path = msg.path().map(|p| p.to_string()).unwrap_or_default();
                sink.lock().expect("lock").push((path, bytes.clone()));
            }
            true
        })
        .expect("match PropertiesChanged");
    for uuid in [
        uuids::GLUCOSE_MEASUREMENT,
        uuids::RECORD_ACCESS_CONTROL_POINT,
    ] {
        let () = char_proxy(uuid)
            .method_call("org.bluez.GattCharacteristic1", "StartNotify", ())
            .expect("StartNotify");
    }
    let report_all = racp::encode_request(&racp::RacpRequest {
        op_code: racp::RacpOpCode::ReportStoredRecords,
        operator: racp::RacpOperator::All,
    })
    .expect("encodable");
    let () = char_proxy(uuids::RECORD_ACCESS_CONTROL_POINT)
        .method_call(
            "org.bluez.GattCharacteristic1",
            "WriteValue",
            (report_all, central_options()),
        )
        .expect("WriteValue RACP");
    // The simulator delivers between events (`Target::idle`), as it does while `play` waits;
    // meanwhile this thread plays bluetoothd: records are notified, the RACP response is an
    // indication that must be confirmed.
    let racp_path = paths[&uuids::RECORD_ACCESS_CONTROL_POINT].clone();
    let response = std::thread::scope(|scope| {
        let target = &mut target;
        let rt = &rt;
        let pump = scope.spawn(move || {
            rt.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    loop {
                        target.idle().await;
                    }
                })
                .await;
            })
        });
        let deadline = Instant::now() + WAIT;
        let response = loop {
            mock.conn
                .process(Duration::from_millis(50))
                .expect("process");
            let got = received.lock().expect("lock").clone();
            if let Some((_, bytes)) = got.iter().find(|(p, _)| *p == racp_path) {
                let () = char_proxy(uuids::RECORD_ACCESS_CONTROL_POINT)
                    .method_call("org.bluez.GattCharacteristic1", "Confirm", ())
                    .expect("Confirm");
                break bytes.clone();
            }
            assert!(Instant::now() < deadline, "no RACP response; got {got:?}");
        };
        // Keep reading until the simulator is idle again (the pump's time is up).
        while !pump.is_finished() {
            mock.conn
                .process(Duration::from_millis(50))
                .expect("process");
        }
        pump.join().expect("pump");
        response
    });
    assert_eq!(
        racp::decode_response(&response).expect("decodes"),
        RacpResponse::ResponseCode {
            request_op_code: 1,
            code: racp::RacpResponseCode::Success
        }
    );
    let measurement_path = paths[&uuids::GLUCOSE_MEASUREMENT].clone();
    let records: Vec<u16> = received
        .lock()
        .expect("lock")
        .iter()
        .filter(|(p, _)| *p == measurement_path)
        .map(|(_, b)| glucose::decode(b).expect("a glucose record").sequence)
        .collect();
    assert_eq!(
        records,
        (1..=11).collect::<Vec<u16>>(),
        "every stored record, in order"
    );

    rt.block_on(target.finish()).expect("finish");
    drop(mock);
    let _ = std::fs::remove_dir_all(&dir);
}
