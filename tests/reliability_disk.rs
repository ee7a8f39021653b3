//! Full disk at gateway level (issue #9): a gateway PROCESS whose state directory is on a tiny
//! tmpfs this test mounts, fed by a REAL mosquitto broker (QoS 1, persistent session) and
//! uploading to the real peers. The file system is filled up:
//! - the gateway keeps running (process alive, `/status` answers and shows the queue full);
//! - it refuses new readings visibly: it stops acknowledging MQTT messages, which stay at the
//!   broker (`$SYS/broker/store/messages/count`), and its stored-readings count stops;
//! - when the filler file is deleted it recovers by itself: the broker's held messages come in;
//! - afterwards every message is on the FHIR server exactly once, and the stopped gateway's
//!   queue opens clean (`queue stats`: nothing quarantined, nothing waiting, no dead letters).
//!
//! Needs root (CAP_SYS_ADMIN) for the tmpfs mount like tests/queue_enospc.rs; set
//! `VECTORCARE_SKIP_MOUNT_TESTS=1` to skip explicitly. Needs mosquitto
//! (scripts/install/mosquitto.sh) and the Node peers (scripts/install/fhir-server.sh).
//!
//!   cargo test --test reliability_disk -- --nocapture

#[allow(dead_code)]
#[path = "support/fault_proxy.rs"]
mod fault_proxy;
#[allow(dead_code)]
#[path = "../src/sources/mqtt/mosquitto.rs"]
mod mosquitto;
#[allow(dead_code)]
#[path = "support/netfault_gateway.rs"]
mod netfault_gateway;
#[allow(dead_code)]
#[path = "support/node_peers.rs"]
mod node_peers;
#[path = "support/tmpfs.rs"]
mod tmpfs;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use netfault_gateway::{Gateway, GatewaySpec, Servers, queue_stats, readings_stored, wait_for};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

const STORE_COUNT_TOPIC: &str = "$SYS/broker/store/messages/count";

/// A QoS 1 publisher that also watches the broker's stored-message count.
struct Publisher {
    client: Client,
    store_count: Arc<AtomicI64>,
    base_time: time::OffsetDateTime,
    published: u64,
}

impl Publisher {
    fn connect(port: u16) -> Self {
        let mut options = MqttOptions::new("disk-test-publisher", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut connection) = Client::new(options, 1000);
        let store_count = Arc::new(AtomicI64::new(-1));
        let seen = store_count.clone();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == STORE_COUNT_TOPIC => {
                        if let Some(n) = std::str::from_utf8(&p.payload)
                            .ok()
                            .and_then(|t| t.trim().parse().ok())
                        {
                            seen.store(n, Ordering::SeqCst);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        client
            .subscribe(STORE_COUNT_TOPIC, QoS::AtMostOnce)
            .expect("subscribe $SYS");
        Self {
            client,
            store_count,
            // Readings in the past (never in the future), one second apart: distinct identifiers.
            base_time: time::OffsetDateTime::now_utc() - time::Duration::hours(2),
            published: 0,
        }
    }

    /// Publishes `n` heart-rate readings at QoS 1, `every` apart.
    fn publish(&mut self, n: u64, every: Duration) {
        for _ in 0..n {
            let i = self.published;
            let at = self.base_time + time::Duration::seconds(i as i64);
            let payload = format!(
                r#"{{"kind":"heart_rate","value":{},"unit":"/min","time":"{}"}}"#,
                60 + i % 40,
                at.format(&time::format_description::well_known::Rfc3339)
                    .expect("rfc3339")
            );
            self.client
                .publish("home/strap1/vitals", QoS::AtLeastOnce, false, payload)
                .expect("publish");
            self.published += 1;
            std::thread::sleep(every);
        }
    }

    fn store_count(&self) -> i64 {
        self.store_count.load(Ordering::SeqCst)
    }
}

/// Writes zeros into `path` until the file system is full.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    while let Ok(n) = file.write(&chunk) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    // The last partial blocks.
    while file.write(&chunk[..512]).is_ok_and(|n| n > 0) {
        written += 512;
    }
    let _ = file.sync_all();
    written
}

#[test]
fn full_disk_refuses_visibly_and_recovers_by_itself() {
    let Some(mnt) = tmpfs::TmpfsMount::new("16m") else {
        return;
    };
    let filler = mnt.path().join("filler");

    let broker = mosquitto::Mosquitto::start(
        "listener {port} 127.0.0.1\nallow_anonymous true\nsys_interval 1\n",
    );
    let servers = Servers::start(300);
    let mut spec = GatewaySpec::new("disk-hub", String::new(), 0);
    spec.scenario = None;
    spec.state_dir = Some(mnt.path().join("state"));
    spec.upload_extra = "backoff_base_ms = 500\nbackoff_cap_seconds = 4\n".into();
    let side = tempfile::tempdir().expect("tempdir");
    let rejects = side.path().join("mqtt-rejects.jsonl");
    spec.extra_sections = format!(
        "[sources.mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"disk-hub\"\n\
         reconnect_initial_ms = 200\nreconnect_max_ms = 1000\nreject_log = \"{}\"\n\n\
         [[sources.mqtt.topics]]\nfilter = \"home/+/vitals\"\nformat = \"vitals\"\n\
         device_id = \"mqtt:{{1}}\"\n",
        broker.port,
        rejects.display()
    );
    let mut gateway = Gateway::spawn(&spec, &servers);
    gateway.wait_ready(Duration::from_secs(60));
    let mut publisher = Publisher::connect(broker.port);
    let on_server = || {
        servers
            .counts()
            .by_subject
            .get("Patient/disk-hub")
            .copied()
            .unwrap_or(0)
    };

    // 1. Normal operation.
    publisher.publish(30, Duration::from_millis(50));
    let ok = wait_for(Duration::from_secs(60), || {
        (on_server() == 30).then_some(())
    });
    assert!(
        ok.is_some(),
        "the first 30 readings did not arrive; log:\n{}",
        gateway.log_tail()
    );

    // The broker's store also holds its own retained $SYS messages: measure that baseline
    // (published every second) once the gateway acknowledged everything.
    std::thread::sleep(Duration::from_secs(3));
    let baseline = publisher.store_count();

    // 2. The disk fills up while messages keep coming.
    let filled = fill(&filler);
    let stored_at_fill = readings_stored(&gateway.status().expect("status"));
    publisher.publish(60, Duration::from_millis(100));
    let full = wait_for(Duration::from_secs(30), || {
        let status = gateway.status()?;
        status["queue"]["full"].as_str().map(str::to_owned)
    });
    std::thread::sleep(Duration::from_secs(3));
    let Some(status_full) = gateway.status() else {
        panic!(
            "/status does not answer while the disk is full (alive: {}); log:\n{}",
            gateway.alive(),
            gateway.log_tail()
        );
    };
    let stored_full = readings_stored(&status_full);
    let held_at_broker = publisher.store_count() - baseline;
    let pending = publisher.published - stored_full;
    eprintln!(
        "disk full (filler {} KiB): /status queue.full = {full:?}; readings stored {stored_at_fill} at fill, \
         {stored_full} after 60 more were published; broker holds {held_at_broker} message(s) \
         more than before (baseline {baseline}), {pending} not acknowledged by the gateway",
        filled / 1024
    );
    assert!(
        gateway.alive(),
        "the gateway died on a full disk:\n{}",
        gateway.log_tail()
    );
    assert!(
        full.is_some(),
        "/status does not show the queue full: {}",
        status_full["queue"]
    );
    assert!(
        stored_full < publisher.published,
        "the gateway kept storing on a full disk ({stored_full} of {})",
        publisher.published
    );
    assert!(
        baseline >= 0 && held_at_broker >= pending as i64,
        "the unacknowledged messages must wait at the broker: store count {held_at_broker}, \
         pending {pending}"
    );
    assert_eq!(
        status_full["healthy"], true,
        "a full disk is not a dead pipeline: {}",
        status_full["failing"]
    );

    // 3. Space returns: the gateway recovers by itself.
    std::fs::remove_file(&filler).expect("free the filler");
    publisher.publish(10, Duration::from_millis(100));
    let total = publisher.published;
    let recovered = wait_for(Duration::from_secs(120), || {
        let status = gateway.status()?;
        (readings_stored(&status) == total
            && status["queue"]["depth"].as_u64() == Some(0)
            && status["queue"]["full"].is_null()
            && on_server() == total)
            .then_some(status)
    });
    let counts = servers.counts();
    eprintln!(
        "after freeing space: published {total}, on the server {} (identifiers {}, duplicated {}); \
         broker holds {} message(s) more than before the disk filled",
        on_server(),
        counts.identifiers,
        counts.duplicated,
        publisher.store_count() - baseline
    );
    let Some(recovered) = recovered else {
        panic!(
            "the gateway did not recover: status {:?}\nlog:\n{}",
            gateway.status().map(|s| (
                s["readings"].clone(),
                s["queue"].clone(),
                s["upload"].clone()
            )),
            gateway.log_tail()
        );
    };
    assert_eq!(counts.duplicated, 0, "{counts:?}");
    assert_eq!(counts.observations, counts.identifiers);
    assert_eq!(recovered["upload"]["dead_letters"].as_u64(), Some(0));
    assert_eq!(gateway.terminate(Duration::from_secs(20)), Some(0));

    // 4. The queue on the (once full) file system opens clean.
    let stats = queue_stats(&gateway.state_dir);
    eprintln!("queue stats after stop: {stats}");
    assert_eq!(stats["quarantined"], 0, "{stats}");
    assert_eq!(stats["depth"], 0, "{stats}");
    assert_eq!(stats["dead_letters"], 0, "{stats}");
    assert!(stats["full"].is_null(), "{stats}");
}
