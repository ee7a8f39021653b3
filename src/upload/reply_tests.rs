use proptest::prelude::*;
use serde_json::{Map, Value, json};

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
fn escaped_status_text_and_keys_are_read() {
    let reply = ReplyBundle::parse(br#"{"entry":[{"response":{"status":"201 \u0043reated"}}]}"#)
        .expect("parses");
    assert_eq!(reply.entry(0).expect("entry").status, Some(201));
    let reply = ReplyBundle::parse(
        br#"{"\u0065ntry":[{"respons\u0065":{"st\u0061tus":"\u0032\u00300 OK"}}]}"#,
    )
    .expect("parses");
    assert_eq!(reply.entry(0).expect("entry").status, Some(200));
}

#[test]
fn strings_with_quotes_brackets_and_backslashes_are_skipped_whole() {
    let body = br#"{"entry":[{"resource":{"text":"a \"}]\" b \\","n":[1,-2.5e3,true,false,null]},
        "response":{"status":"201 Created","outcome":{"issue":[{"diagnostics":"x\\\"]}"}]}}}]}"#;
    let reply = ReplyBundle::parse(body).expect("parses");
    let entry = reply.entry(0).expect("entry");
    assert_eq!(entry.status, Some(201));
    assert_eq!(
        entry.outcome,
        Some(r#"{"issue":[{"diagnostics":"x\\\"]}"}]}"#)
    );
}

#[test]
fn missing_entry_list_means_no_answers_and_garbage_is_an_error() {
    let reply = ReplyBundle::parse(br#"{"resourceType":"Bundle"}"#).expect("parses");
    assert_eq!(reply.entry(0), None);
    for bad in [
        &b"<html>"[..],
        b"",
        b"   ",
        br#"{"entry":[{"response":{"status":"201"}}"#,
        br#"{"entry":null}"#,
        br#"{"entry":{}}"#,
        br#"{"entry":[1]}"#,
        br#"{"entry":[{"response":{"status":201}}]}"#,
        br#"{"entry":[{"response":[]}]}"#,
        br#"{"entry":[],"entry":[]}"#,
        br#"{"entry":[]} x"#,
        br#"{"entry":[{"resource":{"a":"b\"}]}"#,
        br#"{"entry":[{"response":{"status":"20\"#,
        br#"{"entry" [] }"#,
        br#"{"entry":[] "a":1}"#,
        br#"{"a":}"#,
        br#"{"entry":[nul]}"#,
    ] {
        assert!(
            ReplyBundle::parse(bad).is_err(),
            "{:?} must be refused",
            String::from_utf8_lossy(bad)
        );
    }
}

/// The serde-based reader this scanner replaced: what every valid reply must read the same as.
mod reference {
    use std::borrow::Cow;

    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    pub struct ReplyBundle<'a> {
        #[serde(default, borrow)]
        pub entry: Vec<Option<ReplyEntry<'a>>>,
    }

    #[derive(Deserialize)]
    pub struct ReplyEntry<'a> {
        #[serde(default, borrow)]
        pub response: Option<EntryResponse<'a>>,
    }

    #[derive(Deserialize)]
    pub struct EntryResponse<'a> {
        #[serde(default, borrow)]
        pub status: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        pub outcome: Option<&'a RawValue>,
    }
}

/// What both readers say about each entry: (status text, outcome text), `None` for no response.
fn reference_view(body: &[u8]) -> Vec<Option<(Option<String>, Option<String>)>> {
    let parsed: reference::ReplyBundle<'_> = serde_json::from_slice(body).expect("reference");
    parsed
        .entry
        .iter()
        .map(|e| {
            let r = e.as_ref()?.response.as_ref()?;
            Some((
                r.status.as_deref().map(str::to_owned),
                r.outcome.map(|o| o.get().to_owned()),
            ))
        })
        .collect()
}

fn scanner_view(body: &[u8]) -> Vec<Option<(Option<String>, Option<String>)>> {
    let parsed = ReplyBundle::parse(body).expect("scanner");
    parsed
        .entry
        .iter()
        .map(|e| {
            let r = e.as_ref()?.response.as_ref()?;
            Some((
                r.status.as_deref().map(str::to_owned),
                r.outcome.map(str::to_owned),
            ))
        })
        .collect()
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 ]{0,12}",
        Just("\"}]{[\\".to_owned()),
        Just("\\\"".to_owned()),
        "\\PC{0,6}",
        Just("201 Created".to_owned()),
        Just("400 Bad Request".to_owned()),
        Just("\u{0}\u{1f}\n\t".to_owned()),
        // Past the 8-byte words into the `memchr2` search (`find_quote_or_backslash`).
        "[a-zé \"\\\\]{20,80}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Extra members with names the readers do not look for.
fn others() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec(
        (
            prop_oneof![Just("resource"), Just("location"), Just("x"), Just("Entry")],
            json_value(),
        )
            .prop_map(|(k, v)| (k.to_owned(), v)),
        0..3,
    )
}

fn response() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(proptest::option::of(text())),
        proptest::option::of(json_value()),
        others(),
    )
        .prop_map(|(status, outcome, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            match status {
                Some(Some(s)) => m.insert("status".into(), Value::String(s)),
                Some(None) => m.insert("status".into(), Value::Null),
                None => None,
            };
            if let Some(o) = outcome {
                m.insert("outcome".into(), o);
            }
            Value::Object(m)
        })
}

fn entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        6 => (proptest::option::of(prop_oneof![1 => Just(Value::Null), 5 => response()]), others())
            .prop_map(|(response, extra)| {
                let mut m: Map<String, Value> = extra.into_iter().collect();
                if let Some(r) = response {
                    m.insert("response".into(), r);
                }
                Value::Object(m)
            }),
    ]
}

fn reply() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(prop::collection::vec(entry(), 0..6)),
        others(),
    )
        .prop_map(|(entries, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            if let Some(e) = entries {
                m.insert("entry".into(), Value::Array(e));
            }
            Value::Object(m)
        })
}

proptest! {
    /// On every valid reply, compact or pretty-printed, the scanner reads what serde read.
    #[test]
    fn agrees_with_the_serde_reader(reply in reply(), pretty in any::<bool>()) {
        let body = if pretty {
            serde_json::to_vec_pretty(&reply)
        } else {
            serde_json::to_vec(&reply)
        }
        .expect("json");
        prop_assert_eq!(scanner_view(&body), reference_view(&body));
    }

    /// A reply cut anywhere is refused (never read as a shorter valid one), without a panic.
    #[test]
    fn every_cut_reply_is_refused(reply in reply()) {
        let body = serde_json::to_vec(&reply).expect("json");
        for end in 0..body.len() {
            prop_assert!(ReplyBundle::parse(&body[..end]).is_err(), "cut at {}", end);
        }
    }

    /// The word-at-a-time search finds what a byte-by-byte one finds, from any start, in any
    /// bytes (those with the high bit set included: `0xa2` and `0xdc` are `"` and `\` plus it).
    #[test]
    fn the_string_end_search_finds_the_first_quote_or_backslash(
        bytes in prop::collection::vec(prop_oneof![
            8 => any::<u8>(),
            1 => Just(b'"'),
            1 => Just(b'\\'),
            1 => Just(0xa2u8),
            1 => Just(0xdcu8),
        ], 0..120),
        at in 0usize..130,
    ) {
        let naive = (at..bytes.len()).find(|i| matches!(bytes[*i], b'"' | b'\\'));
        prop_assert_eq!(find_quote_or_backslash(&bytes, at), naive);
    }

    /// Arbitrary bytes never panic the scanner.
    #[test]
    fn arbitrary_bytes_do_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = ReplyBundle::parse(&bytes);
        let mut body = br#"{"entry":[{"response":{"status":""#.to_vec();
        body.extend_from_slice(&bytes);
        let _ = ReplyBundle::parse(&body);
    }
}
