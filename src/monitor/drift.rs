//! The drift check: a batch's profile against the reference's, each quantity tested with an
//! exact or permutation two-sample test, Holm's correction across the tests, an effect size per
//! test, the label-free accuracy estimate, and what changed (intent shares, the least
//! reference-like texts, emerging topics), all in one typed [`DriftReport`]. Pure: the caller
//! scores the batch and prints or writes the report.

use serde::{Deserialize, Serialize};

use super::profile::{Profile, Recalibration};
use super::scan::{NoveltyMeasure, Scanned};
use super::stats::{self, Z95};
use super::topics::{emerging_topics, Topic, CLUSTER_RULE};

/// How many intents the report lists as moved most.
pub const TOP_SHIFTS: usize = 10;
/// At most this many batch embeddings enter the MMD test (a seeded uniform sample).
pub const MMD_ROWS: usize = 1_000;

/// The tests a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    IntentDistribution,
    Confidence,
    Length,
    OovRate,
    AbstainRate,
    Embedding,
    Novelty,
}

impl TestKind {
    pub fn name(self) -> &'static str {
        match self {
            TestKind::IntentDistribution => "intent_distribution",
            TestKind::Confidence => "confidence",
            TestKind::Length => "length",
            TestKind::OovRate => "oov_rate",
            TestKind::AbstainRate => "abstain_rate",
            TestKind::Embedding => "embedding",
            TestKind::Novelty => "novelty",
        }
    }

    /// The test and its statistic.
    pub fn method(self) -> &'static str {
        match self {
            TestKind::IntentDistribution => "chi-square homogeneity, sparse cells pooled",
            TestKind::Confidence | TestKind::Length | TestKind::OovRate => {
                "two-sample Kolmogorov-Smirnov"
            }
            TestKind::AbstainRate => "two-proportion z-test",
            TestKind::Embedding => "MMD² (RBF kernel, median heuristic), permutation test",
            TestKind::Novelty => {
                "Fisher's combination of each query's conformal novelty p-value against the \
                 reference (nearest-neighbour cosine)"
            }
        }
    }

    /// What the effect size measures.
    pub fn effect_measure(self) -> &'static str {
        match self {
            TestKind::IntentDistribution => "PSI, shares floored at 1e-4",
            TestKind::Confidence | TestKind::Length | TestKind::OovRate => "KS distance D",
            TestKind::AbstainRate => "absolute change in abstention rate",
            TestKind::Embedding => "MMD²",
            TestKind::Novelty => "rise in the share of novel queries",
        }
    }
}

/// What the check is told to do.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftOptions {
    /// Family-wise error rate (Holm).
    pub alpha: f64,
    /// A test alarms only when its effect size is at least this as well.
    pub min_effect: Option<f64>,
    /// Alarm when the estimated accuracy is more than this below the reference's.
    pub max_accuracy_drop: Option<f64>,
    pub permutations: usize,
    pub seed: u64,
}

/// One test's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub test: TestKind,
    pub method: String,
    pub statistic: f64,
    pub effect: f64,
    pub effect_measure: String,
    pub p_value: f64,
    /// Holm-adjusted across the tests of this check.
    pub p_adjusted: f64,
    pub drift: bool,
    /// Rows (or sampled rows) each side contributed.
    pub reference_n: usize,
    pub batch_n: usize,
}

impl TestResult {
    /// A test's outcome before the correction across tests: `rows` are (reference, batch).
    fn raw(
        test: TestKind,
        statistic: f64,
        effect: f64,
        p_value: f64,
        rows: (usize, usize),
    ) -> Self {
        TestResult {
            test,
            method: test.method().to_string(),
            statistic,
            effect,
            effect_measure: test.effect_measure().to_string(),
            p_value,
            p_adjusted: p_value,
            drift: false,
            reference_n: rows.0,
            batch_n: rows.1,
        }
    }
}

/// An estimate with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// An intent's share of the reference and of the batch, with 95% Wilson intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentShift {
    pub intent: String,
    pub reference_share: Estimate,
    pub batch_share: Estimate,
    /// Batch share minus reference share.
    pub change: f64,
}

/// A batch text unlike the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeastLike {
    pub id: String,
    pub text: String,
    /// Novelty: 1 − the cosine similarity to the nearest reference row, or the OOV rate.
    pub novelty: f64,
    pub abstained: bool,
}

/// What the emerging-topics section rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topics {
    pub measure: NoveltyMeasure,
    /// A query is novel above this novelty: the reference's own 95th percentile.
    pub novelty_threshold: f64,
    pub novel_rows: u64,
    pub novel_share: f64,
    /// Abstained or novel queries clustered (a seeded sample of at most 1,000).
    pub clustered: usize,
    pub rule: String,
    pub topics: Vec<Topic>,
}

/// The model, data and reference a check ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub model: String,
    pub version: String,
    pub checksum: String,
    pub data: String,
    /// `the model's stored profile (validation rows)` or the `--reference` data.
    pub reference: String,
}

/// Everything `cqr drift-check` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub subject: Subject,
    pub drift: bool,
    /// Why the verdict is drift, one line per reason; empty without drift.
    pub reasons: Vec<String>,
    pub alpha: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_effect: Option<f64>,
    pub reference_rows: u64,
    pub batch_rows: u64,
    pub tests: Vec<TestResult>,
    /// The reference's accuracy (validation accuracy for a stored profile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_accuracy: Option<f64>,
    /// The label-free accuracy estimate, with its 95% interval.
    pub estimated_accuracy: Estimate,
    /// How it was estimated.
    pub estimate_method: String,
    /// The batch's mean calibrated confidence (the estimate before the reference's re-mapping).
    pub mean_confidence: f64,
    /// The batch's real accuracy, when it carries labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_accuracy: Option<f64>,
    /// Estimate minus actual, when both are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_error: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_accuracy_drop: Option<f64>,
    pub reference_abstain_rate: f64,
    pub batch_abstain_rate: f64,
    pub intent_shifts: Vec<IntentShift>,
    pub least_like: Vec<LeastLike>,
    pub emerging: Topics,
    pub seconds: f64,
}

/// Runs every test that both profiles allow, Holm-corrected at `o.alpha`.
pub fn run_tests(
    reference: &Profile,
    scanned: &Scanned,
    oov: bool,
    o: &DriftOptions,
) -> Vec<TestResult> {
    let batch = &scanned.profile;
    let (r, b) = (&reference.summary, &batch.summary);
    let rows = (r.rows as usize, b.rows as usize);
    let mut tests = Vec::new();
    let counts = |c: &[u64]| c.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let (rc, bc) = (counts(&r.intent_counts), counts(&b.intent_counts));
    let chi = stats::chi_square_homogeneity(&rc, &bc);
    let psi = stats::psi(&rc, &bc, stats::PSI_EPSILON);
    tests.push(TestResult::raw(
        TestKind::IntentDistribution,
        chi.statistic,
        psi,
        chi.p_value,
        rows,
    ));
    let floats = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let (rs, bs) = (&reference.sample, &batch.sample);
    let mut ks = |kind, a: &[f32], c: &[f32]| {
        let t = stats::ks_two_sample(&floats(a), &floats(c));
        tests.push(TestResult::raw(
            kind,
            t.statistic,
            t.statistic,
            t.p_value,
            (a.len(), c.len()),
        ));
    };
    ks(TestKind::Confidence, &rs.confidence, &bs.confidence);
    ks(TestKind::Length, &rs.length, &bs.length);
    if oov {
        ks(TestKind::OovRate, &rs.oov, &bs.oov);
    }
    let prop = stats::two_proportion(r.abstained, r.rows, b.abstained, b.rows);
    let change = prop.difference.abs();
    tests.push(TestResult::raw(
        TestKind::AbstainRate,
        prop.statistic,
        change,
        prop.p_value,
        rows,
    ));
    if rs.embedding_rows() >= 2 && bs.embedding_rows() >= 2 && rs.dim == bs.dim {
        let (x, y) = (&rs.embeddings, &bs.embeddings);
        let mmd = stats::mmd_permutation(x, y, rs.dim, o.permutations, o.seed);
        let n = (rs.embedding_rows(), bs.embedding_rows());
        let effect = mmd.statistic.max(0.0);
        tests.push(TestResult::raw(
            TestKind::Embedding,
            mmd.statistic,
            effect,
            mmd.p_value,
            n,
        ));
    }
    if scanned.measure == NoveltyMeasure::Embedding {
        let (k, m) = scanned.reference_novel;
        // Each query's conformal p-value against the reference's own novelty is uniform when
        // nothing changed, so −2 Σ ln p is χ² with 2n degrees of freedom (Fisher): a handful of
        // very novel queries, or many a little novel, both raise it. One-sided by construction.
        let t = 2.0 * scanned.novelty_evidence;
        let p = stats::chi2_sf(t, 2.0 * b.rows as f64).clamp(f64::MIN_POSITIVE, 1.0);
        let rise = scanned.novel as f64 / b.rows.max(1) as f64 - k as f64 / m.max(1) as f64;
        let n = (m as usize, b.rows as usize);
        tests.push(TestResult::raw(TestKind::Novelty, t, rise.max(0.0), p, n));
    }
    let adjusted = stats::holm(&tests.iter().map(|t| t.p_value).collect::<Vec<_>>());
    for (t, p) in tests.iter_mut().zip(adjusted) {
        t.p_adjusted = p;
        t.drift = p < o.alpha && o.min_effect.is_none_or(|m| t.effect >= m);
    }
    tests
}

/// The intents whose share moved most, largest change first.
pub fn intent_shifts(reference: &Profile, batch: &Profile, labels: &[String]) -> Vec<IntentShift> {
    let (r, b) = (&reference.summary, &batch.summary);
    let share = |k: u64, n: u64| {
        let (low, high) = stats::wilson_interval(k as f64, n as f64, Z95);
        Estimate {
            value: k as f64 / n.max(1) as f64,
            low,
            high,
        }
    };
    let mut out: Vec<IntentShift> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let rs = share(r.intent_counts.get(i).copied().unwrap_or(0), r.rows);
            let bs = share(b.intent_counts.get(i).copied().unwrap_or(0), b.rows);
            IntentShift {
                intent: l.clone(),
                change: bs.value - rs.value,
                reference_share: rs,
                batch_share: bs,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.change
            .abs()
            .total_cmp(&a.change.abs())
            .then(a.intent.cmp(&b.intent))
    });
    out.truncate(TOP_SHIFTS);
    out
}

/// The whole check: tests, verdict, estimate and what changed.
pub fn check(
    subject: Subject,
    reference: &Profile,
    scanned: &Scanned,
    labels: &[String],
    oov: bool,
    o: &DriftOptions,
) -> DriftReport {
    let start = std::time::Instant::now();
    let tests = run_tests(reference, scanned, oov, o);
    let batch = &scanned.profile;
    let mean = batch.summary.estimated_accuracy(Z95);
    let (estimated_accuracy, estimate_method) = estimate_accuracy(reference, batch, mean);
    let mean_confidence = mean.0;
    let value = estimated_accuracy.value;
    let reference_accuracy = reference.summary.accuracy();
    let actual_accuracy = batch.summary.accuracy();
    let mut reasons: Vec<String> = tests
        .iter()
        .filter(|t| t.drift)
        .map(|t| {
            format!(
                "{}: corrected p {} < {} ({} {:.4})",
                t.test.name(),
                fmt_p(t.p_adjusted),
                o.alpha,
                t.effect_measure,
                t.effect
            )
        })
        .collect();
    // An unlabelled reference (`--reference DATA`) is compared by its own estimate.
    let baseline =
        reference_accuracy.unwrap_or_else(|| reference.summary.estimated_accuracy(Z95).0);
    if let Some(max) = o.max_accuracy_drop {
        if baseline - value > max {
            reasons.push(format!(
                "estimated accuracy {:.2}% is {:.2} points below the reference's {:.2}% (--max-accuracy-drop {:.2} points)",
                value * 100.0,
                (baseline - value) * 100.0,
                baseline * 100.0,
                max * 100.0
            ));
        }
    }
    let topics = emerging_topics(&scanned.candidates, o.seed);
    let emerging = Topics {
        measure: scanned.measure,
        novelty_threshold: scanned.novelty_threshold,
        novel_rows: scanned.novel,
        novel_share: scanned.novel as f64 / batch.summary.rows.max(1) as f64,
        clustered: scanned.candidates.len(),
        rule: CLUSTER_RULE.to_string(),
        topics,
    };
    DriftReport {
        subject,
        drift: !reasons.is_empty(),
        reasons,
        alpha: o.alpha,
        min_effect: o.min_effect,
        reference_rows: reference.summary.rows,
        batch_rows: batch.summary.rows,
        estimate_error: actual_accuracy.map(|a| value - a),
        tests,
        reference_accuracy,
        estimated_accuracy,
        estimate_method,
        mean_confidence,
        actual_accuracy,
        max_accuracy_drop: o.max_accuracy_drop,
        reference_abstain_rate: reference.summary.abstain_rate(),
        batch_abstain_rate: batch.summary.abstain_rate(),
        intent_shifts: intent_shifts(reference, batch, labels),
        least_like: scanned
            .least_like
            .iter()
            .map(|k| LeastLike {
                id: k.id.clone(),
                text: k.text.clone(),
                novelty: k.novelty,
                abstained: k.abstained,
            })
            .collect(),
        emerging,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// The label-free accuracy estimate and how it was made: the batch's confidences corrected on
/// the reference's labelled rows, else the batch's plain `mean` confidence (estimate, low, high).
fn estimate_accuracy(
    reference: &Profile,
    batch: &Profile,
    mean: (f64, f64, f64),
) -> (Estimate, String) {
    match Recalibration::fit(&reference.sample) {
        Some(map) => {
            let (value, se) = map.estimate(&batch.sample.confidence, batch.summary.rows);
            let e = Estimate {
                value,
                low: (value - Z95 * se).max(0.0),
                high: (value + Z95 * se).min(1.0),
            };
            let how = format!(
                "each calibrated confidence corrected by how far accuracy sat from confidence on the \
                 reference's labelled rows ({} equal-mass confidence bin(s)), averaged",
                map.bins()
            );
            (e, how)
        }
        None => {
            let (value, low, high) = mean;
            let how =
                "mean calibrated confidence (the reference has too few labelled rows to re-map it)";
            (Estimate { value, low, high }, how.to_string())
        }
    }
}

/// A p-value as people read it: four decimals, or scientific below 0.0001.
pub fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::profile::{Caps, Observation, ProfileBuilder};
    use crate::monitor::scan::Scan;
    use crate::util::Rng;

    const CAPS: Caps = Caps {
        values: 5_000,
        embeddings: 200,
        novelty: 400,
        seed: 3,
    };

    fn options() -> DriftOptions {
        DriftOptions {
            alpha: 0.05,
            min_effect: None,
            max_accuracy_drop: None,
            permutations: 200,
            seed: 11,
        }
    }

    /// Queries over 20 intents; `shift` moves a share of them to intent 0 with low confidence.
    fn queries(seed: u64, n: usize, shift: f64) -> Vec<(Observation, Vec<f32>)> {
        let mut rng = Rng::new(seed);
        let mut u = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (0..n)
            .map(|_| {
                let moved = u() < shift;
                let class = if moved { 0 } else { (u() * 20.0) as u32 };
                let confidence = if moved {
                    0.3 + 0.3 * u()
                } else {
                    0.6 + 0.4 * u()
                } as f32;
                let e = if moved {
                    [-1.0f32, 0.0]
                } else {
                    let a = u() as f32;
                    [a.cos(), a.sin()]
                };
                let o = Observation {
                    class,
                    confidence,
                    abstained: confidence < 0.5,
                    length: (20.0 + 30.0 * u()) as f32,
                    oov: if u() < 0.2 { 0.1 } else { 0.0 },
                    correct: Some(u() < f64::from(confidence)),
                };
                (o, e.to_vec())
            })
            .collect()
    }

    fn profile(rows: &[(Observation, Vec<f32>)]) -> Profile {
        let mut b = ProfileBuilder::new(20, 2, CAPS);
        rows.iter().for_each(|(o, e)| b.push(o, Some(e)));
        b.finish()
    }

    fn scanned(reference: &Profile, rows: &[(Observation, Vec<f32>)]) -> Scanned {
        let mut s = Scan::new(reference, 20, 2, CAPS);
        for (i, (o, e)) in rows.iter().enumerate() {
            let novelty = s.novelty(o, Some(e));
            s.push(&i.to_string(), "a query", o, Some(e), novelty);
        }
        s.finish()
    }

    fn subject() -> Subject {
        Subject {
            model: "m".into(),
            version: "1".into(),
            checksum: "c".into(),
            data: "d".into(),
            reference: "r".into(),
        }
    }

    fn labels() -> Vec<String> {
        (0..20).map(|i| format!("intent_{i}")).collect()
    }

    #[test]
    fn a_planted_shift_alarms_and_the_same_distribution_does_not() {
        let reference = profile(&queries(1, 1500, 0.0));
        let same = check(
            subject(),
            &reference,
            &scanned(&reference, &queries(2, 800, 0.0)),
            &labels(),
            true,
            &options(),
        );
        assert!(!same.drift, "{:?}", same.reasons);
        let shifted = check(
            subject(),
            &reference,
            &scanned(&reference, &queries(3, 800, 0.15)),
            &labels(),
            true,
            &options(),
        );
        assert!(shifted.drift);
        let fired: Vec<TestKind> = shifted
            .tests
            .iter()
            .filter(|t| t.drift)
            .map(|t| t.test)
            .collect();
        for kind in [
            TestKind::IntentDistribution,
            TestKind::Confidence,
            TestKind::AbstainRate,
            TestKind::Embedding,
        ] {
            assert!(fired.contains(&kind), "{kind:?} in {:?}", shifted.tests);
        }
        assert_eq!(shifted.intent_shifts[0].intent, "intent_0");
        assert!(shifted.intent_shifts[0].change > 0.1);
        // The estimate follows the real accuracy, which the planted shift lowered.
        let err = shifted.estimate_error.unwrap();
        assert!(err.abs() < 0.05, "{err}");
        assert!(shifted.estimated_accuracy.value < same.estimated_accuracy.value);
    }

    #[test]
    fn identical_batches_never_alarm_and_p_values_are_in_range() {
        let rows = queries(5, 600, 0.1);
        let reference = profile(&rows);
        let r = check(
            subject(),
            &reference,
            &scanned(&reference, &rows),
            &labels(),
            true,
            &options(),
        );
        assert!(!r.drift, "{:?}", r.reasons);
        for t in &r.tests {
            assert!(
                t.p_value > 0.0 && t.p_value <= 1.0 && t.p_adjusted >= t.p_value,
                "{t:?}"
            );
            assert!(t.effect >= 0.0 || t.test == TestKind::Embedding, "{t:?}");
        }
        let psi = r
            .tests
            .iter()
            .find(|t| t.test == TestKind::IntentDistribution)
            .unwrap();
        assert!(psi.effect.abs() < 1e-12);
    }

    #[test]
    fn min_effect_keeps_tiny_significant_shifts_quiet() {
        let reference = profile(&queries(1, 1500, 0.0));
        let batch = queries(3, 800, 0.15);
        let o = DriftOptions {
            min_effect: Some(10.0),
            ..options()
        };
        let r = check(
            subject(),
            &reference,
            &scanned(&reference, &batch),
            &labels(),
            true,
            &o,
        );
        assert!(!r.drift);
        assert!(r.tests.iter().any(|t| t.p_adjusted < 0.05));
    }
}
