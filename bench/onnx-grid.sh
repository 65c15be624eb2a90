#!/usr/bin/env bash
# Bare ONNX Runtime against the grid, on one test model: the MLP from bench/StreamInfer.OnnxBench (x float32 [batch,256]
# -> 2560 -> 2560 -> y [batch,64]) run bare at batch sizes 1..32 (one thread calling Run back to back, the grid's
# session options), then served by the grid (embedded default, CPU) to 64 WebSocket clients, closed loop, sending
# x [1,256] each. One table; the last line compares the grid at saturation with the bare engine's best batched rows/s
# (target: >= 85%). A last row serves the same requests from the built-in echo model (no compute): the grid's own
# ceiling for this request size, which shares the cores with ONNX Runtime.
# Usage: bash bench/onnx-grid.sh [seconds per grid row] [seconds per bare batch size]
# Environment: HIDDEN (hidden width; default the generator's, 2560),
# CONNECTIONS (64), DEPTHS (in flight per connection, "1 2"), THREADS (ORT intra-op threads, bare and grid alike;
# default every core), SPINNING (1 = allow ORT spinning, both), ECHO (0 = leave out the echo row).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-10}"
bare_secs="${2:-$(( secs / 2 > 2 ? secs / 2 : 2 ))}"
conns="${CONNECTIONS:-64}"; depths="${DEPTHS:-1 2}"
threads="${THREADS:-$(nproc)}"; spinning="${SPINNING:-0}"
onnxbench=bench/StreamInfer.OnnxBench/bin/Release/net10.0/StreamInfer.OnnxBench.dll
# Ports of their own (HTTP, silo, gateway) and a cluster id of their own, so that a dev grid on the defaults is left alone.
port=18020; silo_port=11121; gateway_port=30021

repo=$(mktemp -d /tmp/streaminfer-onnx-grid.XXXXXX)
trap 'stop_server; rm -rf "$repo"' EXIT

build_all
dotnet "$onnxbench" generate --out "$repo" ${HIDDEN:+--hidden "$HIDDEN"} >"$repo/generate.txt"

bare_flags=(--threads "$threads")
grid_flags=(--StreamInfer:Devices:CpuThreads="$threads")
if [ "$spinning" = 1 ]; then bare_flags+=(--spinning); grid_flags+=(--StreamInfer:Devices:AllowSpinning=true); fi

# Bare first, alone on the machine. Rows: | batch | runs | rows/s | ms/batch | p50 ms | p99 ms | CPU % |
dotnet "$onnxbench" bare --model "$repo/mlp" --seconds "$bare_secs" --warmup 1 "${bare_flags[@]}" >"$repo/bare.txt" 2>/dev/null
read -r best best_batch < <(sed -n 's/^best: \([0-9.]*\) rows\/s at batch \([0-9]*\)$/\1 \2/p' "$repo/bare.txt") || { echo "the bare run failed:" >&2; cat "$repo/bare.txt" >&2; exit 1; }

start_server "$port" dotnet "$frontend" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning \
  --StreamInfer:Orleans:SiloPort=$silo_port --StreamInfer:Orleans:GatewayPort=$gateway_port \
  --StreamInfer:Orleans:ClusterId=bench-onnx-grid --StreamInfer:Devices:Gpus=none \
  --StreamInfer:Repository:Path="$repo" "${grid_flags[@]}"
wait_ready "$port" mlp

load_args() { # MODEL DEPTH
  echo --url "ws://127.0.0.1:$port/ws" --model "$1" --shape 1,256 --connections "$conns" --depth "$2"
}
# A first run after start is slower (JIT tiering, PGO, pools growing): run one, unreported, before the measured rows.
# shellcheck disable=SC2046
dotnet "$loadgen" $(load_args mlp 2) --duration 5 --warmup 1 >"$repo/grid-warmup.txt" 2>/dev/null || true

echo "bare ONNX Runtime vs the grid: $(sed 's/^wrote [^:]*: //' "$repo/generate.txt")"
echo "$(nproc) cores, ORT intra-op threads $threads, spinning $([ "$spinning" = 1 ] && echo on || echo off); bare: one thread calling Run, ${bare_secs} s per batch size; grid: embedded default, CPU, ${conns} WebSocket connections sending x [1,256], closed loop, ${secs} s per row after 2 s warm-up (and one unreported 6 s run after the grid started)"
echo "bare rows: ms per batch, p50 and p99 of one Run; grid rows: batch size and compute ms are the grid's own (timing in the result frames, each batch counted once), p50 and p99 are request latency (send to result); CPU in % of one core ($(nproc)00% = every core), for the grid 'grid process + load generator' over the measured window"
echo
echo "| path, load | batch size | rows/s | ms per batch | p50 ms | p99 ms | CPU % | % of best bare | errors |"
echo "|---|---|---|---|---|---|---|---|---|"
bare_rows "$repo/bare.txt"

grid_best=0; grid_best_label=""
for depth in $depths; do
  grid_row "grid, mlp, $conns connections × $depth in flight" mlp "$depth"
  if awk -v a="$rps" -v b="$grid_best" 'BEGIN { exit !(a > b) }'; then grid_best=$rps; grid_best_label="$conns × $depth in flight"; fi
done
echo_rps=""
if [ "${ECHO:-1}" != 0 ]; then
  grid_row "grid, echo model (no compute: the grid's own ceiling), $conns connections × 1 in flight" echo 1 no
  echo_rps=$rps
fi
echo
ratio=$(awk -v a="$grid_best" -v b="$best" 'BEGIN { printf "%.1f", 100 * a / b }')
verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 85 ? "met" : "not met") }')
echo "grid at saturation ($grid_best_label): $grid_best req/s = ${ratio}% of bare ONNX Runtime's best ($best rows/s at batch $best_batch); target >= 85%: $verdict"
if [ -n "$echo_rps" ]; then
  awk -v e="$echo_rps" -v b="$best" 'BEGIN { x = 1 / (1 / e + 1 / b); printf "if the grid'"'"'s own work (echo row) and the engine'"'"'s (best bare row) only shared the cores: 1 / (1/%s + 1/%s) = %.0f req/s = %.1f%% of bare\n", e, b, x, 100 * x / b }'
fi
