//! How the user parts of a bundle are encoded.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The encoding of a bundle's user parts, as `manifest.json` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One JSON object per line (`users-00000.ndjson`): the form to edit by hand.
    Ndjson,
    /// Apache Parquet (`users-00000.parquet`): columnar, for large bundles and analysis.
    Parquet,
}

impl Encoding {
    /// `ndjson` or `parquet`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Ndjson => "ndjson",
            Encoding::Parquet => "parquet",
        }
    }

    /// The file name of the `index`th users part.
    pub fn user_part_name(self, index: usize) -> String {
        format!("users-{index:05}.{}", self.as_str())
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
