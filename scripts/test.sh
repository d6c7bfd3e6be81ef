#!/usr/bin/env bash
# Runs facelock's tests: unit tests and the end-to-end tests on the real
# models and photos (fetched into ~/.cache/facelock by models/fetch.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash models/fetch.sh --quiet
cargo test --release --workspace --locked "$@"
