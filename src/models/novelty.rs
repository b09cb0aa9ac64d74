//! Novelty scoring of sentence embeddings with the relative Mahalanobis distance
//! (Ren et al. 2021): the distance to the nearest class Gaussian minus the distance
//! to one Gaussian fitted to all training rows. Higher scores mean more novel.

use rayon::prelude::*;

/// Relative Mahalanobis distance of sentence embeddings from the training rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Mahalanobis {
    /// Length of one embedding.
    pub dim: usize,
    /// Number of classes (labels run from 0 to `n_classes - 1`).
    pub n_classes: usize,
    /// W = C⁻¹ where Σ_s = C Cᵀ (Cholesky), row-major dim×dim (lower-triangular); whitened z = W x.
    pub whiten: Vec<f32>,
    /// Whitened class means W μ_k, row-major n_classes×dim.
    pub means: Vec<f32>,
    /// The same for the marginal Gaussian: W_0 (dim×dim) and W_0 μ_0 (dim).
    pub whiten0: Vec<f32>,
    /// Whitened mean of all training rows, W_0 μ_0 (dim values).
    pub mean0: Vec<f32>,
}

impl Mahalanobis {
    /// Fits on row-major `x` [n × dim] with labels `y` in 0..n_classes. Accumulate in f64. Errors when n < 2, a class has no row, sizes mismatch, or the Cholesky factorisation fails (not positive definite).
    pub fn fit(
        x: &[f32],
        dim: usize,
        y: &[u32],
        n_classes: usize,
        shrinkage: f64,
    ) -> Result<Mahalanobis, String> {
        let n = y.len();
        let bad_label = y.iter().copied().find(|&k| k as usize >= n_classes);
        if dim == 0 || x.len() != n * dim {
            return Err(format!("x has {} values, not {n} rows × {dim}", x.len()));
        }
        if n < 2 {
            return Err(format!("need at least 2 rows, got {n}"));
        }
        if !(0.0..=1.0).contains(&shrinkage) {
            return Err(format!("shrinkage {shrinkage} is not in [0, 1]"));
        }
        if let Some(k) = bad_label {
            return Err(format!("label {k} is not below n_classes = {n_classes}"));
        }
        // Class means and the overall mean, in f64.
        let mut counts = vec![0usize; n_classes];
        let mut mu = vec![0f64; n_classes * dim];
        let mut mu0 = vec![0f64; dim];
        for (row, &k) in x.chunks_exact(dim).zip(y) {
            counts[k as usize] += 1;
            for ((m, m0), &v) in mu[k as usize * dim..].iter_mut().zip(&mut mu0).zip(row) {
                *m += f64::from(v);
                *m0 += f64::from(v) / n as f64;
            }
        }
        if let Some(k) = counts.iter().position(|&c| c == 0) {
            return Err(format!("class {k} has no rows"));
        }
        for (mk, &c) in mu.chunks_exact_mut(dim).zip(&counts) {
            mk.iter_mut().for_each(|m| *m /= c as f64);
        }
        // Within-class scatter (lower triangle), four centred rows at a time.
        let mut sw = vec![0f64; dim * dim];
        let mut block = vec![0f64; 4 * dim];
        for (rows, labels) in x.chunks(4 * dim).zip(y.chunks(4)) {
            block.fill(0.0);
            let centred = block.chunks_exact_mut(dim).zip(rows.chunks_exact(dim));
            for ((b, row), &k) in centred.zip(labels) {
                for ((b, &v), &m) in b.iter_mut().zip(row).zip(&mu[k as usize * dim..]) {
                    *b = f64::from(v) - m;
                }
            }
            scatter4(&mut sw, &block, dim);
        }
        // Total scatter = within-class scatter + between-class scatter.
        let mut s0 = sw.clone();
        for (mk, &c) in mu.chunks_exact(dim).zip(&counts) {
            let diff: Vec<f64> = mk.iter().zip(&mu0).map(|(a, b)| a - b).collect();
            for (i, srow) in s0.chunks_exact_mut(dim).enumerate() {
                let a = c as f64 * diff[i];
                for (s, &d) in srow[..=i].iter_mut().zip(&diff) {
                    *s += a * d;
                }
            }
        }
        let w = whitener(&mut sw, dim, n, shrinkage).map_err(|e| format!("class {e}"))?;
        let w0 = whitener(&mut s0, dim, n, shrinkage).map_err(|e| format!("total {e}"))?;
        let to_f32 = |w: Vec<f64>| w.into_iter().map(|v| v as f32).collect();
        Ok(Mahalanobis {
            dim,
            n_classes,
            means: lower_matvec(&w, &mu, dim),
            mean0: lower_matvec(&w0, &mu0, dim),
            whiten: to_f32(w),
            whiten0: to_f32(w0),
        })
    }

    /// RMD of one row (`dim` values).
    ///
    /// Returns NaN when `x` does not hold exactly `dim` values, or when the fields have been
    /// edited into sizes that do not fit `dim`.
    pub fn score(&self, x: &[f32]) -> f32 {
        let d = self.dim;
        if d == 0 || x.len() != d || self.mean0.len() != d {
            return f32::NAN;
        }
        if self.whiten.len() != d * d || self.whiten0.len() != d * d {
            return f32::NAN;
        }
        let mut z = vec![0f32; d];
        whiten_f32(&self.whiten0, x, &mut z);
        let md0 = lanes(&z, &self.mean0, |p, q| (p - q) * (p - q));
        whiten_f32(&self.whiten, x, &mut z);
        let dot = |a: &[f32], b: &[f32]| lanes(a, b, |p, q| p * q);
        let zz = dot(&z, &z);
        let mut best = f32::INFINITY;
        for m in self.means.chunks_exact(d) {
            best = best.min(dot(m, m) - 2.0 * dot(&z, m));
        }
        zz + best - md0
    }

    /// RMD of each row of row-major `x`, in parallel with rayon for large batches (sequential below 64 rows).
    ///
    /// A trailing partial row (when `x.len()` is not a multiple of `dim`) scores NaN.
    pub fn scores(&self, x: &[f32]) -> Vec<f32> {
        let d = self.dim.max(1); // a hand-built dim = 0 model scores NaN rather than panicking
        if x.len() < 64 * d {
            x.chunks(d).map(|r| self.score(r)).collect()
        } else {
            x.par_chunks(d).map(|r| self.score(r)).collect()
        }
    }

    /// The arrays to store: [("whiten", shape, data), ("means", ...), ("whiten0", ...), ("mean0", ...)] with shapes [dim,dim], [n_classes,dim], [dim,dim], [dim].
    pub fn tensors(&self) -> Vec<(&'static str, Vec<usize>, &[f32])> {
        let (d, c) = (self.dim, self.n_classes);
        vec![
            ("whiten", vec![d, d], &self.whiten[..]),
            ("means", vec![c, d], &self.means[..]),
            ("whiten0", vec![d, d], &self.whiten0[..]),
            ("mean0", vec![d], &self.mean0[..]),
        ]
    }

    /// Rebuilds from the four arrays by name (as `tensors` gives them), checking every shape; an error names the array and the shapes found and expected.
    pub fn from_tensors(
        get: impl Fn(&str) -> Option<(Vec<usize>, Vec<f32>)>,
    ) -> Result<Mahalanobis, String> {
        let names = ["whiten", "means", "whiten0", "mean0"];
        let [a, b, c, d] = names.map(|name| get(name).ok_or(format!("array {name} is missing")));
        let arrays = [a?, b?, c?, d?];
        let dim = arrays[0].0.first().copied().unwrap_or(0);
        let n_classes = arrays[1].0.first().copied().unwrap_or(0);
        let (d, c) = (dim, n_classes);
        let expected: [&[usize]; 4] = [&[d, d], &[c, d], &[d, d], &[d]];
        for ((name, (shape, data)), want) in names.iter().zip(&arrays).zip(expected) {
            if shape != want || d == 0 || c == 0 {
                let why = "d from whiten, n_classes from means, not zero";
                let msg = format!("array {name}: shape {shape:?}, expected {want:?} ({why})");
                return Err(msg);
            }
            if data.len() != want.iter().product::<usize>() {
                let len = data.len();
                return Err(format!("array {name}: shape {shape:?} but {len} values"));
            }
            let upper = |(i, r): (usize, &[f32])| r[i + 1..].iter().any(|&v| v != 0.0);
            if name.starts_with("whiten") && data.chunks(dim).enumerate().any(upper) {
                return Err(format!("array {name} is not lower-triangular"));
            }
        }
        let [(_, whiten), (_, means), (_, whiten0), (_, mean0)] = arrays;
        Ok(Mahalanobis {
            dim,
            n_classes,
            whiten,
            means,
            whiten0,
            mean0,
        })
    }
}

/// Adds the outer products of the four rows in `block` (4 × dim) to the lower triangle of `s`.
fn scatter4(s: &mut [f64], block: &[f64], dim: usize) {
    let (r0, rest) = block.split_at(dim);
    let (r1, rest) = rest.split_at(dim);
    let (r2, r3) = rest.split_at(dim);
    for (i, srow) in s.chunks_exact_mut(dim).enumerate() {
        let (a0, a1, a2, a3) = (r0[i], r1[i], r2[i], r3[i]);
        let it = srow[..=i].iter_mut().zip(r0).zip(r1).zip(r2).zip(r3);
        for ((((s, &p0), &p1), &p2), &p3) in it {
            *s += a0 * p0 + a1 * p1 + a2 * p2 + a3 * p3;
        }
    }
}

/// Turns a lower-triangular scatter matrix into the inverse Cholesky factor of its shrunk covariance.
fn whitener(s: &mut [f64], dim: usize, n: usize, shrinkage: f64) -> Result<Vec<f64>, String> {
    let trace: f64 = (0..dim).map(|i| s[i * dim + i]).sum::<f64>() / n as f64;
    let scale = (1.0 - shrinkage) / n as f64;
    for (i, row) in s.chunks_exact_mut(dim).enumerate() {
        row[..=i].iter_mut().for_each(|v| *v *= scale);
        row[i] += shrinkage * trace / dim as f64;
    }
    // Cholesky in place: Σ_s = L Lᵀ, L lower-triangular.
    for i in 0..dim {
        let (top, row) = s.split_at_mut(i * dim);
        for j in 0..=i {
            let lj = if j < i { &top[j * dim..] } else { &row[..] };
            let v = row[j] - row[..j].iter().zip(lj).map(|(a, b)| a * b).sum::<f64>();
            if j < i {
                row[j] = v / top[j * dim + j];
            } else if v > 0.0 && v.is_finite() {
                row[j] = v.sqrt();
            } else {
                return Err(format!(
                    "covariance not positive definite (pivot {v:e} at {i})"
                ));
            }
        }
    }
    // W = L⁻¹ row by row: L W = I gives W_i = (e_i − Σ_{k<i} L_ik W_k) / L_ii.
    let mut w = vec![0f64; dim * dim];
    for i in 0..dim {
        let (done, rest) = w.split_at_mut(i * dim);
        let wi = &mut rest[..=i];
        for (k, &l) in s[i * dim..i * dim + i].iter().enumerate() {
            let wk = &done[k * dim..=k * dim + k];
            wi.iter_mut().zip(wk).for_each(|(a, &b)| *a -= l * b);
        }
        wi[i] += 1.0;
        let diag = s[i * dim + i];
        wi.iter_mut().for_each(|v| *v /= diag);
    }
    Ok(w)
}

/// W v for each `dim`-long row v of `vs`, with W lower-triangular row-major; rounded to f32.
fn lower_matvec(w: &[f64], vs: &[f64], dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(vs.len());
    for v in vs.chunks_exact(dim) {
        for (i, r) in w.chunks_exact(dim).enumerate() {
            out.push(r[..=i].iter().zip(v).map(|(a, b)| a * b).sum::<f64>() as f32);
        }
    }
    out
}

/// z = W x for lower-triangular row-major W, touching only j ≤ i.
fn whiten_f32(w: &[f32], x: &[f32], z: &mut [f32]) {
    let d = z.len();
    for (i, zi) in z.iter_mut().enumerate() {
        *zi = lanes(&w[i * d..=i * d + i], &x[..=i], |p, q| p * q);
    }
}

/// Sum of `f(a_i, b_i)` over eight independent accumulators, so that it vectorises.
#[inline(always)]
fn lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let ((ac, ar), (bc, br)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    let mut acc = [0f32; 8];
    for (p, q) in ac.iter().zip(bc) {
        for ((s, &p), &q) in acc.iter_mut().zip(p).zip(q) {
            *s += f(p, q);
        }
    }
    acc.iter().sum::<f32>() + ar.iter().zip(br).map(|(&p, &q)| f(p, q)).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 200 rows in 5 dimensions: 3 shifted classes with correlated noise from a seeded LCG.
    fn data() -> (Vec<f32>, Vec<u32>) {
        let mut s = 42u64;
        let mut u = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            (s >> 11) as f64 / 2f64.powi(53) - 0.5
        };
        let y: Vec<u32> = (0..200).map(|i| i % 3).collect();
        let mut x = Vec::new();
        for &k in &y {
            let e: Vec<f64> = (0..5).map(|_| u()).collect();
            for i in 0..5 {
                x.push((e[i] + 0.8 * e[(i + 1) % 5] + (k as usize * i % 3) as f64) as f32);
            }
        }
        (x, y)
    }

    /// A covariance matrix and its inverse, both 5×5 row-major.
    type Cov = (Vec<f64>, Vec<f64>);

    /// Means of classes 0..3 and of all rows (index 3), then the shrunk class and total
    /// covariances, each with its inverse by Gauss-Jordan elimination.
    fn reference(x: &[f32], y: &[u32]) -> (Vec<Vec<f64>>, [Cov; 2]) {
        let mut mu = vec![vec![0.0; 6]; 4];
        for (r, &k) in x.chunks(5).zip(y) {
            for m in [k as usize, 3] {
                (0..5).for_each(|j| mu[m][j] += f64::from(r[j]));
                mu[m][5] += 1.0;
            }
        }
        for m in mu.iter_mut() {
            let n = m[5];
            m.iter_mut().for_each(|v| *v /= n);
        }
        let shrunk = |all: bool| {
            let mut g = vec![vec![0.0; 10]; 5];
            for (r, &k) in x.chunks(5).zip(y) {
                let e = |a: usize| f64::from(r[a]) - mu[if all { 3 } else { k as usize }][a];
                (0..25).for_each(|a| g[a / 5][a % 5] += 0.99 * e(a / 5) * e(a % 5) / 200.0);
            }
            let t = (0..5).map(|i| g[i][i]).sum::<f64>() / 0.99 / 5.0;
            (0..5).for_each(|i| (g[i][i], g[i][5 + i]) = (g[i][i] + 0.01 * t, 1.0));
            let sigma = g.iter().flat_map(|r| r[..5].to_vec()).collect();
            for c in 0..5 {
                let piv = g[c][c];
                g[c].iter_mut().for_each(|v| *v /= piv);
                for r in (0..5).filter(|&r| r != c) {
                    let (f, row) = (g[r][c], g[c].clone());
                    g[r].iter_mut().zip(row).for_each(|(v, p)| *v -= f * p);
                }
            }
            (sigma, g.iter().flat_map(|r| r[5..].to_vec()).collect())
        };
        let covs = [shrunk(false), shrunk(true)];
        (mu, covs)
    }

    #[test]
    fn matches_direct_inverse_and_whitens() {
        let (x, y) = data();
        let m = Mahalanobis::fit(&x, 5, &y, 3, 0.01).unwrap();
        let (mu, [(sig, p), (sig0, p0)]) = reference(&x, &y);
        let quad = |r: &[f32], m: &[f64], p: &[f64]| -> f64 {
            let e = |a: usize| f64::from(r[a]) - m[a];
            (0..25).map(|a| e(a / 5) * p[a] * e(a % 5)).sum()
        };
        let mut probe = x.clone();
        probe.extend([4.0, -3.0, 2.0, 9.0, 0.5, -20.0, 1.0, 0.0, 7.0, 3.0]);
        for (r, &s) in probe.chunks(5).zip(&m.scores(&probe)) {
            let md = (0..3).map(|k| quad(r, &mu[k], &p));
            let want = md.fold(f64::INFINITY, f64::min) - quad(r, &mu[3], &p0);
            let err = (f64::from(s) - want).abs() / want.abs().max(1.0);
            assert!(err <= 1e-3 && s == m.score(r), "{s} vs {want}");
        }
        for (w, sig) in [(&m.whiten, &sig), (&m.whiten0, &sig0)] {
            for (i, j) in (0..25).map(|a| (a / 5, a % 5)) {
                let wsw = |b: usize| f64::from(w[i * 5 + b / 5] * w[j * 5 + b % 5]) * sig[b];
                let v: f64 = (0..25).map(wsw).sum();
                let id = f64::from(u8::from(i == j));
                assert!((v - id).abs() < 1e-4, "WΣWᵀ[{i},{j}] = {v}");
            }
        }
    }

    #[test]
    fn far_point_scores_high_and_tensors_round_trip() {
        let (x, y) = data();
        let m = Mahalanobis::fit(&x, 5, &y, 3, 0.01).unwrap();
        let far = m.score(&[40.0, -40.0, 40.0, -40.0, 40.0]);
        let beaten = m.scores(&x).iter().filter(|&&s| s < far).count();
        assert!(beaten >= 190, "{far} beats only {beaten} of 200");
        let find = |n: &str| {
            let (_, shape, data) = m.tensors().into_iter().find(|t| t.0 == n)?;
            Some((shape, data.to_vec()))
        };
        assert_eq!(Mahalanobis::from_tensors(find), Ok(m.clone()));
        let bad = |n: &str| find(n).map(|(s, d)| (if n == "means" { vec![5, 3] } else { s }, d));
        let err = Mahalanobis::from_tensors(bad).unwrap_err();
        assert!(err.starts_with("array means: shape [5, 3]"), "{err}");
        let missing = Mahalanobis::from_tensors(|n| find(n).filter(|_| n != "mean0"));
        assert_eq!(missing, Err("array mean0 is missing".into()));
    }

    #[test]
    fn fit_errors() {
        let (x, y) = data();
        let fit = |x: &[f32], y: &[u32], c| Mahalanobis::fit(x, 5, y, c, 0.01).unwrap_err();
        assert_eq!(fit(&x, &y, 4), "class 3 has no rows");
        assert!(fit(&x[..5], &y[..1], 3).contains("2 rows"));
        assert!(fit(&x[..9], &y[..2], 3).contains("9 values"));
        assert!(fit(&[1.0; 10], &[0, 0], 1).contains("not positive definite"));
    }
}
