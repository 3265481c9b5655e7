//! The output folder: a bundle is written into a private staging folder beside `--out`
//! and renamed into place only when complete.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Names a bundle may hold; `--force` refuses to delete a folder holding anything else.
fn is_bundle_file(name: &str) -> bool {
    name == ferry_bundle::MANIFEST
        || name == ".manifest.json.tmp"
        || name == ferry_bundle::ROLES_FILE
        || (name.starts_with("users-") && (name.ends_with(".ndjson") || name.ends_with(".parquet")))
}

/// Checks that `out` can receive a bundle.
pub fn check_out(out: &Path, force: bool) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        bail!("`{}` exists and is not a folder", out.display());
    }
    let mut entries = std::fs::read_dir(out)
        .with_context(|| format!("cannot read `{}`", out.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort();
    if entries.is_empty() {
        return Ok(());
    }
    if !force {
        bail!(
            "`{}` is not empty; pass --force to replace the bundle in it, or choose another --out",
            out.display()
        );
    }
    if let Some(stranger) = entries.iter().find(|n| !is_bundle_file(n)) {
        bail!(
            "refusing to replace `{}`: it holds `{stranger}`, which is not part of a bundle",
            out.display()
        );
    }
    Ok(())
}

/// A private folder beside `out` that becomes `out` on [`Staging::commit`], and is
/// removed if dropped uncommitted.
pub struct Staging {
    path: PathBuf,
    out: PathBuf,
    committed: bool,
}

impl Staging {
    pub fn create(out: &Path) -> Result<Staging> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bundle".into());
        let path = parent.join(format!(".{name}.partial-{}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder
            .create(&path)
            .with_context(|| format!("cannot create `{}`", path.display()))?;
        Ok(Staging {
            path,
            out: out.to_path_buf(),
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the finished bundle to `out`, replacing the old bundle there.
    pub fn commit(mut self) -> Result<()> {
        if self.out.exists() {
            // check_out has verified it holds only bundle files (or nothing).
            std::fs::remove_dir_all(&self.out)
                .with_context(|| format!("cannot replace `{}`", self.out.display()))?;
        }
        std::fs::rename(&self.path, &self.out)
            .with_context(|| format!("cannot move the bundle into `{}`", self.out.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
