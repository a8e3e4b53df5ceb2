/*
 * tokenizer_decode.c - decoders (ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace)
 * run as a chain over the token strings, and the streaming detokenizer.
 */
#include <string.h>

#include "tokenizer.h"

/* A list of strings stored back to back in one buffer. */
typedef struct toklist {
    tsr__buf buf;
    size_t *off, *len;
    size_t n, cap;
} toklist;

static tsr_status tl_begin(toklist *t, tsr_error *err) {
    (void)err;
    t->n = 0;
    t->buf.len = 0;
    return TSR_OK;
}

/* Appends the string that was written at buf[start..] as a new entry. */
static tsr_status tl_close(toklist *t, size_t start, tsr_error *err) {
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 32;
        size_t *no = tsr__realloc(t->off, ncap * sizeof *no);
        if (!no) return TSR_FAIL(err, TSR_ERR_OOM, "token list");
        t->off = no;
        size_t *nl = tsr__realloc(t->len, ncap * sizeof *nl);
        if (!nl) return TSR_FAIL(err, TSR_ERR_OOM, "token list");
        t->len = nl;
        t->cap = ncap;
    }
    t->off[t->n] = start;
    t->len[t->n] = t->buf.len - start;
    t->n++;
    return TSR_OK;
}

static tsr_status tl_add(toklist *t, const char *s, size_t n, tsr_error *err) {
    size_t start = t->buf.len;
    tsr_status st = tsr__buf_put(&t->buf, s, n, err);
    return st ? st : tl_close(t, start, err);
}

static void tl_free(toklist *t) {
    tsr__buf_free(&t->buf);
    tsr__free(t->off);
    tsr__free(t->len);
    memset(t, 0, sizeof *t);
}

#define TOK(t, i) ((t)->buf.p + (t)->off[i])

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xNN>" -> NN as u8::from_str_radix(.., 16) reads it (which also takes "+N"). */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    if (s[3] == '+') return hexval(s[4]);
    int a = hexval(s[3]), b = hexval(s[4]);
    return a < 0 || b < 0 ? -1 : a * 16 + b;
}

static tsr_status flush_bytes(toklist *out, const uint8_t *bytes, size_t nb, tsr_error *err) {
    if (!nb) return TSR_OK;
    if (tsr__utf8_valid_prefix(bytes, nb) == nb) return tl_add(out, (const char *)bytes, nb, err);
    for (size_t i = 0; i < nb; i++) {
        tsr_status st = tl_add(out, "\xEF\xBF\xBD", 3, err);
        if (st) return st;
    }
    return TSR_OK;
}

static tsr_status dec_byte_fallback(const toklist *in, toklist *out, tsr_error *err) {
    tsr__buf bytes = {0};
    tsr_status st = TSR_OK;
    for (size_t i = 0; i < in->n && !st; i++) {
        int b = byte_token(TOK(in, i), in->len[i]);
        if (b >= 0) {
            uint8_t c = (uint8_t)b;
            st = tsr__buf_put(&bytes, &c, 1, err);
            continue;
        }
        st = flush_bytes(out, (const uint8_t *)bytes.p, bytes.len, err);
        bytes.len = 0;
        if (!st) st = tl_add(out, TOK(in, i), in->len[i], err);
    }
    if (!st) st = flush_bytes(out, (const uint8_t *)bytes.p, bytes.len, err);
    tsr__buf_free(&bytes);
    return st;
}

static tsr_status dec_fuse(const toklist *in, toklist *out, tsr_error *err) {
    size_t start = out->buf.len;
    tsr_status st = tsr__buf_put(&out->buf, "", 0, err);
    for (size_t i = 0; i < in->n && !st; i++) st = tsr__buf_put(&out->buf, TOK(in, i), in->len[i], err);
    return st ? st : tl_close(out, start, err);
}

static tsr_status dec_bytelevel(const toklist *in, toklist *out, tsr_error *err) {
    tsr__buf raw = {0};
    tsr_status st = tsr__buf_put(&raw, "", 0, err);
    for (size_t i = 0; i < in->n && !st; i++) {
        const char *s = TOK(in, i);
        size_t n = in->len[i], j = 0, start = raw.len;
        bool mapped = true;
        while (j < n && !st) {
            int32_t cp;
            j += tsr__utf8_decode((const uint8_t *)s + j, n - j, &cp);
            int b = tsr__char_to_byte(cp);
            if (b < 0) { mapped = false; break; }
            uint8_t c = (uint8_t)b;
            st = tsr__buf_put(&raw, &c, 1, err);
        }
        if (!st && !mapped) { /* a char outside the alphabet: the token's own bytes */
            raw.len = start;
            st = tsr__buf_put(&raw, s, n, err);
        }
    }
    size_t start = out->buf.len;
    if (!st) st = tsr__utf8_lossy(&out->buf, (const uint8_t *)raw.p, raw.len, err);
    if (!st) st = tl_close(out, start, err);
    tsr__buf_free(&raw);
    return st;
}

/* Per-token rewrites: Replace, Strip, Metaspace. */
static tsr_status dec_map(const tsr__dec *d, const toklist *in, toklist *out, tsr_error *err) {
    char rep[4];
    size_t rn = d->kind == TSR__DEC_METASPACE ? tsr__utf8_encode(d->replacement, rep) : 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK(in, i);
        size_t n = in->len[i], start = out->buf.len;
        tsr_status st = tsr__buf_put(&out->buf, "", 0, err);
        if (st) return st;
        if (d->kind == TSR__DEC_REPLACE) {
            size_t j = 0, run = 0;
            while (j + d->pattern_len <= n && !st) {
                if (!memcmp(s + j, d->pattern, d->pattern_len)) {
                    st = tsr__buf_put(&out->buf, s + run, j - run, err);
                    if (!st) st = tsr__buf_put(&out->buf, d->content, d->content_len, err);
                    j += d->pattern_len;
                    run = j;
                } else {
                    j++;
                }
            }
            if (!st) st = tsr__buf_put(&out->buf, s + run, n - run, err);
        } else if (d->kind == TSR__DEC_METASPACE) {
            bool drop = i == 0 && d->prepend != TSR__PREPEND_NEVER;
            size_t j = 0, run = 0;
            while (j + rn <= n && !st) {
                if (!memcmp(s + j, rep, rn)) {
                    st = tsr__buf_put(&out->buf, s + run, j - run, err);
                    if (!st && !drop) st = tsr__buf_put(&out->buf, " ", 1, err);
                    j += rn;
                    run = j;
                } else {
                    j++;
                }
            }
            if (!st) st = tsr__buf_put(&out->buf, s + run, n - run, err);
        } else { /* STRIP: up to `start` leading and `stop` trailing copies of the char */
            size_t cn = d->content_len, a = 0, b = n;
            for (int64_t k = 0; k < d->start && b - a >= cn && !memcmp(s + a, d->content, cn); k++) a += cn;
            for (int64_t k = 0; k < d->stop && b - a >= cn && !memcmp(s + b - cn, d->content, cn); k++) b -= cn;
            st = tsr__buf_put(&out->buf, s + a, b - a, err);
        }
        if (!st) st = tl_close(out, start, err);
        if (st) return st;
    }
    return TSR_OK;
}

tsr_status tsr__tok_decode(const tsr_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                           tsr__buf *out, tsr_error *err) {
    toklist a = {0}, b = {0};
    tsr_status st = tl_begin(&a, err);
    for (size_t i = 0; i < n && !st; i++) {
        int32_t id = ids[i];
        if (skip_special && tok->id_special[id]) continue;
        st = tl_add(&a, tok->id_str[id], tok->id_len[id], err);
    }
    for (size_t k = 0; k < tok->n_decs && !st; k++) {
        const tsr__dec *d = &tok->decs[k];
        tl_begin(&b, err);
        switch (d->kind) {
        case TSR__DEC_BYTELEVEL: st = dec_bytelevel(&a, &b, err); break;
        case TSR__DEC_BYTE_FALLBACK: st = dec_byte_fallback(&a, &b, err); break;
        case TSR__DEC_FUSE: st = dec_fuse(&a, &b, err); break;
        default: st = dec_map(d, &a, &b, err); break;
        }
        toklist t = a;
        a = b;
        b = t;
    }
    out->len = 0;
    if (!st) st = tsr__buf_put(out, "", 0, err);
    for (size_t i = 0; i < a.n && !st; i++) {
        if (i && !tok->n_decs) st = tsr__buf_put(out, " ", 1, err); /* no decoder: join with spaces */
        if (!st) st = tsr__buf_put(out, TOK(&a, i), a.len[i], err);
    }
    tl_free(&a);
    tl_free(&b);
    return st;
}

/* ---- streaming ------------------------------------------------------------------------------ */

struct tsr_detok_stream {
    const tsr_tokenizer *tok;
    bool skip_special;
    tsr__ivec ids;
    size_t prefix_index;
    tsr__buf prefix; /* decode(ids[..]) already emitted */
    tsr__buf text;   /* decode scratch */
    tsr__buf emit;   /* what the last call returned */
};

tsr_status tsr_detok_stream_new(const tsr_tokenizer *tok, int skip_special_tokens,
                                tsr_detok_stream **out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!tok) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "tok is NULL");
    tsr_detok_stream *s = tsr__calloc(1, sizeof *s);
    if (!s) return TSR_FAIL(err, TSR_ERR_OOM, "stream");
    s->tok = tok;
    s->skip_special = skip_special_tokens != 0;
    *out = s;
    return TSR_OK;
}

static bool ends_with_replacement(const tsr__buf *b) {
    return b->len >= 3 && !memcmp(b->p + b->len - 3, "\xEF\xBF\xBD", 3);
}

/* DecodeStream::step: decode the ids since the last emission; when the text grew and does not
 * end in U+FFFD (an incomplete character), emit the growth and slide the window. */
tsr_status tsr_detok_stream_step(tsr_detok_stream *s, int32_t id, const char **text, size_t *len,
                                 tsr_error *err) {
    if (text) *text = "";
    if (len) *len = 0;
    if (!s || !text || !len) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "stream, text and len must not be NULL");
    const tsr_tokenizer *tok = s->tok;
    if (id < 0 || id >= tok->n_ids || !tok->id_str[id])
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "id %d is not in the vocabulary (size %d)", (int)id, (int)tok->n_ids);
    tsr_status st = tsr__ivec_push(&s->ids, id, err);
    if (!st) st = tsr__tok_decode(tok, s->ids.p, s->ids.len, s->skip_special, &s->text, err);
    if (st) return st;
    s->emit.len = 0;
    st = tsr__buf_put(&s->emit, "", 0, err);
    if (!st && s->text.len > s->prefix.len && !ends_with_replacement(&s->text)) {
        /* The reference raises when the old prefix changed under a later id (byte-fallback runs
         * of invalid UTF-8); here the stream goes on from the new text's same byte offset, moved
         * back to a character boundary. */
        size_t cut = s->prefix.len;
        while (cut > 0 && cut < s->text.len && ((uint8_t)s->text.p[cut] & 0xC0) == 0x80) cut--;
        st = tsr__buf_put(&s->emit, s->text.p + cut, s->text.len - cut, err);
        size_t new_prefix_index = s->ids.len - s->prefix_index;
        memmove(s->ids.p, s->ids.p + s->prefix_index, (s->ids.len - s->prefix_index) * sizeof(int32_t));
        s->ids.len -= s->prefix_index;
        if (!st) st = tsr__tok_decode(tok, s->ids.p, s->ids.len, s->skip_special, &s->prefix, err);
        s->prefix_index = new_prefix_index;
    }
    if (st) return st;
    *text = s->emit.p;
    *len = s->emit.len;
    return TSR_OK;
}

tsr_status tsr_detok_stream_flush(tsr_detok_stream *s, const char **text, size_t *len, tsr_error *err) {
    if (text) *text = "";
    if (len) *len = 0;
    if (!s || !text || !len) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "stream, text and len must not be NULL");
    s->emit.len = 0;
    tsr_status st = tsr__buf_put(&s->emit, "", 0, err);
    if (!st) st = tsr__tok_decode(s->tok, s->ids.p, s->ids.len, s->skip_special, &s->text, err);
    if (!st && s->text.len > s->prefix.len) {
        size_t cut = s->prefix.len;
        while (cut > 0 && ((uint8_t)s->text.p[cut] & 0xC0) == 0x80) cut--;
        st = tsr__buf_put(&s->emit, s->text.p + cut, s->text.len - cut, err);
    }
    if (st) return st;
    s->ids.len = 0;
    s->prefix_index = 0;
    s->prefix.len = 0;
    *text = s->emit.p;
    *len = s->emit.len;
    return TSR_OK;
}

void tsr_detok_stream_free(tsr_detok_stream *s) {
    if (!s) return;
    tsr__ivec_free(&s->ids);
    tsr__buf_free(&s->prefix);
    tsr__buf_free(&s->text);
    tsr__buf_free(&s->emit);
    tsr__free(s);
}
