/*
 * vision/minicpmo/encoder.c - MiniCPM-o 2.6's media side, as the checkpoint's remote code
 * (modeling_minicpmo.py, modeling_navit_siglip.py, resampler.py) computes it:
 *
 *   images: every slice (pixel_values.<i>, [3, patch, n * patch] with n = h * w of tgt_sizes[i])
 *           through the SigLIP NaViT "vpm" (patch embedding, position ids bucketed from the
 *           slice's h x w onto the image_size / patch grid, encoder layers without the last one
 *           when drop_vision_last_layer, post_layernorm), then the Resampler: query_num learned
 *           queries attending (nn.MultiheadAttention, text_hidden / 128 heads) to
 *           ln_kv(kv_proj(x)) with the 2-D sin-cos position of each patch added to the keys,
 *           ln_post, @ proj. The query_num rows of each slice, in order, fill the image_bound
 *           ranges (get_vllm_embedding).
 *   audio:  audio/minicpmo_encoder.c; the rows of all pieces, in order, fill the audio_bounds
 *           ranges (get_omni_embedding with chunk_input; without it each bound takes one piece).
 *
 * "embeds" holds the rows of all ranges in input_ids order, "embed_spans" the ranges. Padding
 * patches of the batched reference are masked keys there; each slice runs alone here, which is
 * the same computation. The checkpoint's TTS part (tts.*) belongs to this encoder and is not
 * read: Tessera produces text only.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../audio/minicpmo_encoder.h"
#include "tessera_json.h"

#define CFG "config.json"
#define MAX_SLICES 4096

typedef struct mo_vision {
    int32_t dim, n_heads, n_layers, patch, side; /* side: image_size / patch (position grid) */
    tsr__linear patch_embed;                     /* (dim, 3 * patch * patch) */
    const float *pos;                            /* position_embedding (side * side, dim) */
    tsr__vit_block *layers;
    tsr__norm post;
} mo_vision;

typedef struct mo_resampler {
    int32_t dim, kv_dim, n_heads, n_query;
    const float *query;   /* (n_query, dim) */
    int has_kv_proj;      /* kv_proj is nn.Identity when kv_dim == dim */
    tsr__linear kv_proj;  /* (dim, kv_dim), no bias */
    tsr__norm ln_q, ln_kv, ln_post;
    tsr__linear q, k, v;  /* the thirds of attn.in_proj_weight / in_proj_bias */
    tsr__linear out;      /* attn.out_proj */
    const float *proj;    /* (dim, dim): x @ proj */
} mo_resampler;

typedef struct mo_enc {
    int32_t text_dim;
    bool has_vision, has_audio, chunk_input;
    mo_vision vpm;
    mo_resampler rs;
    tsr__minicpmo_apm apm;
} mo_enc;

static void mo_free(void *p) {
    mo_enc *e = p;
    if (!e) return;
    tsr__free(e->vpm.layers);
    tsr__minicpmo_apm_free(&e->apm);
    tsr__free(e);
}

/* ---- loading ------------------------------------------------------------------------------ */

static tsr_status load_vision(const cJSON *c, tsr__weights *w, mo_vision *v, tsr_error *err) {
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(c, "vision_config");
    if (vc && cJSON_IsNull(vc)) vc = NULL;
    if (vc && !cJSON_IsObject(vc))
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": vision_config must be an object");
    /* MiniCPMOConfig.default_vision_config, then SiglipVisionConfig's defaults */
    int64_t dim = 1152, ffn = 4304, layers = 27, heads = 16, ch = 3, image = 980, patch = 14;
    double eps = 1e-6;
    bool drop_last = true;
    const char *act = "gelu_pytorch_tanh";
    const char *ctx = CFG " vision_config";
    tsr_status s = tsr__json_bool(c, "drop_vision_last_layer", true, &drop_last, CFG, err);
    if (!s && vc) {
        if (!s) s = tsr__json_int(vc, "hidden_size", dim, 1, 1 << 16, &dim, ctx, err);
        if (!s) s = tsr__json_int(vc, "intermediate_size", ffn, 1, 1 << 20, &ffn, ctx, err);
        if (!s) s = tsr__json_int(vc, "num_hidden_layers", layers, 0, 1024, &layers, ctx, err);
        if (!s) s = tsr__json_int(vc, "num_attention_heads", heads, 1, 1024, &heads, ctx, err);
        if (!s) s = tsr__json_int(vc, "num_channels", ch, 1, 16, &ch, ctx, err);
        if (!s) s = tsr__json_int(vc, "image_size", image, 1, 1 << 16, &image, ctx, err);
        if (!s) s = tsr__json_int(vc, "patch_size", patch, 1, 1024, &patch, ctx, err);
        if (!s) s = tsr__json_double(vc, "layer_norm_eps", eps, 0, 1, &eps, ctx, err);
        if (!s) s = tsr__json_string(vc, "hidden_act", act, &act, ctx, err);
    }
    if (s) return s;
    if (ch != 3)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "%s: num_channels %lld (the processor gives "
                        "RGB)", ctx, (long long)ch);
    if (dim % heads)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: hidden_size %lld is not a multiple of "
                        "num_attention_heads %lld", ctx, (long long)dim, (long long)heads);
    if (image < patch)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: image_size %lld is smaller than patch_size "
                        "%lld", ctx, (long long)image, (long long)patch);
    tsr__act a;
    if ((s = tsr__act_parse(act, CFG " vision_config.hidden_act", &a, err))) return s;
    v->dim = (int32_t)dim;
    v->n_heads = (int32_t)heads;
    v->patch = (int32_t)patch;
    v->side = (int32_t)(image / patch);
    v->n_layers = (int32_t)(drop_last && layers > 0 ? layers - 1 : layers);
    const int64_t shp[2] = {(int64_t)v->side * v->side, dim};
    s = tsr__linear_load(w, "vpm.embeddings.patch_embedding", 3 * patch * patch, dim, 1,
                         &v->patch_embed, err);
    if (!s) s = tsr__weights_f32(w, "vpm.embeddings.position_embedding.weight", 2, shp, &v->pos,
                                 err);
    if (!s) s = tsr__norm_load(w, "vpm.post_layernorm", TSR__LAYERNORM, dim, (float)eps, &v->post,
                               err);
    if (!s && v->n_layers > 0 && !(v->layers = tsr__calloc((size_t)v->n_layers, sizeof *v->layers)))
        s = TSR_FAIL(err, TSR_ERR_OOM, "%d vision layers", (int)v->n_layers);
    for (int32_t i = 0; !s && i < v->n_layers; i++) {
        tsr__vit_block *b = &v->layers[i];
        char p[96];
        b->dim = (int32_t)dim;
        b->n_heads = (int32_t)heads;
        b->head_dim = (int32_t)(dim / heads);
        b->act = a;
#define LIN(name, n_in, n_out, dst)                                                        \
    if (!s) {                                                                              \
        snprintf(p, sizeof p, "vpm.encoder.layers.%d.%s", (int)i, name);                   \
        s = tsr__linear_load(w, p, n_in, n_out, 1, dst, err);                              \
    }
#define NORM(name, dst)                                                                    \
    if (!s) {                                                                              \
        snprintf(p, sizeof p, "vpm.encoder.layers.%d.%s", (int)i, name);                   \
        s = tsr__norm_load(w, p, TSR__LAYERNORM, dim, (float)eps, dst, err);               \
    }
        NORM("layer_norm1", &b->norm1)
        LIN("self_attn.q_proj", dim, dim, &b->q)
        LIN("self_attn.k_proj", dim, dim, &b->k)
        LIN("self_attn.v_proj", dim, dim, &b->v)
        LIN("self_attn.out_proj", dim, dim, &b->o)
        NORM("layer_norm2", &b->norm2)
        LIN("mlp.fc1", dim, ffn, &b->fc1)
        LIN("mlp.fc2", ffn, dim, &b->fc2)
#undef LIN
#undef NORM
    }
    return s;
}

static tsr_status load_resampler(const cJSON *c, tsr__weights *w, int32_t text_dim,
                                 int32_t vision_dim, mo_resampler *r, tsr_error *err) {
    int64_t nq = 64;
    tsr_status s = tsr__json_int(c, "query_num", nq, 1, 1 << 16, &nq, CFG, err);
    if (s) return s;
    /* init_resampler: num_heads = embed_dim // 128 */
    if (text_dim < 128 || text_dim % (text_dim / 128))
        return TSR_FAIL(err, TSR_ERR_FORMAT, "resampler: the text hidden size %d gives %d heads "
                        "(hidden // 128) that do not divide it", (int)text_dim,
                        (int)(text_dim / 128));
    const int64_t D = text_dim;
    r->dim = text_dim;
    r->kv_dim = vision_dim;
    r->n_heads = text_dim / 128;
    r->n_query = (int32_t)nq;
    r->has_kv_proj = vision_dim != text_dim;
    const int64_t qs[2] = {nq, D}, ps[2] = {D, D};
    tsr__wmat in_w = {0};
    const float *in_b = NULL;
    s = tsr__weights_f32(w, "resampler.query", 2, qs, &r->query, err);
    if (!s && r->has_kv_proj)
        s = tsr__linear_load(w, "resampler.kv_proj", vision_dim, D, 0, &r->kv_proj, err);
    if (!s) s = tsr__norm_load(w, "resampler.ln_q", TSR__LAYERNORM, D, 1e-6f, &r->ln_q, err);
    if (!s) s = tsr__norm_load(w, "resampler.ln_kv", TSR__LAYERNORM, D, 1e-6f, &r->ln_kv, err);
    if (!s) s = tsr__norm_load(w, "resampler.ln_post", TSR__LAYERNORM, D, 1e-6f, &r->ln_post, err);
    if (!s) s = tsr__weights_mat(w, "resampler.attn.in_proj_weight", 3 * D, D, &in_w, err);
    if (!s) s = tsr__weights_vec(w, "resampler.attn.in_proj_bias", 3 * D, &in_b, err);
    if (!s) s = tsr__linear_load(w, "resampler.attn.out_proj", D, D, 1, &r->out, err);
    if (!s) s = tsr__weights_f32(w, "resampler.proj", 2, ps, &r->proj, err);
    if (s) return s;
    /* q, k, v: row blocks of in_proj_weight, kept as stored */
    const size_t esz = in_w.type == TSR__W_F32 ? 4 : 2;
    tsr__linear *qkv[3] = {&r->q, &r->k, &r->v};
    for (int i = 0; i < 3; i++) {
        qkv[i]->w.data = (const char *)in_w.data + (size_t)i * (size_t)D * (size_t)D * esz;
        qkv[i]->w.type = in_w.type;
        qkv[i]->b = in_b + i * D;
        qkv[i]->n_in = qkv[i]->n_out = D;
    }
    return TSR_OK;
}

static tsr_status mo_load(const tsr__model_configs *cfg, tsr__weights *w, int32_t text_dim,
                          void **out, tsr_error *err) {
    *out = NULL;
    const cJSON *c = cfg ? cfg->config : NULL;
    if (!c) return TSR_FAIL(err, TSR_ERR_FORMAT, "minicpmo: " CFG " is missing");
    if (text_dim < 1)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "text hidden size %d", (int)text_dim);
    mo_enc *e = tsr__calloc(1, sizeof *e);
    if (!e) return TSR_FAIL(err, TSR_ERR_OOM, "minicpmo encoder");
    e->text_dim = text_dim;
    tsr_status s = tsr__json_bool(c, "init_vision", true, &e->has_vision, CFG, err);
    if (!s) s = tsr__json_bool(c, "init_audio", true, &e->has_audio, CFG, err);
    if (!s) s = tsr__json_bool(c, "chunk_input", true, &e->chunk_input, CFG, err);
    if (!s && e->has_vision) s = load_vision(c, w, &e->vpm, err);
    if (!s && e->has_vision) s = load_resampler(c, w, text_dim, e->vpm.dim, &e->rs, err);
    if (!s && e->has_audio) s = tsr__minicpmo_apm_load(c, w, text_dim, &e->apm, err);
    if (s) {
        mo_free(e);
        return s;
    }
    *out = e;
    return TSR_OK;
}

/* ---- vision --------------------------------------------------------------------------------- */

/* torch.arange(start, end, step) of float32 values, element i, as PyTorch's CPU kernel makes
 * them: the first floor(n / 16) * 16 elements in vectors of 8 (the float base of each vector
 * from the double start + step * i0, then base + k * step in double), the rest start + step * i
 * in double; each rounded to float. The buckets below equal torch.bucketize on the reference
 * stack (torch 2.15, x86-64) for grids of 1..400 patches per side and 27..70 buckets. */
static float arange_f32(double start, double step, int64_t n, int64_t i) {
    if (i < n / 16 * 16) {
        const int64_t i0 = i - i % 8;
        const float base = (float)(start + step * (double)i0);
        return (float)((double)base + (double)(i - i0) * step);
    }
    return (float)(start + step * (double)i);
}

/* SiglipVisionEmbeddings' position ids of an h x w slice: per axis
 * bucketize(arange(0, 1 - 1e-6, 1 / n), arange(1 / side, 1.0, 1 / side), right=True) with
 * 1 / n a float32 tensor; row-major over (h, w). */
static void bucket_coords(int64_t n, int32_t side, int32_t *out) {
    const double bstep = 1.0 / (double)side;
    const int64_t nb = (int64_t)ceil((1.0 - bstep) / bstep);
    const double fstep = (double)(1.0f / (float)n);
    const int64_t nf = (int64_t)ceil((1.0 - 1e-6) / fstep);
    for (int64_t i = 0; i < n; i++) {
        const float x = arange_f32(0.0, fstep, nf > n ? nf : n, i);
        int32_t b = 0;
        while (b < nb && arange_f32(bstep, bstep, nb, b) <= x) b++;
        out[i] = b < side ? b : side - 1;
    }
}

/* vpm on one slice: px (3, patch, n * patch) -> x (n, dim). */
static tsr_status vision_run(const mo_vision *v, tsr__pool *pool, const float *px, int64_t th,
                             int64_t tw, float *x, tsr_error *err) {
    const int64_t n = th * tw, P = v->patch, K = 3 * P * P, D = v->dim, Wd = n * P;
    size_t nc = 0;
    if (!tsr__mul_size((size_t)n, (size_t)K, &nc))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "slice of %lld patches", (long long)n);
    float *cols = tsr__malloc(nc * sizeof *cols);
    int32_t *bh = tsr__malloc((size_t)(th + tw) * sizeof *bh);
    if (!cols || !bh) {
        tsr__free(cols);
        tsr__free(bh);
        return TSR_FAIL(err, TSR_ERR_OOM, "slice of %lld patches", (long long)n);
    }
    for (int64_t p = 0; p < n; p++)
        for (int64_t c = 0; c < 3; c++)
            for (int64_t ky = 0; ky < P; ky++)
                memcpy(cols + p * K + c * P * P + ky * P, px + (c * P + ky) * Wd + p * P,
                       (size_t)P * sizeof *cols);
    tsr__linear_run(pool, &v->patch_embed, x, cols, n);
    tsr__free(cols);
    int32_t *bw = bh + th;
    bucket_coords(th, v->side, bh);
    bucket_coords(tw, v->side, bw);
    for (int64_t i = 0; i < th; i++)
        for (int64_t j = 0; j < tw; j++)
            tsr__add_inplace(x + (i * tw + j) * D,
                             v->pos + ((int64_t)bh[i] * v->side + bw[j]) * D, D);
    tsr__free(bh);
    tsr_status s = TSR_OK;
    for (int32_t l = 0; !s && l < v->n_layers; l++)
        s = tsr__vit_block_run(pool, &v->layers[l], x, n, NULL, err);
    if (!s) tsr__norm_run(&v->post, x, x, n);
    return s;
}

/* get_2d_sincos_pos_embed(dim, (h, w))[i, j]: the first half encodes the column j, the second
 * the row i; each half is [sin(pos * omega), cos(pos * omega)], omega = 1 / 10000^(k / (dim/4)),
 * in float32 as numpy computes it. */
static void sincos_row(float *out, int64_t D, int64_t i, int64_t j) {
    const int64_t q = D / 4;
    for (int half = 0; half < 2; half++) {
        const float pos = (float)(half ? i : j);
        float *o = out + half * (D / 2);
        for (int64_t k = 0; k < q; k++) {
            const float om = 1.0f / powf(10000.0f, (float)k / (float)q);
            const float a = pos * om;
            o[k] = sinf(a);
            o[q + k] = cosf(a);
        }
    }
}

/* Resampler on one slice: x (n, kv_dim) -> out (n_query, dim); qh: the projected queries
 * (n_query, dim). */
static tsr_status resample(const mo_resampler *r, tsr__pool *pool, const float *x, int64_t th,
                           int64_t tw, const float *qh, float *out, tsr_error *err) {
    const int64_t n = th * tw, D = r->dim, Q = r->n_query, H = r->n_heads, hd = D / H;
    size_t nx = 0;
    if (!tsr__mul_size((size_t)n, (size_t)D, &nx))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "slice of %lld patches", (long long)n);
    float *kv = tsr__malloc(nx * sizeof *kv), *kin = tsr__malloc(nx * sizeof *kin);
    float *k = tsr__malloc(nx * sizeof *k), *v = tsr__malloc(nx * sizeof *v);
    float *sc = tsr__malloc((size_t)Q * (size_t)n * sizeof *sc);
    float *att = tsr__malloc((size_t)Q * (size_t)D * sizeof *att);
    float *o = tsr__malloc((size_t)Q * (size_t)D * sizeof *o);
    if (!kv || !kin || !k || !v || !sc || !att || !o) {
        tsr__free(kv); tsr__free(kin); tsr__free(k); tsr__free(v);
        tsr__free(sc); tsr__free(att); tsr__free(o);
        return TSR_FAIL(err, TSR_ERR_OOM, "resampler scratch (%lld patches)", (long long)n);
    }
    if (r->has_kv_proj) tsr__linear_run(pool, &r->kv_proj, kv, x, n);
    else memcpy(kv, x, nx * sizeof *kv);
    tsr__norm_run(&r->ln_kv, kv, kv, n);
    for (int64_t i = 0; i < th; i++)
        for (int64_t j = 0; j < tw; j++) {
            float *row = kin + (i * tw + j) * D;
            sincos_row(row, D, i, j);
            const float *src = kv + (i * tw + j) * D;
            for (int64_t c = 0; c < D; c++) row[c] += src[c];
        }
    tsr__linear_run(pool, &r->k, k, kin, n);
    tsr__linear_run(pool, &r->v, v, kv, n);
    tsr__blas_init();
    const float scale = 1.0f / sqrtf((float)hd);
    for (int64_t h = 0; h < H; h++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)Q, (blasint)n, (blasint)hd,
                    scale, qh + h * hd, (blasint)D, k + h * hd, (blasint)D, 0.0f, sc, (blasint)n);
        for (int64_t i = 0; i < Q; i++) tsr__softmax(sc + i * n, n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)Q, (blasint)hd, (blasint)n,
                    1.0f, sc, (blasint)n, v + h * hd, (blasint)D, 0.0f, att + h * hd, (blasint)D);
    }
    tsr__linear_run(pool, &r->out, o, att, Q);
    tsr__norm_run(&r->ln_post, o, o, Q);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)Q, (blasint)D, (blasint)D,
                1.0f, o, (blasint)D, r->proj, (blasint)D, 0.0f, out, (blasint)D);
    tsr__free(kv); tsr__free(kin); tsr__free(k); tsr__free(v);
    tsr__free(sc); tsr__free(att); tsr__free(o);
    return TSR_OK;
}

/* All slices: rows (n_slices * n_query, text_dim), tsr__malloc'd into *rows. */
static tsr_status encode_images(const mo_enc *e, tsr__pool *pool, const tsr_tensor_list *inputs,
                                const tsr_tensor *tgt, float **rows, tsr_error *err) {
    const mo_vision *v = &e->vpm;
    const mo_resampler *r = &e->rs;
    const int64_t n_sl = tgt->shape[0], D = r->dim, Q = r->n_query, P = v->patch;
    const int64_t *hw = tgt->data;
    int64_t max_n = 0;
    char name[48];
    for (int64_t i = 0; i < n_sl; i++) {
        const int64_t th = hw[2 * i], tw = hw[2 * i + 1];
        if (th < 1 || tw < 1 || th > (1 << 16) || tw > (1 << 16))
            return TSR_FAIL(err, TSR_ERR_SHAPE, "tgt_sizes[%lld] = (%lld, %lld) is not a patch "
                            "grid", (long long)i, (long long)th, (long long)tw);
        snprintf(name, sizeof name, "pixel_values.%lld", (long long)i);
        const tsr_tensor *px = NULL;
        tsr_status s = tsr__input_get(inputs, name, TSR_DTYPE_F32, &px, err);
        if (s) return s;
        if (px->ndim != 3 || px->shape[0] != 3 || px->shape[1] != P ||
            px->shape[2] != th * tw * P)
            return TSR_FAIL(err, TSR_ERR_SHAPE, "%s has shape [%lld, %lld, %lld], tgt_sizes[%lld] "
                            "= (%lld, %lld) needs [3, %lld, %lld]", name,
                            (long long)(px->ndim > 0 ? px->shape[0] : 0),
                            (long long)(px->ndim > 1 ? px->shape[1] : 0),
                            (long long)(px->ndim > 2 ? px->shape[2] : 0), (long long)i,
                            (long long)th, (long long)tw, (long long)P, (long long)(th * tw * P));
        if (th * tw > max_n) max_n = th * tw;
    }
    size_t nr = 0, nx = 0;
    if (!tsr__mul_size((size_t)(n_sl * Q), (size_t)D, &nr) ||
        !tsr__mul_size((size_t)max_n, (size_t)(v->dim > D ? v->dim : D), &nx))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "%lld slices", (long long)n_sl);
    float *out = tsr__malloc(nr * sizeof *out), *x = tsr__malloc(nx * sizeof *x);
    float *qh = tsr__malloc((size_t)(Q * D) * sizeof *qh);
    tsr_status s = TSR_OK;
    if (!out || !x || !qh) s = TSR_FAIL(err, TSR_ERR_OOM, "image features of %lld slices",
                                        (long long)n_sl);
    if (!s) {
        tsr__norm_run(&r->ln_q, qh, r->query, Q);
        float *tmp = tsr__malloc((size_t)(Q * D) * sizeof *tmp);
        if (!tmp) s = TSR_FAIL(err, TSR_ERR_OOM, "resampler queries");
        else {
            tsr__linear_run(pool, &r->q, tmp, qh, Q);
            memcpy(qh, tmp, (size_t)(Q * D) * sizeof *qh);
            tsr__free(tmp);
        }
    }
    for (int64_t i = 0; !s && i < n_sl; i++) {
        snprintf(name, sizeof name, "pixel_values.%lld", (long long)i);
        const tsr_tensor *px = tsr_tensor_list_get(inputs, name);
        const int64_t th = hw[2 * i], tw = hw[2 * i + 1];
        s = vision_run(v, pool, px->data, th, tw, x, err);
        if (!s) s = resample(r, pool, x, th, tw, qh, out + i * Q * D, err);
    }
    tsr__free(x);
    tsr__free(qh);
    if (s) {
        tsr__free(out);
        return s;
    }
    *rows = out;
    return TSR_OK;
}

/* ---- audio ---------------------------------------------------------------------------------- */

/* All pieces of audio_features: rows (sum of tokens, text_dim); piece_rows[b] their counts. */
static tsr_status encode_audio(const mo_enc *e, tsr__pool *pool, const tsr_tensor *feats,
                               const tsr_tensor *lens, float **rows, int64_t *n_rows,
                               int64_t **piece_rows, tsr_error *err) {
    const tsr__minicpmo_apm *a = &e->apm;
    if (feats->ndim != 3 || feats->shape[1] != a->n_mels || feats->shape[0] < 1 ||
        feats->shape[2] < 1)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "audio_features has %d dims [%lld, %lld, ...], the "
                        "audio encoder takes [pieces, %d, frames]", (int)feats->ndim,
                        (long long)(feats->ndim > 0 ? feats->shape[0] : 0),
                        (long long)(feats->ndim > 1 ? feats->shape[1] : 0), (int)a->n_mels);
    const int64_t B = feats->shape[0], L = feats->shape[2], E = a->text_dim;
    const int64_t n_lens = lens->ndim == 1 ? lens->shape[0] :
                           lens->ndim == 2 && lens->shape[0] == 1 ? lens->shape[1] : -1;
    if (n_lens != B)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "audio_feature_lens has %lld entries (%d dims), "
                        "audio_features [%lld, %d, %lld] holds %lld pieces", (long long)n_lens,
                        (int)lens->ndim, (long long)B, (int)a->n_mels, (long long)L, (long long)B);
    const int64_t *ml = lens->data;
    int64_t total = 0;
    for (int64_t b = 0; b < B; b++) {
        if (ml[b] < 1 || ml[b] > L)
            return TSR_FAIL(err, TSR_ERR_SHAPE, "audio_feature_lens[%lld] = %lld is outside the "
                            "%lld frames of audio_features", (long long)b, (long long)ml[b],
                            (long long)L);
        total += tsr__minicpmo_apm_tokens(a, ml[b]);
    }
    int64_t *pr = tsr__malloc((size_t)B * sizeof *pr);
    size_t nr = 0;
    float *out = NULL;
    if (pr && tsr__mul_size((size_t)(total ? total : 1), (size_t)E, &nr))
        out = tsr__malloc(nr * sizeof *out);
    if (!pr || !out) {
        tsr__free(pr);
        tsr__free(out);
        return TSR_FAIL(err, TSR_ERR_OOM, "audio features of %lld rows", (long long)total);
    }
    tsr_status s = TSR_OK;
    int64_t at = 0;
    for (int64_t b = 0; !s && b < B; b++) {
        pr[b] = tsr__minicpmo_apm_tokens(a, ml[b]);
        s = tsr__minicpmo_apm_run(a, pool, (const float *)feats->data + b * a->n_mels * L, L,
                                  ml[b], out + at * E, err);
        at += pr[b];
    }
    if (s) {
        tsr__free(pr);
        tsr__free(out);
        return s;
    }
    *rows = out;
    *n_rows = total;
    *piece_rows = pr;
    return TSR_OK;
}

/* ---- placement ------------------------------------------------------------------------------ */

typedef struct mo_span {
    int64_t start, n;
    const float *src; /* n rows */
} mo_span;

static int span_cmp(const void *a, const void *b) {
    const mo_span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* A bounds tensor ("image_bound", "audio_bounds": I64 [k, 2] of [start, end)); k = 0 when
 * absent. */
static tsr_status get_bounds(const tsr_tensor_list *inputs, const char *name, int64_t n_ids,
                             const int64_t **b, int64_t *k, int64_t *tokens, tsr_error *err) {
    *b = NULL;
    *k = *tokens = 0;
    const tsr_tensor *t = tsr_tensor_list_get(inputs, name);
    if (!t) return TSR_OK;
    tsr_status s = tsr__input_get(inputs, name, TSR_DTYPE_I64, &t, err);
    if (s) return s;
    if (t->ndim == 1 && t->shape[0] == 0) return TSR_OK;
    if (t->ndim != 2 || t->shape[1] != 2)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "%s has %d dims, expected [n, 2]", name, (int)t->ndim);
    *b = t->data;
    *k = t->shape[0];
    for (int64_t i = 0; i < *k; i++) {
        const int64_t s0 = (*b)[2 * i], s1 = (*b)[2 * i + 1];
        if (s0 < 0 || s1 < s0 || s1 > n_ids)
            return TSR_FAIL(err, TSR_ERR_SHAPE, "%s[%lld] = [%lld, %lld) is outside the %lld "
                            "prompt tokens", name, (long long)i, (long long)s0, (long long)s1,
                            (long long)n_ids);
        *tokens += s1 - s0;
    }
    return TSR_OK;
}

static tsr_status mo_encode(const void *enc, tsr__pool *pool, const tsr_tensor_list *inputs,
                            tsr_tensor_list *out, double *image_ms, double *audio_ms,
                            tsr_error *err) {
    const mo_enc *e = enc;
    const int64_t D = e->text_dim;
    const int64_t *ids = NULL, *ib = NULL, *ab = NULL, *piece = NULL;
    int64_t n_ids = 0, n_ib = 0, n_ab = 0, ib_tok = 0, ab_tok = 0;
    tsr_status s = tsr__input_ids(inputs, &ids, &n_ids, err);
    if (!s) s = get_bounds(inputs, "image_bound", n_ids, &ib, &n_ib, &ib_tok, err);
    if (!s) s = get_bounds(inputs, "audio_bounds", n_ids, &ab, &n_ab, &ab_tok, err);
    if (s) return s;
    const tsr_tensor *tgt = tsr_tensor_list_get(inputs, "tgt_sizes");
    const int64_t Q = e->has_vision ? e->rs.n_query : 0;
    const tsr_tensor *feats = tsr_tensor_list_get(inputs, "audio_features");
    const tsr_tensor *lens = NULL;
    float *img = NULL, *aud = NULL;
    int64_t n_img = 0, n_aud = 0;
    int64_t *piece_rows = NULL;
    mo_span *sp = NULL;
    tsr_tensor embeds = {0}, spans = {0};

    /* images: the slices' rows fill the image_bound ranges in order */
    if (tgt) {
        if ((s = tsr__input_get(inputs, "tgt_sizes", TSR_DTYPE_I64, &tgt, err))) goto done;
        if (tgt->ndim != 2 || tgt->shape[1] != 2 || tgt->shape[0] > MAX_SLICES) {
            s = TSR_FAIL(err, TSR_ERR_SHAPE, "tgt_sizes has %d dims [%lld, ...], expected "
                         "[slices <= %d, 2]", (int)tgt->ndim,
                         (long long)(tgt->ndim ? tgt->shape[0] : 0), MAX_SLICES);
            goto done;
        }
        n_img = tgt->shape[0] * (Q ? Q : 1);
    }
    {   /* one pixel_values.<i> per slice, no more */
        char name[48];
        const int64_t n_sl = tgt ? tgt->shape[0] : 0;
        snprintf(name, sizeof name, "pixel_values.%lld", (long long)n_sl);
        if (tsr_tensor_list_get(inputs, name)) {
            s = TSR_FAIL(err, TSR_ERR_SHAPE, "the processor output has %s, tgt_sizes [%lld, 2] "
                         "lists %lld slices", name, (long long)n_sl, (long long)n_sl);
            goto done;
        }
    }
    if (n_img > 0) {
        if (!e->has_vision) {
            s = TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "minicpmo: this checkpoint has no vision "
                         "module (init_vision false)");
            goto done;
        }
        if (ib_tok != n_img) {
            s = TSR_FAIL(err, TSR_ERR_SHAPE, "image_bound covers %lld tokens, tgt_sizes [%lld, 2] "
                         "gives %lld slices x %d rows = %lld", (long long)ib_tok,
                         (long long)tgt->shape[0], (long long)tgt->shape[0], (int)e->rs.n_query,
                         (long long)n_img);
            goto done;
        }
        const double t0 = tsr__now_ms();
        if ((s = encode_images(e, pool, inputs, tgt, &img, err))) goto done;
        if (image_ms) *image_ms += tsr__now_ms() - t0;
    } else {
        n_ib = 0; /* no image features: the reference leaves those tokens as text */
    }

    /* audio: all pieces' rows fill the audio_bounds ranges in order */
    if (feats) {
        if (!e->has_audio) {
            s = TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "minicpmo: this checkpoint has no audio "
                         "module (init_audio false)");
            goto done;
        }
        if ((s = tsr__input_get(inputs, "audio_features", TSR_DTYPE_F32, &feats, err)) ||
            (s = tsr__input_get(inputs, "audio_feature_lens", TSR_DTYPE_I64, &lens, err)))
            goto done;
        const double t0 = tsr__now_ms();
        if ((s = encode_audio(e, pool, feats, lens, &aud, &n_aud, &piece_rows, err))) goto done;
        if (audio_ms) *audio_ms += tsr__now_ms() - t0;
        piece = piece_rows;
        if (ab_tok != n_aud) {
            s = TSR_FAIL(err, TSR_ERR_SHAPE, "audio_bounds covers %lld tokens, audio_features "
                         "[%lld, %lld, %lld] with audio_feature_lens gives %lld rows",
                         (long long)ab_tok, (long long)feats->shape[0], (long long)feats->shape[1],
                         (long long)feats->shape[2], (long long)n_aud);
            goto done;
        }
        if (!e->chunk_input) { /* one bound per piece, of the piece's length */
            if (n_ab != feats->shape[0]) {
                s = TSR_FAIL(err, TSR_ERR_SHAPE, "audio_bounds [%lld, 2] lists %lld ranges, "
                             "audio_features holds %lld pieces (chunk_input false)",
                             (long long)n_ab, (long long)n_ab, (long long)feats->shape[0]);
                goto done;
            }
            for (int64_t b = 0; b < n_ab; b++)
                if (ab[2 * b + 1] - ab[2 * b] != piece[b]) {
                    s = TSR_FAIL(err, TSR_ERR_SHAPE, "audio_bounds[%lld] covers %lld tokens, "
                                 "audio piece %lld gives %lld rows", (long long)b,
                                 (long long)(ab[2 * b + 1] - ab[2 * b]), (long long)b,
                                 (long long)piece[b]);
                    goto done;
                }
        }
    } else {
        n_ab = 0;
    }

    /* spans in input_ids order */
    const int64_t n_sp = n_ib + n_ab;
    if (n_sp == 0) goto done;
    if (!(sp = tsr__calloc((size_t)n_sp, sizeof *sp))) {
        s = TSR_FAIL(err, TSR_ERR_OOM, "%lld spans", (long long)n_sp);
        goto done;
    }
    int64_t k = 0, at = 0;
    for (int64_t i = 0; i < n_ib; i++, k++) {
        sp[k] = (mo_span){ib[2 * i], ib[2 * i + 1] - ib[2 * i], img + at * D};
        at += sp[k].n;
    }
    at = 0;
    for (int64_t i = 0; i < n_ab; i++, k++) {
        sp[k] = (mo_span){ab[2 * i], ab[2 * i + 1] - ab[2 * i], aud + at * D};
        at += sp[k].n;
    }
    qsort(sp, (size_t)n_sp, sizeof *sp, span_cmp);
    int64_t rows = 0, m = 0;
    for (int64_t i = 0; i < n_sp; i++) {
        if (i && sp[i].start < sp[i - 1].start + sp[i - 1].n) {
            s = TSR_FAIL(err, TSR_ERR_SHAPE, "media ranges [%lld, %lld) and [%lld, %lld) of "
                         "image_bound / audio_bounds overlap", (long long)sp[i - 1].start,
                         (long long)(sp[i - 1].start + sp[i - 1].n), (long long)sp[i].start,
                         (long long)(sp[i].start + sp[i].n));
            goto done;
        }
        rows += sp[i].n;
        if (sp[i].n) m++;
    }
    if (rows == 0) goto done;
    const int64_t es[2] = {rows, D}, ss[2] = {m, 2};
    if ((s = tsr_tensor_alloc(&embeds, TSR_DTYPE_F32, 2, es, err)) ||
        (s = tsr_tensor_alloc(&spans, TSR_DTYPE_I64, 2, ss, err)))
        goto done;
    float *dst = embeds.data;
    int64_t *sv = spans.data;
    for (int64_t i = 0, j = 0; i < n_sp; i++) {
        if (!sp[i].n) continue;
        memcpy(dst, sp[i].src, (size_t)(sp[i].n * D) * sizeof *dst);
        dst += sp[i].n * D;
        sv[2 * j] = sp[i].start;
        sv[2 * j + 1] = sp[i].n;
        j++;
    }
    if (!(s = tsr_tensor_list_add(out, "embeds", &embeds, err)))
        s = tsr_tensor_list_add(out, "embed_spans", &spans, err);
done:
    tsr_tensor_free(&embeds);
    tsr_tensor_free(&spans);
    tsr__free(sp);
    tsr__free(img);
    tsr__free(aud);
    tsr__free(piece_rows);
    return s;
}

static const char *const k_prefixes[] = {"vpm.", "resampler.", "apm.", "audio_projection_layer.",
                                         NULL};
/* tts.*: the checkpoint's speech decoder (Tessera produces text only). */
static const char *const k_unread[] = {"tts.", NULL};

const tsr__encoder_ops tsr__minicpmo_encoder = {"minicpmo", k_prefixes, NULL, mo_load,
                                                mo_free, mo_encode, k_unread};
