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

    fn clusters() -> (Vec<f32>, Vec<u32>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..60 {
            let s = if i % 2 == 0 { 1.0 } else { -1.0 };
            let jitter = (i as f32 * 0.37).sin() * 0.2;
            x.extend_from_slice(&[s + jitter, 0.3 * jitter, -s, jitter]);
            y.push((i % 2) as u32);
        }
        (x, y)
    }

    #[test]
    fn mlp_learns_and_mc_dropout_behaves() {
        let (x, y) = clusters();
        let p = MlpParams {
            hidden: 16,
            max_epochs: 60,
            patience: 10,
            batch: 8,
            lr: 1e-2,
            ..Default::default()
        };
        let h = MlpHead::fit(&x, 4, &y, (&x, &y), 2, &p).unwrap();
        let z = h
            .logits(&[1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0, 0.0])
            .unwrap();
        assert!(z[0] > z[1] && z[3] > z[2], "{z:?}");
        // Dropout off: one MC sample is exactly the plain head.
        let plain = MlpHead {
            dropout: 0.0,
            ..h.clone()
        };
        let one = plain.mc_logits(&x[..8], 1, 7).unwrap();
        assert_eq!(one[0], plain.logits(&x[..8]).unwrap());
        // Dropout on: samples differ on an ambiguous input (halfway between the clusters).
        let noisy = MlpHead { dropout: 0.5, ..h };
        let sets: Vec<Vec<f32>> = noisy
            .mc_logits(&[0.0, 0.0, 0.0, 0.0], 20, 7)
            .unwrap()
            .into_iter()
            .map(|l| {
                let mut p = vec![0f32; 2];
                crate::models::calibration::softmax_t(&l, 1.0, &mut p);
                p
            })
            .collect();
        let (std, mi) = crate::models::mc_stats(&sets, 0, 2, 0);
        assert!(std > 0.0 && mi >= 0.0, "std {std}, mutual information {mi}");
        // Same seed, same samples.
        assert_eq!(
            noisy.mc_logits(&x[..4], 3, 9).unwrap(),
            noisy.mc_logits(&x[..4], 3, 9).unwrap()
        );
    }

    #[test]
    fn separates_two_clusters() {
        // Two classes around opposite unit vectors in 4 dimensions.
        let (x, y) = clusters();
        let h = LogisticHead::fit(&x, 4, &y, 2, 0.01, 200).unwrap();
        let z = h.logits(&[1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0, 0.0]);
        assert!(z[0] > z[1] && z[3] > z[2], "{z:?}");
    }
}

/// Training settings of the MLP head.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpParams {
    pub hidden: usize,
    pub dropout: f32,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch: usize,
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation NLL.
    pub patience: usize,
    pub seed: u64,
}

impl Default for MlpParams {
    fn default() -> Self {
        MlpParams {
            hidden: 512,
            dropout: 0.1,
            lr: 1e-3,
            weight_decay: 1e-4,
            batch: 64,
            max_epochs: 40,
            patience: 3,
            seed: 42,
        }
    }
}

/// A one-hidden-layer MLP with dropout: `logits = dropout(relu(x·W1 + b1))·W2 + b2`. Trained with
/// candle's autograd and AdamW, early-stopped on validation NLL. Dropout masks come from cqr's
/// seeded RNG, so training and MC-dropout inference are reproducible.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpHead {
    pub dim: usize,
    pub hidden: usize,
    pub n_classes: usize,
    pub dropout: f32,
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    pub b2: Vec<f32>,
}

fn ce(e: candle_core::Error) -> Error {
    Error::Training(format!("MLP head: {e}"))
}

/// Inverted-dropout mask (`0` or `1/(1-p)`) of `n` values.
pub(crate) fn mask(rng: &mut crate::util::Rng, n: usize, p: f32) -> Vec<f32> {
    let keep = 1.0 - p;
    (0..n)
        .map(|_| {
            if (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 >= p {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect()
}

impl MlpHead {
    pub fn fit(
        x: &[f32],
        dim: usize,
        y: &[u32],
        valid: (&[f32], &[u32]),
        n_classes: usize,
        p: &MlpParams,
    ) -> Result<MlpHead> {
        use candle_core::{Device, Tensor, Var};
        use candle_nn::{AdamW, Optimizer, ParamsAdamW};
        let dev = Device::Cpu;
        let mut rng = crate::util::Rng::new(p.seed);
        let mut init = |rows: usize, cols: usize| {
            let a = (6.0 / (rows + cols) as f32).sqrt();
            (0..rows * cols)
                .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a)
                .collect::<Vec<f32>>()
        };
        let w1 = Var::from_vec(init(dim, p.hidden), (dim, p.hidden), &dev).map_err(ce)?;
        let b1 = Var::from_vec(vec![0f32; p.hidden], p.hidden, &dev).map_err(ce)?;
        let w2 =
            Var::from_vec(init(p.hidden, n_classes), (p.hidden, n_classes), &dev).map_err(ce)?;
        let b2 = Var::from_vec(vec![0f32; n_classes], n_classes, &dev).map_err(ce)?;
        let mut opt = AdamW::new(
            vec![w1.clone(), b1.clone(), w2.clone(), b2.clone()],
            ParamsAdamW {
                lr: p.lr,
                weight_decay: p.weight_decay,
                ..Default::default()
            },
        )
        .map_err(ce)?;
        let n = y.len();
        let snapshot = |vars: [&Var; 4]| -> Result<[Vec<f32>; 4]> {
            let f = |v: &Var| {
                v.as_tensor()
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(ce)
            };
            Ok([f(vars[0])?, f(vars[1])?, f(vars[2])?, f(vars[3])?])
        };
        let mut best = (f64::INFINITY, snapshot([&w1, &b1, &w2, &b2])?);
        let mut since_best = 0;
        let mut order: Vec<usize> = (0..n).collect();
        let mut drop_rng = crate::util::Rng::new(p.seed ^ 0xd20f_u64.wrapping_mul(31));
        for _epoch in 0..p.max_epochs {
            rng_shuffle(&mut order, p.seed, _epoch as u64);
            for chunk in order.chunks(p.batch.max(1)) {
                let xb: Vec<f32> = chunk
                    .iter()
                    .flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied())
                    .collect();
                let yb: Vec<u32> = chunk.iter().map(|&i| y[i]).collect();
                let xt = Tensor::from_vec(xb, (chunk.len(), dim), &dev).map_err(ce)?;
                let yt = Tensor::from_vec(yb, chunk.len(), &dev).map_err(ce)?;
                let m = Tensor::from_vec(
                    mask(&mut drop_rng, chunk.len() * p.hidden, p.dropout),
                    (chunk.len(), p.hidden),
                    &dev,
                )
                .map_err(ce)?;
                let h = xt
                    .matmul(w1.as_tensor())
                    .and_then(|h| h.broadcast_add(b1.as_tensor()))
                    .and_then(|h| h.relu())
                    .map_err(ce)?;
                let logits = (h * m)
                    .map_err(ce)?
                    .matmul(w2.as_tensor())
                    .and_then(|l| l.broadcast_add(b2.as_tensor()))
                    .map_err(ce)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &yt).map_err(ce)?;
                opt.backward_step(&loss).map_err(ce)?;
            }
            let [cw1, cb1, cw2, cb2] = snapshot([&w1, &b1, &w2, &b2])?;
            let head = MlpHead {
                dim,
                hidden: p.hidden,
                n_classes,
                dropout: p.dropout,
                w1: cw1,
                b1: cb1,
                w2: cw2,
                b2: cb2,
            };
            let vl = head.logits(valid.0)?;
            let nll = super::calibration::nll(&vl, valid.1, n_classes, 1.0);
            if nll < best.0 - 1e-6 {
                best = (nll, [head.w1, head.b1, head.w2, head.b2]);
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= p.patience {
                    break;
                }
            }
        }
        let [w1, b1, w2, b2] = best.1;
        Ok(MlpHead {
            dim,
            hidden: p.hidden,
            n_classes,
            dropout: p.dropout,
            w1,
            b1,
            w2,
            b2,
        })
    }

    fn hidden_of(&self, x: &[f32]) -> Result<candle_core::Tensor> {
        use candle_core::{Device, Tensor};
        let dev = Device::Cpu;
        let n = x.len() / self.dim;
        let xt = Tensor::from_vec(x.to_vec(), (n, self.dim), &dev).map_err(ce)?;
        let w1 = Tensor::from_vec(self.w1.clone(), (self.dim, self.hidden), &dev).map_err(ce)?;
        let b1 = Tensor::from_vec(self.b1.clone(), self.hidden, &dev).map_err(ce)?;
        xt.matmul(&w1)
            .and_then(|h| h.broadcast_add(&b1))
            .and_then(|h| h.relu())
            .map_err(ce)
    }

    fn out(&self, h: &candle_core::Tensor) -> Result<Vec<f32>> {
        use candle_core::{Device, Tensor};
        let dev = Device::Cpu;
        let w2 =
            Tensor::from_vec(self.w2.clone(), (self.hidden, self.n_classes), &dev).map_err(ce)?;
        let b2 = Tensor::from_vec(self.b2.clone(), self.n_classes, &dev).map_err(ce)?;
        h.matmul(&w2)
            .and_then(|l| l.broadcast_add(&b2))
            .and_then(|l| l.flatten_all())
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(ce)
    }

    /// Logits with dropout off, row-major `[rows × n_classes]`.
    pub fn logits(&self, x: &[f32]) -> Result<Vec<f32>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        self.out(&self.hidden_of(x)?)
    }

    /// `samples` sets of logits with dropout on (MC dropout), sharing one hidden-layer pass.
    pub fn mc_logits(&self, x: &[f32], samples: usize, seed: u64) -> Result<Vec<Vec<f32>>> {
        use candle_core::Tensor;
        if x.is_empty() {
            return Ok(vec![Vec::new(); samples]);
        }
        let h = self.hidden_of(x)?;
        let n = x.len() / self.dim;
        let mut rng = crate::util::Rng::new(seed);
        (0..samples)
            .map(|_| {
                let m = Tensor::from_vec(
                    mask(&mut rng, n * self.hidden, self.dropout),
                    (n, self.hidden),
                    h.device(),
                )
                .map_err(ce)?;
                self.out(&(&h * m).map_err(ce)?)
            })
            .collect()
    }
}

fn rng_shuffle(order: &mut [usize], seed: u64, epoch: u64) {
    crate::util::Rng::new(seed.wrapping_add(epoch.wrapping_mul(0x9e37_79b9))).shuffle(order);
}

/// The encoder component's head.
#[derive(Debug, Clone, PartialEq)]
pub enum Head {
    Logistic(LogisticHead),
    Mlp(MlpHead),
}

impl Head {
    pub fn n_classes(&self) -> usize {
        match self {
            Head::Logistic(h) => h.n_classes,
            Head::Mlp(h) => h.n_classes,
        }
    }

    pub fn logits(&self, x: &[f32]) -> Result<Vec<f32>> {
        match self {
            Head::Logistic(h) => Ok(h.logits(x)),
            Head::Mlp(h) => h.logits(x),
        }
    }

    /// MC-dropout logits; `None` for a head without dropout.
    pub fn mc_logits(&self, x: &[f32], samples: usize, seed: u64) -> Result<Option<Vec<Vec<f32>>>> {
        match self {
            Head::Mlp(h) if h.dropout > 0.0 && samples > 0 => {
                h.mc_logits(x, samples, seed).map(Some)
            }
            _ => Ok(None),
        }
    }
}
