//! The Parquet encoding holds every record the NDJSON one does, value for value: records
//! written to a Parquet bundle come back equal, and serialise to the same NDJSON bytes.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_bundle::manifest::Source;
use ferry_bundle::{BundleReader, BundleWriter, Encoding, ManifestInfo, UserRecord};

/// Records in every shape a user can take: all nulls, empty lists, unicode, integer and
/// GUID ids, 100 ns ticks and offsets, DateTimeOffset.MaxValue, extra columns of every
/// JSON type, passkeys whose `Data` is ASP.NET's, reordered, partial, or holds values its
/// typed columns cannot.
const RECORDS: &[&str] = &[
    r#"{"Id":"1","UserName":null,"NormalizedUserName":null,"Email":null,"NormalizedEmail":null,"EmailConfirmed":false,"PasswordHash":null,"SecurityStamp":null,"ConcurrencyStamp":null,"PhoneNumber":null,"PhoneNumberConfirmed":false,"TwoFactorEnabled":false,"LockoutEnd":null,"LockoutEnabled":false,"AccessFailedCount":0,"Extra":{},"Claims":[],"Logins":[],"Tokens":[],"Roles":[],"Passkeys":[]}"#,
    r#"{"Id":"0d8f5c2e-7c1a-4a7e-9c55-2f6d0e7b1a10","UserName":"Zoë Ångström 山田","NormalizedUserName":"ZOË ÅNGSTRÖM 山田","Email":"zoë@例え.jp","NormalizedEmail":"ZOË@例え.JP","EmailConfirmed":true,"PasswordHash":"AQAAAAIAAYagAAAAEA==","SecurityStamp":"S","ConcurrencyStamp":"c","PhoneNumber":"+81 3-1234-5678","PhoneNumberConfirmed":true,"TwoFactorEnabled":true,"LockoutEnd":"2030-01-02T03:04:05.123456700+05:30","LockoutEnabled":true,"AccessFailedCount":3,"Extra":{"FirstName":"Zoë","Age":41,"Score":2.5,"Vip":true,"Nickname":null,"Tags":["a","b"],"Address":{"city":"Ōsaka"}},"Claims":[{"Type":"given_name","Value":"Zoë"},{"Type":null,"Value":null},{"Type":"address","Value":"{\"locality\":\"Ōsaka\"}"}],"Logins":[{"LoginProvider":"Google","ProviderKey":"1099","ProviderDisplayName":null},{"LoginProvider":"GitHub","ProviderKey":"42","ProviderDisplayName":"GitHub"}],"Tokens":[{"LoginProvider":"[AspNetUserStore]","Name":"AuthenticatorKey","Value":"JBSWY3DPEHPK3PXP"},{"LoginProvider":"[AspNetUserStore]","Name":"RecoveryCodes","Value":null}],"Roles":["Help-Desk","admin"],"Passkeys":[{"CredentialId":"AQIDBA","Data":{"PublicKey":"pQECAyYgASFYIA==","Name":"YubiKey 5","CreatedAt":"2025-11-12T10:00:00+00:00","SignCount":7,"Transports":["usb","nfc"],"IsUserVerified":true,"IsBackupEligible":false,"IsBackedUp":false,"AttestationObject":"o2NmbXRkbm9uZQ==","ClientDataJson":"eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIn0="}},{"CredentialId":"","Data":{}},{"CredentialId":"_w","Data":{"Name":null,"SignCount":1.5,"PublicKey":"not base64!","Transports":[1,"usb"],"Custom":{"x":1}}},{"CredentialId":"AA","Data":{"Custom":true,"PublicKey":"pQ=="}},{"CredentialId":"Ag","Data":{"SignCount":18446744073709551615,"Transports":null,"IsBackedUp":null}},{"CredentialId":"Aw","Data":{"PublicKey":"pQ==","Name":"Laptop","SignCount":"7","IsBackedUp":false,"Custom":{"x":[1,2]},"Later":null}}]}"#,
    r#"{"Id":"10","UserName":"max","NormalizedUserName":"MAX","Email":"max","NormalizedEmail":"MAX","EmailConfirmed":false,"PasswordHash":"","SecurityStamp":"","ConcurrencyStamp":"","PhoneNumber":"","PhoneNumberConfirmed":false,"TwoFactorEnabled":false,"LockoutEnd":"9999-12-31T23:59:59.999999900+00:00","LockoutEnabled":true,"AccessFailedCount":2147483647,"Extra":{"Blob":"AAEC"},"Claims":[{"Type":"","Value":""}],"Logins":[],"Tokens":[],"Roles":[""],"Passkeys":[]}"#,
    r#"{"Id":"11","UserName":"early","NormalizedUserName":"EARLY","Email":null,"NormalizedEmail":null,"EmailConfirmed":false,"PasswordHash":null,"SecurityStamp":null,"ConcurrencyStamp":null,"PhoneNumber":null,"PhoneNumberConfirmed":false,"TwoFactorEnabled":false,"LockoutEnd":"0001-01-01T00:00:00-14:00","LockoutEnabled":false,"AccessFailedCount":-1,"Extra":{},"Claims":[],"Logins":[],"Tokens":[],"Roles":[],"Passkeys":[]}"#,
];

fn info() -> ManifestInfo {
    ManifestInfo {
        tool: "test".into(),
        source: Source {
            engine: "sqlite".into(),
            location: "app.db".into(),
            generation: "core-v3".into(),
            evidence: vec![],
            naming: "PascalCase".into(),
            tables: vec![],
            extra_user_columns: vec![],
            key_type: "string".into(),
            migrations: None,
            server_version: None,
        },
        limit: None,
        orphans: BTreeMap::new(),
        converted_from: None,
        edits: Vec::new(),
    }
}

fn records() -> Vec<UserRecord> {
    RECORDS
        .iter()
        .map(|line| serde_json::from_str(line).expect("a valid record"))
        .collect()
}

fn write(dir: &Path, encoding: Encoding, part_size: u64, records: &[UserRecord]) {
    let mut writer = BundleWriter::new(dir, encoding, part_size).unwrap();
    for r in records {
        writer.write_user(r).unwrap();
    }
    writer.finish(info()).unwrap();
}

fn read(dir: &Path) -> Vec<(String, UserRecord)> {
    BundleReader::open(dir)
        .unwrap()
        .users()
        .map(|item| {
            let (location, record) = item.unwrap();
            (location.to_string(), record.unwrap())
        })
        .collect()
}

#[test]
fn every_shape_comes_back_value_for_value_and_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let records = records();
    write(dir.path(), Encoding::Parquet, 3, &records);
    let back = read(dir.path());
    let locations: Vec<&str> = back.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        locations,
        [
            "users-00000.parquet:1",
            "users-00000.parquet:2",
            "users-00000.parquet:3",
            "users-00001.parquet:1"
        ]
    );
    for ((_, got), (want, line)) in back.iter().zip(records.iter().zip(RECORDS)) {
        assert_eq!(got, want);
        // The same bytes as NDJSON: key order inside Extra and passkey Data included.
        let again = serde_json::to_string(got).unwrap();
        let original =
            serde_json::to_string(&serde_json::from_str::<UserRecord>(line).unwrap()).unwrap();
        assert_eq!(again, original);
    }
}

#[test]
fn the_manifest_records_the_encoding_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), Encoding::Parquet, 100, &records());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["encoding"], "parquet");
    assert_eq!(manifest["parquet_schema"], 1);
    assert_eq!(manifest["parts"][0]["file"], "users-00000.parquet");
    assert_eq!(manifest["parts"][0]["records"], 4);
    assert_eq!(manifest["parts"][1]["file"], "roles.ndjson");
    assert_eq!(manifest["counts"]["passkeys"], 6);
    // The checksums were computed while writing: the files match them.
    let bundle = BundleReader::open(dir.path()).unwrap();
    assert!(bundle.check_parts().unwrap().is_empty());
}

#[test]
fn an_ndjson_manifest_has_no_parquet_schema() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), Encoding::Ndjson, 100, &records());
    let text = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    assert!(!text.contains("parquet_schema"), "{text}");
}

#[test]
fn a_file_that_is_not_parquet_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), Encoding::Parquet, 100, &records());
    std::fs::write(dir.path().join("users-00000.parquet"), b"{\"Id\":\"1\"}\n").unwrap();
    let err = BundleReader::open(dir.path())
        .unwrap()
        .users()
        .next()
        .unwrap()
        .map(|_| ())
        .expect_err("an error");
    let text = err.to_string();
    assert!(
        text.contains("users-00000.parquet") && text.contains("not a readable Parquet file"),
        "{text}"
    );
}

#[test]
fn the_schema_description_in_schemas_is_the_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/parquet-users.json");
    if std::env::var_os("FERRY_UPDATE_SNAPSHOTS").is_some() {
        let mut text = serde_json::to_string_pretty(&ferry_bundle::parquet::describe()).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        committed,
        ferry_bundle::parquet::describe(),
        "{} differs from the schema: regenerate it with FERRY_UPDATE_SNAPSHOTS=1 cargo test -p ferry-bundle --test parquet",
        path.display()
    );
}
