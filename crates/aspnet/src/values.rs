//! Engine-independent conversions of column text into faithful record values.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone as _};

/// Parses a `DateTimeOffset` as EF Core writes it to SQLite
/// (`yyyy-MM-dd HH:mm:ss.FFFFFFFzzz`), or RFC 3339.
pub(crate) fn parse_datetime_offset(text: &str) -> Option<DateTime<FixedOffset>> {
    let t = text.trim();
    DateTime::parse_from_rfc3339(t)
        .ok()
        .or_else(|| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%:z").ok())
        .or_else(|| DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%:z").ok())
        .or_else(|| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z").ok())
        // SQL Server's datetimeoffset as sqlcmd and bcp print it.
        .or_else(|| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f %:z").ok())
}

/// Bytes written as hex text: `\x0102…` (PostgreSQL's `bytea`) or `0x0102…` (SQL
/// Server's `varbinary`), as dumps carry them.
pub(crate) fn parse_hex_bytes(text: &str) -> Option<Vec<u8>> {
    let digits = text
        .strip_prefix("\\x")
        .or_else(|| text.strip_prefix("0x"))
        .or_else(|| text.strip_prefix("0X"))?;
    if digits.len() % 2 != 0 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

/// Parses a UTC time without offset (classic `LockoutEndDateUtc`), as `+00:00`.
pub(crate) fn parse_utc_naive(text: &str) -> Option<DateTime<FixedOffset>> {
    let t = text.trim();
    let naive = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()?;
    Some(
        FixedOffset::east_opt(0)
            .expect("zero offset")
            .from_utc_datetime(&naive),
    )
}

/// Parses a boolean stored as text.
pub(crate) fn parse_bool_text(text: &str) -> Option<bool> {
    match text.trim() {
        "1" | "t" => Some(true),
        "0" | "f" => Some(false),
        t if t.eq_ignore_ascii_case("true") => Some(true),
        t if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// `NormalizedUserName` → `normalized_user_name`.
pub(crate) fn snake_case(pascal: &str) -> String {
    let mut out = String::with_capacity(pascal.len() + 4);
    for (i, c) in pascal.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ef_sqlite_datetimeoffset_text() {
        let t = parse_datetime_offset("2026-12-01 10:00:00.1234567+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-01T10:00:00.123456700+02:00");
        assert!(parse_datetime_offset("2026-12-01 10:00:00+00:00").is_some());
        assert!(parse_datetime_offset("2026-12-01T10:00:00Z").is_some());
        assert!(parse_datetime_offset("soon").is_none());
        assert_eq!(
            parse_datetime_offset("2030-01-02 03:04:05.1234567 +02:00")
                .unwrap()
                .to_rfc3339(),
            "2030-01-02T03:04:05.123456700+02:00"
        );
        assert_eq!(
            parse_datetime_offset("2024-03-16 06:30:00.123456+00")
                .unwrap()
                .to_rfc3339(),
            "2024-03-16T06:30:00.123456+00:00"
        );
        assert_eq!(parse_hex_bytes("\\x01ff"), Some(vec![1, 255]));
        assert_eq!(parse_hex_bytes("0x01FF"), Some(vec![1, 255]));
        assert_eq!(parse_hex_bytes("0x1"), None);
        assert_eq!(parse_hex_bytes("hello"), None);
        assert_eq!(
            parse_utc_naive("2015-03-04 05:06:07.123")
                .unwrap()
                .to_rfc3339(),
            "2015-03-04T05:06:07.123+00:00"
        );
    }

    #[test]
    fn snake() {
        assert_eq!(snake_case("NormalizedUserName"), "normalized_user_name");
        assert_eq!(snake_case("Id"), "id");
    }
}
