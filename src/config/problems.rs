//! Collecting every configuration problem at once, each with its key path and a hint.
//!
//! Validation never stops at the first mistake: `validate` prints the whole list so an
//! installer fixes a config file in one pass. Component config modules push into `Problems`.

use std::fmt;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path with indices, e.g. `sources.ble.devices[1].address`.
    pub path: String,
    /// What is wrong, e.g. "not a Bluetooth address".
    pub message: String,
    /// How to fix it, e.g. "write six hex pairs separated by ':' such as AA:BB:CC:DD:EE:FF".
    pub hint: Option<String>,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// The list that validation fills.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems(Vec<ConfigProblem>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem at `path`.
    pub fn push(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: Option<&str>,
    ) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
            hint: hint.map(str::to_owned),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigProblem> {
        self.0.iter()
    }

    /// Keeps only the first problem reported at each path: a key removed because of a type
    /// error would otherwise be reported again as "missing" by validation.
    pub fn dedup_by_path(&mut self) {
        let mut seen = std::collections::HashSet::new();
        self.0.retain(|problem| seen.insert(problem.path.clone()));
    }

    pub fn into_vec(self) -> Vec<ConfigProblem> {
        self.0
    }
}

/// Joins a parent path and a child key: `join("sources.ble", "scan_seconds")`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Path of a list element: `index("sources.ble.devices", 1)` → `sources.ble.devices[1]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}
