#!/usr/bin/env bash
# The out-of-scope benchmark on BANKING77, the standard protocol: 20 intents withheld (seeded) as
# out of scope; models trained on the other 57 intents' training rows, once as they are (the
# default rule: no out-of-scope examples) and once with 100 withheld-intent training rows added
# as `oos` (the fitted rule), plus the classic baseline that trains `oos` as a class; tested on
# the whole test split, the withheld intents relabelled `oos`. For each: per score (1 − max
# softmax, entropy, margin, disagreement, novelty, the rule) AUROC and FPR at 95% TPR, and at the
# stored rule out-of-scope recall and precision, in-scope rejection and in-scope accuracy; and the
# novelty candidates (examples/novelty_candidates.rs) on the same split.
# Linear-only and, when the encoder is fetched, the ensemble; the fine-tuned ensemble with
# --fine-tune (2 epochs, about 10 minutes a model on 2 cores). Merges into bench/results.json under
# "out_of_scope" (scripts/bench.sh runs it). About 4 minutes without --fine-tune.
# Usage: scripts/bench_oos.sh [--fine-tune] [--only linear|ensemble|fine_tuned] [BANKING77_DIR]
#        (default ../shared/data/banking77; --only runs one model and keeps the others' figures)
set -euo pipefail
cd "$(dirname "$0")/.."
fine_tune=0; only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --fine-tune) fine_tune=1; shift ;;
    --only) only="$2"; shift 2 ;;
    *) break ;;
  esac
done
data="${1:-../shared/data/banking77}"
[ -f "$data/train.csv" ] && [ -f "$data/test.csv" ] || { echo "error: no train.csv/test.csv in $data" >&2; exit 2; }
cargo build --release --locked -j "${CQR_BUILD_JOBS:-2}" --bin cqr --example novelty_candidates
cqr="${CARGO_TARGET_DIR:-target}/release/cqr"
candidates="${CARGO_TARGET_DIR:-target}/release/examples/novelty_candidates"
work=bench/work/oos
rm -rf "$work"; mkdir -p "$work"

python3 - "$data" "$work" <<'PY'
import csv, random, sys
data, work = sys.argv[1], sys.argv[2]
read = lambda f: list(csv.DictReader(open(f"{data}/{f}", newline="")))
train, test = read("train.csv"), read("test.csv")
intents = sorted({r["category"] for r in train})
rng = random.Random(20261201)
withheld = set(rng.sample(intents, 20))
def write(name, rows):
    with open(f"{work}/{name}", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "intent"])
        w.writerows(rows)
in_scope = [(r["text"], r["category"]) for r in train if r["category"] not in withheld]
oos_pool = [r["text"] for r in train if r["category"] in withheld]
oos_rows = [(t, "oos") for t in rng.sample(oos_pool, 100)]
write("train_default.csv", in_scope)
write("train_fitted.csv", in_scope + oos_rows)
write("test.csv", [(r["text"], "oos" if r["category"] in withheld else r["category"]) for r in test])
open(f"{work}/withheld.txt", "w").write("\n".join(sorted(withheld)) + "\n")
print(f"{len(in_scope)} in-scope training rows, 100 out-of-scope rows from {len(oos_pool)}; "
      f"test: {sum(r['category'] in withheld for r in test)} out of scope of {len(test)}", file=sys.stderr)
PY

models=(linear)
[ -f models/all-MiniLM-L6-v2/model.safetensors ] && models+=(ensemble)
[ "$fine_tune" = 1 ] && models+=(fine_tuned)
[ -n "$only" ] && models=("$only")
for model in "${models[@]}"; do
  case "$model" in
    linear) args=(--components linear) ;;
    ensemble) args=(--components linear,encoder) ;;
    fine_tuned) args=(--components linear,encoder --fine-tune --epochs 2) ;;
  esac
  for case in default fitted as_class; do
    data_file="$work/train_fitted.csv"; extra=()
    [ "$case" = default ] && data_file="$work/train_default.csv"
    [ "$case" = as_class ] && extra=(--oos-as-class)
    # The baseline needs the class only once: the linear and ensemble models show it.
    [ "$case" = as_class ] && [ "$model" = fine_tuned ] && continue
    out="$work/$model-$case"
    start=$(date +%s.%N)
    "$cqr" train "$data_file" -o "$out" --seed 42 -q "${args[@]}" "${extra[@]}"
    end=$(date +%s.%N)
    "$cqr" evaluate "$out" "$work/test.csv" --json -q > "$out.eval.json"
    python3 -c "import sys; print(f'{sys.argv[1]}: trained in {float(sys.argv[3]) - float(sys.argv[2]):.0f} s', file=sys.stderr)" \
      "$model-$case" "$start" "$end"
  done
done

# The novelty candidates on the same split (frozen encoder; the linear-only bundle's own scores).
if [ -f models/all-MiniLM-L6-v2/model.safetensors ] && [ -z "$only" ]; then
  "$candidates" "$work/train_default.csv" "$work/test.csv" --encoder models/all-MiniLM-L6-v2 \
    --linear "$work/linear-default" > "$work/candidates.json"
fi

CQR_OOS_ONLY="$only" python3 - "$work" "${models[@]}" <<'PY'
import json, os, sys
sys.path.insert(0, "scripts")
from bench_results import merge, stamp
work, models = sys.argv[1], sys.argv[2:]
def figures(name):
    r = json.load(open(f"{work}/{name}.eval.json"))
    m = json.load(open(f"{work}/{name}/manifest.json"))
    o = r["out_of_scope"]
    rule = m.get("rule") or {}
    return {
        "rule": r.get("abstain_rule"),
        "rule_fit": {k: rule.get("fit", {}).get(k) for k in
                     ("method", "in_scope_rejection", "out_of_scope_recall", "precision_answered")},
        "n_in_scope": o["n_in_scope"], "n_out_of_scope": o["n_out_of_scope"],
        "out_of_scope_recall": o["recall_at_threshold"],
        "out_of_scope_precision": o["precision_at_threshold"],
        "in_scope_rejection": o["in_scope_rejection"],
        "in_scope_accuracy": o["in_scope_accuracy"],
        "in_scope_accuracy_answered": o["in_scope_accuracy_answered"],
        "auroc": o["auroc"], "fpr_at_95_tpr": o["fpr_at_95_tpr"],
    }
out = {**stamp(),
       "protocol": "BANKING77, 20 intents withheld (seed 20261201) as out of scope; train on the "
                   "other 57 (default: as they are; fitted: plus 100 withheld-intent training rows "
                   "labelled oos; as_class: the same, oos trained as a class); test split with the "
                   "withheld intents relabelled oos",
       "withheld": open(f"{work}/withheld.txt").read().split(),
       "targets": {"fitted_recall_min": 0.60, "in_scope_rejection_max": 0.05,
                   "best_score_auroc_gain_over_max_softmax_min": 0.02,
                   "default_recall_min_exclusive": 0.0, "in_scope_accuracy_loss_points_max": 0.3}}
for model in models:
    out[model] = {"commit": out["commit"], "date": out["date"]}
    for case in ("default", "fitted", "as_class"):
        if os.path.exists(f"{work}/{model}-{case}.eval.json"):
            out[model][case] = figures(f"{model}-{case}")
    d = out[model]["default"]
    d["best_score_auroc_gain_over_max_softmax"] = max(
        v for k, v in d["auroc"].items() if k != "one_minus_confidence") - d["auroc"]["one_minus_confidence"]
if os.path.exists(f"{work}/candidates.json"):
    out["novelty_candidates"] = json.load(open(f"{work}/candidates.json"))
# With --only, the other models' figures (and the candidates) stay as they were.
merge("out_of_scope", out, update=bool(os.environ.get("CQR_OOS_ONLY")))
for model in models:
    for case, f in out[model].items():
        if not isinstance(f, dict):
            continue
        print(f"{model:10} {case:8} recall {f['out_of_scope_recall']:.3f} at in-scope rejection "
              f"{f['in_scope_rejection']:.3f}; in-scope accuracy {f['in_scope_accuracy']:.4f} "
              f"(answered {f['in_scope_accuracy_answered']:.4f}); AUROC "
              + ", ".join(f"{k} {v:.3f}" for k, v in f["auroc"].items()), file=sys.stderr)
PY
