//! Pure metrics over labelled predictions: accuracy, macro-F1 and per-intent scores, top
//! confusions, calibration (ECE and reliability bins), NLL, AUROC, the coverage–accuracy curve,
//! percentiles, and how a share is shown. A leaf: functions of their inputs only, no I/O, and no
//! `use` of any other cqr module, so `models` (training) and `eval` (reports) can both use it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// One scored, labelled query.
#[derive(Debug, Clone)]
pub struct Scored {
    pub truth: String,
    pub predicted: String,
    pub confidence: f32,
    pub abstained: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IntentScore {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Confusion {
    pub truth: String,
    pub predicted: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CoveragePoint {
    pub threshold: f64,
    pub coverage: f64,
    pub accuracy: f64,
}

/// Area under the ROC curve of `score` for `positive` (Mann–Whitney, ties counted half).
pub fn auroc(score: &[f64], positive: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    let mut rank = vec![0f64; score.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && score[idx[j + 1]] == score[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            rank[idx[k]] = avg;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|p| **p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return f64::NAN;
    }
    let sum_pos: f64 = rank
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(r, _)| r)
        .sum();
    (sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// The share of negatives scoring at or above the threshold that keeps `tpr` of the positives
/// (FPR at 95% TPR with `tpr` = 0.95); NaN without positives or negatives.
pub fn fpr_at_tpr(score: &[f64], positive: &[bool], tpr: f64) -> f64 {
    let mut pos: Vec<f64> = score
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(s, _)| *s)
        .collect();
    let neg: Vec<f64> = score
        .iter()
        .zip(positive)
        .filter(|(_, p)| !**p)
        .map(|(s, _)| *s)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    pos.sort_by(f64::total_cmp);
    // The largest threshold with at least `tpr` of the positives at or above it.
    let keep = (tpr * pos.len() as f64).ceil() as usize;
    let t = pos[pos.len() - keep.clamp(1, pos.len())];
    neg.iter().filter(|&&s| s >= t).count() as f64 / neg.len() as f64
}

/// Refusing every query scoring above a threshold set so that at most `rejection` of the
/// negatives (in-scope rows) are refused: the share of negatives and of positives refused.
pub fn refused_at(score: &[f64], positive: &[bool], rejection: f64) -> (f64, f64) {
    let mut neg: Vec<f64> = score
        .iter()
        .zip(positive)
        .filter(|(_, p)| !**p)
        .map(|(s, _)| *s)
        .collect();
    let n_pos = positive.iter().filter(|p| **p).count();
    if neg.is_empty() || n_pos == 0 {
        return (f64::NAN, f64::NAN);
    }
    neg.sort_by(|a, b| b.total_cmp(a));
    let mut k = ((rejection * neg.len() as f64).floor() as usize).min(neg.len());
    // A threshold cannot split tied scores: refuse fewer rather than more.
    while k > 0 && k < neg.len() && neg[k - 1] == neg[k] {
        k -= 1;
    }
    let refused = |t: f64, pos: bool| {
        score
            .iter()
            .zip(positive)
            .filter(|(s, p)| **p == pos && **s > t)
            .count()
    };
    let t = match k {
        0 => neg[0],
        k if k < neg.len() => neg[k],
        _ => f64::NEG_INFINITY,
    };
    (
        refused(t, false) as f64 / neg.len() as f64,
        refused(t, true) as f64 / n_pos as f64,
    )
}

pub const ECE_BINS: usize = 15;

pub fn accuracy(s: &[Scored]) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    s.iter().filter(|x| x.truth == x.predicted).count() as f64 / s.len() as f64
}

/// Per-intent precision/recall/F1 over every label that appears as truth or prediction, and
/// their unweighted mean F1.
pub fn per_intent(s: &[Scored]) -> (BTreeMap<String, IntentScore>, f64) {
    let labels: BTreeSet<&str> = s
        .iter()
        .flat_map(|x| [x.truth.as_str(), x.predicted.as_str()])
        .collect();
    let mut tp: HashMap<&str, usize> = HashMap::new();
    let mut pred: HashMap<&str, usize> = HashMap::new();
    let mut sup: HashMap<&str, usize> = HashMap::new();
    for x in s {
        *pred.entry(&x.predicted).or_default() += 1;
        *sup.entry(&x.truth).or_default() += 1;
        if x.truth == x.predicted {
            *tp.entry(&x.truth).or_default() += 1;
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut out = BTreeMap::new();
    for l in &labels {
        let t = tp.get(l).copied().unwrap_or(0);
        let p = ratio(t, pred.get(l).copied().unwrap_or(0));
        let r = ratio(t, sup.get(l).copied().unwrap_or(0));
        let f1 = if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        };
        out.insert(
            l.to_string(),
            IntentScore {
                precision: p,
                recall: r,
                f1,
                support: sup.get(l).copied().unwrap_or(0),
            },
        );
    }
    let macro_f1 = if out.is_empty() {
        f64::NAN
    } else {
        out.values().map(|v| v.f1).sum::<f64>() / out.len() as f64
    };
    (out, macro_f1)
}

/// The `top` most frequent (truth, predicted) error pairs.
pub fn confusions(s: &[Scored], top: usize) -> Vec<Confusion> {
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for x in s.iter().filter(|x| x.truth != x.predicted) {
        *counts.entry((&x.truth, &x.predicted)).or_default() += 1;
    }
    let mut v: Vec<Confusion> = counts
        .into_iter()
        .map(|((t, p), count)| Confusion {
            truth: t.to_string(),
            predicted: p.to_string(),
            count,
        })
        .collect();
    v.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| (&a.truth, &a.predicted).cmp(&(&b.truth, &b.predicted)))
    });
    v.truncate(top);
    v
}

/// Equal-width confidence bins and the expected calibration error (weighted mean |acc − conf|).
pub fn reliability(conf: &[f32], correct: &[bool], bins: usize) -> (Vec<ReliabilityBin>, f64) {
    let mut count = vec![0usize; bins];
    let mut sum_conf = vec![0f64; bins];
    let mut hits = vec![0usize; bins];
    for (&c, &ok) in conf.iter().zip(correct) {
        let b = ((c as f64 * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        sum_conf[b] += c as f64;
        hits[b] += ok as usize;
    }
    let n = conf.len().max(1) as f64;
    let mut ece = 0.0;
    let out = (0..bins)
        .map(|b| {
            let (mc, acc) = if count[b] == 0 {
                (0.0, 0.0)
            } else {
                (
                    sum_conf[b] / count[b] as f64,
                    hits[b] as f64 / count[b] as f64,
                )
            };
            ece += count[b] as f64 / n * (acc - mc).abs();
            ReliabilityBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count: count[b],
                mean_confidence: mc,
                accuracy: acc,
            }
        })
        .collect();
    (out, if conf.is_empty() { f64::NAN } else { ece })
}

/// Coverage and accuracy of answered queries as the threshold moves over `thresholds`.
pub fn coverage_curve(conf: &[f32], correct: &[bool], thresholds: &[f64]) -> Vec<CoveragePoint> {
    let n = conf.len().max(1) as f64;
    thresholds
        .iter()
        .map(|&t| {
            let answered: Vec<bool> = conf
                .iter()
                .zip(correct)
                .filter(|(c, _)| **c as f64 >= t)
                .map(|(_, ok)| *ok)
                .collect();
            CoveragePoint {
                threshold: t,
                coverage: answered.len() as f64 / n,
                accuracy: if answered.is_empty() {
                    f64::NAN
                } else {
                    answered.iter().filter(|x| **x).count() as f64 / answered.len() as f64
                },
            }
        })
        .collect()
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Mean negative log-likelihood of the true classes under row-major probabilities
/// (`c` per row), floored at 1e-12 so a zero probability costs a finite amount.
pub fn mean_nll(probs: &[f32], y: &[u32], c: usize) -> f64 {
    probs
        .chunks(c)
        .zip(y)
        .map(|(row, &l)| -(row[l as usize].max(1e-12) as f64).ln())
        .sum::<f64>()
        / y.len().max(1) as f64
}

/// A share as a percentage with two decimals (`95.14%`), or `n/a` when undefined.
pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}%", 100.0 * x)
    } else {
        "n/a".into()
    }
}

/// A metrics struct as (serialised field name, value), in serialisation order, flattened
/// fields included: numbers as they are, a bool as 0 or 1, a `None` left out. Unlike a trip
/// through `serde_json::Value`, NaN and infinities survive (JSON has neither). Nested structs
/// must be `#[serde(flatten)]`; anything but numbers, bools and options is refused.
pub fn named_values<T: Serialize>(metrics: &T) -> Vec<(String, f64)> {
    let mut out = NamedValues {
        out: Vec::new(),
        name: String::new(),
    };
    metrics
        .serialize(&mut out)
        .expect("a metrics struct holds only numbers, bools and options");
    out.out
}

/// The serializer behind [`named_values`]: map keys and struct fields set `name`, scalars push
/// `(name, value)`.
struct NamedValues {
    out: Vec<(String, f64)>,
    name: String,
}

impl NamedValues {
    fn push(&mut self, value: f64) -> Result<(), std::fmt::Error> {
        self.out.push((self.name.clone(), value));
        Ok(())
    }
}

type Refused = serde::ser::Impossible<(), std::fmt::Error>;

/// Scalar methods that push their value as `f64`.
macro_rules! push_as_f64 {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, v: $t) -> Result<(), Self::Error> {
            self.push(v as f64)
        }
    )*};
}

/// Methods for shapes a metrics struct never has.
macro_rules! refuse {
    ($($method:ident($($t:ty),*) -> $ok:ty;)*) => {$(
        fn $method(self, $(_: $t),*) -> Result<$ok, Self::Error> {
            Err(std::fmt::Error)
        }
    )*};
}

impl serde::Serializer for &mut NamedValues {
    type Ok = ();
    type Error = std::fmt::Error;
    type SerializeSeq = Refused;
    type SerializeTuple = Refused;
    type SerializeTupleStruct = Refused;
    type SerializeTupleVariant = Refused;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Refused;

    push_as_f64!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_f32: f32, serialize_f64: f64);
    refuse! {
        serialize_char(char) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Refused;
        serialize_tuple(usize) -> Refused;
        serialize_tuple_struct(&'static str, usize) -> Refused;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Refused;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Refused;
    }

    fn serialize_bool(self, v: bool) -> Result<(), Self::Error> {
        self.push(v as u8 as f64)
    }
    /// A map key.
    fn serialize_str(self, v: &str) -> Result<(), Self::Error> {
        self.name = v.to_string();
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Self::Error> {
        value.serialize(self)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Self::Error> {
        Err(std::fmt::Error)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Self::Error> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Self::Error> {
        Ok(self)
    }
}

impl serde::ser::SerializeMap for &mut NamedValues {
    type Ok = ();
    type Error = std::fmt::Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Self::Error> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl serde::ser::SerializeStruct for &mut NamedValues {
    type Ok = ();
    type Error = std::fmt::Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        self.name = key.to_string();
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str, p: &str, c: f32) -> Scored {
        Scored {
            truth: t.into(),
            predicted: p.into(),
            confidence: c,
            abstained: false,
        }
    }

    #[test]
    fn f1_and_confusions() {
        let v = vec![
            s("a", "a", 0.9),
            s("a", "b", 0.6),
            s("b", "b", 0.8),
            s("c", "b", 0.5),
        ];
        assert_eq!(accuracy(&v), 0.5);
        let (pi, m) = per_intent(&v);
        assert_eq!(pi["a"].precision, 1.0);
        assert_eq!(pi["a"].recall, 0.5);
        assert!((pi["b"].precision - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(pi["c"].f1, 0.0);
        let fa = 2.0 * 1.0 * 0.5 / 1.5;
        let fb = 2.0 * (1.0 / 3.0) * 1.0 / (1.0 / 3.0 + 1.0);
        assert!((m - (fa + fb) / 3.0).abs() < 1e-12);
        let c = confusions(&v, 10);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].truth, "a");
    }

    #[test]
    fn ece_is_zero_when_calibrated_and_positive_otherwise() {
        let conf = vec![0.75f32; 4];
        let (_, e) = reliability(&conf, &[true, true, true, false], 15);
        assert!(e.abs() < 1e-9);
        let (bins, e) = reliability(&[0.95, 0.95], &[false, false], 15);
        assert!((e - 0.95).abs() < 1e-6);
        assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), 2);
    }

    #[test]
    fn auroc_of_perfect_random_and_tied_scores() {
        assert_eq!(
            auroc(&[0.9, 0.8, 0.1, 0.2], &[true, true, false, false]),
            1.0
        );
        assert_eq!(
            auroc(&[0.1, 0.2, 0.9, 0.8], &[true, true, false, false]),
            0.0
        );
        assert_eq!(
            auroc(&[0.5, 0.5, 0.5, 0.5], &[true, false, true, false]),
            0.5
        );
        assert!(auroc(&[0.5], &[true]).is_nan());
    }

    #[test]
    fn coverage_shrinks_as_threshold_rises() {
        let c = coverage_curve(&[0.9, 0.5, 0.2], &[true, false, true], &[0.0, 0.4, 0.95]);
        assert_eq!(c[0].coverage, 1.0);
        assert!((c[1].coverage - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c[1].accuracy, 0.5);
        assert_eq!(c[2].coverage, 0.0);
        assert!(c[2].accuracy.is_nan());
    }

    #[test]
    fn nll_and_percentages() {
        let probs = [0.5f32, 0.5, 0.9, 0.1];
        let want = (-(0.5f64).ln() - (0.9f32 as f64).ln()) / 2.0;
        assert!((mean_nll(&probs, &[0, 0], 2) - want).abs() < 1e-9);
        assert!(
            mean_nll(&[0.0, 1.0], &[0], 2) < 28.0,
            "a zero probability stays finite"
        );
        assert_eq!(pct(0.95142), "95.14%");
        assert_eq!(pct(f64::NAN), "n/a");
    }
}
