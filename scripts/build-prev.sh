#!/usr/bin/env bash
# Build the previous release's binaries (berth, berth-shim, berth-supervise)
# for the upgrade end-to-end test, and print the directory that holds them:
#
#   BERTH_PREV_BIN_DIR=$(./scripts/build-prev.sh) \
#     cargo test -p berth-e2e --test adoption -- --ignored upgrade
#
# The previous release is, by default, the last commit before berth-state
# (versioned files) existed: the format an upgrade must read. Another commit
# can be given as the first argument or in BERTH_PREV_COMMIT.
#
# Binaries are cached by commit in $BERTH_PREV_CACHE (default
# /var/cache/berth-prev/<commit>/ as root, else ~/.cache/berth-prev/); a
# second call for the same commit builds nothing and takes well under a
# second, which is why scripts/test.sh runs the upgrade test: only the first
# run on a machine pays for the build (a cold debug build, ~25 min on 2 busy
# cores). The source is exported with `git archive` into a temp dir (no
# worktree is registered in this repository); the cargo target dir is
# shared across commits ($BERTH_PREV_CACHE/target), so a later commit
# rebuilds only what changed. Debug builds: the test checks behaviour, and a
# release build (fat LTO) takes far longer.
set -euo pipefail
root=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)

if [ $# -gt 0 ]; then
    want=$1
elif [ -n "${BERTH_PREV_COMMIT:-}" ]; then
    want=$BERTH_PREV_COMMIT
else
    first_state=$(git -C "$root" log --diff-filter=A --format=%H -- state/Cargo.toml | tail -n 1)
    if [ -z "$first_state" ]; then
        echo "build-prev: cannot find the commit that added state/; give one as an argument" >&2
        exit 1
    fi
    want="$first_state^"
fi
commit=$(git -C "$root" rev-parse --verify --quiet "$want^{commit}") || {
    echo "build-prev: $want is not a commit of $root" >&2
    exit 1
}

if [ "$(id -u)" = 0 ]; then
    default_cache=/var/cache/berth-prev
else
    default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/berth-prev
fi
cache=${BERTH_PREV_CACHE:-$default_cache}
out=$cache/$commit
bins=(berth berth-shim berth-supervise)
done_all() {
    for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done
}
if done_all; then
    echo "$out"
    exit 0
fi

umask 077
mkdir -p "$cache"
src=$(mktemp -d "$cache/src.XXXXXX")
trap 'rm -rf "$src"' EXIT
git -C "$root" archive "$commit" | tar -x -C "$src"
export CARGO_TARGET_DIR=$cache/target
# no debug info: a smaller cache, a faster build (the test checks behaviour)
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-0}
(
    cd "$src"
    # progress on stderr; stdout is the directory only
    cargo build --locked -p berth -p berth-runtime -p berth-supervise --bins >&2
)
stage=$(mktemp -d "$cache/out.XXXXXX")
for b in "${bins[@]}"; do
    if [ ! -x "$CARGO_TARGET_DIR/debug/$b" ]; then
        echo "build-prev: $commit did not build $b" >&2
        exit 1
    fi
    cp "$CARGO_TARGET_DIR/debug/$b" "$stage/$b"
done
# complete or absent: a crash above never leaves a half-filled cache entry
rm -rf "$out"
mv "$stage" "$out"
echo "$out"
