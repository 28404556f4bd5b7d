#!/usr/bin/env bash
# bench/peers/teardown.sh -- stop what bench/peers/setup.sh started:
# slurmd, slurmctld, munged and the tsp server on the private socket.
# Idempotent (a second run finds nothing to stop).  Packages, config files,
# the munge key and the podman image are left in place.
#
# Usage: bench/peers/teardown.sh [--all]
#   --all   also stop those daemons if they were running before setup.sh
#           (by default only the ones setup.sh recorded as started by it)
set -euo pipefail

STATE_DIR="${BENCH_PEERS_DIR:-/run/jobd-bench}"
TS_SOCKET_PATH="$STATE_DIR/tsp.socket"
STARTED_LIST="$STATE_DIR/started"
STATUS_JSON="$STATE_DIR/peers.json"
SLURMCTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGED_PID=/run/munge/munged.pid
SLURM_PARTITION=bench
ALL=0
case "${1:-}" in
  --all) ALL=1 ;;
  "") ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "teardown.sh: unknown argument: $1" >&2; exit 2 ;;
esac
if ((EUID != 0)); then echo "teardown.sh: must run as root" >&2; exit 2; fi
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
exec </dev/null
mkdir -p "$STATE_DIR"
cd /
exec 9>"$STATE_DIR/setup.lock"
flock -w 120 9 || { echo "teardown.sh: could not get $STATE_DIR/setup.lock" >&2; exit 2; }

log() { printf '%s [teardown] %s\n' "$(date '+%H:%M:%S')" "$*" | tee -a "$STATE_DIR/setup.log" >&2; }
ours() { ((ALL)) || grep -qx "$1" "$STARTED_LIST" 2>/dev/null; }
forget() { [[ -f "$STARTED_LIST" ]] && sed -i "/^$1\$/d" "$STARTED_LIST" || true; }

pid_alive() {  # pid_alive PIDFILE COMM -> prints pid if that process runs
  local pid
  [[ -r "$1" ]] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [[ -n "$pid" && -d /proc/$pid && "$(cat /proc/"$pid"/comm 2>/dev/null)" == "$2" ]] || return 1
  echo "$pid"
}
stop_pid() {  # stop_pid PID NAME : TERM, wait up to 10 s, then KILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do [[ -d /proc/$pid ]] || { log "stopped $2 (pid $pid)"; return 0; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  log "killed $2 (pid $pid) after 10 s"
}

summary=()
# ---- slurm: cancel our partition's jobs first, then slurmd, slurmctld
if ours slurmctld || ours slurmd; then
  if pid_alive "$SLURMCTLD_PID" slurmctld >/dev/null; then
    timeout 10 scancel --quiet -p "$SLURM_PARTITION" 2>/dev/null || true
  fi
fi
for d in slurmd slurmctld; do
  pf=$SLURMD_PID; [[ $d == slurmctld ]] && pf=$SLURMCTLD_PID
  if ours "$d"; then
    if pid=$(pid_alive "$pf" "$d"); then stop_pid "$pid" "$d"; summary+=("$d=stopped")
    else summary+=("$d=not-running"); fi
    forget "$d"
  elif pid_alive "$pf" "$d" >/dev/null; then
    summary+=("$d=left-running(not-started-by-setup;--all)")
  else summary+=("$d=not-running"); fi
done

# ---- munged
if ours munged; then
  if pid=$(pid_alive "$MUNGED_PID" munged); then stop_pid "$pid" munged; summary+=("munged=stopped")
  else summary+=("munged=not-running"); fi
  forget munged
elif pid_alive "$MUNGED_PID" munged >/dev/null; then
  summary+=("munged=left-running(not-started-by-setup;--all)")
else summary+=("munged=not-running"); fi

# ---- tsp server on our private socket
tsp_pid=$(ss -xlpn 2>/dev/null | awk -v s="$TS_SOCKET_PATH" '$5 == s' | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true)
if [[ -n "$tsp_pid" ]] && { ours tsp || ((ALL)); }; then
  # tsp -K kills the server and its queued clients (not running commands)
  TS_SOCKET="$TS_SOCKET_PATH" timeout 5 tsp -K >/dev/null 2>&1 || true
  for ((i = 0; i < 50; i++)); do [[ -d /proc/$tsp_pid ]] || break; sleep 0.1; done
  if [[ -d /proc/$tsp_pid && "$(cat /proc/"$tsp_pid"/comm 2>/dev/null)" == tsp ]]; then
    stop_pid "$tsp_pid" "tsp server"
  else log "stopped tsp server (pid $tsp_pid)"; fi
  summary+=("tsp=stopped")
elif [[ -n "$tsp_pid" ]]; then
  summary+=("tsp=left-running(not-started-by-setup;--all)")
else
  summary+=("tsp=not-running")
fi
# never start a server here (a plain `tsp` call would); just drop a stale socket
if [[ -S "$TS_SOCKET_PATH" ]] && ! ss -xlpn 2>/dev/null | awk -v s="$TS_SOCKET_PATH" '$5 == s' | grep -q .; then
  rm -f "$TS_SOCKET_PATH"
fi
forget tsp
rm -f "$STATE_DIR/tsp.pid" "$STATE_DIR/verified.stamp"

# ---- status file: say plainly that the peers are down
if [[ -f "$STATUS_JSON" ]]; then
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  cat >"$STATUS_JSON.tmp.$$" <<EOF
{
  "generated_at": "$now",
  "stopped_by": "teardown.sh",
  "tsp": {"available": false, "reason": "stopped by bench/peers/teardown.sh; run bench/peers/setup.sh"},
  "slurm": {"available": false, "reason": "stopped by bench/peers/teardown.sh; run bench/peers/setup.sh"},
  "munge": {"available": false, "reason": "stopped by bench/peers/teardown.sh"},
  "podman": {"available": false, "reason": "not checked since teardown"}
}
EOF
  mv -f "$STATUS_JSON.tmp.$$" "$STATUS_JSON"
  [[ -f "$STATE_DIR/peers.env" ]] && sed -i 's/_AVAILABLE=true/_AVAILABLE=false/' "$STATE_DIR/peers.env"
fi
echo "teardown: ${summary[*]}"
