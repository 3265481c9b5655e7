//! The semantics every backend must show, written once against `dyn Store`.
//!
//! A backend runs the whole suite from its own tests with
//! [`conformance_tests!`](crate::conformance_tests), giving it a function that makes a
//! fresh, empty store (and a guard that cleans it up when dropped). Each check panics with
//! what differed.

use std::any::Any;

use serde_json::{Map, Value};

use crate::login::{self, Verdict};
use crate::model::*;
use crate::store::Store;
use crate::{Item, Outcome, Policy, Reason, RunCounts, RunEnd, Status};

/// A fresh, empty store, and whatever must live as long as it (a temporary folder, a
/// database to drop).
pub struct Fresh {
    /// The store.
    pub store: Box<dyn Store>,
    /// Dropped after the store (each check drops the store first).
    pub guard: Box<dyn Any>,
}

/// A record: subject `subject`, user name `user`, e-mail OTP address `email`, a Google
/// login, a TOTP device and one hashed recovery code.
pub fn record(subject: &str, user: &str, email: &str) -> ImportRecord {
    let mut profile = Map::new();
    profile.insert("userName".into(), Value::String(user.into()));
    ImportRecord {
        subject_id: SubjectId::new(subject).unwrap(),
        profile,
        unique_keys: vec![("userName".into(), user.into())],
        account: AccountState {
            user_name: Some(user.into()),
            ..AccountState::default()
        },
        password: Some(HashedPassword::aspnet(
            "AQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4B6pZWND6zgESBuWiHw",
        )),
        otp_addresses: vec![OtpAddress {
            channel: OtpChannel::Email,
            address: email.into(),
            verified: true,
        }],
        external_logins: vec![ExternalLogin {
            provider: "Google".into(),
            key: format!("g-{subject}"),
            display_name: None,
        }],
        passkeys: Vec::new(),
        totp_devices: vec![TotpDevice {
            name: "Default".into(),
            key: vec![1; 20],
        }],
        recovery_codes: Vec::new(),
        hashed_recovery_codes: vec![HashedRecoveryCode {
            salt: vec![0; 16],
            hash: vec![0; 32],
            iterations: 1,
        }],
        roles: Vec::new(),
    }
}

/// A passkey with credential id `id`.
pub fn passkey(id: &[u8], name: &str) -> PasskeyImport {
    PasskeyImport {
        credential_id: id.to_vec(),
        public_key_cose: vec![0xa5, 1, 2],
        algorithm: -7,
        sign_count: 3,
        backup_eligible: true,
        backed_up: false,
        aaguid: [0; 16],
        name: name.into(),
    }
}

/// Prepares `records` as a load does (on the mapping threads).
pub fn items(store: &dyn Store, records: Vec<ImportRecord>) -> Vec<Item> {
    let prepare = store.item_preparer();
    records
        .into_iter()
        .map(|r| {
            let mut item = Item::new(Some(r.subject_id.to_string()), "f".into(), 1, Ok(r));
            prepare(&mut item);
            item
        })
        .collect()
}

/// Loads `records` in one run and one transaction, as `load` does; returns the outcomes.
pub fn load(store: &mut dyn Store, policy: Policy, records: Vec<ImportRecord>) -> Vec<Outcome> {
    let items = items(store, records);
    let run = store.begin_run("bundle", policy).unwrap();
    let mut counts = RunCounts::default();
    let outcomes = {
        let mut importer = store.importer(run, policy).unwrap();
        let outcomes = importer.write(&items).unwrap();
        importer.commit().unwrap();
        outcomes
    };
    for o in &outcomes {
        counts.add(o.status);
    }
    store.finish_run(run, &RunEnd::Completed, counts).unwrap();
    outcomes
}

fn messages(outcomes: &[Outcome]) -> Vec<Option<&str>> {
    outcomes.iter().map(|o| o.message.as_deref()).collect()
}

fn subjects(store: &dyn Store) -> Vec<String> {
    let mut out = Vec::new();
    store
        .subjects(&mut |s| {
            out.push(s.to_string());
            Ok(())
        })
        .unwrap();
    out.sort();
    out
}

/// New records are Created with everything they carry; a re-run skips them all and
/// changes nothing; each run keeps its own counts.
pub fn created_then_a_rerun_skips(fresh: &mut dyn FnMut() -> Fresh) {
    let f = fresh();
    let mut store = f.store;
    let mut alice = record("s1", "alice", "a@x.org");
    alice.passkeys.push(passkey(b"cred-1", "YubiKey"));
    let bob = record("s2", "bob", "b@x.org");
    let out = load(&mut *store, Policy::Skip, vec![alice.clone(), bob.clone()]);
    assert!(out.iter().all(|o| o.status == Status::Created), "{out:?}");
    let snap = store.snapshot("s1").unwrap().expect("s1 is there");
    assert_eq!(snap.profile, alice.profile);
    assert_eq!(
        (snap.otp_addresses, snap.external_logins, snap.passkeys),
        (1, 1, 1)
    );
    assert_eq!((snap.totp_devices, snap.recovery_codes), (1, 1));
    assert_eq!(snap.password, alice.password);
    let again = load(&mut *store, Policy::Skip, vec![alice, bob]);
    assert_eq!(
        messages(&again),
        [
            Some("subject s1 already exists"),
            Some("subject s2 already exists")
        ]
    );
    assert!(again
        .iter()
        .all(|o| o.status == Status::Skipped && o.reason == Some(Reason::ProfileAlreadyExists)));
    assert_eq!(store.snapshot("s1").unwrap(), Some(snap));
    assert_eq!(subjects(&*store), ["s1", "s2"]);
    let runs = store.runs().unwrap();
    let counts: Vec<(String, RunCounts)> =
        runs.iter().map(|r| (r.status.clone(), r.counts)).collect();
    assert_eq!(
        counts,
        [
            (
                "completed".to_string(),
                RunCounts {
                    created: 2,
                    ..RunCounts::default()
                }
            ),
            (
                "completed".to_string(),
                RunCounts {
                    skipped: 2,
                    ..RunCounts::default()
                }
            ),
        ]
    );
    drop(store);
    drop(f.guard);
}

/// Every kind of claim another subject holds fails the record with its reason and the
/// message of `UniqueClaim::held_by`, and leaves nothing of the record behind.
pub fn every_conflict_kind_fails_only_its_record(fresh: &mut dyn FnMut() -> Fresh) {
    let f = fresh();
    let mut store = f.store;
    let mut first = record("s1", "alice", "A@x.org");
    first.otp_addresses.push(OtpAddress {
        channel: OtpChannel::Sms,
        address: "15550100".into(),
        verified: true,
    });
    first.passkeys.push(passkey(b"cred-1", "Key"));
    first.unique_keys.push(("employeeId".into(), "E1".into()));
    load(&mut *store, Policy::Skip, vec![first]);

    let mut name = record("s2", "ALICE", "n@x.org");
    name.unique_keys.clear();
    let mut attribute = record("s3", "carl", "c@x.org");
    attribute
        .unique_keys
        .push(("employeeId".into(), "E1".into()));
    let email = record("s4", "dora", "a@X.ORG");
    let mut sms = record("s5", "emil", "e@x.org");
    sms.otp_addresses.push(OtpAddress {
        channel: OtpChannel::Sms,
        address: "15550100".into(),
        verified: true,
    });
    let mut login = record("s6", "fred", "f@x.org");
    login.external_logins[0].key = "g-s1".into();
    let mut key = record("s7", "gina", "g@x.org");
    key.passkeys.push(passkey(b"cred-1", "Other"));
    // Case matters for attribute values (User Management compares them exactly).
    let mut other_case = record("s8", "hugo", "h@x.org");
    other_case
        .unique_keys
        .push(("employeeId".into(), "e1".into()));
    let out = load(
        &mut *store,
        Policy::Skip,
        vec![name, attribute, email, sms, login, key, other_case],
    );
    let got: Vec<(Status, Option<Reason>, Option<&str>)> = out
        .iter()
        .map(|o| (o.status, o.reason, o.message.as_deref()))
        .collect();
    use Reason::*;
    use Status::*;
    assert_eq!(
        got,
        [
            (
                Failed,
                Some(ProfileUniqueKeyConflict),
                Some("user name 'ALICE' is already used by subject s1")
            ),
            (
                Failed,
                Some(ProfileUniqueKeyConflict),
                Some("attribute 'employeeId' value 'E1' is already used by subject s1")
            ),
            (
                Failed,
                Some(AuthenticatorKeyConflict),
                Some("Email OTP address 'a@X.ORG' is already used by subject s1")
            ),
            (
                Failed,
                Some(AuthenticatorKeyConflict),
                Some("SMS OTP address '15550100' is already used by subject s1")
            ),
            (
                Failed,
                Some(AuthenticatorKeyConflict),
                Some("external login Google 'g-s1' is already used by subject s1")
            ),
            (
                Failed,
                Some(AuthenticatorKeyConflict),
                Some("passkey credential Y3JlZC0x is already used by subject s1")
            ),
            (Created, None, None),
        ]
    );
    // Nothing of the failed records is left: their other values are free.
    assert_eq!(subjects(&*store), ["s1", "s8"]);
    let free = load(
        &mut *store,
        Policy::Skip,
        vec![
            record("s9", "carl", "c@x.org"),
            record("s10", "dora", "n@x.org"),
            record("s11", "fred", "f@x.org"),
        ],
    );
    assert!(free.iter().all(|o| o.status == Status::Created), "{free:?}");
    drop(store);
    drop(f.guard);
}

/// A unique value equal to a user's own user name conflicts both ways with the same value
/// held by another user, however the store keeps it.
pub fn unique_values_conflict_both_ways(fresh: &mut dyn FnMut() -> Fresh) {
    let f = fresh();
    let mut store = f.store;
    // `userName` set to another value than the account's user name, as a custom mapping
    // may do.
    let named = |subject: &str, user: &str, attribute: &str| {
        let mut r = record(subject, user, &format!("{subject}@x.org"));
        r.profile
            .insert("userName".into(), Value::String(attribute.into()));
        r.unique_keys = vec![("userName".into(), attribute.into())];
        r
    };
    let out = load(
        &mut *store,
        Policy::Skip,
        vec![
            named("s1", "alice", "alice"),
            named("s2", "bob", "alice"),
            named("s3", "carol", "dave"),
            named("s4", "dave", "dave"),
            named("s5", "erin", "Alice"),
        ],
    );
    assert_eq!(
        messages(&out),
        [
            None,
            Some("attribute 'userName' value 'alice' is already used by subject s1"),
            None,
            Some("attribute 'userName' value 'dave' is already used by subject s3"),
            None,
        ]
    );
    // A later transaction still finds the holder of a value.
    let out = load(&mut *store, Policy::Skip, vec![named("s6", "dave", "dave")]);
    assert_eq!(
        messages(&out),
        [Some(
            "attribute 'userName' value 'dave' is already used by subject s3"
        )]
    );
    drop(store);
    drop(f.guard);
}

/// A record that names a missing role fails with User Management's message.
pub fn a_missing_role_fails_the_record(fresh: &mut dyn FnMut() -> Fresh) {
    let f = fresh();
    let mut store = f.store;
    let admins = RoleImport {
        id: RoleId::new("admins").unwrap(),
        name: "Admins".into(),
        claims: Value::Array(Vec::new()),
    };
    let mut r = record("s1", "alice", "a@x.org");
    r.roles.push(RoleId::new("editors").unwrap());
    let out = load(&mut *store, Policy::Skip, vec![r.clone()]);
    assert_eq!(out[0].reason, Some(Reason::MembershipRoleMissing));
    assert_eq!(messages(&out), [Some("Role 'editors' does not exist.")]);
    assert_eq!(
        store.create_roles(std::slice::from_ref(&admins)).unwrap(),
        1
    );
    assert_eq!(
        store.create_roles(&[admins]).unwrap(),
        0,
        "roles are created once"
    );
    r.roles = vec![RoleId::new("admins").unwrap(); 2];
    let out = load(&mut *store, Policy::Skip, vec![r]);
    assert_eq!(out[0].status, Status::Created);
    assert_eq!(store.snapshot("s1").unwrap().unwrap().roles, ["admins"]);
    drop(store);
    drop(f.guard);
}

/// `--on-conflict overwrite` merges as User Management does, in one transaction: a merge
/// that meets another subject's value changes nothing.
pub fn overwrite_merges_atomically(fresh: &mut dyn FnMut() -> Fresh) {
    let f = fresh();
    let mut store = f.store;
    let mut alice = record("s1", "alice", "a@x.org");
    alice
        .profile
        .insert("title".into(), Value::String("Engineer".into()));
    load(
        &mut *store,
        Policy::Skip,
        vec![alice, record("s2", "bob", "b@x.org")],
    );
    let before = store.snapshot("s1").unwrap().unwrap();
    let mut update = record("s1", "alice", "alice@new.org");
    update
        .profile
        .insert("displayName".into(), Value::String("Alice".into()));
    update.passkeys.push(passkey(b"cred-9", "New key"));
    let out = load(&mut *store, Policy::Overwrite, vec![update]);
    assert_eq!(out[0].status, Status::Updated, "{out:?}");
    let after = store.snapshot("s1").unwrap().unwrap();
    assert_eq!(after.profile["title"], "Engineer", "nothing is removed");
    assert_eq!(after.profile["displayName"], "Alice");
    assert_eq!(after.otp_addresses, 2, "OTP addresses are united");
    assert_eq!(after.passkeys, 1);
    // Another subject's e-mail: the whole merge is undone.
    let mut clash = record("s1", "alice", "b@x.org");
    clash
        .profile
        .insert("displayName".into(), Value::String("Changed".into()));
    let out = load(&mut *store, Policy::Overwrite, vec![clash]);
    assert_eq!(out[0].status, Status::Failed);
    assert_eq!(
        messages(&out),
        [Some(
            "Email OTP address 'b@x.org' is already used by subject s2"
        )]
    );
    assert_eq!(store.snapshot("s1").unwrap().unwrap(), after);
    assert_ne!(before, after);
    drop(store);
    drop(f.guard);
}

/// Login finds users by user name ignoring case, or by e-mail; a re-hash is stored.
pub fn login_lookups_and_rehash(fresh: &mut dyn FnMut() -> Fresh) {
    let f = fresh();
    let mut store = f.store;
    load(
        &mut *store,
        Policy::Skip,
        vec![
            record("s1", "alice", "a@x.org"),
            record("s2", "bob", "shared@x.org"),
        ],
    );
    for name in ["ALICE", "alice", "A@X.org"] {
        let found = store.find_for_login(name).unwrap();
        let subjects: Vec<&str> = found.iter().map(|u| u.subject_id.as_str()).collect();
        assert_eq!(subjects, ["s1"], "{name}");
    }
    assert!(store.find_for_login("nobody").unwrap().is_empty());
    let user = store.find_for_login("alice").unwrap().remove(0);
    assert_eq!(user.totp_devices.len(), 1);
    let stored = user.password.clone().unwrap();
    assert_eq!(
        login::verify("my password", &stored),
        Verdict::SuccessRehashNeeded
    );
    let new = login::preferred_hash("my password");
    store.set_password(user.id, &new).unwrap();
    let again = store.find_for_login("alice").unwrap().remove(0);
    assert_eq!(again.password, Some(new.clone()));
    assert_eq!(login::verify("my password", &new), Verdict::Success);
    drop(store);
    drop(f.guard);
}

/// What `validate --target` asks: the holder of each claim, and whether a subject is there.
pub fn holders_and_subjects(fresh: &mut dyn FnMut() -> Fresh) {
    let f = fresh();
    let mut store = f.store;
    let mut alice = record("s1", "alice", "a@x.org");
    alice.passkeys.push(passkey(b"cred-1", "Key"));
    load(&mut *store, Policy::Skip, vec![alice]);
    assert!(store.has_subject("s1").unwrap());
    assert!(!store.has_subject("s2").unwrap());
    let mut probe = record("s2", "ALICE", "A@X.ORG");
    probe.passkeys.push(passkey(b"cred-1", "Key"));
    let item = items(&*store, vec![probe]).remove(0);
    // The user name and e-mail ignoring case, the passkey by its id; attribute values
    // exactly (`ALICE` is not `alice`), and s2's own login is free.
    let held: Vec<(&str, Option<String>)> = item
        .claims
        .iter()
        .map(|c| (c.field(), store.holder(c).unwrap()))
        .collect();
    let s1 = Some("s1".to_string());
    assert_eq!(
        held,
        [
            ("UserName", s1.clone()),
            ("userName", None),
            ("Email", s1.clone()),
            ("Logins", None),
            ("Passkeys", s1),
        ]
    );
    assert_eq!(
        item.claims[0].held_by("s1"),
        "user name 'ALICE' is already used by subject s1"
    );
    drop(store);
    drop(f.guard);
}

/// More records than one statement of many rows takes all arrive, with every child row.
pub fn many_records_arrive_whole(fresh: &mut dyn FnMut() -> Fresh) {
    let f = fresh();
    let mut store = f.store;
    let roles: Vec<RoleImport> = ["r1", "r2"]
        .iter()
        .map(|id| RoleImport {
            id: RoleId::new(id).unwrap(),
            name: id.to_string(),
            claims: Value::Array(Vec::new()),
        })
        .collect();
    store.create_roles(&roles).unwrap();
    let n = 157;
    let records = (0..n)
        .map(|i| {
            let mut r = record(&format!("s{i}"), &format!("u{i}"), &format!("{i}@x.org"));
            r.roles = ["r2", "r1", "r2"].map(|id| RoleId::new(id).unwrap()).into();
            let code = r.hashed_recovery_codes[0].clone();
            r.hashed_recovery_codes.push(code);
            r
        })
        .collect();
    let out = load(&mut *store, Policy::Skip, records);
    assert!(out.iter().all(|o| o.status == Status::Created), "{out:?}");
    for i in [0, n / 2, n - 1] {
        let snap = store.snapshot(&format!("s{i}")).unwrap().unwrap();
        assert_eq!(snap.roles, ["r1", "r2"]);
        assert_eq!(snap.recovery_codes, 2);
        assert!(snap.password.is_some());
    }
    assert_eq!(subjects(&*store).len(), n);
    drop(store);
    drop(f.guard);
}

/// Runs every check of the suite as its own test.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:expr) => {
        #[test]
        fn conformance_created_then_a_rerun_skips() {
            $crate::conformance::created_then_a_rerun_skips(&mut $fresh);
        }
        #[test]
        fn conformance_every_conflict_kind_fails_only_its_record() {
            $crate::conformance::every_conflict_kind_fails_only_its_record(&mut $fresh);
        }
        #[test]
        fn conformance_unique_values_conflict_both_ways() {
            $crate::conformance::unique_values_conflict_both_ways(&mut $fresh);
        }
        #[test]
        fn conformance_a_missing_role_fails_the_record() {
            $crate::conformance::a_missing_role_fails_the_record(&mut $fresh);
        }
        #[test]
        fn conformance_overwrite_merges_atomically() {
            $crate::conformance::overwrite_merges_atomically(&mut $fresh);
        }
        #[test]
        fn conformance_login_lookups_and_rehash() {
            $crate::conformance::login_lookups_and_rehash(&mut $fresh);
        }
        #[test]
        fn conformance_holders_and_subjects() {
            $crate::conformance::holders_and_subjects(&mut $fresh);
        }
        #[test]
        fn conformance_many_records_arrive_whole() {
            $crate::conformance::many_records_arrive_whole(&mut $fresh);
        }
    };
}
