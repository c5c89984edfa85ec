#!/usr/bin/env bash
# The Python package (python/, issue #20): builds the wheel with maturin (dev profile, in the
# workspace's target dir, so it reuses what `cargo test --workspace` compiled), installs it
# into a venv under ~/.cache/eddy with the pinned test tools, and runs its pytest suite
# (River's progressive validation, parity with `eddy learn` / `eddy predict`, registry, run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="$HOME/.cache/eddy/python-venv"
PINS=(maturin==1.16.0 pytest==9.2.0 river==0.26.1 pyarrow==26.0.1 pandas==3.1.2 numpy==2.4.6)
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/pip" freeze --quiet 2>/dev/null | grep -qx "${PINS[0]}" \
    || ! "$VENV/bin/python" -c 'import pytest, river, pyarrow, pandas, numpy' 2>/dev/null; then
    "$VENV/bin/pip" install --quiet "${PINS[@]}"
fi
export CARGO_TARGET_DIR="$ROOT/target"
# the CLI the parity tests compare against: `cargo test --workspace` built it already (a
# `cargo build` here could unify features differently and rebuild dependencies)
if [ ! -x "$ROOT/target/debug/eddy" ]; then
    cargo build --bin eddy
fi
rm -rf "$ROOT/target/wheels"
"$VENV/bin/maturin" build --manifest-path python/Cargo.toml --profile dev --out "$ROOT/target/wheels"
"$VENV/bin/pip" install --quiet --force-reinstall --no-deps "$ROOT"/target/wheels/eddy_ml-*.whl
EDDY_BIN="$ROOT/target/debug/eddy" "$VENV/bin/python" -m pytest -q python/tests
