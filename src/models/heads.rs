//! Classification heads over dense sentence embeddings. The logistic-regression head is fitted by
//! linfa (its dense multinomial solver suits 384-dimensional unit vectors) and stored as plain
//! weights, so scoring needs no linfa at all.

use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};

use crate::error::{Error, Result};

/// Multinomial logistic regression on embeddings: `logits = x · W + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticHead {
    pub dim: usize,
    pub n_classes: usize,
    /// Row-major `[dim × n_classes]`.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LogisticHead {
    /// Fits on row-major embeddings `x` (`y.len()` rows of `dim`), classes `0..n_classes`.
    pub fn fit(
        x: &[f32],
        dim: usize,
        y: &[u32],
        n_classes: usize,
        alpha: f32,
        max_iter: u64,
    ) -> Result<LogisticHead> {
        let n = y.len();
        let xa = Array2::from_shape_vec((n, dim), x.to_vec())
            .map_err(|e| Error::Training(format!("embeddings: {e}")))?;
        let ya = Array1::from_iter(y.iter().map(|&c| c as usize));
        let data = Dataset::new(xa, ya);
        let fitted = MultiLogisticRegression::default()
            .alpha(alpha)
            .max_iterations(max_iter)
            .fit(&data)
            .map_err(|e| Error::Training(format!("logistic head: {e}")))?;
        // linfa orders columns by the classes it saw; map them back to label indices.
        let classes = fitted.classes().to_vec();
        let params = fitted.params();
        let intercept = fitted.intercept();
        let mut weight = vec![0f32; dim * n_classes];
        let mut bias = vec![-1e4f32; n_classes];
        for (col, &class) in classes.iter().enumerate() {
            if class >= n_classes {
                return Err(Error::Training(format!(
                    "logistic head: unexpected class {class}"
                )));
            }
            bias[class] = intercept[col];
            for d in 0..dim {
                weight[d * n_classes + class] = params[[d, col]];
            }
        }
        Ok(LogisticHead {
            dim,
            n_classes,
            weight,
            bias,
        })
    }

    /// Logits for row-major embeddings, row-major `[rows × n_classes]`.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let c = self.n_classes;
        let mut out = Vec::with_capacity(x.len() / self.dim * c);
        for row in x.chunks(self.dim) {
            let mut z = self.bias.clone();
            for (d, &v) in row.iter().enumerate() {
                let w = &self.weight[d * c..(d + 1) * c];
                z.iter_mut().zip(w).for_each(|(zi, wi)| *zi += v * wi);
            }
            out.extend_from_slice(&z);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_two_clusters() {
        // Two classes around opposite unit vectors in 4 dimensions.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..40 {
            let s = if i % 2 == 0 { 1.0 } else { -1.0 };
            let jitter = (i as f32 * 0.37).sin() * 0.1;
            x.extend_from_slice(&[s + jitter, 0.2 * jitter, -s, jitter]);
            y.push((i % 2) as u32);
        }
        let h = LogisticHead::fit(&x, 4, &y, 2, 0.01, 200).unwrap();
        let z = h.logits(&[1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0, 0.0]);
        assert!(z[0] > z[1] && z[3] > z[2], "{z:?}");
    }
}
