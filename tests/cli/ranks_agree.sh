#!/usr/bin/env bash
# ranks_agree.sh — the trained θ does not depend on how many ranks share the meta-batch:
# 30 iterations with 1, 2, 3 and 4 ranks (same config and seed) must give bit-identical
# parameters with the default dist.reduce = exact (fixed-point sums), and agree to float
# rounding with dist.reduce = fast (a float allreduce, whose bits change with the rank
# count); two runs with the same rank count must be bit-identical, and a different seed
# must give clearly different parameters — so the comparison tool is shown to fail when it
# should. ckpt_diff's own exit statuses (0 same, 1 different, 2 unreadable) are
# checked too.
#
# usage: ranks_agree.sh METATRAIN MPIEXEC CKPT_DIFF   (run by ctest; prints ok/FAIL per check)
set -u
BIN=$1
MPIEXEC=$2
DIFF=${3:-${MT_CKPT_DIFF:-}}
RUN_TIMEOUT=120
source "$(dirname "$0")/lib.sh"
# ckpt_diff WANT LABEL ARGS...: runs the comparison tool and expects status WANT.
ckpt_diff() {
    local want=$1 label=$2
    shift 2
    run "$DIFF" "$@"
    echo "     $(cat "$TMP/out" "$TMP/err" | head -n 1)"
    expect_exit "$want" "$label"
}

if [ -z "$DIFF" ] || [ ! -x "$DIFF" ]; then
    echo "FAIL ckpt_diff tool not given or not executable: '$DIFF'"
    exit 1
fi

# train NAME NP [--set ...]: 30 iterations with NP ranks into $TMP/NAME.
train() {
    local name=$1 np=$2
    shift 2
    run "${MPIRUN[@]}" -np "$np" "$BIN" train --set "run.dir=$TMP/$name" --set run.iterations=30 \
        --set run.log_every=10 --progress none "$@"
    expect_exit 0 "train 30 iterations with $np rank(s) into $name${*:+ ($*)}"
    check "  ... wrote $name/ckpt-00000030.h5" test -f "$TMP/$name/ckpt-00000030.h5"
}
train np1 1
train np2 2
train np3 3
train np4 4
train np2_again 2
train np2_seed2 2 --set run.seed=2
train fast1 1 --set dist.reduce=fast
train fast3 3 --set dist.reduce=fast

C1=$TMP/np1/ckpt-00000030.h5
C2=$TMP/np2/ckpt-00000030.h5
C3=$TMP/np3/ckpt-00000030.h5
ckpt_diff 0 "exact: 1 vs 2 ranks are bit-identical" "$C1" "$C2" --tol 0
ckpt_diff 0 "exact: 1 vs 3 ranks are bit-identical" "$C1" "$C3" --tol 0
ckpt_diff 0 "exact: 1 vs 4 ranks are bit-identical" "$C1" "$TMP/np4/ckpt-00000030.h5" --tol 0
ckpt_diff 0 "fast: 1 vs 3 ranks agree to 1e-5 (normwise relative)" "$TMP/fast1/ckpt-00000030.h5" \
    "$TMP/fast3/ckpt-00000030.h5" --tol 1e-5
ckpt_diff 0 "fast and exact agree to 1e-5" "$TMP/fast1/ckpt-00000030.h5" "$C1" --tol 1e-5
ckpt_diff 0 "two runs with 2 ranks are bit-identical" "$C2" "$TMP/np2_again/ckpt-00000030.h5"
ckpt_diff 0 "two runs with 2 ranks are bit-identical (explicit --tol 0)" "$C2" "$TMP/np2_again/ckpt-00000030.h5" --tol 0
ckpt_diff 0 "a checkpoint equals itself" "$C3" "$C3"

# The comparison has teeth: another seed, another θ.
ckpt_diff 1 "seed 2 differs from seed 1 at --tol 1e-5" "$C2" "$TMP/np2_seed2/ckpt-00000030.h5" --tol 1e-5
ckpt_diff 1 "seed 2 differs from seed 1 even at --tol 0.1" "$C2" "$TMP/np2_seed2/ckpt-00000030.h5" --tol 0.1
ckpt_diff 1 "seed 2 differs from seed 1 bitwise" "$C2" "$TMP/np2_seed2/ckpt-00000030.h5"
# One more iteration of training is visible at the tolerance used above.
run "$BIN" train --set "run.dir=$TMP/np1_29" --set run.iterations=29 --progress none
expect_exit 0 "train 29 iterations with 1 rank"
ckpt_diff 1 "29 iterations differ from 30 at --tol 1e-5" "$C1" "$TMP/np1_29/ckpt-00000029.h5" --tol 1e-5

# A checkpoint of another model size is not comparable.
run "$BIN" train --set "run.dir=$TMP/h20" --set run.iterations=2 --set model.hidden=20 --progress none
expect_exit 0 "train a hidden=20 model"
ckpt_diff 1 "different parameter counts are different" "$C1" "$TMP/h20/ckpt-00000002.h5"

# Derivative-order annealing (meta.first_order_until = N): FOMAML's meta-gradient for
# iterations 1..N, then MAML's. Up to N it is FOMAML, bit for bit; past N it differs from both
# FOMAML and MAML throughout; it is bit-identical on 1 and 3 ranks, and a run stopped before N
# and resumed on another rank count crosses N exactly as an uninterrupted one.
train fo 1 --set meta.algo=fomaml
train fo_all 1 --set meta.first_order_until=30
ckpt_diff 0 "first_order_until = iterations: the FOMAML run, bit for bit" "$TMP/fo/ckpt-00000030.h5" \
    "$TMP/fo_all/ckpt-00000030.h5" --tol 0
train fo_0 1 --set meta.first_order_until=0
ckpt_diff 0 "first_order_until = 0: the MAML run, bit for bit" "$C1" "$TMP/fo_0/ckpt-00000030.h5" --tol 0
train anneal1 1 --set meta.first_order_until=15
train anneal3 3 --set meta.first_order_until=15
ckpt_diff 1 "first_order_until = 15 differs from MAML throughout" "$C1" "$TMP/anneal1/ckpt-00000030.h5" --tol 0
ckpt_diff 1 "first_order_until = 15 differs from FOMAML throughout" "$TMP/fo/ckpt-00000030.h5" \
    "$TMP/anneal1/ckpt-00000030.h5" --tol 0
ckpt_diff 0 "first_order_until = 15: 1 vs 3 ranks bit-identical" "$TMP/anneal1/ckpt-00000030.h5" \
    "$TMP/anneal3/ckpt-00000030.h5" --tol 0
run "${MPIRUN[@]}" -np 2 "$BIN" train --set "run.dir=$TMP/anneal_r" --set run.iterations=10 \
    --set meta.first_order_until=15 --progress none
expect_exit 0 "first_order_until = 15: 10 iterations on 2 ranks"
train anneal_r 3 --set meta.first_order_until=15
ckpt_diff 0 "stopped at 10 on 2 ranks, resumed on 3 past 15: the uninterrupted run's θ" \
    "$TMP/anneal1/ckpt-00000030.h5" "$TMP/anneal_r/ckpt-00000030.h5" --tol 0
run "$BIN" train --set "run.dir=$TMP/bad" --set meta.algo=reptile --set meta.first_order_until=5 --progress none
expect_exit 2 "first_order_until with reptile"
check "  ... says it is for maml only" grep -q "first_order_until.*does not apply.*maml only" "$TMP/err"

# The multi-step loss (MAML++): bit-identical on 1 and 3 ranks, with weights annealed over 20
# of the 30 iterations, and resumed across ranks; not the plain MAML run.
train msl1 1 --set meta.inner_steps=3 --set meta.multi_step_loss=1 --set meta.msl_iterations=20
train msl3 3 --set meta.inner_steps=3 --set meta.multi_step_loss=1 --set meta.msl_iterations=20
ckpt_diff 0 "multi-step loss: 1 vs 3 ranks bit-identical" "$TMP/msl1/ckpt-00000030.h5" "$TMP/msl3/ckpt-00000030.h5" --tol 0
train plain3 1 --set meta.inner_steps=3
ckpt_diff 1 "multi-step loss differs from the last step's loss alone" "$TMP/plain3/ckpt-00000030.h5" \
    "$TMP/msl1/ckpt-00000030.h5" --tol 0
run "${MPIRUN[@]}" -np 2 "$BIN" train --set "run.dir=$TMP/msl_r" --set run.iterations=12 --set meta.inner_steps=3 \
    --set meta.multi_step_loss=1 --set meta.msl_iterations=20 --progress none
expect_exit 0 "multi-step loss: 12 iterations on 2 ranks"
train msl_r 4 --set meta.inner_steps=3 --set meta.multi_step_loss=1 --set meta.msl_iterations=20
ckpt_diff 0 "multi-step loss: stopped at 12 on 2 ranks, resumed on 4: the uninterrupted run's θ" \
    "$TMP/msl1/ckpt-00000030.h5" "$TMP/msl_r/ckpt-00000030.h5" --tol 0
run "$BIN" train --set "run.dir=$TMP/bad" --set meta.algo=reptile --set meta.multi_step_loss=1 --progress none
expect_exit 2 "multi_step_loss with reptile"
check "  ... says it is for maml and fomaml only" grep -q "multi_step_loss.*does not apply.*maml and fomaml only" "$TMP/err"

# Meta-SGD (a learned rate per parameter, in the checkpoint after θ): bit-identical on 1 and 3
# ranks, resumed from 12 iterations on 2 ranks to 30 on 4 exactly (the rates and their Adam
# moments come back from the checkpoint), listed by inspect, evaluated with the rates.
train sgd1 1 --set meta.algo=metasgd
train sgd3 3 --set meta.algo=metasgd
ckpt_diff 0 "metasgd: 1 vs 3 ranks bit-identical" "$TMP/sgd1/ckpt-00000030.h5" "$TMP/sgd3/ckpt-00000030.h5" --tol 0
run "${MPIRUN[@]}" -np 2 "$BIN" train --set "run.dir=$TMP/sgd_r" --set run.iterations=12 --set meta.algo=metasgd \
    --progress none
expect_exit 0 "metasgd: 12 iterations on 2 ranks"
train sgd_r 4 --set meta.algo=metasgd
ckpt_diff 0 "metasgd: stopped at 12 on 2 ranks, resumed on 4: the uninterrupted run's θ and rates" \
    "$TMP/sgd1/ckpt-00000030.h5" "$TMP/sgd_r/ckpt-00000030.h5" --tol 0
# meta.alpha_lr scales the rates' Adam rate: each rank cuts its shard where the rates start,
# so 1 and 3 ranks (different cuts) must agree, and the run must differ from alpha_lr = 1.
train sgd_a1 1 --set meta.algo=metasgd --set meta.alpha_lr=0.1
train sgd_a3 3 --set meta.algo=metasgd --set meta.alpha_lr=0.1
ckpt_diff 0 "metasgd, alpha_lr 0.1: 1 vs 3 ranks bit-identical" "$TMP/sgd_a1/ckpt-00000030.h5" \
    "$TMP/sgd_a3/ckpt-00000030.h5" --tol 0
ckpt_diff 1 "metasgd: alpha_lr 0.1 differs from 1" "$TMP/sgd1/ckpt-00000030.h5" "$TMP/sgd_a1/ckpt-00000030.h5" --tol 0
run "$BIN" train --set "run.dir=$TMP/bad" --set meta.alpha_lr=0.5 --progress none
expect_exit 2 "alpha_lr without learned rates"
check "  ... says it is for learned rates" grep -q "alpha_lr.*does not apply.*learned rates" "$TMP/err"
run "$BIN" inspect "$TMP/sgd1/ckpt-00000030.h5"
expect_exit 0 "inspect a metasgd checkpoint"
check "  ... 3522 values: 1761 parameters and their rates" grep -q "3522 parameters" "$TMP/out"
check "  ... the rates are tensors alpha.fc1.weight ... alpha.head.bias of kind lr" \
    bash -c "grep -q 'alpha.fc1.weight *lr' '$TMP/out' && grep -q 'alpha.head.bias *lr' '$TMP/out'"
run "$BIN" eval "$TMP/sgd1/ckpt-00000030.h5" --tasks 50 --json
expect_exit 0 "eval a metasgd checkpoint"

# LSLR (a learned rate per inner step and tensor, MAML++), with the multi-step loss: 1 vs 3
# ranks, resumed from 12 on 2 ranks to 30 on 4, and the rates' tensor in the checkpoint.
lslr=(--set meta.inner_steps=2 --set meta.lslr=1 --set meta.multi_step_loss=1 --set meta.msl_iterations=20)
train lslr1 1 "${lslr[@]}"
train lslr3 3 "${lslr[@]}"
ckpt_diff 0 "lslr: 1 vs 3 ranks bit-identical" "$TMP/lslr1/ckpt-00000030.h5" "$TMP/lslr3/ckpt-00000030.h5" --tol 0
run "${MPIRUN[@]}" -np 2 "$BIN" train --set "run.dir=$TMP/lslr_r" --set run.iterations=12 "${lslr[@]}" --progress none
expect_exit 0 "lslr: 12 iterations on 2 ranks"
train lslr_r 4 "${lslr[@]}"
ckpt_diff 0 "lslr: stopped at 12 on 2 ranks, resumed on 4: the uninterrupted run's θ and rates" \
    "$TMP/lslr1/ckpt-00000030.h5" "$TMP/lslr_r/ckpt-00000030.h5" --tol 0
run "$BIN" inspect "$TMP/lslr1/ckpt-00000030.h5"
check "  ... the rates are one tensor lslr [2 steps x 6 tensors]" grep -q "lslr *lr *1761 *2x6" "$TMP/out"
run "$BIN" train --set "run.dir=$TMP/bad" --set meta.algo=anil --set meta.lslr=1 --progress none
expect_exit 2 "lslr with anil"

# ANIL (the inner loop adapts only the head): bit-identical on 1 and 3 ranks, not MAML, and
# a checkpoint that eval adapts (the head only) on 1 and 2 ranks alike.
train anil1 1 --set meta.algo=anil
train anil3 3 --set meta.algo=anil
ckpt_diff 0 "anil: 1 vs 3 ranks bit-identical" "$TMP/anil1/ckpt-00000030.h5" "$TMP/anil3/ckpt-00000030.h5" --tol 0
ckpt_diff 1 "anil differs from maml" "$C1" "$TMP/anil1/ckpt-00000030.h5" --tol 0
run "$BIN" eval "$TMP/anil1/ckpt-00000030.h5" --tasks 50 --json
expect_exit 0 "eval an anil checkpoint on 1 rank"
cp "$TMP/out" "$TMP/anil_eval1.json"
run "${MPIRUN[@]}" -np 2 "$BIN" eval "$TMP/anil1/ckpt-00000030.h5" --tasks 50 --json
expect_exit 0 "eval an anil checkpoint on 2 ranks"
check "  ... the same numbers on 1 and 2 ranks" cmp -s "$TMP/out" "$TMP/anil_eval1.json"

# Unreadable input and bad usage are status 2, not "different".
printf 'not a checkpoint\n' >"$TMP/text.h5"
ckpt_diff 2 "ckpt_diff: a missing file is status 2" "$C1" "$TMP/missing.h5"
ckpt_diff 2 "ckpt_diff: a text file is status 2" "$TMP/text.h5" "$C1"
ckpt_diff 2 "ckpt_diff: one argument is status 2" "$C1"
ckpt_diff 2 "ckpt_diff: a negative --tol is status 2" "$C1" "$C2" --tol -1
ckpt_diff 2 "ckpt_diff: --tol abc is status 2" "$C1" "$C2" --tol abc

finish
