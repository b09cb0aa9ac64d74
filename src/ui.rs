//! The only place that prints. Results go to stdout; messages, warnings and progress bars go to
//! stderr, and progress bars only when stderr is a terminal and nobody asked for quiet.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::EnvFilter;

struct Ui {
    quiet: bool,
    progress: bool,
}

static UI: OnceLock<Ui> = OnceLock::new();

fn ui() -> &'static Ui {
    UI.get_or_init(|| Ui {
        quiet: false,
        progress: false,
    })
}

/// Sets verbosity and logging once, before any command runs. `RUST_LOG` overrides -v/-q.
pub fn init(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("cqr={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .try_init();
    let _ = UI.set(Ui {
        quiet,
        progress: !quiet && std::io::stderr().is_terminal(),
    });
}

/// Prints a result to stdout. A closed pipe is returned as an error so the caller can stop.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// A message for the person at the terminal (stderr), suppressed by -q.
pub fn note(text: &str) {
    if !ui().quiet {
        eprintln!("{text}");
    }
}

pub fn warn(text: &str) {
    if !ui().quiet {
        eprintln!("warning: {text}");
    }
}

/// Text the user asked for on stderr (e.g. `--explain`): printed even with `-q`.
pub fn explain(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// A closing line for the person at the terminal (e.g. how many records in how long): shown
/// only where progress bars are, so pipelines and cron jobs stay quiet.
pub fn summary(text: &str) {
    if ui().progress {
        eprintln!("{text}");
    }
}

/// "1.20 s (8300/s)": a duration and the rate of `n` items over it.
pub fn rate(n: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let per_sec = if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let took = if secs < 60.0 {
        format!("{secs:.2} s")
    } else {
        crate::util::human_seconds(secs)
    };
    format!("{took} ({per_sec:.0}/s)")
}

/// The message of a negative verdict (exit 1): always shown, it explains the status.
pub fn verdict(text: &str) {
    eprintln!("{text}");
}

/// `error: …` then one `caused by: …` line per cause. An error that shows its cause in its own
/// message (`data.csv: No such file or directory (os error 2)`) does not also return it as its
/// `source()`, so nothing is said twice.
pub fn error(e: &anyhow::Error) {
    eprint!("{}", error_lines(e));
}

fn error_lines(e: &anyhow::Error) -> String {
    let mut said = format!("error: {e}\n");
    for cause in e.chain().skip(1) {
        said.push_str(&format!("caused by: {cause}\n"));
    }
    said
}

/// True when an error is only the reader of stdout going away (`| head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<crate::Error>()
                .is_some_and(|ce| ce.is_broken_pipe())
    })
}

/// A progress bar over `len` steps (or a spinner when the length is unknown), hidden unless
/// stderr is a terminal.
pub fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    if !ui().progress {
        return ProgressBar::hidden();
    }
    let pb = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{spinner} {msg} {human_pos} records ({per_sec}) {elapsed}",
            )
            .expect("a valid template"),
        ),
    };
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A spinner for work whose message carries its own counts and units (`L-BFGS iteration
/// 12/300`), with the elapsed time; hidden unless stderr is a terminal.
pub fn spinner(what: &str) -> ProgressBar {
    let pb = progress(None, what);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
    );
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_message_already_shows_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(crate::Error::io("data.csv", io));
        assert_eq!(error_lines(&e), "error: data.csv: gone\n");
        let e = e.context("reading the training data");
        assert_eq!(
            error_lines(&e),
            "error: reading the training data\ncaused by: data.csv: gone\n"
        );
    }

    #[test]
    fn a_broken_pipe_is_found_in_our_error_and_in_a_bare_one() {
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let ours = anyhow::Error::new(crate::Error::io("<stdout>", pipe())).context("writing");
        assert!(is_broken_pipe(&ours));
        assert!(is_broken_pipe(&anyhow::Error::new(pipe())));
        let other = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(!is_broken_pipe(&anyhow::Error::new(crate::Error::io(
            "x", other
        ))));
    }
}
