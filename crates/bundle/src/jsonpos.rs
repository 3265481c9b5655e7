//! Positions in a JSON record line, which `serde_json` values do not keep.
//!
//! - [`first_duplicate`]: a key given twice. `serde_json` lets the last of two equal keys
//!   win, so a hand edit that adds `"PasswordHash":null` after the real one would
//!   silently remove a password. Every record line is checked: a duplicate is an error
//!   naming the key, its path and its column.
//! - [`column_of`]: the column where a field (a path such as `Claims[2].Type`) is, so
//!   that a problem found after decoding is reported at `file:line:column`.

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
    let (path, column) = walk(line, Seek::Duplicate)?;
    Some(DuplicateKey { path, column })
}

/// The 1-based column where the key of `path` starts in `line` (`Claims[2].Type`, or
/// `Claims[2]`, which is found at its nearest key, `Claims`); the nearest enclosing key
/// that is there when the path itself is not; `None` when not even the first key is.
pub fn column_of(line: &str, path: &str) -> Option<usize> {
    let mut path = path;
    loop {
        if path.is_empty() {
            return None;
        }
        if let Some((_, column)) = walk(line, Seek::Key(path)) {
            return Some(column);
        }
        path = match path.rfind(['.', '[']) {
            Some(i) => &path[..i],
            None => return None,
        };
    }
}

/// What a walk looks for.
#[derive(Clone, Copy)]
enum Seek<'p> {
    /// A key given twice in one object.
    Duplicate,
    /// The key with this path.
    Key(&'p str),
}

/// Walks `line` until it finds what `seek` names: the key's path and the column where
/// the key starts.
fn walk(line: &str, seek: Seek<'_>) -> Option<(String, usize)> {
    let mut de = serde_json::Deserializer::from_str(line);
    let mut found = None;
    let result = Check {
        path: String::new(),
        seek,
        found: &mut found,
    }
    .deserialize(&mut de);
    match (result, found) {
        (Err(e), Some((path, key))) => {
            // The parser stands at the key's closing quote.
            let quoted = serde_json::to_string(&key).map_or(0, |q| q.len());
            Some((path, (e.column() + 1).saturating_sub(quoted).max(1)))
        }
        _ => None,
    }
}

struct Check<'a, 'p> {
    path: String,
    seek: Seek<'p>,
    found: &'a mut Option<(String, String)>,
}

impl<'de> DeserializeSeed<'de> for Check<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_, '_> {
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
            let seek = self.seek;
            if seq
                .next_element_seed(Check { path, seek, found })?
                .is_none()
            {
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
            let hit = match self.seek {
                Seek::Duplicate => keys.contains(&key),
                Seek::Key(target) => path == target,
            };
            if hit {
                *self.found = Some((path, key));
                return Err(de::Error::custom("found"));
            }
            let found = &mut *self.found;
            let seek = self.seek;
            map.next_value_seed(Check { path, seek, found })?;
            if found.is_some() {
                return Err(de::Error::custom("found"));
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

    #[test]
    fn finds_the_column_of_a_field_or_its_nearest_key() {
        let line = r#"{"Id":"u","Claims":[{"Type":"a","Value":"b"},{"Type":"c"}],"Email":"x"}"#;
        assert_eq!(column_of(line, "Id"), Some(2));
        assert_eq!(column_of(line, "Email"), Some(60));
        assert_eq!(column_of(line, "Claims[1].Type"), Some(47));
        // An element is found at its array's key, a key that is not there at its parent.
        assert_eq!(column_of(line, "Claims[1]"), Some(11));
        assert_eq!(column_of(line, "Claims[1].Value"), Some(11));
        assert_eq!(column_of(line, "Passkeys[0].Data"), None);
        assert_eq!(column_of(line, ""), None);
        // A value that looks like a key is not one.
        assert_eq!(column_of(r#"{"A":"Email","Email":1}"#, "Email"), Some(14));
    }
}
