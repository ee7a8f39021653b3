//! MQTT source (issue #7).
