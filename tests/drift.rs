//! `cqr drift-check` end to end on the sample data: a same-distribution batch stays quiet, a
//! planted shift alarms (exit 1) and says what changed, the report files, the Prometheus
//! textfile (checked by `promtool`) and a real Pushgateway, `--reference`, `--retrain`, the
//! errors a scheduler must see as exit 2, and `evaluate --compare`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use common::{cqr_in, run_err, run_ok, tickets, tickets_test};
use serde_json::Value;

/// A linear model trained on the sample data in `work/m` (seconds).
fn linear_model(work: &Path) -> PathBuf {
    let dir = work.join("m");
    run_ok(
        cqr_in(work)
            .args(["-q", "train"])
            .arg(tickets())
            .args(["-o"])
            .arg(&dir)
            .args(["--components", "linear", "--seed", "7"]),
    );
    dir
}

/// The sample test data cut down to three intents, each row three times: a planted prior shift.
fn shifted(work: &Path) -> PathBuf {
    let keep = ["delivery_delayed", "damaged_item", "wrong_item"];
    let mut rdr = csv::Reader::from_path(tickets_test()).unwrap();
    let path = work.join("shifted.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(rdr.headers().unwrap()).unwrap();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        if keep.contains(&&rec[2]) {
            for _ in 0..3 {
                w.write_record(&rec).unwrap();
            }
        }
    }
    w.flush().unwrap();
    path
}

/// Runs `cmd` and returns its output, failing the test unless it exited 1 (the drift verdict).
fn run_drift(cmd: &mut assert_cmd::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

fn test<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["test"] == name)
        .unwrap_or_else(|| panic!("no {name} test in {r}"))
}

#[test]
fn same_distribution_is_quiet_and_a_planted_shift_alarms_with_what_changed() {
    let work = tempfile::tempdir().unwrap();
    let model = linear_model(work.path());
    let out = run_ok(
        cqr_in(work.path())
            .args(["drift-check", "--json", "--label-col", "intent"])
            .arg(&model)
            .arg(tickets_test()),
    );
    let r = json_of(&out);
    assert_eq!(r["drift"], false, "{r}");
    for t in r["tests"].as_array().unwrap() {
        let (p, adj) = (
            t["p_value"].as_f64().unwrap(),
            t["p_adjusted"].as_f64().unwrap(),
        );
        assert!(p > 0.0 && p <= 1.0 && adj >= p && adj <= 1.0, "{t}");
    }
    // A linear model has no embedding test; the others all run.
    for name in [
        "intent_distribution",
        "confidence",
        "length",
        "oov_rate",
        "abstain_rate",
    ] {
        test(&r, name);
    }
    let est = r["estimated_accuracy"]["value"].as_f64().unwrap();
    let actual = r["actual_accuracy"].as_f64().unwrap();
    assert!(
        (est - actual).abs() < 0.06,
        "estimate {est} vs actual {actual}"
    );
    assert!(r["estimated_accuracy"]["low"].as_f64().unwrap() <= est);

    let batch = shifted(work.path());
    let out = run_drift(
        cqr_in(work.path())
            .args(["drift-check", "--json", "--report-dir", "report"])
            .arg(&model)
            .arg(&batch),
    );
    let r = json_of(&out);
    assert_eq!(r["drift"], true);
    assert_eq!(test(&r, "intent_distribution")["drift"], true);
    let moved: Vec<&str> = r["intent_shifts"].as_array().unwrap()[..3]
        .iter()
        .map(|s| s["intent"].as_str().unwrap())
        .collect();
    for intent in ["delivery_delayed", "damaged_item", "wrong_item"] {
        assert!(moved.contains(&intent), "{moved:?}");
    }
    let report = work.path().join("report");
    for f in [
        "report.json",
        "report.md",
        "report.html",
        "intent_shift.png",
        "confidence.png",
        "length.png",
        "oov_rate.png",
    ] {
        assert!(report.join(f).is_file(), "{f} missing");
    }
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,") && !html.contains("src=\"http"));
    // The run is in the local store with the model it checked.
    let runs = run_ok(cqr_in(work.path()).args(["runs", "list"]));
    assert!(String::from_utf8_lossy(&runs.stdout).contains("drift-check"));
}

#[test]
fn an_identical_reference_never_alarms_and_reference_works_without_a_profile() {
    let work = tempfile::tempdir().unwrap();
    let model = linear_model(work.path());
    // Strip the stored profile, as a bundle from before drift-check would lack it.
    let manifest_path = model.join("manifest.json");
    let mut m: cqr::models::Manifest =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    m.profile = None;
    m.checksum = cqr::models::bundle::bundle_checksum(&m);
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    std::fs::remove_file(model.join("reference.safetensors")).unwrap();

    let err = run_err(
        cqr_in(work.path())
            .arg("drift-check")
            .arg(&model)
            .arg(tickets_test()),
    );
    assert!(
        err.contains("no drift reference profile") && err.contains("--reference"),
        "{err}"
    );

    let out = run_ok(
        cqr_in(work.path())
            .args(["drift-check", "--json", "--reference"])
            .arg(tickets_test())
            .arg(&model)
            .arg(tickets_test()),
    );
    let r = json_of(&out);
    assert_eq!(r["drift"], false);
    for t in r["tests"].as_array().unwrap() {
        assert!(t["p_adjusted"].as_f64().unwrap() > 0.5, "{t}");
    }
    assert_eq!(
        test(&r, "intent_distribution")["effect"].as_f64().unwrap(),
        0.0
    );
}

#[test]
fn bad_inputs_exit_2_naming_the_file_and_field() {
    let work = tempfile::tempdir().unwrap();
    let model = linear_model(work.path());
    let err = run_err(
        cqr_in(work.path())
            .args(["drift-check", "--reference", "nope.csv"])
            .arg(&model)
            .arg(tickets_test()),
    );
    assert!(err.contains("nope.csv"), "{err}");
    std::fs::write(work.path().join("empty.csv"), "id,text\n").unwrap();
    let err = run_err(
        cqr_in(work.path())
            .arg("drift-check")
            .arg(&model)
            .arg("empty.csv"),
    );
    assert!(
        err.contains("empty.csv") && err.contains("no data rows"),
        "{err}"
    );
    std::fs::write(work.path().join("notext.csv"), "id,body\n1,hello\n").unwrap();
    let err = run_err(
        cqr_in(work.path())
            .arg("drift-check")
            .arg(&model)
            .arg("notext.csv"),
    );
    assert!(err.contains("notext.csv") && err.contains("text"), "{err}");
    // The profile is covered by the bundle's checksums like every other file.
    let copy = work.path().join("tampered");
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(&model).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let profile = copy.join("reference.safetensors");
    let mut bytes = std::fs::read(&profile).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&profile, bytes).unwrap();
    let err = run_err(
        cqr_in(work.path())
            .arg("drift-check")
            .arg(&copy)
            .arg(tickets_test()),
    );
    assert!(
        err.contains("checksum mismatch for `reference.safetensors`"),
        "{err}"
    );
    let err = run_err(
        cqr_in(work.path())
            .args(["drift-check", "--alpha", "0"])
            .arg(&model)
            .arg(tickets_test()),
    );
    assert!(err.contains("--alpha"), "{err}");
    let err = run_err(
        cqr_in(work.path())
            .args([
                "drift-check",
                "--pushgateway",
                "http://127.0.0.1:9",
                "--label",
                "1bad=x",
            ])
            .arg(&model)
            .arg(tickets_test()),
    );
    assert!(err.contains("1bad"), "{err}");
}

#[test]
fn retrain_runs_only_on_drift_and_through_the_gates() {
    let work = tempfile::tempdir().unwrap();
    let model = linear_model(work.path());
    let retrained = work.path().join("retrained");
    // `drift-check --retrain` of `batch`, with `extra` flags.
    let check = |batch: &Path, extra: &[&str]| {
        let mut c = cqr_in(work.path());
        c.args(["drift-check", "--retrain"])
            .arg(tickets())
            .arg("--retrain-output")
            .arg(&retrained)
            .args(extra)
            .arg(&model)
            .arg(batch);
        c
    };
    // No drift: nothing is retrained.
    run_ok(&mut check(&tickets_test(), &["-q"]));
    assert!(!retrained.exists());
    // Drift, but the gate is out of reach: nothing is written, and the verdict is still drift.
    let batch = shifted(work.path());
    let gated = run_drift(&mut check(&batch, &["--min-accuracy", "0.9999"]));
    assert!(!retrained.exists());
    assert!(String::from_utf8_lossy(&gated.stderr).contains("retraining stopped at a gate"));
    // Drift: retrained with the checked model's recipe.
    run_drift(&mut check(&batch, &[]));
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(retrained.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        m["training"]["args"]["components"],
        serde_json::json!(["linear"])
    );
    assert_eq!(m["training"]["args"]["seed"], 7);
}

#[test]
fn evaluate_compare_scores_both_models_on_the_same_rows() {
    let work = tempfile::tempdir().unwrap();
    let a = linear_model(work.path());
    let b = work.path().join("b");
    run_ok(
        cqr_in(work.path())
            .args(["-q", "train"])
            .arg(tickets())
            .arg("-o")
            .arg(&b)
            .args(["--components", "linear", "--seed", "8", "--min-df", "5"]),
    );
    let out = run_ok(
        cqr_in(work.path())
            .args(["evaluate", "--json", "--compare"])
            .arg(&b)
            .arg(&a)
            .arg(tickets_test()),
    );
    let r = json_of(&out);
    let c = &r["comparison"];
    let (acc_a, acc_b) = (
        c["a"]["accuracy"].as_f64().unwrap(),
        c["b"]["accuracy"].as_f64().unwrap(),
    );
    assert_eq!(acc_a, r["accuracy"].as_f64().unwrap());
    let d = &c["difference"];
    assert!((d["value"].as_f64().unwrap() - (acc_a - acc_b)).abs() < 1e-9);
    assert!(d["low"].as_f64().unwrap() <= d["value"].as_f64().unwrap());
    let p = c["mcnemar_p"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0);
    assert_eq!(c["rows"], 480);
    assert!(!c["per_intent"].as_array().unwrap().is_empty());
    // A model against itself: no discordant rows.
    let out = run_ok(
        cqr_in(work.path())
            .args(["evaluate", "--json", "--compare"])
            .arg(&a)
            .arg(&a)
            .arg(tickets_test()),
    );
    let c = json_of(&out)["comparison"].clone();
    assert_eq!(
        (c["only_a_right"].as_u64(), c["mcnemar_p"].as_f64()),
        (Some(0), Some(1.0))
    );
}

/// `promtool` and `prometheus-pushgateway` from Debian's packages (scripts/test.sh installs
/// them); without them the test says so and is skipped, unless CQR_REQUIRE_PROMETHEUS is set.
fn prometheus_tools(test: &str) -> bool {
    let found = ["promtool", "prometheus-pushgateway"].iter().all(|t| {
        Process::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !found {
        assert!(
            std::env::var_os("CQR_REQUIRE_PROMETHEUS").is_none(),
            "{test}: promtool or prometheus-pushgateway is missing"
        );
        eprintln!("skipped {test}: promtool or prometheus-pushgateway is not installed");
    }
    found
}

struct Gateway(Child, u16);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_gateway(dir: &Path) -> Gateway {
    let port = free_port();
    let child = Process::new("prometheus-pushgateway")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--persistence.file={}",
            dir.join("gw.store").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gw = Gateway(child, port);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the Pushgateway did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    gw
}

/// GET /metrics from the gateway.
fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut body = String::new();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while r.read_line(&mut line).unwrap() > 2 {
        line.clear();
    }
    r.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn metrics_pass_promtool_and_a_real_pushgateway_replaces_stale_series() {
    if !prometheus_tools("metrics_pass_promtool_and_a_real_pushgateway_replaces_stale_series") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let model = linear_model(work.path());
    let prom = work.path().join("textfile/cqr.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let gw = start_gateway(work.path());
    let url = format!("http://127.0.0.1:{}", gw.1);
    let push = [
        "--pushgateway",
        &url,
        "--job",
        "nightly",
        "--label",
        "instance=ci",
    ];
    run_ok(
        cqr_in(work.path())
            .args([
                "-q",
                "drift-check",
                "--label-col",
                "intent",
                "--metrics-file",
            ])
            .arg(&prom)
            .args(push)
            .arg(&model)
            .arg(tickets_test()),
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    for m in [
        "cqr_drift_detected 0",
        "cqr_drift_p_value{test=\"intent_distribution\"}",
        "cqr_estimated_accuracy",
        "cqr_actual_accuracy",
        "cqr_batch_rows 480",
        "cqr_drift_check_timestamp_seconds",
        "# HELP cqr_drift_effect",
        "# TYPE cqr_abstain_ratio gauge",
    ] {
        assert!(text.contains(m), "{m} missing from\n{text}");
    }
    // Only the textfile, nothing half-written beside it.
    assert_eq!(
        std::fs::read_dir(prom.parent().unwrap()).unwrap().count(),
        1
    );
    let check = Process::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&prom).unwrap())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let served = scrape(gw.1);
    assert!(
        served.contains("cqr_batch_rows{instance=\"ci\",job=\"nightly\"} 480"),
        "{served}"
    );
    assert!(
        served.contains("cqr_actual_accuracy{instance=\"ci\",job=\"nightly\"}"),
        "{served}"
    );
    // A second check without labels: PUT replaces the group, so the stale series is gone.
    let batch = shifted(work.path());
    run_drift(
        cqr_in(work.path())
            .args(["-q", "drift-check"])
            .args(push)
            .arg(&model)
            .arg(&batch),
    );
    let served = scrape(gw.1);
    assert!(
        served.contains("cqr_drift_detected{instance=\"ci\",job=\"nightly\"} 1"),
        "{served}"
    );
    assert!(!served.contains("cqr_actual_accuracy{"), "{served}");
    // A gateway that is not there is an error (exit 2), after the report was printed.
    let err = run_err(
        cqr_in(work.path())
            .args([
                "drift-check",
                "--pushgateway",
                &format!("http://127.0.0.1:{}", free_port()),
            ])
            .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            .arg(&model)
            .arg(tickets_test()),
    );
    assert!(err.contains("127.0.0.1"), "{err}");
}

#[test]
fn the_readme_alert_rules_fire_on_the_metrics_drift_check_writes() {
    if !prometheus_tools("the_readme_alert_rules_fire_on_the_metrics_drift_check_writes") {
        return;
    }
    let dir = common::root().join("docs/prometheus");
    for args in [
        &["check", "rules", "cqr_drift.rules.yml"][..],
        &["test", "rules", "cqr_drift.rules.test.yml"],
    ] {
        let out = Process::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
