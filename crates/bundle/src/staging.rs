//! The output folder of a new bundle (`ferry-export`, `ferry-import convert`): a bundle
//! is written into a private staging folder beside `--out` (`.NAME.partial-PID/`) and
//! renamed into place only when complete.
//!
//! The staging folder holds account data, so it never outlives the run that made it: it
//! is removed when the run fails, on SIGINT, SIGTERM and SIGHUP (see
//! [`remove_on_signal`]), and, when a `kill -9` left one behind, by the next run writing
//! to the same `--out`, which recognises it by its name, its owner and mode and the
//! process id in its name being gone.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::Error;

type Result<T> = std::result::Result<T, Error>;

fn out_error(message: String) -> Error {
    Error::Output(message)
}

/// The staging folder in use, for the signal handler: `None` once committed.
static IN_USE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Names a bundle may hold; `--force` refuses to delete a folder holding anything else.
fn is_bundle_file(name: &str) -> bool {
    name == crate::MANIFEST
        || name == ".manifest.json.tmp"
        || name == crate::ROLES_FILE
        || (name.starts_with("users-") && (name.ends_with(".ndjson") || name.ends_with(".parquet")))
}

/// The folder `out` is created in.
fn parent_of(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that `out` can receive a bundle.
pub fn check_out(out: &Path, force: bool) -> Result<()> {
    let parent = parent_of(out);
    if !parent.is_dir() {
        return Err(out_error(format!(
            "cannot write the bundle to `{}`: the folder `{}` does not exist; create it first, or choose another --out",
            out.display(),
            parent.display()
        )));
    }
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(out_error(format!(
            "`{}` exists and is not a folder",
            out.display()
        )));
    }
    let mut entries = std::fs::read_dir(out)
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .map_err(|e| Error::io(out, e))?;
    entries.sort();
    if entries.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(out_error(format!(
            "`{}` is not empty; pass --force to replace the bundle in it, or choose another --out",
            out.display()
        )));
    }
    if let Some(stranger) = entries.iter().find(|n| !is_bundle_file(n)) {
        return Err(out_error(format!(
            "refusing to replace `{}`: it holds `{stranger}`, which is not part of a bundle",
            out.display()
        )));
    }
    Ok(())
}

/// The name of `out`'s staging folder for process `pid`, without the pid: `.NAME.partial-`.
fn staging_prefix(out: &Path) -> String {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    format!(".{name}.partial-")
}

/// Whether process `pid` exists (a process we may not signal exists too).
fn process_exists(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        None => false,
        Some(pid) => !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        ),
    }
}

/// Removes the staging folders of `out` that exports killed with `kill -9` left behind:
/// ours by name pattern, owner and mode, and whose process is gone. Returns what it did,
/// one message per folder.
fn remove_leftovers(out: &Path) -> Result<Vec<String>> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let parent = parent_of(out);
    let prefix = staging_prefix(out);
    let mut said = Vec::new();
    let entries = std::fs::read_dir(&parent).map_err(|e| Error::io(&parent, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&parent, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 || process_exists(pid) {
            continue;
        }
        let meta =
            std::fs::symlink_metadata(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        let ours = meta.is_dir()
            && meta.uid() == rustix::process::getuid().as_raw()
            && meta.permissions().mode() & 0o777 == 0o700;
        if !ours {
            said.push(format!(
                "warning: `{}` looks like an unfinished bundle, but it is not an owner-only folder of yours; it is left alone",
                entry.path().display()
            ));
            continue;
        }
        std::fs::remove_dir_all(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        said.push(format!(
            "removed `{}`, the unfinished bundle of a run that was killed (process {pid} is gone)",
            entry.path().display()
        ));
    }
    Ok(said)
}

/// A private folder beside `out` that becomes `out` on [`Staging::commit`], and is
/// removed if dropped uncommitted or if a signal ends the export.
pub struct Staging {
    path: PathBuf,
    out: PathBuf,
    committed: bool,
}

impl Staging {
    /// Everything a run that writes a new bundle to `out` does first: checks that `out`
    /// can receive it ([`check_out`]), creates the staging folder ([`Staging::create`])
    /// and removes it on a signal ([`remove_on_signal`]). Returns the staging folder and
    /// what it removed of earlier runs, one message each, to show the user.
    pub fn prepare(out: &Path, force: bool) -> Result<(Staging, Vec<String>)> {
        check_out(out, force)?;
        let mut said = Vec::new();
        let staging = Staging::create(out, &mut said)?;
        remove_on_signal(out)?;
        Ok((staging, said))
    }

    /// Creates the staging folder of this process, first removing those that killed
    /// exports left behind (what it removed is in `said`).
    pub fn create(out: &Path, said: &mut Vec<String>) -> Result<Staging> {
        said.extend(remove_leftovers(out)?);
        let path = parent_of(out).join(format!("{}{}", staging_prefix(out), std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(&path).map_err(|e| Error::io(&path, e))?;
        *IN_USE.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.clone());
        Ok(Staging {
            path,
            out: out.to_path_buf(),
            committed: false,
        })
    }

    /// The staging folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the finished bundle to `out`, replacing the old bundle there.
    pub fn commit(mut self) -> Result<()> {
        // Held while renaming, so that a signal handler either removes the staging folder
        // before this begins or finds the bundle in place.
        let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        if self.out.exists() {
            // check_out has verified it holds only bundle files (or nothing).
            std::fs::remove_dir_all(&self.out).map_err(|e| Error::io(&self.out, e))?;
        }
        std::fs::rename(&self.path, &self.out).map_err(|e| Error::io(&self.out, e))?;
        self.committed = true;
        *in_use = None;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
            let _ = std::fs::remove_dir_all(&self.path);
            *in_use = None;
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP, removes the staging folder in use (a bundle that would
/// be incomplete, holding account data), says so on standard error and ends the process
/// with 128 + the signal: for the binaries that write bundles.
#[allow(clippy::print_stderr, clippy::exit)]
pub fn remove_on_signal(out: &Path) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| out_error(format!("cannot install the signal handlers: {e}")))?;
    let out = out.to_path_buf();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let name = match signal {
                SIGINT => "SIGINT",
                SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            let in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
            match in_use.as_ref() {
                Some(path) => {
                    // The writer may create a file while the folder is being removed.
                    for _ in 0..20 {
                        match std::fs::remove_dir_all(path) {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                std::thread::sleep(std::time::Duration::from_millis(10))
                            }
                            _ => break,
                        }
                    }
                    eprintln!(
                        "interrupted by {name}: the unfinished bundle was removed and nothing was written to `{}`",
                        out.display()
                    );
                }
                None => eprintln!(
                    "interrupted by {name} after the bundle was written to `{}`",
                    out.display()
                ),
            }
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}
