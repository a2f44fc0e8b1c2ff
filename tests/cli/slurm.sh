#!/usr/bin/env bash
# slurm.sh — the slurm/ scripts under a real Slurm: a one-node cluster brought up here by
# slurm/local/start (and torn down by slurm/local/stop on exit). `sbatch --wait` of
# train.sbatch on 2 tasks, with mpirun and with METATRAIN_LAUNCHER=srun; preemption end to end
# with each launcher (USR1 → checkpoint → exit 75 → requeue → resume → θ bit-identical to an
# uninterrupted run); and, once `metatrain sweep` exists, sweep.sbatch on a 3-point grid and
# sweep-array.sbatch as a 2-task job array, checked by their sweep.csv rows.
#
# usage: slurm.sh METATRAIN MPIEXEC CKPT_DIFF SLURMDIR   (run by ctest; prints ok/FAIL per check)
# When this machine cannot run Slurm (not root, slurm-wlm or munge missing, a daemon does not
# come up) it prints why and exits 77 (ctest: skipped); with METATRAIN_REQUIRE_SLURM=1 that
# is a failure instead.
set -u
BIN=$1
MPIEXEC=$2 # lib.sh's train uses it
DIFF=$3
SLURM=$4
source "$(dirname "$0")/lib.sh"

same() { "$DIFF" "$1" "$2" --tol 0 >"$TMP/diff" 2>&1; }
both() { grep -q "$1" "$3" && grep -q "$2" "$3"; } # PATTERN1 PATTERN2 FILE
# The cluster's state directory: not under $TMP (mode 700), since munged, which runs as the
# user munge, needs to reach its socket there.
METATRAIN_SLURM_DIR=$(mktemp -d "${TMPDIR:-/tmp}/metatrain-slurm-test.XXXXXX") || exit 1
export METATRAIN_SLURM_DIR
trap '"$SLURM/local/stop"; rm -rf "$TMP" "$METATRAIN_SLURM_DIR"' EXIT

t0=$(date +%s%N)
if ! "$SLURM/local/start" >"$TMP/start.out" 2>&1; then
    echo "SKIP: no local Slurm on this machine; slurm/local/start said:"
    sed 's/^/     | /' "$TMP/start.out"
    if [ "${METATRAIN_REQUIRE_SLURM:-0}" = 1 ]; then echo "FAIL METATRAIN_REQUIRE_SLURM=1"; exit 1; fi
    exit 77
fi
eval "$(grep '^export SLURM_CONF=' "$TMP/start.out")"
# The daemons outlive this script if it is killed (a ctest timeout kills it and its children,
# not the daemons): a watchdog, detached from it, stops the cluster when it is gone.
(setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done; METATRAIN_SLURM_DIR=$2 "$3/local/stop"' \
    watchdog $$ "$METATRAIN_SLURM_DIR" "$SLURM" </dev/null >/dev/null 2>&1 &)
echo "local Slurm up in $((($(date +%s%N) - t0) / 1000000)) ms: $(grep 'idle after' "$TMP/start.out")"
check "slurm/local/start said how to use it" test -f "${SLURM_CONF:-/nonexistent}"
check "slurm/local/start a second time reuses the running cluster" \
    bash -c "'$SLURM/local/start' 2>&1 | grep -qx 'export SLURM_CONF=$SLURM_CONF'"

# The jobs get this environment (sbatch exports it): the binary, Open MPI as root (from
# ctest), and mpirun's SIGKILL delay after a rank's non-zero exit kept short (it exits after
# twice this many seconds; the ranks have finished their checkpoint by then).
export METATRAIN=$BIN OMPI_MCA_odls_base_sigkill_timeout=3
cd "$TMP" || exit 1

job_field() { scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -n 1 | cut -d= -f2; }
# wait_job JOBID SECONDS: until the job has ended, moving a requeued job's start (held ~2 min
# by Slurm) to now. Not within the second the job was killed for its requeue, though: slurmd
# refuses a launch whose credential is not newer than the kill ("Job credential revoked",
# and the job ends FAILED). Sets $state.
wait_job() {
    local deadline=$((SECONDS + $2)) held=
    while [ "$SECONDS" -lt "$deadline" ]; do
        state=$(job_field "$1" JobState)
        case "$state" in
            COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE) return ;;
            PENDING)
                if [ "$(job_field "$1" Reason)" != BeginTime ]; then
                    :
                elif [ -z "$held" ]; then
                    held=$(date +%s)
                elif [ "$(date +%s)" -gt "$held" ]; then
                    scontrol update JobId="$1" StartTime=now
                    held=
                fi ;;
        esac
        sleep 0.25
    done
    state="still $state after $2 s"
}
# sbatch_wait ARGS...: sbatch --wait, bounded; sets $status and $TMP/out, $TMP/err.
sbatch_wait() { RUN_TIMEOUT=180 run sbatch --wait "$@"; }

echo "[${SECONDS} s]"
# --- train.sbatch on 2 tasks, mpirun and srun ---------------------------------------------------
small=(--progress none --set run.iterations=40 --set run.log_every=5)
sbatch_wait -n 2 -o "$TMP/t_mpirun.out" "$SLURM/train.sbatch" --set run.dir="$TMP/t_mpirun" "${small[@]}"
expect_exit 0 "sbatch --wait -n 2 slurm/train.sbatch (40 iterations)"
check "  ... trained on 2 ranks started by mpirun" \
    both "mpirun metatrain train" " 2 ranks" "$TMP/t_mpirun.out"
check "  ... left a readable checkpoint" same "$TMP/t_mpirun/ckpt-00000040.h5" "$TMP/t_mpirun/ckpt-00000040.h5"
check "  ... and metrics.jsonl up to iteration 40" grep -q '"iteration": 40' "$TMP/t_mpirun/metrics.jsonl"
check "  ... and no status file" bash -c "! ls -A '$TMP' | grep -q metatrain-status"
METATRAIN_LAUNCHER=srun sbatch_wait -n 2 -o "$TMP/t_srun.out" "$SLURM/train.sbatch" --set run.dir="$TMP/t_srun" \
    "${small[@]}"
expect_exit 0 "METATRAIN_LAUNCHER=srun sbatch --wait -n 2 slurm/train.sbatch"
check "  ... trained on 2 ranks started by srun --mpi=pmix" \
    both "srun --mpi=pmix metatrain train" " 2 ranks" "$TMP/t_srun.out"
check "  ... its checkpoint equals the mpirun job's, bit for bit" \
    same "$TMP/t_mpirun/ckpt-00000040.h5" "$TMP/t_srun/ckpt-00000040.h5"
METATRAIN_LAUNCHER=bogus sbatch_wait -n 1 -o "$TMP/t_bogus.out" "$SLURM/train.sbatch" --set run.dir="$TMP/t_bogus"
expect_exit 2 "METATRAIN_LAUNCHER=bogus is refused"
check "  ... naming the variable" grep -q "METATRAIN_LAUNCHER=bogus: expected mpirun or srun" "$TMP/t_bogus.out"

echo "[${SECONDS} s]"
# --- preemption: USR1, checkpoint, exit 75, requeue, resume, same θ ------------------------------
# The jobs are signalled once their checkpoint of iteration 10 exists, and must still be
# running when the signal arrives: ~3 s of training after it, measured here (iterations
# take 50x longer in a -O0 sanitizer build than in a release build).
slow=(--set meta.meta_batch=1500 --set checkpoint.every=10)
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
t=$(date +%s%N)
train "$TMP/cal1" 2 1 "${slow[@]}"
t1=$(ms "$t")
t=$(date +%s%N)
train "$TMP/cal11" 2 11 "${slow[@]}"
per=$((($(ms "$t") - t1) / 10))
n=$((10 + 3000 / (per > 1 ? per : 1)))
n=$((n < 15 ? 15 : n > 300 ? 300 : n))
last=ckpt-$(printf %08d "$n").h5
echo "an iteration of meta-batch 1500 on 2 ranks takes ~$per ms: the preempted runs train $n iterations"
train "$TMP/ref" 2 "$n" "${slow[@]}"
expect_exit 0 "uninterrupted reference run ($n iterations, meta-batch 1500) under mpirun"
preempt() { # LAUNCHER HOW: HOW is "--batch" (signal the batch shell) or "" (the job step)
    local dir=$TMP/p_$1 out=$TMP/p_$1.out jid
    jid=$(METATRAIN_LAUNCHER=$1 sbatch --parsable -n 2 -o "$out" "$SLURM/train.sbatch" \
        --set run.dir="$dir" --progress none --set run.iterations="$n" --set run.log_every=5 "${slow[@]}")
    for _ in $(seq 1200); do [ -f "$dir/ckpt-00000010.h5" ] && break; sleep 0.05; done
    # shellcheck disable=SC2086 # $2 is one option or none
    scancel --signal=USR1 $2 "$jid"
    wait_job "$jid" 150
    check "$1: job $jid preempted by scancel --signal=USR1 $2 ended: COMPLETED (got $state)" test "$state" = COMPLETED
    check "  ... with exit code 0:0 (got $(job_field "$jid" ExitCode))" test "$(job_field "$jid" ExitCode)" = 0:0
    check "  ... it stopped with a checkpoint" grep -q "stopped by SIGUSR1 at iteration [0-9]*: checkpoint" "$out"
    check "  ... exited 75 and requeued itself" grep -q "exit status 75: checkpointed; requeueing job $jid" "$out"
    check "  ... ran again (Restarts=1, got $(job_field "$jid" Restarts))" test "$(job_field "$jid" Restarts)" = 1
    check "  ... and resumed from that checkpoint" both "(restart 1)" "resuming from $dir/ckpt-" "$out"
    check "  ... final θ and Adam moments bit-identical to the uninterrupted run" \
        same "$TMP/ref/$last" "$dir/$last"
    if [ "$state" != COMPLETED ] || ! grep -q "resuming" "$out"; then
        sed 's/^/     | /' "$out"
        grep -hE "(JobId=|[jJ][oO][bB] |\[)$jid[] .:]" "$METATRAIN_SLURM_DIR/slurmctld.log" \
            "$METATRAIN_SLURM_DIR/slurmd.log" | sed 's/^/     | /'
    fi
}
preempt mpirun --batch
preempt srun ""

echo "[${SECONDS} s]"
# --- sweeps: one allocation, and a job array ------------------------------------------------------
if ! "$BIN" sweep --help >/dev/null 2>&1; then
    echo "SKIP sweep.sbatch and sweep-array.sbatch: this metatrain has no sweep command"
    finish
fi
cat > "$TMP/grid.ini" <<EOF
[run]
dir = $TMP/sw
iterations = 20
log_every = 10
[meta]
meta_batch = 10
[sweep]
meta.inner_lr = 0.005, 0.01, 0.02
ranks_per_run = 1
EOF
# sweep_rows CSV ITERATIONS: the number of rows with status done after ITERATIONS iterations.
sweep_rows() {
    awk -F, -v it="$2" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        $col["status"] == "done" && $col["iterations"] == it { n++ } END { print n + 0 }' "$1"
}
sbatch_wait -n 2 -o "$TMP/sweep.out" "$SLURM/sweep.sbatch" "$TMP/grid.ini" --progress none
expect_exit 0 "sbatch --wait -n 2 slurm/sweep.sbatch over 3 points, 1 rank per point"
check "  ... sweep.csv: a header and 3 rows" test "$(wc -l < "$TMP/sw/sweep.csv")" -eq 4
check "  ... all 3 done after 20 iterations" test "$(sweep_rows "$TMP/sw/sweep.csv" 20)" -eq 3
if [ "$status" -ne 0 ] || [ ! -f "$TMP/sw/sweep.csv" ]; then sed 's/^/     | /' "$TMP/sweep.out"; fi
for v in 0.005 0.01 0.02; do
    check "  ... point inner_lr=$v has its own run directory with a checkpoint" \
        test -f "$TMP/sw/inner_lr=$v/ckpt-00000020.h5"
done

echo "[${SECONDS} s]"
# Preempted: the whole sweep checkpoints, exits 75, is requeued and finishes exactly.
sed -e "s|^iterations = .*|iterations = $n|" -e "s|^meta_batch = .*|meta_batch = 1500\n[checkpoint]\nevery = 10|" \
    -e "s|^meta.inner_lr = .*|meta.inner_lr = 0.005, 0.01|" "$TMP/grid.ini" > "$TMP/long.ini"
run "${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/long.ini" --progress none --set run.dir="$TMP/sw_ref"
expect_exit 0 "uninterrupted 2-point sweep ($n iterations, meta-batch 1500) under mpirun"
jid=$(sbatch --parsable -n 2 -o "$TMP/sw_p.out" "$SLURM/sweep.sbatch" "$TMP/long.ini" --progress none \
    --set run.dir="$TMP/sw_p")
for _ in $(seq 1200); do [ -f "$TMP/sw_p/inner_lr=0.01/ckpt-00000010.h5" ] && break; sleep 0.05; done
scancel --signal=USR1 --batch "$jid"
wait_job "$jid" 150
check "sweep job $jid preempted by scancel --signal=USR1 --batch ended: COMPLETED (got $state)" test "$state" = COMPLETED
check "  ... exited 75 and requeued itself" grep -q "exit status 75: checkpointed; requeueing job $jid" "$TMP/sw_p.out"
check "  ... ran again (Restarts=1, got $(job_field "$jid" Restarts))" test "$(job_field "$jid" Restarts)" = 1
check "  ... sweep.csv: both points done after $n iterations" test "$(sweep_rows "$TMP/sw_p/sweep.csv" "$n")" -eq 2
for v in 0.005 0.01; do
    check "  ... point inner_lr=$v bit-identical to the uninterrupted sweep's" \
        same "$TMP/sw_ref/inner_lr=$v/$last" "$TMP/sw_p/inner_lr=$v/$last"
done
if [ "$state" != COMPLETED ]; then sed 's/^/     | /' "$TMP/sw_p.out"; fi

sed -e "s|^dir = .*|dir = $TMP/arr|" -e "s|^meta.inner_lr = .*|task.amp_max = 2, 5|" "$TMP/grid.ini" \
    > "$TMP/array.ini"
echo "[${SECONDS} s]"
# The array's size as sweep-array.sbatch says to find it.
run "$BIN" sweep --dry-run "$TMP/array.ini"
n=$(sed -n 's/^sweep: \([0-9]*\) points.*/\1/p' "$TMP/out")
check "metatrain sweep --dry-run: 2 points (got '$n')" test "$n" = 2
sbatch_wait --array=0-$((${n:-2} - 1)) -n 1 -o "$TMP/array-%a.out" "$SLURM/sweep-array.sbatch" "$TMP/array.ini" --progress none
expect_exit 0 "sbatch --wait --array=0-1 slurm/sweep-array.sbatch"
check "  ... sweep.csv: a header and 2 rows" test "$(wc -l < "$TMP/arr/sweep.csv")" -eq 3
check "  ... both done after 20 iterations" test "$(sweep_rows "$TMP/arr/sweep.csv" 20)" -eq 2
check "  ... task 0 trained amp_max=2, task 1 amp_max=5" \
    bash -c "grep -q amp_max=2 '$TMP/array-0.out' && grep -q amp_max=5 '$TMP/array-1.out'"
if [ "$status" -ne 0 ]; then sed 's/^/     | /' "$TMP"/array-*.out; fi

echo "[${SECONDS} s]"
finish
