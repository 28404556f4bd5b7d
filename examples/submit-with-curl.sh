#!/usr/bin/env bash
# The HTTP API without jobctl: submit examples/hello.json over the Unix socket, wait for the
# run to end, print its logs.
set -euo pipefail
sock="${JOBD_SOCKET:-${XDG_RUNTIME_DIR:-/run}/jobd/jobd.sock}"
api() { curl -sS --unix-socket "$sock" "$@"; }
run_id=$(api -X POST -H 'Content-Type: application/json' \
  --data @"$(dirname "$0")/hello.json" http://jobd/v1/jobs | python3 -c 'import json,sys; print(json.load(sys.stdin)["latestRunId"])')
while :; do
  status=$(api "http://jobd/v1/runs/$run_id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  case "$status" in succeeded|failed|cancelled) break ;; esac
  sleep 0.5
done
echo "$run_id $status"
api "http://jobd/v1/runs/$run_id/logs?format=text"
