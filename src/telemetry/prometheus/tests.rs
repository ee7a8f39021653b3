//! The exposition is checked by a strict hand-written validator of the text format 0.0.4
//! grammar (no parser crate is in the tree; promtool is not on the build hosts). The validator
//! is tested against broken inputs too, so it can fail.

use std::collections::{BTreeMap, BTreeSet};

use super::render;
use crate::runtime::ingest::IngestObserver;
use crate::telemetry::metrics::tests::{TestClock, ble_reading, telemetry_with_devices};

/// Series (`name{k="v",…}` with labels sorted) → value, or what is wrong and on which line.
fn validate(text: &str) -> Result<BTreeMap<String, f64>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line must end with \\n".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a comment
            }
            let name = parts.next().ok_or_else(|| at("no metric name"))?;
            if !metric_name(name) {
                return Err(at("bad metric name"));
            }
            let rest = parts.next().unwrap_or_default();
            enter_family(name, &mut current, &mut finished).map_err(|e| at(&e))?;
            if keyword == "HELP" {
                if !helps.insert(name.to_owned()) {
                    return Err(at("second HELP"));
                }
                check_escapes(rest, false).map_err(|e| at(&e))?;
            } else {
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest) {
                    return Err(at("unknown type"));
                }
                if types.insert(name.to_owned(), rest.to_owned()).is_some() {
                    return Err(at("second TYPE"));
                }
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value"))?;
        let name = &line[..name_end];
        if !metric_name(name) {
            return Err(at("bad metric name"));
        }
        let family = types
            .get(name)
            .map(|_| name.to_owned())
            .ok_or_else(|| at("sample before its TYPE"))?;
        if current.as_deref() != Some(family.as_str()) {
            return Err(at("sample outside its family's group"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            let (parsed, remaining) = parse_labels(after).map_err(|e| at(&e))?;
            labels = parsed;
            rest = remaining;
        }
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value"))?;
        let mut fields = rest.split(' ');
        let value_text = fields.next().unwrap_or_default();
        let value = match value_text {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse::<f64>()
                .map_err(|_| at("value is not a float"))?,
        };
        if let Some(timestamp) = fields.next()
            && timestamp.parse::<i64>().is_err()
        {
            return Err(at("timestamp is not an integer"));
        }
        if fields.next().is_some() {
            return Err(at("trailing text"));
        }
        if types[name] == "counter" {
            if !name.ends_with("_total") {
                return Err(at("counter without _total"));
            }
            if value < 0.0 {
                return Err(at("negative counter"));
            }
        }
        let key = format!(
            "{name}{{{}}}",
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        if series.insert(key, value).is_some() {
            return Err(at("duplicate series"));
        }
    }
    Ok(series)
}

fn enter_family(
    name: &str,
    current: &mut Option<String>,
    finished: &mut BTreeSet<String>,
) -> Result<(), String> {
    if current.as_deref() == Some(name) {
        return Ok(());
    }
    if finished.contains(name) {
        return Err("family appears twice (not contiguous)".into());
    }
    if let Some(previous) = current.replace(name.to_owned()) {
        finished.insert(previous);
    }
    Ok(())
}

fn metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Escapes allowed: `\\`, `\n`, and in label values `\"`.
fn check_escapes(text: &str, quotes: bool) -> Result<(), String> {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') | Some('n') => {}
                Some('"') if quotes => {}
                _ => return Err("bad escape".into()),
            }
        } else if c == '\n' {
            return Err("raw newline".into());
        }
    }
    Ok(())
}

/// `k="v",…}` → labels (values unescaped) and the text after `}`.
fn parse_labels(mut text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(rest) = text.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = text.find('=').ok_or("label without =")?;
        let name = &text[..eq];
        if !label_name(name) {
            return Err(format!("bad label name `{name}`"));
        }
        let mut chars = text[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err("label value not quoted".into());
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    _ => return Err("bad escape in label value".into()),
                },
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                '\n' => return Err("raw newline in label value".into()),
                other => value.push(other),
            }
        }
        let end = end.ok_or("unterminated label value")?;
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label `{name}` twice"));
        }
        text = &text[end..];
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return Err("labels not separated by ','".into());
        }
    }
}

#[test]
fn the_validator_refuses_broken_expositions() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
    assert!(validate(ok).is_ok());
    let broken = [
        "a 1\n",                                                      // no TYPE
        "# TYPE a gauge\na 1",                                        // no final newline
        "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",               // duplicate
        "# TYPE a gauge\na{x=\"\\q\"} 1\n",                           // bad escape
        "# TYPE a gauge\na{x=1} 1\n",                                 // unquoted
        "# TYPE a gauge\na one\n",                                    // not a float
        "# TYPE a counter\na 1\n",                                    // counter w/o _total
        "# TYPE a gauge\n# TYPE b gauge\na 1\n",                      // not in its group
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# HELP a again\n", // family twice
        "# TYPE 1a gauge\n1a 1\n",                                    // bad name
        "# TYPE a gauge\na{__x=\"1\"} 1\n",                           // reserved label
        "# TYPE a gauge\na{x=\"1\" y=\"2\"} 1\n",                     // no comma
    ];
    for text in broken {
        assert!(validate(text).is_err(), "accepted: {text:?}");
    }
}

#[test]
fn metrics_text_is_valid_exposition_with_the_counted_values() {
    let clock = TestClock::at(1_800_000_000);
    let telemetry = telemetry_with_devices(clock.clone(), false, "Kitchen \"scale\"\\ \nnew line");
    telemetry.tasks_started(["ble".to_owned(), "ingest".to_owned()]);
    telemetry.stored(&[
        ble_reading("C0:FF:EE:0D:00:01"),
        ble_reading("C0:FF:EE:0D:00:01"),
    ]);
    telemetry.rejected(&[ble_reading("C0:FF:EE:10:00:01")], "bad");
    telemetry.upload_attempt(2);
    telemetry.upload_settled(2, 0, 0);
    telemetry.upload_attempt(1);
    telemetry.upload_failed(1, "HTTP 503");
    telemetry.token_refreshed(std::time::Duration::from_secs(300));
    telemetry.token_failed("invalid_client");
    clock.advance(30);

    let text = render(&telemetry.snapshot());
    let series = validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let value = |key: &str| {
        *series
            .get(key)
            .unwrap_or_else(|| panic!("no series {key} in\n{text}"))
    };
    assert_eq!(
        value("vectorcare_readings_received_total{kind=\"heart_rate\",source=\"ble\"}"),
        3.0
    );
    assert_eq!(
        value("vectorcare_mapping_failures_total{source=\"ble\"}"),
        1.0
    );
    assert_eq!(value("vectorcare_upload_attempts_total{}"), 2.0);
    assert_eq!(value("vectorcare_upload_successes_total{}"), 2.0);
    assert_eq!(value("vectorcare_upload_retries_total{}"), 1.0);
    assert_eq!(value("vectorcare_token_refreshes_total{}"), 1.0);
    assert_eq!(value("vectorcare_token_failures_total{}"), 1.0);
    assert_eq!(value("vectorcare_token_valid_seconds{}"), 270.0);
    assert_eq!(value("vectorcare_healthy{}"), 1.0);
    assert_eq!(value("vectorcare_clock_synchronized{}"), 0.0);
    // The configured label with quotes, a backslash and a newline survives escaping.
    assert_eq!(
        value(
            "vectorcare_device_readings_total{device=\"Kitchen \\\"scale\\\"\\\\ \\nnew line\",source=\"ble\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            "vectorcare_device_last_reading_age_seconds{device=\"Kitchen \\\"scale\\\"\\\\ \\nnew line\",source=\"ble\"}"
        ),
        30.0
    );
    assert!(
        !text.contains(
            "vectorcare_device_last_reading_age_seconds{device=\"sources.ble.devices[1]\""
        ),
        "a device that never sent a reading has no age:\n{text}"
    );
    assert!(
        !text.contains("C0:FF:EE"),
        "no device address in metrics:\n{text}"
    );
}
