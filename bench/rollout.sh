#!/usr/bin/env bash
# Latency and failures while a model is rolled out under load, against steady state in the same run. The model is the
# benchmark MLP (bench/StreamInfer.OnnxBench generate, hidden 512 by default), served as versions 1 and 2 (the same
# weights, so any difference is the swap itself). Both rows send the same paced load over WebSocket; during the second,
# a rollout to the other version is started every 2 s (1 -> 2 -> 1 ...): each one loads and warms a version on the
# device beside the serving one, switches, and releases the old one once drained.
# Target: 0 failures, and p99 during the swaps <= 2x the steady p99.
# Usage: bash bench/rollout.sh [seconds per row]   Environment: RATE (requests/s, 1000), CONNECTIONS (32), HIDDEN (512)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-20}"
rate="${RATE:-1000}"; conns="${CONNECTIONS:-32}"; hidden="${HIDDEN:-512}"
onnxbench=bench/StreamInfer.OnnxBench/bin/Release/net10.0/StreamInfer.OnnxBench.dll
port=18040; silo_port=11141; gateway_port=30041

repo=$(mktemp -d /tmp/streaminfer-rollout.XXXXXX)
trap 'stop_server; rm -rf "$repo"' EXIT
build_all
dotnet "$onnxbench" generate --out "$repo" --hidden "$hidden" >/dev/null
cp -r "$repo/mlp/1" "$repo/mlp/2"
# Version 1 serves at start; version 2 only once rolled out.
sed -i 's/{/{ "version": "1",/' "$repo/mlp/config.json"

start_server "$port" dotnet "$frontend" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning \
  --StreamInfer:Orleans:SiloPort=$silo_port --StreamInfer:Orleans:GatewayPort=$gateway_port \
  --StreamInfer:Orleans:ClusterId=bench-rollout --StreamInfer:Devices:Gpus=none \
  --StreamInfer:Repository:Path="$repo" --StreamInfer:Repository:BuiltInTinyLm=false
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/v2/models/mlp/ready" >/dev/null 2>&1 && break; sleep 0.1; done

run() { # OUT: one paced run
  dotnet "$loadgen" --url "ws://127.0.0.1:$port/ws" --model mlp --shape 1,256 --connections "$conns" --depth 1 \
    --rate "$rate" --duration "$secs" --warmup 2 >"$1" 2>/dev/null || true
}
row() { # LABEL OUT ROLLOUTS
  local cells errors
  cells=$(grep -E '^\|[ ]*[0-9]' "$2" | head -n 1 | cut -d'|' -f3-)
  errors=$(sed -n 's/^outcomes: //p' "$2" | tr ' ' '\n' | { grep -v '^result=' || true; } | tr '\n' ' ')
  echo "| $1 |$cells ${errors:-none} | $3 |"
}

# Unreported warm-up (JIT, pools), then the steady row.
dotnet "$loadgen" --url "ws://127.0.0.1:$port/ws" --model mlp --shape 1,256 --connections "$conns" --depth 1 \
  --rate "$rate" --duration 10 --warmup 1 >/dev/null 2>&1 || true
run "$repo/steady.txt"

run "$repo/swap.txt" &
lg=$!
sleep 3
next=2; committed=0; aborted=0
while kill -0 "$lg" 2>/dev/null; do
  phase=$(curl -s -X POST "http://127.0.0.1:$port/api/models/mlp/rollout" -H 'content-type: application/json' \
    -d "{\"version\":\"$next\"}" | sed -n 's/.*"phase":"\([a-z]*\)".*/\1/p')
  if [ "$phase" = committed ]; then committed=$((committed + 1)); next=$((3 - next)); else aborted=$((aborted + 1)); fi
  sleep 2
done
wait "$lg" || true

echo "rollout under load: mlp (hidden $hidden), $conns WebSocket connections paced at $rate req/s in all, ${secs} s per row (after 2 s warm-up); $(nproc) cores"
echo
echo "| load | req/s | p50 ms | p95 ms | p99 ms | max ms | errors | rollouts |"
echo "|---|---|---|---|---|---|---|---|"
row "steady (baseline)" "$repo/steady.txt" "–"
row "a rollout every 2 s" "$repo/swap.txt" "$committed committed, $aborted not"
p99() { grep -E '^\|[ ]*[0-9]' "$1" | head -n 1 | awk -F'|' '{gsub(/ /, "", $6); print $6}'; }
errs() { sed -n 's/^outcomes: //p' "$1" | tr ' ' '\n' | { grep -v '^result=' || true; } | awk -F= '{s += $2} END {print s + 0}'; }
awk -v a="$(p99 "$repo/steady.txt")" -v b="$(p99 "$repo/swap.txt")" -v e="$(errs "$repo/swap.txt")" 'BEGIN {
  printf "\ntargets: 0 failures during the swaps: %d (%s); p99 during <= 2x steady: %.2f ms vs %.2f ms = %.2fx (%s)\n",
    e, (e == 0 ? "met" : "not met"), b, a, b / a, (b <= 2 * a ? "met" : "not met") }'
