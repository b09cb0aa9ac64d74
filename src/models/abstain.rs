//! The abstain rule: a weighted sum of standardised uncertainty scores (1 − confidence,
//! 1 − margin, ensemble disagreement, novelty), refused above a threshold. Fitted on the
//! validation rows as the held-out fit answered them: with out-of-scope rows, the weights are the
//! ones that recall the most of them at the allowed in-scope rejection; without, confidence and
//! novelty count equally. The threshold refuses at most `max_reject` of the in-scope rows, or
//! more when the answered rows need it to keep the target precision.

use serde::{Deserialize, Serialize};

/// Out-of-scope rows needed before the weights are fitted on them; with fewer, the default
/// weights are kept (their recall is still measured and reported).
pub const MIN_OUT_OF_SCOPE: usize = 10;

/// In-scope rejection rates at which the trade-off is reported.
pub const TRADEOFF_REJECTIONS: [f64; 6] = [0.01, 0.02, 0.05, 0.10, 0.20, 0.30];

/// Steps of the weight grid (weights are multiples of 1 / `GRID_STEPS` summing to 1).
const GRID_STEPS: usize = 10;

/// An uncertainty score the rule can weigh; each is oriented so that larger means "refuse".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// 1 − the calibrated confidence.
    Confidence,
    /// 1 − (best minus second-best probability).
    Margin,
    /// Total-variation distance between the two components' answers.
    Disagreement,
    /// Distance from the training data (`uncertainty.novelty`).
    Novelty,
    /// Cosine similarity to the nearest out-of-scope example minus that to the nearest intent's
    /// centroid (an encoder model trained with out-of-scope rows).
    OutOfScopeAffinity,
}

impl Score {
    pub const ALL: [Score; 5] = [
        Score::Confidence,
        Score::Margin,
        Score::Disagreement,
        Score::Novelty,
        Score::OutOfScopeAffinity,
    ];

    /// The value this score takes for one query, when the query has it.
    pub fn of(self, s: &Scores) -> Option<f64> {
        match self {
            Score::Confidence => Some(1.0 - s.confidence as f64),
            Score::Margin => Some(1.0 - s.margin as f64),
            Score::Disagreement => s.disagreement.map(f64::from),
            Score::Novelty => s.novelty.map(f64::from),
            Score::OutOfScopeAffinity => s.affinity.map(f64::from),
        }
    }

    /// How the summary writes it.
    pub fn describe(self) -> &'static str {
        match self {
            Score::Confidence => "(1 − confidence)",
            Score::Margin => "(1 − margin)",
            Score::Disagreement => "disagreement",
            Score::Novelty => "novelty",
            Score::OutOfScopeAffinity => "out-of-scope affinity",
        }
    }
}

/// One query's uncertainty scores, as the rule reads them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub confidence: f32,
    pub margin: f32,
    pub disagreement: Option<f32>,
    pub novelty: Option<f32>,
    pub affinity: Option<f32>,
}

/// One weighed score with the in-scope validation mean and standard deviation it is
/// standardised by.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleInput {
    pub score: Score,
    pub mean: f64,
    pub sd: f64,
    pub weight: f64,
}

/// Where the weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitMethod {
    /// No (or too few) out-of-scope rows: confidence and novelty weighed equally.
    Default,
    /// Chosen on out-of-scope validation rows to recall the most of them.
    OutOfScope,
}

/// Out-of-scope recall at one in-scope rejection rate (validation).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TradeoffPoint {
    pub in_scope_rejection: f64,
    pub out_of_scope_recall: f64,
}

/// How the rule was fitted and what it does on the validation rows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleFit {
    pub method: FitMethod,
    pub in_scope_rows: usize,
    pub out_of_scope_rows: usize,
    pub max_reject: f64,
    pub target_precision: f64,
    /// Share of in-scope validation rows refused.
    pub in_scope_rejection: f64,
    /// Precision of the answered in-scope validation rows.
    pub precision_answered: f64,
    /// False when no threshold keeps the target precision (the most precise one is kept).
    pub target_met: bool,
    /// Share of out-of-scope validation rows refused (the rows the weights were fitted on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_scope_recall: Option<f64>,
    /// Out-of-scope recall at other in-scope rejection rates, with the rule's weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tradeoff: Vec<TradeoffPoint>,
}

/// Refuse a query when Σ weight · (score − mean) / sd exceeds `threshold`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AbstainRule {
    pub inputs: Vec<RuleInput>,
    pub threshold: f64,
    pub fit: RuleFit,
}

/// What the rule must keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleParams {
    pub target_precision: f64,
    pub max_reject: f64,
}

impl AbstainRule {
    /// The combined score of one query; a score the query lacks (the linear-only answers of the
    /// cascade have no novelty or disagreement) counts as the in-scope mean.
    pub fn score(&self, s: &Scores) -> f64 {
        self.inputs
            .iter()
            .map(|i| {
                i.score
                    .of(s)
                    .map_or(0.0, |v| i.weight * (v - i.mean) / i.sd)
            })
            .sum()
    }

    pub fn refuses(&self, s: &Scores) -> bool {
        self.score(s) > self.threshold
    }

    /// The rule as the summary prints it, e.g. `0.50·(1 − confidence) + 0.50·novelty`.
    pub fn describe(&self) -> String {
        self.inputs
            .iter()
            .filter(|i| i.weight > 0.0)
            .map(|i| format!("{:.2}·{}", i.weight, i.score.describe()))
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// Fits the rule on the in-scope validation rows (`correct`: whether each was answered
    /// right) and the out-of-scope rows.
    pub fn fit(
        in_scope: &[Scores],
        correct: &[bool],
        out_of_scope: &[Scores],
        params: RuleParams,
    ) -> AbstainRule {
        assert_eq!(in_scope.len(), correct.len());
        let scores: Vec<Score> = Score::ALL
            .into_iter()
            .filter(|s| !in_scope.is_empty() && in_scope.iter().all(|q| s.of(q).is_some()))
            .collect();
        let stats: Vec<(f64, f64)> = scores
            .iter()
            .map(|s| mean_sd(in_scope.iter().filter_map(|q| s.of(q))))
            .collect();
        let z = |rows: &[Scores]| -> Vec<Vec<f64>> {
            rows.iter()
                .map(|q| {
                    scores
                        .iter()
                        .zip(&stats)
                        .map(|(s, (m, sd))| (s.of(q).unwrap_or(*m) - m) / sd)
                        .collect()
                })
                .collect()
        };
        let (zi, zo) = (z(in_scope), z(out_of_scope));
        let combine = |rows: &[Vec<f64>], w: &[f64]| -> Vec<f64> {
            rows.iter()
                .map(|r| r.iter().zip(w).map(|(a, b)| a * b).sum())
                .collect()
        };
        let default = default_weights(&scores);
        let fitted = out_of_scope.len() >= MIN_OUT_OF_SCOPE;
        let weights = if fitted {
            // Weight vectors are compared at one in-scope rejection: the least any of them
            // needs (the cap, or more when every one needs more to keep the precision target).
            // The best is precise enough there and recalls the most out-of-scope rows, then
            // separates best overall (AUROC), then stays nearest the default.
            let grid = simplex(scores.len(), GRID_STEPS);
            let combined: Vec<(Vec<f64>, Vec<f64>)> = grid
                .iter()
                .map(|w| (combine(&zi, w), combine(&zo, w)))
                .collect();
            let allowed = combined
                .iter()
                .map(|(si, _)| threshold(si, correct, params).refused)
                .min()
                .unwrap_or(0);
            let mut best: Option<(Key, &Vec<f64>)> = None;
            for (w, (si, so)) in grid.iter().zip(&combined) {
                let Some(t) = precise_cut(si, correct, allowed, params.target_precision) else {
                    continue;
                };
                let key = (
                    so.iter().filter(|&&v| v > t).count(),
                    auroc(si, so),
                    -w.iter()
                        .zip(&default)
                        .map(|(a, b)| (a - b).abs())
                        .sum::<f64>(),
                );
                if best.as_ref().is_none_or(|(k, _)| better(&key, k)) {
                    best = Some((key, w));
                }
            }
            best.map_or(default.clone(), |(_, w)| w.clone())
        } else {
            default
        };
        let si = combine(&zi, &weights);
        let so = combine(&zo, &weights);
        let cut = threshold(&si, correct, params);
        let recall_at = |t: f64| so.iter().filter(|&&v| v > t).count() as f64 / so.len() as f64;
        let tradeoff = if so.is_empty() {
            Vec::new()
        } else {
            let mut sorted = si.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            TRADEOFF_REJECTIONS
                .iter()
                .map(|&r| {
                    let k = ((r * sorted.len() as f64).floor() as usize).min(sorted.len());
                    let t = cut_below(&sorted, k);
                    TradeoffPoint {
                        in_scope_rejection: sorted.iter().filter(|&&v| v > t).count() as f64
                            / sorted.len() as f64,
                        out_of_scope_recall: recall_at(t),
                    }
                })
                .collect()
        };
        AbstainRule {
            inputs: scores
                .iter()
                .zip(&stats)
                .zip(&weights)
                .map(|((&score, &(mean, sd)), &weight)| RuleInput {
                    score,
                    mean,
                    sd,
                    weight,
                })
                .collect(),
            threshold: cut.threshold,
            fit: RuleFit {
                method: if fitted {
                    FitMethod::OutOfScope
                } else {
                    FitMethod::Default
                },
                in_scope_rows: in_scope.len(),
                out_of_scope_rows: out_of_scope.len(),
                max_reject: params.max_reject,
                target_precision: params.target_precision,
                in_scope_rejection: cut.rejection,
                precision_answered: cut.precision,
                target_met: cut.target_met,
                out_of_scope_recall: (!so.is_empty()).then(|| recall_at(cut.threshold)),
                tradeoff,
            },
        }
    }
}

/// How a weight vector ranks: out-of-scope rows recalled, AUROC, closeness to the default.
type Key = (usize, f64, f64);

fn better(a: &Key, b: &Key) -> bool {
    a.0.cmp(&b.0)
        .then(a.1.total_cmp(&b.1))
        .then(a.2.total_cmp(&b.2))
        .is_gt()
}

/// Confidence and novelty equally, or confidence alone without novelty.
fn default_weights(scores: &[Score]) -> Vec<f64> {
    let has_novelty = scores.contains(&Score::Novelty);
    scores
        .iter()
        .map(|s| match (s, has_novelty) {
            (Score::Confidence, true) | (Score::Novelty, true) => 0.5,
            (Score::Confidence, false) => 1.0,
            _ => 0.0,
        })
        .collect()
}

/// Mean and standard deviation (population); a constant score gets sd 1 so it stays finite.
pub fn mean_sd(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count().max(1) as f64;
    let mean = values.clone().sum::<f64>() / n;
    let var = values.map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let sd = var.sqrt();
    (mean, if sd > 1e-9 { sd } else { 1.0 })
}

/// Every vector of `k` non-negative multiples of 1/`steps` that sum to 1.
fn simplex(k: usize, steps: usize) -> Vec<Vec<f64>> {
    fn go(k: usize, left: usize, steps: usize, cur: &mut Vec<f64>, out: &mut Vec<Vec<f64>>) {
        if k == 1 {
            cur.push(left as f64 / steps as f64);
            out.push(cur.clone());
            cur.pop();
            return;
        }
        for i in 0..=left {
            cur.push(i as f64 / steps as f64);
            go(k - 1, left - i, steps, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    if k > 0 {
        go(k, steps, steps, &mut Vec::new(), &mut out);
    }
    out
}

/// The probability that an out-of-scope row scores above an in-scope one (ties count half).
pub fn auroc(in_scope: &[f64], out_of_scope: &[f64]) -> f64 {
    let scores: Vec<f64> = in_scope.iter().chain(out_of_scope).copied().collect();
    let positive: Vec<bool> = (0..scores.len()).map(|i| i >= in_scope.len()).collect();
    crate::metrics::auroc(&scores, &positive)
}

/// A threshold below which at most `k` of the descending-sorted scores lie above: the k-th
/// score when it differs from the next, else the largest score refusing fewer than k.
fn cut_below(sorted_desc: &[f64], k: usize) -> f64 {
    if sorted_desc.is_empty() {
        return 0.0;
    }
    if k == 0 {
        return sorted_desc[0];
    }
    let k = k.min(sorted_desc.len());
    // Refusing exactly the top k needs the k-th score to be strictly above the next one.
    let mut j = k;
    while j > 0 && j < sorted_desc.len() && sorted_desc[j - 1] == sorted_desc[j] {
        j -= 1;
    }
    refusing(sorted_desc, j)
}

/// The threshold that refuses exactly the top `k` of the descending-sorted scores (`k` at a
/// tie boundary).
fn refusing(sorted_desc: &[f64], k: usize) -> f64 {
    match k {
        0 => sorted_desc[0],
        k if k < sorted_desc.len() => sorted_desc[k],
        _ => sorted_desc[sorted_desc.len() - 1] - 1.0,
    }
}

struct Cut {
    threshold: f64,
    /// In-scope rows refused.
    refused: usize,
    rejection: f64,
    precision: f64,
    target_met: bool,
}

/// The threshold for combined in-scope scores `s`: refuse the top `max_reject` share, or more
/// when the rows left answered need it to keep `target_precision`, whichever refuses more.
fn threshold(s: &[f64], correct: &[bool], p: RuleParams) -> Cut {
    let n = s.len();
    if n == 0 {
        return Cut {
            threshold: 0.0,
            refused: 0,
            rejection: 0.0,
            precision: f64::NAN,
            target_met: false,
        };
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    let sorted: Vec<f64> = order.iter().map(|&i| s[i]).collect();
    // right[k]: correct answers among the rows left after refusing the top k.
    let mut right = vec![0usize; n + 1];
    for k in (0..n).rev() {
        right[k] = right[k + 1] + correct[order[k]] as usize;
    }
    let precision_after = |k: usize| {
        if k >= n {
            f64::NAN
        } else {
            right[k] as f64 / (n - k) as f64
        }
    };
    let cap = ((p.max_reject * n as f64).floor() as usize).min(n);
    // The precision target: the fewest refusals (at a tie boundary) that keep it.
    let boundaries: Vec<usize> = (0..=n)
        .filter(|&k| k == 0 || k == n || sorted[k - 1] != sorted[k])
        .collect();
    let needed = boundaries
        .iter()
        .copied()
        .find(|&k| k < n && precision_after(k) >= p.target_precision);
    let (k, target_met) = match needed {
        Some(k) => (k.max(cut_count(&sorted, cap)), true),
        None => {
            // Unreachable target: the most precise boundary.
            let best = boundaries
                .iter()
                .copied()
                .filter(|&k| k < n)
                .max_by(|&a, &b| {
                    precision_after(a)
                        .total_cmp(&precision_after(b))
                        .then(b.cmp(&a))
                })
                .unwrap_or(0);
            (best.max(cut_count(&sorted, cap)), false)
        }
    };
    let t = refusing(&sorted, k);
    let refused = s.iter().filter(|&&v| v > t).count();
    Cut {
        threshold: t,
        refused,
        rejection: refused as f64 / n as f64,
        precision: precision_after(refused),
        target_met,
    }
}

/// The threshold refusing at most `allowed` of the in-scope rows (scores `s`), when the rows it
/// leaves answered keep `target` precision; `None` when they do not.
fn precise_cut(s: &[f64], correct: &[bool], allowed: usize, target: f64) -> Option<f64> {
    let mut order: Vec<usize> = (0..s.len()).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    let sorted: Vec<f64> = order.iter().map(|&i| s[i]).collect();
    if sorted.is_empty() {
        return None;
    }
    let t = cut_below(&sorted, allowed);
    let (mut answered, mut right) = (0usize, 0usize);
    for (v, ok) in s.iter().zip(correct) {
        if *v <= t {
            answered += 1;
            right += *ok as usize;
        }
    }
    (answered > 0 && right as f64 / answered as f64 >= target).then_some(t)
}

/// How many of the descending-sorted scores a threshold at `cut_below(sorted, cap)` refuses.
fn cut_count(sorted_desc: &[f64], cap: usize) -> usize {
    let t = cut_below(sorted_desc, cap);
    sorted_desc.iter().filter(|&&v| v > t).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(confidence: f32, novelty: f32) -> Scores {
        Scores {
            confidence,
            margin: confidence / 2.0,
            disagreement: None,
            novelty: Some(novelty),
            affinity: None,
        }
    }

    fn params(max_reject: f64) -> RuleParams {
        RuleParams {
            target_precision: 0.9,
            max_reject,
        }
    }

    #[test]
    fn default_rule_refuses_at_most_max_reject() {
        // 200 in-scope rows, all right: only the cap decides.
        let rows: Vec<Scores> = (0..200)
            .map(|i| q(0.5 + (i % 50) as f32 / 100.0, (i % 37) as f32))
            .collect();
        let rule = AbstainRule::fit(&rows, &[true; 200], &[], params(0.05));
        assert_eq!(rule.fit.method, FitMethod::Default);
        let refused = rows.iter().filter(|r| rule.refuses(r)).count();
        assert!(refused <= 10, "{refused} refused");
        assert!(refused > 0, "a 5% cap with distinct scores refuses some");
        assert!((rule.fit.in_scope_rejection - refused as f64 / 200.0).abs() < 1e-12);
        // Far from everything: refused.
        assert!(rule.refuses(&q(0.99, 500.0)));
    }

    #[test]
    fn precision_target_refuses_more_than_the_cap_when_needed() {
        // Half the low-confidence rows are wrong: 5% is not enough for 90% precision.
        let rows: Vec<Scores> = (0..100).map(|i| q(i as f32 / 100.0, 0.0)).collect();
        let correct: Vec<bool> = (0..100).map(|i| i >= 30 || i % 2 == 0).collect();
        let rule = AbstainRule::fit(&rows, &correct, &[], params(0.05));
        assert!(rule.fit.target_met);
        assert!(rule.fit.precision_answered >= 0.9);
        assert!(rule.fit.in_scope_rejection > 0.05);
    }

    #[test]
    fn fitted_rule_weighs_the_score_that_separates() {
        // Out-of-scope rows are confident but novel: the fitted rule must lean on novelty.
        let rows: Vec<Scores> = (0..300)
            .map(|i| q(0.6 + (i % 40) as f32 / 100.0, (i % 23) as f32 / 10.0))
            .collect();
        let oos: Vec<Scores> = (0..40).map(|i| q(0.95, 3.0 + i as f32 / 10.0)).collect();
        let rule = AbstainRule::fit(&rows, &[true; 300], &oos, params(0.05));
        assert_eq!(rule.fit.method, FitMethod::OutOfScope);
        let w = |s: Score| rule.inputs.iter().find(|i| i.score == s).unwrap().weight;
        assert!(w(Score::Novelty) > w(Score::Confidence), "{rule:?}");
        assert!(rule.fit.out_of_scope_recall.unwrap() > 0.9, "{rule:?}");
        assert!(rule.fit.in_scope_rejection <= 0.05);
        assert!(rule.refuses(&q(0.97, 4.0)));
        assert!(!rule.refuses(&q(0.97, 0.5)));
        assert_eq!(rule.fit.tradeoff.len(), TRADEOFF_REJECTIONS.len());
        // Round-trips through JSON (the manifest).
        let json = serde_json::to_string(&rule).unwrap();
        assert_eq!(serde_json::from_str::<AbstainRule>(&json).unwrap(), rule);
    }

    #[test]
    fn missing_scores_count_as_the_mean() {
        let rows: Vec<Scores> = (0..50)
            .map(|i| q(0.5 + i as f32 / 100.0, i as f32))
            .collect();
        let rule = AbstainRule::fit(&rows, &[true; 50], &[], params(0.05));
        let novelty_mean = rule
            .inputs
            .iter()
            .find(|i| i.score == Score::Novelty)
            .unwrap()
            .mean;
        let mut s = q(0.7, novelty_mean as f32);
        let with = rule.score(&s);
        s.novelty = None;
        assert!((rule.score(&s) - with).abs() < 1e-5);
    }

    #[test]
    fn simplex_and_auroc() {
        assert_eq!(
            simplex(2, 2),
            vec![vec![0.0, 1.0], vec![0.5, 0.5], vec![1.0, 0.0]]
        );
        assert_eq!(simplex(4, 10).len(), 286);
        assert_eq!(auroc(&[0.0, 1.0], &[2.0]), 1.0);
        assert_eq!(auroc(&[1.0], &[1.0]), 0.5);
    }
}
