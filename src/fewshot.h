/*
 * fewshot.h — N-way K-shot classification tasks drawn from a set of labelled images.
 *
 * Task t of iteration s: `ways` distinct classes, then for each class `shots` + `query`
 * distinct images, all drawn from the Philox stream (seed, purpose, s, t) and from nothing
 * else, so any rank draws the same task. Class j of the task gets label j; the support set
 * is class-major (class 0's shots, then class 1's, ...), and so is the query set.
 *
 * With rotations on, every class also appears rotated by 90°, 180° and 270° as three new
 * classes (the Omniglot convention of Santoro et al. and Finn et al.): class id c stands for
 * image class c / 4 turned by (c % 4)·90° counter-clockwise.
 *
 * Images are uint8 [C, H, W] in the set; tasks hold floats in [0, 1] laid out CNHW
 * ([C][N][H][W]), the layout of the conv layers.
 *
 * Augmentation (meta-training tasks only, MT_STREAM_TRAIN): each image of the task, support
 * and query, is mirrored left-right with probability 1/2 (flip) and shifted by (dy, dx),
 * each uniform in [−p, p], with zeros coming in at the edges (crop_padding p: PyTorch's
 * RandomCrop(H, padding=p) with zero fill), after its class's rotation. The draws come from
 * the task's own stream at blocks MT_RNG_AUGMENT on (rng.h): the classes and images of a
 * task are those of the task without augmentation, and any rank draws the same.
 */
#ifndef MT_FEWSHOT_H
#define MT_FEWSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"
#include "tasks.h"

typedef struct {
    const uint8_t *images;        /* [n_images, C, H, W] */
    const int64_t *class_offsets; /* [n_classes + 1]: class k is images [offsets[k], offsets[k+1]) */
    int n_classes;
    int C, H, W;
    int rotations; /* 1: add the 90/180/270° rotations of every class as new classes */
} mt_image_set;

/* Augmentation of meta-training tasks; all zero: none. */
typedef struct {
    int crop_padding; /* p >= 0: shift every image by up to p pixels each way, zero fill */
    int flip;         /* 1: mirror every image left-right with probability 1/2 */
} mt_augment;

/* Classes a task can draw from: n_classes, or 4·n_classes with rotations. */
int mt_fewshot_n_classes(const mt_image_set *s);

/* Checks that the set can make ways-way tasks with shots + query images per class (enough
 * classes, every class big enough, square images for rotations). Returns 0, or -1 with a
 * message in err. */
int mt_fewshot_check(const mt_image_set *s, int ways, int shots, int query, char *err, size_t errlen);

/* Fills b, made by mt_task_buffer_init(b, ways·shots, ways·query, C·H·W, 1), with task
 * (seed, purpose, iteration, task), augmented by aug if purpose is MT_STREAM_TRAIN (aug NULL:
 * none). The set must have passed mt_fewshot_check. */
void mt_fewshot_fill(mt_task_buffer *b, const mt_image_set *s, int ways, int shots, int query, const mt_augment *aug,
                     uint64_t seed, mt_stream purpose, uint64_t iteration, uint32_t task);

#endif
