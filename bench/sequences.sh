#!/usr/bin/env bash
# Stateful streams: the built-in vad-lite (silero VAD v5's signature: input [batch,samples], state [2,batch,128] with
# the batch on axis 1, sr scalar) served to 64, 256 and 1,024 concurrent sequences, each a WebSocket client streaming
# 512-sample chunks at 16 kHz, closed loop and at a real-time pace (one 32 ms chunk every 32 ms per sequence), against
# bare ONNX Runtime running the same batches with the states gathered into the batch and scattered back from stateN in
# a loop (StreamInfer.OnnxBench sequences), in the same run. One table: chunks/s, p50/p99 per chunk, the grid's mean
# batch size and compute ms per batch, CPU, % of bare (the best bare batch no larger than the model's max_batch_size).
# Usage: bash bench/sequences.sh [seconds per grid row] [seconds per bare batch size]
# Environment: SEQUENCES ("64 256 1024"), REALTIME_MORE (more sequence counts tried at a real-time pace only, e.g.
# "2048 4096 8192": the largest that keeps up is reported), MAX_BATCH (the model's max_batch_size, 64), BALLAST
# (multiply-adds per chunk / 128 that change no value, 4096 gives half a million per chunk, the order of silero VAD v5's; 0 = the
# built-in's bare arithmetic, a few microseconds per batch),
# BARE_BATCHES ("1,8,64,256"), PROTOCOL (ws-binary; or ws), THREADS (ORT intra-op threads, bare and grid alike; default
# every core), SPINNING (1 = allow ORT spinning, both), BARE_ONLY (1 = the bare rows only, no grid).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-10}"
bare_secs="${2:-$(( secs / 2 > 2 ? secs / 2 : 2 ))}"
counts="${SEQUENCES:-64 256 1024}"; more="${REALTIME_MORE:-}"
max_batch="${MAX_BATCH:-64}"; ballast="${BALLAST:-4096}"; bare_batches="${BARE_BATCHES:-1,8,64,256}"
protocol="${PROTOCOL:-ws-binary}"
threads="${THREADS:-$(nproc)}"; spinning="${SPINNING:-0}"
chunk=512; rate_hz=16000; chunk_s=$(awk -v c="$chunk" -v r="$rate_hz" 'BEGIN { print c / r }')
onnxbench=bench/StreamInfer.OnnxBench/bin/Release/net10.0/StreamInfer.OnnxBench.dll
# Ports of their own (HTTP, silo, gateway) and a cluster id of their own, so that a dev grid on the defaults is left alone.
port=18030; silo_port=11131; gateway_port=30031

repo=$(mktemp -d /tmp/streaminfer-sequences.XXXXXX)
trap 'stop_server; rm -rf "$repo"' EXIT

build_all
dotnet "$onnxbench" generate-vad --out "$repo" --max-batch-size "$max_batch" --ballast "$ballast" >"$repo/generate.txt"

bare_flags=(--threads "$threads")
grid_flags=(--StreamInfer:Devices:CpuThreads="$threads")
if [ "$spinning" = 1 ]; then bare_flags+=(--spinning); grid_flags+=(--StreamInfer:Devices:AllowSpinning=true); fi

# Bare first, alone on the machine. Rows: | batch | sequences | batches | chunks/s | ms/batch | p50 ms | p99 ms | Run ms | CPU % |
if ! dotnet "$onnxbench" sequences --model "$repo/vad-lite" --batch-sizes "$bare_batches" --chunk "$chunk" --sample-rate "$rate_hz" \
    --seconds "$bare_secs" --warmup 1 "${bare_flags[@]}" >"$repo/bare.txt" 2>"$repo/bare.err"; then
  echo "the bare run failed:" >&2; cat "$repo/bare.err" "$repo/bare.txt" >&2; exit 1
fi
# The comparison: the best bare chunks/s at a batch the grid may form (no larger than max_batch_size).
best=$(grep -E '^\|[ ]*[0-9]' "$repo/bare.txt" | awk -F'|' -v m="$max_batch" '$2 + 0 <= m && $5 + 0 > b { b = $5 + 0 } END { print b + 0 }')
best_batch=$(grep -E '^\|[ ]*[0-9]' "$repo/bare.txt" | awk -F'|' -v b="$best" '$5 + 0 == b { gsub(/ /, "", $2); print $2; exit }')

echo "stateful streams, bare ONNX Runtime vs the grid: $(sed 's/^wrote [^:]*: //' "$repo/generate.txt")"
echo "$(nproc) cores, ORT intra-op threads $threads, spinning $([ "$spinning" = 1 ] && echo on || echo off); chunks of $chunk float32 samples + sr $rate_hz ($(awk -v s="$chunk_s" 'BEGIN { print s * 1000 }') ms of audio)"
echo "bare: one thread gathering B sequences' chunks and states, Run, scattering stateN back, ${bare_secs} s per batch size; ms per batch, p50 and p99 are the whole loop's"
echo "grid: embedded default, CPU, one $protocol connection per sequence (sequence_start on its first chunk), ${secs} s per row after 2 s warm-up; batch size and compute ms are the grid's own (timing in the results), p50 and p99 per chunk (send to result); CPU in % of one core, 'grid process + load generator'"
echo
echo "| path, load | batch size | chunks/s | ms per batch | p50 ms | p99 ms | CPU % | % of bare | errors |"
echo "|---|---|---|---|---|---|---|---|---|"
grep -E '^\|[ ]*[0-9]' "$repo/bare.txt" | while IFS='|' read -r _ batch _ _ cps ms p50 p99 _ cpu _; do
  cps=$(trim "$cps"); echo "| bare ONNX Runtime, batch $(trim "$batch") (gather, Run, scatter) | $(trim "$batch") | $cps | $(trim "$ms") | $(trim "$p50") | $(trim "$p99") | $(trim "$cpu") | $(pct "$cps") | – |"
done
if [ "${BARE_ONLY:-0}" = 1 ]; then
  echo; echo "bare base for '% of bare': $best chunks/s at batch $best_batch (max_batch_size $max_batch); BARE_ONLY=1: no grid rows"
  exit 0
fi

start_server "$port" dotnet "$frontend" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning \
  --StreamInfer:Orleans:SiloPort=$silo_port --StreamInfer:Orleans:GatewayPort=$gateway_port \
  --StreamInfer:Orleans:ClusterId=bench-sequences --StreamInfer:Devices:Gpus=none \
  --StreamInfer:Repository:Path="$repo" --StreamInfer:Repository:BuiltInTinyLm=false "${grid_flags[@]}"
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
if ! curl -sf "http://127.0.0.1:$port/v2/models/vad-lite/ready" >/dev/null 2>&1; then
  echo "the grid does not serve vad-lite: it needs stateful sequence batching (per-tensor batch_axis, shared inputs, a" >&2
  echo "sequence's state carried between requests). What the grid said about the model:" >&2
  grep -i "vad-lite" /tmp/bench-server.log | head -n 10 >&2 || true
  curl -s "http://127.0.0.1:$port/v2/health/ready" >&2 || true; echo >&2
  exit 1
fi

n=1; pace=""
load_args() { # MODEL DEPTH
  echo --url "ws://127.0.0.1:$port/ws" --protocol "$protocol" --model "$1" --sequences --chunk "$chunk" --sample-rate "$rate_hz" \
    --connections "$n" --depth "$2" --connect-concurrency 100 $pace
}
# One short run first: the grid must answer sequence chunks with results (not only load the model), and the JIT warms.
# shellcheck disable=SC2046
dotnet "$loadgen" $(load_args vad-lite 1) --duration 2 --warmup 1 >"$repo/probe.txt" 2>&1 || true
if ! grep -q '^outcomes: result=' "$repo/probe.txt" || sed -n 's/^outcomes: //p' "$repo/probe.txt" | tr ' ' '\n' | grep -qv '^result='; then
  echo "the grid loaded vad-lite but did not answer a sequence's chunks with results:" >&2
  grep -E '^outcomes|^unanswered|^connection-level|error' "$repo/probe.txt" >&2 || cat "$repo/probe.txt" >&2
  exit 1
fi

grid_best=0; grid_best_label=""; realtime_max=0
declare -A saturation
for n in $counts; do
  pace=""
  grid_row "grid, $n sequences, closed loop" vad-lite 1
  saturation[$n]=$rps
  if awk -v a="$rps" -v b="$grid_best" 'BEGIN { exit !(a > b) }'; then grid_best=$rps; grid_best_label="$n sequences"; fi
done
realtime_row() { # N: one real-time row; raises realtime_max when the grid kept up (>= 98% of the offered chunks, p99 under one chunk)
  local target; target=$(awk -v n="$n" -v s="$chunk_s" 'BEGIN { printf "%.1f", n / s }')
  pace="--rate $target"
  # Not in a subshell: grid_row sets $rps.
  grid_row "grid, $n sequences, real time ($target chunks/s offered)" vad-lite 1 no >"$repo/row.txt"
  local row; row=$(cat "$repo/row.txt"); echo "$row"
  local p99; p99=$(echo "$row" | awk -F'|' '{ gsub(/ /, "", $7); print $7 }')
  if awk -v a="$rps" -v t="$target" -v p="$p99" -v s="$chunk_s" 'BEGIN { exit !(a >= 0.98 * t && p + 0 > 0 && p / 1000 < s) }'; then
    if [ "$n" -gt "$realtime_max" ]; then realtime_max=$n; fi
  fi
}
for n in $counts $more; do realtime_row; done
# Half load: the largest count's saturation rate halved, spread over its sequences.
n=$(echo "$counts" | awk '{ print $NF }')
half=$(awk -v r="${saturation[$n]:-0}" 'BEGIN { printf "%.1f", r / 2 }')
pace="--rate $half"
grid_row "grid, $n sequences, half load ($half chunks/s offered)" vad-lite 1 no
half_p99=$(trim "$(grep -E '^\|[ ]*[0-9]' "$repo/grid-vad-lite-1.txt" | head -n 1 | cut -d'|' -f6)")
half_compute=$(sed -n 's/^server timing: mean batch size [0-9.]*, mean compute \([0-9.]*\) ms per batch.*/\1/p' "$repo/grid-vad-lite-1.txt")

echo
ratio=$(awk -v a="$grid_best" -v b="$best" 'BEGIN { printf "%.1f", (b > 0 ? 100 * a / b : 0) }')
echo "grid at saturation ($grid_best_label): $grid_best chunks/s = ${ratio}% of bare ($best chunks/s at batch $best_batch); target >= 85%: $(awk -v r="$ratio" 'BEGIN { print (r >= 85 ? "met" : "not met") }')"
echo "half load: p99 $half_p99 ms per chunk against 2 x ${half_compute:-?} ms (the grid's compute per batch there); target p99 <= 2x: $(awk -v p="$half_p99" -v c="${half_compute:-0}" 'BEGIN { print (c > 0 && p <= 2 * c ? "met" : "not met") }')"
echo "real time: the most sequences that kept up (>= 98% of the offered chunks, p99 under ${chunk_s} s) among those tried: $realtime_max"
