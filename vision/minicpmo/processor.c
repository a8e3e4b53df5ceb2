/*
 * processor.c - the MiniCPM-o 2.6 media processor (hub remote code: MiniCPMVImageProcessor
 * and MiniCPMOProcessor), image side: "UHD" slicing (source image plus a grid of refined
 * slices, all size arithmetic in doubles as Python does it), per-slice normalisation into
 * patch strips, the placeholder text, and image/audio/spk bounds from the token ids.
 * The audio side is audio/minicpmo_audio.c.
 *
 * Outputs (one prompt): pixel_values.<i> F32 [3, patch, N*patch] for slice i over all images
 * in order (HF returns a list of these arrays), tgt_sizes I64 [slices, 2] (rows, cols of
 * patches), image_sizes I64 [images, 2] (width, height); finish adds image_bound,
 * audio_bounds and spk_bounds I64 [k, 2].
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "image_common.h"
#include "minicpmo.h"
#include "tessera_json.h"

#define PP "preprocessor_config.json"

/* ---------------------------------------------------------------------------------- */
/* Config                                                                               */
/* ---------------------------------------------------------------------------------- */

static tsr_status read_token(const cJSON *pp, const char *key, const char *dflt, char *dst,
                             tsr_error *err) {
    const char *v;
    tsr_status st = tsr__json_string(pp, key, dflt, &v, PP, err);
    if (st) return st;
    if (strlen(v) >= TSR__MINICPMO_TOKEN_MAX)
        return TSR_FAIL(err, TSR_ERR_FORMAT, PP ": \"%s\" is longer than %d bytes", key,
                        TSR__MINICPMO_TOKEN_MAX - 1);
    strcpy(dst, v);
    return TSR_OK;
}

static tsr_status read_image_config(const cJSON *pp, tsr__minicpmo_state *s, tsr_error *err) {
    static const double half[3] = {0.5, 0.5, 0.5};
    int64_t slices, scale, patch, query;
    double mean[3], std[3];
    tsr_status st;
    if ((st = tsr__json_int(pp, "max_slice_nums", 9, 1, 1024, &slices, PP, err)) ||
        (st = tsr__json_int(pp, "scale_resolution", 448, 1, 8192, &scale, PP, err)) ||
        (st = tsr__json_int(pp, "patch_size", 14, 1, 1024, &patch, PP, err)) ||
        (st = tsr__json_int(pp, "image_feature_size", 64, 0, 65536, &query, PP, err)) ||
        (st = tsr__json_bool(pp, "use_image_id", true, &s->use_image_id, PP, err)) ||
        (st = tsr__json_bool(pp, "slice_mode", true, &s->slice_mode, PP, err)) ||
        (st = tsr__json_doubles(pp, "norm_mean", half, 3, mean, PP, err)) ||
        (st = tsr__json_doubles(pp, "norm_std", half, 3, std, PP, err)) ||
        (st = read_token(pp, "im_start_token", "<image>", s->im_start, err)) ||
        (st = read_token(pp, "im_end_token", "</image>", s->im_end, err)) ||
        (st = read_token(pp, "slice_start_token", "<slice>", s->slice_start, err)) ||
        (st = read_token(pp, "slice_end_token", "</slice>", s->slice_end, err)) ||
        (st = read_token(pp, "unk_token", "<unk>", s->unk, err)) ||
        (st = read_token(pp, "im_id_start", "<image_id>", s->id_start, err)) ||
        (st = read_token(pp, "im_id_end", "</image_id>", s->id_end, err)))
        return st;
    for (int c = 0; c < 3; c++) {
        s->mean[c] = (float)mean[c];
        s->std[c] = (float)std[c];
        if (!isfinite(s->mean[c]) || !isfinite(s->std[c]) || s->std[c] == 0.0f)
            return TSR_FAIL(err, TSR_ERR_FORMAT, PP ": norm_mean[%d] %g / norm_std[%d] %g", c,
                            mean[c], c, std[c]);
    }
    s->max_slice_nums = (int32_t)slices;
    s->scale_resolution = (int32_t)scale;
    s->patch_size = (int32_t)patch;
    s->query_num = (int32_t)query;
    return TSR_OK;
}

static tsr_status read_token_ids(const tsr__model_configs *cfg, tsr__minicpmo_state *s,
                                 tsr_error *err) {
    struct {
        const char *content;
        int64_t *id;
    } t[] = {{s->im_start, &s->id_im_start},        {s->im_end, &s->id_im_end},
             {s->slice_start, &s->id_slice_start},  {s->slice_end, &s->id_slice_end},
             {"<|audio_start|>", &s->id_audio_start}, {"<|audio_end|>", &s->id_audio_end},
             {"<|spk_bos|>", &s->id_spk_start},     {"<|spk_eos|>", &s->id_spk_end}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        tsr_status st = tsr__added_token_id(cfg, t[i].content, t[i].id, err);
        if (st) return st;
    }
    return TSR_OK;
}

static tsr_status minicpmo_load(const tsr__model_configs *cfg, void **state, tsr_error *err) {
    *state = NULL;
    const cJSON *pp = cfg ? cfg->preprocessor_config : NULL;
    if (!pp) return TSR_FAIL(err, TSR_ERR_FORMAT, PP " is missing");
    tsr__minicpmo_state *s = tsr__calloc(1, sizeof *s);
    if (!s) return TSR_FAIL(err, TSR_ERR_OOM, "state");
    tsr_status st;
    if ((st = read_image_config(pp, s, err)) || (st = tsr__minicpmo_audio_load(cfg, s, err)) ||
        (st = read_token_ids(cfg, s, err))) {
        tsr__free(s);
        return st;
    }
    *state = s;
    return TSR_OK;
}

static void minicpmo_free_state(void *state) { tsr__free(state); }

/* ---------------------------------------------------------------------------------- */
/* Slicing arithmetic (image_processing_minicpmv.py), in doubles                        */
/* ---------------------------------------------------------------------------------- */

/* max(round(length / p) * p, p), Python's round: half to even */
static double ensure_divide(double length, int32_t p) {
    double v = rint(length / p) * p;
    return v > p ? v : p;
}

/* find_best_resize -> (width, height) */
static void best_resize(double w, double h, int32_t S, int32_t p, bool upscale, double *bw,
                        double *bh) {
    if (w * h > (double)S * S || upscale) {
        double r = w / h;
        h = trunc(S / sqrt(r));
        w = trunc(h * r);
    }
    *bw = ensure_divide(w, p);
    *bh = ensure_divide(h, p);
}

/* get_sliced_grid: false when the image is not sliced; grid = [cols, rows]. */
static bool sliced_grid(int32_t W, int32_t H, int32_t S, int32_t max_slices, int32_t grid[2]) {
    double log_ratio = log((double)W / H);
    double ratio = (double)W * H / ((double)S * S);
    double multiple = fmin(ceil(ratio), max_slices);
    if (multiple <= 1) return false;
    double min_error = INFINITY;
    grid[0] = grid[1] = 1;
    for (int d = -1; d <= 1; d++) {
        int64_t n = (int64_t)multiple + d;
        if (n == 1 || n > max_slices) continue;
        for (int64_t m = 1; m <= n; m++) {
            if (n % m) continue;
            double e = fabs(log_ratio - log((double)m / (double)(n / m)));
            if (e < min_error) {
                grid[0] = (int32_t)m;
                grid[1] = (int32_t)(n / m);
                min_error = e;
            }
        }
    }
    return true;
}

/* Sizes of one image's slices: source (w, h) and, when sliced, the refined image. */
typedef struct slicing {
    bool sliced;
    int32_t grid[2];    /* cols, rows */
    int32_t src_w, src_h;
    int32_t ref_w, ref_h;
} slicing;

static slicing plan(const tsr__minicpmo_state *s, int32_t W, int32_t H) {
    slicing p = {0};
    const int32_t S = s->scale_resolution, P = s->patch_size;
    double bw, bh;
    if (!s->slice_mode) {
        p.src_w = W;
        p.src_h = H;
        return p;
    }
    p.sliced = sliced_grid(W, H, S, s->max_slice_nums, p.grid);
    best_resize(W, H, S, P, !p.sliced, &bw, &bh);
    p.src_w = (int32_t)bw;
    p.src_h = (int32_t)bh;
    if (p.sliced) { /* get_refine_size */
        double rw = ensure_divide(W, p.grid[0]), rh = ensure_divide(H, p.grid[1]);
        best_resize(rw / p.grid[0], rh / p.grid[1], S, P, true, &bw, &bh);
        p.ref_w = (int32_t)bw * p.grid[0];
        p.ref_h = (int32_t)bh * p.grid[1];
    }
    return p;
}

/* ---------------------------------------------------------------------------------- */
/* Tensors                                                                              */
/* ---------------------------------------------------------------------------------- */

static tsr_status add_tensor(tsr_tensor_list *out, const char *name, tsr_tensor *t,
                             tsr_error *err) {
    tsr_status st = tsr_tensor_list_add(out, name, t, err);
    if (st) tsr_tensor_free(t);
    return st;
}

/* x = u8 / 255 (float32), (x - mean) / std, laid out by reshape_by_patch as
 * [3][P][N*P]: out[c][ky][n*P + kx] = x[c][py*P + ky][px*P + kx], n = py*(W/P) + px. */
static tsr_status add_slice(const tsr__minicpmo_state *s, const tsr_image *img, int64_t index,
                            int64_t *tgt, tsr_tensor_list *out, tsr_error *err) {
    const int64_t P = s->patch_size, ph = img->height / P, pw = img->width / P, N = ph * pw;
    tsr_tensor t = {0};
    tsr_status st = tsr_tensor_alloc(&t, TSR_DTYPE_F32, 3, (int64_t[]){3, P, N * P}, err);
    if (st) return st;
    float *o = t.data;
    for (int c = 0; c < 3; c++)
        for (int64_t ky = 0; ky < P; ky++)
            for (int64_t n = 0; n < N; n++)
                for (int64_t kx = 0; kx < P; kx++) {
                    int64_t y = (n / pw) * P + ky, x = (n % pw) * P + kx;
                    float v = (float)img->data[(y * img->width + x) * 3 + c] / 255.0f;
                    o[((c * P + ky) * N + n) * P + kx] = (v - s->mean[c]) / s->std[c];
                }
    tgt[0] = ph;
    tgt[1] = pw;
    char name[48];
    snprintf(name, sizeof name, "pixel_values.%lld", (long long)index);
    return add_tensor(out, name, &t, err);
}

/* Appends the slices of one image (source first, then the grid row-major). */
static tsr_status slice_one(const tsr__minicpmo_state *s, const tsr_image *img, const slicing *p,
                            int64_t *index, int64_t *tgt, tsr_tensor_list *out, tsr_error *err) {
    tsr_image src = {0}, ref = {0}, cell = {0};
    tsr_status st;
    if (p->src_w == img->width && p->src_h == img->height)
        st = tsr_image_crop(img, 0, 0, img->width, img->height, &src, err);
    else
        st = tsr_image_resize(img, p->src_w, p->src_h, TSR_RESAMPLE_BICUBIC, &src, err);
    if (!st) st = add_slice(s, &src, *index, tgt + 2 * *index, out, err);
    ++*index;
    if (!st && p->sliced) {
        st = tsr_image_resize(img, p->ref_w, p->ref_h, TSR_RESAMPLE_BICUBIC, &ref, err);
        int32_t cw = p->ref_w / p->grid[0], ch = p->ref_h / p->grid[1];
        for (int32_t r = 0; !st && r < p->grid[1]; r++)
            for (int32_t c = 0; !st && c < p->grid[0]; c++) {
                st = tsr_image_crop(&ref, c * cw, r * ch, cw, ch, &cell, err);
                if (!st) st = add_slice(s, &cell, *index, tgt + 2 * *index, out, err);
                ++*index;
                tsr_image_free(&cell);
            }
    }
    tsr_image_free(&ref);
    tsr_image_free(&src);
    return st;
}

tsr_status tsr__minicpmo_append(char **buf, size_t *len, size_t *cap, const char *s,
                                tsr_error *err) {
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *len + n + 1) c *= 2;
        char *b = tsr__realloc(*buf, c);
        if (!b) return TSR_FAIL(err, TSR_ERR_OOM, "%zu bytes of placeholder", c);
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
    return TSR_OK;
}

/* get_slice_image_placeholder */
static tsr_status placeholder(const tsr__minicpmo_state *s, const slicing *p, int64_t idx,
                              char **text, tsr_error *err) {
    char *b = NULL, num[2 * TSR__MINICPMO_TOKEN_MAX + 24];
    size_t len = 0, cap = 0;
    tsr_status st = TSR_OK;
    if (s->use_image_id) {
        snprintf(num, sizeof num, "%s%lld%s", s->id_start, (long long)idx, s->id_end);
        st = tsr__minicpmo_append(&b, &len, &cap, num, err);
    }
    if (!st) st = tsr__minicpmo_append(&b, &len, &cap, s->im_start, err);
    for (int32_t q = 0; !st && q < s->query_num; q++)
        st = tsr__minicpmo_append(&b, &len, &cap, s->unk, err);
    if (!st) st = tsr__minicpmo_append(&b, &len, &cap, s->im_end, err);
    for (int32_t r = 0; !st && p->sliced && r < p->grid[1]; r++) {
        if (r > 0) st = tsr__minicpmo_append(&b, &len, &cap, "\n", err);
        for (int32_t c = 0; !st && c < p->grid[0]; c++) {
            st = tsr__minicpmo_append(&b, &len, &cap, s->slice_start, err);
            for (int32_t q = 0; !st && q < s->query_num; q++)
                st = tsr__minicpmo_append(&b, &len, &cap, s->unk, err);
            if (!st) st = tsr__minicpmo_append(&b, &len, &cap, s->slice_end, err);
        }
    }
    if (st) {
        tsr__free(b);
        return st;
    }
    *text = b;
    return TSR_OK;
}

static tsr_status minicpmo_process_images(const void *state, const tsr_image *images, int64_t n,
                                          tsr_tensor_list *out, tsr__replacements *repl,
                                          tsr_error *err) {
    const tsr__minicpmo_state *s = state;
    if (!s || !out || !repl) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "NULL argument");
    memset(repl, 0, sizeof *repl);
    tsr_status checked = tsr__check_rgb_images(images, n, err);
    if (checked) return checked;
    slicing *plans = tsr__calloc((size_t)n, sizeof *plans);
    if (!plans) return TSR_FAIL(err, TSR_ERR_OOM, "%lld images", (long long)n);
    int64_t n_slices = 0;
    for (int64_t i = 0; i < n; i++) {
        plans[i] = plan(s, images[i].width, images[i].height);
        n_slices += 1 + (plans[i].sliced ? (int64_t)plans[i].grid[0] * plans[i].grid[1] : 0);
    }
    tsr_status st = TSR_OK;
    /* The hub processor infers the channel layout from the first image: a height of 1 or 3
     * reads as channels-first and its normalize raises on every slice. */
    if (images[0].height == 1 || images[0].height == 3) {
        st = TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                      "mean must have %d elements if it is an iterable, got 3 (the first image "
                      "is %d pixels high, read as channels-first)",
                      (int)plans[0].src_h, (int)images[0].height);
        tsr__free(plans);
        return st;
    }
    tsr_tensor tgt = {0}, sizes = {0};
    repl->text = tsr__calloc((size_t)n, sizeof *repl->text);
    if (!repl->text) st = TSR_FAIL(err, TSR_ERR_OOM, "replacements");
    else repl->count = n;
    if (!st) st = tsr_tensor_alloc(&tgt, TSR_DTYPE_I64, 2, (int64_t[]){n_slices, 2}, err);
    if (!st) st = tsr_tensor_alloc(&sizes, TSR_DTYPE_I64, 2, (int64_t[]){n, 2}, err);
    int64_t index = 0;
    for (int64_t i = 0; !st && i < n; i++) {
        ((int64_t *)sizes.data)[2 * i] = images[i].width;
        ((int64_t *)sizes.data)[2 * i + 1] = images[i].height;
        st = slice_one(s, &images[i], &plans[i], &index, tgt.data, out, err);
        if (!st) st = placeholder(s, &plans[i], i, &repl->text[i], err);
    }
    if (!st) st = add_tensor(out, "tgt_sizes", &tgt, err);
    else tsr_tensor_free(&tgt);
    if (!st) st = add_tensor(out, "image_sizes", &sizes, err);
    else tsr_tensor_free(&sizes);
    if (st) tsr__replacements_free(repl);
    tsr__free(plans);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* Bounds (MiniCPMOProcessor._convert)                                                  */
/* ---------------------------------------------------------------------------------- */

/* [start+1, end) pairs of tokens a / b (or a2 / b2); the counts must match, as torch's
 * hstack and the processor's asserts require. */
static tsr_status bounds(const int32_t *ids, int64_t n, int64_t a, int64_t a2, int64_t b,
                         int64_t b2, const char *name, tsr_tensor_list *out, tsr_error *err) {
    int64_t na = 0, nb = 0;
    for (int64_t i = 0; i < n; i++) {
        na += ids[i] >= 0 && (ids[i] == a || ids[i] == a2);
        nb += ids[i] >= 0 && (ids[i] == b || ids[i] == b2);
    }
    if (na != nb)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                        "%s: %lld start tokens but %lld end tokens in the prompt", name,
                        (long long)na, (long long)nb);
    tsr_tensor t = {0};
    tsr_status st = tsr_tensor_alloc(&t, TSR_DTYPE_I64, 2, (int64_t[]){na, 2}, err);
    if (st) return st;
    int64_t *v = t.data, ia = 0, ib = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] >= 0 && (ids[i] == a || ids[i] == a2)) v[2 * ia++] = i + 1;
        if (ids[i] >= 0 && (ids[i] == b || ids[i] == b2)) v[2 * ib++ + 1] = i;
    }
    return add_tensor(out, name, &t, err);
}

static tsr_status minicpmo_finish(const void *state, const int32_t *ids, int64_t n_ids,
                                  tsr_tensor_list *out, tsr_error *err) {
    const tsr__minicpmo_state *s = state;
    if (!s || !out || n_ids < 0 || (n_ids > 0 && !ids))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "NULL argument or negative n_ids");
    tsr_status st;
    if ((st = bounds(ids, n_ids, s->id_im_start, s->id_slice_start, s->id_im_end,
                     s->id_slice_end, "image_bound", out, err)) ||
        (st = bounds(ids, n_ids, s->id_audio_start, -1, s->id_audio_end, -1, "audio_bounds",
                     out, err)) ||
        (st = bounds(ids, n_ids, s->id_spk_start, -1, s->id_spk_end, -1, "spk_bounds", out,
                     err)))
        return st;
    return TSR_OK;
}

const tsr__family_ops tsr__minicpmo_ops = {
    .model_type = "minicpmo",
    .image_placeholder = "(<image>./</image>)",
    .audio_placeholder = "(<audio>./</audio>)",
    .drop_alpha = 1, /* the hub processor calls convert("RGB") */
    .load = minicpmo_load,
    .free_state = minicpmo_free_state,
    .process_images = minicpmo_process_images,
    .process_audio = tsr__minicpmo_process_audio,
    .finish = minicpmo_finish,
};
