//! The `cqr` binary: parse arguments, set up logging, run the command, map the outcome to an
//! exit status (0 success, 1 a negative verdict the caller asked for, 2 an error).

use std::process::ExitCode;

use clap::Parser;
use cqr::cli::{Cli, Outcome};
use cqr::error::exit;

// Scoring allocates many small strings and JSON values from several threads at once; glibc's
// allocator spent a fifth of classify's time in malloc/free and arena locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cqr::ui::init(cli.global.quiet, cli.global.verbose);
    match cqr::cli::run(cli) {
        Ok(Outcome::Success) => ExitCode::from(exit::OK),
        Ok(Outcome::Verdict(message)) => {
            cqr::ui::verdict(&message);
            ExitCode::from(exit::VERDICT)
        }
        Err(e) if cqr::ui::is_broken_pipe(&e) => ExitCode::from(exit::OK),
        Err(e) => {
            cqr::ui::error(&e);
            ExitCode::from(exit::ERROR)
        }
    }
}
