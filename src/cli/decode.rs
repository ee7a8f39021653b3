//! `decode` command: bytes of one GATT characteristic value → readings and FHIR resources.
//!
//! `vectorcare-gateway decode --uuid 2a35 --hex "1E 8A 00 …" [--patient Patient/123]
//! [--device-address AA:BB:CC:DD:EE:FF] [--device-time 2026-01-02T03:04:05] [--json]`
//!
//! With `--json` it prints exactly one JSON object `{"readings": [...], "resources": [...]}`
//! (resources: each Observation and its PHD status-bits Observation, then each distinct Device). Without `--patient` the
//! Observations have no subject (valid FHIR R4, no placeholder patient). Malformed bytes exit
//! with 65 and a message naming the field and byte offset.

use serde::Serialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Failure, Outcome};
use crate::decode::gatt::{self, DecodeContext, FeatureContext};
use crate::exit;
use crate::fhir::{self, GatewayIdentity, MapContext};
use crate::reading::{ClockContext, DeviceIdentity, SourceKind};

/// Arguments of `decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// 16-bit characteristic UUID in hex, e.g. 2a35 or 0x2A35.
    #[arg(long)]
    pub uuid: String,
    /// The value's bytes in hex; spaces, ':' and '-' between bytes are ignored.
    #[arg(long)]
    pub hex: String,
    /// Patient reference for Observation.subject, e.g. Patient/123.
    #[arg(long)]
    pub patient: Option<String>,
    /// Gateway configuration: the patient, the gateway Device and the identifier system come
    /// from it, as in the daemon (`--patient` overrides its patient). Not read by default.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// The device's Bluetooth address (default 00:00:00:00:00:00, an obvious placeholder).
    #[arg(long)]
    pub device_address: Option<String>,
    /// The device clock's reading at receive time (its Current Time), "YYYY-MM-DDThh:mm:ss";
    /// gives the device-clock offset used to correct device timestamps.
    #[arg(long)]
    pub device_time: Option<String>,
    /// Gateway receive time (RFC 3339); default now. Makes output reproducible.
    #[arg(long)]
    pub received_at: Option<String>,
    /// CGM Feature says records carry an E2E-CRC.
    #[arg(long)]
    pub cgm_crc: bool,
    /// Weight Scale Feature (0x2A9E) value in hex, for the scale's resolutions.
    #[arg(long)]
    pub weight_scale_feature: Option<String>,
    /// Print one JSON object {"readings": [...], "resources": [...]}.
    #[arg(long)]
    pub json: bool,
}

/// Parses "1E 8A 00", "1e8a00", "1E:8A:00" or "1E-8A-00".
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':' && *c != '-')
        .collect();
    let digits = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
        .unwrap_or(&digits);
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| format!("not a hex byte at character {i}: {:?}", &digits[i..i + 2]))
        })
        .collect()
}

fn parse_uuid(text: &str) -> Result<u16, String> {
    let t = text.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    u16::from_str_radix(t, 16).map_err(|_| format!("not a 16-bit hex UUID: {text:?}"))
}

fn parse_local_time(text: &str) -> Result<time::PrimitiveDateTime, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(text, &format)
        .map_err(|e| format!("--device-time {text:?}: {e} (expected YYYY-MM-DDThh:mm:ss)"))
}

#[derive(Serialize)]
struct Output<'a> {
    readings: &'a [crate::reading::Reading],
    resources: Vec<&'a RawValue>,
}

pub fn execute(args: Args) -> Outcome {
    let usage = |m: String| Failure::new(exit::USAGE, m);
    let uuid = parse_uuid(&args.uuid).map_err(usage)?;
    let bytes =
        parse_hex(&args.hex).map_err(|m| Failure::new(exit::DATA_ERR, format!("--hex: {m}")))?;
    let received_at = match &args.received_at {
        Some(t) => OffsetDateTime::parse(t, &Rfc3339)
            .map_err(|e| usage(format!("--received-at {t:?}: {e}")))?,
        None => OffsetDateTime::now_utc(),
    };
    let device_offset_seconds = match &args.device_time {
        Some(t) => {
            let device_now = parse_local_time(t).map_err(usage)?.assume_utc();
            Some((device_now - received_at).whole_seconds())
        }
        None => None,
    };
    let mut features = FeatureContext {
        cgm_e2e_crc: args.cgm_crc,
        ..FeatureContext::default()
    };
    if let Some(hex) = &args.weight_scale_feature {
        let raw = parse_hex(hex).map_err(|m| usage(format!("--weight-scale-feature: {m}")))?;
        let feature = gatt::weight::decode_feature(&raw)
            .map_err(|e| Failure::new(exit::DATA_ERR, format!("--weight-scale-feature: {e}")))?;
        features.weight_scale = Some(feature);
    }
    let ctx = DecodeContext {
        device: DeviceIdentity {
            source: SourceKind::Ble,
            address: args
                .device_address
                .clone()
                .unwrap_or_else(|| "00:00:00:00:00:00".into()),
            system_id: None,
            manufacturer: None,
            model: None,
            serial_number: None,
        },
        received_at,
        clock: ClockContext {
            device_offset_seconds,
            gateway_clock_synchronized: vectorcare_hal::clock::kernel_sync_state()
                .is_synchronized(),
        },
        features,
    };
    let value = gatt::decode_characteristic(uuid, &bytes, &ctx.features).map_err(|e| match e {
        crate::decode::DecodeError::UnsupportedCharacteristic { .. } => usage(e.to_string()),
        other => Failure::new(
            exit::DATA_ERR,
            format!("malformed {uuid:#06x} value: {other}"),
        ),
    })?;
    let readings = value.readings(&ctx);
    let mut map_ctx = match &args.config {
        Some(path) => {
            let config = crate::config::load(path, std::env::vars())
                .map_err(|err| super::validate::config_failure(path, &err))?;
            crate::runtime::build::map_context(&config)
        }
        None => MapContext::new(
            None,
            GatewayIdentity {
                id: "vectorcare-gateway".into(),
                serial: None,
                name: "VectorCare Gateway".into(),
            },
        ),
    };
    if args.patient.is_some() {
        map_ctx.patient = args.patient.clone();
    }
    let units = readings
        .iter()
        .map(|r| fhir::map_reading(r, &map_ctx))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::new(exit::DATA_ERR, format!("cannot map to FHIR: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    // Each Observation, followed by its PHD status-bits Observation when it has one.
    let mut texts: Vec<&str> = Vec::new();
    for unit in &units {
        texts.push(unit.observation_json());
        if let Some(status) = unit.status_observation() {
            texts.push(status.observation);
        }
    }
    for unit in &units {
        for (id, text) in [
            (unit.device_identifier(), unit.device_json()),
            (unit.gateway_identifier(), unit.gateway_json()),
        ] {
            if seen.insert(id) {
                texts.push(text);
            }
        }
    }
    let resources = texts
        .iter()
        .map(|t| serde_json::from_str::<&RawValue>(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::new(exit::SOFTWARE, format!("internal: {e}")))?;
    if args.json {
        let out = serde_json::to_string(&Output {
            readings: &readings,
            resources,
        })
        .map_err(|e| Failure::new(exit::SOFTWARE, format!("internal: {e}")))?;
        println!("{out}");
        return Ok(());
    }
    let decoded = serde_json::to_string_pretty(&value)
        .map_err(|e| Failure::new(exit::SOFTWARE, format!("internal: {e}")))?;
    println!("decoded {uuid:#06x}:\n{decoded}");
    println!("{} reading(s)", readings.len());
    for r in &readings {
        let text = serde_json::to_string(r)
            .map_err(|e| Failure::new(exit::SOFTWARE, format!("internal: {e}")))?;
        println!("  {text}");
    }
    println!("{} resource(s)", resources.len());
    for r in resources {
        println!("  {}", r.get());
    }
    Ok(())
}
