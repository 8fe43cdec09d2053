#!/usr/bin/env bash
# Install what berth needs to build, run and test on Debian 12 (run as root),
# plus any Debian packages named as arguments.
# Idempotent: skips apt when everything is already present.
set -euo pipefail

PKGS=(
  build-essential pkg-config libssl-dev zlib1g-dev libseccomp-dev   # build (libcontainer links libseccomp; git2 https/ssh)
  iproute2 nftables                                               # runtime: netlink tools for tests, nft for berth's table
  busybox-static umoci skopeo jq                                  # building the local busybox image
  docker-registry                                                 # a real registry for image tests
  git python3 python3-pip python3-venv procps psmisc curl ca-certificates  # tests: repos, kubernetes-validate, the kubernetes client (venv), pgrep
  chromium                                                        # tests: the status page in a headless browser (node + playwright-core: tests/browser)
)
# missing PKG... -> those of PKG not installed
missing() {
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
apt_updated=
install() { # install [apt-get options] -- PKG...
  local opts=() m
  while [ "$1" != -- ]; do opts+=("$1"); shift; done; shift
  m=$(missing "$@")
  [ -z "$m" ] && return 0
  echo "installing:" $m >&2
  export DEBIAN_FRONTEND=noninteractive
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  # shellcheck disable=SC2086
  apt-get install -y -qq "${opts[@]}" $m >/dev/null
}
install -- "${PKGS[@]}"
# packages named by the caller (bench/install.sh: the peers), without
# recommends, so nothing else (e.g. CNI plugins) changes what podman picks
(($#)) && install --no-install-recommends -- "$@"

if ! command -v cargo >/dev/null 2>&1; then
  for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$d/cargo" ] && export PATH="$d:$PATH"
  done
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo (Rust >= 1.85) is required; install it with rustup (https://rustup.rs)" >&2
  exit 1
fi

# kubernetes-validate checks the examples against the real Kubernetes schemas.
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  pip3 install -q kubernetes-validate 2>/dev/null || pip3 install -q --break-system-packages kubernetes-validate
fi
