//! A trainable BERT encoder for fine-tuning, with the checkpoint's own weight names so it loads
//! and saves the same safetensors files as candle-transformers' inference model. It exists
//! because the stock model cannot be trained: its fused layer norm has no backward pass (the
//! graph is cut without an error) and its dropout does nothing. Here layer norm is the
//! differentiable `layer_norm_slow`, softmax is built from primitive ops, and dropout masks come
//! from cqr's seeded RNG so a fine-tune is reproducible. Inference stays in `encoder.rs`.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::bert::Config;

use crate::util::Rng;

type CResult<T> = candle_core::Result<T>;

/// Dropout switched on: the probability and the RNG that draws the masks.
pub struct Dropout<'a> {
    pub p: f32,
    pub rng: &'a mut Rng,
}

/// Inverted dropout with a mask from `drop`; the identity when `drop` is `None` (evaluation).
pub fn dropout(x: &Tensor, drop: &mut Option<Dropout<'_>>) -> CResult<Tensor> {
    let Some(d) = drop else {
        return Ok(x.clone());
    };
    if d.p <= 0.0 {
        return Ok(x.clone());
    }
    let m = Tensor::from_vec(
        super::heads::mask(d.rng, x.elem_count(), d.p),
        x.shape(),
        x.device(),
    )?;
    x * m
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
        candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps)
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
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    heads: usize,
}

impl Layer {
    fn load(vb: VarBuilder, c: &Config) -> CResult<Layer> {
        let h = c.hidden_size;
        let att = vb.pp("attention");
        Ok(Layer {
            query: candle_nn::linear(h, h, att.pp("self").pp("query"))?,
            key: candle_nn::linear(h, h, att.pp("self").pp("key"))?,
            value: candle_nn::linear(h, h, att.pp("self").pp("value"))?,
            attn_out: candle_nn::linear(h, h, att.pp("output").pp("dense"))?,
            attn_norm: LayerNorm::load(att.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
            intermediate: candle_nn::linear(
                h,
                c.intermediate_size,
                vb.pp("intermediate").pp("dense"),
            )?,
            output: candle_nn::linear(c.intermediate_size, h, vb.pp("output").pp("dense"))?,
            out_norm: LayerNorm::load(vb.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
            heads: c.num_attention_heads,
        })
    }

    /// `bias` is the additive attention mask, `[b, 1, 1, t]`.
    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        drop: &mut Option<Dropout<'_>>,
    ) -> CResult<Tensor> {
        let (b, t, h) = x.dims3()?;
        let d = h / self.heads;
        let split = |y: Tensor| -> CResult<Tensor> {
            y.reshape((b, t, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?.contiguous()?)? / (d as f64).sqrt())?.broadcast_add(bias)?;
        let probs = dropout(&candle_nn::ops::softmax(&scores, D::Minus1)?, drop)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, h))?;
        let a = dropout(&self.attn_out.forward(&ctx)?, drop)?;
        let a = self.attn_norm.forward(&(a + x)?)?;
        let m = self.intermediate.forward(&a)?.gelu_erf()?;
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

    /// Hidden states `[b, t, hidden]`; `mask` is `[b, t]` of 0/1 (u32).
    pub fn forward(
        &self,
        ids: &Tensor,
        types: &Tensor,
        mask: &Tensor,
        drop: &mut Option<Dropout<'_>>,
    ) -> CResult<Tensor> {
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 10_000.0)?
            .unsqueeze(1)?
            .unsqueeze(1)?;
        let mut x = self.embeddings.forward(ids, types, drop)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, drop)?;
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
