//! Sources: BLE, serial and MQTT adapters. Each emits device-neutral `Reading`s and never sees
//! FHIR, the queue's storage or HTTP.
