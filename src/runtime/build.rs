//! Building runtime objects from the validated `Config`: the mapper closure, one source task
//! per configured adapter, and (when configured) the uploader. Nothing here runs yet — the
//! [`Pipeline`](super::pipeline::Pipeline) spawns what this returns.

use std::sync::Arc;
use std::time::Duration;

use vectorcare_hal::ble::simulated::SimulatedCentral;
use vectorcare_hal::clock::Clock;
use vectorcare_hal::serial::SerialOpener;

use super::ingest::MapFn;
use super::pipeline::SourceStarter;
use super::shutdown::Shutdown;
use crate::config::Config;
use crate::fhir::{GatewayIdentity, MapContext, encode_unit, map_reading};
use crate::reading::Reading;
use crate::sources::ReadingSink;
use crate::sources::ble::FileProgressStore;
use crate::sources::ble::progress::ProgressError;
use crate::sources::ble::source::{BleSource, InMemoryProgress, StoredRecordProgress};
use crate::sources::mqtt::source::HealthSnapshot;
use crate::sources::mqtt::source::MqttSource;
use crate::sources::serial::source::SerialSource;
use crate::telemetry::Telemetry;
use tokio::sync::watch;

/// The hardware seams the sources use: real on a hub, simulated in `demo` and tests.
#[derive(Debug, Clone)]
pub struct Hardware {
    pub clock: Arc<dyn Clock>,
    pub ble: BleHardware,
    pub serial: Arc<dyn SerialOpener>,
}

/// Which BLE central the BLE source talks to.
#[derive(Debug, Clone)]
pub enum BleHardware {
    /// BlueZ through btleplug, opened (and re-opened) by the source task.
    BlueZ,
    /// The in-process simulator (`demo`, tests).
    Simulated(SimulatedCentral),
}

impl Hardware {
    /// The hub's real hardware: the kernel clock (or one assumed synchronised for test rigs),
    /// BlueZ and tokio-serial.
    pub fn real(config: &Config) -> Self {
        let clock: Arc<dyn Clock> = if config.clock.assume_synchronized {
            Arc::new(vectorcare_hal::clock::AssumedSynchronizedClock)
        } else {
            Arc::new(vectorcare_hal::clock::SystemClock)
        };
        Self {
            clock,
            ble: BleHardware::BlueZ,
            serial: Arc::new(vectorcare_hal::serial::tokio_serial::TokioSerialOpener::default()),
        }
    }
}

/// The mapping context of the hub's own patient: gateway identity from `[gateway]`,
/// identifier system and gateway serial from `[fhir]`.
pub fn map_context(config: &Config) -> MapContext {
    let gateway = GatewayIdentity {
        id: config.gateway.id.clone(),
        serial: config.fhir.gateway_serial.clone(),
        name: config
            .gateway
            .name
            .clone()
            .unwrap_or_else(|| format!("VectorCare Gateway {}", config.gateway.id)),
    };
    MapContext {
        patient: Some(config.gateway.patient.clone()),
        gateway,
        identifier_system: config.fhir.identifier_system.clone(),
    }
}

/// The mapper: reading → compact upload unit, with the patient chosen per device (serial and
/// MQTT devices may serve another patient than the hub's).
pub fn mapper(config: &Config) -> Arc<MapFn> {
    let default_context = map_context(config);
    // Device ids may be templates ("mqtt:{1}" = whatever the topic's first `+` matched).
    let mut per_device: Vec<(DeviceIdPattern, MapContext)> = Vec::new();
    let overrides = config
        .sources
        .serial
        .iter()
        .flat_map(|serial| serial.device_patients())
        .chain(
            config
                .sources
                .mqtt
                .iter()
                .flat_map(|mqtt| mqtt.device_patients()),
        );
    for (device, patient) in overrides {
        let mut context = default_context.clone();
        context.patient = Some(patient);
        per_device.push((DeviceIdPattern::new(&device), context));
    }
    Arc::new(move |reading: &Reading| {
        let context = per_device
            .iter()
            .find(|(pattern, _)| pattern.matches(&reading.device.address))
            .map(|(_, context)| context)
            .unwrap_or(&default_context);
        let unit = map_reading(reading, context).map_err(|err| err.to_string())?;
        encode_unit(&unit).map_err(|err| format!("cannot encode upload unit: {err}"))
    })
}

/// A configured device id, literal or with `{N}` placeholders that match one topic level.
#[derive(Debug, Clone)]
pub(crate) struct DeviceIdPattern {
    /// Literal pieces between placeholders.
    pieces: Vec<String>,
}

impl DeviceIdPattern {
    pub(crate) fn new(template: &str) -> Self {
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            match rest[open..].find('}') {
                Some(close)
                    if rest[open + 1..open + close]
                        .chars()
                        .all(|c| c.is_ascii_digit()) =>
                {
                    pieces.push(rest[..open].to_owned());
                    rest = &rest[open + close + 1..];
                }
                _ => break,
            }
        }
        pieces.push(rest.to_owned());
        Self { pieces }
    }

    pub(crate) fn matches(&self, id: &str) -> bool {
        let (first, others) = self
            .pieces
            .split_first()
            .expect("invariant: at least one piece");
        let Some(mut rest) = id.strip_prefix(first.as_str()) else {
            return false;
        };
        for (i, piece) in others.iter().enumerate() {
            let last = i + 1 == others.len();
            // A placeholder is one topic level: non-empty, no '/'.
            let found = if last && piece.is_empty() {
                Some(rest.len())
            } else if last {
                rest.strip_suffix(piece.as_str()).map(str::len)
            } else {
                rest.find(piece.as_str())
            };
            match found {
                Some(end) if end > 0 && !rest[..end].contains('/') => {
                    rest = &rest[end + piece.len()..];
                }
                _ => return false,
            }
        }
        rest.is_empty()
    }
}

/// The persisted BLE stored-record progress (`<state_dir>/ble-progress/`), when BLE is
/// configured: the uploader confirms into it, the BLE source reads it.
pub fn ble_progress(config: &Config) -> Result<Option<Arc<FileProgressStore>>, ProgressError> {
    if config.sources.ble.is_none() {
        return Ok(None);
    }
    FileProgressStore::open(&config.gateway.state_dir).map(|store| Some(Arc::new(store)))
}

/// One starter per configured adapter. `ble_progress` is the store from [`ble_progress`]
/// (`None`: progress in memory only, nothing confirmed, so nothing is ever deleted). Each
/// source's live status is attached to `telemetry` when it starts; the MQTT source publishes
/// `health` on its health topic.
pub fn sources(
    config: &Config,
    hardware: &Hardware,
    ble_progress: Option<Arc<FileProgressStore>>,
    telemetry: &Arc<Telemetry>,
    health: watch::Receiver<HealthSnapshot>,
) -> Vec<(String, SourceStarter)> {
    let mut starters: Vec<(String, SourceStarter)> = Vec::new();
    if let Some(ble) = config.sources.ble.clone() {
        let clock = hardware.clock.clone();
        let progress: Arc<dyn StoredRecordProgress> = match ble_progress {
            Some(store) => store,
            None => Arc::new(InMemoryProgress::default()),
        };
        let telemetry = telemetry.clone();
        let start: SourceStarter = match hardware.ble.clone() {
            BleHardware::Simulated(central) => {
                Box::new(move |sink: ReadingSink, shutdown: Shutdown| {
                    let source = BleSource::new(central, ble, sink, progress, clock);
                    telemetry.attach_ble(source.status());
                    Box::pin(source.run(shutdown.wait()))
                })
            }
            BleHardware::BlueZ => Box::new(move |sink: ReadingSink, shutdown: Shutdown| {
                Box::pin(run_bluez(ble, sink, progress, clock, telemetry, shutdown))
            }),
        };
        starters.push(("ble".into(), start));
    }
    if let Some(serial) = config.sources.serial.clone() {
        let opener = hardware.serial.clone();
        let clock = hardware.clock.clone();
        let telemetry = telemetry.clone();
        starters.push((
            "serial".into(),
            Box::new(move |sink: ReadingSink, shutdown: Shutdown| {
                let source = SerialSource::new(serial, opener, clock);
                telemetry.attach_serial(source.status());
                Box::pin(source.run(sink, shutdown.wait()))
            }),
        ));
    }
    if let Some(mqtt) = config.sources.mqtt.clone() {
        let clock = hardware.clock.clone();
        let telemetry = telemetry.clone();
        starters.push((
            "mqtt".into(),
            Box::new(move |sink: ReadingSink, shutdown: Shutdown| {
                Box::pin(async move {
                    let source = MqttSource::new(mqtt, clock, Some(health));
                    telemetry.attach_mqtt(source.status());
                    if let Err(err) = source.run(sink, shutdown.clone().wait()).await {
                        // Bad credentials or TLS files: a configuration problem that a restart
                        // does not fix. Stay up (other sources keep working) and say so.
                        tracing::error!(error = %err, "MQTT source cannot run; fix its configuration");
                        shutdown.wait().await;
                    }
                })
            }),
        ));
    }
    starters
}

/// Opens the BlueZ adapter, retrying while D-Bus is unreachable, then runs the BLE source
/// together with the pairing agent (devices that refuse notifications on an unencrypted link
/// pair through it). A failing agent is logged and does not stop the source.
async fn run_bluez(
    config: crate::sources::ble::config::BleConfig,
    sink: ReadingSink,
    progress: Arc<dyn StoredRecordProgress>,
    clock: Arc<dyn Clock>,
    telemetry: Arc<Telemetry>,
    mut shutdown: Shutdown,
) {
    use vectorcare_hal::ble::bluez_agent::PairingAgent;
    use vectorcare_hal::ble::btleplug::BtleplugCentral;
    let mut delay = Duration::from_secs(1);
    loop {
        let opened = tokio::select! {
            _ = shutdown.requested() => return,
            opened = BtleplugCentral::open(config.adapter.as_deref()) => opened,
        };
        match opened {
            Ok(central) => {
                let agent = PairingAgent::new(config.pairing_policy());
                let agent_shutdown = shutdown.clone();
                let agent = async move {
                    if let Err(err) = agent.run(agent_shutdown.clone().wait()).await {
                        tracing::warn!(error = %err, "BlueZ pairing agent unavailable; devices that need pairing will fail");
                        agent_shutdown.wait().await;
                    }
                };
                let source = BleSource::new(central, config, sink, progress, clock);
                telemetry.attach_ble(source.status());
                tokio::join!(source.run(shutdown.wait()), agent);
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_s = delay.as_secs(), "Bluetooth adapter unavailable; retrying");
                tokio::select! {
                    _ = shutdown.requested() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceIdPattern;

    #[test]
    fn device_id_patterns() {
        let literal = DeviceIdPattern::new("/dev/ttyUSB0");
        assert!(literal.matches("/dev/ttyUSB0"));
        assert!(!literal.matches("/dev/ttyUSB1"));
        let one = DeviceIdPattern::new("mqtt:{1}");
        assert!(one.matches("mqtt:cuff-7"));
        assert!(!one.matches("mqtt:"));
        assert!(!one.matches("mqtt:a/b"));
        assert!(!one.matches("other:cuff"));
        let two = DeviceIdPattern::new("home-{1}-dev-{2}");
        assert!(two.matches("home-kitchen-dev-scale"));
        assert!(!two.matches("home--dev-scale"));
        let suffix = DeviceIdPattern::new("{1}.cuff");
        assert!(suffix.matches("bob.cuff"));
        assert!(!suffix.matches(".cuff"));
    }
}
