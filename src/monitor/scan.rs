//! One pass over a batch: every query goes into the batch's profile, is scored for novelty
//! against the reference (how unlike the reference's queries it is), and the abstained or novel
//! ones are kept, in a bounded seeded sample, for the emerging-topics clustering. Memory stays
//! bounded whatever the batch size. Pure: the caller scores the queries and hands them in.

use std::cmp::Ordering;

use rayon::prelude::*;

use super::profile::{Caps, Observation, Profile, ProfileBuilder, Sample};
use super::stats::dot_f32 as dot;
use crate::io::read::Record;
use crate::util::Rng;

/// How many of the least reference-like texts the report lists.
pub const LEAST_LIKE: usize = 10;
/// How many abstained or novel queries are kept for the topic clustering.
pub const TOPIC_CANDIDATES: usize = 1_000;
/// A query is novel when its novelty exceeds this quantile of the reference's own novelty.
pub const NOVELTY_QUANTILE: f64 = 0.95;

/// How novelty is measured: with embeddings, one minus the highest cosine similarity to the
/// reference's embedding sample; without, the out-of-vocabulary rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoveltyMeasure {
    Embedding,
    OovRate,
}

/// Scores novelty against a reference sample, with the threshold above which a query is novel.
pub struct Novelty {
    pub measure: NoveltyMeasure,
    reference: Vec<f32>,
    dim: usize,
    /// The reference's own [`NOVELTY_QUANTILE`] novelty (leave-one-out for embeddings).
    pub threshold: f64,
    /// Reference rows above the threshold, of how many.
    pub reference_novel: u64,
    pub reference_rows: u64,
    /// The reference's own novelty, ascending.
    sorted: Vec<f64>,
}

impl Novelty {
    pub fn new(reference: &Sample) -> Novelty {
        let (measure, own): (NoveltyMeasure, Vec<f64>) = if reference.novelty_rows() >= 2
            && reference.novelty_scores.len() == reference.novelty_rows()
        {
            let own = reference
                .novelty_scores
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            (NoveltyMeasure::Embedding, own)
        } else {
            let own = reference.oov.iter().map(|&v| f64::from(v)).collect();
            (NoveltyMeasure::OovRate, own)
        };
        let base = &reference.novelty;
        Novelty {
            measure,
            reference: if measure == NoveltyMeasure::Embedding {
                base.clone()
            } else {
                Vec::new()
            },
            dim: reference.dim,
            reference_novel: 0,
            reference_rows: own.len() as u64,
            sorted: Vec::new(),
            threshold: 0.0,
        }
        .with_threshold(own)
    }

    /// Sets the threshold at the reference's own quantile, counts the reference rows above it
    /// and keeps the reference's novelty sorted for [`Novelty::tail`].
    fn with_threshold(mut self, mut own: Vec<f64>) -> Novelty {
        own.sort_by(f64::total_cmp);
        self.threshold = quantile_sorted(&own, NOVELTY_QUANTILE);
        self.reference_novel = own.iter().filter(|&&v| v > self.threshold).count() as u64;
        self.sorted = own;
        self
    }

    /// How unusual a novelty is for the reference: the share of reference rows at least as
    /// novel, with one added to both counts so it is never 0 (a conformal p-value).
    pub fn tail(&self, novelty: f64) -> f64 {
        let at_least = self.sorted.len() - self.sorted.partition_point(|&v| v < novelty);
        (at_least as f64 + 1.0) / (self.sorted.len() as f64 + 1.0)
    }

    /// The novelty of one query.
    pub fn score(&self, o: &Observation, embedding: Option<&[f32]>) -> f64 {
        match (self.measure, embedding) {
            (NoveltyMeasure::Embedding, Some(e)) => {
                let sims = self.reference.chunks(self.dim).map(|r| dot(r, e));
                1.0 - f64::from(kth_largest(sims, NEIGHBOURS))
            }
            _ => f64::from(o.oov),
        }
    }
}

/// Novelty is one minus the cosine similarity to the k-th nearest reference row. On BANKING77
/// with 10 intents withheld (scripts/bench_drift.sh, 500-row batches with 10% new intents) the
/// nearest neighbour (k = 1) found 85% of the batches and the 10th nearest 25%: new intents
/// there are paraphrases of old ones, close to a few old queries but not to their crowd.
pub const NEIGHBOURS: usize = 1;

/// The `k`-th largest of `values` (the smallest of them when there are fewer than `k`).
fn kth_largest(values: impl Iterator<Item = f32>, k: usize) -> f32 {
    // The k largest so far, descending.
    let mut top: Vec<f32> = Vec::with_capacity(k + 1);
    for v in values {
        if top.len() < k || v > top[top.len() - 1] {
            let at = top.partition_point(|&t| t >= v);
            top.insert(at, v);
            top.truncate(k);
        }
    }
    top.last().copied().unwrap_or(f32::MIN)
}

/// Each row's novelty among the others (leave one out), as [`NEIGHBOURS`] defines it: what an
/// ordinary query's novelty looks like.
pub fn leave_one_out_novelty(rows: &[f32], dim: usize) -> Vec<f32> {
    let list: Vec<&[f32]> = rows.chunks(dim.max(1)).collect();
    list.par_iter()
        .enumerate()
        .map(|(i, a)| {
            let sims = list
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, b)| dot(a, b));
            1.0 - kth_largest(sims, NEIGHBOURS)
        })
        .collect()
}

/// The `q` quantile (nearest rank) of values in ascending order; 0 for none.
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

/// A batch query kept for the report: its id, its (masked) text, its novelty and embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub id: String,
    pub text: String,
    pub novelty: f64,
    pub abstained: bool,
    pub embedding: Vec<f32>,
}

/// What one pass over a batch gathered.
pub struct Scanned {
    pub profile: Profile,
    pub measure: NoveltyMeasure,
    pub novelty_threshold: f64,
    /// Queries above the reference's novelty quantile.
    pub novel: u64,
    /// Reference rows above it (leave-one-out), of how many: what "novel" costs without drift.
    pub reference_novel: (u64, u64),
    /// Σ −ln(tail) over the batch's queries: Fisher's combination of their conformal novelty
    /// p-values (see [`Novelty::tail`]), the novelty test's statistic.
    pub novelty_evidence: f64,
    /// The least reference-like queries, most novel first.
    pub least_like: Vec<Kept>,
    /// A seeded uniform sample of the abstained or novel queries.
    pub candidates: Vec<Kept>,
}

/// Streams a batch's queries into a [`Scanned`].
pub struct Scan {
    builder: ProfileBuilder,
    novelty: Novelty,
    novel: u64,
    least_like: Vec<Kept>,
    candidates: Vec<Kept>,
    seen_candidates: u64,
    rng: Rng,
    evidence: f64,
}

impl Scan {
    pub fn new(reference: &Profile, n_classes: usize, dim: usize, caps: Caps) -> Scan {
        Scan {
            builder: ProfileBuilder::new(n_classes, dim, caps),
            novelty: Novelty::new(&reference.sample),
            novel: 0,
            least_like: Vec::with_capacity(LEAST_LIKE + 1),
            candidates: Vec::new(),
            seen_candidates: 0,
            evidence: 0.0,
            rng: Rng::new(caps.seed ^ 0x0070_b1c5),
        }
    }

    /// A query's novelty against the reference.
    pub fn novelty(&self, o: &Observation, embedding: Option<&[f32]>) -> f64 {
        self.novelty.score(o, embedding)
    }

    /// Adds a chunk of scored records (`embeddings` row-major, one row per record when the
    /// model has an encoder); novelty is scored on all cores.
    pub fn push_chunk(
        &mut self,
        records: &[Record],
        observed: &[Observation],
        embeddings: Option<&[f32]>,
    ) {
        let dim = self.builder.dim();
        let row = |i: usize| embeddings.map(|e| &e[i * dim..(i + 1) * dim]);
        let novelty: Vec<f64> = (0..observed.len())
            .into_par_iter()
            .with_min_len(64)
            .map(|i| self.novelty(&observed[i], row(i)))
            .collect();
        for (i, (r, o)) in records.iter().zip(observed).enumerate() {
            self.push(&r.id, &r.text, o, row(i), novelty[i]);
        }
    }

    /// Adds one query with its novelty. Its id and text are copied (and masked) only when the
    /// query is kept for the report.
    pub fn push(
        &mut self,
        id: &dyn std::fmt::Display,
        text: &str,
        o: &Observation,
        embedding: Option<&[f32]>,
        novelty: f64,
    ) {
        self.builder.push(o, embedding);
        self.evidence -= self.novelty.tail(novelty).ln();
        let is_novel = novelty > self.novelty.threshold;
        self.novel += u64::from(is_novel);
        let worst = self.least_like.last().map(|k| k.novelty);
        let least_like = self.least_like.len() < LEAST_LIKE || worst.is_some_and(|w| novelty > w);
        let slot = if o.abstained || is_novel {
            let t = self.seen_candidates as usize;
            self.seen_candidates += 1;
            if t < TOPIC_CANDIDATES {
                Some(t)
            } else {
                Some(self.rng.below(t + 1)).filter(|&j| j < TOPIC_CANDIDATES)
            }
        } else {
            None
        };
        if !least_like && slot.is_none() {
            return;
        }
        // Masked in full whatever the model's own masking: these texts are shown in reports.
        let kept = Kept {
            id: id.to_string(),
            text: crate::text::pii::mask_text(text, crate::text::pii::MaskStyle::Full).0,
            novelty,
            abstained: o.abstained,
            embedding: embedding.map(<[f32]>::to_vec).unwrap_or_default(),
        };
        if let Some(j) = slot {
            if j == self.candidates.len() {
                self.candidates.push(kept.clone());
            } else {
                self.candidates[j] = kept.clone();
            }
        }
        if least_like {
            let at = self
                .least_like
                .partition_point(|k| k.novelty.total_cmp(&novelty) != Ordering::Less);
            self.least_like.insert(at, kept);
            self.least_like.truncate(LEAST_LIKE);
        }
    }

    pub fn finish(self) -> Scanned {
        Scanned {
            profile: self.builder.finish(),
            measure: self.novelty.measure,
            novelty_threshold: self.novelty.threshold,
            novel: self.novel,
            reference_novel: (self.novelty.reference_novel, self.novelty.reference_rows),
            novelty_evidence: self.evidence,
            least_like: self.least_like,
            candidates: self.candidates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::profile::REFERENCE_CAPS;

    fn obs(oov: f32, abstained: bool) -> Observation {
        Observation {
            class: 0,
            confidence: 0.9,
            abstained,
            length: 10.0,
            oov,
            correct: None,
        }
    }

    #[test]
    fn novel_and_abstained_queries_are_kept_and_the_least_like_ranked() {
        let mut b = ProfileBuilder::new(1, 0, REFERENCE_CAPS);
        for i in 0..100 {
            b.push(&obs(if i < 5 { 0.5 } else { 0.0 }, false), None);
        }
        let reference = b.finish();
        let mut scan = Scan::new(&reference, 1, 0, REFERENCE_CAPS);
        for i in 0..50 {
            let oov = if i % 10 == 0 { 0.9 } else { 0.0 };
            let o = obs(oov, i == 7);
            scan.push(&i.to_string(), "t", &o, None, scan.novelty(&o, None));
        }
        let s = scan.finish();
        assert_eq!(s.measure, NoveltyMeasure::OovRate);
        assert_eq!(s.novel, 5);
        assert_eq!(s.candidates.len(), 6);
        assert_eq!(s.least_like.len(), LEAST_LIKE);
        assert!(s.least_like[..5]
            .iter()
            .all(|k| k.novelty == f64::from(0.9f32)));
        assert_eq!(s.least_like[0].id, "0");
    }

    #[test]
    fn kth_largest_keeps_the_top_k() {
        let v = [0.1f32, 0.9, 0.5, 0.7, 0.3];
        assert_eq!(kth_largest(v.iter().copied(), 1), 0.9);
        assert_eq!(kth_largest(v.iter().copied(), 3), 0.5);
        assert_eq!(kth_largest(v.iter().copied(), 10), 0.1);
    }

    #[test]
    fn quantile_is_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(quantile_sorted(&v, 0.95), 19.0);
        assert_eq!(quantile_sorted(&v, 1.0), 20.0);
        assert_eq!(quantile_sorted(&[], 0.5), 0.0);
    }
}
