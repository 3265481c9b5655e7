//! Import statuses, conflict reasons and policies, as User Management names them.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;

use crate::model::ImportRecord;
use crate::unique::{unique_claims, UniqueClaim};

/// What to do with a record whose subject already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Leave the existing user alone (User Management's default resolver): a re-run skips
    /// everything already there.
    Skip,
    /// Merge the record into the existing user, as User Management's overwrite does, but
    /// in one transaction.
    Overwrite,
}

impl Policy {
    /// `skip` or `overwrite`.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Skip => "skip",
            Policy::Overwrite => "overwrite",
        }
    }
}

/// The result of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// A new user.
    Created,
    /// An existing user, merged (`--on-conflict overwrite`).
    Updated,
    /// An existing user, left alone.
    Skipped,
    /// Not imported; the message says why.
    Failed,
}

impl Status {
    /// `Created`, `Updated`, `Skipped` or `Failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "Created",
            Status::Updated => "Updated",
            Status::Skipped => "Skipped",
            Status::Failed => "Failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An import run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunId(pub i64);

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Every record was written.
    Completed,
    /// The load stopped: the reason.
    Failed(String),
}

impl RunEnd {
    /// `completed` or `failed`.
    pub fn status(&self) -> &'static str {
        match self {
            RunEnd::Completed => "completed",
            RunEnd::Failed(_) => "failed",
        }
    }
}

/// How many records of a run ended in each status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// New users.
    pub created: u64,
    /// Existing users, merged.
    pub updated: u64,
    /// Existing users, left alone.
    pub skipped: u64,
    /// Records not imported.
    pub failed: u64,
}

impl RunCounts {
    /// Counts one record that ended in `status`.
    pub fn add(&mut self, status: Status) {
        match status {
            Status::Created => self.created += 1,
            Status::Updated => self.updated += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed += 1,
        }
    }
}

impl std::ops::AddAssign for RunCounts {
    fn add_assign(&mut self, other: RunCounts) {
        self.created += other.created;
        self.updated += other.updated;
        self.skipped += other.skipped;
        self.failed += other.failed;
    }
}

/// Why a record was not created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The subject already exists.
    ProfileAlreadyExists,
    /// A unique attribute value belongs to another subject.
    ProfileUniqueKeyConflict,
    /// An OTP address, external login or passkey belongs to another subject.
    AuthenticatorKeyConflict,
    /// The store was busy three times over.
    ConcurrencyConflict,
    /// A role the record is a member of does not exist.
    MembershipRoleMissing,
    /// The record did not pass validation.
    Invalid,
}

impl Reason {
    /// The reason's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ProfileAlreadyExists => "ProfileAlreadyExists",
            Reason::ProfileUniqueKeyConflict => "ProfileUniqueKeyConflict",
            Reason::AuthenticatorKeyConflict => "AuthenticatorKeyConflict",
            Reason::ConcurrencyConflict => "ConcurrencyConflict",
            Reason::MembershipRoleMissing => "MembershipRoleMissing",
            Reason::Invalid => "Invalid",
        }
    }
}

/// One record of a batch, with where it came from. Make it with [`Item::new`] on the
/// threads that map records: it derives the record's [`UniqueClaim`]s and encodes its
/// columns (profile JSON, timestamps), so that the store's single writer does not.
pub struct Item {
    /// The subject id as written in the source (also for records that failed to map).
    pub subject: Option<String>,
    /// The source file.
    pub file: String,
    /// The source line (or record number).
    pub line: u64,
    /// The record, or why it could not be made.
    pub record: Result<ImportRecord, String>,
    /// The values the record claims for itself alone, in the order a load checks them.
    pub claims: Vec<UniqueClaim>,
    /// The record's columns as stores write them.
    pub encoded: Option<Encoded>,
    /// What the store's item preparer ([`crate::Store::item_preparer`]) computed for the
    /// item, for that store alone.
    pub prepared: Option<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Item")
            .field("subject", &self.subject)
            .field("file", &self.file)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

/// The columns of a record as stores write them.
#[derive(Debug)]
pub struct Encoded {
    /// The profile attributes as JSON text.
    pub profile: String,
    /// `LockoutEnd` as RFC 3339.
    pub lockout_end: Option<String>,
    /// The password's parameters as JSON text.
    pub password_parameters: Option<String>,
}

impl Item {
    /// An item for `record` found at `file:line`.
    pub fn new(
        subject: Option<String>,
        file: String,
        line: u64,
        record: Result<ImportRecord, String>,
    ) -> Item {
        let claims = record.as_ref().map(unique_claims).unwrap_or_default();
        Item::with_claims(subject, file, line, record, claims)
    }

    /// An item whose claims the caller derived already ([`unique_claims`] of the record).
    pub fn with_claims(
        subject: Option<String>,
        file: String,
        line: u64,
        record: Result<ImportRecord, String>,
        claims: Vec<UniqueClaim>,
    ) -> Item {
        let encoded = record.as_ref().ok().map(|r| Encoded {
            profile: serde_json::to_string(&r.profile).expect("a JSON map serialises"),
            lockout_end: r.account.lockout_end.map(|t| t.to_rfc3339()),
            password_parameters: r
                .password
                .as_ref()
                .map(|p| serde_json::to_string(&p.parameters).expect("a JSON map serialises")),
        });
        Item {
            subject,
            file,
            line,
            record,
            claims,
            encoded,
            prepared: None,
        }
    }
}

/// What happened to one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The status.
    pub status: Status,
    /// Why it was not created.
    pub reason: Option<Reason>,
    /// The message (for failures and skips).
    pub message: Option<String>,
}

impl Outcome {
    /// A new user.
    pub fn created() -> Outcome {
        Outcome {
            status: Status::Created,
            reason: None,
            message: None,
        }
    }

    /// A record not imported, and why.
    pub fn failed(reason: Reason, message: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Failed,
            reason: Some(reason),
            message: Some(message.into()),
        }
    }

    /// An existing user, merged into (`--on-conflict overwrite`).
    pub fn updated() -> Outcome {
        Outcome {
            status: Status::Updated,
            reason: Some(Reason::ProfileAlreadyExists),
            message: None,
        }
    }

    /// A record whose subject exists, left alone.
    pub fn skipped_existing(subject: &str) -> Outcome {
        Outcome {
            status: Status::Skipped,
            reason: Some(Reason::ProfileAlreadyExists),
            message: Some(format!("subject {subject} already exists")),
        }
    }

    /// A record that claims `claim`, which subject `holder` holds.
    pub fn held(claim: &UniqueClaim, holder: &str) -> Outcome {
        Outcome::failed(claim.reason(), claim.held_by(holder))
    }

    /// The failure of a record that is a member of a role `roles` lacks, if it is.
    pub fn missing_role(r: &ImportRecord, roles: &HashSet<String>) -> Option<Outcome> {
        let role = r.roles.iter().find(|role| !roles.contains(role.as_str()))?;
        Some(Outcome::failed(
            Reason::MembershipRoleMissing,
            format!("Role '{role}' does not exist."),
        ))
    }
}
