# lib.sh — helpers shared by the CLI test scripts (source it after setting BIN and MPIEXEC).
#   check LABEL CMD...       one check, passed iff CMD succeeds
#   run CMD...               run with a time limit of $RUN_TIMEOUT s (default 300; a hang
#                            fails as status 124); sets $status, $TMP/out, $TMP/err
#   expect_exit WANT LABEL   the last run's status (shows its output when wrong)
#   json_field NAME FILE     a number field of a one-line JSON object
#   train DIR NP ITERATIONS [ARGS...]
#                            `run` of metatrain train on NP ranks in run.dir DIR, logging every
#                            5 iterations, no progress bar (ARGS: more train options)
#   finish                   prints "N passed, M failed"; exit status 0 iff all passed
export LC_ALL=C
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mt_cli.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
MPIRUN=("$MPIEXEC" --oversubscribe)
if [ "$(id -u)" -eq 0 ]; then MPIRUN+=(--allow-run-as-root); fi

passed=0
failed=0
check() {
    local label=$1
    shift
    if "$@"; then
        echo "ok   $label"
        passed=$((passed + 1))
    else
        echo "FAIL $label"
        failed=$((failed + 1))
    fi
}
run() {
    timeout -k 5 "${RUN_TIMEOUT:-300}" "$@" >"$TMP/out" 2>"$TMP/err"
    status=$?
}
expect_exit() {
    check "$2: exit status $1 (got $status)" test "$status" -eq "$1"
    if [ "$status" -ne "$1" ]; then sed 's/^/     | /' "$TMP/out" "$TMP/err"; fi
}
json_field() { grep -o "\"$1\": [^,}]*" "$2" | head -n 1 | sed 's/^[^:]*: //'; }
train() {
    local dir=$1 np=$2 it=$3
    shift 3
    run "${MPIRUN[@]}" -np "$np" "$BIN" train --progress none --set run.dir="$dir" --set run.iterations="$it" \
        --set run.log_every=5 "$@"
}
finish() {
    echo "$passed passed, $failed failed"
    if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then exit 0; fi
    exit 1
}
