#!/usr/bin/env bash
# benches/load.sh: end-to-end throughput of authgate in front of nginx.
#
#   benches/load.sh            (env: THREADS=1 authgate worker threads,
#                               DURATION=15s, CONNS=50, WRK_THREADS=2)
#
# Builds the release binary and the `mint_session` example, then on
# 127.0.0.1 only (free ports, everything in a temp dir, removed at exit):
#   - nginx (Debian's /usr/sbin/nginx, own temp config) answering 200 "ok";
#   - `authgate run` in front of it: cookie session store, an unreachable IdP
#     (the paths measured never call it), skip route ^/public/, api route ^/api/;
#   - a session cookie minted by examples/mint_session.rs with the run's
#     cookie secret (~3 KB of session JSON with three 900-byte tokens).
# Then `wrk -t2 -c50 -d15s --latency` on four paths:
#   a) nginx directly                        (baseline)
#   b) authgate, skip route /public/...      (proxy cost without authn)
#   c) authgate, valid session cookie        (decrypt + decide + proxy)
#   d) authgate, anonymous /api/... -> 401   (answered by authgate itself)
#   e) examples/bare_proxy.rs, same threads  (Pingora's own cost: the ceiling)
# and after each run prints req/s, p50/p99 latency, non-2xx count, and the
# proxy's RSS (VmRSS), CPU seconds used during the run (utime+stime) and CPU
# microseconds per request (authgate for a-d, bare_proxy for e).
# wrk, nginx and authgate share the machine's cores: read the numbers as
# relative, not as capacity. Stops by itself (about 5 x DURATION + build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

THREADS="${THREADS:-1}"
DURATION="${DURATION:-15s}"
CONNS="${CONNS:-50}"
WRK_THREADS="${WRK_THREADS:-2}"
NGINX="${NGINX:-/usr/sbin/nginx}"

need=()
[ -x "$NGINX" ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    NGINX=/usr/sbin/nginx
  else
    echo "load.sh: missing: ${need[*]} (sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

echo "== building (release)" >&2
cargo build --release --locked --bin authgate --example mint_session --example bare_proxy >&2
BIN=target/release/authgate
MINT=target/release/examples/mint_session
BARE=target/release/examples/bare_proxy

TMP="$(mktemp -d)"
NGINX_PID=""
GATE_PID=""
BARE_PID=""
cleanup() {
  if [ -n "$BARE_PID" ]; then kill "$BARE_PID" 2>/dev/null || true; wait "$BARE_PID" 2>/dev/null || true; fi
  if [ -n "$GATE_PID" ]; then kill "$GATE_PID" 2>/dev/null || true; wait "$GATE_PID" 2>/dev/null || true; fi
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Polls a URL until it answers with the expected status (deadline 30 s).
wait_status() {
  local url="$1" want="$2" end=$((SECONDS + 30))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = "$want" ]; do
    if [ "$SECONDS" -ge "$end" ]; then
      echo "load.sh: $url never answered $want" >&2
      return 1
    fi
    sleep 0.1
  done
}

UP_PORT="$(free_port)"
GATE_PORT="$(free_port)"
METRICS_PORT="$(free_port)"
IDP_PORT="$(free_port)" # nothing listens here
BARE_PORT="$(free_port)"

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<NGINX_CONF
daemon off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  large_client_header_buffers 4 32k;
  server {
    listen 127.0.0.1:$UP_PORT;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
NGINX_CONF
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
NGINX_PID=$!

SECRET="$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | head -c 32)"
cat >"$TMP/authgate.yaml" <<GATE_CONF
server:
  listen: 127.0.0.1:$GATE_PORT
  metrics: 127.0.0.1:$METRICS_PORT
  threads: $THREADS
provider:
  issuer_url: http://127.0.0.1:$IDP_PORT
  client_id: load
  client_secret: load-secret
cookie:
  secret: "$SECRET"
  secure: false
authorization:
  allowed_groups: [admins]
  skip_auth_routes: ["^/public/"]
  api_routes: ["^/api/"]
upstreams:
  - path: /
    url: http://127.0.0.1:$UP_PORT
GATE_CONF
COOKIE="$("$MINT" "$TMP/authgate.yaml")"
RUST_LOG=error "$BIN" run --config "$TMP/authgate.yaml" >"$TMP/authgate.log" 2>&1 &
GATE_PID=$!
"$BARE" "127.0.0.1:$BARE_PORT" "127.0.0.1:$UP_PORT" "$THREADS" >"$TMP/bare.log" 2>&1 &
BARE_PID=$!

wait_status "http://127.0.0.1:$UP_PORT/" 200
wait_status "http://127.0.0.1:$GATE_PORT/public/x" 200
wait_status "http://127.0.0.1:$BARE_PORT/public/x" 200
# Sanity: the cookie is accepted and anonymous API calls get a 401.
got="$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "http://127.0.0.1:$GATE_PORT/dashboard")"
[ "$got" = 200 ] || { echo "load.sh: session cookie refused ($got)" >&2; exit 1; }
got="$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' "http://127.0.0.1:$GATE_PORT/api/v1/query")"
[ "$got" = 401 ] || { echo "load.sh: anonymous API call got $got" >&2; exit 1; }

TICK="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }

echo "authgate threads: $THREADS; wrk -t$WRK_THREADS -c$CONNS -d$DURATION; $(nproc) cores shared by wrk, nginx and authgate"
printf '%-28s %10s %9s %9s %8s %9s %8s %8s\n' run req/s p50 p99 non2xx rss_MiB cpu_s us/req
PID="$GATE_PID"
run() {
  local label="$1" url="$2"
  shift 2
  local before out
  before="$(cpu_ticks)"
  out="$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "$url")"
  local rps p50 p99 non2xx cpu rss reqs us
  rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
  p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  non2xx="$(awk '/Non-2xx or 3xx/ {print $NF}' <<<"$out")"
  cpu="$(awk -v a="$before" -v b="$(cpu_ticks)" -v t="$TICK" 'BEGIN {printf "%.2f", (b - a) / t}')"
  rss="$(awk -v k="$(rss_kb)" 'BEGIN {printf "%.1f", k / 1024}')"
  reqs="$(awk '/ requests in / {print $1}' <<<"$out")"
  us="$(awk -v c="$cpu" -v n="$reqs" 'BEGIN {if (n > 0) printf "%.0f", c * 1e6 / n; else print "-"}')"
  printf '%-28s %10s %9s %9s %8s %9s %8s %8s\n' "$label" "$rps" "$p50" "$p99" "${non2xx:-0}" "$rss" "$cpu" "$us"
}
run "a) nginx direct" "http://127.0.0.1:$UP_PORT/dashboard"
run "b) authgate skip route" "http://127.0.0.1:$GATE_PORT/public/logo.svg"
run "c) authgate valid session" "http://127.0.0.1:$GATE_PORT/dashboard" -H "Cookie: $COOKIE"
run "d) authgate anonymous 401" "http://127.0.0.1:$GATE_PORT/api/v1/query" -H "Accept: application/json"
PID="$BARE_PID"
run "e) bare Pingora proxy" "http://127.0.0.1:$BARE_PORT/public/logo.svg"
