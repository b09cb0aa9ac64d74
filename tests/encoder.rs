//! The candle encoder against reference vectors computed by Python sentence-transformers
//! (../shared/fixtures/minilm_reference_embeddings.json). Needs the encoder: fetched by
//! scripts/fetch-model.sh (cached in models/all-MiniLM-L6-v2).

use std::path::PathBuf;
use std::process::Command;

use cqr::models::encoder::{Encoder, DEFAULT_MAX_LEN};

fn encoder_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let st = Command::new(root.join("scripts/fetch-model.sh"))
        .status()
        .unwrap();
    assert!(st.success(), "scripts/fetch-model.sh failed");
    root.join("models/all-MiniLM-L6-v2")
}

#[test]
fn embeddings_match_python_sentence_transformers() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fixture: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("../shared/fixtures/minilm_reference_embeddings.json")).unwrap(),
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
    let enc = Encoder::load(&encoder_dir(), DEFAULT_MAX_LEN).unwrap();
    assert_eq!(enc.dim, 384);
    // Batch sizes 1 and 3 exercise per-batch padding and the length sort.
    for batch in [1, 3] {
        let got = enc.embed(&sentences, batch, |_| {}).unwrap();
        for (i, r) in reference.iter().enumerate() {
            let g = &got[i * 384..(i + 1) * 384];
            let dot: f32 = g.iter().zip(r).map(|(a, b)| a * b).sum();
            let nr: f32 = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            let ng: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
            let cos = dot / (nr * ng);
            assert!(cos >= 0.999, "sentence {i} (batch {batch}): cosine {cos}");
            assert!((ng - 1.0).abs() < 1e-4);
        }
    }
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

#[test]
fn ensemble_trains_round_trips_and_reports_disagreement() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let enc = encoder_dir();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let cqr = || {
        let mut c = assert_cmd::Command::cargo_bin("cqr").unwrap();
        c.current_dir(w)
            .env_remove("MLFLOW_TRACKING_URI")
            .env("CQR_RUNS_DIR", w.join("runs"))
            .env("CQR_CACHE", w.join("cache"));
        c
    };
    for out in ["a", "b"] {
        cqr()
            .args(["train", "--components", "linear,encoder", "--encoder"])
            .arg(&enc)
            .args(["-o", out])
            .arg(root.join("data/tickets.csv"))
            .assert()
            .success();
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

    let out = cqr()
        .args(["classify", "a"])
        .arg(root.join("data/tickets_test.csv"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 480);
    for r in &recs {
        let d = r["uncertainty"]["disagreement"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&d));
    }
    let out_b = cqr()
        .args(["classify", "b"])
        .arg(root.join("data/tickets_test.csv"))
        .output()
        .unwrap();
    let recs_b: Vec<serde_json::Value> = String::from_utf8_lossy(&out_b.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("model");
        v
    };
    assert!(
        recs.iter().zip(&recs_b).all(|(x, y)| strip(x) == strip(y)),
        "cached embeddings give identical models"
    );

    let out = cqr()
        .args(["evaluate", "a", "--format", "json"])
        .arg(root.join("data/tickets_test.csv"))
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["accuracy"].as_f64().unwrap() > 0.9, "{}", r["accuracy"]);
}

#[test]
fn cascade_with_threshold_zero_is_the_linear_model() {
    use cqr::models::calibration::softmax_t;
    use cqr::models::Model;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let enc = encoder_dir();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    assert_cmd::Command::cargo_bin("cqr")
        .unwrap()
        .current_dir(w)
        .env_remove("MLFLOW_TRACKING_URI")
        .env("CQR_RUNS_DIR", w.join("runs"))
        .env("CQR_CACHE", w.join("cache"))
        .args(["train", "--components", "linear,encoder", "--encoder"])
        .arg(&enc)
        .args(["-o", "m"])
        .arg(root.join("data/tickets.csv"))
        .assert()
        .success();
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
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let enc = encoder_dir();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let cqr = || {
        let mut c = assert_cmd::Command::cargo_bin("cqr").unwrap();
        c.current_dir(w)
            .env_remove("MLFLOW_TRACKING_URI")
            .env("CQR_RUNS_DIR", w.join("runs"))
            .env("CQR_CACHE", w.join("cache"));
        c
    };
    cqr()
        .args(["train", "--head", "mlp", "--encoder"])
        .arg(&enc)
        .args(["-o", "m"])
        .arg(root.join("data/tickets.csv"))
        .assert()
        .success();
    let q = "{\"text\":\"my card\"}\n{\"text\":\"I was charged twice and want a refund\"}\n";
    let run = |extra: &[&str]| -> Vec<serde_json::Value> {
        let out = cqr()
            .args(["classify", "m"])
            .args(extra)
            .write_stdin(q)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mc = run(&[]);
    for r in &mc {
        assert!(r["uncertainty"]["std"].as_f64().unwrap() >= 0.0);
        assert!(r["uncertainty"]["mutual_info"].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(
        mc,
        run(&[]),
        "MC dropout is seeded: the same input gives the same answer"
    );
    let plain = run(&["--mc-samples", "0"]);
    assert!(plain[0]["uncertainty"].get("std").is_none());
}
