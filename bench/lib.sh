# Shared by the bench/*.sh scripts: build once, start a server and wait until it answers, run the load generator and
# keep its table row. Source it from the repository root.
frontend=Frontend/bin/Release/net10.0/StreamInfer.Frontend.dll
bare_echo=bench/StreamInfer.BareEcho/bin/Release/net10.0/StreamInfer.BareEcho.dll
loadgen=bench/StreamInfer.LoadGen/bin/Release/net10.0/StreamInfer.LoadGen.dll
server=""

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
