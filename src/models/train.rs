//! Training: validated parameters in, a fitted and calibrated model out. Splits off validation
//! (stratified, seeded), fits the featuriser and the linear component, calibrates the temperature
//! on validation, picks the abstain threshold, measures validation metrics, and finally writes
//! the bundle. Never reads data files or prints; progress goes through a callback.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;

use super::bundle::{self, DataFingerprint, Manifest, TrainingInfo, FORMAT_VERSION};
use super::calibration::{self, TemperatureFit, ThresholdChoice};
use super::encoder::{EmbeddingCache, Encoder, EncoderClassifier};
use super::finetune::{fine_tune, FineTuneParams, FineTuneSummary, FtData, HeadInit};
use super::heads::{Head, LogisticHead, MlpHead, MlpParams};
use super::linear::{self, FittedLinear, Labelled, LinearParams, PathPoint};
use super::{decide, Classifier};
use crate::error::{Error, Result};
use crate::eval::metrics::{self, Scored};
use crate::io::atomic::TempDir;
use crate::io::read::Record;
use crate::text::{FeatureSpec, Vectorizer};
use crate::util::{sha256_hex, Rng};

/// Training parameters as given, before validation.
#[derive(Debug, Clone)]
pub struct TrainParams {
    pub seed: u64,
    /// Share of the training data held out for validation when no validation set is given.
    pub valid_split: f64,
    pub target_precision: f64,
    pub features: FeatureSpec,
    pub linear: LinearParams,
    /// After choosing the L2 strength, refit on training + validation rows (the temperature and
    /// threshold stay those measured on the held-out fit).
    pub refit: bool,
    /// The encoder component, when asked for.
    pub encoder: Option<EncoderParams>,
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
}

/// The encoder component's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeadKind {
    /// Multinomial logistic regression (linfa).
    Logistic,
    /// One hidden layer with dropout (candle); enables MC dropout.
    Mlp,
}

/// Parameters that passed validation; only these can start the expensive work.
#[derive(Debug, Clone)]
pub struct ValidTrainParams(TrainParams);

impl TrainParams {
    pub fn validate(self) -> Result<ValidTrainParams> {
        if !(self.valid_split > 0.0 && self.valid_split < 1.0) {
            return Err(Error::Usage(format!(
                "--valid-split must be in (0, 1); got {}",
                self.valid_split
            )));
        }
        if !(self.target_precision > 0.0 && self.target_precision <= 1.0) {
            return Err(Error::Usage(format!(
                "--target-precision must be in (0, 1]; got {}",
                self.target_precision
            )));
        }
        self.features.validate()?;
        if let Some(ft) = self.encoder.as_ref().and_then(|e| e.fine_tune.as_ref()) {
            ft.validate()?;
        }
        if self.linear.max_iter == 0 {
            return Err(Error::Usage("max_iter must be at least 1".into()));
        }
        if self.linear.l2_grid.is_empty()
            || self
                .linear
                .l2_grid
                .iter()
                .any(|l| !(*l >= 0.0 && l.is_finite()))
        {
            return Err(Error::Usage(
                "the L2 grid needs at least one finite, non-negative strength".into(),
            ));
        }
        Ok(ValidTrainParams(self))
    }
}

impl ValidTrainParams {
    pub fn params(&self) -> &TrainParams {
        &self.0
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
    pub threshold: ThresholdChoice,
    pub metrics: BTreeMap<String, f64>,
    pub train_data: DataFingerprint,
    pub valid_data: DataFingerprint,
    pub seconds: f64,
    /// Validation rows dropped because their label never occurs in training.
    pub dropped_valid: usize,
}

pub fn fingerprint(source: &str, records: &[&Record]) -> DataFingerprint {
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
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
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
        .filter(|i| !valid_set.contains(i))
        .map(|i| &records[i])
        .collect();
    let valid = valid_set.iter().map(|&i| &records[i]).collect();
    (train, valid)
}

/// Progress callback: (stage, step, loss).
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, f64);

/// Fits, calibrates and measures a model.
pub fn train(
    params: &ValidTrainParams,
    train: &[&Record],
    valid: &[&Record],
    sources: (&str, &str),
    progress: Progress<'_>,
) -> Result<Trained> {
    let p = params.params();
    let start = Instant::now();
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
    let y_train: Vec<u32> = train
        .iter()
        .map(|r| index[r.label.as_deref().expect("labelled")])
        .collect();
    let valid_known: Vec<&Record> = valid
        .iter()
        .copied()
        .filter(|r| r.label.as_deref().is_some_and(|l| index.contains_key(l)))
        .collect();
    let dropped_valid = valid.len() - valid_known.len();
    if valid_known.is_empty() {
        return Err(Error::Training(
            "no validation rows with a label seen in training: calibration and the abstain threshold need them".into(),
        ));
    }
    let y_valid: Vec<u32> = valid_known
        .iter()
        .map(|r| index[r.label.as_deref().expect("labelled")])
        .collect();

    progress("features", 0, f64::NAN);
    let train_texts: Vec<&str> = train.iter().map(|r| r.text.as_str()).collect();
    let (vectorizer, vocab) = Vectorizer::fit(&train_texts, &p.features)?;
    let x_train: Vec<_> = train_texts
        .par_iter()
        .map(|t| vectorizer.transform(t))
        .collect();
    let x_valid: Vec<_> = valid_known
        .par_iter()
        .map(|r| vectorizer.transform(&r.text))
        .collect();
    tracing::info!(
        features = vectorizer.n_features(),
        train = train.len(),
        valid = valid_known.len(),
        "featurised"
    );

    let valid_rows = Labelled {
        x: &x_valid,
        y: &y_valid,
    };
    let fit = linear::fit(
        (vectorizer.clone(), vocab.clone()),
        Labelled {
            x: &x_train,
            y: &y_train,
        },
        valid_rows,
        labels.len(),
        &p.linear,
        |stage, it, loss| progress(stage, it, loss),
    )?;
    let c = labels.len();
    let valid_texts: Vec<&str> = valid_known.iter().map(|r| r.text.as_str()).collect();
    let logits = fit.model.logits(&valid_texts)?;
    let n_features = fit.model.vectorizer.n_features();
    let final_model = if p.refit {
        let x_all: Vec<_> = x_train.iter().chain(&x_valid).cloned().collect();
        let y_all: Vec<u32> = y_train.iter().chain(&y_valid).copied().collect();
        let one = LinearParams {
            l2_grid: vec![fit.model.l2],
            ..p.linear.clone()
        };
        let mut refit_progress = |_: &str, it: usize, loss: f64| progress("refit", it, loss);
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
            &mut refit_progress,
        )?
        .model
    } else {
        fit.model
    };
    let temperature = calibration::fit_temperature(&logits, &y_valid, c);
    let linear_probs = calibration::softmax_rows(&logits, c, temperature.temperature);

    let encoder = match &p.encoder {
        None => None,
        Some(ep) => Some(train_encoder(
            ep,
            &train_texts,
            &y_train,
            &valid_texts,
            &y_valid,
            c,
            p.refit,
            progress,
        )?),
    };
    // Ensemble weight of the encoder: the mix of calibrated probabilities with the lowest
    // validation NLL, on a grid of 21 weights.
    let (weight, mut probs) = match &encoder {
        None => (0.0, linear_probs.clone()),
        Some(e) => {
            let mut best = (f64::INFINITY, 0.0f32);
            for k in 0..=20 {
                let w = k as f32 / 20.0;
                let mixed = mix(&linear_probs, &e.valid_probs, w);
                let nll = mean_nll(&mixed, &y_valid, c);
                if nll < best.0 - 1e-12 {
                    best = (nll, w);
                }
            }
            (best.1, mix(&linear_probs, &e.valid_probs, best.1))
        }
    };
    let ensemble_temperature = if encoder.is_some() {
        let ens_logits: Vec<f32> = probs.iter().map(|p| p.max(1e-12).ln()).collect();
        let t = calibration::fit_temperature(&ens_logits, &y_valid, c).temperature;
        probs
            .chunks_mut(c)
            .for_each(|row| super::recalibrate(row, t));
        t
    } else {
        1.0
    };
    let raw_probs = match &encoder {
        None => calibration::softmax_rows(&logits, c, 1.0),
        Some(e) => mix(
            &calibration::softmax_rows(&logits, c, 1.0),
            &calibration::softmax_rows(&e.valid_logits, c, 1.0),
            weight,
        ),
    };

    let cascade = encoder
        .as_ref()
        .map(|_| choose_cascade(&linear_probs, &probs, &y_valid, c));
    let decisions: Vec<_> = probs.chunks(c).map(|row| decide(row, 0.0, 1)).collect();
    let conf: Vec<f32> = decisions.iter().map(|d| d.confidence).collect();
    let correct: Vec<bool> = decisions
        .iter()
        .zip(&y_valid)
        .map(|(d, &y)| d.best == y as usize)
        .collect();
    let threshold = calibration::choose_threshold(&conf, &correct, p.target_precision);
    let scored: Vec<Scored> = decisions
        .iter()
        .zip(&y_valid)
        .map(|(d, &y)| Scored {
            truth: labels[y as usize].clone(),
            predicted: labels[d.best].clone(),
            confidence: d.confidence,
            abstained: d.confidence < threshold.threshold,
        })
        .collect();
    let (_, macro_f1) = metrics::per_intent(&scored);
    let (_, ece) = metrics::reliability(&conf, &correct, metrics::ECE_BINS);
    let raw_conf: Vec<f32> = raw_probs
        .chunks(c)
        .map(|row| row.iter().fold(0f32, |a, &b| a.max(b)))
        .collect();
    let (_, ece_raw) = metrics::reliability(&raw_conf, &correct, metrics::ECE_BINS);
    let accuracy_of = |pr: &[f32]| {
        pr.chunks(c)
            .zip(&y_valid)
            .filter(|(row, &y)| decide(row, 0.0, 1).best == y as usize)
            .count() as f64
            / y_valid.len() as f64
    };
    let mut m = BTreeMap::new();
    m.insert("valid_accuracy".into(), metrics::accuracy(&scored));
    m.insert("valid_macro_f1".into(), macro_f1);
    m.insert("valid_ece".into(), ece);
    m.insert("valid_ece_uncalibrated".into(), ece_raw);
    m.insert("valid_nll".into(), mean_nll(&probs, &y_valid, c));
    m.insert(
        "valid_nll_uncalibrated".into(),
        mean_nll(&raw_probs, &y_valid, c),
    );
    m.insert("valid_coverage".into(), threshold.coverage);
    m.insert("valid_precision_answered".into(), threshold.precision);
    m.insert("valid_accuracy_linear".into(), accuracy_of(&linear_probs));
    m.insert("n_features".into(), n_features as f64);
    m.insert("refit".into(), p.refit as u8 as f64);
    if let Some(e) = &encoder {
        m.insert("valid_accuracy_encoder".into(), accuracy_of(&e.valid_probs));
        m.insert("ensemble_weight_encoder".into(), weight as f64);
        m.insert("ensemble_temperature".into(), ensemble_temperature as f64);
        if let Some(cc) = &cascade {
            m.insert("cascade_threshold".into(), cc.threshold as f64);
            m.insert("valid_cascade_accuracy".into(), cc.accuracy);
            m.insert("valid_cascade_encoder_fraction".into(), cc.encoder_fraction);
        }
        m.insert("encoder_seconds".into(), e.seconds);
        if let Some((ft, _)) = &e.fine_tune {
            m.insert("fine_tune_seconds".into(), ft.seconds);
            m.insert("fine_tune_best_epoch".into(), ft.best_epoch as f64);
            if let Some(h) = ft.history.iter().find(|h| h.epoch == ft.best_epoch) {
                m.insert("fine_tune_valid_accuracy".into(), h.valid_accuracy);
            }
        }
    }
    let (encoder, fine_tune) = match encoder {
        None => (None, None),
        Some(mut e) => {
            let ft = e.fine_tune.take();
            (Some(e), ft)
        }
    };
    let (fine_tune, scratch) = match fine_tune {
        Some((s, d)) => (Some(s), Some(d)),
        None => (None, None),
    };

    Ok(Trained {
        labels,
        train_data: fingerprint(sources.0, train),
        valid_data: fingerprint(sources.1, &valid_known),
        linear: final_model,
        path: fit.path,
        temperature,
        encoder: encoder.map(|e| (e.model, e.temperature)),
        encoder_weight: weight,
        ensemble_temperature,
        cascade_threshold: cascade.map(|cc| cc.threshold),
        encoder_alpha: p.encoder.as_ref().map(|e| e.alpha).unwrap_or(0.0),
        fine_tune,
        scratch,
        threshold,
        metrics: m,
        seconds: start.elapsed().as_secs_f64(),
        dropped_valid,
    })
}

/// The encoder component as trained: the model, its calibration and its validation outputs.
struct TrainedEncoder {
    model: EncoderClassifier,
    fine_tune: Option<(FineTuneSummary, TempDir)>,
    temperature: TemperatureFit,
    valid_logits: Vec<f32>,
    valid_probs: Vec<f32>,
    seconds: f64,
}

#[allow(clippy::too_many_arguments)]
fn train_encoder(
    ep: &EncoderParams,
    train_texts: &[&str],
    y_train: &[u32],
    valid_texts: &[&str],
    y_valid: &[u32],
    c: usize,
    refit: bool,
    progress: Progress<'_>,
) -> Result<TrainedEncoder> {
    let start = Instant::now();
    let base = Encoder::load(&ep.dir, ep.max_len)?;
    let mut cache = EmbeddingCache::open(&base)?;
    let mut done = 0usize;
    let mut tick = |n: usize| {
        done += n;
        progress("encoding", done, f64::NAN);
    };
    // With a fine-tune, the frozen encoder's embeddings are needed only for a warm start.
    let (encoder, fine_tune, xt, xv) = match &ep.fine_tune {
        None => {
            let xt = cache.embed(&base, train_texts, &mut tick)?;
            let xv = cache.embed(&base, valid_texts, &mut tick)?;
            (base, None, xt, xv)
        }
        Some(fp) => {
            let t0 = Instant::now();
            // A warm start begins from the head fitted on the frozen encoder.
            let init = if fp.warm_start {
                let x0 = cache.embed(&base, train_texts, &mut tick)?;
                progress("encoder head", 0, f64::NAN);
                LogisticHead::fit(&x0, base.dim, y_train, c, ep.alpha, ep.max_iter)?
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
                    texts: train_texts,
                    labels: y_train,
                },
                FtData {
                    texts: valid_texts,
                    labels: y_valid,
                },
                HeadInit {
                    weight: &init.weight,
                    bias: &init.bias,
                    n_classes: c,
                },
                |f| {
                    progress(
                        &format!(
                            "fine-tune epoch {}/{} of {} steps, eta {}, step",
                            f.epoch,
                            fp.epochs,
                            f.total_steps,
                            crate::util::human_seconds(f.eta_seconds)
                        ),
                        f.step,
                        f.loss,
                    )
                },
            )?;
            let tuned = Encoder::load(ft.dir.path(), ep.max_len)?;
            // Fine-tuned weights are used once, so their embeddings skip the shared cache.
            let mut done = 0usize;
            let mut tick = |n: usize| {
                done += n;
                progress("encoding (fine-tuned)", done, f64::NAN);
            };
            let xt = tuned.embed(train_texts, super::encoder::DEFAULT_BATCH, &mut tick)?;
            let xv = tuned.embed(valid_texts, super::encoder::DEFAULT_BATCH, &mut tick)?;
            let summary = FineTuneSummary {
                base: ep.dir.display().to_string(),
                base_sha256: base.weights_sha256.clone(),
                params: fp.clone(),
                best_epoch: ft.best_epoch,
                steps: ft.steps,
                history: ft.history,
                seconds: t0.elapsed().as_secs_f64(),
            };
            (tuned, Some((summary, ft.dir)), xt, xv)
        }
    };
    let dim = encoder.dim;
    progress("encoder head", 0, f64::NAN);
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
    Ok(TrainedEncoder {
        fine_tune,
        model: EncoderClassifier {
            encoder,
            head,
            batch_size: super::encoder::DEFAULT_BATCH,
        },
        temperature,
        valid_logits,
        valid_probs,
        seconds: start.elapsed().as_secs_f64(),
    })
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

fn mean_nll(probs: &[f32], y: &[u32], c: usize) -> f64 {
    probs
        .chunks(c)
        .zip(y)
        .map(|(row, &l)| -(row[l as usize].max(1e-12) as f64).ln())
        .sum::<f64>()
        / y.len().max(1) as f64
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
            masking: crate::text::pii::Masking::Full,
            checksum: String::new(),
            training: TrainingInfo {
                seed,
                args,
                train_data: self.train_data.clone(),
                valid_data: self.valid_data.clone(),
                seconds: self.seconds,
            },
            metrics: self.metrics.clone(),
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
            Ok(components)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::read::RecordId;

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
            features: FeatureSpec::default(),
            linear: LinearParams::default(),
            refit: true,
            encoder: None,
        };
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--valid-split"));
    }
}
