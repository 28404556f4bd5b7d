#!/bin/sh
# A notebook-style service on port 8888: a page listing the notebook's history, and
# /cgi-bin/run?cmd=... that runs a command in the container and records it (as a notebook
# runs a cell). Everything it keeps is on the volume at /notebooks, so it survives a restart.
set -eu
site=/tmp/site
mkdir -p "$site/cgi-bin" /notebooks
touch /notebooks/history.txt
cat > "$site/cgi-bin/run" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
cmd=$(busybox httpd -d "${QUERY_STRING#cmd=}")
printf '$ %s\n' "$cmd" | tee -a /notebooks/history.txt
sh -c "$cmd" 2>&1 | tee -a /notebooks/history.txt
CGI
cat > "$site/cgi-bin/index" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "notebook on $(hostname): $(grep -c '^\$ ' /notebooks/history.txt) cells run"
cat /notebooks/history.txt
CGI
chmod +x "$site/cgi-bin/run" "$site/cgi-bin/index"
echo "serving on :8888 (GET /cgi-bin/index, /cgi-bin/run?cmd=...)"
busybox httpd -f -v -p 8888 -h "$site" &
server=$!
# a clean stop: `jobctl stop` sends SIGTERM; exiting 0 makes the run `succeeded`
trap 'kill "$server"; wait "$server" || true; echo "stopped"; exit 0' TERM INT
wait "$server"
