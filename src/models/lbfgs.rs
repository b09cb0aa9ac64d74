//! Limited-memory BFGS with a backtracking (Armijo) line search, for smooth convex objectives
//! over millions of parameters. Vectors are `f32` to halve memory (a BANKING77 linear model has
//! ~5M weights and L-BFGS keeps 2m of them); every reduction is accumulated in `f64`, and in a
//! fixed order, so a run is bit-for-bit reproducible.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct LbfgsParams {
    /// Number of correction pairs kept.
    pub memory: usize,
    pub max_iter: usize,
    /// Stop when the largest gradient component falls below this.
    pub gtol: f64,
    /// Stop when the relative decrease of the objective falls below this.
    pub ftol: f64,
}

impl Default for LbfgsParams {
    fn default() -> Self {
        LbfgsParams {
            memory: 6,
            max_iter: 300,
            gtol: 1e-7,
            ftol: 1e-9,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LbfgsReport {
    pub iterations: usize,
    pub evaluations: usize,
    pub loss: f64,
    pub converged: bool,
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    // Chunked partial sums keep f64 accuracy without a serial dependency on every element.
    a.chunks(1024)
        .zip(b.chunks(1024))
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (*p as f64) * (*q as f64))
                .sum::<f64>()
        })
        .sum()
}

fn axpy(alpha: f64, x: &[f32], y: &mut [f32]) {
    let a = alpha as f32;
    y.iter_mut().zip(x).for_each(|(yi, xi)| *yi += a * xi);
}

fn max_abs(x: &[f32]) -> f64 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64
}

/// Minimises `f` from `x` (updated in place). `f(x, grad)` returns the objective and writes the
/// gradient. `on_iter(iteration, loss)` is called after every accepted step.
pub fn minimize(
    x: &mut [f32],
    mut f: impl FnMut(&[f32], &mut [f32]) -> f64,
    params: &LbfgsParams,
    mut on_iter: impl FnMut(usize, f64),
) -> LbfgsReport {
    let n = x.len();
    let mut g = vec![0f32; n];
    let mut fx = f(x, &mut g);
    let mut evaluations = 1;
    let mut history: VecDeque<(Vec<f32>, Vec<f32>, f64)> = VecDeque::new();
    let mut d = vec![0f32; n];
    let mut x_new = vec![0f32; n];
    let mut g_new = vec![0f32; n];
    let mut alpha = vec![0f64; params.memory];
    let mut report = LbfgsReport {
        iterations: 0,
        evaluations,
        loss: fx,
        converged: false,
    };
    if !fx.is_finite() {
        return report;
    }
    for iter in 0..params.max_iter {
        if max_abs(&g) <= params.gtol {
            report.converged = true;
            break;
        }
        // Two-loop recursion: d = -H g.
        d.iter_mut().zip(&g).for_each(|(di, gi)| *di = -gi);
        for (k, (s, y, rho)) in history.iter().enumerate().rev() {
            alpha[k] = rho * dot(s, &d);
            axpy(-alpha[k], y, &mut d);
        }
        if let Some((s, y, _)) = history.back() {
            let gamma = dot(s, y) / dot(y, y);
            d.iter_mut().for_each(|v| *v *= gamma as f32);
        }
        for (k, (s, y, rho)) in history.iter().enumerate() {
            let beta = rho * dot(y, &d);
            axpy(alpha[k] - beta, s, &mut d);
        }
        let mut slope = dot(&g, &d);
        if slope.is_nan() || slope >= 0.0 {
            history.clear();
            d.iter_mut().zip(&g).for_each(|(di, gi)| *di = -gi);
            slope = dot(&g, &d);
        }
        let mut step = if history.is_empty() {
            (1.0 / dot(&g, &g).sqrt()).min(1.0)
        } else {
            1.0
        };
        let mut accepted = None;
        for _ in 0..40 {
            x_new
                .iter_mut()
                .zip(x.iter().zip(&d))
                .for_each(|(xn, (xi, di))| *xn = xi + step as f32 * di);
            let f_try = f(&x_new, &mut g_new);
            evaluations += 1;
            if f_try.is_finite() && f_try <= fx + 1e-4 * step * slope {
                accepted = Some(f_try);
                break;
            }
            step *= 0.5;
        }
        let Some(f_new) = accepted else {
            if history.is_empty() {
                break;
            }
            // The quasi-Newton direction failed; start afresh from steepest descent.
            history.clear();
            continue;
        };
        // Recycle the oldest pair's buffers for the new one.
        let (mut s, mut y) = if history.len() == params.memory {
            let (s, y, _) = history.pop_front().expect("history is full");
            (s, y)
        } else {
            (vec![0f32; n], vec![0f32; n])
        };
        s.iter_mut()
            .zip(x_new.iter().zip(x.iter()))
            .for_each(|(si, (a, b))| *si = a - b);
        y.iter_mut()
            .zip(g_new.iter().zip(g.iter()))
            .for_each(|(yi, (a, b))| *yi = a - b);
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).max(1e-30) {
            history.push_back((s, y, 1.0 / sy));
        }
        x.copy_from_slice(&x_new);
        std::mem::swap(&mut g, &mut g_new);
        let decrease = (fx - f_new) / fx.abs().max(f_new.abs()).max(1.0);
        fx = f_new;
        report.iterations = iter + 1;
        on_iter(iter + 1, fx);
        if decrease < params.ftol {
            report.converged = true;
            break;
        }
    }
    report.loss = fx;
    report.evaluations = evaluations;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_rosenbrock() {
        let rosen = |x: &[f32], g: &mut [f32]| {
            let (a, b) = (x[0] as f64, x[1] as f64);
            g[0] = (-2.0 * (1.0 - a) - 400.0 * a * (b - a * a)) as f32;
            g[1] = (200.0 * (b - a * a)) as f32;
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let mut x = vec![-1.2f32, 1.0];
        let params = LbfgsParams {
            max_iter: 500,
            gtol: 1e-4,
            ftol: 0.0,
            ..Default::default()
        };
        let r = minimize(&mut x, rosen, &params, |_, _| {});
        assert!(r.loss < 1e-6, "{r:?}");
        assert!(
            (x[0] - 1.0).abs() < 1e-2 && (x[1] - 1.0).abs() < 2e-2,
            "{x:?}"
        );
    }

    #[test]
    fn quadratic_converges_and_reports_monotone_losses() {
        // f(x) = sum_i i * (x_i - 1)^2
        let f = |x: &[f32], g: &mut [f32]| {
            let mut s = 0.0;
            for (i, (xi, gi)) in x.iter().zip(g.iter_mut()).enumerate() {
                let w = (i + 1) as f64;
                s += w * (*xi as f64 - 1.0).powi(2);
                *gi = (2.0 * w * (*xi as f64 - 1.0)) as f32;
            }
            s
        };
        let mut x = vec![0f32; 50];
        let mut losses = Vec::new();
        let r = minimize(&mut x, f, &LbfgsParams::default(), |_, l| losses.push(l));
        assert!(r.converged);
        assert!(losses.windows(2).all(|w| w[1] <= w[0]));
        assert!(x.iter().all(|v| (v - 1.0).abs() < 1e-3));
    }
}
