# shellcheck shell=bash
# slurm/lib.sh — what every slurm/*.sbatch script does around one metatrain command: the
# environment, the launcher, passing signals on as "checkpoint now", metatrain's own exit
# status, and requeueing a job that stopped with a checkpoint. Sourced, not run:
#
#   source slurm/lib.sh
#   mt_slurm_run train "$@"        # or: mt_slurm_run sweep CONFIG "$@"; never returns
#
# Environment it reads:
#   METATRAIN           the binary (default: build/metatrain of the submit directory)
#   METATRAIN_LAUNCHER  mpirun (default) or srun: how the ranks are started, see below
#   SLURM_*             set by Slurm; outside Slurm the script runs once and does not requeue

# mt_slurm_run SUBCOMMAND ARGS...: runs `metatrain SUBCOMMAND ARGS... --status-file F` on every
# rank of the allocation and exits with metatrain's status: 0 done, 1 failed, 2 bad input,
# 75 stopped with a checkpoint (then, under Slurm, the job has been requeued and will resume).
mt_slurm_run() {
    local submit_dir=${SLURM_SUBMIT_DIR:-$PWD}
    local bin=${METATRAIN:-$submit_dir/build/metatrain}
    local launcher=${METATRAIN_LAUNCHER:-mpirun}
    local status_file pid status code
    # One OpenBLAS thread per rank (metatrain sets this itself unless the variable is set).
    export OPENBLAS_NUM_THREADS=1
    # HDF5 file locking fails on NFS, Lustre and GPFS. metatrain does not need it: a run holds
    # an fcntl lock on run.dir/run.lock (one job per run directory) and checkpoints are renamed
    # into place only when complete.
    export HDF5_USE_FILE_LOCKING=FALSE
    # mpirun answers SIGTERM (scancel, preemption, the time limit) by passing it to the ranks
    # and SIGKILLing them this many seconds later: long enough for a checkpoint to finish.
    # (mpirun then takes about twice this long to exit; Slurm's KillWait, 30 s by default,
    # must be larger.)
    export OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-10}

    # The launcher. mpirun inside an allocation takes its ranks and hosts from Slurm (no -np).
    # srun --mpi=pmix starts the ranks as a Slurm job step (needs an Open MPI built with PMIx,
    # as Debian's is): Slurm then sees and signals every rank itself, and `scancel --signal=USR1
    # JOBID` reaches them directly. Both forward USR1 to every rank; both exit with the ranks'
    # status.
    local launch
    case "$launcher" in
        mpirun) launch=(mpirun) ;;
        srun) launch=(srun --mpi=pmix) ;;
        *) echo "METATRAIN_LAUNCHER=$launcher: expected mpirun or srun" >&2; exit 2 ;;
    esac

    cd "$submit_dir" || exit 1
    echo "job ${SLURM_JOB_ID:-none} (restart ${SLURM_RESTART_COUNT:-0})" \
        "on ${SLURM_JOB_NODELIST:-$(hostname)}: ${launch[*]} metatrain $*"

    # metatrain's own exit status, written by rank 0: mpirun exits 1 whenever it was signalled
    # itself, even after the ranks checkpointed and exited 75.
    # (In the submit directory: rank 0 may run on another node.)
    status_file=$(mktemp "$submit_dir/.metatrain-status.XXXXXX") || exit 1
    trap 'rm -f "$status_file"' EXIT

    # The launcher runs in the background so this shell can take signals and pass them on as
    # USR1; the ranks checkpoint at the next iteration and exit with status 75.
    # (--resume auto is the default: a requeued job continues from the newest checkpoint.)
    "${launch[@]}" "$bin" "$@" --status-file "$status_file" &
    pid=$!
    trap 'echo "time limit near: asking metatrain to checkpoint"; kill -USR1 "$pid" 2>/dev/null' \
        USR1
    trap 'echo "terminated: asking metatrain to checkpoint"; kill -USR1 "$pid" 2>/dev/null' \
        TERM INT HUP
    # wait returns early when a trap runs; wait again until the launcher has really finished.
    while :; do
        wait "$pid"
        status=$?
        kill -0 "$pid" 2>/dev/null || break
    done
    # metatrain's status wins when it reports a failure or a stop (1, 2, 75): it knows best.
    code=
    read -r code _ < "$status_file" 2>/dev/null
    if [ -n "$code" ] && [ "$code" -ne 0 ]; then status=$code; fi

    if [ "$status" -eq 75 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
        echo "exit status 75: checkpointed; requeueing job $SLURM_JOB_ID"
        scontrol requeue "$SLURM_JOB_ID"
    elif [ "$status" -eq 75 ]; then
        echo "exit status 75: checkpointed; run the same command again to continue"
    fi
    exit "$status"
}
