/*
 * vit.h - building blocks shared by the vision and audio encoders: linear layers, norms,
 * activations, rotary embeddings, multi-head attention with segment / key / additive masks,
 * and one pre-norm transformer block that each family configures. Activations are F32,
 * row-major [T, D]; weights come from tsr__weights. Numerics follow PyTorch in float32
 * (LayerNorm: mean, then biased variance of x - mean; GELU: erf form unless stated).
 * Internal; not installed.
 */
#ifndef TSR_VISION_VIT_H
#define TSR_VISION_VIT_H

#include "weights.h"

/* y = x W^T + b. */
typedef struct tsr__linear {
    tsr__wmat w;     /* (n_out, n_in) */
    const float *b;  /* (n_out) or NULL */
    int64_t n_in, n_out;
} tsr__linear;

/* Loads "<prefix>.weight" (n_out, n_in) and, when bias, "<prefix>.bias" (n_out). */
tsr_status tsr__linear_load(tsr__weights *w, const char *prefix, int64_t n_in, int64_t n_out,
                            int bias, tsr__linear *out, tsr_error *err);
/* out (T, n_out) = x (T, n_in) W^T + b, split over the pool (p may be NULL). */
void tsr__linear_run(tsr__pool *p, const tsr__linear *l, float *out, const float *x, int64_t T);

typedef enum tsr__norm_kind { TSR__LAYERNORM = 0, TSR__RMSNORM } tsr__norm_kind;

typedef struct tsr__norm {
    tsr__norm_kind kind;
    const float *w, *b; /* (n); b NULL for RMSNorm (or a LayerNorm without bias) */
    int64_t n;
    float eps;
} tsr__norm;

/* Loads "<prefix>.weight" and, for LayerNorm, "<prefix>.bias". */
tsr_status tsr__norm_load(tsr__weights *w, const char *prefix, tsr__norm_kind kind, int64_t n,
                          float eps, tsr__norm *out, tsr_error *err);
/* out (T, n) = norm of each row of x (T, n); out may equal x. */
void tsr__norm_run(const tsr__norm *nm, float *out, const float *x, int64_t T);

/* Activations: tsr__act (kernels/cpu/ops.h): TSR__ACT_GELU, _GELU_TANH, _QUICK_GELU, _SILU. */

/* "gelu", "gelu_new", "gelu_pytorch_tanh", "quick_gelu", "silu" / "swish" -> *out;
 * anything else is UNSUPPORTED naming it (what: where it came from, for the message). */
tsr_status tsr__act_parse(const char *name, const char *what, tsr__act *out, tsr_error *err);
/* x[n] = act(x) in place (single thread; tsr__act_apply splits over a pool). */
void tsr__act_run(tsr__act a, float *x, int64_t n);

/* Rotate-half RoPE as transformers' apply_rotary_pos_emb with cos / sin of the full head
 * width (emb = cat(freqs, freqs)): x (T, n_heads * head_dim) with row stride ldx, in place;
 * cos, sin (T, head_dim). */
void tsr__rope_rows(float *x, int64_t ldx, int64_t T, int32_t n_heads, int32_t head_dim,
                    const float *cos_, const float *sin_);

/* Which keys a query may attend to, beyond all of them:
 *   seg: n_seg + 1 offsets (cu_seqlens): rows seg[i]..seg[i+1]) attend only within their
 *        segment (block-diagonal attention of packed images / windows); NULL: one segment;
 *   key_valid: T bytes, 0 = that key is masked for every query (padding); NULL: all valid;
 *   add: (T, T) floats added to the scores (row = query), e.g. -inf / finfo.min entries;
 *        NULL: none. */
typedef struct tsr__attn_mask {
    const int64_t *seg;
    int64_t n_seg;
    const uint8_t *key_valid;
    const float *add;
} tsr__attn_mask;

/* Multi-head softmax attention (no causal mask): q, k, v (T, n_heads * head_dim) with row
 * strides ldq, ldk, ldv; out (T, n_heads * head_dim) contiguous. scale multiplies q k^T.
 * Rows whose keys are all masked get zeros. Heads split over the pool. OOM on scratch. */
tsr_status tsr__mha(tsr__pool *p, float *out, const float *q, int64_t ldq, const float *k,
                    int64_t ldk, const float *v, int64_t ldv, int64_t T, int32_t n_heads,
                    int32_t head_dim, float scale, const tsr__attn_mask *mask, tsr_error *err);

/* One pre-norm encoder block:
 *   h = x + g_attn * o(attn(norm1(x)))      (q, k, v from `qkv` fused (3*D rows, in the
 *                                             order q, k, v) or from q, k, v separately)
 *   x = h + g_mlp * mlp(norm2(h))            mlp: fc2(act(fc1(.))) or, when swiglu,
 *                                             fc2(act(gate(.)) * fc1(.))
 * g_attn / g_mlp are 1 unless gate_attn / gate_mlp are set (MLlama's gated layers: the
 * values are already tanh'd), or ls_attn / ls_mlp (per-channel layer scale, D values).
 * q_norm / k_norm (optional) normalise each head of q / k (head_dim), after projection. */
typedef struct tsr__vit_block {
    int32_t dim, n_heads, head_dim; /* attention width is n_heads * head_dim */
    tsr__norm norm1, norm2;
    int fused_qkv;
    tsr__linear qkv;          /* fused_qkv */
    tsr__linear q, k, v;      /* !fused_qkv */
    tsr__linear o;
    tsr__norm q_norm, k_norm; /* used when .w is set */
    int swiglu;
    tsr__linear fc1, gate, fc2;
    tsr__act act;
    float gate_attn, gate_mlp;  /* 0 with has_gates == 0 means "no gate" */
    int has_gates;
    const float *ls_attn, *ls_mlp; /* (dim) or NULL */
} tsr__vit_block;

/* Per-call options of tsr__vit_block_run. */
typedef struct tsr__vit_opts {
    const float *rope_cos, *rope_sin; /* (T, head_dim) or NULL: no RoPE */
    tsr__attn_mask mask;
    float scale;                      /* 0: 1/sqrt(head_dim) */
    float *scratch; /* tsr__vit_block_scratch(b, T) floats, reused across blocks; NULL: the
                     * call allocates its own */
} tsr__vit_opts;

/* Floats of scratch a block needs for T tokens (SIZE_MAX on overflow). */
size_t tsr__vit_block_scratch(const tsr__vit_block *b, int64_t T);

/* x (T, dim) in place. With F32 weights and several workers each worker runs its own token
 * rows through the steps before and after the attention. OOM when it must allocate. */
tsr_status tsr__vit_block_run(tsr__pool *p, const tsr__vit_block *b, float *x, int64_t T,
                              const tsr__vit_opts *o, tsr_error *err);

/* Elementwise helpers. */
void tsr__add_inplace(float *x, const float *y, int64_t n); /* x += y */

/* The same work split over the pool's workers by rows (p may be NULL: the caller's thread). */
void tsr__norm_apply(tsr__pool *p, const tsr__norm *nm, float *out, const float *x, int64_t T);
void tsr__rope_apply_rows(tsr__pool *p, float *x, int64_t ldx, int64_t T, int32_t n_heads,
                          int32_t head_dim, const float *cos_, const float *sin_);
/* x (n) = act(x) * mul (gated MLPs: SwiGLU and the like); mul NULL: act(x). */
void tsr__act_gated(tsr__pool *p, tsr__act a, float *x, const float *mul, int64_t n);
void tsr__add_apply(tsr__pool *p, float *x, const float *y, int64_t n); /* x += y */

#endif
