#!/usr/bin/env bash
# Starts a StreamInfer cluster on the loopback interface of this machine: redis-server (Debian's package, installed
# when missing), N silos and M frontends, and waits until every frontend answers and sees all N silos active.
# What it starts is recorded in $RUN_DIR/pids; deploy/cluster-down.sh stops exactly that.
#
#   deploy/cluster-up.sh [SILOS=3] [FRONTENDS=2]      start a cluster
#   deploy/cluster-up.sh --silo I                    (re)start silo I of the running cluster (same name and ports)
#   deploy/cluster-up.sh --redis                     (re)start the running cluster's redis-server
#
# Settings (environment): RUN_DIR (deploy/.run), REDIS_PORT (6390), HTTP_BASE (8100: frontend j on HTTP_BASE+j),
# GRPC_BASE (HTTP_BASE+100: frontend j's KServe gRPC on GRPC_BASE+j),
# SILO_PORT_BASE (11200), GATEWAY_BASE (30200), METRICS_BASE (9460: silo i's Prometheus metrics on
# 127.0.0.1:METRICS_BASE+i/metrics; 0 for none), CLUSTER_ID (streaminfer-local), CONFIG (Release: the build
# configuration whose binaries run), NO_BUILD=1 to skip the build,
# and any StreamInfer__Section__Key variable, passed to every process (e.g. StreamInfer__Models__echo__FixedDelay).
#
# Secrets: deploy/secrets.sh generates them once in $RUN_DIR/secrets (kept across runs, never committed): Redis runs with
# a password, silos and frontends talk over TLS with the cluster certificate (a client without it cannot connect to a
# gateway), and the frontends take the admin key there for their operations (Authorization: Bearer $(cat
# $RUN_DIR/secrets/admin-key)).
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-deploy/.run}
REDIS_PORT=${REDIS_PORT:-6390}
HTTP_BASE=${HTTP_BASE:-8100}
GRPC_BASE=${GRPC_BASE:-$((HTTP_BASE + 100))}
SILO_PORT_BASE=${SILO_PORT_BASE:-11200}
GATEWAY_BASE=${GATEWAY_BASE:-30200}
METRICS_BASE=${METRICS_BASE:-9460}
CLUSTER_ID=${CLUSTER_ID:-streaminfer-local}
CONFIG=${CONFIG:-Release}
silo_dll=Silo/bin/$CONFIG/net10.0/StreamInfer.Silo.dll
frontend_dll=Frontend/bin/$CONFIG/net10.0/StreamInfer.Frontend.dll
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
SECRETS="$RUN_DIR/secrets"

# record KIND NAME PID: one line per process this script started, read by cluster-down.sh.
record() { echo "$1 $2 $3" >>"$RUN_DIR/pids"; }

cluster_env() {
  export StreamInfer__Orleans__Redis="127.0.0.1:$REDIS_PORT,password=$(cat "$SECRETS/redis-password")"
  export StreamInfer__Orleans__ClusterId="$CLUSTER_ID"
  export StreamInfer__Orleans__Tls__CertificatePath="$SECRETS/cluster.pfx"
  StreamInfer__Orleans__Tls__Password="$(cat "$SECRETS/cluster-pfx-password")"
  export StreamInfer__Orleans__Tls__Password
}

# Redis logs every write to an append-only file in $RUN_DIR (cleared by a fresh cluster-up), so a redis-server killed
# and restarted with --redis comes back with the cluster's membership and grain state.
# The password goes in through a configuration file (0600 in the secrets folder), not the command line, which any
# local user can read.
start_redis() {
  (umask 077 && printf 'requirepass %s\n' "$(cat "$SECRETS/redis-password")" >"$SECRETS/redis.conf")
  redis-server "$SECRETS/redis.conf" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always --dir "$RUN_DIR" \
    >>"$RUN_DIR/redis.log" 2>&1 &
  record redis redis $!
  for _ in $(seq 1 100); do
    REDISCLI_AUTH="$(cat "$SECRETS/redis-password")" redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "redis-server did not start; see $RUN_DIR/redis.log" >&2
  return 1
}

start_silo() {
  local i=$1
  cluster_env
  StreamInfer__Orleans__SiloName="silo-$i" \
  StreamInfer__Orleans__SiloPort=$((SILO_PORT_BASE + i)) \
  StreamInfer__Orleans__GatewayPort=$((GATEWAY_BASE + i)) \
  StreamInfer__Metrics__Port=$((METRICS_BASE > 0 ? METRICS_BASE + i : 0)) StreamInfer__Metrics__Host=127.0.0.1 \
    nohup dotnet "$silo_dll" >>"$RUN_DIR/silo-$i.log" 2>&1 &
  record silo "silo-$i" $!
}

start_frontend() {
  local j=$1
  cluster_env
  StreamInfer__Frontend__AdminKey="$(cat "$SECRETS/admin-key")" \
  StreamInfer__Frontend__CoHostSilo=false Urls="http://127.0.0.1:$((HTTP_BASE + j))" \
  StreamInfer__Frontend__GrpcUrl="http://127.0.0.1:$((GRPC_BASE + j))" \
    nohup dotnet "$frontend_dll" >>"$RUN_DIR/frontend-$j.log" 2>&1 &
  record frontend "frontend-$j" $!
}

# wait_ready SILOS FRONTENDS: every frontend's /api/cluster lists SILOS active silos (120 s at most).
wait_ready() {
  local silos=$1 frontends=$2
  for _ in $(seq 1 600); do
    local ready=0
    for j in $(seq 1 "$frontends"); do
      local active
      active=$(curl -sf "http://127.0.0.1:$((HTTP_BASE + j))/api/cluster" 2>/dev/null | sed -n 's/.*"active":\([0-9]*\).*/\1/p')
      [ "${active:-0}" -ge "$silos" ] && ready=$((ready + 1))
    done
    [ "$ready" -eq "$frontends" ] && return 0
    sleep 0.2
  done
  echo "the cluster did not become ready in 120 s; logs in $RUN_DIR" >&2
  return 1
}

if [ "${1:-}" = "--redis" ]; then
  [ -f "$RUN_DIR/cluster" ] || { echo "no cluster is running from $RUN_DIR" >&2; exit 1; }
  start_redis
  echo "redis-server restarted on 127.0.0.1:$REDIS_PORT"
  exit 0
fi

if [ "${1:-}" = "--silo" ]; then
  [ -f "$RUN_DIR/cluster" ] || { echo "no cluster is running from $RUN_DIR" >&2; exit 1; }
  start_silo "$2"
  echo "silo-$2 started (log $RUN_DIR/silo-$2.log)"
  exit 0
fi

SILOS=${1:-3}
FRONTENDS=${2:-2}
if [ -s "$RUN_DIR/pids" ]; then
  echo "$RUN_DIR/pids lists processes of a cluster already started; stop it first: deploy/cluster-down.sh" >&2
  exit 1
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (Debian package)..."
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo
  ($sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq redis-server) >/dev/null
fi

if [ "${NO_BUILD:-0}" != 1 ]; then
  dotnet build Silo -c "$CONFIG" -v q -nologo >/dev/null
  dotnet build Frontend -c "$CONFIG" -v q -nologo >/dev/null
fi

rm -f "$RUN_DIR"/*.log "$RUN_DIR"/*.aof
rm -rf "$RUN_DIR/appendonlydir"
deploy/secrets.sh "$SECRETS" --files-only
start_redis
echo "$SILOS $FRONTENDS" >"$RUN_DIR/cluster"

for i in $(seq 1 "$SILOS"); do start_silo "$i"; done
for j in $(seq 1 "$FRONTENDS"); do start_frontend "$j"; done
if ! wait_ready "$SILOS" "$FRONTENDS"; then
  exit 1
fi

echo "cluster ready: redis 127.0.0.1:$REDIS_PORT, $SILOS silos, $FRONTENDS frontends:"
for j in $(seq 1 "$FRONTENDS"); do echo "  http://127.0.0.1:$((HTTP_BASE + j))  (ws://127.0.0.1:$((HTTP_BASE + j))/ws, gRPC 127.0.0.1:$((GRPC_BASE + j)))"; done
echo "logs and pids in $RUN_DIR, secrets (Redis password, admin key, cluster certificate) in $SECRETS; stop with: deploy/cluster-down.sh"
