#!/usr/bin/env bash
# Run every fuzz target in fuzz/fuzz_targets/ for a bounded time each and
# exit non-zero if any of them finds a crash (a panic, a sanitizer error, or
# one input running longer than FUZZ_TIMEOUT seconds).
#
#   ./scripts/fuzz.sh                 # 60 s per target
#   FUZZ_SECONDS=600 ./scripts/fuzz.sh manifest_parse
#
# Env: FUZZ_SECONDS (per target, default 60), FUZZ_TIMEOUT (per input,
# default 10), FUZZ_MAX_LEN (input bytes, default 65536), FUZZ_JOBS
# (parallel workers, default 1). Crashing inputs land in
# fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/, seeded
# from fuzz/seeds/<target>/ when that exists.
#
# cargo-fuzz passes nightly-only flags to rustc; the toolchain here is
# stable, so RUSTC_BOOTSTRAP=1 allows them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

secs="${FUZZ_SECONDS:-60}"
per_input="${FUZZ_TIMEOUT:-10}"
max_len="${FUZZ_MAX_LEN:-65536}"
jobs="${FUZZ_JOBS:-1}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in fuzz/fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi

failed=()
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus"
    dirs=("$corpus")
    [ -d "fuzz/seeds/$t" ] && dirs+=("fuzz/seeds/$t")
    echo "== fuzz $t for ${secs}s"
    flags=(-max_total_time="$secs" -timeout="$per_input" -max_len="$max_len"
        -rss_limit_mb=4096 -print_final_stats=1)
    # with -jobs, libFuzzer runs children that log to fuzz-N.log
    [ "$jobs" -gt 1 ] && flags+=(-jobs="$jobs" -workers="$jobs")
    tdir=()
    [ -n "${FUZZ_TARGET_DIR:-}" ] && tdir=(--target-dir "$FUZZ_TARGET_DIR")
    if ! cargo fuzz run --fuzz-dir fuzz "${tdir[@]}" "$t" "${dirs[@]}" -- "${flags[@]}"; then
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} target(s), no crash"
