#!/usr/bin/env bash
# The light test path of the Python bindings, for CI: no maturin, no wheel. Builds the extension with cargo's
# dev profile (the one `cargo test` uses, so nothing is compiled twice), puts it on PYTHONPATH as
# clip_rs.abi3.so, and runs the pytest suite crates/clip-python/tests against the committed references and the
# `clip` binary built the same way. numpy and pytest are installed for the user when missing.
#
#   scripts/python/ci_test.sh [pytest args...]
#
# PYTHON picks the interpreter (default python3). Fails (non-zero) on any build or test failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
cd "$ROOT"

echo "== building the extension and the clip binary (dev profile)"
# The whole workspace with every target: dependency features then unify exactly as in `cargo test --workspace`,
# so after the tests this builds only the cdylib (`-p clip-python` alone would recompile half the dependencies
# with other features: minutes on 2 cores).
cargo build --workspace --all-targets

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LIB="$TARGET_DIR/debug/libclip_rs.so"
[ -f "$LIB" ] || { echo "error: $LIB was not built" >&2; exit 1; }

MODULE_DIR="$(mktemp -d)"
trap 'rm -rf "$MODULE_DIR"' EXIT
# The name Python imports: clip_rs plus the stable-ABI suffix (the library is built with abi3-py39).
cp "$LIB" "$MODULE_DIR/clip_rs.abi3.so"

missing=()
"$PYTHON" -c "import numpy" 2>/dev/null || missing+=(numpy)
"$PYTHON" -c "import pytest" 2>/dev/null || missing+=(pytest)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} for $("$PYTHON" -c 'import sys; print(sys.executable)')"
    # --user where allowed; inside a virtual environment --user is refused, so install into it directly.
    if "$PYTHON" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)'; then
        "$PYTHON" -m pip install -q "${missing[@]}"
    else
        "$PYTHON" -m pip install --user -q "${missing[@]}"
    fi
fi

echo "== pytest crates/clip-python/tests"
export CLIP_BIN="${CLIP_BIN:-$TARGET_DIR/debug/clip}"
# The suite must compare with the binary here, not skip it.
export CLIP_RS_REQUIRE_CLI=1
cd "$ROOT/crates/clip-python"
PYTHONPATH="$MODULE_DIR${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m pytest -p no:cacheprovider -q tests "$@"
