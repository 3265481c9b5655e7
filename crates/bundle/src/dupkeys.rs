//! Duplicate keys in a JSON record. `serde_json` lets the last of two equal keys win, so a
//! hand edit that adds `"PasswordHash":null` after the real one would silently remove a
//! password. Every record line is checked: a duplicate is an error naming the key, its
//! path and its column.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A key that appears twice in one object.
#[derive(Debug, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The path of the key, e.g. `Claims[2].Type` or `UserName`.
    pub path: String,
    /// The 1-based column where the second occurrence of the key starts.
    pub column: usize,
}

/// The first duplicate key of `line`, if it has one. `line` must be valid JSON (it is
/// checked after the record parsed).
pub fn first_duplicate(line: &str) -> Option<DuplicateKey> {
    let mut de = serde_json::Deserializer::from_str(line);
    let mut found = None;
    let result = Check {
        path: String::new(),
        found: &mut found,
    }
    .deserialize(&mut de);
    match (result, found) {
        (Err(e), Some((path, key))) => {
            // The parser stands at the key's closing quote.
            let quoted = serde_json::to_string(&key).map_or(0, |q| q.len());
            Some(DuplicateKey {
                path,
                column: (e.column() + 1).saturating_sub(quoted).max(1),
            })
        }
        _ => None,
    }
}

struct Check<'a> {
    path: String,
    found: &'a mut Option<(String, String)>,
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let path = format!("{}[{i}]", self.path);
            let found = &mut *self.found;
            if seq.next_element_seed(Check { path, found })?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if keys.contains(&key) {
                *self.found = Some((path, key));
                return Err(de::Error::custom("duplicate key"));
            }
            let found = &mut *self.found;
            map.next_value_seed(Check { path, found })?;
            if found.is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
            keys.push(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_second_key_anywhere() {
        assert_eq!(
            first_duplicate(r#"{"a":1,"b":[{"c":1}],"d":{"e":null}}"#),
            None
        );
        let d = first_duplicate(r#"{"Id":"u","PasswordHash":"x","PasswordHash":null}"#).unwrap();
        assert_eq!(d.path, "PasswordHash");
        assert_eq!(d.column, 30);
        let d = first_duplicate(r#"{"Claims":[{"Type":"a","Value":"b"},{"Type":"a","Type":"b"}]}"#)
            .unwrap();
        assert_eq!(d.path, "Claims[1].Type");
        let d = first_duplicate(r#"{"Extra":{"Age":{"x":1},"Age":2}}"#).unwrap();
        assert_eq!(d.path, "Extra.Age");
        // Equal keys in different objects are fine.
        assert_eq!(first_duplicate(r#"[{"a":1},{"a":2}]"#), None);
    }
}
