/*
 * make_checkpoint_seeds.c — writes the seed corpus of fuzz_checkpoint.c: valid checkpoints
 * of small models, small enough (a few KB) for a fuzzer to mutate usefully.
 *
 *   make_checkpoint_seeds DIR
 *
 *   mlp_v3.h5          MLP 1-4-4-1 (33 parameters), format version 3, θ only
 *   mlp_v3_adam.h5     the same with Adam's moments
 *   mlp_v2_adam.h5     the same as version 2 wrote it (no input_shape, no meta_crc32)
 *   conv4_v3_adam.h5   Conv4 on 1x16x16 images, 1 filter, 2 ways (52 parameters), with moments
 *
 * Build by hand against a build's libraries (not part of the normal build):
 *   mpicc -Iio -Isrc -I/usr/include/hdf5/openmpi tests/fuzz/make_checkpoint_seeds.c BUILD/libmt_io.a \
 *         BUILD/libmt_core.a -L/usr/lib/x86_64-linux-gnu/hdf5/openmpi -lhdf5 -lz -lopenblas -linih -lm
 */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "model.h"

/* Writes DIR/name of model m (θ and, if adam, moments from a fixed pattern); 0, or -1. */
static int seed(const char *dir, const char *name, const mt_model *m, int adam, const char *arch_keys)
{
    const size_t P = m->n_params;
    float *p = mt_malloc(3 * P * sizeof *p);
    for (size_t i = 0; i < 3 * P; i++) p[i] = 0.01f * (float)((long)(i % 37) - 18);
    mt_config c;
    mt_config_defaults(&c);
    c.seed = 7;
    char *text = mt_config_format(&c), err[MT_ERR_LEN] = "", path[4096];
    mt_checkpoint ck = {.step = 3, .seed = 7, .world_size = 1, .config = text};
    snprintf(ck.dataset, sizeof ck.dataset, "%s", arch_keys);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mt_checkpoint_shard sh = {MPI_COMM_NULL, 0, P, adam ? p + P : NULL, adam ? p + 2 * P : NULL};
    int rc = mt_checkpoint_write(path, m, p, &sh, &ck, err, sizeof err);
    if (rc != 0) fprintf(stderr, "make_checkpoint_seeds: %s\n", err);
    free(text);
    free(p);
    return rc;
}

/* Rewrites DIR/name as format version 2 wrote it. */
static int downgrade(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = f >= 0 ? H5Aopen(f, "format_version", H5P_DEFAULT) : -1;
    const int64_t two = 2;
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &two) >= 0 && H5Aclose(a) >= 0 &&
             H5Adelete(f, "meta_crc32") >= 0 && H5Adelete(f, "input_shape") >= 0;
    if (f >= 0 && H5Fclose(f) < 0) ok = 0;
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_checkpoint_seeds DIR\n");
        return 2;
    }
    mt_model mlp, conv;
    if (mt_model_mlp(&mlp, 1, 4, 1) != 0 || mt_model_conv4(&conv, 1, 16, 16, 1, 2) != 0) return 1;
    const char *dir = argv[1];
    int rc = seed(dir, "mlp_v3.h5", &mlp, 0, "sinusoid generator") | seed(dir, "mlp_v3_adam.h5", &mlp, 1, "sinusoid generator") |
             seed(dir, "mlp_v2_adam.h5", &mlp, 1, "sinusoid generator") | downgrade(dir, "mlp_v2_adam.h5") |
             seed(dir, "conv4_v3_adam.h5", &conv, 1, "dataset tiny.h5 split train");
    return rc ? 1 : 0;
}
