/*
 * Qwen2-VL / Qwen2.5-VL image processor (transformers Qwen2VLImageProcessorPil +
 * Qwen2VLProcessor.replace_image_token): smart_resize to multiples of patch*merge, CLIP
 * normalisation, then every image as a clip of temporal_patch_size identical frames cut into
 * patch rows ordered by merge block.
 *
 * Outputs: pixel_values F32 [sum_i gh_i*gw_i, 3*T*P*P], image_grid_thw I64 [n, 3] = (1, gh, gw);
 * replacement per image: "<|image_pad|>" x (gh*gw / merge^2).
 */
#include <math.h>
#include <string.h>

#include "image_common.h"
#include "tessera_json.h"

#define PP_JSON "preprocessor_config.json"
#define IMAGE_TOKEN "<|image_pad|>"

typedef struct qwen_state {
    tsr__image_cfg img;
    int64_t min_pixels, max_pixels; /* size.shortest_edge / size.longest_edge */
    int64_t patch, temporal, merge;
    int64_t image_id, video_id; /* <|image_pad|>, <|video_pad|> ids; -1 when unknown */
} qwen_state;

/* size = {"shortest_edge", "longest_edge"} (class default 56*56 and 28*28*1280), overridden
 * by top-level min_pixels / max_pixels as Qwen2VLImageProcessorPil.__init__ does. */
static tsr_status load_pixel_bounds(const cJSON *pp, qwen_state *s, tsr_error *err) {
    const int64_t max = (int64_t)1 << 53;
    const cJSON *size = pp ? cJSON_GetObjectItemCaseSensitive(pp, "size") : NULL;
    int64_t lo = 56 * 56, hi = 28 * 28 * 1280;
    tsr_status st;
    if (size && !cJSON_IsNull(size)) {
        if (!cJSON_IsObject(size))
            return TSR_FAIL(err, TSR_ERR_FORMAT, PP_JSON ": \"size\" must be an object");
        if ((st = tsr__json_int(size, "shortest_edge", 0, 0, max, &lo, PP_JSON " size", err)) ||
            (st = tsr__json_int(size, "longest_edge", 0, 0, max, &hi, PP_JSON " size", err)))
            return st;
    }
    if ((st = tsr__json_int(pp, "min_pixels", lo, 1, max, &s->min_pixels, PP_JSON, err)) ||
        (st = tsr__json_int(pp, "max_pixels", hi, 1, max, &s->max_pixels, PP_JSON, err)))
        return st;
    if (s->min_pixels == 0 || s->max_pixels == 0)
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        PP_JSON ": `size` dict must contain 'shortest_edge' and 'longest_edge' "
                                "keys (or min_pixels and max_pixels)");
    return TSR_OK;
}

static tsr_status qwen_load(const tsr__model_configs *cfg, void **state, tsr_error *err) {
    *state = NULL;
    const cJSON *pp = cfg ? cfg->preprocessor_config : NULL;
    qwen_state *s = tsr__calloc(1, sizeof *s);
    if (!s) return TSR_FAIL(err, TSR_ERR_OOM, "processor state");
    tsr_status st;
    if ((st = tsr__image_cfg_load(pp, PP_JSON, TSR_RESAMPLE_BICUBIC, &s->img, err)) ||
        (st = load_pixel_bounds(pp, s, err)) ||
        (st = tsr__json_int(pp, "patch_size", 14, 1, 1024, &s->patch, PP_JSON, err)) ||
        (st = tsr__json_int(pp, "temporal_patch_size", 2, 1, 64, &s->temporal, PP_JSON, err)) ||
        (st = tsr__json_int(pp, "merge_size", 2, 1, 64, &s->merge, PP_JSON, err)) ||
        (st = tsr__added_token_id(cfg, IMAGE_TOKEN, &s->image_id, err)) ||
        (st = tsr__added_token_id(cfg, "<|video_pad|>", &s->video_id, err))) {
        tsr__free(s);
        return st;
    }
    *state = s;
    return TSR_OK;
}

static void qwen_free(void *state) { tsr__free(state); }

/* transformers smart_resize (the current version: no minimum side, max(factor, .) only on
 * the downscale branch). Double expressions in Python's operation order. */
static tsr_status smart_resize(int64_t h, int64_t w, int64_t factor, int64_t min_pixels,
                               int64_t max_pixels, int64_t *out_h, int64_t *out_w,
                               tsr_error *err) {
    const double ratio = (double)(h > w ? h : w) / (double)(h < w ? h : w);
    if (ratio > 200)
        return TSR_FAIL(err, TSR_ERR_SHAPE,
                        "absolute aspect ratio must be smaller than 200, got %.17g "
                        "(image %lld x %lld, h x w)",
                        ratio, (long long)h, (long long)w);
    const double f = (double)factor;
    /* round(h / factor) * factor: at most ~2^31 each, so the int64 product is exact. */
    const int64_t h0 = (int64_t)rint((double)h / f) * factor;
    const int64_t w0 = (int64_t)rint((double)w / f) * factor;
    double hb = (double)h0, wb = (double)w0;
    if (h0 * w0 > max_pixels) {
        const double beta = sqrt((double)(h * w) / (double)max_pixels);
        hb = fmax(f, floor((double)h / beta / f) * f);
        wb = fmax(f, floor((double)w / beta / f) * f);
    } else if (h0 * w0 < min_pixels) {
        const double beta = sqrt((double)min_pixels / (double)(h * w));
        hb = ceil((double)h * beta / f) * f;
        wb = ceil((double)w * beta / f) * f;
    }
    /* Bounded before the casts: huge min_pixels would otherwise overflow them. */
    if (!(hb <= TSR__PROC_MAX_SIDE && wb <= TSR__PROC_MAX_SIDE))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "smart_resize target %g x %g exceeds %d per side", hb,
                        wb, TSR__PROC_MAX_SIDE);
    *out_h = (int64_t)hb;
    *out_w = (int64_t)wb;
    return tsr__check_target(*out_h, *out_w, "smart_resize target", err);
}

/* Target size of one image, checked to cut into whole merge blocks. */
static tsr_status target_size(const qwen_state *s, const tsr_image *im, int64_t idx,
                              int64_t *th, int64_t *tw, tsr_error *err) {
    const int64_t factor = s->patch * s->merge;
    *th = im->height;
    *tw = im->width;
    if (s->img.do_resize) {
        tsr_status st =
            smart_resize(im->height, im->width, factor, s->min_pixels, s->max_pixels, th, tw, err);
        if (st) return st;
    }
    if (*th % factor || *tw % factor || *th == 0 || *tw == 0)
        return TSR_FAIL(err, TSR_ERR_SHAPE,
                        "image %lld is %lld x %lld (h x w) without do_resize: both sides must be "
                        "multiples of patch_size*merge_size = %lld",
                        (long long)idx, (long long)*th, (long long)*tw, (long long)factor);
    return TSR_OK;
}

/* Writes the patch rows of one resized image starting at `rows` (row-major over merge
 * blocks, then row-major inside a block; each row is C x T x P x P with the frame repeated). */
static void patchify(const qwen_state *s, const tsr_image *im, float *rows) {
    const int64_t p = s->patch, m = s->merge, T = s->temporal;
    const int64_t gh = im->height / p, gw = im->width / p;
    const size_t frame = (size_t)(p * p), cols = (size_t)(3 * T) * frame;
    const size_t src_stride = (size_t)im->width * 3;
    float *row = rows;
    for (int64_t bh = 0; bh < gh / m; bh++)
        for (int64_t bw = 0; bw < gw / m; bw++)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < m; j++, row += cols) {
                    const int64_t y0 = (bh * m + i) * p, x0 = (bw * m + j) * p;
                    for (int c = 0; c < 3; c++) {
                        const float *lut = s->img.lut[c];
                        float *d = row + (size_t)c * (size_t)T * frame;
                        for (int64_t y = 0; y < p; y++) {
                            const uint8_t *src =
                                im->data + (size_t)(y0 + y) * src_stride + (size_t)x0 * 3 + c;
                            float *dy = d + (size_t)(y * p);
                            for (int64_t x = 0; x < p; x++) dy[x] = lut[src[3 * x]];
                        }
                        for (int64_t t = 1; t < T; t++)
                            memcpy(d + (size_t)t * frame, d, frame * sizeof(float));
                    }
                }
}

static tsr_status qwen_process(const void *state, const tsr_image *images, int64_t n,
                               tsr_tensor_list *out, tsr__replacements *repl, tsr_error *err) {
    const qwen_state *s = state;
    tsr_tensor pv = {0}, thw = {0};
    tsr__replacements r = {0};
    tsr_image tmp = {0};
    tsr__strbuf sb = {0};
    tsr_status st = tsr__check_rgb_images(images, n, err);
    if (st) return st;

    /* Geometry first: the output holds every image's rows. */
    int64_t total_rows = 0;
    int64_t shape2[2] = {n, 3};
    if ((st = tsr_tensor_alloc(&thw, TSR_DTYPE_I64, 2, shape2, err))) return st;
    int64_t *grid = thw.data;
    for (int64_t i = 0; i < n; i++) {
        int64_t th, tw;
        if ((st = target_size(s, &images[i], i, &th, &tw, err))) goto done;
        grid[3 * i] = 1;
        grid[3 * i + 1] = th / s->patch;
        grid[3 * i + 2] = tw / s->patch;
        total_rows += grid[3 * i + 1] * grid[3 * i + 2]; /* each <= 2^28: no overflow */
    }
    const int64_t cols = 3 * s->temporal * s->patch * s->patch;
    int64_t shape_pv[2] = {total_rows, cols};
    if ((st = tsr_tensor_alloc(&pv, TSR_DTYPE_F32, 2, shape_pv, err))) goto done;
    if ((st = tsr__replacements_init(&r, n, err))) goto done;

    float *rows = pv.data;
    for (int64_t i = 0; i < n; i++) {
        const int64_t gh = grid[3 * i + 1], gw = grid[3 * i + 2];
        const tsr_image *im;
        if ((st = tsr__image_resize_or_borrow(&images[i], gw * s->patch, gh * s->patch,
                                              s->img.resample, &tmp, &im, err)))
            goto done;
        patchify(s, im, rows);
        tsr_image_free(&tmp);
        rows += (size_t)(gh * gw) * (size_t)cols;
        if ((st = tsr__strbuf_repeat(&sb, IMAGE_TOKEN, gh * gw / (s->merge * s->merge), err)) ||
            (st = tsr__strbuf_take(&sb, &r.text[i], err)))
            goto done;
    }
    if ((st = tsr_tensor_list_add(out, "pixel_values", &pv, err)) ||
        (st = tsr_tensor_list_add(out, "image_grid_thw", &thw, err)))
        goto done;
    *repl = r;
    r = (tsr__replacements){0};
done:
    tsr_image_free(&tmp);
    tsr__strbuf_free(&sb);
    tsr__replacements_free(&r);
    tsr_tensor_free(&pv);
    tsr_tensor_free(&thw);
    return st;
}

/* mm_token_type_ids, which Qwen2VLProcessor returns by default (return_mm_token_type_ids):
 * I64 [1, n], 1 at image tokens, 2 at video tokens, 0 elsewhere. */
static tsr_status qwen_finish(const void *state, const int32_t *ids, int64_t n_ids,
                              tsr_tensor_list *out, tsr_error *err) {
    const qwen_state *s = state;
    int64_t shape[2] = {1, n_ids};
    tsr_tensor t;
    tsr_status st = tsr_tensor_alloc(&t, TSR_DTYPE_I64, 2, shape, err);
    if (st) return st;
    int64_t *v = t.data;
    for (int64_t i = 0; i < n_ids; i++)
        v[i] = ids[i] == s->image_id ? 1 : ids[i] == s->video_id ? 2 : 0;
    st = tsr_tensor_list_add(out, "mm_token_type_ids", &t, err);
    tsr_tensor_free(&t);
    return st;
}

const tsr__family_ops tsr__qwen2_vl_ops = {
    .model_type = "qwen2_vl",
    .image_placeholder = IMAGE_TOKEN,
    .audio_placeholder = NULL,
    .load = qwen_load,
    .free_state = qwen_free,
    .process_images = qwen_process,
    .process_audio = NULL,
    .finish = qwen_finish,
};

/* Qwen2.5-VL uses the same image processor and processor text expansion. */
const tsr__family_ops tsr__qwen2_5_vl_ops = {
    .model_type = "qwen2_5_vl",
    .image_placeholder = IMAGE_TOKEN,
    .audio_placeholder = NULL,
    .load = qwen_load,
    .free_state = qwen_free,
    .process_images = qwen_process,
    .process_audio = NULL,
    .finish = qwen_finish,
};
