//! The device simulator (issue #10): every scenario in config/scenarios/ plays without error
//! against the in-process backend, pseudo-terminals and a REAL mosquitto broker, and every
//! byte it sends decodes with the gateway's own decoders (garbage aside). The BLE
//! peripheral's GATT application is checked against the SIG service tables.
//!
//! Needs mosquitto: `scripts/install/mosquitto.sh`. Scenarios play at `speed = 0` (no
//! waiting), so a simulated week takes a moment.

#[path = "support/gatt_spec.rs"]
mod gatt_spec;
#[path = "../src/sources/mqtt/mosquitto.rs"]
#[allow(dead_code)]
mod mosquitto;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::AsyncReadExt;
use vectorcare_gateway::simulator::engine::PlayOptions;
use vectorcare_gateway::simulator::loopback::{self, Decoded};
use vectorcare_gateway::simulator::mqtt::MqttTarget;
use vectorcare_gateway::simulator::pty::SerialTarget;
use vectorcare_gateway::simulator::scenario::{
    BleProfile, DeviceSpec, Scenario, SerialProtocol, Transport,
};
use vectorcare_gateway::simulator::{PlayReport, load_file, play};
use vectorcare_gateway::simulator::{bluer_peripheral, gatt_db};

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("config/scenarios exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "one scenario per profile + mixed: {files:?}"
    );
    files
}

fn scenarios() -> Vec<(String, Scenario)> {
    scenario_files()
        .iter()
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            let s = load_file(p).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, s)
        })
        .collect()
}

fn fast() -> PlayOptions {
    PlayOptions {
        speed: 0.0,
        ..PlayOptions::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Values one device's lines/notifications/records should amount to.
fn expected_values(device: &DeviceSpec, report: &PlayReport) -> u64 {
    let c = report.devices[&device.name];
    let per_measurement = match device.transport {
        // One line per quantity.
        Transport::Serial {
            protocol: SerialProtocol::Csv,
        } => 2,
        _ => 1,
    };
    c.measurements * per_measurement + c.stored_records
}

fn check_decoded(file: &str, device: &DeviceSpec, report: &PlayReport, got: &Decoded) {
    let c = report.devices[&device.name];
    let expected = expected_values(device, report);
    assert!(
        c.measurements > 0,
        "{file}/{}: nothing measured",
        device.name
    );
    // Garbage can, by chance, be a valid value (two random bytes are a valid heart rate).
    assert_eq!(
        got.values + got.refused,
        expected + c.garbage,
        "{file}/{}: every value arrives once ({got:?}, report {c:?})",
        device.name
    );
    assert!(
        got.refused <= c.garbage,
        "{file}/{}: only garbage is refused ({got:?}, report {c:?})",
        device.name
    );
    assert!(got.readings > 0, "{file}/{}: no readings", device.name);
}

#[test]
fn every_scenario_plays_in_process_and_decodes_as_the_gateway_decodes() {
    let rt = runtime();
    for (file, scenario) in scenarios() {
        let (report, counts) = rt
            .block_on(loopback::play_inprocess_checked(&scenario, fast()))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        for device in &scenario.devices {
            if matches!(device.transport, Transport::Mqtt { .. }) {
                assert!(report.skipped_devices.contains(&device.name));
                continue;
            }
            check_decoded(&file, device, &report, &counts[&device.name]);
        }
    }
}

#[test]
fn the_same_seed_replays_the_same_values_and_another_seed_does_not() {
    let rt = runtime();
    let s = load_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios/serial-devices.toml"),
    )
    .expect("scenario");
    let run = |seed: u64| {
        rt.block_on(async {
            let mut target = SerialTarget::pty();
            let options = PlayOptions {
                seed: Some(seed),
                ..fast()
            };
            let (report, bytes) = play_on_ptys(&s, &mut target, options).await;
            assert!(report.total_measurements() > 0);
            bytes
        })
    };
    let a = run(5);
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
}

/// Plays on ptys while reading every slave side; returns what each device sent.
async fn play_on_ptys(
    scenario: &Scenario,
    target: &mut SerialTarget,
    options: PlayOptions,
) -> (PlayReport, BTreeMap<usize, Vec<u8>>) {
    use vectorcare_gateway::simulator::Target;
    target.start(scenario).await.expect("ptys open");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let readers: Vec<_> = target
        .paths()
        .into_iter()
        .map(|(i, path)| {
            let mut stop = stop_rx.clone();
            async move {
                let mut port = tokio::fs::OpenOptions::new()
                    .read(true)
                    .open(&path)
                    .await
                    .expect("open pty slave");
                let mut bytes = Vec::new();
                let mut buf = [0u8; 4096];
                let mut stopping = false;
                loop {
                    let read = if stopping {
                        match tokio::time::timeout(Duration::from_millis(300), port.read(&mut buf))
                            .await
                        {
                            Ok(r) => r,
                            Err(_) => break,
                        }
                    } else {
                        tokio::select! {
                            r = port.read(&mut buf) => r,
                            _ = stop.changed() => { stopping = true; continue; }
                        }
                    };
                    match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => bytes.extend_from_slice(&buf[..n]),
                    }
                }
                (i, bytes)
            }
        })
        .collect();
    // `start` already ran: a wrapper that skips it.
    struct Started<'a>(&'a mut SerialTarget);
    impl vectorcare_gateway::simulator::Target for Started<'_> {
        async fn start(
            &mut self,
            _: &Scenario,
        ) -> Result<(), vectorcare_gateway::simulator::SimError> {
            Ok(())
        }
        fn plays(&self, t: &Transport) -> bool {
            self.0.plays(t)
        }
        async fn apply(
            &mut self,
            d: &DeviceSpec,
            i: usize,
            a: &vectorcare_gateway::simulator::engine::Action,
        ) -> Result<(), vectorcare_gateway::simulator::SimError> {
            self.0.apply(d, i, a).await
        }
        async fn finish(&mut self) -> Result<(), vectorcare_gateway::simulator::SimError> {
            self.0.finish().await
        }
    }
    let play = async {
        let report = play(
            scenario,
            &mut Started(target),
            options,
            std::future::pending(),
        )
        .await
        .expect("plays");
        let _ = stop_tx.send(true);
        report
    };
    let (report, sent) = tokio::join!(play, futures::future::join_all(readers));
    (report, sent.into_iter().collect())
}

#[test]
fn every_scenario_plays_on_pseudo_terminals_and_every_line_decodes() {
    let rt = runtime();
    let mut serial_devices = 0;
    for (file, scenario) in scenarios() {
        let mut target = SerialTarget::pty();
        let (report, sent) = rt.block_on(play_on_ptys(&scenario, &mut target, fast()));
        assert_eq!(target.dropped(), 0, "{file}: a reader was attached");
        for (i, device) in scenario.devices.iter().enumerate() {
            let Transport::Serial { protocol } = device.transport else {
                assert!(report.skipped_devices.contains(&device.name), "{file}");
                continue;
            };
            serial_devices += 1;
            let bytes = sent.get(&i).cloned().unwrap_or_default();
            let got = rt.block_on(async {
                let (_tx, rx) = tokio::sync::watch::channel(false);
                loopback::read_serial(Box::new(std::io::Cursor::new(bytes)), protocol, rx).await
            });
            check_decoded(&file, device, &report, &got);
        }
    }
    assert!(serial_devices >= 3, "masimo, ndjson and csv are covered");
}

#[test]
fn every_scenario_plays_against_a_real_mosquitto_and_every_payload_decodes() {
    let mut broker =
        mosquitto::Mosquitto::start("listener {port} 127.0.0.1\nallow_anonymous true\n");
    let rt = runtime();
    let mut mqtt_devices = 0;
    for (file, scenario) in scenarios() {
        let received = rt.block_on(async {
            // A subscriber standing in for the gateway, connected before the devices publish.
            let mut opts = MqttOptions::new("sim-test-subscriber", "127.0.0.1", broker.port);
            opts.set_keep_alive(Duration::from_secs(30));
            opts.set_max_packet_size(1 << 20, 1 << 20);
            let (client, mut events) = AsyncClient::new(opts, 64);
            client
                .subscribe("#", QoS::AtLeastOnce)
                .await
                .expect("subscribe");
            loop {
                if let Event::Incoming(Packet::SubAck(_)) = events.poll().await.expect("broker") {
                    break;
                }
            }
            let played = std::sync::atomic::AtomicBool::new(false);
            let collect = async {
                let mut got: Vec<(String, Vec<u8>)> = Vec::new();
                // Until the devices are done and the broker has been quiet for a moment.
                loop {
                    match tokio::time::timeout(Duration::from_millis(300), events.poll()).await {
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            got.push((p.topic.clone(), p.payload.to_vec()));
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => panic!("subscriber: {e}"),
                        Err(_) if played.load(std::sync::atomic::Ordering::SeqCst) => break,
                        Err(_) => {}
                    }
                }
                got
            };
            let mut target = MqttTarget::new("127.0.0.1", broker.port);
            let playing = async {
                let report = play(&scenario, &mut target, fast(), std::future::pending()).await;
                played.store(true, std::sync::atomic::Ordering::SeqCst);
                report
            };
            let (report, got) = tokio::join!(playing, collect);
            let report = report.unwrap_or_else(|e| panic!("{file}: {e}"));
            let _ = client.disconnect().await;
            (report, got)
        });
        let (report, got) = received;
        for device in &scenario.devices {
            let Transport::Mqtt { schema, topic, .. } = &device.transport else {
                assert!(report.skipped_devices.contains(&device.name), "{file}");
                continue;
            };
            mqtt_devices += 1;
            let mut decoded = Decoded::default();
            for (_, payload) in got.iter().filter(|(t, _)| t == topic) {
                match loopback::decode_mqtt(*schema, topic, payload) {
                    Ok(n) => {
                        decoded.values += 1;
                        decoded.readings += n as u64;
                    }
                    Err(_) => decoded.refused += 1,
                }
            }
            check_decoded(&file, device, &report, &decoded);
        }
    }
    broker.stop();
    assert!(
        mqtt_devices >= 3,
        "vitals, open_mhealth and fhir_observation are covered"
    );
}

fn short(uuid: &uuid::Uuid) -> u16 {
    vectorcare_hal::ble::short_uuid(uuid).expect("a SIG 16-bit UUID")
}

/// The BlueZ GATT application the `ble` target registers, as (service → characteristic →
/// properties), read from the `bluer` structures themselves.
fn application_table(profile: BleProfile) -> BTreeMap<u16, BTreeMap<u16, String>> {
    let start = time::macros::datetime!(2026-11-23 07:00:00 UTC);
    let db = gatt_db::database(profile, "model", "serial", start).expect("encodable");
    let state = std::sync::Arc::default();
    let app = bluer_peripheral::application(profile, &db, &state, &Default::default());
    app.services
        .iter()
        .map(|s| {
            assert!(s.primary, "every service is primary");
            let chars = s
                .characteristics
                .iter()
                .map(|c| {
                    let mut p = String::new();
                    if c.read.as_ref().is_some_and(|r| r.read) {
                        p.push('r');
                    }
                    if c.write.as_ref().is_some_and(|w| w.write) {
                        p.push('w');
                    }
                    if c.notify.as_ref().is_some_and(|n| n.notify) {
                        p.push('n');
                    }
                    if c.notify.as_ref().is_some_and(|n| n.indicate) {
                        p.push('i');
                    }
                    (short(&c.uuid), p)
                })
                .collect();
            (short(&s.uuid), chars)
        })
        .collect()
}

#[test]
fn the_ble_peripherals_gatt_application_matches_the_sig_service_tables() {
    for profile in BleProfile::ALL {
        let expected = gatt_spec::spec_table(profile);
        assert_eq!(application_table(profile), expected, "{}", profile.name());
        let ad = bluer_peripheral::advertisement(profile, "VC-SIM x");
        assert_eq!(ad.advertisement_type, bluer::adv::Type::Peripheral);
        let advertised: Vec<u16> = ad.service_uuids.iter().map(short).collect();
        assert_eq!(
            advertised,
            vec![gatt_db::service_uuid(profile)],
            "{}",
            profile.name()
        );
    }
}
