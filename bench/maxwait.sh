#!/usr/bin/env bash
# Picks the default MaxWait: the same load against the echo model with a simulated device (a fixed cost per batch plus
# a cost per request, so batching pays) under MaxWait 0 (work-conserving), 2 ms and 5 ms, all in one run; the
# no-batching row is the baseline. Usage: bash bench/maxwait.sh [seconds] [connections] [depth]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-10}"; conns="${2:-100}"; depth="${3:-1}"
port=18002
build_all

run() {
  local label="$1" model="$2"; shift 2
  start_server "$port" dotnet "$frontend" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning \
    --StreamInfer:Models:sim:FixedDelay=00:00:00.005 --StreamInfer:Models:sim:PerItemCost=00:00:00.00005 \
    --StreamInfer:Models:sim:MaxBatchSize=64 "$@"
  echo "| $label |$(load_row "$port" --model "$model" --connections "$conns" --depth "$depth" --duration "$secs" --warmup 2)"
  stop_server
}

echo "MaxWait: ${conns} connections x ${depth} in flight, ${secs} s each; 'sim' = echo with 5 ms per batch + 0.05 ms per request, MaxBatchSize 64"
echo "| model, MaxWait | req/s | p50 ms | p95 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|"
run "sim, MaxWait 0 (work-conserving)" sim --StreamInfer:Models:sim:MaxWait=00:00:00
run "sim, MaxWait 2 ms" sim --StreamInfer:Models:sim:MaxWait=00:00:00.002
run "sim, MaxWait 5 ms" sim --StreamInfer:Models:sim:MaxWait=00:00:00.005
run "sim, MaxBatchSize 1 (no batching)" sim --StreamInfer:Models:sim:MaxBatchSize=1
run "echo (no compute), MaxWait 0" echo --StreamInfer:Models:echo:MaxWait=00:00:00
run "echo (no compute), MaxWait 2 ms" echo --StreamInfer:Models:echo:MaxWait=00:00:00.002
