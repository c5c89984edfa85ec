#!/usr/bin/env bash
# The deep learners' tests (cargo feature `torch`): fetches libtorch 2.13 from PyPI into
# ~/.cache/eddy/libtorch when missing (scripts/fetch-libtorch.sh, idempotent), then runs the
# tests that need it. Binaries find libtorch through the rpath build.rs sets, so no
# LD_LIBRARY_PATH is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
LIBTORCH="$(bash scripts/fetch-libtorch.sh | tail -n1)"
export LIBTORCH
cargo test -p eddy-algorithms --features torch --lib deep::
cargo test -p eddy-algorithms --features torch --test deep_learners
