#!/usr/bin/env bash
# ownership.sh — a run never loses or damages its own files or another run's: the run lock,
# pruning of the run's own checkpoints only, no fresh start over an earlier run's files, stale
# partial files, nothing non-finite applied or written, a changed configuration refused on
# resume, signals during start-up, and the exit status the Slurm script sees for every signal.
#
# usage: ownership.sh METATRAIN MPIEXEC CKPT_DIFF FAULTSHIM SBATCH   (run by ctest)
set -u
BIN=$1
MPIEXEC=$2
DIFF=$3
SHIM=$4
SBATCH=$5
source "$(dirname "$0")/lib.sh"
PRELOAD=(-x LD_PRELOAD="$SHIM" -x ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0)

ckpts() { (cd "$1" && ls ckpt-*.h5 2>/dev/null | tr '\n' ' '); }

# --- the run lock -----------------------------------------------------------------------------
slow=(--set meta.meta_batch=1500 --set checkpoint.every=10)
"${MPIRUN[@]}" -np 2 "$BIN" train --progress none --set run.dir="$TMP/locked" --set run.iterations=100000 \
    "${slow[@]}" >"$TMP/holder.out" 2>&1 &
holder=$!
for _ in $(seq 600); do [ -f "$TMP/locked/ckpt-00000010.h5" ] && break; sleep 0.05; done
train "$TMP/locked" 1 100000 "${slow[@]}"
expect_exit 2 "a second job on a run.dir in use"
check "  ... stops at once naming the holder (host and pid)" \
    grep -q "run directory $TMP/locked is in use by another job (host $(hostname) pid [0-9]*" "$TMP/err"
check "  ... while the holder goes on" kill -0 "$holder"
kill -KILL "$holder" 2>/dev/null
pkill -KILL -f "run.dir=$TMP/locked" 2>/dev/null
wait "$holder" 2>/dev/null
last=$(cd "$TMP/locked" && ls ckpt-*.h5 | tail -n 1 | tr -dc '0-9' | sed 's/^0*//')
train "$TMP/locked" 2 $((last + 5)) "${slow[@]}"
expect_exit 0 "the lock of a killed job does not block the next one"
check "  ... which resumes the killed job's run" grep -q "resuming from" "$TMP/out"

# --- stale partial files of a killed job are removed at start ---------------------------------
train "$TMP/stale" 1 10
touch "$TMP/stale/ckpt-00000005.h5.partial" "$TMP/stale/metrics.jsonl.partial" "$TMP/stale/keep.partial"
train "$TMP/stale" 1 20
expect_exit 0 "a run.dir with stale partial files"
check "  ... they are removed and named" grep -q "removed .*ckpt-00000005.h5.partial" "$TMP/out"
check "  ... but not files metatrain never writes" test -f "$TMP/stale/keep.partial"
check "  ... and none is left" test ! -e "$TMP/stale/ckpt-00000005.h5.partial" -a ! -e "$TMP/stale/metrics.jsonl.partial"

# --- pruning touches only the run's own checkpoints -------------------------------------------
train "$TMP/own" 1 40 --set checkpoint.every=10 --set checkpoint.keep=2
expect_exit 0 "run A: 40 iterations, keep 2"
check "  ... keeps its newest 2" test "$(ckpts "$TMP/own")" = "ckpt-00000030.h5 ckpt-00000040.h5 "
lines_before=$(wc -l <"$TMP/own/metrics.jsonl")
# Run B with another seed in the same directory (A's checkpoints do not fit it): refused.
train "$TMP/own" 1 20 --set run.seed=7 --set checkpoint.every=5 --set checkpoint.keep=2
expect_exit 2 "run B (another seed) in run A's directory"
check "  ... A's checkpoints are untouched" test "$(ckpts "$TMP/own")" = "ckpt-00000030.h5 ckpt-00000040.h5 "
check "  ... A's metrics.jsonl is not truncated" test "$(wc -l <"$TMP/own/metrics.jsonl")" -eq "$lines_before"
train "$TMP/own" 1 20 --resume never --set checkpoint.every=5 --set checkpoint.keep=2
expect_exit 2 "--resume never in run A's directory"
check "  ... A's checkpoints are untouched" test "$(ckpts "$TMP/own")" = "ckpt-00000030.h5 ckpt-00000040.h5 "
# A foreign run's higher-step checkpoints next to a resumed run: never pruned by it.
train "$TMP/mix" 1 10 --set checkpoint.keep=2
cp "$TMP/own/ckpt-00000030.h5" "$TMP/own/ckpt-00000040.h5" "$TMP/mix/"
train "$TMP/mix" 1 40 --resume "$TMP/mix/ckpt-00000010.h5" --set checkpoint.every=5 --set checkpoint.keep=2
expect_exit 2 "a resumed run whose checkpoints would replace another run's"
check "  ... names the file" grep -q "holds $TMP/mix/ckpt-00000040.h5 of another run" "$TMP/err"
train "$TMP/mix" 1 25 --resume "$TMP/mix/ckpt-00000010.h5" --set checkpoint.every=5 --set checkpoint.keep=2
expect_exit 0 "a resumed run next to another run's higher-step checkpoints"
check "  ... kept its newest 2 (its 10 and 15 pruned) and never touched the other run's 30 and 40" \
    test "$(ckpts "$TMP/mix")" = "ckpt-00000020.h5 ckpt-00000025.h5 ckpt-00000030.h5 ckpt-00000040.h5 "
"$DIFF" "$TMP/own/ckpt-00000040.h5" "$TMP/mix/ckpt-00000040.h5" --tol 0 >/dev/null 2>&1
check "  ... which are still run A's files" test $? -eq 0
train "$TMP/mix" 1 40 --resume never --overwrite
expect_exit 0 "--overwrite deletes the earlier files and starts over"
check "  ... only the new run's checkpoint is left" test "$(ckpts "$TMP/mix")" = "ckpt-00000040.h5 "
# The same command restarted before its first checkpoint (a crash) may start over.
train "$TMP/restart" 1 20
rm "$TMP/restart"/ckpt-*.h5
train "$TMP/restart" 1 20
expect_exit 0 "the same run restarted before its first checkpoint starts over without --overwrite"

# --- a changed configuration is refused on resume ---------------------------------------------
train "$TMP/cfg" 1 10
train "$TMP/cfg" 1 20 --set meta.inner_lr=0.02
expect_exit 2 "resuming with another meta.inner_lr"
check "  ... names the key and both values" grep -q "meta.inner_lr: 0.00999999978 -> 0.0199999996" "$TMP/err"
train "$TMP/cfg" 1 20 --set checkpoint.keep=5 --set run.log_every=2
expect_exit 0 "resuming with other iterations, checkpoint.keep and run.log_every"
train "$TMP/cfg" 1 30 --set meta.inner_lr=0.02 --resume-force
expect_exit 0 "--resume-force accepts the change"
check "  ... and says so" grep -q "resume-force: continuing .*meta.inner_lr" "$TMP/out"

# --- divergence: stop at the first non-finite gradient, write nothing non-finite --------------
train "$TMP/nan" 2 50 --set meta.inner_lr=1000000 --set optim.lr=1000 --set checkpoint.every=1 --set checkpoint.keep=100
expect_exit 1 "a run that diverges"
check "  ... names the iteration" grep -q "training diverged at iteration [0-9]*: a meta-gradient" "$TMP/err"
bad=0
for f in "$TMP"/nan/ckpt-*.h5; do
    [ -e "$f" ] || continue
    "$DIFF" "$f" "$f" >/dev/null 2>&1 || bad=1
    h5dump -d /params "$f" | grep -qiE "nan|inf" && bad=1
done
check "  ... every checkpoint it wrote is readable and finite" test "$bad" -eq 0

# --- signals during start-up: checkpoint-and-exit status, not death ---------------------------
# The shim holds rank 0 for 3 s in the open of the checkpoint it resumes from; USR1 arrives
# meanwhile.
train "$TMP/early" 2 10
"${MPIRUN[@]}" -np 2 "${PRELOAD[@]}" -x MT_FAULT_PATH=ckpt-00000010.h5 -x MT_FAULT_OP=open -x MT_FAULT_N=1 \
    -x MT_FAULT_ERRNO=delay:3000 "$BIN" train --progress none --set run.dir="$TMP/early" \
    --set run.iterations=100000 --set run.log_every=5 >"$TMP/early.out" 2>&1 &
job=$!
for _ in $(seq 200); do grep -q "faultshim: rank 0: open" "$TMP/early.out" 2>/dev/null && break; sleep 0.05; done
sleep 0.5
kill -USR1 "$job"
wait "$job"
status=$?
check "SIGUSR1 while resuming: exit status 75 (got $status)" test "$status" -eq 75
check "  ... says it stopped before training" grep -q "stopped by SIGUSR1 before training started" "$TMP/early.out"
check "  ... and the run continues from where it was" test -f "$TMP/early/ckpt-00000010.h5"

# --- the Slurm script reports 75 for every signal Slurm sends ---------------------------------
for sig in TERM INT HUP USR1; do
    dir="$TMP/sb_$sig"
    (cd "$TMP" && OMPI_MCA_odls_base_sigkill_timeout=5 METATRAIN="$BIN" setsid bash "$SBATCH" --progress none \
        --set run.dir="$dir" --set run.iterations=100000 "${slow[@]}" >"$TMP/sb.out" 2>&1) &
    job=$!
    for _ in $(seq 600); do [ -f "$dir/ckpt-00000010.h5" ] && break; sleep 0.05; done
    pgid=$(ps -o pgid= -p "$(pgrep -f "bash $SBATCH" -n)" | tr -d ' ')
    if [ "$sig" = USR1 ]; then kill -USR1 "$(pgrep -f "bash $SBATCH" -n)"; else kill -"$sig" -- "-$pgid"; fi
    wait "$job"
    status=$?
    check "slurm/train.sbatch, SIG$sig to the whole job (as Slurm sends it): exit status 75 (got $status)" \
        test "$status" -eq 75
    check "  ... after a checkpoint" grep -q "stopped by SIG[A-Z0-9]* at iteration [0-9]*: checkpoint" "$TMP/sb.out"
    check "  ... and it leaves no status file behind" test -z "$(ls -A "$TMP" | grep metatrain-status)"
done

finish
