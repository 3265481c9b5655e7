//! What several commands open: the bundle, the schema and mapping, the roles, the store.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use ferry_bundle::BundleReader;
use ferry_schema::{AttributeSchema, Mapper, Mapping, RoleIndex, Roles};
use ferry_store::{Mode, Store, Target};

/// Opens a bundle.
pub fn bundle(dir: &Path) -> Result<BundleReader> {
    if !dir.exists() {
        bail!("`{}`: no such bundle folder", dir.display());
    }
    if !dir.is_dir() {
        bail!(
            "`{}` is a file, not a bundle folder (a bundle is the folder ferry-export wrote, with manifest.json in it)",
            dir.display()
        );
    }
    Ok(BundleReader::open(dir)?)
}

/// The files of a bundle that changed since it was written or sealed, as one message.
pub fn unsealed(bundle: &BundleReader) -> Result<Option<String>> {
    let problems = bundle.check_parts()?;
    Ok(problems.first().map(|p| {
        format!(
            "`{}`: {}: {}{}",
            bundle.dir().display(),
            p.file,
            p.message,
            if problems.len() > 1 {
                format!(" (and {} more files)", problems.len() - 1)
            } else {
                String::new()
            }
        )
    }))
}

/// Refuses a bundle whose files changed since it was written or sealed.
pub fn require_sealed(bundle: &BundleReader) -> Result<()> {
    match unsealed(bundle)? {
        Some(message) => bail!("{message}"),
        None => Ok(()),
    }
}

/// Loads the schema and the mapping (the default one unless `--mapping`), and says once
/// which mapping targets the schema lacks.
pub fn mapper(schema: &Path, mapping_path: Option<&PathBuf>, quiet: bool) -> Result<Mapper> {
    let schema = AttributeSchema::load(schema)?;
    let mapping = match mapping_path {
        Some(p) => Mapping::load(p).map_err(anyhow::Error::msg)?,
        None => Mapping::default_mapping(),
    };
    let rules = mapping.rules.len();
    let default = mapping_path.is_none();
    let mapper = Mapper::new(schema, &mapping).map_err(|e| {
        let hint = if default {
            "\nhint: this is the default mapping, made for schemas/scim-user.json; schemas/oidc-standard.json goes with --mapping schemas/mapping.oidc.json"
        } else {
            ""
        };
        anyhow::anyhow!("the mapping does not fit the schema: {e}{hint}")
    })?;
    let missing = mapper.missing_targets();
    if !quiet && !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|(t, from)| format!("{t} (from {from})"))
            .collect();
        eprintln!(
            "warning: the schema has no attribute for {} mapping targets; their values are not imported: {}",
            list.len(),
            list.join(", ")
        );
        if missing.len() * 2 >= rules {
            eprintln!(
                "hint: most of the mapping's targets are missing, so the mapping is probably not meant for this schema; schemas/oidc-standard.json goes with --mapping schemas/mapping.oidc.json, schemas/scim-user.json with the default mapping"
            );
        }
    }
    Ok(mapper)
}

/// Reads `roles.ndjson` and gives every role its id (see `ferry_schema::roles`); says
/// once which ids were derived from names. A line that is not a role is reported and
/// left out (its members then fail, naming the role id).
pub fn roles(bundle: &BundleReader, mapper: &Mapper, quiet: bool) -> Result<Roles> {
    let mut records = Vec::new();
    for item in bundle.roles()? {
        let (loc, role) = item?;
        match role {
            Ok(role) => records.push(role),
            Err(e) => eprintln!("warning: {loc}: {e}; its members will fail"),
        }
    }
    let roles = RoleIndex::build(&records, mapper.role_ids()).map_err(anyhow::Error::msg)?;
    if !quiet {
        for d in &roles.derived {
            eprintln!(
                "note: role '{}' gets role id `{}`, made from its name (a role id holds only letters, digits, '-', '_', '/' and '\\'); to choose another, map it under \"roles\" in a mapping file",
                d.name, d.id
            );
        }
    }
    Ok(roles)
}

/// A progress bar on standard error for `total` records (hidden when stderr is not a
/// terminal), e.g. `loading`.
pub fn progress(total: u64, doing: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let progress = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {doing} {{bar:40}} {{human_pos}}/{{human_len}} ({{per_sec}}, {{eta}} left)"
        ))
        .expect("valid template"),
    );
    progress
}

/// Opens the store `target` names: for writing (created if missing), or read-only (it
/// must exist, and nothing in it changes).
pub fn store(target: &str, mode: Mode) -> Result<Box<dyn Store>> {
    if let Target::Sqlite(path) = Target::parse(target) {
        check_sqlite_target(&path, mode)?;
    }
    Ok(ferry_store::open(target, mode)?)
}

/// Opens an existing store for writing (`login`'s re-hash): it is not created if missing.
pub fn existing_store(target: &str) -> Result<Box<dyn Store>> {
    match Target::parse(target) {
        Target::Sqlite(path) => check_sqlite_target(&path, Mode::ReadOnly)?,
        // A read-only open says "no ferry store in schema …" and creates nothing.
        Target::Postgres(_) => drop(ferry_store::open(target, Mode::ReadOnly)?),
    }
    Ok(ferry_store::open(target, Mode::ReadWrite)?)
}

fn check_sqlite_target(target: &Path, mode: Mode) -> Result<()> {
    if target.is_dir() {
        bail!(
            "`{}` is a folder; --target is a store file (created if missing), e.g. `{}`",
            target.display(),
            target.join("users.db").display()
        );
    }
    if mode == Mode::ReadOnly && !target.exists() {
        bail!("`{}`: no such store", target.display());
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "cannot create the store `{}`: the folder `{}` does not exist; create it first",
            target.display(),
            parent.display()
        );
    }
    Ok(())
}
