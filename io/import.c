/*
 * import.c — IDX, Omniglot and class-per-folder importers (see import.h).
 *
 * Not a general image library: decoding is stb_image's (PNG, JPEG, BMP, ...), resizing is
 * stb_image_resize's default filter (linear light, Mitchell when shrinking, Catmull-Rom
 * when enlarging). Both are deterministic, which the reproducible-import promise needs.
 */
#define _POSIX_C_SOURCE 200809L
#include "import.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

#include <stb_image.h>
#include <stb_image_resize.h>

#include "common.h"
#include "dataset.h"

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u

/* ------------------------------------------------------------------------------------------
 * Small helpers: a growable string, a sorted list of names
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t len, cap;
} strbuf;

static void sb_add(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    MT_CHECK(n >= 0, "cannot format a string");
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = (b->len + (size_t)n + 1) * 2;
        char *s = realloc(b->s, cap);
        MT_CHECK(s, "out of memory (%zu bytes)", cap);
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

typedef struct {
    char **v;
    int n, cap;
} namelist;

static void nl_push(namelist *l, const char *name)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, (size_t)l->cap * sizeof *v);
        MT_CHECK(v, "out of memory listing a directory");
        l->v = v;
    }
    l->v[l->n] = strdup(name);
    MT_CHECK(l->v[l->n], "out of memory listing a directory");
    l->n++;
}

static void nl_free(namelist *l)
{
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ------------------------------------------------------------------------------------------
 * The output must not be an input
 * ---------------------------------------------------------------------------------------- */

/* The existing files an import writes: the output and its .partial (which the writer
 * truncates first), by device and inode, so that a link or another spelling of an input's
 * path is caught too. */
typedef struct {
    const char *out;
    int n;
    dev_t dev[2];
    ino_t ino[2];
    char name[2][4096 + 16];
} output_ids;

static void output_ids_init(output_ids *o, const char *out_path)
{
    memset(o, 0, sizeof *o);
    o->out = out_path;
    for (int i = 0; i < 2; i++) {
        char name[sizeof o->name[0]];
        if (snprintf(name, sizeof name, "%s%s", out_path, i ? ".partial" : "") >= (int)sizeof name) continue;
        struct stat st;
        if (stat(name, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        o->dev[o->n] = st.st_dev;
        o->ino[o->n] = st.st_ino;
        snprintf(o->name[o->n], sizeof o->name[o->n], "%s", name);
        o->n++;
    }
}

/* 0 if input file `path` (stat st) is not a file the import writes; else err says so. */
static int check_not_output(const output_ids *o, const char *path, const struct stat *st, char *err, size_t errlen)
{
    for (int i = 0; i < o->n; i++)
        if (st->st_dev == o->dev[i] && st->st_ino == o->ino[i]) {
            if (strcmp(o->name[i], o->out) == 0)
                snprintf(err, errlen, "the output -o %s is the input file %s: the import would overwrite its own "
                         "input (choose another output file)", o->out, path);
            else
                snprintf(err, errlen, "the output -o %s would be written through %s, which is the input file %s "
                         "(choose another output file)", o->out, o->name[i], path);
            return MT_IMPORT_BAD_INPUT;
        }
    return 0;
}

/* The importers' status for a failed mt_dataset_create (errno set by it). */
static int create_failure(void)
{
    return mt_dataset_errno_is_io(errno) ? MT_IMPORT_FAILED : MT_IMPORT_BAD_INPUT;
}

/* The importers' status for a failed writer call (MT_DATASET_REFUSED or _IO_ERROR). */
static int writer_failure(int rc)
{
    return rc == MT_DATASET_IO_ERROR ? MT_IMPORT_FAILED : MT_IMPORT_BAD_INPUT;
}

/* ------------------------------------------------------------------------------------------
 * --split NAME=CLASSES
 * ---------------------------------------------------------------------------------------- */

/* Parses a whole decimal class number 0..255 from s[0..n). */
static int parse_label(const char *s, size_t n, int *out)
{
    if (n == 0 || n > 3) return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > MT_IMPORT_MAX_LABEL) return -1;
    *out = v;
    return 0;
}

int mt_import_parse_split(const char *arg, mt_import_split *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *eq = strchr(arg, '=');
    size_t name_len = eq ? (size_t)(eq - arg) : 0;
    if (!eq || name_len == 0 || name_len >= sizeof out->name || memchr(arg, '/', name_len) ||
        (name_len == 1 && arg[0] == '.')) {
        snprintf(err, errlen, "--split '%s': expected NAME=CLASSES with a name of 1-63 bytes without '/' "
                 "(e.g. --split train=0-5)", arg);
        return -1;
    }
    memcpy(out->name, arg, name_len);
    const char *spec = eq + 1;
    snprintf(out->spec, sizeof out->spec, "%s", spec);
    unsigned char in[MT_IMPORT_MAX_LABEL + 1] = {0};
    const char *p = spec;
    for (;;) {
        size_t n = strcspn(p, ",");
        const char *dash = memchr(p, '-', n);
        int lo, hi;
        int ok = dash ? parse_label(p, (size_t)(dash - p), &lo) == 0 &&
                            parse_label(dash + 1, n - (size_t)(dash - p) - 1, &hi) == 0
                      : parse_label(p, n, &lo) == 0;
        if (!dash) hi = lo;
        if (!ok) {
            snprintf(err, errlen, "--split '%s': '%.*s' is not a class number (0-%d) or a range like 0-5", arg,
                     (int)n, p, MT_IMPORT_MAX_LABEL);
            return -1;
        }
        if (hi < lo) {
            snprintf(err, errlen, "--split '%s': range %d-%d runs backwards", arg, lo, hi);
            return -1;
        }
        for (int c = lo; c <= hi; c++) {
            if (in[c]) {
                snprintf(err, errlen, "--split '%s': class %d is listed twice", arg, c);
                return -1;
            }
            in[c] = 1;
        }
        if (p[n] == '\0') break;
        p += n + 1;
    }
    for (int c = 0; c <= MT_IMPORT_MAX_LABEL; c++)
        if (in[c]) out->classes[out->n_classes++] = c;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * IDX
 * ---------------------------------------------------------------------------------------- */

/* One IDX file in memory. */
typedef struct {
    int64_t n;     /* images or labels */
    int h, w;      /* image size (0 for labels) */
    uint8_t *data; /* [n, h, w] or [n] */
} idx_array;

/* zlib's reason for the last failure on g (of file path), without zlib's "path: " prefix. */
static const char *gz_reason(gzFile g, const char *path)
{
    int code = Z_OK;
    const char *msg = gzerror(g, &code);
    if (code == Z_ERRNO) return strerror(errno);
    if (!msg || !msg[0]) return "unknown zlib error";
    size_t n = strlen(path);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    return msg;
}

/* Reads up to n bytes; returns the count, or -1 on a read or decompression error. */
static int64_t gz_read_upto(gzFile g, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t want = n - got < (1u << 30) ? n - got : (1u << 30);
        int r = gzread(g, buf + got, (unsigned)want);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (int64_t)got;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads a whole IDX file of the given kind ("images": 0x803 [N,H,W], "labels": 0x801 [N])
 * into a, gzipped or not. Returns 0, or -1 with a message naming path. */
static int idx_read(const char *path, int images, idx_array *a, char *err, size_t errlen)
{
    const char *kind = images ? "images" : "labels";
    const uint32_t magic_want = images ? IDX_IMAGES_MAGIC : IDX_LABELS_MAGIC;
    const int ndims = images ? 3 : 1;
    memset(a, 0, sizeof *a);
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "cannot read IDX %s file %s: %s", kind, path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "cannot read IDX %s file %s: it is a directory", kind, path);
        return -1;
    }
    gzFile g = gzopen(path, "rb");
    if (!g) {
        snprintf(err, errlen, "cannot read IDX %s file %s: %s", kind, path, errno ? strerror(errno) : "out of memory");
        return -1;
    }
    gzbuffer(g, 1u << 17);
    int ok = 0;
    uint8_t head[16];
    const size_t head_len = 4 + 4 * (size_t)ndims;
    int64_t got = gz_read_upto(g, head, head_len);
    uint32_t magic = got >= 4 ? be32(head) : 0;
    size_t expect = 0;
    if (got < 0) {
        snprintf(err, errlen, "cannot read IDX %s file %s: %s", kind, path, gz_reason(g, path));
        goto done;
    }
    if (got < 4 || (magic & 0xffff0000u) != 0) {
        snprintf(err, errlen, "%s is not an IDX file (%s; IDX files start with two zero bytes)", path,
                 got < 4 ? "it has fewer than 4 bytes" : "it starts with other bytes");
        goto done;
    }
    if (magic != magic_want) {
        const char *hint = magic == (images ? IDX_LABELS_MAGIC : IDX_IMAGES_MAGIC)
                               ? images ? " (a labels file: IMAGES and LABELS swapped?)"
                                        : " (an images file: IMAGES and LABELS swapped?)"
                               : " (only unsigned-byte IDX files of MNIST's layout are read)";
        snprintf(err, errlen, "%s is not an IDX %s file: magic number 0x%08x, expected 0x%08x%s", path, kind,
                 (unsigned)magic, (unsigned)magic_want, hint);
        goto done;
    }
    if ((size_t)got < head_len) {
        snprintf(err, errlen, "IDX %s file %s is truncated inside its header", kind, path);
        goto done;
    }
    uint32_t n = be32(head + 4), h = images ? be32(head + 8) : 0, w = images ? be32(head + 12) : 0;
    if (n == 0 || n > 0x7fffffffu) {
        snprintf(err, errlen, "IDX %s file %s claims %lu %s (need 1 to 2^31-1)", kind, path, (unsigned long)n, kind);
        goto done;
    }
    if (images && (h < 1 || h > MT_DATASET_MAX_SIDE || w < 1 || w > MT_DATASET_MAX_SIDE)) {
        snprintf(err, errlen, "IDX images file %s claims images of %lux%lu pixels (need 1 to %d per side)", path,
                 (unsigned long)h, (unsigned long)w, MT_DATASET_MAX_SIDE);
        goto done;
    }
    a->n = n;
    a->h = (int)h;
    a->w = (int)w;
    if (__builtin_mul_overflow((size_t)n, images ? (size_t)h * w : 1, &expect)) {
        snprintf(err, errlen, "IDX %s file %s claims %lu images of %lux%lu pixels: more bytes than this machine "
                 "addresses", kind, path, (unsigned long)n, (unsigned long)h, (unsigned long)w);
        goto done;
    }
    /* Grow the buffer as data arrives, so a header that lies about its size costs no more
     * memory than the file really holds. */
    size_t cap = expect < (1u << 24) ? expect : (1u << 24), have = 0;
    a->data = mt_malloc(cap);
    for (;;) {
        int64_t r = gz_read_upto(g, a->data + have, cap - have);
        if (r < 0) {
            snprintf(err, errlen, "IDX %s file %s is damaged after %zu bytes of data: %s", kind, path, have,
                     gz_reason(g, path));
            goto done;
        }
        have += (size_t)r;
        if (have < cap || cap == expect) break;
        cap = cap * 2 < expect ? cap * 2 : expect;
        uint8_t *grown = realloc(a->data, cap);
        MT_CHECK(grown, "out of memory reading %s (%zu bytes)", path, cap);
        a->data = grown;
    }
    if (have < expect) {
        int code = Z_OK;
        gzerror(g, &code);
        snprintf(err, errlen, "IDX %s file %s is truncated: its header announces %zu bytes of data, it holds %zu%s%s",
                 kind, path, expect, have, code != Z_OK ? "; zlib: " : "", code != Z_OK ? gz_reason(g, path) : "");
        goto done;
    }
    uint8_t extra;
    int64_t more = gz_read_upto(g, &extra, 1); /* also makes zlib check the gzip trailer */
    if (more < 0) {
        snprintf(err, errlen, "IDX %s file %s is damaged: %s", kind, path, gz_reason(g, path));
        goto done;
    }
    if (more > 0) {
        snprintf(err, errlen, "IDX %s file %s has data after the %zu bytes its header announces", kind, path, expect);
        goto done;
    }
    ok = 1;
done:;
    int closed = gzclose_r(g);
    if (ok && closed != Z_OK) {
        snprintf(err, errlen, "IDX %s file %s ends inside its gzip stream (truncated download?)", kind, path);
        ok = 0;
    }
    if (!ok) {
        free(a->data);
        memset(a, 0, sizeof *a);
        return -1;
    }
    return 0;
}

int mt_import_idx(const char *out_path, int n_pairs, const char *const *images, const char *const *labels,
                  int n_splits, const mt_import_split *splits, FILE *progress, char *err, size_t errlen)
{
    if (n_pairs < 1 || n_splits < 1) {
        snprintf(err, errlen, "IDX import into %s needs at least one IMAGES LABELS pair and one --split", out_path);
        return -1;
    }
    /* The splits first: cheap and the most likely mistake. */
    int owner[MT_IMPORT_MAX_LABEL + 1];
    for (int c = 0; c <= MT_IMPORT_MAX_LABEL; c++) owner[c] = -1;
    for (int s = 0; s < n_splits; s++) {
        for (int t = 0; t < s; t++)
            if (strcmp(splits[s].name, splits[t].name) == 0) {
                snprintf(err, errlen, "split '%s' is given twice (--split %s=%s and --split %s=%s)", splits[s].name,
                         splits[t].name, splits[t].spec, splits[s].name, splits[s].spec);
                return -1;
            }
        for (int i = 0; i < splits[s].n_classes; i++) {
            int c = splits[s].classes[i];
            if (owner[c] >= 0) {
                snprintf(err, errlen, "class %d is in two splits (--split %s=%s and --split %s=%s): a class may "
                         "go to one split only", c, splits[owner[c]].name, splits[owner[c]].spec, splits[s].name,
                         splits[s].spec);
                return -1;
            }
            owner[c] = s;
        }
    }
    output_ids outs;
    output_ids_init(&outs, out_path);
    for (int p = 0; p < 2 * n_pairs; p++) {
        const char *path = p % 2 ? labels[p / 2] : images[p / 2];
        struct stat st;
        if (stat(path, &st) == 0 && check_not_output(&outs, path, &st, err, errlen) != 0) return MT_IMPORT_BAD_INPUT;
    }

    idx_array *img = mt_calloc((size_t)n_pairs, sizeof *img), *lab = mt_calloc((size_t)n_pairs, sizeof *lab);
    int64_t count[MT_IMPORT_MAX_LABEL + 1] = {0}, total = 0;
    mt_dataset_writer *w = NULL;
    int rc = MT_IMPORT_BAD_INPUT;
    double t0 = mt_now();
    for (int p = 0; p < n_pairs; p++) {
        if (idx_read(images[p], 1, &img[p], err, errlen) != 0 || idx_read(labels[p], 0, &lab[p], err, errlen) != 0)
            goto done;
        if (img[p].n != lab[p].n) {
            snprintf(err, errlen, "IDX files do not match: %s holds %lld images but %s holds %lld labels", images[p],
                     (long long)img[p].n, labels[p], (long long)lab[p].n);
            goto done;
        }
        if (img[p].h != img[0].h || img[p].w != img[0].w) {
            snprintf(err, errlen, "IDX images differ in size: %s holds %dx%d images, %s holds %dx%d", images[0],
                     img[0].h, img[0].w, images[p], img[p].h, img[p].w);
            goto done;
        }
        for (int64_t i = 0; i < lab[p].n; i++) count[lab[p].data[i]]++;
        total += img[p].n;
    }
    const int H = img[0].h, W = img[0].w;
    const size_t ib = (size_t)H * (size_t)W;
    if (progress)
        fprintf(progress, "read %lld images of %dx%d from %d IDX pair%s (%.1f s)\n", (long long)total, H, W, n_pairs,
                n_pairs == 1 ? "" : "s", mt_now() - t0);
    for (int s = 0; s < n_splits; s++) {
        strbuf missing = {0};
        int n_missing = 0;
        for (int i = 0; i < splits[s].n_classes; i++)
            if (count[splits[s].classes[i]] == 0)
                sb_add(&missing, "%s%d", n_missing++ ? "," : "", splits[s].classes[i]);
        if (n_missing) {
            strbuf have = {0};
            for (int c = 0; c <= MT_IMPORT_MAX_LABEL; c++)
                if (count[c]) sb_add(&have, "%s%d", have.len ? "," : "", c);
            snprintf(err, errlen, "--split %s=%s: class%s %s do%s not occur in %s%s (labels present: %s)",
                     splits[s].name, splits[s].spec, n_missing > 1 ? "es" : "", missing.s, n_missing > 1 ? "" : "es",
                     labels[0], n_pairs > 1 ? " or the other label files" : "", have.s);
            free(have.s);
            free(missing.s);
            goto done;
        }
    }

    strbuf source = {0};
    sb_add(&source, "idx:");
    for (int p = 0; p < n_pairs; p++) sb_add(&source, "%s%s,%s", p ? "," : "", images[p], labels[p]);
    for (int s = 0; s < n_splits; s++) sb_add(&source, " split %s=%s", splits[s].name, splits[s].spec);
    w = mt_dataset_create(out_path, source.s, err, errlen);
    free(source.s);
    if (!w) {
        rc = create_failure();
        goto done;
    }

    int64_t skipped = total;
    for (int s = 0; s < n_splits; s++) {
        const mt_import_split *sp = &splits[s];
        int wrc = mt_dataset_begin_split(w, sp->name, 1, H, W, err, errlen);
        int64_t in_split = 0;
        for (int i = 0; wrc == 0 && i < sp->n_classes; i++) {
            const int c = sp->classes[i];
            /* Row by row, straight from the IDX data: the writer batches them into chunks,
             * so a class costs no copy of its own however many images it has. */
            for (int p = 0; wrc == 0 && p < n_pairs; p++) /* stable: pairs in order, rows in order */
                for (int64_t r = 0; wrc == 0 && r < lab[p].n; r++)
                    if (lab[p].data[r] == c) wrc = mt_dataset_append_images(w, 1, img[p].data + (size_t)r * ib, err,
                                                                             errlen);
            char name[16];
            snprintf(name, sizeof name, "%d", c);
            if (wrc == 0) wrc = mt_dataset_end_class(w, name, err, errlen);
            in_split += count[c];
        }
        if (wrc == 0) wrc = mt_dataset_end_split(w, err, errlen);
        if (wrc != 0) {
            rc = writer_failure(wrc);
            goto done;
        }
        skipped -= in_split;
        if (progress)
            fprintf(progress, "  %s: %d classes (%s), %lld images\n", sp->name, sp->n_classes, sp->spec,
                    (long long)in_split);
    }
    if (progress && skipped > 0) {
        fprintf(progress, "  left out %lld images of labels in no split:", (long long)skipped);
        for (int c = 0; c <= MT_IMPORT_MAX_LABEL; c++)
            if (count[c] && owner[c] < 0) fprintf(progress, " %d", c);
        fprintf(progress, "\n");
    }
    mt_dataset_writer *finishing = w;
    w = NULL;
    int wrc = mt_dataset_finish(finishing, err, errlen);
    rc = wrc == 0 ? 0 : writer_failure(wrc);
done:
    mt_dataset_abandon(w);
    for (int p = 0; p < n_pairs; p++) {
        free(img[p].data);
        free(lab[p].data);
    }
    free(img);
    free(lab);
    if (progress) fflush(progress);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Images
 * ---------------------------------------------------------------------------------------- */

/* What an image file's header says, read here rather than by stb_image: stb_image calls a
 * header it finds too large "invalid", and the size is what the user needs to hear. */
typedef struct {
    const char *kind; /* "PNG", "JPEG", or NULL: neither signature */
    uint32_t w, h;    /* from IHDR or the JPEG frame header; 0 when not found */
} image_header;

static image_header read_header(const unsigned char *b, size_t len)
{
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    image_header hd = {NULL, 0, 0};
    if (len >= 8 && memcmp(b, png_sig, 8) == 0) {
        hd.kind = "PNG";
        if (len >= 24 && memcmp(b + 12, "IHDR", 4) == 0) hd.w = be32(b + 16), hd.h = be32(b + 20);
    } else if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) {
        hd.kind = "JPEG";
        /* Segments until the frame header (SOF0..SOF15 except DHT, JPG and DAC). */
        size_t i = 2;
        while (i + 4 <= len && b[i] == 0xff) {
            unsigned m = b[i + 1];
            if (m == 0xff) { /* fill byte */
                i++;
                continue;
            }
            if (m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7)) { /* markers without a length */
                i += 2;
                continue;
            }
            if (m == 0xd9 || m == 0xda) break; /* end of image, or a scan before any frame */
            size_t seg = (size_t)b[i + 2] << 8 | b[i + 3];
            if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
                if (seg >= 7 && i + 9 <= len) {
                    hd.h = (uint32_t)b[i + 5] << 8 | b[i + 6];
                    hd.w = (uint32_t)b[i + 7] << 8 | b[i + 8];
                }
                break;
            }
            if (seg < 2) break;
            i += 2 + seg;
        }
    }
    return hd;
}

/* 1 iff a w x h image (bytes_per_pixel decoded bytes each; 0: not known yet) is larger than
 * we decode; then err says so, naming path. */
static int too_large(const char *path, uint64_t w, uint64_t h, uint64_t bytes_per_pixel, char *err, size_t errlen)
{
    const uint64_t px = w * h; /* both < 2^32: no overflow */
    if (w <= MT_IMPORT_MAX_IMAGE_SIDE && h <= MT_IMPORT_MAX_IMAGE_SIDE && px <= (uint64_t)MT_IMPORT_MAX_IMAGE_PIXELS &&
        px * bytes_per_pixel <= (uint64_t)MT_IMPORT_MAX_IMAGE_BYTES)
        return 0;
    if (w <= MT_IMPORT_MAX_IMAGE_SIDE && h <= MT_IMPORT_MAX_IMAGE_SIDE && px <= (uint64_t)MT_IMPORT_MAX_IMAGE_PIXELS)
        snprintf(err, errlen, "cannot decode image %s: it is %llux%llu pixels of %llu bytes (%llu MiB decoded), too "
                 "large: metatrain decodes at most %ld MiB per image", path, (unsigned long long)w,
                 (unsigned long long)h, (unsigned long long)bytes_per_pixel,
                 (unsigned long long)(px * bytes_per_pixel >> 20), MT_IMPORT_MAX_IMAGE_BYTES >> 20);
    else
        snprintf(err, errlen, "cannot decode image %s: it is %llux%llu pixels (width x height), too large: metatrain "
                 "decodes images of at most %d pixels per side and %ld Mpixel in all", path, (unsigned long long)w,
                 (unsigned long long)h, MT_IMPORT_MAX_IMAGE_SIDE, MT_IMPORT_MAX_IMAGE_PIXELS >> 20);
    return 1;
}

int mt_import_decode_image_bytes(const char *path, const unsigned char *bytes, size_t len, int C, int H, int W,
                                 unsigned char *out, char *err, size_t errlen)
{
    if (len == 0 || len > (size_t)MT_IMPORT_MAX_IMAGE_FILE) {
        snprintf(err, errlen, "cannot decode image %s: the file is %s", path,
                 len == 0 ? "empty" : "larger than 64 MiB (too large)");
        return MT_IMPORT_BAD_INPUT;
    }
    /* Only PNG and JPEG: stb_image's other decoders (GIF, PSD, HDR, ...) are not needed
     * for photographs and would widen what an untrusted file can reach. Its failure
     * reason names the last decoder it tried; the signature says what the file claims. */
    const image_header hd = read_header(bytes, len);
    if (!hd.kind) {
        snprintf(err, errlen, "cannot decode image %s: not a PNG or JPEG file", path);
        return MT_IMPORT_BAD_INPUT;
    }
    if (too_large(path, hd.w, hd.h, 0, err, errlen)) return MT_IMPORT_BAD_INPUT;
    int w = 0, h = 0, comp = 0, rc = MT_IMPORT_BAD_INPUT;
    unsigned char *pix = NULL, *sized = NULL;
    if (!stbi_info_from_memory(bytes, (int)len, &w, &h, &comp)) {
        snprintf(err, errlen, "cannot decode image %s: damaged or truncated %s file (bad header)", path, hd.kind);
        return MT_IMPORT_BAD_INPUT;
    }
    if (w < 1 || h < 1 || comp < 1 || comp > 4) {
        snprintf(err, errlen, "cannot decode image %s: damaged %s file (it claims %dx%d pixels of %d channels)", path,
                 hd.kind, w, h, comp);
        return MT_IMPORT_BAD_INPUT;
    }
    /* stb_image holds the decoded samples (two bytes each for a 16-bit PNG) before it
     * converts them to C channels of one byte. */
    const uint64_t sample = stbi_is_16_bit_from_memory(bytes, (int)len) ? 2 : 1;
    const uint64_t per_pixel = (uint64_t)(comp > C ? comp : C) * sample;
    if (too_large(path, (uint64_t)w, (uint64_t)h, per_pixel, err, errlen)) return MT_IMPORT_BAD_INPUT;
    pix = stbi_load_from_memory(bytes, (int)len, &w, &h, &comp, C);
    if (!pix) {
        snprintf(err, errlen, "cannot decode image %s: damaged or truncated %s file", path, hd.kind);
        goto done;
    }
    const unsigned char *src = pix; /* [H, W, C] */
    if (w != W || h != H) {
        sized = mt_malloc((size_t)W * (size_t)H * (size_t)C);
        if (!stbir_resize_uint8(pix, w, h, 0, sized, W, H, 0, C)) {
            snprintf(err, errlen, "cannot resize image %s from %dx%d to %dx%d", path, h, w, H, W);
            goto done;
        }
        src = sized;
    }
    const size_t plane = (size_t)H * (size_t)W;
    for (int c = 0; c < C; c++)
        for (size_t i = 0; i < plane; i++) out[(size_t)c * plane + i] = src[i * (size_t)C + (size_t)c];
    rc = 0;
done:
    if (pix) stbi_image_free(pix);
    free(sized);
    return rc;
}

int mt_import_decode_image(const char *path, int C, int H, int W, unsigned char *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read image %s: %s", path, strerror(errno));
        return MT_IMPORT_BAD_INPUT;
    }
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0) len = ftell(f);
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot read image %s: %s", path, strerror(errno));
        fclose(f);
        return MT_IMPORT_BAD_INPUT;
    }
    if (len == 0 || len > MT_IMPORT_MAX_IMAGE_FILE) {
        snprintf(err, errlen, "cannot decode image %s: the file is %s", path,
                 len == 0 ? "empty" : "larger than 64 MiB (too large)");
        fclose(f);
        return MT_IMPORT_BAD_INPUT;
    }
    unsigned char *bytes = mt_malloc((size_t)len);
    int read_ok = fread(bytes, 1, (size_t)len, f) == (size_t)len;
    int saved = errno;
    fclose(f);
    int rc = MT_IMPORT_BAD_INPUT;
    if (!read_ok) snprintf(err, errlen, "cannot read image %s: %s", path, saved ? strerror(saved) : "short read");
    else rc = mt_import_decode_image_bytes(path, bytes, (size_t)len, C, H, W, out, err, errlen);
    free(bytes);
    return rc;
}

/* dir + "/" + name into out[len]. Returns 0, or -1 with err if it does not fit. */
static int join_path(char *out, size_t len, const char *dir, const char *name, char *err, size_t errlen)
{
    int n = snprintf(out, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) {
        snprintf(err, errlen, "path too long: %.200s/%.200s...", dir, name);
        return -1;
    }
    return 0;
}

/* 1 iff name ends in an image extension we import. */
static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0);
}

/* Lists dir into out, sorted: sub-directories (want_dirs) or image files. Hidden entries
 * are skipped silently, other entries counted in *skipped. An image file that is one of
 * the files the import writes (outs) is refused. Returns 0, or -1 with err. */
static int list_dir(const char *dir, int want_dirs, const output_ids *outs, namelist *out, int64_t *skipped,
                    char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot list folder %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (join_path(path, sizeof path, dir, e->d_name, err, errlen) != 0) {
            closedir(d);
            return -1;
        }
        struct stat st;
        int keep = stat(path, &st) == 0 &&
                   (want_dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode) && is_image_name(e->d_name));
        if (keep && !want_dirs && outs && check_not_output(outs, path, &st, err, errlen) != 0) {
            closedir(d);
            return -1;
        }
        if (keep && out->n >= MT_IMPORT_MAX_ENTRIES) {
            snprintf(err, errlen, "folder %s holds more than %d %s: more than metatrain imports from one folder", dir,
                     MT_IMPORT_MAX_ENTRIES, want_dirs ? "folders" : "images");
            closedir(d);
            return -1;
        }
        if (keep) nl_push(out, e->d_name);
        else if (skipped) (*skipped)++;
    }
    closedir(d);
    if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof *out->v, compare_names);
    return 0;
}

/* One class found on disk: its name in the dataset, its folder and image file names. */
typedef struct {
    char name[MT_DATASET_NAME_LEN];
    char *dir;
    namelist files;
} class_dir;

typedef struct {
    char split[MT_DATASET_NAME_LEN];
    const output_ids *outs; /* files the import writes, never read as input */
    class_dir *v;
    int n, cap;
    int64_t n_images;
} class_set;

static void cs_free(class_set *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->v[i].dir);
        nl_free(&s->v[i].files);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* Adds class `name` whose images are in folder dir; fails on an empty folder or a name too
 * long for the dataset. */
static int cs_add(class_set *s, const char *name, const char *dir, int64_t *skipped, char *err, size_t errlen)
{
    if (strlen(name) >= MT_DATASET_NAME_LEN) {
        snprintf(err, errlen, "class folder %s: the class name '%s' is longer than %d bytes", dir, name,
                 MT_DATASET_NAME_LEN - 1);
        return -1;
    }
    if (s->n >= MT_IMPORT_MAX_ENTRIES) {
        snprintf(err, errlen, "class folder %s: split %s would have more than %d classes, more than metatrain "
                 "imports into one split", dir, s->split, MT_IMPORT_MAX_ENTRIES);
        return -1;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        class_dir *v = realloc(s->v, (size_t)s->cap * sizeof *v);
        MT_CHECK(v, "out of memory listing classes");
        s->v = v;
    }
    class_dir *c = &s->v[s->n];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->dir = strdup(dir);
    MT_CHECK(c->dir, "out of memory listing classes");
    s->n++;
    if (list_dir(dir, 0, s->outs, &c->files, skipped, err, errlen) != 0) return -1;
    if (c->files.n == 0) {
        snprintf(err, errlen, "class folder %s is empty: it holds no PNG or JPEG images", dir);
        return -1;
    }
    s->n_images += c->files.n;
    return 0;
}

/* Lines of progress: about ten per split, none for small ones. */
static void report(FILE *progress, const class_set *s, int done, int64_t images, double t0)
{
    if (!progress) return;
    int step = (s->n + 9) / 10 > 50 ? (s->n + 9) / 10 : 50;
    if (done % step != 0 && done != s->n) return;
    fprintf(progress, "  %s: %d/%d classes, %lld images (%.1f s)\n", s->split, done, s->n, (long long)images,
            mt_now() - t0);
    fflush(progress);
}

/* Images decoded before they go to the writer: about this many bytes, at least one image. */
#define DECODE_BATCH_BYTES (16u << 20)

/* Decodes every class of each set into its split of a new dataset at out_path, a batch of
 * images at a time (memory does not grow with the size of a class). */
static int write_sets(const char *out_path, const char *source, class_set *sets, int n_sets, int C, int H, int W,
                      FILE *progress, char *err, size_t errlen)
{
    const size_t ib = (size_t)C * (size_t)H * (size_t)W;
    for (int s = 0; s < n_sets; s++) { /* N·C·H·W must be a byte count the reader can hold */
        size_t bytes;
        if (__builtin_mul_overflow((size_t)sets[s].n_images, ib, &bytes) || bytes > (size_t)INT64_MAX) {
            snprintf(err, errlen, "split %s of %s would hold %lld images of %dx%dx%d: more bytes than this machine "
                     "addresses", sets[s].split, out_path, (long long)sets[s].n_images, C, H, W);
            return MT_IMPORT_BAD_INPUT;
        }
    }
    mt_dataset_writer *w = mt_dataset_create(out_path, source, err, errlen);
    if (!w) return create_failure();
    const size_t batch = ib >= DECODE_BATCH_BYTES ? 1 : DECODE_BATCH_BYTES / ib;
    uint8_t *buf = mt_malloc(batch * ib);
    int rc = 0;
    double t0 = mt_now();
    for (int s = 0; rc == 0 && s < n_sets; s++) {
        class_set *cs = &sets[s];
        int wrc = mt_dataset_begin_split(w, cs->split, C, H, W, err, errlen);
        int64_t images = 0;
        for (int k = 0; rc == 0 && wrc == 0 && k < cs->n; k++) {
            class_dir *c = &cs->v[k];
            for (int i0 = 0; rc == 0 && wrc == 0 && i0 < c->files.n; i0 += (int)batch) {
                const int n = c->files.n - i0 < (int)batch ? c->files.n - i0 : (int)batch;
                for (int i = 0; rc == 0 && i < n; i++) {
                    char path[4096];
                    rc = join_path(path, sizeof path, c->dir, c->files.v[i0 + i], err, errlen);
                    if (rc == 0) rc = mt_import_decode_image(path, C, H, W, buf + (size_t)i * ib, err, errlen);
                }
                if (rc == 0) wrc = mt_dataset_append_images(w, n, buf, err, errlen);
            }
            if (rc == 0 && wrc == 0) wrc = mt_dataset_end_class(w, c->name, err, errlen);
            images += c->files.n;
            if (rc == 0 && wrc == 0) report(progress, cs, k + 1, images, t0);
        }
        if (rc == 0 && wrc == 0) wrc = mt_dataset_end_split(w, err, errlen);
        if (rc == 0 && wrc != 0) rc = writer_failure(wrc);
    }
    free(buf);
    if (rc != 0) {
        mt_dataset_abandon(w);
        return rc < 0 ? rc : MT_IMPORT_BAD_INPUT;
    }
    int wrc = mt_dataset_finish(w, err, errlen);
    return wrc == 0 ? 0 : writer_failure(wrc);
}

/* 1 iff path is a directory; 0 if it does not exist; -1 (err set) otherwise. */
static int is_dir(const char *path, const char *what, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s %s is not a folder", what, path);
        return -1;
    }
    return 1;
}

/* Scans an Omniglot split folder root/<alphabet>/<character>/ into s. */
static int scan_omniglot(const char *root, class_set *s, int64_t *skipped, char *err, size_t errlen)
{
    namelist alphabets = {0};
    int rc = list_dir(root, 1, NULL, &alphabets, skipped, err, errlen);
    if (rc == 0 && alphabets.n == 0) {
        snprintf(err, errlen, "Omniglot folder %s holds no alphabet folders", root);
        rc = -1;
    }
    for (int a = 0; rc == 0 && a < alphabets.n; a++) {
        char adir[4096];
        namelist chars = {0};
        rc = join_path(adir, sizeof adir, root, alphabets.v[a], err, errlen);
        if (rc == 0) rc = list_dir(adir, 1, NULL, &chars, skipped, err, errlen);
        if (rc == 0 && chars.n == 0) {
            snprintf(err, errlen, "Omniglot alphabet folder %s holds no character folders", adir);
            rc = -1;
        }
        for (int c = 0; rc == 0 && c < chars.n; c++) {
            char cdir[4096], name[4096];
            rc = join_path(cdir, sizeof cdir, adir, chars.v[c], err, errlen);
            if (rc == 0) rc = join_path(name, sizeof name, alphabets.v[a], chars.v[c], err, errlen);
            if (rc == 0) rc = cs_add(s, name, cdir, skipped, err, errlen);
        }
        nl_free(&chars);
    }
    nl_free(&alphabets);
    return rc;
}

int mt_import_omniglot(const char *out_path, const char *dir, int H, int W, FILE *progress, char *err,
                       size_t errlen)
{
    int present = is_dir(dir, "Omniglot folder", err, errlen);
    if (present == 0) snprintf(err, errlen, "cannot read Omniglot folder %s: %s", dir, strerror(ENOENT));
    if (present <= 0) return -1;
    const char *parts[2] = {"background", "evaluation"};
    class_set sets[2];
    memset(sets, 0, sizeof sets);
    output_ids outs;
    output_ids_init(&outs, out_path);
    int n_sets = 0, rc = 0;
    int64_t skipped = 0;
    for (int i = 0; rc == 0 && i < 2; i++) {
        char root[4096], sub[32];
        snprintf(sub, sizeof sub, "images_%s", parts[i]);
        if (join_path(root, sizeof root, dir, sub, err, errlen) != 0) {
            rc = -1;
            break;
        }
        int here = is_dir(root, "Omniglot folder", err, errlen);
        if (here < 0) rc = -1;
        if (here <= 0) continue;
        snprintf(sets[n_sets].split, sizeof sets[n_sets].split, "%s", parts[i]);
        sets[n_sets].outs = &outs;
        rc = scan_omniglot(root, &sets[n_sets], &skipped, err, errlen);
        n_sets++;
    }
    if (rc == 0 && n_sets == 0) {
        snprintf(err, errlen, "%s is not an Omniglot folder: it has neither images_background/ nor images_evaluation/ "
                 "(expected DIR/images_background/<alphabet>/<character>/*.png, as unpacked from Omniglot's zips)",
                 dir);
        rc = -1;
    }
    if (rc == 0 && progress) {
        for (int i = 0; i < n_sets; i++)
            fprintf(progress, "found %s: %d characters, %lld images\n", sets[i].split, sets[i].n,
                    (long long)sets[i].n_images);
        if (skipped)
            fprintf(progress, "skipped %lld entries that are not folders or PNG/JPEG files\n", (long long)skipped);
    }
    if (rc == 0) {
        strbuf source = {0};
        sb_add(&source, "omniglot:%s size=%dx%d", dir, H, W);
        rc = write_sets(out_path, source.s, sets, n_sets, 1, H, W, progress, err, errlen);
        free(source.s);
    }
    for (int i = 0; i < 2; i++) cs_free(&sets[i]);
    return rc;
}

int mt_import_folder(const char *out_path, const char *dir, const char *split, int H, int W, int grey,
                     FILE *progress, char *err, size_t errlen)
{
    int present = is_dir(dir, "image folder", err, errlen);
    if (present == 0) snprintf(err, errlen, "cannot read image folder %s: %s", dir, strerror(ENOENT));
    if (present <= 0) return -1;
    class_set set;
    memset(&set, 0, sizeof set);
    snprintf(set.split, sizeof set.split, "%s", split);
    output_ids outs;
    output_ids_init(&outs, out_path);
    set.outs = &outs;
    namelist classes = {0};
    int64_t skipped = 0;
    int rc = list_dir(dir, 1, NULL, &classes, &skipped, err, errlen);
    if (rc == 0 && classes.n == 0) {
        snprintf(err, errlen, "image folder %s holds no class folders (expected DIR/<class>/<image>.png or .jpg)",
                 dir);
        rc = -1;
    }
    for (int k = 0; rc == 0 && k < classes.n; k++) {
        char cdir[4096];
        rc = join_path(cdir, sizeof cdir, dir, classes.v[k], err, errlen);
        if (rc == 0) rc = cs_add(&set, classes.v[k], cdir, &skipped, err, errlen);
    }
    nl_free(&classes);
    if (rc == 0 && progress) {
        fprintf(progress, "found %d classes, %lld images\n", set.n, (long long)set.n_images);
        if (skipped)
            fprintf(progress, "skipped %lld entries that are not folders or PNG/JPEG files\n", (long long)skipped);
    }
    if (rc == 0) {
        strbuf source = {0};
        sb_add(&source, "folder:%s size=%dx%d %s", dir, H, W, grey ? "grey" : "rgb");
        rc = write_sets(out_path, source.s, &set, 1, grey ? 1 : 3, H, W, progress, err, errlen);
        free(source.s);
    }
    cs_free(&set);
    return rc;
}
