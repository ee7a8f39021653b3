//! The slice of FHIR R4 JSON this gateway writes, as serde structs. Quantities serialise
//! their value as an exact JSON number ("2.00" stays 2.00) through `serde_json`'s RawValue,
//! which `serde_json::Value` cannot do (it would turn 2.00 into 2.0).

use serde::Serialize;
use serde_json::value::RawValue;

use crate::reading::Decimal;

#[derive(Debug, Clone, Serialize)]
pub struct Coding {
    pub system: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Coding {
    pub fn new(system: &str, code: &str, display: &str) -> Self {
        Self {
            system: system.into(),
            code: code.into(),
            display: Some(display.into()),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CodeableConcept {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub reference: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, Hash)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

/// A decimal written as an exact JSON number.
#[derive(Debug, Clone, Copy)]
pub struct ExactDecimal(pub Decimal);

impl Serialize for ExactDecimal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // `Decimal`'s Display is plain JSON-number syntax (digits, optional '-', one '.').
        let raw = RawValue::from_string(self.0.to_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Quantity {
    pub value: ExactDecimal,
    pub unit: String,
    pub system: String,
    pub code: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub url: String,
    pub value_reference: Reference,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationComponent {
    pub code: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_boolean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_codeable_concept: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_absent_reason: Option<CodeableConcept>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub profile: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub resource_type: &'static str,
    pub meta: Meta,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    pub identifier: Vec<Identifier>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    pub effective_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_absent_reason: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_site: Option<CodeableConcept>,
    pub device: Reference,
    /// The measurement a status-bits Observation describes (PHD IG).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub derived_from: Vec<Reference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<ObservationComponent>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceIdentifier {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<CodeableConcept>,
    pub system: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceName {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub resource_type: &'static str,
    pub identifier: Vec<DeviceIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_number: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_name: Vec<DeviceName>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<CodeableConcept>,
}
