//! Import statuses, conflict reasons and policies, as User Management names them.

use std::fmt;

use serde_json::Value;

use crate::key::Key;
use crate::model::{ImportRecord, OtpAddress, OtpChannel};
use crate::normalize;

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

/// One record of a batch, with where it came from. Make it with [`Item::new`], which
/// also encodes the record's columns (profile JSON, normalized keys, timestamps) so that
/// the work is done on the threads that build items, not on the store's single writer.
#[derive(Debug)]
pub struct Item {
    /// The subject id as written in the source (also for records that failed to map).
    pub subject: Option<String>,
    /// The source file.
    pub file: String,
    /// The source line.
    pub line: u64,
    /// The record, or why it could not be made.
    pub record: Result<ImportRecord, String>,
    pub(crate) encoded: Option<Encoded>,
}

/// The columns of a record as the store writes them.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) profile: String,
    /// The normalized user name, the key it is unique by.
    pub(crate) user_name: Option<Key>,
    pub(crate) lockout_end: Option<String>,
    pub(crate) password_parameters: Option<String>,
    /// The key of each OTP address, in order.
    pub(crate) otp_keys: Vec<Key>,
    /// For each unique key, whether the user row carries it ([`carried_by_user_name`]).
    pub(crate) carried: Vec<bool>,
}

impl Item {
    /// An item for `record` found at `file:line`.
    pub fn new(
        subject: Option<String>,
        file: String,
        line: u64,
        record: Result<ImportRecord, String>,
    ) -> Item {
        let encoded = record.as_ref().ok().map(|r| Encoded {
            profile: serde_json::to_string(&r.profile).expect("a JSON map serialises"),
            user_name: user_name_key(r),
            lockout_end: r.account.lockout_end.map(|t| t.to_rfc3339()),
            password_parameters: r
                .password
                .as_ref()
                .map(|p| serde_json::to_string(&p.parameters).expect("a JSON map serialises")),
            otp_keys: r.otp_addresses.iter().map(otp_key).collect(),
            carried: r
                .unique_keys
                .iter()
                .map(|(code, value)| carried_by_user_name(r, code, value))
                .collect(),
        });
        Item {
            subject,
            file,
            line,
            record,
            encoded,
        }
    }
}

/// Whether a unique attribute value is carried by the user row instead of a row of
/// `unique_keys`: a string attribute whose value is the user's own user name (as
/// `userName` is under the default mapping). The user-name index already keeps that value
/// unique, ignoring case, which is stricter; writing it twice would double the work of
/// every insert.
pub(crate) fn carried_by_user_name(r: &ImportRecord, code: &str, value: &str) -> bool {
    r.account.user_name.as_deref() == Some(value)
        && matches!(r.profile.get(code), Some(Value::String(s)) if s == value)
}

/// The key an OTP address is unique by: e-mail ignoring case, phone digits as they are.
pub(crate) fn otp_key(otp: &OtpAddress) -> Key {
    let normalized = match otp.channel {
        OtpChannel::Email => normalize(&otp.address),
        OtpChannel::Sms => otp.address.clone(),
    };
    Key::otp(otp.channel.as_str(), normalized)
}

/// The key a user name is unique by: ignoring case, as ASP.NET's lookup normaliser did.
pub(crate) fn user_name_key(r: &ImportRecord) -> Option<Key> {
    r.account
        .user_name
        .as_deref()
        .map(|n| Key::user_name(normalize(n)))
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
    pub(crate) fn created() -> Outcome {
        Outcome {
            status: Status::Created,
            reason: None,
            message: None,
        }
    }

    pub(crate) fn failed(reason: Reason, message: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Failed,
            reason: Some(reason),
            message: Some(message.into()),
        }
    }
}
