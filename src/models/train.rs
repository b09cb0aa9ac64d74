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
use super::linear::{self, FittedLinear, Labelled, LinearParams, PathPoint};
use super::{decide, Classifier};
use crate::error::{Error, Result};
use crate::eval::metrics::{self, Scored};
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
    let logits = fit.model.logits(&valid_texts);
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

    let mut probs = vec![0f32; c];
    let decisions: Vec<_> = logits
        .chunks(c)
        .map(|row| {
            calibration::softmax_t(row, temperature.temperature, &mut probs);
            decide(&probs, 0.0, 1)
        })
        .collect();
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
    let raw_conf: Vec<f32> = logits
        .chunks(c)
        .map(|row| {
            calibration::softmax_t(row, 1.0, &mut probs);
            probs.iter().fold(0f32, |a, &b| a.max(b))
        })
        .collect();
    let (_, ece_raw) = metrics::reliability(&raw_conf, &correct, metrics::ECE_BINS);
    let mut m = BTreeMap::new();
    m.insert("valid_accuracy".into(), metrics::accuracy(&scored));
    m.insert("valid_macro_f1".into(), macro_f1);
    m.insert("valid_ece".into(), ece);
    m.insert("valid_ece_uncalibrated".into(), ece_raw);
    m.insert("valid_nll".into(), temperature.nll_after);
    m.insert("valid_nll_uncalibrated".into(), temperature.nll_before);
    m.insert("valid_coverage".into(), threshold.coverage);
    m.insert("valid_precision_answered".into(), threshold.precision);
    m.insert("n_features".into(), n_features as f64);
    m.insert("refit".into(), p.refit as u8 as f64);

    Ok(Trained {
        labels,
        train_data: fingerprint(sources.0, train),
        valid_data: fingerprint(sources.1, &valid_known),
        linear: final_model,
        path: fit.path,
        temperature,
        threshold,
        metrics: m,
        seconds: start.elapsed().as_secs_f64(),
        dropped_valid,
    })
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
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            cqr_version: env!("CARGO_PKG_VERSION").to_string(),
            name: name.to_string(),
            version: crate::util::now_rfc3339(),
            created_at: crate::util::now_rfc3339(),
            labels: self.labels.clone(),
            components: Vec::new(),
            abstain: self.threshold.clone(),
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
            Ok(vec![bundle::write_linear(
                tmp,
                &self.linear,
                self.temperature.temperature,
                &self.path,
            )?])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn rec(text: &str, label: &str, row: u64) -> Record {
        Record {
            line: Some(row + 1),
            row,
            id: Value::from(row),
            text: text.into(),
            label: Some(label.into()),
            keep: vec![],
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
        };
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--valid-split"));
    }
}
