#include "image_common.h"

#include <float.h>
#include <string.h>

#include "tessera_json.h"

const double tsr__clip_mean[3] = {0.48145466, 0.4578275, 0.40821073};
const double tsr__clip_std[3] = {0.26862954, 0.26130258, 0.27577711};

/* The LUT comes from tsr_image_normalize run over a 256 x 1 ramp, so the families share
 * its exact float semantics without calling it per image region. */
static tsr_status build_lut(tsr__image_cfg *c, const char *ctx, tsr_error *err) {
    uint8_t ramp[256 * 3];
    for (int v = 0; v < 256; v++) ramp[3 * v] = ramp[3 * v + 1] = ramp[3 * v + 2] = (uint8_t)v;
    tsr_image img = {.width = 256, .height = 1, .channels = 3, .data = ramp};
    tsr_normalize_params p = {.size = sizeof p,
                              .do_rescale = c->do_rescale,
                              .rescale = c->rescale_factor,
                              .do_normalize = c->do_normalize};
    for (int i = 0; i < 3; i++) {
        p.mean[i] = c->mean[i];
        p.std[i] = c->std[i];
    }
    tsr_error e = {0};
    if (tsr_image_normalize(&img, &p, &c->lut[0][0], 3 * 256, &e) != TSR_OK)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: rescale_factor / image_mean / image_std: %s",
                        ctx, e.message);
    return TSR_OK;
}

tsr_status tsr__image_cfg_load(const cJSON *pp, const char *ctx, tsr_resample dflt_resample,
                               tsr__image_cfg *out, tsr_error *err) {
    memset(out, 0, sizeof *out);
    int64_t resample = 0;
    tsr_status st;
    if ((st = tsr__json_bool(pp, "do_resize", true, &out->do_resize, ctx, err)) ||
        (st = tsr__json_int(pp, "resample", dflt_resample, 0, 5, &resample, ctx, err)) ||
        (st = tsr__json_bool(pp, "do_rescale", true, &out->do_rescale, ctx, err)) ||
        (st = tsr__json_double(pp, "rescale_factor", 1.0 / 255.0, -FLT_MAX / 255.0,
                               FLT_MAX / 255.0, &out->rescale_factor, ctx, err)) ||
        (st = tsr__json_bool(pp, "do_normalize", true, &out->do_normalize, ctx, err)) ||
        (st = tsr__json_doubles(pp, "image_mean", tsr__clip_mean, 3, out->mean, ctx, err)) ||
        (st = tsr__json_doubles(pp, "image_std", tsr__clip_std, 3, out->std, ctx, err)) ||
        (st = tsr__json_bool(pp, "do_convert_rgb", true, &out->do_convert_rgb, ctx, err)))
        return st;
    if (resample == 4 || resample == 5)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "%s: resample %d (%s) is not implemented", ctx,
                        (int)resample, resample == 4 ? "BOX" : "HAMMING");
    out->resample = (tsr_resample)resample;
    if (out->do_normalize)
        for (int i = 0; i < 3; i++)
            if ((float)out->std[i] == 0.0f)
                return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: image_std[%d] is 0", ctx, i);
    return build_lut(out, ctx, err);
}

void tsr__image_norm_rect(const tsr_image *img, int32_t x, int32_t y, int32_t w, int32_t h,
                          const tsr__image_cfg *cfg, float *dst, size_t row_stride,
                          size_t plane_stride) {
    const float *l0 = cfg->lut[0], *l1 = cfg->lut[1], *l2 = cfg->lut[2];
    const size_t src_stride = (size_t)img->width * 3;
    for (int32_t r = 0; r < h; r++) {
        const uint8_t *s = img->data + (size_t)(y + r) * src_stride + (size_t)x * 3;
        float *d0 = dst + (size_t)r * row_stride;
        float *d1 = d0 + plane_stride, *d2 = d1 + plane_stride;
        for (int32_t k = 0; k < w; k++, s += 3) {
            d0[k] = l0[s[0]];
            d1[k] = l1[s[1]];
            d2[k] = l2[s[2]];
        }
    }
}

tsr_status tsr__check_target(int64_t height, int64_t width, const char *what, tsr_error *err) {
    if (height < 1 || width < 1 || height > TSR__PROC_MAX_SIDE || width > TSR__PROC_MAX_SIDE ||
        height * width > TSR__PROC_MAX_PIXELS)
        return TSR_FAIL(err, TSR_ERR_LIMIT,
                        "%s %lld x %lld (h x w) is outside 1..%d per side or above %lld pixels",
                        what, (long long)height, (long long)width, TSR__PROC_MAX_SIDE,
                        (long long)TSR__PROC_MAX_PIXELS);
    return TSR_OK;
}

tsr_status tsr__image_resize_or_borrow(const tsr_image *src, int64_t width, int64_t height,
                                       tsr_resample filter, tsr_image *tmp,
                                       const tsr_image **out, tsr_error *err) {
    memset(tmp, 0, sizeof *tmp);
    *out = NULL;
    if (width == src->width && height == src->height) {
        *out = src;
        return TSR_OK;
    }
    tsr_status st = tsr__check_target(height, width, "resize target", err);
    if (st) return st;
    st = tsr_image_resize(src, (int32_t)width, (int32_t)height, filter, tmp, err);
    if (st) return st;
    *out = tmp;
    return TSR_OK;
}

tsr_status tsr__check_rgb_images(const tsr_image *images, int64_t n, tsr_error *err) {
    if (n < 1 || !images)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "need at least one image (got %lld)",
                        (long long)n);
    for (int64_t i = 0; i < n; i++) {
        const tsr_image *im = &images[i];
        if (im->channels != 3 || !im->data || im->width < 1 || im->height < 1)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                            "image %lld must be a non-empty RGB8 image (got %d x %d, %d channels)",
                            (long long)i, (int)im->width, (int)im->height, (int)im->channels);
    }
    return TSR_OK;
}

tsr_status tsr__replacements_init(tsr__replacements *repl, int64_t n, tsr_error *err) {
    repl->text = NULL;
    repl->count = 0;
    size_t bytes;
    if (n < 0 || !tsr__mul_size((size_t)n, sizeof(char *), &bytes))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "%lld replacements", (long long)n);
    repl->text = tsr__calloc(n ? (size_t)n : 1, sizeof(char *));
    if (!repl->text) return TSR_FAIL(err, TSR_ERR_OOM, "%zu bytes", bytes);
    repl->count = n;
    return TSR_OK;
}

tsr_status tsr__strbuf_reserve(tsr__strbuf *b, size_t extra, tsr_error *err) {
    size_t need;
    if (!tsr__add_size(b->len, extra, &need) || !tsr__add_size(need, 1, &need))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "replacement text too long");
    if (need <= b->cap) return TSR_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *s = tsr__realloc(b->s, cap);
    if (!s) return TSR_FAIL(err, TSR_ERR_OOM, "%zu bytes of replacement text", cap);
    b->s = s;
    b->cap = cap;
    return TSR_OK;
}

tsr_status tsr__strbuf_repeat(tsr__strbuf *b, const char *s, int64_t count, tsr_error *err) {
    const size_t n = strlen(s);
    size_t total;
    if (count < 0 || !tsr__mul_size(n, (size_t)count, &total))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "replacement text: %lld x '%s' is too long",
                        (long long)count, s);
    tsr_status st = tsr__strbuf_reserve(b, total, err);
    if (st) return st;
    for (int64_t i = 0; i < count; i++, b->len += n) memcpy(b->s + b->len, s, n);
    b->s[b->len] = '\0';
    return TSR_OK;
}

tsr_status tsr__strbuf_take(tsr__strbuf *b, char **out, tsr_error *err) {
    tsr_status st = tsr__strbuf_reserve(b, 0, err);
    if (st) return st;
    b->s[b->len] = '\0';
    *out = b->s;
    memset(b, 0, sizeof *b);
    return TSR_OK;
}

void tsr__strbuf_free(tsr__strbuf *b) {
    tsr__free(b->s);
    memset(b, 0, sizeof *b);
}

tsr_status tsr__json_int_required(const cJSON *obj, const char *key, int64_t min, int64_t max,
                                  int64_t *out, const char *ctx, tsr_error *err) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!v || cJSON_IsNull(v))
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: \"%s\" is missing", ctx, key);
    return tsr__json_int(obj, key, 0, min, max, out, ctx, err);
}
