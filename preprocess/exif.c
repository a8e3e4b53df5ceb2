/*
 * exif.c - EXIF/XMP orientation as Pillow reads it, and the 8 orientation transforms of
 * ImageOps.exif_transpose.
 *
 * Pillow (Image.getexif -> TiffImagePlugin.ImageFileDirectory_v2.load) reads IFD0 of the
 * TIFF structure; the first entry for a tag wins; entries with an unknown type or no data are
 * skipped; a truncated IFD keeps the entries read so far. The
 * Orientation value is the tag's first element; an out-of-line value that runs past the
 * block ends the IFD there (Pillow's short read aborts the loop); exif_transpose maps 2..8 and ignores
 * anything else (a string, an out-of-range number).
 */
#include "image_internal.h"

#include <math.h>
#include <string.h>

static uint32_t rd16(const uint8_t *p, int be) {
    return be ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t rd32(const uint8_t *p, int be) {
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint64_t rd64(const uint8_t *p, int be) {
    uint64_t a = rd32(p, be), b = rd32(p + 4, be);
    return be ? a << 32 | b : b << 32 | a;
}

/* TIFF type -> element size (TiffImagePlugin's _load_dispatch); 0 = unsupported type. */
static unsigned type_size(uint32_t type) {
    switch (type) {
    case 1: case 2: case 6: case 7: return 1;  /* BYTE ASCII SBYTE UNDEFINED */
    case 3: case 8: return 2;                  /* SHORT SSHORT */
    case 4: case 9: case 11: case 13: return 4; /* LONG SLONG FLOAT IFD */
    case 5: case 10: case 12: case 16: case 17: case 18: return 8; /* RATIONALs DOUBLE LONG8.. */
    default: return 0;
    }
}

/* Integer value of a double, or TSR__ORIENT_OTHER when it is not one. */
static int64_t integral(double v) {
    if (!isfinite(v) || v != floor(v) || fabs(v) > 1e15) return TSR__ORIENT_OTHER;
    int64_t i = (int64_t)v;
    return i == TSR__ORIENT_ABSENT ? TSR__ORIENT_OTHER : i;
}

/* First element of a tag value as the integer Pillow would compare against 2..8. */
static int64_t first_value(uint32_t type, const uint8_t *p, int be) {
    int64_t v;
    switch (type) {
    case 1: case 7: v = p[0]; break;
    case 6: v = (int8_t)p[0]; break;
    case 3: v = rd16(p, be); break;
    case 8: v = (int16_t)rd16(p, be); break;
    case 4: case 13: v = rd32(p, be); break;
    case 9: v = (int32_t)rd32(p, be); break;
    case 16: case 18: v = (int64_t)(rd64(p, be) & INT64_MAX); break;
    case 17: v = (int64_t)rd64(p, be); break;
    case 5: case 10: { /* IFDRational: equal to an int only when it divides exactly */
        int64_t num = type == 5 ? (int64_t)rd32(p, be) : (int32_t)rd32(p, be);
        int64_t den = type == 5 ? (int64_t)rd32(p + 4, be) : (int32_t)rd32(p + 4, be);
        if (den == 0 || num % den != 0) return TSR__ORIENT_OTHER;
        v = num / den;
        break;
    }
    case 11: {
        uint32_t bits = rd32(p, be);
        float f;
        memcpy(&f, &bits, sizeof f);
        return integral(f);
    }
    case 12: {
        uint64_t bits = rd64(p, be);
        double d;
        memcpy(&d, &bits, sizeof d);
        return integral(d);
    }
    default: return TSR__ORIENT_OTHER; /* ASCII: a string never equals 2..8 */
    }
    return v == TSR__ORIENT_ABSENT ? TSR__ORIENT_OTHER : v;
}

int64_t tsr__exif_orientation(const uint8_t *data, size_t len) {
    /* Exif.load strips ^(Exif\0\0){1,2} */
    for (int i = 0; i < 2 && len >= 6 && memcmp(data, "Exif\0\0", 6) == 0; i++) {
        data += 6;
        len -= 6;
    }
    if (len == 0) return TSR__ORIENT_ABSENT; /* empty EXIF: no tags */
    /* TiffImagePlugin PREFIXES; "II+\0" is BigTIFF, whose 16-byte header an 8-byte read
     * cannot hold; a short header fails to unpack */
    static const char *const prefixes[5] = {"MM\0*", "II*\0", "MM*\0", "II\0*", "MM\0+"};
    int known = 0;
    for (int i = 0; i < 5 && len >= 4; i++) known |= memcmp(data, prefixes[i], 4) == 0;
    if (!known || len < 8) return TSR__ORIENT_INVALID;
    int be = data[0] == 'M';
    uint64_t off = rd32(data + 4, be);
    if (off > len || len - off < 2) return TSR__ORIENT_ABSENT;
    uint32_t count = rd16(data + off, be);
    uint64_t pos = off + 2, total = 0;
    for (uint32_t i = 0; i < count; i++, pos += 12) {
        if (pos > len || len - pos < 12) break; /* truncated IFD: keep what was read */
        const uint8_t *e = data + pos;
        uint32_t tag = rd16(e, be), type = rd16(e + 2, be), n = rd32(e + 4, be);
        unsigned unit = type_size(type);
        if (!unit) continue;
        uint64_t size = (uint64_t)n * unit;
        const uint8_t *val = e + 8;
        if (size > 4) {
            uint64_t voff = rd32(e + 8, be);
            total += size;
            if (total > len) continue; /* "tag data larger than file": tag skipped */
            /* a short read raises inside the IFD loop: the rest of the IFD is dropped */
            if (voff > len || len - voff < size) return TSR__ORIENT_ABSENT;
            val = data + voff;
        }
        if (size == 0) continue;
        if (tag != 0x0112) continue; /* Orientation; entries are scanned in order */
        return first_value(type, val, be);
    }
    return TSR__ORIENT_ABSENT;
}

int tsr__xmp_orientation(const uint8_t *data, size_t len) {
    static const char key[] = "tiff:Orientation";
    const size_t k = sizeof key - 1;
    for (size_t i = 0; i + k < len; i++) {
        if (data[i] != 't' || memcmp(data + i, key, k) != 0) continue;
        const uint8_t *p = data + i + k;
        size_t left = len - i - k;
        if (left >= 3 && p[0] == '=' && p[1] == '"' && p[2] >= '0' && p[2] <= '9')
            return p[2] - '0';
        if (left >= 2 && p[0] == '>' && p[1] >= '0' && p[1] <= '9') return p[1] - '0';
    }
    return -1;
}

/* Source pixel of output pixel (x, y) for Pillow's Transpose methods; w, h: source size. */
static void source_xy(int32_t o, int64_t x, int64_t y, int64_t w, int64_t h, int64_t *sx,
                      int64_t *sy) {
    switch (o) {
    case 2: *sx = w - 1 - x; *sy = y; break;          /* FLIP_LEFT_RIGHT */
    case 3: *sx = w - 1 - x; *sy = h - 1 - y; break;  /* ROTATE_180 */
    case 4: *sx = x; *sy = h - 1 - y; break;          /* FLIP_TOP_BOTTOM */
    case 5: *sx = y; *sy = x; break;                  /* TRANSPOSE */
    case 6: *sx = y; *sy = h - 1 - x; break;          /* ROTATE_270 (90 deg clockwise) */
    case 7: *sx = w - 1 - y; *sy = h - 1 - x; break;  /* TRANSVERSE */
    case 8: *sx = w - 1 - y; *sy = x; break;          /* ROTATE_90 (counter-clockwise) */
    default: *sx = x; *sy = y; break;
    }
}

tsr_status tsr__image_orient(tsr_image *img, int32_t orientation, tsr_error *err) {
    if (orientation < 2 || orientation > 8) return TSR_OK;
    int swap = orientation >= 5;
    tsr_image out;
    tsr_status st = tsr_image_alloc(&out, swap ? img->height : img->width,
                                    swap ? img->width : img->height, img->channels, err);
    if (st != TSR_OK) return st;
    const int64_t w = img->width, h = img->height, c = img->channels;
    for (int64_t y = 0; y < out.height; y++) {
        uint8_t *d = out.data + (size_t)(y * out.width * c);
        for (int64_t x = 0; x < out.width; x++, d += c) {
            int64_t sx, sy;
            source_xy(orientation, x, y, w, h, &sx, &sy);
            memcpy(d, img->data + (size_t)((sy * w + sx) * c), (size_t)c);
        }
    }
    tsr_image_free(img);
    *img = out;
    return TSR_OK;
}
