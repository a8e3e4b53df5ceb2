/*
 * Mistral3 (Mistral-Small-3.1) / Pixtral image processor (transformers
 * PixtralImageProcessorPil + PixtralProcessor): fit inside size (longest_edge, or height and
 * width) keeping the aspect ratio, round each side up to a multiple of patch_size *
 * spatial_merge_size, CLIP-normalise, pad the batch right/bottom with 0.0.
 *
 * Outputs: pixel_values F32 [n, 3, H_max, W_max], image_sizes I64 [n, 2] (post-resize h, w);
 * replacement per image: rows of "[IMG]" x cols + "[IMG_BREAK]", the last break "[IMG_END]".
 */
#include <math.h>
#include <string.h>

#include "image_common.h"
#include "tessera_json.h"

#define PP_JSON "preprocessor_config.json"
#define PC_JSON "processor_config.json"
#define TOKEN_MAX 64

typedef struct pixtral_state {
    tsr__image_cfg img;
    int64_t max_h, max_w; /* size: (longest_edge, longest_edge) or (height, width) */
    int64_t patch;        /* processor patch_size * spatial_merge_size */
    bool do_center_crop, do_pad;
    int64_t crop_h, crop_w;
    char image_token[TOKEN_MAX], break_token[TOKEN_MAX], end_token[TOKEN_MAX];
} pixtral_state;

static const cJSON *object_or_null(const cJSON *obj, const char *key) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    return cJSON_IsObject(v) ? v : NULL;
}

static tsr_status load_token(const cJSON *pc, const char *key, const char *dflt, char *dst,
                             tsr_error *err) {
    const char *s;
    tsr_status st = tsr__json_string(pc, key, dflt, &s, PC_JSON, err);
    if (st) return st;
    if (!*s || strlen(s) >= TOKEN_MAX)
        return TSR_FAIL(err, TSR_ERR_FORMAT, PC_JSON ": \"%s\" must be 1..%d bytes", key,
                        TOKEN_MAX - 1);
    memcpy(dst, s, strlen(s) + 1);
    return TSR_OK;
}

static tsr_status load_size(const cJSON *pp, pixtral_state *s, tsr_error *err) {
    const cJSON *size = pp ? cJSON_GetObjectItemCaseSensitive(pp, "size") : NULL;
    if (size && !cJSON_IsNull(size) && !cJSON_IsObject(size))
        return TSR_FAIL(err, TSR_ERR_FORMAT, PP_JSON ": \"size\" must be an object");
    if (!size || cJSON_IsNull(size)) { /* class default */
        s->max_h = s->max_w = 1024;
        return TSR_OK;
    }
    int64_t longest, h, w;
    tsr_status st;
    if ((st = tsr__json_int(size, "longest_edge", 0, 0, TSR__PROC_MAX_SIDE, &longest,
                            PP_JSON " size", err)) ||
        (st = tsr__json_int(size, "height", 0, 0, TSR__PROC_MAX_SIDE, &h, PP_JSON " size", err)) ||
        (st = tsr__json_int(size, "width", 0, 0, TSR__PROC_MAX_SIDE, &w, PP_JSON " size", err)))
        return st;
    if (longest) {
        s->max_h = s->max_w = longest;
    } else if (h && w) {
        s->max_h = h;
        s->max_w = w;
    } else {
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        PP_JSON ": size must contain either 'longest_edge' or 'height' and 'width'.");
    }
    return TSR_OK;
}

/* transformers builds the processor from processor_config.json alone (patch_size 16 and
 * spatial_merge_size 1 when absent). Re-saved checkpoints exist whose processor_config says
 * spatial_merge_size 1 while the model merges 2x2, which makes the placeholder count 4x the
 * model's features; the model's config.json (top-level spatial_merge_size of mistral3) is
 * therefore preferred for the merge, and vision_config.patch_size fills a missing patch_size. */
static tsr_status load_patch(const tsr__model_configs *cfg, pixtral_state *s, tsr_error *err) {
    const cJSON *pc = cfg->processor_config, *mc = cfg->config;
    int64_t model_patch, patch, merge;
    tsr_status st;
    if ((st = tsr__json_int(object_or_null(mc, "vision_config"), "patch_size", 16, 1, 1024,
                            &model_patch, "config.json vision_config", err)) ||
        (st = tsr__json_int(pc, "patch_size", model_patch, 1, 1024, &patch, PC_JSON, err)) ||
        (st = tsr__json_int(pc, "spatial_merge_size", 1, 1, 64, &merge, PC_JSON, err)) ||
        (st = tsr__json_int(mc, "spatial_merge_size", merge, 1, 64, &merge, "config.json", err)))
        return st;
    s->patch = patch * merge;
    return TSR_OK;
}

static tsr_status pixtral_load(const tsr__model_configs *cfg, void **state, tsr_error *err) {
    *state = NULL;
    static const tsr__model_configs none = {0};
    if (!cfg) cfg = &none;
    const cJSON *pp = cfg->preprocessor_config, *pc = cfg->processor_config;
    pixtral_state *s = tsr__calloc(1, sizeof *s);
    if (!s) return TSR_FAIL(err, TSR_ERR_OOM, "processor state");
    tsr_status st;
    if ((st = tsr__image_cfg_load(pp, PP_JSON, TSR_RESAMPLE_BICUBIC, &s->img, err)) ||
        (st = load_size(pp, s, err)) || (st = load_patch(cfg, s, err)) ||
        (st = tsr__json_bool(pp, "do_center_crop", false, &s->do_center_crop, PP_JSON, err)) ||
        (st = tsr__json_bool(pp, "do_pad", true, &s->do_pad, PP_JSON, err)) ||
        (st = load_token(pc, "image_token", "[IMG]", s->image_token, err)) ||
        (st = load_token(pc, "image_break_token", "[IMG_BREAK]", s->break_token, err)) ||
        (st = load_token(pc, "image_end_token", "[IMG_END]", s->end_token, err)))
        goto fail;
    if (s->do_center_crop) {
        const cJSON *crop = object_or_null(pp, "crop_size");
        if (!crop) {
            st = TSR_FAIL(err, TSR_ERR_FORMAT,
                          PP_JSON ": do_center_crop needs crop_size {\"height\", \"width\"}");
            goto fail;
        }
        if ((st = tsr__json_int_required(crop, "height", 1, TSR__PROC_MAX_SIDE, &s->crop_h,
                                         PP_JSON " crop_size", err)) ||
            (st = tsr__json_int_required(crop, "width", 1, TSR__PROC_MAX_SIDE, &s->crop_w,
                                         PP_JSON " crop_size", err)))
            goto fail;
    }
    *state = s;
    return TSR_OK;
fail:
    tsr__free(s);
    return st;
}

static void pixtral_free(void *state) { tsr__free(state); }

/* get_resize_output_image_size of the PIL backend (floor when shrinking, then up to a
 * multiple of the patch) and the optional center crop. */
static tsr_status output_size(const pixtral_state *s, const tsr_image *im, int64_t idx,
                              int64_t *rh, int64_t *rw, int64_t *oh, int64_t *ow,
                              tsr_error *err) {
    int64_t h = im->height, w = im->width;
    if (s->img.do_resize) {
        const double ratio = fmax((double)h / (double)s->max_h, (double)w / (double)s->max_w);
        if (ratio > 1) {
            h = (int64_t)floor((double)h / ratio);
            w = (int64_t)floor((double)w / ratio);
        }
        /* Python's (h - 1) // p + 1 is 0 for h == 0. */
        h = h ? ((h - 1) / s->patch + 1) * s->patch : 0;
        w = w ? ((w - 1) / s->patch + 1) * s->patch : 0;
        if (h == 0 || w == 0)
            return TSR_FAIL(err, TSR_ERR_SHAPE,
                            "image %lld (%d x %d, w x h) fits size as %lld x %lld: Size must "
                            "contain 'height' and 'width' keys (a side rounds to 0)",
                            (long long)idx, (int)im->width, (int)im->height, (long long)w,
                            (long long)h);
        tsr_status st = tsr__check_target(h, w, "resize target", err);
        if (st) return st;
    }
    *rh = h;
    *rw = w;
    if (s->do_center_crop) {
        h = s->crop_h;
        w = s->crop_w;
    }
    if (h / s->patch == 0)
        return TSR_FAIL(err, TSR_ERR_SHAPE,
                        "image %lld is %lld px high, less than one %lld px patch row: no "
                        "image tokens (list index out of range)",
                        (long long)idx, (long long)h, (long long)s->patch);
    *oh = h;
    *ow = w;
    return TSR_OK;
}

static tsr_status replacement(const pixtral_state *s, int64_t h, int64_t w, char **out,
                              tsr_error *err) {
    const int64_t rows = h / s->patch, cols = w / s->patch;
    const size_t row_bytes = (size_t)cols * strlen(s->image_token) + strlen(s->break_token);
    tsr__strbuf sb = {0};
    size_t total;
    tsr_status st = TSR_OK;
    if (!tsr__mul_size(row_bytes, (size_t)rows, &total) ||
        (st = tsr__strbuf_reserve(&sb, total + strlen(s->end_token), err)))
        return st ? st : TSR_FAIL(err, TSR_ERR_LIMIT, "replacement text too long");
    for (int64_t r = 0; r < rows && !st; r++) {
        st = tsr__strbuf_repeat(&sb, s->image_token, cols, err);
        if (!st)
            st = tsr__strbuf_repeat(&sb, r + 1 < rows ? s->break_token : s->end_token, 1, err);
    }
    if (!st) st = tsr__strbuf_take(&sb, out, err);
    tsr__strbuf_free(&sb);
    return st;
}

static tsr_status pixtral_process(const void *state, const tsr_image *images, int64_t n,
                                  tsr_tensor_list *out, tsr__replacements *repl,
                                  tsr_error *err) {
    const pixtral_state *s = state;
    tsr_tensor pv = {0}, sizes = {0};
    tsr__replacements r = {0};
    tsr_image resized = {0}, cropped = {0};
    tsr_status st = tsr__check_rgb_images(images, n, err);
    if (st) return st;

    int64_t shape2[2] = {n, 2};
    if ((st = tsr_tensor_alloc(&sizes, TSR_DTYPE_I64, 2, shape2, err))) return st;
    int64_t *hw = sizes.data, max_h = 0, max_w = 0, rh, rw;
    for (int64_t i = 0; i < n; i++) {
        if ((st = output_size(s, &images[i], i, &rh, &rw, &hw[2 * i], &hw[2 * i + 1], err)))
            goto done;
        if (hw[2 * i] > max_h) max_h = hw[2 * i];
        if (hw[2 * i + 1] > max_w) max_w = hw[2 * i + 1];
        if (!s->do_pad && (hw[2 * i] != hw[0] || hw[2 * i + 1] != hw[1])) {
            st = TSR_FAIL(err, TSR_ERR_SHAPE,
                          "do_pad is false and images 0 and %lld differ in size (%lld x %lld vs "
                          "%lld x %lld): they cannot form one pixel_values tensor",
                          (long long)i, (long long)hw[0], (long long)hw[1], (long long)hw[2 * i],
                          (long long)hw[2 * i + 1]);
            goto done;
        }
    }
    int64_t shape4[4] = {n, 3, max_h, max_w};
    if ((st = tsr_tensor_alloc(&pv, TSR_DTYPE_F32, 4, shape4, err)) ||
        (st = tsr__replacements_init(&r, n, err)))
        goto done;
    const size_t plane = (size_t)(max_h * max_w);
    for (int64_t i = 0; i < n; i++) {
        const tsr_image *im = &images[i];
        if (s->img.do_resize) {
            (void)output_size(s, im, i, &rh, &rw, &hw[2 * i], &hw[2 * i + 1], err);
            if ((st = tsr__image_resize_or_borrow(im, rw, rh, s->img.resample, &resized, &im,
                                                  err)))
                goto done;
        }
        if (s->do_center_crop && (im->height != s->crop_h || im->width != s->crop_w)) {
            if ((st = tsr_image_center_crop(im, (int32_t)s->crop_w, (int32_t)s->crop_h,
                                            &cropped, err)))
                goto done;
            im = &cropped;
        }
        /* Padding stays 0.0 (after normalisation), as the tensor was zero-filled. */
        tsr__image_norm_rect(im, 0, 0, im->width, im->height, &s->img,
                             (float *)pv.data + (size_t)i * 3 * plane, (size_t)max_w, plane);
        tsr_image_free(&resized);
        tsr_image_free(&cropped);
        if ((st = replacement(s, hw[2 * i], hw[2 * i + 1], &r.text[i], err))) goto done;
    }
    if ((st = tsr_tensor_list_add(out, "pixel_values", &pv, err)) ||
        (st = tsr_tensor_list_add(out, "image_sizes", &sizes, err)))
        goto done;
    *repl = r;
    r = (tsr__replacements){0};
done:
    tsr_image_free(&resized);
    tsr_image_free(&cropped);
    tsr__replacements_free(&r);
    tsr_tensor_free(&pv);
    tsr_tensor_free(&sizes);
    return st;
}

const tsr__family_ops tsr__mistral3_ops = {
    .model_type = "mistral3",
    .image_placeholder = "[IMG]",
    .audio_placeholder = NULL,
    .load = pixtral_load,
    .free_state = pixtral_free,
    .process_images = pixtral_process,
    .process_audio = NULL,
    .finish = NULL,
};
