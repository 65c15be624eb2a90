#!/usr/bin/env bash
# Scale-out: throughput of a cluster of 1, 2 and 3 silos (deploy/cluster-up.sh: redis-server, N silos, frontends as
# Orleans clients) when the device, not the CPU, is the bottleneck. The model is the built-in echo with a simulated
# device: every batch sleeps FixedDelay on the silo's device thread (no CPU), so one silo can do at most
# MaxBatchSize / FixedDelay requests/s and N silos N times that. Every row gets the same closed-loop load, enough to
# keep three silos' devices busy; the rows differ only in the number of silos.
# Target: 3 silos >= 2.7x one silo.
#
# Usage: bash bench/scale-out.sh [seconds per row]
# Environment: DELAY_MS (simulated ms per batch, 40), BATCH (MaxBatchSize, 16), CONCURRENT (MaxConcurrentBatches, 1),
# CONNECTIONS (48), DEPTH (requests in flight per connection, 8), WARMUP (seconds per row before measuring, 20),
# FRONTENDS (1), SILO_COUNTS ("1 2 3"; the "x one silo" column is relative to the first row), NO_BUILD=1 to use the
# binaries as built. Any StreamInfer__* or DOTNET_* variable set by the caller reaches every silo and frontend.
#
# Why these defaults (the measurements: docs/decisions.md D8, BENCHMARKS.md):
# - The CPU must stay out of the way: three silos, a frontend and the load generator share the machine, so the
#   simulated device is slow enough that the silos' own CPU is small beside it; a faster device makes the CPU the limit.
# - The warm-up outlasts tiered JIT compilation in four fresh .NET processes under load; a shorter one lets the JIT
#   share the measured window.
# - 48 connections x 8 in flight = 384 = 8 x 3 silos x 16: enough queued work that every silo's device stays busy
#   however the sessions (one per connection) fall over the silos; silos with few sessions are fed by spill (a session
#   sends to another silo's batcher when its own holds more than 2 full batches and the other one is a batch shorter).
# - MaxConcurrentBatches stays at the product's default, 1: between two batches the device thread waits for the
#   batcher grain to resume and hand it the next one, which on a busy machine shows as "compute ms" above DELAY_MS.
#   CONCURRENT=2 queues the next batch on the device while one runs (still one at a time, same capacity), which
#   takes that turnaround off the device's critical path when the CPU is tight.
#
# One load generator, against frontend 1 only: StreamInfer.LoadGen takes one URL and its percentiles cannot be merged
# across two processes. One frontend is enough here: at three silos' capacity it uses under half a core (the CPU
# column); FRONTENDS=2 starts a second one, which then only idles.
#
# Columns: "mean batch" and "compute ms" are the grid's own (the result frames' timing, averaged per batch; compute ms
# runs from handing the batch to the device to the batcher resuming after it; with CONCURRENT=2 it includes the wait
# behind the batch ahead, about 2 x DELAY_MS). Sessions per silo are read early in the warm-up and the share of
# requests each silo's batcher ran from then to the end (bench/StreamInfer.ClusterProbe, an Orleans client). CPU is
# over the measured window, in % of one core per process; "machine busy" in % of all cores; "rest" is what other
# processes used meanwhile (% of one core): a row with a large rest was measured while something else ran.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-10}"
delay_ms="${DELAY_MS:-40}"; batch="${BATCH:-16}"; concurrent="${CONCURRENT:-1}"
conns="${CONNECTIONS:-48}"; depth="${DEPTH:-8}"; warmup="${WARMUP:-20}"
frontends="${FRONTENDS:-1}"; silo_counts="${SILO_COUNTS:-1 2 3}"

# The cluster's own ports and run folder, apart from deploy/'s defaults and the other bench scripts.
export RUN_DIR=/tmp/streaminfer-bench-scale REDIS_PORT=16390 HTTP_BASE=18200 SILO_PORT_BASE=21200 GATEWAY_BASE=31200
export CLUSTER_ID=bench-scale-out
# Reaches every silo and frontend: the simulated device, and nothing else to load (an empty model repository, so the
# silos neither generate nor load tiny-lm or anything in ./models).
export StreamInfer__Models__echo__FixedDelay
StreamInfer__Models__echo__FixedDelay=$(awk -v ms="$delay_ms" 'BEGIN { printf "00:00:%09.6f", ms / 1000 }')
export StreamInfer__Models__echo__MaxBatchSize="$batch"
export StreamInfer__Models__echo__MaxConcurrentBatches="$concurrent"
export StreamInfer__Repository__BuiltInTinyLm=false
export StreamInfer__Repository__Path="$RUN_DIR/empty-models"
export StreamInfer__Devices__Gpus=none
export Logging__LogLevel__Default=Warning

cluster_down() { deploy/cluster-down.sh >/dev/null 2>&1 || true; }
trap 'cluster_down' EXIT
mkdir -p "$RUN_DIR/empty-models"
cluster_down # a cluster left over from an interrupted run of this script

probe_dll=bench/StreamInfer.ClusterProbe/bin/Release/net10.0/StreamInfer.ClusterProbe.dll
if [ "${NO_BUILD:-0}" != 1 ]; then
  build_all # the solution holds bench/StreamInfer.ClusterProbe too
fi
export NO_BUILD=1
# probe: one line per active silo: "silo-1 sessions=16 batches=410 items=6560 queued=31".
probe() { dotnet "$probe_dll" --redis "127.0.0.1:$REDIS_PORT" --cluster-id "$CLUSTER_ID" --model echo 2>>"$RUN_DIR/probe.err" || true; }

# ticks PID: the process's user + system CPU time in clock ticks (0 if it is gone).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# idle_ticks: the machine's idle + iowait ticks, all cores together; total_ticks: every tick.
idle_ticks() { awk '/^cpu / { print $5 + $6 }' /proc/stat; }
total_ticks() { awk '/^cpu / { s = 0; for (i = 2; i <= NF; i++) s += $i; print s }' /proc/stat; }
hz=$(getconf CLK_TCK)
# sleep_until START OFFSET: sleeps until OFFSET seconds after START (date +%s.%N); at once if that has passed.
sleep_until() { sleep "$(awk -v s="$1" -v o="$2" -v now="$(date +%s.%N)" 'BEGIN { d = s + o - now; print (d > 0 ? d : 0) }')"; }

# cpu_pct PID BEFORE AFTER SECONDS: percent of one core.
cpu_pct() { awk -v a="$2" -v b="$3" -v s="$4" -v hz="$hz" 'BEGIN { printf "%.0f", (b - a) / hz / s * 100 }'; }

out="$RUN_DIR/loadgen.txt"
capacity_one=$(awk -v b="$batch" -v d="$delay_ms" 'BEGIN { printf "%.0f", b * 1000 / d }')
in_flight=$((conns * depth))
rows=()
base_rps=""
for silos in $silo_counts; do
  if ! deploy/cluster-up.sh "$silos" "$frontends" >"$RUN_DIR/cluster-up.txt" 2>&1; then
    cat "$RUN_DIR/cluster-up.txt" >&2; exit 1
  fi
  # Every silo's echo must be ready before the clock starts.
  ready=0
  for _ in $(seq 1 300); do
    ready=$(curl -sf "http://127.0.0.1:$((HTTP_BASE + 1))/api/models/echo" | grep -o '"state":"ready"' | wc -l || true)
    [ "$ready" -ge "$silos" ] && break; sleep 0.1
  done
  [ "$ready" -ge "$silos" ] || { echo "echo is ready on $ready of $silos silos after 30 s; logs in $RUN_DIR" >&2; exit 1; }

  mapfile -t silo_pids < <(awk '$1 == "silo" { print $3 }' "$RUN_DIR/pids")
  frontend_pid=$(awk '$1 == "frontend" && $2 == "frontend-1" { print $3 }' "$RUN_DIR/pids")

  dotnet "$loadgen" --url "ws://127.0.0.1:$((HTTP_BASE + 1))/ws" --connections "$conns" --depth "$depth" \
    --duration "$secs" --warmup "$warmup" >"$out" 2>"$RUN_DIR/loadgen.err" &
  lg=$!
  started=$(date +%s.%N)
  # Early in the warm-up, once every connection has sent: where the sessions are, and each batcher's counters so far
  # (the probe, a .NET process, takes a few seconds and should end before the measured window). After the run: the
  # counters again.
  sleep_until "$started" 1
  probe >"$RUN_DIR/probe-before.txt"
  # CPU over the measured window, less half a second at each end (the load generator connects in well under a
  # second, then warms up, then measures).
  sleep_until "$started" "$(awk -v w="$warmup" 'BEGIN { print w + 0.5 }')"
  t0=$(date +%s.%N); idle0=$(idle_ticks); total0=$(total_ticks)
  before=(); for p in "${silo_pids[@]}" "$frontend_pid" "$lg"; do before+=("$(ticks "$p")"); done
  sleep_until "$started" "$(awk -v w="$warmup" -v s="$secs" 'BEGIN { print w + s - 0.5 }')"
  t1=$(date +%s.%N); idle1=$(idle_ticks); total1=$(total_ticks)
  after=(); for p in "${silo_pids[@]}" "$frontend_pid" "$lg"; do after+=("$(ticks "$p")"); done
  window=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  awk -v w="$window" -v s="$secs" 'BEGIN { exit !(w < s / 2) }' \
    && echo "note: CPU measured over only ${window} s (the probe ran into the measured window; raise WARMUP)" >&2
  status=0; wait "$lg" || status=$?
  probe >"$RUN_DIR/probe-after.txt"

  silo_cpu=""
  for k in "${!silo_pids[@]}"; do
    silo_cpu+="${silo_cpu:+ + }$(cpu_pct "${silo_pids[$k]}" "${before[$k]}" "${after[$k]}" "$window")"
  done
  n=${#silo_pids[@]}
  fe_cpu=$(cpu_pct "$frontend_pid" "${before[$n]}" "${after[$n]}" "$window")
  lg_cpu=$(cpu_pct "$lg" "${before[$((n + 1))]}" "${after[$((n + 1))]}" "$window")
  busy=$(awk -v i0="$idle0" -v i1="$idle1" -v t0="$total0" -v t1="$total1" 'BEGIN { printf "%.0f", 100 * (1 - (i1 - i0) / (t1 - t0)) }')
  # What the rest of the machine used meanwhile (other jobs, redis, the kernel's share not charged to a process), in
  # percent of one core: a row where this is large was measured on a busy machine.
  others=$(echo "$silo_cpu + $fe_cpu + $lg_cpu" | awk -v b="$busy" -v c="$(nproc)" '{ s = 0; for (i = 1; i <= NF; i++) if ($i != "+") s += $i; printf "%.0f", b * c - s }')
  # Sessions per silo (during the warm-up) and each silo's share of the requests its batcher ran (from early in
  # the warm-up to the end of the run).
  spread=$(awk '
    FNR == 1 { f++ }
    { split($3, b, "="); split($4, it, "="); split($2, se, "=") }
    f == 1 { order[++n] = $1; sessions[$1] = se[2]; items0[$1] = it[2] }
    f == 2 { items1[$1] = it[2] }
    END {
      for (i = 1; i <= n; i++) { d[i] = items1[order[i]] - items0[order[i]]; total += d[i] }
      for (i = 1; i <= n; i++) {
        s = s (i > 1 ? " / " : "") sessions[order[i]]
        r = r (i > 1 ? " / " : "") (total > 0 ? sprintf("%.0f", 100 * d[i] / total) : "–")
      }
      printf "%s | %s", s, r
    }' "$RUN_DIR/probe-before.txt" "$RUN_DIR/probe-after.txt")

  cells=$(grep -E '^\|[ ]*[0-9]' "$out" | head -n 1 || true)
  rps=$(echo "$cells" | awk -F'|' '{ gsub(/ /, "", $3); print $3 }')
  p50=$(echo "$cells" | awk -F'|' '{ gsub(/ /, "", $4); print $4 }')
  p99=$(echo "$cells" | awk -F'|' '{ gsub(/ /, "", $6); print $6 }')
  errors=$(sed -n 's/^outcomes: //p' "$out" | tr ' ' '\n' | { grep -v '^result=' || true; } | tr '\n' ' ')
  [ "$status" -ne 0 ] && errors+="loadgen exit $status "
  timing=$(sed -n 's/^server timing: mean batch size \([0-9.]*\), mean compute \([0-9.]*\) ms per batch.*/\1 \2/p' "$out")
  mean_batch=${timing% *}; batch_ms=${timing#* }
  [ -z "$rps" ] && { echo "the load generator gave no result for $silos silos:" >&2; cat "$out" "$RUN_DIR/loadgen.err" >&2; exit 1; }
  [ -z "$base_rps" ] && base_rps=$rps
  times=$(awk -v r="$rps" -v b="$base_rps" 'BEGIN { printf "%.2f", r / b }')
  capacity=$(awk -v n="$silos" -v c="$capacity_one" 'BEGIN { print (c == "inf" ? "∞" : n * c) }')
  rows+=("| $silos | $capacity | $rps | ${times}× | $p50 | $p99 | ${errors:-none} | ${mean_batch:-–} | ${batch_ms:-–} | $spread | $silo_cpu; $fe_cpu; $lg_cpu | $busy | $others |")
  echo "$silos silo(s): $rps req/s, p99 $p99 ms, sessions ${spread%% |*}" >&2
  deploy/cluster-down.sh >/dev/null
  # Keep each row's logs (the next cluster-up clears them).
  mkdir -p "$RUN_DIR/row-$silos"; cp "$out" "$RUN_DIR"/*.log "$RUN_DIR/row-$silos/" 2>/dev/null || true
done

echo "scale-out: echo on a simulated device (${delay_ms} ms per batch, MaxBatchSize ${batch}, MaxConcurrentBatches ${concurrent}: ${capacity_one} req/s per silo)${DOTNET_ThreadPool_UnfairSemaphoreSpinLimit:+, DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=$DOTNET_ThreadPool_UnfairSemaphoreSpinLimit}, redis + N silos + ${frontends} frontend(s), one load generator on frontend 1: ${conns} connections × ${depth} in flight (${in_flight}), closed loop, ${secs} s per row after ${warmup} s warm-up; one machine, $(nproc) cores, shared by every process"
echo
echo "| silos | device capacity req/s | req/s | × one silo | p50 ms | p99 ms | errors | mean batch | compute ms | sessions per silo | % of requests per silo | CPU %: silos; frontend; load gen | machine busy % | rest % |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
