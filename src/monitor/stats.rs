//! Pure statistics for drift monitoring and model comparison: two-sample
//! tests (Population Stability Index, chi-square homogeneity,
//! Kolmogorov–Smirnov, two-proportion z, kernel MMD with a permutation
//! p-value, exact McNemar), the distribution functions they need (χ²
//! survival, `erfc`, normal tail, Kolmogorov tail), effect-size intervals
//! (Wilson, mean, paired accuracy difference) and Holm multiple-testing
//! correction. Everything here is a deterministic function of its arguments
//! (randomness only through an explicit seed): no I/O, no printing, no
//! global state. Every p-value stored in a test result lies in (0, 1] and is
//! never NaN.

use crate::util::Rng;

/// Two-sided 95 % standard-normal quantile, Φ⁻¹(0.975).
pub const Z95: f64 = 1.959963984540054;

/// Floor applied to every share in [`psi`] so that empty categories give a
/// finite contribution.
pub const PSI_EPSILON: f64 = 1e-4;

/// Pooled MMD samples larger than this estimate the median heuristic from a
/// seeded random subset of pairs instead of all pairs.
const MMD_FULL_MEDIAN_MAX_ROWS: usize = 1000;
/// Number of random pairs used for the median heuristic on large samples.
const MMD_MEDIAN_PAIRS: usize = 20_000;
/// Absolute slack when comparing a permuted MMD² with the observed one, so
/// that mathematically equal statistics (e.g. the swapped split when n = m)
/// count as "at least as extreme" despite rounding.
const MMD_TIE_TOLERANCE: f64 = 1e-12;
/// Seed offset separating the bandwidth-sampling stream from the
/// permutation stream.
const MMD_BANDWIDTH_STREAM: u64 = 0x6d6d_645f_6277_0001;
/// Two-sample KS p-values are exact when n·m is at most this.
const KS_EXACT_MAX_CELLS: u64 = 10_000;
/// Minimum expected count per cell before chi-square pooling kicks in.
const CHI_MIN_EXPECTED: f64 = 5.0;

const EPS: f64 = 1e-16;
const FPMIN: f64 = 1e-300;
const MAX_ITER: usize = 1_000_000;

/// Clamps a probability into (0, 1]; NaN (never expected) maps to 1.
fn clamp_p(p: f64) -> f64 {
    if p.is_nan() {
        1.0
    } else {
        p.clamp(f64::MIN_POSITIVE, 1.0)
    }
}

// ---------------------------------------------------------------------------
// Special functions
// ---------------------------------------------------------------------------

/// ln Γ(x) for x > 0 by the Lanczos approximation (g = 7, 9 coefficients;
/// relative error ~1e-15), with the reflection formula for x < 0.5.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin().abs()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + G + 0.5;
    let series = COEF[1..]
        .iter()
        .zip(1..)
        .fold(COEF[0], |acc, (c, i)| acc + c / (x + f64::from(i)));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

/// The common factor e^{−x} x^a / Γ(a) of the incomplete gamma expansions.
fn gamma_prefactor(a: f64, x: f64) -> f64 {
    (a * x.ln() - x - ln_gamma(a)).exp()
}

/// Regularised lower incomplete gamma P(a, x) by its power series
/// (Numerical Recipes `gser`); used for x < a + 1.
fn gamma_p_series(a: f64, x: f64) -> f64 {
    let mut ap = a;
    let mut term = 1.0 / a;
    let mut sum = term;
    for _ in 0..MAX_ITER {
        ap += 1.0;
        term *= x / ap;
        sum += term;
        if term.abs() < sum.abs() * EPS {
            break;
        }
    }
    sum * gamma_prefactor(a, x)
}

/// Regularised upper incomplete gamma Q(a, x) by its continued fraction,
/// evaluated with the modified Lentz method (Numerical Recipes `gcf`);
/// used for x ≥ a + 1.
fn gamma_q_fraction(a: f64, x: f64) -> f64 {
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / FPMIN;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..MAX_ITER {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < FPMIN {
            d = FPMIN;
        }
        c = b + an / c;
        if c.abs() < FPMIN {
            c = FPMIN;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    gamma_prefactor(a, x) * h
}

/// Regularised upper incomplete gamma Q(a, x) = Γ(a, x)/Γ(a) for a > 0:
/// series for x < a + 1, continued fraction otherwise (Numerical Recipes
/// §6.2). Returns 1 for x ≤ 0 and 0 for x = +∞; the result is clamped to
/// [0, 1].
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    let q = if x < a + 1.0 {
        1.0 - gamma_p_series(a, x)
    } else {
        gamma_q_fraction(a, x)
    };
    q.clamp(0.0, 1.0)
}

/// Survival function of the χ² distribution, P(X ≥ x) = Q(dof/2, x/2).
/// Returns 1 for x ≤ 0 (or NaN) and for dof ≤ 0; relative accuracy is about
/// 1e-12 across the usual range.
pub fn chi2_sf(x: f64, dof: f64) -> f64 {
    if x.is_nan() || x <= 0.0 || dof.is_nan() || dof <= 0.0 {
        return 1.0;
    }
    gamma_q(0.5 * dof, 0.5 * x)
}

/// Complementary error function, erfc(x) = Q(1/2, x²) for x ≥ 0 and
/// 2 − erfc(−x) for x < 0 (Numerical Recipes §6.2). Relative accuracy about
/// 1e-13 for x ≥ 0; NaN input gives 1.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return 1.0;
    }
    if x < 0.0 {
        2.0 - gamma_q(0.5, x * x)
    } else {
        gamma_q(0.5, x * x)
    }
}

/// Upper tail of the standard normal, P(Z ≥ z) = erfc(z/√2)/2.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Kolmogorov distribution tail Q_KS(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}.
/// For λ < 1 the equivalent form 1 − (√(2π)/λ) Σ_{k≥1} e^{−(2k−1)²π²/(8λ²)}
/// is used because it converges quickly there. Returns 1 for λ ≤ 0.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 1.0;
    }
    let mut sum = 0.0;
    if lambda < 1.0 {
        let pi2 = std::f64::consts::PI * std::f64::consts::PI;
        for k in 1..=50 {
            let odd = f64::from(2 * k - 1);
            let term = (-odd * odd * pi2 / (8.0 * lambda * lambda)).exp();
            sum += term;
            if term < 1e-17 * sum {
                break;
            }
        }
        let cdf = (2.0 * std::f64::consts::PI).sqrt() / lambda * sum;
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    let mut sign = 1.0;
    for k in 1..=100 {
        let kf = f64::from(k);
        let term = (-2.0 * kf * kf * lambda * lambda).exp();
        sum += sign * term;
        if term < 1e-17 * sum.abs() {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

// ---------------------------------------------------------------------------
// Categorical drift
// ---------------------------------------------------------------------------

/// Population Stability Index over category counts:
/// PSI = Σᵢ (qᵢ − pᵢ) ln(qᵢ/pᵢ), with reference shares pᵢ = countᵢ/total and
/// batch shares qᵢ likewise. Each share is floored at `eps` (normally
/// [`PSI_EPSILON`]) and the shares are NOT renormalised afterwards. Every
/// term is ≥ 0, so PSI ≥ 0, and psi(x, x) = 0. A side whose total is 0 has
/// all shares equal to `eps`.
///
/// # Panics
/// If the slices have different lengths.
pub fn psi(reference: &[f64], batch: &[f64], eps: f64) -> f64 {
    assert_eq!(reference.len(), batch.len(), "psi: category count mismatch");
    let shares = |counts: &[f64]| -> Vec<f64> {
        let total: f64 = counts.iter().sum();
        counts
            .iter()
            .map(|&c| {
                if total > 0.0 {
                    (c / total).max(eps)
                } else {
                    eps
                }
            })
            .collect()
    };
    let p = shares(reference);
    let q = shares(batch);
    p.iter()
        .zip(&q)
        .map(|(&pi, &qi)| (qi - pi) * (qi / pi).ln())
        .sum()
}

/// Result of [`chi_square_homogeneity`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    /// Pearson statistic Σ (O − E)²/E over both rows and all cells.
    pub statistic: f64,
    /// Degrees of freedom, `cells − 1` (0 when fewer than 2 cells).
    pub dof: usize,
    /// χ² survival p-value, in (0, 1].
    pub p_value: f64,
    /// Number of cells after dropping empty categories and pooling.
    pub cells: usize,
}

/// Pools sparse categories of a 2×K table. Columns are (reference, batch)
/// counts; a column is sparse when its smaller expected count
/// `total · min(R₁, R₂)/N` is below 5. Sparse columns merge into one
/// "other" cell; while that cell is itself sparse it absorbs the smallest
/// remaining column.
fn pool_sparse_cells(columns: Vec<(f64, f64)>, min_row_share: f64) -> Vec<(f64, f64)> {
    let sparse = |c: &(f64, f64)| (c.0 + c.1) * min_row_share < CHI_MIN_EXPECTED;
    let (small, mut dense): (Vec<_>, Vec<_>) = columns.into_iter().partition(sparse);
    if small.is_empty() {
        return dense;
    }
    let mut other = small
        .iter()
        .fold((0.0, 0.0), |acc, c| (acc.0 + c.0, acc.1 + c.1));
    // Largest column first so that `pop` yields the smallest.
    dense.sort_by(|a, b| (b.0 + b.1).total_cmp(&(a.0 + a.1)));
    while sparse(&other) {
        match dense.pop() {
            Some(c) => other = (other.0 + c.0, other.1 + c.1),
            None => break,
        }
    }
    dense.push(other);
    dense
}

/// Pearson χ² test of homogeneity for a 2×K table of category counts
/// (reference row vs batch row). Categories empty in both rows are
/// dropped; categories whose expected count under the pooled null is below
/// 5 in either row are pooled (see the module rules: sparse categories form
/// one "other" cell, which absorbs the smallest remaining cell while it is
/// still sparse). dof = cells − 1. With fewer than 2 cells (including an
/// empty row) the result is statistic 0, p 1.
///
/// # Panics
/// If the slices have different lengths.
pub fn chi_square_homogeneity(reference: &[f64], batch: &[f64]) -> ChiSquare {
    assert_eq!(reference.len(), batch.len(), "chi-square: length mismatch");
    let columns: Vec<(f64, f64)> = reference
        .iter()
        .zip(batch)
        .map(|(&r, &b)| (r, b))
        .filter(|&(r, b)| r + b > 0.0)
        .collect();
    let r1: f64 = columns.iter().map(|c| c.0).sum();
    let r2: f64 = columns.iter().map(|c| c.1).sum();
    let total = r1 + r2;
    let none = ChiSquare {
        statistic: 0.0,
        dof: 0,
        p_value: 1.0,
        cells: columns.len().min(1),
    };
    if total <= 0.0 {
        return none;
    }
    let cells = pool_sparse_cells(columns, r1.min(r2) / total);
    if cells.len() < 2 {
        return ChiSquare {
            cells: cells.len(),
            ..none
        };
    }
    let statistic: f64 = cells
        .iter()
        .map(|&(o1, o2)| {
            let col = o1 + o2;
            let (e1, e2) = (r1 * col / total, r2 * col / total);
            (o1 - e1).powi(2) / e1 + (o2 - e2).powi(2) / e2
        })
        .sum();
    let dof = cells.len() - 1;
    ChiSquare {
        statistic,
        dof,
        p_value: clamp_p(chi2_sf(statistic, dof as f64)),
        cells: cells.len(),
    }
}

// ---------------------------------------------------------------------------
// Kolmogorov–Smirnov
// ---------------------------------------------------------------------------

/// Result of [`ks_two_sample`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ks {
    /// D = sup |F_a − F_b| of the two empirical CDFs.
    pub statistic: f64,
    /// Two-sided p-value, in (0, 1].
    pub p_value: f64,
}

/// Sorted copy of the non-NaN values.
fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Integer KS distance max |i·m − j·n| over the merged sorted samples,
/// advancing past every tie before comparing the ECDFs (D = result/(n·m)).
fn ks_distance_scaled(a: &[f64], b: &[f64]) -> u64 {
    let (n, m) = (a.len(), b.len());
    let (mut i, mut j, mut best) = (0, 0, 0u64);
    while i < n && j < m {
        let v = a[i].min(b[j]);
        while i < n && a[i] <= v {
            i += 1;
        }
        while j < m && b[j] <= v {
            j += 1;
        }
        best = best.max((i as u64 * m as u64).abs_diff(j as u64 * n as u64));
    }
    best
}

/// Exact P(D ≥ d) for two samples of sizes n, m without ties, where
/// `d_scaled` = d·n·m. A uniformly random lattice path from (0,0) to (n,m)
/// is propagated with its step probabilities ((n−i) or (m−j) over the
/// remaining steps); mass stepping onto a point with |i·m − j·n| ≥ d_scaled
/// is absorbed, and the absorbed total is the p-value (no overflow, no
/// 1 − x cancellation).
fn ks_exact_p(n: usize, m: usize, d_scaled: u64) -> f64 {
    if d_scaled == 0 {
        return 1.0;
    }
    let outside =
        |i: usize, j: usize| (i as u64 * m as u64).abs_diff(j as u64 * n as u64) >= d_scaled;
    let mut row = vec![0.0f64; m + 1];
    row[0] = 1.0;
    let mut absorbed = 0.0;
    for i in 0..=n {
        let mut next = vec![0.0f64; m + 1];
        for j in 0..=m {
            let mass = row[j];
            let remaining = (n - i + m - j) as f64;
            if mass == 0.0 || remaining == 0.0 {
                continue;
            }
            if i < n {
                let step = mass * (n - i) as f64 / remaining;
                if outside(i + 1, j) {
                    absorbed += step;
                } else {
                    next[j] += step;
                }
            }
            if j < m {
                let step = mass * (m - j) as f64 / remaining;
                if outside(i, j + 1) {
                    absorbed += step;
                } else {
                    row[j + 1] += step;
                }
            }
        }
        row = next;
    }
    absorbed
}

/// Two-sided two-sample Kolmogorov–Smirnov test. The statistic handles ties
/// (all equal values are consumed before the ECDFs are compared); NaN
/// values are ignored. The p-value is exact when n·m ≤ 10 000 (lattice-path
/// count of P(D ≥ d), as in scipy's exact mode, which assumes no ties);
/// otherwise it is the asymptotic Kolmogorov tail with Stephens'
/// correction: λ = (√(nm/(n+m)) + 0.12 + 0.11/√(nm/(n+m)))·D,
/// p = Q_KS(λ). If either sample is empty the result is statistic 0, p 1.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> Ks {
    let (a, b) = (sorted_finite(a), sorted_finite(b));
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return Ks {
            statistic: 0.0,
            p_value: 1.0,
        };
    }
    let scaled = ks_distance_scaled(&a, &b);
    let cells = n as u64 * m as u64;
    let statistic = scaled as f64 / cells as f64;
    let p = if cells <= KS_EXACT_MAX_CELLS {
        ks_exact_p(n, m, scaled)
    } else {
        let en = (cells as f64 / (n + m) as f64).sqrt();
        kolmogorov_sf((en + 0.12 + 0.11 / en) * statistic)
    };
    Ks {
        statistic,
        p_value: clamp_p(p),
    }
}

// ---------------------------------------------------------------------------
// Proportions
// ---------------------------------------------------------------------------

/// Result of [`two_proportion`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwoProportion {
    /// Pooled z statistic (x₂/n₂ − x₁/n₁)/se.
    pub statistic: f64,
    /// Two-sided p-value erfc(|z|/√2), in (0, 1].
    pub p_value: f64,
    /// x₂/n₂ − x₁/n₁ (batch minus reference).
    pub difference: f64,
}

/// Pooled two-proportion z-test: p̂ = (x₁+x₂)/(n₁+n₂),
/// se = √(p̂(1−p̂)(1/n₁ + 1/n₂)), z = (x₂/n₂ − x₁/n₁)/se,
/// p = erfc(|z|/√2). When p̂ is 0 or 1 (no variance) z = 0 and p = 1; when
/// either n is 0 everything is 0 except p = 1.
pub fn two_proportion(x1: u64, n1: u64, x2: u64, n2: u64) -> TwoProportion {
    if n1 == 0 || n2 == 0 {
        return TwoProportion {
            statistic: 0.0,
            p_value: 1.0,
            difference: 0.0,
        };
    }
    let (x1, n1, x2, n2) = (x1 as f64, n1 as f64, x2 as f64, n2 as f64);
    let difference = x2 / n2 - x1 / n1;
    let pooled = (x1 + x2) / (n1 + n2);
    let variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2);
    if variance <= 0.0 {
        return TwoProportion {
            statistic: 0.0,
            p_value: 1.0,
            difference,
        };
    }
    let statistic = difference / variance.sqrt();
    let p_value = clamp_p(erfc(statistic.abs() / std::f64::consts::SQRT_2));
    TwoProportion {
        statistic,
        p_value,
        difference,
    }
}

/// Result of [`mcnemar_exact`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct McNemar {
    /// Discordant pairs where only the first model is right.
    pub b: u64,
    /// Discordant pairs where only the second model is right.
    pub c: u64,
    /// Exact two-sided p-value, in (0, 1].
    pub p_value: f64,
}

/// Exact McNemar test: two-sided binomial test on the discordant pairs,
/// p = min(1, 2·P(X ≤ min(b, c))) with X ~ Bin(b + c, 1/2). The tail is
/// summed downwards from its largest term, which is computed in log space
/// via ln Γ, so large counts neither overflow nor underflow prematurely.
/// b + c = 0 gives p = 1.
pub fn mcnemar_exact(b: u64, c: u64) -> McNemar {
    let n = b + c;
    let k = b.min(c);
    if n == 0 {
        return McNemar { b, c, p_value: 1.0 };
    }
    let nf = n as f64;
    let ln_top = ln_gamma(nf + 1.0)
        - ln_gamma(k as f64 + 1.0)
        - ln_gamma((n - k) as f64 + 1.0)
        - nf * std::f64::consts::LN_2;
    // Terms relative to P(X = k): t_{i-1} = t_i · i/(n − i + 1).
    let (mut term, mut relative) = (1.0f64, 1.0f64);
    for i in (1..=k).rev() {
        term *= i as f64 / (n - i + 1) as f64;
        relative += term;
        if term < 1e-17 * relative {
            break;
        }
    }
    let tail = (ln_top + relative.ln()).exp();
    McNemar {
        b,
        c,
        p_value: clamp_p(2.0 * tail),
    }
}

// ---------------------------------------------------------------------------
// Intervals
// ---------------------------------------------------------------------------

/// Wilson score interval for a binomial proportion:
/// (p̂ + z²/2n ± z√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n), clamped to [0, 1].
/// n ≤ 0 gives the uninformative (0, 1).
pub fn wilson_interval(successes: f64, n: f64, z: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let p = successes / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).max(0.0).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Normal-approximation interval for a mean: returns (mean, mean − z·se,
/// mean + z·se) with se = s/√n and s the sample (n − 1) standard deviation.
/// Fewer than 2 values give (mean, mean, mean), with mean 0 when empty.
pub fn mean_interval(values: &[f64], z: f64) -> (f64, f64, f64) {
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, mean, mean);
    }
    let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
    let se = (ss / (n - 1) as f64).sqrt() / (n as f64).sqrt();
    (mean, mean - z * se, mean + z * se)
}

/// Paired accuracy difference of models A and B scored on the same n rows,
/// with b = rows only A got right and c = rows only B got right:
/// diff = (b − c)/n, se = √(b + c − (b − c)²/n)/n; returns
/// (diff, diff − z·se, diff + z·se). n = 0 gives (0, 0, 0).
pub fn paired_difference_interval(b: u64, c: u64, n: u64, z: f64) -> (f64, f64, f64) {
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let (b, c, n) = (b as f64, c as f64, n as f64);
    let diff = (b - c) / n;
    let se = (b + c - (b - c).powi(2) / n).max(0.0).sqrt() / n;
    (diff, diff - z * se, diff + z * se)
}

// ---------------------------------------------------------------------------
// Multiple testing
// ---------------------------------------------------------------------------

/// Holm–Bonferroni adjusted p-values, returned in input order: with the
/// p-values sorted ascending, adj₍ᵢ₎ = min(1, max_{j≤i} (m − j + 1)·p₍ⱼ₎)
/// (1-based ranks; Holm 1979).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &idx) in order.iter().enumerate() {
        running = running.max((m - rank) as f64 * p[idx]).min(1.0);
        adjusted[idx] = running;
    }
    adjusted
}

// ---------------------------------------------------------------------------
// Kernel MMD
// ---------------------------------------------------------------------------

/// Result of [`mmd_permutation`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mmd {
    /// Unbiased MMD² (diagonal kernel terms excluded).
    pub statistic: f64,
    /// σ² of the RBF kernel exp(−‖a−b‖²/(2σ²)): the median pairwise squared
    /// distance of the pooled sample (1 if that median is 0).
    pub bandwidth: f64,
    /// Permutation p-value (k + 1)/(P + 1), in (0, 1].
    pub p_value: f64,
    /// Number of permutations performed (P).
    pub permutations: usize,
}

/// Dot product with eight independent f32 accumulators (so it vectorises: a plain iterator sum
/// must keep the order of its additions and cannot).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(x).zip(y) {
            *s += u * v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Full symmetric matrix of squared Euclidean distances between the rows,
/// ‖a‖² + ‖b‖² − 2a·b clamped at 0, with a zero diagonal.
fn squared_distances(rows: &[f32], count: usize, dim: usize) -> Vec<f32> {
    let row = |i: usize| &rows[i * dim..(i + 1) * dim];
    let norms: Vec<f32> = (0..count).map(|i| dot_f32(row(i), row(i))).collect();
    let mut d = vec![0.0f32; count * count];
    for i in 0..count {
        for j in i + 1..count {
            let v = (norms[i] + norms[j] - 2.0 * dot_f32(row(i), row(j))).max(0.0);
            d[i * count + j] = v;
            d[j * count + i] = v;
        }
    }
    d
}

/// Median of the values (mean of the two middle values for even length);
/// 0 when empty.
fn median(mut values: Vec<f32>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let len = values.len();
    let (lower, upper, _) = values.select_nth_unstable_by(len / 2, f32::total_cmp);
    let upper = f64::from(*upper);
    if len % 2 == 1 {
        return upper;
    }
    let lower = lower.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    0.5 * (f64::from(lower) + upper)
}

/// Median heuristic σ² from a distance matrix: over all pairs i < j when
/// count ≤ 1000, else over 20 000 seeded random pairs; 1 if the median is
/// 0 or not finite.
fn median_bandwidth(dist: &[f32], count: usize, seed: u64) -> f64 {
    let pairs: Vec<f32> = if count <= MMD_FULL_MEDIAN_MAX_ROWS {
        (0..count)
            .flat_map(|i| dist[i * count + i + 1..(i + 1) * count].iter().copied())
            .collect()
    } else {
        let mut rng = Rng::new(seed ^ MMD_BANDWIDTH_STREAM);
        (0..MMD_MEDIAN_PAIRS)
            .map(|_| {
                let i = rng.below(count);
                let j = rng.below(count - 1);
                dist[i * count + if j >= i { j + 1 } else { j }]
            })
            .collect()
    };
    let m = median(pairs);
    if m > 0.0 && m.is_finite() {
        m
    } else {
        1.0
    }
}

/// Pooled RBF kernel matrix for the rows of `x` then `y` (row-major,
/// `dim` columns each): returns the (n+m)² f32 matrix
/// k(a,b) = exp(−‖a−b‖²/(2σ²)) (diagonal 1) and σ² from the median
/// heuristic (see [`mmd_permutation`]). Memory is 4(n+m)² bytes, fine up
/// to roughly 5 000 pooled rows.
///
/// # Panics
/// If `dim` is 0 or a slice length is not a multiple of `dim`.
pub fn pooled_rbf_kernel(x: &[f32], y: &[f32], dim: usize, seed: u64) -> (Vec<f32>, f64) {
    assert!(dim > 0, "mmd: dim must be positive");
    assert!(
        x.len().is_multiple_of(dim) && y.len().is_multiple_of(dim),
        "mmd: ragged rows"
    );
    let count = (x.len() + y.len()) / dim;
    let rows = [x, y].concat();
    let mut kernel = squared_distances(&rows, count, dim);
    let sigma2 = median_bandwidth(&kernel, count, seed);
    let scale = -0.5 / sigma2;
    for v in &mut kernel {
        *v = (f64::from(*v) * scale).exp() as f32;
    }
    (kernel, sigma2)
}

/// Unbiased MMD² from a pooled kernel matrix (`n_total`² row-major) and a
/// group mask (`in_x[i]` true for rows of X):
/// Σ_{i≠j∈X} k/(n(n−1)) + Σ_{i≠j∈Y} k/(m(m−1)) − 2 Σ_{i∈X,j∈Y} k/(nm)
/// (Gretton et al. 2012, eq. 3). Straightforward O((n+m)²) reference
/// implementation; 0 if either group has fewer than 2 rows.
pub fn mmd2_unbiased(kernel: &[f32], n_total: usize, in_x: &[bool]) -> f64 {
    let n = in_x.iter().filter(|&&g| g).count();
    let m = n_total - n;
    if n < 2 || m < 2 {
        return 0.0;
    }
    let (mut kxx, mut kyy, mut kxy) = (0.0f64, 0.0f64, 0.0f64);
    for (i, row) in kernel.chunks_exact(n_total).enumerate() {
        for (j, &k) in row.iter().enumerate().filter(|&(j, _)| j != i) {
            match (in_x[i], in_x[j]) {
                (true, true) => kxx += f64::from(k),
                (false, false) => kyy += f64::from(k),
                _ => kxy += f64::from(k),
            }
        }
    }
    let (n, m) = (n as f64, m as f64);
    kxx / (n * (n - 1.0)) + kyy / (m * (m - 1.0)) - kxy / (n * m)
}

/// Pooled kernel with a zeroed diagonal plus its off-diagonal row sums,
/// so that one permutation costs one masked pass over the smaller group's
/// rows.
struct PooledKernel {
    kernel: Vec<f32>,
    count: usize,
    row_sums: Vec<f64>,
    total: f64,
}

impl PooledKernel {
    fn new(mut kernel: Vec<f32>, count: usize) -> Self {
        for i in 0..count {
            kernel[i * count + i] = 0.0;
        }
        let row_sums: Vec<f64> = kernel
            .chunks_exact(count)
            .map(|r| r.iter().map(|&v| f64::from(v)).sum())
            .collect();
        let total = row_sums.iter().sum();
        PooledKernel {
            kernel,
            count,
            row_sums,
            total,
        }
    }

    /// Σ_j row_i[j]·mask[j] with the product exact in f32 (mask is 0/1) and
    /// the sum accumulated in four f64 lanes.
    fn masked_row_sum(row: &[f32], mask: &[f32]) -> f64 {
        let mut acc = [0.0f64; 4];
        let (cr, cm) = (row.chunks_exact(4), mask.chunks_exact(4));
        let tail: f64 = cr
            .remainder()
            .iter()
            .zip(cm.remainder())
            .map(|(&k, &g)| f64::from(k * g))
            .sum();
        for (r, g) in cr.zip(cm) {
            for ((s, &k), &w) in acc.iter_mut().zip(r).zip(g) {
                *s += f64::from(k * w);
            }
        }
        acc.iter().sum::<f64>() + tail
    }

    /// Unbiased MMD² for groups of sizes (n, m) where `members` lists the
    /// rows of one group (`members_are_x` says which) and `mask` is 1 on
    /// exactly those rows. With W = within-group sum of `members`,
    /// A = Σ row sums of `members`: cross = A − W and
    /// other-within = total − A − cross.
    fn statistic(
        &self,
        members: &[usize],
        mask: &[f32],
        members_are_x: bool,
        n: usize,
        m: usize,
    ) -> f64 {
        let count = self.count;
        let (mut within, mut rows) = (0.0, 0.0);
        for &i in members {
            within += Self::masked_row_sum(&self.kernel[i * count..(i + 1) * count], mask);
            rows += self.row_sums[i];
        }
        let cross = rows - within;
        let other = self.total - rows - cross;
        let (kxx, kyy) = if members_are_x {
            (within, other)
        } else {
            (other, within)
        };
        let (n, m) = (n as f64, m as f64);
        kxx / (n * (n - 1.0)) + kyy / (m * (m - 1.0)) - 2.0 * cross / (n * m)
    }
}

/// Kernel two-sample test with an RBF kernel and a permutation p-value.
/// `x` and `y` are row-major [n × dim] and [m × dim]. σ² is the median of
/// the pooled pairwise squared distances (over all pairs when n + m ≤
/// 1000, else over 20 000 random pairs drawn with a stream derived from
/// `seed`; 1 if the median is 0). The pooled (n+m)² f32 kernel matrix is
/// computed once (4(n+m)² bytes: fine up to ~5 000 pooled rows). The
/// statistic is the unbiased MMD². The p-value is (k + 1)/(P + 1) where k
/// counts permuted statistics ≥ the observed one (up to a 1e-12 rounding
/// slack) over P = `permutations` shuffles of the pooled rows drawn from
/// `Rng::new(seed)`; each costs one O((n+m)·min(n,m)) masked pass.
/// `permutations == 0` gives p = 1. If either sample has fewer than 2 rows
/// the statistic is undefined: statistic 0, bandwidth 1, p 1, 0
/// permutations.
///
/// # Panics
/// If `dim` is 0 or a slice length is not a multiple of `dim`.
pub fn mmd_permutation(x: &[f32], y: &[f32], dim: usize, permutations: usize, seed: u64) -> Mmd {
    assert!(dim > 0, "mmd: dim must be positive");
    let (n, m) = (x.len() / dim, y.len() / dim);
    if n < 2 || m < 2 {
        return Mmd {
            statistic: 0.0,
            bandwidth: 1.0,
            p_value: 1.0,
            permutations: 0,
        };
    }
    let (kernel, bandwidth) = pooled_rbf_kernel(x, y, dim, seed);
    let count = n + m;
    let pooled = PooledKernel::new(kernel, count);
    let members_are_x = n <= m;
    let mut order: Vec<usize> = (0..count).collect();
    let mut mask = vec![0.0f32; count];
    let mut evaluate = |order: &[usize]| {
        let members = if members_are_x {
            &order[..n]
        } else {
            &order[n..]
        };
        mask.fill(0.0);
        for &i in members {
            mask[i] = 1.0;
        }
        pooled.statistic(members, &mask, members_are_x, n, m)
    };
    let statistic = evaluate(&order);
    let mut rng = Rng::new(seed);
    let mut extreme = 0usize;
    for _ in 0..permutations {
        rng.shuffle(&mut order);
        if evaluate(&order) >= statistic - MMD_TIE_TOLERANCE {
            extreme += 1;
        }
    }
    let p_value = (extreme + 1) as f64 / (permutations + 1) as f64;
    Mmd {
        statistic,
        bandwidth,
        p_value,
        permutations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, rel: f64) {
        let tol = rel * expected.abs().max(f64::MIN_POSITIVE);
        assert!(
            (actual - expected).abs() <= tol,
            "actual {actual:e} vs expected {expected:e} (rel tol {rel:e})"
        );
    }

    fn near(actual: f64, expected: f64, abs: f64) {
        assert!(
            (actual - expected).abs() <= abs,
            "actual {actual} vs expected {expected} (abs tol {abs})"
        );
    }

    fn unit(rng: &mut Rng) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn counts(rng: &mut Rng, k: usize, max: usize) -> Vec<f64> {
        (0..k).map(|_| rng.below(max) as f64).collect()
    }

    fn is_p(p: f64) -> bool {
        p > 0.0 && p <= 1.0
    }

    #[test]
    fn psi_zero_on_identical_and_nonnegative() {
        for x in [
            vec![1.0, 2.0, 3.0],
            vec![0.0, 5.0, 0.0, 7.0],
            vec![10.0],
            vec![0.0, 0.0],
        ] {
            assert_eq!(psi(&x, &x, PSI_EPSILON), 0.0);
        }
        let mut rng = Rng::new(7);
        for _ in 0..200 {
            let k = 1 + rng.below(8);
            let (a, b) = (counts(&mut rng, k, 50), counts(&mut rng, k, 50));
            let v = psi(&a, &b, PSI_EPSILON);
            assert!(v >= 0.0 && v.is_finite(), "psi {v} for {a:?} {b:?}");
        }
        // Hand value: shares (0.5, 0.5) vs (0.25, 0.75).
        let expected = -0.25 * (0.5f64).ln() + 0.25 * (1.5f64).ln();
        close(psi(&[5.0, 5.0], &[1.0, 3.0], PSI_EPSILON), expected, 1e-12);
    }

    #[test]
    fn p_values_in_unit_interval_on_random_inputs() {
        let mut rng = Rng::new(11);
        for _ in 0..200 {
            let k = 1 + rng.below(6);
            let (a, b) = (counts(&mut rng, k, 40), counts(&mut rng, k, 40));
            assert!(is_p(chi_square_homogeneity(&a, &b).p_value));
            let s1: Vec<f64> = (0..rng.below(60)).map(|_| unit(&mut rng)).collect();
            let s2: Vec<f64> = (0..rng.below(200)).map(|_| unit(&mut rng) * 1.3).collect();
            assert!(is_p(ks_two_sample(&s1, &s2).p_value));
            let (n1, n2) = (rng.below(100) as u64, rng.below(100) as u64);
            let x1 = if n1 > 0 {
                rng.below(n1 as usize + 1) as u64
            } else {
                0
            };
            let x2 = if n2 > 0 {
                rng.below(n2 as usize + 1) as u64
            } else {
                0
            };
            assert!(is_p(two_proportion(x1, n1, x2, n2).p_value));
            assert!(is_p(
                mcnemar_exact(rng.below(300) as u64, rng.below(300) as u64).p_value
            ));
            let x = unit(&mut rng) * 40.0;
            let dof = 1.0 + rng.below(30) as f64;
            assert!(is_p(chi2_sf(x, dof)));
            assert!(is_p(normal_sf(unit(&mut rng) * 10.0 - 5.0)));
            let adj = holm(&[unit(&mut rng), unit(&mut rng), unit(&mut rng)]);
            assert!(adj.iter().all(|&p| is_p(p)));
        }
        let mut rng = Rng::new(12);
        for seed in 0..10 {
            let xs: Vec<f32> = (0..20).map(|_| unit(&mut rng) as f32).collect();
            let ys: Vec<f32> = (0..24).map(|_| unit(&mut rng) as f32).collect();
            assert!(is_p(mmd_permutation(&xs, &ys, 2, 30, seed).p_value));
        }
    }

    #[test]
    fn chi2_sf_known_values() {
        close(chi2_sf(3.841458820694124, 1.0), 0.05, 1e-10);
        close(chi2_sf(18.307038053275146, 10.0), 0.05, 1e-10);
        close(chi2_sf(100.0, 3.0), 1.5541594313896026e-21, 1e-10);
        close(chi2_sf(0.5, 7.0), 0.9994464813904249, 1e-12);
        close(chi2_sf(1000.0, 900.0), 0.010994608942135844, 1e-10);
        close(chi2_sf(30.0, 2.0), 3.0590232050182594e-07, 1e-10);
        close(chi2_sf(1e-3, 1.0), 0.9747728793699604, 1e-12);
        for k in [1.0, 2.0, 5.0, 50.0] {
            assert_eq!(chi2_sf(0.0, k), 1.0);
            assert_eq!(chi2_sf(-3.0, k), 1.0);
        }
        assert_eq!(chi2_sf(f64::INFINITY, 3.0), 0.0);
    }

    #[test]
    fn erfc_and_normal_sf_known_values() {
        let cases = [
            (0.0, 1.0),
            (0.1, 0.8875370839817152),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (1.5, 0.033894853524689274),
            (2.0, 0.004677734981047265),
            (3.0, 2.2090496998585438e-05),
            (5.0, 1.5374597944280351e-12),
            (10.0, 2.088487583762545e-45),
            (20.0, 5.3958656116079005e-176),
            (-1.0, 1.842700792949715),
            (-3.0, 1.9999779095030015),
        ];
        for (x, expected) in cases {
            close(erfc(x), expected, 1e-12);
        }
        close(normal_sf(Z95), 0.025, 1e-12);
        close(normal_sf(0.0), 0.5, 1e-15);
    }

    #[test]
    fn ln_gamma_known_values() {
        close(ln_gamma(0.5), 0.5 * std::f64::consts::PI.ln(), 1e-14);
        near(ln_gamma(1.0), 0.0, 1e-14);
        near(ln_gamma(2.0), 0.0, 1e-14);
        close(ln_gamma(10.0), (362_880.0f64).ln(), 1e-14);
        close(ln_gamma(101.0), 363.739_375_555_563_5, 1e-13);
    }

    #[test]
    fn kolmogorov_sf_matches_scipy() {
        let cases = [
            (0.2, 0.999999999999495),
            (0.5, 0.9639452436648751),
            (0.8, 0.5441424115741981),
            (1.0, 0.26999967167735456),
            (1.2, 0.11224966667072497),
            (2.0, 0.0006709252557796953),
            (3.0, 3.045995948942526e-08),
        ];
        for (l, expected) in cases {
            close(kolmogorov_sf(l), expected, 1e-10);
        }
    }

    #[test]
    fn chi_square_matches_scipy_without_pooling() {
        let r = chi_square_homogeneity(&[100.0, 80.0, 40.0], &[90.0, 95.0, 60.0]);
        assert_eq!((r.cells, r.dof), (3, 2));
        close(r.statistic, 4.480896117845637, 1e-12);
        close(r.p_value, 0.10641081538099419, 1e-10);
        let r = chi_square_homogeneity(&[100.0, 88.0], &[94.0, 102.0]);
        close(r.statistic, 1.050935426178643, 1e-12);
        close(r.p_value, 0.3052917481607003, 1e-10);
    }

    #[test]
    fn chi_square_pools_sparse_cells() {
        // Three sparse categories pool into (10, 12); the empty one is dropped.
        let r = chi_square_homogeneity(
            &[100.0, 80.0, 4.0, 3.0, 3.0, 0.0],
            &[90.0, 95.0, 3.0, 4.0, 5.0, 0.0],
        );
        assert_eq!((r.cells, r.dof), (3, 2));
        close(r.statistic, 1.8678443735209342, 1e-12);
        close(r.p_value, 0.39300922788683323, 1e-10);
        // The pooled cell (3, 4) is still sparse and absorbs the smallest
        // remaining category.
        let r = chi_square_homogeneity(&[100.0, 80.0, 2.0, 1.0], &[90.0, 95.0, 1.0, 3.0]);
        assert_eq!((r.cells, r.dof), (2, 1));
        let direct = chi_square_homogeneity(&[100.0, 83.0], &[90.0, 99.0]);
        close(r.statistic, direct.statistic, 1e-12);
        // Everything sparse or an empty row: no test.
        let r = chi_square_homogeneity(&[1.0, 2.0], &[2.0, 1.0]);
        assert_eq!((r.cells, r.statistic, r.p_value), (1, 0.0, 1.0));
        let r = chi_square_homogeneity(&[10.0, 20.0], &[0.0, 0.0]);
        assert_eq!((r.cells, r.p_value), (1, 1.0));
        assert_eq!(chi_square_homogeneity(&[], &[]).p_value, 1.0);
    }

    #[test]
    fn ks_identical_and_empty() {
        let a = [0.3, 1.2, -0.5, 2.0, 2.0];
        let r = ks_two_sample(&a, &a);
        assert_eq!((r.statistic, r.p_value), (0.0, 1.0));
        let r = ks_two_sample(&a, &[]);
        assert_eq!((r.statistic, r.p_value), (0.0, 1.0));
    }

    #[test]
    fn ks_exact_matches_scipy() {
        let a = [0.1, 0.5, 0.9, 1.3, 2.2, 2.5, 3.1, 3.3];
        let b = [1.0, 1.9, 2.4, 2.8, 3.5, 3.9, 4.2];
        let r = ks_two_sample(&a, &b);
        close(r.statistic, 0.42857142857142855, 1e-14);
        close(r.p_value, 0.42175602175602184, 1e-12);
        let a: Vec<f64> = (1..=30)
            .map(|i| (i as f64 * 0.6180339887498949) % 1.0)
            .collect();
        let b: Vec<f64> = (1..=25)
            .map(|j| ((j as f64 * 0.41421356237309503) % 1.0) * 0.8 + 0.25)
            .collect();
        let r = ks_two_sample(&a, &b);
        close(r.statistic, 0.26666666666666666, 1e-14);
        close(r.p_value, 0.23924239557526017, 1e-10);
    }

    #[test]
    fn ks_handles_ties() {
        let a = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0];
        let b = [2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0, 5.0, 6.0];
        let r = ks_two_sample(&a, &b);
        close(r.statistic, 0.5238095238095238, 1e-14);
        close(r.p_value, 0.1687062937062937, 1e-10);
    }

    #[test]
    fn ks_asymptotic_matches_reference() {
        let a: Vec<f64> = (1..=150)
            .map(|i| (i as f64 * 0.6180339887498949) % 1.0)
            .collect();
        let b: Vec<f64> = (1..=120)
            .map(|j| ((j as f64 * 0.41421356237309503) % 1.0) * 0.9 + 0.12)
            .collect();
        let r = ks_two_sample(&a, &b);
        close(r.statistic, 0.12833333333333333, 1e-14);
        // scipy.special.kolmogorov at Stephens' λ = 1.064966210367363.
        close(r.p_value, 0.20674527682423732, 1e-9);
    }

    #[test]
    fn two_proportion_hand_example() {
        let r = two_proportion(45, 100, 60, 100);
        close(r.difference, 0.15, 1e-12);
        close(r.statistic, 2.1239769762143657, 1e-12);
        close(r.p_value, 0.033672068856345876, 1e-10);
        let r = two_proportion(0, 50, 0, 80);
        assert_eq!((r.statistic, r.p_value), (0.0, 1.0));
        let r = two_proportion(50, 50, 80, 80);
        assert_eq!((r.statistic, r.p_value, r.difference), (0.0, 1.0, 0.0));
    }

    #[test]
    fn holm_worked_example() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
        for (a, e) in adj.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            close(*a, e, 1e-12);
        }
        assert_eq!(holm(&[0.5, 0.9]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn mcnemar_examples() {
        close(mcnemar_exact(1, 6).p_value, 0.125, 1e-12);
        close(mcnemar_exact(6, 1).p_value, 0.125, 1e-12);
        close(mcnemar_exact(5, 15).p_value, 0.04138946533203125, 1e-12);
        close(mcnemar_exact(480, 520).p_value, 0.2174482932041415, 1e-9);
        close(
            mcnemar_exact(4000, 6000).p_value,
            1.7404316412268293e-89,
            1e-8,
        );
        assert_eq!(mcnemar_exact(0, 0).p_value, 1.0);
        assert_eq!(mcnemar_exact(7, 7).p_value, 1.0);
    }

    #[test]
    fn intervals() {
        let (lo, hi) = wilson_interval(8.0, 10.0, 1.96);
        near(lo, 0.4902, 1e-4);
        near(hi, 0.9433, 1e-4);
        assert_eq!(wilson_interval(0.0, 0.0, Z95), (0.0, 1.0));
        let (lo, hi) = wilson_interval(0.0, 20.0, Z95);
        assert!(lo == 0.0 && hi > 0.0 && hi < 0.2);
        let (mean, lo, hi) = mean_interval(&[1.0, 2.0, 3.0, 4.0], 2.0);
        close(mean, 2.5, 1e-15);
        let se = (5.0f64 / 3.0).sqrt() / 2.0;
        close(lo, 2.5 - 2.0 * se, 1e-14);
        close(hi, 2.5 + 2.0 * se, 1e-14);
        assert_eq!(mean_interval(&[4.0], Z95), (4.0, 4.0, 4.0));
        let (d, lo, hi) = paired_difference_interval(30, 10, 200, Z95);
        close(d, 0.1, 1e-14);
        let se = (40.0f64 - 400.0 / 200.0).sqrt() / 200.0;
        close(hi - d, Z95 * se, 1e-12);
        close(d - lo, Z95 * se, 1e-12);
        assert_eq!(paired_difference_interval(0, 0, 0, Z95), (0.0, 0.0, 0.0));
    }

    #[test]
    fn mmd_monte_carlo_matches_exhaustive_permutations() {
        let x = [0.0f32, 0.3, 1.1];
        let y = [0.9f32, 1.6, 2.2];
        let (kernel, _) = pooled_rbf_kernel(&x, &y, 1, 3);
        let split = |bits: u32| -> Vec<bool> { (0..6).map(|i| bits >> i & 1 == 1).collect() };
        let observed = mmd2_unbiased(&kernel, 6, &split(0b000111));
        let splits: Vec<u32> = (0u32..64).filter(|b| b.count_ones() == 3).collect();
        assert_eq!(splits.len(), 20);
        let extreme = splits
            .iter()
            .filter(|&&b| mmd2_unbiased(&kernel, 6, &split(b)) >= observed - 1e-12)
            .count();
        let exact = extreme as f64 / 20.0;
        let r = mmd_permutation(&x, &y, 1, 20_000, 3);
        close(r.statistic, observed, 1e-9);
        near(r.p_value, exact, 0.01);
        assert_eq!(r.permutations, 20_000);
    }

    #[test]
    fn mmd_same_distribution_and_shift() {
        let mut rng = Rng::new(99);
        let dim = 4;
        let x: Vec<f32> = (0..60 * dim).map(|_| unit(&mut rng) as f32).collect();
        let y: Vec<f32> = (0..50 * dim).map(|_| unit(&mut rng) as f32).collect();
        let same = mmd_permutation(&x, &y, dim, 200, 5);
        assert!(same.p_value > 0.05, "same-distribution p {}", same.p_value);
        let shifted: Vec<f32> = y.iter().map(|v| v + 3.0).collect();
        let r = mmd_permutation(&x, &shifted, dim, 200, 5);
        close(r.p_value, 1.0 / 201.0, 1e-12);
        assert!(r.statistic > same.statistic);
        let none = mmd_permutation(&x, &y, dim, 0, 5);
        assert_eq!((none.p_value, none.permutations), (1.0, 0));
        let mask: Vec<bool> = (0..110).map(|i| i < 60).collect();
        let (kernel, _) = pooled_rbf_kernel(&x, &y, dim, 5);
        close(same.statistic, mmd2_unbiased(&kernel, 110, &mask), 1e-9);
    }

    #[test]
    #[ignore = "timing: cargo test -- --ignored --nocapture"]
    fn mmd_timing_1000_by_1000_dim_384() {
        let mut rng = Rng::new(1);
        let dim = 384;
        let x: Vec<f32> = (0..1000 * dim).map(|_| unit(&mut rng) as f32).collect();
        let y: Vec<f32> = (0..1000 * dim)
            .map(|_| unit(&mut rng) as f32 + 0.01)
            .collect();
        let start = std::time::Instant::now();
        let r = mmd_permutation(&x, &y, dim, 1000, 42);
        eprintln!(
            "mmd 1000+1000 x 384, 1000 permutations: {:?} -> {r:?}",
            start.elapsed()
        );
    }
}
