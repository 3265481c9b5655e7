use std::path::PathBuf;

/// What can go wrong reading or writing a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read, written or created.
    // The cause is part of the message and not a `source`, so that a report of the whole
    // chain (`{:#}`) does not say it twice.
    #[error("`{}`: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The manifest is missing, not JSON, or not a version this tool reads.
    #[error("`{}`: {message}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A part file is not what the bundle format says: not Parquet, or a column missing,
    /// of another type, or unknown.
    #[error("`{}`: {message}", path.display())]
    Part {
        /// The part file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The output folder of a new bundle cannot receive it.
    #[error("{0}")]
    Output(String),
    /// The bundle uses something this build cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// A record could not be serialised.
    #[error("cannot serialise a record: {0}")]
    Serialise(serde_json::Error),
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Serialise(e)
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_said_once() {
        // Regression: "Not a directory" was printed twice by `error: {:#}`.
        let e = anyhow::Error::from(Error::io(
            "b/manifest.json",
            std::io::Error::from_raw_os_error(20),
        ));
        let text = format!("{e:#}");
        assert_eq!(text.matches("Not a directory").count(), 1, "{text}");
    }
}
