/*
 * vision/llava_next/clip.c - the CLIP vision transformer (clip.h). All tiles of a call go
 * through the shared encoder blocks together (one matmul per projection over every token),
 * attention stays within each tile (block-diagonal segments).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "clip.h"
#include "tessera_json.h"

#define VC "config.json vision_config"

void tsr__clip_free(tsr__clip *c) {
    if (!c) return;
    tsr__free(c->layers);
    memset(c, 0, sizeof *c);
}

int64_t tsr__clip_tokens(const tsr__clip *c) { return 1 + (int64_t)c->grid * c->grid; }

static tsr_status read_config(const cJSON *vc, int llava_defaults, tsr__clip *c, tsr_error *err) {
    /* CLIPVisionConfig defaults, or LlavaNextConfig's when vision_config is absent. */
    const int64_t d_dim = llava_defaults ? 1024 : 768, d_inter = llava_defaults ? 4096 : 3072;
    const int64_t d_layers = llava_defaults ? 24 : 12, d_heads = llava_defaults ? 16 : 12;
    const int64_t d_size = llava_defaults ? 336 : 224, d_patch = llava_defaults ? 14 : 32;
    int64_t dim, inter, layers, heads, chans, size, patch;
    double eps;
    const char *mt = NULL, *act = NULL;
    tsr_status s;
    if ((s = tsr__json_string(vc, "model_type", "clip_vision_model", &mt, VC, err))) return s;
    if (strcmp(mt, "clip_vision_model"))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, VC ": model_type \"%s\": the LLaVA-NeXT vision "
                        "tower is implemented for clip_vision_model", mt);
    const cJSON *is = vc ? cJSON_GetObjectItemCaseSensitive(vc, "image_size") : NULL;
    const cJSON *ps = vc ? cJSON_GetObjectItemCaseSensitive(vc, "patch_size") : NULL;
    if ((is && cJSON_IsArray(is)) || (ps && cJSON_IsArray(ps)))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, VC ": image_size / patch_size as a list "
                        "(non-square) is not supported");
    if ((s = tsr__json_int(vc, "hidden_size", d_dim, 1, 1 << 16, &dim, VC, err)) ||
        (s = tsr__json_int(vc, "intermediate_size", d_inter, 1, 1 << 18, &inter, VC, err)) ||
        (s = tsr__json_int(vc, "num_hidden_layers", d_layers, 1, 1024, &layers, VC, err)) ||
        (s = tsr__json_int(vc, "num_attention_heads", d_heads, 1, 1024, &heads, VC, err)) ||
        (s = tsr__json_int(vc, "num_channels", 3, 1, 64, &chans, VC, err)) ||
        (s = tsr__json_int(vc, "image_size", d_size, 1, 16384, &size, VC, err)) ||
        (s = tsr__json_int(vc, "patch_size", d_patch, 1, 16384, &patch, VC, err)) ||
        (s = tsr__json_double(vc, "layer_norm_eps", 1e-5, 0.0, 1.0, &eps, VC, err)) ||
        (s = tsr__json_string(vc, "hidden_act", "quick_gelu", &act, VC, err)) ||
        (s = tsr__act_parse(act, VC " hidden_act", &c->act, err)))
        return s;
    if (dim % heads)
        return TSR_FAIL(err, TSR_ERR_FORMAT, VC ": hidden_size %lld is not a multiple of "
                        "num_attention_heads %lld", (long long)dim, (long long)heads);
    if (patch > size)
        return TSR_FAIL(err, TSR_ERR_FORMAT, VC ": patch_size %lld exceeds image_size %lld",
                        (long long)patch, (long long)size);
    c->dim = (int32_t)dim;
    c->inter = (int32_t)inter;
    c->n_layers = c->n_run = (int32_t)layers;
    c->n_heads = (int32_t)heads;
    c->head_dim = (int32_t)(dim / heads);
    c->n_channels = (int32_t)chans;
    c->image_size = (int32_t)size;
    c->patch = (int32_t)patch;
    c->grid = (int32_t)(size / patch);
    c->eps = (float)eps;
    return TSR_OK;
}

tsr_status tsr__clip_load(const cJSON *vc, int llava_defaults, tsr__weights *w,
                          const char *prefix, tsr__clip *c, tsr_error *err) {
    memset(c, 0, sizeof *c);
    tsr_status s = read_config(vc, llava_defaults, c, err);
    if (s) return s;
    const int64_t D = c->dim, F = c->inter, K = (int64_t)c->n_channels * c->patch * c->patch;
    const int64_t pos_shape[2] = {tsr__clip_tokens(c), D};
    if ((s = tsr__weights_matf(w, D, K, &c->patch_w, err, "%s.embeddings.patch_embedding.weight",
                               prefix)) ||
        (s = tsr__weights_vecf(w, D, &c->cls, err, "%s.embeddings.class_embedding", prefix)))
        return s;
    char name[256];
    snprintf(name, sizeof name, "%s.embeddings.position_embedding.weight", prefix);
    if ((s = tsr__weights_f32(w, name, 2, pos_shape, &c->pos, err))) return s;
    snprintf(name, sizeof name, "%s.pre_layrnorm", prefix);
    if ((s = tsr__norm_load(w, name, TSR__LAYERNORM, D, c->eps, &c->pre_ln, err))) return s;
    snprintf(name, sizeof name, "%s.post_layernorm", prefix);
    if ((s = tsr__norm_load(w, name, TSR__LAYERNORM, D, c->eps, &c->post_ln, err))) return s;
    c->layers = tsr__calloc((size_t)c->n_layers, sizeof *c->layers);
    if (!c->layers) return TSR_FAIL(err, TSR_ERR_OOM, "%d vision layers", (int)c->n_layers);
    for (int32_t i = 0; i < c->n_layers; i++) {
        tsr__vit_block *L = &c->layers[i];
        L->dim = (int32_t)D;
        L->n_heads = c->n_heads;
        L->head_dim = c->head_dim;
        L->act = c->act;
        char p[224];
        snprintf(p, sizeof p, "%s.encoder.layers.%d", prefix, (int)i);
#define SUB(fmt) (snprintf(name, sizeof name, "%s." fmt, p), name)
        if ((s = tsr__norm_load(w, SUB("layer_norm1"), TSR__LAYERNORM, D, c->eps, &L->norm1, err)) ||
            (s = tsr__linear_load(w, SUB("self_attn.q_proj"), D, D, 1, &L->q, err)) ||
            (s = tsr__linear_load(w, SUB("self_attn.k_proj"), D, D, 1, &L->k, err)) ||
            (s = tsr__linear_load(w, SUB("self_attn.v_proj"), D, D, 1, &L->v, err)) ||
            (s = tsr__linear_load(w, SUB("self_attn.out_proj"), D, D, 1, &L->o, err)) ||
            (s = tsr__norm_load(w, SUB("layer_norm2"), TSR__LAYERNORM, D, c->eps, &L->norm2, err)) ||
            (s = tsr__linear_load(w, SUB("mlp.fc1"), D, F, 1, &L->fc1, err)) ||
            (s = tsr__linear_load(w, SUB("mlp.fc2"), F, D, 1, &L->fc2, err)))
            return s;
#undef SUB
    }
    return TSR_OK;
}

/* ---- forward ----------------------------------------------------------------------------- */

/* Copies hidden state `idx`, x (n_tiles * Tt, D), into column block j of out for every j
 * with sel[j] == idx. */
static void take_state(const tsr__clip *c, const float *x, int64_t n_tiles, const int32_t *sel,
                       int32_t n_sel, int drop_cls, int32_t idx, float *out) {
    const int64_t D = c->dim, Tt = tsr__clip_tokens(c), R = Tt - (drop_cls ? 1 : 0);
    const int64_t ld = D * n_sel;
    for (int32_t j = 0; j < n_sel; j++) {
        if (sel[j] != idx) continue;
        for (int64_t t = 0; t < n_tiles; t++)
            for (int64_t r = 0; r < R; r++)
                memcpy(out + (t * R + r) * ld + j * D, x + (t * Tt + r + (Tt - R)) * D,
                       (size_t)D * sizeof *out);
    }
}

tsr_status tsr__clip_run(const tsr__clip *c, tsr__pool *pool, const float *px, int64_t n_tiles,
                         const int32_t *sel, int32_t n_sel, int drop_cls, float *out,
                         tsr_error *err) {
    const int64_t D = c->dim, Tt = tsr__clip_tokens(c), G = c->grid;
    const int64_t P = c->patch, S = c->image_size, C = c->n_channels, K = C * P * P;
    int32_t deepest = 0;
    for (int32_t j = 0; j < n_sel; j++) {
        if (sel[j] < 0 || sel[j] > c->n_run)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "hidden state %d of a tower run to "
                            "layer %d", (int)sel[j], (int)c->n_run);
        if (sel[j] > deepest) deepest = sel[j];
    }
    if (n_tiles < 1) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "%lld tiles", (long long)n_tiles);
    const int64_t N = n_tiles * Tt, NP = n_tiles * G * G;
    /* x (N, D), then the layers' scratch, which first holds the patch columns (NP, K) and
     * their embeddings (NP, D) */
    size_t blk = tsr__vit_block_scratch(&c->layers[0], N), nd = 0, ncol = 0, total = 0;
    if (blk == SIZE_MAX || !tsr__mul_size((size_t)N, (size_t)D, &nd) ||
        !tsr__mul_size((size_t)NP, (size_t)(K + D), &ncol) ||
        !tsr__add_size(nd, blk > ncol ? blk : ncol, &total) || total > SIZE_MAX / sizeof(float))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "%lld tiles of %lld tokens are too many",
                        (long long)n_tiles, (long long)Tt);
    int64_t *seg = tsr__malloc((size_t)(n_tiles + 1) * sizeof *seg);
    float *buf = tsr__malloc(total * sizeof *buf);
    if (!seg || !buf) {
        tsr__free(seg);
        tsr__free(buf);
        return TSR_FAIL(err, TSR_ERR_OOM, "vision tower scratch for %lld tiles", (long long)n_tiles);
    }
    float *x = buf, *scratch = x + nd;
    for (int64_t t = 0; t <= n_tiles; t++) seg[t] = t * Tt;

    /* Patch conv as a matmul: cols (NP, C*P*P) in the weight's [c][ky][kx] order. */
    float *cols = scratch, *pe = scratch + NP * K;
    for (int64_t t = 0; t < n_tiles; t++)
        for (int64_t gy = 0; gy < G; gy++)
            for (int64_t gx = 0; gx < G; gx++) {
                float *dst = cols + ((t * G + gy) * G + gx) * K;
                for (int64_t ch = 0; ch < C; ch++)
                    for (int64_t ky = 0; ky < P; ky++) {
                        const float *src = px + ((t * C + ch) * S + gy * P + ky) * S + gx * P;
                        memcpy(dst + (ch * P + ky) * P, src, (size_t)P * sizeof *dst);
                    }
            }
    if (c->patch_w.type != TSR__W_F32)
        (void)tsr__pool_reserve(pool, (size_t)TSR__WSLAB_ROWS * (size_t)K);
    tsr__matmul_wt(pool, pe, cols, c->patch_w, NULL, NP, K, D);
    for (int64_t t = 0; t < n_tiles; t++) {
        float *xt = x + t * Tt * D;
        for (int64_t i = 0; i < D; i++) xt[i] = c->cls[i] + c->pos[i];
        for (int64_t r = 1; r < Tt; r++) {
            const float *pr = pe + (t * G * G + r - 1) * D, *po = c->pos + r * D;
            float *xr = xt + r * D;
            for (int64_t i = 0; i < D; i++) xr[i] = pr[i] + po[i];
        }
    }
    tsr__norm_apply(pool, &c->pre_ln, x, x, N);
    take_state(c, x, n_tiles, sel, n_sel, drop_cls, 0, out);

    tsr__vit_opts o = {NULL, NULL, {seg, n_tiles, NULL, NULL}, 0.0f, scratch};
    tsr_status s = TSR_OK;
    for (int32_t l = 0; l < deepest && !s; l++) {
        s = tsr__vit_block_run(pool, &c->layers[l], x, N, &o, err);
        if (!s) take_state(c, x, n_tiles, sel, n_sel, drop_cls, l + 1, out);
    }
    tsr__free(seg);
    tsr__free(buf);
    return s;
}
