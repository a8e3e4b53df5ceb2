/* CPU kernels of the text decoder and the worker pool that runs them. */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define TSR_X86 1
#endif

#include "tessera_internal.h"

/* ---------------------------------------------------------------------------------- */
/* Worker pool                                                                          */
/* ---------------------------------------------------------------------------------- */

struct tsr__pool {
    pthread_mutex_t mu;
    pthread_cond_t start; /* workers wait for a new generation */
    pthread_cond_t done;  /* the caller waits for pending == 0 */
    pthread_t *threads;   /* (n - 1) */
    int32_t n;
    int32_t n_started;
    uint64_t generation;
    int32_t pending;
    int quit;
    tsr__pool_fn fn;
    void *arg;
    float **scratch;   /* (n) per-worker scratch of scratch_n floats, or NULL */
    size_t scratch_n;
};

typedef struct {
    tsr__pool *p;
    int32_t w;
} worker_arg;

static void *worker_main(void *a) {
    tsr__pool *p = ((worker_arg *)a)->p;
    int32_t w = ((worker_arg *)a)->w;
    tsr__free(a);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->start, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        tsr__pool_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, w, p->n);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

tsr__pool *tsr__pool_new(int32_t n_threads) {
    if (n_threads < 1) n_threads = 1;
    tsr__pool *p = tsr__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    if (pthread_mutex_init(&p->mu, NULL)) {
        tsr__free(p);
        return NULL;
    }
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->threads = tsr__calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            tsr__pool_free(p);
            return NULL;
        }
        for (int32_t i = 1; i < n_threads; i++) {
            worker_arg *a = tsr__malloc(sizeof *a);
            if (!a) {
                tsr__pool_free(p);
                return NULL;
            }
            a->p = p;
            a->w = i;
            if (pthread_create(&p->threads[i - 1], NULL, worker_main, a)) {
                tsr__free(a);
                tsr__pool_free(p);
                return NULL;
            }
            p->n_started++;
        }
    }
    return p;
}

void tsr__pool_free(tsr__pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int32_t i = 0; i < p->n_started; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    for (int32_t i = 0; p->scratch && i < p->n; i++) tsr__free(p->scratch[i]);
    tsr__free(p->scratch);
    tsr__free(p->threads);
    tsr__free(p);
}

int32_t tsr__pool_size(const tsr__pool *p) { return p ? p->n : 1; }

int tsr__pool_reserve(tsr__pool *p, size_t n) {
    if (!p || n <= p->scratch_n) return 0;
    size_t bytes;
    if (!tsr__mul_size(n, sizeof(float), &bytes)) return -1;
    if (!p->scratch) {
        p->scratch = tsr__calloc((size_t)p->n, sizeof *p->scratch);
        if (!p->scratch) return -1;
    }
    for (int32_t i = 0; i < p->n; i++) {
        float *b = tsr__malloc(bytes);
        if (!b) return -1; /* the workers before i hold n, the rest the old size: keep old */
        tsr__free(p->scratch[i]);
        p->scratch[i] = b;
    }
    p->scratch_n = n;
    return 0;
}

float *tsr__pool_scratch(tsr__pool *p, int32_t w, size_t *n) {
    if (!p || !p->scratch || w < 0 || w >= p->n) {
        *n = 0;
        return NULL;
    }
    *n = p->scratch_n;
    return p->scratch[w];
}

void tsr__pool_run(tsr__pool *p, tsr__pool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->pending = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* ---------------------------------------------------------------------------------- */
/* Kernels                                                                              */
/* ---------------------------------------------------------------------------------- */

/* OpenBLAS runs single-threaded inside each of our workers: the pool splits the work, so the
 * two thread sets never compete for the cores. Set once per process. */
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_init(void) { openblas_set_num_threads(1); }
void tsr__blas_init(void) { pthread_once(&blas_once, blas_init); }

/* Worker w's share [*a, *b) of n items, in multiples of align. */
void tsr__pool_split(int64_t n, int64_t align, int32_t w, int32_t nw, int64_t *a, int64_t *b) {
    int64_t blocks = (n + align - 1) / align, per = (blocks + nw - 1) / nw;
    int64_t lo = per * w * align, hi = lo + per * align;
    *a = lo < n ? lo : n;
    *b = hi < n ? hi : n;
}

/* 16-bit weights are widened exactly (every BF16 and F16 value is an F32 value); only the
 * summation order of the dot product differs from sgemv. */
#ifdef TSR_X86
static int has_avx2_f16c(void);
static void widen_avx2(float *out, const uint16_t *h, int64_t n, int bf16);
#endif

static void widen_row(float *out, tsr__wmat w, int64_t r, int64_t n) {
    if (w.type == TSR__W_F32) {
        memcpy(out, (const float *)w.data + r * n, (size_t)n * sizeof(float));
        return;
    }
    const uint16_t *h = (const uint16_t *)w.data + r * n;
#ifdef TSR_X86
    if (has_avx2_f16c()) {
        widen_avx2(out, h, n, w.type == TSR__W_BF16);
        return;
    }
#endif
    if (w.type == TSR__W_BF16)
        for (int64_t i = 0; i < n; i++) out[i] = tsr__bf16_to_f32(h[i]);
    else
        for (int64_t i = 0; i < n; i++) out[i] = tsr__f16_to_f32(h[i]);
}

void tsr__wmat_row(float *out, tsr__wmat w, int64_t r, int64_t n) { widen_row(out, w, r, n); }

#ifdef TSR_X86
static int has_avx2_f16c(void) {
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        unsigned a, b, c, d;
        /* F16C is CPUID.1:ECX bit 29 (clang's __builtin_cpu_supports does not name it) */
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
            __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1u);
    }
    return v;
}

__attribute__((target("avx2,fma,f16c"))) static inline __m256 load8_w(const uint16_t *p,
                                                                    int bf16) {
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (bf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

__attribute__((target("avx2,fma,f16c"))) static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma,f16c"))) static void widen_avx2(float *out, const uint16_t *h,
                                                                int64_t n, int bf16) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load8_w(h + i, bf16));
    for (; i < n; i++) out[i] = bf16 ? tsr__bf16_to_f32(h[i]) : tsr__f16_to_f32(h[i]);
}

/* out[r] = x (K) . w[r] (K) for rows [0, rows) of 16-bit w (row stride K); four rows share
 * each load of x, two accumulators per row (8 FMA chains hide the FMA latency). bf16 is a
 * constant in each caller below, so the widening is chosen at compile time. */
#define PF_ROWS 8 /* rows ahead that dot_rows_avx2_t prefetches */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
dot_rows_avx2_t(float *out, const float *x, const uint16_t *w, int64_t rows, int64_t K,
                const int bf16) {
    int64_t r = 0, K16 = K & ~(int64_t)15, K8 = K & ~(int64_t)7;
    for (; r + 4 <= rows; r += 4) {
        const uint16_t *w0 = w + r * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int64_t i = 0;
        /* Rows are short (K values), so the hardware prefetcher sees four streams restart
         * at every block: fetch the rows PF_ROWS ahead (byte offsets from w), 128 bytes per
         * step, as fast as this block consumes its own. */
        int64_t pf = (r + PF_ROWS) * K * 2, pf_end = rows * K * 2;
        for (; i < K16; i += 16) {
            if (pf + 128 <= pf_end) {
                _mm_prefetch((const char *)w + pf, _MM_HINT_T0);
                _mm_prefetch((const char *)w + pf + 64, _MM_HINT_T0);
                pf += 128;
            }
            __m256 xv = _mm256_loadu_ps(x + i), xu = _mm256_loadu_ps(x + i + 8);
            a0 = _mm256_fmadd_ps(load8_w(w0 + i, bf16), xv, a0);
            b0 = _mm256_fmadd_ps(load8_w(w0 + i + 8, bf16), xu, b0);
            a1 = _mm256_fmadd_ps(load8_w(w1 + i, bf16), xv, a1);
            b1 = _mm256_fmadd_ps(load8_w(w1 + i + 8, bf16), xu, b1);
            a2 = _mm256_fmadd_ps(load8_w(w2 + i, bf16), xv, a2);
            b2 = _mm256_fmadd_ps(load8_w(w2 + i + 8, bf16), xu, b2);
            a3 = _mm256_fmadd_ps(load8_w(w3 + i, bf16), xv, a3);
            b3 = _mm256_fmadd_ps(load8_w(w3 + i + 8, bf16), xu, b3);
        }
        for (; i < K8; i += 8) {
            __m256 xv = _mm256_loadu_ps(x + i);
            a0 = _mm256_fmadd_ps(load8_w(w0 + i, bf16), xv, a0);
            a1 = _mm256_fmadd_ps(load8_w(w1 + i, bf16), xv, a1);
            a2 = _mm256_fmadd_ps(load8_w(w2 + i, bf16), xv, a2);
            a3 = _mm256_fmadd_ps(load8_w(w3 + i, bf16), xv, a3);
        }
        float s[4] = {hsum8(_mm256_add_ps(a0, b0)), hsum8(_mm256_add_ps(a1, b1)),
                      hsum8(_mm256_add_ps(a2, b2)), hsum8(_mm256_add_ps(a3, b3))};
        const uint16_t *wr[4] = {w0, w1, w2, w3};
        for (int k = 0; k < 4; k++) {
            for (int64_t j = K8; j < K; j++)
                s[k] += x[j] * (bf16 ? tsr__bf16_to_f32(wr[k][j]) : tsr__f16_to_f32(wr[k][j]));
            out[r + k] = s[k];
        }
    }
    for (; r < rows; r++) {
        const uint16_t *w0 = w + r * K;
        __m256 a0 = _mm256_setzero_ps();
        for (int64_t i = 0; i < K8; i += 8)
            a0 = _mm256_fmadd_ps(load8_w(w0 + i, bf16), _mm256_loadu_ps(x + i), a0);
        float s = hsum8(a0);
        for (int64_t i = K8; i < K; i++)
            s += x[i] * (bf16 ? tsr__bf16_to_f32(w0[i]) : tsr__f16_to_f32(w0[i]));
        out[r] = s;
    }
}

__attribute__((target("avx2,fma,f16c"))) static void dot_rows_bf16_avx2(float *out,
                                                                        const float *x,
                                                                        const uint16_t *w,
                                                                        int64_t rows, int64_t K) {
    dot_rows_avx2_t(out, x, w, rows, K, 1);
}

__attribute__((target("avx2,fma,f16c"))) static void dot_rows_f16_avx2(float *out,
                                                                       const float *x,
                                                                       const uint16_t *w,
                                                                       int64_t rows, int64_t K) {
    dot_rows_avx2_t(out, x, w, rows, K, 0);
}
#endif

/* out[r] = x (K) . w[r0 + r] (K) for r in [0, rows), w 16-bit. */
static void dot_rows(float *out, const float *x, tsr__wmat w, int64_t r0, int64_t rows,
                     int64_t K) {
    const uint16_t *h = (const uint16_t *)w.data + r0 * K;
    int bf16 = w.type == TSR__W_BF16;
#ifdef TSR_X86
    if (has_avx2_f16c()) {
        if (bf16) dot_rows_bf16_avx2(out, x, h, rows, K);
        else dot_rows_f16_avx2(out, x, h, rows, K);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *wr = h + r * K;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t i = 0;
        for (; i + 8 <= K; i += 8)
            for (int k = 0; k < 8; k++)
                acc[k] += x[i + k] * (bf16 ? tsr__bf16_to_f32(wr[i + k]) : tsr__f16_to_f32(wr[i + k]));
        float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for (; i < K; i++) s += x[i] * (bf16 ? tsr__bf16_to_f32(wr[i]) : tsr__f16_to_f32(wr[i]));
        out[r] = s;
    }
}

typedef struct {
    tsr__pool *p;
    float *out;
    const float *x, *bias;
    tsr__wmat w;
    int64_t T, K, N;
} matmul_job;

static void matmul_part(void *arg, int32_t worker, int32_t n_workers) {
    const matmul_job *j = arg;
    int64_t n0, n1;
    tsr__pool_split(j->N, 16, worker, n_workers, &n0, &n1);
    if (n1 <= n0) return;
    int64_t rows = n1 - n0;
    if (j->w.type == TSR__W_F32) {
        const float *w = j->w.data;
        if (j->T == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)rows, (blasint)j->K, 1.0f,
                        w + n0 * j->K, (blasint)j->K, j->x, 1, 0.0f, j->out + n0, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)j->T, (blasint)rows,
                        (blasint)j->K, 1.0f, j->x, (blasint)j->K, w + n0 * j->K, (blasint)j->K,
                        0.0f, j->out + n0, (blasint)j->N);
    } else {
        size_t cap;
        float *slab = tsr__pool_scratch(j->p, worker, &cap);
        /* Rows widened per sgemm: as many as the scratch holds (each call re-packs x, so
         * fewer, larger slabs are faster), at least TSR__WSLAB_ROWS. */
        int64_t slab_rows = slab ? (int64_t)(cap / (size_t)j->K) : 0;
        if (j->T == 1 || slab_rows < TSR__WSLAB_ROWS) {
            for (int64_t t = 0; t < j->T; t++)
                dot_rows(j->out + t * j->N + n0, j->x + t * j->K, j->w, n0, rows, j->K);
        } else {
            /* slab (nr, K): rows [r0, r0 + nr) of w widened, then out[:, r0..] = x @ slab^T */
            for (int64_t r0 = n0; r0 < n1; r0 += slab_rows) {
                int64_t nr = n1 - r0 < slab_rows ? n1 - r0 : slab_rows;
                for (int64_t r = 0; r < nr; r++) widen_row(slab + r * j->K, j->w, r0 + r, j->K);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)j->T, (blasint)nr,
                            (blasint)j->K, 1.0f, j->x, (blasint)j->K, slab, (blasint)j->K, 0.0f,
                            j->out + r0, (blasint)j->N);
            }
        }
    }
    if (j->bias)
        for (int64_t t = 0; t < j->T; t++) {
            float *o = j->out + t * j->N;
            for (int64_t n = n0; n < n1; n++) o[n] += j->bias[n];
        }
}

void tsr__matmul_wt(tsr__pool *p, float *out, const float *x, tsr__wmat w, const float *bias,
                    int64_t T, int64_t K, int64_t N) {
    matmul_job j = {p, out, x, bias, w, T, K, N};
    if (T * K * N < (int64_t)1 << 16) {
        matmul_part(&j, 0, 1);
        return;
    }
    tsr__pool_run(p, matmul_part, &j);
}

void tsr__rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += x[i + k] * x[i + k];
    float ss = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
}

void tsr__rope_apply(float *x, const float *cos_, const float *sin_, int32_t head_dim) {
    int32_t h = head_dim / 2;
    for (int32_t i = 0; i < h; i++) {
        float x1 = x[i], x2 = x[i + h];
        x[i] = x1 * cos_[i] - x2 * sin_[i];
        x[i + h] = x2 * cos_[i] + x1 * sin_[i];
    }
}

/* One activation value (libm), the reference the vector forms follow. */
static float act1(tsr__act a, float v) {
    switch (a) {
    case TSR__ACT_SILU: return v / (1.0f + expf(-v));
    case TSR__ACT_QUICK_GELU: return v / (1.0f + expf(-1.702f * v));
    case TSR__ACT_GELU_TANH:
        return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    default: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    }
}

/* exp over 8 lanes (Cephes expf: range reduction by ln 2, degree-5 polynomial), within 2 ulp
 * of expf for x in [-87, 88]; below that it returns 0 or a value under 1e-37. */
#ifdef TSR_X86
__attribute__((target("avx2,fma"))) static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365478515625f));
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

__attribute__((target("avx2,fma"))) static void swiglu_avx2(float *gate, const float *up,
                                                            int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 d = _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, g)));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, d), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* x[i] = exp(x[i] - m); returns the sum. */
__attribute__((target("avx2,fma"))) static float exp_sum_avx2(float *x, int64_t n, float m) {
    __m256 acc = _mm256_setzero_ps(), vm = _mm256_set1_ps(m);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float a[8];
    _mm256_storeu_ps(a, acc);
    float s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    return s;
}

static int has_avx2(void) {
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return v;
}

/* 1 / (1 + exp(-k x)) * x over 8 lanes: silu (k 1), quick_gelu (k 1.702). */
__attribute__((target("avx2,fma"))) static inline __m256 xsig8(__m256 x, __m256 k) {
    __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f),
                             exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(k, x))));
    return _mm256_div_ps(x, d);
}

__attribute__((target("avx2,fma"))) static void act_avx2(tsr__act a, float *x, int64_t n) {
    int64_t i = 0;
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), r;
        switch (a) {
        case TSR__ACT_SILU: r = xsig8(v, one); break;
        case TSR__ACT_QUICK_GELU: r = xsig8(v, _mm256_set1_ps(1.702f)); break;
        case TSR__ACT_GELU_TANH: {
            /* 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3) */
            __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
            __m256 u = _mm256_mul_ps(_mm256_set1_ps(2.0f * 0.7978845608028654f),
                                     _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, v));
            __m256 d = _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), u)));
            r = _mm256_div_ps(v, d);
            break;
        }
        default: {
            /* erf(z), z = |x| / sqrt 2, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7) */
            __m256 sign = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)));
            __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign, v), _mm256_set1_ps(0.70710678118654752f));
            __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), z, one));
            __m256 y = _mm256_set1_ps(1.061405429f);
            y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(-1.453152027f));
            y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(1.421413741f));
            y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(-0.284496736f));
            y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(0.254829592f));
            y = _mm256_mul_ps(y, t);
            __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(z, z)));
            __m256 erf = _mm256_fnmadd_ps(y, e, one);
            erf = _mm256_or_ps(erf, sign);
            r = _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, erf));
            break;
        }
        }
        _mm256_storeu_ps(x + i, r);
    }
    for (; i < n; i++) x[i] = act1(a, x[i]);
}
#endif

static void act_range(tsr__act a, float *x, int64_t n) {
#ifdef TSR_X86
    if (has_avx2()) {
        act_avx2(a, x, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) x[i] = act1(a, x[i]);
}

typedef struct {
    tsr__act a;
    float *x;
    int64_t n;
} act_job;

static void act_part(void *arg, int32_t w, int32_t nw) {
    const act_job *j = arg;
    int64_t a, b;
    tsr__pool_split(j->n, 64, w, nw, &a, &b);
    if (b > a) act_range(j->a, j->x + a, b - a);
}

void tsr__act_apply(tsr__pool *p, tsr__act a, float *x, int64_t n) {
    act_job j = {a, x, n};
    if (n < 8192) {
        act_part(&j, 0, 1);
        return;
    }
    tsr__pool_run(p, act_part, &j);
}

static void swiglu_range(float *gate, const float *up, int64_t n) {
#ifdef TSR_X86
    if (has_avx2()) {
        swiglu_avx2(gate, up, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

typedef struct {
    float *gate;
    const float *up;
    int64_t n;
} swiglu_job;

static void swiglu_part(void *arg, int32_t w, int32_t nw) {
    const swiglu_job *j = arg;
    int64_t a, b;
    tsr__pool_split(j->n, 64, w, nw, &a, &b);
    if (b > a) swiglu_range(j->gate + a, j->up + a, b - a);
}

void tsr__swiglu(tsr__pool *p, float *gate, const float *up, int64_t n) {
    swiglu_job j = {gate, up, n};
    if (n < 8192) {
        swiglu_part(&j, 0, 1);
        return;
    }
    tsr__pool_run(p, swiglu_part, &j);
}

void tsr__softmax(float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0.0f;
#ifdef TSR_X86
    if (has_avx2()) {
        s = exp_sum_avx2(x, n, m);
    } else
#endif
    {
        for (int64_t i = 0; i < n; i++) {
            x[i] = expf(x[i] - m);
            s += x[i];
        }
    }
    float r = 1.0f / s;
    for (int64_t i = 0; i < n; i++) x[i] *= r;
}

void tsr__attention_block(float *out, const float *q, int64_t ldq, const float *k, const float *v,
                          int64_t ldkv, int32_t head_dim, int64_t rows, int64_t pos0,
                          int64_t window, float scale, float *scores) {
    int64_t first = window > 0 && pos0 - window + 1 > 0 ? pos0 - window + 1 : 0;
    int64_t last = pos0 + rows - 1, n = last - first + 1;
    const float *kf = k + first * ldkv, *vf = v + first * ldkv;
    /* scores (rows, n) = scale * q (rows, hd) @ k[first..last] (n, hd)^T */
    if (rows == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)n, head_dim, scale, kf, (blasint)ldkv,
                    q, 1, 0.0f, scores, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)n, head_dim,
                    scale, q, (blasint)ldq, kf, (blasint)ldkv, 0.0f, scores, (blasint)n);
    /* Row r sees keys [lo, pos0 + r] (causal, sliding window); the rest weigh 0. */
    for (int64_t r = 0; r < rows; r++) {
        int64_t pos = pos0 + r;
        int64_t lo = window > 0 && pos - window + 1 > first ? pos - window + 1 : first;
        float *sr = scores + r * n;
        for (int64_t i = 0; i < lo - first; i++) sr[i] = 0.0f;
        tsr__softmax(sr + (lo - first), pos - lo + 1);
        for (int64_t i = pos - first + 1; i < n; i++) sr[i] = 0.0f;
    }
    /* out (rows, hd) = scores (rows, n) @ v[first..last] (n, hd) */
    if (rows == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)n, head_dim, 1.0f, vf, (blasint)ldkv,
                    scores, 1, 0.0f, out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, head_dim,
                    (blasint)n, 1.0f, scores, (blasint)n, vf, (blasint)ldkv, 0.0f, out,
                    (blasint)ldq);
}

void tsr__attention_masked_blocks(float *out, const float *q, int64_t ldq, const float *k,
                                  const float *v, int64_t ldkv, int32_t head_dim, int64_t rows,
                                  int64_t n_keys, const uint8_t *allow, int64_t ld_allow,
                                  int64_t n_blocks, const uint8_t *masked, float scale,
                                  float *scores) {
    int64_t n = n_keys, bs = n_keys / n_blocks;
    /* scores (rows, n) = scale * q (rows, hd) @ k (n, hd)^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)n, head_dim,
                scale, q, (blasint)ldq, k, (blasint)ldkv, 0.0f, scores, (blasint)n);
    /* Excluded keys get -inf (transformers adds finfo.min; both weigh 0 after the softmax
     * of a row with an allowed key), then exactly 0. */
    for (int64_t r = 0; r < rows; r++) {
        float *sr = scores + r * n;
        const uint8_t *al = allow + r * ld_allow;
        for (int64_t b = 0; masked[r] && b < n_blocks; b++)
            if (!al[b])
                for (int64_t i = b * bs; i < (b + 1) * bs; i++) sr[i] = -INFINITY;
        tsr__softmax(sr, n);
        for (int64_t b = 0; masked[r] && b < n_blocks; b++)
            if (!al[b]) memset(sr + b * bs, 0, (size_t)bs * sizeof(float));
    }
    /* out (rows, hd) = scores (rows, n) @ v (n, hd) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, head_dim, (blasint)n,
                1.0f, scores, (blasint)n, v, (blasint)ldkv, 0.0f, out, (blasint)ldq);
}
