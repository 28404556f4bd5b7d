#!/usr/bin/env bash
# bench/peers/quickcheck.sh -- quick, bounded measurements of the peers set
# up by setup.sh (the figures quoted in README.md).  Not the benchmark
# itself: sequential shell loops, so the numbers include fork/exec of the
# client tools, exactly as a user typing `sbatch`/`tsp` in a loop would see.
#
# Usage: bench/peers/quickcheck.sh [N_SUBMIT] [N_LATENCY]
#   N_SUBMIT   jobs per submit-rate loop (default 500, max 2000)
#   N_LATENCY  single-job latency samples per peer (default 10, max 50)
# Env: QUICKCHECK_PEERS="slurm tsp" to choose peers.
set -euo pipefail
N=${1:-500}; K=${2:-10}
((N >= 1 && N <= 2000)) || { echo "N_SUBMIT must be 1..2000" >&2; exit 2; }
((K >= 1 && K <= 50)) || { echo "N_LATENCY must be 1..50" >&2; exit 2; }
PEERS=${QUICKCHECK_PEERS:-"slurm tsp"}
ENV_FILE=${BENCH_PEERS_DIR:-/run/jobd-bench}/peers.env
[[ -r "$ENV_FILE" ]] || { echo "run bench/peers/setup.sh first ($ENV_FILE missing)" >&2; exit 2; }
# shellcheck disable=SC1090
source "$ENV_FILE"
exec </dev/null
WORK=$(mktemp -d /tmp/peers-quickcheck.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
stats() {  # stdin: one number per line -> "min/median/mean/max"
  sort -g | awk '{v[NR] = $1; s += $1}
    END {if (NR == 0) {print "n/a"; exit}
         m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
         printf "min %.3f / median %.3f / mean %.3f / max %.3f s (n=%d)", v[1], m, s / NR, v[NR], NR}'
}
wait_until() {  # wait_until TIMEOUT CMD... : poll until CMD prints 0
  local deadline=$((SECONDS + $1)); shift
  while ((SECONDS < deadline)); do [[ "$("$@")" == 0 ]] && return 0; sleep 0.05; done
  return 1
}
rand_sleep() { sleep "0.$(printf '%03d' $((RANDOM % 1000)))"; }

slurm_active() { squeue -h -n "$1" -t PD,R,CF,CG -o %i 2>/dev/null | wc -l; }
tsp_active() { tsp -l 2>/dev/null | awk '$2 == "queued" || $2 == "running"' | wc -l; }

if [[ " $PEERS " == *" slurm "* && "$BENCH_PEERS_SLURM_AVAILABLE" == true ]]; then
  echo "== slurm ($(sinfo -V)), partition $BENCH_SLURM_PARTITION"
  scontrol show config 2>/dev/null | grep -E '^(SchedulerParameters|SchedulerType|MinJobAge|MaxJobCount|MessageTimeout) ' | sed 's/^/   /'
  name=qc-rate-$$
  t0=$(now)
  for ((i = 0; i < N; i++)); do
    sbatch --parsable -J "$name" -o /dev/null -D "$WORK" --wrap true >/dev/null
  done
  t1=$(now)
  wait_until 600 slurm_active "$name" || echo "   WARNING: slurm jobs still active after 600s"
  t2=$(now)
  echo "   submit: $N x 'sbatch --wrap true' in $(sub "$t0" "$t1") s -> $(awk -v n="$N" -v d="$(sub "$t0" "$t1")" 'BEGIN {printf "%.0f", n / d}') jobs/s"
  echo "   drain : all $N done $(sub "$t0" "$t2") s after the first submit -> $(awk -v n="$N" -v d="$(sub "$t0" "$t2")" 'BEGIN {printf "%.1f", n / d}') jobs/s end-to-end"
  : >lat.slurm
  for ((i = 0; i < K; i++)); do
    rand_sleep   # de-phase from slurmctld's 1 s background tick
    rm -f start.$i
    a=$(now)
    sbatch --parsable -J qc-lat -o /dev/null -D "$WORK" --wrap "date +%s.%N > $WORK/start.$i" >/dev/null
    b=$(now)
    w=0; while [[ ! -s start.$i ]] && ((w++ < 600)); do sleep 0.01; done
    if [[ -s start.$i ]]; then sub "$a" "$(cat start.$i)" >>lat.slurm; echo >>lat.slurm; else echo "   sample $i timed out"; fi
    sub "$a" "$b" >>sbatch.call; echo >>sbatch.call
    wait_until 30 slurm_active qc-lat || true
  done
  echo "   submit->start (idle node): $(stats <lat.slurm)"
  echo "   sbatch call itself       : $(stats <sbatch.call)"
fi

if [[ " $PEERS " == *" tsp "* && "$BENCH_PEERS_TSP_AVAILABLE" == true ]]; then
  echo "== tsp ($(command -v tsp)), TS_SOCKET=$TS_SOCKET slots=$(tsp -S)"
  tsp -C
  ((N <= 900)) || echo "   NOTE: tsp holds at most ~1000 queued+running jobs; beyond that 'tsp' blocks"
  t0=$(now)
  for ((i = 0; i < N; i++)); do tsp -n true >/dev/null 2>&1; done
  t1=$(now)
  wait_until 600 tsp_active || echo "   WARNING: tsp jobs still active after 600s"
  t2=$(now)
  echo "   submit: $N x 'tsp -n true' in $(sub "$t0" "$t1") s -> $(awk -v n="$N" -v d="$(sub "$t0" "$t1")" 'BEGIN {printf "%.0f", n / d}') jobs/s"
  echo "   drain : all $N done $(sub "$t0" "$t2") s after the first submit -> $(awk -v n="$N" -v d="$(sub "$t0" "$t2")" 'BEGIN {printf "%.1f", n / d}') jobs/s end-to-end"
  tsp -C
  : >lat.tsp
  for ((i = 0; i < K; i++)); do
    rand_sleep
    rm -f start.$i
    a=$(now)
    tsp -n sh -c "date +%s.%N > $WORK/start.$i" >/dev/null 2>&1
    w=0; while [[ ! -s start.$i ]] && ((w++ < 600)); do sleep 0.01; done
    if [[ -s start.$i ]]; then sub "$a" "$(cat start.$i)" >>lat.tsp; echo >>lat.tsp; else echo "   sample $i timed out"; fi
    wait_until 30 tsp_active || true
  done
  tsp -C
  echo "   submit->start (idle queue): $(stats <lat.tsp)"
fi
