#!/usr/bin/env bash
# Echo over HTTP POST /predict, 100 clients: the grid against a bare Kestrel server answering the same /predict (bench/
# StreamInfer.BareEcho), in the same run, closed loop (1 request in flight per client), then paced at half of each
# one's rate. Each client keeps its keep-alive connection. Usage: bash bench/echo-http.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-8}"
warmup="${WARMUP:-10}"
build_all

row() { echo_row "$1" "http://127.0.0.1:$2/predict" "${@:3}"; } # label, port, loadgen args

echo "echo over HTTP POST /predict, 100 clients, ${secs} s per row (after ${warmup} s warm-up), one machine"
echo "| server, load | req/s | p50 ms | p95 ms | p99 ms | max ms | errors |"
echo "|---|---|---|---|---|---|---|"
for target in baseline grid; do
  if [ "$target" = baseline ]; then
    port=18040; name="bare Kestrel /predict echo (baseline)"
    start_server "$port" dotnet "$bare_echo" --urls "http://127.0.0.1:$port"
  else
    port=18041; name="StreamInfer grid, echo model"
    start_server "$port" dotnet "$frontend" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning \
      --StreamInfer:Orleans:SiloPort=11241 --StreamInfer:Orleans:GatewayPort=30241
  fi
  row "$name, closed loop, 1 in flight per client" "$port" --depth 1
  half=$(awk -v r="$rps" 'BEGIN { printf "%d", r / 2 }')
  row "$name, paced at $half req/s (half of closed loop)" "$port" --depth 1 --rate "$half"
  stop_server
done
