//! Files and folders ferry-import writes outside a bundle (`load --report`, `plan --out`):
//! they hold subject ids, user names and, in a plan, password hashes, so they are
//! owner-only whatever the umask.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};

/// Creates `path` (or truncates it) readable and writable by its owner only; an existing
/// file's wider permissions are narrowed.
pub fn create_file(path: &Path) -> Result<File> {
    ferry_bundle::create_private(path)
        .with_context(|| format!("cannot create `{}`", path.display()))
}

/// Creates the folder `path` (and its parents) for the owner only, whatever the umask. A
/// folder that exists is the user's and keeps its mode (the files ferry writes in it are
/// owner-only).
pub fn create_dir(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make `{}` owner-only", path.display()))?;
    }
    Ok(())
}
