/*
 * image_ops.c - crop, pad, center crop, tiles and rescale/normalise on 8-bit images,
 * with the semantics of numpy slicing / np.pad and transformers.image_transforms.
 */
#include "tessera_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Largest canvas pad and center_crop create (pixels): far above any model input, and it
 * keeps an absurd request from reaching the allocator. */
#define CANVAS_MAX_PIXELS ((int64_t)1 << 28)

/* Checks what every operation needs of its source image. */
static tsr_status check_src(const tsr_image *src, const char *fn, tsr_error *err) {
    if (!src || !src->data)
        return tsr__fail_fn(err, TSR_ERR_INVALID_ARG, fn, "src is NULL or has no pixels");
    if (src->width < 1 || src->height < 1 || src->channels < 1 || src->channels > 4)
        return tsr__fail_fn(err, TSR_ERR_INVALID_ARG, fn,
                            "src is %d x %d with %d channels; expected >= 1 x 1, 1..4 channels",
                            (int)src->width, (int)src->height, (int)src->channels);
    size_t bytes;
    if (!tsr__mul3_size((size_t)src->width, (size_t)src->height, (size_t)src->channels, &bytes))
        return tsr__fail_fn(err, TSR_ERR_LIMIT, fn, "src %d x %d x %d overflows size_t",
                            (int)src->width, (int)src->height, (int)src->channels);
    return TSR_OK;
}

tsr_status tsr_image_crop(const tsr_image *src, int32_t x, int32_t y, int32_t width,
                          int32_t height, tsr_image *out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    tsr_status st = check_src(src, __func__, err);
    if (st != TSR_OK) return st;
    if (width < 1 || height < 1)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "crop size %d x %d must be at least 1 x 1",
                        (int)width, (int)height);
    if (x < 0 || y < 0 || (int64_t)x + width > src->width || (int64_t)y + height > src->height)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                        "crop [%d, %lld) x [%d, %lld) lies outside the %d x %d image", (int)x,
                        (long long)x + width, (int)y, (long long)y + height,
                        (int)src->width, (int)src->height);
    if ((st = tsr_image_alloc(out, width, height, src->channels, err)) != TSR_OK) return st;
    const size_t C = (size_t)src->channels, row = (size_t)width * C;
    for (int32_t r = 0; r < height; r++)
        memcpy(out->data + (size_t)r * row,
               src->data + ((size_t)(y + r) * (size_t)src->width + (size_t)x) * C, row);
    return TSR_OK;
}

/* Canvas of width x height filled with fill[0..C), src pasted with its top-left corner at
 * (x, y) and clipped to the canvas. */
static tsr_status pad_into(const tsr_image *src, int32_t width, int32_t height, int32_t x,
                           int32_t y, const uint8_t *fill, tsr_image *out, const char *fn,
                           tsr_error *err) {
    if (width < 1 || height < 1)
        return tsr__fail_fn(err, TSR_ERR_INVALID_ARG, fn,
                            "canvas size %d x %d must be at least 1 x 1", (int)width,
                            (int)height);
    if ((int64_t)width * height > CANVAS_MAX_PIXELS)
        return tsr__fail_fn(err, TSR_ERR_LIMIT, fn,
                            "canvas %d x %d exceeds the limit of %lld pixels", (int)width,
                            (int)height, (long long)CANVAS_MAX_PIXELS);
    tsr_status st = tsr_image_alloc(out, width, height, src->channels, err);
    if (st != TSR_OK) return st;
    const int C = src->channels;
    const size_t row = (size_t)width * (size_t)C;
    /* First canvas row filled, then copied: the fill pattern is per pixel. */
    for (int32_t i = 0; i < width; i++) memcpy(out->data + (size_t)i * C, fill, (size_t)C);
    for (int32_t r = 1; r < height; r++) memcpy(out->data + (size_t)r * row, out->data, row);

    /* Overlap of [x, x + src_w) with [0, width), likewise for rows; int64 cannot overflow. */
    int64_t x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
    int64_t x1 = (int64_t)x + src->width, y1 = (int64_t)y + src->height;
    if (x1 > width) x1 = width;
    if (y1 > height) y1 = height;
    if (x0 >= x1 || y0 >= y1) return TSR_OK;
    const size_t n = (size_t)(x1 - x0) * (size_t)C;
    for (int64_t r = y0; r < y1; r++) {
        const uint8_t *s =
            src->data + ((size_t)(r - y) * (size_t)src->width + (size_t)(x0 - x)) * (size_t)C;
        memcpy(out->data + (size_t)r * row + (size_t)x0 * (size_t)C, s, n);
    }
    return TSR_OK;
}

tsr_status tsr_image_pad(const tsr_image *src, int32_t width, int32_t height, int32_t x,
                         int32_t y, const uint8_t *fill, tsr_image *out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    tsr_status st = check_src(src, __func__, err);
    if (st != TSR_OK) return st;
    if (!fill) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "fill is NULL");
    return pad_into(src, width, height, x, y, fill, out, __func__, err);
}

/* Where the source's top-left lands in a centre crop of size `crop` from `size`:
 * transformers crops at (size - crop) // 2 and, when the crop is larger, first pads with
 * ceil((crop - size) / 2) before; both reduce to this offset per axis. */
static int32_t center_offset(int32_t size, int32_t crop) {
    if (crop <= size) return -((size - crop) / 2);
    return (int32_t)(((int64_t)crop - size + 1) / 2);
}

tsr_status tsr_image_center_crop(const tsr_image *src, int32_t width, int32_t height,
                                 tsr_image *out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    tsr_status st = check_src(src, __func__, err);
    if (st != TSR_OK) return st;
    static const uint8_t zeros[4] = {0, 0, 0, 0};
    return pad_into(src, width, height, center_offset(src->width, width),
                    center_offset(src->height, height), zeros, out, __func__, err);
}

tsr_status tsr_image_normalize(const tsr_image *src, const tsr_normalize_params *params,
                               float *dst, size_t dst_len, tsr_error *err) {
    tsr_status st = check_src(src, __func__, err);
    if (st != TSR_OK) return st;
    if (!params) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "params is NULL");
    if (params->size != 0 && params->size < sizeof *params)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "params->size %zu is smaller than %zu",
                        params->size, sizeof *params);
    if (!dst) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "dst is NULL");
    const int C = src->channels;
    const size_t plane = (size_t)src->width * (size_t)src->height;
    const size_t need = plane * (size_t)C; /* fits: check_src */
    if (dst_len < need)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "dst holds %zu floats, [%d, %d, %d] needs %zu",
                        dst_len, C, (int)src->height, (int)src->width, need);
    /* Values are cast to float32 below: they must be finite and in float range. */
    if (params->do_rescale && !(fabs(params->rescale) * 255.0 <= FLT_MAX))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "rescale %g is not a finite float32 factor",
                        params->rescale);
    if (params->do_normalize)
        for (int c = 0; c < C; c++) {
            if (!(fabs(params->mean[c]) <= FLT_MAX) || !(fabs(params->std[c]) <= FLT_MAX))
                return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                                "mean[%d] %g or std[%d] %g is not a finite float32", c,
                                params->mean[c], c, params->std[c]);
            if ((float)params->std[c] == 0.0f)
                return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "std[%d] is 0", c);
        }

    /* The result depends only on (value, channel): a 256-entry table per channel,
     * computed exactly as transformers does (rescale in double then float32; normalise
     * in float32 with mean and std cast to float32). */
    float lut[4][256];
    for (int c = 0; c < C; c++) {
        const float mean = (float)params->mean[c], std = (float)params->std[c];
        for (int v = 0; v < 256; v++) {
            float x = params->do_rescale ? (float)((double)v * params->rescale) : (float)v;
            lut[c][v] = params->do_normalize ? (x - mean) / std : x;
        }
    }
    /* HWC uint8 -> CHW float32. */
    const uint8_t *s = src->data;
    if (C == 3) {
        float *d0 = dst, *d1 = dst + plane, *d2 = dst + 2 * plane;
        for (size_t i = 0; i < plane; i++, s += 3) {
            d0[i] = lut[0][s[0]];
            d1[i] = lut[1][s[1]];
            d2[i] = lut[2][s[2]];
        }
    } else {
        for (size_t i = 0; i < plane; i++, s += C)
            for (int c = 0; c < C; c++) dst[(size_t)c * plane + i] = lut[c][s[c]];
    }
    return TSR_OK;
}

tsr_status tsr_image_split_tiles(const tsr_image *src, int32_t rows, int32_t cols,
                                 tsr_image *out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    tsr_status st = check_src(src, __func__, err);
    if (st != TSR_OK) return st;
    if (rows < 1 || cols < 1)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "grid %d x %d must be at least 1 x 1",
                        (int)rows, (int)cols);
    if (src->width % cols != 0 || src->height % rows != 0)
        return TSR_FAIL(err, TSR_ERR_SHAPE,
                        "a %d x %d image (w x h) does not split into %d rows x %d cols",
                        (int)src->width, (int)src->height, (int)rows, (int)cols);
    /* rows <= height and cols <= width, so rows*cols tiles exist as pixels: no overflow. */
    const int64_t n = (int64_t)rows * cols;
    memset(out, 0, (size_t)n * sizeof *out);
    const int32_t tw = src->width / cols, th = src->height / rows;
    for (int64_t i = 0; i < n; i++) {
        st = tsr_image_crop(src, (int32_t)(i % cols) * tw, (int32_t)(i / cols) * th, tw, th,
                            &out[i], err);
        if (st != TSR_OK) {
            for (int64_t j = 0; j < i; j++) tsr_image_free(&out[j]);
            return st;
        }
    }
    return TSR_OK;
}
