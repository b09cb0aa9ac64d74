//! `cqr classify` as a user meets it: settings errors that name where a value came from, the
//! `--keep` rule, a data file given where the model goes, help, completions and the man page,
//! and answers that start before a large input is read.

mod common;

use common::{cqr_in, jsonl, linear_model as model, run_ok, tickets_test};

/// Runs classify in a fresh directory with `extra` arguments and `env`; returns (code, stderr).
fn classify(extra: &[&str], env: &[(&str, &str)], config: Option<&str>) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cqr_in(dir.path());
    if let Some(text) = config {
        std::fs::write(dir.path().join("cqr.toml"), text).unwrap();
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .arg("classify")
        .arg(model())
        .arg(tickets_test())
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_bad_setting_names_the_option_and_where_it_was_set() {
    let (code, e) = classify(&["--top-k", "0"], &[], None);
    assert_eq!(code, 2);
    assert!(
        e.contains("--top-k must be at least 1; got 0 from --top-k on the command line"),
        "{e}"
    );
    let (code, e) = classify(&[], &[("CQR_BATCH_SIZE", "0")], None);
    assert_eq!(code, 2);
    assert!(
        e.contains("--batch-size must be at least 1; got 0 from CQR_BATCH_SIZE"),
        "{e}"
    );
    let (code, e) = classify(&[], &[], Some("[classify]\nbatch_size = 64\ntop_k = 0\n"));
    assert_eq!(code, 2);
    assert!(
        e.contains("--top-k must be at least 1; got 0 from `classify.top_k` in cqr.toml line 3"),
        "{e}"
    );
    let (code, e) = classify(&[], &[("CQR_TOP_K", "three")], None);
    assert_eq!(code, 2);
    assert!(e.contains("CQR_TOP_K=three"), "{e}");
}

#[test]
fn keep_refuses_only_fields_the_output_will_have() {
    let (code, e) = classify(&["--keep", "confidence"], &[], None);
    assert_eq!(code, 2);
    assert!(
        e.contains("--keep confidence") && e.contains("already a field"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("q.csv");
    std::fs::write(&csv, "id,text,confidence\n1,where is my parcel,high\n").unwrap();
    let out = run_ok(
        cqr_in(dir.path())
            .arg("classify")
            .arg(model())
            .arg(&csv)
            .args(["--fields", "pii", "--keep", "confidence"]),
    );
    let recs = jsonl(&out.stdout);
    assert_eq!(recs[0]["confidence"], "high");
}

#[test]
fn a_data_file_where_the_model_goes_is_an_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("s.csv");
    std::fs::write(&csv, "id,text\n1,hello\n").unwrap();
    let out = cqr_in(dir.path())
        .args(["classify", "--fields", "sentiment,pii", "s.csv"])
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("s.csv looks like a data file, not a model"),
        "{e}"
    );
}

#[test]
fn help_groups_global_options_and_completions_and_man_page_print() {
    let dir = tempfile::tempdir().unwrap();
    let help = run_ok(cqr_in(dir.path()).args(["classify", "--help"]));
    let help = String::from_utf8_lossy(&help.stdout);
    let global = help
        .find("Global options:")
        .expect("a Global options heading");
    assert!(help.find("--top-k").unwrap() < global, "{help}");
    assert!(help[global..].contains("--tracking-uri"), "{help}");
    let bash = run_ok(cqr_in(dir.path()).args(["completions", "bash"]));
    let bash = String::from_utf8_lossy(&bash.stdout);
    assert!(
        bash.contains("_cqr()") && bash.contains("classify"),
        "{bash}"
    );
    let man = run_ok(cqr_in(dir.path()).arg("man"));
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(man.starts_with(".ie") || man.contains(".TH cqr"), "{man}");
}

/// A large input's first answers come out long before the whole input is scored: the first
/// batch is small whatever --batch-size says, and batches grow from there.
#[test]
fn batches_start_small_and_grow() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        cqr_in(dir.path())
            .args(["-vv", "classify"])
            .arg(model())
            .arg(tickets_test())
            .args(["--batch-size", "100000", "--fields", "intent"]),
    );
    let e = String::from_utf8_lossy(&out.stderr);
    let sizes: Vec<usize> = e
        .lines()
        .filter(|l| l.contains("scoring a batch"))
        .map(|l| l.rsplit("records=").next().unwrap().trim().parse().unwrap())
        .collect();
    assert_eq!(&sizes[..4], &[16, 32, 64, 128], "{e}");
    assert_eq!(sizes.iter().sum::<usize>(), jsonl(&out.stdout).len());
}
