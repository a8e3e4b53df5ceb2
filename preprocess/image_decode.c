/*
 * image_decode.c - the tsr_image value object and the decode entry points.
 */
#include "image_internal.h"

#include <stdio.h>

#include <string.h>

const char *tsr_image_format_name(tsr_image_format f) {
    switch (f) {
    case TSR_IMAGE_FORMAT_PNG:
        return "png";
    case TSR_IMAGE_FORMAT_JPEG:
        return "jpeg";
    case TSR_IMAGE_FORMAT_UNKNOWN:
        break;
    }
    return "unknown";
}

tsr_status tsr_image_alloc(tsr_image *out, int32_t width, int32_t height, int32_t channels,
                           tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    if (width < 1 || height < 1)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "size %d x %d must be at least 1 x 1",
                        (int)width, (int)height);
    if (channels < 1 || channels > 4)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "channels %d outside [1, 4]", (int)channels);
    size_t bytes;
    if (!tsr__mul3_size((size_t)width, (size_t)height, (size_t)channels, &bytes))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "%d x %d x %d bytes overflows size_t", (int)width,
                        (int)height, (int)channels);
    uint8_t *data = tsr__malloc(bytes);
    if (!data)
        return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate %zu bytes for a %d x %d x %d image",
                        bytes, (int)width, (int)height, (int)channels);
    out->width = width;
    out->height = height;
    out->channels = channels;
    out->data = data;
    return TSR_OK;
}

void tsr_image_free(tsr_image *img) {
    if (!img) return;
    tsr__free(img->data);
    memset(img, 0, sizeof *img);
}

/* ------------------------------------------------------------------------------------ */
/* Decode entry points                                                                    */
/* ------------------------------------------------------------------------------------ */

tsr_image_decode_params tsr_image_decode_params_default(void) {
    tsr_image_decode_params p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.channels = 3;
    p.apply_exif = 1;
    p.limits = tsr_limits_default();
    return p;
}

static tsr_status check_limits(int64_t width, int64_t height, const tsr_limits *limits,
                               tsr_error *err) {
    if (width <= 0 || height <= 0)
        return tsr__fail(err, TSR_ERR_FORMAT, "image size %lld x %lld in the header",
                         (long long)width, (long long)height);
    if (!limits) return TSR_OK;
    if (limits->max_side > 0 && (width > limits->max_side || height > limits->max_side))
        return tsr__fail(err, TSR_ERR_LIMIT, "image size %lld x %lld exceeds max_side %d",
                         (long long)width, (long long)height, (int)limits->max_side);
    if (limits->max_pixels > 0 && (uint64_t)width * (uint64_t)height > limits->max_pixels)
        return tsr__fail(err, TSR_ERR_LIMIT,
                         "image size %lld x %lld = %llu pixels exceeds max_pixels %llu",
                         (long long)width, (long long)height,
                         (unsigned long long)((uint64_t)width * (uint64_t)height),
                         (unsigned long long)limits->max_pixels);
    if (limits->max_aspect > 0) {
        double lo = (double)(width < height ? width : height);
        double hi = (double)(width < height ? height : width);
        if (hi / lo > limits->max_aspect)
            return tsr__fail(err, TSR_ERR_LIMIT,
                             "image size %lld x %lld has aspect ratio %.1f, max_aspect %g",
                             (long long)width, (long long)height, hi / lo,
                             limits->max_aspect);
    }
    return TSR_OK;
}

tsr_status tsr__image_check_header(const tsr__image_header *h,
                                   const tsr_image_decode_params *params, tsr_error *err) {
    tsr_status st = check_limits(h->width, h->height, &params->limits, err);
    if (st != TSR_OK) return st;
    if (params->apply_exif && h->exif_invalid)
        return tsr__fail(err, TSR_ERR_FORMAT,
                         "the EXIF block is not a TIFF structure (Pillow's exif_transpose "
                         "raises on it; decode with apply_exif = 0 to ignore EXIF)");
    return TSR_OK;
}

static tsr_image_format sniff(const uint8_t *buf, size_t len) {
    if (len >= 8 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0) return TSR_IMAGE_FORMAT_PNG;
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return TSR_IMAGE_FORMAT_JPEG;
    return TSR_IMAGE_FORMAT_UNKNOWN;
}

/* Validates the common arguments and sniffs the format. */
static tsr_status check_args(const char *fn, const uint8_t *buf, size_t len,
                             const tsr_image_decode_params *params, tsr_image_format *fmt,
                             tsr_error *err) {
    if (!buf) return tsr__fail(err, TSR_ERR_INVALID_ARG, "%s: buf is NULL", fn);
    if (params && params->size != sizeof *params)
        return tsr__fail(err, TSR_ERR_INVALID_ARG, "%s: params->size is %zu, expected %zu", fn,
                         params->size, sizeof *params);
    if (params && params->channels != 3 && params->channels != 4)
        return tsr__fail(err, TSR_ERR_INVALID_ARG, "%s: params->channels is %d (3 or 4)", fn,
                         (int)params->channels);
    if (len == 0) return tsr__fail(err, TSR_ERR_FORMAT, "%s: empty buffer", fn);
    uint64_t max_bytes = params ? params->limits.max_encoded_bytes : 0;
    if (!params) max_bytes = tsr_limits_default().max_encoded_bytes;
    if (max_bytes > 0 && (uint64_t)len > max_bytes)
        return tsr__fail(err, TSR_ERR_LIMIT, "%s: %zu encoded bytes exceed max_encoded_bytes %llu",
                         fn, len, (unsigned long long)max_bytes);
    *fmt = sniff(buf, len);
    if (*fmt == TSR_IMAGE_FORMAT_UNKNOWN) {
        char hex[3 * 8 + 1] = {0};
        size_t h = 0;
        for (size_t i = 0; i < len && i < 8; i++)
            h += (size_t)snprintf(hex + h, sizeof hex - h, "%s%02x", i ? " " : "", buf[i]);
        return tsr__fail(err, TSR_ERR_UNSUPPORTED, "%s: unrecognised image format (magic %s)",
                         fn, hex);
    }
    return TSR_OK;
}

/* Internal failures carry no function name: prefix the public one. */
static tsr_status named(tsr_status st, const char *fn, tsr_error *err) {
    if (err && st != TSR_OK) {
        size_t k = strlen(fn) + 2, n = strnlen(err->message, TSR_ERROR_MSG_MAX - 1);
        if (k >= TSR_ERROR_MSG_MAX) return st;
        if (n > TSR_ERROR_MSG_MAX - 1 - k) n = TSR_ERROR_MSG_MAX - 1 - k;
        memmove(err->message + k, err->message, n);
        memcpy(err->message, fn, k - 2);
        memcpy(err->message + k - 2, ": ", 2);
        err->message[k + n] = 0;
    }
    return st;
}

static void fill_info(const tsr__image_header *h, int apply_exif, tsr_image_info *info) {
    if (!info) return;
    memset(info, 0, sizeof *info);
    int swap = apply_exif && h->orientation >= 5;
    info->format = h->format;
    info->width = swap ? h->height : h->width;
    info->height = swap ? h->width : h->height;
    info->orientation = h->orientation;
    info->bit_depth = h->bit_depth;
    info->channels = h->channels;
    info->has_alpha = h->has_alpha;
    memcpy(info->mode, h->mode, sizeof info->mode);
}

tsr_status tsr_image_probe(const uint8_t *buf, size_t len, const tsr_image_decode_params *params,
                           tsr_image_info *info, tsr_error *err) {
    if (info) memset(info, 0, sizeof *info);
    if (!info) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "info is NULL");
    tsr_image_format fmt;
    tsr_status st = check_args(__func__, buf, len, params, &fmt, err);
    if (st != TSR_OK) return st;
    tsr_image_decode_params def = tsr_image_decode_params_default();
    if (!params) params = &def;
    tsr__image_header h;
    st = fmt == TSR_IMAGE_FORMAT_PNG ? tsr__png_probe(buf, len, params, &h, err)
                                     : tsr__jpeg_probe(buf, len, params, &h, err);
    if (st != TSR_OK) return named(st, __func__, err);
    fill_info(&h, params->apply_exif, info);
    return TSR_OK;
}

tsr_status tsr_image_decode(const uint8_t *buf, size_t len, const tsr_image_decode_params *params,
                            tsr_image *out, tsr_image_info *info, tsr_error *err) {
    if (info) memset(info, 0, sizeof *info);
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    tsr_image_format fmt;
    tsr_status st = check_args(__func__, buf, len, params, &fmt, err);
    if (st != TSR_OK) return st;
    tsr_image_decode_params def = tsr_image_decode_params_default();
    if (!params) params = &def;
    tsr__image_header h;
    tsr_image img;
    st = fmt == TSR_IMAGE_FORMAT_PNG
             ? tsr__png_decode(buf, len, params, &h, &img, err)
             : tsr__jpeg_decode(buf, len, params, &h, &img, err);
    if (st != TSR_OK) return named(st, __func__, err);
    if (params->apply_exif) {
        st = tsr__image_orient(&img, h.orientation, err);
        if (st != TSR_OK) {
            tsr_image_free(&img);
            return named(st, __func__, err);
        }
    }
    fill_info(&h, params->apply_exif, info);
    *out = img;
    return TSR_OK;
}

tsr_status tsr_image_composite_white(const tsr_image *src, tsr_image *out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    if (!src || !src->data)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "src is NULL or has no data");
    if (src->channels != 3 && src->channels != 4)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "src has %d channels (3 or 4)",
                        (int)src->channels);
    tsr_status st = tsr_image_alloc(out, src->width, src->height, 3, err);
    if (st != TSR_OK) return st;
    size_t n = (size_t)src->width * (size_t)src->height;
    const uint8_t *s = src->data;
    uint8_t *d = out->data;
    if (src->channels == 3) {
        memcpy(d, s, n * 3);
        return TSR_OK;
    }
    /* Pillow alpha_composite over opaque white, in its integer form:
     * t = c*a + 255*(255-a) + 128; out = ((t >> 8) + t) >> 8 */
    for (size_t i = 0; i < n; i++, s += 4, d += 3) {
        uint32_t a = s[3], bg = 255u * (255u - a) + 128u;
        for (int k = 0; k < 3; k++) {
            uint32_t t = s[k] * a + bg;
            d[k] = (uint8_t)(((t >> 8) + t) >> 8);
        }
    }
    return TSR_OK;
}
