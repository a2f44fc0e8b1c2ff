#!/usr/bin/env bash
# cli_errors.sh — bad input to the metatrain command: every case must exit with status 2 and
# say on stderr what is wrong (config errors as FILE:LINE:, like a compiler), once, without
# HDF5 error dumps; under mpirun the job must end (not hang) and print the message once.
# Also: --help of the command and of each subcommand exits 0 and lists every config
# section, key and option.
#
# usage: cli_errors.sh METATRAIN MPIEXEC [CKPT_DIFF]   (run by ctest; prints ok/FAIL per check)
set -u
BIN=$1
MPIEXEC=$2
RUN_TIMEOUT=60
source "$(dirname "$0")/lib.sh"
expect_err() { check "$2: stderr contains '$1'" grep -qF -- "$1" "$TMP/err"; }
no_h5_dump() { check "$1: no HDF5 error stack on stderr" bash -c "! grep -qE 'HDF5-DIAG|#0[0-9][0-9]: ' '$TMP/err'"; }
# expect_usage_error LABEL TEXT...: status 2, stderr holds "metatrain: error:" and each TEXT.
expect_usage_error() {
    local label=$1
    shift
    expect_exit 2 "$label"
    expect_err "metatrain: error: " "$label"
    local text
    for text in "$@"; do expect_err "$text" "$label"; done
    no_h5_dump "$label"
    echo "     stderr: $(head -n 1 "$TMP/err")"
}

RUN_DIR=$TMP/run # no case below may create it: input errors come before any output
COMMON=(--set "run.dir=$RUN_DIR" --progress none)

# --- config files ---------------------------------------------------------------------------
printf '; a config with a typo\n[run]\nseed = 1\n\n[optim]\nlrr = 0.1\n' >"$TMP/unknown_key.ini"
run "$BIN" train "$TMP/unknown_key.ini" "${COMMON[@]}"
expect_usage_error "unknown key in a config file" "$TMP/unknown_key.ini:6:" "unknown key" "lrr"

printf '[model]\nhidden = abc\n' >"$TMP/bad_value.ini"
run "$BIN" train "$TMP/bad_value.ini" "${COMMON[@]}"
expect_usage_error "bad value in a config file" "$TMP/bad_value.ini:2:" "hidden" "abc"

printf '[meta]\nmeta_batch = 0\n' >"$TMP/out_of_range.ini"
run "$BIN" train "$TMP/out_of_range.ini" "${COMMON[@]}"
expect_usage_error "out-of-range value in a config file" "$TMP/out_of_range.ini:2:" "out of range"

printf '[run]\nthis is not ini\n' >"$TMP/syntax.ini"
run "$BIN" train "$TMP/syntax.ini" "${COMMON[@]}"
expect_usage_error "syntax error in a config file" "$TMP/syntax.ini:2:" "syntax error"

run "$BIN" train "$TMP/no_such.ini" "${COMMON[@]}"
expect_usage_error "missing config file" "cannot read config file" "$TMP/no_such.ini"

run "$BIN" train "$TMP" "${COMMON[@]}"
expect_usage_error "a directory as config file" "cannot read config file" "is a directory"

# A config read is capped: /dev/zero never ends and used to grow without bound.
RUN_TIMEOUT=10 run "$BIN" train /dev/zero "${COMMON[@]}"
expect_usage_error "train /dev/zero (within 10 s)" "config file /dev/zero is larger than 1 MiB"
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ';' >"$TMP/huge.ini"
run "$BIN" train "$TMP/huge.ini" "${COMMON[@]}"
expect_usage_error "a config file of 1 MiB + 1 byte" "$TMP/huge.ini is larger than 1 MiB"

printf '[run]\nseed = 1\0\n' >"$TMP/binary.ini"
run "$BIN" train "$TMP/binary.ini" "${COMMON[@]}"
expect_usage_error "a binary config file" "not a text file"

printf '[run]\ndir =\niterations = 1\n' >"$TMP/empty_dir.ini"
run "$BIN" train "$TMP/empty_dir.ini" --progress none
expect_usage_error "empty run.dir in a config file" "$TMP/empty_dir.ini:2:" "dir" "empty"

printf '[model]\nfilters = 32\n' >"$TMP/inapplicable.ini"
run "$BIN" train "$TMP/inapplicable.ini" "${COMMON[@]}"
expect_usage_error "model.filters with arch = mlp in a config file" "filters" "does not apply" "mlp"

# --- --set ----------------------------------------------------------------------------------
run "$BIN" train --set optim.lr=abc "${COMMON[@]}"
expect_usage_error "bad --set value" "--set optim.lr=abc" "not a finite number"
run "$BIN" train --set optim.lrr=0.1 "${COMMON[@]}"
expect_usage_error "--set of an unknown key" "--set optim.lrr=0.1" "unknown key"
run "$BIN" train --set seed=1 "${COMMON[@]}"
expect_usage_error "--set without a section" "--set seed=1" "section.key=value"
run "$BIN" train --set run.seed "${COMMON[@]}"
expect_usage_error "--set without '='" "--set run.seed" "section.key=value"
run "$BIN" train "${COMMON[@]}" --set
expect_usage_error "--set without an argument" "--set"
run "$BIN" train --set "run.seed= -1" "${COMMON[@]}"
expect_usage_error "--set 'run.seed= -1' (must not wrap to 2^64 - 1)" "run.seed" "not a whole number"
run "$BIN" train --progress none --set run.iterations=1 --set "run.dir="
expect_usage_error "--set run.dir= (empty)" "--set run.dir=" "empty"
run "$BIN" train --set task.ways=20 "${COMMON[@]}"
expect_usage_error "--set task.ways with family = sinusoid" "task.ways" "does not apply" "sinusoid"
# 65536 hidden units are 4.3e9 parameters: refused before any MPI call (it was MPI_ABORT, exit 1).
run "$BIN" train --set model.hidden=65536 "${COMMON[@]}"
expect_usage_error "--set model.hidden=65536" "model.hidden=65536" "out of range"
check "--set model.hidden=65536: no MPI abort" bash -c "! grep -qiE 'MPI_ABORT|too many for one MPI call' '$TMP/err'"
# A meta-batch whose task gradients do not fit the node's memory (MT_MEMORY_LIMIT caps what
# metatrain takes the node to have): refused before any data is loaded or memory allocated.
MT_MEMORY_LIMIT=100000000 run "$BIN" train --set meta.meta_batch=1000000 --set model.hidden=200 "${COMMON[@]}"
expect_usage_error "a meta-batch too large for memory" "meta_batch"

# --- command line ---------------------------------------------------------------------------
run "$BIN" train --bogus "${COMMON[@]}"
expect_usage_error "unknown train option" "unknown option" "--bogus"
run "$BIN" train --progress sometimes "${COMMON[@]}"
expect_usage_error "bad --progress" "--progress"
run "$BIN" frobnicate
expect_usage_error "unknown command" "unknown command" "frobnicate"
run "$BIN"
expect_exit 2 "no command"
check "no command: usage on stderr" grep -qF "usage:" "$TMP/err"
run "$BIN" train a.ini b.ini "${COMMON[@]}"
expect_usage_error "train a.ini b.ini" "more than one CONFIG" "a.ini" "b.ini"
check "no input error created run.dir" test ! -e "$RUN_DIR"

# --- eval of bad checkpoints ------------------------------------------------------------------
run "$BIN" eval
expect_usage_error "eval without a checkpoint" "eval needs a checkpoint"
run "$BIN" eval "$TMP/missing.h5"
expect_usage_error "eval of a missing checkpoint" "$TMP/missing.h5" "cannot read checkpoint"
printf 'this is not HDF5\n' >"$TMP/text.h5"
run "$BIN" eval "$TMP/text.h5"
expect_usage_error "eval of a text file" "$TMP/text.h5" "not an HDF5 file"
run "$BIN" eval "$TMP/unknown_key.ini" --tasks 10 --json
expect_usage_error "eval of a config file" "$TMP/unknown_key.ini" "not a metatrain checkpoint"
run "$BIN" eval "$TMP/text.h5" --bogus
expect_usage_error "unknown eval option" "unknown option" "--bogus"
run "$BIN" eval "$TMP/text.h5" --tasks abc
expect_usage_error "eval --tasks abc" "--tasks"
run "$BIN" eval "$TMP/text.h5" --tasks 1
expect_usage_error "eval --tasks 1 (below 2)" "--tasks"
run "$BIN" eval "$TMP/text.h5" --inner-steps
expect_usage_error "eval --inner-steps without a value" "--inner-steps"
run "$BIN" eval a.h5 b.h5
expect_usage_error "eval a.h5 b.h5" "more than one checkpoint"

# A real checkpoint (3 iterations, one rank) to damage.
run "$BIN" train --set run.iterations=3 --set "run.dir=$TMP/real" --progress none
expect_exit 0 "train 3 iterations for a checkpoint to damage"
CKPT=$TMP/real/ckpt-00000003.h5
if [ -f "$CKPT" ]; then
    size=$(stat -c %s "$CKPT")
    head -c $((size / 2)) "$CKPT" >"$TMP/half.h5"
    run "$BIN" eval "$TMP/half.h5" --tasks 10
    expect_usage_error "eval of a checkpoint truncated to half" "$TMP/half.h5"
    : >"$TMP/empty.h5"
    run "$BIN" eval "$TMP/empty.h5" --tasks 10
    expect_usage_error "eval of an empty file" "$TMP/empty.h5"
    run "$BIN" eval "$CKPT" --tasks 10 --json
    expect_exit 0 "eval of the undamaged checkpoint (control)"
else
    check "the 3-iteration run wrote $CKPT" false
fi

# --- under mpirun: the job ends with status 2 and the message appears once ------------------------
run "${MPIRUN[@]}" -np 2 "$BIN" train "$TMP/unknown_key.ini" "${COMMON[@]}"
expect_usage_error "mpirun -np 2: unknown key" "$TMP/unknown_key.ini:6:" "unknown key"
n=$(grep -c "unknown key" "$TMP/err")
check "mpirun -np 2: the message is printed once (got $n)" test "$n" -eq 1
run "${MPIRUN[@]}" -np 2 "$BIN" eval "$TMP/text.h5" --tasks 10
expect_usage_error "mpirun -np 2: eval of a text file" "not an HDF5 file"
n=$(grep -c "metatrain: error" "$TMP/err")
check "mpirun -np 2: eval's message is printed once (got $n)" test "$n" -eq 1
check "no input error under mpirun created run.dir" test ! -e "$RUN_DIR"

# --- help ---------------------------------------------------------------------------------------
run "$BIN" --help
expect_exit 0 "metatrain --help"
for word in train eval help version; do
    check "metatrain --help mentions '$word'" grep -qw -- "$word" "$TMP/out"
done
run "$BIN" help
expect_exit 0 "metatrain help"
run "$BIN" version
expect_exit 0 "metatrain version"
check "metatrain version prints a version" grep -qE '^metatrain [0-9]+\.[0-9]+\.[0-9]+' "$TMP/out"

run "$BIN" train --help
expect_exit 0 "metatrain train --help"
cp "$TMP/out" "$TMP/train_help"
check "train --help prints nothing on stderr" test ! -s "$TMP/err"
for section in run task model meta optim checkpoint; do
    check "train --help lists section [$section]" grep -qF "[$section]" "$TMP/train_help"
done
for option in --set --progress --help; do
    check "train --help mentions $option" grep -qF -- "$option" "$TMP/train_help"
done
# Every key of a resolved config.ini (the full key table) is listed under its section: the
# help's "  [section]" lines and "    key  default  doc" lines, as "[section] key" pairs.
section=
while IFS= read -r line; do
    case $line in
    '  ['*']') section=${line#  } ;;
    '    '[a-z]*) read -r key _ <<<"$line" && echo "$section $key" ;;
    esac
done <"$TMP/train_help" >"$TMP/help_keys"
if [ -f "$TMP/real/config.ini" ]; then
    section=
    n_keys=0
    while IFS= read -r line; do
        case $line in
        \[*\]) section=$line ;;
        *' = '*)
            n_keys=$((n_keys + 1))
            check "train --help lists $section ${line%% = *}" grep -qxF "$section ${line%% = *}" "$TMP/help_keys"
            ;;
        esac
    done <"$TMP/real/config.ini"
    check "config.ini had keys to look for (got $n_keys)" test "$n_keys" -ge 20
fi

run "$BIN" eval --help
expect_exit 0 "metatrain eval --help"
for option in CKPT --tasks --inner-steps --seed --json --help; do
    check "eval --help mentions $option" grep -qF -- "$option" "$TMP/out"
done
run "${MPIRUN[@]}" -np 2 "$BIN" train --help
expect_exit 0 "mpirun -np 2 metatrain train --help"
n=$(grep -c "^usage: metatrain train" "$TMP/out")
check "mpirun -np 2: train --help printed once (got $n)" test "$n" -eq 1

finish
