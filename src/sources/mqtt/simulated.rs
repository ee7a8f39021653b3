//! A simulated MQTT vital-signs device: publishes payloads at QoS 1 and waits for the broker's
//! PUBACKs. Used by `demo` (against the embedded broker) and by tests.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

use super::MqttError;

/// Publishes each payload to `topic` on 127.0.0.1:`port` and returns once all are acknowledged.
pub async fn publish_payloads(
    port: u16,
    client_id: &str,
    credentials: Option<(&str, &str)>,
    topic: &str,
    payloads: &[Vec<u8>],
) -> Result<(), MqttError> {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10));
    if let Some((user, password)) = credentials {
        opts.set_credentials(user, password);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, payloads.len().max(1) + 4);
    for p in payloads {
        client
            .try_publish(topic, QoS::AtLeastOnce, false, p.clone())
            .map_err(|e| MqttError::Client(e.to_string()))?;
    }
    let mut acked = 0;
    let work = async {
        while acked < payloads.len() {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(MqttError::Client(e.to_string())),
            }
        }
        let _ = client.try_disconnect();
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                break;
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| MqttError::Client("publishing timed out".to_owned()))?
}

/// Example payloads of the project's vitals schema (docs/MQTT.md): a blood pressure with pulse
/// and a body temperature, timestamped `time` (RFC 3339).
pub fn demo_vitals_payloads(time: &str) -> Vec<Vec<u8>> {
    vec![
        serde_json::json!({
            "schema": "vectorcare.vitals/1",
            "device": {"manufacturer": "VectorCare", "model": "Simulated cuff", "serial_number": "SIM-0001"},
            "readings": [
                {"kind": "blood_pressure", "systolic": 128, "diastolic": 82, "mean": 97, "unit": "mm[Hg]", "time": time},
                {"kind": "pulse_rate", "value": 66, "unit": "/min", "time": time}
            ]
        })
        .to_string()
        .into_bytes(),
        format!(r#"{{"kind":"body_temperature","value":36.80,"unit":"Cel","time":"{time}"}}"#).into_bytes(),
    ]
}
