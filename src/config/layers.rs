//! Building the merged TOML table: embedded defaults, then the file, then `VECTORCARE_*`
//! environment variables.
//!
//! Environment keys use `__` between levels (single `_` stays part of a key name):
//! `VECTORCARE_UPLOAD__FHIR_BASE_URL=https://…` sets `upload.fhir_base_url`. A value is read as
//! a TOML value when it parses as one (`true`, `42`, `["a", "b"]`), otherwise as a string.

use toml::{Table, Value};

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "VECTORCARE_";

/// Environment variables with this prefix that are NOT config overrides.
const NOT_OVERRIDES: &[&str] = &["VECTORCARE_CONFIG", "VECTORCARE_LOG"];

/// Deep-merges `over` into `base`: tables merge key by key, anything else is replaced.
pub fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base_table)), Value::Table(over_table)) => {
                merge(base_table, over_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Turns `VECTORCARE_*` variables into a table to merge last. Returns the table and, for each
/// variable that could not be applied, its name and why.
pub fn env_overrides(
    vars: impl IntoIterator<Item = (String, String)>,
) -> (Table, Vec<(String, String)>) {
    let mut table = Table::new();
    let mut rejected = Vec::new();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if NOT_OVERRIDES.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest
            .split("__")
            .map(|part| part.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) {
            rejected.push((
                name,
                "empty key segment (use `__` only between keys)".into(),
            ));
            continue;
        }
        let value = parse_env_value(&raw);
        if let Err(why) = insert_path(&mut table, &path, value) {
            rejected.push((name, why));
        }
    }
    (table, rejected)
}

fn parse_env_value(raw: &str) -> Value {
    let probe = format!("v = {raw}");
    match toml::from_str::<Table>(&probe) {
        Ok(mut parsed) => parsed
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_owned())),
        Err(_) => Value::String(raw.to_owned()),
    }
}

fn insert_path(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut cursor = table;
    for part in parents {
        let entry = cursor
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        cursor = match entry {
            Value::Table(inner) => inner,
            _ => return Err(format!("`{part}` is not a table")),
        };
    }
    cursor.insert(last.clone(), value);
    Ok(())
}

/// Removes the value at a serde path such as `sources.ble.devices[1].address` so that
/// deserialisation can continue past a bad key and report the next problem. Returns false when
/// nothing could be removed.
pub fn remove_path(table: &mut Table, path: &str) -> bool {
    let segments = split_path(path);
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut cursor: &mut Value = match parents.first() {
        Some(Segment::Key(first)) => match table.get_mut(first) {
            Some(value) => value,
            None => return false,
        },
        Some(Segment::Index(_)) => return false,
        None => {
            return match last {
                Segment::Key(key) => table.remove(key).is_some(),
                Segment::Index(_) => false,
            };
        }
    };
    for segment in &parents[1..] {
        let next = match (segment, cursor) {
            (Segment::Key(key), Value::Table(inner)) => inner.get_mut(key),
            (Segment::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(value) => cursor = value,
            None => return false,
        }
    }
    match (last, cursor) {
        (Segment::Key(key), Value::Table(inner)) => inner.remove(key).is_some(),
        (Segment::Index(i), Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

#[derive(Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                segments.push(Segment::Key(rest[..open].to_owned()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    segments.push(Segment::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else if !rest.is_empty() {
            segments.push(Segment::Key(rest.to_owned()));
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(src: &str) -> Table {
        toml::from_str(src).expect("test TOML parses")
    }

    #[test]
    fn merge_is_deep() {
        let mut base = table("[a]\nx = 1\ny = 2\n[b]\nz = 3");
        merge(&mut base, table("[a]\ny = 20\nw = 4"));
        assert_eq!(base, table("[a]\nx = 1\ny = 20\nw = 4\n[b]\nz = 3"));
    }

    #[test]
    fn env_overrides_nest_on_double_underscore_and_parse_values() {
        let (t, rejected) = env_overrides([
            (
                "VECTORCARE_UPLOAD__FHIR_BASE_URL".to_owned(),
                "https://fhir.invalid/r4".to_owned(),
            ),
            ("VECTORCARE_QUEUE__MAX_RECORDS".to_owned(), "500".to_owned()),
            (
                "VECTORCARE_CLOCK__ASSUME_SYNCHRONIZED".to_owned(),
                "true".to_owned(),
            ),
            ("VECTORCARE_CONFIG".to_owned(), "/x.toml".to_owned()),
            ("VECTORCARE_BAD____KEY".to_owned(), "1".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ]);
        assert_eq!(
            t,
            table(
                "[upload]\nfhir_base_url = \"https://fhir.invalid/r4\"\n[queue]\nmax_records = 500\n[clock]\nassume_synchronized = true"
            )
        );
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, "VECTORCARE_BAD____KEY");
    }

    #[test]
    fn remove_path_handles_keys_and_indices() {
        let mut t =
            table("[sources.ble]\ndevices = [{address = \"x\", bad = 1}, {address = \"y\"}]");
        assert!(remove_path(&mut t, "sources.ble.devices[0].bad"));
        assert_eq!(
            t,
            table("[sources.ble]\ndevices = [{address = \"x\"}, {address = \"y\"}]")
        );
        assert!(remove_path(&mut t, "sources.ble.devices[1]"));
        assert!(!remove_path(&mut t, "sources.nothing.here"));
        assert!(remove_path(&mut t, "sources"));
        assert!(t.is_empty());
    }
}
