/* Hand-made bad image inputs, built from the fixtures: each must fail with the stated
 * status and a message naming the problem, leave the outputs zeroed, and never crash or
 * leak. Plus an allocation-failpoint walk over PNG and JPEG decodes. */
#include "harness.h"

#include "tessera_internal.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static blob load(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "images/%s", name);
    blob b = {0};
    b.p = tsr_test_read(tsr_test_fixture(rel), &b.n);
    if (!b.p) fprintf(stderr, "cannot read fixture %s\n", rel);
    return b;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Offset of the n-th (0-based) chunk called cid, or 0. */
static size_t find_chunk(const blob *b, const char *cid, int nth) {
    size_t pos = 8;
    while (pos + 12 <= b->n) {
        uint32_t len = be32(b->p + pos);
        if (!memcmp(b->p + pos + 4, cid, 4) && nth-- == 0) return pos;
        if (len > b->n - pos - 12) break;
        pos += 12 + len;
    }
    return 0;
}

/* Recomputes the CRC of the chunk at pos (so a later check is what fires). */
static void fix_crc(blob *b, size_t pos) {
    uint32_t len = be32(b->p + pos);
    uLong crc = crc32(0L, b->p + pos + 4, len + 4);
    put32(b->p + pos + 8 + len, (uint32_t)crc);
}

/* Removes the chunk at pos. */
static void drop_chunk(blob *b, size_t pos) {
    size_t len = be32(b->p + pos) + 12;
    memmove(b->p + pos, b->p + pos + len, b->n - pos - len);
    b->n -= len;
}

/* Offset of JPEG marker 0xFF m (first occurrence before SOS data), or 0. */
static size_t find_marker(const blob *b, uint8_t m) {
    size_t p = 2;
    while (p + 4 <= b->n && b->p[p] == 0xff) {
        if (b->p[p + 1] == m) return p;
        if (b->p[p + 1] == 0xda) break;
        p += 2 + ((size_t)b->p[p + 2] << 8 | b->p[p + 3]);
    }
    return 0;
}

typedef struct row {
    const char *name;
    blob in;
    tsr_image_decode_params params;
    int null_buf;
    tsr_status expect;
    const char *msg;   /* substring of the detail message */
    int probe_too;     /* header-level failure: probe fails the same way */
} row;

#define MAX_ROWS 80
static blob g_exif_off; /* an input that fails only because of its EXIF */
static row g_rows[MAX_ROWS];
static int g_nrows;

static row *add(const char *name, blob in, tsr_status expect, const char *msg, int probe_too) {
    row *r = &g_rows[g_nrows++];
    memset(r, 0, sizeof *r);
    r->name = name;
    r->in = in;
    r->params = tsr_image_decode_params_default();
    r->expect = expect;
    r->msg = msg;
    r->probe_too = probe_too;
    return r;
}

static blob copy(const blob *b, size_t n) {
    blob c = {malloc(n ? n : 1), n};
    memcpy(c.p, b->p, n < b->n ? n : b->n);
    return c;
}

static void build_table(void) {
    blob png = load("png_rgb8.png");       /* 64 x 48 RGB, 3 IDAT chunks */
    blob pal = load("png_p8.png");
    blob gama = load("png_rgb8_gama.png"); /* gAMA, sRGB, tEXt, pHYs before IDAT */
    blob jpg = load("jpg_420.jpg");        /* 64 x 48 baseline */
    blob prog = load("jpg_prog_420.jpg");
    if (!png.p || !pal.p || !gama.p || !jpg.p || !prog.p) {
        tsr_test_failed_checks++;
        goto out;
    }
    blob b;
    size_t ihdr = find_chunk(&png, "IHDR", 0), idat = find_chunk(&png, "IDAT", 0);
    size_t idat_end = find_chunk(&png, "IEND", 0);

    /* arguments and sniffing */
    add("empty buffer", copy(&png, 0), TSR_ERR_FORMAT, "empty buffer", 1);
    add("NULL buffer", (blob){0}, TSR_ERR_INVALID_ARG, "buf is NULL", 1)->null_buf = 1;
    b = copy(&png, 64);
    memcpy(b.p, "GIF89a", 6);
    add("GIF magic", b, TSR_ERR_UNSUPPORTED, "unrecognised image format (magic 47 49 46", 1);
    b = copy(&png, 300);
    uint32_t x = 12345;
    for (size_t i = 0; i < b.n; i++) b.p[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 16);
    b.p[0] = 0x00;
    add("random bytes", b, TSR_ERR_UNSUPPORTED, "unrecognised image format", 1);
    add("one byte", copy(&jpg, 1), TSR_ERR_UNSUPPORTED, "magic ff", 1);
    row *r = add("channels = 2", copy(&png, png.n), TSR_ERR_INVALID_ARG, "channels is 2", 1);
    r->params.channels = 2;
    r = add("params size 0", copy(&png, png.n), TSR_ERR_INVALID_ARG, "params->size", 1);
    r->params.size = 0;

    /* PNG truncation at many cut points */
    static const char *png_cut_names[] = {"PNG cut: signature only", "PNG cut: inside IHDR",
                                          "PNG cut: IDAT header", "PNG cut: IDAT start",
                                          "PNG cut: middle of IDATs", "PNG cut: last IDAT"};
    size_t png_cuts[] = {8, ihdr + 14, idat + 4, idat + 20, (idat + idat_end) / 2,
                         idat_end - 30};
    for (int i = 0; i < 6; i++)
        add(png_cut_names[i], copy(&png, png_cuts[i]), TSR_ERR_FORMAT, "runcated", 1);

    /* PNG checksums */
    b = copy(&png, png.n);
    b.p[ihdr + 8 + 13] ^= 0x01;
    add("PNG bad IHDR CRC", b, TSR_ERR_FORMAT, "bad checksum in IHDR", 1);
    b = copy(&png, png.n);
    b.p[idat + 8 + be32(png.p + idat)] ^= 0x80;
    add("PNG bad IDAT CRC", b, TSR_ERR_FORMAT, "CRC", 0);
    b = copy(&gama, gama.n);
    size_t g = find_chunk(&gama, "gAMA", 0);
    b.p[g + 8 + 4] ^= 0x10;
    add("PNG bad gAMA CRC (before IDAT)", b, TSR_ERR_FORMAT, "bad checksum in gAMA", 1);

    /* PNG headers: sizes (CRC fixed so the size check fires) */
    struct { const char *name; uint32_t w, h; tsr_status st; const char *msg; } dims[] = {
        {"PNG IHDR 100000 x 100000", 100000, 100000, TSR_ERR_LIMIT, "max_side 16384"},
        {"PNG IHDR 0 x 48", 0, 48, TSR_ERR_FORMAT, "image size 0 x 48"},
        {"PNG IHDR 64 x 0", 64, 0, TSR_ERR_FORMAT, "image size 64 x 0"},
        {"PNG IHDR 16000 x 16000", 16000, 16000, TSR_ERR_LIMIT, "max_pixels 40000000"},
        {"PNG IHDR 10000 x 20", 10000, 20, TSR_ERR_LIMIT, "max_aspect 200"},
        {"PNG IHDR 2^31 x 1", 0x80000000u, 1, TSR_ERR_LIMIT, "max_side"},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        b = copy(&png, png.n);
        put32(b.p + ihdr + 8, dims[i].w);
        put32(b.p + ihdr + 12, dims[i].h);
        fix_crc(&b, ihdr);
        add(dims[i].name, b, dims[i].st, dims[i].msg, 1);
    }
    b = copy(&png, png.n);
    b.p[ihdr + 8 + 8] = 3; /* bit depth 3 */
    fix_crc(&b, ihdr);
    add("PNG bit depth 3", b, TSR_ERR_FORMAT, "unsupported bit depth 3", 1);
    b = copy(&png, png.n);
    b.p[ihdr + 8 + 11] = 1;
    fix_crc(&b, ihdr);
    add("PNG filter method 1", b, TSR_ERR_FORMAT, "filter method", 1);

    /* PNG structure and data */
    b = copy(&png, png.n);
    for (uint32_t i = 20; i < 40; i++) b.p[idat + 8 + i] ^= 0x5a;
    fix_crc(&b, idat);
    add("PNG corrupt deflate data", b, TSR_ERR_FORMAT, "libpng", 0);
    b = copy(&png, png.n);
    while ((g = find_chunk(&b, "IDAT", 0)) != 0) drop_chunk(&b, g);
    add("PNG without IDAT", b, TSR_ERR_FORMAT, "no IDAT", 1);
    b = copy(&pal, pal.n);
    drop_chunk(&b, find_chunk(&b, "PLTE", 0));
    add("PNG palette without PLTE", b, TSR_ERR_FORMAT, "libpng", 0);
    b = copy(&png, png.n);
    memcpy(b.p + idat + 4, "ID@T", 4);
    add("PNG bad chunk name", b, TSR_ERR_FORMAT, "chunk name", 1);
    b = copy(&png, png.n);
    put32(b.p + idat, 0x7ffffff0u);
    add("PNG huge chunk length", b, TSR_ERR_FORMAT, "runcated", 1);
    /* tRNS of 2 bytes in an RGB image: Pillow raises "Truncated tRNS chunk" */
    b = copy(&png, png.n + 14);
    memmove(b.p + idat + 14, b.p + idat, png.n - idat);
    memcpy(b.p + idat, "\0\0\0\2tRNS\0\1", 10);
    fix_crc(&b, idat);
    add("PNG short tRNS", b, TSR_ERR_FORMAT, "truncated tRNS", 1);

    /* JPEG truncation and corruption */
    static const char *jpg_cut_names[] = {"JPEG cut: SOI only", "JPEG cut: inside DQT",
                                          "JPEG cut: SOS header", "JPEG cut: scan start",
                                          "JPEG cut: 50% of scan", "JPEG cut: 95% of scan"};
    size_t sos = find_marker(&jpg, 0xda);
    size_t scan = sos + 2 + ((size_t)jpg.p[sos + 2] << 8 | jpg.p[sos + 3]);
    size_t jpg_cuts[] = {3, find_marker(&jpg, 0xdb) + 20, sos + 6, scan + 10,
                         scan + (jpg.n - scan) / 2, scan + (jpg.n - scan) * 95 / 100};
    for (int i = 0; i < 6; i++)
        add(jpg_cut_names[i], copy(&jpg, jpg_cuts[i]), TSR_ERR_FORMAT,
            i == 0 ? "no SOF" : i < 3 ? "truncated segment" : "truncated", i < 3);
    add("JPEG progressive cut: 50%", copy(&prog, prog.n / 2), TSR_ERR_FORMAT, "truncated", 0);
    add("JPEG progressive without EOI", copy(&prog, prog.n - 2), TSR_ERR_FORMAT, "truncated", 0);
    size_t sof = find_marker(&jpg, 0xc0);
    b = copy(&jpg, jpg.n);
    b.p[sof + 5] = b.p[sof + 7] = 0xfd; /* 65000 x 65000 */
    b.p[sof + 6] = b.p[sof + 8] = 0xe8;
    add("JPEG SOF 65000 x 65000", b, TSR_ERR_LIMIT, "max_side", 1);
    b = copy(&jpg, jpg.n);
    b.p[sof + 7] = b.p[sof + 8] = 0;
    add("JPEG SOF width 0", b, TSR_ERR_FORMAT, "image size 0 x 48", 1);
    b = copy(&jpg, jpg.n);
    b.p[sof + 4] = 12;
    add("JPEG 12-bit SOF", b, TSR_ERR_UNSUPPORTED, "12-bit", 1);
    b = copy(&jpg, jpg.n);
    b.p[sof + 9] = 2;
    add("JPEG 2 components", b, TSR_ERR_UNSUPPORTED, "2-component", 1);
    b = copy(&jpg, jpg.n);
    b.p[find_marker(&jpg, 0xdb) + 1] = 0x01;
    add("JPEG stray marker 0xff01", b, TSR_ERR_FORMAT, "no marker found", 1);
    b = copy(&jpg, jpg.n);
    size_t dht = find_marker(&jpg, 0xc4);
    memset(b.p + dht + 5, 0xff, 16); /* Huffman code counts far too large */
    add("JPEG bogus Huffman table", b, TSR_ERR_FORMAT, "libjpeg", 0);
    b = copy(&jpg, jpg.n);
    memset(b.p + find_marker(&jpg, 0xc0), 0x00, 2); /* SOF gone */
    add("JPEG without SOF", b, TSR_ERR_FORMAT, "no SOF", 1);

    /* EXIF that is not TIFF where Pillow's exif_transpose raises on it */
    blob pexif = load("png_exif6.png"), jnt = load("jpg_exif_nottiff.jpg");
    if (pexif.p && jnt.p) {
        b = copy(&pexif, pexif.n);
        g = find_chunk(&b, "eXIf", 0);
        b.p[g + 8] = 'X';
        fix_crc(&b, g);
        add("PNG eXIf not TIFF", b, TSR_ERR_FORMAT, "EXIF block is not a TIFF", 1);
        b = copy(&jnt, jnt.n);
        b.p[13] = 1; /* JFIF density in dots per inch: Pillow skips its own EXIF read */
        add("JPEG EXIF not TIFF, JFIF dpi", b, TSR_ERR_FORMAT, "EXIF block is not a TIFF", 1);
        b = copy(&pexif, pexif.n);
        g = find_chunk(&b, "eXIf", 0);
        b.p[g + 8] = 'X';
        fix_crc(&b, g);
        g_exif_off = b; /* decodes with apply_exif = 0 (checked below) */
    } else {
        tsr_test_failed_checks++;
    }
    free(pexif.p);
    free(jnt.p);

    /* every limit field */
    r = add("limit max_encoded_bytes", copy(&png, png.n), TSR_ERR_LIMIT, "max_encoded_bytes 100", 1);
    r->params.limits.max_encoded_bytes = 100;
    r = add("limit max_pixels (PNG)", copy(&png, png.n), TSR_ERR_LIMIT, "max_pixels 3071", 1);
    r->params.limits.max_pixels = 3071;
    r = add("limit max_pixels (JPEG)", copy(&jpg, jpg.n), TSR_ERR_LIMIT, "max_pixels 100", 1);
    r->params.limits.max_pixels = 100;
    r = add("limit max_side (PNG)", copy(&png, png.n), TSR_ERR_LIMIT, "max_side 63", 1);
    r->params.limits.max_side = 63;
    r = add("limit max_side (JPEG)", copy(&jpg, jpg.n), TSR_ERR_LIMIT, "max_side 47", 1);
    r->params.limits.max_side = 47;
    r = add("limit max_aspect", copy(&jpg, jpg.n), TSR_ERR_LIMIT, "max_aspect 1.3", 1);
    r->params.limits.max_aspect = 1.3;
out:
    free(png.p);
    free(pal.p);
    free(gama.p);
    free(jpg.p);
    free(prog.p);
}

static void test_bad_inputs(void) {
    CHECK(g_nrows >= 25);
    if (g_exif_off.p) { /* without EXIF the same file decodes */
        tsr_image_decode_params p = tsr_image_decode_params_default();
        p.apply_exif = 0;
        tsr_image img;
        tsr_error err = {0};
        CHECK_OK(tsr_image_decode(g_exif_off.p, g_exif_off.n, &p, &img, NULL, &err), &err);
        tsr_image_free(&img);
    }
    for (int i = 0; i < g_nrows; i++) {
        row *r = &g_rows[i];
        const uint8_t *buf = r->null_buf ? NULL : r->in.p;
        for (int ch = 3; ch <= 4; ch++) {
            tsr_image_decode_params p = r->params;
            if (p.channels == 3) p.channels = ch;
            tsr_error err = {0};
            tsr_image img = {1, 1, 3, (uint8_t *)&img};
            tsr_image_info info;
            memset(&info, 0x55, sizeof info);
            tsr_status st = tsr_image_decode(buf, r->in.n, &p, &img, &info, &err);
            CHECK_MSG(st == r->expect, "[%s] got %s (%s), expected %s", r->name,
                      tsr_status_name(st), err.message, tsr_status_name(r->expect));
            CHECK_MSG(strstr(err.message, r->msg) != NULL, "[%s] message '%s' lacks '%s'",
                      r->name, err.message, r->msg);
            CHECK_MSG(!strncmp(err.message, "tsr_image_decode: ", 18), "[%s] message '%s'",
                      r->name, err.message);
            CHECK_MSG(img.data == NULL && img.width == 0, "[%s] out not zeroed", r->name);
            CHECK_MSG(info.width == 0 && info.format == 0, "[%s] info not zeroed", r->name);
            tsr_image_free(&img);
        }
        tsr_error err = {0};
        tsr_image_info info;
        tsr_status st = tsr_image_probe(buf, r->in.n, &r->params, &info, &err);
        if (r->probe_too)
            CHECK_MSG(st == r->expect && strstr(err.message, r->msg),
                      "[%s] probe got %s (%s)", r->name, tsr_status_name(st), err.message);
        else
            CHECK_MSG(st == TSR_OK, "[%s] probe of a header-valid file: %s", r->name,
                      err.message);
    }
    printf("  %d bad inputs\n", g_nrows);
}

/* Fail allocation 1, 2, ... of one decode: each run is OK or a clean OOM. */
static void failpoint_walk(const char *name, int channels) {
    blob b = load(name);
    if (!b.p) {
        tsr_test_failed_checks++;
        return;
    }
    tsr_image_decode_params p = tsr_image_decode_params_default();
    p.channels = channels;
    int ooms = 0;
    for (long n = 1; n < 1000; n++) {
        tsr_error err = {0};
        tsr_image img;
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_image_decode(b.p, b.n, &p, &img, NULL, &err);
        long made = tsr__alloc_failpoint(0);
        CHECK_MSG(st == TSR_OK || st == TSR_ERR_OOM, "%s failpoint %ld: %s %s", name, n,
                  tsr_status_name(st), err.message);
        if (st == TSR_ERR_OOM) {
            ooms++;
            CHECK(img.data == NULL);
        }
        tsr_image_free(&img);
        if (st == TSR_OK && made < n) break; /* no allocation left to fail */
    }
    CHECK_MSG(ooms > 0, "%s: no allocation failed", name);
    printf("  %s: %d allocation failures handled\n", name, ooms);
    free(b.p);
}

static void test_failpoints(void) {
    failpoint_walk("png_exif6.png", 3);
    failpoint_walk("png_exif5_rawprofile.png", 4);
    failpoint_walk("png_p4_adam7.png", 4);
    failpoint_walk("jpg_exif6.jpg", 3);
    failpoint_walk("jpg_cmyk_prog.jpg", 4);
}

int main(void) {
    build_table();
    tsr_test_run("bad_inputs", test_bad_inputs);
    tsr_test_run("failpoints", test_failpoints);
    for (int i = 0; i < g_nrows; i++) free(g_rows[i].in.p);
    free(g_exif_off.p);
    return tsr_test_finish();
}
