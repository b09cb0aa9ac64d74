//! cqr: customer-query understanding from the command line. The binary is a thin shell over
//! this library: `cli` holds the clap types and one loop per command, `settings` resolves every
//! option once, `io` reads and writes data, `text` turns queries into features and masks PII,
//! `models` trains and scores, `pipeline` turns input records into typed output records (the
//! one source of the output schema), `analysis` adds sentiment and priority, `respond` drafts replies, `eval` measures,
//! `tracking` records runs in MLflow, `ui` prints.

pub mod analysis;
pub mod cli;
pub mod error;
pub mod eval;
pub mod io;
pub mod metrics;
pub mod models;
pub mod monitor;
pub mod pipeline;
pub mod respond;
pub mod settings;
pub mod text;
pub mod tracking;
pub mod ui;
pub mod util;

pub use error::{Error, Result};
