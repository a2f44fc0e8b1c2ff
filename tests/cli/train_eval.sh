#!/usr/bin/env bash
# train_eval.sh — the main path end to end under mpirun -np 2: train 600 iterations of
# sinusoid MAML, check what the run directory holds (resolved config.ini that trains again,
# metrics.jsonl, exactly the newest checkpoints), then evaluate: adaptation must at least
# halve the query MSE, the statistics must not depend on the rank count, and zero
# adaptation steps must leave the loss unchanged. eval --set evaluates out of distribution
# (larger amplitudes give a clearly larger MSE) and refuses keys that change the model.
#
# usage: train_eval.sh METATRAIN MPIEXEC [CKPT_DIFF]   (run by ctest; prints ok/FAIL per check)
set -u
BIN=$1
MPIEXEC=$2
RUN_TIMEOUT=120
source "$(dirname "$0")/lib.sh"
# json_field NAME FILE: the value of "NAME": in a one-line JSON object (numbers, unquoted).
# micro X: a non-negative decimal number as an integer count of 1e-6 (bash has no floats).
micro() {
    local s
    s=$(printf '%.6f' "$1" 2>/dev/null) || return 1
    s=${s/./}
    echo $((10#$s))
}
is_number() { [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }

# --- train ---------------------------------------------------------------------------------------
RUN=$TMP/run
run "${MPIRUN[@]}" -np 2 "$BIN" train --set "run.dir=$RUN" --set run.iterations=600 --set run.log_every=100 \
    --set checkpoint.every=200 --set checkpoint.keep=2 --progress lines
expect_exit 0 "mpirun -np 2 train 600 iterations"
cp "$TMP/out" "$TMP/train_out"
n=$(grep -cE '^train [0-9]+/600' "$TMP/train_out")
check "progress: 6 lines with --progress lines and log_every 100 (got $n)" test "$n" -eq 6
check "the run reports 'done' once" test "$(grep -c '^done: 600 iterations' "$TMP/train_out")" -eq 1
check "no error on stderr" bash -c "! grep -qi 'error' '$TMP/err'"

check "run.dir holds config.ini" test -s "$RUN/config.ini"
check "run.dir holds metrics.jsonl" test -s "$RUN/metrics.jsonl"
ckpts=$(cd "$RUN" && ls ckpt-*.h5 2>/dev/null | tr '\n' ' ')
check "exactly ckpt-00000400.h5 and ckpt-00000600.h5 are kept (got: $ckpts)" \
    test "$ckpts" = "ckpt-00000400.h5 ckpt-00000600.h5 "
check "no .partial file is left in run.dir" test -z "$(find "$RUN" -name '*.partial')"
check "run.dir holds nothing else (config.ini, metrics.jsonl, run.lock, 2 checkpoints)" test "$(ls "$RUN" | wc -l)" -eq 5

# config.ini: the resolved configuration, with the overrides applied.
check "config.ini has iterations = 600" grep -qx 'iterations = 600' "$RUN/config.ini"
check "config.ini has every = 200" grep -qx 'every = 200' "$RUN/config.ini"
check "config.ini has the run dir" grep -qxF "dir = $RUN" "$RUN/config.ini"

# metrics.jsonl: one line per 100 iterations, each with every field as a number.
n=$(wc -l <"$RUN/metrics.jsonl")
check "metrics.jsonl has 6 lines (got $n)" test "$n" -eq 6
for field in iteration loss_pre loss_post tasks_per_s elapsed_s peak_rss_mb; do
    n=$(grep -cE "\"$field\": [0-9]" "$RUN/metrics.jsonl")
    check "metrics.jsonl: $field is a number on every line (got $n of 6)" test "$n" -eq 6
done
steps=$(grep -o '"iteration": [0-9]*' "$RUN/metrics.jsonl" | sed 's/.*: //' | tr '\n' ' ')
check "metrics.jsonl iterations are 100 200 ... 600 (got: $steps)" test "$steps" = "100 200 300 400 500 600 "
check "metrics.jsonl lines are JSON objects" bash -c "! grep -vqE '^\\{.*\\}\$' '$RUN/metrics.jsonl'"

# The resolved config.ini is a valid config: train again from it.
# checkpoint.every = 200 > iterations = 1 is accepted: the last iteration always checkpoints.
run "$BIN" train "$RUN/config.ini" --set run.iterations=1 --set "run.dir=$TMP/again" --progress none
expect_exit 0 "train again from the run's config.ini (iterations=1, checkpoint.every=200 kept)"
check "the second run wrote its final checkpoint" test -f "$TMP/again/ckpt-00000001.h5"
grep -vE '^(dir|iterations) = ' "$RUN/config.ini" >"$TMP/config_a"
grep -vE '^(dir|iterations) = ' "$TMP/again/config.ini" >"$TMP/config_b" 2>/dev/null
check "its resolved config equals the first but for dir and iterations" cmp -s "$TMP/config_a" "$TMP/config_b"

CKPT=$RUN/ckpt-00000600.h5
if command -v h5dump >/dev/null; then
    run h5dump -H -p "$CKPT"
    expect_exit 0 "h5dump -H -p reads the checkpoint"
    for object in 'DATASET "params"' 'DATASET "model"' 'GROUP "optim"' 'DATASET "m"' 'DATASET "v"' \
        'ATTRIBUTE "format"' 'ATTRIBUTE "config"' 'ATTRIBUTE "step"' 'ATTRIBUTE "seed"' 'ATTRIBUTE "world_size"' \
        'ATTRIBUTE "crc32"'; do
        check "h5dump -H shows $object" grep -qF "$object" "$TMP/out"
    done
    run h5dump -a format "$CKPT"
    check "h5dump: format is metatrain-checkpoint" grep -qF '"metatrain-checkpoint"' "$TMP/out"
    run h5dump -a world_size "$CKPT"
    check "h5dump: world_size is 2" grep -qE '\(0\): 2$' "$TMP/out"
else
    echo "skip h5dump checks (h5dump not installed)"
fi

# --- eval ----------------------------------------------------------------------------------------
run "${MPIRUN[@]}" -np 2 "$BIN" eval "$CKPT" --tasks 200 --json
expect_exit 0 "mpirun -np 2 eval --tasks 200 --json"
cp "$TMP/out" "$TMP/eval2"
cat "$TMP/eval2"
check "eval --json prints one line" test "$(wc -l <"$TMP/eval2")" -eq 1
mean=$(json_field mean "$TMP/eval2")
before=$(json_field mean_before "$TMP/eval2")
check "eval: mean is a number ($mean)" is_number "$mean"
check "eval: mean_before is a number ($before)" is_number "$before"
check "eval: tasks is 200" test "$(json_field tasks "$TMP/eval2")" = 200
check "eval: step is 600" test "$(json_field step "$TMP/eval2")" = 600
check "eval: inner_steps is meta.eval_inner_steps (10)" test "$(json_field inner_steps "$TMP/eval2")" = 10
if is_number "$mean" && is_number "$before"; then
    m=$(micro "$mean")
    b=$(micro "$before")
    check "training works: post-adaptation MSE $mean < 0.5 x pre-adaptation $before" test $((2 * m)) -lt "$b"
    check "eval: the MSE before adaptation is positive" test "$b" -gt 0
fi

run "$BIN" eval "$CKPT" --tasks 200 --json
expect_exit 0 "eval with 1 rank"
check "1 rank gives the same JSON as 2 ranks" cmp -s "$TMP/out" "$TMP/eval2"
run "${MPIRUN[@]}" -np 3 "$BIN" eval "$CKPT" --tasks 200 --json
expect_exit 0 "mpirun -np 3 eval"
check "3 ranks give the same JSON as 2 ranks" cmp -s "$TMP/out" "$TMP/eval2"

run "${MPIRUN[@]}" -np 2 "$BIN" eval "$CKPT" --tasks 200 --json --inner-steps 0
expect_exit 0 "eval --inner-steps 0"
check "--inner-steps 0: inner_steps is 0" test "$(json_field inner_steps "$TMP/out")" = 0
check "--inner-steps 0: mean == mean_before" test "$(json_field mean "$TMP/out")" = "$(json_field mean_before "$TMP/out")"
check "--inner-steps 0: ci95 == ci95_before" test "$(json_field ci95 "$TMP/out")" = "$(json_field ci95_before "$TMP/out")"
check "--inner-steps 0: mean_before is unchanged" test "$(json_field mean_before "$TMP/out")" = "$before"

run "$BIN" eval "$CKPT" --tasks 200 --json --seed 7
expect_exit 0 "eval --seed 7"
check "another evaluation seed draws other tasks" test "$(json_field mean_before "$TMP/out")" != "$before"
run "$BIN" eval "$RUN/ckpt-00000400.h5" --tasks 20 --json
expect_exit 0 "eval of the step-400 checkpoint"
check "it reports step 400" test "$(json_field step "$TMP/out")" = 400
run "$BIN" eval "$CKPT" --tasks 20
expect_exit 0 "eval without --json"
check "eval prints the MSE after adaptation" grep -qF "query MSE after adaptation" "$TMP/out"
check "eval without --set prints no overrides line" bash -c "! grep -q overrides '$TMP/out'"
check "eval --json without --set has no overrides field" bash -c "! grep -q overrides '$TMP/eval2'"

# --- eval --set: out of distribution -------------------------------------------------------------
# Trained on amplitudes in [0.1, 5]; amplitudes in [5, 10] are outside what it saw.
run "${MPIRUN[@]}" -np 2 "$BIN" eval "$CKPT" --tasks 200 --json --set task.amp_min=5 --set task.amp_max=10
expect_exit 0 "eval --set task.amp_min=5 --set task.amp_max=10"
cp "$TMP/out" "$TMP/eval_ood"
cat "$TMP/eval_ood"
ood=$(json_field mean "$TMP/eval_ood")
check "eval --set: mean is a number ($ood)" is_number "$ood"
if is_number "$ood" && is_number "$mean"; then
    check "out of distribution: MSE $ood > 4 x the in-distribution $mean" test "$(micro "$ood")" -gt $((4 * $(micro "$mean")))
fi
check "eval --json --set: overrides lists both keys, checkpoint -> evaluation" \
    grep -qF '"overrides": "task.amp_min: 0.100000001 -> 5; task.amp_max: 5 -> 10"' "$TMP/eval_ood"
run "$BIN" eval "$CKPT" --tasks 200 --json --set task.amp_min=5 --set task.amp_max=10
expect_exit 0 "eval --set on 1 rank"
check "eval --set: 1 rank gives the same JSON as 2 ranks" cmp -s "$TMP/out" "$TMP/eval_ood"
run "$BIN" eval "$CKPT" --tasks 20 --set task.amp_max=7
expect_exit 0 "eval --set task.amp_max=7 (text)"
check "eval --set prints the overridden key" grep -qF "overrides (checkpoint -> this evaluation): task.amp_max: 5 -> 7" \
    "$TMP/out"
run "$BIN" eval "$CKPT" --tasks 20 --set model.hidden=8
expect_exit 2 "eval --set model.hidden=8 (changes the model)"
check "  the message names the key and says it changes the model" \
    bash -c "grep -qF 'model.hidden' '$TMP/err' && grep -qF 'change the model' '$TMP/err'"
run "$BIN" eval "$CKPT" --tasks 20 --set task.family=fewshot
expect_exit 2 "eval --set task.family=fewshot (changes the model)"
run "$BIN" eval "$CKPT" --tasks 20 --set optim.lr=0.5
expect_exit 2 "eval --set optim.lr=0.5 (not used by evaluation)"
check "  the message says evaluation does not use it" grep -qF "evaluation does not use optim.lr" "$TMP/err"
run "$BIN" eval "$CKPT" --tasks 20 --set task.amp_min=6
expect_exit 2 "eval --set task.amp_min=6 (above the checkpoint's amp_max = 5)"
check "  the message names amp_min and amp_max" bash -c "grep -qF 'amp_min = 6' '$TMP/err' && grep -qF 'amp_max = 5' '$TMP/err'"
run "$BIN" eval "$CKPT" --tasks 20 --set task.ways=3
expect_exit 2 "eval --set task.ways=3 (not a sinusoid key, and it changes the model)"

finish
