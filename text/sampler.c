/* Token sampling: transformers' logits processors (repetition penalty, temperature, top-k,
 * top-p, min-p, in generate()'s order), OpenAI frequency / presence penalties, seeded draws. */
#include <math.h>
#include <string.h>

#include "tessera_internal.h"

struct tsr_sampler {
    tsr_sampling_params p;
    int32_t n_vocab;
    uint8_t *seen;  /* (n_vocab) id occurs in the prompt or the generated ids */
    int32_t *count; /* (n_vocab) times generated */
    int32_t *order; /* (n_vocab) sort scratch */
    float *probs;   /* (n_vocab) scratch */
    uint64_t rng;
};

tsr_sampling_params tsr_sampling_params_default(void) {
    tsr_sampling_params p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.temperature = 1.0f;
    p.top_p = 1.0f;
    p.repetition_penalty = 1.0f;
    return p;
}

static int is_greedy(const tsr_sampling_params *p) { return p->temperature <= 0.0f; }

void tsr_sampler_free(tsr_sampler *s) {
    if (!s) return;
    tsr__free(s->seen);
    tsr__free(s->count);
    tsr__free(s->order);
    tsr__free(s->probs);
    tsr__free(s);
}

void tsr_sampler_reset(tsr_sampler *s) {
    if (!s) return;
    memset(s->seen, 0, (size_t)s->n_vocab);
    memset(s->count, 0, (size_t)s->n_vocab * sizeof *s->count);
    s->rng = s->p.seed ^ 0x9e3779b97f4a7c15ull;
}

tsr_status tsr_sampler_new(const tsr_sampling_params *params, int32_t n_vocab, tsr_sampler **out,
                           tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    tsr_sampling_params p = tsr_sampling_params_default();
    if (params && params->size < sizeof(size_t))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "params->size is not set");
    if (params) memcpy(&p, params, params->size < sizeof p ? params->size : sizeof p);
    if (n_vocab < 1) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "n_vocab %d < 1", n_vocab);
    if (!isfinite(p.temperature))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "temperature is not finite");
    if (p.top_k < 0) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "top_k %d < 0", p.top_k);
    if (!(p.top_p >= 0.0f && p.top_p <= 1.0f))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "top_p %g outside [0, 1]", (double)p.top_p);
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "min_p %g outside [0, 1]", (double)p.min_p);
    if (!(p.repetition_penalty > 0.0f) || !isfinite(p.repetition_penalty))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "repetition_penalty %g must be > 0",
                        (double)p.repetition_penalty);
    if (!isfinite(p.frequency_penalty) || !isfinite(p.presence_penalty))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "frequency/presence penalty is not finite");
    tsr_sampler *s = tsr__calloc(1, sizeof *s);
    if (!s) return TSR_FAIL(err, TSR_ERR_OOM, "sampler");
    s->p = p;
    s->p.size = sizeof s->p;
    s->n_vocab = n_vocab;
    s->seen = tsr__calloc((size_t)n_vocab, 1);
    s->count = tsr__calloc((size_t)n_vocab, sizeof *s->count);
    s->order = tsr__calloc((size_t)n_vocab, sizeof *s->order);
    s->probs = tsr__calloc((size_t)n_vocab, sizeof *s->probs);
    if (!s->seen || !s->count || !s->order || !s->probs) {
        tsr_sampler_free(s);
        return TSR_FAIL(err, TSR_ERR_OOM, "sampler state for %d ids", n_vocab);
    }
    tsr_sampler_reset(s);
    *out = s;
    return TSR_OK;
}

tsr_status tsr_sampler_accept(tsr_sampler *s, int32_t id, int generated, tsr_error *err) {
    if (!s) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "sampler is NULL");
    if (id < 0 || id >= s->n_vocab)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "id %d outside [0, %d)", id, s->n_vocab);
    s->seen[id] = 1;
    if (generated && s->count[id] < INT32_MAX) s->count[id]++;
    return TSR_OK;
}

/* softmax(x) into out (n), f32 as torch.softmax. */
static void softmax_into(float *out, const float *x, int32_t n) {
    float m = -INFINITY;
    for (int32_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    float sum = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        out[i] = expf(x[i] - m);
        sum += out[i];
    }
    for (int32_t i = 0; i < n; i++) out[i] /= sum;
}

/* Heap sort of order[0..n) by keys ascending (no recursion, no allocation). */
static void sort_by_key(int32_t *order, int32_t n, const float *keys) {
    for (int32_t start = n / 2 - 1, end = n;; ) {
        int32_t root;
        if (start >= 0) {
            root = start--;
        } else {
            if (--end <= 0) break;
            int32_t t = order[0];
            order[0] = order[end];
            order[end] = t;
            root = 0;
        }
        for (;;) {
            int32_t child = 2 * root + 1;
            if (child >= end) break;
            if (child + 1 < end && keys[order[child + 1]] > keys[order[child]]) child++;
            if (keys[order[child]] > keys[order[root]]) {
                int32_t t = order[root];
                order[root] = order[child];
                order[child] = t;
                root = child;
            } else {
                break;
            }
        }
    }
}

tsr_status tsr_sampler_process(tsr_sampler *s, float *x, tsr_error *err) {
    if (!s || !x) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "sampler or logits is NULL");
    const tsr_sampling_params *p = &s->p;
    int32_t V = s->n_vocab;
    for (int32_t i = 0; i < V; i++)
        if (isnan(x[i]) || x[i] == INFINITY)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "logits[%d] is %g", i, (double)x[i]);
    if (p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f)
        for (int32_t i = 0; i < V; i++)
            if (s->count[i])
                x[i] = x[i] - p->frequency_penalty * (float)s->count[i] - p->presence_penalty;
    if (p->repetition_penalty != 1.0f)
        for (int32_t i = 0; i < V; i++)
            if (s->seen[i])
                x[i] = x[i] < 0 ? x[i] * p->repetition_penalty : x[i] / p->repetition_penalty;
    if (is_greedy(p)) return TSR_OK;
    if (p->temperature != 1.0f)
        for (int32_t i = 0; i < V; i++) x[i] = x[i] / p->temperature;
    if (p->top_k > 0 && p->top_k < V) {
        /* The k-th largest value: sort a copy of the order, keep values >= it (ties kept). */
        for (int32_t i = 0; i < V; i++) s->order[i] = i;
        sort_by_key(s->order, V, x);
        float kth = x[s->order[V - p->top_k]];
        for (int32_t i = 0; i < V; i++)
            if (x[i] < kth) x[i] = -INFINITY;
    }
    if (p->top_p < 1.0f) {
        for (int32_t i = 0; i < V; i++) s->order[i] = i;
        sort_by_key(s->order, V, x);
        for (int32_t i = 0; i < V; i++) s->probs[i] = x[s->order[i]];
        softmax_into(s->probs, s->probs, V);
        float cum = 0.0f, lim = 1.0f - p->top_p;
        for (int32_t i = 0; i < V - 1; i++) { /* the last (largest) is always kept */
            cum += s->probs[i];
            if (cum <= lim) x[s->order[i]] = -INFINITY;
        }
    }
    if (p->min_p > 0.0f) {
        softmax_into(s->probs, x, V);
        int32_t top = 0;
        for (int32_t i = 1; i < V; i++)
            if (s->probs[i] > s->probs[top]) top = i;
        float thr = p->min_p * s->probs[top];
        for (int32_t i = 0; i < V; i++)
            if (i != top && s->probs[i] < thr) x[i] = -INFINITY;
    }
    return TSR_OK;
}

/* splitmix64 */
static uint64_t next_u64(uint64_t *st) {
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

tsr_status tsr_sampler_sample(tsr_sampler *s, float *x, int32_t *id, tsr_error *err) {
    if (!id) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "id is NULL");
    *id = -1;
    tsr_status st = tsr_sampler_process(s, x, err);
    if (st) return st;
    int32_t V = s->n_vocab, best = 0;
    for (int32_t i = 1; i < V; i++)
        if (x[i] > x[best]) best = i;
    if (is_greedy(&s->p) || s->p.top_k == 1 || x[best] == -INFINITY) {
        *id = best;
        return TSR_OK;
    }
    softmax_into(s->probs, x, V);
    double u = (double)(next_u64(&s->rng) >> 11) * (1.0 / 9007199254740992.0), cum = 0.0;
    int32_t pick = best;
    for (int32_t i = 0; i < V; i++) {
        if (s->probs[i] <= 0.0f) continue;
        cum += s->probs[i];
        pick = i;
        if (u < cum) break;
    }
    *id = pick;
    return TSR_OK;
}
