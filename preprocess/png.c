/*
 * png.c - PNG decoding equal to Pillow's PngImagePlugin + convert("RGB"/"RGBA").
 *
 * Two passes over the buffer:
 *  1. A chunk walk that mirrors what Pillow checks and reads: chunk names, CRCs of every
 *     chunk before the first IDAT, the length checks of its chunk handlers, text chunk
 *     size caps; it collects IHDR, PLTE, tRNS and the EXIF/XMP orientation.
 *  2. libpng inflates, unfilters and de-interlaces the samples (no colour transforms);
 *     the samples are then mapped to RGB/RGBA with Pillow's mode rules (PngImagePlugin
 *     _MODES and Convert.c), which differ from libpng's own expansions:
 *       1-bit gray "1": 0/255;  2/4-bit gray "L": v*85 / v*17;
 *       16-bit gray "I;16": clipped to 255, not shifted;  16-bit colour: high byte;
 *       palette: entries past PLTE are black, tRNS gives alpha to the first entries;
 *       gray/RGB tRNS: only the low byte of each tRNS sample is compared, against the
 *       8-bit value Pillow holds (so a 2-bit gray tRNS of 3 never matches 255).
 * libpng is stricter than Pillow in a few places (bad CRC in IDAT, unknown critical
 * chunks, odd PLTE lengths): those files are rejected, never decoded differently.
 */
#include "image_internal.h"

#include <png.h>
#include <setjmp.h>
#include <string.h>
#include <zlib.h>

#define TEXT_CHUNK_MAX (1u << 20)   /* Pillow MAX_TEXT_CHUNK (ImageFile.SAFEBLOCK) */
#define TEXT_MEMORY_MAX (64u << 20) /* Pillow MAX_TEXT_MEMORY */

typedef struct png_scan {
    uint32_t width, height;
    int bit_depth, color_type, interlace;
    int mode_known;
    const uint8_t *plte;  /* PLTE payload (palette images only) */
    size_t plte_len;
    const uint8_t *trns;  /* tRNS payload as Pillow keeps it */
    size_t trns_len;
    int has_trns;
    int64_t exif_orient;  /* from eXIf / tEXt "exif" / raw profile, TSR__ORIENT_* */
    int has_exif;         /* an eXIf or tEXt "exif" block was seen (it wins over the profile) */
    int64_t profile_orient;
    int has_profile;
    int xmp_text_orient;  /* "XML:com.adobe.xmp" text value: -1 none */
    int xmp_text_nonempty;
    int xmp_bytes_orient; /* iTXt XMP bytes */
    uint64_t text_total;
} png_scan;

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Pillow's is_cid: four \w bytes. */
static int is_cid(const uint8_t *c) {
    for (int i = 0; i < 4; i++) {
        uint8_t b = c[i];
        if (!((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
              b == '_'))
            return 0;
    }
    return 1;
}

static void *z_alloc(void *opaque, unsigned n, unsigned size) {
    (void)opaque;
    return tsr__calloc(n, size);
}

static void z_free(void *opaque, void *p) {
    (void)opaque;
    tsr__free(p);
}

/* zlib.decompressobj().decompress(src, cap) as Pillow's _safe_zlib_decompress uses it.
 * Returns 0 ok (*out owned, may be NULL when want_out is 0), 1 too large, 2 zlib error,
 * 3 out of memory. An incomplete stream is not an error (partial output). */
static int inflate_capped(const uint8_t *src, size_t n, int want_out, uint8_t **out,
                          size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    uint8_t scratch[4096];
    uint8_t *buf = NULL;
    if (want_out && !(buf = tsr__malloc(TEXT_CHUNK_MAX))) return 3;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    zs.zalloc = z_alloc;
    zs.zfree = z_free;
    if (inflateInit(&zs) != Z_OK) {
        tsr__free(buf);
        return 3;
    }
    zs.next_in = (Bytef *)(uintptr_t)src;
    zs.avail_in = (uInt)(n > UINT32_MAX ? UINT32_MAX : n);
    size_t total = 0;
    int rc = 0;
    for (;;) {
        size_t room = TEXT_CHUNK_MAX - total;
        if (room == 0) {
            if (zs.avail_in > 0) rc = 1; /* unconsumed tail: "too large" */
            break;
        }
        uint8_t *dst = buf ? buf + total : scratch;
        size_t chunk = buf ? room : (room < sizeof scratch ? room : sizeof scratch);
        zs.next_out = dst;
        zs.avail_out = (uInt)chunk;
        int z = inflate(&zs, Z_NO_FLUSH);
        total += chunk - zs.avail_out;
        if (z == Z_STREAM_END) break;
        if (z == Z_MEM_ERROR) { rc = 3; break; }
        if (z == Z_BUF_ERROR) break; /* input exhausted: partial data */
        if (z != Z_OK) { rc = 2; break; }
        if (zs.avail_in == 0 && zs.avail_out > 0) break;
    }
    inflateEnd(&zs);
    if (rc != 0 || !want_out) {
        tsr__free(buf);
        return rc;
    }
    *out = buf;
    *out_len = total;
    return 0;
}

/* Strict UTF-8 check (Python's decoder: no overlongs, surrogates or > U+10FFFF). */
static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        int k;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; }
        else return 0;
        if (n - i <= (size_t)k) return 0;
        for (int j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += (size_t)k + 1;
    }
    return 1;
}

/* "Raw profile type exif" (ImageMagick): drop 3 lines, join the rest, bytes.fromhex. */
static void read_raw_profile(png_scan *s, const uint8_t *v, size_t n) {
    size_t i = 0;
    for (int line = 0; line < 3; line++) {
        while (i < n && v[i] != '\n') i++;
        if (i >= n) return; /* fewer than 4 lines: empty hex, empty EXIF */
        i++;
    }
    uint8_t *bin = tsr__malloc(n / 2 + 1);
    if (!bin) return; /* only orientation is lost; the decode itself goes on */
    size_t m = 0;
    int hi = -1, ok = 1;
    for (; i < n && ok; i++) {
        uint8_t c = v[i];
        if (c == '\n') continue; /* the joined lines */
        int d = (c >= '0' && c <= '9') ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) {
            /* fromhex skips whitespace between byte pairs only */
            if (hi < 0 && (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'))
                continue;
            ok = 0;
            break;
        }
        if (hi < 0) hi = d;
        else { bin[m++] = (uint8_t)(hi << 4 | d); hi = -1; }
    }
    s->has_profile = 1; /* bad hex: bytes.fromhex raises inside getexif */
    s->profile_orient = ok && hi < 0 ? tsr__exif_orientation(bin, m) : TSR__ORIENT_INVALID;
    tsr__free(bin);
}

/* A text value stored under key k (Pillow's im_info[k] = value). */
static void text_value(png_scan *s, const uint8_t *k, size_t klen, const uint8_t *v,
                       size_t vlen, int from_text_chunk) {
    if (klen == 17 && memcmp(k, "XML:com.adobe.xmp", 17) == 0) {
        s->xmp_text_orient = tsr__xmp_orientation(v, vlen);
        s->xmp_text_nonempty = vlen > 0;
    } else if (klen == 21 && memcmp(k, "Raw profile type exif", 21) == 0) {
        s->has_profile = 0;
        read_raw_profile(s, v, vlen);
    } else if (from_text_chunk && klen == 4 && memcmp(k, "exif", 4) == 0) {
        s->has_exif = 1; /* tEXt "exif" is kept as bytes, like eXIf */
        s->exif_orient = tsr__exif_orientation(v, vlen);
    }
}

#define FAIL_PNG(...) tsr__fail(err, TSR_ERR_FORMAT, __VA_ARGS__)

/* Inflate failure other than "too large"/OOM is ignored as Pillow does. */
static tsr_status text_inflate(const char *cid, const uint8_t *src, size_t n, int want,
                               uint8_t **out, size_t *out_len, int *ok, tsr_error *err) {
    int rc = inflate_capped(src, n, want, out, out_len);
    *ok = rc == 0;
    if (rc == 1)
        return FAIL_PNG("%s chunk decompresses to more than %u bytes (Pillow MAX_TEXT_CHUNK)",
                        cid, TEXT_CHUNK_MAX);
    if (rc == 3) return tsr__fail(err, TSR_ERR_OOM, "cannot inflate %s chunk", cid);
    return TSR_OK;
}

static tsr_status count_text(png_scan *s, size_t n, tsr_error *err) {
    s->text_total += n;
    if (s->text_total > TEXT_MEMORY_MAX)
        return FAIL_PNG("text chunks exceed %u bytes (Pillow MAX_TEXT_MEMORY)", TEXT_MEMORY_MAX);
    return TSR_OK;
}

/* One chunk handler, as PngStream.chunk_<cid>. */
static tsr_status handle_chunk(png_scan *s, const char *cid, const uint8_t *d, size_t n,
                               tsr_error *err) {
    if (!strcmp(cid, "IHDR")) {
        if (n < 13) return FAIL_PNG("truncated IHDR chunk (%zu bytes)", n);
        s->width = be32(d);
        s->height = be32(d + 4);
        s->bit_depth = d[8];
        s->color_type = d[9];
        s->interlace = d[12];
        int bd = d[8], ct = d[9];
        s->mode_known = (ct == 0 && (bd == 1 || bd == 2 || bd == 4 || bd == 8 || bd == 16)) ||
                        (ct == 3 && (bd == 1 || bd == 2 || bd == 4 || bd == 8)) ||
                        ((ct == 2 || ct == 4 || ct == 6) && (bd == 8 || bd == 16));
        if (d[11]) return FAIL_PNG("unknown filter method %d in IHDR", d[11]);
    } else if (!strcmp(cid, "PLTE")) {
        if (s->mode_known && s->color_type == 3) {
            s->plte = d;
            s->plte_len = n;
        }
    } else if (!strcmp(cid, "tRNS")) {
        if (!s->mode_known) return TSR_OK;
        if (s->color_type == 3) {
            s->trns = d;
            s->trns_len = n;
            s->has_trns = 1;
        } else if (s->color_type == 0 || s->color_type == 2) {
            size_t need = s->color_type == 2 ? 6 : 2;
            if (n < need) return FAIL_PNG("truncated tRNS chunk (%zu bytes, need %zu)", n, need);
            s->trns = d;
            s->trns_len = n;
            s->has_trns = 1;
        }
    } else if (!strcmp(cid, "gAMA") || !strcmp(cid, "cHRM") || !strcmp(cid, "sRGB") ||
               !strcmp(cid, "pHYs") || !strcmp(cid, "acTL") || !strcmp(cid, "fcTL") ||
               !strcmp(cid, "fdAT")) {
        size_t need = cid[0] == 'g' ? 4 : cid[0] == 'c' ? 32 : cid[0] == 's' ? 1
                    : cid[0] == 'p' ? 9 : cid[0] == 'a' ? 8 : cid[1] == 'c' ? 26 : 4;
        if (n < need) return FAIL_PNG("truncated %s chunk (%zu bytes, need %zu)", cid, n, need);
    } else if (!strcmp(cid, "eXIf")) {
        s->has_exif = 1;
        s->exif_orient = tsr__exif_orientation(d, n);
    } else if (!strcmp(cid, "iCCP")) {
        const uint8_t *z = memchr(d, 0, n);
        size_t i = z ? (size_t)(z - d) : (size_t)-1; /* s.find(b"\0") */
        if (n == 0 || (z && i + 1 >= n)) return FAIL_PNG("truncated iCCP chunk");
        uint8_t method = d[i + 1];
        if (method != 0) return FAIL_PNG("unknown compression method %d in iCCP chunk", method);
        uint8_t *unused;
        size_t ulen;
        int ok;
        return text_inflate("iCCP", d + i + 2, n - (i + 2), 0, &unused, &ulen, &ok, err);
    } else if (!strcmp(cid, "tEXt")) {
        const uint8_t *z = memchr(d, 0, n);
        size_t klen = z ? (size_t)(z - d) : n;
        const uint8_t *v = z ? z + 1 : d + n;
        size_t vlen = z ? n - klen - 1 : 0;
        if (klen) {
            text_value(s, d, klen, v, vlen, 1);
            return count_text(s, vlen, err);
        }
    } else if (!strcmp(cid, "zTXt")) {
        const uint8_t *z = memchr(d, 0, n);
        size_t klen = z ? (size_t)(z - d) : n;
        const uint8_t *v = z ? z + 1 : d + n;
        size_t vlen = z ? n - klen - 1 : 0;
        if (vlen && v[0] != 0)
            return FAIL_PNG("unknown compression method %d in zTXt chunk", v[0]);
        uint8_t *text = NULL;
        size_t tlen = 0;
        int ok;
        tsr_status st = text_inflate("zTXt", vlen ? v + 1 : v, vlen ? vlen - 1 : 0, 1, &text,
                                     &tlen, &ok, err);
        if (st != TSR_OK) return st;
        if (klen) {
            text_value(s, d, klen, ok ? text : (const uint8_t *)"", ok ? tlen : 0, 0);
            st = count_text(s, ok ? tlen : 0, err);
        }
        tsr__free(text);
        return st;
    } else if (!strcmp(cid, "iTXt")) {
        const uint8_t *z = memchr(d, 0, n);
        if (!z) return TSR_OK;
        size_t klen = (size_t)(z - d);
        const uint8_t *r = z + 1;
        size_t rlen = n - klen - 1;
        if (rlen < 2) return TSR_OK;
        uint8_t cf = r[0], cm = r[1];
        r += 2;
        rlen -= 2;
        const uint8_t *z1 = memchr(r, 0, rlen);
        if (!z1) return TSR_OK;
        const uint8_t *tk = z1 + 1;
        const uint8_t *z2 = memchr(tk, 0, rlen - (size_t)(tk - r));
        if (!z2) return TSR_OK;
        const uint8_t *v = z2 + 1;
        size_t vlen = rlen - (size_t)(v - r);
        uint8_t *text = NULL;
        if (cf != 0) {
            if (cm != 0) return TSR_OK;
            size_t tlen;
            int ok;
            tsr_status st = text_inflate("iTXt", v, vlen, 1, &text, &tlen, &ok, err);
            if (st != TSR_OK) return st;
            if (!ok) return TSR_OK;
            v = text;
            vlen = tlen;
        }
        if (klen == 17 && memcmp(d, "XML:com.adobe.xmp", 17) == 0)
            s->xmp_bytes_orient = tsr__xmp_orientation(v, vlen);
        tsr_status st = TSR_OK;
        if (utf8_valid(r, (size_t)(z1 - r)) && utf8_valid(tk, (size_t)(z2 - tk)) &&
            utf8_valid(v, vlen)) {
            text_value(s, d, klen, v, vlen, 0);
            st = count_text(s, vlen, err);
        }
        tsr__free(text);
        return st;
    }
    return TSR_OK;
}

/* The chunk walk (pass 1). */
static tsr_status png_walk(const uint8_t *buf, size_t len, png_scan *s, tsr_error *err) {
    memset(s, 0, sizeof *s);
    s->exif_orient = s->profile_orient = TSR__ORIENT_ABSENT;
    s->xmp_text_orient = s->xmp_bytes_orient = -1;
    size_t pos = 8;
    int seen_idat = 0, seen_ihdr = 0;
    for (;;) {
        char cid[5] = {0};
        if (len - pos < 8) {
            if (seen_idat) break; /* after the image data Pillow stops quietly */
            return FAIL_PNG("truncated PNG file: chunk header at offset %zu", pos);
        }
        uint32_t n = be32(buf + pos);
        memcpy(cid, buf + pos + 4, 4);
        if (!is_cid(buf + pos + 4)) {
            if (seen_idat) break;
            return FAIL_PNG("broken PNG file (chunk name %02x%02x%02x%02x at offset %zu)",
                            buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7], pos);
        }
        pos += 8;
        if (!strcmp(cid, "IEND")) {
            if (!seen_idat) return FAIL_PNG("no IDAT chunk before IEND");
            break;
        }
        if (n > len - pos)
            return FAIL_PNG("truncated PNG file: %s chunk of %u bytes at offset %zu has %zu",
                            cid, n, pos - 8, len - pos);
        if (!strcmp(cid, "IDAT")) {
            if (!seen_ihdr) return FAIL_PNG("IDAT before IHDR");
            seen_idat = 1;
        } else {
            if (!strcmp(cid, "IHDR")) seen_ihdr = 1;
            tsr_status st = handle_chunk(s, cid, buf + pos, n, err);
            if (st != TSR_OK) return st;
            if (!seen_idat) { /* Pillow verifies CRCs up to the first IDAT */
                if (len - pos - n < 4) return FAIL_PNG("incomplete checksum in %s chunk", cid);
                uLong crc = crc32(0L, (const Bytef *)cid, 4);
                crc = crc32(crc, buf + pos, n);
                if ((uint32_t)crc != be32(buf + pos + n))
                    return FAIL_PNG("bad checksum in %s chunk at offset %zu", cid, pos - 8);
            }
        }
        pos += n;
        if (len - pos < 4) {
            if (seen_idat) break;
            return FAIL_PNG("truncated PNG file: no CRC after %s", cid);
        }
        pos += 4;
    }
    if (!seen_ihdr) return FAIL_PNG("missing IHDR chunk");
    if (!s->mode_known)
        return FAIL_PNG("unsupported bit depth %d with colour type %d", s->bit_depth,
                        s->color_type);
    return TSR_OK;
}

/* Image.getexif(): info["exif"], else the raw profile; XMP when no Orientation tag. */
static int32_t scan_orientation(const png_scan *s, int32_t *invalid) {
    int64_t o = TSR__ORIENT_ABSENT;
    if (s->has_exif) o = s->exif_orient;
    else if (s->has_profile) o = s->profile_orient;
    *invalid = o == TSR__ORIENT_INVALID;
    if (o == TSR__ORIENT_ABSENT) {
        int x = s->xmp_text_nonempty ? s->xmp_text_orient : s->xmp_bytes_orient;
        o = x;
    }
    return (o >= 1 && o <= 8) ? (int32_t)o : 1;
}

static void fill_header(const png_scan *s, tsr__image_header *h) {
    static const int chans[7] = {1, 0, 3, 1, 2, 0, 4};
    memset(h, 0, sizeof *h);
    h->format = TSR_IMAGE_FORMAT_PNG;
    h->width = (int32_t)(s->width > INT32_MAX ? INT32_MAX : s->width);
    h->height = (int32_t)(s->height > INT32_MAX ? INT32_MAX : s->height);
    h->bit_depth = s->bit_depth;
    h->channels = chans[s->color_type];
    h->has_alpha = s->color_type == 4 || s->color_type == 6 || s->has_trns;
    h->orientation = scan_orientation(s, &h->exif_invalid);
    const char *mode = "RGBA";
    switch (s->color_type) {
    case 0: mode = s->bit_depth == 1 ? "1" : s->bit_depth == 16 ? "I;16" : "L"; break;
    case 2: mode = "RGB"; break;
    case 3: mode = "P"; break;
    case 4: mode = s->bit_depth == 8 ? "LA" : "RGBA"; break; /* LA;16B opens as RGBA */
    default: break;
    }
    snprintf(h->mode, sizeof h->mode, "%s", mode);
}

tsr_status tsr__png_probe(const uint8_t *buf, size_t len,
                          const tsr_image_decode_params *params, tsr__image_header *hdr,
                          tsr_error *err) {
    png_scan s;
    tsr_status st = png_walk(buf, len, &s, err);
    if (st != TSR_OK) return st;
    fill_header(&s, hdr);
    return tsr__image_check_header(hdr, params, err);
}

/* ------------------------------------------------------------------------------------ */
/* Pass 2: libpng                                                                         */
/* ------------------------------------------------------------------------------------ */

typedef struct png_ctx {
    const uint8_t *buf;
    size_t len, pos;
    int oom;
    char msg[200];
    uint8_t *raw;      /* decoded samples, height x rowbytes */
    size_t raw_size;   /* non-zero: raw is the caller's buffer of this many bytes */
    png_bytep *rows;
} png_ctx;

static void png_err_fn(png_structp png, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* quiet: warnings never reach stderr */
}

static png_voidp png_malloc_fn(png_structp png, png_alloc_size_t n) {
    png_voidp p = tsr__malloc(n);
    if (!p) ((png_ctx *)png_get_mem_ptr(png))->oom = 1;
    return p;
}

static void png_free_fn(png_structp png, png_voidp p) {
    (void)png;
    tsr__free(p);
}

static void png_read_fn(png_structp png, png_bytep dst, size_t n) {
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) png_error(png, "truncated PNG data (read past the end)");
    memcpy(dst, c->buf + c->pos, n);
    c->pos += n;
}

/* Runs libpng over the buffer into c->raw (packing only: one byte per sample below 8 bits,
 * big-endian pairs at 16). All setjmp state lives in *c. */
static int png_run(png_ctx *c, const png_scan *s, const tsr_limits *limits, size_t *rowbytes) {
    png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, c, png_err_fn,
                                               png_warn_fn, c, png_malloc_fn, png_free_fn);
    if (!png) {
        c->oom = 1;
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        c->oom = 1;
        png_destroy_read_struct(&png, NULL, NULL);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    uint32_t side = limits && limits->max_side > 0 ? (uint32_t)limits->max_side : 0x7fffffffu;
    png_set_user_limits(png, side, side);
    png_set_chunk_cache_max(png, 256);
    png_set_chunk_malloc_max(png, 1u << 20);
    /* everything except IHDR/PLTE/tRNS/IDAT/IEND is skipped (the walk read it) */
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    png_set_read_fn(png, c, png_read_fn);
    png_read_info(png, info);
    if (png_get_image_width(png, info) != s->width || png_get_image_height(png, info) != s->height)
        png_error(png, "IHDR changed between passes");
    if (s->bit_depth < 8) png_set_packing(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rb = png_get_rowbytes(png, info);
    size_t total;
    if (!tsr__mul_size(rb, s->height, &total)) png_error(png, "image size overflows");
    if (c->raw_size && c->raw_size != total) png_error(png, "row size changed between passes");
    if (!c->raw_size) c->raw = tsr__malloc(total);
    c->rows = tsr__malloc(sizeof *c->rows * s->height);
    if (!c->raw || !c->rows) {
        c->oom = 1;
        png_error(png, "out of memory for the sample buffer");
    }
    for (uint32_t y = 0; y < s->height; y++) c->rows[y] = c->raw + (size_t)y * rb;
    png_read_image(png, c->rows);
    png_destroy_read_struct(&png, &info, NULL);
    *rowbytes = rb;
    return 0;
}

/* Pillow's 8-bit value of gray sample v (modes "1", "L", "I;16" -> L). */
static uint8_t gray8(const png_scan *s, const uint8_t *p, uint32_t x) {
    switch (s->bit_depth) {
    case 1: return p[x] ? 255 : 0;
    case 2: return (uint8_t)(p[x] * 85);
    case 4: return (uint8_t)(p[x] * 17);
    case 8: return p[x];
    default: return p[2 * x] ? 255 : p[2 * x + 1]; /* I;16 clips */
    }
}

/* Samples -> RGB/RGBA, one row. */
static void convert_row(const png_scan *s, const uint8_t *pal /* 256 x RGBA */,
                        const uint8_t *p, uint8_t *o, uint32_t w, int channels) {
    const int wide = s->bit_depth == 16;
    switch (s->color_type) {
    case 0: {
        /* tRNS: gray 1-bit is 0/255 by Pillow; others compare the low byte */
        int t = -1;
        if (s->has_trns) {
            uint32_t tv = (uint32_t)s->trns[0] << 8 | s->trns[1];
            t = s->bit_depth == 1 ? (tv ? 255 : 0) : (int)(tv & 0xff);
        }
        for (uint32_t x = 0; x < w; x++, o += channels) {
            uint8_t v = gray8(s, p, x);
            o[0] = o[1] = o[2] = v;
            if (channels == 4) o[3] = (t >= 0 && v == t) ? 0 : 255;
        }
        break;
    }
    case 2: {
        int tr = -1, tg = -1, tb = -1;
        if (s->has_trns) {
            tr = s->trns[1];
            tg = s->trns[3];
            tb = s->trns[5];
        }
        for (uint32_t x = 0; x < w; x++, o += channels) {
            const uint8_t *q = p + (size_t)x * (wide ? 6 : 3);
            o[0] = q[0];
            o[1] = q[wide ? 2 : 1];
            o[2] = q[wide ? 4 : 2];
            if (channels == 4) o[3] = (o[0] == tr && o[1] == tg && o[2] == tb) ? 0 : 255;
        }
        break;
    }
    case 3:
        for (uint32_t x = 0; x < w; x++, o += channels) memcpy(o, pal + 4 * p[x], (size_t)channels);
        break;
    case 4:
        for (uint32_t x = 0; x < w; x++, o += channels) {
            const uint8_t *q = p + (size_t)x * (wide ? 4 : 2);
            o[0] = o[1] = o[2] = q[0];
            if (channels == 4) o[3] = q[wide ? 2 : 1];
        }
        break;
    default:
        for (uint32_t x = 0; x < w; x++, o += channels) {
            const uint8_t *q = p + (size_t)x * (wide ? 8 : 4);
            for (int k = 0; k < channels; k++) o[k] = q[wide ? 2 * k : k];
        }
        break;
    }
}

tsr_status tsr__png_decode(const uint8_t *buf, size_t len,
                           const tsr_image_decode_params *params, tsr__image_header *hdr,
                           tsr_image *out, tsr_error *err) {
    const int32_t channels = params->channels;
    png_scan s;
    tsr_status st = png_walk(buf, len, &s, err);
    if (st != TSR_OK) return st;
    fill_header(&s, hdr);
    st = tsr__image_check_header(hdr, params, err);
    if (st != TSR_OK) return st;

    png_ctx c;
    memset(&c, 0, sizeof c);
    c.buf = buf;
    c.len = len;
    /* 8-bit RGB to RGB and RGBA to RGBA need no conversion: libpng writes the output rows. */
    const bool direct = s.bit_depth == 8 && ((s.color_type == 2 && channels == 3) ||
                                             (s.color_type == 6 && channels == 4));
    if (direct) {
        st = tsr_image_alloc(out, (int32_t)s.width, (int32_t)s.height, channels, err);
        if (st != TSR_OK) return st;
        c.raw = out->data;
        c.raw_size = (size_t)s.width * (size_t)s.height * (size_t)channels;
    }
    size_t rowbytes = 0;
    if (png_run(&c, &s, &params->limits, &rowbytes) != 0) {
        if (direct) tsr_image_free(out);
        else tsr__free(c.raw);
        tsr__free(c.rows);
        if (c.oom) return tsr__fail(err, TSR_ERR_OOM, "out of memory decoding PNG (%s)", c.msg);
        return FAIL_PNG("libpng: %s", c.msg);
    }
    tsr__free(c.rows);
    if (direct) return TSR_OK;

    /* Palette as Pillow holds it: 256 entries, black and opaque past PLTE; tRNS alpha for
     * the first entries. */
    uint8_t pal[256 * 4];
    for (int i = 0; i < 256; i++) {
        pal[4 * i] = pal[4 * i + 1] = pal[4 * i + 2] = 0;
        pal[4 * i + 3] = 255;
    }
    if (s.color_type == 3) {
        size_t np = s.plte_len / 3 > 256 ? 256 : s.plte_len / 3;
        for (size_t i = 0; i < np; i++) memcpy(pal + 4 * i, s.plte + 3 * i, 3);
        size_t na = s.trns_len > 256 ? 256 : s.trns_len;
        if (channels == 4)
            for (size_t i = 0; i < na; i++) pal[4 * i + 3] = s.trns[i];
    }
    st = tsr_image_alloc(out, (int32_t)s.width, (int32_t)s.height, channels, err);
    if (st != TSR_OK) {
        tsr__free(c.raw);
        return st;
    }
    for (uint32_t y = 0; y < s.height; y++)
        convert_row(&s, pal, c.raw + (size_t)y * rowbytes,
                    out->data + (size_t)y * s.width * (size_t)channels, s.width, channels);
    tsr__free(c.raw);
    return TSR_OK;
}
