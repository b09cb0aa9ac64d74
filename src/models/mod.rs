//! Models: the `Classifier` trait every component implements, the loaded `Model` (a bundle's
//! components, their calibration and ensemble weights, the novelty score and the abstain rule) and
//! the per-query `Decision` derived from its probabilities. Only this module touches weights; it never reads
//! data files or prints.

pub mod abstain;
pub mod bert;
pub mod bundle;
pub mod calibration;
pub mod encoder;
pub mod fastbert;
pub mod finetune;
pub mod heads;
pub mod kernels;
pub mod lbfgs;
pub mod linear;
pub mod novelty;
pub mod train;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::text::{Scratch, SparseVec};
pub use bundle::Manifest;
pub use linear::FittedLinear;

/// Plain logits and, for a head with dropout, one set of logits per MC-dropout sample.
pub type LogitsWithMc = (Vec<f32>, Option<Vec<Vec<f32>>>);

/// A component that scores texts. Implementations are pure functions of their weights, so a
/// batch can be split across threads.
pub trait Classifier: Send + Sync {
    fn kind(&self) -> &'static str;
    fn n_classes(&self) -> usize;
    /// Raw (uncalibrated) logits, row-major `[texts.len() × n_classes]`.
    fn logits(&self, texts: &[&str]) -> Result<Vec<f32>>;

    /// The logits and, for a head with dropout, `samples` MC-dropout sets of logits.
    fn logits_with_mc(&self, texts: &[&str], _samples: usize, _seed: u64) -> Result<LogitsWithMc> {
        Ok((self.logits(texts)?, None))
    }

    /// As [`Classifier::logits_with_mc`], with the sentence embeddings the logits came from
    /// (row-major `[texts.len() × dim]`) when the component has an encoder.
    fn logits_with_embeddings(
        &self,
        texts: &[&str],
        samples: usize,
        seed: u64,
    ) -> Result<(LogitsWithMc, Option<Vec<f32>>)> {
        Ok((self.logits_with_mc(texts, samples, seed)?, None))
    }

    /// Each text's share of words outside the component's vocabulary, when it has one.
    fn oov_rates(&self, _texts: &[&str]) -> Option<Vec<f32>> {
        None
    }

    /// The width of [`Classifier::logits_with_embeddings`]'s embeddings, when it gives them.
    fn embedding_dim(&self) -> Option<usize> {
        None
    }

    /// Sentence embeddings of `texts` through the on-disk embedding cache, when the component
    /// has an encoder: for corpora embedded again and again (a history searched by `respond`).
    fn embed_cached(
        &self,
        _texts: &[&str],
        _progress: &mut dyn FnMut(usize),
    ) -> Result<Option<Vec<f32>>> {
        Ok(None)
    }
}

impl Classifier for FittedLinear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn logits(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let c = self.n_classes;
        let mut out = vec![0f32; texts.len() * c];
        let work = |(text, row): (&&str, &mut [f32]),
                    (scratch, sparse): &mut (Scratch, SparseVec)| {
            self.logits_one(text, scratch, sparse, row)
        };
        if texts.len() < 64 {
            let mut state = (Scratch::default(), SparseVec::default());
            texts
                .iter()
                .zip(out.chunks_mut(c))
                .for_each(|p| work(p, &mut state));
        } else {
            texts
                .par_iter()
                .zip(out.par_chunks_mut(c))
                .with_min_len(32)
                .for_each_init(
                    || (Scratch::default(), SparseVec::default()),
                    |s, p| work(p, s),
                );
        }
        Ok(out)
    }

    fn oov_rates(&self, texts: &[&str]) -> Option<Vec<f32>> {
        Some(
            texts
                .par_iter()
                .with_min_len(256)
                .map_init(Scratch::default, |s, t| self.vectorizer.oov_rate(t, s))
                .collect(),
        )
    }
}

pub const DEFAULT_MC_SAMPLES: usize = 20;

/// How a query's distance from the training data is measured.
pub enum NoveltyScorer {
    /// Cosine distance of the encoder's sentence embedding to the nearest training row.
    NearestRow(NearestRow),
    /// Relative Mahalanobis distance of the encoder's sentence embedding.
    RelativeMahalanobis(novelty::Mahalanobis),
    /// The linear component's negative largest raw logit (a model without an encoder).
    MaxLogit,
}

/// The novelty score and the standardisation that makes it read as standard deviations above
/// the held-out validation rows' mean (`uncertainty.novelty`), with the out-of-scope affinity
/// when the model was trained with out-of-scope examples and has an encoder.
pub struct Novelty {
    pub scorer: NoveltyScorer,
    pub center: f32,
    pub scale: f32,
    pub affinity: Option<Affinity>,
}

/// The training rows' embeddings (L2-normalised, row-major `dim` wide; at most
/// [`NearestRow::CAP`] of them, an even sample) for the nearest-row novelty score.
#[derive(Debug, Clone, PartialEq)]
pub struct NearestRow {
    pub dim: usize,
    pub rows: Vec<f32>,
}

impl NearestRow {
    /// Most training rows kept: about 15 MB as f16 at 384 dimensions, and a bounded cost per query.
    pub const CAP: usize = 20_000;

    /// An even sample of at most [`NearestRow::CAP`] rows of `x`, rounded to f16 as the bundle
    /// stores them.
    pub fn fit(x: &[f32], dim: usize) -> NearestRow {
        let n = x.len() / dim;
        let step = n.div_ceil(Self::CAP).max(1);
        let rows = x
            .chunks(dim)
            .step_by(step)
            .flatten()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect();
        NearestRow { dim, rows }
    }

    /// 1 − the cosine similarity to the nearest kept row, for each row of `x`. Blocks of queries
    /// against all kept rows as one matrix product each (a dot product per pair, one at a time,
    /// was a quarter of `classify`'s time with an int8 encoder).
    pub fn scores(&self, x: &[f32]) -> Vec<f32> {
        const BLOCK: usize = 32;
        let (dim, o) = (self.dim, self.rows.len() / self.dim.max(1));
        x.par_chunks(dim * BLOCK)
            .flat_map_iter(|qs| {
                let n = qs.len() / dim;
                let mut sims = vec![0f32; n * o];
                kernels::dot_all(qs, &self.rows, &mut sims, (n, dim, o));
                (0..n)
                    .map(|i| {
                        let best = sims[i * o..(i + 1) * o]
                            .iter()
                            .copied()
                            .fold(f32::NEG_INFINITY, f32::max);
                        1.0 - best
                    })
                    .collect::<Vec<f32>>()
            })
            .collect()
    }
}

/// How much more a query's embedding resembles the nearest out-of-scope example than the
/// nearest intent: cosine to the nearest example minus cosine to the nearest class centroid.
/// Embeddings and centroids are L2-normalised, row-major `dim` wide.
#[derive(Debug, Clone, PartialEq)]
pub struct Affinity {
    pub dim: usize,
    pub examples: Vec<f32>,
    pub centroids: Vec<f32>,
}

impl Affinity {
    /// The class centroids of `x` (labels `y` in 0..`c`), normalised, and the examples.
    pub fn fit(x: &[f32], y: &[u32], c: usize, dim: usize, examples: Vec<f32>) -> Affinity {
        let mut centroids = vec![0f32; c * dim];
        for (row, &l) in x.chunks(dim).zip(y) {
            let m = &mut centroids[l as usize * dim..(l as usize + 1) * dim];
            m.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
        for m in centroids.chunks_mut(dim) {
            let n = crate::monitor::stats::dot_f32(m, m).sqrt().max(1e-12);
            m.iter_mut().for_each(|v| *v /= n);
        }
        Affinity {
            dim,
            examples,
            centroids,
        }
    }

    /// The affinity of one embedding, leaving out example `skip` (an example's own row).
    pub fn score(&self, x: &[f32], skip: Option<usize>) -> f32 {
        let dot = crate::monitor::stats::dot_f32;
        let nearest = |rows: &[f32], skip: Option<usize>| {
            rows.chunks(self.dim)
                .enumerate()
                .filter(|(i, _)| Some(*i) != skip)
                .map(|(_, r)| dot(x, r))
                .fold(f32::NEG_INFINITY, f32::max)
        };
        nearest(&self.examples, skip) - nearest(&self.centroids, None)
    }

    /// The affinity of each row of `x`; with `leave_one_out`, row i leaves out example i.
    pub fn scores(&self, x: &[f32], leave_one_out: bool) -> Vec<f32> {
        x.par_chunks(self.dim)
            .enumerate()
            .with_min_len(64)
            .map(|(i, row)| self.score(row, leave_one_out.then_some(i)))
            .collect()
    }
}

impl Novelty {
    pub fn standardise(&self, raw: f32) -> f32 {
        (raw - self.center) / self.scale
    }

    /// The standardised scores of a batch, from the linear component's negative largest
    /// logits or the encoder's embeddings; `None` when the batch lacks what the scorer reads.
    fn scores(
        &self,
        neg_max_logits: Option<Vec<f32>>,
        embeddings: Option<&[f32]>,
    ) -> Option<Vec<f32>> {
        let raw = match &self.scorer {
            NoveltyScorer::NearestRow(n) => n.scores(embeddings?),
            NoveltyScorer::RelativeMahalanobis(m) => m.scores(embeddings?),
            NoveltyScorer::MaxLogit => neg_max_logits?,
        };
        Some(raw.into_iter().map(|r| self.standardise(r)).collect())
    }
}

/// Each row's negative largest logit (row-major, `c` wide).
pub fn neg_max_logit(logits: &[f32], c: usize) -> Vec<f32> {
    logits
        .chunks(c)
        .map(|r| -r.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)))
        .collect()
}

/// Total-variation distance between two distributions (0 = identical, 1 = disjoint).
pub fn total_variation(a: &[f32], b: &[f32]) -> f32 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>()
}

/// A loaded component with its calibration.
pub struct Component {
    pub classifier: Box<dyn Classifier>,
    pub temperature: f32,
    pub weight: f32,
}

/// What answers a query: name, version and checksum of the bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
    pub checksum: String,
}

/// A model loaded from a bundle, ready to score.
pub struct Model {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub components: Vec<Component>,
    /// The registry (name, version) it was loaded as, if any.
    pub registry: Option<(String, String)>,
    /// MC-dropout samples per query (0 = off); 20 by default when a head has dropout.
    pub mc_samples: usize,
    /// The novelty score (bundles from before the abstain rule have none).
    pub novelty: Option<Novelty>,
    /// The out-of-scope class, when the model was trained with it as one.
    pub oos_class: Option<usize>,
}

/// The calibrated, combined class probabilities of one query.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub probs: Vec<f32>,
    /// With two components: the total-variation distance between their calibrated
    /// distributions (0 = identical, 1 = disjoint).
    pub disagreement: Option<f32>,
    /// With MC dropout: (std of the winning class over samples, mutual information in nats).
    pub mc: Option<(f32, f32)>,
    /// Each component's own calibrated answer (class, probability), in bundle order; empty when
    /// only one component answered.
    pub parts: Vec<(usize, f32)>,
    /// Standardised distance from the training data, when the model has a novelty score and
    /// the answer came with what it reads.
    pub novelty: Option<f32>,
    /// The out-of-scope affinity, when the model has one and the answer came with an embedding.
    pub affinity: Option<f32>,
}

/// What cqr decides for one query.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The most probable class (reported as `unknown` when abstained).
    pub best: usize,
    pub confidence: f32,
    pub abstained: bool,
    pub top_k: Vec<(usize, f32)>,
    /// Shannon entropy of the probabilities, in nats.
    pub entropy: f32,
    /// Best minus second-best probability.
    pub margin: f32,
    pub disagreement: Option<f32>,
    pub mc: Option<(f32, f32)>,
    pub novelty: Option<f32>,
    pub affinity: Option<f32>,
}

impl Model {
    pub fn load(path: &Path) -> Result<Model> {
        let manifest = bundle::load_manifest(path)?;
        let n = manifest.labels.len();
        let mut components = Vec::new();
        for c in &manifest.components {
            let classifier: Box<dyn Classifier> = match c.kind.as_str() {
                "linear" => Box::new(bundle::read_linear(path, c, n)?),
                "encoder" => Box::new(bundle::read_encoder(path, c, n)?),
                other => {
                    return Err(Error::model(
                        path,
                        format!(
                            "unknown component kind `{other}` (this cqr knows: linear, encoder)"
                        ),
                    ))
                }
            };
            if c.temperature.is_nan() || c.temperature <= 0.0 {
                return Err(Error::model(
                    path,
                    format!("component `{}` has temperature {}", c.kind, c.temperature),
                ));
            }
            components.push(Component {
                classifier,
                temperature: c.temperature,
                weight: c.weight,
            });
        }
        if components.is_empty() {
            return Err(Error::model(path, "the bundle has no components"));
        }
        let novelty = match &manifest.novelty {
            None => None,
            Some(n) => Some(bundle::read_novelty(path, n)?),
        };
        let oos_class = manifest
            .out_of_scope
            .as_ref()
            .filter(|o| o.as_class)
            .and_then(|o| manifest.labels.iter().position(|l| *l == o.label));
        Ok(Model {
            path: path.to_path_buf(),
            manifest,
            components,
            registry: None,
            mc_samples: 0,
            novelty,
            oos_class,
        })
    }

    /// True when a component's head has dropout (MC dropout is then on by default).
    pub fn has_dropout(&self) -> bool {
        self.manifest.components.iter().any(|c| {
            c.settings
                .get("dropout")
                .and_then(|d| d.as_f64())
                .unwrap_or(0.0)
                > 0.0
        })
    }

    /// `--mc-samples`: the asked number, else 20 when a head has dropout, else off.
    pub fn set_mc_samples(&mut self, asked: Option<usize>) {
        self.mc_samples = asked.unwrap_or(if self.has_dropout() {
            DEFAULT_MC_SAMPLES
        } else {
            0
        });
    }

    pub fn labels(&self) -> &[String] {
        &self.manifest.labels
    }

    pub fn threshold(&self) -> f32 {
        self.manifest.abstain.threshold
    }

    /// Name and version as the registry knows them when loaded from it, else the bundle's own.
    pub fn model_ref(&self) -> ModelRef {
        let (name, version) = self
            .registry
            .clone()
            .unwrap_or_else(|| (self.manifest.name.clone(), self.manifest.version.clone()));
        ModelRef {
            name,
            version,
            checksum: self.manifest.checksum.clone(),
        }
    }

    /// Calibrated probabilities: each component's temperature-scaled softmax, averaged with the
    /// ensemble weights.
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Prediction>> {
        Ok(self.predict_embedded(texts)?.0)
    }

    /// The share of each text's words outside the linear component's vocabulary; `None` for a
    /// model without one.
    pub fn oov_rates(&self, texts: &[&str]) -> Option<Vec<f32>> {
        self.components
            .iter()
            .find_map(|c| c.classifier.oov_rates(texts))
    }

    /// Whether a component has a word vocabulary (so [`Model::oov_rates`] answers).
    pub fn has_vocabulary(&self) -> bool {
        self.components
            .iter()
            .any(|c| c.classifier.kind() == "linear")
    }

    /// The dimension of the encoder's embeddings; `None` for a model without an encoder.
    pub fn embedding_dim(&self) -> Option<usize> {
        self.components
            .iter()
            .find_map(|c| c.classifier.embedding_dim())
    }

    /// The encoder's sentence embeddings of `texts` (row-major, [`Model::embedding_dim`] wide),
    /// through the embedding cache; `None` for a model without an encoder.
    pub fn embed_cached(
        &self,
        texts: &[&str],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Option<Vec<f32>>> {
        for comp in &self.components {
            if let Some(e) = comp.classifier.embed_cached(texts, progress)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// As [`Model::predict`], with the encoder's sentence embeddings of the texts (row-major,
    /// [`Model::embedding_dim`] wide) when the model has an encoder: one encoder pass serves both.
    pub fn predict_embedded(&self, texts: &[&str]) -> Result<(Vec<Prediction>, Option<Vec<f32>>)> {
        let c = self.labels().len();
        let mut per_comp: Vec<Vec<f32>> = Vec::with_capacity(self.components.len());
        // Calibrated per-sample probabilities of the component that has MC dropout.
        let mut mc_samples: Option<Vec<Vec<f32>>> = None;
        let mut embeddings = None;
        let mut neg_max_logits = None;
        for comp in &self.components {
            let ((logits, mc), emb) =
                comp.classifier
                    .logits_with_embeddings(texts, self.mc_samples, 0x6d63_6472)?;
            if emb.is_some() {
                embeddings = emb;
            }
            let max_logit = matches!(
                self.novelty,
                Some(Novelty {
                    scorer: NoveltyScorer::MaxLogit,
                    ..
                })
            );
            if max_logit && comp.classifier.kind() == "linear" {
                neg_max_logits = Some(neg_max_logit(&logits, c));
            }
            let mut probs = calibration::softmax_rows(&logits, c, comp.temperature);
            if let Some(sets) = mc {
                let sets: Vec<Vec<f32>> = sets
                    .iter()
                    .map(|l| calibration::softmax_rows(l, c, comp.temperature))
                    .collect();
                // The component's answer is the mean over dropout samples.
                probs.iter_mut().enumerate().for_each(|(k, p)| {
                    *p = sets.iter().map(|s| s[k]).sum::<f32>() / sets.len() as f32;
                });
                mc_samples = Some(sets);
            }
            per_comp.push(probs);
        }
        let novelty = self
            .novelty
            .as_ref()
            .and_then(|n| n.scores(neg_max_logits.take(), embeddings.as_deref()));
        let affinity = self
            .novelty
            .as_ref()
            .and_then(|n| n.affinity.as_ref())
            .zip(embeddings.as_deref())
            .map(|(a, e)| a.scores(e, false));
        let predictions = (0..texts.len())
            .map(|i| {
                let rows: Vec<&[f32]> = per_comp.iter().map(|p| &p[i * c..(i + 1) * c]).collect();
                let mut probs = vec![0f32; c];
                for (comp, row) in self.components.iter().zip(&rows) {
                    probs
                        .iter_mut()
                        .zip(row.iter())
                        .for_each(|(o, p)| *o += comp.weight * p);
                }
                let t = self.manifest.ensemble_temperature;
                if rows.len() > 1 && t != 1.0 {
                    recalibrate(&mut probs, t);
                }
                let disagreement = (rows.len() == 2).then(|| total_variation(rows[0], rows[1]));
                let mc = mc_samples
                    .as_ref()
                    .map(|sets| mc_stats(sets, i, c, linear::argmax(&probs)));
                let parts = if rows.len() > 1 {
                    rows.iter().map(|r| argmax(r)).collect()
                } else {
                    Vec::new()
                };
                Prediction {
                    probs,
                    disagreement,
                    mc,
                    parts,
                    novelty: novelty.as_ref().map(|n| n[i]),
                    affinity: affinity.as_ref().map(|a| a[i]),
                }
            })
            .collect();
        Ok((predictions, embeddings))
    }

    /// The cascade: the linear component alone where its calibrated confidence reaches the
    /// bundle's cascade threshold, the whole ensemble for the rest. Returns the predictions and
    /// how many queries went through the encoder.
    pub fn predict_cascade(&self, texts: &[&str]) -> Result<(Vec<Prediction>, usize)> {
        let tau = self.manifest.cascade_threshold.ok_or_else(|| {
            Error::model(
                &self.path,
                "this model has no cascade (it needs the linear and encoder components)",
            )
        })?;
        let linear = self
            .components
            .iter()
            .find(|c| c.classifier.kind() == "linear")
            .ok_or_else(|| Error::model(&self.path, "the cascade needs a linear component"))?;
        let c = self.labels().len();
        let logits = linear.classifier.logits(texts)?;
        let mut out: Vec<Option<Prediction>> = Vec::with_capacity(texts.len());
        let mut routed = Vec::new();
        for (i, row) in logits.chunks(c).enumerate() {
            let mut probs = vec![0f32; c];
            calibration::softmax_t(row, linear.temperature, &mut probs);
            if probs.iter().fold(0f32, |a, &b| a.max(b)) >= tau {
                // The linear component answers alone: no embedding, so no novelty score (the
                // abstain rule counts it at its in-scope mean).
                out.push(Some(Prediction {
                    probs,
                    disagreement: None,
                    mc: None,
                    parts: Vec::new(),
                    novelty: None,
                    affinity: None,
                }));
            } else {
                out.push(None);
                routed.push(i);
            }
        }
        if !routed.is_empty() {
            let sub: Vec<&str> = routed.iter().map(|&i| texts[i]).collect();
            for (i, p) in routed.iter().zip(self.predict(&sub)?) {
                out[*i] = Some(p);
            }
        }
        Ok((
            out.into_iter()
                .map(|p| p.expect("every query was answered"))
                .collect(),
            routed.len(),
        ))
    }

    /// The decision for one prediction: with an abstain rule (bundles trained since it came),
    /// the rule refuses; before it, confidence below the threshold. Predicting the
    /// out-of-scope class, when the model has one, is abstaining too.
    pub fn decide(&self, p: &Prediction, k: usize) -> Decision {
        let mut d = decide(&p.probs, self.threshold(), k);
        d.disagreement = p.disagreement;
        d.mc = p.mc;
        d.novelty = p.novelty;
        d.affinity = p.affinity;
        if let Some(rule) = &self.manifest.rule {
            d.abstained = rule.refuses(&d.scores());
        }
        if self.oos_class == Some(d.best) {
            d.abstained = true;
        }
        d
    }

    /// The abstain rule's combined score of a decision, when the model has a rule.
    pub fn abstain_score(&self, d: &Decision) -> Option<f64> {
        self.manifest.rule.as_ref().map(|r| r.score(&d.scores()))
    }
}

/// The most probable class and its probability.
fn argmax(p: &[f32]) -> (usize, f32) {
    let i = linear::argmax(p);
    (i, p[i])
}

/// MC-dropout statistics of query `i`: the standard deviation over samples of the winning
/// class's probability, and the mutual information H(mean) − mean(H(sample)) (epistemic part).
pub fn mc_stats(sets: &[Vec<f32>], i: usize, c: usize, winner: usize) -> (f32, f32) {
    let t = sets.len() as f32;
    let row = |s: &Vec<f32>| s[i * c..(i + 1) * c].to_vec();
    let rows: Vec<Vec<f32>> = sets.iter().map(row).collect();
    let entropy = |p: &[f32]| {
        -p.iter()
            .filter(|&&x| x > 0.0)
            .map(|&x| x * x.ln())
            .sum::<f32>()
    };
    let mean: Vec<f32> = (0..c)
        .map(|k| rows.iter().map(|r| r[k]).sum::<f32>() / t)
        .collect();
    let m = mean[winner];
    let var = rows.iter().map(|r| (r[winner] - m).powi(2)).sum::<f32>() / t;
    let mi = entropy(&mean) - rows.iter().map(|r| entropy(r)).sum::<f32>() / t;
    (var.sqrt(), mi.max(0.0))
}

/// Re-tempers a mixed distribution: softmax(ln p / t).
pub fn recalibrate(probs: &mut [f32], t: f32) {
    let logits: Vec<f32> = probs.iter().map(|p| p.max(1e-12).ln()).collect();
    calibration::softmax_t(&logits, t, probs);
}

/// Derives the decision for one probability vector.
pub fn decide(probs: &[f32], threshold: f32, k: usize) -> Decision {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    // Ties broken by label index so output is stable.
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let best = order[0];
    let confidence = probs[best];
    let second = order.get(1).map(|&i| probs[i]).unwrap_or(0.0);
    let entropy = -probs
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.ln())
        .sum::<f32>();
    Decision {
        best,
        confidence,
        abstained: confidence < threshold,
        top_k: order.iter().take(k).map(|&i| (i, probs[i])).collect(),
        entropy: entropy.max(0.0),
        margin: confidence - second,
        disagreement: None,
        mc: None,
        novelty: None,
        affinity: None,
    }
}

impl Decision {
    /// The scores the abstain rule reads.
    pub fn scores(&self) -> abstain::Scores {
        abstain::Scores {
            confidence: self.confidence,
            margin: self.margin,
            disagreement: self.disagreement,
            novelty: self.novelty,
            affinity: self.affinity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_fields() {
        let d = decide(&[0.1, 0.6, 0.3], 0.5, 2);
        assert_eq!(d.best, 1);
        assert!(!d.abstained);
        assert_eq!(d.top_k, vec![(1, 0.6), (2, 0.3)]);
        assert!((d.margin - 0.3).abs() < 1e-6);
        let h = -(0.1f32 * 0.1f32.ln() + 0.6 * 0.6f32.ln() + 0.3 * 0.3f32.ln());
        assert!((d.entropy - h).abs() < 1e-6);
        assert!(decide(&[0.4, 0.35, 0.25], 0.5, 3).abstained);
    }
}
