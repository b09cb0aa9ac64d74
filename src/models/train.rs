//! Training in typed steps: validated parameters in, a fitted and calibrated model out.
//! [`train`] labels the rows, then runs [`fit_linear`] (featuriser, L2 path, refit, temperature),
//! [`fit_encoder`] (embeddings, optional fine-tune, head, temperature), [`fit_ensemble`] (weight,
//! ensemble temperature, cascade), [`choose_threshold`] (the abstain rule) and
//! [`validation_metrics`]; [`Trained::save`] writes the bundle and [`Trained::summary`] says what
//! was trained. Never reads data files or prints; progress goes through a callback as [`Step`]s.
//! Defaults live in `settings::defaults`; the rules live in [`TrainParams::broken_rule`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::abstain::{AbstainRule, FitMethod, RuleParams, Scores, TradeoffPoint};
use super::bundle::{self, DataFingerprint, Manifest, TrainingInfo, FORMAT_VERSION};
use super::calibration::{self, TemperatureFit, ThresholdChoice};
use super::encoder::{EmbeddingCache, Encoder, EncoderClassifier};
use super::finetune::{
    fine_tune, FineTuneParam, FineTuneParams, FineTuneSummary, FtData, FtProgress, HeadInit,
};
use super::heads::{Head, LogisticHead, MlpHead, MlpParams};
use super::linear::{self, FittedLinear, Labelled, LinearParams, PathPoint};
use super::novelty::Mahalanobis;
use super::{decide, Affinity, Classifier, Decision, NearestRow, Novelty, NoveltyScorer};
use crate::error::{Error, Result};
use crate::io::atomic::TempDir;
use crate::io::read::Record;
use crate::metrics::{self, pct, Scored};
use crate::monitor::profile::{Observation, Profile, ProfileBuilder, REFERENCE_CAPS};
use crate::text::features::FeatureParam;
use crate::text::{FeatureSpec, Vectorizer};
use crate::util::{human_seconds, sha256_hex, Rng};

/// Training parameters as given, before validation.
#[derive(Debug, Clone)]
pub struct TrainParams {
    pub seed: u64,
    /// Share of the training data held out for validation when no validation set is given.
    pub valid_split: f64,
    pub target_precision: f64,
    /// Most of the in-scope validation rows the abstain rule may refuse (more only when the
    /// precision target needs it).
    pub max_reject: f64,
    /// How rows marked out of scope are used.
    pub out_of_scope: OutOfScope,
    pub features: FeatureSpec,
    pub linear: LinearParams,
    /// After choosing the L2 strength, refit on training + validation rows (the temperature and
    /// threshold stay those measured on the held-out fit).
    pub refit: bool,
    /// The encoder component, when asked for.
    pub encoder: Option<EncoderParams>,
}

/// Rows carrying `label` are out of scope: kept aside to fit and measure the abstain rule, or,
/// with `as_class`, an ordinary class whose prediction counts as abstaining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OutOfScope {
    pub label: String,
    pub as_class: bool,
}

/// The encoder component's settings.
#[derive(Debug, Clone)]
pub struct EncoderParams {
    pub dir: std::path::PathBuf,
    pub max_len: usize,
    /// L2 strength of the logistic head (linfa's alpha).
    pub alpha: f32,
    pub max_iter: u64,
    pub head: HeadKind,
    /// Fine-tune the encoder itself before fitting the head.
    pub fine_tune: Option<FineTuneParams>,
    /// The encoder's arithmetic, for the embeddings the head is fitted on and in the bundle.
    pub precision: super::fastbert::Precision,
}

/// The encoder component's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeadKind {
    /// Multinomial logistic regression (linfa).
    Logistic,
    /// One hidden layer with dropout (candle); enables MC dropout.
    Mlp,
}

impl fmt::Display for HeadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeadKind::Logistic => "logistic",
            HeadKind::Mlp => "mlp",
        })
    }
}

/// A training parameter, to name the one that breaks a rule (the settings resolver maps it back
/// to the flag, variable or file line it came from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    ValidSplit,
    TargetPrecision,
    MaxReject,
    MaxIter,
    L2Grid,
    HeadAlpha,
    Features(FeatureParam),
    FineTune(FineTuneParam),
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::ValidSplit => f.write_str("valid_split"),
            Param::TargetPrecision => f.write_str("target_precision"),
            Param::MaxReject => f.write_str("max_reject"),
            Param::MaxIter => f.write_str("max_iter"),
            Param::L2Grid => f.write_str("l2_grid"),
            Param::HeadAlpha => f.write_str("head_alpha"),
            Param::Features(p) => write!(f, "{p}"),
            Param::FineTune(p) => write!(f, "fine-tune {p}"),
        }
    }
}

/// A parameter that breaks a rule, and the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    pub param: Param,
    pub why: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.param, self.why)
    }
}

/// Parameters that passed validation; only these can start the expensive work.
#[derive(Debug, Clone)]
pub struct ValidTrainParams(TrainParams);

impl TrainParams {
    /// The first parameter that breaks its rule. Every rule of training lives here (or in the
    /// featuriser's and the fine-tune's own `broken_rule`, which this calls).
    pub fn broken_rule(&self) -> Option<Invalid> {
        let bad = |param, why| Some(Invalid { param, why });
        if !(self.valid_split > 0.0 && self.valid_split < 1.0) {
            return bad(Param::ValidSplit, "must be in (0, 1)");
        }
        if !(self.target_precision > 0.0 && self.target_precision <= 1.0) {
            return bad(Param::TargetPrecision, "must be in (0, 1]");
        }
        if !(0.0..1.0).contains(&self.max_reject) {
            return bad(Param::MaxReject, "must be in [0, 1)");
        }
        if let Some((p, why)) = self.features.broken_rule() {
            return bad(Param::Features(p), why);
        }
        if self.linear.max_iter == 0 {
            return bad(Param::MaxIter, "must be at least 1");
        }
        let strength_ok = |l: &f32| *l >= 0.0 && l.is_finite();
        if self.linear.l2_grid.is_empty() || !self.linear.l2_grid.iter().all(strength_ok) {
            return bad(
                Param::L2Grid,
                "needs at least one finite, non-negative strength",
            );
        }
        let encoder = self.encoder.as_ref()?;
        if !(encoder.alpha >= 0.0 && encoder.alpha.is_finite()) {
            return bad(Param::HeadAlpha, "must be finite and non-negative");
        }
        let (p, why) = encoder.fine_tune.as_ref()?.broken_rule()?;
        bad(Param::FineTune(p), why)
    }

    /// The parameters as validated, or the first rule they break (the settings resolver turns
    /// it into an error naming where the value came from).
    pub fn validate(self) -> std::result::Result<ValidTrainParams, Invalid> {
        match self.broken_rule() {
            Some(bad) => Err(bad),
            None => Ok(ValidTrainParams(self)),
        }
    }
}

impl ValidTrainParams {
    pub fn params(&self) -> &TrainParams {
        &self.0
    }
}

/// What training is doing, for a progress line; `Display` says it with units.
#[derive(Clone, Copy)]
pub enum Step<'a> {
    /// Learning the n-gram vocabulary and weighting the rows.
    Features { texts: usize },
    /// One L-BFGS iteration of the linear model at one L2 strength of the path.
    Linear {
        strength: &'a str,
        index: usize,
        of: usize,
        iteration: usize,
        max_iter: usize,
        loss: f64,
    },
    /// One L-BFGS iteration of the refit on training + validation rows.
    Refit {
        iteration: usize,
        max_iter: usize,
        loss: f64,
    },
    /// Texts embedded so far by the encoder (the fine-tuned one when `tuned`).
    Encoding {
        done: usize,
        total: usize,
        tuned: bool,
    },
    /// Fitting the encoder's head on the embeddings.
    EncoderHead,
    /// One optimiser step of the encoder's fine-tune.
    FineTune {
        progress: &'a FtProgress,
        epochs: usize,
    },
}

impl Step<'_> {
    /// The training loss this step reports, once there is one.
    pub fn loss(&self) -> Option<f64> {
        let loss = match self {
            Step::Linear { loss, .. } | Step::Refit { loss, .. } => *loss,
            Step::FineTune { progress, .. } => progress.loss,
            _ => return None,
        };
        loss.is_finite().then_some(loss)
    }
}

impl fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Step::Features { texts } => write!(f, "building n-gram features from {texts} texts"),
            Step::Linear {
                strength,
                index,
                of,
                iteration,
                max_iter,
                ..
            } => write!(
                f,
                "fitting linear model ({strength}, {index} of {of}): L-BFGS iteration {iteration}/{max_iter}{}",
                loss_text(self.loss())
            ),
            Step::Refit {
                iteration,
                max_iter,
                ..
            } => write!(
                f,
                "refitting linear model on all rows: L-BFGS iteration {iteration}/{max_iter}{}",
                loss_text(self.loss())
            ),
            Step::Encoding { done, total, tuned } => write!(
                f,
                "embedding with the {}encoder: {done}/{total} texts",
                if tuned { "fine-tuned " } else { "" }
            ),
            Step::EncoderHead => f.write_str("fitting the encoder's head on the embeddings"),
            Step::FineTune { progress, epochs } => write!(
                f,
                "fine-tuning the encoder: epoch {}/{epochs}, step {}/{}{}, eta {}",
                progress.epoch,
                progress.step,
                progress.total_steps,
                loss_text(self.loss()),
                human_seconds(progress.eta_seconds)
            ),
        }
    }
}

/// `, loss 0.4120`, or nothing while no loss is known.
/// A share as a whole or one-decimal percentage, for table cells.
fn pct_short(x: f64) -> String {
    if (x * 100.0).fract().abs() < 1e-9 {
        format!("{:.0}%", x * 100.0)
    } else {
        format!("{:.1}%", x * 100.0)
    }
}

fn loss_text(loss: Option<f64>) -> String {
    loss.map(|l| format!(", loss {l:.4}")).unwrap_or_default()
}

/// Progress callback.
pub type Progress<'a> = &'a mut dyn FnMut(Step<'_>);

/// Validation metrics of a trained model. The field names are the metric names in the
/// manifest and in MLflow; [`ValidationMetrics::entries`] lists them as key/values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationMetrics {
    pub valid_accuracy: f64,
    pub valid_macro_f1: f64,
    pub valid_ece: f64,
    /// Before the temperatures (each component's and the ensemble's).
    pub valid_ece_uncalibrated: f64,
    pub valid_nll: f64,
    pub valid_nll_uncalibrated: f64,
    /// Share of validation rows answered at the abstain threshold, and their precision.
    pub valid_coverage: f64,
    pub valid_precision_answered: f64,
    pub valid_accuracy_linear: f64,
    pub n_features: usize,
    pub refit: bool,
    #[serde(flatten)]
    pub encoder: Option<EncoderMetrics>,
}

/// The encoder component's and the ensemble's metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EncoderMetrics {
    pub valid_accuracy_encoder: f64,
    pub ensemble_weight_encoder: f64,
    pub ensemble_temperature: f64,
    pub cascade_threshold: f64,
    pub valid_cascade_accuracy: f64,
    pub valid_cascade_encoder_fraction: f64,
    pub encoder_seconds: f64,
    #[serde(flatten)]
    pub fine_tune: Option<FineTuneMetrics>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FineTuneMetrics {
    pub fine_tune_seconds: f64,
    pub fine_tune_best_epoch: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fine_tune_valid_accuracy: Option<f64>,
}

impl ValidationMetrics {
    /// The metrics as (name, value), the one place they become key/values (the manifest's
    /// `metrics` and the run's metrics): the serialised fields, in their order.
    pub fn entries(&self) -> Vec<(String, f64)> {
        metrics::named_values(self)
    }
}

/// A trained model not yet written to disk.
pub struct Trained {
    pub labels: Vec<String>,
    pub linear: FittedLinear,
    pub path: Vec<PathPoint>,
    pub temperature: TemperatureFit,
    pub encoder: Option<(EncoderClassifier, TemperatureFit)>,
    /// The encoder's ensemble weight (the linear component gets 1 minus it).
    pub encoder_weight: f32,
    pub ensemble_temperature: f32,
    pub cascade_threshold: Option<f32>,
    pub encoder_alpha: f32,
    pub fine_tune: Option<FineTuneSummary>,
    /// Holds the fine-tuned encoder's files until the bundle has copied them.
    pub scratch: Option<TempDir>,
    /// The confidence threshold that alone keeps the target precision (what bundles before the
    /// abstain rule used).
    pub threshold: ThresholdChoice,
    pub rule: AbstainRule,
    pub novelty: Novelty,
    pub out_of_scope: OutOfScope,
    /// Out-of-scope rows set aside to fit and measure the rule.
    pub oos_rows: usize,
    pub metrics: ValidationMetrics,
    pub train_data: DataFingerprint,
    pub valid_data: DataFingerprint,
    pub seconds: f64,
    /// Validation rows dropped because their label never occurs in training.
    pub dropped_valid: usize,
    /// The drift reference: the held-out validation rows as the model answered them.
    pub profile: Profile,
    /// The held-out fit's best intent for each validation row (in [`Rows::valid`] order).
    pub valid_predicted: Vec<String>,
}

/// What a trained bundle's drift profile describes.
pub const PROFILE_SOURCE: &str = "validation rows, scored by the held-out fit";

fn fingerprint(source: &str, records: &[&Record]) -> DataFingerprint {
    let mut bytes = Vec::new();
    for r in records {
        bytes.extend_from_slice(r.text.as_bytes());
        bytes.push(0x1f);
        bytes.extend_from_slice(r.label.as_deref().unwrap_or("").as_bytes());
        bytes.push(0x1e);
    }
    DataFingerprint {
        source: source.to_string(),
        rows: records.len(),
        sha256: sha256_hex(&bytes),
    }
}

/// Splits `records` into (train, valid) per label, holding out `share` of each label's rows
/// (at least one when the label has two or more). Seeded and independent of input order
/// within a label.
pub fn stratified_split(records: &[Record], share: f64, seed: u64) -> (Vec<&Record>, Vec<&Record>) {
    split_where(records, share, seed, |_| true)
}

/// [`stratified_split`] of the in-scope rows; out-of-scope rows (unless trained as a class) all
/// go to validation, after the in-scope ones, and leave the in-scope split exactly as it is
/// without them.
pub fn split_for_training<'a>(
    records: &'a [Record],
    share: f64,
    seed: u64,
    oos: &OutOfScope,
) -> (Vec<&'a Record>, Vec<&'a Record>) {
    let is_oos = |r: &Record| !oos.as_class && r.label.as_deref() == Some(oos.label.as_str());
    let (train, mut valid) = split_where(records, share, seed, |r| !is_oos(r));
    valid.extend(records.iter().filter(|r| is_oos(r)));
    (train, valid)
}

/// The stratified split of the records `keep` accepts (the others are in neither part).
fn split_where(
    records: &[Record],
    share: f64,
    seed: u64,
    keep: impl Fn(&Record) -> bool,
) -> (Vec<&Record>, Vec<&Record>) {
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate().filter(|(_, r)| keep(r)) {
        by_label
            .entry(r.label.as_deref().unwrap_or(""))
            .or_default()
            .push(i);
    }
    let mut rng = Rng::new(seed);
    let mut valid_idx = Vec::new();
    for idx in by_label.values_mut() {
        rng.shuffle(idx);
        let k = if idx.len() < 2 {
            0
        } else {
            ((idx.len() as f64 * share).round() as usize).clamp(1, idx.len() - 1)
        };
        valid_idx.extend_from_slice(&idx[..k]);
    }
    let valid_set: BTreeSet<usize> = valid_idx.into_iter().collect();
    let train = (0..records.len())
        .filter(|i| !valid_set.contains(i) && keep(&records[*i]))
        .map(|i| &records[i])
        .collect();
    let valid = valid_set.iter().map(|&i| &records[i]).collect();
    (train, valid)
}

/// The labelled rows of one run in class-index form: training rows, and the validation rows
/// whose label occurs in training, with the fingerprints of exactly those rows (for the
/// manifest and the run's datasets alike).
pub struct Rows<'a> {
    pub train_data: DataFingerprint,
    pub valid_data: DataFingerprint,
    labels: Vec<String>,
    train_texts: Vec<&'a str>,
    y_train: Vec<u32>,
    valid: Vec<&'a Record>,
    valid_texts: Vec<&'a str>,
    y_valid: Vec<u32>,
    /// Validation rows left out because their label never occurs in training.
    dropped_valid: usize,
    /// Out-of-scope rows (from the training and the validation data), never a class.
    oos_texts: Vec<&'a str>,
}

impl<'a> Rows<'a> {
    /// Labels the rows; `sources` name where the training and validation rows came from.
    /// Rows marked out of scope (unless it is a class) are set aside from both.
    pub fn new(
        train: &[&'a Record],
        valid: &[&'a Record],
        sources: (&str, &str),
        oos: &OutOfScope,
    ) -> Result<Rows<'a>> {
        let is_oos = |r: &&Record| !oos.as_class && r.label.as_deref() == Some(oos.label.as_str());
        let oos_texts: Vec<&str> = train
            .iter()
            .chain(valid)
            .filter(|r| is_oos(r))
            .map(|r| r.text.as_str())
            .collect();
        let train: Vec<&Record> = train.iter().copied().filter(|r| !is_oos(r)).collect();
        let valid: Vec<&Record> = valid.iter().copied().filter(|r| !is_oos(r)).collect();
        let (train, valid) = (&train[..], &valid[..]);
        let labels: Vec<String> = train
            .iter()
            .filter_map(|r| r.label.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if labels.len() < 2 {
            return Err(Error::Training(format!(
                "the training data has {} distinct label(s); at least 2 are needed",
                labels.len()
            )));
        }
        let index: HashMap<&str, u32> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i as u32))
            .collect();
        let class = |r: &Record| index[r.label.as_deref().expect("labelled")];
        let valid_known: Vec<&Record> = valid
            .iter()
            .copied()
            .filter(|r| r.label.as_deref().is_some_and(|l| index.contains_key(l)))
            .collect();
        if valid_known.is_empty() {
            return Err(Error::Training(
                "no validation rows with a label seen in training: calibration and the abstain threshold need them".into(),
            ));
        }
        Ok(Rows {
            train_data: fingerprint(sources.0, train),
            valid_data: fingerprint(sources.1, &valid_known),
            y_train: train.iter().map(|r| class(r)).collect(),
            y_valid: valid_known.iter().map(|r| class(r)).collect(),
            train_texts: train.iter().map(|r| r.text.as_str()).collect(),
            valid_texts: valid_known.iter().map(|r| r.text.as_str()).collect(),
            dropped_valid: valid.len() - valid_known.len(),
            valid: valid_known,
            labels,
            oos_texts,
        })
    }

    fn n_classes(&self) -> usize {
        self.labels.len()
    }

    /// The validation rows training measures on: those whose label occurs in training.
    pub fn valid(&self) -> &[&'a Record] {
        &self.valid
    }

    /// How many out-of-scope rows were set aside for the abstain rule.
    pub fn out_of_scope(&self) -> usize {
        self.oos_texts.len()
    }
}

/// Fits, calibrates and measures a model on `rows`.
pub fn train(
    params: &ValidTrainParams,
    rows: &Rows<'_>,
    progress: Progress<'_>,
) -> Result<Trained> {
    let p = params.params();
    let start = Instant::now();
    let linear = fit_linear(p, rows, progress)?;
    let encoder = match &p.encoder {
        None => None,
        Some(ep) => Some(fit_encoder(ep, rows, p.refit, progress)?),
    };
    let ensemble = fit_ensemble(&linear, encoder.as_ref(), rows);
    let (answers, threshold) = choose_threshold(
        &ensemble.probs,
        &rows.y_valid,
        rows.n_classes(),
        p.target_precision,
    );
    let novelty = fit_novelty(&linear, encoder.as_ref(), rows)?;
    let (valid_scores, oos_scores) =
        held_out_scores(&linear, encoder.as_ref(), &ensemble, &novelty, rows);
    let rule = AbstainRule::fit(
        &valid_scores,
        &answers.correct,
        &oos_scores,
        RuleParams {
            target_precision: p.target_precision,
            max_reject: p.max_reject,
        },
    );
    // With out-of-scope as a class, predicting it is abstaining too.
    let oos_class = oos_class(&rows.labels, &p.out_of_scope);
    let refused: Vec<bool> = valid_scores
        .iter()
        .zip(&answers.decisions)
        .map(|(s, d)| rule.refuses(s) || Some(d.best) == oos_class)
        .collect();
    let metrics = validation_metrics(
        Fitted {
            rows,
            linear: &linear,
            encoder: encoder.as_ref(),
            ensemble: &ensemble,
        },
        &answers,
        &refused,
        p.refit,
    );
    let profile = reference_profile(
        rows,
        &linear.model,
        encoder.as_ref().map(|e| Embedded {
            // A fine-tuned encoder has pulled its training rows together: they would look less
            // novel than new queries of the same kind, so only validation rows count then.
            train: if e.fine_tune.is_none() {
                &e.train_embeddings
            } else {
                &[]
            },
            valid: &e.valid_embeddings,
            dim: e.model.encoder.dim,
        }),
        &ensemble.probs,
        &refused,
    );
    let (encoder, fine_tune, scratch) = match encoder {
        None => (None, None, None),
        Some(e) => {
            let (summary, scratch) = e.fine_tune.unzip();
            (Some((e.model, e.temperature)), summary, scratch)
        }
    };
    Ok(Trained {
        train_data: rows.train_data.clone(),
        valid_data: rows.valid_data.clone(),
        labels: rows.labels.clone(),
        linear: linear.model,
        path: linear.path,
        temperature: linear.temperature,
        encoder,
        encoder_weight: ensemble.weight,
        ensemble_temperature: ensemble.temperature,
        cascade_threshold: ensemble.cascade.map(|cc| cc.threshold),
        encoder_alpha: p.encoder.as_ref().map(|e| e.alpha).unwrap_or(0.0),
        fine_tune,
        scratch,
        threshold,
        rule,
        novelty: novelty.novelty,
        out_of_scope: p.out_of_scope.clone(),
        oos_rows: rows.oos_texts.len(),
        metrics,
        seconds: start.elapsed().as_secs_f64(),
        dropped_valid: rows.dropped_valid,
        profile,
        valid_predicted: answers
            .decisions
            .iter()
            .map(|d| rows.labels[d.best].clone())
            .collect(),
    })
}

/// The drift reference profile: each validation row as the held-out fit answered it (its
/// calibrated ensemble probabilities, the abstain rule's answer, the linear vocabulary) with its
/// encoder embedding. Held-out answers are what new data will look like; the refit model has
/// seen these rows.
fn reference_profile(
    rows: &Rows<'_>,
    linear: &FittedLinear,
    embedded: Option<Embedded<'_>>,
    probs: &[f32],
    refused: &[bool],
) -> Profile {
    let c = rows.n_classes();
    let dim = embedded.as_ref().map_or(0, |e| e.dim);
    let oov = linear.oov_rates(&rows.valid_texts).unwrap_or_default();
    let mut b = ProfileBuilder::new(c, dim, REFERENCE_CAPS);
    for (i, (text, &y)) in rows.valid_texts.iter().zip(&rows.y_valid).enumerate() {
        let d = decide(&probs[i * c..(i + 1) * c], 0.0, 1);
        let oov = oov.get(i).copied().unwrap_or(0.0);
        let right = Some(d.best == y as usize);
        let o = Observation::of(d.best, d.confidence, refused[i], text, oov, right);
        b.push(
            &o,
            embedded.as_ref().map(|e| &e.valid[i * dim..(i + 1) * dim]),
        );
    }
    // Novelty is measured against everything the model learnt from.
    if let Some(e) = &embedded {
        e.train.chunks(dim).for_each(|row| b.push_learnt(row));
    }
    b.finish()
}

/// The encoder's embeddings of the training and validation rows, `[n × dim]` each.
struct Embedded<'a> {
    train: &'a [f32],
    valid: &'a [f32],
    dim: usize,
}

/// The linear component as trained: the model kept (refit or held-out), its L2 path, and its
/// temperature and raw logits on validation (from the held-out fit).
struct LinearStep {
    model: FittedLinear,
    path: Vec<PathPoint>,
    temperature: TemperatureFit,
    valid_logits: Vec<f32>,
    /// The held-out fit's logits on the out-of-scope rows.
    oos_logits: Vec<f32>,
    n_features: usize,
}

/// Learns the featuriser, walks the L2 path (keeping the best strength on validation),
/// optionally refits on all rows, and fits the temperature on validation.
fn fit_linear(p: &TrainParams, rows: &Rows<'_>, progress: Progress<'_>) -> Result<LinearStep> {
    progress(Step::Features {
        texts: rows.train_texts.len(),
    });
    let (vectorizer, vocab) = Vectorizer::fit(&rows.train_texts, &p.features)?;
    let x_train: Vec<_> = rows
        .train_texts
        .par_iter()
        .map(|t| vectorizer.transform(t))
        .collect();
    let x_valid: Vec<_> = rows
        .valid_texts
        .par_iter()
        .map(|t| vectorizer.transform(t))
        .collect();
    tracing::info!(
        features = vectorizer.n_features(),
        train = x_train.len(),
        valid = x_valid.len(),
        "featurised"
    );
    let c = rows.n_classes();
    let valid_rows = Labelled {
        x: &x_valid,
        y: &rows.y_valid,
    };
    let max_iter = p.linear.max_iter;
    let of = p.linear.l2_grid.len();
    let (mut index, mut current) = (0, String::new());
    let fit = linear::fit(
        (vectorizer.clone(), vocab.clone()),
        Labelled {
            x: &x_train,
            y: &rows.y_train,
        },
        valid_rows,
        c,
        &p.linear,
        |strength, iteration, loss| {
            if strength != current {
                index += 1;
                current = strength.to_string();
            }
            progress(Step::Linear {
                strength,
                index,
                of,
                iteration,
                max_iter,
                loss,
            })
        },
    )?;
    let valid_logits = fit.model.logits(&rows.valid_texts)?;
    let oos_logits = fit.model.logits(&rows.oos_texts)?;
    let n_features = fit.model.vectorizer.n_features();
    let model = if p.refit {
        let x_all: Vec<_> = x_train.iter().chain(&x_valid).cloned().collect();
        let y_all: Vec<u32> = rows.y_train.iter().chain(&rows.y_valid).copied().collect();
        let one = LinearParams {
            l2_grid: vec![fit.model.l2],
            ..p.linear.clone()
        };
        let all = Labelled {
            x: &x_all,
            y: &y_all,
        };
        linear::fit(
            (vectorizer, vocab),
            all,
            valid_rows,
            c,
            &one,
            |_, iteration, loss| {
                progress(Step::Refit {
                    iteration,
                    max_iter,
                    loss,
                })
            },
        )?
        .model
    } else {
        fit.model
    };
    Ok(LinearStep {
        model,
        path: fit.path,
        temperature: calibration::fit_temperature(&valid_logits, &rows.y_valid, c),
        valid_logits,
        oos_logits,
        n_features,
    })
}

/// The encoder component as trained: the model, its calibration and its validation outputs.
struct EncoderStep {
    model: EncoderClassifier,
    fine_tune: Option<(FineTuneSummary, TempDir)>,
    temperature: TemperatureFit,
    valid_logits: Vec<f32>,
    valid_probs: Vec<f32>,
    /// The training, validation and out-of-scope rows' embeddings, `[n × dim]`.
    train_embeddings: Vec<f32>,
    valid_embeddings: Vec<f32>,
    oos_embeddings: Vec<f32>,
    /// The held-out head's calibrated probabilities on the out-of-scope rows.
    oos_probs: Vec<f32>,
    seconds: f64,
}

/// Embeds the rows (after fine-tuning the encoder, when asked), fits the head and its
/// temperature on validation, and refits a logistic head on all rows when `refit`.
fn fit_encoder(
    ep: &EncoderParams,
    rows: &Rows<'_>,
    refit: bool,
    progress: Progress<'_>,
) -> Result<EncoderStep> {
    let start = Instant::now();
    let base = Encoder::load_precision(&ep.dir, ep.max_len, ep.precision)?;
    let total = rows.train_texts.len() + rows.valid_texts.len() + rows.oos_texts.len();
    let (encoder, fine_tune, xt, xv, xo) = match &ep.fine_tune {
        None => {
            let mut cache = EmbeddingCache::open(&base)?;
            let mut tick = embedding_ticks(progress, total, false);
            let xt = cache.embed(&base, &rows.train_texts, &mut tick)?;
            let xv = cache.embed(&base, &rows.valid_texts, &mut tick)?;
            let xo = cache.embed(&base, &rows.oos_texts, &mut tick)?;
            (base, None, xt, xv, xo)
        }
        Some(fp) => {
            let (tuned, summary, scratch) = fine_tune_encoder(ep, fp, base, rows, progress)?;
            // Fine-tuned weights are used once, so their embeddings skip the shared cache.
            let mut tick = embedding_ticks(progress, total, true);
            let batch = super::encoder::DEFAULT_BATCH;
            let xt = tuned.embed(&rows.train_texts, batch, &mut tick)?;
            let xv = tuned.embed(&rows.valid_texts, batch, &mut tick)?;
            let xo = if rows.oos_texts.is_empty() {
                Vec::new()
            } else {
                tuned.embed(&rows.oos_texts, batch, &mut tick)?
            };
            (tuned, Some((summary, scratch)), xt, xv, xo)
        }
    };
    let (dim, c) = (encoder.dim, rows.n_classes());
    let (y_train, y_valid) = (&rows.y_train, &rows.y_valid);
    progress(Step::EncoderHead);
    let head = match ep.head {
        HeadKind::Logistic => Head::Logistic(LogisticHead::fit(
            &xt,
            dim,
            y_train,
            c,
            ep.alpha,
            ep.max_iter,
        )?),
        HeadKind::Mlp => Head::Mlp(MlpHead::fit(
            &xt,
            dim,
            y_train,
            (&xv, y_valid),
            c,
            &MlpParams::default(),
        )?),
    };
    let valid_logits = head.logits(&xv)?;
    let temperature = calibration::fit_temperature(&valid_logits, y_valid, c);
    let valid_probs = calibration::softmax_rows(&valid_logits, c, temperature.temperature);
    let oos_probs = if xo.is_empty() {
        Vec::new()
    } else {
        calibration::softmax_rows(&head.logits(&xo)?, c, temperature.temperature)
    };
    // The MLP is early-stopped on the validation rows, so only the logistic head is refit.
    let head = match (refit, head) {
        (true, Head::Logistic(_)) => {
            let x_all: Vec<f32> = xt.iter().chain(&xv).copied().collect();
            let y_all: Vec<u32> = y_train.iter().chain(y_valid).copied().collect();
            Head::Logistic(LogisticHead::fit(
                &x_all,
                dim,
                &y_all,
                c,
                ep.alpha,
                ep.max_iter,
            )?)
        }
        (_, head) => head,
    };
    Ok(EncoderStep {
        fine_tune,
        model: EncoderClassifier {
            encoder,
            head,
            batch_size: super::encoder::DEFAULT_BATCH,
        },
        temperature,
        valid_logits,
        valid_probs,
        train_embeddings: xt,
        valid_embeddings: xv,
        oos_embeddings: xo,
        oos_probs,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A callback for `embed` that reports texts embedded so far out of `total`.
fn embedding_ticks<'p>(
    progress: &'p mut dyn FnMut(Step<'_>),
    total: usize,
    tuned: bool,
) -> impl FnMut(usize) + 'p {
    let mut done = 0usize;
    move |n| {
        done += n;
        progress(Step::Encoding { done, total, tuned })
    }
}

/// Fine-tunes the encoder on the training rows, starting its head from the logistic head
/// fitted on the frozen encoder (`warm_start`) or from zeros, and loads the result.
fn fine_tune_encoder(
    ep: &EncoderParams,
    fp: &FineTuneParams,
    base: Encoder,
    rows: &Rows<'_>,
    progress: Progress<'_>,
) -> Result<(Encoder, FineTuneSummary, TempDir)> {
    let t0 = Instant::now();
    let c = rows.n_classes();
    let init = if fp.warm_start {
        // The frozen encoder's embeddings are needed only for this warm start.
        let x0 = {
            let mut cache = EmbeddingCache::open(&base)?;
            let mut tick = embedding_ticks(progress, rows.train_texts.len(), false);
            cache.embed(&base, &rows.train_texts, &mut tick)?
        };
        progress(Step::EncoderHead);
        LogisticHead::fit(&x0, base.dim, &rows.y_train, c, ep.alpha, ep.max_iter)?
    } else {
        LogisticHead {
            dim: base.dim,
            n_classes: c,
            weight: vec![0.0; base.dim * c],
            bias: vec![0.0; c],
        }
    };
    let ft = fine_tune(
        &ep.dir,
        fp,
        FtData {
            texts: &rows.train_texts,
            labels: &rows.y_train,
        },
        FtData {
            texts: &rows.valid_texts,
            labels: &rows.y_valid,
        },
        HeadInit {
            weight: &init.weight,
            bias: &init.bias,
            n_classes: c,
        },
        |f| {
            progress(Step::FineTune {
                progress: f,
                epochs: fp.epochs,
            })
        },
    )?;
    let tuned = Encoder::load_precision(ft.dir.path(), ep.max_len, ep.precision)?;
    let summary = FineTuneSummary {
        base: ep.dir.display().to_string(),
        base_sha256: base.weights_sha256.clone(),
        params: fp.clone(),
        best_epoch: ft.best_epoch,
        steps: ft.steps,
        history: ft.history,
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((tuned, summary, ft.dir))
}

/// How the components are combined on validation: the encoder's weight, the ensemble's
/// temperature, the calibrated and uncalibrated mixed probabilities, and the cascade.
struct Ensemble {
    weight: f32,
    temperature: f32,
    /// The linear component's calibrated validation probabilities.
    linear_probs: Vec<f32>,
    /// The ensemble's calibrated validation probabilities (the linear ones when alone).
    probs: Vec<f32>,
    /// The same mix before any temperature.
    raw_probs: Vec<f32>,
    cascade: Option<CascadeChoice>,
}

/// Chooses the encoder's weight (the mix of calibrated probabilities with the lowest validation
/// NLL, on a grid of 21 weights), re-tempers the mix, and picks the cascade threshold.
fn fit_ensemble(linear: &LinearStep, encoder: Option<&EncoderStep>, rows: &Rows<'_>) -> Ensemble {
    let (c, y) = (rows.n_classes(), &rows.y_valid);
    let linear_probs =
        calibration::softmax_rows(&linear.valid_logits, c, linear.temperature.temperature);
    let raw_linear = || calibration::softmax_rows(&linear.valid_logits, c, 1.0);
    let Some(e) = encoder else {
        return Ensemble {
            weight: 0.0,
            temperature: 1.0,
            probs: linear_probs.clone(),
            linear_probs,
            raw_probs: raw_linear(),
            cascade: None,
        };
    };
    let mut best = (f64::INFINITY, 0.0f32);
    for k in 0..=20 {
        let w = k as f32 / 20.0;
        let nll = metrics::mean_nll(&mix(&linear_probs, &e.valid_probs, w), y, c);
        if nll < best.0 - 1e-12 {
            best = (nll, w);
        }
    }
    let weight = best.1;
    // Re-tempering the mix is softmax(ln p / t) (as `super::recalibrate` does when scoring),
    // over the same logs the temperature is fitted on.
    let ens_logits: Vec<f32> = mix(&linear_probs, &e.valid_probs, weight)
        .iter()
        .map(|p| p.max(1e-12).ln())
        .collect();
    let temperature = calibration::fit_temperature(&ens_logits, y, c).temperature;
    let probs = calibration::softmax_rows(&ens_logits, c, temperature);
    let raw_probs = mix(
        &raw_linear(),
        &calibration::softmax_rows(&e.valid_logits, c, 1.0),
        weight,
    );
    let cascade = choose_cascade(&linear_probs, &probs, y, c);
    Ensemble {
        weight,
        temperature,
        linear_probs,
        probs,
        raw_probs,
        cascade: Some(cascade),
    }
}

/// The ensemble's answer on each validation row, with no threshold.
struct Answers {
    decisions: Vec<Decision>,
    confidence: Vec<f32>,
    correct: Vec<bool>,
}

/// Decides every validation row and picks the abstain threshold: the lowest confidence whose
/// answered rows keep precision >= `target`.
fn choose_threshold(probs: &[f32], y: &[u32], c: usize, target: f64) -> (Answers, ThresholdChoice) {
    let decisions: Vec<Decision> = probs.chunks(c).map(|row| decide(row, 0.0, 1)).collect();
    let confidence: Vec<f32> = decisions.iter().map(|d| d.confidence).collect();
    let correct: Vec<bool> = decisions
        .iter()
        .zip(y)
        .map(|(d, &l)| d.best == l as usize)
        .collect();
    let threshold = calibration::choose_threshold(&confidence, &correct, target);
    let answers = Answers {
        decisions,
        confidence,
        correct,
    };
    (answers, threshold)
}

/// The novelty score as fitted, with the held-out standardised scores of the validation and
/// out-of-scope rows.
struct NoveltyFit {
    novelty: Novelty,
    valid: Vec<f32>,
    oos: Vec<f32>,
    /// The out-of-scope affinity of the validation and out-of-scope rows (each of the latter
    /// leaving itself out), when there is one.
    affinity: Option<(Vec<f32>, Vec<f32>)>,
}

/// Fits the novelty score: with an encoder, the cosine distance of the embedding to the nearest
/// training row, or the relative Mahalanobis distance when out-of-scope rows say it separates
/// them better; without, the linear model's negative largest logit (the best of the linear
/// model's own scores measured on BANKING77: see README). Standardised by the mean and standard
/// deviation of the held-out validation rows' scores. With an encoder
/// and at least [`super::abstain::MIN_OUT_OF_SCOPE`] out-of-scope rows, also the out-of-scope
/// affinity: their embeddings against the training rows' class centroids.
fn fit_novelty(
    linear: &LinearStep,
    encoder: Option<&EncoderStep>,
    rows: &Rows<'_>,
) -> Result<NoveltyFit> {
    let c = rows.n_classes();
    let (scorer, valid, oos) = match encoder {
        Some(e) => {
            // Two candidates: the nearest training row (best on BANKING77's standard split) and
            // the relative Mahalanobis distance. With out-of-scope rows, the one that separates
            // them from the validation rows better is kept.
            let dim = e.model.encoder.dim;
            let nearest = NearestRow::fit(&e.train_embeddings, dim);
            let (nv, no) = (
                nearest.scores(&e.valid_embeddings),
                nearest.scores(&e.oos_embeddings),
            );
            if rows.oos_texts.len() < super::abstain::MIN_OUT_OF_SCOPE {
                (NoveltyScorer::NearestRow(nearest), nv, no)
            } else {
                let m = Mahalanobis::fit(
                    &e.train_embeddings,
                    dim,
                    &rows.y_train,
                    c,
                    NOVELTY_SHRINKAGE,
                )
                .map_err(|why| Error::Training(format!("novelty score: {why}")))?;
                let (mv, mo) = (m.scores(&e.valid_embeddings), m.scores(&e.oos_embeddings));
                let separation = |v: &[f32], o: &[f32]| {
                    let wide = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<f64>>();
                    super::abstain::auroc(&wide(v), &wide(o))
                };
                if separation(&mv, &mo) > separation(&nv, &no) {
                    (NoveltyScorer::RelativeMahalanobis(m), mv, mo)
                } else {
                    (NoveltyScorer::NearestRow(nearest), nv, no)
                }
            }
        }
        None => (
            NoveltyScorer::MaxLogit,
            super::neg_max_logit(&linear.valid_logits, c),
            super::neg_max_logit(&linear.oos_logits, c),
        ),
    };
    let (mean, sd) = super::abstain::mean_sd(valid.iter().map(|&v| v as f64));
    let affinity = encoder
        .filter(|_| rows.oos_texts.len() >= super::abstain::MIN_OUT_OF_SCOPE)
        .map(|e| {
            let dim = e.model.encoder.dim;
            Affinity::fit(
                &e.train_embeddings,
                &rows.y_train,
                c,
                dim,
                e.oos_embeddings.clone(),
            )
        });
    let affinity_scores = affinity.as_ref().zip(encoder).map(|(a, e)| {
        (
            a.scores(&e.valid_embeddings, false),
            a.scores(&e.oos_embeddings, true),
        )
    });
    let novelty = Novelty {
        scorer,
        center: mean as f32,
        scale: sd as f32,
        affinity,
    };
    let z = |raw: Vec<f32>| raw.into_iter().map(|r| novelty.standardise(r)).collect();
    Ok(NoveltyFit {
        valid: z(valid),
        oos: z(oos),
        affinity: affinity_scores,
        novelty,
    })
}

/// Shrinkage of the novelty score's covariances towards a multiple of the identity: sentence
/// embeddings' covariance is singular without it.
pub const NOVELTY_SHRINKAGE: f64 = 0.01;

/// The rule's inputs for each validation row and each out-of-scope row, as the held-out fit
/// answers them — the same scores `Model::predict` gives a new query.
fn held_out_scores(
    linear: &LinearStep,
    encoder: Option<&EncoderStep>,
    ensemble: &Ensemble,
    novelty: &NoveltyFit,
    rows: &Rows<'_>,
) -> (Vec<Scores>, Vec<Scores>) {
    let c = rows.n_classes();
    let scores = |probs: &[f32],
                  parts: Option<(&[f32], &[f32])>,
                  novelty: &[f32],
                  affinity: Option<&Vec<f32>>| {
        probs
            .chunks(c)
            .enumerate()
            .map(|(i, row)| {
                let d = decide(row, 0.0, 1);
                let span = i * c..(i + 1) * c;
                Scores {
                    confidence: d.confidence,
                    margin: d.margin,
                    disagreement: parts
                        .map(|(a, b)| super::total_variation(&a[span.clone()], &b[span.clone()])),
                    novelty: novelty.get(i).copied(),
                    affinity: affinity.map(|a| a[i]),
                }
            })
            .collect::<Vec<_>>()
    };
    let valid = scores(
        &ensemble.probs,
        encoder.map(|e| (&ensemble.linear_probs[..], &e.valid_probs[..])),
        &novelty.valid,
        novelty.affinity.as_ref().map(|a| &a.0),
    );
    let t = linear.temperature.temperature;
    let oos_linear = calibration::softmax_rows(&linear.oos_logits, c, t);
    let oos = match encoder {
        None => scores(&oos_linear, None, &novelty.oos, None),
        Some(e) => {
            let logs: Vec<f32> = mix(&oos_linear, &e.oos_probs, ensemble.weight)
                .iter()
                .map(|p| p.max(1e-12).ln())
                .collect();
            let probs = calibration::softmax_rows(&logs, c, ensemble.temperature);
            scores(
                &probs,
                Some((&oos_linear, &e.oos_probs)),
                &novelty.oos,
                novelty.affinity.as_ref().map(|a| &a.1),
            )
        }
    };
    (valid, oos)
}

/// The class index of the out-of-scope label when it is trained as a class.
fn oos_class(labels: &[String], oos: &OutOfScope) -> Option<usize> {
    oos.as_class
        .then(|| labels.iter().position(|l| *l == oos.label))
        .flatten()
}

/// Everything fitted, for measuring.
struct Fitted<'a> {
    rows: &'a Rows<'a>,
    linear: &'a LinearStep,
    encoder: Option<&'a EncoderStep>,
    ensemble: &'a Ensemble,
}

/// Measures the fitted model on the validation rows.
fn validation_metrics(
    f: Fitted<'_>,
    answers: &Answers,
    refused: &[bool],
    refit: bool,
) -> ValidationMetrics {
    let (rows, ens) = (f.rows, f.ensemble);
    let (c, y) = (rows.n_classes(), &rows.y_valid);
    let scored: Vec<Scored> = answers
        .decisions
        .iter()
        .zip(y)
        .zip(refused)
        .map(|((d, &l), &abstained)| Scored {
            truth: rows.labels[l as usize].clone(),
            predicted: rows.labels[d.best].clone(),
            confidence: d.confidence,
            abstained,
        })
        .collect();
    let (_, macro_f1) = metrics::per_intent(&scored);
    let answered: Vec<&Scored> = scored.iter().filter(|s| !s.abstained).collect();
    let (_, ece) = metrics::reliability(&answers.confidence, &answers.correct, metrics::ECE_BINS);
    let raw_conf: Vec<f32> = ens
        .raw_probs
        .chunks(c)
        .map(|row| row.iter().fold(0f32, |a, &b| a.max(b)))
        .collect();
    let (_, ece_raw) = metrics::reliability(&raw_conf, &answers.correct, metrics::ECE_BINS);
    let accuracy_of = |pr: &[f32]| {
        pr.chunks(c)
            .zip(y)
            .filter(|(row, &l)| decide(row, 0.0, 1).best == l as usize)
            .count() as f64
            / y.len() as f64
    };
    let encoder = f.encoder.map(|e| {
        let cascade = ens.cascade.as_ref().expect("an ensemble has a cascade");
        EncoderMetrics {
            valid_accuracy_encoder: accuracy_of(&e.valid_probs),
            ensemble_weight_encoder: ens.weight as f64,
            ensemble_temperature: ens.temperature as f64,
            cascade_threshold: cascade.threshold as f64,
            valid_cascade_accuracy: cascade.accuracy,
            valid_cascade_encoder_fraction: cascade.encoder_fraction,
            encoder_seconds: e.seconds,
            fine_tune: e.fine_tune.as_ref().map(|(ft, _)| FineTuneMetrics {
                fine_tune_seconds: ft.seconds,
                fine_tune_best_epoch: ft.best_epoch,
                fine_tune_valid_accuracy: ft
                    .history
                    .iter()
                    .find(|h| h.epoch == ft.best_epoch)
                    .map(|h| h.valid_accuracy),
            }),
        }
    });
    ValidationMetrics {
        valid_accuracy: metrics::accuracy(&scored),
        valid_macro_f1: macro_f1,
        valid_ece: ece,
        valid_ece_uncalibrated: ece_raw,
        valid_nll: metrics::mean_nll(&ens.probs, y, c),
        valid_nll_uncalibrated: metrics::mean_nll(&ens.raw_probs, y, c),
        valid_coverage: answered.len() as f64 / y.len().max(1) as f64,
        valid_precision_answered: if answered.is_empty() {
            f64::NAN
        } else {
            answered.iter().filter(|s| s.truth == s.predicted).count() as f64
                / answered.len() as f64
        },
        valid_accuracy_linear: accuracy_of(&ens.linear_probs),
        n_features: f.linear.n_features,
        refit,
        encoder,
    }
}

/// Most accuracy a cascade may give up against the full ensemble on validation.
const CASCADE_MAX_LOSS: f64 = 0.003;

struct CascadeChoice {
    threshold: f32,
    accuracy: f64,
    encoder_fraction: f64,
}

/// The lowest linear-confidence threshold (so the most queries answered by the linear model
/// alone) whose cascade stays within `CASCADE_MAX_LOSS` of the ensemble's validation accuracy.
fn choose_cascade(linear: &[f32], ensemble: &[f32], y: &[u32], c: usize) -> CascadeChoice {
    let n = y.len().max(1) as f64;
    let lin: Vec<(f32, bool)> = linear
        .chunks(c)
        .zip(y)
        .map(|(r, &l)| {
            let d = decide(r, 0.0, 1);
            (d.confidence, d.best == l as usize)
        })
        .collect();
    let ens: Vec<bool> = ensemble
        .chunks(c)
        .zip(y)
        .map(|(r, &l)| decide(r, 0.0, 1).best == l as usize)
        .collect();
    let ens_acc = ens.iter().filter(|x| **x).count() as f64 / n;
    let score = |t: f32| {
        let mut right = 0usize;
        let mut routed = 0usize;
        for ((conf, lin_ok), ens_ok) in lin.iter().zip(&ens) {
            if *conf >= t {
                right += *lin_ok as usize;
            } else {
                routed += 1;
                right += *ens_ok as usize;
            }
        }
        (right as f64 / n, routed as f64 / n)
    };
    let mut candidates: Vec<f32> = lin.iter().map(|x| x.0).collect();
    candidates.push(0.0);
    candidates.sort_by(f32::total_cmp);
    candidates.dedup();
    for t in candidates {
        let (acc, frac) = score(t);
        if acc >= ens_acc - CASCADE_MAX_LOSS {
            return CascadeChoice {
                threshold: t,
                accuracy: acc,
                encoder_fraction: frac,
            };
        }
    }
    // Nothing but the full ensemble holds the line: route everything.
    let (acc, frac) = score(f32::INFINITY);
    CascadeChoice {
        threshold: f32::INFINITY,
        accuracy: acc,
        encoder_fraction: frac,
    }
}

fn mix(a: &[f32], b: &[f32], w: f32) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(x, y)| (1.0 - w) * x + w * y)
        .collect()
}

impl Trained {
    /// Writes the bundle atomically to `dir`.
    pub fn save(
        &self,
        dir: &Path,
        name: &str,
        force: bool,
        seed: u64,
        args: serde_json::Value,
        masking: crate::text::pii::Masking,
    ) -> Result<Manifest> {
        // A local bundle's version is its creation time: one reading for both fields.
        let created_at = crate::util::now_rfc3339();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            cqr_version: env!("CARGO_PKG_VERSION").to_string(),
            name: name.to_string(),
            version: created_at.clone(),
            created_at,
            labels: self.labels.clone(),
            components: Vec::new(),
            abstain: self.threshold.clone(),
            ensemble_temperature: self.ensemble_temperature,
            cascade_threshold: self.cascade_threshold,
            masking,
            checksum: String::new(),
            training: TrainingInfo {
                seed,
                args,
                train_data: self.train_data.clone(),
                valid_data: self.valid_data.clone(),
                seconds: self.seconds,
            },
            metrics: self.metrics.entries().into_iter().collect(),
            profile: None,
            novelty: None,
            rule: Some(self.rule.clone()),
            out_of_scope: Some(self.out_of_scope.clone()),
        };
        bundle::save(dir, force, manifest, |tmp| {
            let mut linear =
                bundle::write_linear(tmp, &self.linear, self.temperature.temperature, &self.path)?;
            linear.weight = 1.0 - self.encoder_weight;
            let mut components = vec![linear];
            if let Some((enc, t)) = &self.encoder {
                components.push(bundle::write_encoder(
                    tmp,
                    enc,
                    t.temperature,
                    self.encoder_weight,
                    self.encoder_alpha,
                    self.fine_tune.as_ref(),
                )?);
            }
            Ok(bundle::Filled {
                components,
                profile: Some(bundle::write_profile(tmp, PROFILE_SOURCE, &self.profile)?),
                novelty: Some(bundle::write_novelty(
                    tmp,
                    &self.novelty,
                    NOVELTY_SHRINKAGE,
                )?),
            })
        })
    }

    /// The run's single-valued metrics as (name, value): the validation metrics, then the
    /// linear temperature, the abstain threshold and the training time.
    pub fn run_metrics(&self) -> Vec<(String, f64)> {
        let mut out = self.metrics.entries();
        out.extend(
            [
                ("temperature", self.temperature.temperature as f64),
                ("abstain_threshold", self.threshold.threshold as f64),
                ("abstain_rule_threshold", self.rule.threshold),
                (
                    "abstain_in_scope_rejection",
                    self.rule.fit.in_scope_rejection,
                ),
                ("out_of_scope_rows", self.oos_rows as f64),
                ("train_seconds", self.seconds),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        if let Some(r) = self.rule.fit.out_of_scope_recall {
            out.push(("abstain_out_of_scope_recall".to_string(), r));
        }
        out
    }

    /// What the user should know about the training data or the threshold.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.dropped_valid > 0 {
            out.push(format!(
                "{} validation rows carry labels never seen in training and were left out of calibration",
                self.dropped_valid
            ));
        }
        let f = &self.rule.fit;
        if !f.target_met {
            out.push(format!(
                "no abstain threshold reaches validation precision {}; the rule keeps the best \
                 precision ({}); consider a lower --target-precision",
                f.target_precision,
                pct(f.precision_answered)
            ));
        }
        if f.out_of_scope_rows > 0 && f.out_of_scope_rows < super::abstain::MIN_OUT_OF_SCOPE {
            out.push(format!(
                "only {} out-of-scope rows (label `{}`): the rule keeps its default weights below {}",
                f.out_of_scope_rows,
                self.out_of_scope.label,
                super::abstain::MIN_OUT_OF_SCOPE
            ));
        }
        out
    }

    /// What the summary says of the abstain rule: the rule, what it refuses on validation, and
    /// the trade-off between in-scope rejection and out-of-scope recall.
    fn abstain_lines(&self) -> Vec<String> {
        let (r, f) = (&self.rule, &self.rule.fit);
        let novelty = match self.novelty.scorer {
            NoveltyScorer::NearestRow(_) => "cosine distance to the nearest training row",
            NoveltyScorer::RelativeMahalanobis(_) => {
                "relative Mahalanobis distance of the embedding"
            }
            NoveltyScorer::MaxLogit => "the linear model's negative largest logit",
        };
        let fitted = match f.method {
            FitMethod::OutOfScope => format!(
                "weights fitted on {} out-of-scope rows (`{}`)",
                f.out_of_scope_rows, self.out_of_scope.label
            ),
            FitMethod::Default => "default weights".to_string(),
        };
        let mut out = vec![
            format!(
                "  abstain     when {} > {:.3} ({fitted}; novelty = {novelty})",
                r.describe(),
                r.threshold
            ),
            format!(
                "              refuses {} of in-scope validation rows (at most {} unless precision needs more), precision answered {}",
                pct(f.in_scope_rejection),
                pct(f.max_reject),
                pct(f.precision_answered)
            ),
        ];
        match f.out_of_scope_recall {
            Some(recall) => {
                out.push(format!(
                    "              recalls {} of the {} out-of-scope rows (the rows it was fitted on)",
                    pct(recall),
                    f.out_of_scope_rows
                ));
                let cells = |g: &dyn Fn(&TradeoffPoint) -> String| {
                    f.tradeoff.iter().map(g).map(|c| format!("{c:>7}")).collect::<String>()
                };
                out.push(format!(
                    "  trade-off   in-scope refused   {}",
                    cells(&|p| pct_short(p.in_scope_rejection))
                ));
                out.push(format!(
                    "              out-of-scope found {}",
                    cells(&|p| pct_short(p.out_of_scope_recall))
                ));
            }
            None if self.out_of_scope.as_class => {}
            None => out.push(format!(
                "              no out-of-scope rows: label some `{}` in the training or validation data to fit the rule on them",
                self.out_of_scope.label
            )),
        }
        out
    }

    /// The summary `cqr train` prints once the bundle described by `manifest` is in `dir`.
    pub fn summary(&self, manifest: &Manifest, dir: &Path) -> String {
        let m = &self.metrics;
        let spec = self.linear.vectorizer.spec();
        let t = &self.temperature;
        let chosen = self.path.iter().find(|pp| pp.l2 == self.linear.l2);
        let lines = [
            format!("trained {} → {}", manifest.name, dir.display()),
            format!(
                "  data        {} rows for training, {} for validation, {} intents{}",
                self.train_data.rows,
                self.valid_data.rows,
                self.labels.len(),
                if self.oos_rows > 0 {
                    format!("; {} out of scope", self.oos_rows)
                } else {
                    String::new()
                }
            ),
            format!(
                "  features    {} n-grams (word {}–{}, char {}–{}, min_df {})",
                m.n_features,
                spec.word_ngrams[0],
                spec.word_ngrams[1],
                spec.char_ngrams[0],
                spec.char_ngrams[1],
                spec.min_df
            ),
            format!(
                "  linear      L2 {:.0e} chosen on validation ({} iterations){}",
                self.linear.l2,
                chosen.map(|c| c.iterations).unwrap_or(0),
                if m.refit {
                    ", then refit on all rows"
                } else {
                    ""
                }
            ),
            format!(
                "  calibration temperature {:.3} (validation NLL {:.4} → {:.4}, ECE {:.4} → {:.4})",
                t.temperature, t.nll_before, t.nll_after, m.valid_ece_uncalibrated, m.valid_ece
            ),
        ];
        let abstain = self.abstain_lines();
        let ensemble = m.encoder.as_ref().map(|e| {
            format!(
                "  ensemble    encoder weight {:.2}, temperature {:.3}; validation accuracy linear {}, encoder {}",
                e.ensemble_weight_encoder,
                e.ensemble_temperature,
                pct(m.valid_accuracy_linear),
                pct(e.valid_accuracy_encoder)
            )
        });
        let tail = [
            format!(
                "  validation  accuracy {}, macro-F1 {:.4}",
                pct(m.valid_accuracy),
                m.valid_macro_f1
            ),
            format!("  time        {:.1} s", self.seconds),
            format!("  checksum    {}", manifest.checksum),
        ];
        lines
            .into_iter()
            .chain(abstain)
            .chain(ensemble)
            .chain(tail)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::read::RecordId;
    use crate::settings::defaults;
    use serde_json::Value;

    fn rec(text: &str, label: &str, row: u64) -> Record {
        Record {
            line: Some(row + 1),
            row,
            id: RecordId::Row(row),
            text: text.into(),
            label: Some(label.into()),
            keep: vec![],
            skip: None,
        }
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let records: Vec<Record> = (0..100)
            .map(|i| rec(&format!("t{i}"), if i % 4 == 0 { "a" } else { "b" }, i))
            .collect();
        let (tr, va) = stratified_split(&records, 0.2, 7);
        assert_eq!(tr.len() + va.len(), 100);
        assert_eq!(
            va.iter()
                .filter(|r| r.label.as_deref() == Some("a"))
                .count(),
            5
        );
        assert_eq!(
            va.iter()
                .filter(|r| r.label.as_deref() == Some("b"))
                .count(),
            15
        );
        let (_, va2) = stratified_split(&records, 0.2, 7);
        assert_eq!(va, va2);
        let (_, va3) = stratified_split(&records, 0.2, 8);
        assert_ne!(va, va3);
    }

    #[test]
    fn invalid_params_are_refused_before_work() {
        let p = TrainParams {
            seed: 1,
            valid_split: 1.5,
            target_precision: 0.95,
            max_reject: defaults::MAX_REJECT,
            out_of_scope: OutOfScope {
                label: defaults::OOS_LABEL.into(),
                as_class: false,
            },
            features: defaults::feature_spec(),
            linear: defaults::linear_params(),
            refit: true,
            encoder: None,
        };
        assert_eq!(
            p.broken_rule(),
            Some(Invalid {
                param: Param::ValidSplit,
                why: "must be in (0, 1)"
            })
        );
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "valid_split: must be in (0, 1)"
        );
    }

    #[test]
    fn progress_says_what_it_does_with_units_and_no_nan() {
        let linear = Step::Linear {
            strength: "l2=1e-4",
            index: 3,
            of: 7,
            iteration: 12,
            max_iter: 300,
            loss: 0.41234,
        };
        assert_eq!(
            linear.to_string(),
            "fitting linear model (l2=1e-4, 3 of 7): L-BFGS iteration 12/300, loss 0.4123"
        );
        let before_any_loss = Step::Refit {
            iteration: 0,
            max_iter: 300,
            loss: f64::NAN,
        };
        assert_eq!(
            before_any_loss.to_string(),
            "refitting linear model on all rows: L-BFGS iteration 0/300"
        );
        assert_eq!(before_any_loss.loss(), None);
        let ft = FtProgress {
            epoch: 1,
            step: 5,
            total_steps: 40,
            loss: f64::NAN,
            eta_seconds: 90.0,
        };
        let steps = [
            Step::Features { texts: 1296 },
            Step::Encoding {
                done: 64,
                total: 1440,
                tuned: false,
            },
            Step::EncoderHead,
            Step::FineTune {
                progress: &ft,
                epochs: 4,
            },
            before_any_loss,
            linear,
        ];
        for s in steps {
            let text = s.to_string();
            assert!(!text.contains("NaN"), "{text}");
            assert!(!text.contains(" 0 loss"), "{text}");
        }
        assert_eq!(
            Step::Encoding {
                done: 64,
                total: 1440,
                tuned: true
            }
            .to_string(),
            "embedding with the fine-tuned encoder: 64/1440 texts"
        );
    }

    #[test]
    fn metric_entries_are_the_serialised_fields() {
        let m = ValidationMetrics {
            valid_accuracy: 0.9,
            valid_macro_f1: 0.8,
            valid_ece: 0.05,
            valid_ece_uncalibrated: 0.2,
            valid_nll: 0.3,
            valid_nll_uncalibrated: 0.6,
            valid_coverage: 1.0,
            valid_precision_answered: 0.9,
            valid_accuracy_linear: 0.88,
            n_features: 1234,
            refit: true,
            encoder: Some(EncoderMetrics {
                valid_accuracy_encoder: 0.91,
                ensemble_weight_encoder: 0.4,
                ensemble_temperature: 1.1,
                cascade_threshold: 0.7,
                valid_cascade_accuracy: 0.9,
                valid_cascade_encoder_fraction: 0.3,
                encoder_seconds: 12.0,
                fine_tune: Some(FineTuneMetrics {
                    fine_tune_seconds: 100.0,
                    fine_tune_best_epoch: 2,
                    fine_tune_valid_accuracy: Some(0.92),
                }),
            }),
        };
        let json = serde_json::to_value(&m).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let entries = m.entries();
        let names: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, keys);
        assert_eq!(
            names,
            [
                "valid_accuracy",
                "valid_macro_f1",
                "valid_ece",
                "valid_ece_uncalibrated",
                "valid_nll",
                "valid_nll_uncalibrated",
                "valid_coverage",
                "valid_precision_answered",
                "valid_accuracy_linear",
                "n_features",
                "refit",
                "valid_accuracy_encoder",
                "ensemble_weight_encoder",
                "ensemble_temperature",
                "cascade_threshold",
                "valid_cascade_accuracy",
                "valid_cascade_encoder_fraction",
                "encoder_seconds",
                "fine_tune_seconds",
                "fine_tune_best_epoch",
                "fine_tune_valid_accuracy"
            ]
        );
        for ((k, v), (_, e)) in json.as_object().unwrap().iter().zip(m.entries()) {
            match v {
                Value::Bool(b) => assert_eq!(*b as u8 as f64, e, "{k}"),
                _ => assert_eq!(v.as_f64().unwrap(), e, "{k}"),
            }
        }
        // A cascade that routes everything has an infinite threshold; JSON would lose it.
        let mut routes_all = m.clone();
        let e = routes_all.encoder.as_mut().unwrap();
        e.cascade_threshold = f64::INFINITY;
        e.fine_tune.as_mut().unwrap().fine_tune_valid_accuracy = None;
        routes_all.valid_macro_f1 = f64::NAN;
        let got = routes_all.entries();
        assert_eq!(got.len(), 20, "a missing fine-tune accuracy is left out");
        assert_eq!(got[14], ("cascade_threshold".to_string(), f64::INFINITY));
        assert!(got[1].1.is_nan());
        let linear_only = ValidationMetrics { encoder: None, ..m };
        assert_eq!(linear_only.entries().len(), 11);
        assert_eq!(
            serde_json::to_value(&linear_only)
                .unwrap()
                .as_object()
                .unwrap()
                .len(),
            11
        );
    }
}
