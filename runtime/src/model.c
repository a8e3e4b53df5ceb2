/* Model loading: config.json + generation_config.json + (sharded) safetensors -> tsr_model.
 * Everything a file controls is validated here, so the decoder can trust the layout. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../text/decoder.h"
#include "../../vision/encoder.h"
#include "tessera_json.h"

#define MAX_LAYERS 4096
#define MAX_DIM (1 << 20)
#define MAX_VOCAB (1 << 24)

tsr_model_params tsr_model_params_default(void) {
    tsr_model_params p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.max_config_bytes = 16u << 20;
    return p;
}

/* ---------------------------------------------------------------------------------- */
/* Config                                                                               */
/* ---------------------------------------------------------------------------------- */

/* transformers' defaults of each config class, used where config.json omits a key. */
typedef struct family_defaults {
    const char *model_type;
    int64_t vocab, dim, ffn, layers, heads, kv_heads, max_pos;
    double eps;
    int64_t sliding_window; /* mistral: 4096 */
    double rope_theta;
} family_defaults;

static const family_defaults FAMILIES[] = {
    {"llama", 32000, 4096, 11008, 32, 32, -1, 2048, 1e-6, 0, 10000.0},
    {"mistral", 32000, 4096, 14336, 32, 32, 8, 4096 * 32, 1e-6, 4096, 10000.0},
    {"qwen2", 151936, 4096, 22016, 32, 32, 32, 32768, 1e-6, 0, 10000.0},
    /* Qwen2VLTextConfig (the language model of Qwen2VLForConditionalGeneration). */
    {"qwen2_vl", 152064, 8192, 29568, 80, 64, 8, 32768, 1e-5, 0, 1000000.0},
    /* MllamaTextConfig (the language model of MllamaForConditionalGeneration). */
    {"mllama", 128256, 4096, 14336, 40, 32, 8, 131072, 1e-5, 0, 500000.0},
};

/* Where a checkpoint keeps its language model: the config model_type, the decoder family
 * (NULL: text_config.model_type, text_default when absent), the hub names of the decoder's
 * tensors (prefix, lm_head) and the names transformers 5 writes instead (or NULL). */
typedef struct layout {
    const char *model_type, *text, *text_default;
    const char *pre, *head, *alt_pre, *alt_head;
    bool tie_default; /* tie_word_embeddings of the config class */
} layout;

static const layout LAYOUTS[] = {
    {"qwen2", "qwen2", NULL, "model.", "lm_head.weight", NULL, NULL, false},
    {"llama", "llama", NULL, "model.", "lm_head.weight", NULL, NULL, false},
    {"mistral", "mistral", NULL, "model.", "lm_head.weight", NULL, NULL, false},
    {"qwen2_vl", "qwen2_vl", NULL, "model.", "lm_head.weight", "model.language_model.", NULL,
     false},
    {"qwen2_5_vl", "qwen2_vl", NULL, "model.", "lm_head.weight", "model.language_model.", NULL,
     false},
    {"mllama", "mllama", NULL, "language_model.model.", "language_model.lm_head.weight",
     "model.language_model.", "lm_head.weight", false},
    {"llava_next", NULL, "llama", "language_model.model.", "language_model.lm_head.weight",
     "model.language_model.", "lm_head.weight", false},
    {"mistral3", NULL, "mistral", "language_model.model.", "language_model.lm_head.weight",
     "model.language_model.", "lm_head.weight", true},
    {"minicpmo", "qwen2", NULL, "llm.model.", "llm.lm_head.weight", NULL, NULL, false},
};

#define CFG "config.json"

static tsr_status get_i32(const cJSON *o, const char *key, int64_t dflt, int64_t min, int64_t max,
                          int32_t *out, tsr_error *err) {
    int64_t v;
    tsr_status st = tsr__json_int(o, key, dflt, min, max, &v, CFG, err);
    if (!st) *out = (int32_t)v;
    return st;
}

/* rope_parameters (transformers 5) or rope_theta + rope_scaling (earlier hub files). */
static tsr_status parse_rope(const cJSON *tc, double theta, tsr__decoder_config *c,
                             tsr_error *err) {
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(tc, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(tc, "rope_scaling");
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": \"rope_parameters\" must be an object");
    if (rs && !cJSON_IsNull(rs) && !cJSON_IsObject(rs))
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": \"rope_scaling\" must be an object or null");
    const cJSON *scal = cJSON_IsObject(rp) ? rp : (cJSON_IsObject(rs) ? rs : NULL);
    tsr_status st = tsr__json_double(tc, "rope_theta", theta, 1e-6, 1e12, &c->rope_theta, CFG,
                                     err);
    if (!st && cJSON_IsObject(rp))
        st = tsr__json_double(rp, "rope_theta", c->rope_theta, 1e-6, 1e12, &c->rope_theta,
                              CFG ": rope_parameters", err);
    if (st) return st;
    c->rope_type = TSR__ROPE_DEFAULT;
    c->rope_factor = 1.0;
    if (!scal) return TSR_OK;
    const char *type = NULL;
    st = tsr__json_string(scal, "rope_type", NULL, &type, CFG ": rope scaling", err);
    if (!st && !type) st = tsr__json_string(scal, "type", "default", &type, CFG ": rope scaling", err);
    if (st) return st;
    const char *sctx = CFG ": rope scaling";
    /* Qwen2-VL hub files say "mrope"; transformers computes it as "default". */
    if (!strcmp(type, "default") || (c->mrope && !strcmp(type, "mrope"))) return TSR_OK;
    if (!strcmp(type, "linear")) {
        c->rope_type = TSR__ROPE_LINEAR;
        return tsr__json_double(scal, "factor", NAN, 1e-6, 1e6, &c->rope_factor, sctx, err);
    }
    if (!strcmp(type, "llama3")) {
        c->rope_type = TSR__ROPE_LLAMA3;
        int64_t omp;
        if ((st = tsr__json_double(scal, "factor", NAN, 1e-6, 1e6, &c->rope_factor, sctx, err)) ||
            (st = tsr__json_double(scal, "low_freq_factor", NAN, 1e-6, 1e6,
                                   &c->rope_low_freq_factor, sctx, err)) ||
            (st = tsr__json_double(scal, "high_freq_factor", NAN, 1e-6, 1e6,
                                   &c->rope_high_freq_factor, sctx, err)) ||
            (st = tsr__json_int(scal, "original_max_position_embeddings", -1, 1, INT32_MAX, &omp,
                                sctx, err)))
            return st;
        if (omp < 0 || !isfinite(c->rope_factor) || !isfinite(c->rope_low_freq_factor) ||
            !isfinite(c->rope_high_freq_factor))
            return TSR_FAIL(err, TSR_ERR_FORMAT,
                            CFG ": llama3 rope scaling needs factor, low_freq_factor, "
                                "high_freq_factor and original_max_position_embeddings");
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return TSR_FAIL(err, TSR_ERR_FORMAT,
                            CFG ": llama3 rope scaling: high_freq_factor (%g) must exceed "
                                "low_freq_factor (%g)",
                            c->rope_high_freq_factor, c->rope_low_freq_factor);
        c->rope_orig_max_pos = omp;
        return TSR_OK;
    }
    return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, CFG ": rope type \"%s\" is not supported "
                    "(default, linear, llama3 are)", type);
}

/* Qwen2-VL: mrope_section (3 counts of head_dim/2 frequencies) in rope_parameters or the
 * legacy rope_scaling; transformers' default is [16, 24, 24]. */
static tsr_status parse_mrope(const cJSON *tc, tsr__decoder_config *c, tsr_error *err) {
    /* Qwen2VLTextConfig: rope_scaling, when given, replaces rope_parameters. */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(tc, "rope_scaling");
    if (!cJSON_IsObject(rp)) rp = cJSON_GetObjectItemCaseSensitive(tc, "rope_parameters");
    const cJSON *ms = cJSON_IsObject(rp) ? cJSON_GetObjectItemCaseSensitive(rp, "mrope_section")
                                         : NULL;
    int32_t sec[3] = {16, 24, 24};
    if (ms && !cJSON_IsNull(ms)) {
        if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) != 3)
            return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": mrope_section must be 3 integers");
        int i = 0;
        for (const cJSON *e = ms->child; e; e = e->next, i++) {
            double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
            if (!(d >= 0 && d <= MAX_DIM) || d != floor(d))
                return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": mrope_section must be 3 integers >= 0");
            sec[i] = (int32_t)d;
        }
    }
    if ((int64_t)sec[0] + sec[1] + sec[2] != c->head_dim / 2)
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        CFG ": mrope_section [%d, %d, %d] must sum to head_dim / 2 (%d)", sec[0],
                        sec[1], sec[2], c->head_dim / 2);
    memcpy(c->mrope_section, sec, sizeof sec);
    return TSR_OK;
}

static tsr_status parse_config(const cJSON *root, tsr__decoder_config *c, const layout **lay_out,
                               tsr_error *err) {
    memset(c, 0, sizeof *c);
    const char *mt = NULL;
    tsr_status st = tsr__json_string(root, "model_type", NULL, &mt, CFG, err);
    if (st) return st;
    if (!mt) return TSR_FAIL(err, TSR_ERR_FORMAT, CFG " has no \"model_type\"");
    const layout *lay = NULL;
    for (size_t i = 0; i < sizeof LAYOUTS / sizeof LAYOUTS[0]; i++)
        if (!strcmp(LAYOUTS[i].model_type, mt)) lay = &LAYOUTS[i];
    if (!lay)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        CFG ": model_type \"%s\" is not supported (qwen2, llama, mistral, qwen2_vl, "
                            "qwen2_5_vl, mllama, llava_next, mistral3, minicpmo are)", mt);
    *lay_out = lay;
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);
    /* A text decoder nested as text_config (multimodal checkpoints) takes precedence. */
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (!cJSON_IsObject(tc)) tc = root;
    const char *tf = lay->text;
    if (!tf && tc == root) tf = lay->text_default;
    if (!tf && (st = tsr__json_string(tc, "model_type", lay->text_default, &tf, CFG, err)))
        return st;
    const family_defaults *fam = NULL;
    for (size_t i = 0; i < sizeof FAMILIES / sizeof FAMILIES[0]; i++)
        if (!strcmp(FAMILIES[i].model_type, tf)) fam = &FAMILIES[i];
    if (!fam || (!lay->text && (!strcmp(tf, "mllama") || !strcmp(tf, "qwen2_vl"))))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        CFG ": text_config model_type \"%s\" is not supported (qwen2, llama, "
                            "mistral are)", tf);

    const char *act = NULL;
    if ((st = tsr__json_string(tc, "hidden_act", "silu", &act, CFG, err))) return st;
    if (strcmp(act, "silu"))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, CFG ": hidden_act \"%s\" (only silu)", act);
    if ((st = get_i32(tc, "vocab_size", fam->vocab, 1, MAX_VOCAB, &c->vocab, err)) ||
        (st = get_i32(tc, "hidden_size", fam->dim, 1, MAX_DIM, &c->dim, err)) ||
        (st = get_i32(tc, "intermediate_size", fam->ffn, 1, MAX_DIM, &c->ffn_dim, err)) ||
        (st = get_i32(tc, "num_hidden_layers", fam->layers, 1, MAX_LAYERS, &c->n_layers, err)) ||
        (st = get_i32(tc, "num_attention_heads", fam->heads, 1, MAX_DIM, &c->n_heads, err)))
        return st;
    if ((st = get_i32(tc, "num_key_value_heads", fam->kv_heads > 0 ? fam->kv_heads : c->n_heads,
                      1, MAX_DIM, &c->n_kv_heads, err)))
        return st;
    if (c->dim % c->n_heads && !cJSON_GetObjectItemCaseSensitive(tc, "head_dim"))
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        CFG ": num_attention_heads (%d) does not divide hidden_size (%d)",
                        c->n_heads, c->dim);
    c->mrope = !strcmp(tf, "qwen2_vl");
    int mllama = !strcmp(tf, "mllama");
    if (c->mrope || mllama) {
        /* Qwen2VLAttention and the Mllama attentions take hidden_size / num_attention_heads,
         * whatever head_dim says. */
        if (c->dim % c->n_heads)
            return TSR_FAIL(err, TSR_ERR_FORMAT,
                            CFG ": num_attention_heads (%d) does not divide hidden_size (%d)",
                            c->n_heads, c->dim);
        c->head_dim = c->dim / c->n_heads;
    } else if ((st = get_i32(tc, "head_dim", c->dim / c->n_heads, 1, MAX_DIM, &c->head_dim, err))) {
        return st;
    }
    if (c->head_dim % 2)
        return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": head_dim (%d) must be even for RoPE",
                        c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        CFG ": num_key_value_heads (%d) does not divide num_attention_heads (%d)",
                        c->n_kv_heads, c->n_heads);
    int64_t qdim;
    if (!tsr__mul_i64(c->n_heads, c->head_dim, &qdim) || qdim > MAX_DIM)
        return TSR_FAIL(err, TSR_ERR_LIMIT, CFG ": num_attention_heads * head_dim too large");
    int64_t mp;
    if ((st = tsr__json_int(tc, "max_position_embeddings", fam->max_pos, 1, (int64_t)1 << 40, &mp,
                            CFG, err)))
        return st;
    c->max_pos = mp;
    /* MllamaTextModel: embed_tokens holds 8 rows past the vocabulary (<|image|> is row
     * vocab_size); lm_head has vocab_size. */
    c->n_embed = c->vocab + (mllama ? 8 : 0);
    double eps;
    if ((st = tsr__json_double(tc, "rms_norm_eps", fam->eps, 0.0, 1.0, &eps, CFG, err))) return st;
    c->norm_eps = (float)eps;
    /* tie_word_embeddings (the config class's default where absent, e.g. true for
     * Mistral3Config) as transformers 5 applies it: lm_head is tied to the embeddings only
     * when the checkpoint lacks it (a stored lm_head is used, take_tensor). Older saves put
     * the flag in text_config; either one counts. */
    bool b, bt = false;
    if ((st = tsr__json_bool(root, "tie_word_embeddings", lay->tie_default, &b, CFG, err)))
        return st;
    if (tc != root && (st = tsr__json_bool(tc, "tie_word_embeddings", false, &bt, CFG, err)))
        return st;
    c->tied = b || bt;
    if (!strcmp(tf, "qwen2") || c->mrope) {
        c->qkv_bias = 1;
        if ((st = tsr__json_bool(tc, "use_sliding_window", false, &b, CFG, err))) return st;
        if (b)
            return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                            CFG ": qwen2 use_sliding_window=true is not supported");
    } else if (!strcmp(tf, "llama") || mllama) {
        if ((st = tsr__json_bool(tc, "attention_bias", false, &b, CFG, err))) return st;
        c->qkv_bias = c->o_bias = b;
        if ((st = tsr__json_bool(tc, "mlp_bias", false, &b, CFG, err))) return st;
        if (b) return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, CFG ": llama mlp_bias=true is not supported");
        int64_t tp;
        if ((st = tsr__json_int(tc, "pretraining_tp", 1, 1, 1 << 20, &tp, CFG, err))) return st;
    } else if (!strcmp(tf, "mistral")) {
        int64_t sw;
        if ((st = tsr__json_int(tc, "sliding_window", 0, 0, (int64_t)1 << 40, &sw, CFG, err)))
            return st;
        const cJSON *swj = cJSON_GetObjectItemCaseSensitive(tc, "sliding_window");
        c->sliding_window = swj ? sw : fam->sliding_window;
    }
    if ((st = parse_rope(tc, fam->rope_theta, c, err))) return st;
    return c->mrope ? parse_mrope(tc, c, err) : TSR_OK;
}

/* MllamaTextConfig.cross_attention_layers (default [3, 8, ..., 38]); like transformers, an
 * index outside [0, num_hidden_layers) names no layer. */
static tsr_status parse_cross_layers(const cJSON *root, tsr_model *m, tsr_error *err) {
    tsr__decoder_config *c = &m->cfg;
    if (strcmp(c->model_type, "mllama")) return TSR_OK;
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (!cJSON_IsObject(tc)) tc = root;
    m->is_cross = tsr__calloc((size_t)c->n_layers, 1);
    if (!m->is_cross) return TSR_FAIL(err, TSR_ERR_OOM, "cross-attention layer table");
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(tc, "cross_attention_layers");
    static const int dflt[] = {3, 8, 13, 18, 23, 28, 33, 38};
    if (!cl || cJSON_IsNull(cl)) {
        for (size_t i = 0; i < sizeof dflt / sizeof dflt[0]; i++)
            if (dflt[i] < c->n_layers) m->is_cross[dflt[i]] = 1;
    } else {
        if (!cJSON_IsArray(cl))
            return TSR_FAIL(err, TSR_ERR_FORMAT, CFG ": cross_attention_layers must be a list");
        for (const cJSON *e = cl->child; e; e = e->next) {
            double d = cJSON_IsNumber(e) ? e->valuedouble : NAN;
            if (!isfinite(d) || d != floor(d))
                return TSR_FAIL(err, TSR_ERR_FORMAT,
                                CFG ": cross_attention_layers must be integers");
            if (d >= 0 && d < c->n_layers) m->is_cross[(int32_t)d] = 1;
        }
    }
    c->n_cross = 0;
    for (int32_t i = 0; i < c->n_layers; i++) c->n_cross += m->is_cross[i];
    return TSR_OK;
}

void tsr__rope_inv_freq(const tsr__decoder_config *c, float *inv_freq) {
    int32_t half = c->head_dim / 2;
    /* torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all float32. */
    for (int32_t i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        inv_freq[i] = 1.0f / powf((float)c->rope_theta, e);
    }
    if (c->rope_type == TSR__ROPE_LINEAR) {
        for (int32_t i = 0; i < half; i++) inv_freq[i] = inv_freq[i] / (float)c->rope_factor;
    } else if (c->rope_type == TSR__ROPE_LLAMA3) {
        /* transformers' _compute_llama3_parameters. */
        float factor = (float)c->rope_factor, lo = (float)c->rope_low_freq_factor;
        float hi = (float)c->rope_high_freq_factor, old = (float)c->rope_orig_max_pos;
        float lo_wl = old / lo, hi_wl = old / hi;
        for (int32_t i = 0; i < half; i++) {
            float f = inv_freq[i];
            float wl = (float)(2.0 * M_PI) / f;
            float g = wl > lo_wl ? f / factor : f;
            if (!(wl < hi_wl) && !(wl > lo_wl)) {
                float smooth = (old / wl - lo) / (hi - lo);
                g = (1.0f - smooth) * g / factor + smooth * g;
            }
            inv_freq[i] = g;
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* EOS ids                                                                              */
/* ---------------------------------------------------------------------------------- */

static tsr_status add_eos_item(tsr_model *m, const cJSON *v, int32_t *cap, const char *ctx,
                               tsr_error *err) {
    if (!v || cJSON_IsNull(v)) return TSR_OK;
    const cJSON *one = v;
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
    if (cJSON_IsArray(v)) one = v->child;
    for (int i = 0; i < n && one; i++, one = cJSON_IsArray(v) ? one->next : NULL) {
        double d = cJSON_IsNumber(one) ? one->valuedouble : NAN;
        if (!(d >= 0 && d < m->cfg.vocab) || d != floor(d))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: \"eos_token_id\" must be ids in [0, %d)",
                            ctx, m->cfg.vocab);
        int32_t id = (int32_t)d;
        int dup = 0;
        for (size_t k = 0; k < m->n_eos; k++) dup |= m->eos[k] == id;
        if (dup) continue;
        if ((int32_t)m->n_eos == *cap) {
            int32_t nc = *cap ? *cap * 2 : 4;
            if (nc > 4096) return TSR_FAIL(err, TSR_ERR_LIMIT, "%s: too many eos ids", ctx);
            int32_t *ne = tsr__realloc(m->eos, (size_t)nc * sizeof *ne);
            if (!ne) return TSR_FAIL(err, TSR_ERR_OOM, "eos ids");
            m->eos = ne;
            *cap = nc;
        }
        m->eos[m->n_eos++] = id;
    }
    return TSR_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Weights                                                                              */
/* ---------------------------------------------------------------------------------- */

typedef struct expect {
    char name[128];
    int64_t shape[2];
    int32_t ndim;
    const float **dst;  /* vectors: F32 (16-bit ones converted at load) */
    tsr__wmat *wdst;    /* matrices: as stored */
    int optional;       /* lm_head of a tied model */
    int found;
} expect;

typedef struct loader {
    tsr_model *m;
    expect *ex;
    size_t n_ex;
    const tsr_model_params *params;
    const layout *lay;
    const tsr__encoder_ops *enc; /* the family's media encoder, or NULL */
    size_t done, total;
} loader;

static void add_expect(loader *L, const char *name, int64_t r, int64_t c, const float **dst) {
    expect *e = &L->ex[L->n_ex++];
    e->wdst = NULL;
    snprintf(e->name, sizeof e->name, "%s", name);
    e->shape[0] = r;
    e->shape[1] = c;
    e->ndim = c ? 2 : 1;
    e->dst = dst;
    e->optional = 0;
    e->found = 0;
}

static void add_expect_w(loader *L, const char *name, int64_t r, int64_t c, tsr__wmat *dst) {
    add_expect(L, name, r, c, NULL);
    L->ex[L->n_ex - 1].wdst = dst;
}

static tsr_status build_expect(loader *L, tsr_error *err) {
    const tsr__decoder_config *c = &L->m->cfg;
    size_t per = 13, n = (size_t)c->n_layers * per + 4;
    L->ex = tsr__calloc(n, sizeof *L->ex);
    L->m->layers = tsr__calloc((size_t)c->n_layers, sizeof *L->m->layers);
    if (!L->ex || !L->m->layers) return TSR_FAIL(err, TSR_ERR_OOM, "tensor table");
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    /* MLlama hub checkpoints nest the language model (names as the hub holds them;
     * transformers' in-memory names are mapped to these in take_tensor). */
    const char *pre = L->lay->pre;
    char nm[128];
    snprintf(nm, sizeof nm, "%sembed_tokens.weight", pre);
    add_expect_w(L, nm, c->n_embed, c->dim, &L->m->tok_embed);
    snprintf(nm, sizeof nm, "%snorm.weight", pre);
    add_expect(L, nm, c->dim, 0, &L->m->out_norm);
    add_expect_w(L, L->lay->head, c->vocab, c->dim, &L->m->lm_head);
    L->ex[L->n_ex - 1].optional = c->tied;
    int32_t slot = 0;
    for (int32_t i = 0; i < c->n_layers; i++) {
        tsr__decoder_layer *ly = &L->m->layers[i];
#define E(suffix, r, cc, field)                                           \
    do {                                                                  \
        snprintf(nm, sizeof nm, "%slayers.%d.%s", pre, (int)i, suffix);   \
        add_expect(L, nm, r, cc, &ly->field);                             \
    } while (0)
#define EW(suffix, r, cc, field)                                          \
    do {                                                                  \
        snprintf(nm, sizeof nm, "%slayers.%d.%s", pre, (int)i, suffix);   \
        add_expect_w(L, nm, r, cc, &ly->field);                           \
    } while (0)
        if (L->m->is_cross && L->m->is_cross[i]) {
            ly->cross = 1;
            ly->cross_slot = slot++;
            E("input_layernorm.weight", c->dim, 0, attn_norm);
            EW("cross_attn.q_proj.weight", q, c->dim, wq);
            EW("cross_attn.k_proj.weight", kv, c->dim, wk);
            EW("cross_attn.v_proj.weight", kv, c->dim, wv);
            EW("cross_attn.o_proj.weight", c->dim, q, wo);
            E("cross_attn.q_norm.weight", c->head_dim, 0, q_norm);
            E("cross_attn.k_norm.weight", c->head_dim, 0, k_norm);
            E("cross_attn_attn_gate", 1, 0, attn_gate);
            E("post_attention_layernorm.weight", c->dim, 0, ffn_norm);
            EW("mlp.gate_proj.weight", c->ffn_dim, c->dim, w_gate);
            EW("mlp.up_proj.weight", c->ffn_dim, c->dim, w_up);
            EW("mlp.down_proj.weight", c->dim, c->ffn_dim, w_down);
            E("cross_attn_mlp_gate", 1, 0, mlp_gate);
            continue;
        }
        E("input_layernorm.weight", c->dim, 0, attn_norm);
        EW("self_attn.q_proj.weight", q, c->dim, wq);
        EW("self_attn.k_proj.weight", kv, c->dim, wk);
        EW("self_attn.v_proj.weight", kv, c->dim, wv);
        EW("self_attn.o_proj.weight", c->dim, q, wo);
        if (c->qkv_bias) {
            E("self_attn.q_proj.bias", q, 0, bq);
            E("self_attn.k_proj.bias", kv, 0, bk);
            E("self_attn.v_proj.bias", kv, 0, bv);
        }
        if (c->o_bias) E("self_attn.o_proj.bias", c->dim, 0, bo);
        E("post_attention_layernorm.weight", c->dim, 0, ffn_norm);
        EW("mlp.gate_proj.weight", c->ffn_dim, c->dim, w_gate);
        EW("mlp.up_proj.weight", c->ffn_dim, c->dim, w_up);
        EW("mlp.down_proj.weight", c->dim, c->ffn_dim, w_down);
#undef E
#undef EW
    }
    return TSR_OK;
}

/* Names transformers ignores when loading these families. */
static int ignorable(const tsr__decoder_config *c, const char *name) {
    size_t n = strlen(name);
    const char *suf = "rotary_emb.inv_freq";
    if (n >= strlen(suf) && !strcmp(name + n - strlen(suf), suf)) return 1;
    /* The vision tower of a multimodal checkpoint is the vision encoder's to load. */
    if (c->mrope && (!strncmp(name, "visual.", 7) || !strncmp(name, "model.visual.", 13)))
        return 1;
    if (c->n_cross || !strcmp(c->model_type, "mllama")) {
        static const char *const skip[] = {"vision_model.", "multi_modal_projector.",
                                           "model.vision_model.", "model.multi_modal_projector."};
        for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
            if (!strncmp(name, skip[i], strlen(skip[i]))) return 1;
    }
    return 0;
}

/* A tensor of the media encoder (under one of its prefixes, stored or canonical). */
static int encoder_owns(const loader *L, const char *name) {
    const tsr__encoder_ops *e = L->enc;
    if (!e) return 0;
    for (const char *const *p = e->prefixes; p && *p; p++)
        if (!strncmp(name, *p, strlen(*p))) return 1;
    for (const char *const *a = e->aliases; a && a[0] && a[1]; a += 2)
        if (!strncmp(name, a[0], strlen(a[0]))) return 1;
    for (const char *const *p = e->unread; p && *p; p++)
        if (!strncmp(name, *p, strlen(*p))) return 1;
    return 0;
}

static expect *find_expect(loader *L, const char *name) {
    for (size_t i = 0; i < L->n_ex; i++)
        if (!strcmp(L->ex[i].name, name)) return &L->ex[i];
    return NULL;
}

static void shape_str(char *buf, size_t cap, int32_t ndim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int32_t i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static tsr_status take_tensor(loader *L, tsr_safetensors *st, const char *file, const char *name,
                              tsr_error *err) {
    tsr_model *m = L->m;
    /* transformers 5 writes the language model under other names (model.language_model.*,
     * lm_head.weight); they stand for the hub's. */
    const layout *lay = L->lay;
    char mapped[160];
    const char *key = name;
    if (lay->alt_pre && !strncmp(name, lay->alt_pre, strlen(lay->alt_pre)) &&
        (size_t)snprintf(mapped, sizeof mapped, "%s%s", lay->pre,
                         name + strlen(lay->alt_pre)) < sizeof mapped)
        key = mapped;
    else if (lay->alt_head && !strcmp(name, lay->alt_head))
        key = lay->head;
    expect *e = find_expect(L, key);
    if (!e) {
        if (ignorable(&m->cfg, name) || encoder_owns(L, name)) return TSR_OK;
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: unexpected tensor '%s' for model_type %s", file,
                        name, m->cfg.model_type);
    }
    if (e->found)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: tensor '%s' appears in more than one shard",
                        file, name);
    tsr_tensor t;
    tsr_error local = {0};
    tsr_status s = tsr_safetensors_get(st, name, &t, &local);
    if (s) return TSR_FAIL(err, s, "%s: %s", file, local.message);
    int ok = t.ndim == e->ndim;
    for (int32_t i = 0; ok && i < e->ndim; i++) ok = t.shape[i] == e->shape[i];
    if (!ok) {
        char a[96], b[96];
        shape_str(a, sizeof a, e->ndim, e->shape);
        shape_str(b, sizeof b, t.ndim, t.shape);
        return TSR_FAIL(err, TSR_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", file,
                        name, b, a);
    }
    int64_t n = tsr_tensor_numel(&t);
    if (e->wdst && (t.dtype == TSR_DTYPE_F32 || t.dtype == TSR_DTYPE_F16 ||
                    t.dtype == TSR_DTYPE_BF16)) {
        /* Matrices stay as stored (mmapped); the kernels widen 16-bit rows as they read. */
        e->wdst->data = t.data;
        e->wdst->type = t.dtype == TSR_DTYPE_F32 ? TSR__W_F32
                        : t.dtype == TSR_DTYPE_BF16 ? TSR__W_BF16 : TSR__W_F16;
        if (t.dtype != TSR_DTYPE_F32 && e->shape[1] > m->max_k16)
            m->max_k16 = (int32_t)e->shape[1];
    } else if (t.dtype == TSR_DTYPE_F32) {
        *e->dst = t.data;
    } else if (t.dtype == TSR_DTYPE_F16 || t.dtype == TSR_DTYPE_BF16) {
        /* Vectors are converted once at load; compute is F32. */
        float *f = tsr__malloc((size_t)n * sizeof *f);
        if (!f) return TSR_FAIL(err, TSR_ERR_OOM, "F32 copy of '%s' (%lld values)", name,
                                (long long)n);
        m->owned[m->n_owned++] = f;
        const uint16_t *h = t.data;
        if (t.dtype == TSR_DTYPE_F16)
            for (int64_t i = 0; i < n; i++) f[i] = tsr__f16_to_f32(h[i]);
        else
            for (int64_t i = 0; i < n; i++) f[i] = tsr__bf16_to_f32(h[i]);
        *e->dst = f;
    } else {
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16 are "
                        "supported)", file, name, tsr_dtype_name(t.dtype));
    }
    e->found = 1;
    L->done++;
    return TSR_OK;
}

static int safe_shard_name(const char *s) {
    if (!*s || strstr(s, "..") || strchr(s, '/') || strchr(s, '\\')) return 0;
    size_t n = strlen(s);
    return n > 12 && !strcmp(s + n - 12, ".safetensors");
}

static tsr_status open_shard(tsr_model *m, const char *dir, const char *file, tsr_error *err) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "path of '%s' too long", file);
    tsr_safetensors *st = NULL;
    tsr_error local = {0};
    tsr_status s = tsr_safetensors_open_file(path, &st, &local);
    if (s) return TSR_FAIL(err, s, "%s", local.message);
    m->files[m->n_files++] = st;
    return TSR_OK;
}

/* Shard file names from model.safetensors.index.json (each once, in first-seen order). */
static tsr_status open_index(tsr_model *m, const char *dir, const char *index_path,
                             uint64_t max_bytes, char ***names, size_t *n_names, tsr_error *err) {
    cJSON *j = NULL;
    tsr_status s = tsr__json_load(index_path, max_bytes, &j, err);
    if (s) return s;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child) {
        cJSON_Delete(j);
        return TSR_FAIL(err, TSR_ERR_FORMAT, "model.safetensors.index.json: no \"weight_map\"");
    }
    int n = cJSON_GetArraySize(wm);
    char **v = tsr__calloc((size_t)n, sizeof *v);
    size_t k = 0;
    if (!v) s = TSR_FAIL(err, TSR_ERR_OOM, "shard names");
    for (const cJSON *e = wm->child; !s && e; e = e->next) {
        if (!cJSON_IsString(e) || !safe_shard_name(e->valuestring)) {
            s = TSR_FAIL(err, TSR_ERR_FORMAT,
                         "model.safetensors.index.json: weight_map[\"%s\"] is not a .safetensors "
                         "file name in the model directory", e->string ? e->string : "");
            break;
        }
        int seen = 0;
        for (size_t i = 0; i < k && !seen; i++) seen = !strcmp(v[i], e->valuestring);
        if (seen) continue;
        size_t len = strlen(e->valuestring);
        v[k] = tsr__malloc(len + 1);
        if (!v[k]) {
            s = TSR_FAIL(err, TSR_ERR_OOM, "shard names");
            break;
        }
        memcpy(v[k++], e->valuestring, len + 1);
    }
    /* Every named tensor must be in its shard (checked after opening). */
    if (!s) {
        m->files = tsr__calloc(k, sizeof *m->files);
        if (!m->files) s = TSR_FAIL(err, TSR_ERR_OOM, "shards");
    }
    for (size_t i = 0; !s && i < k; i++) s = open_shard(m, dir, v[i], err);
    for (const cJSON *e = wm->child; !s && e; e = e->next) {
        size_t i = 0;
        while (i < k && strcmp(v[i], e->valuestring)) i++;
        tsr_tensor t;
        tsr_error local = {0};
        if (tsr_safetensors_get(m->files[i], e->string, &t, &local) == TSR_ERR_INVALID_ARG)
            s = TSR_FAIL(err, TSR_ERR_FORMAT,
                         "model.safetensors.index.json maps '%s' to %s, which does not hold it",
                         e->string, v[i]);
    }
    cJSON_Delete(j);
    *names = v;
    *n_names = k;
    (void)dir;
    return s;
}

void tsr_model_free(tsr_model *m) {
    if (!m) return;
    if (m->enc_ops && m->enc) m->enc_ops->free(m->enc);
    tsr__weights_free(m->weights);
    tsr_processor_free(m->proc);
    for (size_t i = 0; m->shard_names && i < m->n_files; i++) tsr__free(m->shard_names[i]);
    tsr__free(m->shard_names);
    for (size_t i = 0; i < m->n_files; i++) tsr_safetensors_close(m->files[i]);
    for (size_t i = 0; i < m->n_owned; i++) tsr__free(m->owned[i]);
    tsr__free(m->files);
    tsr__free(m->owned);
    tsr__free(m->layers);
    tsr__free(m->is_cross);
    tsr__free(m->inv_freq);
    tsr__free(m->eos);
    tsr__free(m);
}

static int progress(loader *L, const char *what) {
    if (!L->params->progress) return 0;
    float f = L->total ? (float)L->done / (float)L->total : 0.0f;
    return L->params->progress(f > 1.0f ? 1.0f : f, what, L->params->progress_user);
}

/* generation_config.json's sampling settings over transformers' defaults (do_sample false:
 * greedy; top_k 50 when sampling). A null value counts as absent. */
static tsr_status parse_sampling(const cJSON *gen, tsr_sampling_params *sp, tsr_error *err) {
    static const char *const G = "generation_config.json";
    *sp = tsr_sampling_params_default();
    sp->top_k = 50;
    bool do_sample = false;
    double v;
    int64_t k;
    tsr_status s = TSR_OK;
#define PRESENT(key) (gen && cJSON_GetObjectItemCaseSensitive(gen, key) && \
                      !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(gen, key)))
    if (PRESENT("do_sample")) s = tsr__json_bool(gen, "do_sample", false, &do_sample, G, err);
    if (!s && PRESENT("temperature") &&
        !(s = tsr__json_double(gen, "temperature", 1.0, 0.0, 1e6, &v, G, err)))
        sp->temperature = (float)v;
    if (!s && PRESENT("top_k") && !(s = tsr__json_int(gen, "top_k", 50, 0, 1 << 30, &k, G, err)))
        sp->top_k = (int32_t)k;
    if (!s && PRESENT("top_p") && !(s = tsr__json_double(gen, "top_p", 1.0, 0.0, 1.0, &v, G, err)))
        sp->top_p = (float)v;
    if (!s && PRESENT("min_p") && !(s = tsr__json_double(gen, "min_p", 0.0, 0.0, 1.0, &v, G, err)))
        sp->min_p = (float)v;
    if (!s && PRESENT("repetition_penalty") &&
        !(s = tsr__json_double(gen, "repetition_penalty", 1.0, 1e-6, 1e6, &v, G, err)))
        sp->repetition_penalty = (float)v;
#undef PRESENT
    if (!s && !do_sample) sp->temperature = 0.0f; /* greedy */
    return s;
}

static int file_exists(const char *dir, const char *name) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) return 0;
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static tsr_status load_optional(const char *dir, const char *name, uint64_t max, cJSON **out,
                                tsr_error *err) {
    *out = NULL;
    if (!file_exists(dir, name)) return TSR_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return tsr__json_load(path, max, out, err);
}

/* The media encoder (when the checkpoint holds its tensors) and the processor (when the
 * directory has a tokenizer). A checkpoint without any encoder tensor is a text model. */
static tsr_status load_media(tsr_model *m, const char *dir, const cJSON *config,
                             const tsr_model_params *params, const tsr__encoder_ops *enc,
                             tsr_error *err) {
    tsr_status s = tsr__weights_new(m->files, (const char *const *)m->shard_names, m->n_files,
                                    &m->weights, err);
    for (const char *const *a = enc ? enc->aliases : NULL; !s && a && a[0] && a[1]; a += 2)
        s = tsr__weights_alias(m->weights, a[0], a[1], err);
    size_t n_pre = 0;
    int present = 0;
    for (const char *const *p = enc ? enc->prefixes : NULL; !s && p && *p; p++, n_pre++)
        present |= tsr__weights_has_prefix(m->weights, *p);
    cJSON *pre = NULL, *proc = NULL, *tok = NULL;
    if (!s && present) {
        s = load_optional(dir, "preprocessor_config.json", params->max_config_bytes, &pre, err);
        if (!s) s = load_optional(dir, "processor_config.json", params->max_config_bytes, &proc, err);
        if (!s) s = load_optional(dir, "tokenizer_config.json", params->max_config_bytes, &tok, err);
        tsr__model_configs mc = {dir, config, pre, proc, tok};
        if (!s) s = enc->load(&mc, m->weights, m->cfg.dim, &m->enc, err);
        if (!s) m->enc_ops = enc;
        if (!s) s = tsr__weights_check_unused(m->weights, enc->prefixes, n_pre, m->cfg.model_type, err);
    }
    cJSON_Delete(pre);
    cJSON_Delete(proc);
    cJSON_Delete(tok);
    if (!s && file_exists(dir, "tokenizer.json")) {
        tsr_processor_params pp = tsr_processor_params_default();
        pp.allow_unknown_template = 1;
        tsr_error local = {0};
        s = m->enc_ops ? tsr_processor_load(dir, &pp, &m->proc, &local)
                       : tsr__processor_load_text(dir, &pp, &m->proc, &local);
        if (s) s = TSR_FAIL(err, s, "processor: %s", local.message);
    }
    if (!s && m->enc_ops) m->media_kinds = tsr__processor_media_kinds(m->proc);
    return s;
}

tsr_status tsr_model_load(const char *model_dir, const tsr_model_params *params, tsr_model **out,
                          tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!model_dir) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "model_dir is NULL");
    tsr_model_params dp = tsr_model_params_default();
    if (params && params->size < sizeof(size_t))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "params->size is not set");
    if (params) {
        memcpy(&dp, params, params->size < sizeof dp ? params->size : sizeof dp);
        dp.size = sizeof dp;
    }
    loader L = {0};
    L.params = &dp;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/config.json", model_dir) >= sizeof path)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "model_dir is too long");
    tsr_model *m = tsr__calloc(1, sizeof *m);
    if (!m) return TSR_FAIL(err, TSR_ERR_OOM, "model");
    L.m = m;
    cJSON *cfg = NULL, *gen = NULL;
    char **shards = NULL;
    size_t n_shards = 0;
    int32_t eos_cap = 0;
    tsr_status s = tsr__json_load(path, dp.max_config_bytes, &cfg, err);
    if (!s) s = parse_config(cfg, &m->cfg, &L.lay, err);
    if (!s) L.enc = tsr__encoder_find(m->cfg.model_type);
    if (!s) s = parse_cross_layers(cfg, m, err);
    if (!s && m->cfg.max_pos > ((int64_t)1 << 31))
        s = TSR_FAIL(err, TSR_ERR_LIMIT, CFG ": max_position_embeddings %lld is too large",
                     (long long)m->cfg.max_pos);
    if (!s) {
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(cfg, "text_config");
        s = add_eos_item(m, cJSON_GetObjectItemCaseSensitive(cfg, "eos_token_id"), &eos_cap, CFG,
                         err);
        if (!s && cJSON_IsObject(tc))
            s = add_eos_item(m, cJSON_GetObjectItemCaseSensitive(tc, "eos_token_id"), &eos_cap,
                             CFG, err);
    }
    if (!s) {
        snprintf(path, sizeof path, "%s/generation_config.json", model_dir);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            s = tsr__json_load(path, dp.max_config_bytes, &gen, err);
            if (!s)
                s = add_eos_item(m, cJSON_GetObjectItemCaseSensitive(gen, "eos_token_id"),
                                 &eos_cap, "generation_config.json", err);
        }
    }
    if (!s) s = parse_sampling(gen, &m->sampling, err);
    if (!s) {
        m->inv_freq = tsr__malloc((size_t)(m->cfg.head_dim / 2) * sizeof(float));
        if (!m->inv_freq) s = TSR_FAIL(err, TSR_ERR_OOM, "rope table");
        else tsr__rope_inv_freq(&m->cfg, m->inv_freq);
    }
    if (!s) s = build_expect(&L, err);
    if (!s) {
        L.total = L.n_ex;
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", model_dir);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            s = open_index(m, model_dir, path, dp.max_config_bytes, &shards, &n_shards, err);
        } else {
            m->files = tsr__calloc(1, sizeof *m->files);
            if (!m->files) s = TSR_FAIL(err, TSR_ERR_OOM, "shards");
            else s = open_shard(m, model_dir, "model.safetensors", err);
        }
    }
    if (!s) {
        m->owned = tsr__calloc(L.n_ex ? L.n_ex : 1, sizeof *m->owned);
        if (!m->owned) s = TSR_FAIL(err, TSR_ERR_OOM, "tensor table");
    }
    for (size_t fi = 0; !s && fi < m->n_files; fi++) {
        const char *fname = shards ? shards[fi] : "model.safetensors";
        if (progress(&L, fname)) {
            s = TSR_FAIL(err, TSR_ERR_CANCELLED, "cancelled by the progress callback");
            break;
        }
        int64_t n = tsr_safetensors_count(m->files[fi]);
        for (int64_t i = 0; !s && i < n; i++)
            s = take_tensor(&L, m->files[fi], fname, tsr_safetensors_name(m->files[fi], i), err);
    }
    for (size_t i = 0; !s && i < L.n_ex; i++)
        if (!L.ex[i].found && !L.ex[i].optional)
            s = TSR_FAIL(err, TSR_ERR_FORMAT, "model_type %s: tensor '%s' is missing",
                         m->cfg.model_type, L.ex[i].name);
    if (!s) {
        if (!m->lm_head.data) m->lm_head = m->tok_embed; /* tied: its first vocab rows */
        for (int32_t i = 0; i < m->cfg.n_layers; i++)
            if (m->layers[i].cross) {
                /* transformers applies tanh to the f32 gate parameters in every forward */
                m->layers[i].attn_gate_tanh = tanhf(m->layers[i].attn_gate[0]);
                m->layers[i].mlp_gate_tanh = tanhf(m->layers[i].mlp_gate[0]);
            }
    }
    if (shards && !m->shard_names) {
        m->shard_names = shards; /* the model keeps them for messages (n_files of them) */
        for (size_t i = m->n_files; i < n_shards; i++) tsr__free(shards[i]);
        shards = NULL;
    }
    if (!s) s = load_media(m, model_dir, cfg, &dp, L.enc, err);
    if (!s && progress(&L, "done"))
        s = TSR_FAIL(err, TSR_ERR_CANCELLED, "cancelled by the progress callback");
    tsr__free(L.ex);
    cJSON_Delete(cfg);
    cJSON_Delete(gen);
    if (s) {
        tsr_model_free(m);
        return s;
    }
    *out = m;
    return TSR_OK;
}

const char *tsr_model_type(const tsr_model *m) { return m ? m->cfg.model_type : ""; }
int32_t tsr_model_vocab_size(const tsr_model *m) { return m ? m->cfg.vocab : 0; }
int32_t tsr_model_hidden_size(const tsr_model *m) { return m ? m->cfg.dim : 0; }
int64_t tsr_model_max_positions(const tsr_model *m) { return m ? m->cfg.max_pos : 0; }
size_t tsr_model_eos_ids(const tsr_model *m, const int32_t **ids) {
    if (ids) *ids = m ? m->eos : NULL;
    return m ? m->n_eos : 0;
}

const tsr_processor *tsr_model_processor(const tsr_model *m) { return m ? m->proc : NULL; }
uint32_t tsr_model_media_kinds(const tsr_model *m) { return m ? m->media_kinds : 0; }
tsr_sampling_params tsr_model_sampling_defaults(const tsr_model *m) {
    if (m) return m->sampling;
    tsr_sampling_params p = tsr_sampling_params_default();
    p.temperature = 0.0f;
    return p;
}
