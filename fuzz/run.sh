#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and fails on the first crash.
#
#   fuzz/run.sh [seconds-per-target]     (default 30)
#
# cargo-fuzz needs nightly-only compiler flags (sanitizers, -Z options); RUSTC_BOOTSTRAP=1 lets
# the stable toolchain accept them, so no nightly toolchain is needed. Crashing inputs are
# written to fuzz/artifacts/<target>/; reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
#
# Each target starts from its committed seeds (fuzz/seeds/<target>/, read only) and the corpus
# grown by earlier runs (fuzz/corpus/<target>/, ignored by git); new inputs go to the latter.
set -euo pipefail

seconds="${1:-30}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# Builds go under the main workspace's target directory (ignored by git).
target_dir="${CARGO_TARGET_DIR:-$here/../target}/fuzz"
targets=(issue_ref config state_json opencode_events env_file redact echoed_secret token_routing fork_rewrite run_outcome conninfo)

cargo fuzz build --target-dir "$target_dir"

for t in "${targets[@]}"; do
    echo "fuzzing $t for ${seconds}s"
    mkdir -p "corpus/$t"
    # libFuzzer writes new inputs to the first directory only: the seeds stay as committed.
    # -rss_limit_mb: the address sanitizer's shadow memory is counted; parsers must stay small.
    cargo fuzz run --target-dir "$target_dir" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1
done
echo "all fuzz targets ran ${seconds}s each without a crash"
