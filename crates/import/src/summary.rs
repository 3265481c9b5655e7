//! What validate, load and plan say at the end of a run: counted words, and the source
//! data no mapping rule imports.

use std::collections::BTreeMap;

use ferry_schema::NotImported;
use serde_json::{json, Value};

/// `1 error`, `2 errors`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// How many users have each claim type or `Extra` column that no rule imports.
#[derive(Debug, Default)]
pub struct NotImportedTally {
    users: BTreeMap<NotImported, u64>,
}

impl NotImportedTally {
    /// Counts one record's.
    pub fn add(&mut self, items: &[NotImported]) {
        for item in items {
            *self.users.entry(item.clone()).or_default() += 1;
        }
    }

    /// The tally for `--json`: `{"claims": {type: users}, "extra": {column: users}}`.
    pub fn to_json(&self) -> Value {
        let mut claims = serde_json::Map::new();
        let mut extra = serde_json::Map::new();
        for (item, n) in &self.users {
            match item {
                NotImported::Claim(t) => claims.insert(t.clone(), json!(n)),
                NotImported::Extra(c) => extra.insert(c.clone(), json!(n)),
            };
        }
        json!({"claims": claims, "extra": extra})
    }

    /// The lines to print, empty when everything was imported.
    pub fn lines(&self) -> Vec<String> {
        if self.users.is_empty() {
            return Vec::new();
        }
        let list: Vec<String> = self
            .users
            .iter()
            .map(|(item, n)| format!("{item} ({})", count(*n, "user", "users")))
            .collect();
        vec![
            format!(
                "warning: not imported, because the mapping has no rule for them: {}",
                list.join(", ")
            ),
            "hint: add `claim:TYPE` or `extra:COLUMN` rules for them to a mapping file (docs/schema-and-mapping.md); schemas/oidc-standard.json with --mapping schemas/mapping.oidc.json has a home for every OpenID Connect claim".to_string(),
        ]
    }
}

/// The note a load report gives a record that was imported without some of its data.
pub fn record_note(not_imported: &[NotImported]) -> Option<String> {
    if not_imported.is_empty() {
        return None;
    }
    let list: Vec<String> = not_imported.iter().map(|n| n.to_string()).collect();
    Some(format!(
        "not imported (no mapping rule): {}",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_lines() {
        assert_eq!(count(1, "error", "errors"), "1 error");
        assert_eq!(count(0, "error", "errors"), "0 errors");
        let mut t = NotImportedTally::default();
        assert!(t.lines().is_empty());
        t.add(&[
            NotImported::Claim("website".into()),
            NotImported::Extra("FirstName".into()),
        ]);
        t.add(&[NotImported::Claim("website".into())]);
        assert_eq!(
            t.lines()[0],
            "warning: not imported, because the mapping has no rule for them: claim website (2 users), Extra.FirstName (1 user)"
        );
        assert_eq!(
            t.to_json(),
            json!({"claims": {"website": 2}, "extra": {"FirstName": 1}})
        );
    }
}
