//! How a command ended, and the exit code that says it.

use std::process::ExitCode;

/// How a command that ran ended (one that could not run returns an error: exit 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything is fine: exit 0.
    Success,
    /// The command ran and found problems: exit 1.
    Failure,
}

impl ExitStatus {
    /// `Failure` if `failed`, else `Success`.
    pub fn failed_if(failed: bool) -> ExitStatus {
        if failed {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        match s {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Failure => ExitCode::from(1),
        }
    }
}
