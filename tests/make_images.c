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
 *   make_images png-header PATH W H DEPTH COLOUR
 *                                           a PNG whose header claims W x H pixels (bit depth,
 *                                           colour type) with a 16-byte body: an image bomb as
 *                                           a reader sees it before it decodes (no memory needed
 *                                           to write it)
 *   make_images jpg-header PATH W H         the same for JPEG: markers up to a frame header
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

/* CRC-32 of PNG chunks (ISO 3309, bitwise: a few bytes per file). */
static uint32_t crc_update(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = crc >> 1 ^ (0xedb88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static void put_chunk(FILE *f, const char *type, const unsigned char *data, uint32_t len)
{
    unsigned char buf[64];
    memcpy(buf, type, 4);
    memcpy(buf + 4, data, len);
    put_be32(f, len);
    fwrite(buf, 1, 4 + (size_t)len, f);
    put_be32(f, crc_update(0, buf, 4 + (size_t)len));
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
    if (strcmp(what, "png-header") == 0 && argc == 7) {
        uint32_t W = (uint32_t)arg(argv[3], 1, 0x7fffffff), H = (uint32_t)arg(argv[4], 1, 0x7fffffff);
        unsigned char ihdr[13] = {0};
        for (int i = 0; i < 4; i++) {
            ihdr[i] = (unsigned char)(W >> (24 - 8 * i));
            ihdr[4 + i] = (unsigned char)(H >> (24 - 8 * i));
        }
        ihdr[8] = (unsigned char)arg(argv[5], 1, 16), ihdr[9] = (unsigned char)arg(argv[6], 0, 6);
        /* zlib stream of one stored block of 16 zero bytes (adler32 of zeros: 0x00100001) */
        unsigned char idat[2 + 5 + 16 + 4] = {0x78, 0x01, 0x01, 16, 0, 0xef, 0xff};
        idat[23] = 0x00, idat[24] = 0x10, idat[25] = 0x00, idat[26] = 0x01;
        static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        FILE *f = fopen(path, "wb");
        if (!f) return perror(path), 1;
        fwrite(sig, 1, 8, f);
        put_chunk(f, "IHDR", ihdr, 13);
        put_chunk(f, "IDAT", idat, sizeof idat);
        put_chunk(f, "IEND", ihdr, 0);
        return finish(f, path);
    }
    if (strcmp(what, "jpg-header") == 0 && argc == 5) {
        unsigned W = (unsigned)arg(argv[3], 1, 65535), H = (unsigned)arg(argv[4], 1, 65535);
        const unsigned char b[] = {0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
                                   0xff, 0xc0, 0, 17, 8, (unsigned char)(H >> 8), (unsigned char)H,
                                   (unsigned char)(W >> 8), (unsigned char)W, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0,
                                   0xff, 0xd9};
        FILE *f = fopen(path, "wb");
        if (!f) return perror(path), 1;
        fwrite(b, 1, sizeof b, f);
        return finish(f, path);
    }
    fprintf(stderr, "make_images: bad arguments for '%s' (see make_images.c)\n", what);
    return 1;
}
