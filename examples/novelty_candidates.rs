//! The novelty candidates measured on the out-of-scope benchmark's data (run by
//! `scripts/bench_oos.sh`; not a test): which distance of a query from the training data tells
//! withheld-intent queries from the rest best, against the max-softmax baseline.
//!
//! Frozen encoder embeddings of the benchmark's training rows (every 10th row held out to
//! standardise nothing here but kept out of the fit, as train's validation rows are) and of the
//! test split; a logistic head fitted with cqr's own solver gives the max-softmax baseline. The
//! candidates: Mahalanobis distance to the nearest class (shared covariance) and the relative
//! Mahalanobis distance, each at three shrinkages; cosine distance to the k nearest training
//! rows; cosine distance to the nearest class centroid. With `--linear MODEL` (a linear-only
//! bundle trained on the same rows): its 1 − max softmax, negative largest logit, energy and OOV
//! rate. Prints one JSON object: per candidate, AUROC and FPR at 95% TPR (out of scope positive).
//!
//! Usage: novelty_candidates TRAIN_CSV TEST_CSV --encoder DIR [--linear MODEL] [--oos-label oos]

use std::path::PathBuf;

use clap::Parser;
use cqr::metrics::{auroc, fpr_at_tpr};
use cqr::models::encoder::{EmbeddingCache, Encoder, DEFAULT_MAX_LEN};
use cqr::models::heads::LogisticHead;
use cqr::models::novelty::Mahalanobis;
use cqr::models::Model;
use rayon::prelude::*;
use serde_json::{json, Map, Value};

#[derive(Parser)]
struct Args {
    train: PathBuf,
    test: PathBuf,
    #[arg(long)]
    encoder: PathBuf,
    #[arg(long)]
    linear: Option<PathBuf>,
    #[arg(long, default_value = "oos")]
    oos_label: String,
}

/// (text, label) rows of a `text,intent` CSV.
fn rows(path: &PathBuf) -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(path).expect("a readable CSV");
    r.records()
        .map(|rec| {
            let rec = rec.expect("a CSV record");
            (rec[0].to_string(), rec[1].to_string())
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (train, test) = (rows(&args.train), rows(&args.test));
    let mut labels: Vec<String> = train
        .iter()
        .filter(|(_, l)| *l != args.oos_label)
        .map(|(_, l)| l.clone())
        .collect();
    labels.sort();
    labels.dedup();
    let class = |l: &str| labels.iter().position(|x| x == l);
    // Training's own validation share stays out of every fit, as it does in `cqr train`.
    let fit_rows: Vec<(&str, u32)> = train
        .iter()
        .enumerate()
        .filter(|(i, (_, l))| i % 10 != 0 && class(l).is_some())
        .map(|(_, (t, l))| (t.as_str(), class(l).unwrap() as u32))
        .collect();
    let positive: Vec<bool> = test.iter().map(|(_, l)| *l == args.oos_label).collect();
    let encoder = Encoder::load(&args.encoder, DEFAULT_MAX_LEN)?;
    let mut cache = EmbeddingCache::open(&encoder)?;
    let texts: Vec<&str> = fit_rows.iter().map(|r| r.0).collect();
    let y: Vec<u32> = fit_rows.iter().map(|r| r.1).collect();
    let xt = cache.embed(&encoder, &texts, |_| {})?;
    let test_texts: Vec<&str> = test.iter().map(|r| r.0.as_str()).collect();
    let xq = cache.embed(&encoder, &test_texts, |_| {})?;
    let (d, c) = (encoder.dim, labels.len());
    let mut out = Map::new();
    let mut report = |name: String, score: Vec<f64>| {
        out.insert(
            name,
            json!({
                "auroc": auroc(&score, &positive),
                "fpr_at_95_tpr": fpr_at_tpr(&score, &positive, 0.95),
            }),
        );
    };

    let head = LogisticHead::fit(&xt, d, &y, c, 0.1, 300)?;
    let logits = head.logits(&xq);
    report(
        "encoder_head_one_minus_max_softmax".into(),
        logits.chunks(c).map(|r| 1.0 - max_softmax(r)).collect(),
    );
    for shrinkage in [0.001, 0.01, 0.1] {
        let m = Mahalanobis::fit(&xt, d, &y, c, shrinkage).map_err(anyhow::Error::msg)?;
        report(
            format!("relative_mahalanobis_shrinkage_{shrinkage}"),
            m.scores(&xq).into_iter().map(f64::from).collect(),
        );
        report(
            format!("mahalanobis_shrinkage_{shrinkage}"),
            xq.par_chunks(d).map(|q| class_distance(&m, q)).collect(),
        );
    }
    let nearest: Vec<Vec<f32>> = xq
        .par_chunks(d)
        .map(|q| {
            let mut sims: Vec<f32> = xt.chunks(d).map(|r| dot(q, r)).collect();
            sims.sort_by(|a, b| b.total_cmp(a));
            sims.truncate(10);
            sims
        })
        .collect();
    for k in [1, 5, 10] {
        report(
            format!("nearest_row_cosine_k{k}"),
            nearest.iter().map(|s| 1.0 - s[k - 1] as f64).collect(),
        );
    }
    let mut centroids = vec![0f32; c * d];
    for (row, &l) in xt.chunks(d).zip(&y) {
        centroids[l as usize * d..(l as usize + 1) * d]
            .iter_mut()
            .zip(row)
            .for_each(|(a, b)| *a += b);
    }
    centroids.chunks_mut(d).for_each(|v| {
        let n = dot(v, v).sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= n);
    });
    report(
        "nearest_centroid_cosine".into(),
        xq.chunks(d)
            .map(|q| {
                let best = centroids
                    .chunks(d)
                    .map(|m| dot(q, m))
                    .fold(f32::MIN, f32::max);
                1.0 - best as f64
            })
            .collect(),
    );

    if let Some(path) = &args.linear {
        let model = Model::load(path)?;
        let linear = &model.components[0];
        let n = model.labels().len();
        let raw = linear.classifier.logits(&test_texts)?;
        let probs = model.predict(&test_texts)?;
        report(
            "linear_one_minus_max_softmax".into(),
            probs
                .iter()
                .map(|p| 1.0 - p.probs.iter().fold(0f32, |a, &b| a.max(b)) as f64)
                .collect(),
        );
        report(
            "linear_neg_max_logit".into(),
            raw.chunks(n)
                .map(|r| -(r.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64))
                .collect(),
        );
        report(
            "linear_energy".into(),
            raw.chunks(n).map(|r| -log_sum_exp(r)).collect(),
        );
        if let Some(oov) = linear.classifier.oov_rates(&test_texts) {
            report(
                "linear_oov_rate".into(),
                oov.into_iter().map(f64::from).collect(),
            );
        }
    }
    let result = json!({
        "fit_rows": fit_rows.len(),
        "test_rows": test.len(),
        "test_out_of_scope": positive.iter().filter(|p| **p).count(),
        "candidates": Value::Object(out),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_softmax(logits: &[f32]) -> f64 {
    let m = logits.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
    1.0 / logits.iter().map(|&z| (z as f64 - m).exp()).sum::<f64>()
}

fn log_sum_exp(logits: &[f32]) -> f64 {
    let m = logits.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
    m + logits
        .iter()
        .map(|&z| (z as f64 - m).exp())
        .sum::<f64>()
        .ln()
}

/// Plain (not relative) Mahalanobis distance to the nearest class, from the fitted whitening:
/// min_k ‖W x − W μ_k‖².
fn class_distance(m: &Mahalanobis, q: &[f32]) -> f64 {
    let d = m.dim;
    let z: Vec<f32> = (0..d)
        .map(|i| dot(&m.whiten[i * d..i * d + i + 1], &q[..i + 1]))
        .collect();
    m.means
        .chunks(d)
        .map(|mu| {
            z.iter()
                .zip(mu)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
        })
        .fold(f32::MAX, f32::min) as f64
}
