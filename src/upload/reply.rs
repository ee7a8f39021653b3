//! Reading a batch/transaction-response Bundle: only `entry[i].response.status` and
//! `entry[i].response.outcome` matter to the uploader.
//!
//! Servers send much more (Medplum returns every created resource in `entry[i].resource`, and
//! an OperationOutcome per entry). Parsing all of that into a `serde_json::Value` tree cost
//! more CPU than building and sending the Bundle (docs/PERFORMANCE.md, "Upload"); these borrowed
//! structs let serde skip the rest without allocating (it still checks the text is JSON).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::retry::entry_status;

/// The parts of a response Bundle the uploader reads.
#[derive(Debug, Deserialize)]
pub struct ReplyBundle<'a> {
    /// `null` entries are kept (a server may leave holes), so indexes stay aligned with the
    /// request Bundle's entries.
    #[serde(default, borrow)]
    entry: Vec<Option<ReplyEntry<'a>>>,
}

#[derive(Debug, Deserialize)]
struct ReplyEntry<'a> {
    #[serde(default, borrow)]
    response: Option<EntryResponse<'a>>,
}

#[derive(Debug, Deserialize)]
struct EntryResponse<'a> {
    /// e.g. `"201 Created"`. `Cow`: a JSON string with escapes cannot be borrowed.
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    /// The OperationOutcome, kept as the server's text (it becomes a dead letter's reason).
    #[serde(default, borrow)]
    outcome: Option<&'a RawValue>,
}

/// What the server answered for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryReply<'a> {
    /// The numeric status, `None` when missing or not of the form `"NNN text"`.
    pub status: Option<u16>,
    pub outcome: Option<&'a str>,
}

impl<'a> ReplyBundle<'a> {
    /// Parses a response Bundle; `Err` when the body is not JSON of that shape.
    pub fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The answer to request entry `index` (`None`: no such entry or no `response`).
    pub fn entry(&self, index: usize) -> Option<EntryReply<'a>> {
        let response = self.entry.get(index)?.as_ref()?.response.as_ref()?;
        Some(EntryReply {
            status: response.status.as_deref().and_then(entry_status),
            outcome: response.outcome.map(RawValue::get),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_and_outcome_and_skips_resources() {
        let body = br#"{"resourceType":"Bundle","type":"transaction-response","entry":[
            {"resource":{"resourceType":"Device","id":"d1","identifier":[{"value":"x"}]},
             "response":{"status":"201 Created","location":"Device/d1/_history/1"}},
            null,
            {"response":{"status":"400 Bad Request",
             "outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}}},
            {"response":{"status":"200 OK","outcome":{"resourceType":"OperationOutcome"}}},
            {"response":{"location":"Observation/1"}},
            {"resource":{}}]}"#;
        let reply = ReplyBundle::parse(body).expect("parses");
        assert_eq!(reply.entry(0).expect("entry 0").status, Some(201));
        assert_eq!(reply.entry(0).expect("entry 0").outcome, None);
        assert_eq!(reply.entry(1), None, "null entry");
        let bad = reply.entry(2).expect("entry 2");
        assert_eq!(bad.status, Some(400));
        assert_eq!(
            bad.outcome,
            Some(
                r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}"#
            )
        );
        assert_eq!(reply.entry(3).expect("entry 3").status, Some(200));
        assert_eq!(reply.entry(4).expect("entry 4").status, None, "no status");
        assert_eq!(reply.entry(5), None, "no response");
        assert_eq!(reply.entry(6), None, "past the end");
    }

    #[test]
    fn escaped_status_text_is_read() {
        let reply =
            ReplyBundle::parse(br#"{"entry":[{"response":{"status":"201 \u0043reated"}}]}"#)
                .expect("parses");
        assert_eq!(reply.entry(0).expect("entry").status, Some(201));
    }

    #[test]
    fn missing_entry_list_means_no_answers_and_garbage_is_an_error() {
        let reply = ReplyBundle::parse(br#"{"resourceType":"Bundle"}"#).expect("parses");
        assert_eq!(reply.entry(0), None);
        assert!(ReplyBundle::parse(b"<html>").is_err());
        assert!(ReplyBundle::parse(br#"{"entry":[{"response":{"status":"201"}}"#).is_err());
    }
}
