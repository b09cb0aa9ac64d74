#!/usr/bin/env bash
# Benchmark (not part of the tests): on BANKING77, train the linear model, evaluate it on the test
# split, and time `cqr classify` over the test texts repeated to >= 300k rows; then the linear +
# encoder ensembles (logistic head, MLP head, fine-tuned encoder) with their components alone,
# the encoder path's and the cascade's throughput, and Python sentence-transformers side by side
# when its venv exists; then the drift-check benchmark (scripts/bench_drift.sh), the
# out-of-scope benchmark (scripts/bench_oos.sh) and the respond benchmark on the sample data
# (scripts/bench_respond.sh) and the encoder speed benchmark (scripts/bench_encoder.sh). Writes
# bench/results.json. About 105 minutes on 2 cores.
# Usage: scripts/bench.sh [BANKING77_DIR]   (default ../shared/data/banking77)
# CQR_BENCH_SKIP_FINE_TUNE=1 leaves out the fine-tuned model (~20 minutes of it).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/banking77}"
[ -f "$data/train.csv" ] && [ -f "$data/test.csv" ] || { echo "error: no train.csv/test.csv in $data" >&2; exit 2; }
cargo build --release --locked -j "${CQR_BUILD_JOBS:-2}"
cqr="${CARGO_TARGET_DIR:-target}/release/cqr"
work=bench/work
mkdir -p "$work"

# Runs a command with stdout to $1; prints {"seconds", "peak_rss_mib", "rc"} (peak RSS of the child).
measure() {
  python3 scripts/bench_results.py measure "$@"
}

echo "== train on $data/train.csv" >&2
train=$(measure "$work/train.txt" "$cqr" train "$data/train.csv" -o "$work/banking77" --force --seed 42 \
  --components linear)
cat "$work/train.txt" >&2
echo "== evaluate on $data/test.csv" >&2
eval_m=$(measure "$work/eval.json" "$cqr" evaluate "$work/banking77" "$data/test.csv" --json \
  --report-dir "$work/report")

echo "== classify throughput" >&2
# Texts may hold newlines, so the row count comes from the generator, not from wc -l.
rows=$(python3 - "$data/test.csv" "$work/big.csv" <<'PY'
import csv, sys
rows = [r["text"] for r in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8"))]
reps = -(-300_000 // len(rows))
with open(sys.argv[2], "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["id", "text"])
    for k in range(reps):
        for i, t in enumerate(rows):
            w.writerow([f"{k}-{i}", t])
print(reps * len(rows))
PY
)
classify=$(measure /dev/null "$cqr" classify "$work/banking77" "$work/big.csv" -o "$work/big.out.jsonl")
# The intent alone (no sentiment, priority or PII work), as before those fields existed.
classify_intent=$(measure /dev/null "$cqr" classify "$work/banking77" "$work/big.csv" --fields intent -o "$work/big.intent.jsonl")
out_rows=$(wc -l < "$work/big.out.jsonl")
[ "$out_rows" -eq "$rows" ] || { echo "error: $out_rows output lines for $rows inputs" >&2; exit 1; }

echo "== linear + encoder ensembles" >&2
scripts/fetch-model.sh >&2
# A fresh embedding cache, so the first ensemble's training time includes encoding every text.
rm -rf "$work/cache"
export CQR_CACHE="$work/cache"
test_rows=$(python3 -c 'import csv,sys; print(sum(1 for _ in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8"))))' "$data/test.csv")

# bench_model NAME TRAIN-ARGS...: train, evaluate (plain and cascade), classify the test texts
# (encoder path and cascade); figures land in $work/NAME.*.
bench_model() {
  local name=$1; shift
  echo "== $name: train $*" >&2
  measure "$work/$name.train.txt" "$cqr" train "$data/train.csv" -o "$work/$name" --force --seed 42 "$@" > "$work/$name.train.json"
  cat "$work/$name.train.txt" >&2
  "$cqr" evaluate "$work/$name" "$data/test.csv" --json > "$work/$name.eval.json"
  "$cqr" evaluate "$work/$name" "$data/test.csv" --json --cascade > "$work/$name.cascade.json"
  measure /dev/null "$cqr" classify "$work/$name" "$data/test.csv" -o "$work/$name.out.jsonl" > "$work/$name.classify.json"
  measure /dev/null "$cqr" classify "$work/$name" "$data/test.csv" --cascade -o "$work/$name.cascade.jsonl" > "$work/$name.cascade_classify.json"
}
bench_model ensemble --components linear,encoder
bench_model ensemble_mlp --components linear,encoder --head mlp
if [ -z "${CQR_BENCH_SKIP_FINE_TUNE:-}" ]; then
  bench_model fine_tuned --components linear,encoder --fine-tune
fi

# Python sentence-transformers on the same texts and cores, when its venv is installed
# (see scripts/bench_python_encoder.py); skipped otherwise.
py="${HOME}/.cache/cqr/tools/st-venv/bin/python"
if [ -x "$py" ]; then
  echo "== python sentence-transformers encoder" >&2
  "$py" scripts/bench_python_encoder.py --texts "$data/test.csv" --threads "$(nproc)" --batch 32 \
    --max-len 128 --repeat 3 --json "$work/python_encoder.json" >&2 || rm -f "$work/python_encoder.json"
fi

python3 - "$work" "$rows" "$train" "$classify" "$test_rows" "$classify_intent" <<'PY' > bench/results.json
import json, os, platform, subprocess, sys, datetime
work, rows = sys.argv[1], int(sys.argv[2])
train, cl = json.loads(sys.argv[3]), json.loads(sys.argv[4])
test_rows = int(sys.argv[5])
cl_intent = json.loads(sys.argv[6])
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
load = lambda p: json.load(open(os.path.join(work, p)))

def figures(ev, rows, train, cl):
    """One model's figures: quality from evaluate, costs from the measured train and classify runs."""
    return {
        "accuracy": round(ev["accuracy"], 4),
        "macro_f1": round(ev["macro_f1"], 4),
        "ece": round(ev["ece"], 4),
        "abstain_rate": round(ev["abstain_rate"], 4),
        "accuracy_answered": round(ev["accuracy_answered"], 4),
        "latency_ms_p50": round(ev["latency_ms"]["p50"], 4),
        "latency_ms_p95": round(ev["latency_ms"]["p95"], 4),
        "train_seconds": train["seconds"],
        "train_peak_rss_mib": train["peak_rss_mib"],
        "classify_rows": rows,
        "classify_seconds": cl["seconds"],
        "classify_texts_per_s": round(rows / cl["seconds"]),
        "classify_peak_rss_mib": cl["peak_rss_mib"],
    }

out = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "commit": commit,
    "machine": {"cpu": cpu, "cores": os.cpu_count()},
    "data": "BANKING77 (train.csv -> test.csv)",
    "linear": figures(load("eval.json"), rows, train, cl),
}
# Every field (intent, sentiment, priority, PII) above; the intent group alone here.
out["linear"]["classify_intent_only_texts_per_s"] = round(rows / cl_intent["seconds"])
out["linear"]["classify_intent_only_peak_rss_mib"] = cl_intent["peak_rss_mib"]
for name in ["ensemble", "ensemble_mlp", "fine_tuned"]:
    if not os.path.exists(os.path.join(work, f"{name}.eval.json")):
        continue
    ev = load(f"{name}.eval.json")
    f = figures(ev, test_rows, load(f"{name}.train.json"), load(f"{name}.classify.json"))
    # Each component alone on the same rows (the encoder's own head, the linear model).
    f["components"] = {k: {m: round(v, 4) for m, v in c.items()} for k, c in ev.get("components", {}).items()}
    cas, cas_cl = load(f"{name}.cascade.json"), load(f"{name}.cascade_classify.json")
    f["cascade"] = {
        "accuracy": round(cas["accuracy"], 4),
        "accuracy_loss_vs_ensemble": round(ev["accuracy"] - cas["accuracy"], 4),
        "encoder_fraction": round(cas["cascade_encoder_fraction"], 4),
        "classify_texts_per_s": round(test_rows / cas_cl["seconds"]),
        "speedup_vs_encoder_path": round(f["classify_seconds"] / cas_cl["seconds"], 2),
    }
    manifest = json.load(open(os.path.join(work, name, "manifest.json")))
    enc = next((c for c in manifest["components"] if c["kind"] == "encoder"), None)
    if enc and enc["settings"].get("fine_tune"):
        ft = enc["settings"]["fine_tune"]
        f["fine_tune"] = {"seconds": round(ft["seconds"], 1), "best_epoch": ft["best_epoch"],
                          "history": ft["history"]}
    out[name] = f
if os.path.exists(os.path.join(work, "python_encoder.json")):
    py = load("python_encoder.json")
    ens = out["ensemble"]
    out["python_encoder"] = py
    # cqr's figure is the whole encoder path (tokenise, encode, both heads, calibration, JSON out);
    # Python's is encoding alone, so the ratio is conservative for cqr.
    out["encoder_path_vs_python"] = round(ens["classify_texts_per_s"] / py["texts_per_second"], 2)
out["targets"] = {"linear_accuracy": 0.92, "best_accuracy": 0.945, "ece": 0.015,
                  "classify_texts_per_s": 100000, "peak_rss_mib": 500,
                  "encoder_path_vs_python": 1.6, "cascade_speedup": 5, "cascade_max_loss": 0.003}
print(json.dumps(out, indent=2))
PY
# The drift-check benchmark adds its figures under "drift".
scripts/bench_drift.sh "$data"
# The out-of-scope benchmark adds its figures under "out_of_scope" (with the fine-tuned model
# unless CQR_BENCH_SKIP_FINE_TUNE=1).
oos_args=(--fine-tune)
[ "${CQR_BENCH_SKIP_FINE_TUNE:-}" = 1 ] && oos_args=()
scripts/bench_oos.sh "${oos_args[@]}" "$data"
# The respond benchmark (sample data, generated histories) adds its figures under "respond".
scripts/bench_respond.sh
# The encoder speed benchmark (beside torch and ONNX Runtime) adds its figures under "encoder".
scripts/bench_encoder.sh "$data"
cat bench/results.json
