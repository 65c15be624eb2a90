#!/usr/bin/env bash
# Stops exactly what deploy/cluster-up.sh started (the processes listed in $RUN_DIR/pids, each checked to still be the
# process that was started): frontends first, then silos (SIGTERM, so they leave the cluster cleanly; SIGKILL after
# 15 s), then redis-server.
set -uo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-deploy/.run}
pids="$RUN_DIR/pids"
[ -f "$pids" ] || { echo "nothing to stop: no $pids"; exit 0; }

# ours PID KIND: whether PID is still the process cluster-up.sh started (not a reused pid).
ours() {
  local cmd
  cmd=$( { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null) || return 1
  case "$2" in
    redis) [[ "$cmd" == *redis-server* ]] ;;
    silo) [[ "$cmd" == *StreamInfer.Silo.dll* ]] ;;
    frontend) [[ "$cmd" == *StreamInfer.Frontend.dll* ]] ;;
    *) return 1 ;;
  esac
}

stop_kind() {
  local kind=$1 stopping=()
  while read -r k name pid; do
    if [ "$k" = "$kind" ] && ours "$pid" "$k"; then
      kill -TERM "$pid" 2>/dev/null && stopping+=("$pid") && echo "stopping $name (pid $pid)"
    fi
  done <"$pids"
  for pid in "${stopping[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  return 0
}

stop_kind frontend
stop_kind silo
stop_kind redis
rm -f "$pids" "$RUN_DIR/cluster"
echo "stopped"
