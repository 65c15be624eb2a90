#!/usr/bin/env bash
# Measures the return path (batcher -> Orleans memory stream -> frontend -> socket) at low load, for several
# delivery-stream settings, in one run: end-to-end latency of one request at a time (1 connection, depth 1) and the
# grid's CPU while idle. Usage: bash bench/return-path.sh [seconds-per-setting]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
port=18000
dotnet build Frontend -c Release -v q -nologo >/dev/null
dotnet build bench/StreamInfer.LoadGen -c Release -v q -nologo >/dev/null
frontend=Frontend/bin/Release/net10.0/StreamInfer.Frontend.dll
loadgen=bench/StreamInfer.LoadGen/bin/Release/net10.0/StreamInfer.LoadGen.dll
hz=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_setting() {
  local label="$1"; shift
  dotnet "$frontend" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning "$@" >/tmp/return-path-grid.log 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  # Warm the path, then let it settle before measuring idle CPU.
  dotnet "$loadgen" --url "ws://127.0.0.1:$port/ws" --connections 1 --depth 1 --duration 2 --warmup 1 >/dev/null 2>&1
  sleep 2
  local t0; t0=$(cpu_ticks "$pid")
  sleep "$secs"
  local t1; t1=$(cpu_ticks "$pid")
  local idle; idle=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.1f", (b - a) / hz / s * 100 }')
  local out; out=$(dotnet "$loadgen" --url "ws://127.0.0.1:$port/ws" --connections 1 --depth 1 --duration "$secs" --warmup 1 --json /tmp/return-path.json 2>/dev/null)
  local row; row=$(echo "$out" | grep -E '^\|[ ]*[0-9]' | head -n 1)
  echo "| $label | $idle |$(echo "$row" | cut -d'|' -f3-)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "return path at low load: 1 connection, 1 request in flight, echo model (MaxWait 0), ${secs} s per setting"
echo "| delivery-stream setting | idle CPU % of one core | req/s | p50 ms | p95 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|---|"
run_setting "Orleans defaults: poll 100 ms, 8 queues, .NET timers" --StreamInfer:Streams:PollPeriod=00:00:00.100 --StreamInfer:Streams:Partitions=8 --StreamInfer:Streams:PreciseTimers=false
run_setting "poll 1 ms, 8 queues, .NET timers" --StreamInfer:Streams:Partitions=8 --StreamInfer:Streams:PreciseTimers=false
run_setting "poll 1 ms, 2 queues, .NET timers" --StreamInfer:Streams:PreciseTimers=false
run_setting "poll 1 ms, 1 queue, precise timers" --StreamInfer:Streams:Partitions=1
run_setting "poll 1 ms, 2 queues, precise timers (default)"
