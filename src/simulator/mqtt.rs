//! MQTT devices: each simulated device is its own MQTT client (client id `vcsim-<name>`)
//! publishing its payloads at QoS 1 to its topic and waiting for the broker's PUBACK. While
//! "disconnected" a device keeps its measurements and publishes them after reconnecting (store
//! and forward, as home-hub sensors do).

use std::collections::HashMap;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};

use super::SimError;
use super::encode::mqtt_payload;
use super::engine::{Action, Target};
use super::scenario::{DeviceSpec, Scenario, Transport};

const ACK_TIMEOUT: Duration = Duration::from_secs(10);

struct Connection {
    client: AsyncClient,
    events: EventLoop,
}

/// Publishes to the broker at `host:port` (plain TCP).
pub struct MqttTarget {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
    connections: HashMap<usize, Connection>,
    offline: HashMap<usize, Vec<Vec<u8>>>,
    published: u64,
}

impl MqttTarget {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            credentials: None,
            connections: HashMap::new(),
            offline: HashMap::new(),
            published: 0,
        }
    }

    pub fn with_credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Messages acknowledged by the broker so far.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Parses `mqtt://host:port`.
    pub fn from_url(url: &str) -> Result<Self, SimError> {
        let rest = url
            .strip_prefix("mqtt://")
            .ok_or_else(|| SimError::Mqtt(format!("{url}: want mqtt://host:port")))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| SimError::Mqtt(format!("{url}: no port")))?;
        let port = port
            .trim_end_matches('/')
            .parse()
            .map_err(|_| SimError::Mqtt(format!("{url}: bad port")))?;
        Ok(Self::new(host, port))
    }

    fn connection(&mut self, index: usize, name: &str) -> &mut Connection {
        self.connections.entry(index).or_insert_with(|| {
            let mut opts = MqttOptions::new(format!("vcsim-{name}"), self.host.clone(), self.port);
            opts.set_keep_alive(Duration::from_secs(30));
            if let Some((user, password)) = &self.credentials {
                opts.set_credentials(user, password);
            }
            let (client, events) = AsyncClient::new(opts, 16);
            Connection { client, events }
        })
    }

    async fn publish(
        &mut self,
        index: usize,
        device: &DeviceSpec,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<(), SimError> {
        let conn = self.connection(index, &device.name);
        conn.client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .map_err(|e| SimError::Mqtt(e.to_string()))?;
        let wait = async {
            loop {
                match conn.events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(SimError::Mqtt(e.to_string())),
                }
            }
        };
        let result = tokio::time::timeout(ACK_TIMEOUT, wait)
            .await
            .map_err(|_| SimError::Mqtt("no PUBACK from the broker".to_owned()))?;
        if result.is_err() {
            // A fresh connection next time rather than a half-broken one.
            self.connections.remove(&index);
        } else {
            self.published += 1;
        }
        result
    }

    async fn disconnect(&mut self, index: usize) {
        if let Some(mut conn) = self.connections.remove(&index) {
            let _ = conn.client.try_disconnect();
            let drain = async {
                while let Ok(ev) = conn.events.poll().await {
                    if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        }
    }
}

impl Target for MqttTarget {
    async fn start(&mut self, _scenario: &Scenario) -> Result<(), SimError> {
        Ok(())
    }

    fn plays(&self, transport: &Transport) -> bool {
        matches!(transport, Transport::Mqtt { .. })
    }

    async fn apply(
        &mut self,
        device: &DeviceSpec,
        index: usize,
        action: &Action,
    ) -> Result<(), SimError> {
        let Transport::Mqtt {
            schema,
            measures,
            topic,
        } = &device.transport
        else {
            return Ok(());
        };
        let payload = match action {
            Action::Measure(sample) => mqtt_payload(device, *schema, *measures, sample),
            Action::Garbage(bytes) => bytes.clone(),
            Action::Store(_) => return Ok(()),
            Action::Disconnect => {
                self.offline.entry(index).or_default();
                self.disconnect(index).await;
                return Ok(());
            }
            Action::Reconnect => {
                for payload in self.offline.remove(&index).unwrap_or_default() {
                    self.publish(index, device, topic, payload).await?;
                }
                return Ok(());
            }
        };
        if let Some(waiting) = self.offline.get_mut(&index) {
            waiting.push(payload);
            return Ok(());
        }
        self.publish(index, device, topic, payload).await
    }

    async fn finish(&mut self) -> Result<(), SimError> {
        let indices: Vec<usize> = self.connections.keys().copied().collect();
        for i in indices {
            self.disconnect(i).await;
        }
        Ok(())
    }
}
