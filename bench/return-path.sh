#!/usr/bin/env bash
# Measures the return path (batcher -> grain observer or Orleans memory stream -> frontend -> socket) at low load, for
# both transports and several delivery-stream settings, in one run: end-to-end latency of one request at a time (1 connection, depth 1) and the
# grid's CPU while idle. The first row (Orleans' defaults) is the baseline. Usage: bash bench/return-path.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-10}"
port=18000
hz=$(getconf CLK_TCK)
build_all

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_setting() {
  local label="$1"; shift
  start_server "$port" dotnet "$frontend" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning "$@"
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

echo "return path at low load: 1 connection, 1 request in flight, echo model (MaxWait 0), ${secs} s per setting"
echo "| return-path setting | idle CPU % of one core | req/s | p50 ms | p95 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|---|"
stream=(--StreamInfer:Streams:Transport=Stream)
run_setting "stream: Orleans defaults, poll 100 ms, 8 queues, .NET timers" "${stream[@]}" --StreamInfer:Streams:PollPeriod=00:00:00.100 --StreamInfer:Streams:Partitions=8 --StreamInfer:Streams:PreciseTimers=false
run_setting "stream: poll 1 ms, 8 queues, .NET timers" "${stream[@]}" --StreamInfer:Streams:Partitions=8 --StreamInfer:Streams:PreciseTimers=false
run_setting "stream: poll 1 ms, 2 queues, .NET timers" "${stream[@]}" --StreamInfer:Streams:PreciseTimers=false
run_setting "stream: poll 1 ms, 1 queue, precise timers" "${stream[@]}" --StreamInfer:Streams:Partitions=1
run_setting "stream: poll 1 ms, 2 queues, precise timers" "${stream[@]}"
run_setting "observer, .NET timers" --StreamInfer:Streams:PreciseTimers=false
run_setting "observer, precise timers (default)"
