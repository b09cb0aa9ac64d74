//! The `linear` component: multinomial logistic regression with L2 regularisation over sparse
//! TF-IDF features.
//!
//! Why an own solver: no linfa classifier accepts sparse input, and densified TF-IDF into linfa's
//! `MultiLogisticRegression` stops early at ~65% on BANKING77 (see shared/notes/rust-stack.md).
//! The objective is smooth and convex, so full-batch L-BFGS ([`super::lbfgs`]) reaches the optimum
//! deterministically: rows are scored in parallel (CSR), the weight gradient is accumulated per
//! feature in parallel over the transposed matrix (CSC), and every sum runs in a fixed order, so
//! the same data and seed give bit-identical weights on any number of threads. The L2 strength is
//! chosen on the validation split along a warm-started path from strong to weak.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::lbfgs::{self, LbfgsParams};
use crate::error::{Error, Result};
use crate::text::{Scratch, SparseVec, Vectorizer, Vocabulary};

/// Compressed sparse rows.
#[derive(Debug, Clone, Default)]
pub struct Csr {
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
    pub n_cols: usize,
}

impl Csr {
    pub fn from_rows(rows: &[SparseVec], n_cols: usize) -> Csr {
        let mut m = Csr {
            indptr: Vec::with_capacity(rows.len() + 1),
            n_cols,
            ..Default::default()
        };
        m.indptr.push(0);
        for r in rows {
            m.indices.extend_from_slice(&r.indices);
            m.values.extend_from_slice(&r.values);
            m.indptr.push(m.indices.len());
        }
        m
    }

    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[i], self.indptr[i + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// The transpose, also as CSR (that is, this matrix in CSC form).
    pub fn transpose(&self) -> Csr {
        let mut counts = vec![0usize; self.n_cols + 1];
        for &j in &self.indices {
            counts[j as usize + 1] += 1;
        }
        for j in 0..self.n_cols {
            counts[j + 1] += counts[j];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; self.indices.len()];
        let mut values = vec![0f32; self.values.len()];
        for i in 0..self.n_rows() {
            let (idx, val) = self.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                let p = next[j as usize];
                indices[p] = i as u32;
                values[p] = v;
                next[j as usize] += 1;
            }
        }
        Csr {
            indptr,
            indices,
            values,
            n_cols: self.n_rows(),
        }
    }
}

/// Settings of the linear solver, before validation (defaults: `settings::defaults`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinearParams {
    /// Candidate L2 strengths (on the mean loss), tried from strongest to weakest.
    pub l2_grid: Vec<f32>,
    pub max_iter: usize,
}

/// A fitted linear component.
#[derive(Debug, Clone)]
pub struct FittedLinear {
    pub vectorizer: Vectorizer,
    pub vocab: Vocabulary,
    /// Row-major `[n_features × n_classes]`: one feature's class weights are contiguous, so a
    /// sparse row's logits are a handful of short, vectorisable axpys.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub n_classes: usize,
    pub l2: f32,
}

/// One point of the regularisation path, for the training log and the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PathPoint {
    pub l2: f32,
    pub iterations: usize,
    pub train_loss: f64,
    pub valid_accuracy: f64,
    pub valid_nll: f64,
}

/// The mean multinomial NLL with L2 on the weights (not the bias), its gradient, and the
/// residuals `p - onehot(y)` it computes on the way.
struct Objective<'a> {
    x: &'a Csr,
    xt: &'a Csr,
    y: &'a [u32],
    c: usize,
    l2: f32,
}

impl Objective<'_> {
    fn eval(
        &self,
        theta: &[f32],
        grad: &mut [f32],
        resid: &mut [f32],
        row_loss: &mut [f64],
    ) -> f64 {
        let (c, d, n) = (self.c, self.x.n_cols, self.x.n_rows());
        let (w, b) = theta.split_at(d * c);
        resid
            .par_chunks_mut(c)
            .zip(row_loss.par_iter_mut())
            .enumerate()
            .for_each(|(i, (r, loss))| {
                let (idx, val) = self.x.row(i);
                logits_into(w, b, c, idx, val, r);
                softmax_in_place(r);
                *loss = -(r[self.y[i] as usize] as f64).ln();
                r[self.y[i] as usize] -= 1.0;
            });
        let inv_n = 1.0 / n as f32;
        let (gw, gb) = grad.split_at_mut(d * c);
        gw.par_chunks_mut(c).enumerate().for_each(|(j, gj)| {
            let wj = &w[j * c..(j + 1) * c];
            gj.iter_mut().zip(wj).for_each(|(g, wv)| *g = self.l2 * wv);
            let (rows, vals) = self.xt.row(j);
            for (&i, &v) in rows.iter().zip(vals) {
                let ri = &resid[i as usize * c..(i as usize + 1) * c];
                let s = v * inv_n;
                gj.iter_mut().zip(ri).for_each(|(g, r)| *g += s * r);
            }
        });
        gb.iter_mut().for_each(|g| *g = 0.0);
        for r in resid.chunks(c) {
            gb.iter_mut().zip(r).for_each(|(g, v)| *g += v * inv_n);
        }
        let data: f64 = row_loss.iter().sum::<f64>() / n as f64;
        let reg: f64 = w
            .chunks(4096)
            .map(|ch| ch.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>())
            .sum();
        data + 0.5 * self.l2 as f64 * reg
    }
}

/// Writes `b + x·W` for one sparse row into `out`.
fn logits_into(w: &[f32], b: &[f32], c: usize, idx: &[u32], val: &[f32], out: &mut [f32]) {
    out.copy_from_slice(b);
    for (&j, &v) in idx.iter().zip(val) {
        let wj = &w[j as usize * c..(j as usize + 1) * c];
        out.iter_mut().zip(wj).for_each(|(o, wv)| *o += v * wv);
    }
}

/// Turns logits into probabilities in place, floored at the smallest positive f32 so that a log
/// never sees zero.
pub fn softmax_in_place(z: &mut [f32]) {
    let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = 0f64;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        s += *v as f64;
    }
    let inv = (1.0 / s) as f32;
    z.iter_mut()
        .for_each(|v| *v = (*v * inv).max(f32::MIN_POSITIVE));
}

/// Fits the linear component: featurises, then walks the L2 path, keeping the strength with the
/// best validation accuracy (ties: lower validation NLL).
pub struct LinearFit {
    pub model: FittedLinear,
    pub path: Vec<PathPoint>,
}

/// Featurised rows with their class indices.
#[derive(Debug, Clone, Copy)]
pub struct Labelled<'a> {
    pub x: &'a [SparseVec],
    pub y: &'a [u32],
}

pub fn fit(
    (vectorizer, vocab): (Vectorizer, Vocabulary),
    train: Labelled<'_>,
    valid: Labelled<'_>,
    n_classes: usize,
    params: &LinearParams,
    mut progress: impl FnMut(&str, usize, f64),
) -> Result<LinearFit> {
    let (x_train, y_train, x_valid, y_valid) = (train.x, train.y, valid.x, valid.y);
    if params.l2_grid.is_empty() || params.l2_grid.iter().any(|l| l.is_nan() || *l < 0.0) {
        return Err(Error::Training(
            "the L2 grid must hold non-negative strengths".into(),
        ));
    }
    let d = vectorizer.n_features();
    let x = Csr::from_rows(x_train, d);
    let xt = x.transpose();
    let xv = Csr::from_rows(x_valid, d);
    let c = n_classes;
    let mut theta = vec![0f32; d * c + c];
    let mut resid = vec![0f32; x.n_rows() * c];
    let mut row_loss = vec![0f64; x.n_rows()];
    let mut grid = params.l2_grid.clone();
    grid.sort_by(|a, b| b.total_cmp(a));
    let lb = LbfgsParams {
        max_iter: params.max_iter,
        ..Default::default()
    };
    let mut path = Vec::new();
    let mut best: Option<(f64, f64, Vec<f32>, f32)> = None;
    for &l2 in &grid {
        let obj = Objective {
            x: &x,
            xt: &xt,
            y: y_train,
            c,
            l2,
        };
        let label = format!("l2={l2:.0e}");
        let report = lbfgs::minimize(
            &mut theta,
            |t, g| obj.eval(t, g, &mut resid, &mut row_loss),
            &lb,
            |it, loss| progress(&label, it, loss),
        );
        if !report.loss.is_finite() {
            return Err(Error::Training(format!(
                "the loss diverged at L2 strength {l2}"
            )));
        }
        let (acc, nll) = evaluate(&theta, d, c, &xv, y_valid);
        tracing::info!(
            l2,
            iterations = report.iterations,
            loss = report.loss,
            acc,
            nll,
            "L2 path point"
        );
        path.push(PathPoint {
            l2,
            iterations: report.iterations,
            train_loss: report.loss,
            valid_accuracy: acc,
            valid_nll: nll,
        });
        let better = match &best {
            None => true,
            Some((ba, bn, _, _)) => acc > *ba + 1e-12 || ((acc - ba).abs() <= 1e-12 && nll < *bn),
        };
        if better {
            best = Some((acc, nll, theta.clone(), l2));
        }
    }
    let (_, _, theta, l2) = best.expect("the grid is not empty");
    let bias = theta[d * c..].to_vec();
    let mut weights = theta;
    weights.truncate(d * c);
    Ok(LinearFit {
        model: FittedLinear {
            vectorizer,
            vocab,
            weights,
            bias,
            n_classes: c,
            l2,
        },
        path,
    })
}

/// Validation accuracy and mean NLL of raw parameters (an empty validation set scores 0 and NaN).
fn evaluate(theta: &[f32], d: usize, c: usize, x: &Csr, y: &[u32]) -> (f64, f64) {
    let (w, b) = theta.split_at(d * c);
    let scored: Vec<(bool, f64)> = (0..x.n_rows())
        .into_par_iter()
        .map(|i| {
            let mut z = vec![0f32; c];
            let (idx, val) = x.row(i);
            logits_into(w, b, c, idx, val, &mut z);
            softmax_in_place(&mut z);
            let arg = argmax(&z);
            (arg == y[i] as usize, -(z[y[i] as usize] as f64).ln())
        })
        .collect();
    let n = scored.len().max(1) as f64;
    let acc = scored.iter().filter(|s| s.0).count() as f64 / n;
    let nll = scored.iter().map(|s| s.1).sum::<f64>() / n;
    (acc, if scored.is_empty() { f64::NAN } else { nll })
}

pub fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in z.iter().enumerate() {
        if *v > z[best] {
            best = i;
        }
    }
    best
}

impl FittedLinear {
    /// Raw logits of one text.
    pub fn logits_one(
        &self,
        text: &str,
        scratch: &mut Scratch,
        row: &mut SparseVec,
        out: &mut [f32],
    ) {
        self.vectorizer.transform_into(text, scratch, row);
        logits_into(
            &self.weights,
            &self.bias,
            self.n_classes,
            &row.indices,
            &row.values,
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::defaults;
    use crate::text::FeatureSpec;

    fn toy() -> (Vec<&'static str>, Vec<u32>) {
        let texts = vec![
            "my card was stolen",
            "someone stole my card",
            "card stolen last night",
            "stolen card help",
            "where is my refund",
            "refund not received",
            "i want a refund",
            "refund my money please",
            "cannot log in",
            "login fails again",
            "unable to log into account",
            "log in error",
        ];
        let y = vec![0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2];
        (texts, y)
    }

    #[test]
    fn transpose_round_trips() {
        let rows = vec![
            SparseVec {
                indices: vec![0, 2],
                values: vec![1.0, 2.0],
            },
            SparseVec {
                indices: vec![1],
                values: vec![3.0],
            },
        ];
        let m = Csr::from_rows(&rows, 3);
        let t = m.transpose();
        assert_eq!(t.n_rows(), 3);
        assert_eq!(t.row(2), (&[0u32][..], &[2.0f32][..]));
        let back = t.transpose();
        assert_eq!(back.indices, m.indices);
        assert_eq!(back.values, m.values);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (texts, y) = toy();
        let (v, _) = Vectorizer::fit(
            &texts,
            &FeatureSpec {
                min_df: 1,
                ..defaults::feature_spec()
            },
        )
        .unwrap();
        let rows: Vec<_> = texts.iter().map(|t| v.transform(t)).collect();
        let x = Csr::from_rows(&rows, v.n_features());
        let xt = x.transpose();
        let c = 3;
        let obj = Objective {
            x: &x,
            xt: &xt,
            y: &y,
            c,
            l2: 0.01,
        };
        let n = v.n_features() * c + c;
        let mut rng = crate::util::Rng::new(3);
        let theta: Vec<f32> = (0..n)
            .map(|_| (rng.below(1000) as f32 / 1000.0 - 0.5) * 0.2)
            .collect();
        let mut g = vec![0f32; n];
        let mut resid = vec![0f32; x.n_rows() * c];
        let mut rl = vec![0f64; x.n_rows()];
        obj.eval(&theta, &mut g, &mut resid, &mut rl);
        for k in [0, 5, n / 2, n - 2] {
            let h = 1e-2f32;
            let mut tp = theta.clone();
            tp[k] += h;
            let fp = obj.eval(&tp, &mut vec![0f32; n], &mut resid, &mut rl);
            tp[k] -= 2.0 * h;
            let fm = obj.eval(&tp, &mut vec![0f32; n], &mut resid, &mut rl);
            let fd = (fp - fm) / (2.0 * h as f64);
            assert!(
                (fd - g[k] as f64).abs() < 1e-3,
                "k={k}: fd {fd} vs grad {}",
                g[k]
            );
        }
    }

    #[test]
    fn learns_a_toy_problem_deterministically() {
        let (texts, y) = toy();
        let spec = FeatureSpec {
            min_df: 1,
            ..defaults::feature_spec()
        };
        let run = || {
            let (v, vocab) = Vectorizer::fit(&texts, &spec).unwrap();
            let rows: Vec<_> = texts.iter().map(|t| v.transform(t)).collect();
            let data = Labelled { x: &rows, y: &y };
            fit(
                (v, vocab),
                data,
                data,
                3,
                &defaults::linear_params(),
                |_, _, _| {},
            )
            .unwrap()
        };
        let a = run();
        let b = run();
        assert_eq!(a.model.weights, b.model.weights);
        assert!(a.path.iter().any(|p| p.valid_accuracy == 1.0));
        let m = &a.model;
        let mut out = vec![0f32; 3];
        m.logits_one(
            "hi, my card got stolen",
            &mut Scratch::default(),
            &mut SparseVec::default(),
            &mut out,
        );
        assert_eq!(argmax(&out), 0);
        m.logits_one(
            "refund please",
            &mut Scratch::default(),
            &mut SparseVec::default(),
            &mut out,
        );
        assert_eq!(argmax(&out), 1);
    }
}
