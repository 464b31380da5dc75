#!/usr/bin/env bash
# benches/load.sh: authgate's cost per request against its ceiling (a bare
# Pingora pass-through) and against nginx, every mode side by side.
#
#   benches/load.sh               (env: THREADS=2 server worker threads,
#                                  DURATION=10s per run, ROUNDS=3, CONNS=32,
#                                  WRK_THREADS=1, CALLGRIND_REQS=2000,
#                                  CALLGRIND=1 (0 skips it), MODES="..." subset,
#                                  CALLGRIND_MODES="..." subset of bare_pingora
#                                  cookie_session skip_route bearer_jwt
#                                  redis_session extauthz_grpc,
#                                  CALLGRIND_KEEP=<dir>: keep callgrind.out.*
#                                  there (for callgrind_annotate), ROUNDS=0:
#                                  instruction counts only,
#                                  AUTHGATE_BIN=<another authgate binary>,
#                                  NO_BUILD=1 EXAMPLES_DIR=<dir>: prebuilt binaries)
#
# Runs from a fresh checkout: as root it installs nginx, wrk, curl,
# redis-server and valgrind with apt-get (as dev.sh does); otherwise it says
# what to install. Builds the release binary and the examples it needs, then
# on 127.0.0.1 only (free ports, a temp dir removed at exit) starts:
#   - nginx A: the upstream (200 "ok") and a static OpenID provider
#     (discovery + JWKS written by examples/mint_bearer.rs);
#   - nginx B: a plain reverse proxy to A (keep-alive pool), THREADS workers;
#   - examples/bare_proxy.rs: the plain Pingora pass-through (the ceiling);
#   - authgate (cookie sessions, bearer tokens on, ext_authz HTTP and gRPC);
#   - authgate with `session: redis` in front of a redis-server;
# then for ROUNDS rounds runs every mode once, in the same order (so slow
# phases of the shared machine hit every mode alike):
#   nginx_proxy, bare_pingora, skip_route, cookie_session, redis_session,
#   bearer_jwt, oauth2_auth (202), extauthz_http (200), extauthz_grpc
#   (examples/grpc_load.rs: 64 concurrent Checks on one HTTP/2 connection).
# Per mode it prints the median over rounds of requests/s, p50, p99 and the
# serving process's CPU µs per request (utime+stime from /proc/PID/stat over
# the run / requests completed), RSS idle (before the first round) and after,
# and the ratios to the Pingora ceiling and to nginx.
# Then (CALLGRIND=1) instructions per request under valgrind's callgrind:
# CALLGRIND_REQS keep-alive requests (after 200 warm-up ones), each with the
# session cookie, through bare Pingora and through authgate (cookie session,
# skip route with the same cookie, bearer JWT, Redis session), and as many
# gRPC Checks (64 at a time on one HTTP/2 connection), collection switched
# on only around them (callgrind_control): a figure noise cannot move.
# wrk, nginx and the servers share the machine's cores: read ratios, not
# absolute figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

THREADS="${THREADS:-2}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-32}"
WRK_THREADS="${WRK_THREADS:-1}"
CALLGRIND="${CALLGRIND:-1}"
CALLGRIND_REQS="${CALLGRIND_REQS:-2000}"
CALLGRIND_MODES="${CALLGRIND_MODES:-bare_pingora cookie_session skip_route bearer_jwt redis_session extauthz_grpc}"
CALLGRIND_KEEP="${CALLGRIND_KEEP:-}"
GRPC_CONCURRENCY="${GRPC_CONCURRENCY:-64}"
ALL_MODES="nginx_proxy bare_pingora skip_route cookie_session redis_session bearer_jwt oauth2_auth extauthz_http extauthz_grpc"
MODES="${MODES:-$ALL_MODES}"
NGINX="${NGINX:-/usr/sbin/nginx}"

need=()
[ -x "$NGINX" ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ "$CALLGRIND" = 1 ]; then
  command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
fi
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

if [ -z "${NO_BUILD:-}" ]; then
  echo "== building (release)" >&2
  cargo build --release --locked --bin authgate --example mint_session --example bare_proxy \
    --example mint_bearer --example grpc_load >&2
fi
# AUTHGATE_BIN: measure another build (e.g. a copy of an older binary).
BIN="${AUTHGATE_BIN:-target/release/authgate}"
# EXAMPLES_DIR: where the example binaries are (NO_BUILD=1 uses them as they are).
EX="${EXAMPLES_DIR:-target/release/examples}"

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  local p
  # SIGINT: a fast exit for each (Pingora would drain for a minute on SIGTERM).
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
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
  shift 2
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")" = "$want" ]; do
    if [ "$SECONDS" -ge "$end" ]; then
      echo "load.sh: $url never answered $want" >&2
      return 1
    fi
    sleep 0.1
  done
}

UP_PORT="$(free_port)"
IDP_PORT="$(free_port)"
NGX_PROXY_PORT="$(free_port)"
BARE_PORT="$(free_port)"
GATE_PORT="$(free_port)"
GATE_HTTP_PORT="$(free_port)"
GATE_GRPC_PORT="$(free_port)"
REDIS_PORT="$(free_port)"
GATE_R_PORT="$(free_port)"
CG_BARE_PORT="$(free_port)"
CG_GATE_PORT="$(free_port)"
ISSUER="http://127.0.0.1:$IDP_PORT"

# The static provider and the bearer token.
mkdir -p "$TMP/idp"
BEARER="$("$EX/mint_bearer" "$TMP/idp" "$ISSUER" load)"

nginx_conf() { # <dir> <workers> <servers...>
  local dir="$1" workers="$2"
  shift 2
  mkdir -p "$dir"
  cat <<NGINX_CONF
daemon off;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  large_client_header_buffers 4 32k;
  keepalive_requests 1000000;
  $*
}
NGINX_CONF
}
nginx_conf "$TMP/ngx_up" "$THREADS" "
  server { listen 127.0.0.1:$UP_PORT; location / { default_type text/plain; return 200 \"ok\n\"; } }
  server { listen 127.0.0.1:$IDP_PORT; root $TMP/idp; default_type application/json; }
" >"$TMP/ngx_up.conf"
nginx_conf "$TMP/ngx_proxy" "$THREADS" "
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server { listen 127.0.0.1:$NGX_PROXY_PORT; location / {
    proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }
" >"$TMP/ngx_proxy.conf"
"$NGINX" -p "$TMP/ngx_up" -c "$TMP/ngx_up.conf" &
PIDS+=($!)
"$NGINX" -p "$TMP/ngx_proxy" -c "$TMP/ngx_proxy.conf" &
NGX_PROXY_PID=$!
PIDS+=($!)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)

SECRET="$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | head -c 32)"
gate_conf() { # <port> <threads> <session lines> <extra server lines>
  cat <<GATE_CONF
server:
  listen: 127.0.0.1:$1
  threads: $2
$4
provider:
  issuer_url: $ISSUER
  client_id: load
  client_secret: load-secret
cookie:
  secret: "$SECRET"
  secure: false
$3
authorization:
  allowed_groups: [admins]
  skip_auth_routes: ["^/public/"]
  api_routes: ["^/api/"]
  bearer_tokens: true
upstreams:
  - path: /
    url: http://127.0.0.1:$UP_PORT
GATE_CONF
}
gate_conf "$GATE_PORT" "$THREADS" "" "  ext_authz_http: 127.0.0.1:$GATE_HTTP_PORT
  ext_authz_grpc: 127.0.0.1:$GATE_GRPC_PORT" >"$TMP/gate.yaml"
gate_conf "$GATE_R_PORT" "$THREADS" "session:
  store: redis
  redis:
    url: redis://127.0.0.1:$REDIS_PORT/0" "" >"$TMP/gate_redis.yaml"

RUST_LOG=error "$BIN" run --config "$TMP/gate.yaml" >"$TMP/gate.log" 2>&1 &
GATE_PID=$!
PIDS+=($!)
RUST_LOG=error "$BIN" run --config "$TMP/gate_redis.yaml" >"$TMP/gate_redis.log" 2>&1 &
GATE_R_PID=$!
PIDS+=($!)
"$EX/bare_proxy" "127.0.0.1:$BARE_PORT" "127.0.0.1:$UP_PORT" "$THREADS" >"$TMP/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=($!)

wait_status "http://127.0.0.1:$UP_PORT/" 200
wait_status "http://127.0.0.1:$NGX_PROXY_PORT/" 200
wait_status "http://127.0.0.1:$BARE_PORT/public/x" 200
wait_status "http://127.0.0.1:$GATE_PORT/ready" 200
wait_status "http://127.0.0.1:$GATE_R_PORT/ready" 200
COOKIE="$("$EX/mint_session" "$TMP/gate.yaml")"
COOKIE_R="$("$EX/mint_session" "$TMP/gate_redis.yaml")"
HOST="127.0.0.1:$GATE_PORT"
# Sanity: every mode answers as expected before anything is measured.
wait_status "http://$HOST/dashboard" 200 -H "Cookie: $COOKIE"
wait_status "http://127.0.0.1:$GATE_R_PORT/dashboard" 200 -H "Cookie: $COOKIE_R"
wait_status "http://$HOST/dashboard" 200 -H "Authorization: Bearer $BEARER"
wait_status "http://$HOST/oauth2/auth" 202 -H "Cookie: $COOKIE"
wait_status "http://127.0.0.1:$GATE_HTTP_PORT/dashboard" 200 -H "Cookie: $COOKIE" -H "Host: $HOST"
grpc_check="$("$EX/grpc_load" "127.0.0.1:$GATE_GRPC_PORT" 1 1 "$HOST" "$COOKIE")"
case "$grpc_check" in "requests=0 "*) echo "load.sh: gRPC check got no answer: $grpc_check" >&2; exit 1 ;; *" errors=0 "*) ;; *) echo "load.sh: gRPC check failed: $grpc_check" >&2; exit 1 ;; esac

TICK="$(getconf CLK_TCK)"
# CPU ticks of a process and its children that are alive (nginx workers).
cpu_ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
rss_kb() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")))
  done
  echo "$total"
}
to_ms() { # wrk latency (12.3us / 1.2ms / 1.1s) -> ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

mode_pid() {
  case "$1" in
    nginx_proxy) echo "$NGX_PROXY_PID" ;;
    bare_pingora) echo "$BARE_PID" ;;
    redis_session) echo "$GATE_R_PID" ;;
    *) echo "$GATE_PID" ;;
  esac
}

RESULTS="$TMP/results.tsv"
: >"$RESULTS"
declare -A RSS_IDLE
for m in $MODES; do RSS_IDLE[$m]="$(rss_kb "$(mode_pid "$m")")"; done

# One run of one mode: appends "mode rps p50_ms p99_ms cpu_us_per_req".
run_mode() {
  local mode="$1" pid before out reqs rps p50 p99
  pid="$(mode_pid "$mode")"
  local wrk_args=()
  case "$mode" in
    # The same request as cookie_session's (its 4 KB Cookie included), so
    # the ratios compare authenticated and plain proxying of one request.
    nginx_proxy) wrk_args=("http://127.0.0.1:$NGX_PROXY_PORT/dashboard" -H "Cookie: $COOKIE") ;;
    bare_pingora) wrk_args=("http://127.0.0.1:$BARE_PORT/dashboard" -H "Cookie: $COOKIE") ;;
    skip_route) wrk_args=("http://$HOST/public/logo.svg") ;;
    cookie_session) wrk_args=("http://$HOST/dashboard" -H "Cookie: $COOKIE") ;;
    redis_session) wrk_args=("http://127.0.0.1:$GATE_R_PORT/dashboard" -H "Cookie: $COOKIE_R") ;;
    bearer_jwt) wrk_args=("http://$HOST/dashboard" -H "Authorization: Bearer $BEARER") ;;
    oauth2_auth) wrk_args=("http://$HOST/oauth2/auth" -H "Cookie: $COOKIE") ;;
    extauthz_http) wrk_args=("http://127.0.0.1:$GATE_HTTP_PORT/dashboard" -H "Cookie: $COOKIE" -H "Host: $HOST") ;;
  esac
  before="$(cpu_ticks "$pid")"
  if [ "$mode" = extauthz_grpc ]; then
    out="$("$EX/grpc_load" "127.0.0.1:$GATE_GRPC_PORT" "$GRPC_CONCURRENCY" "${DURATION%s}" "$HOST" "$COOKIE")"
    reqs="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")"
    rps="$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$out")"
    p50="$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$out")"
    p99="$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$out")"
    case "$out" in *" errors=0 "*) ;; *) echo "load.sh: gRPC checks failed: $out" >&2; exit 1 ;; esac
    echo "    (gRPC load client: $(sed -E 's/.*client_cpu_us=([0-9.]+).*/\1/' <<<"$out") CPU us per call)" >&2
  else
    out="$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency "${wrk_args[@]}")"
    if grep -q 'Non-2xx' <<<"$out"; then
      echo "load.sh: $mode answered non-2xx:" >&2
      echo "$out" >&2
      exit 1
    fi
    reqs="$(awk '/ requests in / {print $1}' <<<"$out")"
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
  fi
  local after us
  after="$(cpu_ticks "$pid")"
  us="$(awk -v a="$before" -v b="$after" -v t="$TICK" -v n="$reqs" 'BEGIN {if (n > 0) printf "%.1f", (b - a) / t * 1e6 / n; else print 0}')"
  printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$rps" "$p50" "$p99" "$us" >>"$RESULTS"
  printf '  %-16s %10s req/s  p50 %7s ms  p99 %7s ms  %6s CPU us/req\n' "$mode" "$rps" "$p50" "$p99" "$us" >&2
}

echo "== $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), shared by the load generator and the servers" >&2
echo "== THREADS=$THREADS ROUNDS=$ROUNDS wrk -t$WRK_THREADS -c$CONNS -d$DURATION; gRPC: $GRPC_CONCURRENCY concurrent Checks on one HTTP/2 connection" >&2
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round/$ROUNDS" >&2
  for m in $MODES; do run_mode "$m"; done
done

declare -A RSS_AFTER
for m in $MODES; do RSS_AFTER[$m]="$(rss_kb "$(mode_pid "$m")")"; done
for m in $MODES; do printf '%s\t%s\t%s\n' "$m" "${RSS_IDLE[$m]}" "${RSS_AFTER[$m]}"; done >"$TMP/rss.tsv"

[ "$ROUNDS" -gt 0 ] && python3 - "$RESULTS" "$TMP/rss.tsv" "$MODES" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l]
rss = {l.split("\t")[0]: l.split("\t")[1:] for l in open(sys.argv[2]).read().splitlines() if l}
modes = sys.argv[3].split()
med = {}
for m in modes:
    rs = [r for r in rows if r[0] == m]
    med[m] = [statistics.median(float(r[i]) for r in rs) for i in (1, 2, 3, 4)]
def ratio(m, base, i, inverse=False):
    if base not in med or med[base][i] == 0:
        return "-"
    return "%.2f" % (med[m][i] / med[base][i])
print()
print("%-16s %9s %8s %8s %8s %8s %8s %8s %8s %9s %9s" % (
    "mode", "req/s", "p50 ms", "p99 ms", "CPU us", "rps/ping", "cpu/ping", "p99/ping", "rps/ngx", "RSS idle", "RSS after"))
for m in modes:
    rps, p50, p99, cpu = med[m]
    idle, after = rss.get(m, ["0", "0"])
    print("%-16s %9.0f %8.2f %8.2f %8.1f %8s %8s %8s %8s %8.1fM %8.1fM" % (
        m, rps, p50, p99, cpu, ratio(m, "bare_pingora", 0), ratio(m, "bare_pingora", 3),
        ratio(m, "bare_pingora", 2), ratio(m, "nginx_proxy", 0), int(idle) / 1024, int(after) / 1024))
print("(medians of the rounds; ratios: to bare Pingora (ping) and to nginx's plain proxy (ngx); RSS of the serving process tree)")
PY

[ "$CALLGRIND" = 1 ] || exit 0

# Instructions per request: collection on only around CALLGRIND_REQS
# keep-alive requests (curl reuses one connection for every URL it is given).
curl_n() { # <n> <url> [curl args]
  local n="$1" url="$2"
  shift 2
  local cfg="$TMP/curl.cfg"
  : >"$cfg"
  for _ in $(seq 1 "$n"); do
    printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$cfg"
  done
  curl -s --fail -K "$cfg" "$@"
}
# Sends <n> requests of the current callgrind mode: keep-alive HTTP/1.1
# requests with curl, or (CG_GRPC=<authority>) gRPC Checks kept 64 at a time
# on one HTTP/2 connection.
cg_drive() { # <n> <port> <url path>
  if [ -n "${CG_GRPC:-}" ]; then
    "$EX/grpc_load" "127.0.0.1:$2" "$GRPC_CONCURRENCY" "$1r" "$CG_GRPC" "$COOKIE" >/dev/null
  else
    curl_n "$1" "http://127.0.0.1:$2$3" "${CG_CURL[@]}"
  fi
}
callgrind_per_request() { # <label> <port> <url path> <cmd...> (curl args via CG_CURL)
  local label="$1" port="$2" path="$3" ready_port="$2"
  shift 3
  # A gRPC mode waits for the server's HTTP listener, then drives the gRPC one.
  [ -n "${CG_GRPC:-}" ] && ready_port="$CG_GATE_PORT" && path=/ready
  local out="$TMP/callgrind.$label"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@" \
    >"$TMP/cg.$label.log" 2>&1 &
  local vpid=$!
  PIDS+=("$vpid")
  local end=$((SECONDS + 120))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "${CG_CURL[@]}" "http://127.0.0.1:$ready_port$path")" = 200 ]; do
    if [ "$SECONDS" -ge "$end" ]; then echo "load.sh: $label under valgrind never answered" >&2; exit 1; fi
    sleep 0.5
  done
  cg_drive 200 "$port" "$path"
  callgrind_control -i on "$vpid" >/dev/null 2>&1
  cg_drive "$CALLGRIND_REQS" "$port" "$path"
  callgrind_control -i off "$vpid" >/dev/null 2>&1
  callgrind_control -d "$vpid" >/dev/null 2>&1
  kill -INT "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
  [ -n "$CALLGRIND_KEEP" ] && mkdir -p "$CALLGRIND_KEEP" && cp "$out.1" "$CALLGRIND_KEEP/callgrind.out.$label"
  local ir
  ir="$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')"
  awk -v ir="$ir" -v n="$CALLGRIND_REQS" -v l="$label" 'BEGIN {printf "%-16s %12.0f instructions per request\n", l, ir / n}'
}
echo >&2
echo "== callgrind: $CALLGRIND_REQS keep-alive requests, 1 server thread (slow: a few minutes per mode)" >&2
CG_GRPC_PORT="$(free_port)"
gate_conf "$CG_GATE_PORT" 1 "" "  ext_authz_grpc: 127.0.0.1:$CG_GRPC_PORT" >"$TMP/gate_cg.yaml"
gate_conf "$CG_GATE_PORT" 1 "session:
  store: redis
  redis:
    url: redis://127.0.0.1:$REDIS_PORT/0" "" >"$TMP/gate_cg_redis.yaml"
declare -A IR
for m in $CALLGRIND_MODES; do
  # Every mode but bearer_jwt sends the same 4 KB session cookie.
  CG_CURL=(-H "Cookie: $COOKIE")
  CG_GRPC=
  case "$m" in
    bare_pingora)
      line="$(callgrind_per_request "$m" "$CG_BARE_PORT" /dashboard "$EX/bare_proxy" "127.0.0.1:$CG_BARE_PORT" "127.0.0.1:$UP_PORT" 1)" ;;
    cookie_session | skip_route | bearer_jwt)
      path=/dashboard
      [ "$m" = skip_route ] && path=/public/logo.svg
      [ "$m" = bearer_jwt ] && CG_CURL=(-H "Authorization: Bearer $BEARER")
      line="$(RUST_LOG=error callgrind_per_request "$m" "$CG_GATE_PORT" "$path" "$BIN" run --config "$TMP/gate_cg.yaml")" ;;
    redis_session)
      # The same Redis, so the session minted for the Redis mode opens here.
      CG_CURL=(-H "Cookie: $COOKIE_R")
      line="$(RUST_LOG=error callgrind_per_request "$m" "$CG_GATE_PORT" /dashboard "$BIN" run --config "$TMP/gate_cg_redis.yaml")" ;;
    extauthz_grpc)
      CG_GRPC="$HOST"
      line="$(RUST_LOG=error callgrind_per_request "$m" "$CG_GRPC_PORT" - "$BIN" run --config "$TMP/gate_cg.yaml")" ;;
    *) echo "load.sh: unknown callgrind mode $m" >&2; exit 1 ;;
  esac
  echo "$line"
  IR[$m]="$(awk '{print $2}' <<<"$line")"
done
if [ -n "${IR[bare_pingora]:-}" ]; then
  for m in $CALLGRIND_MODES; do
    [ "$m" = bare_pingora ] && continue
    awk -v a="${IR[$m]}" -v b="${IR[bare_pingora]}" -v m="$m" \
      'BEGIN {if (b > 0) printf "%s / bare_pingora: %.2fx instructions per request\n", m, a / b}'
  done
fi
