//! Fine-tuning the sentence encoder on labelled queries (`cqr train --fine-tune`): the trainable
//! BERT of `bert.rs` with the pooled, L2-normalised embedding feeding a linear head, by default
//! warm-started from the logistic head fitted on the frozen encoder (on BANKING77 a zero head
//! reached 66% validation accuracy after one epoch where the warm start kept 91%). AdamW with linear warm-up and decay, global gradient-norm clipping,
//! batches of similar length, seeded dropout, and early stopping on validation accuracy. The
//! result is a sentence-transformers folder (config, tokenizer, fine-tuned safetensors) in a
//! scratch directory that the caller loads like any encoder and that removes itself when dropped.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{ParamsAdamW, VarBuilder, VarMap};
use candle_transformers::models::bert::Config;
use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationParams, TruncationStrategy};

use super::bert::{pad_batch, Dropout, TrainableBert};
use super::kernels::{self, AdamWCoefficients, Isa};
use crate::error::{Error, Result};
use crate::io::atomic::TempDir;
use crate::util::Rng;

/// Fine-tuning settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneParams {
    pub epochs: usize,
    /// Peak learning rate of the encoder, reached after warm-up.
    pub lr: f64,
    /// Peak learning rate of the classification head (fresh weights need larger steps).
    pub head_lr: f64,
    /// Start the head from the logistic head fitted on the frozen encoder instead of zeros.
    pub warm_start: bool,
    /// Share of all steps spent warming up.
    pub warmup: f64,
    pub batch: usize,
    pub max_len: usize,
    pub weight_decay: f64,
    /// Global gradient-norm ceiling.
    pub clip: f64,
    pub dropout: f32,
    /// Epochs without a better validation accuracy before stopping.
    pub patience: usize,
    /// Keep the word-embedding table fixed: its gradient is a dense 30k-row matrix per step.
    pub freeze_words: bool,
    pub seed: u64,
}

/// A fine-tuning setting, to name the one that breaks a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FineTuneParam {
    Epochs,
    Lr,
    HeadLr,
    Warmup,
    Batch,
    MaxLen,
    Dropout,
}

impl std::fmt::Display for FineTuneParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FineTuneParam::Epochs => "epochs",
            FineTuneParam::Lr => "fine_tune_lr",
            FineTuneParam::HeadLr => "fine_tune_head_lr",
            FineTuneParam::Warmup => "warm-up share",
            FineTuneParam::Batch => "fine_tune_batch",
            FineTuneParam::MaxLen => "fine_tune_max_len",
            FineTuneParam::Dropout => "dropout",
        })
    }
}

impl FineTuneParams {
    /// The first setting that breaks its rule, and the rule. Defaults live in
    /// `settings::defaults`; the rules live here.
    pub fn broken_rule(&self) -> Option<(FineTuneParam, &'static str)> {
        let positive = |x: f64| x > 0.0 && x.is_finite();
        let rules = [
            (
                FineTuneParam::Epochs,
                self.epochs >= 1,
                "must be at least 1",
            ),
            (FineTuneParam::Lr, positive(self.lr), "must be > 0"),
            (FineTuneParam::HeadLr, positive(self.head_lr), "must be > 0"),
            (
                FineTuneParam::Warmup,
                (0.0..1.0).contains(&self.warmup),
                "must be in [0, 1)",
            ),
            (FineTuneParam::Batch, self.batch >= 1, "must be at least 1"),
            (
                FineTuneParam::MaxLen,
                self.max_len >= 2,
                "must be at least 2",
            ),
            (
                FineTuneParam::Dropout,
                (0.0..1.0).contains(&self.dropout),
                "must be in [0, 1)",
            ),
        ];
        rules
            .into_iter()
            .find(|(_, ok, _)| !ok)
            .map(|(param, _, why)| (param, why))
    }

    pub fn validate(&self) -> Result<()> {
        match self.broken_rule() {
            Some((param, why)) => Err(Error::Usage(format!("fine-tune {param}: {why}"))),
            None => Ok(()),
        }
    }
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f64,
    pub valid_loss: f64,
    pub valid_accuracy: f64,
    pub seconds: f64,
}

/// What a bundle records about a fine-tune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneSummary {
    /// The encoder folder the fine-tune started from, and its weights' sha256.
    pub base: String,
    pub base_sha256: String,
    pub params: FineTuneParams,
    pub best_epoch: usize,
    pub steps: usize,
    pub history: Vec<EpochStats>,
    pub seconds: f64,
}

/// What the caller gets back: the folder of the best epoch's encoder and the history.
pub struct FineTuned {
    /// Removed when dropped (never committed).
    pub dir: TempDir,
    pub best_epoch: usize,
    pub steps: usize,
    pub history: Vec<EpochStats>,
}

fn ce(e: candle_core::Error) -> Error {
    Error::Training(format!("fine-tune: {e}"))
}

/// Progress of a fine-tune: epoch (1-based), step within all steps, total steps, the running
/// training loss, and the estimated seconds left.
pub struct FtProgress {
    pub epoch: usize,
    pub step: usize,
    pub total_steps: usize,
    pub loss: f64,
    pub eta_seconds: f64,
}

/// The labelled rows to fine-tune on.
pub struct FtData<'a> {
    pub texts: &'a [&'a str],
    pub labels: &'a [u32],
}

/// The head to start from (zeros unless warm-started; the caller decides): `weight` is
/// `[dim × n_classes]` row-major.
pub struct HeadInit<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    pub n_classes: usize,
}

/// Learning rate at `step` of `total`: linear warm-up to `lr`, then linear decay to 0.
pub fn schedule(lr: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if step < warmup {
        lr * (step + 1) as f64 / warmup as f64
    } else {
        let left = total.saturating_sub(step) as f64;
        lr * left / (total - warmup).max(1) as f64
    }
}

struct Model {
    bert: TrainableBert,
    varmap: VarMap,
    w: Var,
    b: Var,
}

impl Model {
    fn logits(
        &self,
        rows: &[&[u32]],
        dev: &Device,
        drop: &mut Option<Dropout<'_>>,
    ) -> candle_core::Result<Tensor> {
        let (ids, types, mask) = pad_batch(rows, dev)?;
        let emb = self.bert.sentence_embedding(&ids, &types, &mask, drop)?;
        emb.matmul(self.w.as_tensor())?
            .broadcast_add(self.b.as_tensor())
    }

    /// Mean cross-entropy and accuracy over `rows` without dropout.
    fn evaluate(&self, rows: &[Vec<u32>], y: &[u32], dev: &Device) -> Result<(f64, f64)> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let (mut loss, mut correct) = (0f64, 0usize);
        for chunk in order.chunks(64) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| rows[i].as_slice()).collect();
            let yb: Vec<u32> = chunk.iter().map(|&i| y[i]).collect();
            let logits = self.logits(&batch, dev, &mut None).map_err(ce)?;
            let yt = Tensor::from_vec(yb.clone(), yb.len(), dev).map_err(ce)?;
            let l = candle_nn::loss::cross_entropy(&logits, &yt)
                .and_then(|l| l.to_scalar::<f32>())
                .map_err(ce)?;
            loss += l as f64 * chunk.len() as f64;
            let pred = logits
                .argmax(1)
                .and_then(|p| p.to_vec1::<u32>())
                .map_err(ce)?;
            correct += pred.iter().zip(&yb).filter(|(p, y)| p == y).count();
        }
        let n = rows.len().max(1) as f64;
        Ok((loss / n, correct as f64 / n))
    }
}

fn tokenize(tok: &Tokenizer, texts: &[&str], dir: &Path) -> Result<Vec<Vec<u32>>> {
    let enc = tok
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| Error::model(dir, format!("tokenizer: {e}")))?;
    Ok(enc.iter().map(|e| e.get_ids().to_vec()).collect())
}

/// Batches of rows of similar length, in a seeded random order: rows are sorted by (length,
/// random key), cut into batches, and the batches shuffled.
fn batches(rows: &[Vec<u32>], batch: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let mut keyed: Vec<(usize, u64, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.len(), rng.next_u64(), i))
        .collect();
    keyed.sort_unstable();
    let mut out: Vec<Vec<usize>> = keyed
        .chunks(batch)
        .map(|c| c.iter().map(|k| k.2).collect())
        .collect();
    rng.shuffle(&mut out);
    out
}

/// AdamW as `candle_nn::AdamW` computes it (bias-corrected moments, decoupled weight decay),
/// in one pass over each variable, updating its weights in place: candle's builds thirteen
/// temporary tensors per variable and step, which was 15% of a fine-tune step.
pub struct FusedAdamW {
    vars: Vec<(Var, Vec<f32>, Vec<f32>)>,
    params: ParamsAdamW,
    t: i32,
}

impl FusedAdamW {
    pub fn new(vars: Vec<Var>, params: ParamsAdamW) -> FusedAdamW {
        let vars = vars
            .into_iter()
            .map(|v| {
                let n = v.elem_count();
                (v, vec![0f32; n], vec![0f32; n])
            })
            .collect();
        FusedAdamW { vars, params, t: 0 }
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// One update of every variable that has a gradient in `grads`, each gradient multiplied
    /// by `scale` first (gradient clipping).
    pub fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        scale: f32,
    ) -> candle_core::Result<()> {
        self.t += 1;
        let p = &self.params;
        let coefficients = AdamWCoefficients {
            beta1: p.beta1 as f32,
            beta2: p.beta2 as f32,
            scale_m: (1.0 / (1.0 - p.beta1.powi(self.t))) as f32,
            scale_v: (1.0 / (1.0 - p.beta2.powi(self.t))) as f32,
            decay: (1.0 - p.lr * p.weight_decay) as f32,
            lr: p.lr as f32,
            eps: p.eps as f32,
            grad_scale: scale,
        };
        for (var, m, v) in &mut self.vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = g.contiguous()?;
            let (gs, gl) = g.storage_and_layout();
            let g = super::bert::cpu_f32(&gs, gl, "gradient")?;
            var.as_tensor().inplace_op1(&AdamWStep {
                coefficients,
                state: std::cell::RefCell::new((g, m.as_mut_slice(), v.as_mut_slice())),
            })?;
        }
        Ok(())
    }
}

/// The in-place update of one variable: its gradient and moments.
struct AdamWStep<'a> {
    coefficients: AdamWCoefficients,
    #[allow(clippy::type_complexity)]
    state: std::cell::RefCell<(&'a [f32], &'a mut [f32], &'a mut [f32])>,
}

impl candle_core::InplaceOp1 for AdamWStep<'_> {
    fn name(&self) -> &'static str {
        "cqr-adamw"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let candle_core::CpuStorage::F32(w) = storage else {
            candle_core::bail!("AdamW: only f32 weights")
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("AdamW: weights must be contiguous")
        };
        let mut state = self.state.borrow_mut();
        let (g, m, v) = &mut *state;
        let w = &mut w[a..b];
        if g.len() != w.len() || m.len() != w.len() {
            candle_core::bail!("AdamW: a gradient of {} for {} weights", g.len(), w.len());
        }
        kernels::adamw(Isa::detect(), w, g, m, v, self.coefficients);
        Ok(())
    }
}

/// The factor that brings the global L2 norm of the gradients of `vars` in `grads` down to
/// `max` (1 when it is below, or not finite).
fn clip_scale(
    grads: &candle_core::backprop::GradStore,
    vars: &[Var],
    max: f64,
) -> candle_core::Result<f32> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            let g = g.contiguous()?;
            let (gs, gl) = g.storage_and_layout();
            let g = super::bert::cpu_f32(&gs, gl, "gradient")?;
            sq += kernels::sum_squares(Isa::detect(), g) as f64;
        }
    }
    let norm = sq.sqrt();
    Ok(if norm > max && norm.is_finite() {
        (max / norm) as f32
    } else {
        1.0
    })
}

/// Fine-tunes the encoder in `src` (config.json, tokenizer.json, model.safetensors).
pub fn fine_tune(
    src: &Path,
    p: &FineTuneParams,
    train: FtData<'_>,
    valid: FtData<'_>,
    head: HeadInit<'_>,
    mut progress: impl FnMut(&FtProgress),
) -> Result<FineTuned> {
    p.validate()?;
    let dev = Device::Cpu;
    let cfg_path = src.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let config: Config =
        serde_json::from_str(&text).map_err(|e| Error::model(src, format!("config.json: {e}")))?;
    let mut tok = Tokenizer::from_file(src.join("tokenizer.json"))
        .map_err(|e| Error::model(src, format!("tokenizer: {e}")))?;
    tok.with_padding(None);
    tok.with_truncation(Some(TruncationParams {
        max_length: p.max_len,
        strategy: TruncationStrategy::LongestFirst,
        ..Default::default()
    }))
    .map_err(|e| Error::model(src, format!("tokenizer: {e}")))?;
    let train_rows = tokenize(&tok, train.texts, src)?;
    let valid_rows = tokenize(&tok, valid.texts, src)?;

    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let bert = TrainableBert::load(vb, &config, p.freeze_words).map_err(ce)?;
    let weights = src.join("model.safetensors");
    varmap
        .load(&weights)
        .map_err(|e| Error::model(src, format!("loading {}: {e}", weights.display())))?;
    let dim = config.hidden_size;
    let c = head.n_classes;
    // The head's variables live outside the map, so saving the map writes the encoder only.
    let w = Var::from_vec(head.weight.to_vec(), (dim, c), &dev).map_err(ce)?;
    let b = Var::from_vec(head.bias.to_vec(), c, &dev).map_err(ce)?;
    let mut named: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .expect("the var map is not shared across threads")
        .iter()
        .filter(|(k, _)| !(p.freeze_words && k.as_str() == "embeddings.word_embeddings.weight"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut vars: Vec<Var> = named.into_iter().map(|(_, v)| v).collect();
    let adamw = |vars: Vec<Var>, lr: f64| {
        FusedAdamW::new(
            vars,
            ParamsAdamW {
                lr,
                weight_decay: p.weight_decay,
                ..Default::default()
            },
        )
    };
    let mut opt = adamw(vars.clone(), p.lr);
    let mut head_opt = adamw(vec![w.clone(), b.clone()], p.head_lr);
    vars.push(w.clone());
    vars.push(b.clone());
    let model = Model { bert, varmap, w, b };

    let out = TempDir::beside(&std::env::temp_dir().join("cqr-finetune"))?;
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), out.path().join(f)).map_err(|e| Error::io(src.join(f), e))?;
    }
    let best_path = out.path().join("model.safetensors");
    let n_batches = train_rows.len().div_ceil(p.batch);
    let total = n_batches * p.epochs;
    let warmup = ((total as f64 * p.warmup).ceil() as usize).max(1);
    let mut order_rng = Rng::new(p.seed);
    let mut drop_rng = Rng::new(p.seed ^ 0x5eed_d20f);
    let mut history = Vec::new();
    let mut best: Option<(f64, f64, usize)> = None;
    let mut since_best = 0;
    let start = Instant::now();
    let mut step = 0usize;
    for epoch in 1..=p.epochs {
        let t0 = Instant::now();
        let (mut loss_sum, mut seen) = (0f64, 0usize);
        for batch in batches(&train_rows, p.batch, &mut order_rng) {
            opt.set_learning_rate(schedule(p.lr, step, total, warmup));
            head_opt.set_learning_rate(schedule(p.head_lr, step, total, warmup));
            let rows: Vec<&[u32]> = batch.iter().map(|&i| train_rows[i].as_slice()).collect();
            let yb: Vec<u32> = batch.iter().map(|&i| train.labels[i]).collect();
            let yt = Tensor::from_vec(yb, batch.len(), &dev).map_err(ce)?;
            let mut drop = Some(Dropout {
                p: p.dropout,
                rng: &mut drop_rng,
            });
            let logits = model.logits(&rows, &dev, &mut drop).map_err(ce)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &yt).map_err(ce)?;
            let l = loss.to_scalar::<f32>().map_err(ce)? as f64;
            if !l.is_finite() {
                return Err(Error::Training(format!(
                    "fine-tune: the loss became {l} at step {step}; try a lower learning rate"
                )));
            }
            let grads = loss.backward().map_err(ce)?;
            let scale = clip_scale(&grads, &vars, p.clip).map_err(ce)?;
            opt.step(&grads, scale).map_err(ce)?;
            head_opt.step(&grads, scale).map_err(ce)?;
            loss_sum += l * batch.len() as f64;
            seen += batch.len();
            step += 1;
            let per_step = start.elapsed().as_secs_f64() / step as f64;
            progress(&FtProgress {
                epoch,
                step,
                total_steps: total,
                loss: loss_sum / seen as f64,
                eta_seconds: per_step * (total - step) as f64,
            });
        }
        let (valid_loss, valid_accuracy) = model.evaluate(&valid_rows, valid.labels, &dev)?;
        let stats = EpochStats {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            valid_loss,
            valid_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        };
        tracing::info!(?stats, "fine-tune epoch");
        history.push(stats);
        let better = match best {
            None => true,
            Some((acc, vl, _)) => {
                valid_accuracy > acc + 1e-12 || (valid_accuracy == acc && valid_loss < vl)
            }
        };
        if better {
            model
                .varmap
                .save(&best_path)
                .map_err(|e| Error::model(&best_path, format!("saving: {e}")))?;
            best = Some((valid_accuracy, valid_loss, epoch));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= p.patience {
                break;
            }
        }
    }
    Ok(FineTuned {
        dir: out,
        best_epoch: best.map(|b| b.2).unwrap_or(0),
        steps: step,
        history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_adamw_follows_candles_adamw() {
        use candle_nn::Optimizer;
        let dev = Device::Cpu;
        let mut rng = Rng::new(5);
        let mut rand = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                .collect()
        };
        let params = ParamsAdamW {
            lr: 0.05,
            weight_decay: 0.1,
            ..Default::default()
        };
        let (w0, b0) = (rand(5 * 7), rand(3));
        let make = || {
            (
                Var::from_vec(w0.clone(), (5, 7), &dev).unwrap(),
                Var::from_vec(b0.clone(), 3, &dev).unwrap(),
            )
        };
        let (wa, ba) = make();
        let (wb, bb) = make();
        let mut ours = FusedAdamW::new(vec![wa.clone(), ba.clone()], params.clone());
        let mut theirs = candle_nn::AdamW::new(vec![wb.clone(), bb.clone()], params).unwrap();
        for step in 0..4 {
            let (rw, rb) = (
                Tensor::from_vec(rand(35), (5, 7), &dev).unwrap(),
                Tensor::from_vec(rand(3), 3, &dev).unwrap(),
            );
            let loss = |w: &Var, b: &Var| {
                let lw = (w.as_tensor().sqr().unwrap() * &rw)
                    .unwrap()
                    .sum_all()
                    .unwrap();
                let lb = (b.as_tensor() * &rb).unwrap().sum_all().unwrap();
                (lw + lb).unwrap()
            };
            if step == 2 {
                ours.set_learning_rate(0.01);
                theirs.set_learning_rate(0.01);
            }
            // The last step clips: ours scales inside, candle's is given scaled gradients.
            let scale = if step == 3 { 0.5 } else { 1.0 };
            ours.step(&loss(&wa, &ba).backward().unwrap(), scale)
                .unwrap();
            let mut g = loss(&wb, &bb).backward().unwrap();
            for v in [&wb, &bb] {
                let x = g.remove(v.as_tensor()).unwrap();
                g.insert(v.as_tensor(), (x * scale as f64).unwrap());
            }
            theirs.step(&g).unwrap();
            for (a, b, init) in [(&wa, &wb, &w0), (&ba, &bb, &b0)] {
                let (a, b) = (
                    a.as_tensor()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                    b.as_tensor()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                );
                assert_ne!(&a, init, "the weights moved");
                let diff = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(diff < 1e-6, "step {step}: {diff}");
            }
        }
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let lrs: Vec<f64> = (0..10).map(|s| schedule(1.0, s, 10, 2)).collect();
        assert!((lrs[0] - 0.5).abs() < 1e-12);
        assert!((lrs[1] - 1.0).abs() < 1e-12);
        assert!(lrs[2..].windows(2).all(|w| w[1] < w[0]));
        assert!(lrs[9] > 0.0 && lrs[9] <= 0.125 + 1e-12);
    }

    #[test]
    fn batches_cover_every_row_once_and_group_lengths() {
        let rows: Vec<Vec<u32>> = (0..103).map(|i| vec![0; 1 + (i * 7) % 40]).collect();
        let mut rng = Rng::new(3);
        let b = batches(&rows, 16, &mut rng);
        let mut all: Vec<usize> = b.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        // Each batch spans a narrow band of lengths.
        for batch in &b {
            let lens: Vec<usize> = batch.iter().map(|&i| rows[i].len()).collect();
            let span = lens.iter().max().unwrap() - lens.iter().min().unwrap();
            assert!(span <= 8, "{lens:?}");
        }
    }
}
