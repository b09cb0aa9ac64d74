#!/usr/bin/env bash
# Encoder speed benchmark (not part of the tests), on BANKING77 test (3,080 texts):
#  - the encoder alone (examples/encoder_speed.rs): the old candle path (padded batches sorted by
#    characters, then by tokens) beside cqr's packed kernels, f32 and int8, vector and scalar
#    kernels (and int8 on AVX2 instead of VNNI where the CPU has VNNI), 2 threads and 1, and a
#    batch-size sweep;
#  - the whole encoder path: `cqr classify` with a linear + encoder ensemble (cqr has no
#    encoder-only model; the ensemble's encoder is also evaluated alone) trained at f32 and at int8, alternating with Python sentence-transformers (torch) and ONNX Runtime
#    (f32 and dynamic int8 of the same model) on the same texts and cores, two rounds, the best
#    of each kept;
#  - accuracy of both ensembles and of their encoder components alone (cqr evaluate).
# Adds its figures under "encoder" in bench/results.json. About 25 minutes on 2 cores (15 on an AVX-512 Xeon).
# Python needs the venv of scripts/bench_python_encoder.py; without it only cqr is measured.
# Usage: scripts/bench_encoder.sh [BANKING77_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/banking77}"
[ -f "$data/train.csv" ] && [ -f "$data/test.csv" ] || { echo "error: no train.csv/test.csv in $data" >&2; exit 2; }
cargo build --release --locked -j "${CQR_BUILD_JOBS:-2}" --bin cqr --example encoder_speed
target="${CARGO_TARGET_DIR:-target}/release"
cqr="$target/cqr"
speed="$target/examples/encoder_speed"
scripts/fetch-model.sh >&2
work=bench/work/encoder
mkdir -p "$work"
export CQR_CACHE="$work/cache"
threads=$(nproc)

echo "== encoder alone: old path, packed f32/int8, vector and scalar kernels ($threads threads)" >&2
"$speed" "$data/test.csv" --repeat 2 --skip-scalar > "$work/speed.json"
cat "$work/speed.json" >&2
# The scalar kernels in a process of their own: measured in the same process after the vector
# ones they looked faster than them (warm-up, not the kernels).
echo "== encoder alone, scalar kernels" >&2
CQR_SIMD=scalar "$speed" "$data/test.csv" --repeat 1 --skip-candle --skip-scalar > "$work/speed_scalar.json"
echo "== encoder alone, 1 thread" >&2
RAYON_NUM_THREADS=1 "$speed" "$data/test.csv" --repeat 1 --skip-candle --skip-scalar > "$work/speed_1thread.json"
for b in 8 16 32 64 128; do
  echo "== encoder alone, batch $b" >&2
  "$speed" "$data/test.csv" --batch "$b" --repeat 1 --skip-candle --skip-scalar > "$work/speed_batch$b.json"
done

if [ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["isa"])' "$work/speed.json")" = avx512-vnni ]; then
  echo "== encoder alone, int8 on the AVX2 kernel instead of VNNI" >&2
  CQR_SIMD=avx2 "$speed" "$data/test.csv" --repeat 1 --skip-candle --skip-scalar > "$work/speed_avx2.json"
fi

for p in f32 int8; do
  echo "== train the linear + encoder ensemble at $p" >&2
  "$cqr" train "$data/train.csv" -o "$work/ensemble_$p" --force --seed 42 \
    --components linear,encoder --precision "$p" > /dev/null
  "$cqr" evaluate "$work/ensemble_$p" "$data/test.csv" --json > "$work/ensemble_$p.eval.json"
done

py="${HOME}/.cache/cqr/tools/st-venv/bin/python"
for round in 1 2; do
  for m in ensemble_f32 ensemble_int8; do
    echo "== round $round: cqr classify, $m" >&2
    python3 - "$work/classify_${m}_$round.json" "$cqr" classify "$work/$m" "$data/test.csv" \
      -o "$work/$m.out.jsonl" <<'PY'
import json, subprocess, sys, time
t = time.monotonic()
subprocess.run(sys.argv[2:], check=True)
json.dump({"seconds": time.monotonic() - t}, open(sys.argv[1], "w"))
PY
  done
  if [ -x "$py" ]; then
    echo "== round $round: python sentence-transformers and ONNX Runtime" >&2
    "$py" scripts/bench_python_encoder.py --texts "$data/test.csv" --threads "$threads" --batch 32 \
      --max-len 128 --repeat 2 --onnx "$work/onnx" --json "$work/python_$round.json" >&2 \
      || rm -f "$work/python_$round.json"
  fi
done

python3 - "$work" "$data/test.csv" <<'PY'
import csv, glob, json, os, sys
sys.path.insert(0, "scripts")
from bench_results import merge, stamp
work, test = sys.argv[1], sys.argv[2]
load = lambda p: json.load(open(os.path.join(work, p)))
n = sum(1 for _ in csv.DictReader(open(test, newline="", encoding="utf-8")))
speed = load("speed.json")
one = load("speed_1thread.json")
# Each size in a process of its own (the main run's figures come after the candle baseline).
sweep = {}
for b in (8, 16, 32, 64, 128):
    s = load(f"speed_batch{b}.json")
    sweep[str(b)] = {"f32": s["f32_texts_per_s"], "int8": s["int8_texts_per_s"]}
enc = {
    **stamp(),
    "texts": n,
    "isa": speed["isa"],
    "threads": speed["threads"],
    "encoder_alone_texts_per_s": {
        "candle_padded_char_sorted": speed["candle_texts_per_s"],
        "candle_padded_token_sorted": speed["candle_token_sorted_texts_per_s"],
        "packed_f32_scalar_kernels": load("speed_scalar.json")["f32_texts_per_s"],
        "packed_f32": speed["f32_texts_per_s"],
        "packed_f32_1_thread": one["f32_texts_per_s"],
        "packed_int8_scalar_kernels": load("speed_scalar.json")["int8_texts_per_s"],
        "packed_int8": speed["int8_texts_per_s"],
        "packed_int8_1_thread": one["int8_texts_per_s"],
    },
    "cosine_to_candle": {"f32": speed["f32_cosine_to_candle"], "int8": speed["int8_cosine_to_candle"]},
    "batch_sweep_texts_per_s": sweep,
}
if os.path.exists(os.path.join(work, "speed_avx2.json")):
    enc["encoder_alone_texts_per_s"]["packed_int8_avx2_kernel"] = load("speed_avx2.json")["int8_texts_per_s"]
enc["cpu"] = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
def classify(m):
    secs = min(load(f"classify_{m}_{r}.json")["seconds"] for r in (1, 2))
    return round(n / secs, 1)
cl = {}
for p in ("f32", "int8"):
    ev = load(f"ensemble_{p}.eval.json")
    cl[p] = {
        "classify_texts_per_s": classify(f"ensemble_{p}"),
        "accuracy": round(ev["accuracy"], 4),
        "encoder_alone_accuracy": round(ev["components"]["encoder"]["accuracy"], 4),
    }
enc["classify_ensemble"] = cl

enc["int8_accuracy_loss_points"] = {
    "ensemble": round(100 * (cl["f32"]["accuracy"] - cl["int8"]["accuracy"]), 2),
    "encoder_alone": round(100 * (cl["f32"]["encoder_alone_accuracy"] - cl["int8"]["encoder_alone_accuracy"]), 2),
}
pys = [load(os.path.basename(f)) for f in sorted(glob.glob(os.path.join(work, "python_*.json")))]
if pys:
    torch = max(p["texts_per_second"] for p in pys)
    ort = [p["onnxruntime"] for p in pys if "onnxruntime" in p]
    enc["python"] = {"torch_texts_per_s": round(torch, 1), "torch": pys[0].get("torch"),
                     "sentence_transformers": pys[0].get("sentence_transformers")}
    if ort:
        enc["python"]["onnxruntime"] = {
            "version": ort[0]["version"],
            **{f"{p}_texts_per_s": max(o[p]["texts_per_second"] for o in ort) for p in ("f32", "int8")},
            "int8_cosine_to_torch_min": min(o["int8"]["cosine_to_torch_min"] for o in ort),
        }
    a = enc["encoder_alone_texts_per_s"]
    enc["vs_torch"] = {
        "encoder_alone_f32": round(a["packed_f32"] / torch, 2),
        "encoder_alone_int8": round(a["packed_int8"] / torch, 2),
        "classify_ensemble_f32": round(cl["f32"]["classify_texts_per_s"] / torch, 2),
        "classify_ensemble_int8": round(cl["int8"]["classify_texts_per_s"] / torch, 2),
        "old_candle_path": round(a["candle_padded_char_sorted"] / torch, 2),
    }
    if ort:
        o = enc["python"]["onnxruntime"]
        enc["vs_onnxruntime"] = {"encoder_alone_f32": round(a["packed_f32"] / o["f32_texts_per_s"], 2),
                                 "encoder_alone_int8": round(a["packed_int8"] / o["int8_texts_per_s"], 2)}
enc["targets"] = {"f32_vs_torch": 1.2, "int8_vs_torch": 3.0, "int8_accuracy_loss_points_max": 0.3}
merge("encoder", enc)
print(json.dumps(enc, indent=2))
PY
