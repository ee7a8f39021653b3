//! The in-memory FHIR store of the test double: batch/transaction Bundles with conditional
//! create (`ifNoneExist` on `identifier`) and PUT, a basic R4 structure check, identifier
//! search, and a dump for the demo.
//!
//! It rejects what a real server rejects for the shapes the gateway sends: wrong
//! `resourceType`, missing required elements of Observation (`status`, `code`), bad ids,
//! request URLs that do not match the resource, unsupported methods. Transactions are
//! all-or-nothing and resolve `urn:uuid:` references between their entries.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::token::scopes_permit;

/// Counts the test double reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Resources created (new).
    pub accepted: u64,
    /// Conditional creates that matched an existing resource, and PUTs to an existing id.
    pub duplicate: u64,
    /// Entries (or whole Bundles) refused with a 4xx.
    pub rejected: u64,
    /// Bundles processed (any outcome).
    pub bundles: u64,
}

/// A failure of one entry: the HTTP status and an OperationOutcome.
#[derive(Debug, Clone)]
pub(crate) struct EntryError {
    pub status: u16,
    pub outcome: Value,
}

pub(crate) fn operation_outcome(code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]
    })
}

fn invalid(diagnostics: impl AsRef<str>) -> EntryError {
    EntryError {
        status: 400,
        outcome: operation_outcome("invalid", diagnostics.as_ref()),
    }
}

fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        403 => "Forbidden",
        412 => "Precondition Failed",
        _ => "",
    };
    format!("{status} {reason}").trim_end().to_owned()
}

/// What one entry did, before it is committed.
#[derive(Debug, Clone)]
enum Planned {
    Create {
        ty: String,
        id: String,
        resource: Value,
    },
    Existing {
        ty: String,
        id: String,
    },
    Update {
        ty: String,
        id: String,
        resource: Value,
    },
}

#[derive(Debug, Default)]
pub(crate) struct FhirStore {
    /// type → id → resource.
    resources: BTreeMap<String, BTreeMap<String, Value>>,
    /// (type, system|value) → id: the identifier index a real server keeps for conditional create.
    by_identifier: HashMap<(String, String), String>,
    next_id: u64,
    pub stats: Stats,
    /// Largest number of conditional creates accepted in one transaction (Medplum: 8).
    pub max_transaction_conditional_creates: Option<usize>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Basic base-R4 structure checks for the resource types the gateway writes.
fn check_resource(ty: &str, resource: &Value) -> Result<(), EntryError> {
    let obj = resource
        .as_object()
        .ok_or_else(|| invalid("resource is not a JSON object"))?;
    if obj.get("resourceType").and_then(Value::as_str) != Some(ty) {
        return Err(invalid(format!("resourceType must be {ty}")));
    }
    if let Some(id) = obj.get("id")
        && !id.as_str().is_some_and(valid_id)
    {
        return Err(invalid("id is not a valid FHIR id"));
    }
    if let Some(identifiers) = obj.get("identifier") {
        let ok = identifiers.as_array().is_some_and(|list| {
            list.iter().all(|i| {
                i.get("system").is_none_or(Value::is_string)
                    && i.get("value").is_none_or(Value::is_string)
            })
        });
        if !ok {
            return Err(invalid(
                "identifier must be a list of {system, value} strings",
            ));
        }
    }
    match ty {
        "Observation" => {
            const STATUSES: [&str; 8] = [
                "registered",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "cancelled",
                "entered-in-error",
                "unknown",
            ];
            let status_ok = obj
                .get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| STATUSES.contains(&s));
            if !status_ok {
                return Err(invalid(
                    "Observation.status is required and must be a valid code",
                ));
            }
            if !obj.get("code").is_some_and(Value::is_object) {
                return Err(invalid("Observation.code is required"));
            }
        }
        "Device" | "Patient" | "Provenance" => {}
        other => {
            return Err(EntryError {
                status: 400,
                outcome: operation_outcome("not-supported", &format!("type {other} not supported")),
            });
        }
    }
    Ok(())
}

/// Parses `identifier=system|value` (the only conditional-create query the double supports).
fn parse_if_none_exist(query: &str) -> Result<String, EntryError> {
    let query = query.split_once('?').map_or(query, |(_, q)| q);
    let mut pairs = form_urlencoded::parse(query.as_bytes());
    match (pairs.next(), pairs.next()) {
        (Some((k, v)), None) if k == "identifier" && !v.is_empty() => Ok(v.into_owned()),
        _ => Err(invalid(
            "ifNoneExist must be a single identifier=system|value search",
        )),
    }
}

fn identifier_keys(resource: &Value) -> Vec<String> {
    resource
        .get("identifier")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|i| {
                    let system = i.get("system").and_then(Value::as_str).unwrap_or("");
                    let value = i.get("value").and_then(Value::as_str)?;
                    Some(format!("{system}|{value}"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces every `reference` equal to a key of `map` (transaction-internal references).
fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                if k == "reference" {
                    if let Some(target) = v.as_str().and_then(|r| map.get(r)) {
                        *v = Value::String(target.clone());
                    }
                } else {
                    rewrite_references(v, map);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_references(v, map)),
        _ => {}
    }
}

impl FhirStore {
    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("td-{}", self.next_id)
    }

    fn lookup_identifier(&self, ty: &str, key: &str) -> Option<String> {
        self.by_identifier
            .get(&(ty.to_owned(), key.to_owned()))
            .cloned()
    }

    /// Plans one entry against the store plus what earlier entries of the same Bundle planned.
    fn plan_entry(
        &mut self,
        entry: &Value,
        scopes: &[String],
        pending_identifiers: &HashMap<(String, String), String>,
    ) -> Result<Planned, EntryError> {
        let request = entry
            .get("request")
            .ok_or_else(|| invalid("entry.request is required"))?;
        let method = request.get("method").and_then(Value::as_str).unwrap_or("");
        let url = request.get("url").and_then(Value::as_str).unwrap_or("");
        let resource = entry
            .get("resource")
            .cloned()
            .ok_or_else(|| invalid("entry.resource is required"))?;
        let path = url.split('?').next().unwrap_or("");
        let mut parts = path.split('/');
        let ty = parts.next().unwrap_or("").to_owned();
        let url_id = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return Err(invalid(format!("unsupported request url {url}")));
        }
        check_resource(&ty, &resource)?;
        let forbidden = |what: &str| EntryError {
            status: 403,
            outcome: operation_outcome(
                "forbidden",
                &format!("token scope does not allow {what} {ty}"),
            ),
        };
        match (method, url_id) {
            ("POST", None) => {
                if !scopes_permit(scopes, &ty, 'c') {
                    return Err(forbidden("create"));
                }
                if let Some(query) = request.get("ifNoneExist").and_then(Value::as_str) {
                    let key = parse_if_none_exist(query)?;
                    let pending = pending_identifiers.get(&(ty.clone(), key.clone())).cloned();
                    if let Some(id) = self.lookup_identifier(&ty, &key).or(pending) {
                        return Ok(Planned::Existing { ty, id });
                    }
                }
                let id = self.fresh_id();
                Ok(Planned::Create { ty, id, resource })
            }
            ("PUT", Some(id)) => {
                if !valid_id(&id) {
                    return Err(invalid("id in the request url is not a valid FHIR id"));
                }
                if resource.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                    return Err(invalid("resource id must match the id in the request url"));
                }
                let exists = self.resources.get(&ty).is_some_and(|m| m.contains_key(&id));
                let need = if exists { 'u' } else { 'c' };
                if !scopes_permit(scopes, &ty, need) {
                    return Err(forbidden(if exists { "update" } else { "create" }));
                }
                if exists {
                    Ok(Planned::Update { ty, id, resource })
                } else {
                    Ok(Planned::Create { ty, id, resource })
                }
            }
            _ => Err(invalid(format!("unsupported request {method} {url}"))),
        }
    }

    fn commit(&mut self, planned: Planned) -> (u16, String) {
        match planned {
            Planned::Create {
                ty,
                id,
                mut resource,
            } => {
                resource["id"] = Value::String(id.clone());
                resource["meta"] = json!({"versionId": "1"});
                for key in identifier_keys(&resource) {
                    self.by_identifier.insert((ty.clone(), key), id.clone());
                }
                self.resources
                    .entry(ty.clone())
                    .or_default()
                    .insert(id.clone(), resource);
                self.stats.accepted += 1;
                (201, format!("{ty}/{id}/_history/1"))
            }
            Planned::Existing { ty, id } => {
                self.stats.duplicate += 1;
                (200, format!("{ty}/{id}/_history/1"))
            }
            Planned::Update {
                ty,
                id,
                mut resource,
            } => {
                resource["meta"] = json!({"versionId": "1"});
                for key in identifier_keys(&resource) {
                    self.by_identifier.insert((ty.clone(), key), id.clone());
                }
                self.resources
                    .entry(ty.clone())
                    .or_default()
                    .insert(id.clone(), resource);
                self.stats.duplicate += 1;
                (200, format!("{ty}/{id}/_history/1"))
            }
        }
    }

    /// Processes a Bundle; `Err` is a whole-Bundle failure (status + OperationOutcome).
    pub fn process_bundle(
        &mut self,
        bundle: &Value,
        scopes: &[String],
    ) -> Result<Value, EntryError> {
        self.stats.bundles += 1;
        let result = self.process_bundle_inner(bundle, scopes);
        if result.is_err() {
            self.stats.rejected += 1;
        }
        result
    }

    fn process_bundle_inner(
        &mut self,
        bundle: &Value,
        scopes: &[String],
    ) -> Result<Value, EntryError> {
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(invalid("body must be a Bundle"));
        }
        let kind = bundle.get("type").and_then(Value::as_str).unwrap_or("");
        let entries = bundle
            .get("entry")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match kind {
            "batch" => Ok(self.process_batch(&entries, scopes)),
            "transaction" => self.process_transaction(entries, scopes),
            _ => Err(invalid("Bundle.type must be batch or transaction")),
        }
    }

    fn process_batch(&mut self, entries: &[Value], scopes: &[String]) -> Value {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let response = match self.plan_entry(entry, scopes, &HashMap::new()) {
                Ok(planned) => {
                    let (status, location) = self.commit(planned);
                    json!({"status": status_line(status), "location": location})
                }
                Err(e) => {
                    self.stats.rejected += 1;
                    json!({"status": status_line(e.status), "outcome": e.outcome})
                }
            };
            out.push(json!({ "response": response }));
        }
        json!({"resourceType": "Bundle", "type": "batch-response", "entry": out})
    }

    fn process_transaction(
        &mut self,
        entries: Vec<Value>,
        scopes: &[String],
    ) -> Result<Value, EntryError> {
        let conditional = entries
            .iter()
            .filter(|e| e.pointer("/request/ifNoneExist").is_some())
            .count();
        if let Some(max) = self.max_transaction_conditional_creates
            && conditional > max
        {
            return Err(invalid(format!(
                "transaction has {conditional} conditional creates; at most {max} allowed"
            )));
        }
        // Plan every entry first (nothing is stored unless all succeed); ids for new
        // resources are assigned during planning so urn:uuid references can be rewritten.
        let saved_next_id = self.next_id;
        let mut plans = Vec::with_capacity(entries.len());
        let mut full_urls = HashMap::new();
        let mut pending = HashMap::new();
        for entry in &entries {
            let planned = match self.plan_entry(entry, scopes, &pending) {
                Ok(p) => p,
                Err(e) => {
                    self.next_id = saved_next_id;
                    return Err(e);
                }
            };
            let (ty, id) = match &planned {
                Planned::Create { ty, id, .. }
                | Planned::Existing { ty, id }
                | Planned::Update { ty, id, .. } => (ty.clone(), id.clone()),
            };
            if let Planned::Create { resource, .. } = &planned {
                for key in identifier_keys(resource) {
                    pending.insert((ty.clone(), key), id.clone());
                }
            }
            if let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) {
                full_urls.insert(full_url.to_owned(), format!("{ty}/{id}"));
            }
            plans.push(planned);
        }
        let mut out = Vec::with_capacity(plans.len());
        for planned in plans {
            let planned = match planned {
                Planned::Create {
                    ty,
                    id,
                    mut resource,
                } => {
                    rewrite_references(&mut resource, &full_urls);
                    Planned::Create { ty, id, resource }
                }
                Planned::Update {
                    ty,
                    id,
                    mut resource,
                } => {
                    rewrite_references(&mut resource, &full_urls);
                    Planned::Update { ty, id, resource }
                }
                existing => existing,
            };
            let (status, location) = self.commit(planned);
            out.push(json!({"response": {"status": status_line(status), "location": location}}));
        }
        Ok(json!({"resourceType": "Bundle", "type": "transaction-response", "entry": out}))
    }

    /// Resources of `ty` carrying identifier `system|value`.
    pub fn search_identifier(&self, ty: &str, key: &str) -> Vec<Value> {
        self.resources
            .get(ty)
            .map(|m| {
                m.values()
                    .filter(|r| identifier_keys(r).iter().any(|k| k == key))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn get(&self, ty: &str, id: &str) -> Option<&Value> {
        self.resources.get(ty)?.get(id)
    }

    /// Every stored resource, by type then id.
    pub fn all(&self) -> Vec<Value> {
        self.resources
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    pub fn count(&self, ty: &str) -> usize {
        self.resources.get(ty).map_or(0, BTreeMap::len)
    }
}
