/* test_fewshot.c — the N-way K-shot sampler: distinct classes and images, labels, layout,
 * rotations, and that a task depends only on (seed, purpose, iteration, task); augmentation:
 * every image of an augmented task is its unaugmented self mirrored and/or shifted within
 * the padding (zeros coming in), the classes and images are the same, and evaluation
 * tasks are never augmented. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fewshot.h"
#include "testutil.h"

enum { CLASSES = 7, PER_CLASS = 9, S = 16 }; /* images are 1×S×S */

/* Image i of class k: pixel (0,0) = 10 + k, pixel (0,1) = 100 + i, pixel (1,0) = 200, the
 * rest 0: asymmetric, so every rotation is distinct and decodable. */
static void make_set(mt_image_set *s, uint8_t *images, int64_t *offsets, int rotations)
{
    memset(images, 0, (size_t)CLASSES * PER_CLASS * S * S);
    for (int k = 0; k < CLASSES; k++) {
        offsets[k] = (int64_t)k * PER_CLASS;
        for (int i = 0; i < PER_CLASS; i++) {
            uint8_t *img = images + ((size_t)k * PER_CLASS + i) * S * S;
            img[0] = (uint8_t)(10 + k), img[1] = (uint8_t)(100 + i), img[S] = 200;
        }
    }
    offsets[CLASSES] = (int64_t)CLASSES * PER_CLASS;
    *s = (mt_image_set){.images = images, .class_offsets = offsets, .n_classes = CLASSES, .C = 1, .H = S, .W = S,
                        .rotations = rotations};
}

/* Pixel (h, w) of example n of a CNHW task array with N examples, as the uint8 it came from. */
static int px(const float *x, int n, int h, int w) { return (int)(x[(size_t)n * S * S + h * S + w] * 255.0f + 0.5f); }

/* Decodes an example: class, image index and rotation (0..3), from where the three marker
 * pixels ended up; -1 if the example is not a rotated source image. */
static int decode(const float *x, int n, int *klass, int *index, int *rot)
{
    /* Corner positions of source (0,0), (0,1), (1,0) after r quarter turns (counter-clockwise). */
    static const int at[4][3][2] = {{{0, 0}, {0, 1}, {1, 0}},
                                    {{S - 1, 0}, {S - 2, 0}, {S - 1, 1}},
                                    {{S - 1, S - 1}, {S - 1, S - 2}, {S - 2, S - 1}},
                                    {{0, S - 1}, {1, S - 1}, {0, S - 2}}};
    for (int r = 0; r < 4; r++) {
        int k = px(x, n, at[r][0][0], at[r][0][1]) - 10, i = px(x, n, at[r][1][0], at[r][1][1]) - 100;
        if (k < 0 || k >= CLASSES || i < 0 || i >= PER_CLASS || px(x, n, at[r][2][0], at[r][2][1]) != 200) continue;
        int nonzero = 0;
        for (int p = 0; p < S * S; p++) nonzero += x[(size_t)n * S * S + p] != 0.0f;
        if (nonzero != 3) return -1;
        *klass = k, *index = i, *rot = r;
        return 0;
    }
    return -1;
}

/* Checks one task: ways distinct (class, rotation) pairs, shots + query distinct images per
 * class, all from that class and rotation, labels j for class j. */
static int check_task(const mt_task *t, int ways, int shots, int query, int rotations)
{
    int ok = 1;
    int cls[64], rot[64];
    for (int j = 0; j < ways; j++) {
        int seen[PER_CLASS] = {0};
        for (int e = 0; e < shots + query; e++) {
            const int support = e < shots;
            const float *x = support ? t->xs : t->xq;
            const float *y = support ? t->ys : t->yq;
            const int n = support ? j * shots + e : j * query + e - shots, N = support ? t->n_support : t->n_query;
            (void)N;
            int k, i, r;
            if (decode(x, n, &k, &i, &r) != 0) return 0;
            if (y[n] != (float)j) ok = 0;
            if (!rotations && r != 0) ok = 0;
            if (e == 0) cls[j] = k, rot[j] = r;
            else if (k != cls[j] || r != rot[j]) ok = 0;
            if (seen[i]++) ok = 0; /* an image twice in one class */
        }
        for (int q = 0; q < j; q++)
            if (cls[q] == cls[j] && rot[q] == rot[j]) ok = 0; /* a class twice in one task */
    }
    return ok;
}

/* 1 iff example n of the augmented array a is example n of the plain array x (both CNHW, 1×S×S,
 * N examples) mirrored if flip and shifted by (dy, dx) with zeros coming in. */
static int is_placed(const float *a, const float *x, int n, int flip, int dy, int dx)
{
    for (int h = 0; h < S; h++)
        for (int w = 0; w < S; w++) {
            const int th = h - dy, tw = w - dx;
            const float want = th < 0 || th >= S || tw < 0 || tw >= S ? 0.0f : x[(size_t)n * S * S + th * S + (flip ? S - 1 - tw : tw)];
            if (a[(size_t)n * S * S + h * S + w] != want) return 0;
        }
    return 1;
}

/* Augmentation with padding p and flips on 40 tasks of random images: every example is a
 * placement of its plain self with |dy|, |dx| <= p (the only one: random pixels), labels as
 * plain; over the tasks flips, no flips, every shift within the padding and none beyond. */
static void check_augment(void)
{
    enum { P = 2 };
    uint8_t *images = mt_malloc((size_t)CLASSES * PER_CLASS * S * S);
    int64_t offsets[CLASSES + 1];
    mt_image_set set;
    make_set(&set, images, offsets, 0);
    for (size_t i = 0; i < (size_t)CLASSES * PER_CLASS * S * S; i++) images[i] = (uint8_t)(1 + (i * 2654435761u >> 13) % 255);
    const mt_augment aug = {P, 1}, none = {0, 0};
    mt_task_buffer plain, b;
    mt_task_buffer_init(&plain, 5 * 2, 5 * 3, S * S, 1);
    mt_task_buffer_init(&b, 5 * 2, 5 * 3, S * S, 1);
    int ok = 1, flips = 0, kept = 0, shifts[2 * P + 1][2 * P + 1] = {{0}};
    for (uint32_t t = 0; t < 40; t++) {
        mt_fewshot_fill(&plain, &set, 5, 2, 3, NULL, 42, MT_STREAM_TRAIN, 3, t);
        mt_fewshot_fill(&b, &set, 5, 2, 3, &aug, 42, MT_STREAM_TRAIN, 3, t);
        ok &= memcmp(plain.task.ys, b.task.ys, 10 * sizeof(float)) == 0 &&
              memcmp(plain.task.yq, b.task.yq, 15 * sizeof(float)) == 0;
        for (int set_i = 0; set_i < 2; set_i++) {
            const int N = set_i ? 15 : 10;
            const float *a = set_i ? b.task.xq : b.task.xs, *x = set_i ? plain.task.xq : plain.task.xs;
            for (int n = 0; n < N; n++) {
                int found = 0;
                for (int f = 0; f < 2; f++)
                    for (int dy = -P - 1; dy <= P + 1; dy++)
                        for (int dx = -P - 1; dx <= P + 1; dx++)
                            if (is_placed(a, x, n, f, dy, dx)) {
                                found++;
                                if (abs(dy) > P || abs(dx) > P) ok = 0; /* beyond the padding */
                                else shifts[dy + P][dx + P]++;
                                flips += f, kept += !f;
                            }
                ok &= found == 1;
            }
        }
    }
    int every_shift = 1;
    for (int i = 0; i < 2 * P + 1; i++)
        for (int j = 0; j < 2 * P + 1; j++) every_shift &= shifts[i][j] > 0;
    printf("     1000 augmented images: %d mirrored, %d not\n", flips, kept);
    tu_expect(ok, "augmented tasks: every image is its plain self mirrored or not and shifted by at most 2, "
                  "zeros coming in; the labels are the plain task's");
    tu_expect(flips > 400 && kept > 400, "about half the images are mirrored");
    tu_expect(every_shift, "every shift in [-2, 2] x [-2, 2] occurs");

    mt_fewshot_fill(&plain, &set, 5, 2, 3, NULL, 42, MT_STREAM_EVAL, 3, 5);
    mt_fewshot_fill(&b, &set, 5, 2, 3, &aug, 42, MT_STREAM_EVAL, 3, 5);
    const size_t bytes = ((size_t)(10 + 15) * (S * S + 1)) * sizeof(float);
    tu_expect(memcmp(plain.slab, b.slab, bytes) == 0, "evaluation tasks are not augmented");
    mt_fewshot_fill(&plain, &set, 5, 2, 3, NULL, 42, MT_STREAM_TRAIN, 3, 5);
    mt_fewshot_fill(&b, &set, 5, 2, 3, &none, 42, MT_STREAM_TRAIN, 3, 5);
    tu_expect(memcmp(plain.slab, b.slab, bytes) == 0, "an all-zero augmentation is none");
    mt_fewshot_fill(&b, &set, 5, 2, 3, &aug, 42, MT_STREAM_TRAIN, 3, 5);
    mt_fewshot_fill(&plain, &set, 5, 2, 3, &aug, 42, MT_STREAM_TRAIN, 3, 6);
    mt_fewshot_fill(&plain, &set, 5, 2, 3, &aug, 42, MT_STREAM_TRAIN, 3, 5);
    tu_expect(memcmp(plain.slab, b.slab, bytes) == 0, "an augmented task depends on its coordinates alone");
    mt_task_buffer_free(&plain);
    mt_task_buffer_free(&b);
    free(images);
}

int main(void)
{
    uint8_t *images = mt_malloc((size_t)CLASSES * PER_CLASS * S * S);
    int64_t offsets[CLASSES + 1];
    mt_image_set set;
    char err[256];

    /* Plain classes: 5-way 2-shot 3-query; 50 tasks. */
    make_set(&set, images, offsets, 0);
    tu_expect(mt_fewshot_n_classes(&set) == CLASSES, "without rotations the set has its own classes");
    tu_expect(mt_fewshot_check(&set, 5, 2, 3, err, sizeof err) == 0, "5-way 2-shot 3-query fits the set");
    mt_task_buffer b, b2;
    mt_task_buffer_init(&b, 5 * 2, 5 * 3, S * S, 1);
    mt_task_buffer_init(&b2, 5 * 2, 5 * 3, S * S, 1);
    int all_ok = 1, classes_used[CLASSES] = {0};
    for (uint32_t t = 0; t < 50; t++) {
        mt_fewshot_fill(&b, &set, 5, 2, 3, NULL, 42, MT_STREAM_TRAIN, 3, t);
        all_ok &= check_task(&b.task, 5, 2, 3, 0);
        int k, i, r;
        for (int j = 0; j < 5; j++)
            if (decode(b.task.xs, j * 2, &k, &i, &r) == 0) classes_used[k]++;
    }
    tu_expect(all_ok, "50 tasks: distinct classes, distinct images per class, labels 0..4, right layout");
    int every = 1;
    for (int k = 0; k < CLASSES; k++) every &= classes_used[k] > 0;
    tu_expect(every, "every class is drawn at some point");

    /* Same coordinates, same task; any coordinate changed, a different task. */
    mt_fewshot_fill(&b, &set, 5, 2, 3, NULL, 42, MT_STREAM_TRAIN, 3, 17);
    mt_fewshot_fill(&b2, &set, 5, 2, 3, NULL, 42, MT_STREAM_TRAIN, 3, 16); /* something else in between */
    mt_fewshot_fill(&b2, &set, 5, 2, 3, NULL, 42, MT_STREAM_TRAIN, 3, 17);
    const size_t bytes = ((size_t)(10 + 15) * (S * S + 1)) * sizeof(float);
    tu_expect(memcmp(b.slab, b2.slab, bytes) == 0, "(seed, purpose, iteration, task) alone decides the task");
    mt_fewshot_fill(&b2, &set, 5, 2, 3, NULL, 42, MT_STREAM_EVAL, 3, 17);
    int differs = memcmp(b.slab, b2.slab, bytes) != 0;
    mt_fewshot_fill(&b2, &set, 5, 2, 3, NULL, 43, MT_STREAM_TRAIN, 3, 17);
    differs &= memcmp(b.slab, b2.slab, bytes) != 0;
    mt_fewshot_fill(&b2, &set, 5, 2, 3, NULL, 42, MT_STREAM_TRAIN, 4, 17);
    differs &= memcmp(b.slab, b2.slab, bytes) != 0;
    tu_expect(differs, "purpose, seed and iteration each change the task");

    /* Rotations: 4 × 7 classes; tasks use rotated images consistently within a class. */
    make_set(&set, images, offsets, 1);
    tu_expect(mt_fewshot_n_classes(&set) == 4 * CLASSES, "rotations make 4x the classes");
    mt_task_buffer_free(&b);
    mt_task_buffer_init(&b, 20 * 1, 20 * 2, S * S, 1);
    all_ok = 1;
    int rot_used[4] = {0};
    for (uint32_t t = 0; t < 30; t++) {
        mt_fewshot_fill(&b, &set, 20, 1, 2, NULL, 7, MT_STREAM_TRAIN, 0, t);
        all_ok &= check_task(&b.task, 20, 1, 2, 1);
        for (int j = 0; j < 20; j++) {
            int k, i, r;
            if (decode(b.task.xs, j, &k, &i, &r) == 0) rot_used[r]++;
        }
    }
    tu_expect(all_ok, "20-way tasks with rotations are valid (rotated images decode to one class)");
    tu_expect(rot_used[0] && rot_used[1] && rot_used[2] && rot_used[3], "all four rotations occur");

    /* What the set cannot serve is refused with a reason. */
    tu_expect(mt_fewshot_check(&set, 29, 1, 1, err, sizeof err) != 0 && strstr(err, "classes"),
              "more ways than classes is refused");
    printf("     message: %s\n", err);
    tu_expect(mt_fewshot_check(&set, 5, 5, 5, err, sizeof err) != 0 && strstr(err, "images"),
              "more shots + query than images per class is refused");
    printf("     message: %s\n", err);
    mt_image_set wide = set;
    wide.W = S / 2;
    tu_expect(mt_fewshot_check(&wide, 5, 1, 1, err, sizeof err) != 0 && strstr(err, "square"),
              "rotations of non-square images are refused");

    mt_task_buffer_free(&b);
    mt_task_buffer_free(&b2);
    free(images);
    check_augment();
    return tu_finish();
}
