#!/usr/bin/env bash
# The documented full test path of the Python bindings: builds a release wheel with maturin, installs it into
# a virtual environment and runs the pytest suite crates/clip-python/tests against it.
#
#   scripts/python/test_bindings.sh [pytest args...]
#
# Environment:
#   PYTHON    an interpreter to install into and test with (an existing virtual environment's python); by
#             default a virtual environment is made (or reused) at VENV
#   VENV      default /tmp/clip-rs-venv
#   WHEEL_DIR where the wheel is written, default target/wheels
#   CLIP_BIN  the `clip` binary the suite compares with (default target/debug/clip, built here)
# With clip-anytorch, torch and Pillow importable by that interpreter, the suite also compares with them live.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-/tmp/clip-rs-venv}"
WHEEL_DIR="${WHEEL_DIR:-$ROOT/target/wheels}"
cd "$ROOT"

if [ -z "${PYTHON:-}" ]; then
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating $VENV"
        python3 -m venv "$VENV"
    fi
    PYTHON="$VENV/bin/python"
fi

echo "== installing maturin, numpy, pytest into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
"$PYTHON" -m pip install -q --upgrade "maturin>=1.5,<2" numpy pytest

echo "== building the wheel (release)"
mkdir -p "$WHEEL_DIR"
rm -f "$WHEEL_DIR"/clip_rs-*.whl
"$PYTHON" -m maturin build --release --manifest-path crates/clip-python/Cargo.toml \
    --interpreter "$PYTHON" --out "$WHEEL_DIR"
WHEEL="$(ls "$WHEEL_DIR"/clip_rs-*.whl)"
echo "   $WHEEL"

echo "== installing the wheel"
"$PYTHON" -m pip install -q --force-reinstall --no-deps "$WHEEL"

if [ -z "${CLIP_BIN:-}" ]; then
    # The dev profile `cargo test` also builds: usually up to date already.
    echo "== building the clip binary"
    cargo build -p clip-cli --bin clip
    export CLIP_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/clip"
fi
export CLIP_RS_REQUIRE_CLI=1

echo "== pytest crates/clip-python/tests"
# Run from the tests folder's parent but import the installed wheel, never a build tree.
cd "$ROOT/crates/clip-python"
"$PYTHON" -m pytest -p no:cacheprovider -q tests "$@"
