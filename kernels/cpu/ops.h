/*
 * ops.h - CPU kernels of the text decoder (F32). Internal; not installed.
 * Every kernel takes row-major contiguous buffers; shapes are in the comments.
 */
#ifndef TSR_KERNELS_CPU_OPS_H
#define TSR_KERNELS_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

/* A fixed pool of worker threads; the caller's thread is worker 0. Created once per
 * session; tsr__pool_run does not allocate. */
typedef struct tsr__pool tsr__pool;
typedef void (*tsr__pool_fn)(void *arg, int32_t worker, int32_t n_workers);

/* n_threads >= 1; returns NULL on failure (OOM or thread creation). */
tsr__pool *tsr__pool_new(int32_t n_threads);
void tsr__pool_free(tsr__pool *p);
int32_t tsr__pool_size(const tsr__pool *p);
/* Runs fn(arg, w, n) on every worker w in [0, n) and waits for all. p may be NULL (one). */
void tsr__pool_run(tsr__pool *p, tsr__pool_fn fn, void *arg);

/* out (T, N) = x (T, K) @ w (N, K)^T (+ bias (N) when non-NULL). Split over N. */
void tsr__matmul_wt(tsr__pool *p, float *out, const float *x, const float *w, const float *bias,
                    int64_t T, int64_t K, int64_t N);

/* out (n) = x (n) / sqrt(mean(x^2) + eps) * w (n), as transformers' RMSNorm in f32. */
void tsr__rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

/* In-place rotate-half RoPE on one head vector x (head_dim) with cos/sin (head_dim/2). */
void tsr__rope_apply(float *x, const float *cos_, const float *sin_, int32_t head_dim);

/* gate (n) = silu(gate) * up, elementwise. */
void tsr__swiglu(float *gate, const float *up, int64_t n);

/* In-place softmax over x (n) in f32; returns nothing. */
void tsr__softmax(float *x, int64_t n);

#endif
