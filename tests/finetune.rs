//! Fine-tuning: the trainable BERT agrees with the inference model, a few steps lower the loss,
//! every trainable encoder tensor actually changes (the stock candle BERT trains nothing without
//! an error), the result loads as an ordinary encoder, and `train --fine-tune` writes a bundle
//! that carries the tuned weights. Needs the encoder (scripts/fetch-model.sh).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::{cqr_in, encoder_dir, tickets};
use cqr::models::bert::{pad_batch, TrainableBert};
use cqr::models::encoder::Encoder;
use cqr::models::finetune::{fine_tune, FineTuneParams, FtData, HeadInit};
use cqr::models::heads::LogisticHead;

const TEXTS: [(&str, u32); 12] = [
    ("my card was stolen yesterday", 0),
    ("someone took my wallet with the card", 0),
    ("I lost my card on the bus", 0),
    ("please block my stolen card", 0),
    ("where is my parcel", 1),
    ("my order has not arrived yet", 1),
    ("the delivery is late again", 1),
    ("when will my package come", 1),
    ("I forgot my password", 2),
    ("how do I reset my password", 2),
    ("cannot log in, password not accepted", 2),
    ("I need a new password please", 2),
];

fn load_tensors(p: &Path) -> BTreeMap<String, Vec<f32>> {
    candle_core::safetensors::load(p, &Device::Cpu)
        .unwrap()
        .into_iter()
        .filter(|(_, t)| t.dtype() == DType::F32)
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn trainable_bert_in_eval_mode_matches_the_inference_encoder() {
    let Some(dir) = encoder_dir("trainable_bert_in_eval_mode_matches_the_inference_encoder") else {
        return;
    };
    let enc = Encoder::load(&dir, 64).unwrap();
    let texts: Vec<&str> = TEXTS.iter().map(|t| t.0).collect();
    let want = enc.embed(&texts, 4, |_| {}).unwrap();

    let config: candle_transformers::models::bert::Config =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let bert = TrainableBert::load(vb, &config, true).unwrap();
    varmap.load(dir.join("model.safetensors")).unwrap();
    let mut tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    // The shipped tokenizer pads to 128; pad_batch pads instead.
    tok.with_padding(None);
    let rows: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tok.encode(*t, true).unwrap().get_ids().to_vec())
        .collect();
    let refs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
    let (ids, types, mask) = pad_batch(&refs, &Device::Cpu).unwrap();
    let got = bert
        .sentence_embedding(&ids, &types, &mask, &mut None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for i in 0..texts.len() {
        let (a, b) = (&got[i * 384..(i + 1) * 384], &want[i * 384..(i + 1) * 384]);
        let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!(cos > 0.9999, "text {i}: cosine {cos}");
    }
    // Attention reads each row's length off the mask: a mask with padding before the last
    // token is refused, not misread.
    let ids = Tensor::from_vec(rows[0][..3].to_vec(), (1, 3), &Device::Cpu).unwrap();
    let types = Tensor::zeros((1, 3), DType::U32, &Device::Cpu).unwrap();
    let holey = Tensor::from_vec(vec![1u32, 0, 1], (1, 3), &Device::Cpu).unwrap();
    let err = bert
        .forward(&ids, &types, &holey, &mut None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("padding before the last token"), "{err}");
}

#[test]
fn a_few_steps_lower_the_loss_and_change_every_trainable_tensor() {
    let Some(dir) = encoder_dir("a_few_steps_lower_the_loss_and_change_every_trainable_tensor")
    else {
        return;
    };
    let texts: Vec<&str> = TEXTS.iter().map(|t| t.0).collect();
    let y: Vec<u32> = TEXTS.iter().map(|t| t.1).collect();
    let enc = Encoder::load(&dir, 64).unwrap();
    let x = enc.embed(&texts, 16, |_| {}).unwrap();
    // A weak head (strong L2) leaves the fine-tune something to gain.
    let head = LogisticHead::fit(&x, 384, &y, 3, 10.0, 50).unwrap();
    let before = {
        let logits = head.logits(&x);
        cqr::models::calibration::nll(&logits, &y, 3, 1.0)
    };
    let p = FineTuneParams {
        epochs: 1,
        lr: 1e-3,
        warmup: 0.0,
        batch: 4,
        dropout: 0.0,
        warm_start: true,
        ..cqr::settings::defaults::fine_tune_params()
    };
    let mut steps = 0;
    let ft = fine_tune(
        &dir,
        &p,
        FtData {
            texts: &texts,
            labels: &y,
        },
        FtData {
            texts: &texts,
            labels: &y,
        },
        HeadInit {
            weight: &head.weight,
            bias: &head.bias,
            n_classes: 3,
        },
        |f| {
            steps = f.step;
            assert!(f.loss.is_finite() && f.eta_seconds >= 0.0);
        },
    )
    .unwrap();
    assert_eq!(steps, 3);
    assert_eq!(ft.history.len(), 1);
    let after = ft.history[0].valid_loss;
    assert!(after < before * 0.95, "loss {before} → {after}");

    let base = load_tensors(&dir.join("model.safetensors"));
    let tuned = load_tensors(&ft.dir.path().join("model.safetensors"));
    let mut changed = 0;
    for (name, t) in &tuned {
        let b = &base[name];
        let moved = t.iter().zip(b).any(|(x, y)| x != y);
        if name == "embeddings.word_embeddings.weight" {
            assert!(!moved, "frozen word embeddings changed");
        } else {
            assert!(moved, "{name} did not change: its gradient never arrived");
            changed += 1;
        }
    }
    assert_eq!(changed, 100, "every trainable encoder tensor of MiniLM-L6");

    // The tuned folder is an ordinary encoder, and it embeds differently.
    let tuned_enc = Encoder::load(ft.dir.path(), 64).unwrap();
    let x2 = tuned_enc.embed(&texts, 16, |_| {}).unwrap();
    let t = Tensor::new(x2.as_slice(), &Device::Cpu).unwrap();
    assert_eq!(t.dims1().unwrap(), x.len());
    assert!(x2.iter().zip(&x).any(|(a, b)| (a - b).abs() > 1e-3));
    let scratch = ft.dir.path().to_path_buf();
    drop(ft);
    assert!(!scratch.exists(), "the scratch folder removes itself");
}

#[test]
fn train_fine_tune_writes_the_tuned_weights_into_the_bundle() {
    let Some(dir) = encoder_dir("train_fine_tune_writes_the_tuned_weights_into_the_bundle") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("small.csv");
    // A small slice of the sample tickets keeps this to a few seconds.
    let mut r = csv::Reader::from_path(tickets()).unwrap();
    let mut w = csv::Writer::from_path(&data).unwrap();
    w.write_record(r.headers().unwrap()).unwrap();
    for rec in r.records().take(160) {
        w.write_record(&rec.unwrap()).unwrap();
    }
    w.flush().unwrap();
    let out = work.path().join("ft");
    cqr_in(work.path())
        .args(["train", data.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .args([
            "--encoder",
            dir.to_str().unwrap(),
            "--fine-tune",
            "--epochs",
            "1",
        ])
        .assert()
        .success();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let enc = manifest["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "encoder")
        .unwrap();
    let ft = &enc["settings"]["fine_tune"];
    assert_eq!(ft["params"]["epochs"], 1);
    assert_eq!(ft["history"].as_array().unwrap().len(), 1);
    let base_sha = ft["base_sha256"].as_str().unwrap();
    let tuned_sha = enc["settings"]["weights_sha256"].as_str().unwrap();
    assert_ne!(
        base_sha, tuned_sha,
        "the bundle must carry the tuned weights"
    );
    assert_eq!(
        enc["files"]["weights"]["sha256"].as_str().unwrap(),
        tuned_sha
    );

    // --fine-tune without the encoder component is a usage error (exit 2).
    cqr_in(work.path())
        .args(["train", data.to_str().unwrap(), "-o"])
        .arg(work.path().join("x"))
        .args(["--components", "linear", "--fine-tune"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--fine-tune"));
}
