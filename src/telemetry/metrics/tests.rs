use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::*;
use crate::reading::{Decimal, DeviceIdentity, Kind, MeasuredValue, Quantity};

/// A clock the test moves by hand; never synchronised.
#[derive(Debug)]
pub(crate) struct TestClock(AtomicU64);

impl TestClock {
    pub(crate) fn at(unix: u64) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(unix)))
    }
    pub(crate) fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
    }
    fn sync_state(&self) -> SyncState {
        SyncState::Unsynchronized
    }
}

pub(crate) fn ble_reading(address: &str) -> Reading {
    Reading {
        device: DeviceIdentity {
            source: SourceKind::Ble,
            address: address.into(),
            system_id: None,
            manufacturer: None,
            model: None,
            serial_number: None,
        },
        kind: Kind::HeartRate,
        value: Some(Quantity {
            value: MeasuredValue::Number(Decimal::new(72, 0)),
            ucum: "/min".into(),
        }),
        components: Vec::new(),
        device_time: None,
        received_at: time::OffsetDateTime::UNIX_EPOCH,
        clock: Default::default(),
        status: Vec::new(),
        sequence: None,
        user_id: None,
        qualifiers: Default::default(),
    }
}

/// Two BLE devices (the first labelled `first_label`), one serial port, one MQTT topic.
pub(crate) fn telemetry_with_devices(
    clock: Arc<TestClock>,
    show_readings: bool,
    first_label: &str,
) -> Telemetry {
    let devices = vec![
        DeviceSlot {
            label: first_label.into(),
            source: SourceKind::Ble,
            matcher: Matcher::Ble("C0:FF:EE:0D:00:01".into()),
        },
        DeviceSlot {
            label: "sources.ble.devices[1]".into(),
            source: SourceKind::Ble,
            matcher: Matcher::Ble("C0:FF:EE:10:00:01".into()),
        },
        DeviceSlot {
            label: "sources.serial.ports[0]".into(),
            source: SourceKind::Serial,
            matcher: Matcher::Serial {
                index: 0,
                device_id: "serial:oximeter".into(),
            },
        },
        DeviceSlot {
            label: "sources.mqtt.topics[0]".into(),
            source: SourceKind::Mqtt,
            matcher: Matcher::Mqtt(DeviceIdPattern::new("mqtt:{1}")),
        },
    ];
    Telemetry::new(
        TelemetryOptions {
            gateway_id: "hub-0001".into(),
            show_readings,
            devices,
            upload_configured: true,
        },
        clock,
    )
}

fn mqtt_reading(device: &str) -> Reading {
    let mut reading = ble_reading(device);
    reading.device.source = SourceKind::Mqtt;
    reading.kind = Kind::BodyTemperature;
    reading
}

#[test]
fn readings_are_counted_per_source_kind_and_device() {
    let clock = TestClock::at(1_800_000_000);
    let telemetry = telemetry_with_devices(clock.clone(), false, "sources.ble.devices[0]");
    telemetry.stored(&[
        ble_reading("c0:ff:ee:0d:00:01"),
        mqtt_reading("mqtt:cuff-1"),
    ]);
    clock.advance(40);
    telemetry.stored(&[mqtt_reading("mqtt:cuff-2")]);
    telemetry.rejected(&[mqtt_reading("mqtt:cuff-2")], "value 37.2 out of range");
    // Another source's device with the same address does not count for the BLE slot.
    let mut serial = ble_reading("C0:FF:EE:0D:00:01");
    serial.device.source = SourceKind::Serial;
    telemetry.stored(&[serial]);

    let s = telemetry.snapshot();
    let counts: Vec<_> = s
        .readings
        .iter()
        .map(|r| (r.source.as_str(), r.kind.as_str(), r.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("ble", "heart_rate", 1),
            ("mqtt", "body_temperature", 3),
            ("serial", "heart_rate", 1)
        ]
    );
    assert_eq!(
        s.mapping_failures,
        [SourceCount {
            source: "mqtt".into(),
            count: 1
        }]
    );
    let devices: Vec<_> = s
        .devices
        .iter()
        .map(|d| (d.label.as_str(), d.readings, d.last_reading_age_seconds))
        .collect();
    assert_eq!(
        devices,
        [
            ("sources.ble.devices[0]", 1, Some(40)),
            ("sources.ble.devices[1]", 0, None),
            ("sources.serial.ports[0]", 0, None),
            ("sources.mqtt.topics[0]", 2, Some(0)),
        ]
    );
    assert_eq!(
        s.history.readings.iter().sum::<u64>(),
        4,
        "stored readings only"
    );
    assert_eq!(s.recent_errors.len(), 1);
    assert!(
        !s.recent_errors[0].message.contains("37.2"),
        "the mapper's reason may quote a value: {:?}",
        s.recent_errors
    );
}

#[test]
fn status_json_has_no_address_or_value_unless_show_readings() {
    for show in [false, true] {
        let clock = TestClock::at(1_800_000_000);
        let telemetry = telemetry_with_devices(clock, show, "sources.ble.devices[0]");
        telemetry.stored(&[ble_reading("C0:FF:EE:0D:00:01")]);
        let json = serde_json::to_string(&telemetry.snapshot()).expect("JSON");
        assert_eq!(json.contains("C0:FF:EE:0D:00:01"), show, "{json}");
        assert_eq!(json.contains("heart_rate 72 /min"), show, "{json}");
        assert!(
            json.contains("\"show_readings\":")
                && json.contains(&format!("\"show_readings\":{show}"))
        );
    }
}

#[test]
fn status_json_round_trips_and_has_every_section() {
    let clock = TestClock::at(1_800_000_000);
    let telemetry = telemetry_with_devices(clock.clone(), false, "sources.ble.devices[0]");
    telemetry.tasks_started(["ble".to_owned(), "uploader".to_owned()]);
    telemetry.upload_attempt(3);
    telemetry.upload_settled(2, 1, 0);
    telemetry.token_refreshed(Duration::from_secs(300));
    let snapshot = telemetry.snapshot();
    let value = serde_json::to_value(&snapshot).expect("JSON");
    for key in [
        "gateway_id",
        "version",
        "healthy",
        "failing",
        "warnings",
        "tasks",
        "clock",
        "devices",
        "readings",
        "mapping_failures",
        "queue",
        "upload",
        "token",
        "recent_errors",
        "history",
    ] {
        assert!(value.get(key).is_some(), "no `{key}` in {value}");
    }
    assert_eq!(
        value["history"]["readings"].as_array().map(Vec::len),
        Some(24)
    );
    assert_eq!(value["upload"]["successes"], 2);
    assert_eq!(value["upload"]["retries"], 1);
    assert_eq!(value["upload"]["recent"][0]["acked"], 2);
    assert_eq!(value["token"]["valid_for_seconds"], 300);
    assert_eq!(value["clock"]["synchronized"], false);
    let back: Snapshot = serde_json::from_value(value).expect("the JSON reads back");
    assert_eq!(back, snapshot);
    assert!(
        snapshot.warnings.iter().any(|w| w.contains("clock")),
        "{:?}",
        snapshot.warnings
    );
}

#[test]
fn health_follows_task_liveness() {
    let telemetry = telemetry_with_devices(TestClock::at(0), false, "x");
    let s = telemetry.snapshot();
    assert!(!s.healthy, "not started yet");
    telemetry.tasks_started(["ble".to_owned(), "uploader".to_owned()]);
    assert!(telemetry.snapshot().healthy);
    telemetry.task_ended("uploader");
    let s = telemetry.snapshot();
    assert!(!s.healthy);
    assert_eq!(s.failing, ["task `uploader` is not running"]);
    telemetry.tasks_started(["ble".to_owned()]);
    telemetry.stopping();
    assert_eq!(
        telemetry.snapshot().failing,
        ["the gateway is shutting down"]
    );
}

#[test]
fn recent_lists_keep_the_newest_ten() {
    let clock = TestClock::at(1_800_000_000);
    let telemetry = telemetry_with_devices(clock.clone(), false, "x");
    for i in 0..15 {
        clock.advance(1);
        telemetry.upload_failed(1, &format!("HTTP 50{}", i % 10));
    }
    let s = telemetry.snapshot();
    assert_eq!(s.upload.recent.len(), RECENT);
    assert_eq!(s.recent_errors.len(), RECENT);
    assert_eq!(s.upload.recent[0].at_unix, 1_800_000_015, "newest first");
    assert_eq!(s.upload.retries, 15);
}

#[test]
fn mqtt_health_snapshot_reports_last_upload_and_connected_devices() {
    use crate::sources::serial::source::PortStatus;
    let clock = TestClock::at(1_800_000_000);
    let telemetry = telemetry_with_devices(clock.clone(), false, "x");
    assert_eq!(telemetry.sample().devices_connected, 0);
    assert_eq!(telemetry.sample().last_upload_ok_unix, None);
    let port = |state| PortStatus {
        label: "sources.serial.ports[0]".into(),
        state,
        connects: 1,
        lines: 0,
        garbage_frames: 0,
        bad_lines: 0,
        readings_stored: 0,
        readings_rejected: 0,
        readings_throttled: 0,
    };
    let (tx, rx) = watch::channel(vec![port(PortState::Connected)]);
    telemetry.attach_serial(rx);
    telemetry.upload_settled(3, 0, 0);
    clock.advance(20);
    let health = telemetry.sample();
    assert_eq!(health.devices_connected, 1);
    assert_eq!(health.last_upload_ok_unix, Some(1_800_000_000));
    tx.send_replace(vec![port(PortState::Disconnected("unplugged".into()))]);
    assert_eq!(telemetry.sample().devices_connected, 0);
    let serial = &telemetry.snapshot().devices[2];
    assert_eq!(serial.connected, Some(false));
}
