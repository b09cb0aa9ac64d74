#!/usr/bin/env bash
# Benchmark (not part of the tests): on BANKING77, train the linear model, evaluate it on the test
# split, and time `cqr classify` over the test texts repeated to >= 300k rows. Writes
# bench/results.json. Usage: scripts/bench.sh [BANKING77_DIR]   (default ../shared/data/banking77)
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
  python3 - "$@" <<'PY'
import json, resource, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t = time.monotonic()
with open(out, "wb") as f:
    rc = subprocess.run(cmd, stdout=f).returncode
secs = time.monotonic() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": round(secs, 3), "peak_rss_mib": round(rss, 1), "rc": rc}))
PY
}

echo "== train on $data/train.csv" >&2
train=$(measure "$work/train.txt" "$cqr" train "$data/train.csv" -o "$work/banking77" --force --seed 42 \
  --components linear)
cat "$work/train.txt" >&2
echo "== evaluate on $data/test.csv" >&2
eval_m=$(measure "$work/eval.json" "$cqr" evaluate "$work/banking77" "$data/test.csv" --format json \
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
out_rows=$(wc -l < "$work/big.out.jsonl")
[ "$out_rows" -eq "$rows" ] || { echo "error: $out_rows output lines for $rows inputs" >&2; exit 1; }

echo "== linear + encoder ensemble" >&2
scripts/fetch-model.sh >&2
# A fresh embedding cache, so the training time includes encoding every text once.
rm -rf "$work/cache"
export CQR_CACHE="$work/cache"
ens_train=$(measure "$work/ens_train.txt" "$cqr" train "$data/train.csv" -o "$work/banking77-ensemble" --force --seed 42 \
  --components linear,encoder)
cat "$work/ens_train.txt" >&2
ens_eval=$(measure "$work/ens_eval.json" "$cqr" evaluate "$work/banking77-ensemble" "$data/test.csv" --format json)
ens_rows=$(python3 -c 'import csv,sys; print(sum(1 for _ in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8"))))' "$data/test.csv")
ens_classify=$(measure /dev/null "$cqr" classify "$work/banking77-ensemble" "$data/test.csv" -o "$work/ens.out.jsonl")

python3 - "$work/eval.json" "$rows" "$train" "$eval_m" "$classify" "$work/ens_eval.json" "$ens_rows" "$ens_train" "$ens_classify" <<'PY' > bench/results.json
import json, os, platform, subprocess, sys, datetime
ev = json.load(open(sys.argv[1]))
rows = int(sys.argv[2])
train, evm, cl = (json.loads(x) for x in sys.argv[3:6])
ens = json.load(open(sys.argv[6]))
ens_rows = int(sys.argv[7])
ens_train, ens_cl = json.loads(sys.argv[8]), json.loads(sys.argv[9])
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())

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

print(json.dumps({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "commit": commit,
    "machine": {"cpu": cpu, "cores": os.cpu_count()},
    "data": "BANKING77 (train.csv -> test.csv)",
    "linear": figures(ev, rows, train, cl),
    "ensemble_linear_encoder": figures(ens, ens_rows, ens_train, ens_cl),
    "targets": {"accuracy": 0.92, "classify_texts_per_s": 100000, "peak_rss_mib": 500},
}, indent=2))
PY
cat bench/results.json
