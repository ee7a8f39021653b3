//! MQTT source tests against a REAL mosquitto (see `mosquitto.rs`) and the embedded rumqttd.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{oneshot, watch};
use vectorcare_hal::clock::SimulatedClock;

use super::mosquitto::{Mosquitto, free_port};
use super::*;
use crate::config::Problems;
use crate::reading::{Decimal, Kind, MeasuredValue, Reading};
use crate::sources::test_sink::{self, Answer};

const TOPIC: &str = "home/alice/vitals";

fn config(port: u16, extra: &str) -> MqttConfig {
    let text = format!(
        "port = {port}\nclient_id = \"hub-test\"\nreconnect_initial_ms = 50\nreconnect_max_ms = 500\nkeep_alive_seconds = 5\n{extra}\n\
         [[topics]]\nfilter = \"home/+/vitals\"\nformat = \"vitals\"\ndevice_id = \"mqtt:{{1}}\"\npatient = \"Patient/1\"\n"
    );
    let raw: RawMqttConfig = toml::from_str(&text).expect("toml");
    let mut problems = Problems::new();
    let cfg = raw.validate("sources.mqtt", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    cfg.expect("valid")
}

fn clock() -> Arc<SimulatedClock> {
    Arc::new(SimulatedClock::new(0, true))
}

async fn wait_status(
    rx: &mut watch::Receiver<MqttStatus>,
    what: &str,
    f: impl Fn(&MqttStatus) -> bool,
) -> MqttStatus {
    let waited = tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|s| f(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match waited {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => panic!("source ended while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}: {:?}", rx.borrow()),
    }
}

fn hr(value: u32) -> Vec<u8> {
    format!(r#"{{"kind":"heart_rate","value":{value},"time":"2026-11-28T10:00:00Z"}}"#).into_bytes()
}

fn hr_value(r: &Reading) -> Decimal {
    assert_eq!(r.kind, Kind::HeartRate);
    match r.value.as_ref().map(|q| q.value) {
        Some(MeasuredValue::Number(d)) => d,
        other => panic!("{other:?}"),
    }
}

async fn publish(port: u16, creds: Option<(&str, &str)>, payloads: &[Vec<u8>]) {
    simulated::publish_payloads(port, "test-device", creds, TOPIC, payloads)
        .await
        .expect("device publishes");
}

/// Subscribes an observer and returns the first message on `topic` (retained ones included).
async fn first_message(port: u16, topic: &str) -> Vec<u8> {
    let (client, mut el) = AsyncClient::new(
        MqttOptions::new(format!("obs-{}", free_port()), "127.0.0.1", port),
        10,
    );
    client
        .subscribe(topic, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = el.poll().await {
                return p.payload.to_vec();
            }
        }
    })
    .await
    .expect("message on observed topic");
    let _ = client.try_disconnect();
    got
}

#[tokio::test]
async fn plain_mosquitto_stores_acks_rejects_and_reports_status() {
    let broker = Mosquitto::start("listener {port} 127.0.0.1\nallow_anonymous true\n");
    let reject_log = broker.dir.path().join("rejects.jsonl");
    let cfg = config(
        broker.port,
        &format!(
            "reject_log = {:?}\nstatus = {{ prefix = \"vc/hub\", health_interval_seconds = 1 }}",
            reject_log.display().to_string()
        ),
    );
    let (health_tx, health_rx) = watch::channel(HealthSnapshot {
        queue_depth: 3,
        last_upload_ok_unix: Some(1_764_000_000),
        devices_connected: 2,
    });
    let source = MqttSource::new(cfg, clock(), Some(health_rx));
    let mut status = source.status();
    let (sink, _script, mut stored) = test_sink::sink();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(source.run(sink, async move {
        let _ = stop_rx.await;
    }));
    wait_status(&mut status, "connected", |s| s.connected).await;
    assert_eq!(first_message(broker.port, "vc/hub/status").await, b"online");
    let health: serde_json::Value =
        serde_json::from_slice(&first_message(broker.port, "vc/hub/health").await)
            .expect("health json");
    assert_eq!(
        (
            health["queue_depth"].as_u64(),
            health["devices_connected"].as_u64()
        ),
        (Some(3), Some(2))
    );
    drop(health_tx);

    publish(
        broker.port,
        None,
        &[
            hr(71),
            b"{\"kind\":\"heart_rate\"}".to_vec(),
            b"\xff not json".to_vec(),
            hr(72),
        ],
    )
    .await;
    let r = test_sink::next(&mut stored, 10).await;
    assert_eq!(hr_value(&r), Decimal::new(71, 0));
    assert_eq!(r.device.address, "mqtt:alice");
    assert_eq!(
        hr_value(&test_sink::next(&mut stored, 10).await),
        Decimal::new(72, 0)
    );
    let s = wait_status(&mut status, "two rejects", |s| s.rejected_messages == 2).await;
    assert_eq!(s.stored_messages, 2);
    let log = std::fs::read_to_string(&reject_log).expect("reject log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["reason"], "value: missing");
    assert_eq!(lines[0]["topic"], TOPIC);
    assert!(
        lines[1]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("not valid JSON"))
    );

    stop_tx.send(()).expect("stop");
    task.await.expect("joins").expect("clean exit");
    assert_eq!(
        first_message(broker.port, "vc/hub/status").await,
        b"offline"
    );
}

fn tls_material(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let server_key = KeyPair::generate().expect("key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("params")
        .signed_by(&server_key, &ca)
        .expect("server cert");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), server.pem()).expect("write");
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("write");
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(dir.join("passwd"))
        .args(["gateway", "s3cret-pass"])
        .status()
        .expect("mosquitto_passwd (installed with mosquitto)");
    assert!(status.success());
    std::fs::write(dir.join("gw-password"), "s3cret-pass\n").expect("write");
    std::fs::write(dir.join("bad-password"), "wrong\n").expect("write");
}

#[tokio::test]
async fn tls_and_password_work_and_a_wrong_password_is_refused() {
    let tls_port = free_port();
    let broker = Mosquitto::start_prepared(
        &format!(
            "per_listener_settings false\nallow_anonymous false\npassword_file {{dir}}/passwd\n\
         listener {{port}} 127.0.0.1\n\
         listener {tls_port} 127.0.0.1\ncafile {{dir}}/ca.pem\ncertfile {{dir}}/server.pem\nkeyfile {{dir}}/server.key\n"
        ),
        tls_material,
    );
    let dir = broker.dir.path().display().to_string();
    let tls = format!("tls = {{ ca_file = \"{dir}/ca.pem\" }}\nusername = \"gateway\"\n");

    let wrong = config(
        tls_port,
        &format!("{tls}password_file = \"{dir}/bad-password\""),
    );
    let wrong_source = MqttSource::new(wrong, clock(), None);
    let mut wrong_status = wrong_source.status();
    let (sink, _s, _stored) = test_sink::sink();
    let wrong_task = tokio::spawn(wrong_source.run(sink, std::future::pending()));
    let s = wait_status(&mut wrong_status, "refusal", |s| s.last_error.is_some()).await;
    assert!(!s.connected && s.connects == 0);
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.to_lowercase().contains("refused")),
        "{s:?}"
    );
    wrong_task.abort();

    let right = config(
        tls_port,
        &format!("{tls}password_file = \"{dir}/gw-password\""),
    );
    let source = MqttSource::new(right, clock(), None);
    let mut status = source.status();
    let (sink, _s, mut stored) = test_sink::sink();
    let task = tokio::spawn(source.run(sink, std::future::pending()));
    wait_status(&mut status, "TLS connect", |s| s.connected).await;
    publish(broker.port, Some(("gateway", "s3cret-pass")), &[hr(64)]).await;
    assert_eq!(
        hr_value(&test_sink::next(&mut stored, 10).await),
        Decimal::new(64, 0)
    );
    task.abort();
}

#[tokio::test]
async fn gateway_killed_before_enqueue_gets_the_reading_exactly_once() {
    let broker = Mosquitto::start("listener {port} 127.0.0.1\nallow_anonymous true\n");
    let first = MqttSource::new(config(broker.port, ""), clock(), None);
    let mut status = first.status();
    let (sink, script, mut never) = test_sink::sink();
    script.set(Answer::Hang); // receives, never becomes durable: the crash window
    let task = tokio::spawn(first.run(sink, std::future::pending()));
    wait_status(&mut status, "connected", |s| s.connected).await;
    publish(broker.port, None, &[hr(88)]).await;
    wait_status(&mut status, "received", |s| s.received == 1).await;
    task.abort(); // the gateway dies; no PUBACK was sent
    let _ = task.await;
    assert!(never.try_recv().is_err());

    let second = MqttSource::new(config(broker.port, ""), clock(), None);
    let (sink, _s, mut stored) = test_sink::sink();
    let task = tokio::spawn(second.run(sink, std::future::pending()));
    let r = test_sink::next(&mut stored, 15).await;
    assert_eq!(hr_value(&r), Decimal::new(88, 0));
    // Exactly once: nothing else arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(700), stored.recv())
            .await
            .is_err()
    );
    task.abort();
}

#[tokio::test]
async fn broker_restart_reconnects_and_loses_nothing() {
    let mut broker = Mosquitto::start("listener {port} 127.0.0.1\nallow_anonymous true\n");
    let source = MqttSource::new(config(broker.port, ""), clock(), None);
    let mut status = source.status();
    let (sink, _s, mut stored) = test_sink::sink();
    let task = tokio::spawn(source.run(sink, std::future::pending()));
    wait_status(&mut status, "connected", |s| s.connected).await;
    publish(broker.port, None, &[hr(60)]).await;
    assert_eq!(
        hr_value(&test_sink::next(&mut stored, 10).await),
        Decimal::new(60, 0)
    );

    broker.stop();
    wait_status(&mut status, "disconnect seen", |s| !s.connected).await;
    broker.restart();
    // Published before the gateway is back: kept for its persistent session.
    publish(broker.port, None, &[hr(61), hr(62)]).await;
    let got = [
        hr_value(&test_sink::next(&mut stored, 15).await),
        hr_value(&test_sink::next(&mut stored, 15).await),
    ];
    assert_eq!(got, [Decimal::new(61, 0), Decimal::new(62, 0)]);
    let s = wait_status(&mut status, "reconnected", |s| {
        s.connected && s.connects >= 2
    })
    .await;
    assert_eq!(s.stored_messages, 3);
    task.abort();
}

#[cfg(feature = "demo")]
#[tokio::test]
async fn embedded_broker_demo_path_and_queue_full_holds_the_ack() {
    let broker = embedded_broker::start().expect("embedded broker");
    let source = MqttSource::new(config(broker.port, ""), clock(), None);
    let mut status = source.status();
    let (sink, script, mut stored) = test_sink::sink();
    script.set(Answer::Refuse(crate::sources::IngestError::QueueFull(
        "test".into(),
    )));
    let task = tokio::spawn(source.run(sink, std::future::pending()));
    wait_status(&mut status, "connected", |s| s.connected).await;
    let payloads = simulated::demo_vitals_payloads("2026-11-28T10:00:00Z");
    simulated::publish_payloads(broker.port, "demo-cuff", None, TOPIC, &payloads)
        .await
        .expect("publish");
    wait_status(&mut status, "held while the queue is full", |s| {
        s.held_for_queue >= 2
    })
    .await;
    assert!(stored.try_recv().is_err());
    script.set(Answer::Store);
    let kinds: Vec<Kind> = [
        test_sink::next(&mut stored, 10).await,
        test_sink::next(&mut stored, 10).await,
        test_sink::next(&mut stored, 10).await,
    ]
    .iter()
    .map(|r| r.kind)
    .collect();
    assert_eq!(
        kinds,
        vec![Kind::BloodPressure, Kind::PulseRate, Kind::BodyTemperature]
    );
    wait_status(&mut status, "both messages stored", |s| {
        s.stored_messages == 2
    })
    .await;
    task.abort();
}
