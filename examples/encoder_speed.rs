//! Encoder throughput on a CSV's `text` column: cqr's packed encoder (f32 and int8) beside the
//! path cqr used before (candle-transformers' `BertModel` on padded batches sorted by character
//! length), with the cosine of each precision's embeddings to the old path's. Run by
//! scripts/bench_encoder.sh; prints one JSON object.
//!
//! cargo run --release --example encoder_speed -- TEXTS.csv [--batch 32] [--repeat 3]
//!     [--encoder models/all-MiniLM-L6-v2] [--skip-candle] [--skip-scalar]

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use cqr::models::encoder::{Encoder, DEFAULT_MAX_LEN};
use cqr::models::fastbert::Precision;
use cqr::models::kernels::Isa;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

fn texts(path: &str) -> Vec<String> {
    let mut r = csv::Reader::from_path(path).expect("a readable CSV");
    let col = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "text")
        .expect("a text column");
    r.records()
        .map(|rec| rec.unwrap()[col].to_string())
        .collect()
}

/// The old inference path, kept here as the baseline: batches sorted by character length, or
/// (`by_tokens`, the first step of the new path) by token count.
fn candle_embed(dir: &std::path::Path, texts: &[&str], batch: usize, by_tokens: bool) -> Vec<f32> {
    let cfg: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let mut tok = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tok.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..Default::default()
    }));
    tok.with_truncation(Some(TruncationParams {
        max_length: DEFAULT_MAX_LEN,
        ..Default::default()
    }))
    .unwrap();
    let dev = Device::Cpu;
    // SAFETY: read-only mapping of a file nobody modifies during the run.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DTYPE, &dev).unwrap()
    };
    let model = BertModel::load(vb, &cfg).unwrap();
    let dim = cfg.hidden_size;
    let mut out = vec![0f32; texts.len() * dim];
    let mut order: Vec<usize> = (0..texts.len()).collect();
    if by_tokens {
        let mut plain = tok.clone();
        plain.with_padding(None);
        let enc = plain.encode_batch(texts.to_vec(), true).unwrap();
        order.sort_by_key(|&i| enc[i].get_ids().len());
    } else {
        order.sort_by_key(|&i| texts[i].len());
    }
    for chunk in order.chunks(batch) {
        let enc = tok
            .encode_batch(chunk.iter().map(|&i| texts[i]).collect::<Vec<_>>(), true)
            .unwrap();
        let (n, t) = (enc.len(), enc[0].get_ids().len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> Vec<u32>| {
            Tensor::from_vec(enc.iter().flat_map(f).collect::<Vec<u32>>(), (n, t), &dev).unwrap()
        };
        let ids = flat(&|e| e.get_ids().to_vec());
        let types = flat(&|e| e.get_type_ids().to_vec());
        let mask = flat(&|e| e.get_attention_mask().to_vec());
        let hidden = model.forward(&ids, &types, Some(&mask)).unwrap();
        let unit = cqr::models::bert::mean_pool_l2(&hidden, &mask).unwrap();
        let v = unit.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (row, &i) in v.chunks(dim).zip(chunk) {
            out[i * dim..(i + 1) * dim].copy_from_slice(row);
        }
    }
    out
}

fn cosines(a: &[f32], b: &[f32], dim: usize) -> (f64, f64) {
    let c: Vec<f64> = a
        .chunks(dim)
        .zip(b.chunks(dim))
        .map(|(x, y)| {
            let d: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| (*p as f64) * (*q as f64))
                .sum();
            let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            d / (nx * ny).max(1e-12)
        })
        .collect();
    let min = c.iter().cloned().fold(f64::INFINITY, f64::min);
    (min, c.iter().sum::<f64>() / c.len().max(1) as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let path = args
        .first()
        .expect("usage: encoder_speed TEXTS.csv [options]");
    let batch: usize = opt("--batch").map_or(32, |v| v.parse().unwrap());
    let repeat: usize = opt("--repeat").map_or(3, |v| v.parse().unwrap());
    let dir = PathBuf::from(opt("--encoder").unwrap_or("models/all-MiniLM-L6-v2".into()));
    let owned = texts(path);
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let time = |f: &mut dyn FnMut() -> Vec<f32>| {
        let mut best = f64::INFINITY;
        let mut out = Vec::new();
        for _ in 0..repeat {
            let t = Instant::now();
            out = f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        (texts.len() as f64 / best, out)
    };
    let mut result = serde_json::json!({
        "texts": texts.len(),
        "batch": batch,
        "threads": rayon::current_num_threads(),
        "isa": Isa::detect().name(),
    });
    let reference = if args.iter().any(|a| a == "--skip-candle") {
        None
    } else {
        let (tps, v) = time(&mut || candle_embed(&dir, &texts, batch, false));
        result["candle_texts_per_s"] = tps.round().into();
        let (tps, _) = time(&mut || candle_embed(&dir, &texts, batch, true));
        result["candle_token_sorted_texts_per_s"] = tps.round().into();
        Some(v)
    };
    for p in [Precision::F32, Precision::Int8] {
        let enc = Encoder::load_precision(&dir, DEFAULT_MAX_LEN, p).unwrap();
        let (tps, v) = time(&mut || enc.embed(&texts, batch, |_| {}).unwrap());
        result[format!("{}_texts_per_s", p.name())] = tps.round().into();
        if let Some(r) = &reference {
            let (min, mean) = cosines(&v, r, enc.dim);
            result[format!("{}_cosine_to_candle", p.name())] =
                serde_json::json!({"min": min, "mean": mean});
        }
        if args.iter().any(|a| a == "--skip-scalar") {
            continue;
        }
        // The same with the scalar kernels (the matmuls stay on the gemm crate): what the
        // vectorised GELU, layer norm, attention and int8 product add.
        let scalar = Encoder::load_precision(&dir, DEFAULT_MAX_LEN, p)
            .unwrap()
            .with_isa(Isa::Scalar);
        let (tps, _) = time(&mut || scalar.embed(&texts, batch, |_| {}).unwrap());
        result[format!("{}_scalar_kernels_texts_per_s", p.name())] = tps.round().into();
    }
    println!("{result}");
}
