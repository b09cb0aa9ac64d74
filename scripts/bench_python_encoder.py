#!/usr/bin/env python3
"""Python baseline: sentence-embedding throughput of all-MiniLM-L6-v2 via sentence-transformers (CPU).

Not part of the tests. Needs the venv at ~/.cache/cqr/tools/st-venv (CPU use only; torch,
sentence-transformers, numpy). Example, from the repository root:

    ~/.cache/cqr/tools/st-venv/bin/python scripts/bench_python_encoder.py \
        --texts ../shared/data/banking77/test.csv --threads 2 --batch 32 --max-len 128 \
        --repeat 3 --json bench/work/python_encoder.json

Warms up on 64 texts, then times model.encode(all texts, batch_size=B, convert_to_numpy=True,
normalize_embeddings=True); sentence-transformers sorts by length internally. With --repeat R the
fastest of R timed passes is reported. Stdout gets the result JSON only; --check-against REF.json
(any JSON with "texts_per_second", e.g. an earlier run) adds one line: the ratio to that figure.
"""
import argparse
import csv
import json
import os
import sys
import time

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "all-MiniLM-L6-v2")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--texts", required=True, help="CSV file with a `text` column")
    p.add_argument("--threads", type=int, required=True, help="torch.set_num_threads(N)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-len", type=int, default=128, help="model.max_seq_length")
    p.add_argument("--repeat", type=int, default=1, help="timed passes; the fastest is reported")
    p.add_argument("--json", help="write the result JSON here (it is always printed too)")
    p.add_argument("--check-against", metavar="REF.json", help="print throughput ratio to REF")
    p.add_argument("--onnx", metavar="DIR", help="also time ONNX Runtime, f32 and dynamic int8 "
                   "(per-channel), on the model exported to DIR (made once)")
    p.add_argument("--model", default=MODEL, help=argparse.SUPPRESS)
    a = p.parse_args()

    # Offline, quiet, and the Rust tokenizer's thread pool capped like torch's.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAYON_RS_NUM_CPUS", str(a.threads))
    import torch
    import sentence_transformers
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(a.threads)

    with open(a.texts, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    if not texts:
        sys.exit(f"error: no texts in {a.texts}")

    model = SentenceTransformer(a.model, device="cpu")
    model.max_seq_length = a.max_len
    kw = dict(batch_size=a.batch, convert_to_numpy=True, normalize_embeddings=True,
              show_progress_bar=False)

    model.encode(texts[:64], **kw)  # warm-up
    best = float("inf")
    for _ in range(max(1, a.repeat)):
        t = time.perf_counter()
        emb = model.encode(texts, **kw)
        best = min(best, time.perf_counter() - t)
    assert emb.shape[0] == len(texts)

    res = {}
    if a.onnx:
        res["onnxruntime"] = onnx_bench(a, model, texts, emb)
    res = {
        **res,
        "texts": len(texts),
        "seconds": round(best, 4),
        "texts_per_second": round(len(texts) / best, 2),
        "threads": a.threads,
        "batch": a.batch,
        "max_len": a.max_len,
        "repeat": max(1, a.repeat),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }
    line = json.dumps(res)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            f.write(line + "\n")
    print(line)
    if a.check_against:
        with open(a.check_against, encoding="utf-8") as f:
            ref = json.load(f)["texts_per_second"]
        print(f"ratio vs {a.check_against}: {res['texts_per_second'] / ref:.3f}x ({ref} texts/s)")
    return 0


def onnx_bench(a, model, texts, reference):
    """Exports the transformer to ONNX (once), quantizes it dynamically to int8 (per-channel
    weights, as onnxruntime.quantization does by default for MatMul), and times both sessions on
    the same texts: tokenised by the model's own tokenizer in batches sorted by length, padded
    per batch, mean-pooled and L2-normalised, as sentence-transformers does. Also reports the
    cosine of each to the torch embeddings."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    os.makedirs(a.onnx, exist_ok=True)
    f32_path = os.path.join(a.onnx, "model.onnx")
    int8_path = os.path.join(a.onnx, "model.int8.onnx")
    tok = model.tokenizer
    bert = model[0].auto_model
    if not os.path.exists(f32_path):
        class Hidden(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        enc = tok(["an example"], return_tensors="pt")
        torch.onnx.export(
            Hidden(bert).eval(), (enc["input_ids"], enc["attention_mask"]), f32_path,
            input_names=["input_ids", "attention_mask"], output_names=["hidden"],
            dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"},
                          "hidden": {0: "b", 1: "t"}},
            opset_version=17, dynamo=False)
    if not os.path.exists(int8_path):
        quantize_dynamic(f32_path, int8_path, weight_type=QuantType.QInt8, per_channel=True)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = {"version": ort.__version__}
    for name, path in [("f32", f32_path), ("int8", int8_path)]:
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

        def run():
            emb = np.zeros((len(texts), reference.shape[1]), dtype=np.float32)
            for s in range(0, len(order), a.batch):
                idx = order[s:s + a.batch]
                enc = tok([texts[i] for i in idx], padding=True, truncation=True,
                          max_length=a.max_len, return_tensors="np")
                mask = enc["attention_mask"].astype(np.int64)
                h = sess.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                    "attention_mask": mask})[0]
                m = mask[:, :, None].astype(np.float32)
                v = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
                emb[idx] = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
            return emb

        run()
        best = float("inf")
        for _ in range(max(1, a.repeat)):
            t = time.perf_counter()
            emb = run()
            best = min(best, time.perf_counter() - t)
        cos = (emb * reference).sum(1)
        out[name] = {"seconds": round(best, 4), "texts_per_second": round(len(texts) / best, 2),
                     "cosine_to_torch_min": round(float(cos.min()), 5),
                     "cosine_to_torch_mean": round(float(cos.mean()), 6)}
    return out


if __name__ == "__main__":
    sys.exit(main())
