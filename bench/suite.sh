#!/usr/bin/env bash
# The benchmark suite: one command lists and runs the named scenarios. Each scenario is a bench/*.sh script that prints
# its table with its baseline measured in the same run, row by row as they finish (with a progress line every 15 s
# between rows); the suite adds, per scenario, a folder with that table
# (table.md), every load-generator run as JSON (loadgen-*.json, with a per-second latency series) and a PNG of latency
# over time (latency.png), plus one index.json for the whole run.
#
#   bash bench/suite.sh list                 the scenarios
#   bash bench/suite.sh run NAME... [-s S]   run these (S: measured seconds per row, else each script's default)
#   bash bench/suite.sh all [-s S]           run every scenario
#
# Results: bench/results/<UTC time>/ (git-ignored), OUT to choose another folder.
set -euo pipefail
cd "$(dirname "$0")/.."

# name|script|what it measures (and its baseline)
scenarios=(
  "echo-ws|echo-ws.sh|echo over WebSocket, 100 connections: the grid against a bare Kestrel WebSocket echo (bench/StreamInfer.BareEcho)"
  "echo-predict|echo-http.sh|echo over HTTP POST /predict, 100 clients: the grid against a bare Kestrel /predict echo"
  "return-path|return-path.sh|one request at a time: the grid's own latency and idle CPU, with and without precise timers, against a bare Kestrel WebSocket echo"
  "batching|maxwait.sh|batching efficiency on the simulated device: MaxWait 0, 2, 5 ms against no batching"
  "tiny-lm|decode-grid.sh|tiny-lm streaming, 64 streams over WebSocket and over SSE: tokens/s, TTFT, ITL against the bare decoder engine"
  "onnx|onnx-grid.sh|an ONNX MLP over WebSocket against bare ONNX Runtime at batch sizes 1..32"
  "scale-out|scale-out.sh|1, 2, 3 silos (deploy/ scripts, Redis) on the simulated device; 1 silo is the baseline"
  "hot-swap|rollout.sh|p99 and failures while versions are rolled out every 2 s, against steady state"
  "idle-10k|idle.sh|10,000 idle WebSocket connections: server RSS per connection, against the bare Kestrel echo"
  "binary-echo|binary-echo.sh|a 224x224 FP32 image through echo: JSON vs binary over KServe HTTP, gRPC and WebSocket, 1 and 16 in flight, against a bare Kestrel endpoint returning the same bytes"
  "failover|failover.sh|answers per second at a frontend through a silo's SIGKILL (3 silos, 2 frontends, Redis): the lowest second after it against the rate before, the time back to full rate, the longest answer"
  "image|image-grid.sh|a small ResNet fed binary image requests at saturation, against bare ONNX Runtime at batch sizes 1..32"
)

list() {
  for s in "${scenarios[@]}"; do
    IFS='|' read -r name script what <<<"$s"
    printf '  %-12s %-16s %s\n' "$name" "bench/$script" "$what"
  done
}

script_of() {
  for s in "${scenarios[@]}"; do
    IFS='|' read -r name script _ <<<"$s"
    [ "$name" = "$1" ] && { echo "$script"; return 0; }
  done
  return 1
}

cmd="${1:-list}"; shift || true
names=(); secs=""
while [ $# -gt 0 ]; do
  case "$1" in
    -s) [ $# -ge 2 ] || { echo "-s needs a number of seconds" >&2; exit 2; }; secs="$2"; shift 2 ;;
    *) names+=("$1"); shift ;;
  esac
done

case "$cmd" in
  list) echo "scenarios (bash bench/suite.sh run NAME... [-s seconds]):"; list; exit 0 ;;
  all) names=(); for s in "${scenarios[@]}"; do names+=("${s%%|*}"); done ;;
  run) [ "${#names[@]}" -gt 0 ] || { echo "run which? bash bench/suite.sh list" >&2; exit 2; } ;;
  *) echo "usage: bash bench/suite.sh list | run NAME... [-s S] | all [-s S]" >&2; exit 2 ;;
esac

for name in "${names[@]}"; do
  script_of "$name" >/dev/null || { echo "no scenario '$name'; bash bench/suite.sh list" >&2; exit 2; }
done

dotnet build StreamInfer.sln -c Release -v q -nologo >/dev/null
plot=bench/StreamInfer.Plot/bin/Release/net10.0/StreamInfer.Plot.dll
out="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1), $(dotnet --version)"
index="$out/index.json"
printf '{"machine": "%s", "started": "%s", "scenarios": [' "$machine" "$(date -u +%FT%TZ)" >"$index"

n=0
for name in "${names[@]}"; do
  n=$((n + 1))
  script=$(script_of "$name")
  dir="$out/$name"; mkdir -p "$dir"
  started=$(date +%s)
  echo "[$n/${#names[@]}] $name: bash bench/$script ${secs} ($(date +%T))" >&2
  # The table streams to the terminal as each row is measured: the run's progress.
  # Progress between rows: every 15 s, the time spent and the load-generator runs finished so far.
  ( while sleep 15; do
      echo "  ... $name: $(( $(date +%s) - started )) s, $(ls "$dir"/loadgen-*.json 2>/dev/null | wc -l) load runs done" >&2
    done ) &
  ticker=$!
  # A scenario that fails is recorded and the suite goes on to the next.
  set +e
  STREAMINFER_BENCH_OUT="$dir" bash "bench/$script" ${secs:+"$secs"} | tee "$dir/table.md"
  status=${PIPESTATUS[0]}
  set -e
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  runs=("$dir"/loadgen-*.json)
  if [ -e "${runs[0]}" ]; then
    dotnet "$plot" "$dir/latency.png" "$name: latency over time (bench/$script)" "${runs[@]}" || echo "plot failed" >&2
  fi
  [ "$n" -gt 1 ] && printf ',' >>"$index"
  printf '{"name": "%s", "script": "bench/%s", "exit": %d, "seconds": %d, "table": "%s/table.md", "runs": %d, "plot": %s}' \
    "$name" "$script" "$status" "$(( $(date +%s) - started ))" "$name" "$(ls "$dir"/loadgen-*.json 2>/dev/null | wc -l)" \
    "$([ -e "$dir/latency.png" ] && echo "\"$name/latency.png\"" || echo null)" >>"$index"
  echo "[$n/${#names[@]}] $name: done in $(( $(date +%s) - started )) s, exit $status; $dir" >&2
done
printf ']}\n' >>"$index"
echo "results: $out (index.json, per scenario table.md, loadgen-*.json, latency.png)" >&2
