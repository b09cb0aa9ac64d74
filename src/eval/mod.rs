//! Evaluation: scores a model on labelled records and measures it with the pure functions of
//! [`crate::metrics`] into an [`EvalReport`]; `report` turns that into text, markdown, JSON and
//! plots, `promote` compares a new model with a registry alias holder. Reads no data files itself;
//! the caller hands it records.

pub mod compare;
pub(crate) mod plots;
pub mod promote;
pub mod report;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::io::read::Record;
use crate::metrics::{self, Confusion, CoveragePoint, IntentScore, ReliabilityBin, Scored};
use crate::models::{Decision, Model, ModelRef};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub mean: f64,
    pub queries: usize,
}

/// Everything `cqr evaluate` reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalReport {
    pub model: ModelRef,
    pub data: String,
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub ece: f64,
    pub threshold: f64,
    /// The abstain rule, as `train` describes it (bundles before it abstain below `threshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstain_rule: Option<String>,
    pub abstain_rate: f64,
    pub accuracy_answered: f64,
    /// Labels in the data that the model has never seen (always counted as errors).
    pub unknown_labels: BTreeMap<String, usize>,
    pub per_intent: BTreeMap<String, IntentScore>,
    pub confusions: Vec<Confusion>,
    pub reliability: Vec<ReliabilityBin>,
    pub coverage_curve: Vec<CoveragePoint>,
    pub latency_ms: Latency,
    pub throughput_qps: f64,
    /// When the data holds out-of-scope rows (`--oos-label`): how well abstention and the
    /// uncertainty scores separate them. The other metrics then cover in-scope rows only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_scope: Option<OosReport>,
    /// With `--cascade`: the share of queries that went through the encoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade_encoder_fraction: Option<f64>,
    /// With several components: each one's own accuracy and ECE on the same rows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentScore>,
    /// With `--compare OTHER`: this model (A) against the other (B) on the same in-scope rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<compare::Comparison>,
}

/// One component's figures when it answers alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ComponentScore {
    pub accuracy: f64,
    pub ece: f64,
}

/// Out-of-scope detection figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OosReport {
    pub label: String,
    pub n_out_of_scope: usize,
    pub n_in_scope: usize,
    /// The top intent's accuracy on in-scope rows, abstained or not.
    pub in_scope_accuracy: f64,
    /// Accuracy on the in-scope rows the model answered.
    #[serde(default)]
    pub in_scope_accuracy_answered: f64,
    /// Share of in-scope rows the model abstained on.
    #[serde(default)]
    pub in_scope_rejection: f64,
    /// Share of out-of-scope rows the model abstained on, at its stored rule (or threshold).
    pub recall_at_threshold: f64,
    /// Share of abstentions that were out of scope.
    pub precision_at_threshold: f64,
    /// AUROC of each score for telling out-of-scope (positive) from in-scope rows.
    pub auroc: BTreeMap<String, f64>,
    /// Each score's share of in-scope rows refused when it keeps 95% of the out-of-scope rows.
    #[serde(default)]
    pub fpr_at_95_tpr: BTreeMap<String, f64>,
    /// Each score's out-of-scope recall as the in-scope rejection it is allowed grows.
    #[serde(default)]
    pub tradeoff: BTreeMap<String, Vec<TradeoffPoint>>,
}

/// Out-of-scope recall at an in-scope rejection rate.
pub use crate::models::abstain::TradeoffPoint;

/// In-scope rejection rates at which `evaluate` traces each score's trade-off curve.
pub const TRADEOFF_GRID: [f64; 16] = [
    0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0,
];

/// Each component's (class, probability) for one query.
type Parts = Vec<(usize, f32)>;

/// How many queries are timed one at a time for the latency figures.
const LATENCY_SAMPLE: usize = 2000;

/// How an evaluation scores the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    /// Records scored together.
    pub batch_size: usize,
    /// Score with the cascade (linear first, the encoder only when it is unsure).
    pub cascade: bool,
    /// The label that marks out-of-scope rows.
    pub oos_label: String,
}

/// Scores `records` (which must carry labels) and computes every metric.
pub fn evaluate(
    model: &Model,
    records: &[Record],
    data_name: &str,
    options: &EvalOptions,
) -> crate::Result<EvalReport> {
    let (batch_size, cascade, oos_label) = (
        options.batch_size,
        options.cascade,
        options.oos_label.as_str(),
    );
    let labels = model.labels();
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let elapsed_n = texts.len().max(1);
    let start = Instant::now();
    let mut decisions = Vec::with_capacity(texts.len());
    let mut parts = Vec::with_capacity(texts.len());
    let mut routed = 0usize;
    for chunk in texts.chunks(batch_size.max(1)) {
        let preds = if cascade {
            let (p, n) = model.predict_cascade(chunk)?;
            routed += n;
            p
        } else {
            model.predict(chunk)?
        };
        for p in preds {
            decisions.push(model.decide(&p, 1));
            parts.push(p.parts);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let known: std::collections::HashSet<&str> = labels.iter().map(|s| s.as_str()).collect();
    // Out-of-scope rows (a label the model cannot know) are measured apart; the rest of the
    // metrics cover in-scope rows.
    let oos_is_unknown = !known.contains(oos_label) || model.oos_class.is_some();
    let is_oos = |r: &Record| oos_is_unknown && r.label.as_deref() == Some(oos_label);
    let out_of_scope = records
        .iter()
        .any(is_oos)
        .then(|| oos_report(model, records, &decisions, oos_label, &is_oos));
    let mut kept: Vec<&Record> = Vec::with_capacity(records.len());
    let mut kept_decisions: Vec<Decision> = Vec::with_capacity(records.len());
    let mut kept_parts: Vec<Parts> = Vec::with_capacity(records.len());
    for ((r, d), p) in records.iter().zip(decisions).zip(parts) {
        if !is_oos(r) {
            kept.push(r);
            kept_decisions.push(d);
            kept_parts.push(p);
        }
    }
    let (records, decisions, parts) = (kept, kept_decisions, kept_parts);
    let components = component_scores(model, &records, &parts);
    let mut unknown_labels: BTreeMap<String, usize> = BTreeMap::new();
    let scored: Vec<Scored> = records
        .iter()
        .zip(&decisions)
        .map(|(r, d)| {
            let truth = r.label.clone().expect("evaluation records carry labels");
            if !known.contains(truth.as_str()) {
                *unknown_labels.entry(truth.clone()).or_default() += 1;
            }
            Scored {
                truth,
                predicted: labels[d.best].clone(),
                confidence: d.confidence,
                abstained: d.abstained,
            }
        })
        .collect();

    let mut lat: Vec<f64> = Vec::with_capacity(LATENCY_SAMPLE);
    for t in texts.iter().take(LATENCY_SAMPLE) {
        let s = Instant::now();
        let one = std::slice::from_ref(t);
        let p = if cascade {
            model.predict_cascade(one)?.0
        } else {
            model.predict(one)?
        };
        let _ = model.decide(&p[0], 3);
        lat.push(s.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);

    let conf: Vec<f32> = scored.iter().map(|s| s.confidence).collect();
    let correct: Vec<bool> = scored.iter().map(|s| s.truth == s.predicted).collect();
    let (per_intent, macro_f1) = metrics::per_intent(&scored);
    let (reliability, ece) = metrics::reliability(&conf, &correct, metrics::ECE_BINS);
    let threshold = model.threshold() as f64;
    let mut thresholds: Vec<f64> = (0..20)
        .map(|i| i as f64 * 0.05)
        .chain([0.98, 0.99, threshold])
        .collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    let answered: Vec<&Scored> = scored.iter().filter(|s| !s.abstained).collect();
    let n = scored.len();
    Ok(EvalReport {
        model: model.model_ref(),
        data: data_name.to_string(),
        n,
        accuracy: metrics::accuracy(&scored),
        macro_f1,
        ece,
        threshold,
        abstain_rule: model
            .manifest
            .rule
            .as_ref()
            .map(|r| format!("{} > {:.3}", r.describe(), r.threshold)),
        abstain_rate: (n - answered.len()) as f64 / n.max(1) as f64,
        accuracy_answered: if answered.is_empty() {
            f64::NAN
        } else {
            answered.iter().filter(|s| s.truth == s.predicted).count() as f64
                / answered.len() as f64
        },
        unknown_labels,
        per_intent,
        confusions: metrics::confusions(&scored, 10),
        reliability,
        coverage_curve: metrics::coverage_curve(&conf, &correct, &thresholds),
        latency_ms: Latency {
            p50: metrics::percentile(&lat, 50.0),
            p95: metrics::percentile(&lat, 95.0),
            mean: lat.iter().sum::<f64>() / lat.len().max(1) as f64,
            queries: lat.len(),
        },
        throughput_qps: n as f64 / elapsed.max(1e-9),
        cascade_encoder_fraction: cascade.then(|| routed as f64 / elapsed_n as f64),
        out_of_scope,
        components,
        comparison: None,
    })
}

/// Accuracy and ECE of each component alone, when every row carries the components' answers.
fn component_scores(
    model: &Model,
    records: &[&Record],
    parts: &[Parts],
) -> BTreeMap<String, ComponentScore> {
    let k = model.components.len();
    let mut out = BTreeMap::new();
    if k < 2 || parts.is_empty() || parts.iter().any(|p| p.len() != k) {
        return out;
    }
    let labels = model.labels();
    for (j, comp) in model.components.iter().enumerate() {
        let conf: Vec<f32> = parts.iter().map(|p| p[j].1).collect();
        let correct: Vec<bool> = records
            .iter()
            .zip(parts)
            .map(|(r, p)| r.label.as_deref() == Some(labels[p[j].0].as_str()))
            .collect();
        let accuracy = correct.iter().filter(|c| **c).count() as f64 / correct.len() as f64;
        let (_, ece) = metrics::reliability(&conf, &correct, metrics::ECE_BINS);
        out.insert(
            comp.classifier.kind().to_string(),
            ComponentScore { accuracy, ece },
        );
    }
    out
}

/// One uncertainty score of a decision, when the decision has it.
type ScoreOf<'a> = dyn Fn(&Decision) -> Option<f64> + 'a;

fn oos_report(
    model: &Model,
    records: &[Record],
    decisions: &[Decision],
    label: &str,
    is_oos: &dyn Fn(&Record) -> bool,
) -> OosReport {
    let positive: Vec<bool> = records.iter().map(is_oos).collect();
    let n_oos = positive.iter().filter(|p| **p).count();
    let labels = model.labels();
    let in_scope: Vec<(&Record, &Decision)> = records
        .iter()
        .zip(decisions)
        .filter(|(r, _)| !is_oos(r))
        .collect();
    let right =
        |(r, d): &&(&Record, &Decision)| r.label.as_deref() == Some(labels[d.best].as_str());
    let share = |k: usize, n: usize| {
        if n == 0 {
            f64::NAN
        } else {
            k as f64 / n as f64
        }
    };
    let answered: Vec<&(&Record, &Decision)> =
        in_scope.iter().filter(|(_, d)| !d.abstained).collect();
    let abstained = decisions.iter().filter(|d| d.abstained).count();
    let true_abstained = decisions
        .iter()
        .zip(&positive)
        .filter(|(d, p)| d.abstained && **p)
        .count();
    let mut scores: Vec<(&str, Vec<f64>)> = Vec::new();
    let score = |f: &dyn Fn(&Decision) -> Option<f64>| -> Option<Vec<f64>> {
        decisions.iter().map(f).collect()
    };
    let candidates: [(&str, &ScoreOf); 9] = [
        ("one_minus_confidence", &|d| Some(1.0 - d.confidence as f64)),
        ("entropy", &|d| Some(d.entropy as f64)),
        ("one_minus_margin", &|d| Some(1.0 - d.margin as f64)),
        ("mc_std", &|d| d.mc.map(|m| m.0 as f64)),
        ("mutual_info", &|d| d.mc.map(|m| m.1 as f64)),
        ("disagreement", &|d| d.disagreement.map(f64::from)),
        ("novelty", &|d| d.novelty.map(f64::from)),
        ("out_of_scope_affinity", &|d| d.affinity.map(f64::from)),
        ("abstain_rule", &|d| model.abstain_score(d)),
    ];
    for (name, f) in candidates {
        if let Some(v) = score(f) {
            scores.push((name, v));
        }
    }
    let per = |f: &dyn Fn(&[f64]) -> f64| -> BTreeMap<String, f64> {
        scores.iter().map(|(n, v)| (n.to_string(), f(v))).collect()
    };
    OosReport {
        label: label.to_string(),
        n_out_of_scope: n_oos,
        n_in_scope: records.len() - n_oos,
        in_scope_accuracy: share(in_scope.iter().filter(right).count(), in_scope.len()),
        in_scope_accuracy_answered: share(
            answered.iter().filter(|x| right(x)).count(),
            answered.len(),
        ),
        in_scope_rejection: share(in_scope.len() - answered.len(), in_scope.len()),
        recall_at_threshold: true_abstained as f64 / n_oos.max(1) as f64,
        precision_at_threshold: share(true_abstained, abstained),
        auroc: per(&|v| metrics::auroc(v, &positive)),
        fpr_at_95_tpr: per(&|v| metrics::fpr_at_tpr(v, &positive, 0.95)),
        tradeoff: scores
            .iter()
            .map(|(n, v)| {
                let curve = TRADEOFF_GRID
                    .iter()
                    .map(|&r| {
                        let (rejection, recall) = metrics::refused_at(v, &positive, r);
                        TradeoffPoint {
                            in_scope_rejection: rejection,
                            out_of_scope_recall: recall,
                        }
                    })
                    .collect();
                (n.to_string(), curve)
            })
            .collect(),
    }
}
