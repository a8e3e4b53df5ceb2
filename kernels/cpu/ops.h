/*
 * ops.h - CPU kernels of the text decoder. Internal; not installed.
 * Activations are F32; weight matrices are F32, BF16 or F16 as the checkpoint stores them and
 * are widened to F32 inside the kernels. Every kernel takes row-major contiguous buffers;
 * shapes are in the comments.
 */
#ifndef TSR_KERNELS_CPU_OPS_H
#define TSR_KERNELS_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

/* A fixed pool of worker threads; the caller's thread is worker 0. Created once per
 * session; tsr__pool_run does not allocate. */
typedef struct tsr__pool tsr__pool;

/* Element type of a weight matrix as stored (mmapped checkpoint bytes). */
typedef enum tsr__wtype { TSR__W_F32 = 0, TSR__W_BF16, TSR__W_F16 } tsr__wtype;

/* A row-major weight matrix: data points at F32, BF16 or F16 values (aligned to their size). */
typedef struct tsr__wmat {
    const void *data;
    tsr__wtype type;
} tsr__wmat;

/* Rows a worker widens at least per step of a 16-bit matmul with T > 1: the pool scratch of
 * each worker must hold TSR__WSLAB_ROWS * K floats (tsr__pool_reserve) for the widest K; a
 * larger scratch widens more rows per step. */
#define TSR__WSLAB_ROWS 128
typedef void (*tsr__pool_fn)(void *arg, int32_t worker, int32_t n_workers);

/* n_threads >= 1; returns NULL on failure (OOM or thread creation). */
tsr__pool *tsr__pool_new(int32_t n_threads);
void tsr__pool_free(tsr__pool *p);
int32_t tsr__pool_size(const tsr__pool *p);
/* Runs fn(arg, w, n) on every worker w in [0, n) and waits for all. p may be NULL (one). */
void tsr__pool_run(tsr__pool *p, tsr__pool_fn fn, void *arg);
/* Worker w's share [*a, *b) of n items in blocks of `align` (w of nw workers). */
void tsr__pool_split(int64_t n, int64_t align, int32_t w, int32_t nw, int64_t *a, int64_t *b);
/* Gives every worker a scratch of n floats (kept across calls; grows only). 0 or -1 (OOM). */
int tsr__pool_reserve(tsr__pool *p, size_t n);
/* Worker w's scratch and its size in floats (NULL, 0 when none was reserved). */
float *tsr__pool_scratch(tsr__pool *p, int32_t w, size_t *n);

/* out (n) = row r of w (rows, n), widened to F32. */
void tsr__wmat_row(float *out, tsr__wmat w, int64_t r, int64_t n);

/* Sets the BLAS library to one thread per caller (our pool splits the work); idempotent. */
void tsr__blas_init(void);

/* out (T, N) = x (T, K) @ w (N, K)^T (+ bias (N) when non-NULL). Split over N, each worker
 * working on its rows of w. F32 w: single-threaded BLAS sgemm (sgemv for T = 1). BF16/F16 w:
 * for T = 1 a dot product that widens w as it reads (AVX2+FMA+F16C when the CPU has them);
 * for T > 1 each worker widens as many rows as its pool scratch holds (at least
 * TSR__WSLAB_ROWS) and calls sgemm on them (without enough scratch: the dot product per row).
 * Does not allocate. */
void tsr__matmul_wt(tsr__pool *p, float *out, const float *x, tsr__wmat w, const float *bias,
                    int64_t T, int64_t K, int64_t N);

/* out (n) = x (n) / sqrt(mean(x^2) + eps) * w (n), as transformers' RMSNorm in f32. */
void tsr__rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

/* In-place rotate-half RoPE on one head vector x (head_dim) with cos/sin (head_dim/2). */
void tsr__rope_apply(float *x, const float *cos_, const float *sin_, int32_t head_dim);

typedef enum tsr__act {
    TSR__ACT_GELU = 0,   /* exact erf GELU (nn.GELU(), "gelu") */
    TSR__ACT_GELU_TANH,  /* "gelu_pytorch_tanh" / gelu(approximate="tanh") */
    TSR__ACT_QUICK_GELU, /* x * sigmoid(1.702 x) (CLIP "quick_gelu") */
    TSR__ACT_SILU        /* x * sigmoid(x) */
} tsr__act;

/* x (n) = act(x) in place, split over the pool (p may be NULL). AVX2 when the CPU has it
 * (erf within 2e-7, exp within 2 ulp of libm). */
void tsr__act_apply(tsr__pool *p, tsr__act a, float *x, int64_t n);

/* gate (n) = silu(gate) * up, elementwise, split over the pool (p may be NULL). */
void tsr__swiglu(tsr__pool *p, float *gate, const float *up, int64_t n);

/* In-place softmax over x (n >= 1) in f32. */
void tsr__softmax(float *x, int64_t n);

/* Causal attention of one head for `rows` consecutive query rows at cache positions
 * pos0.. (keys and values of those positions already in the cache):
 *   q (rows, head_dim) with row stride ldq; k, v (pos0 + rows, head_dim) with row stride
 *   ldkv; out (rows, head_dim) with row stride ldq; window > 0 limits each row to its last
 *   `window` keys (Mistral); scores: scratch of rows * min(pos0 + rows, window + rows) floats. */
void tsr__attention_block(float *out, const float *q, int64_t ldq, const float *k, const float *v,
                          int64_t ldkv, int32_t head_dim, int64_t rows, int64_t pos0,
                          int64_t window, float scale, float *scores);

/* Non-causal attention of one head for `rows` query rows to n_keys keys split into n_blocks
 * equal blocks (MLlama cross-attention): q, out (rows, head_dim) with row stride ldq; k, v
 * (n_keys, head_dim) with row stride ldkv; row r with masked[r] != 0 gives weight 0 to the
 * keys of every block b with allow[r * ld_allow + b] == 0 (at least one block must be
 * allowed); a row with masked[r] == 0 attends to all keys. n_blocks divides n_keys.
 * scores: scratch of rows * n_keys floats. */
void tsr__attention_masked_blocks(float *out, const float *q, int64_t ldq, const float *k,
                                  const float *v, int64_t ldkv, int32_t head_dim, int64_t rows,
                                  int64_t n_keys, const uint8_t *allow, int64_t ld_allow,
                                  int64_t n_blocks, const uint8_t *masked, float scale,
                                  float *scores);

#endif
