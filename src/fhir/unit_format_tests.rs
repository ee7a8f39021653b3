//! The queued-unit format (`unit_format.rs`) and the concatenated Bundle text (`bundle.rs`):
//! round trips, units queued in the old JSON form, arbitrary bytes, and byte-for-byte equality
//! with the serde rendering the Bundle builder used before.

use proptest::prelude::*;
use serde_json::Value;

use super::bundle::push_json_string;
use super::bundle_reference::serde_bundle_text;
use super::examples::{example_map_context, example_readings};
use super::unit_format::{UNIT_MAGIC, payload_as_json};
use super::*;

/// Units of every example kind, some with a status-bits Observation, one with a source record.
fn example_units() -> Vec<UploadUnit> {
    let ctx = example_map_context(true);
    example_readings()
        .into_iter()
        .enumerate()
        .map(|(i, (name, mut r))| {
            if i % 3 == 0 {
                r.sequence = Some(i as u32 * 1000 + 7);
            }
            map_reading(&r, &ctx).expect(name)
        })
        .collect()
}

#[test]
fn every_example_unit_round_trips_through_the_queued_format() {
    let units = example_units();
    assert!(units.iter().any(|u| u.status_observation().is_some()));
    assert!(units.iter().any(|u| u.source_record().is_some()));
    for unit in &units {
        let bytes = encode_unit(unit).expect("encode");
        assert_eq!(bytes[0], UNIT_MAGIC);
        assert_eq!(decode_unit(&bytes).expect("decode"), *unit);
        // Every shorter prefix is refused (a length always points past the end).
        for cut in 0..bytes.len() {
            assert!(decode_unit(&bytes[..cut]).is_err(), "prefix of {cut} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_unit(&longer), Err(UnitFormatError::TrailingBytes(1)));
    }
}

#[test]
fn decoding_an_owned_payload_gives_the_same_unit_and_names_the_bad_field() {
    for unit in &example_units() {
        let bytes = encode_unit(unit).expect("encode");
        let owned = decode_unit_owned(bytes.clone()).expect("decode owned");
        assert_eq!(owned, *unit);
        assert_eq!(format!("{owned:?}"), format!("{unit:?}"));
        assert_eq!(encode_unit(&owned).expect("encode again"), bytes);
        for cut in 0..bytes.len() {
            assert!(
                decode_unit_owned(bytes[..cut].to_vec()).is_err(),
                "prefix of {cut} bytes"
            );
        }
    }
    // Bad UTF-8 is named by field: the first field, a later one, and the source record's
    // device; its sequence, after it, is framing and may be any bytes.
    let units = example_units();
    let unit = units
        .iter()
        .find(|u| u.source_record().is_some())
        .expect("a unit with a source record");
    let bytes = encode_unit(unit).expect("encode");
    let device = unit.source_record().expect("source").device.as_bytes();
    let device_at = bytes.len() - 4 - device.len();
    let id_at = find(&bytes, unit.id().as_bytes());
    for (at, field) in [
        (3 + 4 + 1, "observation"),
        (id_at, "id"),
        (device_at, "source record device"),
    ] {
        for bad in [0xFF, 0xC3, 0x80] {
            let mut damaged = bytes.clone();
            damaged[at] = bad;
            assert_eq!(
                decode_unit_owned(damaged),
                Err(UnitFormatError::NotUtf8(field)),
                "byte {at} = {bad:#x}"
            );
        }
    }
    let mut sequence = bytes.clone();
    let last = sequence.len() - 1;
    sequence[last] = 0xFF;
    let decoded = decode_unit_owned(sequence).expect("any sequence bytes");
    assert_eq!(
        decoded.source_record().expect("source").device,
        unit.source_record().expect("source").device
    );
    assert_ne!(decoded.source_record(), unit.source_record());
    // JSON units of older gateways go the borrowed way.
    let json = serde_json::to_vec(unit).expect("json");
    assert_eq!(decode_unit_owned(json).expect("json unit"), *unit);
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("present")
}

#[test]
fn damaged_framing_is_an_error_not_a_misread() {
    let unit = &example_units()[0];
    let bytes = encode_unit(unit).expect("encode");
    let mut newer = bytes.clone();
    newer[1] = 2;
    assert_eq!(decode_unit(&newer), Err(UnitFormatError::UnknownVersion(2)));
    let mut flags = bytes.clone();
    flags[2] |= 0x80;
    assert!(matches!(
        decode_unit(&flags),
        Err(UnitFormatError::UnknownFlags(_))
    ));
    // The observation text (first field) made not to start with `{`.
    let mut not_object = bytes.clone();
    not_object[3 + 4] = b'[';
    assert_eq!(
        decode_unit(&not_object),
        Err(UnitFormatError::NotJsonObject("observation"))
    );
    let mut not_utf8 = bytes.clone();
    not_utf8[3 + 4 + 1] = 0xFF;
    assert_eq!(
        decode_unit(&not_utf8),
        Err(UnitFormatError::NotUtf8("observation"))
    );
    assert_eq!(decode_unit(b""), Err(UnitFormatError::Empty));
    assert_eq!(
        decode_unit(b"[1]"),
        Err(UnitFormatError::UnknownFormat(b'['))
    );
    assert!(matches!(
        decode_unit(b"{\"observation\":1}"),
        Err(UnitFormatError::Json(_))
    ));
}

/// Payloads as the gateway queued them before the format change: `serde_json::to_vec(&unit)`
/// (runtime/build.rs until round 3 of issue #5; its `Serialize` is unchanged): one with a
/// status-bits Observation, one with a source record, one with neither key (as units queued
/// before those fields existed look).
const OLD_JSON_FIXTURE: &str = include_str!("fixtures/upload_units_json_v0.ndjson");

#[test]
fn units_queued_in_the_old_json_form_still_decode_and_upload_the_same() {
    let lines: Vec<&str> = OLD_JSON_FIXTURE.lines().collect();
    assert_eq!(lines.len(), 3, "fixture lines");
    let mut with_status = 0;
    for line in &lines {
        assert!(line.starts_with('{'));
        let unit = decode_unit(line.as_bytes()).expect("old payload decodes");
        with_status += usize::from(unit.status_observation().is_some());
        // Re-queued in the new format it is the same unit, and `queue show` renders a new
        // payload as the JSON an old one was.
        let new = encode_unit(&unit).expect("encode");
        assert_eq!(decode_unit(&new).expect("decode"), unit);
        let shown: Value = serde_json::from_slice(&payload_as_json(&new)).expect("json");
        let old: Value = serde_json::from_str(line).expect("json");
        assert_eq!(shown, old);
    }
    assert_eq!(with_status, 1);
    // The fixture's units are what the mapper makes today for the same readings, so they
    // build the same Bundle entries as freshly mapped ones.
    let fresh = example_units();
    let first = decode_unit(lines[0].as_bytes()).expect("decode");
    assert!(
        fresh.contains(&first),
        "fixture line 1 is a current example unit"
    );
    let last = decode_unit(lines[2].as_bytes()).expect("decode");
    assert_eq!(last.source_record(), None);
    assert_eq!(last.status_observation(), None);
}

#[test]
fn payloads_that_are_not_units_are_shown_as_they_are() {
    assert_eq!(&*payload_as_json(b"{\"x\":1}"), b"{\"x\":1}");
    let broken = [UNIT_MAGIC, 1, 0, 9];
    assert_eq!(&*payload_as_json(&broken), &broken[..]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes after the magic byte: an error or a unit, never a panic; a unit that
    /// decodes re-encodes to the same bytes (the format has one encoding per unit).
    #[test]
    fn arbitrary_payloads_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut payload = vec![UNIT_MAGIC, 1];
        payload.extend_from_slice(&tail);
        if let Ok(unit) = decode_unit(&payload) {
            prop_assert_eq!(&encode_unit(&unit).expect("encode"), &payload);
        }
        let _ = decode_unit(&tail);
        let _ = payload_as_json(&payload);
    }

    /// A valid unit with bytes overwritten anywhere: decoding never panics, and what decodes
    /// still builds a Bundle without panicking.
    #[test]
    fn damaged_units_never_panic(
        which in 0usize..64,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let units = example_units();
        let unit = &units[which % units.len()];
        let mut bytes = encode_unit(unit).expect("encode");
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(unit) = decode_unit(&bytes) {
            for mode in [WriteMode::Put, WriteMode::ConditionalCreate] {
                let opts = BundleOptions { bundle_type: BundleType::Batch, write_mode: mode };
                let _ = build_bundle(std::slice::from_ref(&unit), &opts);
            }
        }
    }

    /// The escaper writes exactly what serde_json writes for any string.
    #[test]
    fn json_strings_are_escaped_like_serde_json(s in any::<String>()) {
        let mut out = String::new();
        push_json_string(&mut out, &s);
        prop_assert_eq!(out, serde_json::to_string(&s).expect("string"));
    }
}

#[test]
fn control_characters_and_quotes_are_escaped_like_serde_json() {
    for s in [
        "",
        "plain",
        "a\"b\\c",
        "\u{0}\u{1f}\u{7f}\n\r\t\u{8}\u{c}",
        "é✓\u{10FFFF}",
    ] {
        let mut out = String::new();
        push_json_string(&mut out, s);
        assert_eq!(out, serde_json::to_string(s).expect("string"));
    }
}

#[test]
fn concatenated_bundle_text_equals_the_serde_rendering() {
    let units = example_units();
    let mut subsets: Vec<&[UploadUnit]> = vec![&units, &units[..1], &units[3..7]];
    subsets.push(&[]);
    for bundle_type in [BundleType::Batch, BundleType::Transaction] {
        for write_mode in [WriteMode::ConditionalCreate, WriteMode::Put] {
            let opts = BundleOptions {
                bundle_type,
                write_mode,
            };
            for subset in &subsets {
                let built = build_bundle(subset, &opts);
                assert_eq!(
                    Some(built.json.get()),
                    serde_bundle_text(subset, &opts).as_deref()
                );
            }
        }
    }
}

#[test]
fn a_put_of_an_empty_object_text_stays_json() {
    // Not something the mapper makes, but a unit's text may be `{}`: the id splice must not
    // leave a dangling comma.
    let mut data = example_units()[0].to_data();
    data.observation = "{ }".into();
    let unit = UploadUnit::try_from(data).expect("unit");
    let built = build_bundle(
        &[unit],
        &BundleOptions {
            bundle_type: BundleType::Batch,
            write_mode: WriteMode::Put,
        },
    );
    let v: Value = serde_json::from_str(built.json.get()).expect("bundle is JSON");
    assert!(v["entry"][2]["resource"]["id"].is_string());
}
