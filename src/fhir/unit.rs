//! [`UploadUnit`]'s in-memory form: every text field side by side in ONE `String`, cut by
//! byte spans (issue #5). The uploader decodes tens of thousands of units per minute when it
//! drains a backlog; one allocation per unit instead of one per field (up to fourteen) took
//! decoding + freeing units from 12 % of the drain's main-thread CPU to ≈ 3 %, and the drain
//! from 24.0 to 17.7 µs/obs in that round's runs (docs/PERFORMANCE.md, "Round 4"). The owned,
//! serde-facing form stays [`super::UploadUnitData`].

use super::{Identifier, SourceRecord, StatusObservation, UploadUnitData};

/// The text fields of a unit, in their order in `UploadUnit::text` and in the queued format
/// (`unit_format.rs`).
#[derive(Clone, Copy)]
pub(super) enum Field {
    Observation,
    Device,
    Gateway,
    IdentifierSystem,
    IdentifierValue,
    Id,
    DeviceSystem,
    DeviceValue,
    GatewaySystem,
    GatewayValue,
    StatusObservation,
    StatusSystem,
    StatusValue,
    StatusId,
}

/// How many text fields a unit has (`Field`'s variants).
pub(super) const FIELD_COUNT: usize = 14;

/// One reading ready for upload; what the durable queue stores.
///
/// Resources are kept as compact JSON text (exact decimals). The constructor and `Deserialize`
/// both check that the texts are JSON objects, so a unit can always be put into a bundle; the
/// queue stores units with [`super::encode_unit`], whose reader trusts that check (see
/// [`super::unit_format`], "Why the JSON texts are not parsed again").
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "UploadUnitData", into = "UploadUnitData")]
pub struct UploadUnit {
    /// Every field's text, in `Field` order (the status fields only with `has_status`):
    /// concatenated by `pack`, or a queued payload's own buffer with its framing blanked
    /// (`from_framed`). So two equal units may differ in text and spans: compare fields.
    text: String,
    /// `[start, end)` of each field in `text`, on character boundaries.
    spans: [[u32; 2]; FIELD_COUNT],
    has_status: bool,
    source_record: Option<SourceRecord>,
}

/// An identifier (system + value) borrowed from a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentifierRef<'a> {
    pub system: &'a str,
    pub value: &'a str,
}

impl IdentifierRef<'_> {
    pub fn to_identifier(&self) -> Identifier {
        Identifier {
            system: self.system.to_owned(),
            value: self.value.to_owned(),
        }
    }
}

impl<'a> From<&'a Identifier> for IdentifierRef<'a> {
    fn from(identifier: &'a Identifier) -> Self {
        IdentifierRef {
            system: &identifier.system,
            value: &identifier.value,
        }
    }
}

impl PartialEq<Identifier> for IdentifierRef<'_> {
    fn eq(&self, other: &Identifier) -> bool {
        self.system == other.system && self.value == other.value
    }
}

/// The status-bits Observation of a unit, borrowed (see [`StatusObservation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRef<'a> {
    /// Compact JSON text (no `id`; PUT mode splices it in).
    pub observation: &'a str,
    pub identifier: IdentifierRef<'a>,
    /// Deterministic id for PUT mode.
    pub id: &'a str,
}

/// The fields of a unit as borrowed text, for packing.
pub(super) struct UnitParts<'a> {
    pub observation: &'a str,
    pub device: &'a str,
    pub gateway: &'a str,
    pub identifier: IdentifierRef<'a>,
    pub id: &'a str,
    pub device_identifier: IdentifierRef<'a>,
    pub gateway_identifier: IdentifierRef<'a>,
    pub status: Option<StatusRef<'a>>,
    pub source_record: Option<SourceRecord>,
}

impl UploadUnit {
    /// Packs checked fields (callers check that the resource texts are JSON objects).
    pub(super) fn pack(parts: UnitParts<'_>) -> Result<Self, String> {
        let mut texts = [
            parts.observation,
            parts.device,
            parts.gateway,
            parts.identifier.system,
            parts.identifier.value,
            parts.id,
            parts.device_identifier.system,
            parts.device_identifier.value,
            parts.gateway_identifier.system,
            parts.gateway_identifier.value,
            "",
            "",
            "",
            "",
        ];
        if let Some(s) = parts.status {
            texts[Field::StatusObservation as usize] = s.observation;
            texts[Field::StatusSystem as usize] = s.identifier.system;
            texts[Field::StatusValue as usize] = s.identifier.value;
            texts[Field::StatusId as usize] = s.id;
        }
        let total: usize = texts.iter().map(|t| t.len()).sum();
        if u32::try_from(total).is_err() {
            return Err("unit is larger than 4 GiB".into());
        }
        let mut text = String::with_capacity(total);
        let mut spans = [[0u32; 2]; FIELD_COUNT];
        for (span, t) in spans.iter_mut().zip(texts) {
            // Cannot truncate: the total was checked above.
            let start = text.len() as u32;
            text.push_str(t);
            *span = [start, text.len() as u32];
        }
        Ok(Self {
            text,
            spans,
            has_status: parts.status.is_some(),
            source_record: parts.source_record,
        })
    }

    /// A unit whose text is a queued payload's buffer (`unit_format::decode_unit_owned`):
    /// `spans` must lie on character boundaries of `text`.
    pub(super) fn from_framed(
        text: String,
        spans: [[u32; 2]; FIELD_COUNT],
        has_status: bool,
        source_record: Option<SourceRecord>,
    ) -> Self {
        Self {
            text,
            spans,
            has_status,
            source_record,
        }
    }

    fn get(&self, field: Field) -> &str {
        self.field_text(field as usize)
    }

    /// Field `i` (a `Field as usize`): "" for the status fields of a unit without status.
    pub(super) fn field_text(&self, i: usize) -> &str {
        let [start, end] = self.spans[i];
        // The spans lie on character boundaries (`pack`, `from_framed`); `get` cannot fail.
        self.text.get(start as usize..end as usize).unwrap_or("")
    }

    fn identifier_at(&self, system: Field, value: Field) -> IdentifierRef<'_> {
        IdentifierRef {
            system: self.get(system),
            value: self.get(value),
        }
    }

    /// The Observation JSON (no `id`; [`super::build_bundle`] adds it in PUT mode).
    pub fn observation_json(&self) -> &str {
        self.get(Field::Observation)
    }
    pub fn device_json(&self) -> &str {
        self.get(Field::Device)
    }
    pub fn gateway_json(&self) -> &str {
        self.get(Field::Gateway)
    }
    /// Observation.identifier (system + value), the de-duplication key.
    pub fn identifier(&self) -> IdentifierRef<'_> {
        self.identifier_at(Field::IdentifierSystem, Field::IdentifierValue)
    }
    /// Deterministic Observation id for update-as-create (PUT Observation/{id}).
    pub fn id(&self) -> &str {
        self.get(Field::Id)
    }
    pub fn device_identifier(&self) -> IdentifierRef<'_> {
        self.identifier_at(Field::DeviceSystem, Field::DeviceValue)
    }
    pub fn gateway_identifier(&self) -> IdentifierRef<'_> {
        self.identifier_at(Field::GatewaySystem, Field::GatewayValue)
    }
    /// The status-bits Observation sent next to the measurement, if any.
    pub fn status_observation(&self) -> Option<StatusRef<'_>> {
        self.has_status.then(|| StatusRef {
            observation: self.get(Field::StatusObservation),
            identifier: self.identifier_at(Field::StatusSystem, Field::StatusValue),
            id: self.get(Field::StatusId),
        })
    }
    /// The device record this unit came from, when the reading had a record sequence number.
    pub fn source_record(&self) -> Option<&SourceRecord> {
        self.source_record.as_ref()
    }

    /// The owned form (serde, `queue show`).
    pub(super) fn to_data(&self) -> UploadUnitData {
        UploadUnitData {
            observation: self.observation_json().to_owned(),
            device: self.device_json().to_owned(),
            gateway: self.gateway_json().to_owned(),
            identifier: self.identifier().to_identifier(),
            id: self.id().to_owned(),
            device_identifier: self.device_identifier().to_identifier(),
            gateway_identifier: self.gateway_identifier().to_identifier(),
            status: self.status_observation().map(|s| StatusObservation {
                observation: s.observation.to_owned(),
                identifier: s.identifier.to_identifier(),
                id: s.id.to_owned(),
            }),
            source_record: self.source_record.clone(),
        }
    }
}

/// Units are equal when their fields are, however their text is laid out.
impl PartialEq for UploadUnit {
    fn eq(&self, other: &Self) -> bool {
        self.has_status == other.has_status
            && self.source_record == other.source_record
            && (0..FIELD_COUNT).all(|i| self.field_text(i) == other.field_text(i))
    }
}

impl Eq for UploadUnit {}

impl std::fmt::Debug for UploadUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_data().fmt(f)
    }
}

impl From<UploadUnit> for UploadUnitData {
    fn from(unit: UploadUnit) -> Self {
        unit.to_data()
    }
}

impl UploadUnitData {
    fn parts(&self) -> UnitParts<'_> {
        let id = IdentifierRef::from;
        UnitParts {
            observation: &self.observation,
            device: &self.device,
            gateway: &self.gateway,
            identifier: id(&self.identifier),
            id: &self.id,
            device_identifier: id(&self.device_identifier),
            gateway_identifier: id(&self.gateway_identifier),
            status: self.status.as_ref().map(|s| StatusRef {
                observation: &s.observation,
                identifier: id(&s.identifier),
                id: &s.id,
            }),
            source_record: self.source_record.clone(),
        }
    }
}

impl TryFrom<UploadUnitData> for UploadUnit {
    type Error = String;
    fn try_from(data: UploadUnitData) -> Result<Self, String> {
        for (name, text) in [
            ("observation", data.observation.as_str()),
            ("device", &data.device),
            ("gateway", &data.gateway),
            (
                "status observation",
                data.status.as_ref().map_or("{}", |s| &s.observation),
            ),
        ] {
            let raw: &serde_json::value::RawValue =
                serde_json::from_str(text).map_err(|e| format!("{name} is not JSON: {e}"))?;
            if !raw.get().starts_with('{') {
                return Err(format!("{name} is not a JSON object"));
            }
        }
        UploadUnit::pack(data.parts())
    }
}
