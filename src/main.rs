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

extern "C" {
    /// mimalloc's option setter (the C library that `mimalloc` links; the Rust bindings only
    /// declare it behind a feature that brings nothing else we need).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (include/mimalloc.h).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() -> ExitCode {
    // Keep freed memory instead of handing it back to the OS after a delay: candle allocates a
    // fresh buffer for every tensor op, and handing pages back meant the kernel zeroing them
    // again on the next fault (11% of a fine-tune's time in clear_page; one fine-tune epoch on
    // 540 rows 12.4 s -> 10.4 s). The process keeps its peak, which it reached anyway.
    // SAFETY: a plain setter of a global option, called before any other thread exists.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // candle runs large elementwise ops on a pool of its own, beside rayon's, whose workers spin
    // at a barrier after each op: with both pools on two cores they take turns preempting each
    // other (a fine-tune epoch on 1,800 rows 34.8 s -> 25.6 s with the machine loaded). cqr's
    // heavy work is on rayon (gemm, its kernels); candle's elementwise ops run in the caller.
    // Set before any thread exists; a value given by the user is kept.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
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
