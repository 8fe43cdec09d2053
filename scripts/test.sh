#!/usr/bin/env bash
# The whole test suite: unit tests of every crate and the privileged
# end-to-end tests (real namespaces, cgroups, netlink, nftables, registry).
# Run as root on Debian 12:   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --workspace --bins
# In CI, a missing precondition of a privileged test is a failure, not a skip.
export BERTH_E2E_REQUIRED="${BERTH_E2E_REQUIRED:-1}"
cargo test --workspace --no-fail-fast -- --test-threads="${BERTH_TEST_THREADS:-2}"

# The upgrade test: the previous release's binaries are built once per
# machine and cached by commit (scripts/build-prev.sh: the first run is a
# cold debug build, ~25 min; later runs find the cache in well under a
# second). BERTH_UPGRADE_TEST=0 skips it.
if [ "${BERTH_UPGRADE_TEST:-1}" != 0 ]; then
    prev=$(./scripts/build-prev.sh)
    BERTH_PREV_BIN_DIR="$prev" cargo test -p berth-e2e --test adoption -- --ignored upgrade
fi

# A short bounded fuzz run of every target (layer unpacker, manifest parser):
# a crash fails the suite. FUZZ_SECONDS=0 skips it.
if [ "${FUZZ_SECONDS:-30}" != 0 ]; then
    FUZZ_SECONDS="${FUZZ_SECONDS:-30}" ./scripts/fuzz.sh
fi

# The VM test (tests/vm/README.md): berth's Debian package installed in a
# Debian 12 guest with systemd and cgroup v2 only, restarted, upgraded,
# rebooted, its power cut during a burst of manifest changes and an image
# pull, removed and purged. The package comes from the `vm` profile (the
# release profile without fat LTO, Cargo.toml) in $BERTH_VM_TARGET_DIR/vm, kept
# between CI runs, so a run after a small change rebuilds berth's own crates
# only. The guest image is cached by a hash of its recipe in
# /var/cache/berth-vm (built once, about 15 minutes). The package's build
# has its own target dir ($BERTH_VM_TARGET_DIR), so it never waits for the
# cargo tests' lock. On a quiet 2-core machine the VM part takes about
# 6 minutes under TCG. BERTH_VM_TEST=0 skips it.
if [ "${BERTH_VM_TEST:-1}" != 0 ]; then
    vm_t0=$(date +%s)
    vm_deb=$(CARGO_TARGET_DIR="${BERTH_VM_TARGET_DIR:-/var/cache/berth-ci/vm-target}" \
        BERTH_PROFILE=vm ./scripts/package.sh | tail -n 1)
    vm_t1=$(date +%s)
    vm_rc=0
    BERTH_DEB="$vm_deb" ./tests/vm/run.sh || vm_rc=$?
    echo "vm test: package build $((vm_t1 - vm_t0)) s, VM run $(($(date +%s) - vm_t1)) s, exit $vm_rc" >&2
    exit "$vm_rc"
fi
