/*
 * main.c — the metatrain command: MPI set-up, then one subcommand.
 *
 *   metatrain train [CONFIG] [--set section.key=value]...
 *   metatrain eval CKPT [--tasks N] [--json]
 *   metatrain finetune CKPT [--ways W] [--shots K] [--freeze LAYERS] ...
 *   metatrain inspect CKPT [--json]
 *   metatrain data import|info ...
 *
 * Every rank runs main; only rank 0 prints. All ranks return the same exit status.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "dist.h"

static void usage(FILE *out)
{
    fprintf(out,
            "metatrain %s — distributed meta-learning (MAML and its family) on MPI ranks\n"
            "\n"
            "usage: metatrain COMMAND [ARGS]   (run under mpirun/srun for several ranks)\n"
            "\n"
            "commands:\n"
            "  train [CONFIG]   meta-train; without CONFIG the built-in sinusoid MAML default\n"
            "  sweep CONFIG     train every point of a sweep (task distributions, hyper-parameters)\n"
            "                   side by side in one allocation; sweep.csv holds the results\n"
            "  eval CKPT        adapt a checkpoint to fresh tasks; mean and 95%% CI of the loss\n"
            "  finetune CKPT    transfer learning: train a checkpoint on a few labelled images of new\n"
            "                   classes, layers frozen or not; held-out accuracy, a new checkpoint\n"
            "  inspect CKPT     a checkpoint's step, ranks, layout, config; verifies its checksums\n"
            "  data import|info build a few-shot dataset file (IDX, Omniglot, image folders), describe one\n"
            "  help             this text; `metatrain COMMAND --help` explains a command\n"
            "  version          print the version\n"
            "\n"
            "example:\n"
            "  mpirun -np 2 metatrain train --set run.iterations=2000\n"
            "  metatrain eval runs/sinusoid_maml/ckpt-00002000.h5 --tasks 1000\n"
            "\n"
            "Each rank uses one OpenBLAS thread unless OPENBLAS_NUM_THREADS is set.\n"
            "Exit status: 0 success, 1 runtime failure, 2 bad input (usage, config, files).\n",
            MT_VERSION);
}

int main(int argc, char **argv)
{
    /* Ranks are the parallelism; one BLAS thread each also keeps results deterministic. */
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    mt_dist d;
    mt_dist_init(&d, &argc, &argv);
    int rc;
    const char *cmd = argc > 1 ? argv[1] : NULL;
    if (!cmd) {
        if (d.rank == 0) usage(stderr);
        rc = MT_EXIT_USAGE;
    } else if (strcmp(cmd, "train") == 0) {
        rc = mt_train_main(&d, argc - 2, argv + 2);
    } else if (strcmp(cmd, "sweep") == 0) {
        rc = mt_sweep_main(&d, argc - 2, argv + 2);
    } else if (strcmp(cmd, "eval") == 0) {
        rc = mt_eval_main(&d, argc - 2, argv + 2);
    } else if (strcmp(cmd, "finetune") == 0) {
        rc = mt_finetune_main(&d, argc - 2, argv + 2);
    } else if (strcmp(cmd, "inspect") == 0) {
        rc = mt_inspect_main(&d, argc - 2, argv + 2);
    } else if (strcmp(cmd, "data") == 0) {
        rc = mt_data_main(&d, argc - 2, argv + 2);
    } else if (strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        if (d.rank == 0) usage(stdout);
        rc = MT_EXIT_OK;
    } else if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        if (d.rank == 0) printf("metatrain %s\n", MT_VERSION);
        rc = MT_EXIT_OK;
    } else {
        mt_cli_error(&d, "unknown command '%s' (commands: train, sweep, eval, finetune, inspect, data, help, version)", cmd);
        rc = MT_EXIT_USAGE;
    }
    mt_dist_finalize(&d);
    return rc;
}
