//! Profiles: what cqr observed about a set of queries (each one's best intent, calibrated
//! confidence, abstention, length, out-of-vocabulary rate and, with an encoder, embedding),
//! kept as exact counts plus seeded, capped samples that the two-sample tests run on. The
//! reference profile is built at train time from the held-out validation rows and stored in the
//! bundle; a batch profile is built the same way from the data being checked, so the two are
//! comparable by construction. Pure: no files, no model, no printing.

use serde::{Deserialize, Serialize};

use crate::util::Rng;

/// What cqr observed about one query: the inputs of every drift test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The best intent (label index), whether or not the model abstained.
    pub class: u32,
    /// Its calibrated probability.
    pub confidence: f32,
    pub abstained: bool,
    /// Characters in the text the model saw.
    pub length: f32,
    /// Share of the text's words outside the linear component's vocabulary.
    pub oov: f32,
    /// With a label: whether the best intent was right.
    pub correct: Option<bool>,
}

impl Observation {
    /// One query: its best intent (label index) and that intent's calibrated confidence,
    /// whether the model abstained, the text the model saw, its OOV rate, and whether the best
    /// intent was right when the query carried a label.
    pub fn of(
        class: usize,
        confidence: f32,
        abstained: bool,
        text: &str,
        oov: f32,
        correct: Option<bool>,
    ) -> Observation {
        Observation {
            class: class as u32,
            confidence,
            abstained,
            length: text.chars().count() as f32,
            oov,
            correct,
        }
    }
}

/// Counts over every profiled row (exact, whatever the sample caps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSummary {
    pub rows: u64,
    /// Rows per best intent, in the model's label order.
    pub intent_counts: Vec<u64>,
    pub abstained: u64,
    /// Rows that carried a label, and how many of those the best intent got right.
    pub labelled: u64,
    pub correct: u64,
    /// Σ confidence and Σ confidence·(1 − confidence): the label-free accuracy estimate and
    /// its variance.
    pub confidence_sum: f64,
    pub confidence_var_sum: f64,
    /// Seed of the reservoir samples.
    pub seed: u64,
}

impl ProfileSummary {
    /// Share of rows the model abstained on.
    pub fn abstain_rate(&self) -> f64 {
        self.abstained as f64 / self.rows.max(1) as f64
    }

    /// Accuracy of the best intent over the labelled rows, when there were any.
    pub fn accuracy(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.correct as f64 / self.labelled as f64)
    }

    /// The label-free accuracy estimate: with calibrated confidences, each answer is right with
    /// probability equal to its confidence, so the expected accuracy is the mean confidence and
    /// its sampling variance Σ c(1 − c) / n². Returns (estimate, low, high) at `z`.
    pub fn estimated_accuracy(&self, z: f64) -> (f64, f64, f64) {
        let n = self.rows.max(1) as f64;
        let mean = self.confidence_sum / n;
        let se = self.confidence_var_sum.max(0.0).sqrt() / n;
        (
            mean,
            (mean - z * se).clamp(0.0, 1.0),
            (mean + z * se).clamp(0.0, 1.0),
        )
    }
}

/// The per-query values kept for the two-sample tests: parallel vectors of one seeded uniform
/// sample of rows, and a (smaller) sample of embeddings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub confidence: Vec<f32>,
    /// 1 where the best intent was right, 0 where wrong, NaN without a label.
    pub correct: Vec<f32>,
    pub length: Vec<f32>,
    pub oov: Vec<f32>,
    /// Row-major `[n × dim]`; empty without an encoder.
    pub embeddings: Vec<f32>,
    /// What novelty is measured against: embeddings of every row the model learnt from (the
    /// training rows too, for a stored profile), row-major; empty without an encoder.
    pub novelty: Vec<f32>,
    /// Each novelty row's own novelty among the others (leave one out), computed once when the
    /// profile is built: the distribution a check compares its queries' novelty with.
    pub novelty_scores: Vec<f32>,
    pub dim: usize,
}

impl Sample {
    pub fn embedding_rows(&self) -> usize {
        self.embeddings.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn novelty_rows(&self) -> usize {
        self.novelty.len().checked_div(self.dim).unwrap_or(0)
    }
}

/// The reference's own confidence-to-accuracy correction: on its labelled sample rows, split
/// into equal-mass confidence bins of at least [`MIN_BIN_ROWS`] (one bin for a small reference),
/// how far each bin's accuracy sits from its mean confidence. Temperature scaling makes
/// confidences calibrated in likelihood, not exactly in mean; the correction removes what is
/// left, as NannyML's CBPE calibrates on reference data before it estimates.
#[derive(Debug, Clone, PartialEq)]
pub struct Recalibration {
    /// Upper confidence edge of each bin but the last, ascending.
    edges: Vec<f32>,
    /// (accuracy − mean confidence, accuracy, rows) per bin.
    bins: Vec<(f64, f64, usize)>,
}

pub const MIN_BIN_ROWS: usize = 100;
const MAX_BINS: usize = 10;

impl Recalibration {
    /// Fitted on a sample's labelled rows; `None` with fewer than [`MIN_BIN_ROWS`] of them.
    pub fn fit(sample: &Sample) -> Option<Recalibration> {
        let mut rows: Vec<(f32, f32)> = sample
            .confidence
            .iter()
            .zip(&sample.correct)
            .filter(|(_, r)| !r.is_nan())
            .map(|(&c, &r)| (c, r))
            .collect();
        if rows.len() < MIN_BIN_ROWS {
            return None;
        }
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let k = (rows.len() / MIN_BIN_ROWS).clamp(1, MAX_BINS);
        let mut edges = Vec::with_capacity(k - 1);
        let mut bins = Vec::with_capacity(k);
        let mut start = 0;
        for b in 0..k {
            let end = if b + 1 == k {
                rows.len()
            } else {
                rows.len() * (b + 1) / k
            };
            let part = &rows[start..end];
            let n = part.len() as f64;
            let accuracy = part.iter().map(|r| f64::from(r.1)).sum::<f64>() / n;
            let confidence = part.iter().map(|r| f64::from(r.0)).sum::<f64>() / n;
            bins.push((accuracy - confidence, accuracy, part.len()));
            if b + 1 < k {
                edges.push(part.last().expect("a bin has rows").0);
            }
            start = end;
        }
        Some(Recalibration { edges, bins })
    }

    fn bin(&self, confidence: f32) -> usize {
        self.edges.partition_point(|&e| e < confidence)
    }

    pub fn bins(&self) -> usize {
        self.bins.len()
    }

    /// The expected accuracy of a batch whose confidences are `sample` (a uniform sample of its
    /// `rows`), each corrected by its bin's offset, with its standard error: the batch's own
    /// binomial noise plus the reference bins' estimation error.
    pub fn estimate(&self, sample: &[f32], rows: u64) -> (f64, f64) {
        let mut share = vec![0f64; self.bins.len()];
        let (mut mean, mut noise) = (0.0, 0.0);
        for &c in sample {
            let b = self.bin(c);
            share[b] += 1.0;
            let q = (f64::from(c) + self.bins[b].0).clamp(0.0, 1.0);
            mean += q;
            noise += q * (1.0 - q);
        }
        let n = sample.len().max(1) as f64;
        let fit: f64 = share
            .iter()
            .zip(&self.bins)
            .map(|(w, &(_, acc, m))| (w / n).powi(2) * acc * (1.0 - acc) / m as f64)
            .sum();
        (mean / n, (noise / n / rows.max(1) as f64 + fit).sqrt())
    }
}

/// A profile: exact counts and the samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub summary: ProfileSummary,
    pub sample: Sample,
}

/// How many rows the samples keep, and their seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub values: usize,
    pub embeddings: usize,
    pub novelty: usize,
    pub seed: u64,
}

/// What a bundle keeps: 5,000 rows of values (the KS tests lose almost no power beyond that),
/// 1,000 embeddings (the MMD test's kernel matrix grows with the square) and 10,000 for novelty
/// (each checked query is compared with all of them: a nearest neighbour among more rows tells
/// a new kind of query from an old one better).
pub const REFERENCE_CAPS: Caps = Caps {
    values: 5_000,
    embeddings: 1_000,
    novelty: 10_000,
    seed: 0x0d71_f7c4,
};

/// A seeded uniform sample (algorithm R) of fixed-width rows.
struct RowReservoir {
    rows: Vec<f32>,
    dim: usize,
    cap: usize,
    seen: u64,
    rng: Rng,
}

impl RowReservoir {
    fn new(dim: usize, cap: usize, seed: u64) -> RowReservoir {
        RowReservoir {
            rows: Vec::new(),
            dim,
            cap,
            seen: 0,
            rng: Rng::new(seed),
        }
    }

    fn push(&mut self, row: &[f32]) {
        if row.len() != self.dim || row.is_empty() {
            return;
        }
        let t = self.seen;
        self.seen += 1;
        if let Some(slot) = reservoir_slot(t, self.cap, &mut self.rng) {
            let d = self.dim;
            if slot * d == self.rows.len() {
                self.rows.extend_from_slice(row);
            } else {
                self.rows[slot * d..(slot + 1) * d].copy_from_slice(row);
            }
        }
    }
}

/// Builds a profile from observations pushed one at a time (a batch is streamed, so memory
/// stays bounded by the caps). The samples are reservoirs (Vitter's algorithm R): every row
/// has the same chance to be kept, and the same rows in the same order give the same sample.
pub struct ProfileBuilder {
    summary: ProfileSummary,
    sample: Sample,
    caps: Caps,
    values_rng: Rng,
    embeddings: RowReservoir,
    novelty: RowReservoir,
}

impl ProfileBuilder {
    pub fn new(n_classes: usize, dim: usize, caps: Caps) -> ProfileBuilder {
        ProfileBuilder {
            summary: ProfileSummary {
                rows: 0,
                intent_counts: vec![0; n_classes],
                abstained: 0,
                labelled: 0,
                correct: 0,
                confidence_sum: 0.0,
                confidence_var_sum: 0.0,
                seed: caps.seed,
            },
            sample: Sample {
                dim,
                ..Sample::default()
            },
            caps,
            values_rng: Rng::new(caps.seed),
            embeddings: RowReservoir::new(dim, caps.embeddings, caps.seed ^ 0x9e37_79b9),
            novelty: RowReservoir::new(dim, caps.novelty, caps.seed ^ 0x7f4a_7c15),
        }
    }

    /// The embeddings' width (0 without an encoder).
    pub fn dim(&self) -> usize {
        self.sample.dim
    }

    /// Adds the embedding of a row the model learnt from but that is not itself profiled (a
    /// training row): it counts for novelty only.
    pub fn push_learnt(&mut self, embedding: &[f32]) {
        self.novelty.push(embedding);
    }

    /// Adds one query; `embedding` is its sentence embedding when the model has an encoder.
    pub fn push(&mut self, o: &Observation, embedding: Option<&[f32]>) {
        let s = &mut self.summary;
        let t = s.rows;
        s.rows += 1;
        if let Some(n) = s.intent_counts.get_mut(o.class as usize) {
            *n += 1;
        }
        s.abstained += u64::from(o.abstained);
        if let Some(right) = o.correct {
            s.labelled += 1;
            s.correct += u64::from(right);
        }
        let c = f64::from(o.confidence);
        s.confidence_sum += c;
        s.confidence_var_sum += c * (1.0 - c);
        if let Some(slot) = reservoir_slot(t, self.caps.values, &mut self.values_rng) {
            let v = &mut self.sample;
            let right = o.correct.map_or(f32::NAN, |r| f32::from(u8::from(r)));
            if slot == v.confidence.len() {
                v.confidence.push(o.confidence);
                v.correct.push(right);
                v.length.push(o.length);
                v.oov.push(o.oov);
            } else {
                v.confidence[slot] = o.confidence;
                v.correct[slot] = right;
                v.length[slot] = o.length;
                v.oov[slot] = o.oov;
            }
        }
        if let Some(e) = embedding {
            self.embeddings.push(e);
            self.novelty.push(e);
        }
    }

    pub fn finish(self) -> Profile {
        let novelty_scores = if self.novelty.rows.len() >= 2 * self.sample.dim.max(1) {
            super::scan::leave_one_out_novelty(&self.novelty.rows, self.sample.dim)
        } else {
            Vec::new()
        };
        Profile {
            summary: self.summary,
            sample: Sample {
                embeddings: self.embeddings.rows,
                novelty: self.novelty.rows,
                novelty_scores,
                ..self.sample
            },
        }
    }
}

/// Algorithm R: where row `t` (0-based) goes in a reservoir of `cap`, if anywhere.
fn reservoir_slot(t: u64, cap: usize, rng: &mut Rng) -> Option<usize> {
    if (t as usize) < cap {
        return Some(t as usize);
    }
    let j = rng.below(t as usize + 1);
    (j < cap).then_some(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(class: u32, confidence: f32) -> Observation {
        Observation {
            class,
            confidence,
            abstained: confidence < 0.5,
            length: 10.0 + class as f32,
            oov: 0.0,
            correct: Some(class == 0),
        }
    }

    #[test]
    fn counts_are_exact_and_samples_capped_and_seeded() {
        let caps = Caps {
            values: 100,
            embeddings: 10,
            novelty: 20,
            seed: 7,
        };
        let build = || {
            let mut b = ProfileBuilder::new(3, 2, caps);
            for i in 0..1000u32 {
                let e = [i as f32, 1.0];
                b.push(&obs(i % 3, (i % 10) as f32 / 10.0), Some(&e));
            }
            b.finish()
        };
        let p = build();
        assert_eq!(p.summary.rows, 1000);
        assert_eq!(p.summary.intent_counts, vec![334, 333, 333]);
        assert_eq!(p.summary.abstained, 500);
        assert_eq!(p.summary.accuracy(), Some(0.334));
        assert_eq!(p.sample.confidence.len(), 100);
        assert_eq!(
            (p.sample.embedding_rows(), p.sample.novelty_rows()),
            (10, 20)
        );
        assert_eq!(p, build());
        // A uniform sample of rows 0..1000: most kept rows come from beyond the first 100.
        let late = p
            .sample
            .embeddings
            .chunks(2)
            .filter(|e| e[0] >= 100.0)
            .count();
        assert!(late >= 7, "{late}");
        let (est, lo, hi) = p.summary.estimated_accuracy(1.96);
        assert!((est - 0.45).abs() < 1e-6 && lo < est && est < hi);
    }
}
