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
    # The image listens on every interface (Urls), where the frontend refuses to start without an admin key. Run
    # alone (docker run -p 8000:8000 streaminfer), it gets one generated here, readable in the container only; a
    # deployment passes its own (StreamInfer__Frontend__AdminKey) or the override (StreamInfer__Frontend__AllowOpenAdmin).
    if [ -z "${StreamInfer__Frontend__AdminKey:-}" ] && [ "${StreamInfer__Frontend__AllowOpenAdmin:-}" != "true" ]; then
      key_file=${ADMIN_KEY_FILE:-/tmp/streaminfer-admin-key}
      if [ ! -s "$key_file" ]; then
        (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$key_file")
      fi
      StreamInfer__Frontend__AdminKey=$(cat "$key_file")
      export StreamInfer__Frontend__AdminKey
      echo "no admin key configured: generated one for /dashboard and the model operations; read it with" \
        "'docker exec <container> cat $key_file'" >&2
    fi
    exec dotnet /app/frontend/StreamInfer.Frontend.dll "$@"
    ;;
  *)
    echo "usage: silo|frontend [--Section:Key=value ...] (got '${1:-}')" >&2
    exit 64
    ;;
esac
