//! The ceilings on the cost of a hash that ferry will run. A stored hash above them is
//! flagged as malformed (its reason names the ceiling) and never run: a bundle edited by
//! hand, or a hostile one, must not make `verify` or `login` spend minutes or gigabytes
//! on one user.
//!
//! | format  | ceiling | what it costs at the ceiling on one core |
//! |---------|---------|------------------------------------------|
//! | PBKDF2  | 10,000,000 iterations ([`crate::preferred::MAX_ITERATIONS`]) | ~10 s (SHA-512) |
//! | BCrypt  | cost 16 (2^16 rounds of the key schedule) | ~5 s |
//! | Argon2  | m ≤ 1 GiB, t ≤ 16, p ≤ 16 | 1 GiB of memory, ~10 s |

/// The highest BCrypt cost ferry runs (BCrypt itself allows 31). Real apps use 10 to 13.
pub const MAX_BCRYPT_COST: u32 = 16;
/// The lowest BCrypt cost there is.
pub const MIN_BCRYPT_COST: u32 = 4;
/// The most memory an Argon2 hash may ask for, in KiB (1 GiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 1 << 20;
/// The most passes an Argon2 hash may ask for.
pub const MAX_ARGON2_PASSES: u32 = 16;
/// The most lanes an Argon2 hash may ask for.
pub const MAX_ARGON2_LANES: u32 = 16;
