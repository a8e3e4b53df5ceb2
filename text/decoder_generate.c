/* tsr_session_generate: prefill, then sample / decode one id at a time with streamed text,
 * EOS ids, stop strings and max_tokens. Buffers are allocated before the first token. */
#include <string.h>
#include <time.h>

#include "decoder.h"

tsr_generate_params tsr_generate_params_default(void) {
    tsr_generate_params p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.sampling = tsr_sampling_params_default();
    p.max_tokens = 256;
    return p;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct text_state {
    char *buf; /* pending text not yet given to the callback */
    size_t len, cap;
} text_state;

static tsr_status pending_append(text_state *t, const char *s, size_t n, tsr_error *err) {
    size_t need;
    if (!tsr__add_size(t->len, n, &need)) return TSR_FAIL(err, TSR_ERR_LIMIT, "text too long");
    if (need > t->cap || !t->buf) {
        size_t cap = t->cap * 2 > need ? t->cap * 2 : need;
        if (cap < 256) cap = 256;
        char *nb = tsr__realloc(t->buf, cap);
        if (!nb) return TSR_FAIL(err, TSR_ERR_OOM, "text buffer");
        t->buf = nb;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len = need;
    return TSR_OK;
}

/* How much of the pending text can be released: up to a stop string (*hit = 1) or up to the
 * longest tail that could still start one. */
static size_t releasable(const text_state *t, const tsr_generate_params *p, int *hit) {
    *hit = 0;
    size_t best = t->len;
    for (size_t i = 0; i < p->n_stop; i++) {
        const char *st = p->stop[i];
        size_t sl = strlen(st);
        if (!sl || sl > t->len) continue;
        for (size_t k = 0; k + sl <= t->len; k++)
            if (!memcmp(t->buf + k, st, sl)) {
                if (!*hit || k < best) best = k;
                *hit = 1;
                break;
            }
    }
    if (*hit) return best;
    size_t hold = 0;
    for (size_t i = 0; i < p->n_stop; i++) {
        const char *st = p->stop[i];
        size_t sl = strlen(st);
        for (size_t k = sl > 0 ? sl - 1 : 0; k > hold; k--)
            if (k <= t->len && !memcmp(t->buf + t->len - k, st, k)) {
                hold = k;
                break;
            }
    }
    return t->len - hold;
}

static int emit(const tsr_generate_params *p, text_state *t, int32_t id, size_t n) {
    int stop = p->on_token ? p->on_token(id, t->buf ? t->buf : "", n, p->user) : 0;
    if (n) memmove(t->buf, t->buf + n, t->len - n);
    t->len -= n;
    return stop;
}

tsr_status tsr_session_generate(tsr_session *s, const tsr_decode_input *prompt,
                                const tsr_generate_params *params, tsr_token_ids *out,
                                tsr_usage *usage, tsr_error *err) {
    if (out) memset(out, 0, sizeof *out);
    if (usage) memset(usage, 0, sizeof *usage);
    if (!s || !prompt) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "session or prompt is NULL");
    tsr_generate_params p = tsr_generate_params_default();
    if (params && params->size < sizeof(size_t))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "params->size is not set");
    if (params) memcpy(&p, params, params->size < sizeof p ? params->size : sizeof p);
    if (p.max_tokens < 0) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "max_tokens < 0");
    if (p.n_stop && (!p.stop || !p.tokenizer))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "stop strings need stop[] and a tokenizer");
    for (size_t i = 0; i < p.n_stop; i++)
        if (!p.stop[i]) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "stop[%zu] is NULL", i);
    const tsr_model *m = tsr__session_model(s);
    int32_t V = m->cfg.vocab;
    if (p.tokenizer && tsr_tokenizer_vocab_size(p.tokenizer) > V + 4096)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "tokenizer vocabulary (%d) does not fit the "
                        "model (%d)", tsr_tokenizer_vocab_size(p.tokenizer), V);
    tsr_sampler *smp = NULL;
    tsr_detok_stream *ds = NULL;
    text_state txt = {0};
    float *scratch = NULL;
    int32_t *ids = NULL;
    int64_t max_new = p.max_tokens;
    int64_t room = tsr_session_n_ctx(s) - tsr_session_n_past(s) - prompt->n_ids + 1;
    if (max_new > room) max_new = room > 0 ? room : 0;
    tsr_status st = tsr_sampler_new(&p.sampling, V, &smp, err);
    if (!st) {
        scratch = tsr__malloc((size_t)V * sizeof *scratch);
        ids = tsr__malloc((size_t)(max_new > 0 ? max_new : 1) * sizeof *ids);
        if (!scratch || !ids) st = TSR_FAIL(err, TSR_ERR_OOM, "generation buffers");
    }
    if (!st && p.tokenizer) st = tsr_detok_stream_new(p.tokenizer, 1, &ds, err);
    if (!st) st = pending_append(&txt, "", 0, err);
    for (int64_t i = 0; !st && prompt->ids && i < prompt->n_ids; i++)
        if (prompt->ids[i] >= 0 && prompt->ids[i] < V)
            st = tsr_sampler_accept(smp, prompt->ids[i], 0, err);
    double t0 = now_ms(), t1 = t0;
    if (!st) st = tsr_session_decode(s, prompt, NULL, 0, err);
    t1 = now_ms();
    size_t eos_n;
    const int32_t *eos;
    eos_n = tsr_model_eos_ids(m, &eos);
    tsr_stop_reason why = TSR_STOP_LENGTH;
    int64_t n = 0;
    while (!st) {
        if (n >= max_new) {
            why = TSR_STOP_LENGTH;
            break;
        }
        memcpy(scratch, tsr_session_logits(s), (size_t)V * sizeof *scratch);
        int32_t id;
        if ((st = tsr_sampler_sample(smp, scratch, &id, err))) break;
        int is_eos = 0;
        for (size_t k = 0; k < eos_n && !p.ignore_eos; k++) is_eos |= eos[k] == id;
        if (is_eos) {
            why = TSR_STOP_EOS;
            break;
        }
        ids[n++] = id;
        if ((st = tsr_sampler_accept(smp, id, 1, err))) break;
        int hit = 0;
        if (ds) {
            const char *piece;
            size_t plen;
            if (id < tsr_tokenizer_vocab_size(p.tokenizer) &&
                tsr_tokenizer_id_to_token(p.tokenizer, id)) {
                if ((st = tsr_detok_stream_step(ds, id, &piece, &plen, err))) break;
                if ((st = pending_append(&txt, piece, plen, err))) break;
            }
        }
        size_t r = releasable(&txt, &p, &hit);
        if (emit(&p, &txt, id, r)) {
            why = TSR_STOP_CANCELLED;
            break;
        }
        if (hit) {
            why = TSR_STOP_STRING;
            break;
        }
        if (n >= max_new) continue;
        tsr_decode_input one = tsr_decode_input_default();
        one.ids = &id;
        one.n_ids = 1;
        st = tsr_session_decode(s, &one, NULL, 0, err);
    }
    if (!st && ds && why != TSR_STOP_STRING && why != TSR_STOP_CANCELLED) {
        const char *piece;
        size_t plen;
        st = tsr_detok_stream_flush(ds, &piece, &plen, err);
        if (!st) st = pending_append(&txt, piece, plen, err);
        if (!st && txt.len) emit(&p, &txt, -1, txt.len);
    }
    double t2 = now_ms();
    if (!st && usage) {
        usage->prompt_tokens = prompt->n_ids;
        usage->completion_tokens = n;
        usage->prefill_ms = t1 - t0;
        usage->decode_ms = t2 - t1;
        usage->stop_reason = why;
    }
    if (!st && out) {
        out->ids = ids;
        out->n = (size_t)n;
        ids = NULL;
    }
    tsr__free(ids);
    tsr__free(scratch);
    tsr__free(txt.buf);
    tsr_detok_stream_free(ds);
    tsr_sampler_free(smp);
    return st;
}
