/*
 * tokenizer.c - public tokenizer API: encode (added tokens, normalizer, pre-tokenizer, BPE,
 * post-processor), decode, lookups.
 */
#include <string.h>

#include <utf8proc.h>

#include "tokenizer.h"

/* ---- added tokens ------------------------------------------------------------------------ */

/* One range of a segment: [s, e) and the added token there (-1 for plain text). */
typedef struct span {
    size_t s, e;
    int32_t added; /* index into tok->added */
} span;

typedef struct spans {
    span *p;
    size_t n, cap;
} spans;

static tsr_status span_push(spans *v, size_t s, size_t e, int32_t added, tsr_error *err) {
    span *np = tsr__grow(v->p, &v->cap, v->n + 1, sizeof *np, 16);
    if (!np) return TSR_FAIL(err, TSR_ERR_OOM, "added-token spans");
    v->p = np;
    v->p[v->n++] = (span){s, e, added};
    return TSR_OK;
}

/* Longest added token starting at s[i], or -1; *end receives its end. */
static int32_t trie_longest(const tsr__trie *t, const char *s, size_t n, size_t i, size_t *end) {
    int32_t best = -1, cur = 0;
    for (size_t j = i; j < n; j++) {
        uint8_t b = (uint8_t)s[j];
        int32_t c = t->nodes[cur].child;
        while (c >= 0 && t->nodes[c].byte != b) c = t->nodes[c].sibling;
        if (c < 0) break;
        cur = c;
        if (t->nodes[c].token >= 0) {
            best = t->nodes[c].token;
            *end = j + 1;
        }
    }
    return best;
}

static bool is_word_char(int32_t cp) {
    if (cp == '_') return true;
    utf8proc_category_t c = utf8proc_category(cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
           (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

static int32_t last_cp(const char *s, size_t n) {
    size_t k = 1;
    while (k < n && ((uint8_t)s[n - k] & 0xC0) == 0x80) k++;
    int32_t cp;
    tsr__utf8_decode((const uint8_t *)s + n - k, k, &cp);
    return cp;
}

/* AddedVocabulary::find_matches: leftmost-longest matches, single_word / lstrip / rstrip. */
static tsr_status find_added(const tsr_tokenizer *tok, const tsr__trie *t, const char *s, size_t n,
                             spans *out, tsr_error *err) {
    out->n = 0;
    size_t start_offset = 0, i = 0;
    tsr_status st;
    while (t->n && i < n) {
        uint8_t b = (uint8_t)s[i];
        size_t end = 0;
        int32_t k;
        if (!(t->first[b >> 3] & (1u << (b & 7))) || (k = trie_longest(t, s, n, i, &end)) < 0) {
            i++;
            continue;
        }
        const tsr__added *a = &tok->added[k];
        size_t ms = i, me = end;
        i = end; /* the search resumes after this match even when it is skipped */
        if (a->single_word) {
            int32_t cp;
            bool start_ok = ms == 0 || !is_word_char(last_cp(s, ms));
            bool stop_ok = me == n || (tsr__utf8_decode((const uint8_t *)s + me, n - me, &cp), !is_word_char(cp));
            if (!start_ok || !stop_ok) continue;
        }
        if (a->lstrip) {
            size_t ns = ms;
            while (ns > 0) {
                size_t k2 = 1;
                while (k2 < ns && ((uint8_t)s[ns - k2] & 0xC0) == 0x80) k2++;
                int32_t cp;
                tsr__utf8_decode((const uint8_t *)s + ns - k2, k2, &cp);
                if (!tsr__is_whitespace(cp)) break;
                ns -= k2;
            }
            ms = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (me < n) {
                int32_t cp;
                size_t k2 = tsr__utf8_decode((const uint8_t *)s + me, n - me, &cp);
                if (!tsr__is_whitespace(cp)) break;
                me += k2;
            }
            i = me > i ? me : i;
        }
        if (ms < start_offset) ms = start_offset;
        if (start_offset < ms && (st = span_push(out, start_offset, ms, -1, err))) return st;
        if ((st = span_push(out, ms, me, k, err))) return st;
        start_offset = me;
    }
    if (start_offset < n || n == 0) return span_push(out, start_offset, n, -1, err);
    return TSR_OK;
}

/* ---- encode --------------------------------------------------------------------------------- */

typedef struct enc_ctx {
    const tsr_tokenizer *tok;
    tsr__ivec ids;
    tsr__bpe_ctx *bpe;
    tsr__buf norm;
    spans raw, normd;
    tsr__pieces words;
    tsr__pre_scratch pre;
} enc_ctx;

static tsr_status encode_words(enc_ctx *c, const char *s, size_t n, bool first, tsr_error *err) {
    tsr_status st = tsr__tok_pretokenize(c->tok, s, n, first, &c->words, &c->pre, err);
    for (size_t i = 0; i < c->words.n && !st; i++)
        st = tsr__bpe_word(c->tok, c->bpe, c->words.buf.p + c->words.p[i].off, c->words.p[i].len,
                           &c->ids, err);
    return st;
}

static tsr_status encode_segment(enc_ctx *c, const char *s, size_t n, bool first, tsr_error *err) {
    const tsr_tokenizer *tok = c->tok;
    tsr_status st = tsr__tok_normalize(tok, s, n, &c->norm, err);
    if (st) return st;
    if (!tok->norm_trie.n) return encode_words(c, c->norm.p, c->norm.len, first, err);
    /* Normalized added tokens are matched in the normalized text. The normalized text is
     * copied because encode_words reuses no buffer of it, but keep it simple and safe. */
    if ((st = find_added(tok, &tok->norm_trie, c->norm.p, c->norm.len, &c->normd, err))) return st;
    tsr__buf text = c->norm;
    memset(&c->norm, 0, sizeof c->norm);
    for (size_t i = 0; i < c->normd.n && !st; i++) {
        span sp = c->normd.p[i];
        if (sp.added >= 0) st = tsr__ivec_push(&c->ids, tok->added[sp.added].id, err);
        else if (sp.e > sp.s) st = encode_words(c, text.p + sp.s, sp.e - sp.s, first && sp.s == 0, err);
    }
    tsr__buf_free(&text);
    return st;
}

static tsr_status encode(enc_ctx *c, const char *text, size_t len, bool add_special, tsr_error *err) {
    const tsr_tokenizer *tok = c->tok;
    tsr_status st = TSR_OK;
    if (add_special)
        for (size_t i = 0; i < tok->n_post_prefix && !st; i++) st = tsr__ivec_push(&c->ids, tok->post_prefix[i], err);
    if (!st) st = find_added(tok, &tok->raw_trie, text, len, &c->raw, err);
    for (size_t i = 0; i < c->raw.n && !st; i++) {
        span sp = c->raw.p[i];
        if (sp.added >= 0) st = tsr__ivec_push(&c->ids, tok->added[sp.added].id, err);
        else if (sp.e > sp.s) st = encode_segment(c, text + sp.s, sp.e - sp.s, sp.s == 0, err);
    }
    if (add_special)
        for (size_t i = 0; i < tok->n_post_suffix && !st; i++) st = tsr__ivec_push(&c->ids, tok->post_suffix[i], err);
    return st;
}

tsr_status tsr_tokenizer_encode(const tsr_tokenizer *tok, const char *text, size_t len,
                                int add_special_tokens, tsr_token_ids *out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    if (!tok) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "tok is NULL");
    if (!text && len) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "text is NULL with len %zu", len);
    if (!text) text = "";
    size_t valid = tsr__utf8_valid_prefix((const uint8_t *)text, len);
    if (valid != len)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "text is not valid UTF-8 at byte %zu", valid);
    enc_ctx c;
    memset(&c, 0, sizeof c);
    c.tok = tok;
    tsr_status st = TSR_OK;
    if (!(c.bpe = tsr__bpe_ctx_new())) st = TSR_FAIL(err, TSR_ERR_OOM, "BPE state");
    if (!st) st = encode(&c, text, len, add_special_tokens != 0, err);
    tsr__bpe_ctx_free(c.bpe);
    tsr__buf_free(&c.norm);
    tsr__free(c.raw.p);
    tsr__free(c.normd.p);
    tsr__pieces_free(&c.words);
    tsr__pre_scratch_free(&c.pre);
    if (st) {
        tsr__ivec_free(&c.ids);
        return st;
    }
    out->ids = c.ids.p;
    out->n = c.ids.len;
    return TSR_OK;
}

void tsr_token_ids_free(tsr_token_ids *ids) {
    if (!ids) return;
    tsr__free(ids->ids);
    ids->ids = NULL;
    ids->n = 0;
}

/* ---- decode and lookups ---------------------------------------------------------------------- */

tsr_status tsr_tokenizer_decode(const tsr_tokenizer *tok, const int32_t *ids, size_t n,
                                int skip_special_tokens, char **text, size_t *len, tsr_error *err) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!tok || !text) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "tok and text must not be NULL");
    if (!ids && n) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "ids is NULL with n %zu", n);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tok->n_ids || !tok->id_str[ids[i]])
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "ids[%zu] = %d is not in the vocabulary (size %d)", i,
                            (int)ids[i], (int)tok->n_ids);
    tsr__buf out = {0};
    tsr_status st = tsr__tok_decode(tok, ids, n, skip_special_tokens != 0, &out, err);
    if (!st && !out.p) st = tsr__buf_put(&out, "", 0, err);
    if (st) {
        tsr__buf_free(&out);
        return st;
    }
    *text = out.p;
    if (len) *len = out.len;
    return TSR_OK;
}

void tsr_tokenizer_text_free(char *text) { tsr__free(text); }

int32_t tsr_tokenizer_vocab_size(const tsr_tokenizer *tok) { return tok ? tok->n_ids : 0; }

int32_t tsr_tokenizer_token_to_id(const tsr_tokenizer *tok, const char *token, size_t len) {
    if (!tok || (!token && len)) return -1;
    return tsr__strmap_get(&tok->tok2id, token ? token : "", len);
}

const char *tsr_tokenizer_id_to_token(const tsr_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->n_ids) return NULL;
    return tok->id_str[id];
}

int tsr_tokenizer_is_special(const tsr_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->n_ids) return 0;
    return tok->id_special[id];
}

int32_t tsr_tokenizer_bos_id(const tsr_tokenizer *tok) { return tok ? tok->bos_id : -1; }
int32_t tsr_tokenizer_eos_id(const tsr_tokenizer *tok) { return tok ? tok->eos_id : -1; }
int32_t tsr_tokenizer_pad_id(const tsr_tokenizer *tok) { return tok ? tok->pad_id : -1; }
int32_t tsr_tokenizer_unk_id(const tsr_tokenizer *tok) { return tok ? tok->unk_cfg_id : -1; }

void tsr_tokenizer_free(tsr_tokenizer *tok) {
    if (!tok) return;
    if (tok->id_str)
        for (int32_t i = 0; i < tok->n_ids; i++) tsr__free(tok->id_str[i]);
    tsr__free(tok->id_str);
    tsr__free(tok->id_len);
    tsr__free(tok->id_special);
    tsr__strmap_free(&tok->tok2id);
    tsr__strmap_free(&tok->model);
    tsr__pairmap_free(&tok->merges);
    tsr__tok_free_components(tok);
    tsr__free(tok);
}
