//! cqr: customer-query understanding from the command line. The binary is a thin shell over
//! this library: `cli` parses and resolves settings, `io` reads and writes data, `text` turns
//! queries into features, `models` trains and scores, `eval` measures, `ui` prints.

pub mod analysis;
pub mod cli;
pub mod error;
pub mod eval;
pub mod io;
pub mod metrics;
pub mod models;
pub mod settings;
pub mod text;
pub mod tracking;
pub mod ui;
pub mod util;

pub use error::{Error, Result};
