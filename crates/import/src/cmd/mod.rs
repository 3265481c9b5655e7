//! One module per subcommand: its `Args` and its `run`.

pub mod convert;
pub mod load;
pub mod login;
pub mod plan;
pub mod seal;
pub mod validate;
pub mod verify;
