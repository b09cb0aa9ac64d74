//! A trainable BERT encoder for fine-tuning, with the checkpoint's own weight names so it loads
//! and saves the same safetensors files as candle-transformers' inference model. It exists
//! because the stock model cannot be trained: its fused layer norm has no backward pass (the
//! graph is cut without an error) and its dropout does nothing. Here the dense layers, attention,
//! layer norm and GELU are custom ops with their backward passes written out (checked against
//! candle's own ops and finite differences in tests/kernels.rs), and dropout masks come from
//! cqr's seeded RNG so a fine-tune is reproducible. Inference stays in `encoder.rs`.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout, Shape, Storage, Tensor,
};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;
use rayon::prelude::*;

use super::kernels::{self, Isa};
use crate::util::Rng;

type CResult<T> = candle_core::Result<T>;

/// Dropout switched on: the probability and the RNG that draws the masks.
pub struct Dropout<'a> {
    pub p: f32,
    pub rng: &'a mut Rng,
}

/// Inverted dropout with a mask from `drop`; the identity when `drop` is `None` (evaluation).
pub fn dropout(x: &Tensor, drop: &mut Option<Dropout<'_>>) -> CResult<Tensor> {
    match dropout_mask(drop, x.elem_count()) {
        Some(m) => x * Tensor::from_vec(m, x.shape(), x.device())?,
        None => Ok(x.clone()),
    }
}

/// The next `n` values of inverted-dropout mask (`0` or `1/(1-p)`), or `None` when dropout is
/// off.
fn dropout_mask(drop: &mut Option<Dropout<'_>>, n: usize) -> Option<Vec<f32>> {
    match drop {
        Some(d) if d.p > 0.0 => Some(super::heads::mask(d.rng, n, d.p)),
        _ => None,
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> CResult<LayerNorm> {
        Ok(LayerNorm {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        x.contiguous()?
            .apply_op3(&self.weight, &self.bias, FusedLayerNorm { eps: self.eps })
    }
}

/// The contiguous f32 data of a custom op's argument.
fn f32_data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> CResult<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what}: only f32 is supported")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// The contiguous f32 data of a ternary op's three arguments, named in errors by `names`.
fn f32_args<'a>(
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
    (s3, l3): (&'a CpuStorage, &Layout),
    names: [&str; 3],
) -> CResult<(&'a [f32], &'a [f32], &'a [f32])> {
    Ok((
        f32_data(s1, l1, names[0])?,
        f32_data(s2, l2, names[1])?,
        f32_data(s3, l3, names[2])?,
    ))
}

/// Layer norm over the last dimension in one pass (`kernels::layer_norm`), with its backward
/// pass written out (`kernels::layer_norm_backward`) instead of differentiated through the
/// nine tensor ops of `layer_norm_slow`. Arguments: x, gamma, beta.
pub struct FusedLayerNorm {
    pub eps: f32,
}

impl CustomOp3 for FusedLayerNorm {
    fn name(&self) -> &'static str {
        "cqr-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (x, g, b) = f32_args((s1, l1), (s2, l2), (s3, l3), ["x", "gamma", "beta"])?;
        if l1.dims().last() != Some(&g.len()) || b.len() != g.len() {
            candle_core::bail!(
                "layer norm: x {:?}, gamma {}, beta {}",
                l1.dims(),
                g.len(),
                b.len()
            );
        }
        let mut out = x.to_vec();
        kernels::layer_norm(Isa::detect(), &mut out, g, b, self.eps);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = gamma.elem_count();
        let n = x.elem_count() / h.max(1);
        let all =
            x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &LayerNormGrad { eps: self.eps })?;
        Ok((
            Some(all.narrow(0, 0, n)?.reshape(x.shape())?),
            Some(all.get(n)?),
            Some(all.get(n + 1)?),
        ))
    }
}

/// The gradients of [`FusedLayerNorm`] from (x, gamma, output gradient): `[n + 2, h]`, the
/// input's gradient in the first n rows, gamma's and beta's in the last two.
struct LayerNormGrad {
    eps: f32,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "cqr-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (x, g, dy) = f32_args((s1, l1), (s2, l2), (s3, l3), ["x", "gamma", "gradient"])?;
        let h = g.len();
        if h == 0 || x.len() != dy.len() || x.len() % h != 0 {
            candle_core::bail!(
                "layer norm backward: x {}, gamma {h}, gradient {}",
                x.len(),
                dy.len()
            );
        }
        let n = x.len() / h;
        let mut out = vec![0f32; (n + 2) * h];
        let (dx, rest) = out.split_at_mut(n * h);
        let (dg, db) = rest.split_at_mut(h);
        kernels::layer_norm_backward(Isa::detect(), x, g, dy, self.eps, dx, dg, db);
        Ok((CpuStorage::F32(out), Shape::from((n + 2, h))))
    }
}

/// GELU (erf form) in one vectorised pass (`kernels::gelu_in_place`), with its backward pass
/// in one more (`kernels::gelu_backward`) instead of candle's scalar `gelu_erf` and the eleven
/// tensor ops of its gradient.
pub struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "cqr-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let mut out = f32_data(s, l, "gelu input")?.to_vec();
        kernels::gelu_in_place(Isa::detect(), &mut out);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        Ok(Some(
            x.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &GeluGrad)?,
        ))
    }
}

/// The gradient of [`Gelu`] from (x, output gradient).
struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "cqr-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (x, dy) = (f32_data(s1, l1, "x")?, f32_data(s2, l2, "gradient")?);
        if x.len() != dy.len() {
            candle_core::bail!("gelu backward: x {}, gradient {}", x.len(), dy.len());
        }
        let mut dx = vec![0f32; x.len()];
        kernels::gelu_backward(Isa::detect(), x, dy, &mut dx);
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// A dense layer `y = x·wᵀ + b` with the checkpoint's `[out, in]` weight.
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> CResult<Dense> {
        Ok(Dense {
            weight: vb.get((outputs, inputs), "weight")?,
            bias: vb.get(outputs, "bias")?,
        })
    }

    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        x.contiguous()?.apply_op3(&self.weight, &self.bias, DenseOp)
    }
}

/// A dense layer as one op (arguments x, w, b): the forward pass one gemm onto the bias, the
/// backward pass two gemms and a column sum. candle's `Linear` is a graph of transpose,
/// reshape, matmul, broadcast and add, and candle's backprop gives each node's gradient a
/// fresh zeroed buffer plus an extra pass, and sums the bias gradient with a strided
/// reduction: together a third of a fine-tune step.
pub struct DenseOp;

/// The (tokens, inputs, outputs) of a dense layer from the shapes of x and w.
fn dense_dims(x: &Layout, w: &Layout) -> CResult<(usize, usize, usize)> {
    let (&[o, k], Some(&xk)) = (w.dims(), x.dims().last()) else {
        candle_core::bail!("dense layer: weight {:?}", w.dims())
    };
    if xk != k {
        candle_core::bail!("dense layer: x {:?}, weight {:?}", x.dims(), w.dims())
    }
    Ok((x.shape().elem_count() / k.max(1), k, o))
}

impl CustomOp3 for DenseOp {
    fn name(&self) -> &'static str {
        "cqr-dense"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (x, w, b) = f32_args((s1, l1), (s2, l2), (s3, l3), ["x", "weight", "bias"])?;
        let (n, k, o) = dense_dims(l1, l2)?;
        if b.len() != o {
            candle_core::bail!("dense layer: bias {} for {o} outputs", b.len())
        }
        // Every row starts as the bias; the product is added onto it.
        let mut out = b.repeat(n);
        kernels::matmul_f32_nt(
            x,
            w,
            &mut out,
            (n, k, o),
            true,
            rayon::current_num_threads(),
        );
        let mut dims = l1.dims().to_vec();
        *dims.last_mut().expect("x has a last dimension") = o;
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, k, o) = dense_dims(x.layout(), w.layout())?;
        let all = x.apply_op3_no_bwd(w, &grad.contiguous()?, &DenseGrad)?;
        Ok((
            Some(all.narrow(0, 0, n * k)?.reshape(x.shape())?),
            Some(all.narrow(0, n * k, o * k)?.reshape(w.shape())?),
            Some(all.narrow(0, n * k + o * k, o)?),
        ))
    }
}

/// The gradients of [`DenseOp`] from (x, w, output gradient), flat: x's (dy·w), then w's
/// (dyᵀ·x), then b's (the column sums of dy).
struct DenseGrad;

impl CustomOp3 for DenseGrad {
    fn name(&self) -> &'static str {
        "cqr-dense-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (x, w, dy) = f32_args((s1, l1), (s2, l2), (s3, l3), ["x", "weight", "gradient"])?;
        let (n, k, o) = dense_dims(l1, l2)?;
        if dy.len() != n * o {
            candle_core::bail!("dense layer backward: gradient {} for {n} × {o}", dy.len())
        }
        let threads = rayon::current_num_threads();
        let mut out = vec![0f32; n * k + o * k + o];
        let (dx, rest) = out.split_at_mut(n * k);
        let (dw, db) = rest.split_at_mut(o * k);
        kernels::matmul_f32(dy, w, dx, (n, o, k), threads);
        kernels::matmul_f32_tn(dy, x, dw, (o, n, k), threads);
        kernels::add_rows(dy, db);
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// Multi-head self-attention of a padded batch as one op (arguments q, k, v, each `[b, t, h]`;
/// output the context `[b, t, h]`, heads merged): keys past each row's length get zero weight,
/// `keep` is the dropout mask of the attention probabilities (`[b, heads, t, t]`). Forward and
/// backward are `kernels::attention_seq` and its gradient, one sequence per task. As candle
/// ops this was some fifteen graph nodes per layer (head split and merge copies, batched
/// matmuls, scale, mask, softmax, dropout), each costing the backward pass a zeroed buffer and
/// an extra add.
pub struct Attention {
    pub heads: usize,
    /// Each row's length (real tokens, the rest padding).
    pub lens: Vec<usize>,
    pub keep: Option<Vec<f32>>,
}

impl Attention {
    /// (b, t, h) of the arguments, checked against the lengths, heads and mask.
    fn dims(&self, l: &Layout) -> CResult<(usize, usize, usize)> {
        let &[b, t, h] = l.dims() else {
            candle_core::bail!("attention: q {:?} is not [batch, tokens, hidden]", l.dims())
        };
        let keep_ok = self
            .keep
            .as_ref()
            .is_none_or(|k| k.len() == b * self.heads * t * t);
        if self.heads == 0
            || h % self.heads != 0
            || self.lens.len() != b
            || self.lens.iter().any(|&n| n > t)
            || !keep_ok
        {
            candle_core::bail!(
                "attention: [{b}, {t}, {h}] with {} heads, {} lengths",
                self.heads,
                self.lens.len()
            )
        }
        Ok((b, t, h))
    }

    /// Row `i`'s slice of the dropout mask.
    fn keep_of(&self, i: usize, t: usize) -> Option<&[f32]> {
        let n = self.heads * t * t;
        self.keep.as_ref().map(|k| &k[i * n..(i + 1) * n])
    }
}

/// The contiguous f32 data of a tensor on the CPU.
pub(crate) fn cpu_f32<'a>(s: &'a Storage, l: &Layout, what: &str) -> CResult<&'a [f32]> {
    match s {
        Storage::Cpu(c) => f32_data(c, l, what),
        _ => candle_core::bail!("{what}: only the CPU is supported"),
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "cqr-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (b, t, h) = self.dims(l1)?;
        let (q, k, v) = f32_args((s1, l1), (s2, l2), (s3, l3), ["q", "k", "v"])?;
        if k.len() != q.len() || v.len() != q.len() {
            candle_core::bail!(
                "attention: q, k, v of {}, {}, {}",
                q.len(),
                k.len(),
                v.len()
            )
        }
        let th = t * h;
        let mut ctx = vec![0f32; b * th];
        let isa = Isa::detect();
        ctx.par_chunks_mut(th.max(1))
            .enumerate()
            .for_each(|(i, c)| {
                let r = i * th..(i + 1) * th;
                kernels::attention_seq(
                    isa,
                    (&q[r.clone()], &k[r.clone()], &v[r]),
                    c,
                    (t, self.lens[i], h, self.heads),
                    self.keep_of(i, t),
                )
            });
        Ok((CpuStorage::F32(ctx), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, h) = self.dims(q.layout())?;
        let grad = grad.contiguous()?;
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (qd, kd, vd, dy) = (
            cpu_f32(&qs, ql, "q")?,
            cpu_f32(&ks, kl, "k")?,
            cpu_f32(&vs, vl, "v")?,
            cpu_f32(&gs, gl, "gradient")?,
        );
        let th = t * h;
        if [kd.len(), vd.len(), dy.len()]
            .iter()
            .any(|&n| n != qd.len())
        {
            candle_core::bail!("attention backward: mismatched sizes")
        }
        let (mut dq, mut dk, mut dv) = (vec![0f32; b * th], vec![0f32; b * th], vec![0f32; b * th]);
        let isa = Isa::detect();
        dq.par_chunks_mut(th.max(1))
            .zip(dk.par_chunks_mut(th.max(1)))
            .zip(dv.par_chunks_mut(th.max(1)))
            .enumerate()
            .for_each(|(i, ((dq, dk), dv))| {
                let r = i * th..(i + 1) * th;
                kernels::attention_seq_backward(
                    isa,
                    (&qd[r.clone()], &kd[r.clone()], &vd[r.clone()]),
                    &dy[r],
                    (t, self.lens[i], h, self.heads),
                    self.keep_of(i, t),
                    (dq, dk, dv),
                )
            });
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, (b, t, h), dev)?),
            Some(Tensor::from_vec(dk, (b, t, h), dev)?),
            Some(Tensor::from_vec(dv, (b, t, h), dev)?),
        ))
    }
}

struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
    freeze_words: bool,
}

impl Embeddings {
    fn load(vb: VarBuilder, c: &Config, freeze_words: bool) -> CResult<Embeddings> {
        Ok(Embeddings {
            word: vb
                .pp("word_embeddings")
                .get((c.vocab_size, c.hidden_size), "weight")?,
            position: vb
                .pp("position_embeddings")
                .get((c.max_position_embeddings, c.hidden_size), "weight")?,
            token_type: vb
                .pp("token_type_embeddings")
                .get((c.type_vocab_size, c.hidden_size), "weight")?,
            norm: LayerNorm::load(vb.pp("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
            freeze_words,
        })
    }

    fn forward(
        &self,
        ids: &Tensor,
        types: &Tensor,
        drop: &mut Option<Dropout<'_>>,
    ) -> CResult<Tensor> {
        let (b, t) = ids.dims2()?;
        let h = self.word.dim(1)?;
        // A frozen vocabulary skips its dense 30k-row gradient, the costliest part of a step.
        let word = if self.freeze_words {
            self.word.detach()
        } else {
            self.word.clone()
        };
        let w = word
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, h))?;
        let ty = self
            .token_type
            .index_select(&types.flatten_all()?, 0)?
            .reshape((b, t, h))?;
        let pos = self.position.narrow(0, 0, t)?.unsqueeze(0)?;
        let x = w.add(&ty)?.broadcast_add(&pos)?;
        dropout(&self.norm.forward(&x)?, drop)
    }
}

struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    out_norm: LayerNorm,
    heads: usize,
}

impl Layer {
    fn load(vb: VarBuilder, c: &Config) -> CResult<Layer> {
        let h = c.hidden_size;
        let att = vb.pp("attention");
        Ok(Layer {
            query: Dense::load(att.pp("self").pp("query"), h, h)?,
            key: Dense::load(att.pp("self").pp("key"), h, h)?,
            value: Dense::load(att.pp("self").pp("value"), h, h)?,
            attn_out: Dense::load(att.pp("output").pp("dense"), h, h)?,
            attn_norm: LayerNorm::load(att.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
            intermediate: Dense::load(vb.pp("intermediate").pp("dense"), h, c.intermediate_size)?,
            output: Dense::load(vb.pp("output").pp("dense"), c.intermediate_size, h)?,
            out_norm: LayerNorm::load(vb.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
            heads: c.num_attention_heads,
        })
    }

    /// `lens` are the rows' lengths (real tokens; the rest is padding).
    fn forward(
        &self,
        x: &Tensor,
        lens: &[usize],
        drop: &mut Option<Dropout<'_>>,
    ) -> CResult<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (q, k, v) = (
            self.query.forward(x)?,
            self.key.forward(x)?,
            self.value.forward(x)?,
        );
        let attention = Attention {
            heads: self.heads,
            lens: lens.to_vec(),
            keep: dropout_mask(drop, b * self.heads * t * t),
        };
        let ctx = q.apply_op3(&k, &v, attention)?;
        let a = dropout(&self.attn_out.forward(&ctx)?, drop)?;
        let a = self.attn_norm.forward(&(a + x)?)?;
        let m = self.intermediate.forward(&a)?.apply_op1(Gelu)?;
        let o = dropout(&self.output.forward(&m)?, drop)?;
        self.out_norm.forward(&(o + a)?)
    }
}

/// BERT without the pooler: token ids → hidden states.
pub struct TrainableBert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl TrainableBert {
    /// Builds the model on `vb`'s variables (a `VarMap` builder for training; load the
    /// checkpoint into the map afterwards).
    pub fn load(vb: VarBuilder, c: &Config, freeze_words: bool) -> CResult<TrainableBert> {
        let embeddings = Embeddings::load(vb.pp("embeddings"), c, freeze_words)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), c))
            .collect::<CResult<Vec<_>>>()?;
        Ok(TrainableBert { embeddings, layers })
    }

    /// Hidden states `[b, t, hidden]`; `mask` is `[b, t]` of 0/1 (u32), each row its tokens
    /// then padding, as [`pad_batch`] makes it (anything else is an error).
    pub fn forward(
        &self,
        ids: &Tensor,
        types: &Tensor,
        mask: &Tensor,
        drop: &mut Option<Dropout<'_>>,
    ) -> CResult<Tensor> {
        let mut lens = Vec::new();
        for (i, row) in mask.to_vec2::<u32>()?.iter().enumerate() {
            let len = row.iter().take_while(|&&m| m != 0).count();
            if row[len..].iter().any(|&m| m != 0) {
                candle_core::bail!("attention mask row {i}: padding before the last token")
            }
            lens.push(len);
        }
        let mut x = self.embeddings.forward(ids, types, drop)?;
        for layer in &self.layers {
            x = layer.forward(&x, &lens, drop)?;
        }
        Ok(x)
    }

    /// L2-normalised masked mean of the hidden states, as sentence-transformers pools.
    pub fn sentence_embedding(
        &self,
        ids: &Tensor,
        types: &Tensor,
        mask: &Tensor,
        drop: &mut Option<Dropout<'_>>,
    ) -> CResult<Tensor> {
        mean_pool_l2(&self.forward(ids, types, mask, drop)?, mask)
    }
}

/// Masked mean of hidden states `[b, t, h]` over the tokens where `mask` (`[b, t]`, 0/1) is 1,
/// L2-normalised per row: sentence-transformers' pooling.
pub fn mean_pool_l2(hidden: &Tensor, mask: &Tensor) -> CResult<Tensor> {
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    mean.broadcast_div(&norm)
}

/// Token ids, type ids and mask of a batch, padded to its longest row.
pub fn pad_batch(rows: &[&[u32]], dev: &Device) -> CResult<(Tensor, Tensor, Tensor)> {
    let t = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
    let b = rows.len();
    let mut ids = vec![0u32; b * t];
    let mut mask = vec![0u32; b * t];
    for (i, r) in rows.iter().enumerate() {
        ids[i * t..i * t + r.len()].copy_from_slice(r);
        mask[i * t..i * t + r.len()].iter_mut().for_each(|m| *m = 1);
    }
    Ok((
        Tensor::from_vec(ids, (b, t), dev)?,
        Tensor::zeros((b, t), DType::U32, dev)?,
        Tensor::from_vec(mask, (b, t), dev)?,
    ))
}
