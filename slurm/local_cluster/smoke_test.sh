#!/usr/bin/env bash
# Smoke test for a running local cluster (see cluster.sh): a job completes and
# shows COMPLETED in sacct, a bad partition is refused, requeue re-runs a job,
# scancel gives CANCELLED, and (if a python with submitit is given) a submitit
# job returns its result.
#
#   smoke_test.sh [PYTHON]     PYTHON default: python3 on PATH (needs submitit for the last check)
set -euo pipefail

PYTHON=${1:-$(command -v python3)}
WORK=$(mktemp -d /tmp/cropd-slurm-smoke.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

say() { printf '[smoke] %s\n' "$*"; }
fail() { say "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# wait_until TIMEOUT CMD...: poll CMD every 0.2 s.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

job_state() { squeue -h -j "$1" -o %T 2>/dev/null; }
sacct_state() { sacct -j "$1" -X -n -P -o State 2>/dev/null | head -n1; }
sacct_is() { [[ $(sacct_state "$1") == "$2"* ]]; }
is_running() { [[ $(job_state "$1") == RUNNING ]]; }
not_running() { ! is_running "$1"; }
restart_count() { scontrol show job "$1" | grep -o 'Restarts=[0-9]*' | cut -d= -f2; }

test_hostname_job() {
  local id; id=$(sbatch --parsable --wrap hostname)
  wait_until 30 sacct_is "$id" COMPLETED || fail "job $id: $(sacct_state "$id")"
  say "sbatch --wrap hostname -> job $id: $(sacct -j "$id" -n -P -o JobID,State | tr '\n' ' ')"
  say "  output: $(cat "slurm-$id.out")"
}

test_bad_partition() {
  local out
  if out=$(sbatch --test-only -p nosuchpartition --wrap true 2>&1); then
    fail "sbatch accepted a missing partition: $out"
  fi
  say "bad partition refused: $out"
}

test_requeue() {
  local id t0
  id=$(sbatch --parsable --requeue --wrap 'sleep 300')
  wait_until 30 is_running "$id" || fail "job $id never ran"
  scontrol requeue "$id"
  t0=$(now)
  wait_until 5 not_running "$id" || true
  wait_until 60 is_running "$id" || fail "requeued job $id did not run again: $(job_state "$id")"
  say "requeued job $id running again after $(elapsed "$t0") s, Restarts=$(restart_count "$id")"
  [[ $(restart_count "$id") == 1 ]] || fail "expected Restarts=1"
  scancel "$id"
  wait_until 30 sacct_is "$id" CANCELLED || fail "job $id after scancel: $(sacct_state "$id")"
  say "scancel $id -> sacct: $(sacct_state "$id")"
}

test_submitit() {
  [[ -x $PYTHON ]] || { say "skip submitit ($PYTHON not found)"; return 0; }
  "$PYTHON" - "$WORK/submitit" <<'EOF'
import sys, time, submitit

def add(a, b):
    import socket
    return a + b, socket.gethostname()

t0 = time.time()
ex = submitit.AutoExecutor(sys.argv[1], cluster="slurm")
ex.update_parameters(cpus_per_task=1, timeout_min=2)
job = ex.submit(add, 2, 3)
res = job.result()
assert res[0] == 5, res
print(f"[smoke] submitit job {job.job_id} -> {res} in {time.time() - t0:.1f} s")
EOF
}

test_hostname_job
test_bad_partition
test_requeue
test_submitit
say "all passed"
