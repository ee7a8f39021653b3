//! MQTT source (issue #7): subscribes to configured topic filters, decodes payloads (vitals
//! JSON, Open mHealth, FHIR Observation) and acknowledges each QoS 1 message only after its
//! readings are durable. Also: the embedded broker for `demo` and a simulated device publisher.

pub mod config;
#[cfg(feature = "demo")]
pub mod embedded_broker;
#[cfg(test)]
mod mosquitto;
pub mod simulated;
pub mod source;
#[cfg(test)]
mod tests;
mod tls;

pub use config::{MqttConfig, RawMqttConfig};
pub use source::{HealthSnapshot, MqttSource, MqttStatus};

/// Why the MQTT source or its helpers could not work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MqttError {
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("MQTT client: {0}")]
    Client(String),
    #[error("embedded broker: {0}")]
    Broker(String),
}
