#!/usr/bin/env bash
# Measures the return path at low load: end-to-end latency of one request at a time (1 connection, depth 1) over
# WebSocket, and the server's CPU while idle, for the grid (batcher -> frontend's grain observer -> socket) with and
# without precise timers, against the bare Kestrel WebSocket echo (bench/StreamInfer.BareEcho) measured in the same run
# as the baseline. Usage: bash bench/return-path.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-10}"
port=18000
hz=$(getconf CLK_TCK)
build_all

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure LABEL : one row against the server started on $port.
measure() {
  local label="$1"
  # Warm the path, then let it settle before measuring idle CPU.
  load_row "$port" --connections 1 --depth 1 --duration 2 --warmup 1 >/dev/null
  sleep 2
  local t0; t0=$(cpu_ticks "$server")
  sleep "$secs"
  local t1; t1=$(cpu_ticks "$server")
  local idle; idle=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.1f", (b - a) / hz / s * 100 }')
  echo "| $label | $idle |$(load_row "$port" --connections 1 --depth 1 --duration "$secs" --warmup 1)"
  stop_server
}

grid() {
  local label="$1"; shift
  start_server "$port" dotnet "$frontend" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning "$@"
  measure "$label"
}

echo "return path at low load: 1 connection, 1 request in flight, echo model (MaxWait 0), ${secs} s per row"
echo "| server | idle CPU % of one core | req/s | p50 ms | p95 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|---|"
start_server "$port" dotnet "$bare_echo" --urls "http://127.0.0.1:$port"
measure "bare Kestrel echo (baseline)"
grid "grid, .NET timers" --StreamInfer:Streams:PreciseTimers=false
grid "grid, precise timers (default)"
