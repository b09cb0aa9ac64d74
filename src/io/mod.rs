//! Every reader and writer of data files lives here: CSV, JSONL/NDJSON, raw lines and Parquet, in
//! and out; `-` is stdin or stdout; file outputs are atomic. Nothing here knows about models.
//!
//! CSV and JSONL are read record by record (the `csv` crate and `serde_json`) so memory stays
//! bounded on any input size and every error names its line and column; Parquet goes through
//! polars, one slice of rows at a time.

pub mod atomic;
pub mod audit;
pub mod json;
pub mod read;
pub mod write;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A data format, chosen by extension or `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    /// One JSON object per line (also `.ndjson`).
    Jsonl,
    Parquet,
    /// One raw query per line (input only).
    Lines,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "parquet" | "pq" => Some(Format::Parquet),
            "txt" => Some(Format::Lines),
            _ => None,
        }
    }

    /// The explicit format, else the file's extension, else `default` (stdin/stdout).
    pub fn resolve(explicit: Option<Format>, target: &Target, default: Format) -> Result<Format> {
        if let Some(f) = explicit {
            return Ok(f);
        }
        match target {
            Target::Std => Ok(default),
            Target::Path(p) => Format::from_path(p).ok_or_else(|| {
                Error::Usage(format!(
                    "{}: cannot tell the format from the extension; use .csv, .jsonl, .ndjson or \
                     .parquet, or pass --format",
                    p.display()
                ))
            }),
        }
    }
}

/// An output format, chosen by `--output-format` or `-o FILE`'s extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per line (the default on stdout).
    Jsonl,
    /// Nested fields flattened into `parent.child` columns, arrays as JSON text.
    Csv,
    /// Like CSV, in typed columns (needs -o FILE).
    Parquet,
}

impl OutputFormat {
    /// The explicit format, else `-o FILE`'s extension, else JSONL (stdout).
    pub fn resolve(explicit: Option<OutputFormat>, target: &Target) -> Result<OutputFormat> {
        if let Some(f) = explicit {
            return Ok(f);
        }
        let path = match target {
            Target::Std => return Ok(OutputFormat::Jsonl),
            Target::Path(p) => p,
        };
        match Format::from_path(path) {
            Some(Format::Jsonl) => Ok(OutputFormat::Jsonl),
            Some(Format::Csv) => Ok(OutputFormat::Csv),
            Some(Format::Parquet) => Ok(OutputFormat::Parquet),
            Some(Format::Lines) | None => {
                let ext = match path.extension() {
                    Some(e) => format!("its extension `.{}`", e.to_string_lossy()),
                    None => "a name without an extension".to_string(),
                };
                Err(Error::Usage(format!(
                    "-o {}: cannot tell the output format from {ext}; name the file .jsonl, \
                     .ndjson, .csv or .parquet, or pass --output-format jsonl|csv|parquet",
                    path.display()
                )))
            }
        }
    }
}

/// A data argument: a path, or `-` for stdin/stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Std,
    Path(PathBuf),
}

impl Target {
    pub fn parse(s: &str) -> Target {
        if s == "-" {
            Target::Std
        } else {
            Target::Path(PathBuf::from(s))
        }
    }

    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            Target::Std => "<stdin>".to_string(),
            Target::Path(p) => p.display().to_string(),
        }
    }
}
