//! The MQTT session: one rumqttc event loop that is ALWAYS polled, and a worker that turns
//! publishes into readings and acknowledges them.
//!
//! ## Acknowledgement rule
//! QoS 1 with manual acks and a persistent session (`clean_session = false`, fixed client id):
//! - readings durable (`ReadingSink::submit` → Ok) ⇒ PUBACK;
//! - payload invalid or readings permanently refused ⇒ PUBACK + a line in the reject log
//!   (the broker must not redeliver something that can never be stored);
//! - queue full / storage error ⇒ NO PUBACK; the worker retries the same message with backoff
//!   and processes nothing else meanwhile, so at most `inflight` messages wait at the broker's
//!   side and the broker redelivers them if the gateway dies.
//!
//! A message redelivered (DUP) after it was already stored (the PUBACK was lost in a
//! disconnect) is recognised by topic + payload among recently stored ones and only acked.
//!
//! The poller never awaits the sink; it hands publishes to the worker through a channel whose
//! depth the broker's inflight window bounds. Requests to the client from the poller use the
//! non-blocking `try_*` calls so a full request channel can never stall the event loop.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, Publish, QoS, Transport};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use vectorcare_hal::clock::Clock;

use super::MqttError;
use super::config::MqttConfig;
use crate::decode::mqtt::{PayloadContext, decode_payload};
use crate::reading::{ClockContext, DeviceIdentity, SourceKind};
use crate::sources::backoff::Backoff;
use crate::sources::{IngestError, ReadingSink};

/// What the periodic health message reports; the runtime keeps it current.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HealthSnapshot {
    pub queue_depth: u64,
    pub last_upload_ok_unix: Option<i64>,
    pub devices_connected: u32,
}

/// Source status for the status view. Counters only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttStatus {
    pub connected: bool,
    pub connects: u64,
    /// Last connection error (e.g. "connection refused: bad user name or password").
    pub last_error: Option<String>,
    pub received: u64,
    pub stored_messages: u64,
    pub rejected_messages: u64,
    /// Redeliveries of already-stored messages that were only acknowledged.
    pub duplicates_acked: u64,
    /// Times the queue refused temporarily (messages held unacknowledged).
    pub held_for_queue: u64,
}

pub struct MqttSource {
    config: MqttConfig,
    clock: Arc<dyn Clock>,
    health: Option<watch::Receiver<HealthSnapshot>>,
    status: watch::Sender<MqttStatus>,
}

impl std::fmt::Debug for MqttSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSource")
            .field("topics", &self.config.topics.len())
            .finish()
    }
}

const RECENT_STORED: usize = 1024;
const STATUS_ONLINE: &[u8] = b"online";
const STATUS_OFFLINE: &[u8] = b"offline";

impl MqttSource {
    pub fn new(
        config: MqttConfig,
        clock: Arc<dyn Clock>,
        health: Option<watch::Receiver<HealthSnapshot>>,
    ) -> Self {
        let (status, _) = watch::channel(MqttStatus::default());
        Self {
            config,
            clock,
            health,
            status,
        }
    }

    pub fn status(&self) -> watch::Receiver<MqttStatus> {
        self.status.subscribe()
    }

    fn options(&self) -> Result<MqttOptions, MqttError> {
        let c = &self.config;
        let mut opts = MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
        opts.set_keep_alive(c.keep_alive)
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_inflight(c.inflight);
        if let Some(user) = &c.username {
            let password = match &c.password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| {
                        MqttError::Credentials(format!("reading password_file failed: {e}"))
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
                None => String::new(),
            };
            opts.set_credentials(user.clone(), password);
        }
        if let Some(tls) = &c.tls {
            let cfg = super::tls::client_config(tls)?;
            opts.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(cfg),
            ));
        }
        if let Some(status) = &c.status {
            opts.set_last_will(LastWill::new(
                status.status_topic(),
                STATUS_OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        }
        Ok(opts)
    }

    /// Runs until `shutdown` completes. Errors only for configuration that cannot work
    /// (unreadable password file, bad TLS material); connection failures are retried forever.
    pub async fn run(
        self,
        sink: ReadingSink,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), MqttError> {
        let opts = self.options()?;
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (work_tx, work_rx) = mpsc::unbounded_channel::<Publish>();
        let poller = async {
            let mut backoff =
                Backoff::new(self.config.reconnect_initial, self.config.reconnect_max);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        backoff.reset();
                        tracing::info!(session_present = ack.session_present, "mqtt connected");
                        self.status.send_modify(|s| {
                            s.connected = true;
                            s.connects += 1;
                            s.last_error = None;
                        });
                        // Subscribing again on a kept session is harmless and covers a broker
                        // that lost its sessions.
                        for t in &self.config.topics {
                            if let Err(e) = client.try_subscribe(t.filter.clone(), QoS::AtLeastOnce)
                            {
                                tracing::warn!(error = %e, "mqtt subscribe request failed");
                            }
                        }
                        if let Some(status) = &self.config.status {
                            let _ = client.try_publish(
                                status.status_topic(),
                                QoS::AtLeastOnce,
                                true,
                                STATUS_ONLINE,
                            );
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        self.status.send_modify(|s| s.received += 1);
                        if work_tx.send(publish).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let was_connected = self.status.borrow().connected;
                        if was_connected {
                            tracing::warn!(error = %e, "mqtt connection lost, reconnecting");
                        } else {
                            tracing::debug!(error = %e, "mqtt connect failed");
                        }
                        self.status.send_modify(|s| {
                            s.connected = false;
                            s.last_error = Some(e.to_string());
                        });
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
            }
        };
        let worker = Worker {
            source: &self,
            client: client.clone(),
            sink,
            recent: RecentStored::default(),
        }
        .run(work_rx);
        let health = self.publish_health(&client);
        tokio::select! {
            _ = poller => {}
            _ = worker => {}
            _ = health => {}
            _ = shutdown => {}
        }
        // Orderly goodbye: "offline" explicitly (a clean disconnect does not fire the will).
        if self.status.borrow().connected {
            if let Some(status) = &self.config.status {
                let _ = client.try_publish(
                    status.status_topic(),
                    QoS::AtLeastOnce,
                    true,
                    STATUS_OFFLINE,
                );
            }
            let _ = client.try_disconnect();
            let flush = async {
                while let Ok(event) = eventloop.poll().await {
                    if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = event {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), flush).await;
        }
        self.status.send_modify(|s| s.connected = false);
        Ok(())
    }

    async fn publish_health(&self, client: &AsyncClient) {
        let (Some(status), Some(health)) = (&self.config.status, &self.health) else {
            return std::future::pending().await;
        };
        let Some(every) = status.health_interval else {
            return std::future::pending().await;
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.status.borrow().connected {
                continue;
            }
            let snapshot = *health.borrow();
            let body = serde_json::json!({
                "at": OffsetDateTime::from(self.clock.now()).format(&Rfc3339).unwrap_or_default(),
                "queue_depth": snapshot.queue_depth,
                "last_upload_ok_unix": snapshot.last_upload_ok_unix,
                "devices_connected": snapshot.devices_connected,
            });
            let _ = client.try_publish(
                status.health_topic(),
                QoS::AtMostOnce,
                false,
                body.to_string(),
            );
        }
    }
}

/// Topic+payload fingerprints of recently stored messages (bounded).
#[derive(Default)]
struct RecentStored {
    order: VecDeque<u64>,
    set: HashSet<u64>,
}

impl RecentStored {
    fn key(p: &Publish) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        p.topic.hash(&mut h);
        p.payload.hash(&mut h);
        h.finish()
    }
    fn contains(&self, k: u64) -> bool {
        self.set.contains(&k)
    }
    fn insert(&mut self, k: u64) {
        if self.set.insert(k) {
            self.order.push_back(k);
            if self.order.len() > RECENT_STORED
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

struct Worker<'a> {
    source: &'a MqttSource,
    client: AsyncClient,
    sink: ReadingSink,
    recent: RecentStored,
}

impl Worker<'_> {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Publish>) {
        while let Some(publish) = rx.recv().await {
            if !self.handle(&publish).await {
                return; // shutting down: leave it unacknowledged for redelivery
            }
        }
    }

    async fn ack(&self, publish: &Publish) {
        if let Err(e) = self.client.ack(publish).await {
            tracing::warn!(error = %e, "mqtt ack request failed");
        }
    }

    /// Returns false when the gateway is shutting down.
    async fn handle(&mut self, publish: &Publish) -> bool {
        let status = &self.source.status;
        let key = RecentStored::key(publish);
        if publish.dup && self.recent.contains(key) {
            status.send_modify(|s| s.duplicates_acked += 1);
            self.ack(publish).await;
            return true;
        }
        let Some((topic_cfg, device_id)) = self
            .source
            .config
            .topics
            .iter()
            .find_map(|t| t.device_for(&publish.topic).map(|d| (t, d)))
        else {
            self.reject(publish, "no topic mapping matches").await;
            return true;
        };
        let now = self.source.clock.now();
        let ctx = PayloadContext {
            device: DeviceIdentity {
                source: SourceKind::Mqtt,
                address: device_id,
                system_id: None,
                manufacturer: topic_cfg.manufacturer.clone(),
                model: topic_cfg.model.clone(),
                serial_number: None,
            },
            received_at: OffsetDateTime::from(now),
            clock: ClockContext {
                device_offset_seconds: None,
                gateway_clock_synchronized: self.source.clock.sync_state().is_synchronized(),
            },
        };
        let readings = match decode_payload(topic_cfg.format, &publish.payload, &ctx) {
            Ok(r) => r,
            Err(e) => {
                self.reject(publish, &e.to_string()).await;
                return true;
            }
        };
        let mut backoff = Backoff::new(
            self.source.config.reconnect_initial,
            self.source.config.reconnect_max,
        );
        loop {
            match self.sink.submit(readings.clone()).await {
                Ok(()) => {
                    self.recent.insert(key);
                    status.send_modify(|s| s.stored_messages += 1);
                    self.ack(publish).await;
                    return true;
                }
                Err(IngestError::ShuttingDown) => return false,
                Err(e) if e.is_permanent() => {
                    self.reject(publish, &e.to_string()).await;
                    return true;
                }
                Err(e) => {
                    // Not durable: no PUBACK. Hold this message (and so the whole inflight
                    // window) until the queue takes it again.
                    tracing::debug!(error = %e, "queue refused mqtt readings; holding the message unacknowledged");
                    status.send_modify(|s| s.held_for_queue += 1);
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Acknowledges and records the payload with the reason in the reject log (never in the
    /// normal log: the payload may hold measurements).
    async fn reject(&self, publish: &Publish, reason: &str) {
        tracing::warn!("mqtt payload rejected (see the reject log)");
        tracing::debug!(topic = %publish.topic, reason, "mqtt payload rejected");
        self.source.status.send_modify(|s| s.rejected_messages += 1);
        if let Some(path) = &self.source.config.reject_log {
            let entry = serde_json::json!({
                "at": OffsetDateTime::from(self.source.clock.now()).format(&Rfc3339).unwrap_or_default(),
                "topic": publish.topic,
                "reason": reason,
                "payload": String::from_utf8_lossy(&publish.payload),
            });
            if let Err(e) = append_line(path, &entry.to_string()).await {
                tracing::error!(error = %e, "writing the mqtt reject log failed");
            }
        }
        self.ack(publish).await;
    }
}

async fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .await?;
    file.write_all(format!("{line}\n").as_bytes()).await?;
    file.flush().await
}
