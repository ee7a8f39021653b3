//! One connection to one device: connect (serialised per adapter), discover, read identity,
//! features and the device clock, subscribe, fetch stored records through RACP, then decode and
//! submit every pushed value until the link drops.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::Notify;
use vectorcare_hal::ble::{
    BleAddress, BleCentral, BleError, BlePeripheral, CharacteristicRef, GattService, Notification,
    WriteKind, short_uuid,
};

use super::profiles::{
    CGM_FEATURE, CGM_SESSION_START_TIME, Profile, cgm_e2e_crc_supported, cgm_session_start,
    current_time, device_information, services,
};
use super::source::{LINK_CHECK, SessionError, Shared, lock};
use crate::decode::gatt::racp::{
    self, FilterValue, RacpOpCode, RacpOperator, RacpRequest, RacpResponse, RacpResponseCode,
};
use crate::decode::gatt::{DecodeContext, FeatureContext, clock, uuids, weight};
use crate::decode::readings_from_characteristic;
use crate::reading::{ClockContext, DeviceIdentity, Reading, SourceKind};
use crate::sources::IngestError;

impl<C: BleCentral> Shared<C> {
    pub(super) async fn connect_and_collect(
        &self,
        address: BleAddress,
    ) -> Result<(), SessionError> {
        let (peripheral, services) = {
            let _one_at_a_time = self.connect_lock.lock().await;
            let peripheral = self.central.peripheral(address).await?;
            peripheral.connect().await?;
            match peripheral.discover_services().await {
                Ok(services) => (peripheral, services),
                Err(e) => {
                    let _ = peripheral.disconnect().await;
                    return Err(e.into());
                }
            }
        };
        let link = Arc::new(Notify::new());
        lock(&self.links).insert(address, link.clone());
        self.status.device(address, |d| {
            d.connected = true;
            d.connects += 1;
        });
        let result = self.collect(&peripheral, &services, &link).await;
        lock(&self.links).remove(&address);
        self.status.device(address, |d| d.connected = false);
        if peripheral.is_connected().await.unwrap_or(false) {
            let _ = peripheral.disconnect().await;
        }
        result
    }

    async fn read_optional(
        &self,
        peripheral: &C::Peripheral,
        present: &HashSet<CharacteristicRef>,
        characteristic: CharacteristicRef,
    ) -> Option<Vec<u8>> {
        if !present.contains(&characteristic) {
            return None;
        }
        match peripheral.read(characteristic).await {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::debug!(?characteristic, error = %e, "optional read failed");
                None
            }
        }
    }

    async fn identity(
        &self,
        peripheral: &C::Peripheral,
        present: &HashSet<CharacteristicRef>,
    ) -> DeviceIdentity {
        let info = |c: u16| CharacteristicRef::sig(services::DEVICE_INFORMATION, c);
        let text = |v: Option<Vec<u8>>| {
            v.map(|b| {
                String::from_utf8_lossy(&b)
                    .trim_end_matches('\0')
                    .to_owned()
            })
            .filter(|s| !s.is_empty())
        };
        let system_id = self
            .read_optional(peripheral, present, info(device_information::SYSTEM_ID))
            .await
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok());
        DeviceIdentity {
            source: SourceKind::Ble,
            address: peripheral.address().to_string(),
            system_id,
            manufacturer: text(
                self.read_optional(
                    peripheral,
                    present,
                    info(device_information::MANUFACTURER_NAME),
                )
                .await,
            ),
            model: text(
                self.read_optional(peripheral, present, info(device_information::MODEL_NUMBER))
                    .await,
            ),
            serial_number: text(
                self.read_optional(peripheral, present, info(device_information::SERIAL_NUMBER))
                    .await,
            ),
        }
    }

    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from(self.clock.now())
    }

    async fn collect(
        &self,
        peripheral: &C::Peripheral,
        services: &[GattService],
        link: &Notify,
    ) -> Result<(), SessionError> {
        let address = peripheral.address();
        let configured = self.config.device(address);
        let present: HashSet<CharacteristicRef> = services
            .iter()
            .flat_map(|s| s.characteristics.iter().map(|c| c.id))
            .collect();
        let profiles: Vec<Profile> = services
            .iter()
            .filter_map(|s| short_uuid(&s.uuid).and_then(Profile::from_service))
            .filter(|p| {
                configured
                    .and_then(|d| d.profile)
                    .is_none_or(|only| only == *p)
            })
            .collect();
        if profiles.is_empty() {
            return Err(SessionError::NoSupportedService);
        }

        let device = self.identity(peripheral, &present).await;
        let mut features = FeatureContext::default();
        for profile in &profiles {
            for &f in profile.features() {
                let Some(bytes) = self
                    .read_optional(peripheral, &present, profile.characteristic(f))
                    .await
                else {
                    continue;
                };
                match f {
                    uuids::WEIGHT_SCALE_FEATURE => {
                        features.weight_scale = weight::decode_feature(&bytes).ok();
                    }
                    CGM_FEATURE => {
                        features.cgm_e2e_crc = cgm_e2e_crc_supported(&bytes).unwrap_or(false);
                    }
                    CGM_SESSION_START_TIME => {
                        features.cgm_session_start = cgm_session_start(&bytes);
                    }
                    _ => {}
                }
            }
        }
        let device_offset_seconds = self
            .read_optional(peripheral, &present, current_time())
            .await
            .and_then(|b| clock::decode_current_time(&b).ok())
            .and_then(|t| clock::to_primitive(&t.date_time))
            .map(|device_now| (device_now.assume_utc() - self.now()).whole_seconds());
        let device_clock = DeviceClockOffset::measured(device_offset_seconds, self.now());
        let mut ctx = DecodeContext {
            device,
            received_at: self.now(),
            clock: ClockContext {
                device_offset_seconds,
                gateway_clock_synchronized: self.clock.sync_state().is_synchronized(),
            },
            features,
        };

        let mut stream = peripheral.notifications().await?;
        for profile in &profiles {
            for &m in profile.measurements() {
                let c = profile.characteristic(m);
                if present.contains(&c) {
                    peripheral.subscribe(c).await?;
                }
            }
        }
        let mut racp = RacpSession::default();
        if let Some(profile) = profiles
            .iter()
            .find(|p| p.uses_racp() && present.contains(&p.racp()))
        {
            peripheral.subscribe(profile.racp()).await?;
            racp.control_point = Some(profile.racp());
            racp.delete_after_upload = configured.is_some_and(|d| d.delete_after_upload);
            let after = self.fetched_up_to(address);
            let operator = match after.and_then(|s| u16::try_from(s).ok()) {
                Some(s) if s == u16::MAX => None,
                Some(s) => Some(RacpOperator::GreaterOrEqual(FilterValue::Sequence(s + 1))),
                None => Some(RacpOperator::All),
            };
            if let Some(operator) = operator {
                self.racp_write(
                    peripheral,
                    profile.racp(),
                    RacpOpCode::ReportStoredRecords,
                    operator,
                )
                .await?;
                racp.awaiting = Some(RacpOpCode::ReportStoredRecords);
            } else {
                self.maybe_delete(peripheral, &mut racp).await?;
            }
        }

        let mut check = tokio::time::interval(LINK_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = stream.next() => match n {
                    None => return Ok(()),
                    Some(n) => {
                        self.on_value(peripheral, n, &mut ctx, &device_clock, &mut racp)
                            .await?;
                    }
                },
                () = link.notified() => return Ok(()),
                _ = check.tick() => {
                    if !peripheral.is_connected().await.unwrap_or(false) {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn fetched_up_to(&self, address: BleAddress) -> Option<u32> {
        let confirmed = self.progress.confirmed_sequence(address);
        let durable = lock(&self.durable).get(&address).copied();
        confirmed.max(durable)
    }

    async fn racp_write(
        &self,
        peripheral: &C::Peripheral,
        control_point: CharacteristicRef,
        op_code: RacpOpCode,
        operator: RacpOperator,
    ) -> Result<(), SessionError> {
        let bytes = racp::encode_request(&RacpRequest { op_code, operator })
            .map_err(|e| BleError::Other(format!("RACP request: {e}")))?;
        peripheral
            .write(control_point, &bytes, WriteKind::WithResponse)
            .await?;
        Ok(())
    }

    /// Deletes records on the device up to the server-confirmed sequence, when configured.
    async fn maybe_delete(
        &self,
        peripheral: &C::Peripheral,
        racp: &mut RacpSession,
    ) -> Result<(), SessionError> {
        let Some(control_point) = racp.control_point else {
            return Ok(());
        };
        if !racp.delete_after_upload || racp.delete_sent {
            return Ok(());
        }
        let Some(confirmed) = self
            .progress
            .confirmed_sequence(peripheral.address())
            .and_then(|s| u16::try_from(s).ok())
        else {
            return Ok(());
        };
        racp.delete_sent = true;
        self.racp_write(
            peripheral,
            control_point,
            RacpOpCode::DeleteStoredRecords,
            RacpOperator::LessOrEqual(FilterValue::Sequence(confirmed)),
        )
        .await?;
        racp.awaiting = Some(RacpOpCode::DeleteStoredRecords);
        Ok(())
    }

    async fn on_value(
        &self,
        peripheral: &C::Peripheral,
        n: Notification,
        ctx: &mut DecodeContext,
        device_clock: &DeviceClockOffset,
        racp: &mut RacpSession,
    ) -> Result<(), SessionError> {
        let Some(uuid) = short_uuid(&n.characteristic.characteristic) else {
            return Ok(());
        };
        if Some(n.characteristic) == racp.control_point {
            match racp::decode_response(&n.value) {
                Ok(RacpResponse::ResponseCode {
                    request_op_code,
                    code,
                }) => {
                    tracing::debug!(request_op_code, ?code, "RACP response");
                    if request_op_code == RacpOpCode::ReportStoredRecords as u8 {
                        racp.awaiting = None;
                        if matches!(
                            code,
                            RacpResponseCode::Success | RacpResponseCode::NoRecordsFound
                        ) {
                            self.maybe_delete(peripheral, racp).await?;
                        }
                    } else if request_op_code == RacpOpCode::DeleteStoredRecords as u8 {
                        racp.awaiting = None;
                    }
                }
                Ok(RacpResponse::NumberOfRecords { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "undecodable RACP response"),
            }
            return Ok(());
        }
        ctx.received_at = self.now();
        ctx.clock.device_offset_seconds = device_clock.at(ctx.received_at);
        ctx.clock.gateway_clock_synchronized = self.clock.sync_state().is_synchronized();
        let readings = match readings_from_characteristic(uuid, &n.value, ctx) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(characteristic = uuid, error = %e, "undecodable BLE value dropped");
                return Ok(());
            }
        };
        if readings.is_empty() {
            return Ok(());
        }
        let highest_sequence = readings.iter().filter_map(|r| r.sequence).max();
        let count = readings.len() as u64;
        self.submit(readings).await?;
        let address = peripheral.address();
        self.status.device(address, |d| d.readings += count);
        if let Some(seq) = highest_sequence {
            let mut durable = lock(&self.durable);
            let entry = durable.entry(address).or_insert(seq);
            *entry = (*entry).max(seq);
        }
        Ok(())
    }

    /// Hands readings to the sink until they are durable (or refused for good).
    async fn submit(&self, readings: Vec<Reading>) -> Result<(), SessionError> {
        let mut attempt = 0u32;
        loop {
            match self.sink.submit(readings.clone()).await {
                Ok(()) => return Ok(()),
                Err(IngestError::ShuttingDown) => return Err(SessionError::ShuttingDown),
                Err(e) if e.is_permanent() => {
                    tracing::warn!(error = %e, "readings rejected for good");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "readings not stored yet; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}

/// The device-clock offset read at connection (device clock − gateway clock), kept true across
/// jumps of the gateway's wall clock while the device stays connected — e.g. NTP synchronising
/// a hub that booted with a stale clock. The device's clock did not jump, so the offset moves
/// by the gateway's jump: the wall time elapsed since the reading minus the monotonic time.
#[derive(Debug, Clone, Copy)]
struct DeviceClockOffset {
    offset: Option<i64>,
    wall: OffsetDateTime,
    monotonic: std::time::Instant,
}

impl DeviceClockOffset {
    fn measured(offset: Option<i64>, wall: OffsetDateTime) -> Self {
        Self {
            offset,
            wall,
            monotonic: std::time::Instant::now(),
        }
    }

    /// The offset for a value received at gateway wall time `wall_now`.
    fn at(&self, wall_now: OffsetDateTime) -> Option<i64> {
        let offset = self.offset?;
        let wall_elapsed = (wall_now - self.wall).whole_seconds();
        let monotonic_elapsed =
            i64::try_from(self.monotonic.elapsed().as_secs()).unwrap_or(i64::MAX);
        let jump = wall_elapsed.saturating_sub(monotonic_elapsed);
        // Whole seconds on both sides: a second either way is rounding, not a jump.
        if jump.abs() <= 1 {
            Some(offset)
        } else {
            Some(offset.saturating_sub(jump))
        }
    }
}

/// Where a session's Record Access Control Point conversation stands.
#[derive(Debug, Default)]
struct RacpSession {
    control_point: Option<CharacteristicRef>,
    delete_after_upload: bool,
    delete_sent: bool,
    awaiting: Option<RacpOpCode>,
}

#[cfg(test)]
mod clock_tests {
    use super::DeviceClockOffset;
    use time::OffsetDateTime;

    /// Issue #9, clock: a device connected while the hub's clock was three days behind keeps
    /// being dated right after NTP steps the hub's clock forward (and back).
    #[test]
    fn the_offset_follows_a_gateway_clock_jump_while_connected() {
        let booted = OffsetDateTime::now_utc() - time::Duration::days(3);
        let offset = 3 * 86_400; // the device's clock is right: three days ahead of the hub's
        let clock = DeviceClockOffset::measured(Some(offset), booted);
        assert_eq!(clock.at(booted), Some(offset), "no jump, same offset");
        let synchronised = booted + time::Duration::days(3);
        assert_eq!(clock.at(synchronised), Some(0), "the hub's clock caught up");
        let stepped_back = booted - time::Duration::hours(1);
        assert_eq!(clock.at(stepped_back), Some(offset + 3600));
        assert_eq!(
            DeviceClockOffset::measured(None, booted).at(synchronised),
            None
        );
    }
}
