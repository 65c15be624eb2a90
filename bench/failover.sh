#!/usr/bin/env bash
# Failover: the answers per second at a frontend through the death of a silo whose gateway it uses. A cluster of
# redis + 3 silos + 2 frontends (deploy/cluster-up.sh, started before the frontends, so each frontend holds a
# connection to every silo's gateway); WebSocket clients on frontend 1 send echo requests closed-loop (a simulated
# device, 5 ms per batch); after WARMUP s and KILL_AT s of the measured window, silo-2 gets SIGKILL. Every silo is a
# gateway of frontend 1, so the kill takes one of its gateways, a third of the sessions (placed at random) and the
# batchers they used.
#
# Per run: the rate before the kill (results per second, mean of the 5 whole seconds before it), the lowest second
# from the kill on as a share of that (the target: never under 50%), the seconds until every later second is back at
# 90% of it (or of the run's last 5 seconds, when two silos answer fewer than three did), the longest answer (ms, every request of the window), the errors by code, and requests never answered.
# Target (ten runs): no second under 50%, every request ended within 10 s of the kill.
#
# Usage: bash bench/failover.sh [measured seconds, 20]
# Environment: RUNS (3), KILL_AT (8: seconds into the measured window), KILL (silo-2), CONNECTIONS (48), DEPTH (2),
# DELAY_MS (5), BATCH (32, the model's default: the shared CPU limits the rate, not the simulated devices; with 8 the
# devices do, and the kill takes a third of the capacity, so the rate after it is two thirds of before by arithmetic),
# WARMUP (40: six .NET processes on two cores still speed up after 20 s), NO_BUILD=1. The load generator's JSON per
# run and a plot (failover.png: answers per second, one line per run, the kill marked) go to $STREAMINFER_BENCH_OUT
# when set (bench/suite.sh), else $RUN_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-20}"
runs="${RUNS:-3}"; kill_at="${KILL_AT:-8}"; victim="${KILL:-silo-2}"
conns="${CONNECTIONS:-48}"; depth="${DEPTH:-2}"; delay_ms="${DELAY_MS:-5}"; batch="${BATCH:-32}"; warmup="${WARMUP:-40}"

export RUN_DIR=/tmp/streaminfer-bench-failover REDIS_PORT=16391 HTTP_BASE=18300 SILO_PORT_BASE=21300 GATEWAY_BASE=31300
export METRICS_BASE=0 CLUSTER_ID=bench-failover
export StreamInfer__Models__echo__FixedDelay
StreamInfer__Models__echo__FixedDelay=$(awk -v ms="$delay_ms" 'BEGIN { printf "00:00:%09.6f", ms / 1000 }')
export StreamInfer__Models__echo__MaxBatchSize="$batch"
export StreamInfer__Repository__BuiltInTinyLm=false
export StreamInfer__Repository__Path="$RUN_DIR/empty-models"
export StreamInfer__Devices__Gpus=none
export Logging__LogLevel__Default=Warning
export Logging__Console__TimestampFormat="HH:mm:ss.fff "

cluster_down() { deploy/cluster-down.sh >/dev/null 2>&1 || true; }
trap 'cluster_down' EXIT
mkdir -p "$RUN_DIR/empty-models"
cluster_down
if [ "${NO_BUILD:-0}" != 1 ]; then
  build_all
fi
export NO_BUILD=1
plot_dll=bench/StreamInfer.Plot/bin/Release/net10.0/StreamInfer.Plot.dll
plots="${STREAMINFER_BENCH_OUT:-$RUN_DIR}"
mkdir -p "$plots"

rows=()
jsons=()
marks=()
for run in $(seq 1 "$runs"); do
  if ! deploy/cluster-up.sh 3 2 >"$RUN_DIR/cluster-up.txt" 2>&1; then
    cat "$RUN_DIR/cluster-up.txt" >&2; exit 1
  fi
  ready=0
  for _ in $(seq 1 300); do
    ready=$(curl -sf "http://127.0.0.1:$((HTTP_BASE + 1))/api/models/echo" | grep -o '"state":"ready"' | wc -l || true)
    [ "$ready" -ge 3 ] && break; sleep 0.1
  done
  [ "$ready" -ge 3 ] || { echo "echo is ready on $ready of 3 silos after 30 s; logs in $RUN_DIR" >&2; exit 1; }
  victim_pid=$(awk -v n="$victim" '$1 == "silo" && $2 == n { print $3 }' "$RUN_DIR/pids")

  out="$RUN_DIR/loadgen-$run.txt"; json="$plots/loadgen-failover-$run.json"
  dotnet "$loadgen" --url "ws://127.0.0.1:$((HTTP_BASE + 1))/ws" --connections "$conns" --depth "$depth" \
    --duration "$secs" --warmup "$warmup" --label "run $run" --json "$json" >"$out" 2>"$RUN_DIR/loadgen.err" &
  lg=$!
  # The measured window starts when the warm-up (begun once every connection is open; the load generator's stderr
  # says when) has passed; the kill comes at the chosen second of the window.
  for _ in $(seq 1 1500); do grep -q "warming up" "$RUN_DIR/loadgen.err" 2>/dev/null && break; sleep 0.02; done
  warming=$(date +%s.%N)
  sleep "$(awk -v c="$warming" -v w="$warmup" -v k="$kill_at" -v now="$(date +%s.%N)" 'BEGIN { d = c + w + k - now; print (d > 0 ? d : 0) }')"
  kill -KILL "$victim_pid"
  killed=$(date +%s.%N)
  status=0; wait "$lg" || status=$?
  # Keep each run's logs (the next cluster-up clears them).
  mkdir -p "$RUN_DIR/run-$run"; cp "$RUN_DIR"/*.log "$out" "$RUN_DIR/run-$run/" 2>/dev/null || true
  deploy/cluster-down.sh >/dev/null 2>&1 || true

  kill_rel=$(awk -v s="$warming" -v w="$warmup" -v k="$killed" 'BEGIN { printf "%.2f", k - s - w }')
  series=$(sed -n 's/^answers by the second they arrived in, results\/errors: //p' "$out")
  [ -n "$series" ] || { echo "run $run: no per-second answers from the load generator:" >&2; cat "$out" "$RUN_DIR/loadgen.err" >&2; exit 1; }
  max_ms=$(grep -E '^\|[ ]*[0-9]' "$out" | head -n 1 | awk -F'|' '{ gsub(/ /, "", $7); print $7 }')
  errors=$(sed -n 's/^outcomes: //p' "$out" | tr ' ' '\n' | { grep -v '^result=' || true; } | tr '\n' ' ')
  unanswered=$(sed -n 's/^overdue (slot moved on[^:]*: \([0-9]*\).*/\1/p' "$out")
  [ "$status" -ne 0 ] && errors+="loadgen exit $status "
  # before: mean results/s over the 5 whole seconds before the kill's; lowest: the fewest results in a second from the
  # kill's on (the window's last second left out: it is cut short); full: seconds from the kill until every later
  # second reaches its goal.
  stats=$(echo "$series" | tr ' ' '\n' | awk -F/ -v k="$kill_rel" '
    { r[NR - 1] = $1; n = NR }
    END {
      ks = int(k); from = ks - 5; if (from < 0) from = 0
      for (s = from; s < ks; s++) { sum += r[s]; m++ }
      before = m ? sum / m : 0
      low = -1; for (s = ks; s < n - 1; s++) if (low < 0 || r[s] < low) { low = r[s]; at = s }
      # Two silos may not reach the rate of three: full rate is 90% of before, or of the last 5 seconds if lower.
      for (s = n - 6; s < n - 1; s++) { tail += r[s] } tail /= 5
      goal = 0.9 * (tail < before ? tail : before)
      full = ks; for (s = n - 2; s >= ks; s--) if (r[s] < goal) { full = s + 1; break }
      printf "%.0f %.0f %.0f %.1f %.1f", before, low, (before > 0 ? 100 * low / before : 0), at - k, full - k
    }')
  read -r before low low_pct low_at full <<<"$stats"
  [ "$(awk -v f="$full" 'BEGIN { print (f < 0 ? 1 : 0) }')" = 1 ] && full="0.0"
  rows+=("| $run | $kill_rel | $before | $low ($low_pct%) | $low_at | $full | $max_ms | ${errors:-none} | ${unanswered:-0} |")
  echo "run $run: before $before/s, lowest $low ($low_pct%) at +$low_at s, full rate after $full s, longest $max_ms ms, errors: ${errors:-none}" >&2
  jsons+=("$json"); marks+=("$kill_rel")
done

if [ -f "$plot_dll" ]; then
  mark=$(printf '%s\n' "${marks[@]}" | awk '{ s += $1 } END { printf "%.2f", s / NR }')
  dotnet "$plot_dll" --answers --mark "$mark" "$plots/failover.png" "answers per second at frontend 1, $victim killed at ~${mark} s" "${jsons[@]}" || true
fi

echo "failover: redis + 3 silos + 2 frontends (deploy/cluster-up.sh), echo on a simulated device (${delay_ms} ms per batch, MaxBatchSize ${batch}), ${conns} WebSocket connections × ${depth} in flight on frontend 1, closed loop (a refused request waits its retry_after_ms); ${victim} SIGKILLed ${kill_at} s into ${secs} measured s after ${warmup} s warm-up; one machine, $(nproc) cores"
echo
echo "| run | kill at s | results/s before | lowest second after (% of before) | lowest at +s | full rate (≥90%) after s | longest answer ms | errors | unanswered |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
