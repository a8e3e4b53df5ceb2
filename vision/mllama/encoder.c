/*
 * vision/mllama/encoder.c - the MLlama (Llama 3.2 Vision) vision model and projector, as
 * transformers' MllamaVisionModel and multi_modal_projector compute them:
 *
 *   per image (max_tiles tiles of image_size^2 pixels, padded tiles included):
 *     patch conv (no bias) -> + tanh(g_pre) * pre_tile[aspect_ratio_id][tile]
 *     -> class token first -> + (1 - tanh(g)) * pos + tanh(g) * tile_pos[aspect_ratio_id]
 *     -> layernorm_pre -> each tile padded with zero rows to a multiple of 8 (L rows)
 *     -> local transformer over all tiles * L rows (hidden states of the
 *        intermediate_layers_indices kept) -> layernorm_post
 *     -> + tanh(g_post) * post_tile[aspect_ratio_id][tile] -> global transformer (gated)
 *     -> padding rows dropped -> [final, intermediates interleaved (torch.stack(dim=-1))]
 *     -> multi_modal_projector -> cross_attention_states [images * tiles, patches + 1, text]
 *
 * Attention mask (_prepare_aspect_ratio_attention_mask): a row is "valid" when its tile is
 * in aspect_ratio_mask and it is not a padding row (when no row is padding, every row counts
 * as padding: the reference's `[-0:]` slice). The additive mask is finfo.min where both the
 * query and the key are invalid: valid queries see every key, invalid queries see only the
 * valid keys, or all keys with equal weight when there is none.
 */
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ML_X86 1
#endif

#include "../encoder.h"
#include "tessera_json.h"

#define ML_MAX_INTER 64
#define ML_QBLOCK 256 /* query rows per attention work item */

typedef struct ml_layer {
    tsr__norm ln1, ln2;
    tsr__linear q, k, v, o, fc1, fc2;
    float gate_attn, gate_ffn; /* tanh'd; 1 for the local layers */
} ml_layer;

typedef struct ml_enc {
    int32_t dim, heads, head_dim, inter, n_local, n_global, n_inter;
    int32_t channels, image_size, patch, grid, max_tiles, n_ratios;
    int32_t inter_idx[ML_MAX_INTER];
    int64_t n_patches;  /* grid^2 + 1 (class token first) */
    int64_t tile_len;   /* n_patches padded to a multiple of 8 */
    int64_t out_dim;    /* vision_output_dim = dim * (1 + n_inter) */
    int64_t text_dim;
    tsr__act act;
    float eps;                  /* the layers' LayerNorm eps (norm_eps) */
    tsr__wmat patch_w;          /* (dim, channels * patch * patch) */
    const float *cls;           /* (dim) */
    const float *pos;           /* (n_patches, dim) */
    tsr__wmat tile_pos;         /* (n_ratios + 1, max_tiles * n_patches * dim), as stored:
                                 * one row is widened per image */
    const float *pre_tile;      /* (n_ratios + 1, max_tiles * dim) */
    const float *post_tile;     /* (n_ratios + 1, max_tiles * dim) */
    float pos_gate, pre_gate, post_gate; /* tanh'd */
    tsr__norm ln_pre, ln_post;
    ml_layer *layers; /* n_local, then n_global */
    tsr__linear proj; /* (text_dim, out_dim) + bias */
} ml_enc;

/* ---------------------------------------------------------------------------------- */
/* Configuration and weights                                                            */
/* ---------------------------------------------------------------------------------- */

#define VC "config.json vision_config"

static tsr_status read_int(const cJSON *vc, const char *key, int64_t dflt, int64_t lo, int64_t hi,
                           int32_t *out, tsr_error *err) {
    int64_t v;
    tsr_status st = tsr__json_int(vc, key, dflt, lo, hi, &v, VC, err);
    if (!st) *out = (int32_t)v;
    return st;
}

static tsr_status read_config(ml_enc *e, const cJSON *config, tsr_error *err) {
    const cJSON *vc = config ? cJSON_GetObjectItemCaseSensitive(config, "vision_config") : NULL;
    if (!cJSON_IsObject(vc))
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        "config.json: vision_config is missing or not an object");
    tsr_status st;
    if ((st = read_int(vc, "hidden_size", 1280, 1, 1 << 16, &e->dim, err)) ||
        (st = read_int(vc, "attention_heads", 16, 1, 1 << 12, &e->heads, err)) ||
        (st = read_int(vc, "intermediate_size", 5120, 1, 1 << 20, &e->inter, err)) ||
        (st = read_int(vc, "num_hidden_layers", 32, 1, 1024, &e->n_local, err)) ||
        (st = read_int(vc, "num_global_layers", 8, 0, 1024, &e->n_global, err)) ||
        (st = read_int(vc, "num_channels", 3, 1, 16, &e->channels, err)) ||
        (st = read_int(vc, "image_size", 448, 1, 1 << 14, &e->image_size, err)) ||
        (st = read_int(vc, "patch_size", 14, 1, 1 << 12, &e->patch, err)) ||
        (st = read_int(vc, "max_num_tiles", 4, 1, 64, &e->max_tiles, err)))
        return st;
    if (e->dim % e->heads)
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        VC ": attention_heads %d does not divide hidden_size %d", e->heads,
                        e->dim);
    e->head_dim = e->dim / e->heads;
    if (e->image_size < e->patch)
        return TSR_FAIL(err, TSR_ERR_FORMAT, VC ": image_size %d is smaller than patch_size %d",
                        e->image_size, e->patch);
    e->grid = e->image_size / e->patch;
    e->n_patches = (int64_t)e->grid * e->grid + 1;
    e->tile_len = (e->n_patches + 7) / 8 * 8;
    double eps;
    if ((st = tsr__json_double(vc, "norm_eps", 1e-5, 0.0, 1.0, &eps, VC, err))) return st;
    const char *act;
    if ((st = tsr__json_string(vc, "hidden_act", "gelu", &act, VC, err)) ||
        (st = tsr__act_parse(act, VC " hidden_act", &e->act, err)))
        return st;

    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(vc, "supported_aspect_ratios");
    if (ar && !cJSON_IsNull(ar)) {
        if (!cJSON_IsArray(ar) || cJSON_GetArraySize(ar) < 1)
            return TSR_FAIL(err, TSR_ERR_FORMAT,
                            VC ": supported_aspect_ratios is not a non-empty array");
        e->n_ratios = cJSON_GetArraySize(ar);
    } else {
        e->n_ratios = 8;
    }
    const cJSON *ii = cJSON_GetObjectItemCaseSensitive(vc, "intermediate_layers_indices");
    if (ii && !cJSON_IsNull(ii)) {
        if (!cJSON_IsArray(ii) || cJSON_GetArraySize(ii) > ML_MAX_INTER)
            return TSR_FAIL(err, TSR_ERR_FORMAT,
                            VC ": intermediate_layers_indices is not an array of at most %d ints",
                            ML_MAX_INTER);
        e->n_inter = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, ii) {
            double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
            /* Python indexing of the local layers' hidden states: -n_local .. n_local - 1 */
            if (!(v == floor(v) && v >= -e->n_local && v < e->n_local))
                return TSR_FAIL(err, TSR_ERR_FORMAT,
                                VC ": intermediate_layers_indices entry %d is not a layer index "
                                "in [-%d, %d)", e->n_inter, e->n_local, e->n_local);
            int32_t k = (int32_t)v;
            e->inter_idx[e->n_inter++] = k < 0 ? k + e->n_local : k;
        }
    } else {
        static const int32_t dflt[5] = {3, 7, 15, 23, 30};
        e->n_inter = 5;
        for (int i = 0; i < 5; i++) {
            if (dflt[i] >= e->n_local)
                return TSR_FAIL(err, TSR_ERR_FORMAT,
                                VC ": the default intermediate_layers_indices need %d layers, "
                                "num_hidden_layers is %d", dflt[i] + 1, e->n_local);
            e->inter_idx[i] = dflt[i];
        }
    }
    int32_t out_dim;
    if ((st = read_int(vc, "vision_output_dim", 7680, 1, 1 << 24, &out_dim, err))) return st;
    e->out_dim = out_dim;
    if (e->out_dim != (int64_t)e->dim * (1 + e->n_inter))
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        VC ": vision_output_dim %lld is not hidden_size %d x (1 + %d intermediate "
                        "layers)", (long long)e->out_dim, e->dim, e->n_inter);
    e->eps = (float)eps;
    return TSR_OK;
}

static tsr_status gate(tsr__weights *w, const char *name, float *out, tsr_error *err) {
    const float *g;
    tsr_status st = tsr__weights_vec(w, name, 1, &g, err);
    if (!st) *out = tanhf(g[0]);
    return st;
}

static tsr_status load_layer(tsr__weights *w, const ml_enc *e, const char *part, int32_t i,
                             int gated, float eps, ml_layer *l, tsr_error *err) {
    char p[160];
    tsr_status st;
    const int64_t D = e->dim;
#define LIN(field, sub, n_in, n_out, bias)                                                 \
    (snprintf(p, sizeof p, "vision_model.%s.layers.%d.%s", part, i, sub),                 \
     tsr__linear_load(w, p, n_in, n_out, bias, &l->field, err))
#define NORM(field, sub)                                                                   \
    (snprintf(p, sizeof p, "vision_model.%s.layers.%d.%s", part, i, sub),                 \
     tsr__norm_load(w, p, TSR__LAYERNORM, D, eps, &l->field, err))
    if ((st = NORM(ln1, "input_layernorm")) || (st = NORM(ln2, "post_attention_layernorm")) ||
        (st = LIN(q, "self_attn.q_proj", D, D, 0)) || (st = LIN(k, "self_attn.k_proj", D, D, 0)) ||
        (st = LIN(v, "self_attn.v_proj", D, D, 0)) || (st = LIN(o, "self_attn.o_proj", D, D, 0)) ||
        (st = LIN(fc1, "mlp.fc1", D, e->inter, 1)) || (st = LIN(fc2, "mlp.fc2", e->inter, D, 1)))
        return st;
#undef LIN
#undef NORM
    l->gate_attn = l->gate_ffn = 1.0f;
    if (gated) {
        snprintf(p, sizeof p, "vision_model.%s.layers.%d.gate_attn", part, i);
        if ((st = gate(w, p, &l->gate_attn, err))) return st;
        snprintf(p, sizeof p, "vision_model.%s.layers.%d.gate_ffn", part, i);
        if ((st = gate(w, p, &l->gate_ffn, err))) return st;
    }
    return TSR_OK;
}

static const char *const prefixes[] = {"vision_model.", "multi_modal_projector.", NULL};
/* The names of transformers 5's module tree (MllamaForConditionalGeneration.model.*), as a
 * checkpoint written from its state dict holds them. */
static const char *const aliases[] = {"model.vision_model.", "vision_model.",
                                      "model.multi_modal_projector.", "multi_modal_projector.",
                                      NULL};

static void mllama_free(void *enc) {
    ml_enc *e = enc;
    if (!e) return;
    tsr__free(e->layers);
    tsr__free(e);
}

static tsr_status mllama_load(const tsr__model_configs *cfg, tsr__weights *w,
                              int32_t text_dim, void **enc, tsr_error *err) {
    if (!enc) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "enc is NULL");
    *enc = NULL;
    if (!cfg || !w || text_dim < 1) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "NULL argument");
    ml_enc *e = tsr__calloc(1, sizeof *e);
    if (!e) return TSR_FAIL(err, TSR_ERR_OOM, "mllama encoder");
    tsr_status st = read_config(e, cfg->config, err);
    if (st) goto fail;
    const float eps = e->eps;
    e->text_dim = text_dim;
    const int64_t D = e->dim, R1 = e->n_ratios + 1, NT = e->max_tiles;
    const int64_t kp = (int64_t)e->channels * e->patch * e->patch;
    e->layers = tsr__calloc((size_t)(e->n_local + e->n_global), sizeof *e->layers);
    if (!e->layers) {
        st = TSR_FAIL(err, TSR_ERR_OOM, "%d layers", e->n_local + e->n_global);
        goto fail;
    }
    int64_t tile_pos_cols;
    if (!tsr__mul_i64(NT * e->n_patches, D, &tile_pos_cols)) {
        st = TSR_FAIL(err, TSR_ERR_LIMIT, "tile position embedding size overflows");
        goto fail;
    }
    if ((st = tsr__weights_mat(w, "vision_model.patch_embedding.weight", D, kp, &e->patch_w,
                               err)) ||
        (st = tsr__weights_vec(w, "vision_model.class_embedding", D, &e->cls, err)) ||
        (st = tsr__weights_f32(w, "vision_model.gated_positional_embedding.embedding", 2,
                               (int64_t[]){e->n_patches, D}, &e->pos, err)) ||
        (st = tsr__weights_mat(w, "vision_model.gated_positional_embedding.tile_embedding.weight",
                               R1, tile_pos_cols, &e->tile_pos, err)) ||
        (st = gate(w, "vision_model.gated_positional_embedding.gate", &e->pos_gate, err)) ||
        (st = tsr__weights_f32(w, "vision_model.pre_tile_positional_embedding.embedding.weight", 2,
                               (int64_t[]){R1, NT * D}, &e->pre_tile, err)) ||
        (st = tsr__weights_f32(w, "vision_model.post_tile_positional_embedding.embedding.weight",
                               2, (int64_t[]){R1, NT * D}, &e->post_tile, err)) ||
        (st = gate(w, "vision_model.pre_tile_positional_embedding.gate", &e->pre_gate, err)) ||
        (st = gate(w, "vision_model.post_tile_positional_embedding.gate", &e->post_gate, err)) ||
        (st = tsr__norm_load(w, "vision_model.layernorm_pre", TSR__LAYERNORM, D, 1e-5f, &e->ln_pre,
                             err)) ||
        (st = tsr__norm_load(w, "vision_model.layernorm_post", TSR__LAYERNORM, D, 1e-5f,
                             &e->ln_post, err)) ||
        (st = tsr__linear_load(w, "multi_modal_projector", e->out_dim, text_dim, 1, &e->proj, err)))
        goto fail;
    for (int32_t i = 0; i < e->n_local; i++)
        if ((st = load_layer(w, e, "transformer", i, 0, eps, &e->layers[i], err))) goto fail;
    for (int32_t i = 0; i < e->n_global; i++)
        if ((st = load_layer(w, e, "global_transformer", i, 1, eps, &e->layers[e->n_local + i],
                             err)))
            goto fail;
    if ((st = tsr__weights_check_unused(w, prefixes, 2, "mllama vision model", err))) goto fail;
    tsr__blas_init();
    *enc = e;
    return TSR_OK;
fail:
    mllama_free(e);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* Kernels                                                                              */
/* ---------------------------------------------------------------------------------- */

#ifdef ML_X86
static int has_avx2(void) {
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return v;
}

/* expf for x in [-inf, 88.7] (Cephes polynomial, about 1 ulp); 0 below -87.3. */
__attribute__((target("avx2,fma"))) static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3365f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    __m256 fx = _mm256_floor_ps(
        _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i n = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
    __m256 pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(n, 23));
    return _mm256_andnot_ps(under, _mm256_mul_ps(y, pow2));
}

__attribute__((target("avx2,fma"))) static float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

__attribute__((target("avx2,fma"))) static float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* softmax of x (n) in place. */
__attribute__((target("avx2,fma"))) static void softmax_avx2(float *x, int64_t n) {
    int64_t i = 0;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    float m = hmax8(mv);
    for (int64_t j = i; j < n; j++) m = x[j] > m ? x[j] : m;
    __m256 mb = _mm256_set1_ps(m), sv = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mb));
        _mm256_storeu_ps(x + i, e);
        sv = _mm256_add_ps(sv, e);
    }
    float s = hsum8(sv);
    for (; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    __m256 inv = _mm256_set1_ps(1.0f / s);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= 1.0f / s;
}
#endif

static void softmax_row(float *x, int64_t n) {
#ifdef ML_X86
    if (has_avx2()) {
        softmax_avx2(x, n);
        return;
    }
#endif
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    for (int64_t i = 0; i < n; i++) x[i] *= 1.0f / s;
}

/* Multi-head attention of one image's sequence with the aspect-ratio mask, the rows in
 * valid-first order: rows [0, n_valid) are valid and attend to every key; the others attend
 * to the valid keys only (exp(finfo.min - max) is 0 in f32), or to every key with equal
 * weight when there is none (all scores finfo.min). Work items: (head, block of up to
 * ML_QBLOCK rows that does not straddle n_valid). */
typedef struct attn_job {
    const float *q, *k, *v; /* (T, D) each */
    float *out;             /* (T, D) */
    int64_t T, D, n_valid;
    int32_t heads, head_dim;
    float scale;
    float *scores; /* (n_workers, ML_QBLOCK, T) */
    int64_t n_vblocks, n_blocks;
    atomic_llong next;
} attn_job;

static void attn_part(void *arg, int32_t w, int32_t nw) {
    attn_job *j = arg;
    (void)nw;
    const int64_t T = j->T, D = j->D, V = j->n_valid;
    float *S = j->scores + (size_t)w * ML_QBLOCK * (size_t)T;
    for (;;) {
        long long item = atomic_fetch_add(&j->next, 1);
        if (item >= j->n_blocks * j->heads) break;
        const int64_t h = item / j->n_blocks, b = item % j->n_blocks;
        const int64_t r0 = b < j->n_vblocks ? b * ML_QBLOCK : V + (b - j->n_vblocks) * ML_QBLOCK;
        const int64_t end = b < j->n_vblocks ? V : T;
        const int64_t rows = end - r0 < ML_QBLOCK ? end - r0 : ML_QBLOCK;
        const int uniform = r0 >= V && V == 0;
        const int64_t nk = r0 < V || uniform ? T : V; /* keys these rows see */
        const int64_t c = h * j->head_dim;
        if (uniform) {
            for (int64_t i = 0; i < rows * T; i++) S[i] = 1.0f / (float)T;
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)nk,
                        j->head_dim, j->scale, j->q + r0 * D + c, (blasint)D, j->k + c,
                        (blasint)D, 0.0f, S, (blasint)nk);
            for (int64_t r = 0; r < rows; r++) softmax_row(S + r * nk, nk);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, j->head_dim,
                    (blasint)nk, 1.0f, S, (blasint)nk, j->v + c, (blasint)D, 0.0f,
                    j->out + r0 * D + c, (blasint)D);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Forward                                                                              */
/* ---------------------------------------------------------------------------------- */

/* Scratch of one image's forward, sized for T = max_tiles * tile_len rows. The rows are
 * kept valid-first (attn_job): slot[t * tile_len + i] is where row i of tile t sits. */
typedef struct ml_run {
    float *x;      /* (T, D) hidden states */
    float *h;      /* (T, D) normed */
    float *q, *k, *v, *a; /* (T, D); a first holds the image's tile position embedding */
    float *f;      /* (T, inter) */
    float *cat;    /* (max_tiles * n_patches, out_dim): final, then intermediates interleaved */
    float *col;    /* (max_tiles * grid^2, channels * patch^2) */
    float *scores; /* (n_workers, ML_QBLOCK, T) */
    int64_t *slot; /* (T) */
} ml_run;

static void run_free(ml_run *r) {
    tsr__free(r->x);
    tsr__free(r->h);
    tsr__free(r->q);
    tsr__free(r->k);
    tsr__free(r->v);
    tsr__free(r->a);
    tsr__free(r->f);
    tsr__free(r->cat);
    tsr__free(r->col);
    tsr__free(r->scores);
    tsr__free(r->slot);
}

static void *alloc_n(size_t a, size_t b, size_t elem, int *ok) {
    size_t n;
    if (!tsr__mul3_size(a, b, elem, &n)) {
        *ok = 0;
        return NULL;
    }
    void *p = tsr__malloc(n ? n : 1);
    if (!p) *ok = 0;
    return p;
}

static tsr_status run_alloc(const ml_enc *e, int32_t n_workers, ml_run *r, tsr_error *err) {
    memset(r, 0, sizeof *r);
    const size_t T = (size_t)e->max_tiles * (size_t)e->tile_len, D = (size_t)e->dim;
    const size_t kp = (size_t)e->channels * e->patch * e->patch, F = sizeof(float);
    int ok = 1;
    r->x = alloc_n(T, D, F, &ok);
    r->h = alloc_n(T, D, F, &ok);
    r->q = alloc_n(T, D, F, &ok);
    r->k = alloc_n(T, D, F, &ok);
    r->v = alloc_n(T, D, F, &ok);
    r->a = alloc_n(T, D, F, &ok);
    r->f = alloc_n(T, (size_t)e->inter, F, &ok);
    r->cat = alloc_n((size_t)e->max_tiles * (size_t)e->n_patches, (size_t)e->out_dim, F, &ok);
    r->col = alloc_n((size_t)e->max_tiles * (size_t)e->grid * (size_t)e->grid, kp, F, &ok);
    r->scores = alloc_n((size_t)n_workers * ML_QBLOCK, T, F, &ok);
    r->slot = alloc_n(T, 1, sizeof *r->slot, &ok);
    if (!ok) {
        run_free(r);
        return TSR_FAIL(err, TSR_ERR_OOM, "mllama vision scratch for %zu rows of %zu", T, D);
    }
    return TSR_OK;
}

static void matmul(tsr__pool *p, float *out, const float *x, const tsr__linear *l, int64_t T) {
    tsr__matmul_wt(p, out, x, l->w, l->b, T, l->n_in, l->n_out);
}

/* x += g * y (g == 1: a plain add, as the ungated layers do it). */
static void add_scaled(tsr__pool *p, float *x, const float *y, float g, size_t n) {
    if (g == 1.0f) {
        tsr__add_apply(p, x, y, (int64_t)n);
        return;
    }
    for (size_t i = 0; i < n; i++) x[i] += g * y[i];
}

static void layer_run(const ml_enc *e, tsr__pool *p, const ml_layer *l, ml_run *r, int64_t T,
                      int64_t n_valid) {
    const int64_t D = e->dim;
    tsr__norm_apply(p, &l->ln1, r->h, r->x, T);
    matmul(p, r->q, r->h, &l->q, T);
    matmul(p, r->k, r->h, &l->k, T);
    matmul(p, r->v, r->h, &l->v, T);
    const int64_t nvb = (n_valid + ML_QBLOCK - 1) / ML_QBLOCK;
    attn_job aj = {.q = r->q, .k = r->k, .v = r->v, .out = r->a, .T = T, .D = D,
                   .n_valid = n_valid, .heads = e->heads, .head_dim = e->head_dim,
                   .scale = 1.0f / sqrtf((float)e->head_dim), .scores = r->scores,
                   .n_vblocks = nvb,
                   .n_blocks = nvb + (T - n_valid + ML_QBLOCK - 1) / ML_QBLOCK};
    atomic_init(&aj.next, 0);
    tsr__pool_run(p, attn_part, &aj);
    matmul(p, r->h, r->a, &l->o, T);
    const size_t n = (size_t)T * (size_t)D;
    add_scaled(p, r->x, r->h, l->gate_attn, n);
    tsr__norm_apply(p, &l->ln2, r->h, r->x, T);
    matmul(p, r->f, r->h, &l->fc1, T);
    tsr__act_apply(p, e->act, r->f, T * e->inter);
    matmul(p, r->h, r->f, &l->fc2, T);
    add_scaled(p, r->x, r->h, l->gate_ffn, n);
}

/* One image: pixels (max_tiles, C, S, S), its aspect ratio id and tile mask; out
 * (max_tiles * n_patches, text_dim). */
static void image_run(const ml_enc *e, tsr__pool *p, ml_run *r, const float *pixels,
                      int64_t ar_id, const int64_t *tile_mask, float *out) {
    const int64_t D = e->dim, NT = e->max_tiles, L = e->tile_len, NP = e->n_patches;
    const int64_t G = e->grid, P = e->patch, C = e->channels, S = e->image_size;
    const int64_t kp = C * P * P, T = NT * L, np = G * G, OD = e->out_dim;
    /* im2col: row (tile, py, px), column (c, ky, kx) as the conv kernel is laid out */
    for (int64_t t = 0; t < NT; t++)
        for (int64_t py = 0; py < G; py++)
            for (int64_t px = 0; px < G; px++) {
                float *dst = r->col + ((t * G + py) * G + px) * kp;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t ky = 0; ky < P; ky++)
                        memcpy(dst + (c * P + ky) * P,
                               pixels + ((t * C + c) * S + py * P + ky) * S + px * P,
                               (size_t)P * sizeof(float));
            }
    tsr__matmul_wt(p, r->h, r->col, e->patch_w, NULL, NT * np, kp, D);
    /* embeddings (tile, position) into q, then layernorm_pre */
    const float *pre = e->pre_tile + ar_id * NT * D;
    tsr__wmat_row(r->a, e->tile_pos, ar_id, NT * NP * D);
    const float *tpos = r->a;
    for (int64_t t = 0; t < NT; t++)
        for (int64_t i = 0; i < NP; i++) {
            float *row = r->q + (t * NP + i) * D;
            const float *tp = tpos + (t * NP + i) * D, *ps = e->pos + i * D;
            for (int64_t d = 0; d < D; d++) {
                float v = i == 0 ? e->cls[d]
                                 : r->h[(t * np + i - 1) * D + d] + pre[t * D + d] * e->pre_gate;
                v = v + (1.0f - e->pos_gate) * ps[d];
                row[d] = v + e->pos_gate * tp[d];
            }
        }
    tsr__norm_apply(p, &e->ln_pre, r->q, r->q, NT * NP);
    /* valid-first order; padding rows (zeros) last with the masked tiles */
    int64_t n_valid = 0, k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int64_t t = 0; t < NT; t++)
            for (int64_t i = 0; i < L; i++) {
                /* no padding row at all: the reference's [-0:] slice masks every row */
                int valid = tile_mask[t] == 1 && i < NP && L > NP;
                if (valid == (pass == 0)) r->slot[t * L + i] = k++;
                if (valid && pass == 0) n_valid++;
            }
    memset(r->x, 0, (size_t)T * (size_t)D * sizeof(float));
    for (int64_t t = 0; t < NT; t++)
        for (int64_t i = 0; i < NP; i++)
            memcpy(r->x + r->slot[t * L + i] * D, r->q + (t * NP + i) * D,
                   (size_t)D * sizeof(float));
    for (int32_t li = 0; li < e->n_local; li++) {
        layer_run(e, p, &e->layers[li], r, T, n_valid);
        for (int32_t j = 0; j < e->n_inter; j++) {
            if (e->inter_idx[j] != li) continue;
            for (int64_t t = 0; t < NT; t++)
                for (int64_t i = 0; i < NP; i++) {
                    float *dst = r->cat + (t * NP + i) * OD + D + j;
                    const float *src = r->x + r->slot[t * L + i] * D;
                    for (int64_t d = 0; d < D; d++) dst[d * e->n_inter] = src[d];
                }
        }
    }
    tsr__norm_apply(p, &e->ln_post, r->x, r->x, T);
    const float *post = e->post_tile + ar_id * NT * D;
    for (int64_t t = 0; t < NT; t++)
        for (int64_t i = 0; i < L; i++) {
            float *row = r->x + r->slot[t * L + i] * D;
            for (int64_t d = 0; d < D; d++) row[d] += post[t * D + d] * e->post_gate;
        }
    for (int32_t li = 0; li < e->n_global; li++)
        layer_run(e, p, &e->layers[e->n_local + li], r, T, n_valid);
    for (int64_t t = 0; t < NT; t++)
        for (int64_t i = 0; i < NP; i++)
            memcpy(r->cat + (t * NP + i) * OD, r->x + r->slot[t * L + i] * D,
                   (size_t)D * sizeof(float));
    matmul(p, out, r->cat, &e->proj, NT * NP);
}

/* "[a, b, c]" of a tensor's shape into buf. */
static const char *shape_str(const tsr_tensor *t, char *buf, size_t n) {
    size_t at = 0;
    at += (size_t)snprintf(buf, n, "[");
    for (int32_t i = 0; i < t->ndim && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
    return buf;
}

static tsr_status mllama_encode(const void *enc, tsr__pool *pool, const tsr_tensor_list *inputs,
                                tsr_tensor_list *out, double *image_ms, double *audio_ms,
                                tsr_error *err) {
    const ml_enc *e = enc;
    if (!e || !inputs || !out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "NULL argument");
    (void)audio_ms;
    if (!tsr_tensor_list_get(inputs, "pixel_values")) return TSR_OK; /* text only */
    const double t0 = tsr__now_ms();
    const tsr_tensor *pv, *ids, *mask;
    tsr_status st;
    if ((st = tsr__input_get(inputs, "pixel_values", TSR_DTYPE_F32, &pv, err)) ||
        (st = tsr__input_get(inputs, "aspect_ratio_ids", TSR_DTYPE_I64, &ids, err)) ||
        (st = tsr__input_get(inputs, "aspect_ratio_mask", TSR_DTYPE_I64, &mask, err)))
        return st;
    const int64_t S = e->image_size, NT = e->max_tiles;
    if ((st = tsr_tensor_check(pv, "pixel_values", TSR_DTYPE_F32, 6,
                               (int64_t[]){-1, -1, NT, e->channels, S, S}, err)))
        return st;
    const int64_t B = pv->shape[0], M = pv->shape[1];
    char s1[128], s2[128];
    if (ids->ndim != 2 || ids->shape[0] != B || ids->shape[1] != M)
        return TSR_FAIL(err, TSR_ERR_SHAPE,
                        "aspect_ratio_ids has shape %s, pixel_values %s needs [%lld, %lld]",
                        shape_str(ids, s1, sizeof s1), shape_str(pv, s2, sizeof s2),
                        (long long)B, (long long)M);
    if (mask->ndim != 3 || mask->shape[0] != B || mask->shape[1] != M || mask->shape[2] != NT)
        return TSR_FAIL(err, TSR_ERR_SHAPE,
                        "aspect_ratio_mask has shape %s, pixel_values %s needs [%lld, %lld, %lld]",
                        shape_str(mask, s1, sizeof s1), shape_str(pv, s2, sizeof s2),
                        (long long)B, (long long)M, (long long)NT);
    if (!tsr_tensor_is_contiguous(pv) || !tsr_tensor_is_contiguous(ids) ||
        !tsr_tensor_is_contiguous(mask))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                        "pixel_values, aspect_ratio_ids and aspect_ratio_mask must be contiguous");
    int64_t n_img;
    if (!tsr__mul_i64(B, M, &n_img) || n_img > (int64_t)1 << 20)
        return TSR_FAIL(err, TSR_ERR_LIMIT, "%lld x %lld images", (long long)B, (long long)M);
    const int64_t *idv = ids->data, *mv = mask->data;
    for (int64_t i = 0; i < n_img; i++) {
        if (idv[i] < 0 || idv[i] > e->n_ratios)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                            "aspect_ratio_ids[%lld] = %lld is outside [0, %d]", (long long)i,
                            (long long)idv[i], e->n_ratios);
        for (int64_t t = 0; t < NT; t++)
            if (mv[i * NT + t] != 0 && mv[i * NT + t] != 1)
                return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                                "aspect_ratio_mask[%lld][%lld] = %lld is not 0 or 1", (long long)i,
                                (long long)t, (long long)mv[i * NT + t]);
    }
    if (n_img == 0) return TSR_OK;
    tsr_tensor cs = {0};
    if ((st = tsr_tensor_alloc(&cs, TSR_DTYPE_F32, 3,
                               (int64_t[]){n_img * NT, e->n_patches, e->text_dim}, err)))
        return st;
    const int32_t nw = pool ? tsr__pool_size(pool) : 1;
    int64_t widest = e->inter > e->out_dim ? e->inter : e->out_dim;
    widest = widest > e->dim ? widest : e->dim;
    if (tsr__pool_reserve(pool, (size_t)TSR__WSLAB_ROWS * (size_t)widest) != 0) {
        tsr_tensor_free(&cs);
        return TSR_FAIL(err, TSR_ERR_OOM, "matmul scratch of %lld floats per worker",
                        (long long)TSR__WSLAB_ROWS * widest);
    }
    ml_run r;
    if ((st = run_alloc(e, nw, &r, err))) {
        tsr_tensor_free(&cs);
        return st;
    }
    const size_t per_image = (size_t)NT * (size_t)e->channels * (size_t)S * (size_t)S;
    const size_t per_out = (size_t)NT * (size_t)e->n_patches * (size_t)e->text_dim;
    for (int64_t i = 0; i < n_img; i++)
        image_run(e, pool, &r, (const float *)pv->data + (size_t)i * per_image, idv[i],
                  mv + i * NT, (float *)cs.data + (size_t)i * per_out);
    run_free(&r);
    st = tsr_tensor_list_add(out, "cross_attention_states", &cs, err);
    if (st) {
        tsr_tensor_free(&cs);
        return st;
    }
    if (image_ms) *image_ms = tsr__now_ms() - t0;
    return TSR_OK;
}

const tsr__encoder_ops tsr__mllama_encoder = {"mllama",    prefixes,    aliases,
                                              mllama_load, mllama_free, mllama_encode, NULL};
