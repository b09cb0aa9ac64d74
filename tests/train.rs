//! `train` and `evaluate` through the real binary: settings errors that name where a bad value
//! came from (flag, environment variable, settings-file line) before any work starts, the
//! training summary, and evaluate's `--format` (input) versus `--json`/`--output-format` (report).

use std::path::Path;

mod common;

use common::{
    cqr_in, linear_model as model, run_ok, tickets, tickets_test, valid_with_unseen_label, walk,
};
use serde_json::Value;

/// Runs `train` in a fresh directory, expecting a usage error before any work: exit 2, nothing
/// written. Returns stderr.
fn train_refused(args: &[&str], env: &[(&str, &str)], config: Option<&str>) -> String {
    let work = tempfile::tempdir().unwrap();
    let mut cmd = cqr_in(work.path());
    cmd.env_remove("CQR_SEED")
        .env_remove("CQR_VALID_SPLIT")
        .env_remove("CQR_ENCODER");
    if let Some(text) = config {
        std::fs::write(work.path().join("cqr.toml"), text).unwrap();
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .args(["train", "--components", "linear", "-o", "m"])
        .args(args)
        .arg(tickets())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(!work.path().join("m").exists(), "no bundle");
    assert!(!work.path().join("runs").exists(), "no run was started");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_bad_setting_names_the_flag_the_variable_or_the_file_line() {
    let err = train_refused(&["--valid-split", "1.5"], &[], None);
    assert!(
        err.contains(
            "--valid-split must be in (0, 1); got 1.5 from --valid-split on the command line"
        ),
        "{err}"
    );
    let err = train_refused(&[], &[("CQR_VALID_SPLIT", "0")], None);
    assert!(
        err.contains(
            "--valid-split must be in (0, 1); got 0 from CQR_VALID_SPLIT in the environment"
        ),
        "{err}"
    );
    let err = train_refused(&[], &[("CQR_SEED", "seven")], None);
    assert!(
        err.contains("CQR_SEED=seven in the environment: not a valid value for --seed"),
        "{err}"
    );
    let err = train_refused(
        &[],
        &[],
        Some("[train]\nseed = 3\n\ntarget_precision = 1.5\n"),
    );
    assert!(
        err.contains("--target-precision must be in (0, 1]; got 1.5 from `train.target_precision` in cqr.toml line 4"),
        "{err}"
    );
    // The command line beats the file, so the file's bad value is never used.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("cqr.toml"), "[train]\nmax_iter = 0\n").unwrap();
    run_ok(
        cqr_in(work.path())
            .args([
                "train",
                "--components",
                "linear",
                "--max-iter",
                "50",
                "-o",
                "m",
            ])
            .arg(tickets()),
    );
}

#[test]
fn the_summary_keeps_its_shape() {
    let work = tempfile::tempdir().unwrap();
    let out = run_ok(
        cqr_in(work.path())
            .args(["train", "--components", "linear", "--seed", "7", "-o", "m"])
            .arg(tickets()),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let heads: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        heads,
        [
            "trained",
            "data",
            "features",
            "linear",
            "calibration",
            "abstain",
            "refuses",
            "recalls",
            "trade-off",
            "out-of-scope",
            "validation",
            "time",
            "checksum"
        ],
        "{text}"
    );
    assert!(text.starts_with(
        "trained m → m\n  data        1296 rows for training, 144 for validation, 16 intents; 60 out of scope\n"
    ));
    assert!(text.contains("  features    11415 n-grams (word 1–2, char 2–5, min_df 2)\n"));
    assert!(!text.contains("NaN"), "{text}");
}

#[test]
fn the_runs_validation_digest_is_the_manifests() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // A validation row whose label training never sees is left out of validation: the run's
    // dataset digest must describe the same rows as the manifest's.
    valid_with_unseen_label(w);
    run_ok(
        cqr_in(w)
            .args([
                "train",
                "--components",
                "linear",
                "--valid",
                "valid.csv",
                "-o",
                "m",
            ])
            .arg(tickets()),
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(w.join("m/manifest.json")).unwrap()).unwrap();
    let inputs = walk(&w.join("runs"))
        .into_iter()
        .find(|p| p.ends_with("cqr_inputs.json"))
        .expect("the run logged its datasets");
    let inputs: Value = serde_json::from_slice(&std::fs::read(inputs).unwrap()).unwrap();
    for (context, key) in [("training", "train_data"), ("validation", "valid_data")] {
        let logged = inputs
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["context"] == context)
            .unwrap_or_else(|| panic!("no {context} dataset in {inputs}"));
        assert_eq!(
            logged["digest"], manifest["training"][key]["sha256"],
            "{context}"
        );
    }
    assert_eq!(manifest["training"]["valid_data"]["rows"], 480);
}

fn evaluate(extra: &[&str], data: &Path) -> std::process::Output {
    let work = tempfile::tempdir().unwrap();
    cqr_in(work.path())
        .arg("evaluate")
        .arg(model())
        .arg(data)
        .args(extra)
        .output()
        .unwrap()
}

fn json_report(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["n"], 480);
    r
}

#[test]
fn evaluate_prints_json_with_json_or_output_format_and_warns_on_the_old_format_flag() {
    const DEPRECATED: &str =
        "warning: --format json is deprecated for the report; use --json or --output-format json";
    for new in [&["--json"][..], &["--output-format", "json"]] {
        let out = evaluate(new, &tickets_test());
        json_report(&out);
        assert!(!String::from_utf8_lossy(&out.stderr).contains("deprecated"));
    }
    let out = evaluate(&["--format", "json"], &tickets_test());
    let old = json_report(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(DEPRECATED),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = json_report(&evaluate(&["--json"], &tickets_test()));
    assert_eq!(old["accuracy"], new["accuracy"]);
    assert_eq!(old["per_intent"], new["per_intent"]);

    let text = evaluate(&[], &tickets_test());
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).starts_with("model      tickets "));
    let both = evaluate(&["--json", "--output-format", "text"], &tickets_test());
    assert_eq!(
        both.status.code(),
        Some(2),
        "--json and --output-format conflict"
    );
}

#[test]
fn evaluate_report_dir_files_are_the_runs_report_artifacts() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    run_ok(
        cqr_in(w)
            .arg("evaluate")
            .arg(model())
            .arg(tickets_test())
            .args(["--report-dir", "rep"]),
    );
    let reports: Vec<_> = walk(&w.join("runs"))
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("artifacts/report")))
        .collect();
    let mut names: Vec<_> = reports
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "confusion.png",
            "coverage.png",
            "metrics.json",
            "reliability.png",
            "report.md"
        ]
    );
    for p in reports {
        let written = w.join("rep").join(p.file_name().unwrap());
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(&written).unwrap(),
            "{} differs from {}",
            p.display(),
            written.display()
        );
    }
}

#[test]
fn evaluate_format_names_the_input_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("test.data");
    std::fs::copy(tickets_test(), &data).unwrap();
    let out = evaluate(&[], &data);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot tell the format"));
    let r = json_report(&evaluate(&["--format", "csv", "--json"], &data));
    assert!(r["accuracy"].as_f64().unwrap() > 0.88);
    // The old name of the input-format flag still works.
    json_report(&evaluate(&["--input-format", "csv", "--json"], &data));
    let out = evaluate(&["--format", "jsonl", "--json"], &data);
    assert_eq!(out.status.code(), Some(2), "a CSV file read as JSONL fails");
    let out = evaluate(&["--min-accuracy", "1.5"], &tickets_test());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "--min-accuracy must be in [0, 1]; got 1.5 from --min-accuracy on the command line"
    ));
}

#[test]
fn train_help_shows_defaults_and_variables() {
    let work = tempfile::tempdir().unwrap();
    let out = run_ok(cqr_in(work.path()).args(["train", "--help"]));
    // Help wraps to the terminal: compare with single spaces.
    let help = String::from_utf8(out.stdout).unwrap();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for shown in [
        "not given [env: CQR_VALID_SPLIT] [default: 0.1]",
        "[env: CQR_SEED] [default: 42]",
        "[env: CQR_ENCODER] [default: models/all-MiniLM-L6-v2]",
        "refuses more when needed [default: 0.95]",
        "needs it) [default: 0.05]",
        "fit the abstain rule [default: oos]",
        "[default: logistic]",
    ] {
        assert!(help.contains(shown), "{shown} missing from: {help}");
    }
}
