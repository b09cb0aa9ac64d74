//! Calibration and abstention: temperature scaling fitted by minimising validation NLL, and the
//! abstain threshold chosen on validation to hold a target precision on answered queries.

use serde::{Deserialize, Serialize};

/// Softmax of `logits / t` into `out`.
pub fn softmax_t(logits: &[f32], t: f32, out: &mut [f32]) {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = 0f64;
    for (o, &z) in out.iter_mut().zip(logits) {
        *o = ((z - m) / t).exp();
        s += *o as f64;
    }
    let inv = (1.0 / s) as f32;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// Row-wise `softmax_t` of row-major logits with `c` columns.
pub fn softmax_rows(logits: &[f32], c: usize, t: f32) -> Vec<f32> {
    let mut out = vec![0f32; logits.len()];
    for (row, o) in logits.chunks(c).zip(out.chunks_mut(c)) {
        softmax_t(row, t, o);
    }
    out
}

/// Mean negative log-likelihood of labels `y` under `softmax(logits / t)`; `logits` is row-major
/// with `c` columns.
pub fn nll(logits: &[f32], y: &[u32], c: usize, t: f32) -> f64 {
    let mut total = 0f64;
    for (row, &label) in logits.chunks(c).zip(y) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let t = t as f64;
        let lse: f64 = row
            .iter()
            .map(|&z| ((z as f64 - m) / t).exp())
            .sum::<f64>()
            .ln();
        total += lse - (row[label as usize] as f64 - m) / t;
    }
    total / y.len().max(1) as f64
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemperatureFit {
    pub temperature: f32,
    pub nll_before: f64,
    pub nll_after: f64,
}

/// Finds the temperature in [0.05, 20] minimising validation NLL: golden-section search over
/// log t (NLL is unimodal in t for a fixed set of logits).
pub fn fit_temperature(logits: &[f32], y: &[u32], c: usize) -> TemperatureFit {
    let nll_before = nll(logits, y, c, 1.0);
    if y.is_empty() {
        return TemperatureFit {
            temperature: 1.0,
            nll_before,
            nll_after: nll_before,
        };
    }
    let f = |lt: f64| nll(logits, y, c, lt.exp() as f32);
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    let mut x1 = b - phi * (b - a);
    let mut x2 = a + phi * (b - a);
    let (mut f1, mut f2) = (f(x1), f(x2));
    for _ in 0..60 {
        if f1 <= f2 {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - phi * (b - a);
            f1 = f(x1);
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + phi * (b - a);
            f2 = f(x2);
        }
    }
    let lt = (a + b) / 2.0;
    let mut t = lt.exp() as f32;
    let mut nll_after = f(lt);
    // Never make things worse than leaving the logits alone.
    if nll_after > nll_before {
        t = 1.0;
        nll_after = nll_before;
    }
    TemperatureFit {
        temperature: t,
        nll_before,
        nll_after,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThresholdChoice {
    /// Answer when confidence >= threshold; abstain below it.
    pub threshold: f32,
    pub target_precision: f64,
    /// Precision and coverage on validation at the chosen threshold.
    pub precision: f64,
    pub coverage: f64,
    /// False when no threshold reaches the target; the threshold then maximises precision.
    pub target_met: bool,
}

/// The lowest confidence threshold whose answered validation queries keep precision >= target.
pub fn choose_threshold(confidence: &[f32], correct: &[bool], target: f64) -> ThresholdChoice {
    let mut order: Vec<usize> = (0..confidence.len()).collect();
    order.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]));
    let n = order.len();
    let mut best_met: Option<(f32, f64, f64)> = None;
    let mut best_any: Option<(f32, f64, f64)> = None;
    let mut hits = 0usize;
    let mut k = 0;
    while k < n {
        // Take every query tied at this confidence together: a threshold cannot split them.
        let t = confidence[order[k]];
        while k < n && confidence[order[k]] == t {
            hits += correct[order[k]] as usize;
            k += 1;
        }
        let precision = hits as f64 / k as f64;
        let coverage = k as f64 / n as f64;
        if precision >= target {
            best_met = Some((t, precision, coverage));
        }
        if best_any.is_none_or(|b| precision >= b.1) {
            best_any = Some((t, precision, coverage));
        }
    }
    match (best_met, best_any) {
        (Some((t, p, c)), _) => ThresholdChoice {
            threshold: if c >= 1.0 { 0.0 } else { t },
            target_precision: target,
            precision: p,
            coverage: c,
            target_met: true,
        },
        (None, Some((t, p, c))) => ThresholdChoice {
            threshold: t,
            target_precision: target,
            precision: p,
            coverage: c,
            target_met: false,
        },
        (None, None) => ThresholdChoice {
            threshold: 0.0,
            target_precision: target,
            precision: f64::NAN,
            coverage: 0.0,
            target_met: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_lowers_nll_of_overconfident_logits() {
        // Overconfident: large logits, 70% right.
        let mut logits = Vec::new();
        let mut y = Vec::new();
        for i in 0..100u32 {
            logits.extend_from_slice(&[8.0, 0.0, 0.0]);
            y.push(if i % 10 < 7 { 0 } else { 1 + i % 2 });
        }
        let fit = fit_temperature(&logits, &y, 3);
        assert!(fit.temperature > 1.0, "{fit:?}");
        assert!(fit.nll_after < fit.nll_before);
        // The optimum gives p(class 0) = 0.7 exactly: 8 / t = ln(0.7 / 0.15).
        let expect = 8.0 / (0.7f64 / 0.15).ln();
        assert!(
            (fit.temperature as f64 - expect).abs() < 1e-3,
            "{fit:?} vs {expect}"
        );
    }

    #[test]
    fn threshold_keeps_target_precision() {
        let conf = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
        let correct = [true, true, true, true, false, true, false, false];
        let ch = choose_threshold(&conf, &correct, 0.8);
        // At 0.6: 5 of 6 right (0.833); at 0.5: 5 of 7 (0.714).
        assert_eq!(ch.threshold, 0.6);
        assert!(ch.target_met);
        assert!((ch.coverage - 0.75).abs() < 1e-12);
        // Everything right: never abstain.
        let all = choose_threshold(&conf, &[true; 8], 0.95);
        assert_eq!(all.threshold, 0.0);
        // The best answer is wrong: the target cannot be met.
        let none = choose_threshold(&[0.9, 0.8], &[false, false], 0.5);
        assert!(!none.target_met);
    }

    #[test]
    fn softmax_t_sums_to_one() {
        let mut out = [0f32; 3];
        softmax_t(&[1.0, 2.0, 3.0], 2.0, &mut out);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(out[2] > out[1] && out[1] > out[0]);
    }
}
