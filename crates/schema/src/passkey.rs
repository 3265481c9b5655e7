//! A bundle passkey (`Data` as ASP.NET stores it) as User Management's `PasskeyImport`:
//! the COSE algorithm read from the key, the AAGUID from the attestation object.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ciborium::Value as Cbor;
use ferry_bundle::record::Passkey;
use ferry_store_core::PasskeyImport;
use serde_json::Value;

fn bytes(
    data: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<u8>>, (String, String)> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => STANDARD
            .decode(s)
            .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
            .map(Some)
            .map_err(|_| (format!("Data.{key}"), "not base64".to_string())),
        Some(_) => Err((format!("Data.{key}"), "expected base64 text".to_string())),
    }
}

/// The COSE algorithm (label 3) of a COSE_Key.
pub fn cose_algorithm(key: &[u8]) -> Result<i64, String> {
    let value: Cbor =
        ciborium::from_reader(key).map_err(|_| "PublicKey is not a CBOR COSE key".to_string())?;
    let Cbor::Map(entries) = value else {
        return Err("PublicKey is CBOR but not a COSE key map".into());
    };
    for (k, v) in entries {
        if let (Cbor::Integer(k), Cbor::Integer(v)) = (k, v) {
            if i128::from(k) == 3 {
                return i64::try_from(i128::from(v))
                    .map_err(|_| "COSE algorithm out of range".to_string());
            }
        }
    }
    Err("the COSE key has no algorithm (label 3)".into())
}

/// The AAGUID of an attestation object's attested credential data, if present.
pub fn aaguid(attestation_object: &[u8]) -> Option<[u8; 16]> {
    let value: Cbor = ciborium::from_reader(attestation_object).ok()?;
    let Cbor::Map(entries) = value else {
        return None;
    };
    let auth = entries.into_iter().find_map(|(k, v)| match (k, v) {
        (Cbor::Text(k), Cbor::Bytes(b)) if k == "authData" => Some(b),
        _ => None,
    })?;
    // rpIdHash (32) | flags (1) | signCount (4) | AAGUID (16) | …; AT flag 0x40.
    if auth.len() >= 55 && auth[32] & 0x40 != 0 {
        auth[37..53].try_into().ok()
    } else {
        None
    }
}

/// Converts a bundle passkey; the error names the field (relative to the passkey).
pub fn convert(p: &Passkey) -> Result<PasskeyImport, (String, String)> {
    let id = &p.credential_id.0;
    if id.is_empty() || id.len() > 1023 {
        return Err((
            "CredentialId".into(),
            format!("must be 1 to 1023 bytes (is {})", id.len()),
        ));
    }
    let key = bytes(&p.data, "PublicKey")?
        .ok_or(("Data.PublicKey".to_string(), "missing".to_string()))?;
    let algorithm = cose_algorithm(&key).map_err(|m| ("Data.PublicKey".to_string(), m))?;
    let aaguid = bytes(&p.data, "AttestationObject")?
        .and_then(|a| aaguid(&a))
        .unwrap_or([0; 16]);
    let flag = |k: &str| p.data.get(k).and_then(Value::as_bool).unwrap_or(false);
    let sign_count = match p.data.get("SignCount") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or((
            "Data.SignCount".to_string(),
            "expected an unsigned 32-bit integer".to_string(),
        ))?,
    };
    let name = match p.data.get("Name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() => n.to_string(),
        _ => "Imported passkey".to_string(),
    };
    Ok(PasskeyImport {
        credential_id: id.clone(),
        public_key_cose: key,
        algorithm,
        sign_count,
        backup_eligible: flag("IsBackupEligible"),
        backed_up: flag("IsBackedUp"),
        aaguid,
        name,
    })
}
