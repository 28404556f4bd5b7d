#!/bin/sh
# A persistent, notebook-style service with a published port: start it, use it through the
# port jobd published on 127.0.0.1, stop it, and find its history kept on the volume.
# Runs against the jobd that jobctl reaches (JOBD_SOCKET, or the default socket).
set -eu
cd "$(dirname "$0")"
IMAGE=${IMAGE:-localhost/jobd/busybox:latest}

set -- $(jobctl run --kind persistent --name notebook --label example=notebook-service \
    --port 8888 -v notebooks:/notebooks --input serve.sh "$IMAGE" -- sh /inputs/serve.sh)
run=$2
trap 'jobctl stop "$run" --wait > /dev/null 2>&1 || true' EXIT
address=""
for _ in $(seq 1 60); do
    address=$(jobctl show "$run" --json | sed -n 's/.*"address": *"\([^"]*\)".*/\1/p' | head -n 1)
    if [ -n "$address" ] && busybox wget -q -O /dev/null "http://$address/cgi-bin/index" 2> /dev/null; then
        break
    fi
    address=""
    sleep 0.5
done
[ -n "$address" ] || { echo "the service did not answer" >&2; jobctl logs "$run" >&2; exit 1; }
echo "notebook at http://$address/cgi-bin/index"
busybox wget -q -O - "http://$address/cgi-bin/run?cmd=echo%20hello%20from%20%24(hostname)"
busybox wget -q -O - "http://$address/cgi-bin/index"

jobctl stop "$run" --wait
trap - EXIT
set -- $(jobctl run -v notebooks:/notebooks:ro "$IMAGE" -- cat /notebooks/history.txt)
jobctl wait "$2"
jobctl logs "$2" | grep -q '^hello from ' || { echo "the history was not kept" >&2; exit 1; }
echo "notebook-service: ok"
