/*
 * LLaVA-NeXT image processor (transformers LlavaNextImageProcessorPil + LlavaNextProcessor):
 * "anyres" - pick the best grid pinpoint, resize into it keeping the aspect ratio, letterbox
 * with black, cut crop-size tiles; the whole image squashed to the base size goes first; every
 * patch then takes the CLIP path (resize, center crop, rescale, normalise).
 *
 * Outputs: pixel_values F32 [n, max_patches, 3, H, W] (images with fewer patches padded with
 * 0.0 patches), image_sizes I64 [n, 2] (original h, w); replacement per image: "<image>" x N,
 * N from the unpadded feature grid (hf-processors-A.md 3.7).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_common.h"
#include "tessera_json.h"

#define PP_JSON "preprocessor_config.json"
#define PC_JSON "processor_config.json"
#define TOKEN_MAX 64
#define MAX_PINPOINTS 1024

typedef struct llava_state {
    tsr__image_cfg img;
    int64_t shortest;       /* size.shortest_edge, 0 when size is {height, width} */
    int64_t size_h, size_w; /* size.height / width, 0 when absent */
    bool do_center_crop, do_pad;
    int64_t crop_h, crop_w; /* 0 when crop_size is absent */
    int64_t tile;           /* side of the tiles the padded image is cut into */
    int64_t n_pinpoints;
    int64_t (*pinpoints)[2]; /* (height, width) */
    int64_t patch;           /* vision patch size, for the token count */
    int64_t n_additional;    /* num_additional_image_tokens */
    bool strategy_default;   /* vision_feature_select_strategy == "default" */
    char image_token[TOKEN_MAX];
} llava_state;

static void llava_free(void *state) {
    llava_state *s = state;
    if (!s) return;
    tsr__free(s->pinpoints);
    tsr__free(s);
}

static const cJSON *object_or_null(const cJSON *obj, const char *key) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    return cJSON_IsObject(v) ? v : NULL;
}

static tsr_status load_sizes(const cJSON *pp, llava_state *s, tsr_error *err) {
    const cJSON *size = pp ? cJSON_GetObjectItemCaseSensitive(pp, "size") : NULL;
    const cJSON *crop = pp ? cJSON_GetObjectItemCaseSensitive(pp, "crop_size") : NULL;
    tsr_status st;
    if ((size && !cJSON_IsNull(size) && !cJSON_IsObject(size)) ||
        (crop && !cJSON_IsNull(crop) && !cJSON_IsObject(crop)))
        return TSR_FAIL(err, TSR_ERR_FORMAT, PP_JSON ": \"size\" and \"crop_size\" must be objects");
    if (!size || cJSON_IsNull(size)) {
        s->shortest = 224; /* class defaults */
    } else if ((st = tsr__json_int(size, "shortest_edge", 0, 0, TSR__PROC_MAX_SIDE, &s->shortest,
                                   PP_JSON " size", err)) ||
               (st = tsr__json_int(size, "height", 0, 0, TSR__PROC_MAX_SIDE, &s->size_h,
                                   PP_JSON " size", err)) ||
               (st = tsr__json_int(size, "width", 0, 0, TSR__PROC_MAX_SIDE, &s->size_w,
                                   PP_JSON " size", err))) {
        return st;
    }
    if (size && cJSON_GetObjectItemCaseSensitive(size, "longest_edge"))
        return TSR_FAIL(err, TSR_ERR_FORMAT, PP_JSON ": size.longest_edge is not used by LLaVA-NeXT");
    if (!s->shortest && !(s->size_h && s->size_w))
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        PP_JSON ": size must contain 'shortest_edge' or 'height' and 'width'");
    if (!crop) {
        if (!size || cJSON_IsNull(size)) s->crop_h = s->crop_w = 224;
    } else if (!cJSON_IsNull(crop) &&
               ((st = tsr__json_int(crop, "height", 0, 0, TSR__PROC_MAX_SIDE, &s->crop_h,
                                    PP_JSON " crop_size", err)) ||
                (st = tsr__json_int(crop, "width", 0, 0, TSR__PROC_MAX_SIDE, &s->crop_w,
                                    PP_JSON " crop_size", err)))) {
        return st;
    }
    if ((st = tsr__json_bool(pp, "do_center_crop", true, &s->do_center_crop, PP_JSON, err)) ||
        (st = tsr__json_bool(pp, "do_pad", true, &s->do_pad, PP_JSON, err)))
        return st;
    if (s->do_center_crop && !(s->crop_h && s->crop_w))
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        PP_JSON ": do_center_crop needs crop_size with 'height' and 'width'");
    /* _preprocess: the tile side is crop_size.height, else size.height, else shortest_edge. */
    s->tile = s->crop_h ? s->crop_h : s->size_h ? s->size_h : s->shortest;
    return TSR_OK;
}

static tsr_status load_pinpoints(const cJSON *pp, llava_state *s, tsr_error *err) {
    static const int64_t dflt[5][2] = {{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};
    const cJSON *list = pp ? cJSON_GetObjectItemCaseSensitive(pp, "image_grid_pinpoints") : NULL;
    if (list && cJSON_IsNull(list)) list = NULL;
    if (list && !cJSON_IsArray(list))
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        PP_JSON ": grid_pinpoints must be a list of possible resolutions.");
    const int n = list ? cJSON_GetArraySize(list) : 5;
    if (n < 1 || n > MAX_PINPOINTS)
        return TSR_FAIL(err, TSR_ERR_FORMAT, PP_JSON ": image_grid_pinpoints needs 1..%d entries",
                        MAX_PINPOINTS);
    s->pinpoints = tsr__calloc((size_t)n, sizeof *s->pinpoints);
    if (!s->pinpoints) return TSR_FAIL(err, TSR_ERR_OOM, "%d pinpoints", n);
    s->n_pinpoints = n;
    for (int i = 0; i < n; i++) {
        if (!list) {
            s->pinpoints[i][0] = dflt[i][0];
            s->pinpoints[i][1] = dflt[i][1];
            continue;
        }
        const cJSON *e = cJSON_GetArrayItem(list, i);
        for (int k = 0; k < 2; k++) {
            const cJSON *v = cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 ? cJSON_GetArrayItem(e, k) : NULL;
            double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
            if (!(d >= 1 && d <= TSR__PROC_MAX_SIDE) || d != floor(d))
                return TSR_FAIL(err, TSR_ERR_FORMAT,
                                PP_JSON ": image_grid_pinpoints[%d] must be [height, width] with "
                                        "integers in 1..%d",
                                i, TSR__PROC_MAX_SIDE);
            s->pinpoints[i][k] = (int64_t)d;
        }
        if (s->pinpoints[i][0] * s->pinpoints[i][1] > TSR__PROC_MAX_PIXELS)
            return TSR_FAIL(err, TSR_ERR_FORMAT, PP_JSON ": image_grid_pinpoints[%d] is too large", i);
    }
    return TSR_OK;
}

/* processor_config.json as LlavaNextProcessor reads it. transformers has no fallback for a
 * missing patch_size (it fails at the first call); the vision tower's patch_size from
 * config.json stands in. */
static tsr_status load_processor(const tsr__model_configs *cfg, llava_state *s, tsr_error *err) {
    const cJSON *pc = cfg->processor_config;
    int64_t model_patch;
    const char *strategy, *token;
    tsr_status st;
    if ((st = tsr__json_int(object_or_null(cfg->config, "vision_config"), "patch_size", 0, 1,
                            TSR__PROC_MAX_SIDE, &model_patch, "config.json vision_config", err)) ||
        (st = tsr__json_int(pc, "patch_size", model_patch, 1, TSR__PROC_MAX_SIDE, &s->patch,
                            PC_JSON, err)) ||
        (st = tsr__json_int(pc, "num_additional_image_tokens", 0, 0, 1 << 20, &s->n_additional,
                            PC_JSON, err)) ||
        (st = tsr__json_string(pc, "vision_feature_select_strategy", "", &strategy, PC_JSON,
                               err)) ||
        (st = tsr__json_string(pc, "image_token", "<image>", &token, PC_JSON, err)))
        return st;
    if (s->patch == 0)
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        PC_JSON ": patch_size is missing (and config.json has no "
                                "vision_config.patch_size)");
    if (*strategy && strcmp(strategy, "default") && strcmp(strategy, "full"))
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        PC_JSON ": vision_feature_select_strategy must be \"default\" or \"full\"");
    s->strategy_default = !strcmp(strategy, "default");
    if (!*token || strlen(token) >= TOKEN_MAX)
        return TSR_FAIL(err, TSR_ERR_FORMAT, PC_JSON ": image_token must be 1..%d bytes",
                        TOKEN_MAX - 1);
    memcpy(s->image_token, token, strlen(token) + 1);
    return TSR_OK;
}

static tsr_status llava_load(const tsr__model_configs *cfg, void **state, tsr_error *err) {
    *state = NULL;
    static const tsr__model_configs none = {0};
    if (!cfg) cfg = &none;
    llava_state *s = tsr__calloc(1, sizeof *s);
    if (!s) return TSR_FAIL(err, TSR_ERR_OOM, "processor state");
    const cJSON *pp = cfg->preprocessor_config;
    tsr_status st;
    if ((st = tsr__image_cfg_load(pp, PP_JSON, TSR_RESAMPLE_BICUBIC, &s->img, err)) ||
        (st = load_sizes(pp, s, err)) || (st = load_pinpoints(pp, s, err)) ||
        (st = load_processor(cfg, s, err))) {
        llava_free(s);
        return st;
    }
    *state = s;
    return TSR_OK;
}

/* ---- geometry (Python semantics: / is double, // floors, int() truncates) ---- */

static int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* select_best_resolution: strict comparisons, so ties keep the earliest pinpoint. */
static void best_resolution(const llava_state *s, int64_t h, int64_t w, int64_t *bh, int64_t *bw) {
    int64_t max_eff = 0;
    double min_waste = INFINITY;
    *bh = s->pinpoints[0][0];
    *bw = s->pinpoints[0][1];
    for (int64_t i = 0; i < s->n_pinpoints; i++) {
        const int64_t ph = s->pinpoints[i][0], pw = s->pinpoints[i][1];
        const double scale = fmin((double)pw / (double)w, (double)ph / (double)h);
        const int64_t dw = (int64_t)((double)w * scale), dh = (int64_t)((double)h * scale);
        const int64_t eff = dw * dh < w * h ? dw * dh : w * h;
        const double waste = (double)(ph * pw - eff);
        if (eff > max_eff || (eff == max_eff && waste < min_waste)) {
            max_eff = eff;
            min_waste = waste;
            *bh = ph;
            *bw = pw;
        }
    }
}

/* get_patch_output_size: aspect-preserving fit into the pinpoint. */
static void fit_size(int64_t h, int64_t w, int64_t bh, int64_t bw, int64_t *nh, int64_t *nw) {
    const double sw = (double)bw / (double)w, sh = (double)bh / (double)h;
    if (sw < sh) {
        *nw = bw;
        *nh = (int64_t)ceil((double)h * sw);
        if (*nh > bh) *nh = bh;
    } else {
        *nh = bh;
        *nw = (int64_t)ceil((double)w * sh);
        if (*nw > bw) *nw = bw;
    }
}

/* Size of a patch after the per-patch resize (PilBackend.resize with `size`). */
static void patch_resize_size(const llava_state *s, int64_t h, int64_t w, int64_t *oh,
                              int64_t *ow) {
    if (s->shortest) { /* get_resize_output_image_size(default_to_square=False) */
        const int64_t shrt = w <= h ? w : h, lng = w <= h ? h : w;
        const int64_t new_long = (int64_t)((double)(s->shortest * lng) / (double)shrt);
        *oh = w <= h ? new_long : s->shortest;
        *ow = w <= h ? s->shortest : new_long;
    } else {
        *oh = s->size_h;
        *ow = s->size_w;
    }
}

static void patch_final_size(const llava_state *s, int64_t h, int64_t w, int64_t *oh,
                             int64_t *ow) {
    if (s->img.do_resize) patch_resize_size(s, h, w, &h, &w);
    if (s->do_center_crop) {
        h = s->crop_h;
        w = s->crop_w;
    }
    *oh = h;
    *ow = w;
}

/* int(round(x, 7)): Python rounds to 7 decimals exactly (half-even on the binary value), as
 * glibc's printf does. */
static int64_t int_round7(double x) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.7f", x);
    return (int64_t)strtod(buf, NULL);
}

/* LlavaNextProcessor._get_number_of_features (+ the "default" strategy's -1). */
static tsr_status token_count(const llava_state *s, int64_t h, int64_t w, int64_t ph, int64_t pw,
                              int64_t idx, int64_t *out, tsr_error *err) {
    int64_t bh, bw;
    best_resolution(s, h, w, &bh, &bw);
    const int64_t scale_h = bh / ph, scale_w = bw / pw;
    const int64_t patches_h = ph / s->patch, patches_w = pw / s->patch;
    int64_t cur_h = patches_h * scale_h, cur_w = patches_w * scale_w;
    if (cur_h == 0 || cur_w == 0)
        return TSR_FAIL(err, TSR_ERR_SHAPE,
                        "image %lld: feature grid %lld x %lld is empty (patch %lld px, pinpoint "
                        "%lld x %lld): division by zero",
                        (long long)idx, (long long)cur_h, (long long)cur_w, (long long)s->patch,
                        (long long)bh, (long long)bw);
    if ((double)w / (double)h > (double)cur_w / (double)cur_h) {
        const int64_t new_h = int_round7((double)h * ((double)cur_w / (double)w));
        cur_h -= floordiv(cur_h - new_h, 2) * 2;
    } else {
        const int64_t new_w = int_round7((double)w * ((double)cur_h / (double)h));
        cur_w -= floordiv(cur_w - new_w, 2) * 2;
    }
    int64_t n = cur_h * cur_w + cur_h + patches_h * patches_w + s->n_additional -
                (s->strategy_default ? 1 : 0);
    if (n < 0) n = 0; /* "<image>" * negative is "" in Python */
    *out = n;
    return TSR_OK;
}

/* Per image: pinpoint, fitted size and tile grid. */
typedef struct llava_plan {
    int64_t bh, bw, nh, nw, tiles_y, tiles_x;
} llava_plan;

static void plan_image(const llava_state *s, const tsr_image *im, llava_plan *p) {
    best_resolution(s, im->height, im->width, &p->bh, &p->bw);
    fit_size(im->height, im->width, p->bh, p->bw, &p->nh, &p->nw);
    p->tiles_y = (p->bh + s->tile - 1) / s->tile;
    p->tiles_x = (p->bw + s->tile - 1) / s->tile;
}

/* The base image (squashed to the size tuple) and the tiles must all end the same size,
 * or transformers cannot stack them. */
static tsr_status check_patch_sizes(const llava_state *s, const llava_plan *p, int64_t idx,
                                    int64_t *oh, int64_t *ow, tsr_error *err) {
    const int64_t base_h = s->size_h && s->size_w ? s->size_h : s->shortest;
    const int64_t base_w = s->size_h && s->size_w ? s->size_w : s->shortest;
    int64_t h, w;
    patch_final_size(s, base_h, base_w, oh, ow);
    for (int64_t ty = 0; ty < p->tiles_y; ty++)
        for (int64_t tx = 0; tx < p->tiles_x; tx++) {
            const int64_t th = p->bh - ty * s->tile < s->tile ? p->bh - ty * s->tile : s->tile;
            const int64_t tw = p->bw - tx * s->tile < s->tile ? p->bw - tx * s->tile : s->tile;
            patch_final_size(s, th, tw, &h, &w);
            if (h != *oh || w != *ow)
                return TSR_FAIL(err, TSR_ERR_SHAPE,
                                "image %lld: tile (%lld, %lld) ends %lld x %lld, the base image "
                                "%lld x %lld: patches of one image must match",
                                (long long)idx, (long long)ty, (long long)tx, (long long)h,
                                (long long)w, (long long)*oh, (long long)*ow);
        }
    return tsr__check_target(*oh, *ow, "patch size", err);
}

/* One patch (a rectangle of src) through resize -> center crop -> normalise into dst. */
static tsr_status emit_patch(const llava_state *s, const tsr_image *src, int64_t x, int64_t y,
                             int64_t w, int64_t h, float *dst, int64_t oh, int64_t ow,
                             tsr_error *err) {
    int64_t rh = h, rw = w;
    if (s->img.do_resize) patch_resize_size(s, h, w, &rh, &rw);
    const bool whole = x == 0 && y == 0 && w == src->width && h == src->height;
    if (rh == h && rw == w && oh == h && ow == w) { /* the common case: nothing to do */
        tsr__image_norm_rect(src, (int32_t)x, (int32_t)y, (int32_t)w, (int32_t)h, &s->img, dst,
                             (size_t)ow, (size_t)(oh * ow));
        return TSR_OK;
    }
    tsr_image piece = {0}, resized = {0}, cropped = {0};
    const tsr_image *im = src;
    tsr_status st = TSR_OK;
    if (!whole) {
        st = tsr_image_crop(src, (int32_t)x, (int32_t)y, (int32_t)w, (int32_t)h, &piece, err);
        im = &piece;
    }
    if (!st) st = tsr__image_resize_or_borrow(im, rw, rh, s->img.resample, &resized, &im, err);
    if (!st && (im->height != oh || im->width != ow)) {
        st = tsr_image_center_crop(im, (int32_t)ow, (int32_t)oh, &cropped, err);
        im = &cropped;
    }
    if (!st)
        tsr__image_norm_rect(im, 0, 0, (int32_t)ow, (int32_t)oh, &s->img, dst, (size_t)ow,
                             (size_t)(oh * ow));
    tsr_image_free(&piece);
    tsr_image_free(&resized);
    tsr_image_free(&cropped);
    return st;
}

/* Base patch, then the letterboxed tiles row-major, into dst (patch stride 3*oh*ow). */
static tsr_status emit_image(const llava_state *s, const tsr_image *im, const llava_plan *p,
                             float *dst, int64_t oh, int64_t ow, tsr_error *err) {
    const size_t patch_floats = (size_t)(3 * oh * ow);
    const int64_t base_h = s->size_h && s->size_w ? s->size_h : s->shortest;
    const int64_t base_w = s->size_h && s->size_w ? s->size_w : s->shortest;
    tsr_image base = {0}, fitted = {0}, padded = {0};
    const tsr_image *b, *f;
    static const uint8_t black[3] = {0, 0, 0};
    tsr_status st = tsr__image_resize_or_borrow(im, base_w, base_h, s->img.resample, &base, &b, err);
    if (!st) st = emit_patch(s, b, 0, 0, b->width, b->height, dst, oh, ow, err);
    tsr_image_free(&base);
    if (!st) st = tsr__image_resize_or_borrow(im, p->nw, p->nh, s->img.resample, &fitted, &f, err);
    if (!st)
        st = tsr_image_pad(f, (int32_t)p->bw, (int32_t)p->bh, (int32_t)((p->bw - p->nw) / 2),
                           (int32_t)((p->bh - p->nh) / 2), black, &padded, err);
    tsr_image_free(&fitted);
    for (int64_t ty = 0; !st && ty < p->tiles_y; ty++)
        for (int64_t tx = 0; !st && tx < p->tiles_x; tx++) {
            const int64_t y = ty * s->tile, x = tx * s->tile;
            const int64_t th = p->bh - y < s->tile ? p->bh - y : s->tile;
            const int64_t tw = p->bw - x < s->tile ? p->bw - x : s->tile;
            float *d = dst + (size_t)(1 + ty * p->tiles_x + tx) * patch_floats;
            st = emit_patch(s, &padded, x, y, tw, th, d, oh, ow, err);
        }
    tsr_image_free(&padded);
    return st;
}

static tsr_status llava_process(const void *state, const tsr_image *images, int64_t n,
                                tsr_tensor_list *out, tsr__replacements *repl, tsr_error *err) {
    const llava_state *s = state;
    tsr_tensor pv = {0}, sizes = {0};
    tsr__replacements r = {0};
    tsr__strbuf sb = {0};
    llava_plan *plans = NULL;
    tsr_status st = tsr__check_rgb_images(images, n, err);
    if (st) return st;
    size_t bytes;
    if (!tsr__mul_size((size_t)n, sizeof *plans, &bytes) || !(plans = tsr__malloc(bytes)))
        return TSR_FAIL(err, TSR_ERR_OOM, "%lld image plans", (long long)n);

    int64_t shape2[2] = {n, 2}, max_patches = 0, oh = 0, ow = 0;
    if ((st = tsr_tensor_alloc(&sizes, TSR_DTYPE_I64, 2, shape2, err)) ||
        (st = tsr__replacements_init(&r, n, err)))
        goto done;
    for (int64_t i = 0; i < n; i++) {
        int64_t h = 0, w = 0, count = 0;
        plan_image(s, &images[i], &plans[i]);
        if ((st = check_patch_sizes(s, &plans[i], i, &h, &w, err))) goto done;
        if (i > 0 && (h != oh || w != ow)) {
            st = TSR_FAIL(err, TSR_ERR_SHAPE, "image %lld patches are %lld x %lld, image 0's "
                          "%lld x %lld", (long long)i, (long long)h, (long long)w,
                          (long long)oh, (long long)ow);
            goto done;
        }
        oh = h;
        ow = w;
        const int64_t patches = 1 + plans[i].tiles_y * plans[i].tiles_x;
        if (i > 0 && !s->do_pad && patches != max_patches) {
            st = TSR_FAIL(err, TSR_ERR_SHAPE,
                          "do_pad is false and images 0 and %lld have %lld and %lld patches",
                          (long long)i, (long long)max_patches, (long long)patches);
            goto done;
        }
        if (patches > max_patches) max_patches = patches;
        ((int64_t *)sizes.data)[2 * i] = images[i].height;
        ((int64_t *)sizes.data)[2 * i + 1] = images[i].width;
        if ((st = token_count(s, images[i].height, images[i].width, oh, ow, i, &count, err)) ||
            (st = tsr__strbuf_repeat(&sb, s->image_token, count, err)) ||
            (st = tsr__strbuf_take(&sb, &r.text[i], err)))
            goto done;
    }
    int64_t shape5[5] = {n, max_patches, 3, oh, ow};
    if ((st = tsr_tensor_alloc(&pv, TSR_DTYPE_F32, 5, shape5, err))) goto done;
    for (int64_t i = 0; i < n && !st; i++) /* padding patches stay 0.0 */
        st = emit_image(s, &images[i], &plans[i],
                        (float *)pv.data + (size_t)(i * max_patches) * (size_t)(3 * oh * ow), oh,
                        ow, err);
    if (st || (st = tsr_tensor_list_add(out, "pixel_values", &pv, err)) ||
        (st = tsr_tensor_list_add(out, "image_sizes", &sizes, err)))
        goto done;
    *repl = r;
    r = (tsr__replacements){0};
done:
    tsr__free(plans);
    tsr__strbuf_free(&sb);
    tsr__replacements_free(&r);
    tsr_tensor_free(&pv);
    tsr_tensor_free(&sizes);
    return st;
}

const tsr__family_ops tsr__llava_next_ops = {
    .model_type = "llava_next",
    .image_placeholder = "<image>",
    .audio_placeholder = NULL,
    .load = llava_load,
    .free_state = llava_free,
    .process_images = llava_process,
    .process_audio = NULL,
    .finish = NULL,
};
