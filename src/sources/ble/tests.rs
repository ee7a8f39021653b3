//! The BLE source driven through hal's simulator (paused tokio time: backoffs and watchdogs
//! run instantly and deterministically).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use vectorcare_hal::ble::simulated::{SimOp, SimulatedCentral};
use vectorcare_hal::ble::{BleCentral, BleError};
use vectorcare_hal::clock::SimulatedClock;

use super::config::{RawBleConfig, RawBleDevice};
use super::profiles::Profile;
use super::simulated::{SimulatedHealthDevice, standard_device};
use super::source::{BleSource, InMemoryProgress, StatusHandle, backoff_delay};
use crate::config::problems::Problems;
use crate::reading::{ComponentKind, Kind, MeasuredValue, Reading};
use crate::sources::{IngestError, ReadingSink};

const WAIT: Duration = Duration::from_secs(600);

fn raw(devices: &[(&SimulatedHealthDevice, bool)]) -> RawBleConfig {
    RawBleConfig {
        adapter: None,
        devices: devices
            .iter()
            .map(|(d, delete)| RawBleDevice {
                address: d.address().to_string(),
                profile: None,
                delete_after_upload: *delete,
                passkey: None,
            })
            .collect(),
        accept_any_health_device: false,
        scan_watchdog_minutes: 5,
        backoff_initial_seconds: 2,
        backoff_max_seconds: 60,
    }
}

/// A running source plus the receiving end of what it stored.
struct Rig {
    readings: mpsc::UnboundedReceiver<Vec<Reading>>,
    status: StatusHandle,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Rig {
    fn start(
        central: &SimulatedCentral,
        raw: RawBleConfig,
        progress: Arc<InMemoryProgress>,
        refuse_first: usize,
    ) -> Rig {
        let mut problems = Problems::new();
        let config = raw
            .validate("sources.ble", &mut problems)
            .expect("test config is valid");
        let (sink, mut submissions) = ReadingSink::channel(4);
        let (tx, readings) = mpsc::unbounded_channel();
        // The "queue": refuses the first `refuse_first` submissions as full, then stores.
        tokio::spawn(async move {
            let mut refused = 0;
            while let Some(s) = submissions.recv().await {
                if refused < refuse_first {
                    refused += 1;
                    let _ = s.done.send(Err(IngestError::QueueFull("test".into())));
                    continue;
                }
                let _ = tx.send(s.readings);
                let _ = s.done.send(Ok(()));
            }
        });
        let source = BleSource::new(
            central.clone(),
            config,
            sink,
            progress,
            Arc::new(SimulatedClock::new(0, true)),
        );
        let status = source.status();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(source.run(async {
            let _ = stopped.await;
        }));
        Rig {
            readings,
            status,
            stop: Some(stop),
            task,
        }
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
            .expect("source stops on shutdown")
            .expect("source task did not panic");
    }
}

fn number(r: &Reading) -> (i64, i8) {
    match r.value.as_ref().map(|q| q.value) {
        Some(MeasuredValue::Number(d)) => (d.mantissa, d.exponent),
        other => panic!("expected a number, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn every_profile_delivers_its_readings() {
    for profile in Profile::ALL {
        let central = SimulatedCentral::new();
        let mut dev = standard_device(&central, profile, 7).expect("encodable");
        // One measurement taken before the gateway ever connected (stored on the device).
        dev.measure().expect("measure");
        let mut rig = Rig::start(&central, raw(&[(&dev, false)]), Default::default(), 0);
        let first = rig.next().await;
        let kinds: Vec<Kind> = first.iter().map(|r| r.kind).collect();
        let expected: &[Kind] = match profile {
            Profile::HeartRate => &[Kind::HeartRate],
            Profile::BloodPressure => &[Kind::BloodPressure, Kind::PulseRate],
            Profile::Thermometer => &[Kind::BodyTemperature],
            Profile::PulseOximeter => &[Kind::OxygenSaturation, Kind::PulseRate],
            Profile::WeightScale => &[Kind::BodyWeight],
            Profile::Glucose | Profile::Cgm => &[Kind::BloodGlucose],
        };
        assert_eq!(kinds, expected, "{profile:?}");
        let r = &first[0];
        assert_eq!(r.device.address, dev.address().to_string());
        assert_eq!(r.device.model.as_deref(), Some(profile.name()));
        assert_eq!(r.device.serial_number.as_deref(), Some("SIM-00007"));
        let offset = r.clock.device_offset_seconds.expect("Current Time read");
        assert!(
            offset.abs() <= 2,
            "{profile:?}: device clock offset {offset}"
        );
        match profile {
            Profile::BloodPressure => {
                let kinds: Vec<ComponentKind> = r.components.iter().map(|c| c.kind).collect();
                assert_eq!(
                    kinds,
                    [
                        ComponentKind::Systolic,
                        ComponentKind::Diastolic,
                        ComponentKind::MeanArterial
                    ]
                );
            }
            Profile::Thermometer => {
                let (m, e) = number(r);
                assert_eq!(e, -1);
                assert!((361..=378).contains(&m), "{m}");
            }
            Profile::Glucose => assert_eq!(r.sequence, Some(1)),
            Profile::Cgm => {
                assert_eq!(r.sequence, Some(5), "CGM records are keyed by time offset");
                assert!(r.device_time.is_some(), "session start time read");
            }
            _ => {}
        }
        // A measurement taken while connected arrives too (stored records: on the next fetch).
        if !profile.uses_racp() {
            dev.measure().expect("measure");
            assert_eq!(rig.next().await[0].kind, expected[0], "{profile:?}");
        }
        rig.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn reconnects_after_link_loss_and_keeps_offline_measurements() {
    let central = SimulatedCentral::new();
    let mut dev = standard_device(&central, Profile::HeartRate, 1).expect("encodable");
    let mut rig = Rig::start(&central, raw(&[(&dev, false)]), Default::default(), 0);
    dev.measure().expect("measure");
    rig.next().await;
    assert_eq!(dev.device().connect_count(), 1);

    dev.device().drop_link();
    dev.measure().expect("measured while out of range");
    let again = rig.next().await;
    assert_eq!(again[0].kind, Kind::HeartRate);
    assert_eq!(dev.device().connect_count(), 2, "reconnected once");
    assert_eq!(dev.device().pending_count(), 0);
    let status = rig.status.snapshot();
    let d = &status.devices[&dev.address().to_string()];
    assert!(d.connected);
    assert_eq!(d.connects, 2);
    assert_eq!(d.readings, 2);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn bluez_errors_are_retried_and_stale_devices_removed() {
    let central = SimulatedCentral::new();
    let mut dev = standard_device(&central, Profile::Thermometer, 2).expect("encodable");
    dev.device().fail_next(SimOp::Connect, BleError::InProgress);
    dev.device().fail_next(
        SimOp::Discover,
        BleError::Failed("Software caused connection abort".into()),
    );
    dev.measure().expect("measure");
    let mut rig = Rig::start(&central, raw(&[(&dev, false)]), Default::default(), 0);
    rig.next().await;
    assert_eq!(
        dev.device().connect_count(),
        2,
        "InProgress retried, discovery failure retried"
    );

    // le-connection-abort-by-local: the device object is removed; the next advertisement
    // brings it back and the session restarts.
    dev.device().drop_link();
    dev.device()
        .fail_next(SimOp::Connect, BleError::ConnectionAbortedLocally);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(central.stats().devices_removed, 1);
    assert!(!dev.device().is_connected());
    dev.device().advertise();
    dev.measure().expect("measure");
    rig.next().await;
    assert!(dev.device().is_connected());
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn glucose_records_fetched_once_and_deleted_only_after_server_confirmation() {
    let central = SimulatedCentral::new();
    let mut dev = standard_device(&central, Profile::Glucose, 3).expect("encodable");
    for _ in 0..3 {
        dev.measure().expect("measure");
    }
    let progress = Arc::new(InMemoryProgress::default());
    let mut rig = Rig::start(&central, raw(&[(&dev, true)]), progress.clone(), 0);
    let mut sequences = Vec::new();
    for _ in 0..3 {
        sequences.extend(rig.next().await.iter().filter_map(|r| r.sequence));
    }
    assert_eq!(sequences, [1, 2, 3]);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        dev.stored_sequences(),
        [1, 2, 3],
        "nothing confirmed: nothing deleted"
    );

    // The server confirms 1..=2; two more records are taken; the next connection fetches only
    // the new ones and deletes only the confirmed ones.
    progress.confirm(dev.address(), 2);
    dev.measure().expect("measure");
    dev.measure().expect("measure");
    dev.device().drop_link();
    let mut next = Vec::new();
    for _ in 0..2 {
        next.extend(rig.next().await.iter().filter_map(|r| r.sequence));
    }
    assert_eq!(next, [4, 5]);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(dev.stored_sequences(), [3, 4, 5]);
    let racp_writes: Vec<Vec<u8>> = dev.device().writes().into_iter().map(|(_, w)| w).collect();
    assert_eq!(
        racp_writes,
        [
            vec![1, 1],          // report all
            vec![1, 3, 1, 4, 0], // report ≥ 4
            vec![2, 2, 1, 2, 0], // delete ≤ 2
        ]
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_delete_without_the_config_flag() {
    let central = SimulatedCentral::new();
    let mut dev = standard_device(&central, Profile::Glucose, 4).expect("encodable");
    dev.measure().expect("measure");
    let progress = Arc::new(InMemoryProgress::default());
    progress.confirm(dev.address(), 1);
    let mut rig = Rig::start(&central, raw(&[(&dev, false)]), progress, 0);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(dev.stored_sequences(), [1]);
    let writes: Vec<Vec<u8>> = dev.device().writes().into_iter().map(|(_, w)| w).collect();
    assert_eq!(
        writes,
        [vec![1, 3, 1, 2, 0]],
        "only records after the confirmed one asked for"
    );
    assert!(rig.readings.try_recv().is_err());
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn full_queue_delays_but_never_drops() {
    let central = SimulatedCentral::new();
    let mut dev = standard_device(&central, Profile::WeightScale, 5).expect("encodable");
    dev.measure().expect("measure");
    let mut rig = Rig::start(&central, raw(&[(&dev, false)]), Default::default(), 3);
    let got = rig.next().await;
    assert_eq!(got[0].kind, Kind::BodyWeight);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn adapter_power_loss_is_visible_and_recovered() {
    let central = SimulatedCentral::new();
    let mut dev = standard_device(&central, Profile::PulseOximeter, 6).expect("encodable");
    let mut rig = Rig::start(&central, raw(&[(&dev, false)]), Default::default(), 0);
    dev.measure().expect("measure");
    rig.next().await;
    central.set_powered(false).await.expect("power off");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let status = rig.status.snapshot();
    assert_eq!(status.adapter.as_deref(), Some("poweredoff"));
    assert!(!status.scanning);
    dev.measure().expect("measured while the adapter is off");
    central.set_powered(true).await.expect("power on");
    rig.next().await;
    assert!(rig.status.snapshot().scanning);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn missing_adapter_is_retried_until_it_appears() {
    let central = SimulatedCentral::new();
    central.set_present(false);
    let mut dev = standard_device(&central, Profile::HeartRate, 8).expect("encodable");
    dev.measure().expect("measure");
    let mut rig = Rig::start(&central, raw(&[(&dev, false)]), Default::default(), 0);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        rig.status.snapshot().adapter.as_deref(),
        Some("unavailable")
    );
    central.set_present(true);
    rig.next().await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn scan_watchdog_restarts_discovery_then_power_cycles() {
    let central = SimulatedCentral::new();
    let mut config = raw(&[]);
    config.accept_any_health_device = true;
    let rig = Rig::start(&central, config, Default::default(), 0);
    tokio::time::sleep(Duration::from_secs(4 * 60)).await;
    assert_eq!(rig.status.snapshot().discovery_restarts, 0);
    tokio::time::sleep(Duration::from_secs(2 * 60)).await;
    let s = rig.status.snapshot();
    assert_eq!((s.discovery_restarts, s.adapter_power_cycles), (1, 0));
    assert_eq!(central.stats().scans_started, 2);
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    let s = rig.status.snapshot();
    assert_eq!((s.discovery_restarts, s.adapter_power_cycles), (1, 1));
    assert_eq!(central.stats().power_offs, 1);
    assert!(
        central.is_scanning(),
        "discovery runs again after the power-cycle"
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn accept_any_takes_health_devices_only_and_serves_several() {
    let central = SimulatedCentral::new();
    let mut hr = standard_device(&central, Profile::HeartRate, 9).expect("encodable");
    let mut bp = standard_device(&central, Profile::BloodPressure, 9).expect("encodable");
    let mut config = raw(&[]);
    config.accept_any_health_device = true;
    hr.measure().expect("measure");
    bp.measure().expect("measure");
    let mut rig = Rig::start(&central, config, Default::default(), 0);
    let mut kinds = vec![rig.next().await[0].kind, rig.next().await[0].kind];
    kinds.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(kinds, [Kind::BloodPressure, Kind::HeartRate]);
    rig.stop().await;
}

#[test]
fn backoff_grows_caps_and_jitters() {
    let s = Duration::from_secs;
    assert_eq!(backoff_delay(0, s(2), s(60), 0.0), s(1));
    assert_eq!(backoff_delay(0, s(2), s(60), 1.0), s(2));
    assert_eq!(backoff_delay(3, s(2), s(60), 1.0), s(16));
    assert_eq!(backoff_delay(10, s(2), s(60), 1.0), s(60));
    assert_eq!(backoff_delay(10, s(2), s(60), 0.0), s(30));
    assert_eq!(backoff_delay(u32::MAX, s(2), s(60), 0.5), s(45));
}

#[test]
fn config_reports_every_problem_with_its_path() {
    let text = r#"
        adapter = "hci 0"
        scan_watchdog_minutes = 0
        [[devices]]
        address = "AA:BB:CC:DD:EE"
        [[devices]]
        address = "AA:BB:CC:DD:EE:FF"
        profile = "heart_rate"
        delete_after_upload = true
        passkey = 1234567
        [[devices]]
        address = "aa:bb:cc:dd:ee:ff"
        profile = "spirometer"
    "#;
    let raw: RawBleConfig = toml::from_str(text).expect("parses");
    let mut problems = Problems::new();
    assert!(raw.validate("sources.ble", &mut problems).is_none());
    let paths: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "sources.ble.devices[0].address",
            "sources.ble.devices[1].delete_after_upload",
            "sources.ble.devices[1].passkey",
            "sources.ble.devices[2].address",
            "sources.ble.devices[2].profile",
            "sources.ble.scan_watchdog_minutes",
            "sources.ble.adapter",
        ]
    );
    assert!(problems.iter().all(|p| p.hint.is_some()));
    assert!(
        toml::from_str::<RawBleConfig>("devcies = []").is_err(),
        "unknown keys refused"
    );
}

#[test]
fn config_defaults_and_nothing_to_collect() {
    let raw: RawBleConfig = toml::from_str("accept_any_health_device = true").expect("parses");
    let config = raw
        .validate("sources.ble", &mut Problems::new())
        .expect("valid");
    assert_eq!(config.scan_watchdog, Duration::from_secs(300));
    assert_eq!(config.backoff_initial, Duration::from_secs(2));
    assert_eq!(config.backoff_max, Duration::from_secs(300));
    let raw: RawBleConfig = toml::from_str("").expect("parses");
    let mut problems = Problems::new();
    assert!(raw.validate("sources.ble", &mut problems).is_none());
    assert_eq!(
        problems.iter().next().map(|p| p.path.as_str()),
        Some("sources.ble.devices")
    );
}

/// Under unwinding (tests, dev builds) a panicking library task leaves the source running.
/// Device builds abort instead and the panic hook exits 101 (src/exit.rs); the library panic
/// this was about, bluez-async's on a dropped message stream, is patched (vendor/README.md).
#[tokio::test(start_paused = true)]
async fn a_panicking_library_task_does_not_stop_the_source() {
    const {
        assert!(
            cfg!(panic = "unwind"),
            "tests must run with unwinding panics"
        )
    };

    let central = SimulatedCentral::new();
    let mut dev = standard_device(&central, Profile::HeartRate, 11).expect("encodable");
    let mut rig = Rig::start(&central, raw(&[(&dev, false)]), Default::default(), 0);
    // What unpatched bluez-async did: a task of its own panics mid-connect.
    let library_task = tokio::spawn(async { panic!("simulated bluez-async stream panic") });
    assert!(library_task.await.expect_err("task panicked").is_panic());
    dev.measure().expect("measure");
    assert_eq!(rig.next().await[0].kind, Kind::HeartRate);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cgm_records_fetched_by_time_offset_and_deleted_after_confirmation() {
    let central = SimulatedCentral::new();
    let mut dev = standard_device(&central, Profile::Cgm, 12).expect("encodable");
    for _ in 0..3 {
        dev.measure().expect("measure");
    }
    assert_eq!(dev.stored_sequences(), [5, 10, 15]);
    let progress = Arc::new(InMemoryProgress::default());
    let mut rig = Rig::start(&central, raw(&[(&dev, true)]), progress.clone(), 0);
    let mut offsets = Vec::new();
    for _ in 0..3 {
        offsets.extend(rig.next().await.iter().filter_map(|r| r.sequence));
    }
    assert_eq!(offsets, [5, 10, 15]);
    progress.confirm(dev.address(), 10);
    dev.device().drop_link();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        dev.stored_sequences(),
        [15],
        "confirmed records deleted, the rest kept"
    );
    let writes: Vec<Vec<u8>> = dev.device().writes().into_iter().map(|(_, w)| w).collect();
    assert_eq!(
        writes,
        [
            vec![1, 1],           // report all
            vec![1, 3, 1, 16, 0], // report time offset ≥ 16
            vec![2, 2, 1, 10, 0], // delete time offset ≤ 10
        ]
    );
    rig.stop().await;
}
