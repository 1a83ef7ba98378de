#!/usr/bin/env bash
# Fuzz one parser of untrusted bytes with libFuzzer for a bounded time (default 120 s).
#   bash scripts/fuzz.sh <target> [seconds] [libFuzzer flags…]   targets: safetensors_header, ecc_sidecar, fold_container, checkpoint_outboard
# e.g. `bash scripts/fuzz.sh fold_container 7200 -runs=10000000` stops at 10 million executions or 2 hours.
# Needs a nightly toolchain (rustup toolchain install nightly) and a C++ compiler; cargo-fuzz itself is
# not required (this does what `cargo fuzz run` does). Not part of `npm test`. Seed corpora live in
# crates/tensorvault-core/fuzz/seeds/<target>/; new inputs go to target/fuzz/corpus/<target>, crashes to
# target/fuzz/artifacts/<target>/ (the run exits non-zero on a crash).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${1:?usage: fuzz.sh <safetensors_header|ecc_sidecar|fold_container|checkpoint_outboard> [seconds]}"
secs="${2:-120}"
shift $(( $# >= 2 ? 2 : $# ))
case "$target" in
  safetensors_header) max_len=4096 ;;
  ecc_sidecar) max_len=65536 ;;
  fold_container) max_len=32768 ;;
  checkpoint_outboard) max_len=8192 ;;
  *) echo "fuzz.sh: unknown target $target" >&2; exit 2 ;;
esac
triple="x86_64-unknown-linux-gnu"
export CARGO_TARGET_DIR="$root/target/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cd "$root/crates/tensorvault-core/fuzz"
cargo +nightly build --release --target "$triple" --bin "$target"
bin="$CARGO_TARGET_DIR/$triple/release/$target"
corpus="$CARGO_TARGET_DIR/corpus/$target"
artifacts="$CARGO_TARGET_DIR/artifacts/$target/"
mkdir -p "$corpus" "$artifacts"
"$bin" -max_total_time="$secs" -max_len="$max_len" -artifact_prefix="$artifacts" -print_final_stats=1 \
  "$@" "$corpus" "$root/crates/tensorvault-core/fuzz/seeds/$target"
