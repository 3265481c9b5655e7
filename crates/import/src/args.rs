//! Flags several commands take, declared once.

use std::path::PathBuf;

/// The attribute schema and the mapping records are mapped with.
#[derive(clap::Args, Debug, Clone)]
pub struct MappingArgs {
    /// The attribute schema file (e.g. schemas/scim-user.json).
    #[arg(long)]
    pub schema: PathBuf,
    /// The mapping file (default: schemas/mapping.default.json, built in).
    #[arg(long)]
    pub mapping: Option<PathBuf>,
}

/// How a command reports.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    pub json: bool,
}
