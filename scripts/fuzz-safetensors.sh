#!/usr/bin/env bash
# Fuzz the safetensors header parser with libFuzzer for a bounded time (default 120 s).
#   bash scripts/fuzz-safetensors.sh [seconds]
# Needs a nightly toolchain (rustup toolchain install nightly) and a C++ compiler; cargo-fuzz itself is
# not required (this does what `cargo fuzz run` does). Not part of `npm test`. The seed corpus lives in
# crates/tensorvault-core/fuzz/seeds/; new inputs go to target/fuzz/corpus, crashes to target/fuzz/artifacts.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-120}"
triple="x86_64-unknown-linux-gnu"
export CARGO_TARGET_DIR="$root/target/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cd "$root/crates/tensorvault-core/fuzz"
cargo +nightly build --release --target "$triple" --bin safetensors_header
bin="$CARGO_TARGET_DIR/$triple/release/safetensors_header"
corpus="$CARGO_TARGET_DIR/corpus/safetensors_header"
artifacts="$CARGO_TARGET_DIR/artifacts/safetensors_header/"
mkdir -p "$corpus" "$artifacts"
"$bin" -max_total_time="$secs" -max_len=4096 -artifact_prefix="$artifacts" -print_final_stats=1 \
  "$corpus" "$root/crates/tensorvault-core/fuzz/seeds/safetensors_header"
