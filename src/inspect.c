/*
 * inspect.c — `metatrain inspect CKPT`: what a checkpoint holds, without training anything:
 * its step, seed and the rank count that wrote it, the model layout, the resolved config,
 * and whether the checksums hold (reading verifies them). --json prints one object.
 */
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "common.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: metatrain inspect CKPT [--json]\n"
                 "\n"
                 "Prints a checkpoint's step, seed, the number of ranks that wrote it, its format\n"
                 "version, the model layout (tensor, kind, offset, shape), whether it holds optimizer\n"
                 "state, and the resolved config it was trained with. Reading verifies the checksums\n"
                 "(of the vectors, and of the metadata: attributes, config and layout; files written\n"
                 "before format version 3 have no metadata checksum): a damaged file is reported\n"
                 "(exit status 2).\n"
                 "  --json    one JSON object: path, format_version, step, seed, world_size,\n"
                 "            program_version, run_id, dataset, input_shape, parameters, optimizer_state,\n"
                 "            checksums, metadata_checksum, tensors, config\n");
}

int mt_inspect_main(const mt_dist *d, int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            if (d->rank == 0) usage(stdout);
            return MT_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (argv[i][0] == '-' || path) {
            mt_cli_error(d, "unexpected argument '%s' (see metatrain inspect --help)", argv[i]);
            return MT_EXIT_USAGE;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        mt_cli_error(d, "inspect needs a checkpoint (see metatrain inspect --help)");
        return MT_EXIT_USAGE;
    }
    if (d->rank != 0) return mt_dist_all(d, 1) ? MT_EXIT_OK : MT_EXIT_USAGE;
    mt_checkpoint ck;
    char err[MT_ERR_LEN];
    int ok = mt_checkpoint_read(path, &ck, err, sizeof err) == 0;
    if (!mt_dist_all(d, ok)) {
        mt_cli_error(d, "%s", err);
        return MT_EXIT_USAGE;
    }
    const char *state = ck.m ? "Adam moments (m, v)" : "none";
    const char *meta = ck.meta_checked ? "ok" : "absent (older file)";
    char shape[64] = "not recorded (older file)";
    if (ck.input_shape[0] > 0)
        snprintf(shape, sizeof shape, "%dx%dx%d (CxHxW)", ck.input_shape[0], ck.input_shape[1], ck.input_shape[2]);
    if (json) {
        printf("{\"path\": ");
        mt_cli_json_string(path);
        printf(", \"format_version\": %d, \"step\": %ld, \"seed\": %llu, \"world_size\": %d, \"program_version\": ",
               ck.version, ck.step, (unsigned long long)ck.seed, ck.world_size);
        mt_cli_json_string(ck.program_version);
        printf(", \"run_id\": ");
        mt_cli_json_string(ck.run_id);
        printf(", \"dataset\": ");
        mt_cli_json_string(ck.dataset);
        if (ck.input_shape[0] > 0)
            printf(", \"input_shape\": [%d, %d, %d]", ck.input_shape[0], ck.input_shape[1], ck.input_shape[2]);
        else
            printf(", \"input_shape\": null");
        printf(", \"parameters\": %zu, \"optimizer_state\": %s, \"checksums\": \"ok\", \"metadata_checksum\": \"%s\", "
               "\"tensors\": [",
               ck.n_params, ck.m ? "true" : "false", ck.meta_checked ? "ok" : "absent");
        for (int i = 0; i < ck.n_tensors; i++) {
            const mt_tensor_info *t = &ck.tensors[i];
            printf("%s{\"name\": ", i ? ", " : "");
            mt_cli_json_string(t->name);
            printf(", \"kind\": ");
            mt_cli_json_string(t->kind);
            printf(", \"offset\": %zu, \"shape\": [", t->offset);
            for (int j = 0; j < t->ndim; j++) printf("%s%d", j ? ", " : "", t->shape[j]);
            printf("]}");
        }
        printf("], \"config\": ");
        mt_cli_json_string(ck.config);
        printf("}\n");
    } else {
        printf("checkpoint %s\n  format version %d, written by metatrain %s on %d rank%s\n"
               "  iteration %ld, seed %llu, %zu parameters, optimizer state: %s\n"
               "  run id: %s (a run prunes only its own checkpoints)\n"
               "  tasks from: %s\n  input shape: %s\n  checksums: ok\n  metadata checksum: %s\n\n"
               "  %-26s %-10s %10s  %s\n",
               path, ck.version, ck.program_version, ck.world_size, ck.world_size == 1 ? "" : "s", ck.step,
               (unsigned long long)ck.seed, ck.n_params, state, ck.run_id[0] ? ck.run_id : "(not recorded)",
               ck.dataset[0] ? ck.dataset : "(not recorded)", shape,
               meta, "tensor", "kind", "offset", "shape");
        for (int i = 0; i < ck.n_tensors; i++) {
            const mt_tensor_info *t = &ck.tensors[i];
            printf("  %-26s %-10s %10zu  ", t->name, t->kind, t->offset);
            for (int j = 0; j < t->ndim; j++) printf("%s%d", j ? "x" : "", t->shape[j]);
            printf("\n");
        }
        printf("\nconfig:\n%s", ck.config);
    }
    mt_checkpoint_free(&ck);
    return MT_EXIT_OK;
}
