//! The inference BERT: the same weights as candle-transformers' `BertModel`, run on packed
//! (unpadded) batches with fused steps. A batch's tokens are laid end to end, so the dense
//! layers run on real tokens only and attention runs per sequence with no mask; Q, K and V are
//! one matmul; biases and residuals are folded into the matmul's output; GELU and layer norm are
//! single vectorised passes (`kernels`). The dense layers run in f32 (the `gemm` crate that
//! candle itself uses) or in int8 (`Precision::Int8`: per-channel weight scales, per-token
//! activation scales computed on the fly, exact i32 sums in cqr's own kernel); embeddings,
//! layer norm, softmax and the residual stream stay f32. Training keeps candle (`bert.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{Config, HiddenAct};
use serde::{Deserialize, Serialize};

use super::kernels::{self, Isa};
use crate::error::{Error, Result};

/// How the encoder's dense layers compute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats: the reference.
    #[default]
    F32,
    /// 8-bit integer weights (per output channel) and activations (per token).
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

static PRECISION: std::sync::OnceLock<Precision> = std::sync::OnceLock::new();

/// Sets the process's encoder precision (the global `--precision`), once: models loaded from
/// then on use it instead of their bundle's, and train stores it.
pub fn set_precision(p: Precision) {
    let _ = PRECISION.set(p);
}

/// The precision set by `set_precision`, if any.
pub fn precision_override() -> Option<Precision> {
    PRECISION.get().copied()
}

/// Per-channel int8 weights of one dense layer: `o` rows of `kp` (k padded) values and a scale
/// per row.
pub struct QWeights {
    pub q: Vec<i8>,
    pub scale: Vec<f32>,
    /// The same weights packed for the VNNI kernel, made on first use on a CPU that has it.
    vnni: OnceLock<kernels::VnniWeights>,
}

impl QWeights {
    /// Quantizes row-major `w` (`o × k`, torch's layout: one row per output channel).
    pub fn quantize(w: &[f32], k: usize) -> QWeights {
        let (mut q, mut scale) = (Vec::new(), Vec::new());
        kernels::quantize_rows(
            Isa::detect(),
            w,
            k,
            kernels::padded_k(k),
            &mut q,
            &mut scale,
        );
        QWeights::new(q, scale)
    }

    pub fn new(q: Vec<i8>, scale: Vec<f32>) -> QWeights {
        QWeights {
            q,
            scale,
            vnni: OnceLock::new(),
        }
    }
}

enum Weights {
    /// `k × o`, row-major (the checkpoint's matrix transposed).
    F32(Vec<f32>),
    Int8(QWeights),
}

struct Dense {
    k: usize,
    o: usize,
    bias: Vec<f32>,
    w: Weights,
}

/// Buffers a forward pass reuses.
#[derive(Default)]
struct Scratch {
    q: Vec<i8>,
    scales: Vec<f32>,
    scores: Vec<f32>,
}

impl Dense {
    /// `out = x · Wᵀ + bias (+ residual)` for the `n` rows of `x`.
    fn forward(
        &self,
        isa: Isa,
        x: &[f32],
        out: &mut [f32],
        residual: Option<&[f32]>,
        s: &mut Scratch,
        threads: usize,
    ) {
        let n = x.len() / self.k;
        let out = &mut out[..n * self.o];
        kernels::fill_rows(out, &self.bias, residual);
        match &self.w {
            Weights::F32(w) => kernels::matmul_f32(x, w, out, (n, self.k, self.o), threads),
            Weights::Int8(qw) => {
                let kp = kernels::padded_k(self.k);
                kernels::quantize_rows(isa, x, self.k, kp, &mut s.q, &mut s.scales);
                if isa == Isa::Avx512Vnni {
                    let w = (qw.vnni).get_or_init(|| kernels::VnniWeights::pack(&qw.q, self.o, kp));
                    kernels::matmul_i8_vnni((&s.q, &s.scales), (w, &qw.scale), out);
                } else {
                    kernels::matmul_i8(isa, (&s.q, &s.scales), (&qw.q, &qw.scale), out, kp);
                }
            }
        }
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    qkv: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    intermediate: Dense,
    output: Dense,
    out_norm: Norm,
}

/// The names of a layer's dense weights as stored: the fused QKV and the three others.
pub const DENSE_NAMES: [&str; 4] = ["qkv", "attention_output", "intermediate", "output"];

pub struct Bert {
    word: Vec<f32>,
    position: Vec<f32>,
    /// Every input has token type 0; its embedding row is added once, not gathered per token.
    type0: Vec<f32>,
    norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    eps: f32,
    max_positions: usize,
    pub precision: Precision,
}

/// The checkpoint's tensors by name, as f32.
struct Checkpoint {
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Checkpoint {
    fn get(&self, name: &str, numel: usize) -> std::result::Result<Vec<f32>, String> {
        let full = format!("{}{name}", self.prefix);
        let t = self
            .tensors
            .get(&full)
            .ok_or_else(|| format!("no tensor {full}"))?;
        if t.elem_count() != numel {
            return Err(format!(
                "tensor {full} has shape {:?}, expected {numel} values",
                t.dims()
            ));
        }
        t.to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| format!("tensor {full}: {e}"))
    }
}

fn transpose(w: &[f32], o: usize, k: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for r in 0..o {
        for c in 0..k {
            t[c * o + r] = w[r * k + c];
        }
    }
    t
}

impl Bert {
    /// Loads safetensors weights in candle-transformers' (Hugging Face's) names. With
    /// `Precision::Int8`, `int8` gives the stored quantized weights by layer and `DENSE_NAMES`
    /// entry; without it they are quantized here (the same function makes both).
    pub fn load(
        weights: &Path,
        config: &Config,
        precision: Precision,
        int8: Option<&HashMap<String, QWeights>>,
    ) -> Result<Bert> {
        let err = |e: String| Error::model(weights, format!("encoder: {e}"));
        if !matches!(config.hidden_act, HiddenAct::Gelu) {
            return Err(err(format!(
                "hidden_act {:?} is not supported (only \"gelu\")",
                config.hidden_act
            )));
        }
        let (h, inter) = (config.hidden_size, config.intermediate_size);
        let heads = config.num_attention_heads;
        if heads == 0 || h % heads != 0 {
            return Err(err(format!(
                "hidden size {h} is not a multiple of {heads} heads"
            )));
        }
        let tensors = candle_core::safetensors::load(weights, &Device::Cpu)
            .map_err(|e| err(format!("reading the weights: {e}")))?;
        let prefix = if tensors.contains_key("embeddings.word_embeddings.weight") {
            ""
        } else {
            "bert."
        };
        let ck = Checkpoint { tensors, prefix };
        let norm = |name: &str| -> std::result::Result<Norm, String> {
            Ok(Norm {
                gamma: ck.get(&format!("{name}.weight"), h)?,
                beta: ck.get(&format!("{name}.bias"), h)?,
            })
        };
        let dense = |layer: usize,
                     key: &str,
                     parts: &[&str],
                     k: usize,
                     o_each: usize|
         -> std::result::Result<Dense, String> {
            let o = o_each * parts.len();
            let mut w = Vec::with_capacity(o * k);
            let mut bias = Vec::with_capacity(o);
            for p in parts {
                let base = format!("encoder.layer.{layer}.{p}");
                w.extend(ck.get(&format!("{base}.weight"), o_each * k)?);
                bias.extend(ck.get(&format!("{base}.bias"), o_each)?);
            }
            let w = match precision {
                Precision::F32 => Weights::F32(transpose(&w, o, k)),
                Precision::Int8 => {
                    let name = format!("{layer}.{key}");
                    match int8.and_then(|m| m.get(&name)) {
                        Some(q) => {
                            if q.scale.len() != o || q.q.len() != o * kernels::padded_k(k) {
                                return Err(format!("int8 weights {name} have the wrong shape"));
                            }
                            Weights::Int8(QWeights::new(q.q.clone(), q.scale.clone()))
                        }
                        None if int8.is_some() => {
                            return Err(format!("no int8 weights {name}"));
                        }
                        None => Weights::Int8(QWeights::quantize(&w, k)),
                    }
                }
            };
            Ok(Dense { k, o, bias, w })
        };
        let build = || -> std::result::Result<Bert, String> {
            let types = ck.get(
                "embeddings.token_type_embeddings.weight",
                config.type_vocab_size * h,
            )?;
            let mut layers = Vec::with_capacity(config.num_hidden_layers);
            for i in 0..config.num_hidden_layers {
                layers.push(Layer {
                    qkv: dense(
                        i,
                        DENSE_NAMES[0],
                        &[
                            "attention.self.query",
                            "attention.self.key",
                            "attention.self.value",
                        ],
                        h,
                        h,
                    )?,
                    attn_out: dense(i, DENSE_NAMES[1], &["attention.output.dense"], h, h)?,
                    attn_norm: norm(&format!("encoder.layer.{i}.attention.output.LayerNorm"))?,
                    intermediate: dense(i, DENSE_NAMES[2], &["intermediate.dense"], h, inter)?,
                    output: dense(i, DENSE_NAMES[3], &["output.dense"], inter, h)?,
                    out_norm: norm(&format!("encoder.layer.{i}.output.LayerNorm"))?,
                });
            }
            Ok(Bert {
                word: ck.get("embeddings.word_embeddings.weight", config.vocab_size * h)?,
                position: ck.get(
                    "embeddings.position_embeddings.weight",
                    config.max_position_embeddings * h,
                )?,
                type0: types[..h].to_vec(),
                norm: norm("embeddings.LayerNorm")?,
                layers,
                hidden: h,
                heads,
                eps: config.layer_norm_eps as f32,
                max_positions: config.max_position_embeddings,
                precision,
            })
        };
        build().map_err(err)
    }

    /// The int8 weights by name (`{layer}.{DENSE_NAMES entry}`), for storing in a bundle;
    /// `None` for an f32 model.
    pub fn int8_weights(&self) -> Option<Vec<(String, &QWeights)>> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for (name, d) in
                DENSE_NAMES
                    .iter()
                    .zip([&l.qkv, &l.attn_out, &l.intermediate, &l.output])
            {
                match &d.w {
                    Weights::Int8(q) => out.push((format!("{i}.{name}"), q)),
                    Weights::F32(_) => return None,
                }
            }
        }
        Some(out)
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Sentence embeddings (masked mean pooling, L2-normalised) of a batch of token-id rows,
    /// row-major `[rows.len() × hidden]`. `threads` > 1 lets the f32 matmuls split across the
    /// rayon pool (for a lone batch); batches run side by side use 1.
    pub fn embed(&self, isa: Isa, rows: &[&[u32]], threads: usize) -> Vec<f32> {
        let h = self.hidden;
        let mut seqs = Vec::with_capacity(rows.len());
        let mut n = 0;
        for r in rows {
            let len = r.len().min(self.max_positions);
            seqs.push((n, len));
            n += len;
        }
        let mut pooled = vec![0f32; rows.len() * h];
        if n == 0 {
            return pooled;
        }
        let mut s = Scratch::default();
        let mut x = vec![0f32; n * h];
        for (r, &(first, len)) in rows.iter().zip(&seqs) {
            for (j, &id) in r[..len].iter().enumerate() {
                let word = &self.word[id as usize * h..][..h];
                let pos = &self.position[j * h..][..h];
                let row = &mut x[(first + j) * h..][..h];
                for i in 0..h {
                    row[i] = word[i] + self.type0[i] + pos[i];
                }
            }
        }
        kernels::layer_norm(isa, &mut x, &self.norm.gamma, &self.norm.beta, self.eps);
        let mut qkv = vec![0f32; n * 3 * h];
        let mut ctx = vec![0f32; n * h];
        let mut a = vec![0f32; n * h];
        let inter = self.layers.first().map(|l| l.intermediate.o).unwrap_or(0);
        let mut m = vec![0f32; n * inter];
        for l in &self.layers {
            l.qkv.forward(isa, &x, &mut qkv, None, &mut s, threads);
            kernels::attention(isa, &qkv, &mut ctx, &seqs, (h, self.heads), &mut s.scores);
            l.attn_out
                .forward(isa, &ctx, &mut a, Some(&x), &mut s, threads);
            kernels::layer_norm(isa, &mut a, &l.attn_norm.gamma, &l.attn_norm.beta, self.eps);
            l.intermediate
                .forward(isa, &a, &mut m, None, &mut s, threads);
            kernels::gelu_in_place(isa, &mut m);
            l.output.forward(isa, &m, &mut x, Some(&a), &mut s, threads);
            kernels::layer_norm(isa, &mut x, &l.out_norm.gamma, &l.out_norm.beta, self.eps);
        }
        kernels::mean_pool_l2(&x, h, &seqs, &mut pooled);
        pooled
    }

    /// Checks token ids against the vocabulary (the tokenizer and the weights must agree).
    pub fn vocab_size(&self) -> usize {
        self.word.len() / self.hidden
    }
}
