//! The candle encoder against reference vectors computed by Python sentence-transformers
//! (../shared/fixtures/minilm_reference_embeddings.json). Needs the encoder: fetched by
//! scripts/fetch-model.sh (cached in models/all-MiniLM-L6-v2).

mod common;

use std::path::Path;

use common::{cqr_in, encoder_dir, jsonl, root, run_ok, tickets, tickets_test, without_model};
use cqr::models::encoder::{Encoder, DEFAULT_MAX_LEN};
use cqr::models::fastbert::Precision;
use cqr::models::kernels::Isa;

#[test]
fn embeddings_match_python_sentence_transformers() {
    let fixture: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("../shared/fixtures/minilm_reference_embeddings.json"))
            .expect("the reference vectors live in ../shared/fixtures beside the checkout"),
    )
    .unwrap();
    let sentences: Vec<&str> = fixture["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let reference: Vec<Vec<f32>> = fixture["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    assert_eq!(sentences.len(), 8);
    let Some(dir) = encoder_dir("embeddings_match_python_sentence_transformers") else {
        return;
    };
    // Batch sizes 1, 3 and 32 (all eight in one packed batch, mixed lengths); f32 and int8;
    // every path this CPU has (VNNI, AVX2) and the scalar fallback a CPU without them would run.
    for (precision, floor) in [(Precision::F32, 0.999), (Precision::Int8, 0.99)] {
        for &isa in Isa::available() {
            let enc = Encoder::load_precision(&dir, DEFAULT_MAX_LEN, precision)
                .unwrap()
                .with_isa(isa);
            assert_eq!(enc.dim, 384);
            for batch in [1, 3, 32] {
                let got = enc.embed(&sentences, batch, |_| {}).unwrap();
                assert_eq!(got.len(), sentences.len() * 384);
                for (i, r) in reference.iter().enumerate() {
                    let g = &got[i * 384..(i + 1) * 384];
                    let dot: f32 = g.iter().zip(r).map(|(a, b)| a * b).sum();
                    let nr: f32 = r.iter().map(|x| x * x).sum::<f32>().sqrt();
                    let ng: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
                    let cos = dot / (nr * ng);
                    assert!(
                        cos >= floor,
                        "sentence {i} ({}, {}, batch {batch}): cosine {cos}",
                        precision.name(),
                        isa.name()
                    );
                    assert!((ng - 1.0).abs() < 1e-4);
                }
            }
        }
    }
    // An empty input is an empty answer, not an error.
    let enc = Encoder::load(&dir, DEFAULT_MAX_LEN).unwrap();
    assert!(enc.embed(&[], 32, |_| {}).unwrap().is_empty());
}

#[test]
fn a_missing_encoder_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let err = Encoder::load(dir.path(), DEFAULT_MAX_LEN)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("scripts/fetch-model.sh") && err.contains("--encoder"),
        "{err}"
    );
}

/// Trains on the sample data in `work` with the encoder; `extra` picks components or head.
fn train_with_encoder(work: &Path, out: &str, extra: &[&str], encoder: &Path) {
    cqr_in(work)
        .arg("train")
        .args(extra)
        .arg("--encoder")
        .arg(encoder)
        .args(["-o", out])
        .arg(tickets())
        .assert()
        .success();
}

/// `cqr classify MODEL` in `work`, its JSONL records.
fn classify(
    work: &Path,
    model: &str,
    extra: &[&str],
    stdin: Option<&str>,
) -> Vec<serde_json::Value> {
    let mut c = cqr_in(work);
    c.args(["classify", model]).args(extra);
    match stdin {
        Some(q) => c.write_stdin(q),
        None => c.arg(tickets_test()),
    };
    jsonl(&run_ok(&mut c).stdout)
}

#[test]
fn ensemble_trains_round_trips_and_reports_disagreement() {
    let Some(encoder) = encoder_dir("ensemble_trains_round_trips_and_reports_disagreement") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for out in ["a", "b"] {
        train_with_encoder(w, out, &["--components", "linear,encoder"], &encoder);
    }
    // The embedding cache holds one file per encoder, filled by the first run and reused.
    let cached: Vec<_> = std::fs::read_dir(w.join("cache/embeddings"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(cached.len(), 1);

    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.join("a/manifest.json")).unwrap()).unwrap();
    let comps = m["components"].as_array().unwrap();
    let kinds: Vec<&str> = comps.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["linear", "encoder"]);
    let total: f64 = comps.iter().map(|c| c["weight"].as_f64().unwrap()).sum();
    assert!(
        (total - 1.0).abs() < 1e-6,
        "ensemble weights sum to 1: {total}"
    );

    let recs = classify(w, "a", &[], None);
    assert_eq!(recs.len(), 480);
    for r in &recs {
        let d = r["uncertainty"]["disagreement"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&d));
    }
    let recs_b = classify(w, "b", &[], None);
    assert!(
        without_model(&recs) == without_model(&recs_b),
        "cached embeddings give identical models"
    );

    let out = cqr_in(w)
        .args(["evaluate", "a", "--json"])
        .arg(tickets_test())
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["accuracy"].as_f64().unwrap() > 0.9, "{}", r["accuracy"]);
}

#[test]
fn cascade_with_threshold_zero_is_the_linear_model() {
    let Some(encoder) = encoder_dir("cascade_with_threshold_zero_is_the_linear_model") else {
        return;
    };
    use cqr::models::calibration::softmax_t;
    use cqr::models::Model;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    train_with_encoder(w, "m", &["--components", "linear,encoder"], &encoder);
    let mut model = Model::load(&w.join("m")).unwrap();
    assert!(
        model.manifest.cascade_threshold.is_some(),
        "training chose a cascade threshold"
    );
    model.manifest.cascade_threshold = Some(0.0);
    let texts = [
        "my card was stolen",
        "where is my parcel",
        "I want my money back for the broken lamp",
    ];
    let (preds, routed) = model.predict_cascade(&texts).unwrap();
    assert_eq!(routed, 0, "threshold 0: the encoder never runs");
    let linear = model
        .components
        .iter()
        .find(|c| c.classifier.kind() == "linear")
        .unwrap();
    let logits = linear.classifier.logits(&texts).unwrap();
    let c = model.labels().len();
    for (row, p) in logits.chunks(c).zip(&preds) {
        let mut expect = vec![0f32; c];
        softmax_t(row, linear.temperature, &mut expect);
        assert_eq!(p.probs, expect);
    }
    // Above every confidence, the cascade is the full ensemble.
    model.manifest.cascade_threshold = Some(1.1);
    let (all, routed) = model.predict_cascade(&texts).unwrap();
    assert_eq!(routed, texts.len());
    assert_eq!(all, model.predict(&texts).unwrap());
}

#[test]
fn mlp_head_round_trips_with_mc_dropout() {
    let Some(encoder) = encoder_dir("mlp_head_round_trips_with_mc_dropout") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    train_with_encoder(w, "m", &["--head", "mlp"], &encoder);
    let q = "{\"text\":\"my card\"}\n{\"text\":\"I was charged twice and want a refund\"}\n";
    let mc = classify(w, "m", &[], Some(q));
    for r in &mc {
        assert!(r["uncertainty"]["std"].as_f64().unwrap() >= 0.0);
        assert!(r["uncertainty"]["mutual_info"].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(
        mc,
        classify(w, "m", &[], Some(q)),
        "MC dropout is seeded: the same input gives the same answer"
    );
    let plain = classify(w, "m", &["--mc-samples", "0"], Some(q));
    assert!(plain[0]["uncertainty"].get("std").is_none());
}

#[test]
fn int8_is_chosen_at_train_time_stored_checksummed_and_overridable_at_load() {
    let Some(encoder) = encoder_dir("int8_is_chosen_at_train_time") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    train_with_encoder(
        w,
        "q",
        &["--components", "linear,encoder", "--precision", "int8"],
        &encoder,
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.join("q/manifest.json")).unwrap()).unwrap();
    let comp = m["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "encoder")
        .unwrap();
    assert_eq!(comp["settings"]["precision"], "int8", "{comp}");
    let int8_file = comp["files"]["int8_weights"]["path"].as_str().unwrap();
    assert!(w.join("q").join(int8_file).is_file());

    let int8 = classify(w, "q", &[], None);
    assert_eq!(int8.len(), 480);
    // The same bundle run at f32 (the override at load) agrees on almost every intent.
    let f32 = classify(w, "q", &["--precision", "f32"], None);
    let same = int8
        .iter()
        .zip(&f32)
        .filter(|(a, b)| a["intent"] == b["intent"])
        .count();
    assert!(same >= 470, "int8 and f32 agree on {same} of 480");

    // The int8 weights are covered by the bundle's checksum.
    let path = w.join("q").join(int8_file);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let out = cqr_in(w)
        .args(["classify", "q"])
        .write_stdin("{\"text\":\"my card\"}\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(int8_file), "{err}");
}
