//! A/B comparison of two models on the same labelled rows: each one's accuracy and macro-F1,
//! the accuracy difference with a 95% interval for paired proportions, McNemar's exact test on
//! the rows exactly one of them got right, and the per-intent F1 differences. `evaluate
//! --compare` and `train --promote-if-better` both use it. Each row is answered with the best
//! intent: abstention plays no part, so both models are judged on every row.

use serde::{Deserialize, Serialize};

use crate::io::read::Record;
use crate::metrics::{self, pct, Scored};
use crate::models::Model;
use crate::monitor::drift::Estimate;
use crate::monitor::stats::{mcnemar_exact, paired_difference_interval, Z95};

/// One model's side of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub model: String,
    pub accuracy: f64,
    pub macro_f1: f64,
}

/// One intent's F1 under each model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentDelta {
    pub intent: String,
    pub support: usize,
    pub f1_a: f64,
    pub f1_b: f64,
    /// A minus B.
    pub difference: f64,
}

/// Model A against model B on the same rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub rows: usize,
    pub a: Side,
    pub b: Side,
    /// Accuracy of A minus accuracy of B, with its 95% interval (paired rows).
    pub difference: Estimate,
    /// Rows only A got right, and rows only B got right.
    pub only_a_right: u64,
    pub only_b_right: u64,
    /// McNemar's exact test on those discordant rows.
    pub mcnemar_p: f64,
    /// Every intent in the data, largest F1 difference first.
    pub per_intent: Vec<IntentDelta>,
}

impl Comparison {
    /// A's answers (`a`) against B's (`b`) for rows whose true intents are `truth`.
    pub fn of(truth: &[&str], a: (&str, &[String]), b: (&str, &[String])) -> Comparison {
        let scored = |answers: &[String]| -> Vec<Scored> {
            truth
                .iter()
                .zip(answers)
                .map(|(t, p)| Scored {
                    truth: t.to_string(),
                    predicted: p.clone(),
                    confidence: 1.0,
                    abstained: false,
                })
                .collect()
        };
        let (sa, sb) = (scored(a.1), scored(b.1));
        let (fa, macro_a) = metrics::per_intent(&sa);
        let (fb, macro_b) = metrics::per_intent(&sb);
        let (mut only_a, mut only_b) = (0u64, 0u64);
        for ((t, pa), pb) in truth.iter().zip(a.1).zip(b.1) {
            match (pa == t, pb == t) {
                (true, false) => only_a += 1,
                (false, true) => only_b += 1,
                _ => {}
            }
        }
        let n = truth.len() as u64;
        let (value, low, high) = paired_difference_interval(only_a, only_b, n, Z95);
        let mut per_intent: Vec<IntentDelta> = fa
            .iter()
            .filter(|(_, s)| s.support > 0)
            .map(|(intent, s)| {
                let f1_b = fb.get(intent).map_or(0.0, |x| x.f1);
                IntentDelta {
                    intent: intent.clone(),
                    support: s.support,
                    f1_a: s.f1,
                    f1_b,
                    difference: s.f1 - f1_b,
                }
            })
            .collect();
        per_intent.sort_by(|x, y| {
            y.difference
                .abs()
                .total_cmp(&x.difference.abs())
                .then(x.intent.cmp(&y.intent))
        });
        Comparison {
            rows: truth.len(),
            a: Side {
                model: a.0.to_string(),
                accuracy: metrics::accuracy(&sa),
                macro_f1: macro_a,
            },
            b: Side {
                model: b.0.to_string(),
                accuracy: metrics::accuracy(&sb),
                macro_f1: macro_b,
            },
            difference: Estimate { value, low, high },
            only_a_right: only_a,
            only_b_right: only_b,
            mcnemar_p: mcnemar_exact(only_a, only_b).p_value,
            per_intent,
        }
    }

    /// The lines `evaluate` prints.
    pub fn summary(&self) -> String {
        let d = &self.difference;
        let mut s = format!(
            "compare    {} vs {} on the same {} rows: accuracy {} vs {} (difference {:+.2} points, \
             95% interval [{:+.2}, {:+.2}]); macro-F1 {:.4} vs {:.4}\n           \
             only A right on {} rows, only B on {}: McNemar exact p {:.4}\n",
            self.a.model,
            self.b.model,
            self.rows,
            pct(self.a.accuracy),
            pct(self.b.accuracy),
            d.value * 100.0,
            d.low * 100.0,
            d.high * 100.0,
            self.a.macro_f1,
            self.b.macro_f1,
            self.only_a_right,
            self.only_b_right,
            self.mcnemar_p
        );
        let moved: Vec<&IntentDelta> = self
            .per_intent
            .iter()
            .filter(|x| x.difference != 0.0)
            .take(5)
            .collect();
        if !moved.is_empty() {
            s.push_str("           F1 differences (A − B):");
            for x in moved {
                s.push_str(&format!(" {} {:+.3};", x.intent, x.difference));
            }
            s.pop();
            s.push('\n');
        }
        s
    }

    /// The run's metrics of the comparison.
    pub fn run_metrics(&self) -> [(&'static str, f64); 5] {
        [
            ("compare.accuracy_other", self.b.accuracy),
            ("compare.macro_f1_other", self.b.macro_f1),
            ("compare.accuracy_difference", self.difference.value),
            ("compare.accuracy_difference_low", self.difference.low),
            ("compare.mcnemar_p", self.mcnemar_p),
        ]
    }
}

/// Each row's best intent under `model` (rows already masked the way it was trained).
pub fn best_intents(
    model: &Model,
    rows: &[&Record],
    batch_size: usize,
) -> crate::Result<Vec<String>> {
    let labels = model.labels();
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
        for p in model.predict(&texts)? {
            out.push(labels[model.decide(&p, 1).best].clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn discordant_rows_drive_the_test_and_the_interval() {
        // 10 rows: both right on 3, only A on 6, only B on 1.
        let truth = ["x"; 10];
        let a = owned(&["x", "x", "x", "x", "x", "x", "x", "x", "x", "y"]);
        let b = owned(&["x", "x", "x", "y", "y", "y", "y", "y", "y", "x"]);
        let c = Comparison::of(&truth, ("a", &a), ("b", &b));
        assert_eq!((c.only_a_right, c.only_b_right), (6, 1));
        assert!((c.a.accuracy - 0.9).abs() < 1e-12 && (c.b.accuracy - 0.4).abs() < 1e-12);
        assert!((c.difference.value - 0.5).abs() < 1e-12);
        assert!(c.difference.low < 0.5 && c.difference.high > 0.5);
        // McNemar exact on 6 vs 1: 2 · P(X ≤ 1), X ~ Bin(7, 1/2) = 2 · 8/128.
        assert!((c.mcnemar_p - 0.125).abs() < 1e-12);
        assert_eq!(c.per_intent[0].intent, "x");
    }

    #[test]
    fn identical_answers_differ_by_nothing() {
        let truth = ["p", "q", "p"];
        let a = owned(&["p", "p", "p"]);
        let c = Comparison::of(&truth, ("a", &a), ("b", &a));
        assert_eq!((c.only_a_right, c.only_b_right, c.mcnemar_p), (0, 0, 1.0));
        assert_eq!(c.difference.value, 0.0);
        assert!(c.per_intent.iter().all(|x| x.difference == 0.0));
    }
}
