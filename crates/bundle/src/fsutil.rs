use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates (or truncates) a file readable and writable by its owner only, whatever the
/// umask and whatever the mode of a file that was there: bundle files (and the reports
/// and plans ferry-import writes beside them) hold password hashes and TOTP secrets.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    // The mode only applies to new files; an existing file keeps its bits otherwise.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Opens a file inside a bundle for reading. A symbolic link is refused, not followed (a
/// bundle crosses an air gap and anyone may have touched it: a linked part would make a
/// load import a file from elsewhere), and so is anything that is not a regular file.
pub(crate) fn open_in_bundle(path: &Path) -> io::Result<File> {
    // Checked before opening, so that a FIFO is not opened (that would block); the open
    // itself refuses a link put in between (O_NOFOLLOW).
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(symlink_refused());
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file; a bundle holds only files",
        ));
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            return symlink_refused();
        }
        e
    })
}

fn symlink_refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "is a symbolic link; ferry does not follow links inside a bundle (copy the file into the bundle instead)",
    )
}

/// Creates a new owner-only file for writing, exclusively (O_EXCL: never through a link,
/// never into a file that is there): a stale one left by a crash is removed first (the
/// link itself, if it is one, not what it points at).
pub(crate) fn create_exclusive(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    options.open(path)
}

/// Why `name` cannot be a part of a bundle: a part is a plain file name inside the bundle
/// folder, so that no manifest can make ferry read or write anywhere else.
pub(crate) fn part_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.contains('\0') {
        Some("holds a NUL character")
    } else if name.contains('/') || name.contains('\\') {
        Some("is a path, not a plain file name inside the bundle")
    } else if name == "." || name == ".." {
        Some("is not a file name")
    } else if name == crate::MANIFEST || name.starts_with('.') {
        Some("is not a part's name (it is the manifest, or a hidden file)")
    } else {
        None
    }
}
