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

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: make_images png|jpg|idx-images|idx-labels PATH ... (see make_images.c)\n");
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
