//! Password knowledge for ferry, pure and free of I/O.
//!
//! - [`PasswordHash`]: whatever a `PasswordHash` column holds, parsed once into a typed
//!   value ([`hash`] lists the formats), or a [`Malformed`] reason saying exactly why it
//!   cannot verify: ASP.NET Identity V2/V3 ([`AspNetHash`]), ASP.NET Membership
//!   ([`membership`]), BCrypt ([`bcrypt_hash`]), Argon2 and PBKDF2 PHC strings ([`phc`]).
//! - [`limits`]: the cost ceilings above which a hash is flagged, never run.
//! - [`Prf`] and [`pbkdf2`]: PBKDF2-HMAC with SHA-1, SHA-256 or SHA-512; [`lanes`]: many
//!   derivations at once in AVX2 or AVX-512 lanes.
//! - [`preferred`]: the algorithm passwords are re-hashed to after the first login
//!   (PBKDF2-HMAC-SHA512, 210,000 iterations, 16-byte salt, 64-byte digest).
//! - [`totp`]: RFC 6238 codes as ASP.NET Identity's authenticator checks them.
//! - [`recovery`]: hashing and checking of 2FA recovery codes.
//!
//! Everything that checks a password in ferry goes through this crate, and every
//! comparison of secret bytes is constant-time.
//!
//! ```
//! use ferry_passwords::AspNetHash;
//!
//! let hash = AspNetHash::parse("AQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4B6pZWND6zgESBuWiHw").unwrap();
//! assert_eq!(hash.kind().to_string(), "V3 SHA512 50");
//! assert!(hash.verify("my password"));
//! assert!(!hash.verify("not my password"));
//! ```
#![deny(missing_docs)]

mod aspnet;
pub mod bcrypt_hash;
pub mod hash;
pub mod lanes;
pub mod limits;
pub mod membership;
pub mod pbkdf2;
pub mod phc;
pub mod preferred;
pub mod recovery;
pub mod totp;

pub use aspnet::{AspNetHash, Malformed, Prf};
pub use hash::{HashKind, PasswordHash};
