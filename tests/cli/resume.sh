#!/usr/bin/env bash
# resume.sh — a run continues exactly from a checkpoint: 40 uninterrupted iterations equal
# 20 + a resume on another rank count + 20 (θ and Adam's moments, bit for bit); checkpoints
# written by N ranks resume on M ranks for N, M in 1..4 (P = 1761 divides by none of 2..4);
# a job killed with SIGKILL resumes from its last checkpoint and ends bit-identical; damaged
# checkpoints are detected, skipped by --resume auto and refused when named.
#
# usage: resume.sh METATRAIN MPIEXEC CKPT_DIFF FAULTSHIM H5SETATTR   (run by ctest; prints ok/FAIL per check)
set -u
BIN=$1
MPIEXEC=$2
DIFF=$3
SHIM=$4
SETATTR=$5
source "$(dirname "$0")/lib.sh"

same() { "$DIFF" "$1" "$2" --tol 0 >"$TMP/diff" 2>&1; }

# --- 40 == 20 + resume on another rank count + 20 -------------------------------------------
train "$TMP/full" 2 40 --set checkpoint.every=20
expect_exit 0 "40 uninterrupted iterations on 2 ranks"
train "$TMP/split" 2 20
expect_exit 0 "20 iterations on 2 ranks"
train "$TMP/split" 3 40
expect_exit 0 "resume (auto) on 3 ranks to 40"
check "  ... says it resumed from iteration 20" grep -q "resuming from .*ckpt-00000020.h5 (iteration 20, written by 2 ranks)" "$TMP/out"
check "resumed = uninterrupted: theta and both Adam moments bit-identical" \
    same "$TMP/full/ckpt-00000040.h5" "$TMP/split/ckpt-00000040.h5"
check "metrics.jsonl of the resumed run has iterations 5..40 once each" \
    test "$(grep -o '"iteration": [0-9]*' "$TMP/split/metrics.jsonl" | tr -dc '0-9\n' | tr '\n' ' ')" = \
    "5 10 15 20 25 30 35 40 "
check "the resumed run's losses in metrics.jsonl equal the uninterrupted run's" \
    cmp -s <(cut -d, -f1-3 "$TMP/full/metrics.jsonl") <(cut -d, -f1-3 "$TMP/split/metrics.jsonl")
train "$TMP/split" 2 40
expect_exit 0 "resuming a finished run"
check "  ... says it is already complete" grep -q "already complete" "$TMP/out"

# --- written by N ranks, resumed on M ----------------------------------------------------------
train "$TMP/ref11" 1 11
expect_exit 0 "11 uninterrupted iterations on 1 rank"
for n in 1 2 3 4; do
    train "$TMP/w$n" "$n" 10
    expect_exit 0 "10 iterations on $n rank(s)"
    for m in 1 2 3 4; do
        rm -rf "$TMP/r"
        cp -r "$TMP/w$n" "$TMP/r"
        train "$TMP/r" "$m" 11
        check "written by $n, resumed on $m: bit-identical after one more iteration" \
            same "$TMP/ref11/ckpt-00000011.h5" "$TMP/r/ckpt-00000011.h5"
    done
done

# --- a crash: one rank killed, the job resumes from the last checkpoint ----------------------
slow=(--set meta.meta_batch=1500 --set checkpoint.every=10 --set checkpoint.keep=10)
train "$TMP/nocrash" 2 60 "${slow[@]}"
expect_exit 0 "60 uninterrupted iterations (meta-batch 1500)"
"${MPIRUN[@]}" -np 2 "$BIN" train --progress none --set run.dir="$TMP/crash" --set run.iterations=60 "${slow[@]}" \
    >"$TMP/crash.out" 2>&1 &
job=$!
for _ in $(seq 600); do [ -f "$TMP/crash/ckpt-00000020.h5" ] && break; sleep 0.05; done
victim=$(pgrep -f "run.dir=$TMP/crash" -n -x metatrain || pgrep -n -f "metatrain train --progress none --set run.dir=$TMP/crash")
kill -KILL "$victim" 2>/dev/null
wait "$job"
crash_status=$?
check "the killed job ended with an error (status $crash_status)" test "$crash_status" -ne 0
check "it was killed before the end" test ! -f "$TMP/crash/ckpt-00000060.h5"
check "no .partial file became a checkpoint" bash -c "for f in '$TMP'/crash/ckpt-*.h5; do '$DIFF' \"\$f\" \"\$f\" >/dev/null || exit 1; done"
train "$TMP/crash" 2 60 "${slow[@]}"
expect_exit 0 "resume the crashed run"
check "crashed + resumed = uninterrupted, bit for bit" same "$TMP/nocrash/ckpt-00000060.h5" "$TMP/crash/ckpt-00000060.h5"

# --- a rank dies in the middle of writing a checkpoint ----------------------------------------
# (the fault shim kills rank 1 at its first write into ckpt-00000020.h5.partial)
run "${MPIRUN[@]}" -np 2 -x LD_PRELOAD="$SHIM" -x ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0 -x MT_FAULT_PATH=ckpt-00000020 -x MT_FAULT_OP=write -x MT_FAULT_N=1 \
    -x MT_FAULT_ERRNO=die -x MT_FAULT_RANK=1 "$BIN" train --progress none --set run.dir="$TMP/midwrite" \
    --set run.iterations=30 --set run.log_every=5 --set checkpoint.every=10
check "a rank dying inside the checkpoint of iteration 20 fails the job (status $status)" test "$status" -ne 0
check "  ... the half-written file never became ckpt-00000020.h5" test ! -e "$TMP/midwrite/ckpt-00000020.h5"
check "  ... the previous checkpoint is intact" same "$TMP/midwrite/ckpt-00000010.h5" "$TMP/midwrite/ckpt-00000010.h5"
train "$TMP/midwrite" 2 30 --set checkpoint.every=10
expect_exit 0 "resume after the failed write"
check "  ... from iteration 10" grep -q "resuming from .*ckpt-00000010.h5" "$TMP/out"
train "$TMP/midwrite_ref" 2 30 --set checkpoint.every=10
check "  ... and ends bit-identical to a run without the failure" \
    same "$TMP/midwrite_ref/ckpt-00000030.h5" "$TMP/midwrite/ckpt-00000030.h5"

# --- signals: checkpoint now, exit 75, resume exactly ------------------------------------------
signal_run() { # DIR, then the signal and whom to send it to: "USR1 mpirun" or "TERM rank"
    "${MPIRUN[@]}" -np 2 "$BIN" train --progress none --set run.dir="$1" --set run.iterations=60 "${slow[@]}" \
        >"$TMP/sig.out" 2>&1 &
    local job=$! target
    for _ in $(seq 600); do [ -f "$1/ckpt-00000010.h5" ] && break; sleep 0.05; done
    if [ "$3" = mpirun ]; then target=$job; else target=$(pgrep -n -f "run.dir=$1 " -x metatrain || pgrep -n -f "metatrain train --progress none --set run.dir=$1 "); fi
    kill -"$2" "$target"
    wait "$job"
    status=$?
}
signal_run "$TMP/usr1" USR1 mpirun
check "SIGUSR1 to mpirun: exit status 75 (got $status)" test "$status" -eq 75
check "  ... says where it stopped" grep -q "stopped by SIGUSR1 at iteration [0-9]*: checkpoint" "$TMP/sig.out"
check "  ... before the end" test ! -f "$TMP/usr1/ckpt-00000060.h5"
train "$TMP/usr1" 3 60 "${slow[@]}"
expect_exit 0 "resume after SIGUSR1 on 3 ranks"
check "stopped by SIGUSR1 + resumed = uninterrupted, bit for bit" same "$TMP/nocrash/ckpt-00000060.h5" "$TMP/usr1/ckpt-00000060.h5"
signal_run "$TMP/term" TERM rank
check "SIGTERM to one rank: all ranks stop together with status 75 (got $status)" test "$status" -eq 75
check "  ... and a checkpoint" grep -q "stopped by SIGTERM at iteration [0-9]*: checkpoint" "$TMP/sig.out"

# --- damaged checkpoints --------------------------------------------------------------------
train "$TMP/dmg" 2 30 --set checkpoint.every=10
expect_exit 0 "30 iterations with checkpoints at 10, 20, 30"
truncate -s 3000 "$TMP/dmg/ckpt-00000030.h5"
train "$TMP/dmg" 2 40
expect_exit 0 "--resume auto with the newest checkpoint truncated"
check "  ... names the damaged file" grep -q "skipping .*ckpt-00000030.h5" "$TMP/err"
check "  ... falls back to iteration 20" grep -q "resuming from .*ckpt-00000020.h5" "$TMP/out"
cp "$TMP/dmg/ckpt-00000020.h5" "$TMP/flip.h5"
cp "$TMP/dmg/ckpt-00000020.h5" "$TMP/step20.h5"
# One bit of θ's stored bytes, in the middle of /params (its file offset from h5dump -p).
offset=$(h5dump -p -H -d /params "$TMP/flip.h5" | sed -n 's/^ *OFFSET \([0-9]*\).*/\1/p' | head -n 1)
byte=$(od -An -tu1 -j $((offset + 3000)) -N1 "$TMP/flip.h5" | tr -d ' ')
printf "\\$(printf %03o $((byte ^ 4)))" | dd of="$TMP/flip.h5" bs=1 seek=$((offset + 3000)) conv=notrunc status=none
check "one bit of /params was flipped" bash -c "! cmp -s '$TMP/flip.h5' '$TMP/dmg/ckpt-00000020.h5'"
run "$DIFF" "$TMP/flip.h5" "$TMP/flip.h5"
check "a flipped byte is detected on read (ckpt_diff status 2, got $status)" test "$status" -eq 2
run "$BIN" inspect "$TMP/flip.h5"
expect_exit 2 "inspect of the bit-flipped file"
check "  ... reports the failed checksum" grep -q "fails its checksum" "$TMP/err"
run "${MPIRUN[@]}" -np 2 "$BIN" inspect "$TMP/dmg/ckpt-00000020.h5" --json
expect_exit 0 "inspect --json of a good checkpoint on 2 ranks"
check "  ... one line with step, world size, optimizer state and checksum status" \
    grep -q '"step": 20, "seed": 1, "world_size": 2, .*"optimizer_state": true, "checksums": "ok"' "$TMP/out"
check "  ... lists the layout" grep -q '"name": "fc2.weight", "kind": "linear", "offset": 80, "shape": \[40, 40\]' "$TMP/out"
run "$BIN" inspect "$TMP/dmg/ckpt-00000020.h5"
check "inspect prints the config it was trained with" grep -q "^iterations = 30" "$TMP/out"
check "inspect names where the tasks came from" grep -q "tasks from: sinusoid generator" "$TMP/out"
train "$TMP/dmg2" 2 40 --resume "$TMP/flip.h5"
expect_exit 2 "--resume PATH to a damaged file"
check "  ... says why" grep -q "cannot resume: .*flip.h5" "$TMP/err"
train "$TMP/dmg3" 2 40 --resume "$TMP/none.h5"
expect_exit 2 "--resume PATH to a missing file"
train "$TMP/dmg" 2 40 --set run.seed=9
expect_exit 2 "--resume auto with another seed skips the checkpoints that do not fit, and refuses to start over"
check "  ... and says why" grep -q "run.seed" "$TMP/err"
check "  ... names the earlier run's files and --overwrite" \
    grep -q "holds files of an earlier run .*ckpt-00000020.h5.*metrics.jsonl.*--overwrite" "$TMP/err"
check "  ... and deleted nothing" test -f "$TMP/dmg/ckpt-00000020.h5" -a -f "$TMP/dmg/ckpt-00000040.h5"
train "$TMP/dmg" 1 41 --resume never
expect_exit 2 "--resume never in a run.dir with checkpoints is refused"
train "$TMP/dmg" 1 41 --resume never --overwrite
expect_exit 0 "--resume never --overwrite starts over"
check "  ... without resuming" bash -c "! grep -q resuming '$TMP/out'"
check "  ... and only its own final checkpoint is left" test "$(cd "$TMP/dmg" && ls ckpt-*.h5)" = ckpt-00000041.h5

# --- a checkpoint whose step attribute is -5 --------------------------------------------------
# The attribute's 8 value bytes follow its name ("step", padded to 8), type (16) and space (8).
mkdir -p "$TMP/neg"
cp "$TMP/step20.h5" "$TMP/neg/ckpt-00000020.h5"
cp "$TMP/step20.h5" "$TMP/neg/ckpt-00000025.h5"
"$SETATTR" "$TMP/neg/ckpt-00000025.h5" step -5
check "the step attribute of the copy now reads -5" bash -c "h5dump -a step '$TMP/neg/ckpt-00000025.h5' | grep -q '(0): -5$'"
run "$BIN" inspect "$TMP/neg/ckpt-00000025.h5"
expect_exit 2 "inspect of a checkpoint with step -5"
check "  ... names the file and the attribute" grep -q "ckpt-00000025.h5 .*attribute step is -5" "$TMP/err"
train "$TMP/neg2" 1 40 --set checkpoint.every=10 --resume "$TMP/neg/ckpt-00000025.h5"
expect_exit 2 "--resume PATH to a checkpoint with step -5 (not an assertion)"
check "  ... names the file and the attribute" grep -q "cannot resume: .*ckpt-00000025.h5 .*attribute step is -5" "$TMP/err"
train "$TMP/neg" 1 40 --set checkpoint.every=10
expect_exit 0 "--resume auto with a newest checkpoint of step -5"
check "  ... skips it with a warning naming the file and the attribute" \
    grep -q "warning: skipping .*ckpt-00000025.h5 .*attribute step is -5" "$TMP/err"
check "  ... and resumes from iteration 20" grep -q "resuming from .*ckpt-00000020.h5 (iteration 20" "$TMP/out"
run "$BIN" inspect "$TMP/step20.h5"
check "inspect of a good file reports its metadata checksum" grep -q "^  metadata checksum: ok$" "$TMP/out"
check "  ... and its input shape" grep -q "^  input shape: 1x1x1 (CxHxW)$" "$TMP/out"
run "$BIN" inspect "$TMP"
expect_exit 2 "inspect of a directory"
check "  ... says it is a directory" grep -q "is a directory, not a checkpoint file" "$TMP/err"

finish
