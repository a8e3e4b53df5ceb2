/*
 * tokenizer_bpe.c - the BPE model: initial units (bytes for byte-level vocabularies, UTF-8
 * characters otherwise, with byte fallback and unk), then merges applied lowest rank first,
 * leftmost first among equal ranks, with a binary heap (as `tokenizers`' Word::merge_all).
 * A per-call cache maps words already seen to their ids.
 */
#include <string.h>

#include "tokenizer.h"

#define CACHE_MAX_WORD 64       /* longer words are not cached */
#define CACHE_MAX_ENTRIES (1u << 20)

typedef struct sym {
    int32_t id;
    int32_t prev, next;
    uint32_t len; /* 0 = merged away */
} sym;

typedef struct cand {
    uint32_t rank, pos, id;
} cand;

typedef struct cache_slot {
    uint64_t hash; /* 0 = empty */
    uint32_t word_off, word_len;
    uint32_t ids_off, n_ids;
} cache_slot;

struct tsr__bpe_ctx {
    sym *syms;
    size_t syms_cap;
    cand *heap;
    size_t heap_n, heap_cap;
    cache_slot *cache;
    size_t cache_cap, cache_n;
    tsr__buf cache_words;
    tsr__ivec cache_ids;
};

tsr__bpe_ctx *tsr__bpe_ctx_new(void) { return tsr__calloc(1, sizeof(tsr__bpe_ctx)); }

void tsr__bpe_ctx_free(tsr__bpe_ctx *ctx) {
    if (!ctx) return;
    tsr__free(ctx->syms);
    tsr__free(ctx->heap);
    tsr__free(ctx->cache);
    tsr__buf_free(&ctx->cache_words);
    tsr__ivec_free(&ctx->cache_ids);
    tsr__free(ctx);
}

/* ---- heap ordered by (rank, pos) ------------------------------------------------------------ */

static inline bool cand_less(cand a, cand b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static tsr_status heap_push(tsr__bpe_ctx *c, cand x, tsr_error *err) {
    if (c->heap_n == c->heap_cap) {
        size_t ncap = c->heap_cap ? c->heap_cap * 2 : 64;
        cand *np = tsr__realloc(c->heap, ncap * sizeof *np);
        if (!np) return TSR_FAIL(err, TSR_ERR_OOM, "merge queue of %zu entries", ncap);
        c->heap = np;
        c->heap_cap = ncap;
    }
    size_t i = c->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_less(x, c->heap[parent])) break;
        c->heap[i] = c->heap[parent];
        i = parent;
    }
    c->heap[i] = x;
    return TSR_OK;
}

static cand heap_pop(tsr__bpe_ctx *c) {
    cand top = c->heap[0], x = c->heap[--c->heap_n];
    size_t i = 0, n = c->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        cand best = x;
        if (l < n && cand_less(c->heap[l], best)) { m = l; best = c->heap[l]; }
        if (r < n && cand_less(c->heap[r], best)) m = r;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = x;
    return top;
}

/* ---- initial symbols ------------------------------------------------------------------------- */

typedef struct word_builder {
    tsr__bpe_ctx *c;
    size_t n;
    int32_t unk_id; /* pending unk (fuse_unk), -1 when none */
    uint32_t unk_len;
} word_builder;

static tsr_status add_sym(word_builder *w, int32_t id, uint32_t len, tsr_error *err) {
    tsr__bpe_ctx *c = w->c;
    if (w->n == c->syms_cap) {
        size_t ncap = c->syms_cap ? c->syms_cap * 2 : 256, bytes;
        if (!tsr__mul_size(ncap, sizeof(sym), &bytes)) return TSR_FAIL(err, TSR_ERR_LIMIT, "word too long");
        sym *np = tsr__realloc(c->syms, bytes);
        if (!np) return TSR_FAIL(err, TSR_ERR_OOM, "word of %zu symbols", ncap);
        c->syms = np;
        c->syms_cap = ncap;
    }
    if (w->n >= INT32_MAX - 1) return TSR_FAIL(err, TSR_ERR_LIMIT, "word of more than 2^31 symbols");
    c->syms[w->n] = (sym){id, (int32_t)w->n - 1, (int32_t)w->n + 1, len};
    w->n++;
    return TSR_OK;
}

/* One character (unit) of the word: its id if the vocabulary has it, else its bytes as
 * <0xNN> tokens (byte_fallback), else unk (fused when fuse_unk), else dropped. `s` is the
 * unit as the vocabulary spells it (for byte-level: the mapped character). */
static tsr_status add_unit(const tsr_tokenizer *tok, word_builder *w, int32_t id, const char *s,
                           size_t sn, uint32_t byte_len, tsr_error *err) {
    tsr_status st;
    if (id >= 0) {
        if (w->unk_id >= 0) {
            if ((st = add_sym(w, w->unk_id, w->unk_len, err))) return st;
            w->unk_id = -1;
        }
        return add_sym(w, id, byte_len, err);
    }
    if (tok->byte_fallback) {
        bool all = true;
        for (size_t i = 0; i < sn; i++) all = all && tok->byte_fallback_id[(uint8_t)s[i]] >= 0;
        if (all) {
            for (size_t i = 0; i < sn; i++)
                if ((st = add_sym(w, tok->byte_fallback_id[(uint8_t)s[i]], 1, err))) return st;
            return TSR_OK;
        }
    }
    if (tok->unk_id >= 0) {
        if (w->unk_id >= 0 && tok->fuse_unk) {
            w->unk_len += byte_len;
        } else {
            if (w->unk_id >= 0 && (st = add_sym(w, w->unk_id, w->unk_len, err))) return st;
            w->unk_id = tok->unk_id;
            w->unk_len = byte_len;
        }
    }
    return TSR_OK;
}

static tsr_status init_word(const tsr_tokenizer *tok, word_builder *w, const char *s, size_t n,
                            tsr_error *err) {
    tsr_status st;
    if (tok->byte_level) {
        for (size_t i = 0; i < n; i++) {
            uint8_t b = (uint8_t)s[i];
            int32_t id = tok->byte_unit[b];
            if (id >= 0) {
                if (w->unk_id < 0) { /* fast path */
                    if ((st = add_sym(w, id, 1, err))) return st;
                    continue;
                }
                st = add_unit(tok, w, id, NULL, 0, 1, err);
            } else {
                char enc[4];
                size_t k = tsr__utf8_encode(tsr__byte_to_char(b), enc);
                st = add_unit(tok, w, -1, enc, k, 1, err);
            }
            if (st) return st;
        }
    } else {
        size_t i = 0;
        while (i < n) {
            int32_t cp;
            size_t k = tsr__utf8_decode((const uint8_t *)s + i, n - i, &cp);
            int32_t id = tsr__strmap_get(&tok->model, s + i, k);
            if ((st = add_unit(tok, w, id, s + i, k, (uint32_t)k, err))) return st;
            i += k;
        }
    }
    if (w->unk_id >= 0) return add_sym(w, w->unk_id, w->unk_len, err);
    return TSR_OK;
}

/* ---- merges ------------------------------------------------------------------------------------ */

static tsr_status merge_all(const tsr_tokenizer *tok, tsr__bpe_ctx *c, size_t n, tsr_error *err) {
    sym *S = c->syms;
    if (n) S[n - 1].next = -1;
    c->heap_n = 0;
    tsr_status st;
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t rank, id;
        if (tsr__pairmap_get(&tok->merges, (uint32_t)S[i].id, (uint32_t)S[i + 1].id, &rank, &id) &&
            (st = heap_push(c, (cand){rank, (uint32_t)i, id}, err)))
            return st;
    }
    while (c->heap_n) {
        cand top = heap_pop(c);
        sym *cur = &S[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        sym *right = &S[cur->next];
        uint32_t rank, id;
        if (!tsr__pairmap_get(&tok->merges, (uint32_t)cur->id, (uint32_t)right->id, &rank, &id) ||
            id != top.id)
            continue; /* stale */
        cur->id = (int32_t)top.id;
        cur->len += right->len;
        cur->next = right->next;
        right->len = 0;
        if (cur->next >= 0) S[cur->next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            sym *p = &S[cur->prev];
            if (tsr__pairmap_get(&tok->merges, (uint32_t)p->id, (uint32_t)cur->id, &rank, &id) &&
                (st = heap_push(c, (cand){rank, (uint32_t)cur->prev, id}, err)))
                return st;
        }
        if (cur->next >= 0) {
            sym *nx = &S[cur->next];
            if (tsr__pairmap_get(&tok->merges, (uint32_t)cur->id, (uint32_t)nx->id, &rank, &id) &&
                (st = heap_push(c, (cand){rank, top.pos, id}, err)))
                return st;
        }
    }
    return TSR_OK;
}

/* ---- cache ------------------------------------------------------------------------------------- */

static cache_slot *cache_find(tsr__bpe_ctx *c, uint64_t h, const char *w, size_t n) {
    if (!c->cache_cap) return NULL;
    size_t mask = c->cache_cap - 1, i = (size_t)h & mask;
    for (;;) {
        cache_slot *e = &c->cache[i];
        if (!e->hash) return e;
        if (e->hash == h && e->word_len == n && !memcmp(c->cache_words.p + e->word_off, w, n)) return e;
        i = (i + 1) & mask;
    }
}

static tsr_status cache_grow(tsr__bpe_ctx *c, tsr_error *err) {
    size_t ncap = c->cache_cap ? c->cache_cap * 2 : 1024;
    cache_slot *nc = tsr__calloc(ncap, sizeof *nc);
    if (!nc) return TSR_FAIL(err, TSR_ERR_OOM, "word cache of %zu slots", ncap);
    for (size_t i = 0; i < c->cache_cap; i++) {
        if (!c->cache[i].hash) continue;
        size_t j = (size_t)c->cache[i].hash & (ncap - 1);
        while (nc[j].hash) j = (j + 1) & (ncap - 1);
        nc[j] = c->cache[i];
    }
    tsr__free(c->cache);
    c->cache = nc;
    c->cache_cap = ncap;
    return TSR_OK;
}

static tsr_status cache_put(tsr__bpe_ctx *c, uint64_t h, const char *w, size_t n,
                            const int32_t *ids, size_t k, tsr_error *err) {
    if (c->cache_n >= CACHE_MAX_ENTRIES || c->cache_words.len > UINT32_MAX - n ||
        c->cache_ids.len > UINT32_MAX - k)
        return TSR_OK;
    tsr_status st;
    if ((c->cache_n + 1) * 2 > c->cache_cap && (st = cache_grow(c, err))) return st;
    cache_slot *e = cache_find(c, h, w, n);
    uint32_t woff = (uint32_t)c->cache_words.len, ioff = (uint32_t)c->cache_ids.len;
    if ((st = tsr__buf_put(&c->cache_words, w, n, err))) return st;
    for (size_t i = 0; i < k; i++)
        if ((st = tsr__ivec_push(&c->cache_ids, ids[i], err))) return st;
    *e = (cache_slot){h, woff, (uint32_t)n, ioff, (uint32_t)k};
    c->cache_n++;
    return TSR_OK;
}

tsr_status tsr__bpe_word(const tsr_tokenizer *tok, tsr__bpe_ctx *c, const char *w, size_t n,
                         tsr__ivec *out, tsr_error *err) {
    if (!n) return TSR_OK;
    tsr_status st;
    if (tok->byte_level && n == 1 && tok->byte_unit[(uint8_t)w[0]] >= 0)
        return tsr__ivec_push(out, tok->byte_unit[(uint8_t)w[0]], err);
    if (tok->ignore_merges) { /* a word that is a token is emitted whole */
        int32_t id = tsr__strmap_get(&tok->model, w, n);
        if (id >= 0) return tsr__ivec_push(out, id, err);
    }
    uint64_t h = 0;
    bool cacheable = n <= CACHE_MAX_WORD;
    if (cacheable) {
        h = tsr__tok_hash(w, n) | 1;
        cache_slot *e = cache_find(c, h, w, n);
        if (e && e->hash) {
            for (uint32_t i = 0; i < e->n_ids; i++)
                if ((st = tsr__ivec_push(out, c->cache_ids.p[e->ids_off + i], err))) return st;
            return TSR_OK;
        }
    }
    word_builder wb = {c, 0, -1, 0};
    if ((st = init_word(tok, &wb, w, n, err))) return st;
    if ((st = merge_all(tok, c, wb.n, err))) return st;
    size_t start = out->len;
    for (int32_t i = wb.n ? 0 : -1; i >= 0; i = c->syms[i].next)
        if ((st = tsr__ivec_push(out, c->syms[i].id, err))) return st;
    if (cacheable) return cache_put(c, h, w, n, out->p + start, out->len - start, err);
    return TSR_OK;
}
