//! Integration tests: run the real `cqr` binary on the project's own sample data and small
//! fixtures, and check exit codes, stdout shape and the words of error messages.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;

use assert_cmd::Command;
use common::{jsonl, root, run_err, run_ok, tickets, tickets_test, without_model};
use predicates::prelude::*;
use serde_json::Value;

fn cqr() -> Command {
    let mut c = Command::cargo_bin("cqr").unwrap();
    c.env_remove("RUST_LOG")
        .env_remove("CQR_CONFIG")
        .env_remove("MLFLOW_TRACKING_URI")
        .env("CQR_RUNS_DIR", runs_dir())
        .current_dir(std::env::temp_dir());
    c
}

/// A run store for these tests, so nothing lands in the working directory.
fn runs_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// One model trained on the sample data, shared by the tests that only read it.
fn model() -> &'static Path {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &MODEL
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("tickets");
            cqr()
                .args(["train", "--seed", "7", "-o"])
                .arg(&out)
                .arg(tickets())
                .assert()
                .success();
            (dir, out)
        })
        .1
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Asserts how many entries a directory holds (temporaries included).
fn assert_entries(dir: &Path, n: usize, why: &str) {
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), n, "{why}: {names:?}");
}

#[test]
fn train_evaluate_classify_round_trip_beats_the_floor() {
    let out = run_ok(
        cqr()
            .args(["evaluate", "--json"])
            .arg(model())
            .arg(tickets_test()),
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["n"], 480);
    // The sample data carries ~2.5% deliberate label noise; the model reaches ~95%.
    let acc = r["accuracy"].as_f64().unwrap();
    assert!(acc > 0.88, "accuracy {acc}");
    for key in ["macro_f1", "ece", "abstain_rate", "accuracy_answered"] {
        assert!(r[key].is_number(), "{key} missing");
    }
    for key in [
        "per_intent",
        "confusions",
        "reliability",
        "coverage_curve",
        "latency_ms",
    ] {
        assert!(!r[key].is_null(), "{key} missing");
    }
    assert_eq!(r["per_intent"].as_object().unwrap().len(), 16);
    assert!(r["latency_ms"]["p95"].as_f64().unwrap() >= r["latency_ms"]["p50"].as_f64().unwrap());

    let out = cqr()
        .args(["classify", "--keep", "customer_tier"])
        .arg(model())
        .arg(tickets_test())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "classify is quiet: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), 480);
    let first = &recs[0];
    assert_eq!(first["id"], "E00001");
    assert!(first["customer_tier"].is_string());
    assert_eq!(first["top_k"].as_array().unwrap().len(), 3);
    assert!(
        first["uncertainty"]["entropy"].is_number() && first["uncertainty"]["margin"].is_number()
    );
    assert_eq!(first["model"]["name"], "tickets");
    assert_eq!(first["model"]["checksum"].as_str().unwrap().len(), 64);
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "customer_tier",
            "intent",
            "confidence",
            "top_k",
            "abstained",
            "uncertainty",
            "sentiment",
            "priority",
            "pii",
            "model"
        ]
    );
}

#[test]
fn report_dir_holds_markdown_json_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let rep = dir.path().join("report");
    cqr()
        .arg("evaluate")
        .arg(model())
        .arg(tickets_test())
        .arg("--report-dir")
        .arg(&rep)
        .assert()
        .success();
    for f in [
        "report.md",
        "metrics.json",
        "confusion.png",
        "reliability.png",
        "coverage.png",
    ] {
        let bytes = std::fs::read(rep.join(f)).unwrap_or_else(|_| panic!("{f} missing"));
        assert!(bytes.len() > 100, "{f} is too small");
        if f.ends_with(".png") {
            assert_eq!(&bytes[1..4], b"PNG");
        }
    }
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("macro-F1") && md.contains("## Per intent"));
}

#[test]
fn gates_exit_one() {
    cqr()
        .arg("evaluate")
        .arg(model())
        .arg(tickets_test())
        .args(["--min-accuracy", "0.999"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("gate failed: accuracy"));
    cqr()
        .arg("evaluate")
        .arg(model())
        .arg(tickets_test())
        .args(["--min-accuracy", "0.5", "--min-macro-f1", "0.5"])
        .assert()
        .code(0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    cqr()
        .args(["train", "--min-accuracy", "0.999", "-o"])
        .arg(&out)
        .arg(tickets())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no model was written"));
    assert!(!out.exists());
    assert_entries(dir.path(), 0, "no temporary left behind");
}

#[test]
fn same_seed_same_predictions_and_refuses_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    for out in [&a, &b] {
        cqr()
            .args(["train", "--seed", "11", "-o"])
            .arg(out)
            .arg(tickets())
            .assert()
            .success();
    }
    let classify = |m: &Path| {
        cqr()
            .arg("classify")
            .arg(m)
            .arg(tickets_test())
            .output()
            .unwrap()
            .stdout
    };
    let (pa, pb) = (jsonl(&classify(&a)), jsonl(&classify(&b)));
    assert_eq!(without_model(&pa), without_model(&pb));
    assert_eq!(pa[0]["model"]["checksum"], pb[0]["model"]["checksum"]);
    cqr()
        .args(["train", "-o"])
        .arg(&a)
        .arg(tickets())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists; pass --force"));
    cqr()
        .args(["train", "--force", "--seed", "12", "-o"])
        .arg(&a)
        .arg(tickets())
        .assert()
        .success();
}

#[test]
fn stdin_answers_each_line_before_input_ends() {
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("cqr"))
        .arg("classify")
        .arg(model())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for (i, q) in ["my card was stolen yesterday", "where is my refund??"]
        .iter()
        .enumerate()
    {
        writeln!(stdin, "{}", serde_json::json!({"id": i, "text": q})).unwrap();
        stdin.flush().unwrap();
        let start = Instant::now();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        // Answered while stdin is still open: no waiting for end of input.
        assert!(start.elapsed() < Duration::from_secs(5));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], i);
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn raw_lines_and_other_output_formats() {
    let out = cqr()
        .args(["classify", "--format", "lines"])
        .arg(model())
        .write_stdin("I forgot my password\n\u{201C}Lost\u{201D} my card!\n")
        .output()
        .unwrap();
    assert!(out.status.success());
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1]["id"], 2);

    let dir = tempfile::tempdir().unwrap();
    for ext in ["csv", "parquet", "jsonl"] {
        let p = dir.path().join(format!("out.{ext}"));
        cqr()
            .arg("classify")
            .arg(model())
            .arg(tickets_test())
            .arg("-o")
            .arg(&p)
            .assert()
            .success();
        assert!(std::fs::metadata(&p).unwrap().len() > 1000);
    }
    let csv = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert!(csv.starts_with(
        "id,intent,confidence,top_k,abstained,uncertainty.entropy,uncertainty.margin,\
         uncertainty.novelty,sentiment.label,sentiment.score,sentiment.cues,priority.level,priority.score,\
         priority.escalate,priority.reasons,pii,model.name"
    ));
    assert_eq!(csv.lines().count(), 481);
    // A Parquet input (the output just written) reads back through polars.
    let out = run_ok(
        cqr()
            .args(["classify", "--text-col", "intent"])
            .arg(model())
            .arg(dir.path().join("out.parquet")),
    );
    assert_eq!(jsonl(&out.stdout).len(), 480);
}

#[test]
fn broken_pipe_is_quiet_success() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "many.jsonl",
        &"{\"text\":\"where is my parcel\"}\n"
            .repeat(200_000)
            .into_bytes(),
    );
    let out = StdCommand::new("bash")
        .arg("-c")
        .arg(format!(
            "{} classify {} {} | head -1; exit ${{PIPESTATUS[0]}}",
            assert_cmd::cargo::cargo_bin("cqr").display(),
            model().display(),
            input.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "status {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

fn classify_err(data: &Path, extra: &[&str]) -> String {
    run_err(cqr().arg("classify").arg(model()).arg(data).args(extra))
}

#[test]
fn bad_inputs_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = classify_err(&write(d, "cols.csv", b"id,body\n1,hello\n"), &[]);
    assert!(
        e.contains("no column `text`") && e.contains("`id`, `body`") && e.contains("--text-col"),
        "{e}"
    );

    let e = classify_err(
        &write(d, "ragged.csv", b"id,text\n1,fine\n2,too,many\n"),
        &[],
    );
    assert!(
        e.contains("ragged.csv: line 3") && e.contains("3 fields where the header has 2"),
        "{e}"
    );

    let e = classify_err(
        &write(d, "bad.jsonl", b"{\"text\":\"ok\"}\n{\"text\": oops}\n"),
        &[],
    );
    assert!(
        e.contains("bad.jsonl: line 2") && e.contains("column") && e.contains("invalid JSON"),
        "{e}"
    );

    let e = classify_err(
        &write(
            d,
            "utf.jsonl",
            b"{\"text\":\"ok\"}\n{\"text\":\"caf\xff\"}\n",
        ),
        &[],
    );
    assert!(
        e.contains("utf.jsonl: line 2") && e.contains("column 13") && e.contains("invalid UTF-8"),
        "{e}"
    );

    let e = classify_err(&write(d, "utf.csv", b"id,text\n1,caf\xe9\n"), &[]);
    assert!(
        e.contains("utf.csv: line 2") && e.contains("field `text`") && e.contains("invalid UTF-8"),
        "{e}"
    );

    // An empty text stops the run only with --strict; by default the record is written as
    // skipped (rows in = rows out) and counted on stderr.
    let blank = write(
        d,
        "blank.csv",
        b"id,text\n1,hello\n2,  \n3,where is my parcel\n",
    );
    let e = classify_err(&blank, &["--strict"]);
    assert!(
        e.contains("blank.csv: line 3, row 2, field `text`: the text is empty"),
        "{e}"
    );
    let out = cqr()
        .arg("classify")
        .arg(model())
        .arg(&blank)
        .output()
        .unwrap();
    assert!(out.status.success());
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), 3, "rows in = rows out");
    assert_eq!(recs[1]["id"], "2");
    assert_eq!(recs[1]["skipped"], "the text is empty");
    assert!(recs[1].get("intent").is_none() && recs[2]["intent"].is_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 of 3 records were not scored"),
        "{stderr}"
    );

    let e = classify_err(&write(d, "empty.csv", b""), &[]);
    assert!(e.contains("empty.csv") && e.contains("empty"), "{e}");

    let e = classify_err(&write(d, "num.jsonl", b"{\"text\": 42}\n"), &[]);
    assert!(
        e.contains("line 1, row 1, field `text`") && e.contains("must be a string, found a number"),
        "{e}"
    );

    let e = classify_err(&write(d, "x.xlsx", b"whatever"), &[]);
    assert!(
        e.contains("cannot tell the format") && e.contains("--format"),
        "{e}"
    );

    let out = cqr()
        .args(["train", "-o"])
        .arg(d.join("m"))
        .arg(write(d, "nolabel.csv", b"text\nhi\n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8(out.stderr).unwrap();
    assert!(
        e.contains("no column `label`") && e.contains("`intent` and `category`"),
        "{e}"
    );
}

#[test]
fn failed_output_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = b"id,text\n".to_vec();
    for i in 0..5000 {
        data.extend_from_slice(format!("{i},where is my order {i}\n").as_bytes());
    }
    data.extend_from_slice(b"5000,one,field too many\n");
    let input = write(dir.path(), "big.csv", &data);
    for ext in ["jsonl", "csv", "parquet"] {
        let out = dir.path().join(format!("out.{ext}"));
        cqr()
            .arg("classify")
            .arg(model())
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .assert()
            .code(2);
        assert!(!out.exists(), "{ext} output must not exist after a failure");
    }
    assert_entries(dir.path(), 1, "only the input remains");
}

#[test]
fn training_on_bad_data_leaves_no_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = std::fs::read(tickets()).unwrap();
    data.extend_from_slice(b"T99999,\"an unfinished row\",refund_request\n");
    let input = write(dir.path(), "train.csv", &data);
    let out = dir.path().join("m");
    cqr()
        .args(["train", "-o"])
        .arg(&out)
        .arg(&input)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("train.csv: line")
                .and(predicate::str::contains("malformed row")),
        );
    assert!(!out.exists());
    assert_entries(dir.path(), 1, "only the input remains");
}

#[test]
fn corrupt_or_newer_bundles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("m");
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(model()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let vocab = copy.join("linear_vocab.json");
    let mut bytes = std::fs::read(&vocab).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&vocab, bytes).unwrap();
    cqr()
        .arg("classify")
        .arg(&copy)
        .write_stdin("{\"text\":\"hi\"}\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "checksum mismatch for `linear_vocab.json`",
        ));

    std::fs::copy(model().join("linear_vocab.json"), &vocab).unwrap();
    let mpath = copy.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m["format_version"] = 99.into();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    cqr()
        .arg("classify")
        .arg(&copy)
        .write_stdin("{\"text\":\"hi\"}\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "format version 99 is newer than this cqr ({}) reads (up to {})",
            env!("CARGO_PKG_VERSION"),
            cqr::models::bundle::FORMAT_VERSION
        )));
}

#[test]
fn help_and_usage_errors() {
    cqr().arg("--help").assert().success().stdout(
        predicate::str::contains("train")
            .and(predicate::str::contains("classify"))
            .and(predicate::str::contains("drift-check")),
    );
    cqr().args(["classify"]).assert().code(2);
    cqr()
        .args(["train", "x.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--output"));
}

#[test]
fn out_of_scope_rows_are_measured_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut combined = String::from("id,text,intent\n");
    let mut rdr = csv::Reader::from_path(tickets_test()).unwrap();
    let mut w = csv::Writer::from_writer(vec![]);
    for r in rdr.records() {
        let r = r.unwrap();
        w.write_record([&r[0], &r[1], &r[2]]).unwrap();
    }
    combined.push_str(&String::from_utf8(w.into_inner().unwrap()).unwrap());
    let oos = std::fs::read_to_string(root().join("tests/fixtures/out_of_scope.csv")).unwrap();
    combined.extend(oos.lines().skip(1).map(|l| format!("{l}\n")));
    let data = write(dir.path(), "with_oos.csv", combined.as_bytes());
    let out = run_ok(cqr().args(["evaluate", "--json"]).arg(model()).arg(&data));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["n"], 480, "the other metrics cover in-scope rows");
    assert!(r["unknown_labels"].as_object().unwrap().is_empty());
    let o = &r["out_of_scope"];
    assert_eq!(o["n_out_of_scope"], 30);
    assert_eq!(o["label"], "oos");
    let auc = o["auroc"]["one_minus_confidence"].as_f64().unwrap();
    assert!(
        auc > 0.6,
        "low confidence flags out-of-scope queries: AUROC {auc}"
    );
    assert!(o["auroc"]["entropy"].as_f64().unwrap() > 0.6);
    assert!((0.0..=1.0).contains(&o["recall_at_threshold"].as_f64().unwrap()));
}
