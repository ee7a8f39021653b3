//! Device resources: the measuring device and the gateway itself (PHD IG: the PHG is a
//! Device too, referenced from every Observation through the gatewayDevice extension).

use super::GatewayIdentity;
use super::identity::{self, GATEWAY_SYSTEM};
use super::model::{CodeableConcept, Coding, Device, DeviceIdentifier, DeviceName, Identifier};
use crate::reading::DeviceIdentity;

fn identifier_type(system: &str) -> Option<CodeableConcept> {
    let (code, display) = match system {
        identity::EUI64_SYSTEM => ("SYSID", "IEEE 11073 System Identifier"),
        identity::BLUETOOTH_SYSTEM => ("BTMAC", "Bluetooth MAC address"),
        _ => return None,
    };
    Some(CodeableConcept {
        coding: vec![Coding::new(
            "http://hl7.org/fhir/uv/phd/CodeSystem/ContinuaDeviceIdentifiers",
            code,
            display,
        )],
        text: None,
    })
}

pub fn measuring_device(device: &DeviceIdentity) -> (Device, Identifier) {
    let ids = identity::device_identifiers(device);
    let key = ids[0].clone();
    let identifier = ids
        .into_iter()
        .map(|id| DeviceIdentifier {
            kind: identifier_type(&id.system),
            system: id.system,
            value: id.value,
        })
        .collect();
    let resource = Device {
        resource_type: "Device",
        identifier,
        manufacturer: device.manufacturer.clone(),
        serial_number: device.serial_number.clone(),
        model_number: device.model.clone(),
        device_name: Vec::new(),
        kind: None,
    };
    (resource, key)
}

pub fn gateway_device(gateway: &GatewayIdentity) -> (Device, Identifier) {
    let key = Identifier {
        system: GATEWAY_SYSTEM.into(),
        value: gateway.id.clone(),
    };
    let resource = Device {
        resource_type: "Device",
        identifier: vec![DeviceIdentifier {
            kind: None,
            system: key.system.clone(),
            value: key.value.clone(),
        }],
        manufacturer: None,
        serial_number: gateway.serial.clone(),
        model_number: None,
        device_name: vec![DeviceName {
            name: gateway.name.clone(),
            kind: "user-friendly-name",
        }],
        kind: Some(CodeableConcept {
            coding: Vec::new(),
            text: Some("Personal health gateway".into()),
        }),
    };
    (resource, key)
}
