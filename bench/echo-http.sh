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

row() { # label, port, loadgen args: prints a table row, leaves req/s in $rps
  local label="$1" port="$2"; shift 2
  dotnet "$loadgen" --url "http://127.0.0.1:$port/predict" --connections 100 --duration "$secs" --warmup "$warmup" --label "$label" "$@" >"$load_file" 2>/dev/null || true
  local cells; cells=$(grep -E '^\|[ ]*[0-9]' "$load_file" | head -n 1 | cut -d'|' -f3-)
  rps=$(echo "$cells" | awk -F'|' '{gsub(/ /, "", $1); print $1}')
  local errors; errors=$(sed -n 's/^outcomes: //p' "$load_file" | tr ' ' '\n' | { grep -v '^result=' || true; } | tr '\n' ' ')
  echo "| $label |$cells ${errors:-none} |"
}

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
