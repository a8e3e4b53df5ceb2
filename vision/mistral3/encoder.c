/*
 * vision/mistral3/encoder.c - Mistral3 (Mistral-Small-3.1) image encoder, as transformers'
 * Mistral3Model.get_image_features computes it:
 *
 *   PixtralVisionModel   patch_conv (no bias) over each image at its own size (image_sizes),
 *                        patches of all images in one sequence, ln_pre RMSNorm, 2-D axial
 *                        RoPE, pre-norm layers (attention_norm, q/k/v/o without bias,
 *                        ffn_norm, down(act(gate(x)) * up(x))), attention block-diagonal
 *                        across images (generate_block_attention_mask);
 *   vision_feature_layer hidden_states[i]: 0 is ln_pre's output, i the output of layer i;
 *   Mistral3MultiModalProjector  RMSNorm (text rms_norm_eps), patch merger (unfold of
 *                        spatial_merge_size^2 neighbours, merging_layer), linear_1,
 *                        projector_hidden_act, linear_2.
 *
 * Inputs: pixel_values F32 [n, C, H, W] (images padded right / bottom), image_sizes I64 [n, 2]
 * (each image's h, w). Output: one row per [IMG] token, images in order.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../encoder.h"
#include "tessera_json.h"

#define CFG "config.json"


typedef struct m3_enc {
    int32_t dim, n_heads, head_dim, ffn, patch, channels, merge, text_dim;
    int32_t n_layers, n_run; /* layers in the checkpoint; layers the feature layer needs */
    int64_t image_token;
    tsr__act act, proj_act;
    tsr__linear patch_conv; /* (dim, channels * patch * patch), no bias */
    tsr__norm ln_pre;
    tsr__vit_block *layers; /* (n_layers): RMSNorm, q/k/v/o, SwiGLU (fc1 = up_proj) */
    float *inv_freq;      /* (head_dim / 2): the row frequencies, then the column ones */
    tsr__norm proj_norm;
    tsr__linear merging, linear_1, linear_2;
} m3_enc;

static void free_enc(void *p) {
    m3_enc *e = p;
    if (!e) return;
    tsr__free(e->layers);
    tsr__free(e->inv_freq);
    tsr__free(e);
}

static const cJSON *object_or_null(const cJSON *obj, const char *key) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    return cJSON_IsObject(v) ? v : NULL;
}

static tsr_status get_i32(const cJSON *o, const char *key, int64_t dflt, int64_t max,
                          int32_t *out, const char *ctx, tsr_error *err) {
    int64_t v;
    tsr_status st = tsr__json_int(o, key, dflt, 1, max, &v, ctx, err);
    if (!st) *out = (int32_t)v;
    return st;
}

/* vision_feature_layer: an int, or a list of one int (a longer list concatenates features
 * that the projector's norm and patch merger cannot take, in transformers as well). */
static tsr_status feature_layer(const cJSON *root, int32_t n_layers, int32_t *n_run,
                                tsr_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "vision_feature_layer");
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) != 1)
            return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                            CFG ": vision_feature_layer lists %d layers; Mistral3's projector "
                            "(norm and patch merger over the vision hidden size) takes one",
                            cJSON_GetArraySize(v));
        v = cJSON_GetArrayItem(v, 0);
    }
    double d = -1.0;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
            return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": vision_feature_layer must be an integer "
                            "or a list of one integer");
        d = v->valuedouble;
    }
    int64_t n_states = (int64_t)n_layers + 1;
    if (d < -(double)n_states || d >= (double)n_states)
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": vision_feature_layer %g is outside the %lld "
                        "hidden states of the vision tower", d, (long long)n_states);
    int64_t i = (int64_t)d;
    *n_run = (int32_t)(i < 0 ? i + n_states : i);
    return TSR_OK;
}

/* rope_parameters.rope_theta (transformers 5), else rope_theta (hub files), else 10000. */
static tsr_status vision_rope(const cJSON *vc, double *theta, tsr_error *err) {
    const cJSON *rp = object_or_null(vc, "rope_parameters");
    tsr_status st = tsr__json_double(vc, "rope_theta", 10000.0, 1e-6, 1e30, theta,
                                     CFG " vision_config", err);
    if (st || !rp) return st;
    const char *type;
    if ((st = tsr__json_string(rp, "rope_type", "axial", &type, CFG " vision_config.rope_parameters",
                               err)))
        return st;
    if (strcmp(type, "axial"))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, CFG ": vision_config rope_type \"%s\" (Pixtral "
                        "takes axial RoPE only)", type);
    return tsr__json_double(rp, "rope_theta", *theta, 1e-6, 1e30, theta,
                            CFG " vision_config.rope_parameters", err);
}

static tsr_status read_config(const tsr__model_configs *cfg, m3_enc *e, double *theta,
                              float *proj_eps, int *proj_bias, tsr_error *err) {
    const cJSON *root = cfg ? cfg->config : NULL;
    if (!root) return TSR_FAIL(err, TSR_ERR_FORMAT, "mistral3: no " CFG);
    const cJSON *vc = object_or_null(root, "vision_config");
    const cJSON *tc = object_or_null(root, "text_config");
    /* Mistral3Config: without a vision_config the Mistral-Small-3.1 tower; with one, the
     * PixtralVisionConfig defaults fill what it leaves out. */
    int def = vc == NULL;
    const char *vctx = CFG " vision_config", *act, *pact;
    tsr_status st;
    if ((st = get_i32(vc, "hidden_size", 1024, 1 << 16, &e->dim, vctx, err)) ||
        (st = get_i32(vc, "intermediate_size", 4096, 1 << 20, &e->ffn, vctx, err)) ||
        (st = get_i32(vc, "num_hidden_layers", 24, 1 << 10, &e->n_layers, vctx, err)) ||
        (st = get_i32(vc, "num_attention_heads", 16, 1 << 10, &e->n_heads, vctx, err)) ||
        (st = get_i32(vc, "num_channels", 3, 64, &e->channels, vctx, err)) ||
        (st = get_i32(vc, "patch_size", def ? 14 : 16, 1024, &e->patch, vctx, err)) ||
        (st = tsr__json_string(vc, "hidden_act", "gelu", &act, vctx, err)) ||
        (st = tsr__act_parse(act, CFG " vision_config.hidden_act", &e->act, err)) ||
        (st = vision_rope(vc, theta, err)))
        return st;
    if (e->dim % e->n_heads)
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": vision hidden_size %d is not a multiple of "
                        "num_attention_heads %d", (int)e->dim, (int)e->n_heads);
    e->head_dim = e->dim / e->n_heads; /* PixtralVisionConfig sets head_dim so */
    if (e->head_dim % 4)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, CFG ": vision head_dim %d is not a multiple "
                        "of 4 (2-D RoPE splits it into row and column halves)", (int)e->head_dim);
    int64_t tok;
    bool bias;
    double eps;
    if ((st = get_i32(root, "spatial_merge_size", 2, 64, &e->merge, CFG, err)) ||
        (st = tsr__json_int(root, "image_token_id", 10, 0, INT32_MAX, &tok, CFG, err)) ||
        (st = tsr__json_int(root, "image_token_index", tok, 0, INT32_MAX, &tok, CFG, err)) ||
        (st = tsr__json_string(root, "projector_hidden_act", "gelu", &pact, CFG, err)) ||
        (st = tsr__act_parse(pact, CFG " projector_hidden_act", &e->proj_act, err)) ||
        (st = tsr__json_bool(root, "multimodal_projector_bias", false, &bias, CFG, err)) ||
        (st = tsr__json_double(tc, "rms_norm_eps", tc ? 1e-6 : 1e-5, 0.0, 1.0, &eps,
                               CFG " text_config", err)) ||
        (st = feature_layer(root, e->n_layers, &e->n_run, err)))
        return st;
    e->image_token = tok;
    *proj_bias = bias;
    *proj_eps = (float)eps;
    return TSR_OK;
}

static tsr_status load(const tsr__model_configs *cfg, tsr__weights *w, int32_t text_dim,
                       void **out, tsr_error *err) {
    *out = NULL;
    m3_enc *e = tsr__calloc(1, sizeof *e);
    if (!e) return TSR_FAIL(err, TSR_ERR_OOM, "mistral3 encoder");
    double theta = 10000.0;
    float proj_eps = 1e-5f;
    int proj_bias = 0;
    tsr_status st = read_config(cfg, e, &theta, &proj_eps, &proj_bias, err);
    if (st) goto fail;
    e->text_dim = text_dim;
    int64_t D = e->dim, F = e->ffn, K = (int64_t)e->channels * e->patch * e->patch;
    int64_t MD = D * e->merge * e->merge;
    e->layers = tsr__calloc((size_t)e->n_layers, sizeof *e->layers);
    e->inv_freq = tsr__malloc((size_t)e->head_dim / 2 * sizeof *e->inv_freq);
    if (!e->layers || !e->inv_freq) {
        st = TSR_FAIL(err, TSR_ERR_OOM, "mistral3 encoder (%d layers)", (int)e->n_layers);
        goto fail;
    }
    /* PixtralVisionRotaryEmbedding: inv_freq = 1 / theta^(2i / head_dim) in f32, reordered as
     * the even entries (rows) then the odd ones (columns). */
    int32_t hd = e->head_dim, q4 = hd / 4;
    for (int32_t i = 0; i < hd / 2; i++) {
        float f = 1.0f / powf((float)theta, (float)(2 * i) / (float)hd);
        e->inv_freq[(i % 2) * q4 + i / 2] = f;
    }
    if ((st = tsr__linear_load(w, "vision_tower.patch_conv", K, D, 0, &e->patch_conv, err)) ||
        (st = tsr__norm_load(w, "vision_tower.ln_pre", TSR__RMSNORM, D, 1e-5f, &e->ln_pre, err)))
        goto fail;
    for (int32_t i = 0; i < e->n_layers; i++) {
        tsr__vit_block *L = &e->layers[i];
        L->dim = (int32_t)D;
        L->n_heads = e->n_heads;
        L->head_dim = e->head_dim;
        L->swiglu = 1;
        L->act = e->act;
        char p[96];
#define PFX(s) (snprintf(p, sizeof p, "vision_tower.transformer.layers.%d.%s", (int)i, s), p)
        if ((st = tsr__norm_load(w, PFX("attention_norm"), TSR__RMSNORM, D, 1e-5f, &L->norm1,
                                 err)) ||
            (st = tsr__linear_load(w, PFX("attention.q_proj"), D, D, 0, &L->q, err)) ||
            (st = tsr__linear_load(w, PFX("attention.k_proj"), D, D, 0, &L->k, err)) ||
            (st = tsr__linear_load(w, PFX("attention.v_proj"), D, D, 0, &L->v, err)) ||
            (st = tsr__linear_load(w, PFX("attention.o_proj"), D, D, 0, &L->o, err)) ||
            (st = tsr__norm_load(w, PFX("ffn_norm"), TSR__RMSNORM, D, 1e-5f, &L->norm2, err)) ||
            (st = tsr__linear_load(w, PFX("feed_forward.gate_proj"), D, F, 0, &L->gate, err)) ||
            (st = tsr__linear_load(w, PFX("feed_forward.up_proj"), D, F, 0, &L->fc1, err)) ||
            (st = tsr__linear_load(w, PFX("feed_forward.down_proj"), F, D, 0, &L->fc2, err)))
            goto fail;
#undef PFX
    }
    if ((st = tsr__norm_load(w, "multi_modal_projector.norm", TSR__RMSNORM, D, proj_eps,
                             &e->proj_norm, err)) ||
        (st = tsr__linear_load(w, "multi_modal_projector.patch_merger.merging_layer", MD, D, 0,
                               &e->merging, err)) ||
        (st = tsr__linear_load(w, "multi_modal_projector.linear_1", D, text_dim, proj_bias,
                               &e->linear_1, err)) ||
        (st = tsr__linear_load(w, "multi_modal_projector.linear_2", text_dim, text_dim, proj_bias,
                               &e->linear_2, err)))
        goto fail;
    *out = e;
    return TSR_OK;
fail:
    free_enc(e);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* Encoding                                                                             */
/* ---------------------------------------------------------------------------------- */

typedef struct m3_image {
    int64_t hp, wp; /* patch rows / columns of the image (image_sizes // patch) */
    int64_t start;  /* first patch in the sequence */
} m3_image;

/* pixel_values and image_sizes against each other and the model: SHAPE naming both. */
static tsr_status check_inputs(const m3_enc *e, const tsr_tensor *pv, const tsr_tensor *sz,
                               m3_image *im, int64_t *T, int64_t *M, tsr_error *err) {
    if (pv->ndim != 4 || pv->shape[1] != e->channels)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "pixel_values has %d dims (shape [%lld, %lld, ...]), "
                        "expected [n_images, %d, H, W]", (int)pv->ndim, (long long)pv->shape[0],
                        (long long)(pv->ndim > 1 ? pv->shape[1] : 0), (int)e->channels);
    int64_t n = pv->shape[0], H = pv->shape[2], W = pv->shape[3];
    if (sz->ndim != 2 || sz->shape[0] != n || sz->shape[1] != 2)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "image_sizes has shape [%lld, %lld] (%d dims), "
                        "pixel_values [%lld, %lld, %lld, %lld] needs [%lld, 2]",
                        (long long)sz->shape[0], (long long)(sz->ndim > 1 ? sz->shape[1] : 0),
                        (int)sz->ndim, (long long)n, (long long)pv->shape[1], (long long)H,
                        (long long)W, (long long)n);
    const int64_t *s = sz->data;
    int64_t t = 0, m = 0, mp = (int64_t)e->patch * e->merge;
    for (int64_t i = 0; i < n; i++) {
        int64_t h = s[2 * i], w = s[2 * i + 1];
        if (h < mp || w < mp || h > H || w > W)
            return TSR_FAIL(err, TSR_ERR_SHAPE, "image_sizes[%lld] = (%lld, %lld) does not fit "
                            "pixel_values [%lld, %lld, %lld, %lld] (each side must be in "
                            "[%lld, the padded side])", (long long)i, (long long)h, (long long)w,
                            (long long)n, (long long)pv->shape[1], (long long)H, (long long)W,
                            (long long)mp);
        im[i].hp = h / e->patch;
        im[i].wp = w / e->patch;
        im[i].start = t;
        t += im[i].hp * im[i].wp; /* bounded by the pixels of pixel_values */
        m += (im[i].hp / e->merge) * (im[i].wp / e->merge);
    }
    *T = t;
    *M = m;
    return TSR_OK;
}

typedef struct patch_job {
    const m3_enc *e;
    const float *pix; /* [n, C, H, W] */
    int64_t H, W;
    const m3_image *im;
    int64_t n_images;
    float *out; /* (T, C * p * p), columns in the conv kernel's (c, kh, kw) order */
    int64_t T;
} patch_job;

static void patch_part(void *arg, int32_t w, int32_t nw) {
    const patch_job *j = arg;
    const int64_t p = j->e->patch, C = j->e->channels, K = C * p * p;
    int64_t a, b;
    tsr__pool_split(j->T, 1, w, nw, &a, &b);
    int64_t img = 0;
    for (int64_t t = a; t < b; t++) {
        while (img + 1 < j->n_images && j->im[img + 1].start <= t) img++;
        const m3_image *m = &j->im[img];
        int64_t r = (t - m->start) / m->wp, c = (t - m->start) % m->wp;
        const float *base = j->pix + img * C * j->H * j->W + r * p * j->W + c * p;
        float *o = j->out + t * K;
        for (int64_t ch = 0; ch < C; ch++)
            for (int64_t y = 0; y < p; y++) {
                memcpy(o, base + ch * j->H * j->W + y * j->W, (size_t)p * sizeof *o);
                o += p;
            }
    }
}

typedef struct rope_job {
    const m3_enc *e;
    const m3_image *im;
    int64_t n_images, T;
    float *cos_, *sin_; /* (T, head_dim) */
} rope_job;

/* cos / sin of PixtralVisionRotaryEmbedding: for a patch at (row, col), the first quarter of
 * the angles is row * inv_freq[rows], the second col * inv_freq[cols], repeated for the
 * second half of the head. */
static void rope_part(void *arg, int32_t w, int32_t nw) {
    const rope_job *j = arg;
    const int32_t hd = j->e->head_dim, q4 = hd / 4;
    int64_t a, b;
    tsr__pool_split(j->T, 1, w, nw, &a, &b);
    int64_t img = 0;
    for (int64_t t = a; t < b; t++) {
        while (img + 1 < j->n_images && j->im[img + 1].start <= t) img++;
        const m3_image *m = &j->im[img];
        float pos[2] = {(float)((t - m->start) / m->wp), (float)((t - m->start) % m->wp)};
        float *c = j->cos_ + t * hd, *s = j->sin_ + t * hd;
        for (int32_t i = 0; i < hd / 2; i++) {
            float ang = pos[i / q4] * j->e->inv_freq[i];
            c[i] = c[i + hd / 2] = cosf(ang);
            s[i] = s[i + hd / 2] = sinf(ang);
        }
    }
}

typedef struct merge_job {
    const m3_enc *e;
    const float *x; /* (T, dim) */
    const m3_image *im;
    int64_t n_images, M;
    float *out; /* (M, dim * merge^2) */
} merge_job;

/* Mistral3PatchMerger: unfold(kernel = stride = merge) of each image's (hp, wp, dim) grid;
 * merged row (I, J) holds x[(I * m + ki) * wp + J * m + kj][c] at column c * m^2 + ki * m + kj,
 * rows in row-major (I, J) order, images in order. */
static void merge_part(void *arg, int32_t w, int32_t nw) {
    const merge_job *j = arg;
    const int64_t m = j->e->merge, D = j->e->dim, mm = m * m;
    int64_t a, b;
    tsr__pool_split(j->M, 1, w, nw, &a, &b);
    int64_t img = 0, first = 0; /* first merged row of image img */
    for (int64_t r = a; r < b; r++) {
        for (;;) {
            int64_t n = (j->im[img].hp / m) * (j->im[img].wp / m);
            if (r < first + n || img + 1 >= j->n_images) break;
            first += n;
            img++;
        }
        const m3_image *g = &j->im[img];
        int64_t cols = g->wp / m, I = (r - first) / cols, J = (r - first) % cols;
        float *o = j->out + r * D * mm;
        for (int64_t ki = 0; ki < m; ki++)
            for (int64_t kj = 0; kj < m; kj++) {
                const float *src = j->x + (g->start + (I * m + ki) * g->wp + J * m + kj) * D;
                for (int64_t c = 0; c < D; c++) o[c * mm + ki * m + kj] = src[c];
            }
    }
}

/* One allocation of n_parts buffers of rows[i] * cols[i] floats (parts[i] points at each);
 * NULL on size overflow or OOM. */
static float *alloc_floats(size_t n_parts, const int64_t *rows, const int64_t *cols,
                           float **parts) {
    size_t total = 0;
    for (size_t i = 0; i < n_parts; i++) {
        size_t sz;
        if (!tsr__mul_size((size_t)rows[i], (size_t)cols[i], &sz) || total + sz < total)
            return NULL;
        total += sz;
    }
    if (total > SIZE_MAX / sizeof(float)) return NULL;
    float *buf = tsr__malloc((total ? total : 1) * sizeof(float));
    if (!buf) return NULL;
    size_t off = 0;
    for (size_t i = 0; i < n_parts; i++) {
        parts[i] = buf + off;
        off += (size_t)rows[i] * (size_t)cols[i];
    }
    return buf;
}

static tsr_status encode(const void *enc, tsr__pool *pool, const tsr_tensor_list *inputs,
                         tsr_tensor_list *out, double *image_ms, double *audio_ms,
                         tsr_error *err) {
    (void)audio_ms;
    const m3_enc *e = enc;
    const double t0 = tsr__now_ms();
    const int64_t *ids;
    int64_t n_ids;
    const tsr_tensor *pv, *sz;
    tsr_status st;
    if ((st = tsr__input_ids(inputs, &ids, &n_ids, err)) ||
        (st = tsr__input_get(inputs, "pixel_values", TSR_DTYPE_F32, &pv, err)) ||
        (st = tsr__input_get(inputs, "image_sizes", TSR_DTYPE_I64, &sz, err)))
        return st;
    if (pv->ndim < 1 || pv->shape[0] < 1)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "pixel_values holds no image (%d dims)",
                        (int)pv->ndim);
    const int64_t n_images = pv->shape[0];
    m3_image *im = tsr__calloc((size_t)n_images, sizeof *im);
    if (!im) return TSR_FAIL(err, TSR_ERR_OOM, "%lld images", (long long)n_images);
    int64_t T = 0, M = 0;
    if ((st = check_inputs(e, pv, sz, im, &T, &M, err))) {
        tsr__free(im);
        return st;
    }
    /* The placeholders must match before the tower runs (tsr__encoded_by_token checks again). */
    int64_t n_tok = 0;
    for (int64_t i = 0; i < n_ids; i++) n_tok += ids[i] == e->image_token;
    if (n_tok != M) {
        tsr__free(im);
        return TSR_FAIL(err, TSR_ERR_SHAPE, "input_ids hold %lld image tokens (id %lld), the "
                        "%lld images of image_sizes give %lld rows", (long long)n_tok,
                        (long long)e->image_token, (long long)n_images, (long long)M);
    }
    const int64_t D = e->dim, hd = e->head_dim;
    const int64_t K = (int64_t)e->channels * e->patch * e->patch;
    /* The patch buffer (T, K) later holds the merged rows (M, dim * merge^2): M * merge^2 <= T. */
    const int64_t KM = K > D ? K : D;
    /* x, patches/merged, cos, sin, the layers' scratch, merged out, linear_1 out */
    int64_t rows[] = {T, T, T, T, T, M, M};
    int64_t cols[] = {D, KM, hd, hd, (int64_t)tsr__vit_block_scratch(&e->layers[0], 1), D,
                      e->text_dim};
    float *part[7];
    float *buf = alloc_floats(7, rows, cols, part);
    int64_t *seg = tsr__malloc((size_t)(n_images + 1) * sizeof *seg);
    tsr_tensor emb = {0};
    int64_t eshape[2] = {M, e->text_dim};
    if (!buf || !seg) {
        st = TSR_FAIL(err, TSR_ERR_OOM, "mistral3 encoder scratch (%lld patches)", (long long)T);
        goto done;
    }
    if ((st = tsr_tensor_alloc(&emb, TSR_DTYPE_F32, 2, eshape, err))) goto done;
    float *x = part[0], *patches = part[1], *cos_ = part[2], *sin_ = part[3];

    patch_job pj = {e, pv->data, pv->shape[2], pv->shape[3], im, n_images, patches, T};
    tsr__pool_run(pool, patch_part, &pj);
    tsr__linear_run(pool, &e->patch_conv, x, patches, T);
    tsr__norm_apply(pool, &e->ln_pre, x, x, T);
    rope_job rj = {e, im, n_images, T, cos_, sin_};
    tsr__pool_run(pool, rope_part, &rj);
    for (int64_t i = 0; i < n_images; i++) seg[i] = im[i].start;
    seg[n_images] = T;
    tsr__vit_opts o = {cos_, sin_, {seg, n_images, NULL, NULL}, 0.0f, part[4]};
    for (int32_t l = 0; l < e->n_run && !st; l++)
        st = tsr__vit_block_run(pool, &e->layers[l], x, T, &o, err);
    if (st) goto done;

    tsr__norm_apply(pool, &e->proj_norm, x, x, T);
    merge_job mj = {e, x, im, n_images, M, patches};
    tsr__pool_run(pool, merge_part, &mj);
    tsr__linear_run(pool, &e->merging, part[5], patches, M);
    tsr__linear_run(pool, &e->linear_1, part[6], part[5], M);
    tsr__act_apply(pool, e->proj_act, part[6], M * e->text_dim);
    tsr__linear_run(pool, &e->linear_2, emb.data, part[6], M);
    st = tsr__encoded_by_token(out, ids, n_ids, e->image_token, &emb, err);
done:
    tsr_tensor_free(&emb);
    tsr__free(buf);
    tsr__free(seg);
    tsr__free(im);
    if (image_ms) *image_ms += tsr__now_ms() - t0;
    return st;
}

static const char *const prefixes[] = {"vision_tower.", "multi_modal_projector.", NULL};
/* transformers 5's in-memory names (written by save_pretrained of some 5.x versions). */
static const char *const aliases[] = {"model.vision_tower.", "vision_tower.",
                                      "model.multi_modal_projector.", "multi_modal_projector.",
                                      NULL};
const tsr__encoder_ops tsr__mistral3_encoder = {"mistral3", prefixes, aliases, load, free_enc,
                                                encode, NULL};
