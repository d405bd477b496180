//! Failures of a command and the exit codes they map to.

use std::fmt;
use std::process::ExitCode;

/// Exit code for configuration errors (bad flags, files, addresses,
/// ports in use): the same code clap uses for usage errors.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for failures while running.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code of `weft status` when the node cannot be reached, does not
/// answer in time, or does not answer with a weft cluster view.
pub const EXIT_UNAVAILABLE: u8 = 3;

/// A command failure: a one-line message and an exit code.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// A configuration problem (exit code 2).
    pub fn config(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_CONFIG,
            error: error.into(),
        }
    }

    /// A failure while running (exit code 1).
    pub fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_RUNTIME,
            error: error.into(),
        }
    }

    /// A failure with a command-specific exit code.
    pub fn with_code(code: u8, error: impl Into<anyhow::Error>) -> Self {
        Self {
            code,
            error: error.into(),
        }
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:#}` joins the context chain on one line: "a: b: c".
        write!(f, "{:#}", self.error)
    }
}

/// Shorthand for results of command steps.
pub type Result<T> = std::result::Result<T, Failure>;

/// Turns any error into a [`Failure`] with a code, keeping its context.
pub trait OrFail<T> {
    /// Maps the error to a configuration failure (exit code 2).
    fn or_config(self) -> Result<T>;
    /// Maps the error to a runtime failure (exit code 1).
    fn or_runtime(self) -> Result<T>;
}

impl<T, E: Into<anyhow::Error>> OrFail<T> for std::result::Result<T, E> {
    fn or_config(self) -> Result<T> {
        self.map_err(Failure::config)
    }
    fn or_runtime(self) -> Result<T> {
        self.map_err(Failure::runtime)
    }
}
