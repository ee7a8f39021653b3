//! `devices scan`: lists nearby health devices (name, address, services, RSSI) through the
//! real BLE adapter, to find the addresses an installer writes into `[[sources.ble.devices]]`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use vectorcare_hal::ble::btleplug::BtleplugCentral;
use vectorcare_hal::ble::{
    AdapterState, Advertisement, BleCentral, BleError, CentralEvent, ScanFilter, short_uuid,
};

use crate::exit;
use crate::sources::ble::profiles::{Profile, supported_services};

/// Arguments of `devices`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DevicesCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DevicesCommand {
    /// Scan for nearby Bluetooth LE health devices and list them.
    Scan(ScanArgs),
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// How long to listen for advertisements.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// BlueZ adapter name (default: the first adapter).
    #[arg(long)]
    pub adapter: Option<String>,
    /// List every advertising device, not only those offering a supported health service.
    #[arg(long)]
    pub all: bool,
}

/// One device in the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundDevice {
    pub name: Option<String>,
    pub address: String,
    /// Profile names for supported health services, UUIDs for anything else.
    pub services: Vec<String>,
    pub rssi: Option<i16>,
    pub supported: bool,
}

fn describe(ad: &Advertisement) -> FoundDevice {
    let supported = supported_services();
    FoundDevice {
        name: ad.name.clone(),
        address: ad.address.to_string(),
        services: ad
            .services
            .iter()
            .map(|u| {
                short_uuid(u)
                    .and_then(Profile::from_service)
                    .map(|p| p.name().to_owned())
                    .unwrap_or_else(|| u.to_string())
            })
            .collect(),
        rssi: ad.rssi,
        supported: ad.services.iter().any(|u| supported.contains(u)),
    }
}

/// Listens for `duration` and returns what advertised, strongest signal first.
pub async fn scan<C: BleCentral>(
    central: &C,
    duration: Duration,
    all: bool,
) -> Result<Vec<FoundDevice>, BleError> {
    let mut events = central.events().await?;
    central.start_scan(&ScanFilter::default()).await?;
    let mut seen: BTreeMap<String, Advertisement> = BTreeMap::new();
    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            event = events.next() => match event {
                Some(CentralEvent::Advertised(ad)) => {
                    let entry = seen.entry(ad.address.to_string()).or_insert_with(|| ad.clone());
                    // Keep what any advertisement told (names and services come in pieces).
                    entry.rssi = ad.rssi.or(entry.rssi);
                    if ad.name.is_some() {
                        entry.name = ad.name.clone();
                    }
                    for s in &ad.services {
                        if !entry.services.contains(s) {
                            entry.services.push(*s);
                        }
                    }
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    let _ = central.stop_scan().await;
    let mut found: Vec<FoundDevice> = seen
        .values()
        .map(describe)
        .filter(|d| all || d.supported)
        .collect();
    found.sort_by_key(|d| std::cmp::Reverse(d.rssi.unwrap_or(i16::MIN)));
    Ok(found)
}

fn table(found: &[FoundDevice]) -> String {
    let mut out = format!(
        "{:<17}  {:>5}  {:<24}  {}\n",
        "ADDRESS", "RSSI", "NAME", "SERVICES"
    );
    for d in found {
        out.push_str(&format!(
            "{:<17}  {:>5}  {:<24}  {}\n",
            d.address,
            d.rssi.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            d.name.as_deref().unwrap_or("-"),
            d.services.join(",")
        ));
    }
    out
}

pub fn execute(args: Args) -> super::Outcome {
    let DevicesCommand::Scan(args) = args.command;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| super::Failure::new(exit::SOFTWARE, format!("cannot start runtime: {e}")))?;
    let result = runtime.block_on(async {
        let central = BtleplugCentral::open(args.adapter.as_deref()).await?;
        match central.adapter_state().await? {
            AdapterState::PoweredOn => {}
            AdapterState::PoweredOff => return Err(BleError::NotReady),
            AdapterState::Unavailable => {
                return Err(BleError::AdapterUnavailable(
                    "no such Bluetooth adapter (see `bluetoothctl list`)".into(),
                ));
            }
        }
        scan(&central, Duration::from_secs(args.seconds), args.all).await
    });
    // Every scan failure means the adapter or BlueZ is not usable right now.
    let found = result.map_err(|e| {
        super::Failure::new(exit::UNAVAILABLE, format!("Bluetooth scan failed: {e}"))
    })?;
    if args.json {
        let text = serde_json::to_string_pretty(&found)
            .map_err(|e| super::Failure::new(exit::SOFTWARE, e.to_string()))?;
        println!("{text}");
    } else if found.is_empty() {
        println!("no health devices found (try --all, or wake the device so it advertises)");
    } else {
        print!("{}", table(&found));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use vectorcare_hal::ble::simulated::SimulatedCentral;

    use super::*;
    use crate::sources::ble::simulated::standard_device;

    #[tokio::test(start_paused = true)]
    async fn scan_lists_health_devices_strongest_first() {
        let central = SimulatedCentral::new();
        let hr = standard_device(&central, Profile::HeartRate, 20).expect("encodable");
        let bp = standard_device(&central, Profile::BloodPressure, 1).expect("encodable");
        let found = scan(&central, Duration::from_secs(3), false)
            .await
            .expect("scan");
        let addresses: Vec<&str> = found.iter().map(|d| d.address.as_str()).collect();
        // Seed 1 advertises at -56 dBm, seed 20 at -75 dBm.
        assert_eq!(
            addresses,
            [bp.address().to_string(), hr.address().to_string()]
        );
        assert_eq!(found[0].services, ["blood_pressure"]);
        assert_eq!(found[0].rssi, Some(-56));
        assert!(table(&found).contains("heart_rate"));
    }
}
