//! The gateway's side of a simulated run, for self-checks (`simulate --target inprocess`)
//! and tests: reads every simulated device through the same hal traits and the same
//! decoders the gateway uses, and counts what decoded and what did not.
//!
//! It is deliberately small: no FHIR, no queue. It answers "does every byte the simulator
//! sends decode as the gateway would decode it?".

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use vectorcare_hal::ble::simulated::SimulatedCentral;
use vectorcare_hal::ble::{
    BleAddress, BleCentral, BlePeripheral, CharacteristicRef, ScanFilter, WriteKind, short_uuid,
};
use vectorcare_hal::serial::SerialStream;

use super::gatt_db;
use super::scenario::{BleProfile, MqttSchema, SerialProtocol};
use crate::decode::gatt::racp::{self, RacpOpCode, RacpOperator, RacpRequest, RacpResponse};
use crate::decode::gatt::{CharacteristicValue, FeatureContext, decode_characteristic, uuids};
use crate::decode::mqtt::{PayloadContext, PayloadFormat, decode_payload};
use crate::decode::serial::LineFormat;
use crate::decode::serial::ndjson::NdjsonFormat;
use crate::decode::serial::pattern::PatternFormat;
use crate::reading::{ClockContext, DeviceIdentity, SourceKind};

/// Decoded and refused values of one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Measurement values (notifications, records, lines, payloads) that decoded.
    pub values: u64,
    /// Readings they gave.
    pub readings: u64,
    /// Values the decoders refused (garbage is expected to land here).
    pub refused: u64,
}

pub type Counts = BTreeMap<String, Decoded>;

fn context(source: SourceKind, address: &str) -> PayloadContext {
    PayloadContext {
        device: DeviceIdentity {
            source,
            address: address.to_owned(),
            system_id: None,
            manufacturer: None,
            model: None,
            serial_number: None,
        },
        received_at: OffsetDateTime::now_utc(),
        clock: ClockContext {
            device_offset_seconds: None,
            gateway_clock_synchronized: true,
        },
    }
}

/// The gateway line format that reads `protocol` (docs/SIMULATOR.md shows it as config).
pub fn serial_format(protocol: SerialProtocol) -> LineFormat {
    match protocol {
        SerialProtocol::Masimo => LineFormat::Masimo,
        SerialProtocol::Ndjson => {
            let fields = BTreeMap::from([
                ("hr".to_owned(), "heart_rate".to_owned()),
                ("spo2".to_owned(), "oxygen_saturation".to_owned()),
            ]);
            match NdjsonFormat::new(&fields, &BTreeMap::new(), Some("ts".to_owned())) {
                Ok(f) => LineFormat::Ndjson(f),
                Err(_) => LineFormat::Masimo,
            }
        }
        SerialProtocol::Csv => {
            let map = BTreeMap::from([
                ("HR".to_owned(), "heart_rate".to_owned()),
                ("SPO2".to_owned(), "oxygen_saturation".to_owned()),
            ]);
            match PatternFormat::new(CSV_PATTERN, None, &map, None) {
                Ok(f) => LineFormat::Pattern(f),
                Err(_) => LineFormat::Masimo,
            }
        }
    }
}

/// The `pattern` the gateway uses for the simulator's `csv` lines.
pub const CSV_PATTERN: &str = r"^(?P<kind>\w+),(?P<value>[-0-9.]+),(?P<unit>[^,]*)$";

pub fn mqtt_format(schema: MqttSchema) -> PayloadFormat {
    match schema {
        MqttSchema::Vitals => PayloadFormat::Vitals,
        MqttSchema::OpenMhealth => PayloadFormat::OpenMhealth,
        MqttSchema::FhirObservation => PayloadFormat::FhirObservation,
    }
}

/// Decodes one MQTT payload as the gateway would: Ok(number of readings).
pub fn decode_mqtt(schema: MqttSchema, topic: &str, payload: &[u8]) -> Result<usize, String> {
    decode_payload(
        mqtt_format(schema),
        payload,
        &context(SourceKind::Mqtt, topic),
    )
    .map(|r| r.len())
    .map_err(|e| e.to_string())
}

/// Reads lines from a serial stream until it ends or `stop` turns true (then drains briefly).
pub async fn read_serial(
    stream: Box<dyn SerialStream>,
    protocol: SerialProtocol,
    mut stop: watch::Receiver<bool>,
) -> Decoded {
    let format = serial_format(protocol);
    let ctx = context(SourceKind::Serial, "loopback");
    let mut lines = BufReader::new(stream).split(b'\n');
    let mut out = Decoded::default();
    let mut stopping = false;
    loop {
        let next = if stopping {
            match tokio::time::timeout(Duration::from_millis(300), lines.next_segment()).await {
                Ok(n) => n,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                n = lines.next_segment() => n,
                () = stopped(&mut stop) => { stopping = true; continue; }
            }
        };
        let Ok(Some(raw)) = next else { break };
        let text = String::from_utf8_lossy(&raw);
        let line = text.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            continue;
        }
        match format.decode_line(line, &ctx) {
            Ok(readings) => {
                out.values += 1;
                out.readings += readings.len() as u64;
            }
            Err(_) => out.refused += 1,
        }
    }
    out
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn report_all() -> Vec<u8> {
    racp::encode_request(&RacpRequest {
        op_code: RacpOpCode::ReportStoredRecords,
        operator: RacpOperator::All,
    })
    .unwrap_or_default()
}

/// Deletes the records up to `key` (those fetched), not ones stored meanwhile.
fn delete_up_to(key: u16) -> Vec<u8> {
    racp::encode_request(&RacpRequest {
        op_code: RacpOpCode::DeleteStoredRecords,
        operator: RacpOperator::LessOrEqual(racp::FilterValue::Sequence(key)),
    })
    .unwrap_or_default()
}

/// The RACP key of a stored record: glucose sequence number, CGM time offset.
fn record_key(value: &CharacteristicValue) -> Option<u16> {
    match value {
        CharacteristicValue::GlucoseMeasurement(m) => Some(m.sequence),
        CharacteristicValue::CgmMeasurement(records) => {
            records.iter().map(|r| r.time_offset_minutes).max()
        }
        _ => None,
    }
}

/// Reads one BLE device of hal's simulator: connects (again after every link drop),
/// subscribes to the profile's pushed characteristics, fetches and deletes stored records
/// through RACP on every connection and once more at the end.
pub async fn read_ble(
    central: SimulatedCentral,
    address: BleAddress,
    profile: BleProfile,
    mut stop: watch::Receiver<bool>,
) -> Decoded {
    let service = vectorcare_hal::ble::uuid16(gatt_db::service_uuid(profile));
    let racp_ref = CharacteristicRef::new(
        service,
        vectorcare_hal::ble::uuid16(uuids::RECORD_ACCESS_CONTROL_POINT),
    );
    let features = FeatureContext {
        cgm_e2e_crc: profile == BleProfile::Cgm,
        ..FeatureContext::default()
    };
    let mut out = Decoded::default();
    let ctx = crate::decode::gatt::DecodeContext {
        device: context(SourceKind::Ble, &address.to_string()).device,
        received_at: OffsetDateTime::now_utc(),
        clock: ClockContext {
            device_offset_seconds: None,
            gateway_clock_synchronized: true,
        },
        features: features.clone(),
    };
    let _ = central
        .start_scan(&ScanFilter {
            services: Vec::new(),
        })
        .await;
    let mut last_round = false;
    loop {
        if *stop.borrow() {
            last_round = true;
        }
        let Ok(p) = central.peripheral(address).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if p.connect().await.is_err() {
            if last_round {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let Ok(services) = p.discover_services().await else {
            continue;
        };
        let Ok(mut notifications) = p.notifications().await else {
            continue;
        };
        for c in services
            .iter()
            .filter(|s| s.uuid == service)
            .flat_map(|s| s.characteristics.iter())
            .filter(|c| c.props.pushes())
        {
            let _ = p.subscribe(c.id).await;
        }
        let racp = gatt_db::has_racp(profile);
        let mut fetched: Option<u16> = None;
        if racp {
            let _ = p
                .write(racp_ref, &report_all(), WriteKind::WithResponse)
                .await;
        }
        loop {
            let next = if last_round {
                match tokio::time::timeout(Duration::from_millis(300), notifications.next()).await {
                    Ok(n) => n,
                    Err(_) => break,
                }
            } else {
                tokio::select! {
                    n = notifications.next() => n,
                    () = stopped(&mut stop) => {
                        last_round = true;
                        if racp {
                            let _ = p.write(racp_ref, &report_all(), WriteKind::WithResponse).await;
                        }
                        continue;
                    }
                }
            };
            let Some(n) = next else { break };
            let Some(short) = short_uuid(&n.characteristic.characteristic) else {
                continue;
            };
            match decode_characteristic(short, &n.value, &features) {
                Ok(value) if short == uuids::RECORD_ACCESS_CONTROL_POINT => {
                    // Records delivered: delete them so the next connection fetches only new ones.
                    let done = matches!(
                        value,
                        CharacteristicValue::RecordAccessControlPoint(RacpResponse::ResponseCode {
                            request_op_code: 1,
                            ..
                        })
                    );
                    if let (true, Some(key)) = (done, fetched.take()) {
                        let _ = p
                            .write(racp_ref, &delete_up_to(key), WriteKind::WithResponse)
                            .await;
                    }
                }
                Ok(value) => {
                    if let Some(key) = record_key(&value) {
                        fetched = Some(fetched.map_or(key, |k| k.max(key)));
                    }
                    out.values += 1;
                    out.readings +=
                        crate::decode::gatt::readings_from_characteristic(short, &n.value, &ctx)
                            .map_or(0, |r| r.len() as u64);
                }
                Err(_) => out.refused += 1,
            }
        }
        if last_round {
            break;
        }
    }
    out
}

/// Plays `scenario` against the in-process target (BLE and serial devices; MQTT devices are
/// skipped) while reading every device back through the gateway's decoders.
pub async fn play_inprocess_checked(
    scenario: &super::Scenario,
    options: super::engine::PlayOptions,
) -> Result<(super::PlayReport, Counts), super::SimError> {
    use super::inprocess::InProcessTarget;
    use super::scenario::Transport;
    use vectorcare_hal::serial::simulated::SimulatedOpener;
    use vectorcare_hal::serial::{LineSettings, PortLocator, SerialOpener};

    let central = SimulatedCentral::new();
    let serial = SimulatedOpener::new();
    let start = options
        .start
        .or(scenario.start)
        .unwrap_or_else(OffsetDateTime::now_utc);
    let mut target = InProcessTarget::new(central.clone(), serial.clone()).with_start_time(start);
    let options = super::engine::PlayOptions {
        start: Some(start),
        ..options
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers: Vec<futures::future::BoxFuture<'static, (String, Decoded)>> = Vec::new();
    // Serial readers open their ports once the target has plugged them in (in `start`).
    let mut serial_devices = Vec::new();
    for (i, d) in scenario.devices.iter().enumerate() {
        match &d.transport {
            Transport::Ble { profile, address } => {
                let address = address.unwrap_or_else(|| gatt_db::default_address(*profile, i));
                let name = d.name.clone();
                let read = read_ble(central.clone(), address, *profile, stop_rx.clone());
                readers.push(Box::pin(async move { (name, read.await) }));
            }
            Transport::Serial { protocol } => serial_devices.push((d.name.clone(), *protocol)),
            Transport::Mqtt { .. } => {}
        }
    }
    let serial_for_readers = serial.clone();
    let stop_for_serial = stop_rx.clone();
    let serial_readers = async move {
        // Wait until the target plugged every port in, then open them in scenario order.
        let mut streams = Vec::new();
        let locator = PortLocator::Path("/dev/ttySIM".into());
        for (name, protocol) in serial_devices {
            let stream = loop {
                match serial_for_readers.open(&locator, &LineSettings::default()) {
                    Ok((_, s)) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            };
            let stop = stop_for_serial.clone();
            streams.push(async move { (name, read_serial(stream, protocol, stop).await) });
        }
        futures::future::join_all(streams).await
    };
    let play = async {
        let result = super::play(scenario, &mut target, options, std::future::pending()).await;
        let _ = stop_tx.send(true);
        result
    };
    let (report, ble, serial_counts) =
        tokio::join!(play, futures::future::join_all(readers), serial_readers);
    let report = report?;
    let counts = ble.into_iter().chain(serial_counts).collect();
    Ok((report, counts))
}
