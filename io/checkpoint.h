/*
 * checkpoint.h — metatrain checkpoints: one HDF5 file per saved step.
 *
 * Layout (format "metatrain-checkpoint", format_version 1; inspect with h5dump):
 *   /params          float32 [P]   the meta-parameters θ (chunked, Fletcher-32 checksummed)
 *   /model           compound table, one row per parameter tensor:
 *                    name, kind, offset, size, ndim, shape[4] — enough to rebuild the layout
 *   root attributes  format, format_version, step, seed, world_size, program_version,
 *                    config (the resolved INI text: the checkpoint alone rebuilds the run)
 *
 * Files are written as <path>.partial, flushed with fsync and renamed, so a crash never
 * leaves a truncated file under the final name. Every HDF5 call is checked; failures come
 * back as a message naming the file, never as HDF5's error stack.
 *
 * This version is written by a single rank; the sharded, collectively written and
 * resumable format (optimizer moments) extends it.
 */
#ifndef MT_CHECKPOINT_H
#define MT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define MT_CKPT_FORMAT "metatrain-checkpoint"
#define MT_CKPT_VERSION 1

typedef struct {
    long step;        /* completed meta-iterations */
    uint64_t seed;
    int world_size;   /* ranks that wrote it */
    char program_version[32];
    char *config;     /* resolved INI text, malloc'd */
    size_t n_params;
    float *params;    /* [n_params], malloc'd */
    int n_tensors;
    mt_tensor_info *tensors; /* [n_tensors] the stored layout, malloc'd; kind points into a static */
} mt_checkpoint;

/* Writes a checkpoint of model m with parameters params[m->n_params] to path (atomically:
 * path.partial, fsync, rename). ck supplies step, seed, world_size and config; its params
 * and tensors are ignored. Returns 0, or -1 with a message in err. */
int mt_checkpoint_write(const char *path, const mt_model *m, const float *params, const mt_checkpoint *ck,
                        char *err, size_t errlen);

/* Reads and validates a checkpoint (format, version, checksums, layout consistency).
 * Returns 0 and fills ck (free with mt_checkpoint_free), or -1 with a message in err. */
int mt_checkpoint_read(const char *path, mt_checkpoint *ck, char *err, size_t errlen);

/* Frees what mt_checkpoint_read allocated; accepts NULL and a zeroed struct. */
void mt_checkpoint_free(mt_checkpoint *ck);

/* Returns 0 if the stored layout equals model m's, or -1 with the first difference in err. */
int mt_checkpoint_match_model(const mt_checkpoint *ck, const mt_model *m, char *err, size_t errlen);

/* "<dir>/ckpt-<step, 8 digits>.h5" into out. */
void mt_checkpoint_path(char *out, size_t len, const char *dir, long step);

/* Deletes all but the newest `keep` ckpt-*.h5 files of dir. Returns the number deleted,
 * or -1 with a message in err. */
int mt_checkpoint_prune(const char *dir, int keep, char *err, size_t errlen);

#endif
