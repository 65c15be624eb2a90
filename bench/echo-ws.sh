#!/usr/bin/env bash
# Echo over WebSocket, 100 connections: the grid against the bare Kestrel baseline (bench/StreamInfer.BareEcho),
# measured in the same run, closed loop at saturation and then paced at half of each one's saturation rate.
# Usage: bash bench/echo-ws.sh [seconds]
set -euo pipefail
trap '[ -n "${server:-}" ] && kill "$server" 2>/dev/null || true' EXIT
cd "$(dirname "$0")/.."
secs="${1:-10}"
dotnet build StreamInfer.sln -c Release -v q -nologo >/dev/null
loadgen=bench/StreamInfer.LoadGen/bin/Release/net10.0/StreamInfer.LoadGen.dll

start() {
  "$@" >/tmp/echo-ws-server.log 2>&1 &
  server=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "server did not start" >&2; cat /tmp/echo-ws-server.log >&2; exit 1
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; }

load() { # label, extra loadgen args -> prints a table row, leaves req/s in $rps
  local label="$1"; shift
  local out; out=$(dotnet "$loadgen" --url "ws://127.0.0.1:$port/ws" --connections 100 --duration "$secs" --warmup 2 "$@" 2>/dev/null)
  local row; row=$(echo "$out" | grep -E '^\|[ ]*[0-9]' | head -n 1)
  rps=$(echo "$row" | awk -F'|' '{gsub(/ /, "", $3); print $3}')
  local errors; errors=$(echo "$out" | sed -n 's/^outcomes: //p' | tr ' ' '\n' | { grep -v '^result=' || true; } | tr '\n' ' ')
  echo "| $label |$(echo "$row" | cut -d'|' -f3-) ${errors:-none} |"
}

echo "echo over WebSocket, 100 connections, ${secs} s per row (after 2 s warm-up), one machine (server and load generator share it)"
echo "| server, load | req/s | p50 ms | p95 ms | p99 ms | max ms | errors |"
echo "|---|---|---|---|---|---|---|"
for target in baseline grid; do
  port=$([ "$target" = baseline ] && echo 18010 || echo 18011)
  if [ "$target" = baseline ]; then
    start dotnet bench/StreamInfer.BareEcho/bin/Release/net10.0/StreamInfer.BareEcho.dll --urls "http://127.0.0.1:$port"
    name="bare Kestrel echo (baseline)"
  else
    start dotnet Frontend/bin/Release/net10.0/StreamInfer.Frontend.dll --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning
    name="StreamInfer grid, echo model"
  fi
  load "$name, closed loop, 4 in flight per connection (saturation)" --depth 4
  half=$(awk -v r="$rps" 'BEGIN { printf "%d", r / 2 }')
  load "$name, closed loop, 1 in flight per connection" --depth 1
  load "$name, paced at ${half} req/s (half of saturation)" --depth 1 --rate "$half"
  stop
done
