#!/usr/bin/env bash
# The drift-check benchmark on BANKING77 (examples/drift_bench.rs): 10 intents withheld, models
# trained on 70% of the rest; false alarms on batches from the other 30%, detections on batches
# with 10% new intents and on the balanced test split (a prior shift), at 100, 500 and 2,000 rows,
# 50 batches each; the label-free accuracy estimate's error; the wall time of one check of 2,000
# rows. Linear-only and, when the encoder is fetched, the ensemble. Merges its figures into
# bench/results.json under "drift" (scripts/bench.sh runs it last). About 10 minutes on 2 cores.
# Usage: scripts/bench_drift.sh [BANKING77_DIR]   (default ../shared/data/banking77)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/banking77}"
[ -f "$data/train.csv" ] && [ -f "$data/test.csv" ] || { echo "error: no train.csv/test.csv in $data" >&2; exit 2; }
cargo build --release --locked -j "${CQR_BUILD_JOBS:-2}" --bin cqr --example drift_bench
target="${CARGO_TARGET_DIR:-target}/release"
work=bench/work/drift
rm -rf "$work"; mkdir -p "$work"
encoder=()
[ -f models/all-MiniLM-L6-v2/model.safetensors ] && encoder=(--encoder models/all-MiniLM-L6-v2)
CQR_BIN="$target/cqr" "$target/examples/drift_bench" "$data" "$work" "${encoder[@]}" > "$work/out.txt"
python3 - "$work/out.txt" <<'PY'
import json, sys
sys.path.insert(0, "scripts")
from bench_results import merge, stamp
text = open(sys.argv[1]).read()
# Training prints its summary first; the figures are the JSON object after it.
drift = json.loads(text[text.index("\n{\n") + 1:] if not text.startswith("{") else text)
drift = {**stamp(), **drift}
drift["targets"] = {"no_drift_alarm_rate_max": 0.05, "new_intents_detection_at_500_min": 0.95,
                    "no_drift_estimate_mae_points_max": 1.5, "linear_check_2000_rows_seconds_max": 2.0}
merge("drift", drift)
for model in ("linear", "ensemble"):
    if model not in drift:
        continue
    m = drift[model]
    print(f"{model}: check of 2,000 rows {m['check_2000_rows']['total_seconds']:.2f} s "
          f"(scoring {m['check_2000_rows']['scoring_seconds']:.2f} s)", file=sys.stderr)
    for scenario, sizes in m["scenarios"].items():
        for size, r in sizes.items():
            print(f"  {scenario:12} {size:>5} rows: alarms {r['alarm_rate']:.2f}, estimate MAE "
                  f"{r['estimate_mae_points']:.2f} points, fired {r['tests_fired']}", file=sys.stderr)
PY
