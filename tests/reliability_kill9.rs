//! Kill -9 of the whole gateway (issue #9): a real gateway process ingests a steady stream from
//! MQTT (the `simulate --target mqtt://` publisher → a real mosquitto → the gateway's
//! persistent QoS 1 session) and from simulated BLE devices played inside the gateway
//! (`run --simulate-devices`, a blood-pressure cuff and a glucose meter that deletes records
//! the server confirmed), and uploads to the real FHIR/OAuth peers (Medplum + oidc-provider).
//! It is SIGKILLed at seeded random moments and restarted on the same state dir.
//!
//! Afterwards (publisher stopped, BLE devices gone, queue drained and `queue stats` empty):
//! - no duplicates: every Observation identifier on the server is held by exactly one
//!   Observation;
//! - MQTT: every message the broker acknowledged (seen by a witness subscriber with its own
//!   persistent session; a superset of the PUBACKs the publisher received) is on the server;
//! - BLE stored records: every record the meter may have deleted (sequence ≤ the persisted
//!   server-confirmed progress the delete is based on) is on the server.
//!
//! docs/RELIABILITY.md, "Kill -9", defines "acknowledged" per source.
//!
//! Short: `cargo test --test reliability_kill9` (20 kills). Long (200 kills):
//! `cargo test --test reliability_kill9 -- --ignored --nocapture`. Replay a run's kill moments
//! with `KILL9_SEED=<printed seed>`. Needs scripts/install/mosquitto.sh and
//! scripts/install/fhir-server.sh.

#[allow(dead_code)]
#[path = "support/gateway_process.rs"]
mod gateway_process;
#[allow(dead_code)]
#[path = "../src/sources/mqtt/mosquitto.rs"]
mod mosquitto;
#[allow(dead_code)]
#[path = "support/node_peers.rs"]
mod node_peers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_process::{
    BleDeviceSpec, GatewayProcess, GatewaySpec, MqttSourceSpec, SeededRng, gateway_binary,
    seed_from_env,
};
use mosquitto::Mosquitto;
use node_peers::{NodePeers, PeerOptions};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use vectorcare_gateway::decode::mqtt::{PayloadContext, decode_payload};
use vectorcare_gateway::reading::{ClockContext, DeviceIdentity, SourceKind};
use vectorcare_gateway::upload::keys::{SigningAlg, generate_into_dir};
use vectorcare_hal::clock::SimulatedClock;

const CLIENT_ID: &str = "gw-kill9";
const TOPIC_FILTER: &str = "k9/+/vitals";
const METER: &str = "C0:FF:EE:08:00:01";
const CUFF: &str = "C0:FF:EE:10:00:01";
const STRAP: &str = "C0:FF:EE:0D:00:01";

/// MQTT devices publishing the vitals JSON (every payload carries its device time, so its
/// Observation identifier does not depend on when the gateway received it).
const MQTT_SCENARIO: &str = r#"
[scenario]
name = "kill9-mqtt"
seed = 91
duration_seconds = 86400
start = "2026-11-23T08:00:00Z"

[[devices]]
name = "hr-strap"
transport = "mqtt"
schema = "vitals"
measures = "heart_rate"
topic = "k9/hr-strap/vitals"
interval_seconds = 20

[[devices]]
name = "cuff"
transport = "mqtt"
schema = "vitals"
measures = "blood_pressure"
topic = "k9/cuff/vitals"
interval_seconds = 30
start_offset_seconds = 7
"#;

/// BLE devices played inside the gateway. A fixed start and seed make every incarnation replay
/// the same measurements and stored records (same sequence numbers, same device times), the
/// way a real meter still holds its records when the hub loses power. The meter keeps its
/// measurements as records (RACP) and drops its link every 30 s so the gateway fetches them.
/// The heart-rate strap sends no timestamp: its readings are dated (and identified) by the
/// gateway's receipt, so they are new in every incarnation and the BLE stream keeps growing.
const BLE_SCENARIO: &str = r#"
[scenario]
name = "kill9-ble"
seed = 92
duration_seconds = 86400
start = "2026-11-23T07:30:00Z"

[[devices]]
name = "cuff"
transport = "ble"
profile = "blood_pressure"
address = "C0:FF:EE:10:00:01"
interval_seconds = 20

[[devices]]
name = "strap"
transport = "ble"
profile = "heart_rate"
address = "C0:FF:EE:0D:00:01"
interval_seconds = 30

[[devices]]
name = "meter"
transport = "ble"
profile = "glucose"
address = "C0:FF:EE:08:00:01"
interval_seconds = 20
start_offset_seconds = 10

[[devices.faults]]
at_seconds = 0
kind = "stored_records"
count = 5

[[devices.faults]]
at_seconds = 25
kind = "disconnect"
duration_seconds = 3

[[devices.faults]]
at_seconds = 55
kind = "disconnect"
duration_seconds = 3

[[devices.faults]]
at_seconds = 85
kind = "disconnect"
duration_seconds = 3

[[devices.faults]]
at_seconds = 115
kind = "disconnect"
duration_seconds = 3

[[devices.faults]]
at_seconds = 145
kind = "disconnect"
duration_seconds = 3

[[devices.faults]]
at_seconds = 175
kind = "disconnect"
duration_seconds = 3

[[devices.faults]]
at_seconds = 235
kind = "disconnect"
duration_seconds = 3

[[devices.faults]]
at_seconds = 295
kind = "disconnect"
duration_seconds = 3

[[devices.faults]]
at_seconds = 355
kind = "disconnect"
duration_seconds = 3

[[devices.faults]]
at_seconds = 415
kind = "disconnect"
duration_seconds = 3

[[devices.faults]]
at_seconds = 535
kind = "disconnect"
duration_seconds = 3
"#;

/// For the drain: no device of the configuration is in range any more.
const IDLE_SCENARIO: &str = r#"
[scenario]
name = "kill9-idle"
duration_seconds = 86400

[[devices]]
name = "elsewhere"
transport = "ble"
profile = "thermometer"
address = "C0:FF:EE:09:00:09"
interval_seconds = 86400
start_offset_seconds = 86000
"#;

#[test]
fn kill9_twenty_times_loses_and_duplicates_nothing() {
    kill9(20);
}

#[test]
#[ignore = "long version (200 kills, several minutes): cargo test --test reliability_kill9 -- --ignored"]
fn kill9_two_hundred_times_loses_and_duplicates_nothing() {
    kill9(200);
}

/// The broker's copy of every message it accepted on the devices' topics, with when the
/// witness first saw it (ms since the rig's epoch, the time base of its `gateway.log`).
type Witnessed = Arc<Mutex<BTreeMap<(String, Vec<u8>), u128>>>;

fn kill9(kills: u32) {
    let seed = seed_from_env("KILL9_SEED");
    let mut rng = SeededRng::new(seed);
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    vectorcare_gateway::crypto::install_providers();

    let broker = Mosquitto::start("listener {port} 127.0.0.1\nallow_anonymous true\n");
    let keys = tempfile::tempdir().expect("tempdir");
    let key = generate_into_dir(keys.path(), SigningAlg::ES384).expect("keygen");
    let jwks = serde_json::from_slice(&std::fs::read(&key.jwks_path).expect("jwks")).expect("jwks");
    let peers = NodePeers::start(&PeerOptions::new(CLIENT_ID, jwks));

    let mut spec = GatewaySpec::new(&peers.fhir_base, CLIENT_ID, &key, "ES384");
    spec.extra_upload = "max_bundle_entries = 8\n".into(); // Medplum's transaction limit
    spec.mqtt = Some(MqttSourceSpec {
        port: broker.port,
        client_id: "vectorcare-kill9".into(),
        filter: TOPIC_FILTER.into(),
        format: "vitals".into(),
        device_id: "mqtt:{1}".into(),
    });
    spec.ble_devices = vec![
        BleDeviceSpec {
            address: CUFF.into(),
            delete_after_upload: false,
        },
        BleDeviceSpec {
            address: METER.into(),
            delete_after_upload: true,
        },
        BleDeviceSpec {
            address: STRAP.into(),
            delete_after_upload: false,
        },
    ];
    // RACP responses (report = op code 1, delete = 2) are logged at debug.
    spec.log_level = "info,vectorcare_gateway::sources::ble::session=debug".into();
    spec.echo_log = std::env::var_os("KILL9_ECHO_LOG").is_some();
    let mut gw = GatewayProcess::new(spec);
    let scenario = |name: &str, text: &str| {
        let path = gw.dir().join(name);
        std::fs::write(&path, text).expect("write scenario");
        path
    };
    let ble_scenario = scenario("ble.toml", BLE_SCENARIO);
    let idle_scenario = scenario("idle.toml", IDLE_SCENARIO);
    let mqtt_scenario = scenario("mqtt.toml", MQTT_SCENARIO);
    gw.spec.simulate = Some((ble_scenario, 60.0));

    // The gateway's persistent session must exist before anything is published, and so must
    // the witness's.
    gw.start();
    wait_for_log(&mut gw, "mqtt connected");
    let witnessed: Witnessed = Arc::default();
    tokio.block_on(witness(&tokio, broker.port, witnessed.clone(), gw.epoch()));
    let mut publisher = Command::new(gateway_binary())
        .args(["simulate", "--scenario"])
        .arg(&mqtt_scenario)
        .arg("--target")
        .arg(format!("mqtt://127.0.0.1:{}", broker.port))
        .args(["--speed", "20", "--loop"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the MQTT publisher");

    let started = Instant::now();
    for kill in 1..=kills {
        std::thread::sleep(
            rng.duration_between(Duration::from_millis(300), Duration::from_millis(2500)),
        );
        assert!(
            gw.is_running(),
            "the gateway died by itself before kill {kill}:\n{}",
            gw.log().join("\n")
        );
        gw.kill(libc::SIGKILL);
        // Sometimes straight back, sometimes after the broker has queued a few messages.
        std::thread::sleep(rng.duration_between(Duration::ZERO, Duration::from_millis(800)));
        gw.start();
    }
    let kill_phase = started.elapsed();

    // Stop the sources: the publisher (it prints the PUBACKs it got), then the BLE devices
    // (the next incarnation runs with none of them in range).
    let published_acked = stop_publisher(&mut publisher);
    gw.kill(libc::SIGKILL);
    gw.spec.simulate = Some((idle_scenario, 1.0));
    gw.start();

    // The MQTT identifiers the server must hold, from the broker's copies.
    let config = vectorcare_gateway::config::load(&gw.config_path, std::iter::empty())
        .expect("the rig's config is valid");
    let witnessed: Vec<((String, Vec<u8>), u128)> = witnessed
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let expected_mqtt = mqtt_identifiers(&config, &witnessed);

    // Drain: the queue empty and every witnessed message on the server (bounded wait).
    let token = tokio.block_on(token(&config));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut observations;
    loop {
        observations = tokio.block_on(all_observations(&peers.fhir_base, &token));
        let held: BTreeSet<&str> = observations.iter().map(|o| o.identifier.as_str()).collect();
        let depth = gw.status()["queue"]["depth"].as_u64().unwrap_or(u64::MAX);
        let mqtt_missing = expected_mqtt
            .keys()
            .filter(|i| !held.contains(i.as_str()))
            .count();
        if (depth == 0 && mqtt_missing == 0) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = gw.status();
    let exit = gw.stop();
    assert!(
        exit.success(),
        "graceful stop: {exit:?}\n{}",
        gw.log().join("\n")
    );
    let queue = gw.queue_stats();

    // Counts.
    let mut per_identifier: HashMap<&str, u32> = HashMap::new();
    for o in &observations {
        *per_identifier.entry(o.identifier.as_str()).or_default() += 1;
    }
    let duplicates: u32 = per_identifier.values().map(|n| n - 1).sum();
    let mqtt_missing: Vec<(&String, &u128)> = expected_mqtt
        .iter()
        .filter(|(i, _)| !per_identifier.contains_key(i.as_str()))
        .collect();
    let confirmed = confirmed_progress(&gw, METER);
    let glucose = glucose_sequences(&observations);
    let racp_missing: Vec<u32> = (1..=confirmed.unwrap_or(0))
        .filter(|s| !glucose.contains_key(s))
        .collect();
    let ble_observations = observations.iter().filter(|o| o.ble).count();
    let racp_deletes = std::fs::read_to_string(gw.dir().join("gateway.log"))
        .expect("gateway.log")
        .lines()
        .filter(|l| l.contains("request_op_code=2 code=Success"))
        .count();
    eprintln!(
        "kill9: seed {seed}, {kills} SIGKILLs in {:.1} s ({} incarnations)",
        kill_phase.as_secs_f64(),
        gw.starts
    );
    eprintln!(
        "kill9: MQTT published+PUBACKed {published_acked}, accepted by the broker {} \
         ({} readings); BLE Observations on server {ble_observations} (glucose records: {}, \
         confirmed up to sequence {confirmed:?}, RACP deletes done by the meter: {racp_deletes})",
        witnessed.len(),
        expected_mqtt.len(),
        glucose.len()
    );
    eprintln!(
        "kill9: Observations on server {}, distinct identifiers {}, duplicates {duplicates}, \
         missing MQTT {}, missing deleted-record {}; queue after drain {queue}; \
         uploader at the end {}",
        observations.len(),
        per_identifier.len(),
        mqtt_missing.len(),
        racp_missing.len(),
        status["upload"]
    );

    if duplicates > 0 || !mqtt_missing.is_empty() || !racp_missing.is_empty() {
        eprintln!(
            "kill9: FAILED: config, state and every incarnation's log (gateway.log) kept in {}",
            gw.keep_files().display()
        );
    }
    assert_eq!(
        duplicates, 0,
        "an identifier is held by several Observations"
    );
    assert!(
        mqtt_missing.is_empty(),
        "broker-acknowledged MQTT readings missing on the server (identifier, witnessed at ms): \
         {mqtt_missing:?}"
    );
    assert!(
        racp_missing.is_empty(),
        "stored records the meter may have deleted are not on the server: {racp_missing:?}"
    );
    // The premise of the record check: a sequence number is one record in every incarnation.
    for (sequence, identifiers) in &glucose {
        assert_eq!(
            identifiers.len(),
            1,
            "glucose record {sequence} has several identities: {identifiers:?}"
        );
    }
    assert_eq!(queue["depth"], 0, "queue not drained: {queue}");
    assert_eq!(queue["dead_letters"], 0, "dead letters: {queue}");
    assert_eq!(queue["quarantined"], 0, "quarantined records: {queue}");
    // The test is only meaningful if the stream really flowed and the meter really confirmed.
    assert!(
        published_acked > u64::from(kills),
        "too few MQTT messages: {published_acked}"
    );
    assert!(
        witnessed.len() as u64 >= published_acked,
        "the witness saw fewer messages ({}) than the publisher got PUBACKs for ({published_acked})",
        witnessed.len()
    );
    assert!(ble_observations > 0, "no BLE reading reached the server");
    assert!(
        confirmed.is_some_and(|c| c >= 5),
        "the meter's stored records were never confirmed: {confirmed:?}"
    );
    assert!(racp_deletes > 0, "the meter never deleted a record");
}

fn wait_for_log(gw: &mut GatewayProcess, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gw.log().iter().any(|l| l.contains(needle)) {
        assert!(
            gw.is_running(),
            "the gateway exited:\n{}",
            gw.log().join("\n")
        );
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            gw.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A subscriber with its own persistent session on the devices' topics: after its SUBACK,
/// every message the broker accepts there is queued for it, whatever the gateway does.
async fn witness(tokio: &tokio::runtime::Runtime, port: u16, seen: Witnessed, epoch: Instant) {
    let mut opts = MqttOptions::new("kill9-witness", "127.0.0.1", port);
    opts.set_clean_session(false);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 64);
    client
        .subscribe(TOPIC_FILTER, QoS::AtLeastOnce)
        .await
        .expect("subscribe request");
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    tokio.spawn(async move {
        let _client = client; // keeps the request channel open
        let mut subscribed = Some(subscribed_tx);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    seen.lock()
                        .expect("lock")
                        .entry((p.topic.clone(), p.payload.to_vec()))
                        .or_insert_with(|| epoch.elapsed().as_millis());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
        .await
        .expect("witness SUBACK")
        .expect("witness task");
}

/// SIGTERM to the publisher; returns the PUBACK count it prints on the way out.
fn stop_publisher(publisher: &mut Child) -> u64 {
    // SAFETY: signalling our own child by its PID.
    unsafe { libc::kill(publisher.id() as libc::pid_t, libc::SIGTERM) };
    let mut stdout = String::new();
    publisher
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("publisher stdout");
    let exit = publisher.wait().expect("wait publisher");
    assert!(exit.success(), "publisher: {exit:?}\n{stdout}");
    stdout
        .lines()
        .find_map(|l| l.strip_suffix(" message(s) acknowledged by the broker"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no acknowledged count in the publisher's output:\n{stdout}"))
}

/// The Observation identifiers the gateway gives these MQTT messages (its own decoder and
/// mapper with its own configuration), with when each message was witnessed.
fn mqtt_identifiers(
    config: &vectorcare_gateway::config::Config,
    messages: &[((String, Vec<u8>), u128)],
) -> BTreeMap<String, u128> {
    let mqtt = config.sources.mqtt.as_ref().expect("mqtt configured");
    let context = vectorcare_gateway::runtime::build::map_context(config);
    let mut identifiers = BTreeMap::new();
    for ((topic, payload), seen_ms) in messages {
        let (topic_cfg, device_id) = mqtt
            .topics
            .iter()
            .find_map(|t| t.device_for(topic).map(|d| (t, d)))
            .expect("a witnessed topic matches the gateway's filter");
        let ctx = PayloadContext {
            device: DeviceIdentity {
                source: SourceKind::Mqtt,
                address: device_id,
                system_id: None,
                manufacturer: None,
                model: None,
                serial_number: None,
            },
            received_at: time::OffsetDateTime::now_utc(),
            clock: ClockContext {
                device_offset_seconds: None,
                gateway_clock_synchronized: true,
            },
        };
        let readings = decode_payload(topic_cfg.format, payload, &ctx)
            .unwrap_or_else(|e| panic!("the simulator published an invalid payload: {e}"));
        for reading in readings {
            assert!(
                reading.device_time.is_some(),
                "vitals payloads carry their time (identifier independent of arrival)"
            );
            let unit = vectorcare_gateway::fhir::map_reading(&reading, &context).expect("map");
            identifiers.insert(unit.identifier().value.to_owned(), *seen_ms);
        }
    }
    identifiers
}

/// A bearer token for reads, from the gateway's own SMART client and key.
async fn token(config: &vectorcare_gateway::config::Config) -> String {
    let upload = config.upload.as_ref().expect("upload configured");
    let (_, auth) = vectorcare_gateway::upload::build::authorizer(
        upload,
        Arc::new(SimulatedClock::new(0, true)),
    )
    .expect("authorizer");
    auth.token().await.expect("token").access_token.clone()
}

/// What the checks need of one Observation on the server.
#[derive(Debug)]
struct ServerObservation {
    identifier: String,
    ble: bool,
    /// `device-record-sequence` component (stored records).
    record_sequence: Option<u32>,
    glucose: bool,
}

/// Every Observation on the server. Medplum's in-memory repository answers a search with
/// `total` and the `_offset`/`_count` slice of its insertion order, without `next` links, so
/// the pages are walked by offset until `total` is reached.
async fn all_observations(fhir_base: &str, token: &str) -> Vec<ServerObservation> {
    const PAGE: usize = 500;
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    loop {
        let url = format!(
            "{fhir_base}/Observation?_count={PAGE}&_offset={}",
            out.len()
        );
        let bundle: Value = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("searchset");
        assert_eq!(bundle["resourceType"], "Bundle", "{bundle}");
        let total = bundle["total"].as_u64().expect("searchset total") as usize;
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        for entry in &entries {
            out.push(server_observation(&entry["resource"]));
        }
        if out.len() >= total {
            assert_eq!(out.len(), total, "paging overshot the total");
            return out;
        }
        assert!(
            !entries.is_empty(),
            "empty page at offset {} of {total}",
            out.len()
        );
    }
}

fn server_observation(o: &Value) -> ServerObservation {
    let identifier = o["identifier"][0]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("Observation without identifier: {o}"))
        .to_owned();
    let record_sequence = o["component"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["code"]["text"] == "device-record-sequence")
        .and_then(|c| {
            c["valueInteger"]
                .as_u64()
                .or_else(|| c["valueString"].as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|s| u32::try_from(s).ok());
    let text = o.to_string();
    ServerObservation {
        ble: text.contains("eui-48/bluetooth") || text.contains("C0-FF-EE"),
        glucose: text.contains("Glucose") || text.contains("glucose"),
        identifier,
        record_sequence,
    }
}

/// Glucose records on the server: sequence → the identifiers carrying it.
fn glucose_sequences(observations: &[ServerObservation]) -> BTreeMap<u32, BTreeSet<String>> {
    let mut out: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for o in observations.iter().filter(|o| o.glucose) {
        if let Some(seq) = o.record_sequence {
            out.entry(seq).or_default().insert(o.identifier.clone());
        }
    }
    out
}

/// The meter's persisted server-confirmed sequence (`<state>/ble-progress/`): the bound of
/// every RACP delete the gateway sends.
fn confirmed_progress(gw: &GatewayProcess, address: &str) -> Option<u32> {
    let dir = gw.state_dir.join("ble-progress");
    let wanted: String = address.chars().filter(char::is_ascii_hexdigit).collect();
    std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            let name: String = e
                .file_name()
                .to_string_lossy()
                .chars()
                .filter(char::is_ascii_hexdigit)
                .collect();
            name.eq_ignore_ascii_case(&wanted)
        })
        .and_then(|e| std::fs::read_to_string(e.path()).ok())
        .and_then(|s| s.trim().parse().ok())
}
