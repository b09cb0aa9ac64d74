//! The inference encoder's kernels on plain row-major `f32`/`i8` slices: dense layers (f32
//! through the `gemm` crate, int8 through cqr's own kernel), bias + GELU, layer norm, and
//! attention over packed (unpadded) sequences.
//!
//! Every kernel has one body written for the compiler's auto-vectoriser (fixed 8-lane
//! accumulators, no branches in the inner loops) and is compiled twice: once for AVX2 + FMA,
//! chosen at run time, and once for the baseline target as the fallback. Rust never contracts
//! `a * b + c` into an FMA on its own, so both builds do the same IEEE operations in the same
//! order and give bit-identical results; the int8 dot products are exact integer sums on either
//! path. The int8 product has a third path, AVX-512 VNNI (`vpdpbusd`), with the same exact sums.
//! `CQR_SIMD=scalar` forces the fallback and `CQR_SIMD=avx2` the AVX2 path on a VNNI CPU (tests
//! pass each `Isa` directly).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// The instruction set the kernels run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 (F, BW) with VNNI on top of AVX2 and FMA: the int8 product runs on `vpdpbusd`
    /// (64 multiply-adds per instruction); everything else as `Avx2`.
    Avx512Vnni,
    /// AVX2 and FMA (x86-64-v3): 256-bit vectors, `vpmaddubsw` for int8.
    Avx2,
    /// Whatever the baseline target has (SSE2 on x86-64); the reference path.
    Scalar,
}

impl Isa {
    /// The best the CPU offers, unless `CQR_SIMD` (`scalar`, `avx2`) asks for less. Decided
    /// once per process: kernels on hot paths call it.
    pub fn detect() -> Isa {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let asked = std::env::var("CQR_SIMD")
                .unwrap_or_default()
                .to_ascii_lowercase();
            match (asked.as_str(), Isa::available()) {
                ("scalar", _) => Isa::Scalar,
                ("avx2", all) if all.contains(&Isa::Avx2) => Isa::Avx2,
                (_, all) => all[0],
            }
        })
    }

    /// Every instruction set this CPU can run, best first (always ends with `Scalar`).
    pub fn available() -> &'static [Isa] {
        static ALL: OnceLock<Vec<Isa>> = OnceLock::new();
        ALL.get_or_init(|| {
            let mut v = Vec::new();
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
                {
                    v.push(Isa::Avx512Vnni);
                }
                v.push(Isa::Avx2);
            }
            v.push(Isa::Scalar);
            v
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Avx2 => "avx2",
            Isa::Scalar => "scalar",
        }
    }
}

/// Runs `$body` (an expression using only `#[inline(always)]` helpers) compiled for AVX2 + FMA
/// when `$isa` says so, else for the baseline target. (An AVX-512 build of the element-wise
/// kernels was tried for `Avx512Vnni`: no faster, the int8 and f32 products dominate.)
macro_rules! dispatch {
    ($isa:expr, $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if $isa != Isa::Scalar {
                // SAFETY: `Avx2` and `Avx512Vnni` are only chosen when the CPU reports AVX2 and
                // FMA.
                // The closure must be inlined into `avx2` to be compiled for it.
                unsafe {
                    avx2(
                        #[inline(always)]
                        || $body,
                    )
                }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = $isa;
            $body
        }
    }};
}

/// Sum of `a[i] * b[i]` with eight interleaved partial sums (vectorisable without fast-math).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] += x * y;
    }
    hsum(acc)
}

/// Σ x², vectorised.
pub fn sum_squares(isa: Isa, x: &[f32]) -> f32 {
    dispatch!(isa, dot(x, x))
}

/// One AdamW step's coefficients (see [`adamw`]).
#[derive(Debug, Clone, Copy)]
pub struct AdamWCoefficients {
    pub beta1: f32,
    pub beta2: f32,
    /// 1 / (1 − β₁ᵗ) and 1 / (1 − β₂ᵗ): the bias corrections.
    pub scale_m: f32,
    pub scale_v: f32,
    /// 1 − lr·weight decay.
    pub decay: f32,
    pub lr: f32,
    pub eps: f32,
    /// Multiplies each gradient first (gradient clipping).
    pub grad_scale: f32,
}

/// AdamW (as torch and candle_nn compute it) on weights `w` in place, with gradient `g` and
/// first and second moments `m`, `v`, updated in place.
pub fn adamw(
    isa: Isa,
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    c: AdamWCoefficients,
) {
    let n = w.len().min(g.len()).min(m.len()).min(v.len());
    let (w, g, m, v) = (&mut w[..n], &g[..n], &mut m[..n], &mut v[..n]);
    dispatch!(
        isa,
        for (((w, g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g * c.grad_scale;
            *m = c.beta1 * *m + (1.0 - c.beta1) * g;
            *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
            *w = *w * c.decay - c.lr * (*m * c.scale_m) / ((*v * c.scale_v).sqrt() + c.eps);
        }
    )
}

#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut c = a.chunks_exact(8);
    for x in &mut c {
        for l in 0..8 {
            acc[l] += x[l];
        }
    }
    for (l, x) in c.remainder().iter().enumerate() {
        acc[l] += x;
    }
    hsum(acc)
}

#[inline(always)]
fn hsum(acc: [f32; 8]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// `e^x` to about 2 ulp for x in [-87, 88] (exactly 0 below, clamped above): Cody–Waite range
/// reduction and a degree-6 Taylor polynomial on |r| ≤ ln2/2. Branch-free, so it vectorises.
/// Below −87 the answer is 0, not e^−87: a softmax over masked scores then holds exact zeros
/// rather than numbers at the edge of the subnormal range, whose products are subnormal and
/// cost x86 a microcode assist each (that made fine-tuning steps with padding 5–20× slower).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2^23 rounds to an integer and leaves it in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let c = x.clamp(-87.0, 88.0);
    let v = c * LOG2E + MAGIC;
    let n = v - MAGIC;
    let r = (c - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let k = (v.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let y = p * f32::from_bits(((k + 127) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        y
    }
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    erf_given_exp(x, exp(-x * x))
}

/// [`erf`] with its `e^(-x²)` already computed (GELU's gradient needs that factor too).
#[inline(always)]
fn erf_given_exp(x: f32, exp_neg_x2: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let p = 1.061_405_4;
    let p = p * t - 1.453_152;
    let p = p * t + 1.421_413_7;
    let p = p * t - 0.284_496_74;
    let p = p * t + 0.254_829_6;
    let y = 1.0 - p * t * exp_neg_x2;
    y.copysign(x)
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Fills each `width`-wide row of `out` with `bias` (plus the same row of `residual`).
pub fn fill_rows(out: &mut [f32], bias: &[f32], residual: Option<&[f32]>) {
    let w = bias.len();
    match residual {
        Some(res) => out
            .chunks_exact_mut(w)
            .zip(res.chunks_exact(w))
            .for_each(|(o, r)| {
                o.iter_mut()
                    .zip(r.iter().zip(bias))
                    .for_each(|(o, (r, b))| *o = r + b)
            }),
        None => out
            .chunks_exact_mut(w)
            .for_each(|o| o.copy_from_slice(bias)),
    }
}

/// GELU (the erf form BERT uses) in place.
pub fn gelu_in_place(isa: Isa, x: &mut [f32]) {
    dispatch!(isa, x.iter_mut().for_each(|v| *v = gelu(*v)))
}

/// The gradient of [`gelu_in_place`]: `dx = dy · (Φ(x) + x·φ(x))`, with Φ and φ the standard
/// normal's distribution and density, which share one `e^(-x²/2)`.
pub fn gelu_backward(isa: Isa, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let n = x.len().min(dy.len()).min(dx.len());
    let (x, dy, dx) = (&x[..n], &dy[..n], &mut dx[..n]);
    dispatch!(
        isa,
        dx.iter_mut()
            .zip(x.iter().zip(dy))
            .for_each(|(d, (&x, &g))| {
                let e = exp(-0.5 * x * x);
                let cdf = 0.5 * (1.0 + erf_given_exp(x * std::f32::consts::FRAC_1_SQRT_2, e));
                *d = g * (cdf + x * INV_SQRT_2PI * e);
            })
    )
}

/// Layer norm of each `gamma.len()`-wide row in place: biased variance, as torch and candle.
pub fn layer_norm(isa: Isa, x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let h = gamma.len();
    dispatch!(
        isa,
        x.chunks_exact_mut(h).for_each(|row| {
            let mean = sum(row) / h as f32;
            row.iter_mut().for_each(|v| *v -= mean);
            let var = dot(row, row) / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            row.iter_mut()
                .zip(gamma.iter().zip(beta))
                .for_each(|(v, (g, b))| *v = *v * inv * g + b);
        })
    )
}

/// The gradients of [`layer_norm`] given the input rows `x` and the output's gradient `dy`:
/// writes the input's gradient into `dx` and adds the gradients of `gamma` and `beta` (summed
/// over rows) into `dgamma` and `dbeta`. With x̂ = (x − mean)·r, r = 1/√(var + eps):
/// dx = r·(g·dy − mean(g·dy) − x̂·mean(g·dy·x̂)).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    isa: Isa,
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    eps: f32,
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let h = gamma.len();
    dispatch!(isa, {
        let mut xhat = vec![0f32; h];
        let mut g = vec![0f32; h];
        for ((xr, dyr), dxr) in x
            .chunks_exact(h)
            .zip(dy.chunks_exact(h))
            .zip(dx.chunks_exact_mut(h))
        {
            let mean = sum(xr) / h as f32;
            xhat.iter_mut().zip(xr).for_each(|(o, v)| *o = v - mean);
            let inv = 1.0 / (dot(&xhat, &xhat) / h as f32 + eps).sqrt();
            xhat.iter_mut().for_each(|v| *v *= inv);
            g.iter_mut()
                .zip(dyr.iter().zip(gamma))
                .for_each(|(o, (d, w))| *o = d * w);
            let a = sum(&g) / h as f32;
            let b = dot(&g, &xhat) / h as f32;
            for i in 0..h {
                dxr[i] = inv * (g[i] - a - xhat[i] * b);
                dgamma[i] += dyr[i] * xhat[i];
                dbeta[i] += dyr[i];
            }
        }
    })
}

/// Multi-head self-attention over packed sequences. `qkv` holds each token's query, key and
/// value (`3·h` wide, heads contiguous within each); `seqs` are (first row, length) pairs, and
/// a token attends only to its own sequence, so nothing is masked or padded. Writes the
/// context, `h` wide, into `ctx`. `scores` is scratch space.
pub fn attention(
    isa: Isa,
    qkv: &[f32],
    ctx: &mut [f32],
    seqs: &[(usize, usize)],
    (h, heads): (usize, usize),
    scores: &mut Vec<f32>,
) {
    let d = h / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let max_len = seqs.iter().map(|s| s.1).max().unwrap_or(0);
    scores.resize(max_len, 0.0);
    dispatch!(
        isa,
        for &(first, len) in seqs {
            for hd in 0..heads {
                let col = hd * d;
                for i in 0..len {
                    let q = &qkv[(first + i) * 3 * h + col..][..d];
                    let s = &mut scores[..len];
                    let mut max = f32::NEG_INFINITY;
                    for (j, s) in s.iter_mut().enumerate() {
                        let k = &qkv[(first + j) * 3 * h + h + col..][..d];
                        *s = dot(q, k) * scale;
                        max = max.max(*s);
                    }
                    s.iter_mut().for_each(|v| *v = exp(*v - max));
                    let inv = 1.0 / sum(s);
                    let out = &mut ctx[(first + i) * h + col..][..d];
                    out.fill(0.0);
                    for (j, p) in s.iter().enumerate() {
                        let v = &qkv[(first + j) * 3 * h + 2 * h + col..][..d];
                        let p = p * inv;
                        out.iter_mut().zip(v).for_each(|(o, v)| *o += p * v);
                    }
                }
            }
        }
    )
}

/// One padded sequence's multi-head self-attention for training: `q`, `k`, `v` and `ctx` are
/// its `t` rows of `h` (heads contiguous within each); keys from `len` on are padding and get
/// exactly zero weight (query rows from `len` on are computed too, as a masked dense model
/// computes them); `keep` (`[heads, t, t]`) multiplies the attention probabilities: dropout's
/// mask, scaled.
pub fn attention_seq(
    isa: Isa,
    (q, k, v): (&[f32], &[f32], &[f32]),
    ctx: &mut [f32],
    (t, len, h, heads): (usize, usize, usize, usize),
    keep: Option<&[f32]>,
) {
    let d = h / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let mut p = vec![0f32; len];
    ctx[..t * h].fill(0.0);
    if len == 0 {
        return;
    }
    dispatch!(
        isa,
        for hd in 0..heads {
            let col = hd * d;
            for i in 0..t {
                attention_probs(q, k, (i, col, d, h), scale, &mut p);
                let out = &mut ctx[i * h + col..][..d];
                for (j, &pj) in p.iter().enumerate() {
                    let w = keep.map_or(pj, |m| pj * m[(hd * t + i) * t + j]);
                    let v = &v[j * h + col..][..d];
                    out.iter_mut().zip(v).for_each(|(o, v)| *o += w * v);
                }
            }
        }
    )
}

/// The gradients of [`attention_seq`] with respect to its q, k and v, given the gradient of
/// its output `dctx`, into `dq`, `dk`, `dv` (overwritten). The probabilities are recomputed.
#[allow(clippy::too_many_arguments)]
pub fn attention_seq_backward(
    isa: Isa,
    (q, k, v): (&[f32], &[f32], &[f32]),
    dctx: &[f32],
    (t, len, h, heads): (usize, usize, usize, usize),
    keep: Option<&[f32]>,
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let d = h / heads;
    let scale = 1.0 / (d as f32).sqrt();
    for g in [&mut *dq, &mut *dk, &mut *dv] {
        g[..t * h].fill(0.0);
    }
    if len == 0 {
        return;
    }
    let (mut p, mut ds) = (vec![0f32; len], vec![0f32; len]);
    dispatch!(
        isa,
        for hd in 0..heads {
            let col = hd * d;
            for i in 0..t {
                attention_probs(q, k, (i, col, d, h), scale, &mut p);
                let dout = &dctx[i * h + col..][..d];
                // ds_j = p_j·(dp_j − Σ p·dp) with dp_j = keep_ij·(dout·v_j).
                let mut c = 0f32;
                for (j, (&pj, dsj)) in p.iter().zip(ds.iter_mut()).enumerate() {
                    let m = keep.map_or(1.0, |m| m[(hd * t + i) * t + j]);
                    let dp = m * dot(dout, &v[j * h + col..][..d]);
                    let dvj = &mut dv[j * h + col..][..d];
                    let w = pj * m;
                    dvj.iter_mut().zip(dout).for_each(|(a, g)| *a += w * g);
                    *dsj = dp;
                    c += pj * dp;
                }
                let qi = &q[i * h + col..][..d];
                let dqi = &mut dq[i * h + col..][..d];
                for (j, (&pj, dsj)) in p.iter().zip(&ds).enumerate() {
                    let g = pj * (dsj - c) * scale;
                    let kj = &k[j * h + col..][..d];
                    dqi.iter_mut().zip(kj).for_each(|(a, k)| *a += g * k);
                    let dkj = &mut dk[j * h + col..][..d];
                    dkj.iter_mut().zip(qi).for_each(|(a, q)| *a += g * q);
                }
            }
        }
    )
}

/// Softmax over the first `p.len()` keys of query row `i`'s scaled scores in head column
/// `col` (`d` wide, rows `h` apart).
#[inline(always)]
fn attention_probs(
    q: &[f32],
    k: &[f32],
    (i, col, d, h): (usize, usize, usize, usize),
    scale: f32,
    p: &mut [f32],
) {
    let qi = &q[i * h + col..][..d];
    let mut max = f32::NEG_INFINITY;
    for (j, s) in p.iter_mut().enumerate() {
        *s = dot(qi, &k[j * h + col..][..d]) * scale;
        max = max.max(*s);
    }
    p.iter_mut().for_each(|v| *v = exp(*v - max));
    let inv = 1.0 / sum(p);
    p.iter_mut().for_each(|v| *v *= inv);
}

/// Mean of each sequence's rows, L2-normalised: sentence-transformers' pooling.
pub fn mean_pool_l2(x: &[f32], h: usize, seqs: &[(usize, usize)], out: &mut [f32]) {
    for (&(first, len), o) in seqs.iter().zip(out.chunks_exact_mut(h)) {
        o.fill(0.0);
        for r in x[first * h..(first + len) * h].chunks_exact(h) {
            o.iter_mut().zip(r).for_each(|(o, v)| *o += v);
        }
        let n = len.max(1) as f32;
        o.iter_mut().for_each(|v| *v /= n);
        let norm = o.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        o.iter_mut().for_each(|v| *v /= norm);
    }
}

/// `out[n×o] += x[n×k] · w[k×o]` (all row-major), f32 through the `gemm` crate.
pub fn matmul_f32(
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    (n, k, o): (usize, usize, usize),
    threads: usize,
) {
    gemm_f32((x, 1, k), (w, 1, o), out, (n, k, o), true, threads)
}

/// `out[n×o] = x[n×k] · rowsᵀ` (or `+=` with `accumulate`) for `rows` given as `o` rows of
/// `k` (row-major): every dot product of a row of `x` with a row of `rows`, which is also a
/// dense layer with PyTorch's `[out, in]` weight layout.
pub fn matmul_f32_nt(
    x: &[f32],
    rows: &[f32],
    out: &mut [f32],
    (n, k, o): (usize, usize, usize),
    accumulate: bool,
    threads: usize,
) {
    // `rows` read with column stride k and row stride 1 is the k × o matrix rowsᵀ.
    gemm_f32((x, 1, k), (rows, k, 1), out, (n, k, o), accumulate, threads)
}

/// `out[n×o] = aᵀ · b` for `a` stored as `k × n` and `b` as `k × o` (row-major): the weight
/// gradient of a dense layer (output gradients transposed times its inputs).
pub fn matmul_f32_tn(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    (n, k, o): (usize, usize, usize),
    threads: usize,
) {
    // `a` read with column stride n and row stride 1 is the n × k matrix aᵀ.
    gemm_f32((a, n, 1), (b, 1, o), out, (n, k, o), false, threads)
}

/// Every dot product of a row of `x` (`n × k`, row-major) with a row of `rows` (`o × k`,
/// row-major) into `out` (`n × o`), in this thread.
pub fn dot_all(x: &[f32], rows: &[f32], out: &mut [f32], dims: (usize, usize, usize)) {
    matmul_f32_nt(x, rows, out, dims, false, 1)
}

/// Adds each `width`-wide row of `x` into `sums` (`width = sums.len()`): column sums, the bias
/// gradient of a dense layer.
pub fn add_rows(x: &[f32], sums: &mut [f32]) {
    let w = sums.len();
    if w == 0 {
        return;
    }
    for row in x.chunks_exact(w) {
        sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
    }
}

/// A matrix for [`gemm_f32`]: its elements, column stride and row stride.
type Strided<'a> = (&'a [f32], usize, usize);

/// How many elements a `rows × cols` matrix with these strides spans.
fn span(rows: usize, cols: usize, cs: usize, rs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `out = a · b` (or `out += a · b` with `accumulate`) for `a` (`n × k`) and `b` (`k × o`)
/// given with their strides, into row-major `out` (`n × o`), on `threads` rayon threads.
/// Panics when a slice is shorter than its matrix.
fn gemm_f32(
    (a, a_cs, a_rs): Strided<'_>,
    (b, b_cs, b_rs): Strided<'_>,
    out: &mut [f32],
    (n, k, o): (usize, usize, usize),
    accumulate: bool,
    threads: usize,
) {
    assert!(
        a.len() >= span(n, k, a_cs, a_rs)
            && b.len() >= span(k, o, b_cs, b_rs)
            && out.len() >= n * o,
        "gemm: slices shorter than {n}×{k}·{k}×{o}"
    );
    if n == 0 || o == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..n * o].fill(0.0);
        }
        return;
    }
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assert above keeps every strided access within its slice, and `out` is a
    // `&mut` borrow, so it overlaps neither input.
    unsafe {
        gemm::gemm(
            n,
            o,
            k,
            out.as_mut_ptr(),
            1,
            o as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Symmetric int8 quantization of each `k`-wide row of `x` into `kp`-wide rows of `q` (the
/// tail zero): scale = max|x| / 127, values rounded to nearest (ties to even) and kept in
/// [-127, 127] so the AVX2 kernel's sign trick cannot overflow. Returns the scale of each row.
pub fn quantize_rows(
    isa: Isa,
    x: &[f32],
    k: usize,
    kp: usize,
    q: &mut Vec<i8>,
    scales: &mut Vec<f32>,
) {
    let n = x.len().checked_div(k).unwrap_or(0);
    q.clear();
    q.resize(n * kp, 0);
    scales.clear();
    scales.resize(n, 0.0);
    // Vectorised (one call per dense layer, as costly as the int8 product when scalar); every
    // step is exact or the same IEEE operation on each path.
    dispatch!(
        isa,
        for ((row, qr), s) in x
            .chunks_exact(k.max(1))
            .zip(q.chunks_exact_mut(kp.max(1)))
            .zip(scales.iter_mut())
        {
            *s = quantize_row(row, qr);
        }
    )
}

/// One row of [`quantize_rows`]; returns its scale.
#[inline(always)]
fn quantize_row(row: &[f32], q: &mut [i8]) -> f32 {
    let max = max_abs(row);
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = 1.0 / scale;
    for (q, v) in q.iter_mut().zip(row) {
        // Adding 1.5·2^23 rounds to nearest, ties to even, and leaves the integer in the low
        // mantissa bits: read off with integer operations (no libm call, no float-to-int
        // conversion with its range checks).
        let r = (v * inv).clamp(-127.0, 127.0) + 12_582_912.0;
        *q = (r.to_bits() as i32 - 0x4B40_0000) as i8;
    }
    scale
}

/// The largest |x| (0 for an empty slice), in 16 lanes.
#[inline(always)]
fn max_abs(x: &[f32]) -> f32 {
    let mut m = [0f32; 16];
    let chunks = x.chunks_exact(16);
    for v in chunks.remainder() {
        m[0] = m[0].max(v.abs());
    }
    for c in chunks {
        for i in 0..16 {
            m[i] = m[i].max(c[i].abs());
        }
    }
    m.iter().fold(0f32, |a, &b| a.max(b))
}

/// `k` rounded up to the int8 kernel's step (32 bytes).
pub fn padded_k(k: usize) -> usize {
    k.div_ceil(32) * 32
}

/// `out[r][c] += (Σ_k qa[r][k]·qw[c][k]) · sa[r] · sw[c]`: int8 rows of activations (`n × kp`)
/// against int8 rows of weights (`o × kp`, one per output channel), exact i32 sums.
pub fn matmul_i8(
    isa: Isa,
    (qa, sa): (&[i8], &[f32]),
    (qw, sw): (&[i8], &[f32]),
    out: &mut [f32],
    kp: usize,
) {
    let (n, o) = (sa.len(), sw.len());
    assert!(
        kp.is_multiple_of(32) && qa.len() >= n * kp && qw.len() >= o * kp && out.len() >= n * o
    );
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni {
        matmul_i8_vnni((qa, sa), (&VnniWeights::pack(qw, o, kp), sw), out);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 {
        // SAFETY: AVX2 was detected; the assert above bounds every load.
        unsafe { avx2_i8::matmul(qa, sa, qw, sw, out, kp) };
        return;
    }
    let _ = isa;
    for r in 0..n {
        let a = &qa[r * kp..(r + 1) * kp];
        for c in 0..o {
            let w = &qw[c * kp..(c + 1) * kp];
            let acc: i32 = a.iter().zip(w).map(|(&a, &w)| a as i32 * w as i32).sum();
            out[r * o + c] += acc as f32 * (sa[r] * sw[c]);
        }
    }
}

/// int8 weights laid out for `vpdpbusd`: blocks of 16 output channels, each a run of `kp / 4`
/// 64-byte groups holding 4 consecutive k values of each of the 16 channels, so one load feeds
/// 16 channels and no horizontal sums are needed. Activations go in as unsigned (a + 128), so
/// each channel carries `comp = 128 · Σ w`, subtracted from its sum.
pub struct VnniWeights {
    data: Vec<i8>,
    comp: Vec<i32>,
    o: usize,
    kp: usize,
}

impl VnniWeights {
    /// Repacks `o` rows of `kp` int8 weights (the layout of [`quantize_rows`]).
    pub fn pack(qw: &[i8], o: usize, kp: usize) -> VnniWeights {
        let blocks = o.div_ceil(16);
        let mut data = vec![0i8; blocks * 16 * kp];
        let mut comp = vec![0i32; blocks * 16];
        for c in 0..o {
            let row = &qw[c * kp..(c + 1) * kp];
            comp[c] = 128 * row.iter().map(|&v| v as i32).sum::<i32>();
            let (b, l) = (c / 16, c % 16);
            for (g, four) in row.chunks_exact(4).enumerate() {
                let at = (b * (kp / 4) + g) * 64 + l * 4;
                data[at..at + 4].copy_from_slice(four);
            }
        }
        VnniWeights { data, comp, o, kp }
    }
}

/// [`matmul_i8`] on AVX-512 VNNI with weights packed once by [`VnniWeights::pack`]; the same
/// exact i32 sums and the same f32 operations, so the same answers. Call only when
/// `Isa::Avx512Vnni` was detected.
pub fn matmul_i8_vnni((qa, sa): (&[i8], &[f32]), (w, sw): (&VnniWeights, &[f32]), out: &mut [f32]) {
    let (n, o, kp) = (sa.len(), w.o, w.kp);
    assert!(
        kp.is_multiple_of(32)
            && sw.len() == o
            && qa.len() >= n * kp
            && out.len() >= n * o
            && Isa::available()[0] == Isa::Avx512Vnni
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: VNNI, AVX-512 F and BW were detected (asserted); the assert bounds every access.
    unsafe {
        vnni_i8::matmul(qa, sa, w, sw, out)
    };
}

#[cfg(target_arch = "x86_64")]
mod vnni_i8 {
    use super::*;

    /// Activation rows per tile: 8 rows × 2 channel blocks = 16 zmm accumulators.
    const MR: usize = 8;

    /// `R` rows × `B` blocks of 16 channels: i32 sums of (a + 128)·w over all of k.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::needless_range_loop)] // register tiles: indices read clearest
    unsafe fn tile<const R: usize, const B: usize>(
        a: *const u8,
        kp: usize,
        w: *const i8,
        groups: usize,
    ) -> [[__m512i; B]; R] {
        let mut acc = [[_mm512_setzero_si512(); B]; R];
        for g in 0..groups {
            let mut wv = [_mm512_setzero_si512(); B];
            for b in 0..B {
                wv[b] = _mm512_loadu_si512(w.add((b * groups + g) * 64) as *const __m512i);
            }
            for r in 0..R {
                let av = _mm512_set1_epi32((a.add(r * kp + g * 4) as *const i32).read_unaligned());
                for b in 0..B {
                    acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], av, wv[b]);
                }
            }
        }
        acc
    }

    /// out[r][c] += (sum − comp) as f32 · (sa[r] · sw[c]) for the tile's rows and channels.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    unsafe fn store<const R: usize, const B: usize>(
        acc: [[__m512i; B]; R],
        (r0, b0): (usize, usize),
        sa: &[f32],
        sw: &[f32],
        comp: &[i32],
        out: &mut [f32],
        o: usize,
    ) {
        for b in 0..B {
            let c0 = (b0 + b) * 16;
            let m: __mmask16 = if o - c0 >= 16 {
                0xffff
            } else {
                (1u16 << (o - c0)) - 1
            };
            let cv = _mm512_loadu_si512(comp.as_ptr().add(c0) as *const __m512i);
            let swv = _mm512_maskz_loadu_ps(m, sw.as_ptr().add(c0));
            for r in 0..R {
                let d = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][b], cv));
                let scale = _mm512_mul_ps(_mm512_set1_ps(sa[r0 + r]), swv);
                let p = out.as_mut_ptr().add((r0 + r) * o + c0);
                let v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, p), _mm512_mul_ps(d, scale));
                _mm512_mask_storeu_ps(p, m, v);
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn rows<const R: usize>(
        au: &[u8],
        sa: &[f32],
        w: &VnniWeights,
        sw: &[f32],
        out: &mut [f32],
        r0: usize,
    ) {
        let (o, kp, groups) = (w.o, w.kp, w.kp / 4);
        let blocks = o.div_ceil(16);
        let a = au.as_ptr().add(r0 * kp);
        let mut b = 0;
        while b + 2 <= blocks {
            let acc = tile::<R, 2>(a, kp, w.data.as_ptr().add(b * groups * 64), groups);
            store::<R, 2>(acc, (r0, b), sa, sw, &w.comp, out, o);
            b += 2;
        }
        if b < blocks {
            let acc = tile::<R, 1>(a, kp, w.data.as_ptr().add(b * groups * 64), groups);
            store::<R, 1>(acc, (r0, b), sa, sw, &w.comp, out, o);
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn matmul(qa: &[i8], sa: &[f32], w: &VnniWeights, sw: &[f32], out: &mut [f32]) {
        let (n, kp) = (sa.len(), w.kp);
        // a + 128 as unsigned: flipping the sign bit.
        let au: Vec<u8> = qa[..n * kp].iter().map(|&v| (v as u8) ^ 0x80).collect();
        let mut r = 0;
        while r + MR <= n {
            rows::<MR>(&au, sa, w, sw, out, r);
            r += MR;
        }
        while r < n {
            rows::<1>(&au, sa, w, sw, out, r);
            r += 1;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2_i8 {
    use super::*;

    /// Rows of activations taken together: 4 rows × 2 channels = 8 accumulators, which with
    /// the operands fits the 16 ymm registers.
    const MR: usize = 4;
    /// Activation rows per block, chosen so a block of 1536-wide rows stays in L2.
    const ROWS_PER_BLOCK: usize = 64;

    #[target_feature(enable = "avx2")]
    unsafe fn hsum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// i32 dot products of `R` activation rows with `C` weight rows, 32 bytes per step. The
    /// sign trick: |a| (unsigned) times w with a's sign moved onto it, so `vpmaddubsw`'s pair
    /// sums stay within i16 (2 · 127 · 127 < 32767), then `vpmaddwd` widens to i32.
    #[target_feature(enable = "avx2")]
    unsafe fn tile<const R: usize, const C: usize>(
        a: [*const i8; R],
        w: [*const i8; C],
        kp: usize,
    ) -> [[i32; C]; R] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); C]; R];
        let mut k = 0;
        while k < kp {
            let mut wv = [_mm256_setzero_si256(); C];
            for c in 0..C {
                wv[c] = _mm256_loadu_si256(w[c].add(k) as *const __m256i);
            }
            for r in 0..R {
                let av = _mm256_loadu_si256(a[r].add(k) as *const __m256i);
                let abs = _mm256_sign_epi8(av, av);
                for c in 0..C {
                    let sw = _mm256_sign_epi8(wv[c], av);
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(abs, sw), ones);
                    acc[r][c] = _mm256_add_epi32(acc[r][c], p);
                }
            }
            k += 32;
        }
        let mut out = [[0i32; C]; R];
        for r in 0..R {
            for c in 0..C {
                out[r][c] = hsum(acc[r][c]);
            }
        }
        out
    }

    #[target_feature(enable = "avx2")]
    unsafe fn block<const R: usize>(
        qa: &[i8],
        sa: &[f32],
        qw: &[i8],
        sw: &[f32],
        out: &mut [f32],
        kp: usize,
        r0: usize,
    ) {
        let o = sw.len();
        let a: [*const i8; R] = std::array::from_fn(|i| qa.as_ptr().add((r0 + i) * kp));
        let mut c = 0;
        while c + 2 <= o {
            let w = [qw.as_ptr().add(c * kp), qw.as_ptr().add((c + 1) * kp)];
            let d = tile::<R, 2>(a, w, kp);
            for i in 0..R {
                for j in 0..2 {
                    out[(r0 + i) * o + c + j] += d[i][j] as f32 * (sa[r0 + i] * sw[c + j]);
                }
            }
            c += 2;
        }
        if c < o {
            let d = tile::<R, 1>(a, [qw.as_ptr().add(c * kp)], kp);
            for i in 0..R {
                out[(r0 + i) * o + c] += d[i][0] as f32 * (sa[r0 + i] * sw[c]);
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn matmul(qa: &[i8], sa: &[f32], qw: &[i8], sw: &[f32], out: &mut [f32], kp: usize) {
        let n = sa.len();
        let mut b0 = 0;
        while b0 < n {
            let b1 = (b0 + ROWS_PER_BLOCK).min(n);
            let mut r = b0;
            while r + MR <= b1 {
                block::<MR>(qa, sa, qw, sw, out, kp, r);
                r += MR;
            }
            while r < b1 {
                block::<1>(qa, sa, qw, sw, out, kp, r);
                r += 1;
            }
            b0 = b1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_are_accurate() {
        for i in -8000..=8000 {
            let x = i as f32 / 100.0;
            let e = exp(x) as f64;
            let want = (x as f64).exp();
            assert!(
                ((e - want) / want).abs() < 3e-7,
                "exp({x}) = {e}, want {want}"
            );
        }
        assert!(exp(-87.0) > 0.0);
        assert_eq!(exp(-87.01), 0.0);
        assert_eq!(exp(-1e4), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        for i in -600..=600 {
            let x = i as f32 / 100.0;
            // erf reference from the series/continued fraction in f64 (libm has none in std).
            let want = erf_f64(x as f64);
            assert!((erf(x) as f64 - want).abs() < 3e-7, "erf({x})");
        }
    }

    fn erf_f64(x: f64) -> f64 {
        // Maclaurin series: its largest term is below 1e7 for |x| ≤ 4, so f64 keeps ~1e-9;
        // beyond 4, erf is within 1.6e-8 of ±1.
        if x.abs() > 4.0 {
            return x.signum();
        }
        let mut term = x;
        let mut s = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            s += term / (2 * n + 1) as f64;
        }
        s * 2.0 / std::f64::consts::PI.sqrt()
    }
}
