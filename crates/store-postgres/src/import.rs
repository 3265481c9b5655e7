//! The import of records into PostgreSQL: a chunk at a time, set-based, retried when
//! another loader wins a race.
//!
//! For each chunk ([`PgImporter::write`]):
//!
//! 1. two queries find which of its subjects exist and which of its claims
//!    ([`crate::claim`]) other subjects hold;
//! 2. the records are decided in order, exactly as User Management does one by one
//!    (invalid, missing role, existing subject, the first claim another subject holds,
//!    a claim an earlier record of the chunk took);
//! 3. the new users and every child row go in with one binary `COPY` per table.
//!
//! Under `--on-conflict overwrite` an existing subject is merged record by record in its
//! own savepoint, after the new users before it are written, and the lookups start again
//! after it. The chunk is written in a savepoint: when another loader commits a subject or
//! claim the lookup did not see (a unique violation), or PostgreSQL breaks a deadlock or a
//! serialization failure, the chunk is rolled back and decided again, now seeing it. After
//! 3 attempts the chunk is written one record at a time, each with 3 attempts; a record
//! that loses all of them fails with `ConcurrencyConflict` ("Max retries exceeded for
//! import.").

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_store_core::{
    ClaimAt, Error, ImportRecord, Item, Outcome, Policy, Reason, RunCounts, RunId, UniqueClaim,
};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::Client;
use serde_json::{Map, Value};

use crate::claim::{Digest, Prepared};
use crate::json::JsonText;
use crate::store::{backend, existing_of, holders_of};

/// Sets a user's password, replacing the one it has.
pub(crate) const UPSERT_PASSWORD: &str =
    "INSERT INTO passwords (user_id, algorithm, hash, salt, parameters, set_at)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (user_id) DO UPDATE SET algorithm = excluded.algorithm, hash = excluded.hash,
       salt = excluded.salt, parameters = excluded.parameters, set_at = excluded.set_at";

/// Attempts of a chunk, then of each of its records.
const ATTEMPTS: u32 = 3;

/// What a record that lost every attempt says, as User Management says it.
pub(crate) const MAX_RETRIES: &str = "Max retries exceeded for import.";

thread_local! {
    /// Attempts that lose a race before they start, on this thread (tests only).
    static FORCED_RACES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Makes the next `n` write attempts on this thread lose a race, as if another loader had
/// won each: for tests of the retries, which real races reach only by chance.
#[doc(hidden)]
pub fn force_races(n: u32) {
    FORCED_RACES.with(|c| c.set(n));
}

/// Why a write did not go through.
enum Failure {
    /// Another loader won a race (unique violation, deadlock, serialization failure):
    /// decide again.
    Race,
    /// The store failed.
    Pg(postgres::Error),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Failure {
        let race = [
            SqlState::UNIQUE_VIOLATION,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ];
        match e.code() {
            Some(code) if race.contains(code) => Failure::Race,
            _ => Failure::Pg(e),
        }
    }
}

/// Writes the records of one run; see the module documentation.
pub(crate) struct PgImporter<'c> {
    client: &'c mut Client,
    run: RunId,
    policy: Policy,
    roles: HashSet<String>,
    stamp: DateTime<Utc>,
    /// The sequence number of the next result row of the run.
    seq: i64,
    open: bool,
    /// What became of the records written since the last commit.
    uncommitted: RunCounts,
}

impl ferry_store_core::Importer for PgImporter<'_> {
    fn write(&mut self, items: &[Item]) -> Result<Vec<Outcome>, Error> {
        let outcomes = self.write_retrying(items).map_err(backend)?;
        for o in &outcomes {
            self.uncommitted.add(o.status);
        }
        Ok(outcomes)
    }

    fn commit(&mut self) -> Result<(), Error> {
        if self.open {
            // The run's counts land with its records, so they are true even if the load
            // is killed before it ends.
            let c = std::mem::take(&mut self.uncommitted);
            let n = |v: u64| v as i64;
            self.client
                .execute(
                    "UPDATE import_runs SET created = created + $2, updated = updated + $3,
                       skipped = skipped + $4, failed = failed + $5 WHERE id = $1",
                    &[
                        &self.run.0,
                        &n(c.created),
                        &n(c.updated),
                        &n(c.skipped),
                        &n(c.failed),
                    ],
                )
                .map_err(backend)?;
            self.client.batch_execute("COMMIT").map_err(backend)?;
            self.open = false;
        }
        Ok(())
    }
}

impl Drop for PgImporter<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

/// Which of a record's claims are the first with their digest (a record may name the same
/// address twice; it gets one row).
fn first_of_digest(digests: &[Digest]) -> Vec<bool> {
    let mut seen = HashSet::with_capacity(digests.len());
    digests.iter().map(|d| seen.insert(*d)).collect()
}

/// What claiming one value for a user found.
enum Claimed {
    /// The value is now the user's.
    New,
    /// It was the user's already.
    Ours,
    /// Another subject holds it: the record's outcome.
    Held(Outcome),
}

/// The parameters of one statement.
type Row<'a> = &'a [&'a (dyn ToSql + Sync)];

const INSERT_OTP: &str =
    "INSERT INTO otp_addresses (user_id, channel, address, normalized, verified)
     VALUES ($1, $2, $3, $4, $5)";
const INSERT_LOGIN: &str =
    "INSERT INTO external_logins (user_id, provider, provider_key, display_name) VALUES ($1, $2, $3, $4)";
const INSERT_PASSKEY: &str =
    "INSERT INTO passkeys (user_id, credential_id, public_key_cose, algorithm,
       sign_count, backup_eligible, backed_up, aaguid, name)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Streams rows into `table` with one binary COPY.
fn copy_in(
    client: &mut Client,
    table: &str,
    types: &[Type],
    rows: impl FnOnce(&mut BinaryCopyInWriter<'_>) -> Result<(), postgres::Error>,
) -> Result<(), postgres::Error> {
    let writer = client.copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)"))?;
    let mut w = BinaryCopyInWriter::new(writer, types);
    rows(&mut w)?;
    w.finish()?;
    Ok(())
}

/// A new user of the chunk: the item, its row id, its claims' digests, where each kind of
/// claim starts, and which claims are the first with their digest (the rows written).
struct NewUser<'i> {
    item: &'i Item,
    record: &'i ImportRecord,
    id: i64,
    prepared: &'i Prepared,
    at: ClaimAt,
    first: Vec<bool>,
}

impl<'c> PgImporter<'c> {
    pub(crate) fn new(
        client: &'c mut Client,
        run: RunId,
        policy: Policy,
    ) -> Result<PgImporter<'c>, postgres::Error> {
        let roles = client
            .query("SELECT id FROM roles", &[])?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let seq: i64 = client
            .query_one(
                "SELECT coalesce(max(seq) + 1, 0) FROM import_results WHERE run_id = $1",
                &[&run.0],
            )?
            .get(0);
        Ok(PgImporter {
            client,
            run,
            policy,
            roles,
            stamp: Utc::now(),
            seq,
            open: false,
            uncommitted: RunCounts::default(),
        })
    }

    fn write_retrying(&mut self, items: &[Item]) -> Result<Vec<Outcome>, postgres::Error> {
        if !self.open {
            self.client.batch_execute("BEGIN")?;
            self.open = true;
            self.stamp = Utc::now();
        }
        let seq = self.seq;
        if let Some(outcomes) = self.attempt(items, seq)? {
            self.seq += items.len() as i64;
            return Ok(outcomes);
        }
        // Another loader kept winning races on this chunk: one record at a time.
        let mut outcomes = Vec::with_capacity(items.len());
        for (k, item) in items.iter().enumerate() {
            let one = std::slice::from_ref(item);
            let at = seq + k as i64;
            match self.attempt(one, at)? {
                Some(mut o) => outcomes.push(o.remove(0)),
                None => {
                    let o = Outcome::failed(Reason::ConcurrencyConflict, MAX_RETRIES);
                    self.write_results(one, std::slice::from_ref(&o), at)?;
                    outcomes.push(o);
                }
            }
        }
        self.seq += items.len() as i64;
        Ok(outcomes)
    }

    /// Up to [`ATTEMPTS`] tries of `items`, each in a savepoint; `None` when every one
    /// lost a race.
    fn attempt(
        &mut self,
        items: &[Item],
        seq: i64,
    ) -> Result<Option<Vec<Outcome>>, postgres::Error> {
        for attempt in 1..=ATTEMPTS {
            self.client.batch_execute("SAVEPOINT chunk")?;
            match self.write_items(items, seq) {
                Ok(outcomes) => {
                    self.client.batch_execute("RELEASE SAVEPOINT chunk")?;
                    return Ok(Some(outcomes));
                }
                Err(Failure::Race) => {
                    self.client
                        .batch_execute("ROLLBACK TO SAVEPOINT chunk; RELEASE SAVEPOINT chunk")?;
                    std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
                }
                Err(Failure::Pg(e)) => return Err(e),
            }
        }
        Ok(None)
    }

    fn write_items(&mut self, items: &[Item], seq: i64) -> Result<Vec<Outcome>, Failure> {
        if FORCED_RACES.with(|n| n.replace(n.get().saturating_sub(1))) > 0 {
            return Err(Failure::Race);
        }
        let n = items.len();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
        let mut start = 0;
        while start < n {
            start = self.write_new(items, start, &mut outcomes)?;
            let stopped_at = start;
            while start < n {
                match self.merge(&items[start])? {
                    Some(o) => {
                        outcomes[start] = Some(o);
                        start += 1;
                    }
                    None => break,
                }
            }
            if start == stopped_at && start < n {
                // The subject the lookup found is gone: decide again.
                return Err(Failure::Race);
            }
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.expect("every record is decided"))
            .collect();
        self.write_results(items, &outcomes, seq)?;
        Ok(outcomes)
    }

    /// Decides `items[start..]` in order and writes the new users, up to the first record
    /// to merge into an existing subject (`--on-conflict overwrite`); returns its index
    /// (the end when there is none).
    fn write_new(
        &mut self,
        items: &[Item],
        start: usize,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<usize, Failure> {
        let rest = &items[start..];
        let computed: Vec<Option<Prepared>> = rest
            .iter()
            .map(|i| match (&i.record, prepared_of(i)) {
                (Ok(_), None) => Some(Prepared::of(&i.claims)),
                _ => None,
            })
            .collect();
        let prepared: Vec<Option<&Prepared>> = rest
            .iter()
            .zip(&computed)
            .map(|(i, c)| prepared_of(i).or(c.as_ref()))
            .collect();
        let subjects: Vec<&str> = rest
            .iter()
            .filter_map(|i| i.record.as_ref().ok())
            .map(|r| r.subject_id.as_str())
            .collect();
        let digests: Vec<&[u8]> = prepared
            .iter()
            .flatten()
            .flat_map(|p| p.digests.iter().map(|d| d.as_slice()))
            .collect();
        let existing = existing_of(self.client, &subjects)?;
        let holders = holders_of(self.client, &digests)?;
        let mut created: HashSet<&str> = HashSet::new();
        let mut taken: HashMap<Digest, &str> = HashMap::new();
        let mut new = Vec::new();
        let mut stop = items.len();
        for (k, item) in rest.iter().enumerate() {
            let i = start + k;
            let r = match &item.record {
                Ok(r) => r,
                Err(message) => {
                    outcomes[i] = Some(Outcome::failed(Reason::Invalid, message.clone()));
                    continue;
                }
            };
            if let Some(o) = Outcome::missing_role(r, &self.roles) {
                outcomes[i] = Some(o);
                continue;
            }
            let subject = r.subject_id.as_str();
            if existing.contains(subject) || created.contains(subject) {
                if self.policy == Policy::Skip {
                    outcomes[i] = Some(Outcome::skipped_existing(subject));
                    continue;
                }
                stop = i;
                break;
            }
            let p = prepared[k].expect("a record's claims are prepared");
            let conflict = item.claims.iter().zip(&p.digests).find_map(|(c, d)| {
                holders
                    .get(d.as_slice())
                    .map(String::as_str)
                    .or_else(|| taken.get(d).copied())
                    .filter(|h| *h != subject)
                    .map(|h| Outcome::held(c, h))
            });
            if let Some(o) = conflict {
                outcomes[i] = Some(o);
                continue;
            }
            created.insert(subject);
            for d in &p.digests {
                taken.insert(*d, subject);
            }
            outcomes[i] = Some(Outcome::created());
            new.push((item, r, p));
        }
        self.insert_new(&new)?;
        Ok(stop)
    }

    /// Writes new users and all their rows, one COPY per table.
    fn insert_new(&mut self, new: &[(&Item, &ImportRecord, &Prepared)]) -> Result<(), Failure> {
        if new.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = self
            .client
            .query(
                "SELECT nextval('users_id_seq') FROM generate_series(1, $1::int)",
                &[&(new.len() as i32)],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let users: Vec<NewUser<'_>> = new
            .iter()
            .zip(ids)
            .map(|(&(item, record, prepared), id)| NewUser {
                item,
                record,
                id,
                prepared,
                at: ClaimAt::of(record),
                first: first_of_digest(&prepared.digests),
            })
            .collect();
        let stamp = self.stamp;
        let c = &mut *self.client;
        copy_in(
            c,
            "users (id, subject_id, profile, user_name, normalized_user_name, email_confirmed,
               phone_number_confirmed, two_factor_enabled, lockout_end, lockout_enabled,
               access_failed_count, created_at, updated_at)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::JSONB,
                Type::TEXT,
                Type::TEXT,
                Type::BOOL,
                Type::BOOL,
                Type::BOOL,
                Type::TIMESTAMPTZ,
                Type::BOOL,
                Type::INT4,
                Type::TIMESTAMPTZ,
                Type::TIMESTAMPTZ,
            ],
            |w| {
                for u in &users {
                    let (r, a) = (u.record, &u.record.account);
                    let profile = &u.item.encoded.as_ref().expect("Item::new encodes").profile;
                    // The user name's claim is the first, its key the normalized name.
                    let normalized = a.user_name.as_ref().map(|_| u.item.claims[0].key.as_str());
                    w.write(&[
                        &u.id,
                        &r.subject_id.as_str(),
                        &JsonText(profile),
                        &a.user_name,
                        &normalized,
                        &a.email_confirmed,
                        &a.phone_number_confirmed,
                        &a.two_factor_enabled,
                        &a.lockout_end,
                        &a.lockout_enabled,
                        &a.access_failed_count,
                        &stamp,
                        &stamp,
                    ])?;
                }
                Ok(())
            },
        )?;
        copy_in(
            c,
            "claims (digest, kind, user_id)",
            &[Type::BYTEA, Type::TEXT, Type::INT8],
            |w| {
                for u in &users {
                    let p = u.prepared;
                    for ((d, kind), &first) in p.digests.iter().zip(&p.kinds).zip(&u.first) {
                        if first {
                            w.write(&[&d.as_slice(), kind, &u.id])?;
                        }
                    }
                }
                Ok(())
            },
        )?;
        if users.iter().any(|u| u.record.password.is_some()) {
            copy_in(
                c,
                "passwords (user_id, algorithm, hash, salt, parameters, set_at)",
                &[
                    Type::INT8,
                    Type::TEXT,
                    Type::BYTEA,
                    Type::BYTEA,
                    Type::JSONB,
                    Type::TIMESTAMPTZ,
                ],
                |w| {
                    for u in &users {
                        let Some(p) = &u.record.password else {
                            continue;
                        };
                        let parameters = u
                            .item
                            .encoded
                            .as_ref()
                            .and_then(|e| e.password_parameters.as_deref())
                            .unwrap_or("{}");
                        w.write(&[
                            &u.id,
                            &p.algorithm,
                            &p.hash,
                            &p.salt,
                            &JsonText(parameters),
                            &stamp,
                        ])?;
                    }
                    Ok(())
                },
            )?;
        }
        if users.iter().any(|u| !u.record.otp_addresses.is_empty()) {
            copy_in(
                c,
                "otp_addresses (user_id, channel, address, normalized, verified)",
                &[Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::BOOL],
                |w| {
                    for u in &users {
                        let (at, first) = (&u.at, &u.first);
                        for (k, otp) in u.record.otp_addresses.iter().enumerate() {
                            if first[at.otp + k] {
                                w.write(&[
                                    &u.id,
                                    &otp.channel.as_str(),
                                    &otp.address,
                                    &u.item.claims[at.otp + k].key,
                                    &otp.verified,
                                ])?;
                            }
                        }
                    }
                    Ok(())
                },
            )?;
        }
        if users.iter().any(|u| !u.record.external_logins.is_empty()) {
            copy_in(
                c,
                "external_logins (user_id, provider, provider_key, display_name)",
                &[Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT],
                |w| {
                    for u in &users {
                        let (at, first) = (&u.at, &u.first);
                        for (k, l) in u.record.external_logins.iter().enumerate() {
                            if first[at.login + k] {
                                w.write(&[&u.id, &l.provider, &l.key, &l.display_name])?;
                            }
                        }
                    }
                    Ok(())
                },
            )?;
        }
        if users.iter().any(|u| !u.record.passkeys.is_empty()) {
            copy_in(
                c,
                "passkeys (user_id, credential_id, public_key_cose, algorithm, sign_count,
                   backup_eligible, backed_up, aaguid, name)",
                &[
                    Type::INT8,
                    Type::BYTEA,
                    Type::BYTEA,
                    Type::INT8,
                    Type::INT8,
                    Type::BOOL,
                    Type::BOOL,
                    Type::BYTEA,
                    Type::TEXT,
                ],
                |w| {
                    for u in &users {
                        let (at, first) = (&u.at, &u.first);
                        for (k, p) in u.record.passkeys.iter().enumerate() {
                            if first[at.passkey + k] {
                                w.write(&[
                                    &u.id,
                                    &p.credential_id,
                                    &p.public_key_cose,
                                    &p.algorithm,
                                    &i64::from(p.sign_count),
                                    &p.backup_eligible,
                                    &p.backed_up,
                                    &p.aaguid.as_slice(),
                                    &p.name,
                                ])?;
                            }
                        }
                    }
                    Ok(())
                },
            )?;
        }
        if users.iter().any(|u| !u.record.totp_devices.is_empty()) {
            copy_in(
                c,
                "totp_devices (user_id, name, key)",
                &[Type::INT8, Type::TEXT, Type::BYTEA],
                |w| {
                    for u in &users {
                        // The first device of a name wins.
                        let mut names = HashSet::new();
                        for t in &u.record.totp_devices {
                            if names.insert(t.name.as_str()) {
                                w.write(&[&u.id, &t.name, &t.key])?;
                            }
                        }
                    }
                    Ok(())
                },
            )?;
        }
        if users
            .iter()
            .any(|u| !u.record.hashed_recovery_codes.is_empty())
        {
            copy_in(
                c,
                "recovery_codes (user_id, salt, hash, iterations)",
                &[Type::INT8, Type::BYTEA, Type::BYTEA, Type::INT4],
                |w| {
                    for u in &users {
                        for code in &u.record.hashed_recovery_codes {
                            let iterations = i32::try_from(code.iterations).unwrap_or(i32::MAX);
                            w.write(&[&u.id, &code.salt, &code.hash, &iterations])?;
                        }
                    }
                    Ok(())
                },
            )?;
        }
        if users.iter().any(|u| !u.record.roles.is_empty()) {
            copy_in(
                c,
                "memberships (user_id, role_id)",
                &[Type::INT8, Type::TEXT],
                |w| {
                    for u in &users {
                        let mut roles = HashSet::new();
                        for role in &u.record.roles {
                            if roles.insert(role.as_str()) {
                                w.write(&[&u.id, &role.as_str()])?;
                            }
                        }
                    }
                    Ok(())
                },
            )?;
        }
        Ok(())
    }

    /// Writes the result rows of `items`, numbered from `seq`.
    fn write_results(
        &mut self,
        items: &[Item],
        outcomes: &[Outcome],
        seq: i64,
    ) -> Result<(), postgres::Error> {
        let run = self.run.0;
        copy_in(
            self.client,
            "import_results (run_id, seq, subject_id, file, line, status, reason, message)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
            ],
            |w| {
                for (k, (item, o)) in items.iter().zip(outcomes).enumerate() {
                    w.write(&[
                        &run,
                        &(seq + k as i64),
                        &item.subject,
                        &item.file,
                        &(item.line as i64),
                        &o.status.as_str(),
                        &o.reason.map(Reason::as_str),
                        &o.message,
                    ])?;
                }
                Ok(())
            },
        )
    }

    /// Merges `item` into its existing subject in a savepoint (`--on-conflict
    /// overwrite`); `None` when the subject does not exist.
    fn merge(&mut self, item: &Item) -> Result<Option<Outcome>, Failure> {
        let r = match &item.record {
            Ok(r) => r,
            Err(message) => return Ok(Some(Outcome::failed(Reason::Invalid, message.clone()))),
        };
        if let Some(o) = Outcome::missing_role(r, &self.roles) {
            return Ok(Some(o));
        }
        let Some(row) = self.client.query_opt(
            "SELECT id, profile FROM users WHERE subject_id = $1 FOR UPDATE",
            &[&r.subject_id.as_str()],
        )?
        else {
            return Ok(None);
        };
        let (user_id, old): (i64, Value) = (row.get(0), row.get(1));
        self.client.batch_execute("SAVEPOINT record")?;
        match self.merge_into(user_id, old, item, r)? {
            Ok(()) => {
                self.client.batch_execute("RELEASE SAVEPOINT record")?;
                Ok(Some(Outcome::updated()))
            }
            Err(failed) => {
                self.client
                    .batch_execute("ROLLBACK TO SAVEPOINT record; RELEASE SAVEPOINT record")?;
                Ok(Some(failed))
            }
        }
    }

    /// Claims one value for `user_id`.
    fn claim(
        &mut self,
        user_id: i64,
        digest: &Digest,
        kind: &str,
        claim: &UniqueClaim,
    ) -> Result<Claimed, Failure> {
        let row = self.client.query_opt(
            "WITH ins AS (
                 INSERT INTO claims (digest, kind, user_id) VALUES ($1, $2, $3)
                 ON CONFLICT (digest) DO NOTHING RETURNING user_id)
             SELECT user_id, true, NULL::text FROM ins
             UNION ALL
             SELECT c.user_id, false, u.subject_id FROM claims c JOIN users u ON u.id = c.user_id
             WHERE c.digest = $1
             LIMIT 1",
            &[&digest.as_slice(), &kind, &user_id],
        )?;
        // No row: another loader committed it after this statement's snapshot.
        let row = row.ok_or(Failure::Race)?;
        let (holder, inserted): (i64, bool) = (row.get(0), row.get(1));
        Ok(if inserted {
            Claimed::New
        } else if holder == user_id {
            Claimed::Ours
        } else {
            Claimed::Held(Outcome::held(claim, &row.get::<_, String>(2)))
        })
    }

    /// Claims claim `c` of `item` for `user_id` and, when it was no one's, writes the
    /// authenticator's row with `insert`; the record's failure when another subject holds
    /// it.
    fn claim_with(
        &mut self,
        user_id: i64,
        item: &Item,
        p: &Prepared,
        c: usize,
        insert: &str,
        row: Row<'_>,
    ) -> Result<Option<Outcome>, Failure> {
        match self.claim(user_id, &p.digests[c], &p.kinds[c], &item.claims[c])? {
            Claimed::Held(o) => Ok(Some(o)),
            Claimed::Ours => Ok(None),
            Claimed::New => {
                self.client.execute(insert, row)?;
                Ok(None)
            }
        }
    }

    /// User Management's overwrite merge: profile overlaid per attribute (nothing
    /// removed), account columns replaced, unique values replaced, OTP addresses and
    /// external logins united, password replaced, passkeys added unless the same
    /// credential or name, TOTP first of a name wins, recovery codes replaced,
    /// memberships idempotent. `Err` is the record's failure (the caller rolls back).
    fn merge_into(
        &mut self,
        user_id: i64,
        old: Value,
        item: &Item,
        r: &ImportRecord,
    ) -> Result<Result<(), Outcome>, Failure> {
        let p = Prepared::of(&item.claims);
        let at = ClaimAt::of(r);
        let mut profile = match old {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for (k, v) in &r.profile {
            profile.insert(k.clone(), v.clone());
        }
        let a = &r.account;
        let name_digest = a.user_name.as_ref().map(|_| p.digests[0]);
        self.client.execute(
            "DELETE FROM claims WHERE user_id = $1 AND kind = 'user' AND digest IS DISTINCT FROM $2",
            &[&user_id, &name_digest.as_ref().map(|d| d.as_slice())],
        )?;
        if let Some(d) = &name_digest {
            if let Claimed::Held(o) = self.claim(user_id, d, &p.kinds[0], &item.claims[0])? {
                return Ok(Err(o));
            }
        }
        let profile = serde_json::to_string(&profile).expect("a JSON map serialises");
        let normalized = a.user_name.as_ref().map(|_| item.claims[0].key.as_str());
        self.client.execute(
            "UPDATE users SET profile = $2, user_name = $3, normalized_user_name = $4,
               email_confirmed = $5, phone_number_confirmed = $6, two_factor_enabled = $7,
               lockout_end = $8, lockout_enabled = $9, access_failed_count = $10,
               updated_at = $11
             WHERE id = $1",
            &[
                &user_id,
                &JsonText(&profile),
                &a.user_name,
                &normalized,
                &a.email_confirmed,
                &a.phone_number_confirmed,
                &a.two_factor_enabled,
                &a.lockout_end,
                &a.lockout_enabled,
                &a.access_failed_count,
                &self.stamp,
            ],
        )?;
        for k in 0..r.unique_keys.len() {
            let c = at.attribute + k;
            self.client.execute(
                "DELETE FROM claims WHERE user_id = $1 AND kind = $2 AND digest <> $3",
                &[&user_id, &p.kinds[c], &p.digests[c].as_slice()],
            )?;
            if let Claimed::Held(o) =
                self.claim(user_id, &p.digests[c], &p.kinds[c], &item.claims[c])?
            {
                return Ok(Err(o));
            }
        }
        if let (Some(pw), Some(parameters)) = (
            &r.password,
            item.encoded
                .as_ref()
                .and_then(|e| e.password_parameters.as_deref()),
        ) {
            self.client.execute(
                UPSERT_PASSWORD,
                &[
                    &user_id,
                    &pw.algorithm,
                    &pw.hash,
                    &pw.salt,
                    &JsonText(parameters),
                    &self.stamp,
                ],
            )?;
        }
        for (k, otp) in r.otp_addresses.iter().enumerate() {
            let c = at.otp + k;
            let row: Row<'_> = &[
                &user_id,
                &otp.channel.as_str(),
                &otp.address,
                &item.claims[c].key,
                &otp.verified,
            ];
            if let Some(o) = self.claim_with(user_id, item, &p, c, INSERT_OTP, row)? {
                return Ok(Err(o));
            }
        }
        for (k, l) in r.external_logins.iter().enumerate() {
            let row: Row<'_> = &[&user_id, &l.provider, &l.key, &l.display_name];
            if let Some(o) = self.claim_with(user_id, item, &p, at.login + k, INSERT_LOGIN, row)? {
                return Ok(Err(o));
            }
        }
        for (k, pk) in r.passkeys.iter().enumerate() {
            let same_name = self.client.query_opt(
                "SELECT 1 FROM passkeys WHERE user_id = $1 AND name = $2",
                &[&user_id, &pk.name],
            )?;
            if same_name.is_some() {
                continue;
            }
            let sign_count = i64::from(pk.sign_count);
            let row: Row<'_> = &[
                &user_id,
                &pk.credential_id,
                &pk.public_key_cose,
                &pk.algorithm,
                &sign_count,
                &pk.backup_eligible,
                &pk.backed_up,
                &pk.aaguid.as_slice(),
                &pk.name,
            ];
            if let Some(o) =
                self.claim_with(user_id, item, &p, at.passkey + k, INSERT_PASSKEY, row)?
            {
                return Ok(Err(o));
            }
        }
        for t in &r.totp_devices {
            self.client.execute(
                "INSERT INTO totp_devices (user_id, name, key) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id, name) DO NOTHING",
                &[&user_id, &t.name, &t.key],
            )?;
        }
        if !r.hashed_recovery_codes.is_empty() {
            self.client
                .execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&user_id])?;
            for code in &r.hashed_recovery_codes {
                let iterations = i32::try_from(code.iterations).unwrap_or(i32::MAX);
                self.client.execute(
                    "INSERT INTO recovery_codes (user_id, salt, hash, iterations) VALUES ($1, $2, $3, $4)",
                    &[&user_id, &code.salt, &code.hash, &iterations],
                )?;
            }
        }
        for role in &r.roles {
            self.client.execute(
                "INSERT INTO memberships (user_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&user_id, &role.as_str()],
            )?;
        }
        Ok(Ok(()))
    }
}

fn prepared_of(item: &Item) -> Option<&Prepared> {
    item.prepared
        .as_ref()
        .and_then(|p| p.downcast_ref::<Prepared>())
}
