//! Counting what a bundle holds, record by record: the counts and the password census of
//! the manifest. The writer, `seal` and `verify` count with this one tally.

use crate::census::{Census, CensusBuilder, HashStatus};
use crate::manifest::Counts;
use crate::record::{RoleRecord, UserRecord};

/// Counts per entity and the password census, accumulated one record at a time.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    counts: Counts,
    census: CensusBuilder,
}

impl Tally {
    /// Counts a user, its children and its password hash.
    pub fn add_user(&mut self, u: &UserRecord) {
        self.add_user_with(u, &HashStatus::of(u.password_hash.as_deref()));
    }

    /// Counts a user whose hash the caller has classified already.
    pub fn add_user_with(&mut self, u: &UserRecord, status: &HashStatus) {
        let c = &mut self.counts;
        c.users += 1;
        c.claims += u.claims.len() as u64;
        c.logins += u.logins.len() as u64;
        c.tokens += u.tokens.len() as u64;
        c.user_roles += u.roles.len() as u64;
        c.passkeys += u.passkeys.len() as u64;
        self.census.add(status);
    }

    /// Counts a role and its claims.
    pub fn add_role(&mut self, r: &RoleRecord) {
        self.counts.roles += 1;
        self.counts.role_claims += r.claims.len() as u64;
    }

    /// Adds another tally's counts (for counting in parallel).
    pub fn merge(&mut self, other: Tally) {
        let (a, b) = (&mut self.counts, other.counts);
        a.users += b.users;
        a.claims += b.claims;
        a.logins += b.logins;
        a.tokens += b.tokens;
        a.user_roles += b.user_roles;
        a.passkeys += b.passkeys;
        a.roles += b.roles;
        a.role_claims += b.role_claims;
        self.census.merge(other.census);
    }

    /// The counts so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The counts and the census.
    pub fn finish(self) -> (Counts, Census) {
        (self.counts, self.census.finish())
    }
}
