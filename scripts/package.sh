#!/usr/bin/env bash
# Build berth's Debian package: the agent, the shim and the supervisor
# (linked statically), a systemd unit, /etc/berth/config.yaml (a conffile)
# and /var/lib/berth (0700, made by postinst). Prints the .deb's path as
# its last line.
#
#   ./scripts/package.sh            # for this machine's architecture
#   BERTH_DEB_VERSION=0.1.0-2 ./scripts/package.sh   # another version (upgrade tests)
#   BERTH_PROFILE=vm ./scripts/package.sh            # the VM test's/CI's build: the release
#                                                    # profile without fat LTO (Cargo.toml)
#
# Other architectures (not buildable on this machine: no other Rust target
# can be installed here) go the same way with a cross toolchain, e.g. on a
# host with `rustup target add aarch64-unknown-linux-gnu` and Debian's
# gcc-aarch64-linux-gnu + libseccomp-dev:arm64:
#   CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
#   BERTH_TARGET=aarch64-unknown-linux-gnu ./scripts/package.sh
# (armhf: armv7-unknown-linux-gnueabihf with gcc-arm-linux-gnueabihf).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
./scripts/install-deps.sh >&2
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked >&2

target_args=()
profile=${BERTH_PROFILE:-release}
case "$profile" in release | vm) ;; *) echo "error: BERTH_PROFILE must be release or vm" >&2; exit 2 ;; esac
tdir=${CARGO_TARGET_DIR:-target}
out=$tdir/$profile
if [ -n "${BERTH_TARGET:-}" ]; then
    target_args=(--target "$BERTH_TARGET")
    out="$tdir/$BERTH_TARGET/$profile"
fi
cargo build --profile "$profile" "${target_args[@]}" -p berth -p berth-runtime --bins >&2
cargo rustc --profile "$profile" "${target_args[@]}" -p berth-supervise --bin berth-supervise \
    -- -C target-feature=+crt-static -C panic=abort -C relocation-model=static >&2
# The supervisor must not need a dynamic loader (it runs beside containers
# for their whole life, across upgrades of the host's libc).
if readelf -l "$out/berth-supervise" | grep -q "Requesting program interpreter"; then
    echo "error: $out/berth-supervise is not statically linked" >&2
    exit 1
fi
rm -rf "$tdir/debian"
# BERTH_DEB_VERSION: the package's version (e.g. 0.1.0-2 for an upgrade test)
version_args=()
[ -z "${BERTH_DEB_VERSION:-}" ] || version_args=(--deb-version "$BERTH_DEB_VERSION")
# the vm profile's package (tests only) is compressed fast: quicker to
# build on a loaded CI host and to unpack in an emulated guest
fast_args=()
[ "$profile" = release ] || fast_args=(--fast)
cargo deb -p berth --no-build --profile "$profile" "${target_args[@]}" "${version_args[@]}" "${fast_args[@]}" --output "$tdir/debian" >&2
deb=$(ls "$tdir"/debian/berth_*.deb)
echo "package: $(basename "$deb"): $(stat -c %s "$deb") bytes ($(du -h "$deb" | cut -f1)), installed size $(dpkg-deb -f "$deb" Installed-Size) KiB" >&2
# an absolute path, so `apt install "$(scripts/package.sh | tail -n 1)"` works
realpath "$deb"
