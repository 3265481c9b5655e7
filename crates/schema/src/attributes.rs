//! Attribute schema files.
//!
//! ```json
//! {
//!   "attributes": [
//!     { "code": "userName", "type": "string", "unique": true, "required": true },
//!     { "code": "name", "type": { "complex": { "givenName": "string", "familyName": "string" } } },
//!     { "code": "emails", "type": { "list": { "complex": { "value": "string", "primary": "boolean" } } } },
//!     { "code": "active", "type": "boolean" }
//!   ]
//! }
//! ```
//!
//! Types: `boolean`, `date`, `dateTime`, `decimal`, `integer` (32-bit), `string`;
//! `{"complex": {property: type}}` with optional typed properties (unknown ones rejected,
//! complex may nest); `{"list": type}` of one element type (lists do not nest). `unique`
//! applies to scalars only. Codes start with an ASCII letter, hold letters, digits and
//! `_`, do not end in `_`, are at most 100 characters and are compared case-insensitively;
//! `created_at` and `last_updated_at` are reserved.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use serde_json::Value;

/// A scalar attribute type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarType {
    /// `true` / `false`.
    Boolean,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339 with offset.
    DateTime,
    /// A decimal number.
    Decimal,
    /// A 32-bit integer.
    Integer,
    /// Text.
    String,
}

impl ScalarType {
    fn parse(name: &str) -> Option<ScalarType> {
        Some(match name {
            "boolean" => ScalarType::Boolean,
            "date" => ScalarType::Date,
            "dateTime" => ScalarType::DateTime,
            "decimal" => ScalarType::Decimal,
            "integer" => ScalarType::Integer,
            "string" => ScalarType::String,
            _ => return None,
        })
    }

    /// The name used in schema files.
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::Boolean => "boolean",
            ScalarType::Date => "date",
            ScalarType::DateTime => "dateTime",
            ScalarType::Decimal => "decimal",
            ScalarType::Integer => "integer",
            ScalarType::String => "string",
        }
    }
}

/// The type of an attribute or of a complex property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttributeType {
    /// A scalar.
    Scalar(ScalarType),
    /// Named, typed, optional properties.
    Complex(BTreeMap<String, AttributeType>),
    /// A list of one element type (never itself a list).
    List(Box<AttributeType>),
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeType::Scalar(s) => f.write_str(s.name()),
            AttributeType::Complex(_) => f.write_str("complex"),
            AttributeType::List(e) => write!(f, "list of {e}"),
        }
    }
}

/// One attribute definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeDefinition {
    /// The code, as written in the file.
    pub code: String,
    /// The type.
    pub attribute_type: AttributeType,
    /// Values must be unique across users (scalars only).
    pub unique: bool,
    /// Every user must have a value.
    pub required: bool,
    /// Free text.
    pub description: Option<String>,
    /// Free text.
    pub display_name: Option<String>,
}

/// A schema file that cannot be used; `path` is the JSON path of the fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct SchemaError {
    /// The file.
    pub file: String,
    /// The JSON path of the fault, e.g. `attributes[3].type`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A parsed attribute schema.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttributeSchema {
    attributes: Vec<AttributeDefinition>,
    /// The position of each code, ASCII-lower-cased: codes compare ignoring case.
    index: HashMap<String, usize>,
}

/// The largest schema or mapping file ferry reads (4 MiB): a real one is a few KiB.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// The most attributes a schema may define (a real one has tens).
pub const MAX_ATTRIBUTES: usize = 10_000;

/// Reads a schema or mapping file of at most [`MAX_FILE_BYTES`], without its UTF-8
/// byte-order mark; the error says what went wrong, without the path.
pub fn read_small_file(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "is larger than {} MiB, the most ferry reads as a schema or mapping file; is it the right file?",
            MAX_FILE_BYTES >> 20
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "not valid UTF-8 at byte {}; save the file as UTF-8",
            e.utf8_error().valid_up_to() + 1
        )
    })?;
    // A byte-order mark (as Windows editors save UTF-8) is not JSON: skip it.
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

const RESERVED: [&str; 2] = ["created_at", "last_updated_at"];

fn check_code(code: &str) -> Result<(), String> {
    let mut chars = code.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return Err(format!("code `{code}` must start with an ASCII letter")),
    }
    if !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "code `{code}` may hold only ASCII letters, digits and `_`"
        ));
    }
    if code.ends_with('_') {
        return Err(format!("code `{code}` must not end with `_`"));
    }
    if code.len() > 100 {
        return Err(format!("code `{code}` is longer than 100 characters"));
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(code)) {
        return Err(format!("code `{code}` is reserved"));
    }
    Ok(())
}

fn parse_type(value: &Value, path: &str, in_list: bool) -> Result<AttributeType, (String, String)> {
    match value {
        Value::String(name) => ScalarType::parse(name).map(AttributeType::Scalar).ok_or_else(|| {
            (
                path.to_string(),
                format!("unknown type `{name}` (boolean, date, dateTime, decimal, integer, string, or {{\"complex\": …}} / {{\"list\": …}})"),
            )
        }),
        Value::Object(map) if map.len() == 1 && map.contains_key("complex") => {
            let Value::Object(props) = &map["complex"] else {
                return Err((format!("{path}.complex"), "expected an object of property: type".into()));
            };
            if props.is_empty() {
                return Err((format!("{path}.complex"), "a complex type needs at least one property".into()));
            }
            let mut out = BTreeMap::new();
            for (name, t) in props {
                let p = format!("{path}.complex.{name}");
                check_code(name).map_err(|m| (p.clone(), m.replace("code", "property")))?;
                if out.keys().any(|k: &String| k.eq_ignore_ascii_case(name)) {
                    return Err((p, format!("property `{name}` is defined twice")));
                }
                out.insert(name.clone(), parse_type(t, &p, false)?);
            }
            Ok(AttributeType::Complex(out))
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("list") => {
            if in_list {
                return Err((path.to_string(), "lists cannot be nested".into()));
            }
            let element = parse_type(&map["list"], &format!("{path}.list"), true)?;
            if matches!(element, AttributeType::List(_)) {
                return Err((format!("{path}.list"), "lists cannot be nested".into()));
            }
            Ok(AttributeType::List(Box::new(element)))
        }
        _ => Err((
            path.to_string(),
            "expected a type name, {\"complex\": {…}} or {\"list\": …}".into(),
        )),
    }
}

impl AttributeSchema {
    /// Reads and checks a schema file.
    pub fn load(path: &Path) -> Result<AttributeSchema, SchemaError> {
        let file = path.display().to_string();
        let text = read_small_file(path).map_err(|message| SchemaError {
            file: file.clone(),
            path: String::new(),
            message,
        })?;
        AttributeSchema::parse(&text, &file)
    }

    /// Parses and checks the text of a schema file; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<AttributeSchema, SchemaError> {
        let err = |path: &str, message: String| SchemaError {
            file: file.to_string(),
            path: path.to_string(),
            message,
        };
        let root: Value = serde_json::from_str(text).map_err(|e| {
            err(
                &format!("line {}", e.line()),
                format!("not valid JSON: {e}"),
            )
        })?;
        let Some(list) = root.get("attributes").and_then(Value::as_array) else {
            return Err(err(
                "attributes",
                "expected an array of attribute definitions".into(),
            ));
        };
        if let Some(obj) = root.as_object() {
            if let Some(k) = obj
                .keys()
                .find(|k| !matches!(k.as_str(), "attributes" | "$schema" | "description"))
            {
                return Err(err(k, "unknown field (expected `attributes`)".into()));
            }
        }
        if list.len() > MAX_ATTRIBUTES {
            return Err(err(
                "attributes",
                format!(
                    "defines {} attributes; ferry takes at most {MAX_ATTRIBUTES}",
                    list.len()
                ),
            ));
        }
        let mut attributes: Vec<AttributeDefinition> = Vec::with_capacity(list.len());
        let mut index: HashMap<String, usize> = HashMap::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let at = |field: &str| format!("attributes[{i}].{field}");
            let Some(obj) = item.as_object() else {
                return Err(err(
                    &format!("attributes[{i}]"),
                    "expected an object".into(),
                ));
            };
            for key in obj.keys() {
                if !matches!(
                    key.as_str(),
                    "code" | "type" | "unique" | "required" | "description" | "displayName"
                ) {
                    return Err(err(
                        &at(key),
                        "unknown field (code, type, unique, required, description, displayName)"
                            .into(),
                    ));
                }
            }
            let code = obj
                .get("code")
                .and_then(Value::as_str)
                .ok_or_else(|| err(&at("code"), "expected a string".into()))?;
            check_code(code).map_err(|m| err(&at("code"), m))?;
            if let Some(prev) = index.get(&code.to_ascii_lowercase()) {
                return Err(err(
                    &at("code"),
                    format!("`{code}` is already defined at attributes[{prev}]"),
                ));
            }
            index.insert(code.to_ascii_lowercase(), i);
            let type_value = obj
                .get("type")
                .ok_or_else(|| err(&at("type"), "missing".into()))?;
            let attribute_type =
                parse_type(type_value, &at("type"), false).map_err(|(p, m)| err(&p, m))?;
            let flag = |name: &str| -> Result<bool, SchemaError> {
                match obj.get(name) {
                    None => Ok(false),
                    Some(Value::Bool(b)) => Ok(*b),
                    Some(_) => Err(err(&at(name), "expected true or false".into())),
                }
            };
            let unique = flag("unique")?;
            if unique && !matches!(attribute_type, AttributeType::Scalar(_)) {
                return Err(err(
                    &at("unique"),
                    format!("only scalar attributes can be unique; `{code}` is {attribute_type}"),
                ));
            }
            let text = |name: &str| -> Result<Option<String>, SchemaError> {
                match obj.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(err(&at(name), "expected a string".into())),
                }
            };
            attributes.push(AttributeDefinition {
                code: code.to_string(),
                attribute_type,
                unique,
                required: flag("required")?,
                description: text("description")?,
                display_name: text("displayName")?,
            });
        }
        Ok(AttributeSchema { attributes, index })
    }

    /// The definition of `code` (case-insensitive).
    pub fn get(&self, code: &str) -> Option<&AttributeDefinition> {
        self.index
            .get(&code.to_ascii_lowercase())
            .map(|&i| &self.attributes[i])
    }

    /// Every definition, in file order.
    pub fn attributes(&self) -> &[AttributeDefinition] {
        &self.attributes
    }
}

/// Checks `value` against `t`; the error says what was expected at which path.
pub fn check_value(value: &Value, t: &AttributeType, path: &str) -> Result<(), String> {
    check_at(value, t, ValuePath::Root(path))
}

/// Where a value sits inside an attribute's value (`name.givenName`, `emails[2]`). It
/// lives on the stack and is formatted only when a value is wrong, so that checking a
/// good value allocates nothing.
#[derive(Clone, Copy)]
enum ValuePath<'a> {
    Root(&'a str),
    Property(&'a ValuePath<'a>, &'a str),
    Item(&'a ValuePath<'a>, usize),
}

impl fmt::Display for ValuePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValuePath::Root(name) => f.write_str(name),
            ValuePath::Property(parent, name) => write!(f, "{parent}.{name}"),
            ValuePath::Item(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn check_at(value: &Value, t: &AttributeType, path: ValuePath<'_>) -> Result<(), String> {
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    };
    match t {
        AttributeType::Scalar(s) => {
            let ok = match (s, value) {
                (ScalarType::Boolean, Value::Bool(_)) => true,
                (ScalarType::String, Value::String(_)) => true,
                (ScalarType::Integer, Value::Number(n)) => {
                    n.as_i64().is_some_and(|i| i32::try_from(i).is_ok())
                }
                (ScalarType::Decimal, Value::Number(_)) => true,
                (ScalarType::Date, Value::String(d)) => {
                    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok()
                }
                (ScalarType::DateTime, Value::String(d)) => {
                    chrono::DateTime::parse_from_rfc3339(d).is_ok()
                }
                _ => false,
            };
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{path}: expects type '{}' but got {} `{}`",
                    s.name(),
                    kind(value),
                    short(value)
                ))
            }
        }
        AttributeType::Complex(props) => {
            let Value::Object(map) = value else {
                return Err(format!(
                    "{path}: expects a complex value but got {}",
                    kind(value)
                ));
            };
            for (k, v) in map {
                let Some(pt) = props
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(k))
                    .map(|(_, t)| t)
                else {
                    return Err(format!("{path}: property '{k}' is not defined"));
                };
                check_at(v, pt, ValuePath::Property(&path, k))?;
            }
            Ok(())
        }
        AttributeType::List(element) => {
            let Value::Array(items) = value else {
                return Err(format!("{path}: expects a list but got {}", kind(value)));
            };
            for (i, item) in items.iter().enumerate() {
                check_at(item, element, ValuePath::Item(&path, i))?;
            }
            Ok(())
        }
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(text: &str) -> String {
        let e = AttributeSchema::parse(text, "s.json").unwrap_err();
        format!("{}: {}", e.path, e.message)
    }

    #[test]
    fn shipped_schemas_parse() {
        for name in ["scim-user.json", "oidc-standard.json"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../schemas")
                .join(name);
            let schema = AttributeSchema::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!schema.attributes().is_empty());
        }
    }

    #[test]
    fn faults_are_named_by_path() {
        assert_eq!(
            fault(r#"{"attributes":[{"code":"a","type":"string"},{"code":"b","type":"strnig"}]}"#)
                .split(" (")
                .next()
                .unwrap(),
            "attributes[1].type: unknown type `strnig`"
        );
        assert_eq!(
            fault(r#"{"attributes":[{"code":"n","type":{"complex":{"given":{"list":"string"},"x":"bool"}}}]}"#),
            "attributes[0].type.complex.x: unknown type `bool` (boolean, date, dateTime, decimal, integer, string, or {\"complex\": …} / {\"list\": …})"
        );
        assert_eq!(
            fault(r#"{"attributes":[{"code":"l","type":{"list":{"list":"string"}}}]}"#),
            "attributes[0].type.list: lists cannot be nested"
        );
        assert_eq!(
            fault(
                r#"{"attributes":[{"code":"n","type":{"complex":{"a":"string"}},"unique":true}]}"#
            ),
            "attributes[0].unique: only scalar attributes can be unique; `n` is complex"
        );
        assert_eq!(
            fault(r#"{"attributes":[{"code":"1a","type":"string"}]}"#),
            "attributes[0].code: code `1a` must start with an ASCII letter"
        );
        assert_eq!(
            fault(r#"{"attributes":[{"code":"a_","type":"string"}]}"#),
            "attributes[0].code: code `a_` must not end with `_`"
        );
        assert_eq!(
            fault(r#"{"attributes":[{"code":"Created_At","type":"string"}]}"#),
            "attributes[0].code: code `Created_At` is reserved"
        );
        assert_eq!(
            fault(r#"{"attributes":[{"code":"a","type":"string"},{"code":"A","type":"string"}]}"#),
            "attributes[1].code: `A` is already defined at attributes[0]"
        );
        assert_eq!(
            fault(r#"{"attributes":[{"code":"a","type":"string","uniqe":true}]}"#)
                .split(" (")
                .next()
                .unwrap(),
            "attributes[0].uniqe: unknown field"
        );
    }

    #[test]
    fn values_are_checked_against_types() {
        let schema = AttributeSchema::parse(
            r#"{"attributes":[{"code":"n","type":{"complex":{"given":"string","age":"integer"}}},{"code":"l","type":{"list":"date"}}]}"#,
            "s",
        )
        .unwrap();
        let n = &schema.get("n").unwrap().attribute_type;
        assert!(check_value(&serde_json::json!({"given":"A","age":3}), n, "n").is_ok());
        assert_eq!(
            check_value(&serde_json::json!({"age":"3"}), n, "n").unwrap_err(),
            "n.age: expects type 'integer' but got string `3`"
        );
        assert_eq!(
            check_value(&serde_json::json!({"x":1}), n, "n").unwrap_err(),
            "n: property 'x' is not defined"
        );
        let l = &schema.get("L").unwrap().attribute_type;
        assert_eq!(
            check_value(&serde_json::json!(["2020-01-01", "soon"]), l, "l").unwrap_err(),
            "l[1]: expects type 'date' but got string `soon`"
        );
        assert_eq!(
            check_value(
                &serde_json::json!(2147483648i64),
                &AttributeType::Scalar(ScalarType::Integer),
                "i"
            )
            .unwrap_err(),
            "i: expects type 'integer' but got number `2147483648`"
        );
    }
}
