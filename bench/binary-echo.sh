#!/usr/bin/env bash
# A [1,3,224,224] FP32 image (602,112 bytes) through the echo model, round trip: KServe v2 over HTTP as JSON and with the
# binary tensor data extension, KServe v2 over gRPC (raw_input_contents), and WebSocket as JSON text frames and as
# binary frames; at 1 and at 16 requests in flight (16 clients, 1 each), closed loop. Each row against the bare
# Kestrel endpoint (bench/StreamInfer.BareEcho) receiving the same bytes and returning them, measured in the same run.
# The load generator checks every 16th answer (and each client's first) returns the bytes it sent. The values are
# normalized pseudo-random pixels, so a JSON body is as long as a real image's (about 1.6 MB).
# Target: the binary round trip through the grid at most 2 ms p50 above the bare endpoint at low load (1 in flight).
# Usage: bash bench/binary-echo.sh [seconds per row]
# Environment: WARMUP (seconds before each row, default 1.5), LOADS (in flight, "1 16"), PROTOCOLS (default every one:
# "kserve kserve-binary grpc ws ws-binary"), SHAPE (1,3,224,224), DTYPE (float32).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
secs="${1:-3}"
warmup="${WARMUP:-1.5}"
loads="${LOADS:-1 16}"
protocols="${PROTOCOLS:-kserve kserve-binary grpc ws ws-binary}"
shape="${SHAPE:-1,3,224,224}"; dtype="${DTYPE:-float32}"
# The JSON rows carry a body of about 1.6 MB (3 MB from clients that print doubles): past the grid's 1 MiB default.
max_frame=$((16 << 20))
out=$(mktemp -d /tmp/streaminfer-binary-echo.XXXXXX)
trap 'stop_server; rm -rf "$out"' EXIT
build_all

# url_of PROTOCOL HTTP-PORT GRPC-PORT: where the load generator sends that protocol.
url_of() {
  case "$1" in
    ws | ws-binary) echo "ws://127.0.0.1:$2/ws" ;;
    grpc | grpc-stream) echo "http://127.0.0.1:$3" ;;
    *) echo "http://127.0.0.1:$2" ;;
  esac
}

# measure TARGET PROTOCOL IN-FLIGHT HTTP-PORT GRPC-PORT: one closed-loop run; its "req/s p50 p99 errors" in
# $out/TARGET-PROTOCOL-IN-FLIGHT.row (errors: outcomes other than result, unanswered, connect failures; "none").
measure() {
  local target="$1" proto="$2" n="$3" file="$out/$1-$2-$3.txt" cells rps p50 p99 errors unanswered connect conn_errors
  dotnet "$loadgen" --url "$(url_of "$proto" "$4" "$5")" --protocol "$proto" --shape "$shape" --dtype "$dtype" \
    --values image --connections "$n" --depth 1 --duration "$secs" --warmup "$warmup" \
    --label "$target, $proto, $n in flight" >"$file" 2>&1 || true
  cells=$(grep -E '^\|[ ]*[0-9]' "$file" | head -n 1 || true)
  if [ -z "$cells" ]; then
    echo "– – – failed: $(grep -m1 -E 'error|Exception' "$file" | cut -c1-80)" >"$out/$1-$2-$3.row"; return
  fi
  IFS='|' read -r _ _ rps p50 _ p99 _ <<<"$cells"
  errors=$(sed -n 's/^outcomes: //p' "$file" | tr ' ' '\n' | { grep -v '^result=' || true; } | tr '\n' ' ')
  unanswered=$(sed -n 's/^unanswered: \([0-9]*\).*/\1/p' "$file")
  if [ "${unanswered:-0}" != 0 ]; then errors="${errors}unanswered=$unanswered "; fi
  connect=$(sed -n 's/^connected \([0-9]*\) of \([0-9]*\).*/\1 \2/p' "$file")
  if [ -n "$connect" ] && [ "${connect% *}" != "${connect#* }" ]; then errors="${errors}connected=${connect% *}/${connect#* } "; fi
  conn_errors=$(sed -n 's/^connection-level errors: //p' "$file")
  if [ -n "$conn_errors" ] && [ "$conn_errors" != none ]; then errors="${errors}connection-level: ${conn_errors% (whole run)} "; fi
  errors="${errors% }"
  echo "$(trim "$rps") $(trim "$p50") $(trim "$p99") ${errors:-none}" >"$out/$1-$2-$3.row"
  echo "  $target, $proto, $n in flight: $(trim "$rps") req/s, p50 $(trim "$p50") ms, p99 $(trim "$p99") ms, errors: ${errors:-none}" >&2
}

for target in bare grid; do
  if [ "$target" = bare ]; then
    http=18050; grpc=18052
    start_server "$http" dotnet "$bare_echo" --urls "http://127.0.0.1:$http" --grpc-url "http://127.0.0.1:$grpc"
  else
    http=18051; grpc=18053
    # The session's rate limit (1000/s per client) raised, so that no row measures it instead of the round trip.
    start_server "$http" dotnet "$frontend" --urls "http://127.0.0.1:$http" --Logging:LogLevel:Default=Warning \
      --StreamInfer:Orleans:SiloPort=11251 --StreamInfer:Orleans:GatewayPort=30251 --StreamInfer:Orleans:ClusterId=bench-binary-echo \
      --StreamInfer:Frontend:MaxFrameBytes=$max_frame --StreamInfer:Frontend:GrpcUrl="http://127.0.0.1:$grpc" \
      --StreamInfer:Session:RatePerSecond=1000000 --StreamInfer:Session:Burst=1000000
  fi
  for proto in $protocols; do
    for n in $loads; do measure "$target" "$proto" "$n" "$http" "$grpc"; done
  done
  stop_server
done

name_of() {
  case "$1" in
    kserve) echo "KServe v2 HTTP, JSON" ;;
    kserve-binary) echo "KServe v2 HTTP, binary extension" ;;
    grpc) echo "KServe v2 gRPC ModelInfer, raw contents" ;;
    grpc-stream) echo "KServe v2 gRPC ModelStreamInfer, raw contents" ;;
    ws) echo "WebSocket, JSON text frames" ;;
    ws-binary) echo "WebSocket, binary frames" ;;
    *) echo "$1" ;;
  esac
}

echo "echo of a [$shape] $dtype tensor ($(awk -v s="$shape" -v d="$dtype" 'BEGIN { n = split(s, a, ","); p = 1; for (i = 1; i <= n; i++) p *= a[i]; b = (d ~ /64/) ? 8 : (d ~ /32/) ? 4 : (d ~ /16/) ? 2 : 1; print p * b }') bytes) round trip, closed loop, each client 1 in flight, ${secs} s per row after ${warmup} s warm-up; $(nproc) cores, server and load generator on one machine"
echo "bare: bench/StreamInfer.BareEcho receiving the same bytes and returning them; grid: the StreamInfer frontend, echo model; latency in ms"
echo
echo "| transport, encoding | in flight | bare req/s | bare p50 | bare p99 | grid req/s | grid p50 | grid p99 | grid p50 − bare p50 | errors (bare; grid) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
verdict=met; low=$(echo "$loads" | awk '{ print $1 }')
for proto in $protocols; do
  for n in $loads; do
    read -r brps bp50 bp99 berr <"$out/bare-$proto-$n.row"
    read -r grps gp50 gp99 gerr <"$out/grid-$proto-$n.row"
    delta=$(awk -v g="$gp50" -v b="$bp50" 'BEGIN { if (g + 0 == g && b + 0 == b && g != "–" && b != "–") printf "%+.2f", g - b; else print "–" }')
    echo "| $(name_of "$proto") | $n | $brps | $bp50 | $bp99 | $grps | $gp50 | $gp99 | $delta | $berr; $gerr |"
    # The target is on the binary paths at low load: every one must be within 2 ms of the bare endpoint.
    if [ "$n" = "$low" ] && [ "$proto" != kserve ] && [ "$proto" != ws ]; then
      if [ "$delta" = "–" ] || [ "$gerr" != none ] || awk -v d="$delta" 'BEGIN { exit !(d > 2) }'; then verdict="not met"; fi
    fi
  done
done
echo
echo "target: binary round trip through the grid ≤ 2 ms p50 above the bare endpoint at low load ($low in flight; binary rows): $verdict"
