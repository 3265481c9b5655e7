//! User Management's value rules, applied before anything reaches the store.

/// An e-mail address: trimmed, 3 to 320 characters, with an `@` that is neither first
/// nor last.
pub fn email(text: &str) -> Result<String, String> {
    let t = text.trim();
    let n = t.chars().count();
    if !(3..=320).contains(&n) {
        return Err(format!(
            "`{t}` is not an e-mail address: it must be 3 to 320 characters"
        ));
    }
    match t.find('@') {
        Some(i) if i > 0 && i < t.len() - 1 => Ok(t.to_string()),
        _ => Err(format!(
            "`{t}` is not an e-mail address: it needs an @ with text on both sides"
        )),
    }
}

/// A phone number for SMS: whitespace, a leading `+` and leading zeros stripped, then
/// digits only, at most 15.
pub fn phone(text: &str) -> Result<String, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = compact.trim_start_matches('+').trim_start_matches('0');
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{text}` is not a phone number User Management accepts: digits only after an optional +"));
    }
    if digits.len() > 15 {
        return Err(format!("`{text}` has more than 15 digits"));
    }
    Ok(digits.to_string())
}

/// An external provider name or a provider key: 1 to 255 characters.
pub fn external(text: &str, what: &str) -> Result<(), String> {
    let n = text.chars().count();
    if n == 0 || n > 255 {
        return Err(format!("{what} must be 1 to 255 characters (is {n})"));
    }
    Ok(())
}

/// A recovery code: Crockford base32 (hyphens ignored), at most 64 characters, no `U`.
pub fn recovery_code(code: &str) -> Result<(), String> {
    const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let body: String = code.chars().filter(|c| *c != '-').collect();
    if body.is_empty() || body.chars().count() > 64 {
        return Err("a recovery code must be 1 to 64 characters".into());
    }
    if let Some(bad) = body
        .chars()
        .find(|c| !CROCKFORD.contains(c.to_ascii_uppercase()))
    {
        return Err(format!(
            "a recovery code holds `{bad}`, which is not Crockford base32"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_rules() {
        assert_eq!(email("  a@b ").unwrap(), "a@b");
        assert!(email("ab").is_err());
        assert!(email("@ab").is_err());
        assert!(email("ab@").is_err());
        assert!(email(&format!("a@{}", "b".repeat(319))).is_err());
        assert_eq!(phone("+1 555 0100 0000").unwrap(), "155501000000");
        assert_eq!(phone("0044 20 7946 0958").unwrap(), "442079460958");
        assert!(phone("(555) 123-4567").is_err());
        assert!(phone("+1234567890123456").is_err());
        assert!(recovery_code("BCDFG-HJKMN").is_ok());
        assert!(recovery_code("UUUUU-AAAAA").is_err());
        assert!(external("", "provider").is_err());
    }
}
