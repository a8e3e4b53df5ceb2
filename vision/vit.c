/*
 * vit.c - building blocks of the vision and audio encoders (see vit.h).
 */
#include "vit.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

tsr_status tsr__linear_load(tsr__weights *w, const char *prefix, int64_t n_in, int64_t n_out,
                            int bias, tsr__linear *out, tsr_error *err) {
    memset(out, 0, sizeof *out);
    out->n_in = n_in;
    out->n_out = n_out;
    tsr_status s = tsr__weights_matf(w, n_out, n_in, &out->w, err, "%s.weight", prefix);
    if (!s && bias) s = tsr__weights_vecf(w, n_out, &out->b, err, "%s.bias", prefix);
    return s;
}

void tsr__linear_run(tsr__pool *p, const tsr__linear *l, float *out, const float *x, int64_t T) {
    if (l->w.type != TSR__W_F32 && T > 1) {
        /* Room for each worker's whole share of rows (one sgemm per worker), down to the
         * minimum slab when that cannot be had; without any, the kernel goes per row. */
        int32_t nw = tsr__pool_size(p);
        size_t share = (size_t)((l->n_out + nw - 1) / nw + 16) * (size_t)l->n_in;
        if (tsr__pool_reserve(p, share))
            (void)tsr__pool_reserve(p, (size_t)TSR__WSLAB_ROWS * (size_t)l->n_in);
    }
    tsr__matmul_wt(p, out, x, l->w, l->b, T, l->n_in, l->n_out);
}

tsr_status tsr__norm_load(tsr__weights *w, const char *prefix, tsr__norm_kind kind, int64_t n,
                          float eps, tsr__norm *out, tsr_error *err) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->n = n;
    out->eps = eps;
    tsr_status s = tsr__weights_vecf(w, n, &out->w, err, "%s.weight", prefix);
    if (!s && kind == TSR__LAYERNORM)
        s = tsr__weights_vecf(w, n, &out->b, err, "%s.bias", prefix);
    return s;
}

void tsr__norm_run(const tsr__norm *nm, float *out, const float *x, int64_t T) {
    int64_t n = nm->n;
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * n;
        float *o = out + t * n;
        if (nm->kind == TSR__RMSNORM) {
            tsr__rmsnorm(o, xr, nm->w, n, nm->eps);
            continue;
        }
        double mean = 0.0;
        for (int64_t i = 0; i < n; i++) mean += xr[i];
        mean /= (double)n;
        double var = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double d = (double)xr[i] - mean;
            var += d * d;
        }
        var /= (double)n;
        float m = (float)mean, r = (float)(1.0 / sqrt(var + (double)nm->eps));
        for (int64_t i = 0; i < n; i++) {
            float v = (xr[i] - m) * r * nm->w[i];
            o[i] = nm->b ? v + nm->b[i] : v;
        }
    }
}

tsr_status tsr__act_parse(const char *name, const char *what, tsr__act *out, tsr_error *err) {
    static const struct {
        const char *name;
        tsr__act act;
    } known[] = {{"gelu", TSR__ACT_GELU},
                 {"gelu_new", TSR__ACT_GELU_TANH},
                 {"gelu_pytorch_tanh", TSR__ACT_GELU_TANH},
                 {"gelu_fast", TSR__ACT_GELU_TANH},
                 {"quick_gelu", TSR__ACT_QUICK_GELU},
                 {"silu", TSR__ACT_SILU},
                 {"swish", TSR__ACT_SILU}};
    for (size_t i = 0; name && i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(name, known[i].name)) {
            *out = known[i].act;
            return TSR_OK;
        }
    return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "%s: activation \"%s\" is not supported (gelu, "
                    "gelu_new, gelu_pytorch_tanh, quick_gelu, silu)", what, name ? name : "null");
}

void tsr__act_run(tsr__act a, float *x, int64_t n) { tsr__act_apply(NULL, a, x, n); }

void tsr__rope_rows(float *x, int64_t ldx, int64_t T, int32_t n_heads, int32_t head_dim,
                    const float *cos_, const float *sin_) {
    int32_t half = head_dim / 2;
    for (int64_t t = 0; t < T; t++) {
        const float *c = cos_ + t * head_dim, *s = sin_ + t * head_dim;
        for (int32_t h = 0; h < n_heads; h++) {
            float *v = x + t * ldx + (int64_t)h * head_dim;
            for (int32_t i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half];
                v[i] = x1 * c[i] - x2 * s[i];
                v[i + half] = x2 * c[i + half] + x1 * s[i + half];
            }
        }
    }
}

void tsr__add_inplace(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* ---------------------------------------------------------------------------------- */
/* Row-parallel forms                                                                   */
/* ---------------------------------------------------------------------------------- */

typedef enum { J_NORM, J_ROPE, J_ACT, J_ADD } job_kind;

typedef struct rows_job {
    job_kind kind;
    int64_t n;           /* rows (NORM, ROPE) or elements (ACT, ADD) */
    float *x;
    const float *y;      /* NORM: input; ACT: multiplier or NULL; ADD: addend */
    const tsr__norm *nm;
    int64_t ldx;
    int32_t n_heads, head_dim;
    const float *cos_, *sin_;
    tsr__act act;
} rows_job;

static void rows_part(void *arg, int32_t w, int32_t nw) {
    const rows_job *j = arg;
    int64_t a, b;
    tsr__pool_split(j->n, j->kind == J_NORM || j->kind == J_ROPE ? 1 : 64, w, nw, &a, &b);
    if (b <= a) return;
    switch (j->kind) {
    case J_NORM:
        tsr__norm_run(j->nm, j->x + a * j->nm->n, j->y + a * j->nm->n, b - a);
        break;
    case J_ROPE:
        tsr__rope_rows(j->x + a * j->ldx, j->ldx, b - a, j->n_heads, j->head_dim,
                       j->cos_ + a * j->head_dim, j->sin_ + a * j->head_dim);
        break;
    case J_ACT:
        tsr__act_apply(NULL, j->act, j->x + a, b - a);
        if (j->y)
            for (int64_t i = a; i < b; i++) j->x[i] *= j->y[i];
        break;
    case J_ADD:
        tsr__add_inplace(j->x + a, j->y + a, b - a);
        break;
    }
}

void tsr__norm_apply(tsr__pool *p, const tsr__norm *nm, float *out, const float *x, int64_t T) {
    rows_job j = {.kind = J_NORM, .n = T, .x = out, .y = x, .nm = nm};
    tsr__pool_run(p, rows_part, &j);
}

void tsr__rope_apply_rows(tsr__pool *p, float *x, int64_t ldx, int64_t T, int32_t n_heads,
                          int32_t head_dim, const float *cos_, const float *sin_) {
    rows_job j = {.kind = J_ROPE, .n = T, .x = x, .ldx = ldx, .n_heads = n_heads,
                  .head_dim = head_dim, .cos_ = cos_, .sin_ = sin_};
    tsr__pool_run(p, rows_part, &j);
}

void tsr__act_gated(tsr__pool *p, tsr__act a, float *x, const float *mul, int64_t n) {
    rows_job j = {.kind = J_ACT, .n = n, .x = x, .y = mul, .act = a};
    tsr__pool_run(p, rows_part, &j);
}

void tsr__add_apply(tsr__pool *p, float *x, const float *y, int64_t n) {
    rows_job j = {.kind = J_ADD, .n = n, .x = x, .y = y};
    tsr__pool_run(p, rows_part, &j);
}

/* ---------------------------------------------------------------------------------- */
/* Attention                                                                            */
/* ---------------------------------------------------------------------------------- */

#define QBLOCK 128 /* query rows per work item */

typedef struct mha_job {
    float *out;
    const float *q, *k, *v;
    int64_t ldq, ldk, ldv, T;
    int32_t n_heads, head_dim;
    float scale;
    const tsr__attn_mask *mask;
    const int64_t *seg;
    int64_t n_seg;
    int64_t n_items; /* (head, segment, query block) triples */
    int64_t *item_seg, *item_q0; /* per item of one head */
    int64_t items_per_head;
    float *scratch;  /* per worker: QBLOCK * max segment length */
    int64_t scratch_per;
} mha_job;

static void mha_part(void *arg, int32_t w, int32_t nw) {
    mha_job *j = arg;
    float *sc = j->scratch + (int64_t)w * j->scratch_per;
    int32_t hd = j->head_dim;
    int64_t A = (int64_t)j->n_heads * hd;
    for (int64_t it = w; it < j->n_items; it += nw) {
        int64_t h = it / j->items_per_head, r = it % j->items_per_head;
        int64_t sg = j->item_seg[r], q0 = j->item_q0[r];
        int64_t s0 = j->seg[sg], s1 = j->seg[sg + 1], L = s1 - s0;
        int64_t rows = s1 - q0 < QBLOCK ? s1 - q0 : QBLOCK;
        const float *q = j->q + q0 * j->ldq + h * hd;
        const float *k = j->k + s0 * j->ldk + h * hd;
        const float *v = j->v + s0 * j->ldv + h * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)L, hd,
                    j->scale, q, (blasint)j->ldq, k, (blasint)j->ldk, 0.0f, sc, (blasint)L);
        for (int64_t i = 0; i < rows; i++) {
            float *row = sc + i * L;
            int any = 0;
            if (j->mask && j->mask->add) {
                const float *ad = j->mask->add + (q0 + i) * j->T + s0;
                for (int64_t c = 0; c < L; c++) row[c] += ad[c];
            }
            if (j->mask && j->mask->key_valid) {
                const uint8_t *kv = j->mask->key_valid + s0;
                for (int64_t c = 0; c < L; c++) {
                    if (!kv[c]) row[c] = -INFINITY;
                    else any = 1;
                }
            } else {
                any = 1;
            }
            if (any) tsr__softmax(row, L);
            else memset(row, 0, (size_t)L * sizeof *row);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, hd, (blasint)L,
                    1.0f, sc, (blasint)L, v, (blasint)j->ldv, 0.0f, j->out + q0 * A + h * hd,
                    (blasint)A);
    }
}

tsr_status tsr__mha(tsr__pool *p, float *out, const float *q, int64_t ldq, const float *k,
                    int64_t ldk, const float *v, int64_t ldv, int64_t T, int32_t n_heads,
                    int32_t head_dim, float scale, const tsr__attn_mask *mask, tsr_error *err) {
    int64_t one[2] = {0, T};
    const int64_t *seg = one;
    int64_t n_seg = 1;
    if (mask && mask->seg) {
        seg = mask->seg;
        n_seg = mask->n_seg;
        if (n_seg < 1 || seg[0] != 0 || seg[n_seg] != T)
            return TSR_FAIL(err, TSR_ERR_SHAPE, "segments cover [%lld, %lld), expected [0, %lld)",
                            (long long)seg[0], (long long)seg[n_seg], (long long)T);
        for (int64_t i = 0; i < n_seg; i++)
            if (seg[i + 1] < seg[i])
                return TSR_FAIL(err, TSR_ERR_SHAPE, "segment %lld ends before it starts",
                                (long long)i);
    }
    tsr__blas_init();
    int64_t per = 0, maxL = 1;
    for (int64_t i = 0; i < n_seg; i++) {
        int64_t L = seg[i + 1] - seg[i];
        per += (L + QBLOCK - 1) / QBLOCK;
        if (L > maxL) maxL = L;
    }
    int32_t nw = tsr__pool_size(p);
    int64_t *items = tsr__malloc((size_t)(2 * per + 2) * sizeof *items);
    size_t sc_n = 0;
    int ovf = !tsr__mul_size((size_t)QBLOCK * (size_t)maxL, (size_t)nw, &sc_n);
    float *scratch = ovf ? NULL : tsr__malloc(sc_n * sizeof(float));
    if (!items || !scratch) {
        tsr__free(items);
        tsr__free(scratch);
        return TSR_FAIL(err, TSR_ERR_OOM, "attention scratch (%lld keys)", (long long)maxL);
    }
    int64_t n = 0;
    for (int64_t i = 0; i < n_seg; i++)
        for (int64_t q0 = seg[i]; q0 < seg[i + 1]; q0 += QBLOCK) {
            items[n] = i;
            items[per + 1 + n] = q0;
            n++;
        }
    mha_job j = {out, q, k, v, ldq, ldk, ldv, T, n_heads, head_dim, scale, mask, seg, n_seg,
                 per * n_heads, items, items + per + 1, per, scratch, (int64_t)QBLOCK * maxL};
    if (j.n_items) tsr__pool_run(p, mha_part, &j);
    tsr__free(items);
    tsr__free(scratch);
    return TSR_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Encoder block                                                                        */
/* ---------------------------------------------------------------------------------- */

static void scale_add(float *x, const float *y, int64_t T, int64_t D, int has_gate, float g,
                      const float *ls) {
    for (int64_t t = 0; t < T; t++) {
        float *xr = x + t * D;
        const float *yr = y + t * D;
        if (ls)
            for (int64_t i = 0; i < D; i++) xr[i] += ls[i] * yr[i];
        else if (has_gate)
            for (int64_t i = 0; i < D; i++) xr[i] += g * yr[i];
        else
            for (int64_t i = 0; i < D; i++) xr[i] += yr[i];
    }
}

/* A block's activations over T tokens: a (T, dim), qkv (T, 3 A), att (T, A), mlp (T, F or
 * 2 F) with A = n_heads * head_dim, F = fc1 rows. */
typedef struct block_run {
    const tsr__vit_block *b;
    const tsr__vit_opts *o;
    float *x, *a, *qkv, *att, *mlp;
    int64_t T, A, F, ld; /* ld: row stride of q, k, v in qkv */
    const float *q, *k, *v;
} block_run;

size_t tsr__vit_block_scratch(const tsr__vit_block *b, int64_t T) {
    size_t per = (size_t)b->dim + 4 * (size_t)b->n_heads * (size_t)b->head_dim +
                 (size_t)b->fc1.n_out * (b->swiglu ? 2u : 1u), n = 0;
    return tsr__mul_size(per, (size_t)(T > 0 ? T : 0), &n) ? n : SIZE_MAX;
}

/* Rows [r0, r1) up to attention: norm1, q / k / v, q / k norms, rotary. p NULL: this thread. */
static void block_pre(const block_run *r, tsr__pool *p, int64_t r0, int64_t r1) {
    const tsr__vit_block *b = r->b;
    int64_t n = r1 - r0, D = b->dim;
    float *a = r->a + r0 * D;
    tsr__norm_apply(p, &b->norm1, a, r->x + r0 * D, n);
    float *q = (float *)r->q + r0 * r->ld, *k = (float *)r->k + r0 * r->ld,
          *v = (float *)r->v + r0 * r->ld;
    if (b->fused_qkv) {
        tsr__linear_run(p, &b->qkv, q, a, n);
    } else {
        tsr__linear_run(p, &b->q, q, a, n);
        tsr__linear_run(p, &b->k, k, a, n);
        tsr__linear_run(p, &b->v, v, a, n);
    }
    for (int64_t t = 0; t < n && (b->q_norm.w || b->k_norm.w); t++) {
        if (b->q_norm.w) tsr__norm_run(&b->q_norm, q + t * r->ld, q + t * r->ld, b->n_heads);
        if (b->k_norm.w) tsr__norm_run(&b->k_norm, k + t * r->ld, k + t * r->ld, b->n_heads);
    }
    if (r->o && r->o->rope_cos) {
        const float *c = r->o->rope_cos + r0 * b->head_dim, *sn = r->o->rope_sin + r0 * b->head_dim;
        tsr__rope_apply_rows(p, q, r->ld, n, b->n_heads, b->head_dim, c, sn);
        tsr__rope_apply_rows(p, k, r->ld, n, b->n_heads, b->head_dim, c, sn);
    }
}

/* Rows [r0, r1) after attention: o, residual, norm2, MLP, residual. */
static void block_post(const block_run *r, tsr__pool *p, int64_t r0, int64_t r1) {
    const tsr__vit_block *b = r->b;
    int64_t n = r1 - r0, D = b->dim, F = r->F;
    float *a = r->a + r0 * D, *x = r->x + r0 * D, *mlp = r->mlp + r0 * F;
    tsr__linear_run(p, &b->o, a, r->att + r0 * r->A, n);
    scale_add(x, a, n, D, b->has_gates, b->gate_attn, b->ls_attn);
    tsr__norm_apply(p, &b->norm2, a, x, n);
    tsr__linear_run(p, &b->fc1, mlp, a, n);
    float *h = mlp; /* fc2's input */
    if (b->swiglu) {
        h = r->mlp + r->T * F + r0 * F;
        tsr__linear_run(p, &b->gate, h, a, n);
        tsr__act_gated(p, b->act, h, mlp, n * F);
    } else {
        tsr__act_apply(p, b->act, mlp, n * F);
    }
    tsr__linear_run(p, &b->fc2, a, h, n);
    scale_add(x, a, n, D, b->has_gates, b->gate_mlp, b->ls_mlp);
}

typedef struct block_rows_job {
    const block_run *r;
    int after;
} block_rows_job;

static void block_rows_part(void *arg, int32_t w, int32_t nw) {
    const block_rows_job *j = arg;
    int64_t r0, r1;
    tsr__pool_split(j->r->T, 1, w, nw, &r0, &r1);
    if (r1 <= r0) return;
    if (j->after) block_post(j->r, NULL, r0, r1);
    else block_pre(j->r, NULL, r0, r1);
}

static int all_f32(const tsr__vit_block *b) {
    const tsr__linear *ls[] = {&b->qkv, &b->q, &b->k, &b->v, &b->o, &b->fc1, &b->gate, &b->fc2};
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
        if (ls[i]->w.data && ls[i]->w.type != TSR__W_F32) return 0;
    return 1;
}

tsr_status tsr__vit_block_run(tsr__pool *p, const tsr__vit_block *b, float *x, int64_t T,
                              const tsr__vit_opts *o, tsr_error *err) {
    size_t need = tsr__vit_block_scratch(b, T);
    if (need == SIZE_MAX || need > SIZE_MAX / sizeof(float))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "encoder block of %lld tokens is too large",
                        (long long)T);
    float *buf = o && o->scratch ? o->scratch : tsr__malloc((need ? need : 1) * sizeof *buf);
    if (!buf)
        return TSR_FAIL(err, TSR_ERR_OOM, "encoder block scratch (%lld tokens)", (long long)T);
    block_run r = {.b = b, .o = o, .x = x, .T = T, .A = (int64_t)b->n_heads * b->head_dim,
                   .F = b->fc1.n_out};
    r.a = buf;
    r.qkv = r.a + T * b->dim;
    r.att = r.qkv + 3 * T * r.A;
    r.mlp = r.att + T * r.A;
    r.ld = b->fused_qkv ? 3 * r.A : r.A;
    r.q = r.qkv;
    r.k = b->fused_qkv ? r.qkv + r.A : r.qkv + T * r.A;
    r.v = b->fused_qkv ? r.qkv + 2 * r.A : r.qkv + 2 * T * r.A;
    /* With F32 weights each worker takes its own token rows through every step around the
     * attention (single-threaded BLAS on whole weights): two hand-offs per block instead of
     * one per step. 16-bit weights widen slabs in the pool's scratch: steps split by columns. */
    int by_rows = tsr__pool_size(p) > 1 && all_f32(b);
    block_rows_job j = {&r, 0};
    if (by_rows) tsr__pool_run(p, block_rows_part, &j);
    else block_pre(&r, p, 0, T);
    float scale = o && o->scale > 0.0f ? o->scale : 1.0f / sqrtf((float)b->head_dim);
    tsr_status s = tsr__mha(p, r.att, r.q, r.ld, r.k, r.ld, r.v, r.ld, T, b->n_heads,
                            b->head_dim, scale, o ? &o->mask : NULL, err);
    if (!s) {
        j.after = 1;
        if (by_rows) tsr__pool_run(p, block_rows_part, &j);
        else block_post(&r, p, 0, T);
    }
    if (!(o && o->scratch)) tsr__free(buf);
    return s;
}
