#!/usr/bin/env bash
# Memory per idle connection: N WebSocket connections opened and held, sending nothing, against the bare Kestrel
# WebSocket echo (bench/StreamInfer.BareEcho, the baseline) and the grid (embedded default), in the same run. RSS of the
# server process before the connections and while all N are held; the difference per connection.
# Usage: bash bench/idle.sh [seconds held (10)]   Environment: CONNECTIONS (10000)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
hold="${1:-10}"
conns="${CONNECTIONS:-10000}"
build_all

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
held() { ss -Htn state established "( sport = :$1 )" | wc -l; }

echo "idle WebSocket connections: $conns opened and held for ${hold} s, nothing sent; server RSS before and while held"
echo "| server | connections held | RSS before MiB | RSS held MiB | KiB per connection |"
echo "|---|---|---|---|---|"
for target in baseline grid; do
  if [ "$target" = baseline ]; then
    port=18030; name="bare Kestrel echo (baseline)"
    start_server "$port" dotnet "$bare_echo" --urls "http://127.0.0.1:$port"
  else
    port=18031; name="StreamInfer grid (embedded default)"
    start_server "$port" dotnet "$frontend" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning \
      --StreamInfer:Frontend:MaxConnections=$((conns + 100)) --StreamInfer:Orleans:SiloPort=11231 --StreamInfer:Orleans:GatewayPort=30231
  fi
  # Let start-up settle (the grid loads and warms its models) before the first reading.
  sleep 5
  before=$(rss_mib "$server")
  dotnet "$loadgen" --url "ws://127.0.0.1:$port/ws" --connections "$conns" --depth 0 --duration "$hold" --warmup 0 \
    --connect-concurrency 200 >"$load_file" 2>&1 &
  gen=$!
  for _ in $(seq 1 600); do [ "$(held "$port")" -ge "$conns" ] && break; sleep 0.2; done
  count=$(held "$port")
  sleep 2
  during=$(rss_mib "$server")
  wait "$gen" || true
  per=$(awk -v a="$before" -v b="$during" -v n="$count" 'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1024 / n; else print "-" }')
  echo "| $name | $count | $before | $during | $per |"
  stop_server
done
