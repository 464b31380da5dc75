#!/usr/bin/env bash
# authgate developer entry point.
#
#   ./dev.sh demo [--port 4180]   build, then run `authgate demo` (proxy + dev IdP + echo upstream)
#   ./dev.sh test                 build, then run every test: unit, integration, end-to-end, k8s, fuzz
#   ./dev.sh deps                 only install what building needs
#
# On a fresh Debian machine with just the Rust toolchain this installs what is
# missing (cmake and a C toolchain for Pingora; nginx, Redis, Chromium, Node
# for the end-to-end suite) with apt-get when run as root, and otherwise says
# exactly what to install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

apt_install() {
  local missing=("$@")
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "dev.sh: missing Debian packages: ${missing[*]}" >&2
    echo "dev.sh: install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "dev.sh: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_deps() {
  local need=()
  command -v cmake >/dev/null 2>&1 || need+=(cmake)
  command -v cc >/dev/null 2>&1 || need+=(gcc)
  command -v c++ >/dev/null 2>&1 || need+=(g++)
  command -v make >/dev/null 2>&1 || need+=(make)
  apt_install "${need[@]}"
}

test_deps() {
  local need=()
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  # Real Redis topologies for tests/redis_sentinel.rs, redis_cluster.rs, replicas.rs.
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
  command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
  # The container image's runtime (tests/image.rs): linking checked with
  # readelf, the read-only non-root container built with bwrap.
  command -v readelf >/dev/null 2>&1 || need+=(binutils)
  command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
  apt_install "${need[@]}"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  deps)
    build_deps
    ;;
  demo)
    build_deps
    cargo build --release --locked
    exec target/release/authgate demo "$@"
    ;;
  test)
    build_deps
    test_deps
    started=$(date +%s)
    cargo build --release --locked
    echo "== unit and integration tests (cargo test --release)"
    cargo test --release --locked
    echo "== configuration examples (authgate check)"
    for f in conf/*.yaml; do
      OIDC_CLIENT_SECRET=example-secret COOKIE_SECRET=0123456789abcdef0123456789abcdef \
        target/release/authgate check --config "$f"
    done
    echo "== Kubernetes manifests"
    venv="${TMPDIR:-/tmp}/authgate-k8s-venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r tests/k8s/requirements.txt
    "$venv/bin/python" tests/k8s/validate.py --authgate target/release/authgate \
      --istio-crds ../shared/k8s-schemas/istio-crd-all.gen.yaml
    echo "== end-to-end suite (oidc-provider, nginx, Redis, Chromium)"
    AUTHGATE_BIN=target/release/authgate tests/e2e/run.sh
    echo "== fuzzing (cargo-fuzz, each target ${AUTHGATE_FUZZ_SECONDS:-30}s on its seed corpus)"
    fuzz/run.sh "${AUTHGATE_FUZZ_SECONDS:-30}"
    echo "== all suites passed in $(( $(date +%s) - started ))s"
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
