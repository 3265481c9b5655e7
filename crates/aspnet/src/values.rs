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
        "1" => Some(true),
        "0" => Some(false),
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
