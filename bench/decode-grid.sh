#!/usr/bin/env bash
# The bare decoder engine against the grid on the built-in tiny-lm (GPT-2-style, 4 layers, d=128, byte vocabulary):
# 64 streams, a 16-byte prompt each, 128 tokens generated greedy. Bare: StreamInfer.OnnxBench decode, 64 sequences
# prefilled in one step then decoded together step by step until all finish, round after round (the grid's session
# options). Grid: embedded default, CPU, 64 WebSocket connections with one prompt request in flight each (closed loop).
# A third row streams the same over SSE (POST /v1/completions, stream: true). One table; the last line checks the
# targets on the WebSocket row: grid >= 85% of bare tokens/s, and the grid's overhead per token (grid ITL p99 - bare
# step p99) <= 1 ms.
# Usage: bash bench/decode-grid.sh [seconds]   (measured seconds, bare and grid alike; default 10)
# Environment: CONNECTIONS (64), PROMPT (prompt tokens, 16), TOKENS (max tokens, 128), THREADS (ORT intra-op threads,
# both; default every core), CLIENT_PREFIX (a command put before the load generator's, e.g. "nice -n 19" to let the
# grid win the shared cores from it; default none), GPU (a CUDA device id: the bare engine and the grid both run the
# model there, with the CUDA 13 libraries on the loader path; default none, the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-10}"
conns="${CONNECTIONS:-64}"; prompt="${PROMPT:-16}"; tokens="${TOKENS:-128}"
threads="${THREADS:-$(nproc)}"
gpu="${GPU:-}"
if [ -n "$gpu" ]; then bare_device=(--cuda "$gpu"); grid_gpus="$gpu"; device_label="GPU $gpu (CUDA)"; else bare_device=(); grid_gpus=none; device_label="CPU"; fi
onnxbench=bench/StreamInfer.OnnxBench/bin/Release/net10.0/StreamInfer.OnnxBench.dll
# Warm-up before measuring, both runs: a fresh grid spends its first seconds in tiered JIT compilation.
warmup="${WARMUP:-10}"
# Ports of their own (HTTP, silo, gateway) and a cluster id of their own, so that a dev grid on the defaults is left alone.
port=18030; silo_port=11131; gateway_port=30031

repo=$(mktemp -d /tmp/streaminfer-decode-grid.XXXXXX)
trap 'stop_server; rm -rf "$repo"' EXIT

build_all

# Bare first, alone on the machine.
dotnet "$onnxbench" decode --sequences "$conns" --prompt-tokens "$prompt" --max-tokens "$tokens" --seconds "$secs" \
  --warmup "$warmup" --threads "$threads" "${bare_device[@]}" >"$repo/bare.txt" 2>"$repo/bare.err" || { echo "the bare run failed:" >&2; cat "$repo/bare.txt" "$repo/bare.err" >&2; exit 1; }

# The grid writes tiny-lm into the empty repository at start.
start_server "$port" dotnet "$frontend" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning \
  --StreamInfer:Orleans:SiloPort=$silo_port --StreamInfer:Orleans:GatewayPort=$gateway_port \
  --StreamInfer:Orleans:ClusterId=bench-decode-grid --StreamInfer:Devices:Gpus=$grid_gpus \
  --StreamInfer:Devices:CpuThreads="$threads" --StreamInfer:Repository:Path="$repo"
wait_ready "$port" tiny-lm
if [ -n "$gpu" ] && ! curl -sf "http://127.0.0.1:$port/api/models/tiny-lm" | grep -q "\"device\":\"cuda$gpu\""; then
  echo "the grid serves tiny-lm, but not on cuda$gpu (the CUDA provider did not start; its log says why):" >&2; cat /tmp/bench-server.log >&2; exit 1
fi

grid_rc=0
${CLIENT_PREFIX:-} dotnet "$onnxbench" decode-grid --url "ws://127.0.0.1:$port/ws" --connections "$conns" --prompt-tokens "$prompt" \
  --max-tokens "$tokens" --seconds "$secs" --warmup "$warmup" >"$repo/grid.txt" 2>"$repo/grid.err" || grid_rc=$?
grep -q '^grid:' "$repo/grid.txt" || { echo "the grid run failed:" >&2; cat "$repo/grid.txt" "$repo/grid.err" /tmp/bench-server.log >&2; exit 1; }

# The same streams over the OpenAI-compatible API: POST /v1/completions with stream: true, Server-Sent Events.
sse_rc=0
${CLIENT_PREFIX:-} dotnet "$onnxbench" decode-grid --url "http://127.0.0.1:$port/v1/completions" --connections "$conns" --prompt-tokens "$prompt" \
  --max-tokens "$tokens" --seconds "$secs" --warmup "$warmup" >"$repo/sse.txt" 2>"$repo/sse.err" || sse_rc=$?
grep -q '^grid:' "$repo/sse.txt" || { echo "the SSE run failed:" >&2; cat "$repo/sse.txt" "$repo/sse.err" /tmp/bench-server.log >&2; exit 1; }

# field FILE NAME: the value of NAME=... on the file's result line.
field() { sed -n "s/.*[ :]$2=\([^ ]*\).*/\1/p" "$1" | head -n 1; }
b_tps=$(field "$repo/bare.txt" tokens_per_s); b_step=$(field "$repo/bare.txt" step_ms)
b_p50=$(field "$repo/bare.txt" step_p50); b_p99=$(field "$repo/bare.txt" step_p99)
b_pf50=$(field "$repo/bare.txt" prefill_p50); b_pf99=$(field "$repo/bare.txt" prefill_p99)
b_h50=$(field "$repo/bare.txt" handoff_p50); b_h99=$(field "$repo/bare.txt" handoff_p99)
g_tps=$(field "$repo/grid.txt" tokens_per_s); g_err=$(field "$repo/grid.txt" errors)
g_t50=$(field "$repo/grid.txt" ttft_p50); g_t99=$(field "$repo/grid.txt" ttft_p99)
g_i50=$(field "$repo/grid.txt" itl_p50); g_i99=$(field "$repo/grid.txt" itl_p99)
pct=$(awk -v a="$g_tps" -v b="$b_tps" 'BEGIN { printf "%.1f", 100 * a / b }')

echo "tiny-lm decode, bare engine vs the grid: $conns streams, ${prompt}-token prompt, $tokens tokens greedy, ${secs} s measured"
echo "$(nproc) cores, model on the $device_label, ORT intra-op threads $threads on the CPU (1 on a GPU), spinning off; bare TTFT = the prefill step of all $conns prompts, bare ITL = one decode step; grid TTFT = send to first token frame, grid ITL = gap between a request's token frames (client side); grid step ms = 1000 / (tokens/s / $conns), the mean step the streams saw"
echo
echo "| path | tokens/s | % of bare | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | step ms | errors |"
echo "|---|---|---|---|---|---|---|---|---|"
echo "| bare engine | $b_tps | 100% | $b_pf50 | $b_pf99 | $b_p50 | $b_p99 | $b_step | – |"
g_step=$(awk -v t="$g_tps" -v c="$conns" 'BEGIN { printf "%.3f", (t > 0 ? 1000 * c / t : 0) }')
echo "| grid, $conns WebSocket streams | $g_tps | ${pct}% | $g_t50 | $g_t99 | $g_i50 | $g_i99 | $g_step | ${g_err:-?} |"
s_tps=$(field "$repo/sse.txt" tokens_per_s)
s_pct=$(awk -v a="$s_tps" -v b="$b_tps" 'BEGIN { printf "%.1f", 100 * a / b }')
s_step=$(awk -v t="$s_tps" -v c="$conns" 'BEGIN { printf "%.3f", (t > 0 ? 1000 * c / t : 0) }')
echo "| grid, $conns SSE streams (/v1/completions) | $s_tps | ${s_pct}% | $(field "$repo/sse.txt" ttft_p50) | $(field "$repo/sse.txt" ttft_p99) | $(field "$repo/sse.txt" itl_p50) | $(field "$repo/sse.txt" itl_p99) | $s_step | $(field "$repo/sse.txt" errors) |"
echo
echo "What the grid measured over the same windows (its /metrics, fine buckets, interpolated): the device's step period"
echo "(its ITL: the step plus the wait before it); the device's wait between steps (the batcher's own work); the hand-off"
echo "of a finished step from the device thread to the batcher's turn on the Orleans scheduler; the transit of a step's"
echo "delivery batch to the frontend (that hand-off, then grain, observer call, frontend hand-over); and the whole return"
echo "path, from the end of a step to each frame written to its client's socket or event stream (the transit plus"
echo "serializing and writing 64 frames, on cores shared with ONNX Runtime and the load generator). The bare row's hand-off"
echo "is its floor on this machine: the bare engine queues a work item to the idle .NET thread pool at the end of each step."
echo
echo "| path | device ITL p50 / p99 ms | wait between steps p50 / p99 ms | hand-off to a scheduler thread p50 / p99 ms | transit to frontend p50 / p99 ms | step end to frame written p50 / p99 ms | grid per token p99 ms: wait + transit | with the socket writes: wait + frame written |"
echo "|---|---|---|---|---|---|---|---|"
echo "| bare engine | $b_p50 / $b_p99 | – | $b_h50 / $b_h99 | – | – | – | – |"
server_row() {
  local file="$1" label="$2"
  awk -v l="$label" -v a="$(field "$file" srv_itl_p50)" -v b="$(field "$file" srv_itl_p99)" -v c="$(field "$file" gap_p50)" \
      -v d="$(field "$file" gap_p99)" -v h1="$(field "$file" handoff_p50)" -v h2="$(field "$file" handoff_p99)" \
      -v t1="$(field "$file" transit_p50)" -v t2="$(field "$file" transit_p99)" \
      -v e="$(field "$file" delivery_p50)" -v f="$(field "$file" delivery_p99)" \
    'BEGIN { printf "| %s | %s / %s | %s / %s | %s / %s | %s / %s | %s / %s | %.3f | %.3f |\n", l, a, b, c, d, h1, h2, t1, t2, e, f, d + t2, d + f }'
}
server_row "$repo/grid.txt" "grid, $conns WebSocket streams"
server_row "$repo/sse.txt" "grid, $conns SSE streams"
echo
gc_line() {
  local file="$1" label="$2"
  echo "garbage collection in the grid over the $label window ($secs s): gen0 $(field "$file" gc0), gen1 $(field "$file" gc1), gen2 $(field "$file" gc2) collections, $(field "$file" gc_pause_ms) ms paused in all; $(field "$file" alloc_mb_s) MB/s allocated"
}
gc_line "$repo/grid.txt" "WebSocket"
gc_line "$repo/sse.txt" "SSE"
echo
awk -v r="$pct" -v gi="$g_i99" -v bs="$b_p99" -v gap="$(field "$repo/grid.txt" gap_p99)" -v tr="$(field "$repo/grid.txt" transit_p99)" \
    -v ret="$(field "$repo/grid.txt" delivery_p99)" -v ho="$(field "$repo/grid.txt" handoff_p99)" -v bh="$b_h99" 'BEGIN {
  o = gi - bs; g = gap + tr; w = gap + ret
  printf "targets: grid tokens/s >= 85%% of bare: %.1f%% (%s); grid overhead per token <= 1 ms p99, inside the grid: wait between steps p99 %.3f + transit p99 %.3f = %.3f ms (%s), of which the hand-off to a scheduler thread p99 %.3f ms (bare floor %.3f ms); with the socket writes: %.3f ms; at the client: ITL p99 %.3f - bare step p99 %.3f = %.3f ms\n",
    r, (r >= 85 ? "met" : "not met"), gap, tr, g, (g <= 1 ? "met" : "not met"), ho, bh, w, gi, bs, o }'
[ "$grid_rc" -ne 0 ] && exit "$grid_rc"
exit "$sse_rc"
