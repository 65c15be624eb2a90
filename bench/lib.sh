# Shared by the bench/*.sh scripts: build once, start a server and wait until it answers, run the load generator and
# keep its table row. Source it from the repository root.
frontend=Frontend/bin/Release/net10.0/StreamInfer.Frontend.dll
bare_echo=bench/StreamInfer.BareEcho/bin/Release/net10.0/StreamInfer.BareEcho.dll
loadgen=bench/StreamInfer.LoadGen/bin/Release/net10.0/StreamInfer.LoadGen.dll
server=""

# The load generator names each HTTP and gRPC connection's session with X-Client-Id (as each WebSocket connection has
# its own), which the grid honours only from trusted proxies: every grid a bench script starts on this machine trusts
# loopback.
export StreamInfer__Auth__TrustedProxies__0=127.0.0.1

# A failed build prints its errors (and the bench stops) instead of failing silently.
build_all() {
  local log; log=$(mktemp)
  if ! dotnet build StreamInfer.sln -c Release -v q -nologo >"$log" 2>&1; then
    echo "the build failed:" >&2; grep -E 'error|Error' "$log" >&2 || cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
}

# start_server PORT COMMAND... : runs COMMAND in the background and waits (30 s at most) for /healthz on PORT.
start_server() {
  local port="$1"; shift
  "$@" >/tmp/bench-server.log 2>&1 &
  server=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "the server on port $port did not start:" >&2; cat /tmp/bench-server.log >&2; exit 1
}

stop_server() { if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""; fi; }
trap stop_server EXIT

# load_row PORT LOADGEN-ARGS... : runs the load generator against ws://127.0.0.1:PORT/ws and prints its table row
# without the request count: "| req/s | p50 | p95 | p99 | max |". Leaves the full output in $load_file.
load_file=/tmp/bench-loadgen.txt
load_row() {
  local port="$1"; shift
  load_row_at "ws://127.0.0.1:$port/ws" "$@"
}

# load_row_at URL LOADGEN-ARGS... : as load_row, against any URL the load generator takes (ws://, or http://.../predict).
load_row_at() {
  local url="$1"; shift
  dotnet "$loadgen" --url "$url" "$@" >"$load_file" 2>/dev/null || true
  grep -E '^\|[ ]*[0-9]' "$load_file" | head -n 1 | cut -d'|' -f3-
}

# echo_row LABEL URL LOADGEN-ARGS... : one row of the echo tables, "| LABEL | req/s | p50 | p95 | p99 | max | errors |",
# with 100 clients, $secs measured after $warmup; leaves the row's req/s in $rps.
echo_row() {
  local label="$1" url="$2"; shift 2
  local cells; cells=$(load_row_at "$url" --connections 100 --duration "$secs" --warmup "$warmup" --label "$label" "$@")
  rps=$(echo "$cells" | awk -F'|' '{gsub(/ /, "", $1); print $1}')
  local errors; errors=$(sed -n 's/^outcomes: //p' "$load_file" | tr ' ' '\n' | { grep -v '^result=' || true; } | tr '\n' ' ')
  echo "| $label |$cells ${errors:-none} |"
}

# wait_ready PORT MODEL: waits (60 s at most) until the grid on PORT is ready and serves MODEL; else prints its log and exits.
wait_ready() {
  local port="$1" model="$2" ready=0
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.1
  done
  if [ "$ready" != 1 ]; then echo "the grid did not become ready in 60 s:" >&2; cat /tmp/bench-server.log >&2; exit 1; fi
  curl -sf "http://127.0.0.1:$port/v2/models/$model" >/dev/null || { echo "the grid does not serve $model:" >&2; cat /tmp/bench-server.log >&2; exit 1; }
}

# The ONNX scenarios' rows (onnx-grid.sh, image-grid.sh): they set $repo (a scratch folder), $secs (seconds per grid
# row), $best (the best bare rows/s) and define load_args MODEL DEPTH (the load generator's arguments for a run).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
trim() { echo "${1// /}"; }
pct() { awk -v a="$1" -v b="$best" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }

# bare_rows FILE: the rows of a bare ONNX Runtime table (StreamInfer.OnnxBench bare), each set against $best.
bare_rows() {
  grep -E '^\|[ ]*[0-9]' "$1" | while IFS='|' read -r _ batch _ rps ms p50 p99 cpu _; do
    rps=$(trim "$rps"); echo "| bare ONNX Runtime, batch $(trim "$batch") | $(trim "$batch") | $rps | $(trim "$ms") | $(trim "$p50") | $(trim "$p99") | $(trim "$cpu") | $(pct "$rps") | – |"
  done
}

# grid_row LABEL MODEL DEPTH [compare]: one closed-loop run against the grid ($server), its table row
# "| LABEL | batch size | rows/s | ms per batch | p50 | p99 | CPU % | % of best bare | errors |", and its req/s in $rps;
# the row is set against $best unless the fourth argument is "no".
grid_row() {
  local label="$1" model="$2" depth="$3" compare="${4:-yes}" out="$repo/grid-$2-$3.txt" lg s0 l0 t0 s1 l1 t1 cpu p50 p99 batch compute errors unanswered conn_errors hz
  hz=$(getconf CLK_TCK)
  # shellcheck disable=SC2046
  dotnet "$loadgen" $(load_args "$model" "$depth") --duration "$secs" --warmup 2 >"$out" 2>/dev/null &
  lg=$!
  # CPU of the grid and of the load generator over the measured window (connecting takes well under 0.5 s).
  sleep 2.5
  s0=$(cpu_ticks "$server"); l0=$(cpu_ticks "$lg"); t0=$(date +%s.%N)
  sleep "$(awk -v s="$secs" 'BEGIN { print s - 0.5 }')"
  s1=$(cpu_ticks "$server"); l1=$(cpu_ticks "$lg"); t1=$(date +%s.%N)
  wait "$lg" || true
  cpu=$(awk -v s0="$s0" -v s1="$s1" -v l0="$l0" -v l1="$l1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
    'BEGIN { d = (t1 - t0) * hz; printf "%.0f + %.0f", 100 * (s1 - s0) / d, 100 * (l1 - l0) / d }')
  # | requests | req/s | p50 | p95 | p99 | max |
  if ! IFS='|' read -r _ _ rps p50 _ p99 _ < <(grep -E '^\|[ ]*[0-9]' "$out" | head -n 1); then
    rps=0; echo "| $label | – | – | – | – | – | $cpu | – | no result: $(grep -m1 -iE 'error|connect' "$out" | cut -c1-80) |"; return
  fi
  rps=$(trim "$rps")
  read -r batch compute < <(sed -n 's/^server timing: mean batch size \([0-9.]*\), mean compute \([0-9.]*\) ms per batch.*/\1 \2/p' "$out") || true
  errors=$(sed -n 's/^outcomes: //p' "$out" | tr ' ' '\n' | { grep -v '^result=' || true; } | tr '\n' ' ')
  unanswered=$(sed -n 's/^unanswered: \([0-9]*\).*/\1/p' "$out")
  if [ "${unanswered:-0}" != 0 ]; then errors="${errors}unanswered=$unanswered "; fi
  conn_errors=$(sed -n 's/^connection-level errors: //p' "$out")
  if [ -n "$conn_errors" ] && [ "$conn_errors" != none ]; then errors="${errors}connection-level: ${conn_errors% (whole run)} "; fi
  errors="${errors% }"
  echo "| $label | ${batch:-?} | $rps | ${compute:-?} | $(trim "$p50") | $(trim "$p99") | $cpu | $([ "$compare" = no ] && echo – || pct "$rps") | ${errors:-none} |"
}
