#!/usr/bin/env bash
# Echo over WebSocket, 100 connections: the grid against the bare Kestrel baseline (bench/StreamInfer.BareEcho),
# measured in the same run, closed loop at saturation and then paced at half of each one's saturation rate.
# Usage: bash bench/echo-ws.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-10}"
# Warm-up per row: a fresh server spends its first seconds in tiered JIT compilation, which a short warm-up measures.
warmup="${WARMUP:-10}"
build_all

row() { echo_row "$1" "ws://127.0.0.1:$2/ws" "${@:3}"; } # label, port, loadgen args

echo "echo over WebSocket, 100 connections, ${secs} s per row (after ${warmup} s warm-up), one machine (server and load generator share it)"
echo "| server, load | req/s | p50 ms | p95 ms | p99 ms | max ms | errors |"
echo "|---|---|---|---|---|---|---|"
for target in baseline grid; do
  if [ "$target" = baseline ]; then
    port=18010; name="bare Kestrel echo (baseline)"
    start_server "$port" dotnet "$bare_echo" --urls "http://127.0.0.1:$port"
  else
    port=18011; name="StreamInfer grid, echo model"
    start_server "$port" dotnet "$frontend" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning
  fi
  row "$name, closed loop, 4 in flight per connection (saturation)" "$port" --depth 4
  half=$(awk -v r="$rps" 'BEGIN { printf "%d", r / 2 }')
  row "$name, closed loop, 1 in flight per connection" "$port" --depth 1
  row "$name, paced at ${half} req/s (half of saturation)" "$port" --depth 1 --rate "$half"
  stop_server
done
