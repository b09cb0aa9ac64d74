//! Helpers shared by the integration tests: paths to the sample data, `cqr` in a private
//! working directory, and reading JSONL output.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn tickets() -> PathBuf {
    root().join("data/tickets.csv")
}

pub fn tickets_test() -> PathBuf {
    root().join("data/tickets_test.csv")
}

/// `dir/valid.csv`: the sample test data plus one row whose label (`never_trained`) the sample
/// training data lacks, so training leaves it out of validation.
pub fn valid_with_unseen_label(dir: &Path) -> PathBuf {
    let mut valid = std::fs::read_to_string(tickets_test()).unwrap();
    valid.push_str(
        "X00001,Where is the lighthouse?,never_trained,C0001,standard,email,2026-09-01T00:00:00Z\n",
    );
    let path = dir.join("valid.csv");
    std::fs::write(&path, valid).unwrap();
    path
}

/// `cqr` run in `work`, with its own run store and cache there and no tracking server.
pub fn cqr_in(work: &Path) -> Command {
    let mut c = Command::cargo_bin("cqr").unwrap();
    c.current_dir(work)
        .env("CQR_RUNS_DIR", work.join("runs"))
        .env("CQR_CACHE", work.join("cache"))
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .env_remove("MLFLOW_TRACKING_PASSWORD")
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .env_remove("CQR_CONFIG")
        .env_remove("RUST_LOG");
    c
}

/// Runs `cmd` and returns its output, failing the test with its stderr unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` and returns its stderr, failing the test unless it exited with status 2 (an error).
pub fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// The default encoder, when scripts/fetch-model.sh has fetched it into models/. Without it the
/// calling test is skipped with a line on stderr saying which and why — unless
/// `CQR_REQUIRE_ENCODER` is set (scripts/test.sh sets it after fetching), where a missing
/// encoder fails the test instead of hiding it.
pub fn encoder_dir(test: &str) -> Option<PathBuf> {
    let dir = root().join("models/all-MiniLM-L6-v2");
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CQR_REQUIRE_ENCODER").is_none(),
        "{test}: CQR_REQUIRE_ENCODER is set but {} has no model.safetensors",
        dir.display()
    );
    // Straight to stderr: the test harness captures eprintln! of passing tests.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: the encoder is not fetched ({} is missing; scripts/fetch-model.sh \
         fetches it, scripts/test.sh runs every test)",
        dir.display()
    );
    None
}

/// One JSON value per output line.
pub fn jsonl(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records without their `model` field (name and version differ between otherwise identical
/// models).
pub fn without_model(recs: &[Value]) -> Vec<Value> {
    recs.iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("model");
            r
        })
        .collect()
}

/// Every file below `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A linear model trained on the sample data with `seed`, in a fresh temporary directory (kept
/// alive with the model).
pub fn train_linear(seed: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tickets");
    run_ok(
        cqr_in(dir.path())
            .args(["train", "--components", "linear", "--seed"])
            .arg(seed.to_string())
            .arg("-o")
            .arg(&out)
            .arg(tickets()),
    );
    (dir, out)
}

/// One linear model trained on the sample data (seed 7) for the whole test binary, for tests that
/// only read it.
pub fn linear_model() -> &'static Path {
    static MODEL: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &MODEL.get_or_init(|| train_linear(7)).1
}
