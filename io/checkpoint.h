/*
 * checkpoint.h — metatrain checkpoints: one HDF5 file per saved step.
 *
 * Layout (format "metatrain-checkpoint", format_version 3; inspect with h5dump):
 *   /params          float32 [P]   the meta-parameters θ
 *   /optim/m, /v     float32 [P]   Adam's moments (the Adam step count is `step`)
 *   /model           compound table, one row per parameter tensor:
 *                    name, kind, offset, size, ndim, shape[4] — enough to rebuild the layout
 *   root attributes  format, format_version, step, seed, world_size, program_version,
 *                    config (the resolved INI text: the checkpoint alone rebuilds the run),
 *                    dataset (where the tasks came from), run_id (which run wrote it: a
 *                    run prunes only its own checkpoints), input_shape (int64 [3]: C, H, W
 *                    of one input example; an MLP's is inputs, 1, 1), meta_crc32
 *   each vector      crc32: zlib's CRC-32 of its little-endian bytes, checked on read
 *   meta_crc32       CRC-32 of everything else the reader trusts, in a canonical order: each
 *                    integer as 8 little-endian bytes, each string as its length (8 bytes)
 *                    and its bytes: format, format_version, step, seed, world_size,
 *                    program_version, config, dataset, input_shape[3], run_id, the tensor count,
 *                    then per /model row name, kind, offset, size, ndim, shape[4]
 *
 * Written by all ranks together: rank 0 lays out <path>.partial (HDF5 builds the file image
 * in memory: attributes, the /model table, the three vectors' storage allocated contiguously;
 * rank 0 writes it around the vectors with POSIX calls after reserving the whole file's
 * space); then every rank writes its shard [lo, hi) of each vector at the vector's file
 * address with pwrite and fsyncs it (one file, any rank count); the CRCs of the shards are
 * combined in rank order. After every rank's fsync succeeded, rank 0 fsyncs the file, renames
 * it and fsyncs the directory, so a crash or a failure never leaves a truncated file under
 * the final name. The ranks agree (MPI_LAND) after each stage and no rank is ever inside a
 * collective HDF5 call or an HDF5 file close that can fail, so a failure on one rank fails
 * all of them with a message naming the errno instead of a hang or a crash. Non-finite values
 * are never written. Version 1 files (θ only) and version 2 files (without run_id,
 * input_shape and meta_crc32) still read.
 *
 * The reader trusts nothing in the file: every attribute's class, size and range, the
 * table's datatype and shape and every row, and each vector's type, rank and length are
 * checked against the layout (and against overflow) before anything is allocated or read,
 * and the config text must parse and agree with the seed attribute.
 */
#ifndef MT_CHECKPOINT_H
#define MT_CHECKPOINT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define MT_CKPT_FORMAT "metatrain-checkpoint"
#define MT_CKPT_VERSION 3
#define MT_RUN_ID_LEN 40
#define MT_CKPT_MAX_PARAMS 2147483647L /* INT_MAX: what one MPI call can move */
#define MT_CKPT_MAX_STEP 4294967295L   /* the largest run.iterations */
#define MT_CKPT_MAX_WORLD 16777216     /* ranks */
#define MT_CKPT_MAX_TENSORS (2 * MT_MAX_OPS)
#define MT_CKPT_MAX_CONFIG (16L << 20) /* bytes of config text */

typedef struct {
    long step;        /* completed meta-iterations (= Adam steps taken) */
    uint64_t seed;
    int world_size;   /* ranks that wrote it */
    int version;      /* format_version read */
    char program_version[32];
    char *config;     /* resolved INI text, malloc'd */
    char dataset[1200]; /* what the tasks came from: "dataset FILE split NAME" or the generator */
    char run_id[MT_RUN_ID_LEN]; /* the run that wrote it ("" in files before run ids) */
    size_t n_params;
    float *params;    /* [n_params], malloc'd */
    float *m, *v;     /* [n_params] Adam moments (version 2), malloc'd; NULL if absent */
    int n_tensors;
    mt_tensor_info *tensors; /* [n_tensors] the stored layout, malloc'd; kind points into a static */
    int input_shape[3]; /* C, H, W of one input example (version 3); zeros: the file predates it */
    int meta_checked;   /* 1: meta_crc32 held; 0: the file predates it (version < 3) */
} mt_checkpoint;

/* What a writer contributes: this process's shard [lo, hi) of θ (given whole) and of Adam's
 * moments (given as the shard only; NULL: no optimizer state). comm is the communicator of
 * the ranks that write together, or MPI_COMM_NULL for a single writer with lo = 0, hi = P. */
typedef struct {
    MPI_Comm comm;
    size_t lo, hi;
    const float *m_shard, *v_shard; /* [hi − lo] */
} mt_checkpoint_shard;

/* Collective over sh->comm. Writes a checkpoint of model m with parameters params[P] to
 * path (atomically: path.partial, fsync, rename). ck supplies step, seed, world_size,
 * config and dataset; its other fields are ignored (the input shape comes from m). Returns 0 on every rank, or -1 on every rank with a
 * message in err (on the rank that saw the problem; rank 0 says at least that it failed). */
int mt_checkpoint_write(const char *path, const mt_model *m, const float *params, const mt_checkpoint_shard *sh,
                        const mt_checkpoint *ck, char *err, size_t errlen);

/* Reads and validates a checkpoint (format, version, checksums, layout consistency).
 * Returns 0 and fills ck (free with mt_checkpoint_free), or -1 with a message in err that
 * names the file and what is wrong with it (ck is then zeroed). */
int mt_checkpoint_read(const char *path, mt_checkpoint *ck, char *err, size_t errlen);

/* Frees what mt_checkpoint_read allocated; accepts NULL and a zeroed struct. */
void mt_checkpoint_free(mt_checkpoint *ck);

/* Returns 0 if the stored layout equals model m's and so does the input shape (when the file
 * records it), or -1 with the first difference in err. */
int mt_checkpoint_match_model(const mt_checkpoint *ck, const mt_model *m, char *err, size_t errlen);

/* zlib's CRC-32 crc continued over p[n], for any n (zlib's crc32 takes less than 4 GiB per
 * call; the vectors of a large model are longer). */
uint32_t mt_checkpoint_crc32(uint32_t crc, const void *p, size_t n);

/* "<dir>/ckpt-<step, 8 digits>.h5" into out. */
void mt_checkpoint_path(char *out, size_t len, const char *dir, long step);

/* Deletes all but the newest `keep` checkpoints of run run_id in dir: ckpt-*.h5 files whose
 * run_id attribute equals it (other runs' files, older files without a run id and files that
 * cannot be read are never touched). Returns the number deleted, or -1 with err. */
int mt_checkpoint_prune(const char *dir, int keep, const char *run_id, char *err, size_t errlen);

/* The run_id attribute of the checkpoint at path into out ("" when absent). 0, or -1 when
 * the file cannot be opened as HDF5. */
int mt_checkpoint_read_run_id(const char *path, char *out, size_t len);

/* Returns 0 if θ and the moments of ck are all finite, or -1 with the first bad index in err. */
int mt_checkpoint_check_finite(const mt_checkpoint *ck, char *err, size_t errlen);

/* A new run id: 32 hex digits from the system's random source (time and pid if it fails). */
void mt_checkpoint_new_run_id(char out[MT_RUN_ID_LEN]);

/* Steps of the checkpoints in dir, newest first, at most max of them; 0 when there are none
 * (or no such directory). */
long mt_checkpoint_steps(const char *dir, long *steps, long max);

#endif
