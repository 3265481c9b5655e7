//! What several commands open: the bundle, the schema and mapping, the roles.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ferry_bundle::BundleReader;
use ferry_schema::{AttributeSchema, Mapper, Mapping};
use ferry_store::RoleImport;

/// Opens a bundle.
pub fn bundle(dir: &Path) -> Result<BundleReader> {
    if !dir.exists() {
        bail!("`{}`: no such bundle folder", dir.display());
    }
    Ok(BundleReader::open(dir)?)
}

/// Refuses a bundle whose files changed since it was written or sealed.
pub fn require_sealed(bundle: &BundleReader) -> Result<()> {
    let problems = bundle.check_parts()?;
    if let Some(p) = problems.first() {
        bail!(
            "`{}`: {}: {}{}",
            bundle.dir().display(),
            p.file,
            p.message,
            if problems.len() > 1 {
                format!(" (and {} more files)", problems.len() - 1)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// Loads the schema and the mapping (the default one unless `--mapping`), and says once
/// which mapping targets the schema lacks.
pub fn mapper(schema: &Path, mapping: Option<&PathBuf>, quiet: bool) -> Result<Mapper> {
    let schema = AttributeSchema::load(schema)?;
    let mapping = match mapping {
        Some(p) => Mapping::load(p).map_err(anyhow::Error::msg)?,
        None => Mapping::default_mapping(),
    };
    let mapper = Mapper::new(schema, &mapping)
        .map_err(anyhow::Error::msg)
        .context("the mapping does not fit the schema")?;
    if !quiet && !mapper.missing_targets().is_empty() {
        let list: Vec<String> = mapper
            .missing_targets()
            .iter()
            .map(|(t, from)| format!("{t} (from {from})"))
            .collect();
        eprintln!(
            "warning: the schema has no attribute for {} mapping targets; their values are not imported: {}",
            list.len(),
            list.join(", ")
        );
    }
    Ok(mapper)
}

/// Reads roles.ndjson into the mapper's role index; returns the roles to create and the
/// problems of those that cannot be created (their members will fail, naming them).
pub fn roles(bundle: &BundleReader, mapper: &mut Mapper) -> Result<(Vec<RoleImport>, Vec<String>)> {
    let mut create = Vec::new();
    let mut problems = Vec::new();
    for item in bundle.roles()? {
        let (loc, role) = item?;
        match role {
            Ok(role) => match mapper.roles.add(&role) {
                Ok(r) => create.push(r),
                Err(m) => problems.push(format!("{loc}: {m}")),
            },
            Err(e) => problems.push(format!("{loc}: {e}")),
        }
    }
    Ok((create, problems))
}
