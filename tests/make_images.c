/*
 * make_images.c — writes the small input files the CLI import tests need, without Python:
 * PNG and JPEG images (stb_image_write, compiled into Debian's libstb) and MNIST-format IDX
 * files. Every value is a fixed function of the arguments, so the files are the same on
 * every run.
 *
 *   make_images png PATH H W C BASE         pixel (y, x, c) = BASE + 10y + 3x + 50c (mod 256)
 *   make_images jpg PATH H W C BASE         the same pattern, JPEG quality 90
 *   make_images idx-images PATH N H W FIRST IDX images 0x803: image i has first pixel
 *                                           FIRST + i (mod 256), the rest a pattern of (i, y, x)
 *   make_images idx-labels PATH N K         IDX labels 0x801: label i = i mod K
 *   make_images idx-classes PATH N H W K    IDX images 0x803 of K learnable classes (image i is
 *                                           of class i mod K, as idx-labels gives): class k is
 *                                           3 strokes placed by a hash of k; each image is its
 *                                           class's strokes shifted by up to 2 pixels, with
 *                                           pixel noise, both hashed from i
 *
 * Exit status 0, or 1 with a message (bad arguments, unwritable file).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

static long arg(const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || end == s || v < lo || v > hi) {
        fprintf(stderr, "make_images: '%s' is not a number in %ld..%ld\n", s, lo, hi);
        exit(1);
    }
    return v;
}

static void put_be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    fwrite(b, 1, 4, f);
}

static int finish(FILE *f, const char *path)
{
    if (ferror(f) | (fclose(f) != 0)) {
        fprintf(stderr, "make_images: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

/* splitmix64: a fixed hash, so every generated file is the same on every machine. */
static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Draws class k's template into t[H·W] (0 or 1): 3 strokes of 4..H/2+3 pixels, each
 * horizontal, vertical or diagonal, from a hashed start inside the image. */
static void class_template(unsigned char *t, long H, long W, long k)
{
    static const int dir[4][2] = {{0, 1}, {1, 0}, {1, 1}, {1, -1}};
    memset(t, 0, (size_t)(H * W));
    for (int s = 0; s < 3; s++) {
        uint64_t h = mix(mix((uint64_t)k) + (uint64_t)s);
        long y = (long)(h % (uint64_t)H), x = (long)((h >> 16) % (uint64_t)W);
        const int *d = dir[(h >> 32) & 3];
        long len = 4 + (long)((h >> 40) % (uint64_t)(H / 2));
        for (long j = 0; j < len && y >= 0 && y < H && x >= 0 && x < W; j++, y += d[0], x += d[1])
            t[y * W + x] = 1;
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: make_images png|jpg|idx-images|idx-labels|idx-classes PATH ... (see make_images.c)\n");
        return 1;
    }
    const char *what = argv[1], *path = argv[2];
    if ((strcmp(what, "png") == 0 || strcmp(what, "jpg") == 0) && argc == 7) {
        int H = (int)arg(argv[3], 1, 4096), W = (int)arg(argv[4], 1, 4096), C = (int)arg(argv[5], 1, 4);
        long base = arg(argv[6], 0, 255);
        unsigned char *px = malloc((size_t)H * W * C);
        if (!px) return 1;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++)
                    px[((size_t)y * W + x) * C + c] = (unsigned char)(base + 10 * y + 3 * x + 50 * c);
        int ok = what[0] == 'p' ? stbi_write_png(path, W, H, C, px, W * C) : stbi_write_jpg(path, W, H, C, px, 90);
        free(px);
        if (!ok) fprintf(stderr, "make_images: cannot write %s\n", path);
        return ok ? 0 : 1;
    }
    if (strcmp(what, "idx-images") == 0 && argc == 7) {
        long N = arg(argv[3], 1, 1000000), H = arg(argv[4], 1, 4096), W = arg(argv[5], 1, 4096);
        long first = arg(argv[6], 0, 1000000);
        FILE *f = fopen(path, "wb");
        if (!f) return perror(path), 1;
        put_be32(f, 0x803), put_be32(f, (uint32_t)N), put_be32(f, (uint32_t)H), put_be32(f, (uint32_t)W);
        for (long i = 0; i < N; i++)
            for (long y = 0; y < H; y++)
                for (long x = 0; x < W; x++)
                    fputc(y == 0 && x == 0 ? (int)((first + i) & 255) : (int)((i * 3 + y * 11 + x * 5) & 255), f);
        return finish(f, path);
    }
    if (strcmp(what, "idx-classes") == 0 && argc == 7) {
        long N = arg(argv[3], 1, 1000000), H = arg(argv[4], 4, 4096), W = arg(argv[5], 4, 4096);
        long K = arg(argv[6], 1, 256);
        unsigned char *t = malloc((size_t)(H * W));
        FILE *f = t ? fopen(path, "wb") : NULL;
        if (!f) return perror(path), free(t), 1;
        put_be32(f, 0x803), put_be32(f, (uint32_t)N), put_be32(f, (uint32_t)H), put_be32(f, (uint32_t)W);
        for (long i = 0; i < N; i++) {
            class_template(t, H, W, i % K);
            const uint64_t h = mix(0x5EED0000ull + (uint64_t)i);
            const long dy = (long)(h % 5) - 2, dx = (long)((h >> 8) % 5) - 2;
            for (long y = 0; y < H; y++)
                for (long x = 0; x < W; x++) {
                    const long sy = y - dy, sx = x - dx;
                    const int on = sy >= 0 && sy < H && sx >= 0 && sx < W && t[sy * W + sx];
                    const int noise = (int)(mix(h + (uint64_t)(y * W + x)) % 97);
                    fputc(on ? 255 - noise : noise, f);
                }
        }
        free(t);
        return finish(f, path);
    }
    if (strcmp(what, "idx-labels") == 0 && argc == 5) {
        long N = arg(argv[3], 1, 1000000), K = arg(argv[4], 1, 256);
        FILE *f = fopen(path, "wb");
        if (!f) return perror(path), 1;
        put_be32(f, 0x801), put_be32(f, (uint32_t)N);
        for (long i = 0; i < N; i++) fputc((int)(i % K), f);
        return finish(f, path);
    }
    fprintf(stderr, "make_images: bad arguments for '%s' (see make_images.c)\n", what);
    return 1;
}
