/*
 * vision/llava_next/encoder.c - LLaVA-NeXT's vision side, as LlavaNextForConditionalGeneration
 * computes it: the CLIP vision tower (clip.c) on every tile of every image, the hidden state
 * of vision_feature_layer (one layer, or several concatenated) with the CLS row dropped
 * ("default") or kept ("full"), the multi_modal_projector (linear_1, projector_hidden_act,
 * linear_2), then pack_image_features: the base tile's rows, then the anyres tiles laid out as
 * one feature grid (get_anyres_image_grid_shape), unpadded to the image's aspect ratio
 * (unpad_image, with its int(round(x, 7))) and image_newline after every grid row. The rows of
 * all images, in order, replace the image_token_index tokens of input_ids.
 *
 * Weights use the hub names (llava-hf/llava-v1.6-*: vision_tower.vision_model.*,
 * multi_modal_projector.*, image_newline); the transformers-5 names (model.vision_tower.*, with
 * or without vision_model, model.multi_modal_projector.*, model.image_newline) are aliases.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../encoder.h"
#include "clip.h"
#include "tessera_json.h"

#define CFG "config.json"
#define MAX_SEL 64        /* vision_feature_layer entries */
#define MAX_PINPOINTS 1024
#define MAX_SIDE (1 << 24) /* image_sizes entries */

typedef struct llava_enc {
    tsr__clip clip;
    int32_t n_sel;
    int32_t sel[MAX_SEL];  /* hidden-state indices in [0, n_layers], in config order */
    int drop_cls;          /* vision_feature_select_strategy "default" */
    tsr__linear proj1, proj2;
    tsr__act proj_act;
    const float *newline;  /* (text_dim) */
    int32_t text_dim;
    int64_t image_token;
    int64_t n_pinpoints;
    int64_t (*pinpoints)[2]; /* (height, width) */
} llava_enc;

static void llava_enc_free(void *p) {
    llava_enc *e = p;
    if (!e) return;
    tsr__clip_free(&e->clip);
    tsr__free(e->pinpoints);
    tsr__free(e);
}

/* ---- configuration ---------------------------------------------------------------------- */

static tsr_status load_pinpoints(const cJSON *cfg, llava_enc *e, tsr_error *err) {
    static const int64_t dflt[5][2] = {{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(cfg, "image_grid_pinpoints");
    if (list && cJSON_IsNull(list)) list = NULL;
    if (list && !cJSON_IsArray(list))
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": image_grid_pinpoints must be a list of "
                        "[height, width] pairs");
    const int n = list ? cJSON_GetArraySize(list) : 5;
    if (n < 1 || n > MAX_PINPOINTS)
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": image_grid_pinpoints needs 1..%d entries, "
                        "found %d", MAX_PINPOINTS, n);
    e->pinpoints = tsr__calloc((size_t)n, sizeof *e->pinpoints);
    if (!e->pinpoints) return TSR_FAIL(err, TSR_ERR_OOM, "%d pinpoints", n);
    e->n_pinpoints = n;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            if (!list) {
                e->pinpoints[i][k] = dflt[i][k];
                continue;
            }
            const cJSON *p = cJSON_GetArrayItem(list, i);
            const cJSON *v = cJSON_IsArray(p) && cJSON_GetArraySize(p) == 2 ? cJSON_GetArrayItem(p, k) : NULL;
            const double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
            if (!(d >= 1 && d <= MAX_SIDE) || d != floor(d))
                return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": image_grid_pinpoints[%d] must be "
                                "[height, width] with integers in 1..%d", i, MAX_SIDE);
            e->pinpoints[i][k] = (int64_t)d;
        }
    return TSR_OK;
}

/* vision_feature_layer: an int or a list of ints, Python indices into the n_layers + 1 hidden
 * states (0: the embeddings after pre_layrnorm; i: after layer i). */
static tsr_status load_feature_layers(const cJSON *cfg, int32_t n_layers, llava_enc *e,
                                      tsr_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "vision_feature_layer");
    const int n_states = n_layers + 1;
    int n = 1;
    if (v && cJSON_IsArray(v)) n = cJSON_GetArraySize(v);
    else if (v && !cJSON_IsNull(v) && !cJSON_IsNumber(v))
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": vision_feature_layer must be an integer or "
                        "a list of integers");
    if (n < 1 || n > MAX_SEL)
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": vision_feature_layer lists 1..%d layers, "
                        "found %d", MAX_SEL, n);
    for (int i = 0; i < n; i++) {
        const cJSON *x = v && cJSON_IsArray(v) ? cJSON_GetArrayItem(v, i) : v;
        double d = -2;
        if (x && !cJSON_IsNull(x)) {
            if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble))
                return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": vision_feature_layer entries must "
                                "be integers");
            d = x->valuedouble;
        }
        if (d < -n_states || d >= n_states)
            return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": vision_feature_layer %.0f is outside "
                            "the %d hidden states of a %d-layer vision tower", d, n_states,
                            (int)n_layers);
        e->sel[i] = (int32_t)(d < 0 ? d + n_states : d);
    }
    e->n_sel = n;
    return TSR_OK;
}

static tsr_status llava_load(const tsr__model_configs *cfg, tsr__weights *w, int32_t text_dim,
                             void **out, tsr_error *err) {
    *out = NULL;
    const cJSON *c = cfg ? cfg->config : NULL;
    if (!c) return TSR_FAIL(err, TSR_ERR_FORMAT, "llava_next: " CFG " is missing");
    if (text_dim < 1) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "text hidden size %d", (int)text_dim);
    llava_enc *e = tsr__calloc(1, sizeof *e);
    if (!e) return TSR_FAIL(err, TSR_ERR_OOM, "llava_next encoder");
    e->text_dim = text_dim;
    const char *strategy = NULL, *act = NULL;
    bool proj_bias = true;
    int64_t tok = 0;
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(c, "vision_config");
    if (vc && cJSON_IsNull(vc)) vc = NULL;
    tsr_status s = TSR_OK;
    if (vc && !cJSON_IsObject(vc))
        s = TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": vision_config must be an object");
    /* image_token_index (image_token_id is its attribute alias) */
    if (!s) s = tsr__json_int(c, "image_token_id", 32000, 0, INT32_MAX, &tok, CFG, err);
    if (!s) s = tsr__json_int(c, "image_token_index", tok, 0, INT32_MAX, &e->image_token, CFG, err);
    if (!s) s = tsr__json_string(c, "vision_feature_select_strategy", "default", &strategy, CFG, err);
    if (!s && strcmp(strategy, "default") && strcmp(strategy, "full"))
        s = TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": vision_feature_select_strategy must be "
                     "\"default\" or \"full\", found \"%s\"", strategy);
    if (!s) e->drop_cls = !strcmp(strategy, "default");
    if (!s) s = tsr__json_string(c, "projector_hidden_act", "gelu", &act, CFG, err);
    if (!s) s = tsr__act_parse(act, CFG " projector_hidden_act", &e->proj_act, err);
    if (!s) s = tsr__json_bool(c, "multimodal_projector_bias", true, &proj_bias, CFG, err);
    if (!s) s = load_pinpoints(c, e, err);
    /* Without vision_config, LlavaNextConfig's CLIP-L/14-336 defaults; with one, CLIP's. */
    if (!s) s = tsr__clip_load(vc, vc == NULL, w, "vision_tower.vision_model", &e->clip, err);
    if (!s) s = load_feature_layers(c, e->clip.n_layers, e, err);
    if (!s) {
        int32_t deepest = 0;
        for (int32_t i = 0; i < e->n_sel; i++)
            if (e->sel[i] > deepest) deepest = e->sel[i];
        e->clip.n_run = deepest;
    }
    const int64_t D = e->clip.dim;
    if (!s) s = tsr__linear_load(w, "multi_modal_projector.linear_1", D * e->n_sel, text_dim,
                                 proj_bias, &e->proj1, err);
    if (!s) s = tsr__linear_load(w, "multi_modal_projector.linear_2", text_dim, text_dim,
                                 proj_bias, &e->proj2, err);
    if (!s) s = tsr__weights_vec(w, "image_newline", text_dim, &e->newline, err);
    if (s) {
        llava_enc_free(e);
        return s;
    }
    *out = e;
    return TSR_OK;
}

/* ---- anyres geometry (Python semantics: / is double, // floors, int() truncates) --------- */

/* select_best_resolution: 0 when no pinpoint keeps any pixel (transformers finds none). */
static int best_resolution(const llava_enc *e, int64_t h, int64_t w, int64_t *bh, int64_t *bw) {
    int64_t max_eff = 0;
    double min_waste = INFINITY;
    int found = 0;
    for (int64_t i = 0; i < e->n_pinpoints; i++) {
        const int64_t ph = e->pinpoints[i][0], pw = e->pinpoints[i][1];
        const double scale = fmin((double)pw / (double)w, (double)ph / (double)h);
        const int64_t dw = (int64_t)((double)w * scale), dh = (int64_t)((double)h * scale);
        const int64_t eff = dw * dh < w * h ? dw * dh : w * h;
        const double waste = (double)(ph * pw - eff);
        if (eff > max_eff || (eff == max_eff && waste < min_waste)) {
            max_eff = eff;
            min_waste = waste;
            *bh = ph;
            *bw = pw;
            found = 1;
        }
    }
    return found;
}

/* int(round(x, 7)): Python rounds to 7 decimals exactly (on the binary value), as printf does. */
static int64_t int_round7(double x) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.7f", x);
    return (int64_t)strtod(buf, NULL);
}

/* Where one image's rows come from. */
typedef struct image_plan {
    int64_t n_tiles;        /* base + anyres tiles (image_size_to_num_patches) */
    int64_t nph, npw;       /* anyres tile grid */
    int64_t r0, r1, c0, c1; /* kept rows / columns of the (nph*g) x (npw*g) feature grid */
    int64_t rows;           /* embedding rows of the image */
} image_plan;

static tsr_status plan_image(const llava_enc *e, int64_t idx, int64_t h, int64_t w,
                             image_plan *p, tsr_error *err) {
    const int64_t S = e->clip.image_size, g = S / e->clip.patch;
    const int64_t per_tile = g * g + (e->drop_cls ? 0 : 1);
    int64_t bh = 0, bw = 0;
    memset(p, 0, sizeof *p);
    if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "image_sizes[%lld] = (%lld, %lld) is not a "
                        "valid image size (1..%d)", (long long)idx, (long long)h, (long long)w,
                        MAX_SIDE);
    if (!best_resolution(e, h, w, &bh, &bw))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "image %lld (%lld x %lld): no grid pinpoint "
                        "keeps any of its pixels", (long long)idx, (long long)h, (long long)w);
    p->n_tiles = 1 + ((bh + S - 1) / S) * ((bw + S - 1) / S);
    p->nph = bh / S;
    p->npw = bw / S;
    if (p->nph * p->npw != p->n_tiles - 1)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "image %lld: pinpoint %lld x %lld is not a whole "
                        "number of %lld px tiles (%lld tiles, grid %lld x %lld)", (long long)idx,
                        (long long)bh, (long long)bw, (long long)S, (long long)(p->n_tiles - 1),
                        (long long)p->nph, (long long)p->npw);
    if (!e->drop_cls)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "vision_feature_select_strategy \"full\" keeps "
                        "the CLS row, so the %lld rows of a tile do not form the %lld x %lld "
                        "grid anyres packing needs (transformers fails on it too)",
                        (long long)per_tile, (long long)g, (long long)g);
    const int64_t ch = p->nph * g, cw = p->npw * g;
    p->r0 = 0;
    p->r1 = ch;
    p->c0 = 0;
    p->c1 = cw;
    /* unpad_image: padding = (current - new) // 2 off both ends; the new size never exceeds
     * the current one, so the kept range is [padding, current - padding). */
    if ((double)w / (double)h > (double)cw / (double)ch) {
        const int64_t nh = int_round7((double)h * ((double)cw / (double)w));
        const int64_t pad = nh <= ch ? (ch - nh) / 2 : 0;
        p->r0 = pad;
        p->r1 = ch - pad > pad ? ch - pad : pad;
    } else {
        const int64_t nw = int_round7((double)w * ((double)ch / (double)h));
        const int64_t pad = nw <= cw ? (cw - nw) / 2 : 0;
        p->c0 = pad;
        p->c1 = cw - pad > pad ? cw - pad : pad;
    }
    p->rows = per_tile + (p->r1 - p->r0) * (p->c1 - p->c0 + 1);
    return TSR_OK;
}

/* ---- encode ----------------------------------------------------------------------------- */

/* feats (n_tiles * g*g, text_dim): the projected rows of one image's tiles -> dst rows. */
static void pack_image(const llava_enc *e, const image_plan *p, const float *feats, float *dst) {
    const int64_t g = e->clip.image_size / e->clip.patch, per_tile = g * g, Dt = e->text_dim;
    const size_t row = (size_t)Dt * sizeof(float);
    memcpy(dst, feats, (size_t)per_tile * row); /* the base tile */
    dst += per_tile * Dt;
    for (int64_t r = p->r0; r < p->r1; r++) {
        for (int64_t c = p->c0; c < p->c1; c++) {
            const int64_t tile = 1 + (r / g) * p->npw + c / g;
            const int64_t pos = (r % g) * g + c % g;
            memcpy(dst, feats + (tile * per_tile + pos) * Dt, row);
            dst += Dt;
        }
        memcpy(dst, e->newline, row);
        dst += Dt;
    }
}

static tsr_status check_inputs(const llava_enc *e, const tsr_tensor *pv, const tsr_tensor *sz,
                               image_plan *plans, int64_t *total_rows, tsr_error *err) {
    const int64_t n = sz->shape[0], S = e->clip.image_size, C = e->clip.n_channels;
    const int64_t *hw = sz->data;
    int64_t rows = 0, tiles = 0, max_tiles = 0;
    tsr_status s;
    for (int64_t i = 0; i < n; i++) {
        if ((s = plan_image(e, i, hw[2 * i], hw[2 * i + 1], &plans[i], err))) return s;
        rows += plans[i].rows;
        tiles += plans[i].n_tiles;
        if (plans[i].n_tiles > max_tiles) max_tiles = plans[i].n_tiles;
    }
    const int32_t nd = pv->ndim;
    if ((nd != 4 && nd != 5) || pv->shape[nd - 3] != C || pv->shape[nd - 2] != S ||
        pv->shape[nd - 1] != S)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "pixel_values has %d dims [..., %lld, %lld, %lld], "
                        "the vision tower takes [images, patches, %lld, %lld, %lld]", (int)nd,
                        (long long)(nd >= 3 ? pv->shape[nd - 3] : 0),
                        (long long)(nd >= 2 ? pv->shape[nd - 2] : 0),
                        (long long)(nd >= 1 ? pv->shape[nd - 1] : 0), (long long)C,
                        (long long)S, (long long)S);
    if (nd == 5 && pv->shape[0] != n)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "pixel_values [%lld, %lld, %lld, %lld, %lld] holds "
                        "%lld images, image_sizes [%lld, 2] has %lld", (long long)pv->shape[0],
                        (long long)pv->shape[1], (long long)C, (long long)S, (long long)S,
                        (long long)pv->shape[0], (long long)n, (long long)n);
    if (nd == 5 && pv->shape[1] < max_tiles) {
        int64_t i = 0;
        while (plans[i].n_tiles != max_tiles) i++;
        return TSR_FAIL(err, TSR_ERR_SHAPE, "pixel_values [%lld, %lld, %lld, %lld, %lld] holds "
                        "%lld patches per image, image_sizes[%lld] = (%lld, %lld) needs %lld",
                        (long long)pv->shape[0], (long long)pv->shape[1], (long long)C,
                        (long long)S, (long long)S, (long long)pv->shape[1], (long long)i,
                        (long long)hw[2 * i], (long long)hw[2 * i + 1], (long long)max_tiles);
    }
    if (nd == 4 && pv->shape[0] != tiles)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "pixel_values [%lld, %lld, %lld, %lld] holds %lld "
                        "patches, image_sizes [%lld, 2] needs %lld", (long long)pv->shape[0],
                        (long long)C, (long long)S, (long long)S, (long long)pv->shape[0],
                        (long long)n, (long long)tiles);
    *total_rows = rows;
    return TSR_OK;
}

static tsr_status llava_encode(const void *enc, tsr__pool *pool, const tsr_tensor_list *inputs,
                               tsr_tensor_list *out, double *image_ms, double *audio_ms,
                               tsr_error *err) {
    const llava_enc *e = enc;
    const double t0 = tsr__now_ms();
    const tsr_tensor *pv = NULL, *sz = NULL;
    const int64_t *ids = NULL;
    int64_t n_ids = 0, total = 0;
    (void)audio_ms;
    tsr_status s = tsr__input_ids(inputs, &ids, &n_ids, err);
    if (!s) s = tsr__input_get(inputs, "pixel_values", TSR_DTYPE_F32, &pv, err);
    if (!s) s = tsr__input_get(inputs, "image_sizes", TSR_DTYPE_I64, &sz, err);
    if (s) return s;
    if (sz->ndim != 2 || sz->shape[1] != 2 || sz->shape[0] < 1)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "image_sizes has %d dims [%lld, ...], expected "
                        "[images, 2]", (int)sz->ndim, (long long)(sz->ndim ? sz->shape[0] : 0));
    const int64_t n = sz->shape[0];
    image_plan *plans = tsr__calloc((size_t)n, sizeof *plans);
    if (!plans) return TSR_FAIL(err, TSR_ERR_OOM, "%lld image plans", (long long)n);
    tsr_tensor embeds = {0};
    s = check_inputs(e, pv, sz, plans, &total, err);
    int64_t shape[2] = {total, e->text_dim};
    if (!s) s = tsr_tensor_alloc(&embeds, TSR_DTYPE_F32, 2, shape, err);

    const int64_t S = e->clip.image_size, g = S / e->clip.patch, per_tile = g * g;
    const int64_t D = e->clip.dim, Dt = e->text_dim, ds = D * e->n_sel;
    const size_t tile_floats = (size_t)(e->clip.n_channels * S * S);
    const int64_t stride_img = pv->ndim == 5 ? pv->shape[1] : 0;
    int64_t max_tiles = 0;
    for (int64_t i = 0; i < n; i++)
        if (plans[i].n_tiles > max_tiles) max_tiles = plans[i].n_tiles;
    /* hid (rows, n_sel * D) -> linear_1 -> mid (rows, Dt) -> act -> linear_2 -> feats */
    const size_t rows = (size_t)(max_tiles * per_tile);
    size_t n_hid = 0, n_mid = 0;
    float *hid = NULL, *mid = NULL;
    if (!s && (!tsr__mul_size(rows, (size_t)ds, &n_hid) || !tsr__mul_size(rows, (size_t)Dt, &n_mid) ||
               n_hid > SIZE_MAX / sizeof(float) / 2 || n_mid > SIZE_MAX / sizeof(float) / 2 ||
               !(hid = tsr__malloc(n_hid * sizeof *hid)) ||
               !(mid = tsr__malloc(2 * n_mid * sizeof *mid))))
        s = TSR_FAIL(err, TSR_ERR_OOM, "features of %lld tiles", (long long)max_tiles);
    float *feats = mid ? mid + n_mid : NULL, *dst = embeds.data;
    int64_t first = 0; /* tile index of image i in a 4-D pixel_values */
    for (int64_t i = 0; !s && i < n; i++) {
        const float *px = (const float *)pv->data +
                          (size_t)(stride_img ? i * stride_img : first) * tile_floats;
        const int64_t T = plans[i].n_tiles * per_tile;
        s = tsr__clip_run(&e->clip, pool, px, plans[i].n_tiles, e->sel, e->n_sel, e->drop_cls,
                          hid, err);
        if (s) break;
        tsr__linear_run(pool, &e->proj1, mid, hid, T);
        tsr__act_gated(pool, e->proj_act, mid, NULL, T * Dt);
        tsr__linear_run(pool, &e->proj2, feats, mid, T);
        pack_image(e, &plans[i], feats, dst);
        dst += plans[i].rows * Dt;
        first += plans[i].n_tiles;
    }
    tsr__free(hid);
    tsr__free(mid);
    tsr__free(plans);
    if (!s) s = tsr__encoded_by_token(out, ids, n_ids, e->image_token, &embeds, err);
    tsr_tensor_free(&embeds);
    if (!s && image_ms) *image_ms += tsr__now_ms() - t0;
    return s;
}

static const char *const k_prefixes[] = {"vision_tower.", "multi_modal_projector.",
                                         "image_newline", NULL};
/* transformers 5: model.* (its save_pretrained writes the tower without "vision_model."). */
static const char *const k_aliases[] = {
    "model.vision_tower.vision_model.", "vision_tower.vision_model.",
    "model.vision_tower.embeddings.", "vision_tower.vision_model.embeddings.",
    "model.vision_tower.pre_layrnorm.", "vision_tower.vision_model.pre_layrnorm.",
    "model.vision_tower.encoder.", "vision_tower.vision_model.encoder.",
    "model.vision_tower.post_layernorm.", "vision_tower.vision_model.post_layernorm.",
    "vision_tower.embeddings.", "vision_tower.vision_model.embeddings.",
    "vision_tower.pre_layrnorm.", "vision_tower.vision_model.pre_layrnorm.",
    "vision_tower.encoder.", "vision_tower.vision_model.encoder.",
    "vision_tower.post_layernorm.", "vision_tower.vision_model.post_layernorm.",
    "model.multi_modal_projector.", "multi_modal_projector.",
    "model.image_newline", "image_newline",
    NULL, NULL};

const tsr__encoder_ops tsr__llava_next_encoder = {"llava_next", k_prefixes, k_aliases,
                                                  llava_load, llava_enc_free, llava_encode, NULL};
