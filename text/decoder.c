/* The text decoder forward pass (Llama / Mistral / Qwen2 layout, MLlama's gated
 * cross-attention blocks) over a session's KV cache. */
#include "decoder.h"

#include <math.h>
#include <string.h>
#include <unistd.h>


/* Query rows per attention work item: scores of a block are one (ATT_ROWS, keys) matrix. */
#define ATT_ROWS 64

struct tsr_session {
    const tsr_model *m;
    int64_t n_ctx, n_batch, n_past;
    int64_t pos_next; /* RoPE position of the next token without explicit position_ids */
    tsr__pool *pool;
    /* Run state, allocated once; B = n_batch. */
    float *k_cache;  /* (n_layers, n_ctx, kv_dim) */
    float *v_cache;  /* (n_layers, n_ctx, kv_dim) */
    float *x;        /* (B, dim) residual stream */
    float *xb;       /* (B, dim) normed input of a sublayer */
    float *q;        /* (B, q_dim) */
    float *att_out;  /* (B, q_dim) */
    float *proj;     /* (B, dim) output of o_proj / down_proj */
    float *hb;       /* (B, ffn_dim) gate */
    float *hb2;      /* (B, ffn_dim) up */
    float *rope_cos; /* (B, head_dim/2) */
    float *rope_sin; /* (B, head_dim/2) */
    float *scores;   /* (n_threads, ATT_ROWS, n_ctx) attention weights, one block per worker */
    float *logits;   /* (vocab) last position */
    int has_logits;
    /* MLlama cross-attention, set by the decode call that brings the cross states. */
    int64_t n_media;     /* rows of the cross states; 0: none (cross blocks are skipped) */
    int64_t media_cap;   /* rows the buffers below hold */
    int64_t n_blocks;    /* mask blocks (image tiles) of n_media / n_blocks rows each */
    float *cross_k;      /* (n_cross, media_cap, kv_dim) k_proj + k_norm of the states */
    float *cross_v;      /* (n_cross, media_cap, kv_dim) */
    float *cross_scores; /* (n_threads, ATT_ROWS, media_cap) */
    uint8_t *mask_rows;  /* (n_batch, media_cap) blocks each token of the chunk attends to */
    uint8_t *mask_full;  /* (n_batch) 1: the token attends to some block (else all, MLP off) */
    uint8_t *mask_last;  /* (media_cap) the last token's row, repeated for later tokens */
    const uint8_t *in_mask; /* (n_ids, n_blocks) the current call's mask, or NULL */
};

tsr_session_params tsr_session_params_default(void) {
    tsr_session_params p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.n_batch = 256;
    return p;
}

tsr_decode_input tsr_decode_input_default(void) {
    tsr_decode_input in;
    memset(&in, 0, sizeof in);
    in.size = sizeof in;
    return in;
}

void tsr_session_free(tsr_session *s) {
    if (!s) return;
    tsr__pool_free(s->pool);
    float *bufs[] = {s->k_cache, s->v_cache, s->x,        s->xb,       s->q,      s->att_out,
                     s->proj,    s->hb,      s->hb2,      s->rope_cos, s->rope_sin, s->scores,
                     s->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) tsr__free(bufs[i]);
    tsr__free(s->cross_k);
    tsr__free(s->cross_v);
    tsr__free(s->cross_scores);
    tsr__free(s->mask_rows);
    tsr__free(s->mask_full);
    tsr__free(s->mask_last);
    tsr__free(s);
}

static float *alloc_f32(int64_t a, int64_t b, int64_t c, int *fail) {
    size_t n;
    if (*fail || a < 0 || b < 0 || c < 0 || !tsr__mul3_size((size_t)a, (size_t)b, (size_t)c, &n) ||
        !tsr__mul_size(n, sizeof(float), &n)) {
        *fail = 1;
        return NULL;
    }
    float *p = tsr__calloc(n ? n : 1, 1);
    if (!p) *fail = 1;
    return p;
}

tsr_status tsr_session_new(const tsr_model *m, const tsr_session_params *params,
                           tsr_session **out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!m) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "model is NULL");
    tsr_session_params p = tsr_session_params_default();
    if (params && params->size < sizeof(size_t))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "params->size is not set");
    if (params) memcpy(&p, params, params->size < sizeof p ? params->size : sizeof p);
    const tsr__decoder_config *c = &m->cfg;
    int64_t n_ctx = p.n_ctx ? p.n_ctx : (c->max_pos < 4096 ? c->max_pos : 4096);
    if (n_ctx < 1 || n_ctx > c->max_pos)
        return TSR_FAIL(err, TSR_ERR_LIMIT, "n_ctx %lld outside [1, %lld] (max_position_embeddings)",
                        (long long)n_ctx, (long long)c->max_pos);
    if (p.n_batch < 1 || p.n_batch > 65536)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "n_batch %lld outside [1, 65536]",
                        (long long)p.n_batch);
    int32_t nt = p.n_threads;
    if (nt < 0 || nt > 1024)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "n_threads %d outside [0, 1024]", nt);
    if (nt == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nt = n < 1 ? 1 : (n > 16 ? 16 : (int32_t)n);
    }
    int64_t B = p.n_batch < n_ctx ? p.n_batch : n_ctx;
    tsr_session *s = tsr__calloc(1, sizeof *s);
    if (!s) return TSR_FAIL(err, TSR_ERR_OOM, "session");
    s->m = m;
    s->n_ctx = n_ctx;
    s->n_batch = B;
    int64_t kvd = (int64_t)c->n_kv_heads * c->head_dim, qd = (int64_t)c->n_heads * c->head_dim;
    int fail = 0;
    s->k_cache = alloc_f32(c->n_layers, n_ctx, kvd, &fail);
    s->v_cache = alloc_f32(c->n_layers, n_ctx, kvd, &fail);
    s->x = alloc_f32(B, c->dim, 1, &fail);
    s->xb = alloc_f32(B, c->dim, 1, &fail);
    s->q = alloc_f32(B, qd, 1, &fail);
    s->att_out = alloc_f32(B, qd, 1, &fail);
    s->proj = alloc_f32(B, c->dim, 1, &fail);
    s->hb = alloc_f32(B, c->ffn_dim, 1, &fail);
    s->hb2 = alloc_f32(B, c->ffn_dim, 1, &fail);
    s->rope_cos = alloc_f32(B, c->head_dim / 2, 1, &fail);
    s->rope_sin = alloc_f32(B, c->head_dim / 2, 1, &fail);
    s->scores = alloc_f32(nt, ATT_ROWS, n_ctx, &fail);
    s->logits = alloc_f32(c->vocab, 1, 1, &fail);
    if (fail) {
        tsr_session_free(s);
        return TSR_FAIL(err, TSR_ERR_OOM, "KV cache and run state for n_ctx %lld, n_batch %lld",
                        (long long)n_ctx, (long long)B);
    }
    tsr__blas_init();
    s->pool = tsr__pool_new(nt);
    if (!s->pool) {
        tsr_session_free(s);
        return TSR_FAIL(err, TSR_ERR_OOM, "thread pool of %d threads", nt);
    }
    /* Per-worker slab that 16-bit weight rows are widened into for chunks of T > 1. */
    if (m->max_k16 && B > 1 &&
        tsr__pool_reserve(s->pool, (size_t)TSR__WSLAB_ROWS * (size_t)m->max_k16)) {
        tsr_session_free(s);
        return TSR_FAIL(err, TSR_ERR_OOM, "weight scratch of %d threads", nt);
    }
    *out = s;
    return TSR_OK;
}

void tsr_session_reset(tsr_session *s) {
    if (!s) return;
    s->n_past = 0;
    s->pos_next = 0;
    s->has_logits = 0;
    s->n_media = 0;
    s->n_blocks = 0;
}

const tsr_model *tsr__session_model(const tsr_session *s) { return s->m; }
tsr__pool *tsr__session_pool(tsr_session *s) { return s ? s->pool : NULL; }

tsr_status tsr__session_truncate(tsr_session *s, int64_t n, tsr_error *err) {
    if (!s || n < 0 || n > s->n_past)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "cannot keep %lld of %lld cached positions",
                        (long long)n, (long long)(s ? s->n_past : 0));
    s->n_past = n;
    s->pos_next = n;
    s->has_logits = 0;
    return TSR_OK;
}
int64_t tsr_session_n_past(const tsr_session *s) { return s ? s->n_past : 0; }
int64_t tsr_session_n_ctx(const tsr_session *s) { return s ? s->n_ctx : 0; }
const float *tsr_session_logits(const tsr_session *s) {
    return s && s->has_logits ? s->logits : NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Forward                                                                              */
/* ---------------------------------------------------------------------------------- */

typedef struct attn_job {
    tsr_session *s;
    int32_t layer;
    int64_t T;    /* tokens in the chunk */
    int64_t pos0; /* cache position of the chunk's first token */
} attn_job;

/* Causal attention of every (row block, head) of the chunk against the cache; the keys and
 * values of the chunk are already in the cache. */
static void attn_part(void *arg, int32_t worker, int32_t n_workers) {
    const attn_job *j = arg;
    tsr_session *s = j->s;
    const tsr__decoder_config *c = &s->m->cfg;
    int32_t hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    int64_t kvd = (int64_t)c->n_kv_heads * hd, qd = (int64_t)c->n_heads * hd;
    const float *kc = s->k_cache + (int64_t)j->layer * s->n_ctx * kvd;
    const float *vc = s->v_cache + (int64_t)j->layer * s->n_ctx * kvd;
    float *sc = s->scores + (int64_t)worker * ATT_ROWS * s->n_ctx;
    float scale = (float)(1.0 / sqrt((double)hd));
    int64_t n_blocks = (j->T + ATT_ROWS - 1) / ATT_ROWS, n_items = n_blocks * c->n_heads;
    for (int64_t it = worker; it < n_items; it += n_workers) {
        /* Last blocks (most keys) first, so the tail of the loop is the cheap work. */
        int64_t blk = n_blocks - 1 - it / c->n_heads;
        int32_t h = (int32_t)(it % c->n_heads), kh = h / group;
        int64_t t0 = blk * ATT_ROWS, rows = j->T - t0 < ATT_ROWS ? j->T - t0 : ATT_ROWS;
        tsr__attention_block(s->att_out + t0 * qd + (int64_t)h * hd, s->q + t0 * qd + (int64_t)h * hd,
                             qd, kc + (int64_t)kh * hd, vc + (int64_t)kh * hd, kvd, hd, rows,
                             j->pos0 + t0, c->sliding_window, scale, sc);
    }
}

typedef struct cross_job {
    tsr_session *s;
    int32_t slot; /* cross block index */
    int64_t T;
} cross_job;

/* Attention of every (row block, head) of the chunk to the cross K/V: the keys of a block the
 * token's mask row excludes weigh 0 (transformers adds finfo.min); a token that attends to no
 * block attends to all (its full-text-row mask zeroes the bias, the MLP output is dropped). */
static void cross_part(void *arg, int32_t worker, int32_t n_workers) {
    const cross_job *j = arg;
    tsr_session *s = j->s;
    const tsr__decoder_config *c = &s->m->cfg;
    int32_t hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    int64_t kvd = (int64_t)c->n_kv_heads * hd, qd = (int64_t)c->n_heads * hd, n = s->n_media;
    int64_t nb = s->n_blocks;
    const float *kc = s->cross_k + (int64_t)j->slot * s->media_cap * kvd;
    const float *vc = s->cross_v + (int64_t)j->slot * s->media_cap * kvd;
    float *sc = s->cross_scores + (int64_t)worker * ATT_ROWS * s->media_cap;
    float scale = (float)(1.0 / sqrt((double)hd));
    int64_t n_blocks = (j->T + ATT_ROWS - 1) / ATT_ROWS, n_items = n_blocks * c->n_heads;
    for (int64_t it = worker; it < n_items; it += n_workers) {
        int64_t blk = it / c->n_heads;
        int32_t h = (int32_t)(it % c->n_heads), kh = h / group;
        int64_t t0 = blk * ATT_ROWS, rows = j->T - t0 < ATT_ROWS ? j->T - t0 : ATT_ROWS;
        tsr__attention_masked_blocks(s->att_out + t0 * qd + (int64_t)h * hd,
                                     s->q + t0 * qd + (int64_t)h * hd, qd, kc + (int64_t)kh * hd,
                                     vc + (int64_t)kh * hd, kvd, hd, rows, n,
                                     s->mask_rows + t0 * s->media_cap, s->media_cap, nb,
                                     s->mask_full + t0, scale, sc);
    }
}

/* MLlama gated cross-attention block over the chunk in s->x (mask rows already set):
 *   x += tanh(attn_gate) * o_proj(cross_attn(q_norm(q_proj(norm(x)))))
 *   x += tanh(mlp_gate) * full_row * mlp(norm(x)) */
static void cross_block(tsr_session *s, const tsr__decoder_layer *ly, int64_t T) {
    const tsr__decoder_config *c = &s->m->cfg;
    int32_t hd = c->head_dim;
    int64_t qd = (int64_t)c->n_heads * hd, D = c->dim;
    for (int64_t t = 0; t < T; t++)
        tsr__rmsnorm(s->xb + t * D, s->x + t * D, ly->attn_norm, D, c->norm_eps);
    tsr__matmul_wt(s->pool, s->q, s->xb, ly->wq, NULL, T, D, qd);
    for (int64_t i = 0; i < T * c->n_heads; i++)
        tsr__rmsnorm(s->q + i * hd, s->q + i * hd, ly->q_norm, hd, c->norm_eps);
    cross_job cj = {s, ly->cross_slot, T};
    tsr__pool_run(s->pool, cross_part, &cj);
    tsr__matmul_wt(s->pool, s->proj, s->att_out, ly->wo, NULL, T, qd, D);
    float g = ly->attn_gate_tanh;
    for (int64_t i = 0; i < T * D; i++) s->x[i] += g * s->proj[i];
    for (int64_t t = 0; t < T; t++)
        tsr__rmsnorm(s->xb + t * D, s->x + t * D, ly->ffn_norm, D, c->norm_eps);
    tsr__matmul_wt(s->pool, s->hb, s->xb, ly->w_gate, NULL, T, D, c->ffn_dim);
    tsr__matmul_wt(s->pool, s->hb2, s->xb, ly->w_up, NULL, T, D, c->ffn_dim);
    tsr__swiglu(s->pool, s->hb, s->hb2, T * c->ffn_dim);
    tsr__matmul_wt(s->pool, s->proj, s->hb, ly->w_down, NULL, T, c->ffn_dim, D);
    g = ly->mlp_gate_tanh;
    for (int64_t t = 0; t < T; t++) {
        if (!s->mask_full[t]) continue; /* full_text_row_masked_out_mask is 0 */
        for (int64_t i = t * D; i < (t + 1) * D; i++) s->x[i] += g * s->proj[i];
    }
}

/* One chunk of T <= n_batch tokens whose embeddings are in s->x, at cache positions n_past..
 * RoPE positions: pos (n_rows, stride) from the caller (row r of M-RoPE drives the frequencies
 * of mrope_section[r]; one row drives all), or NULL for pos_next... */
static void forward_chunk(tsr_session *s, int64_t T, const int64_t *pos, int64_t stride,
                          int32_t n_rows) {
    const tsr_model *m = s->m;
    const tsr__decoder_config *c = &m->cfg;
    int32_t hd = c->head_dim, half = hd / 2;
    int64_t kvd = (int64_t)c->n_kv_heads * hd, qd = (int64_t)c->n_heads * hd;
    int32_t row_of_end[3] = {half, half, half}; /* frequency i takes the first row r with i < end */
    if (c->mrope && n_rows == 3) {
        row_of_end[0] = c->mrope_section[0];
        row_of_end[1] = row_of_end[0] + c->mrope_section[1];
    }
    for (int64_t t = 0; t < T; t++) {
        int32_t r = 0;
        for (int32_t i = 0; i < half; i++) {
            while (r < 2 && i >= row_of_end[r]) r++;
            /* transformers: position_ids.float() * inv_freq, in float32 */
            float p = pos ? (float)pos[r * stride + t] : (float)(s->pos_next + t);
            float f = p * m->inv_freq[i];
            s->rope_cos[t * half + i] = cosf(f);
            s->rope_sin[t * half + i] = sinf(f);
        }
    }
    for (int32_t l = 0; l < c->n_layers; l++) {
        const tsr__decoder_layer *ly = &m->layers[l];
        if (ly->cross) {
            /* Without cross states transformers skips the block (text-only path). */
            if (s->n_media) cross_block(s, ly, T);
            continue;
        }
        float *kc = s->k_cache + ((int64_t)l * s->n_ctx + s->n_past) * kvd;
        float *vc = s->v_cache + ((int64_t)l * s->n_ctx + s->n_past) * kvd;
        for (int64_t t = 0; t < T; t++)
            tsr__rmsnorm(s->xb + t * c->dim, s->x + t * c->dim, ly->attn_norm, c->dim, c->norm_eps);
        tsr__matmul_wt(s->pool, s->q, s->xb, ly->wq, ly->bq, T, c->dim, qd);
        tsr__matmul_wt(s->pool, kc, s->xb, ly->wk, ly->bk, T, c->dim, kvd);
        tsr__matmul_wt(s->pool, vc, s->xb, ly->wv, ly->bv, T, c->dim, kvd);
        for (int64_t t = 0; t < T; t++) {
            const float *cs = s->rope_cos + t * half, *sn = s->rope_sin + t * half;
            for (int32_t h = 0; h < c->n_heads; h++)
                tsr__rope_apply(s->q + t * qd + (int64_t)h * hd, cs, sn, hd);
            for (int32_t h = 0; h < c->n_kv_heads; h++)
                tsr__rope_apply(kc + t * kvd + (int64_t)h * hd, cs, sn, hd);
        }
        attn_job aj = {s, l, T, s->n_past};
        tsr__pool_run(s->pool, attn_part, &aj);
        tsr__matmul_wt(s->pool, s->proj, s->att_out, ly->wo, ly->bo, T, qd, c->dim);
        for (int64_t i = 0; i < T * c->dim; i++) s->x[i] += s->proj[i];
        for (int64_t t = 0; t < T; t++)
            tsr__rmsnorm(s->xb + t * c->dim, s->x + t * c->dim, ly->ffn_norm, c->dim, c->norm_eps);
        tsr__matmul_wt(s->pool, s->hb, s->xb, ly->w_gate, NULL, T, c->dim, c->ffn_dim);
        tsr__matmul_wt(s->pool, s->hb2, s->xb, ly->w_up, NULL, T, c->dim, c->ffn_dim);
        tsr__swiglu(s->pool, s->hb, s->hb2, T * c->ffn_dim);
        tsr__matmul_wt(s->pool, s->proj, s->hb, ly->w_down, NULL, T, c->ffn_dim, c->dim);
        for (int64_t i = 0; i < T * c->dim; i++) s->x[i] += s->proj[i];
    }
    s->n_past += T;
    if (!pos) s->pos_next += T;
}

static tsr_status check_input(const tsr_session *s, const tsr_decode_input *in, tsr_error *err) {
    const tsr__decoder_config *c = &s->m->cfg;
    if (in->size < sizeof(size_t)) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "in->size is not set");
    if (in->n_ids < 1 || !in->ids)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "no input ids (n_ids %lld)", (long long)in->n_ids);
    if ((in->cross_states || in->cross_mask) && !c->n_cross)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "cross-attention states are not supported by the %s decoder (it has no "
                        "cross-attention layers)", c->model_type);
    int64_t n_media = s->n_media;
    if (in->cross_states) {
        const tsr_tensor *t = in->cross_states;
        if (s->n_media)
            return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                            "the session already holds cross-attention states; a second set needs "
                            "tsr_session_reset");
        if (t->dtype != TSR_DTYPE_F32 || t->ndim < 1 || t->ndim > TSR_MAX_DIMS || !t->data ||
            t->shape[t->ndim - 1] != c->dim || !tsr_tensor_is_contiguous(t))
            return TSR_FAIL(err, TSR_ERR_SHAPE,
                            "cross_states must be contiguous F32 [..., %d] (hidden_size)", c->dim);
        n_media = 1;
        for (int32_t d = 0; d + 1 < t->ndim && n_media <= (1 << 22); d++)
            n_media = t->shape[d] >= 0 && t->shape[d] <= (1 << 22) ? n_media * t->shape[d]
                                                                     : (1 << 22) + 1;
        if (n_media < 1 || n_media > (1 << 22))
            return TSR_FAIL(err, TSR_ERR_LIMIT, "cross_states has %lld rows, [1, 2^22] allowed",
                            (long long)n_media);
    }
    if (in->cross_mask) {
        const tsr_tensor *t = in->cross_mask;
        if (!n_media)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                            "cross_mask without cross-attention states (in this call or before)");
        if ((t->dtype != TSR_DTYPE_I64 && t->dtype != TSR_DTYPE_I32 && t->dtype != TSR_DTYPE_U8) ||
            t->ndim < 1 || t->ndim > TSR_MAX_DIMS || !t->data || !tsr_tensor_is_contiguous(t))
            return TSR_FAIL(err, TSR_ERR_SHAPE, "cross_mask must be contiguous I64, I32 or U8");
        int32_t d0 = t->ndim >= 3 && t->shape[0] == 1 && t->shape[1] == in->n_ids ? 1 : 0;
        int64_t nb = 1;
        for (int32_t d = d0 + 1; d < t->ndim && nb <= n_media; d++)
            nb = t->shape[d] >= 0 && t->shape[d] <= n_media ? nb * t->shape[d] : n_media + 1;
        if (t->shape[d0] != in->n_ids || nb < 1 || nb > n_media || n_media % nb)
            return TSR_FAIL(err, TSR_ERR_SHAPE,
                            "cross_mask must be [n_ids (%lld), blocks...] with the blocks dividing "
                            "the %lld cross-state rows",
                            (long long)in->n_ids, (long long)n_media);
    }
    if (in->n_ids > s->n_ctx - s->n_past)
        return TSR_FAIL(err, TSR_ERR_LIMIT,
                        "%lld tokens do not fit the context: %lld of n_ctx %lld used",
                        (long long)in->n_ids, (long long)s->n_past, (long long)s->n_ctx);
    if (in->position_ids) {
        if (in->n_pos_rows != 1 && !(c->mrope && in->n_pos_rows == 3))
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                            "position_ids has %d rows; the %s decoder takes 1%s", in->n_pos_rows,
                            c->model_type, c->mrope ? " or 3 (M-RoPE)" : "");
        for (int64_t i = 0; i < (int64_t)in->n_pos_rows * in->n_ids; i++)
            if (in->position_ids[i] < 0 || in->position_ids[i] > INT32_MAX)
                return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                                "position_ids[%lld][%lld] = %lld outside [0, 2^31)",
                                (long long)(i / in->n_ids), (long long)(i % in->n_ids),
                                (long long)in->position_ids[i]);
    }
    for (int64_t i = 0; i < in->n_ids; i++)
        if (in->ids[i] < 0 || in->ids[i] >= c->n_embed)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "ids[%lld] = %d outside [0, %d)",
                            (long long)i, in->ids[i], c->n_embed);
    if (in->n_spans && !in->spans)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "spans is NULL with n_spans %zu", in->n_spans);
    int64_t end = 0;
    for (size_t i = 0; i < in->n_spans; i++) {
        const tsr_embed_span *sp = &in->spans[i];
        if (!sp->data || sp->n_tokens < 1 || sp->start < end || sp->start > in->n_ids ||
            sp->n_tokens > in->n_ids - sp->start)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                            "spans[%zu] (start %lld, n_tokens %lld) is empty, overlaps, is "
                            "unsorted or lies outside the %lld ids",
                            i, (long long)sp->start, (long long)sp->n_tokens, (long long)in->n_ids);
        end = sp->start + sp->n_tokens;
    }
    return TSR_OK;
}

/* Grows the cross-attention buffers to n_media rows; on failure the old ones stay. */
static tsr_status cross_reserve(tsr_session *s, int64_t n_media, tsr_error *err) {
    if (n_media <= s->media_cap) return TSR_OK;
    const tsr__decoder_config *c = &s->m->cfg;
    int64_t kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int fail = 0;
    float *k = alloc_f32(c->n_cross, n_media, kvd, &fail);
    float *v = alloc_f32(c->n_cross, n_media, kvd, &fail);
    float *sc = alloc_f32(tsr__pool_size(s->pool), ATT_ROWS, n_media, &fail);
    uint8_t *rows = NULL, *full = NULL, *last = NULL;
    size_t nr;
    if (!fail && tsr__mul_size((size_t)s->n_batch, (size_t)n_media, &nr)) {
        rows = tsr__malloc(nr);
        full = tsr__malloc((size_t)s->n_batch);
        last = tsr__malloc((size_t)n_media);
    }
    if (fail || !rows || !full || !last) {
        tsr__free(k);
        tsr__free(v);
        tsr__free(sc);
        tsr__free(rows);
        tsr__free(full);
        tsr__free(last);
        return TSR_FAIL(err, TSR_ERR_OOM, "cross-attention K/V for %lld rows", (long long)n_media);
    }
    tsr__free(s->cross_k);
    tsr__free(s->cross_v);
    tsr__free(s->cross_scores);
    tsr__free(s->mask_rows);
    tsr__free(s->mask_full);
    tsr__free(s->mask_last);
    s->cross_k = k;
    s->cross_v = v;
    s->cross_scores = sc;
    s->mask_rows = rows;
    s->mask_full = full;
    s->mask_last = last;
    s->media_cap = n_media;
    return TSR_OK;
}

/* k_proj + k_norm and v_proj of the cross states for every cross block, once per prompt. */
static void cross_states_kv(tsr_session *s, const float *states, int64_t n_media) {
    const tsr_model *m = s->m;
    const tsr__decoder_config *c = &m->cfg;
    int32_t hd = c->head_dim;
    int64_t kvd = (int64_t)c->n_kv_heads * hd;
    for (int32_t l = 0; l < c->n_layers; l++) {
        const tsr__decoder_layer *ly = &m->layers[l];
        if (!ly->cross) continue;
        float *k = s->cross_k + (int64_t)ly->cross_slot * s->media_cap * kvd;
        float *v = s->cross_v + (int64_t)ly->cross_slot * s->media_cap * kvd;
        tsr__matmul_wt(s->pool, k, states, ly->wk, NULL, n_media, c->dim, kvd);
        tsr__matmul_wt(s->pool, v, states, ly->wv, NULL, n_media, c->dim, kvd);
        for (int64_t i = 0; i < n_media * c->n_kv_heads; i++)
            tsr__rmsnorm(k + i * hd, k + i * hd, ly->k_norm, hd, c->norm_eps);
    }
    s->n_media = n_media;
}

/* Value [i][b] of the caller's cross_mask (rows of n_blocks) is 1. */
static int mask_allows(const tsr_tensor *t, int64_t i, int64_t n_blocks, int64_t b) {
    int64_t at = i * n_blocks + b;
    switch (t->dtype) {
    case TSR_DTYPE_I64: return ((const int64_t *)t->data)[at] == 1;
    case TSR_DTYPE_I32: return ((const int32_t *)t->data)[at] == 1;
    default: return ((const uint8_t *)t->data)[at] == 1;
    }
}

/* Mask rows of ids [i0, i0 + T) into mask_rows / mask_full. */
static void cross_mask_rows(tsr_session *s, const tsr_tensor *mask, int64_t i0, int64_t T) {
    int64_t nb = s->n_blocks;
    for (int64_t t = 0; t < T; t++) {
        uint8_t *row = s->mask_rows + t * s->media_cap, any = 0;
        for (int64_t b = 0; b < nb; b++) {
            row[b] = mask ? (uint8_t)mask_allows(mask, i0 + t, nb, b) : s->mask_last[b];
            any |= row[b];
        }
        s->mask_full[t] = any;
    }
}

tsr_status tsr_session_decode(tsr_session *s, const tsr_decode_input *in, float *logits,
                              size_t logits_len, tsr_error *err) {
    if (!s || !in) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "session or input is NULL");
    if (in->size < sizeof(size_t)) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "in->size is not set");
    /* Fields past the caller's size keep their defaults. */
    tsr_decode_input inl = tsr_decode_input_default();
    memcpy(&inl, in, in->size < sizeof inl ? in->size : sizeof inl);
    in = &inl;
    tsr_status st = check_input(s, in, err);
    if (st) return st;
    const tsr_model *m = s->m;
    const tsr__decoder_config *c = &m->cfg;
    size_t need = (size_t)c->vocab * (in->logits_all ? (size_t)in->n_ids : 1);
    if (logits && logits_len < need)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "logits holds %zu floats, %zu needed",
                        logits_len, need);
    if (in->cross_states) {
        int64_t n_media = tsr_tensor_numel(in->cross_states) / c->dim;
        if ((st = cross_reserve(s, n_media, err))) return st;
        cross_states_kv(s, in->cross_states->data, n_media);
        s->n_blocks = 1;
        s->mask_last[0] = 1;
    }
    if (in->cross_mask) {
        /* check_input: the dims after n_ids multiply to the block count. */
        int64_t nb = tsr_tensor_numel(in->cross_mask) / in->n_ids;
        s->n_blocks = nb;
    }
    size_t span = 0;
    for (int64_t i0 = 0; i0 < in->n_ids; i0 += s->n_batch) {
        int64_t T = in->n_ids - i0 < s->n_batch ? in->n_ids - i0 : s->n_batch;
        for (int64_t t = 0; t < T; t++) {
            int64_t i = i0 + t;
            while (span < in->n_spans && in->spans[span].start + in->spans[span].n_tokens <= i)
                span++;
            if (span < in->n_spans && in->spans[span].start <= i)
                memcpy(s->x + t * c->dim,
                       in->spans[span].data + (i - in->spans[span].start) * c->dim,
                       (size_t)c->dim * sizeof(float));
            else
                tsr__wmat_row(s->x + t * c->dim, m->tok_embed, in->ids[i], c->dim);
        }
        if (s->n_media) cross_mask_rows(s, in->cross_mask, i0, T);
        forward_chunk(s, T, in->position_ids ? in->position_ids + i0 : NULL, in->n_ids,
                      in->n_pos_rows);
        if (in->logits_all && logits) {
            for (int64_t t = 0; t < T; t++)
                tsr__rmsnorm(s->xb + t * c->dim, s->x + t * c->dim, m->out_norm, c->dim,
                             c->norm_eps);
            tsr__matmul_wt(s->pool, logits + (size_t)i0 * (size_t)c->vocab, s->xb, m->lm_head,
                           NULL, T, c->dim, c->vocab);
        }
    }
    if (in->cross_mask) /* later ids without a mask repeat the last row, as generate() does */
        for (int64_t b = 0; b < s->n_blocks; b++)
            s->mask_last[b] = (uint8_t)mask_allows(in->cross_mask, in->n_ids - 1, s->n_blocks, b);
    if (in->position_ids) {
        /* Later tokens continue after the largest position (transformers' rope_deltas). */
        int64_t mx = 0;
        for (int64_t i = 0; i < (int64_t)in->n_pos_rows * in->n_ids; i++)
            mx = in->position_ids[i] > mx ? in->position_ids[i] : mx;
        s->pos_next = mx + 1;
    }
    /* Last position: x of the final chunk's last row (or the row already computed). */
    if (in->logits_all && logits) {
        memcpy(s->logits, logits + (size_t)(in->n_ids - 1) * (size_t)c->vocab,
               (size_t)c->vocab * sizeof(float));
    } else {
        int64_t last = (in->n_ids - 1) % s->n_batch;
        tsr__rmsnorm(s->xb, s->x + last * c->dim, m->out_norm, c->dim, c->norm_eps);
        tsr__matmul_wt(s->pool, s->logits, s->xb, m->lm_head, NULL, 1, c->dim, c->vocab);
    }
    s->has_logits = 1;
    if (logits && !in->logits_all) memcpy(logits, s->logits, (size_t)c->vocab * sizeof(float));
    return TSR_OK;
}
