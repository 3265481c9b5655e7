//! The fuzz harnesses: what ferry does with input it must not trust, one function per
//! target. Each takes arbitrary bytes and must return, whatever they are: a panic, a
//! hang or an allocation out of proportion is a bug. `fuzz/` (cargo-fuzz) runs them
//! under libFuzzer; `tests/corpus.rs` runs them over every input saved in
//! `fuzz/corpus/TARGET/` and `fuzz/regressions/TARGET/`, so the ordinary test suite
//! keeps what the fuzzers found.
//!
//! | target | what it runs |
//! |--------|--------------|
//! | `password_hash` | [`password_hash`]: the hash parser of every format |
//! | `record` | [`record`]: the NDJSON record reader, and the column finder |
//! | `manifest` | [`manifest`]: the manifest reader and the part checks of a bundle |
//! | `schema` | [`schema`]: the attribute schema and mapping loaders, and the mapper |
//! | `seal` | [`seal`]: a whole bundle's users part read and tallied as `seal` does |
#![deny(missing_docs)]

use std::path::Path;

use ferry_bundle::read::{hash_file, parse_record};
use ferry_bundle::{BundleReader, Tally, UserRecord};

/// The names of the targets, as `fuzz/` and the corpus folders name them.
pub const TARGETS: [&str; 5] = ["password_hash", "record", "manifest", "schema", "seal"];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "password_hash" => password_hash(data),
        "record" => record(data),
        "manifest" => manifest(data),
        "schema" => schema(data),
        "seal" => seal(data),
        other => panic!("no fuzz target `{other}`"),
    }
}

/// Parses `data` as a stored password hash (ASP.NET V2/V3, Membership, BCrypt, Argon2,
/// PBKDF2 PHC), and describes what it found. Nothing is derived: the cost of a check is
/// what the parser bounds.
pub fn password_hash(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ferry_passwords::PasswordHash::parse(text) {
        Ok(hash) => {
            let _ = hash.kind();
            let _ = format!("{hash:?}");
        }
        Err(reason) => {
            let _ = (reason.code(), reason.to_string());
        }
    }
}

/// Reads `data` as one NDJSON user record, as every command does, and finds the column
/// of the fields a problem may name.
pub fn record(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = parse_record::<UserRecord>(line) {
        let _ = ferry_bundle::jsonpos::column_of(line, &e.field);
    }
    for field in [
        "Id",
        "Claims[0].Value",
        "Extra.Age",
        "Passkeys[1].Data.PublicKey",
    ] {
        let _ = ferry_bundle::jsonpos::column_of(line, field);
    }
}

/// A bundle folder holding `manifest` as its manifest and one small valid users part.
fn bundle_with(manifest: &[u8], users: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("manifest.json"), manifest).expect("written");
    std::fs::write(dir.path().join("users-00000.ndjson"), users).expect("written");
    dir
}

/// Every user record of the bundle at `dir`, read (and tallied, as `seal` does), if the
/// bundle opens.
fn read_bundle(dir: &Path) {
    let Ok(bundle) = BundleReader::open(dir) else {
        return;
    };
    let _ = bundle.check_parts();
    let mut tally = Tally::default();
    for raw in bundle.user_records() {
        let Ok(raw) = raw else { break };
        if let Ok(user) = raw.decoded() {
            tally.add_user(&user);
        }
    }
    let _ = tally.finish();
}

/// A users part that is valid, for the targets that vary something else.
const USERS: &str = include_str!("users.ndjson");

/// Reads `data` as a bundle's `manifest.json`, beside a valid users part: part names,
/// counts and checksums are checked before any part is opened.
pub fn manifest(data: &[u8]) {
    let dir = bundle_with(data, USERS.as_bytes());
    read_bundle(dir.path());
}

/// Loads `data` as an attribute schema and as a mapping file, and maps a record with
/// each schema it accepts.
pub fn schema(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mapping = ferry_schema::Mapping::parse(text, "fuzz.json");
    if let Ok(schema) = ferry_schema::AttributeSchema::parse(text, "fuzz.json") {
        let mapping = ferry_schema::Mapping::default_mapping();
        if let Ok(mapper) = ferry_schema::Mapper::new(schema, &mapping) {
            map_users(&mapper);
        }
    }
    if let Ok(mapping) = mapping {
        let schema = ferry_schema::AttributeSchema::parse(
            include_str!("../../../schemas/scim-user.json"),
            "scim-user.json",
        )
        .expect("the shipped schema parses");
        if let Ok(mapper) = ferry_schema::Mapper::new(schema, &mapping) {
            map_users(&mapper);
        }
    }
}

fn map_users(mapper: &ferry_schema::Mapper) {
    let roles = ferry_schema::RoleIndex::default();
    for line in USERS.lines() {
        if let Ok(user) = parse_record::<UserRecord>(line) {
            let _ = mapper.map(&user, &roles);
        }
    }
}

/// Writes `data` as a bundle's users part with a manifest sealed over it (its size,
/// checksum and line count), and reads every record as `seal` does.
pub fn seal(data: &[u8]) {
    let dir = bundle_with(b"{}", data);
    let part = dir.path().join("users-00000.ndjson");
    let (bytes, sha256) = hash_file(&part).expect("hashed");
    let records = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count();
    let mut manifest: serde_json::Value =
        serde_json::from_str(include_str!("manifest.json")).expect("the template parses");
    manifest["parts"][0]["bytes"] = bytes.into();
    manifest["parts"][0]["sha256"] = sha256.into();
    manifest["parts"][0]["records"] = records.into();
    manifest["counts"]["users"] = records.into();
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec(&manifest).expect("serialised"),
    )
    .expect("written");
    read_bundle(dir.path());
}
