#!/usr/bin/env bash
# Long fuzz campaigns with libFuzzer (AddressSanitizer, coverage-guided) over every target of crates/clip-fuzz.
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 600 s each, all targets)
# Needs cargo-fuzz (`cargo install cargo-fuzz`); works on the stable toolchain through RUSTC_BOOTSTRAP.
# Each run starts from the committed corpus (crates/clip-fuzz/corpus/<target>) and keeps what it learns in
# fuzz/corpus/<target> (not committed); crashes land in fuzz/artifacts/<target>/. Memory is capped at 4 GiB
# (-rss_limit_mb and -malloc_limit_mb), one input at 30 s.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(image tokenizer vocabulary safetensors pytorch pickle config npy classifier)
export RUSTC_BOOTSTRAP=1
cargo fuzz build --release
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${seconds}s"
  cargo fuzz run --release "$t" "corpus/$t" "../crates/clip-fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -malloc_limit_mb=4096 -timeout=30 -print_final_stats=1 \
    2>&1 | grep -E "^(stat::|==|SUMMARY|.*Test unit written)|Done" || true
done
