#!/usr/bin/env bash
# Run berth on examples/manifests on this machine (Debian 12, root):
# installs what it needs, builds berth, builds the example's busybox image
# locally (no registry needed) and starts the agent in the foreground.
#   ./scripts/run-example.sh            then: curl -s 127.0.0.1:7070/api/v1/pods | jq
#                                              curl -s 127.0.0.1:30080/
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins
# the per-container supervisor, statically linked (smaller resident memory)
cargo rustc --release -p berth-supervise --bin berth-supervise -- -C target-feature=+crt-static
INSTANCE="${BERTH_INSTANCE:-berth}"
IMPORT="/var/lib/$INSTANCE/images/import"
mkdir -p "$IMPORT"
bash tests/fixtures/make-busybox-image.sh /var/tmp/berth-example-image >/dev/null
cp /var/tmp/berth-example-image/busybox-oci.tar "$IMPORT/"
echo "berth: API on http://127.0.0.1:7070  (Ctrl-C stops the agent; pods keep running)" >&2
exec ./target/release/berth --instance "$INSTANCE" --manifests examples/manifests "$@"
