#!/bin/sh
# Entry point of the StreamInfer image (deploy/Dockerfile): the first argument says which process the container runs.
#
#   silo [ARGS...]        the standalone silo, /app/silo
#   frontend [ARGS...]    the frontend, /app/frontend (embedded default unless StreamInfer__Frontend__CoHostSilo=false)
#
# Further arguments go to the process, e.g. --StreamInfer:Session:RatePerSecond=50. exec: the process becomes the
# container's main process and receives SIGTERM itself, so a stopping silo leaves the cluster cleanly.
set -e

case "${1:-}" in
  silo)
    shift
    exec dotnet /app/silo/StreamInfer.Silo.dll "$@"
    ;;
  frontend)
    shift
    exec dotnet /app/frontend/StreamInfer.Frontend.dll "$@"
    ;;
  *)
    echo "usage: silo|frontend [--Section:Key=value ...] (got '${1:-}')" >&2
    exit 64
    ;;
esac
