#!/usr/bin/env bash
# fault_matrix.sh — every I/O call of a checkpoint, made to fail: a 2-rank run writes
# checkpoints at iterations 10, 20 and 30, and the fault shim (tests/fault/faultshim.c) fails
# the n-th write, fsync, rename, open or close that touches ckpt-00000020.h5 (or its .partial)
# on rank 0 or rank 1 — with ENOSPC, EIO, or by killing the rank there — for every n that the
# checkpoint makes. After each:
#   - the job ended within the time limit (no hang), with status 1 and a message naming the
#     errno (ENOSPC, EIO), or with a non-zero status (a killed rank), or with status 0 and a
#     correct result when the fault hit a call that does not matter (reading the finished file);
#   - every ckpt-*.h5 left is complete and passes its checksums; ckpt-00000010.h5 is intact;
#   - no .partial file survives the next start, and resuming gives the final θ and Adam moments
#     of an uninterrupted run, bit for bit.
# Prints one line per case and the matrix (calls × fault kinds) with its outcomes.
#
# usage: fault_matrix.sh METATRAIN MPIEXEC CKPT_DIFF FAULTSHIM [KINDS]   (run by ctest)
#   KINDS: the fault kinds to run (default "ENOSPC EIO die")
set -u
BIN=$1
MPIEXEC=$2
DIFF=$3
SHIM=$4
KINDS=${5:-ENOSPC EIO die}
source "$(dirname "$0")/lib.sh"
RUN_TIMEOUT=60
PRELOAD=(-x LD_PRELOAD="$SHIM" -x ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0)
TARGET=ckpt-00000020

train() { # DIR [mpirun args...] -- [train args...]
    local dir=$1
    shift
    local pre=()
    while [ "$1" != -- ]; do pre+=("$1"); shift; done
    shift
    run "${MPIRUN[@]}" -np 2 "${pre[@]}" "$BIN" train --progress none --set run.dir="$dir" --set run.iterations=30 \
        --set run.log_every=5 --set checkpoint.every=10 --set checkpoint.keep=5 "$@"
}

# The reference, and how many calls of each kind each rank makes for the checkpoint of 20.
train "$TMP/ref" "${PRELOAD[@]}" -x MT_FAULT_LOG="$TMP/calls" -x MT_FAULT_PATH=$TARGET --
expect_exit 0 "the uninterrupted reference run (counting the checkpoint's I/O calls)"
count() { awk -v r="$1" -v op="$2" '$1 == r && $2 == op { print $3 }' "$TMP/calls"; }

declare -A outcome
cases=0
for kind in $KINDS; do
    for rank in 0 1; do
        for op in write fsync rename open close; do
            n_calls=$(count "$rank" "$op")
            for n in $(seq 1 "${n_calls:-0}"); do
                dir="$TMP/case"
                rm -rf "$dir"
                train "$dir" "${PRELOAD[@]}" -x MT_FAULT_PATH=$TARGET -x MT_FAULT_OP="$op" -x MT_FAULT_N="$n" \
                    -x MT_FAULT_RANK="$rank" -x MT_FAULT_ERRNO="$kind" --
                label="$kind on rank $rank, $op #$n of $n_calls"
                fault_status=$status
                cp "$TMP/err" "$TMP/fault.err"
                cases=$((cases + 1))
                ok=1
                why=""
                if [ "$fault_status" -eq 124 ] || [ "$fault_status" -eq 137 ]; then
                    ok=0 why="hung (killed after ${RUN_TIMEOUT} s)"
                elif ! grep -q "faultshim: rank $rank: $op #$n" "$TMP/fault.err"; then
                    ok=0 why="the fault did not fire"
                elif [ "$fault_status" -eq 0 ]; then
                    same=$("$DIFF" "$TMP/ref/ckpt-00000030.h5" "$dir/ckpt-00000030.h5" --tol 0 >/dev/null 2>&1 && echo y)
                    [ "$same" = y ] || ok=0 why="status 0 but the result differs"
                elif [ "$kind" != die ]; then
                    want=$([ "$kind" = EIO ] && echo "Input/output error" || echo "No space left on device")
                    [ "$fault_status" -eq 1 ] || ok=0 why="status $fault_status, expected 1"
                    grep -q "$want" "$TMP/fault.err" || ok=0 why="$why; the message does not say '$want'"
                    grep -q "Segmentation\|Aborted\|core dumped" "$TMP/fault.err" && ok=0 why="$why; crashed"
                fi
                for f in "$dir"/ckpt-*.h5; do
                    [ -e "$f" ] || continue
                    "$DIFF" "$f" "$f" >/dev/null 2>&1 || { ok=0; why="$why; $(basename "$f") is damaged"; }
                done
                if [ "$fault_status" -ne 0 ]; then
                    "$DIFF" "$TMP/ref/ckpt-00000010.h5" "$dir/ckpt-00000010.h5" --tol 0 >/dev/null 2>&1 ||
                        { ok=0; why="$why; ckpt-00000010.h5 is not intact"; }
                    train "$dir" --
                    if [ "$status" -ne 0 ]; then
                        ok=0 why="$why; resuming failed with status $status"
                    elif ! "$DIFF" "$TMP/ref/ckpt-00000030.h5" "$dir/ckpt-00000030.h5" --tol 0 >/dev/null 2>&1; then
                        ok=0 why="$why; the resumed result differs"
                    fi
                    [ -z "$(find "$dir" -name '*.partial')" ] || { ok=0; why="$why; a .partial file survived"; }
                fi
                key="$rank $op $kind"
                if [ "$ok" -eq 1 ]; then
                    outcome[$key]="${outcome[$key]:-}$([ "$fault_status" -eq 0 ] && echo "0" || echo "+")"
                else
                    outcome[$key]="${outcome[$key]:-}X"
                    sed 's/^/     | /' "$TMP/fault.err" | head -n 20
                fi
                check "$label: status $fault_status${why:+ —$why}" test "$ok" -eq 1
            done
        done
    done
done

# The matrix: one character per call n = 1, 2, ...: "+" failed cleanly and resumed exactly,
# "0" the fault did not matter (status 0, same result), "X" a violation.
echo
echo "fault matrix ($cases cases): rank op calls: $KINDS"
for rank in 0 1; do
    for op in write fsync rename open close; do
        line="  rank $rank $(printf '%-6s' "$op") $(printf '%3s' "$(count "$rank" "$op")") calls:"
        for kind in $KINDS; do line="$line  $kind ${outcome["$rank $op $kind"]:--}"; done
        echo "$line"
    done
done
# --- a real full disk (root: a 1 MiB tmpfs) -----------------------------------------------------
# The checkpoint of iteration 10 fits, the one of 20 does not: every rank must exit 1 within
# seconds naming the errno, ckpt-00000010.h5 must stay intact and no .partial may be left.
FULL="$TMP/full"
mkdir -p "$FULL"
if [ "$(id -u)" -ne 0 ]; then
    echo "skipped: the full-disk case needs root to mount a tmpfs"
elif ! mount -t tmpfs -o size=1m tmpfs "$FULL" 2>"$TMP/mount.err"; then
    echo "skipped: the full-disk case cannot mount a tmpfs: $(cat "$TMP/mount.err")"
else
    big=(--set model.hidden=200 --set checkpoint.every=10)  # 40,801 parameters: 490 kB per checkpoint
    run "${MPIRUN[@]}" -np 2 "$BIN" train --progress none --set run.dir="$TMP/fullref" --set run.iterations=20 "${big[@]}"
    expect_exit 0 "reference: 20 iterations with a 490 kB checkpoint at 10 and 20"
    run "${MPIRUN[@]}" -np 2 "$BIN" train --progress none --set run.dir="$FULL/run" --set run.iterations=10 "${big[@]}"
    expect_exit 0 "10 iterations on the 1 MiB file system"
    avail=$(df -k --output=avail "$FULL" | tail -n 1)
    dd if=/dev/zero of="$FULL/fill" bs=1k count=$((avail - 70)) status=none 2>/dev/null
    echo "     free on the file system: $(df -k --output=avail "$FULL" | tail -n 1) kB"
    RUN_TIMEOUT=30 run "${MPIRUN[@]}" -np 2 "$BIN" train --progress none --set run.dir="$FULL/run" \
        --set run.iterations=20 "${big[@]}"
    expect_exit 1 "the checkpoint of 20 does not fit: exit 1, no hang"
    check "  ... the message names the errno" grep -q "No space left on device" "$TMP/err"
    check "  ... no crash" bash -c "! grep -q 'Segmentation\|Aborted\|core dumped' '$TMP/err'"
    check "  ... the checkpoint of 10 is intact" "$DIFF" "$FULL/run/ckpt-00000010.h5" "$FULL/run/ckpt-00000010.h5"
    check "  ... no .partial is left" test -z "$(find "$FULL" -name '*.partial')"
    rm -f "$FULL/fill"
    run "${MPIRUN[@]}" -np 2 "$BIN" train --progress none --set run.dir="$FULL/run" --set run.iterations=20 "${big[@]}"
    expect_exit 0 "with space again, the same command resumes"
    check "  ... and ends bit-identical to the reference" \
        "$DIFF" "$TMP/fullref/ckpt-00000020.h5" "$FULL/run/ckpt-00000020.h5" --tol 0
    umount "$FULL"
fi

finish
