//! The sentence encoder: a BERT-family sentence-transformers folder (config.json, tokenizer.json,
//! model.safetensors) run on the CPU by `fastbert` — token ids, masked mean pooling, L2
//! normalisation, as sentence-transformers does. Texts are tokenised once (truncated at
//! `max_len` tokens), sorted by token count and cut into batches whose tokens are packed end to
//! end, so no padding is computed; batches run side by side on the rayon pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_transformers::models::bert::Config;
use rayon::prelude::*;
use tokenizers::{Tokenizer, TruncationParams, TruncationStrategy};

use super::fastbert::{Bert, Precision, QWeights};
use super::kernels::Isa;
use crate::error::{Error, Result};
use crate::util::sha256_file;

pub const DEFAULT_MAX_LEN: usize = 128;
pub const DEFAULT_BATCH: usize = 32;

/// Where README's first command puts the default encoder.
pub const DEFAULT_DIR: &str = "models/all-MiniLM-L6-v2";

pub struct Encoder {
    model: Bert,
    tokenizer: Tokenizer,
    isa: Isa,
    pub dir: PathBuf,
    pub dim: usize,
    pub max_len: usize,
    /// sha256 of model.safetensors: identifies the weights (embedding caches are keyed by it).
    pub weights_sha256: String,
}

fn encoder_err(dir: &Path, e: impl std::fmt::Display) -> Error {
    Error::model(dir, format!("encoder: {e}"))
}

impl Encoder {
    /// Loads a sentence-transformers folder, f32.
    pub fn load(dir: &Path, max_len: usize) -> Result<Encoder> {
        Encoder::load_precision(dir, max_len, Precision::F32)
    }

    /// Loads a sentence-transformers folder; int8 weights are quantized from its f32 ones.
    pub fn load_precision(dir: &Path, max_len: usize, precision: Precision) -> Result<Encoder> {
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            if !dir.join(f).is_file() {
                return Err(Error::model(
                    dir,
                    format!(
                        "no {f}: not a sentence-transformers folder. Fetch the default encoder with \
                         `scripts/fetch-model.sh` (into {DEFAULT_DIR}) or point --encoder at one"
                    ),
                ));
            }
        }
        let weights = dir.join("model.safetensors");
        let weights_sha256 = sha256_file(&weights)?;
        Encoder::load_files(
            dir,
            &dir.join("config.json"),
            &dir.join("tokenizer.json"),
            (&weights, weights_sha256),
            max_len,
            (precision, None),
        )
    }

    /// Loads from explicit files (a bundle stores them under its own names); the weights come
    /// with their sha256, which the caller has already computed or verified. With int8, the
    /// stored quantized weights are used when given (by name, see `fastbert::DENSE_NAMES`).
    pub fn load_files(
        dir: &Path,
        cfg_path: &Path,
        tok_path: &Path,
        (weights, weights_sha256): (&Path, String),
        max_len: usize,
        (precision, int8): (Precision, Option<&HashMap<String, QWeights>>),
    ) -> Result<Encoder> {
        let text = std::fs::read_to_string(cfg_path).map_err(|e| Error::io(cfg_path, e))?;
        let config: Config = serde_json::from_str(&text)
            .map_err(|e| encoder_err(dir, format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_file(tok_path).map_err(|e| encoder_err(dir, e))?;
        // The shipped tokenizer pads to 128; batches are packed instead.
        tokenizer.with_padding(None);
        let model = Bert::load(weights, &config, precision, int8)?;
        let max_len = max_len.min(model.max_positions());
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(|e| encoder_err(dir, e))?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > model.vocab_size() {
            return Err(encoder_err(
                dir,
                format!(
                    "the tokenizer knows {vocab} tokens but the weights have {} embeddings",
                    model.vocab_size()
                ),
            ));
        }
        Ok(Encoder {
            model,
            tokenizer,
            isa: Isa::detect(),
            dir: dir.to_path_buf(),
            dim: config.hidden_size,
            max_len,
            weights_sha256,
        })
    }

    pub fn precision(&self) -> Precision {
        self.model.precision
    }

    /// The int8 weights to store in a bundle (`None` for f32).
    pub fn int8_weights(&self) -> Option<Vec<(String, &QWeights)>> {
        self.model.int8_weights()
    }

    /// Runs the kernels with `isa` instead of the detected one (tests force the fallback).
    pub fn with_isa(mut self, isa: Isa) -> Encoder {
        self.isa = isa;
        self
    }

    /// L2-normalised sentence embeddings, row-major `[texts.len() × dim]`, in input order.
    /// `progress` is called with the texts done after each group of batches.
    pub fn embed(
        &self,
        texts: &[&str],
        batch_size: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<f32>> {
        let dim = self.dim;
        let mut out = vec![0f32; texts.len() * dim];
        if texts.is_empty() {
            return Ok(out);
        }
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| encoder_err(&self.dir, e))?;
        let ids: Vec<&[u32]> = enc.iter().map(|e| e.get_ids()).collect();
        // Sorted by token count, each batch holds sequences of about the same length.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let batches: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
        let threads = rayon::current_num_threads().max(1);
        // A lone batch splits its matmuls across the pool; several run one per thread, which
        // scales better than splitting small matrices.
        let inner = if batches.len() == 1 { threads } else { 1 };
        for group in batches.chunks(threads * 2) {
            let done: Vec<Vec<f32>> = group
                .par_iter()
                .with_max_len(1)
                .map(|b| {
                    let rows: Vec<&[u32]> = b.iter().map(|&i| ids[i]).collect();
                    self.model.embed(self.isa, &rows, inner)
                })
                .collect();
            let mut n = 0;
            for (b, emb) in group.iter().zip(&done) {
                for (&i, row) in b.iter().zip(emb.chunks_exact(dim)) {
                    out[i * dim..(i + 1) * dim].copy_from_slice(row);
                }
                n += b.len();
            }
            progress(n);
        }
        Ok(out)
    }
}

/// The `encoder` component: sentence embeddings and a logistic head.
pub struct EncoderClassifier {
    pub encoder: Encoder,
    pub head: super::heads::Head,
    pub batch_size: usize,
}

impl super::Classifier for EncoderClassifier {
    fn kind(&self) -> &'static str {
        "encoder"
    }

    fn n_classes(&self) -> usize {
        self.head.n_classes()
    }

    fn logits(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let x = self.encoder.embed(texts, self.batch_size, |_| {})?;
        self.head.logits(&x)
    }

    fn logits_with_mc(
        &self,
        texts: &[&str],
        samples: usize,
        seed: u64,
    ) -> Result<super::LogitsWithMc> {
        Ok(self.logits_with_embeddings(texts, samples, seed)?.0)
    }

    fn logits_with_embeddings(
        &self,
        texts: &[&str],
        samples: usize,
        seed: u64,
    ) -> Result<(super::LogitsWithMc, Option<Vec<f32>>)> {
        // One encoder pass serves the plain head, every dropout sample and the caller.
        let x = self.encoder.embed(texts, self.batch_size, |_| {})?;
        let logits = (
            self.head.logits(&x)?,
            self.head.mc_logits(&x, samples, seed)?,
        );
        Ok((logits, Some(x)))
    }

    fn embedding_dim(&self) -> Option<usize> {
        Some(self.encoder.dim)
    }

    fn embed_cached(
        &self,
        texts: &[&str],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Option<Vec<f32>>> {
        let mut cache = EmbeddingCache::open(&self.encoder)?;
        Ok(Some(cache.embed(&self.encoder, texts, progress)?))
    }
}

/// Embeddings computed once per (encoder weights, max length, text) and kept on disk, so train
/// runs with different heads or settings do not encode the same texts again. One append-only
/// file per encoder: records of a 16-byte text hash and `dim` little-endian f32s.
pub struct EmbeddingCache {
    path: PathBuf,
    dim: usize,
    map: std::collections::HashMap<[u8; 16], Vec<f32>>,
}

fn text_key(text: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(text.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

impl EmbeddingCache {
    pub fn open(encoder: &Encoder) -> Result<EmbeddingCache> {
        let dir = crate::util::cache_root().join("embeddings");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // int8 embeddings differ slightly from f32 ones: they get their own file.
        let precision = match encoder.precision() {
            Precision::F32 => String::new(),
            p => format!("-{}", p.name()),
        };
        let path = dir.join(format!(
            "{}-{}-{}{precision}.bin",
            &encoder.weights_sha256[..16],
            encoder.max_len,
            encoder.dim
        ));
        let mut map = std::collections::HashMap::new();
        let rec = 16 + 4 * encoder.dim;
        if let Ok(bytes) = std::fs::read(&path) {
            // A torn last record (a crash mid-append) is ignored.
            for r in bytes.chunks_exact(rec) {
                let mut k = [0u8; 16];
                k.copy_from_slice(&r[..16]);
                let v = r[16..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                map.insert(k, v);
            }
        }
        Ok(EmbeddingCache {
            path,
            dim: encoder.dim,
            map,
        })
    }

    /// Embeddings of `texts` (row-major), encoding and storing only the ones not cached yet.
    pub fn embed(
        &mut self,
        encoder: &Encoder,
        texts: &[&str],
        progress: impl FnMut(usize),
    ) -> Result<Vec<f32>> {
        use std::io::Write;
        let mut missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !self.map.contains_key(&text_key(t)))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let emb = encoder.embed(&missing, DEFAULT_BATCH, progress)?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| Error::io(&self.path, e))?;
            let mut buf = Vec::with_capacity(missing.len() * (16 + 4 * self.dim));
            for (t, row) in missing.iter().zip(emb.chunks(self.dim)) {
                let k = text_key(t);
                buf.extend_from_slice(&k);
                row.iter()
                    .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
                self.map.insert(k, row.to_vec());
            }
            // Concurrent trainings append to the same file: one writer at a time keeps records
            // whole and aligned.
            f.lock().map_err(|e| Error::io(&self.path, e))?;
            let written = f.write_all(&buf);
            let _ = f.unlock();
            written.map_err(|e| Error::io(&self.path, e))?;
        }
        let mut out = Vec::with_capacity(texts.len() * self.dim);
        for t in texts {
            out.extend_from_slice(&self.map[&text_key(t)]);
        }
        Ok(out)
    }
}
