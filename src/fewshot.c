/* fewshot.c — the N-way K-shot task sampler (see fewshot.h). */
#include "fewshot.h"

#include <assert.h>
#include <stdio.h>

int mt_fewshot_n_classes(const mt_image_set *s) { return s->n_classes * (s->rotations ? 4 : 1); }

int mt_fewshot_check(const mt_image_set *s, int ways, int shots, int query, char *err, size_t errlen)
{
    if (mt_fewshot_n_classes(s) < ways) {
        snprintf(err, errlen, "%d-way tasks need %d classes, the split has %d%s", ways, ways, mt_fewshot_n_classes(s),
                 s->rotations ? " (with rotations)" : "");
        return -1;
    }
    for (int k = 0; k < s->n_classes; k++) {
        int64_t n = s->class_offsets[k + 1] - s->class_offsets[k];
        if (n < shots + query) {
            snprintf(err, errlen, "class %d has %lld images, a task needs %d per class (%d shots + %d query)", k,
                     (long long)n, shots + query, shots, query);
            return -1;
        }
    }
    if (s->rotations && s->H != s->W) {
        snprintf(err, errlen, "rotations need square images, these are %dx%d", s->H, s->W);
        return -1;
    }
    return 0;
}

/* Uniform integer in [0, n) (multiply-shift; the bias is below 2^-32 · n). */
static uint32_t below(mt_rng *r, uint32_t n) { return (uint32_t)(((uint64_t)mt_rng_u32(r) * n) >> 32); }

/* k distinct integers from [0, n) into out, by rejection (k is small: a task's classes or a
 * class's images). Requires k <= n. */
static void distinct(mt_rng *r, uint32_t n, int k, int32_t *out)
{
    assert((uint32_t)k <= n);
    for (int i = 0; i < k; i++) {
        int32_t v;
        int seen;
        do {
            v = (int32_t)below(r, n);
            seen = 0;
            for (int j = 0; j < i && !seen; j++) seen = out[j] == v;
        } while (seen);
        out[i] = v;
    }
}

/* How one image is placed: turned by rot·90° counter-clockwise (its class), then mirrored
 * left-right if flip, then shifted by (dy, dx) with zeros coming in at the edges. */
typedef struct {
    int rot, flip, dy, dx;
} placement;

/* Copies image src [C, H, W] placed by p into the CNHW task array dst at example n of N,
 * scaled to [0, 1]. */
static void put_image(float *dst, int n, int N, const uint8_t *src, int C, int H, int W, placement p)
{
    const float scale = 1.0f / 255.0f;
    for (int c = 0; c < C; c++) {
        const uint8_t *in = src + (size_t)c * H * W;
        float *out = dst + ((size_t)c * N + n) * H * W;
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                int th = h - p.dy, tw = w - p.dx; /* the pixel of the turned, mirrored image */
                if (th < 0 || th >= H || tw < 0 || tw >= W) {
                    out[h * W + w] = 0.0f;
                    continue;
                }
                if (p.flip) tw = W - 1 - tw;
                int sh = th, sw = tw; /* source pixel */
                switch (p.rot) {
                case 1: sh = tw, sw = W - 1 - th; break;
                case 2: sh = H - 1 - th, sw = W - 1 - tw; break;
                case 3: sh = H - 1 - tw, sw = th; break;
                default: break;
                }
                out[h * W + w] = (float)in[sh * W + sw] * scale;
            }
    }
}

void mt_fewshot_fill(mt_task_buffer *b, const mt_image_set *s, int ways, int shots, int query, const mt_augment *aug,
                     uint64_t seed, mt_stream purpose, uint64_t iteration, uint32_t task)
{
    mt_task *t = &b->task;
    assert(t->n_support == ways * shots && t->n_query == ways * query);
    mt_rng r, ra;
    mt_rng_init(&r, seed, purpose, iteration, task);
    const int augment = aug && purpose == MT_STREAM_TRAIN && (aug->flip || aug->crop_padding > 0);
    if (augment) mt_rng_init_at(&ra, seed, purpose, iteration, task, MT_RNG_AUGMENT);
    const size_t image_size = (size_t)s->C * s->H * s->W;
    int32_t *classes = b->picks, *pick = b->picks + ways;
    distinct(&r, (uint32_t)mt_fewshot_n_classes(s), ways, classes);
    for (int j = 0; j < ways; j++) {
        const int base = s->rotations ? classes[j] / 4 : classes[j], rot = s->rotations ? classes[j] % 4 : 0;
        const int64_t first = s->class_offsets[base];
        distinct(&r, (uint32_t)(s->class_offsets[base + 1] - first), shots + query, pick);
        for (int i = 0; i < shots + query; i++) {
            const uint8_t *img = s->images + (size_t)(first + pick[i]) * image_size;
            placement p = {rot, 0, 0, 0};
            if (augment) { /* always the same three draws per image, so one setting does not move the other's */
                const uint32_t f = mt_rng_u32(&ra), n = 2 * (uint32_t)aug->crop_padding + 1;
                p.flip = aug->flip && (f & 1u);
                p.dy = (int)below(&ra, n) - aug->crop_padding;
                p.dx = (int)below(&ra, n) - aug->crop_padding;
            }
            if (i < shots) {
                put_image((float *)t->xs, j * shots + i, t->n_support, img, s->C, s->H, s->W, p);
                ((float *)t->ys)[j * shots + i] = (float)j;
            } else {
                put_image((float *)t->xq, j * query + i - shots, t->n_query, img, s->C, s->H, s->W, p);
                ((float *)t->yq)[j * query + i - shots] = (float)j;
            }
        }
    }
}
