#!/usr/bin/env bash
# sweep.sh METATRAIN MPIEXEC CKPT_DIFF — `metatrain sweep`: groups of ranks, waves, a failing
# point, re-runs that skip finished points, successive halving with exact resumes, a stop by
# SIGUSR1 continued exactly, --point for job arrays, --dry-run and bad sweep configs.
set -uo pipefail
BIN=$1
MPIEXEC=$2
CKPT_DIFF=$3
. "$(dirname "$0")/lib.sh"

# The sweep's row for point ID of a sweep over N keys, fields after the values:
#   field ID N K   K = 1 rung, 2 iterations, 3 train_loss, 4 eval_metric, 5 eval_mean,
#                  6 eval_ci95, 7 wall_s, 8 status (to the end of the line)
field() {
    local line
    line=$(grep -E "^\"?$1\"?," "$4/sweep.csv" | head -n 1) || return 1
    line=${line#\"$1\",}
    line=${line#$1,}
    if [ "$3" -eq 8 ]; then echo "$line" | cut -d, -f$(($2 + 8))- | tr -d '"'
    else echo "$line" | cut -d, -f$(($2 + $3)); fi
}
last_ckpt() { ls "$1"/ckpt-*.h5 2>/dev/null | tail -n 1; }
same_theta() { "$CKPT_DIFF" "$1" "$2" >/dev/null; }
differ() { ! cmp -s "$1" "$2"; }

cat >"$TMP/lr.ini" <<'EOF'
[run]
iterations = 60
log_every = 20
[meta]
meta_batch = 8
[sweep]
meta.inner_lr = 0.005, 0.01, 0.02, -1
ranks_per_run = 2
eval_tasks = 20
EOF

# --dry-run: the points and the plan, nothing trained.
run "$BIN" sweep "$TMP/lr.ini" --set run.dir="$TMP/dry" --dry-run
expect_exit 0 "--dry-run"
check "--dry-run lists 4 points" test "$(grep -cE '^ +[0-9]+  inner_lr=' "$TMP/out")" -eq 4
check "--dry-run says which point is invalid" grep -q "inner_lr=-1 .*invalid: .*inner_lr" "$TMP/out"
check "--dry-run writes nothing" test ! -e "$TMP/dry"

# 4 ranks in 2 groups over 4 points (two waves); the bad value fails alone.
run "${MPIRUN[@]}" -np 4 "$BIN" sweep "$TMP/lr.ini" --set run.dir="$TMP/s1"
expect_exit 1 "a sweep with a failed point"
for lr in 0.005 0.01 0.02; do
    check "inner_lr=$lr done" test "$(field inner_lr=$lr 1 8 "$TMP/s1")" = done
    check "inner_lr=$lr trained 60 iterations" test "$(field inner_lr=$lr 1 2 "$TMP/s1")" = 60
    check "inner_lr=$lr has a meta-validation mse" test -n "$(field inner_lr=$lr 1 5 "$TMP/s1")"
done
check "inner_lr=-1 failed, with its reason" grep -qE '^inner_lr=-1,.*failed: .*inner_lr.*out of range' "$TMP/s1/sweep.csv"
check "both groups trained" test "$(grep -c 'on group 1' "$TMP/out")" -ge 1
check "the summary counts them" grep -q "3 of 4 points done, 1 failed" "$TMP/out"

# Each group's θ is the point's θ trained alone, on 2 ranks or on 1.
train "$TMP/alone2" 2 60 --set meta.meta_batch=8 --set meta.inner_lr=0.01
check "a point trained alone on 2 ranks" test "$status" -eq 0
check "group θ = θ trained alone on 2 ranks" same_theta "$(last_ckpt "$TMP/s1/inner_lr=0.01")" "$(last_ckpt "$TMP/alone2")"
train "$TMP/alone1" 1 60 --set meta.meta_batch=8 --set meta.inner_lr=0.02
check "group θ = θ trained alone on 1 rank" same_theta "$(last_ckpt "$TMP/s1/inner_lr=0.02")" "$(last_ckpt "$TMP/alone1")"

# A re-run skips the finished points (and, by default, the failed one).
stamp=$(stat -c %Y.%s "$(last_ckpt "$TMP/s1/inner_lr=0.01")")
run "${MPIRUN[@]}" -np 4 "$BIN" sweep "$TMP/lr.ini" --set run.dir="$TMP/s1"
expect_exit 1 "the re-run (the failed point stays failed)"
check "the re-run starts no point" test "$(grep -c ': start ' "$TMP/out")" -eq 0
check "the re-run leaves the checkpoints alone" test "$stamp" = "$(stat -c %Y.%s "$(last_ckpt "$TMP/s1/inner_lr=0.01")")"
run "${MPIRUN[@]}" -np 4 "$BIN" sweep "$TMP/lr.ini" --set run.dir="$TMP/s1" --retry-failed
check "--retry-failed tries the failed point again (only it)" test "$(grep -c ': start ' "$TMP/out")" -eq 1

# A point that diverges is recorded as failed; the others finish.
cat >"$TMP/div.ini" <<'EOF'
[run]
iterations = 30
[meta]
meta_batch = 4
[sweep]
optim.lr = 0.001, 1000000
eval_tasks = 0
EOF
run "${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/div.ini" --set run.dir="$TMP/div"
expect_exit 1 "a diverging point"
check "the diverging point is failed: diverged" grep -qE '^lr=1000000,.*failed: .*diverged' "$TMP/div/sweep.csv"
check "the other point is done" test "$(field lr=0.001 1 8 "$TMP/div")" = done

# Successive halving: 4 points, eta 2, rungs at 40 and 80: exactly 2 reach the last rung,
# and a promoted point's θ is the point trained straight through.
cat >"$TMP/halving.ini" <<'EOF'
[run]
iterations = 80
log_every = 20
[meta]
meta_batch = 8
[sweep]
meta.inner_lr = 0.001, 0.005, 0.01, 0.02
ranks_per_run = 1
schedule = halving
min_iterations = 40
eta = 2
eval_tasks = 50
EOF
run "${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/halving.ini" --set run.dir="$TMP/h"
expect_exit 0 "halving"
check "exactly 2 points reach the last rung" test "$(grep -cE '^inner_lr=[0-9.]+,[0-9.]+,2,80,' "$TMP/h/sweep.csv")" -eq 2
check "2 points stop at the first rung" test "$(grep -cE '^inner_lr=[0-9.]+,[0-9.]+,1,40,' "$TMP/h/sweep.csv")" -eq 2
promoted=$(grep -E '^inner_lr=[0-9.]+,[0-9.]+,2,80,' "$TMP/h/sweep.csv" | head -n 1 | cut -d, -f2)
train "$TMP/straight" 2 80 --set meta.meta_batch=8 --set meta.inner_lr="$promoted"
check "promoted point ($promoted): θ = trained straight through" \
    same_theta "$TMP/h/inner_lr=$promoted/ckpt-00000080.h5" "$(last_ckpt "$TMP/straight")"
# The promoted points are those with the best meta-validation mse at rung 1 (the journal's).
best2=$(grep -P '\t0\t40\tdone\t' "$TMP/h/sweep.journal" | sort -t$'\t' -k7,7g | head -n 2 | cut -f2 | sort | tr '\n' ' ')
top=$(grep -E '^inner_lr=[0-9.]+,[0-9.]+,2,80,' "$TMP/h/sweep.csv" | cut -d, -f1 | sort | tr '\n' ' ')
check "the promoted are the best 2 of rung 1 ($top)" test "$best2" = "$top"

# SIGUSR1 stops every group with checkpoints (exit 75); the re-run ends bit-identical to a
# sweep that was never stopped.
cat >"$TMP/long.ini" <<'EOF'
[run]
iterations = 3000
log_every = 500
[checkpoint]
every = 50
[meta]
meta_batch = 8
[sweep]
meta.inner_lr = 0.005, 0.01, 0.02
ranks_per_run = 2
eval_tasks = 20
EOF
"${MPIRUN[@]}" -np 4 "$BIN" sweep "$TMP/long.ini" --set run.dir="$TMP/stop" --status-file "$TMP/status" \
    >"$TMP/stop.out" 2>&1 &
pid=$!
for _ in $(seq 600); do # wait for a checkpoint, then signal
    ls "$TMP"/stop/*/ckpt-*.h5 >/dev/null 2>&1 && break
    sleep 0.1
done
kill -USR1 "$pid"
wait "$pid"
read -r code _ <"$TMP/status"
check "SIGUSR1: metatrain's status 75 (got $code)" test "$code" = 75
check "SIGUSR1: the table says stopped" grep -q ',stopped$' "$TMP/stop/sweep.csv"
check "SIGUSR1: the summary says how to continue" grep -q "continue with the same command" "$TMP/stop.out"
run "${MPIRUN[@]}" -np 4 "$BIN" sweep "$TMP/long.ini" --set run.dir="$TMP/stop"
expect_exit 0 "the stopped sweep continues"
check "continued: every point done" test "$(grep -c ',done$' "$TMP/stop/sweep.csv")" -eq 3
run "${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/long.ini" --set run.dir="$TMP/nostop" --set sweep.ranks_per_run=1
expect_exit 0 "the same sweep unstopped, 2 groups of 1"
for lr in 0.005 0.01 0.02; do
    check "inner_lr=$lr: stopped and continued = never stopped" \
        same_theta "$TMP/stop/inner_lr=$lr/ckpt-00003000.h5" "$TMP/nostop/inner_lr=$lr/ckpt-00003000.h5"
done

# Halving stopped in its second rung and continued = halving never stopped (the same table,
# the same θ for every point at the rung it reached).
halving_long=(--set run.iterations=3200 --set sweep.min_iterations=800 --set checkpoint.every=50)
run "${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/halving.ini" "${halving_long[@]}" --set run.dir="$TMP/hn"
expect_exit 0 "halving, never stopped"
"${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/halving.ini" "${halving_long[@]}" --set run.dir="$TMP/hs" \
    --status-file "$TMP/hstatus" >"$TMP/hs.out" 2>&1 &
pid=$!
for _ in $(seq 1200); do # the second rung (800 -> 1600 iterations) has started: signal
    grep -q ': start rung 2 of 3' "$TMP/hs.out" 2>/dev/null && break
    sleep 0.05
done
kill -USR1 "$pid"
wait "$pid"
read -r code _ <"$TMP/hstatus"
check "halving stopped in rung 2: status 75 (got $code)" test "$code" = 75
check "halving stopped in rung 2: the table says stopped" grep -q ',stopped$' "$TMP/hs/sweep.csv"
run "${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/halving.ini" "${halving_long[@]}" --set run.dir="$TMP/hs"
expect_exit 0 "the stopped halving continues"
check "halving: the same promotions and metrics" \
    cmp -s <(cut -d, -f1-8 "$TMP/hn/sweep.csv") <(cut -d, -f1-8 "$TMP/hs/sweep.csv")
for lr in 0.001 0.005 0.01 0.02; do
    f=$(last_ckpt "$TMP/hn/inner_lr=$lr")
    check "halving inner_lr=$lr: stopped and continued = never stopped" \
        same_theta "$f" "$TMP/hs/inner_lr=$lr/$(basename "$f")"
done

# --point: one point per job (a Slurm array), by index or by id; the other rows stay pending.
run "${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/lr.ini" --set run.dir="$TMP/arr" --point 1
expect_exit 0 "--point 1"
check "--point 1 trained inner_lr=0.01" test "$(field inner_lr=0.01 1 8 "$TMP/arr")" = done
check "--point 1: the others pending" test "$(grep -c ',pending$' "$TMP/arr/sweep.csv")" -eq 3
run "${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/lr.ini" --set run.dir="$TMP/arr" --point inner_lr=0.02
expect_exit 0 "--point ID"
check "--point ID adds its row, keeps the first" test "$(grep -c ',done$' "$TMP/arr/sweep.csv")" -eq 2
check "--point: θ as in the full sweep" \
    same_theta "$(last_ckpt "$TMP/arr/inner_lr=0.01")" "$(last_ckpt "$TMP/s1/inner_lr=0.01")"
run "$BIN" sweep "$TMP/lr.ini" --set run.dir="$TMP/arr" --point 4
expect_exit 2 "--point past the last"
check "--point past the last: the range" grep -q "points 0 to 3" "$TMP/err"
run "$BIN" sweep "$TMP/halving.ini" --set run.dir="$TMP/arr2" --point 0
expect_exit 2 "--point with halving"

# Bad sweep configs: exit 2 with file:line and what to do.
bad() { # LABEL PATTERN SWEEP-LINES...
    local label=$1 pattern=$2
    shift 2
    printf '[run]\niterations = 10\n[sweep]\n' >"$TMP/bad.ini"
    printf '%s\n' "$@" >>"$TMP/bad.ini"
    run "$BIN" sweep "$TMP/bad.ini" --set run.dir="$TMP/bad"
    expect_exit 2 "$label"
    check "$label: says '$pattern'" grep -q -- "$pattern" "$TMP/err"
}
bad "unknown swept key" "bad.ini:4: .*no config key meta.inner_rate" "meta.inner_rate = 0.1, 0.2"
bad "unknown sweep key" "bad.ini:5: unknown key 'rungs'" "meta.inner_lr = 0.1" "rungs = 3"
bad "no swept key" "names no swept key" "ranks_per_run = 1"
bad "range in a grid" "need method = random" "optim.lr = log-uniform(1e-4, 1e-2)"
bad "bad range" "low < high" "method = random" "points = 2" "optim.lr = uniform(2, 1)"
bad "duplicate value" "listed twice" "meta.inner_lr = 0.1, 0.1"
bad "run.dir swept" "cannot be swept" "run.dir = a, b"
bad "halving past the end" "min_iterations = 100 below" "meta.inner_lr = 0.1" "schedule = halving"
run "$BIN" sweep "$TMP/lr.ini" --set run.dir="$TMP/bad" --set sweep.eta=1
expect_exit 2 "--set sweep.eta=1"
run "$BIN" sweep
expect_exit 2 "no CONFIG"

# A sweep config given to train: the message points at sweep.
run "$BIN" train "$TMP/lr.ini"
expect_exit 2 "train CONFIG-with-[sweep]"
check "train CONFIG-with-[sweep]: points at metatrain sweep" grep -q "lr.ini:6: \[sweep\] is read by .metatrain sweep" "$TMP/err"

# Random search: the same points for the same seed, other points for another.
cat >"$TMP/random.ini" <<'EOF'
[sweep]
method = random
points = 5
optim.lr = log-uniform(1e-4, 1e-2)
meta.inner_steps = uniform(1, 5)
EOF
run "$BIN" sweep "$TMP/random.ini" --dry-run
cp "$TMP/out" "$TMP/random1"
check "random: 5 points" test "$(grep -cE '^ +[0-9]+  lr=' "$TMP/random1")" -eq 5
check "random: whole inner_steps" test "$(grep -cE 'inner_steps=[1-5]$' "$TMP/random1")" -eq 5
run "$BIN" sweep "$TMP/random.ini" --dry-run
check "random: the same seed, the same points" cmp -s "$TMP/out" "$TMP/random1"
run "$BIN" sweep "$TMP/random.ini" --dry-run --set sweep.seed=7
check "random: another seed, other points" differ "$TMP/out" "$TMP/random1"

# One sweep per run.dir: a second full sweep on it stops at once.
"${MPIRUN[@]}" -np 2 "$BIN" sweep "$TMP/long.ini" --set run.dir="$TMP/busy" --set sweep.ranks_per_run=1 \
    >/dev/null 2>&1 &
pid=$!
for _ in $(seq 300); do
    test -e "$TMP/busy/sweep.csv" && break
    sleep 0.1
done
run "$BIN" sweep "$TMP/long.ini" --set run.dir="$TMP/busy" --set sweep.ranks_per_run=1
expect_exit 2 "a second sweep on the same run.dir"
check "the second sweep names the holder" grep -q "pid $pid\|pid [0-9]" "$TMP/err"
kill -USR1 "$pid" 2>/dev/null
wait "$pid"

finish
