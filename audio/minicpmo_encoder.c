/*
 * audio/minicpmo_encoder.c - MiniCPM-o 2.6's audio encoder and connector, as
 * MiniCPMO.get_audio_embedding computes them (non-streaming): the Whisper encoder "apm"
 * (conv1 + GELU, conv2 stride 2 + GELU, embed_positions, pre-norm layers with the chunk /
 * padding attention mask, layer_norm), audio_projection_layer (linear1, ReLU, linear2) and
 * AvgPool1d(audio_pool_step). See minicpmo_encoder.h.
 */
#include "minicpmo_encoder.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tessera_json.h"

#define CFG "config.json"

void tsr__minicpmo_apm_free(tsr__minicpmo_apm *a) {
    if (!a) return;
    tsr__free(a->layers);
    memset(a, 0, sizeof *a);
}

tsr_status tsr__minicpmo_apm_load(const cJSON *config, tsr__weights *w, int32_t text_dim,
                                  tsr__minicpmo_apm *a, tsr_error *err) {
    memset(a, 0, sizeof *a);
    const cJSON *ac = cJSON_GetObjectItemCaseSensitive(config, "audio_config");
    if (ac && cJSON_IsNull(ac)) ac = NULL;
    if (ac && !cJSON_IsObject(ac))
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": audio_config must be an object");
    /* WhisperConfig's defaults where audio_config leaves a field out */
    int64_t mels = 80, dim = 256, layers = 4, heads = 4, ffn = 1536, max_pos = 1500, pool = 2;
    const char *act = "gelu";
    const char *ctx = CFG " audio_config";
    tsr_status s = TSR_OK;
    if (ac) {
        if (!s) s = tsr__json_int(ac, "num_mel_bins", mels, 1, 1024, &mels, ctx, err);
        if (!s) s = tsr__json_int(ac, "d_model", dim, 1, 1 << 16, &dim, ctx, err);
        if (!s) s = tsr__json_int(ac, "encoder_layers", layers, 0, 1024, &layers, ctx, err);
        if (!s) s = tsr__json_int(ac, "encoder_attention_heads", heads, 1, 1024, &heads, ctx, err);
        if (!s) s = tsr__json_int(ac, "encoder_ffn_dim", ffn, 1, 1 << 20, &ffn, ctx, err);
        if (!s) s = tsr__json_int(ac, "max_source_positions", max_pos, 1, 1 << 20, &max_pos, ctx,
                                  err);
        if (!s) s = tsr__json_string(ac, "activation_function", act, &act, ctx, err);
    }
    if (!s) s = tsr__json_int(config, "audio_pool_step", pool, 1, 1 << 16, &pool, CFG, err);
    if (!s) s = tsr__json_double(config, "audio_chunk_length", 1.0, -1e9, 1e9, &a->chunk_length,
                                 CFG, err);
    if (s) return s;
    if (dim % heads)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: d_model %lld is not a multiple of "
                        "encoder_attention_heads %lld", ctx, (long long)dim, (long long)heads);
    /* MultiModalProjector(in_dim = encoder_ffn_dim // 4) takes the encoder's d_model rows */
    if (ffn / 4 != dim)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: the audio projection takes encoder_ffn_dim "
                        "// 4 = %lld features, the encoder gives d_model %lld", ctx,
                        (long long)(ffn / 4), (long long)dim);
    a->n_mels = (int32_t)mels;
    a->dim = (int32_t)dim;
    a->n_heads = (int32_t)heads;
    a->n_layers = (int32_t)layers;
    a->ffn = (int32_t)ffn;
    a->max_pos = (int32_t)max_pos;
    a->pool_step = (int32_t)pool;
    a->text_dim = text_dim;
    if ((s = tsr__act_parse(act, CFG " audio_config.activation_function", &a->act, err)))
        return s;
    const int64_t shp[2] = {max_pos, dim};
    s = tsr__linear_load(w, "apm.conv1", mels * 3, dim, 1, &a->conv1, err);
    if (!s) s = tsr__linear_load(w, "apm.conv2", dim * 3, dim, 1, &a->conv2, err);
    if (!s) s = tsr__weights_f32(w, "apm.embed_positions.weight", 2, shp, &a->pos, err);
    if (!s) s = tsr__norm_load(w, "apm.layer_norm", TSR__LAYERNORM, dim, 1e-5f, &a->norm, err);
    if (!s) s = tsr__linear_load(w, "audio_projection_layer.linear1", dim, text_dim, 1, &a->proj1,
                                 err);
    if (!s) s = tsr__linear_load(w, "audio_projection_layer.linear2", text_dim, text_dim, 1,
                                 &a->proj2, err);
    if (!s && layers > 0 && !(a->layers = tsr__calloc((size_t)layers, sizeof *a->layers)))
        s = TSR_FAIL(err, TSR_ERR_OOM, "%lld audio layers", (long long)layers);
    for (int64_t i = 0; !s && i < layers; i++) {
        tsr__vit_block *b = &a->layers[i];
        char p[96];
        b->dim = (int32_t)dim;
        b->n_heads = (int32_t)heads;
        b->head_dim = (int32_t)(dim / heads);
        b->act = a->act;
#define LIN(name, n_in, n_out, bias, dst)                                                 \
    if (!s) {                                                                             \
        snprintf(p, sizeof p, "apm.layers.%lld.%s", (long long)i, name);                  \
        s = tsr__linear_load(w, p, n_in, n_out, bias, dst, err);                          \
    }
#define NORM(name, dst)                                                                   \
    if (!s) {                                                                             \
        snprintf(p, sizeof p, "apm.layers.%lld.%s", (long long)i, name);                  \
        s = tsr__norm_load(w, p, TSR__LAYERNORM, dim, 1e-5f, dst, err);                   \
    }
        NORM("self_attn_layer_norm", &b->norm1)
        LIN("self_attn.q_proj", dim, dim, 1, &b->q)
        LIN("self_attn.k_proj", dim, dim, 0, &b->k)
        LIN("self_attn.v_proj", dim, dim, 1, &b->v)
        LIN("self_attn.out_proj", dim, dim, 1, &b->o)
        NORM("final_layer_norm", &b->norm2)
        LIN("fc1", dim, ffn, 1, &b->fc1)
        LIN("fc2", ffn, dim, 1, &b->fc2)
#undef LIN
#undef NORM
    }
    if (s) tsr__minicpmo_apm_free(a);
    return s;
}

int64_t tsr__minicpmo_apm_tokens(const tsr__minicpmo_apm *a, int64_t mel_len) {
    const int64_t cnn = (mel_len - 1) / 2 + 1;
    return cnn < a->pool_step ? 0 : (cnn - a->pool_step) / a->pool_step + 1;
}

/* cols (T, C * 3) for a kernel-3 conv with padding 1 and `stride` over x, where x(c, t) is
 * x[c * xs_c + t * xs_t] for t in [0, L). */
static void im2col3(float *cols, const float *x, int64_t C, int64_t L, int64_t xs_c, int64_t xs_t,
                    int64_t T, int64_t stride) {
    for (int64_t t = 0; t < T; t++) {
        float *r = cols + t * C * 3;
        for (int64_t c = 0; c < C; c++)
            for (int64_t k = 0; k < 3; k++) {
                const int64_t src = t * stride + k - 1;
                r[c * 3 + k] = src >= 0 && src < L ? x[c * xs_c + src * xs_t] : 0.0f;
            }
    }
}

tsr_status tsr__minicpmo_apm_run(const tsr__minicpmo_apm *a, tsr__pool *pool, const float *mel,
                                 int64_t L, int64_t mel_len, float *out, tsr_error *err) {
    if (L < 1 || mel_len < 1 || mel_len > L)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "audio_feature_lens %lld is outside the %lld frames "
                        "of audio_features", (long long)mel_len, (long long)L);
    const int64_t T = (L - 1) / 2 + 1, D = a->dim, M = a->n_mels, E = a->text_dim;
    if (T > a->max_pos)
        return TSR_FAIL(err, TSR_ERR_LIMIT, "audio of %lld frames gives %lld positions, the "
                        "audio encoder has %d (embed_positions)", (long long)L, (long long)T,
                        (int)a->max_pos);
    const int64_t n_tok = tsr__minicpmo_apm_tokens(a, mel_len);
    const int64_t n_pool = T < a->pool_step ? 0 : (T - a->pool_step) / a->pool_step + 1;
    if (n_tok > n_pool)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "audio_feature_lens %lld needs %lld pooled rows, "
                        "%lld frames give %lld", (long long)mel_len, (long long)n_tok,
                        (long long)L, (long long)n_pool);
    const int64_t C = M > D ? M : D, W = E > D ? E : D;
    size_t n_cols = 0, n_h1 = 0, n_x = 0, n_mask = 0, n_p = 0;
    if (!tsr__mul_size((size_t)(L > T ? L : T), (size_t)(C * 3), &n_cols) ||
        !tsr__mul_size((size_t)L, (size_t)D, &n_h1) || !tsr__mul_size((size_t)T, (size_t)D, &n_x) ||
        !tsr__mul_size((size_t)T, (size_t)T, &n_mask) || !tsr__mul_size((size_t)T, (size_t)W, &n_p))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "audio of %lld frames is too large", (long long)L);
    float *cols = tsr__malloc(n_cols * sizeof *cols), *h1 = tsr__malloc(n_h1 * sizeof *h1);
    float *x = tsr__malloc(n_x * sizeof *x), *mask = tsr__malloc(n_mask * sizeof *mask);
    float *p1 = tsr__malloc(n_p * sizeof *p1), *p2 = tsr__malloc(n_p * sizeof *p2);
    tsr_status s = TSR_OK;
    if (!cols || !h1 || !x || !mask || !p1 || !p2) {
        s = TSR_FAIL(err, TSR_ERR_OOM, "audio encoder scratch (%lld frames)", (long long)L);
        goto done;
    }
    /* conv1 (stride 1) over mel (M, L), conv2 (stride 2) over h1 (L, D) */
    im2col3(cols, mel, M, L, L, 1, L, 1);
    tsr__linear_run(pool, &a->conv1, h1, cols, L);
    tsr__act_run(TSR__ACT_GELU, h1, L * D);
    im2col3(cols, h1, D, L, 1, D, T, 2);
    tsr__linear_run(pool, &a->conv2, x, cols, T);
    tsr__act_run(TSR__ACT_GELU, x, T * D);
    tsr__add_inplace(x, a->pos, T * D);

    /* subsequent_chunk_mask(T, chunk) or'ed with the padding mask (key >= mel_len) */
    const int64_t chunk = a->chunk_length > 0 ? (int64_t)(a->chunk_length * 50.0) : 0;
    for (int64_t i = 0; i < T; i++) {
        int64_t end = T;
        if (chunk > 0) {
            end = (i / chunk + 1) * chunk;
            if (end > T) end = T;
        }
        for (int64_t j = 0; j < T; j++)
            mask[i * T + j] = j < end && j < mel_len ? 0.0f : -INFINITY;
    }
    tsr__vit_opts o = {0};
    o.mask.add = mask;
    for (int32_t l = 0; !s && l < a->n_layers; l++)
        s = tsr__vit_block_run(pool, &a->layers[l], x, T, &o, err);
    if (s) goto done;
    tsr__norm_run(&a->norm, x, x, T);

    /* audio_projection_layer, then AvgPool1d over time */
    tsr__linear_run(pool, &a->proj1, p1, x, T);
    for (int64_t i = 0; i < T * E; i++) p1[i] = p1[i] > 0.0f ? p1[i] : 0.0f;
    tsr__linear_run(pool, &a->proj2, p2, p1, T);
    const int32_t k = a->pool_step;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t c = 0; c < E; c++) {
            float acc = 0.0f;
            for (int32_t i = 0; i < k; i++) acc += p2[(t * k + i) * E + c];
            out[t * E + c] = acc / (float)k;
        }
done:
    tsr__free(cols);
    tsr__free(h1);
    tsr__free(x);
    tsr__free(mask);
    tsr__free(p1);
    tsr__free(p2);
    return s;
}
