/* CPU kernels of the text decoder and the worker pool that runs them. */
#include "ops.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

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
    tsr__free(p->threads);
    tsr__free(p);
}

int32_t tsr__pool_size(const tsr__pool *p) { return p ? p->n : 1; }

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

/* Dot product with 8 independent partial sums (vectorisable without reassociation). */
static inline float dot(const float *a, const float *b, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

typedef struct {
    float *out;
    const float *x, *w, *bias;
    int64_t T, K, N;
} matmul_job;

static void matmul_part(void *arg, int32_t worker, int32_t n_workers) {
    const matmul_job *j = arg;
    int64_t per = (j->N + n_workers - 1) / n_workers;
    int64_t n0 = per * worker, n1 = n0 + per < j->N ? n0 + per : j->N;
    /* Four weight rows at a time against every input row: each weight row is read once per
     * block of inputs while it sits in cache. */
    const int64_t TB = 16;
    for (int64_t t0 = 0; t0 < j->T; t0 += TB) {
        int64_t t1 = t0 + TB < j->T ? t0 + TB : j->T;
        for (int64_t n = n0; n < n1; n++) {
            const float *wr = j->w + n * j->K;
            float b = j->bias ? j->bias[n] : 0.0f;
            for (int64_t t = t0; t < t1; t++)
                j->out[t * j->N + n] = dot(j->x + t * j->K, wr, j->K) + b;
        }
    }
}

void tsr__matmul_wt(tsr__pool *p, float *out, const float *x, const float *w, const float *bias,
                    int64_t T, int64_t K, int64_t N) {
    matmul_job j = {out, x, w, bias, T, K, N};
    if (T * K * N < (int64_t)1 << 15) {
        matmul_part(&j, 0, 1);
        return;
    }
    tsr__pool_run(p, matmul_part, &j);
}

void tsr__rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
}

void tsr__rope_apply(float *x, const float *cos_, const float *sin_, int32_t head_dim) {
    int32_t h = head_dim / 2;
    for (int32_t i = 0; i < h; i++) {
        float x1 = x[i], x2 = x[i + h];
        x[i] = x1 * cos_[i] - x2 * sin_[i];
        x[i + h] = x2 * cos_[i] + x1 * sin_[i];
    }
}

void tsr__swiglu(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void tsr__softmax(float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    for (int64_t i = 0; i < n; i++) x[i] /= s;
}
