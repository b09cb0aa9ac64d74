#!/usr/bin/env bash
# Fine-tune benchmark (not part of the tests): the default fine-tune on BANKING77 (`cqr train
# --components linear,encoder --fine-tune --seed 42`, 4 epochs), timed with its peak RSS, then
# evaluated on the test split (the ensemble and each component alone). Adds `fine_tune` to
# bench/results.json: wall-clock minutes of the fine-tune and of the whole train, seconds and
# validation accuracy per epoch, test accuracy and ECE, against the targets (fine-tune <= 8
# minutes, best model >= 94.5%). About 8 minutes on 2 cores; scripts/bench.sh's `fine_tuned`
# model is the same run inside the full benchmark.
# Usage: scripts/bench_finetune.sh [BANKING77_DIR] [extra `cqr train` arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/banking77}"
[ $# -gt 0 ] && shift
[ -f "$data/train.csv" ] && [ -f "$data/test.csv" ] || { echo "error: no train.csv/test.csv in $data" >&2; exit 2; }
cargo build --release --locked -j "${CQR_BUILD_JOBS:-2}" --bin cqr
cqr="${CARGO_TARGET_DIR:-target}/release/cqr"
scripts/fetch-model.sh >&2
work=bench/work/fine_tune
rm -rf "$work"
mkdir -p "$work"
# Runs go to a store of the benchmark's own, not the project's runs/.
export CQR_RUNS_DIR="$work/runs"

echo "== train: --components linear,encoder --fine-tune --seed 42 $*" >&2
python3 scripts/bench_results.py measure /dev/null "$cqr" train "$data/train.csv" -o "$work/model" \
  --force --seed 42 --components linear,encoder --fine-tune "$@" > "$work/train.json"
python3 -c 'import json,sys; rc=json.load(open(sys.argv[1]))["rc"]; sys.exit(f"error: cqr train exited with {rc}" if rc else 0)' "$work/train.json"
echo "== evaluate on $data/test.csv" >&2
"$cqr" evaluate "$work/model" "$data/test.csv" --json > "$work/eval.json"

python3 - "$work" "$*" <<'PY'
import json, os, sys
sys.path.insert(0, "scripts")
from bench_results import merge, stamp
work, extra = sys.argv[1], sys.argv[2]
load = lambda p: json.load(open(os.path.join(work, p)))
train, ev = load("train.json"), load("eval.json")
manifest = load("model/manifest.json")
enc = next(c for c in manifest["components"] if c["kind"] == "encoder")
ft = enc["settings"]["fine_tune"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
res = {
    **stamp(),
    "machine": {"cpu": cpu, "cores": os.cpu_count()},
    "command": "cqr train train.csv --components linear,encoder --fine-tune --seed 42" + (f" {extra}" if extra else ""),
    "fine_tune_minutes": round(ft["seconds"] / 60, 2),
    "train_minutes": round(train["seconds"] / 60, 2),
    "train_peak_rss_mib": train["peak_rss_mib"],
    "best_epoch": ft["best_epoch"],
    "epochs": [{"epoch": h["epoch"], "seconds": round(h["seconds"], 1),
                "valid_accuracy": round(h["valid_accuracy"], 4)} for h in ft["history"]],
    "test_accuracy": round(ev["accuracy"], 4),
    "test_ece": round(ev["ece"], 4),
    "components": {k: round(c["accuracy"], 4) for k, c in ev.get("components", {}).items()},
    "targets": {"fine_tune_minutes": 8, "best_accuracy": 0.945},
}
merge("fine_tune", res)
print(json.dumps(res, indent=2))
PY
