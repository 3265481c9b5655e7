//! Attribute schemas, the mapping from bundle records to import records, and the value
//! rules every imported record must pass.
//!
//! - [`attributes`]: the attribute schema file ([`AttributeSchema`]), modelled on User
//!   Management's `AttributeDefinition`: scalar, complex and list types, unique and
//!   required. A bad file is refused with the JSON path of the fault.
//! - [`mapping`]: where each source field goes ([`Mapping`]): `AspNetUsers` columns,
//!   `Extra` columns and claim types to attribute codes or sub-properties.
//! - [`map`]: a [`ferry_bundle::UserRecord`] becomes a [`ferry_store_core::ImportRecord`], or
//!   a list of [`Problem`]s, each naming its field.
//! - [`rules`]: User Management's value rules (e-mail, phone, subject id, role id, …).
//! - [`roles`]: the role id each role of a bundle gets ([`RoleIndex`]).
//! - [`limits`]: the longest names and values a record may hold, and the characters a
//!   user name or e-mail may not.
#![deny(missing_docs)]

pub mod attributes;
pub mod limits;
pub mod map;
pub mod mapping;
mod passkey;
pub mod roles;
pub mod rules;

pub use attributes::{AttributeSchema, AttributeType, ScalarType};
pub use map::{MapResult, Mapper, NotImported, Problem};
pub use mapping::Mapping;
pub use roles::{RoleIndex, Roles};
