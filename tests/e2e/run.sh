#!/usr/bin/env bash
# Runs the end-to-end suite with real components: installs what is missing
# (Debian packages as root, npm packages from package-lock.json), then
# `node --test` from the repository root. AUTHGATE_BIN picks the binary
# (default: target/release/authgate of this repository).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -x /usr/sbin/nginx ] || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_http_echo_module.so ] || need+=(libnginx-mod-http-echo)
[ -x /usr/bin/caddy ] || need+=(caddy)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
[ -x /usr/bin/chromium ] || need+=(chromium)

if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "e2e: missing ${need[*]}; run as root to install them with apt-get" >&2
    exit 1
  fi
  echo "e2e: installing ${need[*]}"
  # Keep package scripts from starting system services (nginx on :80, redis on :6379, caddy on :80).
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  if [ "$added_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "e2e: Node >= 20 is required (found $(node --version))" >&2
  exit 1
fi

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ ! -d "$HERE/node_modules" ] || [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
  (cd "$HERE" && npm ci --no-audit --no-fund)
fi

bin="${AUTHGATE_BIN:-target/release/authgate}"
case "$bin" in /*) ;; *) bin="$ROOT/$bin" ;; esac
if [ ! -x "$bin" ]; then
  echo "e2e: NOTE: $bin not found; the authgate suites will be reported as skipped" >&2
fi

cd "$ROOT"
exec node --test --test-concurrency=1 tests/e2e/
