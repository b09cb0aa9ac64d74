//! The inference encoder's kernels against plain candle ops on random inputs, with shapes that
//! are not multiples of the vector width, length-1 sequences and empty batches; the AVX2 path
//! against the fallback (bit-identical); and the whole packed BERT against candle-transformers'
//! `BertModel` on a small random checkpoint. Needs no downloaded model.

use candle_core::{DType, Device, Tensor, D};
use cqr::models::fastbert::{Bert, Precision};
use cqr::models::kernels::{self, Isa};
use cqr::util::Rng;

fn random(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale)
        .collect()
}

/// Every path this CPU can run (the scalar one always; AVX2 and VNNI where present).
fn isas() -> Vec<Isa> {
    Isa::available().to_vec()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
}

fn vec_of(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn layer_norm_and_gelu_match_candle() {
    let mut rng = Rng::new(1);
    for (rows, h) in [(0, 7), (1, 1), (3, 13), (5, 384), (2, 1000)] {
        let x = random(&mut rng, rows * h, 3.0);
        let g = random(&mut rng, h, 1.0);
        let b = random(&mut rng, h, 0.5);
        let want = if rows == 0 {
            vec![]
        } else {
            vec_of(
                &candle_nn::ops::layer_norm_slow(
                    &t(&x, &[rows, h]),
                    &t(&g, &[h]),
                    &t(&b, &[h]),
                    1e-12,
                )
                .unwrap(),
            )
        };
        let gelu_want = if rows == 0 {
            vec![]
        } else {
            vec_of(&t(&x, &[rows, h]).gelu_erf().unwrap())
        };
        let mut outs = Vec::new();
        for isa in isas() {
            let mut y = x.clone();
            kernels::layer_norm(isa, &mut y, &g, &b, 1e-12);
            assert!(max_diff(&y, &want) < 2e-5, "layer norm {rows}x{h} {isa:?}");
            let mut z = x.clone();
            kernels::gelu_in_place(isa, &mut z);
            assert!(max_diff(&z, &gelu_want) < 2e-6, "gelu {rows}x{h} {isa:?}");
            outs.push((y, z));
        }
        // The vector build and the fallback do the same operations in the same order.
        assert!(outs.windows(2).all(|w| w[0] == w[1]), "{rows}x{h}");
    }
}

#[test]
fn f32_matmul_matches_candle() {
    let mut rng = Rng::new(2);
    for (n, k, o) in [
        (0, 5, 3),
        (1, 1, 1),
        (7, 13, 9),
        (33, 384, 1152),
        (5, 1536, 384),
    ] {
        let x = random(&mut rng, n * k, 1.0);
        let w = random(&mut rng, k * o, 1.0);
        let bias = random(&mut rng, o, 1.0);
        let mut out = vec![0f32; n * o];
        kernels::fill_rows(&mut out, &bias, None);
        kernels::matmul_f32(&x, &w, &mut out, (n, k, o), 1);
        if n > 0 {
            let want = t(&x, &[n, k])
                .matmul(&t(&w, &[k, o]))
                .unwrap()
                .broadcast_add(&t(&bias, &[o]))
                .unwrap();
            assert!(max_diff(&out, &vec_of(&want)) < 1e-3 * (k as f32).sqrt());
        }
        let mut par = vec![0f32; n * o];
        kernels::fill_rows(&mut par, &bias, None);
        kernels::matmul_f32(&x, &w, &mut par, (n, k, o), 2);
        assert!(max_diff(&out, &par) < 1e-4 * (k as f32).sqrt());
    }
}

#[test]
fn int8_matmul_is_exact_on_every_path() {
    let mut rng = Rng::new(3);
    for (n, k, o) in [
        (0, 32, 4),
        (1, 1, 1),
        (3, 31, 5),
        (9, 33, 7),
        (37, 384, 13),
        (4, 1536, 2),
        (19, 96, 40),
        (8, 384, 32),
    ] {
        let x = random(&mut rng, n * k, 2.0);
        let w = random(&mut rng, o * k, 0.2);
        let kp = kernels::padded_k(k);
        let (mut qa, mut sa, mut qw, mut sw) = (vec![], vec![], vec![], vec![]);
        kernels::quantize_rows(Isa::Scalar, &x, k, kp, &mut qa, &mut sa);
        kernels::quantize_rows(Isa::Scalar, &w, k, kp, &mut qw, &mut sw);
        assert!(qa.iter().chain(&qw).all(|&q| q >= -127));
        // Every path quantizes identically.
        for isa in isas() {
            let (mut q, mut s) = (vec![], vec![]);
            kernels::quantize_rows(isa, &x, k, kp, &mut q, &mut s);
            assert!(q == qa && s == sa, "{n}x{k} quantization {isa:?}");
        }
        // The exact answer of the quantized problem, in i64.
        let mut want = vec![0f32; n * o];
        for r in 0..n {
            for c in 0..o {
                let d: i64 = (0..kp)
                    .map(|i| qa[r * kp + i] as i64 * qw[c * kp + i] as i64)
                    .sum();
                want[r * o + c] = d as i32 as f32 * (sa[r] * sw[c]);
            }
        }
        for isa in isas() {
            let mut out = vec![0f32; n * o];
            kernels::matmul_i8(isa, (&qa, &sa), (&qw, &sw), &mut out, kp);
            assert_eq!(out, want, "{n}x{k}x{o} {isa:?}");
        }
        // And the quantized product is close to the f32 one.
        for r in 0..n {
            for c in 0..o {
                let f: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                let tol = 0.02 * (k as f32).sqrt() * 2.0 * 0.2;
                assert!((want[r * o + c] - f).abs() < tol, "{n}x{k}x{o} [{r},{c}]");
            }
        }
    }
    // All-zero rows quantize to zeros with a finite scale.
    let (mut q, mut s) = (vec![], vec![]);
    kernels::quantize_rows(Isa::detect(), &[0.0; 40], 40, 64, &mut q, &mut s);
    assert!(q.iter().all(|&v| v == 0) && s == [1.0]);
}

#[test]
fn packed_attention_matches_masked_candle_attention() {
    let mut rng = Rng::new(4);
    let (heads, d) = (3, 5);
    let h = heads * d;
    for lens in [vec![], vec![1], vec![4, 1, 7], vec![9, 9]] {
        let n: usize = lens.iter().sum();
        let qkv = random(&mut rng, n * 3 * h, 2.0);
        let mut seqs = Vec::new();
        let mut first = 0;
        for &l in &lens {
            seqs.push((first, l));
            first += l;
        }
        let mut outs = Vec::new();
        for isa in isas() {
            let mut ctx = vec![0f32; n * h];
            kernels::attention(isa, &qkv, &mut ctx, &seqs, (h, heads), &mut Vec::new());
            outs.push(ctx);
        }
        assert!(outs.windows(2).all(|w| w[0] == w[1]));
        // candle, one sequence at a time: softmax(q kᵀ / √d) v per head.
        for &(first, len) in &seqs {
            let rows = t(&qkv[first * 3 * h..(first + len) * 3 * h], &[len, 3 * h]);
            for hd in 0..heads {
                let part = |p: usize| rows.narrow(1, p * h + hd * d, d).unwrap();
                let (q, k, v) = (part(0), part(1), part(2));
                let s = (q.matmul(&k.t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
                let want = candle_nn::ops::softmax(&s, D::Minus1)
                    .unwrap()
                    .matmul(&v)
                    .unwrap();
                let want = vec_of(&want);
                for i in 0..len {
                    let got = &outs[0][(first + i) * h + hd * d..][..d];
                    assert!(max_diff(got, &want[i * d..(i + 1) * d]) < 1e-5);
                }
            }
        }
    }
}

/// A small random BERT (hidden 40, 4 heads of 10, intermediate 72, 2 layers) saved as
/// safetensors in Hugging Face's names.
fn tiny_checkpoint(dir: &std::path::Path) -> candle_transformers::models::bert::Config {
    let cfg: candle_transformers::models::bert::Config =
        serde_json::from_value(serde_json::json!({
            "vocab_size": 50, "hidden_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 72, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
            "max_position_embeddings": 16, "type_vocab_size": 2, "initializer_range": 0.02,
            "layer_norm_eps": 1e-12, "pad_token_id": 0
        }))
        .unwrap();
    let mut rng = Rng::new(5);
    let mut tensors = std::collections::HashMap::new();
    let mut put = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        let v: Vec<f32> = random(&mut rng, n, scale)
            .into_iter()
            .map(|x| x + offset)
            .collect();
        tensors.insert(name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap());
    };
    let (h, i) = (40, 72);
    put(
        "embeddings.word_embeddings.weight".into(),
        vec![50, h],
        1.0,
        0.0,
    );
    put(
        "embeddings.position_embeddings.weight".into(),
        vec![16, h],
        0.5,
        0.0,
    );
    put(
        "embeddings.token_type_embeddings.weight".into(),
        vec![2, h],
        0.5,
        0.0,
    );
    put("embeddings.LayerNorm.weight".into(), vec![h], 0.2, 1.0);
    put("embeddings.LayerNorm.bias".into(), vec![h], 0.2, 0.0);
    for l in 0..2 {
        let p = format!("encoder.layer.{l}");
        for m in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            put(format!("{p}.{m}.weight"), vec![h, h], 0.3, 0.0);
            put(format!("{p}.{m}.bias"), vec![h], 0.1, 0.0);
        }
        put(
            format!("{p}.intermediate.dense.weight"),
            vec![i, h],
            0.3,
            0.0,
        );
        put(format!("{p}.intermediate.dense.bias"), vec![i], 0.1, 0.0);
        put(format!("{p}.output.dense.weight"), vec![h, i], 0.2, 0.0);
        put(format!("{p}.output.dense.bias"), vec![h], 0.1, 0.0);
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(format!("{p}.{n}.weight"), vec![h], 0.2, 1.0);
            put(format!("{p}.{n}.bias"), vec![h], 0.2, 0.0);
        }
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    cfg
}

#[test]
fn packed_bert_matches_candle_bert_model() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_checkpoint(dir.path());
    let weights = dir.path().join("model.safetensors");
    let rows: Vec<Vec<u32>> = vec![
        vec![1, 7, 2],
        vec![3],
        vec![1, 4, 9, 16, 25, 36, 49, 2],
        vec![5, 5],
    ];
    let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    // candle's model on the padded batch.
    let t_len = 8;
    let (mut ids, mut mask) = (vec![0u32; 4 * t_len], vec![0u32; 4 * t_len]);
    for (r, row) in rows.iter().enumerate() {
        ids[r * t_len..r * t_len + row.len()].copy_from_slice(row);
        mask[r * t_len..r * t_len + row.len()].fill(1);
    }
    let dev = Device::Cpu;
    let ids = Tensor::from_vec(ids, (4, t_len), &dev).unwrap();
    let mask = Tensor::from_vec(mask, (4, t_len), &dev).unwrap();
    let types = Tensor::zeros((4, t_len), DType::U32, &dev).unwrap();
    // SAFETY: the file was just written and is not modified while mapped.
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &dev).unwrap()
    };
    let model = candle_transformers::models::bert::BertModel::load(vb, &cfg).unwrap();
    let hidden = model.forward(&ids, &types, Some(&mask)).unwrap();
    let want = vec_of(&cqr::models::bert::mean_pool_l2(&hidden, &mask).unwrap());

    let bert = Bert::load(&weights, &cfg, Precision::F32, None).unwrap();
    let int8 = Bert::load(&weights, &cfg, Precision::Int8, None).unwrap();
    let mut f32_outs = Vec::new();
    for isa in isas() {
        for threads in [1, 2] {
            let got = bert.embed(isa, &refs, threads);
            assert!(max_diff(&got, &want) < 1e-5, "{isa:?} threads {threads}");
            f32_outs.push(got);
        }
        // One sequence at a time gives the same vectors as the packed batch.
        for (r, row) in refs.iter().enumerate() {
            let one = bert.embed(isa, &[row], 1);
            assert!(max_diff(&one, &want[r * 40..(r + 1) * 40]) < 1e-5);
        }
        let q = int8.embed(isa, &refs, 1);
        for r in 0..4 {
            let cos: f32 = q[r * 40..(r + 1) * 40]
                .iter()
                .zip(&want[r * 40..(r + 1) * 40])
                .map(|(a, b)| a * b)
                .sum();
            assert!(cos > 0.99, "int8 row {r}: cosine {cos}");
        }
    }
    assert!(bert.embed(Isa::Scalar, &[], 1).is_empty());
    // Stored int8 weights load to the same model as quantizing at load.
    let stored: std::collections::HashMap<_, _> = int8
        .int8_weights()
        .unwrap()
        .into_iter()
        .map(|(n, q)| {
            (
                n,
                cqr::models::fastbert::QWeights::new(q.q.clone(), q.scale.clone()),
            )
        })
        .collect();
    let again = Bert::load(&weights, &cfg, Precision::Int8, Some(&stored)).unwrap();
    assert_eq!(
        again.embed(Isa::Scalar, &refs, 1),
        int8.embed(Isa::Scalar, &refs, 1)
    );
    assert!(bert.int8_weights().is_none());
    // Every int8 path gives the scalar path's answer exactly (the sums are exact integers and
    // the f32 steps the same operations in the same order).
    for isa in isas() {
        assert_eq!(
            int8.embed(isa, &refs, 2),
            int8.embed(Isa::Scalar, &refs, 1),
            "{isa:?}"
        );
    }
}

/// Σ out·r for a fixed random `r`: a scalar whose gradient exercises every output element.
fn weighted_sum(out: &Tensor, r: &Tensor) -> Tensor {
    (out * r).unwrap().sum_all().unwrap()
}

/// The gradient of Σ y·r with respect to `x`.
fn input_gradient(y: &Tensor, r: &Tensor, x: &candle_core::Var) -> Vec<f32> {
    vec_of(weighted_sum(y, r).backward().unwrap().get(x).unwrap())
}

#[test]
fn fused_layer_norm_gradients_match_candle_and_finite_differences() {
    use candle_core::Var;
    use cqr::models::bert::FusedLayerNorm;
    let mut rng = Rng::new(11);
    for (n, h) in [(1, 1), (1, 7), (5, 33), (12, 384)] {
        let (xv, gv, bv, rv) = (
            random(&mut rng, n * h, 2.0),
            random(&mut rng, h, 1.5),
            random(&mut rng, h, 0.5),
            random(&mut rng, n * h, 1.0),
        );
        let (x, g, b) = (
            Var::from_tensor(&t(&xv, &[n, h])).unwrap(),
            Var::from_tensor(&t(&gv, &[h])).unwrap(),
            Var::from_tensor(&t(&bv, &[h])).unwrap(),
        );
        let r = t(&rv, &[n, h]);
        let eps = 1e-12;
        let fused = x
            .as_tensor()
            .apply_op3(g.as_tensor(), b.as_tensor(), FusedLayerNorm { eps })
            .unwrap();
        let slow = candle_nn::ops::layer_norm_slow(&x, &g, &b, eps).unwrap();
        assert!(
            max_diff(&vec_of(&fused), &vec_of(&slow)) < 1e-5,
            "forward n={n} h={h}"
        );
        let gf = weighted_sum(&fused, &r).backward().unwrap();
        let gs = weighted_sum(&slow, &r).backward().unwrap();
        for (what, v) in [("x", &x), ("gamma", &g), ("beta", &b)] {
            let (a, e) = (vec_of(gf.get(v).unwrap()), vec_of(gs.get(v).unwrap()));
            let scale = e.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            assert!(
                max_diff(&a, &e) < 1e-4 * scale,
                "d{what} n={n} h={h}: {}",
                max_diff(&a, &e)
            );
        }
        // Central differences on a few coordinates of x and gamma.
        let loss = |xv: &[f32], gv: &[f32]| -> f64 {
            let o = t(xv, &[n, h])
                .apply_op3(&t(gv, &[h]), &t(&bv, &[h]), FusedLayerNorm { eps })
                .unwrap();
            vec_of(&o)
                .iter()
                .zip(&rv)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum()
        };
        let dx = vec_of(gf.get(&x).unwrap());
        let dg = vec_of(gf.get(&g).unwrap());
        let step = 1e-2f32;
        // Central differences of the loss in x (at its first, middle and last element) and in
        // gamma (first and last), against the analytic gradients.
        let checks = [
            (true, 0),
            (true, n * h / 2),
            (true, n * h - 1),
            (false, 0),
            (false, h - 1),
        ];
        for (in_x, i) in checks {
            let at = |delta: f32| {
                let (mut x, mut g) = (xv.clone(), gv.clone());
                let v = if in_x { &mut x } else { &mut g };
                v[i] += delta;
                loss(&x, &g)
            };
            let fd = (at(step) - at(-step)) / (2.0 * step as f64);
            let (name, analytic) = if in_x {
                ("dx", dx[i])
            } else {
                ("dgamma", dg[i])
            };
            assert!(
                (fd - analytic as f64).abs() < 2e-2 * (1.0 + fd.abs()),
                "{name}[{i}] n={n} h={h}: analytic {analytic} finite difference {fd}"
            );
        }
    }
}

#[test]
fn gelu_gradient_matches_candle_and_finite_differences() {
    use candle_core::Var;
    use cqr::models::bert::Gelu;
    let mut rng = Rng::new(13);
    for (n, w) in [(1, 1), (3, 17), (7, 1536)] {
        // Up to ±6: both tails, where Φ saturates and φ vanishes, and the bend near 0.
        let xv = random(&mut rng, n * w, 6.0);
        let r = t(&random(&mut rng, n * w, 1.0), &[n, w]);
        let x = Var::from_tensor(&t(&xv, &[n, w])).unwrap();
        let fused = x.as_tensor().apply_op1(Gelu).unwrap();
        let plain = x.as_tensor().gelu_erf().unwrap();
        assert!(max_diff(&vec_of(&fused), &vec_of(&plain)) < 2e-6);
        let (a, e) = (
            input_gradient(&fused, &r, &x),
            input_gradient(&plain, &r, &x),
        );
        // candle's gradient rounds 1/√(2π) to 0.398942, a relative error of 1e-6.
        assert!(max_diff(&a, &e) < 1e-5, "n={n} w={w}: {}", max_diff(&a, &e));
        let rv = vec_of(&r);
        let step = 1e-2f32;
        for i in [0, n * w / 2, n * w - 1] {
            let at = |delta: f32| {
                let mut xs = xv[i..=i].to_vec();
                xs[0] += delta;
                vec_of(&t(&xs, &[1]).apply_op1(Gelu).unwrap())[0] as f64 * rv[i] as f64
            };
            let fd = (at(step) - at(-step)) / (2.0 * step as f64);
            assert!(
                (fd - a[i] as f64).abs() < 1e-3 * (1.0 + fd.abs()),
                "dx[{i}] n={n} w={w}: analytic {} finite difference {fd}",
                a[i]
            );
        }
    }
    // The vector build and the fallback agree bit for bit.
    let xv = random(&mut rng, 1000, 8.0);
    let dy = random(&mut rng, 1000, 1.0);
    let outs: Vec<Vec<f32>> = isas()
        .into_iter()
        .map(|isa| {
            let mut dx = vec![0f32; 1000];
            kernels::gelu_backward(isa, &xv, &dy, &mut dx);
            dx
        })
        .collect();
    assert!(outs.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn gelu_gradient_tails_are_exact() {
    // Far in the tails e^(−x²/2) underflows: it must be exactly 0 (the gradient exactly dy or
    // 0), not a number at the edge of the subnormal range, which makes every product with it
    // subnormal and a hundred times slower.
    let x = [14.0f32, 20.0, 90.0, -14.0, -20.0, -90.0];
    let dy = [0.75f32; 6];
    for isa in isas() {
        let mut dx = [f32::NAN; 6];
        kernels::gelu_backward(isa, &x, &dy, &mut dx);
        assert_eq!(dx, [0.75, 0.75, 0.75, 0.0, 0.0, 0.0], "{isa:?}");
    }
}

#[test]
fn dot_all_gives_every_pairwise_dot_product() {
    let mut rng = Rng::new(14);
    for (n, k, o) in [
        (0, 4, 3),
        (2, 0, 3),
        (3, 5, 0),
        (1, 1, 1),
        (3, 13, 5),
        (33, 384, 70),
    ] {
        let (x, rows) = (random(&mut rng, n * k, 1.0), random(&mut rng, o * k, 1.0));
        let mut out = vec![f32::NAN; n * o];
        kernels::dot_all(&x, &rows, &mut out, (n, k, o));
        for i in 0..n {
            for j in 0..o {
                let want: f32 = (0..k).map(|d| x[i * k + d] * rows[j * k + d]).sum();
                let got = out[i * o + j];
                assert!(
                    (got - want).abs() < 1e-4,
                    "{n}x{k}x{o} [{i},{j}]: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn dense_op_matches_candle_linear_forward_and_backward() {
    use candle_core::{Module, Var};
    use cqr::models::bert::DenseOp;
    let mut rng = Rng::new(15);
    for (b, len, k, o) in [(1, 1, 1, 1), (2, 3, 5, 7), (3, 9, 33, 17), (4, 7, 384, 96)] {
        let (xv, wv, bv) = (
            random(&mut rng, b * len * k, 1.5),
            random(&mut rng, o * k, 0.5),
            random(&mut rng, o, 0.5),
        );
        let (x, w, bias) = (
            Var::from_tensor(&t(&xv, &[b, len, k])).unwrap(),
            Var::from_tensor(&t(&wv, &[o, k])).unwrap(),
            Var::from_tensor(&t(&bv, &[o])).unwrap(),
        );
        let r = t(&random(&mut rng, b * len * o, 1.0), &[b, len, o]);
        let fused = x
            .as_tensor()
            .apply_op3(w.as_tensor(), bias.as_tensor(), DenseOp)
            .unwrap();
        let plain = candle_nn::Linear::new(w.as_tensor().clone(), Some(bias.as_tensor().clone()))
            .forward(x.as_tensor())
            .unwrap();
        assert_eq!(fused.dims(), plain.dims());
        let scale = (k as f32).sqrt();
        let d = max_diff(&vec_of(&fused), &vec_of(&plain));
        assert!(d < 1e-5 * scale, "forward {b}x{len}x{k}->{o}: {d}");
        let gf = weighted_sum(&fused, &r).backward().unwrap();
        let gp = weighted_sum(&plain, &r).backward().unwrap();
        for (what, v) in [("x", &x), ("w", &w), ("b", &bias)] {
            let (a, e) = (vec_of(gf.get(v).unwrap()), vec_of(gp.get(v).unwrap()));
            assert_eq!(gf.get(v).unwrap().dims(), v.dims(), "d{what} shape");
            let d = max_diff(&a, &e);
            assert!(
                d < 1e-5 * (b * len * o) as f32,
                "d{what} {b}x{len}x{k}->{o}: {d}"
            );
        }
    }
    // An empty batch gives an empty output and empty input gradient, zero weight gradients.
    let x = Var::from_tensor(&Tensor::zeros((0, 4), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let w = Var::from_tensor(&t(&[1.0; 12], &[3, 4])).unwrap();
    let bias = Var::from_tensor(&t(&[1.0; 3], &[3])).unwrap();
    let y = x
        .as_tensor()
        .apply_op3(w.as_tensor(), bias.as_tensor(), DenseOp)
        .unwrap();
    assert_eq!(y.dims(), &[0, 3]);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(vec_of(g.get(&w).unwrap()), vec![0.0; 12]);
    assert_eq!(vec_of(g.get(&bias).unwrap()), vec![0.0; 3]);
}

/// The attention of a padded batch as plain candle ops: heads split, scaled scores, the
/// additive −10,000 mask on padded keys, softmax, the dropout mask, heads merged.
fn plain_attention(
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    lens: &[usize],
    heads: usize,
    keep: Option<&[f32]>,
) -> Tensor {
    let (b, n, h) = q.dims3().unwrap();
    let d = h / heads;
    let split = |y: &Tensor| {
        y.reshape((b, n, heads, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    let (q, k, v) = (split(q), split(k), split(v));
    let bias: Vec<f32> = lens
        .iter()
        .flat_map(|&l| (0..n).map(move |j| if j < l { 0.0 } else { -10_000.0 }))
        .collect();
    let bias = t(&bias, &[b, 1, 1, n]);
    let scores = (q.matmul(&k.t().unwrap().contiguous().unwrap()).unwrap() / (d as f64).sqrt())
        .unwrap()
        .broadcast_add(&bias)
        .unwrap();
    let mut probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
    if let Some(m) = keep {
        probs = (probs * t(m, &[b, heads, n, n])).unwrap();
    }
    probs
        .matmul(&v)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((b, n, h))
        .unwrap()
}

#[test]
fn attention_op_matches_candle_attention_forward_and_backward() {
    use candle_core::Var;
    use cqr::models::bert::Attention;
    let mut rng = Rng::new(16);
    // (lengths, padded length, hidden, heads, dropout)
    let cases: [(&[usize], usize, usize, usize, bool); 5] = [
        (&[1], 1, 4, 1, false),
        (&[3, 1], 3, 6, 2, false),
        (&[5, 9, 2], 9, 12, 3, true),
        (&[17, 11, 17, 1], 17, 64, 2, true),
        (&[], 4, 8, 2, false),
    ];
    for (lens, len, h, heads, with_drop) in cases {
        let b = lens.len();
        let n = b * len * h;
        let vars: Vec<Var> = (0..3)
            .map(|_| Var::from_tensor(&t(&random(&mut rng, n, 2.0), &[b, len, h])).unwrap())
            .collect();
        let keep: Option<Vec<f32>> = with_drop.then(|| {
            random(&mut rng, b * heads * len * len, 1.0)
                .iter()
                .map(|r| if *r < -0.6 { 0.0 } else { 1.25 })
                .collect()
        });
        let r = t(&random(&mut rng, n, 1.0), &[b, len, h]);
        let (q, k, v) = (
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
        );
        let op = Attention {
            heads,
            lens: lens.to_vec(),
            keep: keep.clone(),
        };
        let fused = q.apply_op3(k, v, op).unwrap();
        assert_eq!(fused.dims(), &[b, len, h]);
        if b == 0 {
            continue;
        }
        let plain = plain_attention((q, k, v), lens, heads, keep.as_deref());
        let d = max_diff(&vec_of(&fused), &vec_of(&plain));
        assert!(d < 1e-5, "forward {lens:?} h={h} heads={heads}: {d}");
        let gf = weighted_sum(&fused, &r).backward().unwrap();
        let gp = weighted_sum(&plain, &r).backward().unwrap();
        for (what, var) in ["q", "k", "v"].iter().zip(&vars) {
            let (a, e) = (vec_of(gf.get(var).unwrap()), vec_of(gp.get(var).unwrap()));
            let d = max_diff(&a, &e);
            assert!(d < 1e-4, "d{what} {lens:?} h={h} heads={heads}: {d}");
        }
    }
    // Each path of the kernel gives the same answer to rounding (the AVX2 build may reorder
    // nothing, so bit for bit).
    let (len, h, heads) = (13, 40, 4);
    let qkv: Vec<Vec<f32>> = (0..3).map(|_| random(&mut rng, len * h, 2.0)).collect();
    let outs: Vec<Vec<f32>> = isas()
        .into_iter()
        .map(|isa| {
            let mut ctx = vec![f32::NAN; len * h];
            kernels::attention_seq(
                isa,
                (&qkv[0], &qkv[1], &qkv[2]),
                &mut ctx,
                (len, 9, h, heads),
                None,
            );
            ctx
        })
        .collect();
    assert!(outs.windows(2).all(|w| w[0] == w[1]));
}
