//! Abstention that works: the novelty score sets training text apart from unrelated text, a rule
//! fitted on out-of-scope rows refuses a planted out-of-scope query and answers in-scope ones,
//! the default rule refuses at most `--max-reject` of the validation rows, and a bundle from
//! before the rule still loads and abstains on confidence alone, as it did.

mod common;

use std::path::{Path, PathBuf};

use common::{cqr_in, encoder_dir, jsonl, root, run_ok, tickets};
use serde_json::Value;

/// The sample training data's rows as (text, intent).
fn training_rows() -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(tickets()).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[1].to_string(), rec[2].to_string())
        })
        .collect()
}

/// The hand-written out-of-scope queries of the test fixture.
fn unrelated_texts() -> Vec<String> {
    let mut r = csv::Reader::from_path(root().join("tests/fixtures/out_of_scope.csv")).unwrap();
    r.records().map(|rec| rec.unwrap()[1].to_string()).collect()
}

/// Writes `rows` as a `text,intent` CSV at `path`.
fn write_csv(path: &Path, rows: &[(String, String)]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(["text", "intent"]).unwrap();
    for (t, i) in rows {
        w.write_record([t, i]).unwrap();
    }
    w.flush().unwrap();
}

fn train(work: &Path, data: &Path, out: &str, extra: &[&str]) -> PathBuf {
    let out = work.join(out);
    run_ok(
        cqr_in(work)
            .args(["train", "--seed", "42", "-q", "-o"])
            .arg(&out)
            .args(extra)
            .arg(data),
    );
    out
}

/// Each text's classify record.
fn classify(work: &Path, model: &Path, texts: &[String]) -> Vec<Value> {
    // JSONL: some sample texts are multi-line e-mails.
    let input = work.join(format!("in-{}.jsonl", texts.len()));
    let lines: Vec<String> = texts
        .iter()
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = run_ok(cqr_in(work).arg("classify").arg(model).arg(&input));
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), texts.len(), "rows in = rows out");
    recs
}

fn novelty(r: &Value) -> f64 {
    r["uncertainty"]["novelty"]
        .as_f64()
        .unwrap_or_else(|| panic!("no uncertainty.novelty in {r}"))
}

fn manifest(model: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(model.join("manifest.json")).unwrap()).unwrap()
}

/// Share of (training, unrelated) pairs where the unrelated text is the more novel.
fn separation(work: &Path, model: &Path) -> f64 {
    let seen: Vec<String> = training_rows()
        .into_iter()
        .filter(|(_, i)| i != "oos")
        .step_by(50)
        .map(|(t, _)| t)
        .collect();
    let (a, b) = (
        classify(work, model, &seen),
        classify(work, model, &unrelated_texts()),
    );
    let mut above = 0usize;
    for x in &a {
        for y in &b {
            above += (novelty(y) > novelty(x)) as usize;
        }
    }
    above as f64 / (a.len() * b.len()) as f64
}

#[test]
fn novelty_of_training_text_is_below_that_of_unrelated_text() {
    let work = tempfile::tempdir().unwrap();
    let linear = train(
        work.path(),
        &tickets(),
        "linear",
        &["--components", "linear"],
    );
    let s = separation(work.path(), &linear);
    assert!(
        s > 0.9,
        "linear: unrelated text more novel in only {s} of pairs"
    );
    assert_eq!(manifest(&linear)["novelty"]["kind"], "max_logit");
    if let Some(enc) = encoder_dir("novelty_of_training_text_is_below_that_of_unrelated_text") {
        let args = ["--components", "linear,encoder", "--encoder"];
        let ensemble = train(
            work.path(),
            &tickets(),
            "ensemble",
            &[&args[..], &[enc.to_str().unwrap()]].concat(),
        );
        let s = separation(work.path(), &ensemble);
        assert!(
            s > 0.9,
            "ensemble: unrelated text more novel in only {s} of pairs"
        );
        let m = manifest(&ensemble);
        assert_eq!(m["novelty"]["kind"], "relative_mahalanobis");
        assert!(ensemble.join("novelty.safetensors").is_file());
        // With an encoder, the 60 out-of-scope rows give the rule their affinity score.
        assert_eq!(m["novelty"]["affinity_rows"], 60);
        let inputs = m["rule"]["inputs"].as_array().unwrap();
        assert!(
            inputs.iter().any(|i| i["score"] == "out_of_scope_affinity"),
            "{inputs:?}"
        );
    }
}

#[test]
fn a_rule_fitted_on_out_of_scope_rows_refuses_a_planted_one_and_answers_in_scope() {
    let work = tempfile::tempdir().unwrap();
    // data/tickets.csv carries 60 rows labelled `oos`.
    let model = train(work.path(), &tickets(), "m", &["--components", "linear"]);
    let m = manifest(&model);
    assert_eq!(m["format_version"], 2);
    assert_eq!(m["rule"]["fit"]["method"], "out_of_scope");
    assert_eq!(m["rule"]["fit"]["out_of_scope_rows"], 60);
    assert!(!m["labels"].as_array().unwrap().iter().any(|l| l == "oos"));
    assert!(m["rule"]["fit"]["in_scope_rejection"].as_f64().unwrap() <= 0.05);
    let texts: Vec<String> = [
        "what's the best way to cook a turkey for christmas dinner",
        "I forgot my password and the reset email never arrives",
        "Please cancel my subscription, I don't use it anymore",
    ]
    .map(String::from)
    .to_vec();
    let recs = classify(work.path(), &model, &texts);
    assert_eq!(recs[0]["abstained"], true, "{}", recs[0]);
    assert_eq!(recs[0]["intent"], "unknown");
    assert_eq!(recs[1]["abstained"], false, "{}", recs[1]);
    assert_eq!(recs[1]["intent"], "password_reset");
    assert_eq!(recs[2]["abstained"], false, "{}", recs[2]);
    assert_eq!(recs[2]["intent"], "cancel_subscription");

    // evaluate --oos-label measures it: recall, rejection, per-score AUROC and FPR, the plot.
    let eval = work.path().join("eval.csv");
    let mut rows: Vec<(String, String)> = training_rows()
        .into_iter()
        .filter(|(_, i)| i != "oos")
        .step_by(10)
        .collect();
    rows.extend(
        unrelated_texts()
            .into_iter()
            .map(|t| (t, "oos".to_string())),
    );
    write_csv(&eval, &rows);
    let out = run_ok(
        cqr_in(work.path())
            .args(["evaluate", "--json", "--report-dir", "report"])
            .arg(&model)
            .arg(&eval),
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = &report["out_of_scope"];
    assert_eq!(o["n_out_of_scope"], 30);
    assert!(o["recall_at_threshold"].as_f64().unwrap() > 0.5, "{o}");
    for score in ["one_minus_confidence", "novelty", "abstain_rule"] {
        assert!(o["auroc"][score].as_f64().unwrap() > 0.8, "{score}: {o}");
        assert!(o["fpr_at_95_tpr"][score].as_f64().is_some(), "{score}: {o}");
        assert_eq!(o["tradeoff"][score].as_array().unwrap().len(), 16);
    }
    assert!(work.path().join("report/out_of_scope.png").is_file());
}

#[test]
fn the_default_rule_refuses_at_most_max_reject_of_validation_rows() {
    let work = tempfile::tempdir().unwrap();
    let in_scope: Vec<(String, String)> = training_rows()
        .into_iter()
        .filter(|(_, i)| i != "oos")
        .collect();
    let (valid, train_rows): (Vec<_>, Vec<_>) = in_scope
        .into_iter()
        .enumerate()
        .partition(|(k, _)| k % 5 == 0);
    let strip = |v: Vec<(usize, (String, String))>| v.into_iter().map(|(_, r)| r).collect();
    let (valid, train_rows): (Vec<_>, Vec<_>) = (strip(valid), strip(train_rows));
    let (tpath, vpath) = (work.path().join("t.csv"), work.path().join("v.csv"));
    write_csv(&tpath, &train_rows);
    write_csv(&vpath, &valid);
    for max_reject in ["0.05", "0.2"] {
        // Without a refit, the stored model is the one the rule was fitted with.
        let model = train(
            work.path(),
            &tpath,
            &format!("m{max_reject}"),
            &[
                "--components",
                "linear",
                "--no-refit",
                "--valid",
                vpath.to_str().unwrap(),
                "--max-reject",
                max_reject,
            ],
        );
        let m = manifest(&model);
        assert_eq!(m["rule"]["fit"]["method"], "default");
        let texts: Vec<String> = valid.iter().map(|(t, _)| t.clone()).collect();
        let recs = classify(work.path(), &model, &texts);
        let refused = recs.iter().filter(|r| r["abstained"] == true).count();
        let share = refused as f64 / recs.len() as f64;
        let cap: f64 = max_reject.parse().unwrap();
        let stored = m["rule"]["fit"]["in_scope_rejection"].as_f64().unwrap();
        assert!((share - stored).abs() < 1e-9, "{share} vs stored {stored}");
        // At most the cap, unless the precision target needs more (then the rule says so).
        let precision_bound = m["rule"]["fit"]["target_met"] == true && share > cap;
        assert!(share <= cap || precision_bound, "{share} refused");
        assert!(refused > 0, "a far-out query must be refusable: {share}");
    }
}

#[test]
fn a_bundle_from_before_the_rule_loads_and_abstains_on_confidence_alone() {
    let work = tempfile::tempdir().unwrap();
    let model = train(work.path(), &tickets(), "m", &["--components", "linear"]);
    // Make it what cqr wrote before the rule: format 1, no rule, no novelty, its old checksum.
    let path = model.join("manifest.json");
    let mut m: cqr::models::Manifest =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m.format_version = 1;
    m.rule = None;
    m.novelty = None;
    m.out_of_scope = None;
    m.abstain.threshold = 0.6;
    m.checksum = cqr::models::bundle::bundle_checksum(&m);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let mut texts = unrelated_texts();
    texts.extend(training_rows().into_iter().step_by(40).map(|(t, _)| t));
    let recs = classify(work.path(), &model, &texts);
    let mut abstained = 0;
    for r in &recs {
        let confidence = r["confidence"].as_f64().unwrap();
        assert_eq!(r["abstained"], confidence < 0.6, "{r}");
        assert!(r["uncertainty"].get("novelty").is_none(), "{r}");
        abstained += (r["abstained"] == true) as usize;
    }
    assert!(abstained > 0 && abstained < recs.len());
}

#[test]
fn out_of_scope_as_a_class_abstains_when_predicted() {
    let work = tempfile::tempdir().unwrap();
    let model = train(
        work.path(),
        &tickets(),
        "m",
        &["--components", "linear", "--oos-as-class"],
    );
    let m = manifest(&model);
    assert!(m["labels"].as_array().unwrap().iter().any(|l| l == "oos"));
    assert_eq!(m["out_of_scope"]["as_class"], true);
    let recs = classify(work.path(), &model, &unrelated_texts());
    let refused = recs.iter().filter(|r| r["abstained"] == true).count();
    assert!(
        refused * 2 > recs.len(),
        "{refused} of {} refused",
        recs.len()
    );
    assert!(recs
        .iter()
        .all(|r| r["abstained"] == true || r["intent"] != "oos"));
}
