#!/usr/bin/env bash
# bench/peers/setup.sh -- install, configure, start and verify the peers that
# jobd is benchmarked against: task-spooler (tsp) and a single-node Slurm
# (slurmctld + slurmd, authenticated by munge).
#
# Idempotent: rerunning it while everything is up only health-checks the
# daemons (no restarts, no test jobs) and rewrites the status file.
# Never reads stdin.  Exits 0 whenever the setup itself ran, even if a peer
# is UNAVAILABLE (that is reported on stdout and in the status file);
# exits 2 on bad usage / not root.
#
# Usage: bench/peers/setup.sh [--slots N] [--verify] [--no-install]
#   --slots N     tsp slot count (tsp -S N); default $TSP_SLOTS or nproc
#   --verify      force the full verification (test jobs) even if the
#                 daemons were already verified
#   --no-install  never call apt-get (report missing packages instead)
#
# Outputs (all under $BENCH_PEERS_DIR, default /run/jobd-bench):
#   peers.json   machine-readable status (see README.md)
#   peers.env    `source`-able: TS_SOCKET, SLURM_CONF, partition, image ...
#   setup.log    verbose log of the last runs
set -euo pipefail

# ---------------------------------------------------------------- settings
STATE_DIR="${BENCH_PEERS_DIR:-/run/jobd-bench}"
TS_SOCKET_PATH="$STATE_DIR/tsp.socket"
STATUS_JSON="$STATE_DIR/peers.json"
ENV_FILE="$STATE_DIR/peers.env"
LOG="$STATE_DIR/setup.log"
STARTED_LIST="$STATE_DIR/started"          # daemons this script started
STAMP="$STATE_DIR/verified.stamp"          # last full verification
SLOTS="${TSP_SLOTS:-$(nproc)}"
FORCE_VERIFY=0
NO_INSTALL=0

SLURM_CONF_FILE=/etc/slurm/slurm.conf
SLURM_PARTITION=bench
SLURM_STATE_DIR=/var/spool/slurmctld
SLURMD_SPOOL_DIR=/var/spool/slurmd
SLURM_LOG_DIR=/var/log/slurm
SLURM_JOBCOMP_LOG=$SLURM_LOG_DIR/jobcomp.log
SLURMCTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_KEY=/etc/munge/munge.key
MUNGED_PID=/run/munge/munged.pid
MUNGE_SOCKET=/run/munge/munge.socket.2

IMAGE=localhost/bench-busybox:latest
PODMAN_RUN=(podman --runtime runc run --rm --network none
            --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
PODMAN_TRUE_CMD="${PODMAN_RUN[*]} $IMAGE true"

PACKAGES=(task-spooler slurm-wlm munge)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --slots) SLOTS="${2:-}"; shift 2 || { usage >&2; exit 2; } ;;
    --slots=*) SLOTS="${1#*=}"; shift ;;
    --verify) FORCE_VERIFY=1; shift ;;
    --no-install) NO_INSTALL=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
if ! [[ "$SLOTS" =~ ^[1-9][0-9]*$ ]]; then
  echo "setup.sh: --slots must be a positive integer (got '$SLOTS')" >&2; exit 2
fi
if ((EUID != 0)); then echo "setup.sh: must run as root" >&2; exit 2; fi

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive
exec </dev/null
umask 022
mkdir -p "$STATE_DIR"
chmod 0755 "$STATE_DIR"
cd /   # daemons started below must not pin the caller's cwd

# One setup/teardown at a time.  fd 9 holds the lock; daemons are started
# through spawn(), which closes it, so that they do not keep holding it.
exec 9>"$STATE_DIR/setup.lock"
if ! flock -w 600 9; then echo "setup.sh: could not get $STATE_DIR/setup.lock" >&2; exit 2; fi

T0=$(date +%s.%N)
if [[ -f "$LOG" ]] && (($(stat -c %s "$LOG") > 1048576)); then  # keep the log small
  tail -n 2000 "$LOG" >"$LOG.tmp" && mv -f "$LOG.tmp" "$LOG"
fi
log() { printf '%s [setup] %s\n' "$(date '+%H:%M:%S')" "$*" | tee -a "$LOG" >&2; }
logq() { printf '%s [setup] %s\n' "$(date '+%H:%M:%S')" "$*" >>"$LOG"; }
log "---- setup.sh start (slots=$SLOTS verify=$FORCE_VERIFY) ----"

# last line of a command's combined output, for one-line reasons
LAST_ERR=""
capture() {  # capture CMD... : run, log output, keep last line in LAST_ERR
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [[ -n "$out" ]] && printf '%s\n' "$out" >>"$LOG"
  LAST_ERR=$(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-240 || true)
  return $rc
}

spawn() {  # spawn CMD... : run CMD with stdin=/dev/null and no inherited fds > 2
  # (daemons must not keep our lock fd or a caller's pipe open)
  ( for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if [[ "$fd" =~ ^[0-9]+$ ]] && ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec "$@" ) </dev/null
}

mark_started() { grep -qx "$1" "$STARTED_LIST" 2>/dev/null || echo "$1" >>"$STARTED_LIST"; }

pid_alive() {  # pid_alive PIDFILE COMM -> prints pid if that process runs
  local pf=$1 comm=$2 pid
  [[ -r "$pf" ]] || return 1
  pid=$(tr -dc '0-9' <"$pf")
  [[ -n "$pid" && -d /proc/$pid ]] || return 1
  [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" == "$comm" ]] || return 1
  echo "$pid"
}

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# per-peer status (filled in below)
declare -A AVAIL=([tsp]=false [munge]=false [slurm]=false [podman]=false)
declare -A REASON=([tsp]="" [munge]="" [slurm]="" [podman]="")
declare -A PODMAN_OK=([tsp]=unknown [slurm]=unknown)
declare -A PODMAN_REASON=([tsp]="" [slurm]="")
VERIFIED_NOW=0
SLURM_VERSION=""
SLURM_NODE=""

# ------------------------------------------------------------ 1. packages
INSTALL_ERR=""
missing=()
for p in "${PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
  if ((NO_INSTALL)); then
    INSTALL_ERR="not installed (--no-install): ${missing[*]}"
    log "$INSTALL_ERR"
  else
    log "installing: ${missing[*]}"
    if ! capture apt-get update -qq; then
      log "apt-get update failed: $LAST_ERR (trying install anyway)"
    fi
    # --no-install-recommends: slurm-wlm otherwise drags in ~35 extra
    # packages (MPI, docs, ...) that the benchmark does not need.
    if ! capture apt-get install -y -qq --no-install-recommends \
           -o Dpkg::Options::=--force-confold "${missing[@]}"; then
      INSTALL_ERR="apt-get install failed: $LAST_ERR"
      log "$INSTALL_ERR"
    fi
  fi
else
  logq "packages already installed: ${PACKAGES[*]}"
fi
pkg_reason() {  # pkg_reason PKG -> sets REASON text if PKG is missing
  pkg_installed "$1" && return 1
  echo "package $1 not installed${INSTALL_ERR:+ ($INSTALL_ERR)}"
}

# --------------------------------------------------------------- 2. podman
setup_podman() {
  if ! command -v podman >/dev/null; then REASON[podman]="podman not installed"; return 1; fi
  if ! command -v runc >/dev/null; then REASON[podman]="runc not installed"; return 1; fi
  if ! podman image exists "$IMAGE" 2>/dev/null; then
    log "building $IMAGE from /bin/busybox"
    if [[ ! -x /bin/busybox ]]; then REASON[podman]="/bin/busybox missing, cannot build $IMAGE"; return 1; fi
    local root; root=$(mktemp -d /tmp/bench-busybox.XXXXXX)
    mkdir -p "$root/bin" && cp /bin/busybox "$root/bin/" &&
      ln -sf busybox "$root/bin/sh" && ln -sf busybox "$root/bin/true"
    if ! capture spawn bash -c 'tar -C "$1" -c . | podman --runtime runc import - "$2"' _ "$root" "$IMAGE"; then
      rm -rf "$root"; REASON[podman]="podman import failed: $LAST_ERR"; return 1
    fi
    rm -rf "$root"
  fi
  AVAIL[podman]=true
}
setup_podman || log "podman: ${REASON[podman]}"

# ------------------------------------------------------------------ 3. tsp
tsp_server_pid() {  # pid of the tsp server listening on our socket
  ss -xlpn 2>/dev/null | awk -v s="$TS_SOCKET_PATH" '$5 == s' |
    grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2
}
setup_tsp() {
  local r
  if r=$(pkg_reason task-spooler); then REASON[tsp]=$r; return 1; fi
  if ! command -v tsp >/dev/null; then REASON[tsp]="tsp binary not found"; return 1; fi
  export TS_SOCKET="$TS_SOCKET_PATH"
  local pid; pid=$(tsp_server_pid || true)
  if [[ -z "$pid" ]]; then
    rm -f "$TS_SOCKET_PATH"          # stale socket from a dead server
    log "starting tsp server on $TS_SOCKET_PATH"
    mark_started tsp
  fi
  # The first client call forks the server; it inherits this environment.
  if ! capture spawn timeout 10 tsp -S "$SLOTS"; then
    REASON[tsp]="tsp -S $SLOTS failed: $LAST_ERR"; return 1
  fi
  local got; got=$(spawn timeout 10 tsp -S 2>/dev/null || true)
  if [[ "$got" != "$SLOTS" ]]; then REASON[tsp]="tsp -S reports '$got', wanted $SLOTS"; return 1; fi
  pid=$(tsp_server_pid || true)
  [[ -n "$pid" ]] && echo "$pid" >"$STATE_DIR/tsp.pid"
  AVAIL[tsp]=true
}
setup_tsp || log "tsp: ${REASON[tsp]}"

# ---------------------------------------------------------------- 4. munge
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
setup_munge() {
  local r
  if r=$(pkg_reason munge); then REASON[munge]=$r; return 1; fi
  if ! getent passwd munge >/dev/null; then REASON[munge]="user munge missing"; return 1; fi
  install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 0755 /run/munge
  if [[ ! -s "$MUNGE_KEY" ]]; then
    log "creating $MUNGE_KEY"
    if command -v mungekey >/dev/null; then
      capture mungekey --create --keyfile="$MUNGE_KEY" --force ||
        { REASON[munge]="mungekey failed: $LAST_ERR"; return 1; }
    else
      dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none ||
        { REASON[munge]="cannot write $MUNGE_KEY"; return 1; }
    fi
  fi
  chown munge:munge "$MUNGE_KEY" && chmod 0400 "$MUNGE_KEY"
  if munge_ok; then logq "munged already running"; AVAIL[munge]=true; return 0; fi
  local pid
  if pid=$(pid_alive "$MUNGED_PID" munged); then
    log "munged (pid $pid) runs but does not answer; restarting it"
    kill "$pid" 2>/dev/null || true; sleep 1
  fi
  log "starting munged"
  # HTC guide: more munged threads help high RPC rates (default is 2).
  if ! capture spawn runuser -u munge -- /usr/sbin/munged --num-threads=10; then
    REASON[munge]="munged failed to start: $LAST_ERR"; return 1
  fi
  mark_started munged
  local i
  for ((i = 0; i < 50; i++)); do munge_ok && break; sleep 0.2; done
  if ! munge_ok; then
    REASON[munge]="munged started but munge|unmunge fails: $(tail -n1 /var/log/munge/munged.log 2>/dev/null)"; return 1
  fi
  AVAIL[munge]=true
}
setup_munge || log "munge: ${REASON[munge]}"

# ---------------------------------------------------------------- 5. slurm
write_slurm_conf() {  # prints the wanted slurm.conf on stdout
  local node=$1 cpus=$2 mem=$3
  cat <<EOF
# Managed by jobd bench/peers/setup.sh -- rewritten on every run; edit the
# script, not this file.  Single-node Slurm tuned for many short jobs.
ClusterName=jobdbench
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# no mail on this box; avoids "Configured MailProg is invalid"
MailProg=/bin/true
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$SLURMD_PID
StateSaveLocation=$SLURM_STATE_DIR
SlurmdSpoolDir=$SLURMD_SPOOL_DIR
SlurmctldLogFile=$SLURM_LOG_DIR/slurmctld.log
SlurmdLogFile=$SLURM_LOG_DIR/slurmd.log
SlurmctldDebug=error
SlurmdDebug=error

# No cgroups anywhere (cgroup v1 hybrid host, no systemd as PID 1).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# One line per finished job (JobId, JobState, StartTime, EndTime, ...);
# sacct does not work without slurmdbd, so this is the completion record.
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_JOBCOMP_LOG
@EPILOG_LINE@
# Jobs get slurmd's limits, not the submitting shell's.
PropagateResourceLimits=NONE

# Scheduling: FIFO, side-by-side jobs on cores.
SchedulerType=sched/builtin
PriorityType=priority/basic
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=@SCHED_PARAMS@

# High-throughput knobs (see bench/peers/README.md).
MaxJobCount=200000
MaxArraySize=100001
MinJobAge=30
MessageTimeout=30
KillWait=5
InactiveLimit=0
SlurmctldTimeout=120
SlurmdTimeout=300
ReturnToService=2
SlurmdParameters=config_overrides

NodeName=${node} NodeAddr=127.0.0.1 NodeHostname=${node} CPUs=${cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket=${cpus} ThreadsPerCore=1 RealMemory=${mem} State=UNKNOWN
PartitionName=$SLURM_PARTITION Nodes=${node} Default=YES MaxTime=INFINITE OverSubscribe=NO State=UP
EOF
}
# SchedulerParameters (see README.md for the measurements behind them)
# (Do not write sched_min_interval=...: sched/builtin also matches the
# substring "interval=" and logs "Invalid SchedulerParameters interval" every
# 30 s for a value of 0.  Its default, 2 us, is no throttle anyway.)
SCHED_PARAMS="${BENCH_SLURM_SCHED_PARAMS:-batch_sched_delay=0,default_queue_depth=100}"
# A (no-op) Epilog makes slurmd send MESSAGE_EPILOG_COMPLETE, which runs the
# scheduler at once; without one a finished job's slot is refilled only on
# slurmctld's 1 s background tick (~2 jobs/s on 2 cores instead of ~25).
# BENCH_SLURM_FAST_EPILOG=0 gives the stock behaviour.
if [[ "${BENCH_SLURM_FAST_EPILOG:-1}" == 1 ]]; then
  EPILOG_LINE="# No-op epilog: its completion message triggers an immediate scheduling pass.
Epilog=/bin/true"
else
  EPILOG_LINE="# (no Epilog: BENCH_SLURM_FAST_EPILOG=0)"
fi

stop_pidfile() {  # stop_pidfile PIDFILE COMM : TERM, wait, KILL
  local pid i
  pid=$(pid_alive "$1" "$2") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do [[ -d /proc/$pid ]] || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

node_state() { sinfo -h -N -n "$SLURM_NODE" -o %T 2>/dev/null | head -n1; }

wait_node_ready() {  # up to $1 seconds; resumes a down/drained node
  local deadline=$((SECONDS + $1)) st last_resume=0
  while ((SECONDS < deadline)); do
    st=$(node_state || true)
    case "$st" in
      idle|mixed|allocated|completing) return 0 ;;
      down|drained|draining|fail|failing|unknown|inval|down~|idle~)
        if ((SECONDS - last_resume >= 3)); then
          log "node $SLURM_NODE is '$st'; resuming it"
          capture scontrol update nodename="$SLURM_NODE" state=resume || true
          last_resume=$SECONDS
        fi ;;
    esac
    sleep 0.3
  done
  st=$(node_state || true)
  LAST_ERR="node $SLURM_NODE state '${st:-?}' reason '$(sinfo -h -n "$SLURM_NODE" -o %E 2>/dev/null | head -n1)'"
  return 1
}

# wait_job JOBID TIMEOUT -> 0 if COMPLETED; sets JOB_STATE
JOB_STATE=""
wait_job() {
  local jid=$1 deadline=$((SECONDS + $2)) st
  while ((SECONDS < deadline)); do
    st=$(squeue -h -j "$jid" -t all -o %T 2>/dev/null | head -n1 || true)
    if [[ -z "$st" ]]; then   # purged from memory: ask the jobcomp log
      st=$(grep -E "^JobId=$jid " "$SLURM_JOBCOMP_LOG" 2>/dev/null | tail -n1 |
             grep -o 'JobState=[A-Z_]*' | cut -d= -f2 || true)
    fi
    JOB_STATE=${st:-UNKNOWN}
    case "$st" in
      COMPLETED) return 0 ;;
      FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED) return 1 ;;
    esac
    sleep 0.1
  done
  JOB_STATE="${st:-UNKNOWN} (timeout ${2}s)"
  return 1
}

setup_slurm() {
  local r
  for p in slurmctld slurmd slurm-client; do
    if r=$(pkg_reason "$p"); then REASON[slurm]=$r; return 1; fi
  done
  if [[ "${AVAIL[munge]}" != true ]]; then REASON[slurm]="munge unavailable: ${REASON[munge]}"; return 1; fi

  # slurmctld/slurmd match SlurmctldHost/NodeName against `hostname -s`.
  SLURM_NODE=$(hostname -s 2>/dev/null || true)
  [[ -n "$SLURM_NODE" ]] || SLURM_NODE=localhost
  local cpus mem_total mem
  cpus=$(nproc)
  mem_total=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  mem=$((mem_total - (mem_total / 20 > 512 ? mem_total / 20 : 512)))
  ((mem > 0)) || mem=$mem_total

  install -d -m 0755 /etc/slurm "$SLURM_STATE_DIR" "$SLURMD_SPOOL_DIR" "$SLURM_LOG_DIR"
  local want; want=$(write_slurm_conf "$SLURM_NODE" "$cpus" "$mem")
  want=${want//@SCHED_PARAMS@/$SCHED_PARAMS}
  want=${want//@EPILOG_LINE@/$EPILOG_LINE}
  local changed=0
  if [[ ! -f "$SLURM_CONF_FILE" ]] || [[ "$(cat "$SLURM_CONF_FILE")" != "$want" ]]; then
    if [[ -f "$SLURM_CONF_FILE" ]] && ! grep -q 'Managed by jobd bench/peers/setup.sh' "$SLURM_CONF_FILE" &&
       [[ ! -e "$SLURM_CONF_FILE.pre-jobd-bench" ]]; then
      cp -p "$SLURM_CONF_FILE" "$SLURM_CONF_FILE.pre-jobd-bench"
      log "saved the previous $SLURM_CONF_FILE as $SLURM_CONF_FILE.pre-jobd-bench"
    fi
    printf '%s\n' "$want" >"$SLURM_CONF_FILE.tmp" && chmod 0644 "$SLURM_CONF_FILE.tmp" &&
      mv -f "$SLURM_CONF_FILE.tmp" "$SLURM_CONF_FILE"
    changed=1
    log "wrote $SLURM_CONF_FILE (node=$SLURM_NODE cpus=$cpus RealMemory=$mem)"
  fi
  touch "$SLURM_JOBCOMP_LOG"
  SLURM_VERSION=$(sinfo -V 2>/dev/null | awk '{print $2}' || true)

  local ctld_pid slurmd_pid
  ctld_pid=$(pid_alive "$SLURMCTLD_PID" slurmctld || true)
  slurmd_pid=$(pid_alive "$SLURMD_PID" slurmd || true)
  if ((changed)) && [[ -n "$ctld_pid$slurmd_pid" ]]; then
    log "slurm.conf changed: restarting slurmctld/slurmd"
    stop_pidfile "$SLURMD_PID" slurmd; stop_pidfile "$SLURMCTLD_PID" slurmctld
    ctld_pid="" slurmd_pid=""
  fi
  if [[ -n "$ctld_pid" ]] && ! timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    log "slurmctld (pid $ctld_pid) does not answer ping; restarting it"
    stop_pidfile "$SLURMCTLD_PID" slurmctld; ctld_pid=""
  fi
  if [[ -z "$ctld_pid" ]]; then
    log "starting slurmctld"
    # -c: cold start, drop jobs/node state left from an earlier session so
    # every benchmark starts from an empty queue.
    if ! capture spawn bash -c 'ulimit -n "$(ulimit -Hn)"; exec slurmctld -c'; then
      REASON[slurm]="slurmctld failed to start: $LAST_ERR"; return 1
    fi
    mark_started slurmctld
    local ok=0 t_start=$SECONDS
    while ((SECONDS - t_start < 30)); do
      if timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; then ok=1; break; fi
      # it exits right away on fatal errors (port in use, bad config, ...)
      if ((SECONDS - t_start >= 2)) && ! pid_alive "$SLURMCTLD_PID" slurmctld >/dev/null; then break; fi
      sleep 0.2
    done
    if ((!ok)); then
      REASON[slurm]="slurmctld not answering: $(grep -v '^$' "$SLURM_LOG_DIR/slurmctld.log" 2>/dev/null | tail -n1 | cut -c1-200)"
      return 1
    fi
  fi
  if [[ -z "$slurmd_pid" ]]; then
    log "starting slurmd"
    if ! capture spawn bash -c 'ulimit -n "$(ulimit -Hn)"; exec slurmd -N "$1"' _ "$SLURM_NODE"; then
      REASON[slurm]="slurmd failed to start: $LAST_ERR"; return 1
    fi
    mark_started slurmd
  fi
  if ! wait_node_ready 60; then
    REASON[slurm]="node never became idle: $LAST_ERR"; return 1
  fi
  AVAIL[slurm]=true
}
setup_slurm || log "slurm: ${REASON[slurm]}"

# --------------------------------------------------------- 6. verification
# Full verification (test jobs) runs when something was (re)started, the
# config changed, or --verify was given; otherwise the daemons are the ones
# verified before and the health checks above are enough (fast rerun).
stamp_now() {
  printf 'ctld=%s slurmd=%s munged=%s tsp=%s slots=%s conf=%s\n' \
    "$(pid_alive "$SLURMCTLD_PID" slurmctld || echo -)" "$(pid_alive "$SLURMD_PID" slurmd || echo -)" \
    "$(pid_alive "$MUNGED_PID" munged || echo -)" "$(tsp_server_pid || echo -)" "$SLOTS" \
    "$(cksum <"$SLURM_CONF_FILE" 2>/dev/null | cut -d' ' -f1 || echo -)"
}
read_prev_stamp() { sed -n 1p "$STAMP" 2>/dev/null || true; }
prev_results() { sed -n '2,$p' "$STAMP" 2>/dev/null || true; }

verify_slurm_true() {
  local jid
  jid=$(sbatch --parsable -p "$SLURM_PARTITION" -J verify-true -D "$STATE_DIR" -o /dev/null \
          --wrap true 2>>"$LOG") || { REASON[slurm]="sbatch --wrap true: submit failed"; return 1; }
  jid=${jid%%;*}
  if ! wait_job "$jid" 60; then
    REASON[slurm]="sbatch --wrap true: job $jid ended $JOB_STATE"; return 1
  fi
  logq "slurm: sbatch --wrap true -> job $jid COMPLETED"
}
verify_slurm_podman() {
  local jid out="$STATE_DIR/verify-slurm-podman.out"
  rm -f "$out"
  jid=$(sbatch --parsable -p "$SLURM_PARTITION" -J verify-podman -D "$STATE_DIR" -o "$out" \
          --wrap "$PODMAN_TRUE_CMD" 2>>"$LOG") || { PODMAN_REASON[slurm]="submit failed"; return 1; }
  jid=${jid%%;*}
  if ! wait_job "$jid" 180; then
    PODMAN_REASON[slurm]="job $jid ended $JOB_STATE: $(grep -v '^$' "$out" 2>/dev/null | tail -n1 | cut -c1-200)"
    return 1
  fi
}
verify_tsp_cmd() {  # verify_tsp_cmd LABEL CMD... -> 0 if the job exits 0
  local id rc
  # the submitting client writes the job's output file under its $TMPDIR
  id=$(TMPDIR="$STATE_DIR/tsp-out" TS_SOCKET="$TS_SOCKET_PATH" spawn timeout 10 tsp -L "$1" "${@:2}" 2>>"$LOG") ||
    { LAST_ERR="tsp submit failed"; return 1; }
  # tsp -w waits for the job and returns its exit status
  rc=0; TS_SOCKET="$TS_SOCKET_PATH" spawn timeout 180 tsp -w "$id" >/dev/null 2>&1 || rc=$?
  if ((rc != 0)); then
    LAST_ERR="tsp job $id exit $rc: $(TS_SOCKET="$TS_SOCKET_PATH" tsp -o "$id" 2>/dev/null | xargs -r tail -n1 2>/dev/null | cut -c1-200)"
    return 1
  fi
}

cur_stamp=$(stamp_now)
if ((FORCE_VERIFY)) || [[ "$cur_stamp" != "$(read_prev_stamp)" ]]; then
  log "running verification jobs"
  VERIFIED_NOW=1
  if [[ "${AVAIL[podman]}" == true ]]; then
    if ! capture spawn timeout 120 "${PODMAN_RUN[@]}" "$IMAGE" true; then
      AVAIL[podman]=false; REASON[podman]="direct podman run failed: $LAST_ERR"
    fi
  fi
  if [[ "${AVAIL[tsp]}" == true ]]; then
    rm -rf "$STATE_DIR/tsp-out"; mkdir -p "$STATE_DIR/tsp-out"
    if ! verify_tsp_cmd jobd-bench-verify true; then
      AVAIL[tsp]=false; REASON[tsp]="tsp true failed: $LAST_ERR"
    elif [[ "${AVAIL[podman]}" == true ]]; then
      if verify_tsp_cmd jobd-bench-verify-podman "${PODMAN_RUN[@]}" "$IMAGE" true; then
        PODMAN_OK[tsp]=true
      else PODMAN_OK[tsp]=false; PODMAN_REASON[tsp]=$LAST_ERR; fi
    else PODMAN_OK[tsp]=false; PODMAN_REASON[tsp]="podman unavailable"; fi
  fi
  if [[ "${AVAIL[slurm]}" == true ]]; then
    if ! verify_slurm_true; then
      AVAIL[slurm]=false
    elif [[ "${AVAIL[podman]}" == true ]]; then
      if verify_slurm_podman; then PODMAN_OK[slurm]=true; else PODMAN_OK[slurm]=false; fi
    else PODMAN_OK[slurm]=false; PODMAN_REASON[slurm]="podman unavailable"; fi
  fi
  # remember which daemons passed, so that a rerun can skip the test jobs
  if [[ "${AVAIL[tsp]}${AVAIL[slurm]}" == truetrue ]]; then
    { stamp_now
      printf 'podman_tsp=%s\npodman_slurm=%s\n' "${PODMAN_OK[tsp]}" "${PODMAN_OK[slurm]}"
      printf 'podman_tsp_reason=%s\npodman_slurm_reason=%s\n' "${PODMAN_REASON[tsp]}" "${PODMAN_REASON[slurm]}"
    } >"$STAMP"
  else
    rm -f "$STAMP"
  fi
else
  logq "daemons unchanged since last verification; skipping test jobs"
  prev=$(prev_results)
  PODMAN_OK[tsp]=$(sed -n 's/^podman_tsp=//p' <<<"$prev")
  PODMAN_OK[slurm]=$(sed -n 's/^podman_slurm=//p' <<<"$prev")
  PODMAN_REASON[tsp]=$(sed -n 's/^podman_tsp_reason=//p' <<<"$prev")
  PODMAN_REASON[slurm]=$(sed -n 's/^podman_slurm_reason=//p' <<<"$prev")
fi

# -------------------------------------------------------------- 7. report
json_str() {  # JSON string literal
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}
  s=$(printf '%s' "$s" | tr '\000-\037' ' ')
  printf '"%s"' "$s"
}
json_bool_or_null() { case "$1" in true|false) printf '%s' "$1" ;; *) printf 'null' ;; esac; }

tmp_json="$STATUS_JSON.tmp.$$"
{
  printf '{\n'
  printf '  "generated_at": %s,\n' "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
  printf '  "host": %s,\n' "$(json_str "$(hostname -s 2>/dev/null || echo unknown)")"
  printf '  "verified_now": %s,\n' "$([[ $VERIFIED_NOW == 1 ]] && echo true || echo false)"
  printf '  "env_file": %s,\n' "$(json_str "$ENV_FILE")"
  printf '  "tsp": {"available": %s, "reason": %s, "binary": %s, "socket": %s, "slots": %s, "podman_ok": %s, "podman_reason": %s},\n' \
    "${AVAIL[tsp]}" "$(json_str "${REASON[tsp]}")" "$(json_str "$(command -v tsp || true)")" \
    "$(json_str "$TS_SOCKET_PATH")" "$SLOTS" "$(json_bool_or_null "${PODMAN_OK[tsp]}")" "$(json_str "${PODMAN_REASON[tsp]}")"
  printf '  "slurm": {"available": %s, "reason": %s, "version": %s, "conf": %s, "node": %s, "partition": %s, "cpus": %s, "jobcomp_log": %s, "podman_ok": %s, "podman_reason": %s},\n' \
    "${AVAIL[slurm]}" "$(json_str "${REASON[slurm]}")" "$(json_str "$SLURM_VERSION")" "$(json_str "$SLURM_CONF_FILE")" \
    "$(json_str "$SLURM_NODE")" "$(json_str "$SLURM_PARTITION")" "$(nproc)" "$(json_str "$SLURM_JOBCOMP_LOG")" \
    "$(json_bool_or_null "${PODMAN_OK[slurm]}")" "$(json_str "${PODMAN_REASON[slurm]}")"
  printf '  "munge": {"available": %s, "reason": %s, "socket": %s},\n' \
    "${AVAIL[munge]}" "$(json_str "${REASON[munge]}")" "$(json_str "$MUNGE_SOCKET")"
  printf '  "podman": {"available": %s, "reason": %s, "image": %s, "true_cmd": %s}\n' \
    "${AVAIL[podman]}" "$(json_str "${REASON[podman]}")" "$(json_str "$IMAGE")" "$(json_str "$PODMAN_TRUE_CMD")"
  printf '}\n'
} >"$tmp_json"
mv -f "$tmp_json" "$STATUS_JSON"

{
  echo "# generated by bench/peers/setup.sh -- source me"
  echo "export TS_SOCKET=$TS_SOCKET_PATH"
  echo "export TSP_SLOTS=$SLOTS"
  echo "export SLURM_CONF=$SLURM_CONF_FILE"
  echo "export BENCH_SLURM_PARTITION=$SLURM_PARTITION"
  echo "export BENCH_SLURM_JOBCOMP_LOG=$SLURM_JOBCOMP_LOG"
  echo "export BENCH_PODMAN_IMAGE=$IMAGE"
  echo "export BENCH_PEERS_JSON=$STATUS_JSON"
  echo "export BENCH_PEERS_TSP_AVAILABLE=${AVAIL[tsp]}"
  echo "export BENCH_PEERS_SLURM_AVAILABLE=${AVAIL[slurm]}"
} >"$ENV_FILE"

elapsed=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
line() {  # line PEER DETAILS
  local peer=$1; shift
  if [[ "${AVAIL[$peer]}" == true ]]; then printf 'peer %-6s AVAILABLE    %s\n' "$peer" "$*"
  else printf 'peer %-6s UNAVAILABLE  %s\n' "$peer" "${REASON[$peer]:-unknown reason}"; fi
}
podman_note() {
  case "${PODMAN_OK[$1]}" in
    true) echo "podman=ok" ;;
    false) echo "podman=FAILED(${PODMAN_REASON[$1]})" ;;
    *) echo "podman=unchecked" ;;
  esac
}
{
  line tsp "TS_SOCKET=$TS_SOCKET_PATH slots=$SLOTS $(podman_note tsp)"
  line slurm "slurm $SLURM_VERSION node=$SLURM_NODE partition=$SLURM_PARTITION conf=$SLURM_CONF_FILE $(podman_note slurm)"
  line munge "socket=$MUNGE_SOCKET"
  line podman "image=$IMAGE"
  echo "status: $STATUS_JSON  env: $ENV_FILE  (${elapsed}s, $([[ $VERIFIED_NOW == 1 ]] && echo 'verified with test jobs' || echo 'health-checked only; --verify to rerun test jobs'))"
} | tee -a "$LOG"
exit 0
