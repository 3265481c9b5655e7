//! Keys as a source returns them: typed, and compared in the order the engine sorts them.
//!
//! `IdentityUser<int>` has `INTEGER` keys, `IdentityUser<Guid>` GUIDs, the default
//! `IdentityUser` text. The ordered merge of users and their child rows compares keys in
//! the order the queries return them, so it must compare them as the engine does: numbers
//! as numbers (`9` before `10`), text byte by byte, and (as SQLite's BINARY collation does)
//! every number before every text and every text before every blob.

use std::fmt;

/// A key value of the source, typed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// An integer key (`int`, `long`).
    Integer(i64),
    /// A text key (`string`, and GUIDs stored as text).
    Text(String),
    /// A binary key (GUIDs stored as 16 bytes).
    Bytes(Vec<u8>),
}

/// What kind of key a users table has, as the manifest records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// Text (`IdentityUser`'s default `string` key; SQLite also stores `Guid` keys as text).
    String,
    /// An integer (`IdentityUser<int>`, `IdentityUser<long>`).
    Integer,
    /// A GUID column (`uuid`, `uniqueidentifier`, `char(36)` under a Guid mapping, or 16 bytes).
    Guid,
}

impl KeyType {
    /// `string`, `integer` or `guid`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Integer => "integer",
            KeyType::Guid => "guid",
        }
    }

    /// The key type a column's declared type stands for (SQLite's affinity rules first:
    /// a type naming `INT` is an integer).
    pub fn from_declared(decl_type: &str) -> KeyType {
        let t = decl_type.to_ascii_lowercase();
        if t.contains("int") {
            KeyType::Integer
        } else if ["uuid", "uniqueidentifier", "guid", "blob", "binary"]
            .iter()
            .any(|g| t.contains(g))
            || t == "char(36)"
        {
            // Binary keys are GUIDs (16 bytes) written by System.Data.SQLite and kin.
            KeyType::Guid
        } else {
            KeyType::String
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Key {
    /// The key as the bundle writes it: the string form the application uses. Integers
    /// in decimal, text as stored, 16 bytes as the .NET GUID they are (`Guid.ToString()`:
    /// lower-case, the first three groups little-endian), other bytes in lower-case hex.
    pub fn to_id_string(&self) -> String {
        match self {
            Key::Integer(i) => i.to_string(),
            Key::Text(t) => t.clone(),
            Key::Bytes(b) if b.len() == 16 => dotnet_guid(b),
            Key::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_id_string())
    }
}

/// The text of a .NET `Guid` from the 16 bytes `Guid.ToByteArray()` returns.
fn dotnet_guid(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_as_the_engine_sorts_them() {
        // Regression: integer keys were compared as text, so `10` came "before" `9`.
        assert!(Key::Integer(9) < Key::Integer(10));
        assert!(Key::Integer(-1) < Key::Integer(0));
        assert!(Key::Text("10".into()) < Key::Text("9".into()));
        assert!(Key::Integer(i64::MAX) < Key::Text(String::new()));
        assert!(Key::Text("\u{10FFFF}".into()) < Key::Bytes(Vec::new()));
        assert!(
            Key::Text("B".into()) < Key::Text("a".into()),
            "binary, not case-folded"
        );
    }

    #[test]
    fn ids_keep_the_form_the_application_uses() {
        assert_eq!(Key::Integer(10).to_id_string(), "10");
        assert_eq!(
            Key::Text("8F2A3FA9-0000-4000-8000-000000000001".into()).to_id_string(),
            "8F2A3FA9-0000-4000-8000-000000000001"
        );
        // Guid.Parse("00112233-4455-6677-8899-aabbccddeeff").ToByteArray()
        let bytes = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            Key::Bytes(bytes.to_vec()).to_id_string(),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        assert_eq!(Key::Bytes(vec![1, 0xab]).to_id_string(), "01ab");
    }

    #[test]
    fn key_types_from_declared_types() {
        assert_eq!(KeyType::from_declared("INTEGER"), KeyType::Integer);
        assert_eq!(KeyType::from_declared("bigint"), KeyType::Integer);
        assert_eq!(KeyType::from_declared("TEXT"), KeyType::String);
        assert_eq!(KeyType::from_declared("nvarchar(450)"), KeyType::String);
        assert_eq!(KeyType::from_declared("uuid"), KeyType::Guid);
        assert_eq!(KeyType::from_declared("uniqueidentifier"), KeyType::Guid);
        assert_eq!(KeyType::from_declared("BLOB"), KeyType::Guid);
        assert_eq!(KeyType::from_declared("char(36)"), KeyType::Guid);
    }
}
