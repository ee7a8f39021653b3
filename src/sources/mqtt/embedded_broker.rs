//! An MQTT broker inside the process (rumqttd) on loopback, so `demo` needs no install.
//!
//! rumqttd runs its router and listener on threads of its own and cannot be stopped; the
//! broker lives until the process exits, which is what a demo needs. Not for production.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::MqttError;

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    pub port: u16,
    pub handle: std::thread::JoinHandle<()>,
}

/// Starts a broker on 127.0.0.1 at a free port and waits until it accepts connections.
pub fn start() -> Result<EmbeddedBroker, MqttError> {
    // rumqttd binds by itself and does not report the port it got, so pick a free one first.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| MqttError::Broker(format!("no free loopback port: {e}")))?
        .port();
    let config_text = format!(
        r#"
id = 0
[router]
max_connections = 64
max_outgoing_packet_count = 200
max_segment_size = 1048576
max_segment_count = 10
[v4.1]
name = "demo"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 65536
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let config: rumqttd::Config =
        toml::from_str(&config_text).map_err(|e| MqttError::Broker(format!("config: {e}")))?;
    let handle = std::thread::Builder::new()
        .name("embedded-mqtt-broker".to_owned())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|e| MqttError::Broker(format!("thread: {e}")))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline || handle.is_finished() {
            return Err(MqttError::Broker("did not start listening".to_owned()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(EmbeddedBroker { port, handle })
}
