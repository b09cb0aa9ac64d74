//! The library's error type and the exit statuses it maps to. Every variant carries the context a
//! user needs to fix the problem (file, line, column, field, expected versus found); nothing here
//! prints.

use std::fmt;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in an input a problem was found. Lines and rows are 1-based; `row` counts data records
/// (not the header), `line` counts physical lines of the file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub source: String,
    pub line: Option<u64>,
    pub row: Option<u64>,
    pub column: Option<u64>,
    pub field: Option<String>,
}

impl Location {
    pub fn new(source: impl Into<String>) -> Self {
        Location {
            source: source.into(),
            ..Default::default()
        }
    }
    pub fn line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }
    pub fn row(mut self, row: u64) -> Self {
        self.row = Some(row);
        self
    }
    pub fn column(mut self, column: u64) -> Self {
        self.column = Some(column);
        self
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        let mut parts = Vec::new();
        if let Some(l) = self.line {
            parts.push(format!("line {l}"));
        }
        if let Some(r) = self.row {
            parts.push(format!("row {r}"));
        }
        if let Some(c) = self.column {
            parts.push(format!("column {c}"));
        }
        if let Some(fld) = &self.field {
            parts.push(format!("field `{fld}`"));
        }
        if !parts.is_empty() {
            write!(f, ": {}", parts.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OS error is part of the message and, so that it is said once, not also the error's
    /// `source()` (a field named `source` would be one).
    #[error("{}: {io}", path.display())]
    Io { path: PathBuf, io: std::io::Error },

    #[error("{location}: {message}")]
    Input { location: Location, message: String },

    #[error("{source_name}: no column `{column}` ({what}); the columns are: {available}")]
    MissingColumn {
        source_name: String,
        column: String,
        what: String,
        available: String,
    },

    #[error("{source_name}: no records: {why}")]
    Empty { source_name: String, why: String },

    #[error("model {}: {message}", path.display())]
    Model { path: PathBuf, message: String },

    #[error(
        "model {}: checksum mismatch for `{file}` (manifest says {expected}, file has {found}); \
         the bundle is corrupt or was edited by hand",
        path.display()
    )]
    Checksum {
        path: PathBuf,
        file: String,
        expected: String,
        found: String,
    },

    #[error("{}: already exists; pass --force to replace it", path.display())]
    Exists { path: PathBuf },

    #[error("{0}")]
    Usage(String),

    #[error("training failed: {0}")]
    Training(String),

    #[error("{}: {message}", path.display())]
    Output { path: PathBuf, message: String },

    /// No HTTP answer: refused, reset, timed out. The run is kept locally.
    #[error("cannot reach {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },

    #[error("{endpoint} answered {status}: {message}")]
    Server {
        endpoint: String,
        status: u16,
        code: Option<String>,
        message: String,
    },

    #[error("tracking: {0}")]
    Tracking(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, io: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            io,
        }
    }

    pub fn input(location: Location, message: impl Into<String>) -> Self {
        Error::Input {
            location,
            message: message.into(),
        }
    }

    pub fn model(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Model {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// The MLflow error code of a server reply, e.g. `RESOURCE_ALREADY_EXISTS`.
    pub fn server_code(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// True when the error is the reader of our stdout going away (`cqr classify … | head`):
    /// not a failure, the run ends quietly with status 0.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { io, .. } if io.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Process exit statuses shared by every command.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A negative verdict the caller asked for: a gate not met, drift found.
    pub const VERDICT: u8 = 1;
    /// An error: usage, input, I/O, model, server.
    pub const ERROR: u8 = 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_names_every_known_part() {
        let l = Location::new("data.csv").line(4).row(3).field("text");
        assert_eq!(l.to_string(), "data.csv: line 4, row 3, field `text`");
        assert_eq!(Location::new("-").to_string(), "-");
    }

    #[test]
    fn an_io_error_is_said_in_the_message_not_again_as_its_source() {
        use std::error::Error as _;
        let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Error::io("data.csv", gone);
        assert_eq!(e.to_string(), "data.csv: gone");
        assert!(e.source().is_none());
        assert!(!e.is_broken_pipe());
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(Error::io("<stdout>", pipe).is_broken_pipe());
    }
}
