/*
 * Qwen2-VL / Qwen2.5-VL vision encoder and connector (transformers
 * Qwen2VisionTransformerPretrainedModel / Qwen2_5_VisionTransformerPretrainedModel) and the
 * M-RoPE positions of the prompt (Qwen2VLModel.get_rope_index).
 *
 *   x   = pixel_values (N, C*T*P*P) @ patch_embed.proj^T        Conv3d with kernel == stride
 *   2-D rotary embedding of each patch's (h, w) in the merge-block order of the processor
 *   Qwen2-VL:   depth x [LayerNorm, fused qkv attention, LayerNorm, fc1-act-fc2]
 *   Qwen2.5-VL: the merge units (m*m consecutive patches) reordered window by window
 *               (get_vision_window_index); depth x [RMSNorm, attention inside each window or,
 *               for fullatt_block_indexes, inside each image; RMSNorm, SwiGLU with bias]
 *   attention never crosses images (or frames): cu_seqlens from image_grid_thw
 *   merger: ln_q, then the m*m patches of each merge unit as one row: Linear-GELU-Linear
 *   Qwen2.5-VL: merged rows back in the original order
 *
 * Outputs (vision/encoder.h): "embeds" (rows replace the image_token_id tokens),
 * "embed_spans", "position_ids" I64 [3, n_ids].
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../encoder.h"
#include "tessera_json.h"

#define CFG "config.json"
#define VCFG "config.json vision_config"

typedef struct qwen_enc {
    int v25;                       /* Qwen2.5-VL */
    int64_t dim, n_heads, head_dim, depth, ffn;
    int64_t in_ch, patch, temporal, merge, out_dim;
    int64_t cols;                  /* in_ch * temporal * patch * patch */
    int64_t window;                /* 2.5: window side in merge units */
    int64_t image_id, video_id;
    float inv_freq[256];           /* head_dim / 4 rotary frequencies */
    tsr__linear patch_embed;       /* (dim, cols), no bias */
    tsr__vit_block *blocks;        /* (depth) */
    uint8_t *full;                 /* (depth) 2.5: 1 = attention over the whole image */
    tsr__norm ln_q;
    tsr__linear mlp0, mlp2;        /* (dim*m*m -> dim*m*m), (dim*m*m -> out_dim) */
} qwen_enc;

static void free_enc(void *p) {
    qwen_enc *e = p;
    if (!e) return;
    tsr__free(e->blocks);
    tsr__free(e->full);
    tsr__free(e);
}

/* vision_config.rope_parameters.rope_theta (transformers 5), else a top-level rope_theta,
 * else 10000 (the axial vision rope's default). */
static tsr_status rope_theta(const cJSON *vc, double *theta, tsr_error *err) {
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(vc, "rope_parameters");
    tsr_status s = tsr__json_double(vc, "rope_theta", 10000.0, 1e-6, 1e30, theta, VCFG, err);
    if (s || !rp || cJSON_IsNull(rp)) return s;
    if (!cJSON_IsObject(rp))
        return TSR_FAIL(err, TSR_ERR_FORMAT, VCFG ": \"rope_parameters\" must be an object");
    const char *type = NULL;
    if ((s = tsr__json_string(rp, "rope_type", "axial", &type, VCFG " rope_parameters", err)))
        return s;
    if (strcmp(type, "axial"))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, VCFG ": rope_type \"%s\" (only \"axial\")",
                        type);
    return tsr__json_double(rp, "rope_theta", *theta, 1e-6, 1e30, theta,
                            VCFG " rope_parameters", err);
}

static tsr_status load_config(qwen_enc *e, const cJSON *root, int32_t text_dim, tsr_error *err) {
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    if (!cJSON_IsObject(vc))
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": \"vision_config\" is missing or not an object");
    const int64_t big = 1 << 20;
    tsr_status s;
    if ((s = tsr__json_int(root, "image_token_id", 151655, 0, INT32_MAX, &e->image_id, CFG, err)) ||
        (s = tsr__json_int(root, "video_token_id", 151656, 0, INT32_MAX, &e->video_id, CFG, err)) ||
        (s = tsr__json_int(vc, "depth", 32, 1, 4096, &e->depth, VCFG, err)) ||
        (s = tsr__json_int(vc, "num_heads", 16, 1, 4096, &e->n_heads, VCFG, err)) ||
        (s = tsr__json_int(vc, "in_channels", 3, 1, 64, &e->in_ch, VCFG, err)) ||
        (s = tsr__json_int(vc, "patch_size", 14, 1, 1024, &e->patch, VCFG, err)) ||
        (s = tsr__json_int(vc, "temporal_patch_size", 2, 1, 64, &e->temporal, VCFG, err)) ||
        (s = tsr__json_int(vc, "spatial_merge_size", 2, 1, 64, &e->merge, VCFG, err)))
        return s;
    const char *act = NULL;
    if (!e->v25) {
        double ratio = 4;
        if ((s = tsr__json_int(vc, "embed_dim", 1280, 1, big, &e->dim, VCFG, err)) ||
            (s = tsr__json_int(vc, "hidden_size", 3584, 1, big, &e->out_dim, VCFG, err)) ||
            (s = tsr__json_double(vc, "mlp_ratio", 4, 1e-3, 1024, &ratio, VCFG, err)) ||
            (s = tsr__json_string(vc, "hidden_act", "quick_gelu", &act, VCFG, err)))
            return s;
        e->ffn = (int64_t)((double)e->dim * ratio); /* int(embed_dim * mlp_ratio) */
    } else {
        int64_t wsz;
        if ((s = tsr__json_int(vc, "hidden_size", 3584, 1, big, &e->dim, VCFG, err)) ||
            (s = tsr__json_int(vc, "out_hidden_size", 3584, 1, big, &e->out_dim, VCFG, err)) ||
            (s = tsr__json_int(vc, "intermediate_size", 3420, 1, big, &e->ffn, VCFG, err)) ||
            (s = tsr__json_int(vc, "window_size", 112, 1, big, &wsz, VCFG, err)) ||
            (s = tsr__json_string(vc, "hidden_act", "silu", &act, VCFG, err)))
            return s;
        e->window = wsz / e->merge / e->patch;
        if (e->window < 1)
            return TSR_FAIL(err, TSR_ERR_FORMAT, VCFG ": window_size %lld is smaller than "
                            "spatial_merge_size * patch_size = %lld", (long long)wsz,
                            (long long)(e->merge * e->patch));
    }
    if (e->ffn < 1)
        return TSR_FAIL(err, TSR_ERR_FORMAT, VCFG ": the MLP width is %lld", (long long)e->ffn);
    tsr__act a;
    if ((s = tsr__act_parse(act, VCFG " hidden_act", &a, err))) return s;
    if (e->dim % e->n_heads)
        return TSR_FAIL(err, TSR_ERR_FORMAT, VCFG ": width %lld is not a multiple of num_heads "
                        "%lld", (long long)e->dim, (long long)e->n_heads);
    e->head_dim = e->dim / e->n_heads;
    if (e->head_dim % 4 || e->head_dim / 4 > (int64_t)(sizeof e->inv_freq / sizeof e->inv_freq[0]))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, VCFG ": head dim %lld (the 2-D rotary "
                        "embedding needs a multiple of 4, at most 1024)", (long long)e->head_dim);
    if (e->out_dim != text_dim)
        return TSR_FAIL(err, TSR_ERR_SHAPE, VCFG ": the merger gives %lld features, the text "
                        "decoder's hidden size is %d", (long long)e->out_dim, (int)text_dim);
    if (!tsr__mul_i64(e->in_ch * e->temporal, e->patch * e->patch, &e->cols) ||
        e->cols > big * 16)
        return TSR_FAIL(err, TSR_ERR_FORMAT, VCFG ": patch of %lld x %lld x %lld x %lld values "
                        "is too large", (long long)e->in_ch, (long long)e->temporal,
                        (long long)e->patch, (long long)e->patch);
    double theta;
    if ((s = rope_theta(vc, &theta, err))) return s;
    /* inv_freq = 1 / theta^(arange(0, d, 2) / d) with d = head_dim / 2, in float32. */
    const int64_t sd = e->head_dim / 2;
    for (int64_t i = 0; i < sd / 2; i++)
        e->inv_freq[i] = (float)(1.0 / pow(theta, (double)((float)(2 * i) / (float)sd)));

    e->blocks = tsr__calloc((size_t)e->depth, sizeof *e->blocks);
    e->full = tsr__calloc((size_t)e->depth, 1);
    if (!e->blocks || !e->full) return TSR_FAIL(err, TSR_ERR_OOM, "vision blocks");
    for (int64_t i = 0; i < e->depth; i++) e->blocks[i].act = a;
    if (e->v25) {
        const cJSON *fa = cJSON_GetObjectItemCaseSensitive(vc, "fullatt_block_indexes");
        if (!fa || cJSON_IsNull(fa)) {
            static const int64_t dflt[] = {7, 15, 23, 31};
            for (size_t i = 0; i < 4; i++)
                if (dflt[i] < e->depth) e->full[dflt[i]] = 1;
        } else if (!cJSON_IsArray(fa)) {
            return TSR_FAIL(err, TSR_ERR_FORMAT, VCFG ": \"fullatt_block_indexes\" must be an "
                            "array of integers");
        } else {
            const cJSON *it;
            cJSON_ArrayForEach(it, fa) {
                if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble))
                    return TSR_FAIL(err, TSR_ERR_FORMAT, VCFG ": \"fullatt_block_indexes\" must "
                                    "be an array of integers");
                /* Indexes past the depth never match a layer, as in transformers. */
                if (it->valuedouble >= 0 && it->valuedouble < (double)e->depth)
                    e->full[(int64_t)it->valuedouble] = 1;
            }
        }
    }
    return TSR_OK;
}

static tsr_status load_weights(qwen_enc *e, tsr__weights *w, tsr_error *err) {
    const tsr__norm_kind nk = e->v25 ? TSR__RMSNORM : TSR__LAYERNORM;
    const int64_t D = e->dim, M = e->dim * e->merge * e->merge;
    char pre[96];
    tsr_status s = tsr__linear_load(w, "visual.patch_embed.proj", e->cols, D, 0, &e->patch_embed, err);
    for (int64_t i = 0; !s && i < e->depth; i++) {
        tsr__vit_block *b = &e->blocks[i];
        b->dim = (int32_t)D;
        b->n_heads = (int32_t)e->n_heads;
        b->head_dim = (int32_t)e->head_dim;
        b->fused_qkv = 1;
        b->swiglu = e->v25;
#define P(fmt) (snprintf(pre, sizeof pre, "visual.blocks.%lld." fmt, (long long)i), pre)
        if ((s = tsr__norm_load(w, P("norm1"), nk, D, 1e-6f, &b->norm1, err)) ||
            (s = tsr__norm_load(w, P("norm2"), nk, D, 1e-6f, &b->norm2, err)) ||
            (s = tsr__linear_load(w, P("attn.qkv"), D, 3 * D, 1, &b->qkv, err)) ||
            (s = tsr__linear_load(w, P("attn.proj"), D, D, 1, &b->o, err)))
            break;
        if (e->v25) {
            if ((s = tsr__linear_load(w, P("mlp.gate_proj"), D, e->ffn, 1, &b->gate, err)) ||
                (s = tsr__linear_load(w, P("mlp.up_proj"), D, e->ffn, 1, &b->fc1, err)) ||
                (s = tsr__linear_load(w, P("mlp.down_proj"), e->ffn, D, 1, &b->fc2, err)))
                break;
        } else {
            if ((s = tsr__linear_load(w, P("mlp.fc1"), D, e->ffn, 1, &b->fc1, err)) ||
                (s = tsr__linear_load(w, P("mlp.fc2"), e->ffn, D, 1, &b->fc2, err)))
                break;
        }
#undef P
    }
    if (!s) s = tsr__norm_load(w, "visual.merger.ln_q", nk, D, 1e-6f, &e->ln_q, err);
    if (!s) s = tsr__linear_load(w, "visual.merger.mlp.0", M, M, 1, &e->mlp0, err);
    if (!s) s = tsr__linear_load(w, "visual.merger.mlp.2", M, e->out_dim, 1, &e->mlp2, err);
    return s;
}

static tsr_status load_common(int v25, const tsr__model_configs *cfg, tsr__weights *w,
                              int32_t text_dim, void **out, tsr_error *err) {
    *out = NULL;
    if (!cfg || !cfg->config)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: no config.json", v25 ? "qwen2_5_vl" : "qwen2_vl");
    qwen_enc *e = tsr__calloc(1, sizeof *e);
    if (!e) return TSR_FAIL(err, TSR_ERR_OOM, "vision encoder");
    e->v25 = v25;
    tsr_status s = load_config(e, cfg->config, text_dim, err);
    if (!s) s = load_weights(e, w, err);
    if (s) {
        free_enc(e);
        return s;
    }
    *out = e;
    return TSR_OK;
}

static tsr_status load_qwen2(const tsr__model_configs *cfg, tsr__weights *w, int32_t text_dim,
                             void **enc, tsr_error *err) {
    return load_common(0, cfg, w, text_dim, enc, err);
}

static tsr_status load_qwen25(const tsr__model_configs *cfg, tsr__weights *w, int32_t text_dim,
                              void **enc, tsr_error *err) {
    return load_common(1, cfg, w, text_dim, enc, err);
}

/* ---------------------------------------------------------------------------------- */
/* Geometry                                                                             */
/* ---------------------------------------------------------------------------------- */

/* The checked image_grid_thw: n images of (t, h, w) patches; N = sum t*h*w. */
typedef struct grid {
    const int64_t *thw;
    int64_t n, patches;
} grid;

static tsr_status check_inputs(const qwen_enc *e, const tsr_tensor *pv, const tsr_tensor *g,
                               grid *out, tsr_error *err) {
    if (g->ndim != 2 || g->shape[1] != 3 || g->shape[0] < 1)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "image_grid_thw has %d dims [%lld, %lld], expected "
                        "[n_images, 3]", (int)g->ndim, (long long)(g->ndim > 0 ? g->shape[0] : 0),
                        (long long)(g->ndim > 1 ? g->shape[1] : 0));
    if (pv->ndim != 2 || pv->shape[1] != e->cols)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "pixel_values has %d dims [%lld, %lld], expected "
                        "[patches, %lld] (channels %lld x temporal %lld x patch %lld x %lld)",
                        (int)pv->ndim, (long long)(pv->ndim > 0 ? pv->shape[0] : 0),
                        (long long)(pv->ndim > 1 ? pv->shape[1] : 0), (long long)e->cols,
                        (long long)e->in_ch, (long long)e->temporal, (long long)e->patch,
                        (long long)e->patch);
    const int64_t *thw = g->data, lim = (int64_t)1 << 20;
    int64_t total = 0;
    for (int64_t i = 0; i < g->shape[0]; i++) {
        int64_t t = thw[3 * i], h = thw[3 * i + 1], w = thw[3 * i + 2];
        if (t < 1 || h < 1 || w < 1 || t > lim || h > lim || w > lim || h % e->merge ||
            w % e->merge)
            return TSR_FAIL(err, TSR_ERR_SHAPE, "image_grid_thw[%lld] = (%lld, %lld, %lld): each "
                            "in [1, %lld], h and w multiples of spatial_merge_size %lld",
                            (long long)i, (long long)t, (long long)h, (long long)w,
                            (long long)lim, (long long)e->merge);
        int64_t n;
        if (!tsr__mul_i64(t * h, w, &n) || total > INT64_MAX / 2 - n)
            return TSR_FAIL(err, TSR_ERR_LIMIT, "image_grid_thw: too many patches");
        total += n;
    }
    if (total != pv->shape[0])
        return TSR_FAIL(err, TSR_ERR_SHAPE, "pixel_values has shape [%lld, %lld] but "
                        "image_grid_thw [%lld, 3] gives %lld patches (sum of t*h*w)",
                        (long long)pv->shape[0], (long long)pv->shape[1], (long long)g->shape[0],
                        (long long)total);
    out->thw = thw;
    out->n = g->shape[0];
    out->patches = total;
    return TSR_OK;
}

/* get_rope_index for one prompt: text tokens count up by one; each run of image tokens takes
 * the next image, its (t, h, w) merged grid offset by the position reached, and moves it on by
 * max(h, w) / merge. pos (3, n). */
static tsr_status rope_index(const qwen_enc *e, const int64_t *ids, int64_t n, const grid *g,
                             int64_t *pos, tsr_error *err) {
    int64_t cur = 0, img = 0;
    for (int64_t i = 0; i < n;) {
        if (ids[i] == e->video_id)
            return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "input_ids[%lld] is the video token (id "
                            "%lld): video input is not supported", (long long)i,
                            (long long)e->video_id);
        if (ids[i] != e->image_id) {
            pos[i] = pos[n + i] = pos[2 * n + i] = cur++;
            i++;
            continue;
        }
        int64_t j = i;
        while (j < n && ids[j] == e->image_id) j++;
        if (img == g->n)
            return TSR_FAIL(err, TSR_ERR_SHAPE, "input_ids has more image placeholder runs than "
                            "the %lld images of image_grid_thw (run at %lld)", (long long)g->n,
                            (long long)i);
        const int64_t t = g->thw[3 * img], lh = g->thw[3 * img + 1] / e->merge,
                      lw = g->thw[3 * img + 2] / e->merge;
        if (j - i != t * lh * lw)
            return TSR_FAIL(err, TSR_ERR_SHAPE, "image %lld: %lld placeholder tokens at "
                            "input_ids[%lld], its grid (%lld, %lld, %lld) needs %lld",
                            (long long)img, (long long)(j - i), (long long)i, (long long)t,
                            (long long)(lh * e->merge), (long long)(lw * e->merge),
                            (long long)(t * lh * lw));
        int64_t k = i;
        for (int64_t f = 0; f < t; f++)
            for (int64_t r = 0; r < lh; r++)
                for (int64_t c = 0; c < lw; c++, k++) {
                    pos[k] = cur + f;
                    pos[n + k] = cur + r;
                    pos[2 * n + k] = cur + c;
                }
        cur += lh > lw ? lh : lw;
        img++;
        i = j;
    }
    if (img != g->n)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "image_grid_thw has %lld images but input_ids has "
                        "%lld image placeholder runs", (long long)g->n, (long long)img);
    return TSR_OK;
}

/* Per patch row, its (h, w) patch coordinates (get_vision_position_ids order); per image
 * frame a segment of cu_seqlens. Qwen2.5-VL also: perm[u] = the merge unit placed at u by
 * get_vision_window_index, and the window segments (empty windows left out). */
typedef struct layout {
    int32_t *ph, *pw;   /* (N) */
    int64_t *seg, n_seg; /* (n_seg + 1) */
    int64_t *perm;      /* (N / m^2), 2.5 */
    int64_t *wseg, n_wseg;
} layout;

static void layout_free(layout *L) {
    tsr__free(L->ph);
    tsr__free(L->pw);
    tsr__free(L->seg);
    tsr__free(L->perm);
    tsr__free(L->wseg);
}

static tsr_status make_layout(const qwen_enc *e, const grid *g, layout *L, tsr_error *err) {
    const int64_t m = e->merge, mm = m * m, N = g->patches, U = N / mm;
    int64_t frames = 0, windows = 0;
    for (int64_t i = 0; i < g->n; i++) {
        frames += g->thw[3 * i];
        if (e->v25) {
            int64_t lh = g->thw[3 * i + 1] / m, lw = g->thw[3 * i + 2] / m;
            windows += g->thw[3 * i] * ((lh + e->window - 1) / e->window) *
                       ((lw + e->window - 1) / e->window);
        }
    }
    L->ph = tsr__malloc((size_t)N * sizeof *L->ph);
    L->pw = tsr__malloc((size_t)N * sizeof *L->pw);
    L->seg = tsr__malloc((size_t)(frames + 1) * sizeof *L->seg);
    if (e->v25) {
        L->perm = tsr__malloc((size_t)(U ? U : 1) * sizeof *L->perm);
        L->wseg = tsr__malloc((size_t)(windows + 1) * sizeof *L->wseg);
    }
    if (!L->ph || !L->pw || !L->seg || (e->v25 && (!L->perm || !L->wseg)))
        return TSR_FAIL(err, TSR_ERR_OOM, "vision layout (%lld patches)", (long long)N);
    int64_t row = 0, u0 = 0, u = 0;
    L->seg[0] = 0;
    if (e->v25) L->wseg[0] = 0;
    for (int64_t i = 0; i < g->n; i++) {
        const int64_t t = g->thw[3 * i], h = g->thw[3 * i + 1], w = g->thw[3 * i + 2];
        const int64_t lh = h / m, lw = w / m;
        for (int64_t f = 0; f < t; f++) {
            for (int64_t bh = 0; bh < lh; bh++)
                for (int64_t bw = 0; bw < lw; bw++)
                    for (int64_t a = 0; a < m; a++)
                        for (int64_t b = 0; b < m; b++, row++) {
                            L->ph[row] = (int32_t)(bh * m + a);
                            L->pw[row] = (int32_t)(bw * m + b);
                        }
            L->seg[++L->n_seg] = row;
            if (!e->v25) continue;
            /* Windows of window x window merge units, row-major; units row-major inside. */
            const int64_t ws = e->window, base = u0 + f * lh * lw;
            for (int64_t wy = 0; wy < lh; wy += ws)
                for (int64_t wx = 0; wx < lw; wx += ws) {
                    int64_t y1 = wy + ws < lh ? wy + ws : lh, x1 = wx + ws < lw ? wx + ws : lw;
                    for (int64_t y = wy; y < y1; y++)
                        for (int64_t x = wx; x < x1; x++) L->perm[u++] = base + y * lw + x;
                    L->wseg[L->n_wseg + 1] = L->wseg[L->n_wseg] + (y1 - wy) * (x1 - wx) * mm;
                    L->n_wseg++;
                }
        }
        u0 += t * lh * lw;
    }
    return TSR_OK;
}

/* cos / sin (N, head_dim) of patch rows in the given order: [h freqs | w freqs] twice. */
static void rotary(const qwen_enc *e, const layout *L, int64_t N, float *cs, float *sn) {
    const int64_t hd = e->head_dim, q = hd / 4, mm = e->merge * e->merge;
    for (int64_t r = 0; r < N; r++) {
        /* Row r of the (possibly window-ordered) sequence comes from patch src. */
        const int64_t src = L->perm ? L->perm[r / mm] * mm + r % mm : r;
        float *c = cs + r * hd, *s = sn + r * hd;
        for (int64_t j = 0; j < q; j++) {
            float fh = (float)L->ph[src] * e->inv_freq[j], fw = (float)L->pw[src] * e->inv_freq[j];
            c[j] = c[j + 2 * q] = cosf(fh);
            s[j] = s[j + 2 * q] = sinf(fh);
            c[j + q] = c[j + 3 * q] = cosf(fw);
            s[j + q] = s[j + 3 * q] = sinf(fw);
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* Forward                                                                              */
/* ---------------------------------------------------------------------------------- */

/* x (N, dim) after the patch embedding -> out (N / m^2, out_dim). */
static tsr_status vision_forward(const qwen_enc *e, tsr__pool *pool, const layout *L,
                                 float *x, int64_t N, float *out, tsr_error *err) {
    const int64_t D = e->dim, mm = e->merge * e->merge, U = N / mm, M = D * mm;
    /* rotary tables (2 head_dim per patch), the blocks' scratch (which the window reorder
     * and the merger's hidden rows reuse), the merged rows in window order */
    size_t blk = tsr__vit_block_scratch(&e->blocks[0], N), rot = 0, total = 0, mrg = 0;
    if (blk == SIZE_MAX || !tsr__mul_size((size_t)(2 * e->head_dim), (size_t)N, &rot) ||
        !tsr__mul_size((size_t)U, (size_t)e->out_dim, &mrg) ||
        !tsr__add_size(rot + blk, mrg, &total) || total > SIZE_MAX / sizeof(float))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "vision activations of %lld patches", (long long)N);
    float *buf = tsr__malloc(total * sizeof *buf);
    if (!buf)
        return TSR_FAIL(err, TSR_ERR_OOM, "vision activations (%lld patches)", (long long)N);
    float *cs = buf, *sn = cs + N * e->head_dim, *scratch = sn + N * e->head_dim;
    float *merged = scratch + blk;
    tsr_status s = TSR_OK;
    if (L->perm) { /* window order: unit u takes unit perm[u] */
        for (int64_t u = 0; u < U; u++)
            memcpy(scratch + u * M, x + L->perm[u] * M, (size_t)M * sizeof *x);
        memcpy(x, scratch, (size_t)N * (size_t)D * sizeof *x);
    }
    rotary(e, L, N, cs, sn);
    for (int64_t b = 0; b < e->depth && !s; b++) {
        int full = !L->perm || e->full[b];
        tsr__vit_opts o = {cs, sn, {full ? L->seg : L->wseg, full ? L->n_seg : L->n_wseg, NULL,
                                    NULL}, 0.0f, scratch};
        s = tsr__vit_block_run(pool, &e->blocks[b], x, N, &o, err);
    }
    if (!s) {
        /* Merger: ln_q per patch, then each unit's m*m patches as one row of M. */
        float *h1 = scratch;
        tsr__norm_apply(pool, &e->ln_q, x, x, N);
        tsr__linear_run(pool, &e->mlp0, h1, x, U);
        tsr__act_apply(pool, TSR__ACT_GELU, h1, U * M);
        if (L->perm) {
            tsr__linear_run(pool, &e->mlp2, merged, h1, U);
            for (int64_t u = 0; u < U; u++)
                memcpy(out + L->perm[u] * e->out_dim, merged + u * e->out_dim,
                       (size_t)e->out_dim * sizeof *out);
        } else {
            tsr__linear_run(pool, &e->mlp2, out, h1, U);
        }
    }
    tsr__free(buf);
    return s;
}

static tsr_status encode(const void *enc, tsr__pool *pool, const tsr_tensor_list *inputs,
                         tsr_tensor_list *out, double *image_ms, double *audio_ms,
                         tsr_error *err) {
    const qwen_enc *e = enc;
    (void)audio_ms;
    const double t0 = tsr__now_ms();
    if (tsr_tensor_list_get(inputs, "pixel_values_videos") ||
        tsr_tensor_list_get(inputs, "video_grid_thw"))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "%s: video input (pixel_values_videos) is not "
                        "supported", e->v25 ? "qwen2_5_vl" : "qwen2_vl");
    const int64_t *ids;
    int64_t n_ids;
    const tsr_tensor *pv, *gt;
    tsr_status s;
    if ((s = tsr__input_ids(inputs, &ids, &n_ids, err)) ||
        (s = tsr__input_get(inputs, "pixel_values", TSR_DTYPE_F32, &pv, err)) ||
        (s = tsr__input_get(inputs, "image_grid_thw", TSR_DTYPE_I64, &gt, err)))
        return s;
    grid g = {0};
    if ((s = check_inputs(e, pv, gt, &g, err))) return s;

    tsr_tensor pos = {0}, emb = {0};
    layout L = {0};
    float *x = NULL;
    int64_t shp[2] = {3, n_ids};
    if ((s = tsr_tensor_alloc(&pos, TSR_DTYPE_I64, 2, shp, err)) ||
        (s = rope_index(e, ids, n_ids, &g, pos.data, err)))
        goto done;
    const int64_t N = g.patches, U = N / (e->merge * e->merge);
    size_t nx;
    if (!tsr__mul_size((size_t)N, (size_t)e->dim, &nx)) {
        s = TSR_FAIL(err, TSR_ERR_LIMIT, "%lld patches", (long long)N);
        goto done;
    }
    shp[0] = U;
    shp[1] = e->out_dim;
    if ((s = tsr_tensor_alloc(&emb, TSR_DTYPE_F32, 2, shp, err)) ||
        (s = make_layout(e, &g, &L, err)))
        goto done;
    if (!(x = tsr__malloc(nx * sizeof *x))) {
        s = TSR_FAIL(err, TSR_ERR_OOM, "patch embeddings (%lld patches)", (long long)N);
        goto done;
    }
    tsr__linear_run(pool, &e->patch_embed, x, pv->data, N);
    if ((s = vision_forward(e, pool, &L, x, N, emb.data, err))) goto done;
    if ((s = tsr__encoded_by_token(out, ids, n_ids, e->image_id, &emb, err)) ||
        (s = tsr_tensor_list_add(out, "position_ids", &pos, err)))
        goto done;
    if (image_ms) *image_ms += tsr__now_ms() - t0;
done:
    tsr__free(x);
    layout_free(&L);
    tsr_tensor_free(&emb);
    tsr_tensor_free(&pos);
    return s;
}

static const char *const prefixes[] = {"visual.", NULL};
/* transformers 5 save_pretrained writes the tower as model.visual.*. */
static const char *const aliases[] = {"model.visual.", "visual.", NULL};
const tsr__encoder_ops tsr__qwen2_vl_encoder = {"qwen2_vl", prefixes, aliases, load_qwen2,
                                                free_enc, encode, NULL};
const tsr__encoder_ops tsr__qwen2_5_vl_encoder = {"qwen2_5_vl", prefixes, aliases, load_qwen25,
                                                  free_enc, encode, NULL};
