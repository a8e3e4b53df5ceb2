/*
 * tokenizer_util.c - hash maps, buffers and the Unicode helpers the tokenizer needs.
 */
#include <string.h>

#include "tokenizer.h"

uint64_t tsr__tok_hash(const void *p, size_t n) {
    /* 8 bytes at a time, multiplicative mixing (words are short; this is on the hot path). */
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)s[i] << (8 * i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return h;
}

/* ---- string map ------------------------------------------------------------------------ */

static tsr_status strmap_grow(tsr__strmap *m, tsr_error *err) {
    size_t ncap = m->cap ? m->cap * 2 : 64;
    struct tsr__strmap_slot *ns = tsr__malloc(ncap * sizeof *ns);
    if (!ns) return TSR_FAIL(err, TSR_ERR_OOM, "hash map of %zu slots", ncap);
    for (size_t i = 0; i < ncap; i++) ns[i].len = UINT32_MAX;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].len == UINT32_MAX) continue;
        size_t j = m->slots[i].hash & (ncap - 1);
        while (ns[j].len != UINT32_MAX) j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    tsr__free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return TSR_OK;
}

tsr_status tsr__strmap_put(tsr__strmap *m, const char *s, size_t n, int32_t value,
                           tsr_error *err) {
    if (n >= UINT32_MAX || m->arena_len > UINT32_MAX - n)
        return TSR_FAIL(err, TSR_ERR_LIMIT, "token strings exceed 4 GiB");
    if ((m->count + 1) * 4 > m->cap * 3) {
        tsr_status st = strmap_grow(m, err);
        if (st) return st;
    }
    uint32_t h = (uint32_t)tsr__tok_hash(s, n);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].len != UINT32_MAX) {
        struct tsr__strmap_slot *e = &m->slots[j];
        if (e->hash == h && e->len == n && memcmp(m->arena + e->off, s, n) == 0) {
            e->value = value; /* later entries win, as a HashMap built from the list does */
            return TSR_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (m->arena_len + n > m->arena_cap) {
        size_t ncap = m->arena_cap ? m->arena_cap : 4096;
        while (ncap < m->arena_len + n) ncap *= 2;
        char *na = tsr__realloc(m->arena, ncap);
        if (!na) return TSR_FAIL(err, TSR_ERR_OOM, "token arena of %zu bytes", ncap);
        m->arena = na;
        m->arena_cap = ncap;
    }
    if (n) memcpy(m->arena + m->arena_len, s, n);
    m->slots[j] = (struct tsr__strmap_slot){h, (uint32_t)n, (uint32_t)m->arena_len, value};
    m->arena_len += n;
    m->count++;
    return TSR_OK;
}

int32_t tsr__strmap_get(const tsr__strmap *m, const char *s, size_t n) {
    if (!m->cap) return -1;
    uint32_t h = (uint32_t)tsr__tok_hash(s, n);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].len != UINT32_MAX) {
        const struct tsr__strmap_slot *e = &m->slots[j];
        if (e->hash == h && e->len == n && memcmp(m->arena + e->off, s, n) == 0) return e->value;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

void tsr__strmap_free(tsr__strmap *m) {
    tsr__free(m->slots);
    tsr__free(m->arena);
    memset(m, 0, sizeof *m);
}

/* ---- pair map -------------------------------------------------------------------------- */

tsr_status tsr__pairmap_put(tsr__pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id,
                            tsr_error *err) {
    if ((m->count + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 1024;
        uint64_t *nk = tsr__calloc(ncap, sizeof *nk), *nv = tsr__malloc(ncap * sizeof *nv);
        if (!nk || !nv) {
            tsr__free(nk);
            tsr__free(nv);
            return TSR_FAIL(err, TSR_ERR_OOM, "merge table of %zu slots", ncap);
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i]) continue;
            size_t j = (size_t)((m->keys[i] * 0x9E3779B97F4A7C15ull) >> 32) & (ncap - 1);
            while (nk[j]) j = (j + 1) & (ncap - 1);
            nk[j] = m->keys[i];
            nv[j] = m->vals[i];
        }
        tsr__free(m->keys);
        tsr__free(m->vals);
        m->keys = nk;
        m->vals = nv;
        m->cap = ncap;
    }
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    size_t j = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (m->cap - 1);
    while (m->keys[j] && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (!m->keys[j]) m->count++;
    m->keys[j] = key;
    m->vals[j] = ((uint64_t)rank << 32) | id;
    return TSR_OK;
}

void tsr__pairmap_free(tsr__pairmap *m) {
    tsr__free(m->keys);
    tsr__free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- buffers --------------------------------------------------------------------------- */

tsr_status tsr__buf_reserve(tsr__buf *b, size_t extra, tsr_error *err) {
    size_t need;
    if (!tsr__add_size(b->len, extra, &need) || !tsr__add_size(need, 1, &need))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "text buffer size overflows");
    if (need <= b->cap) return TSR_OK;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) { ncap = need; break; }
        ncap *= 2;
    }
    char *np = tsr__realloc(b->p, ncap);
    if (!np) return TSR_FAIL(err, TSR_ERR_OOM, "text buffer of %zu bytes", ncap);
    b->p = np;
    b->cap = ncap;
    return TSR_OK;
}

tsr_status tsr__buf_put(tsr__buf *b, const void *s, size_t n, tsr_error *err) {
    tsr_status st = tsr__buf_reserve(b, n, err);
    if (st) return st;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return TSR_OK;
}

void tsr__buf_free(tsr__buf *b) {
    tsr__free(b->p);
    memset(b, 0, sizeof *b);
}

tsr_status tsr__ivec_push(tsr__ivec *v, int32_t x, tsr_error *err) {
    int32_t *np = tsr__grow(v->p, &v->cap, v->len + 1, sizeof *np, 64);
    if (!np) return TSR_FAIL(err, TSR_ERR_OOM, "id vector of %zu ids", v->len + 1);
    v->p = np;
    v->p[v->len++] = x;
    return TSR_OK;
}

void tsr__ivec_free(tsr__ivec *v) {
    tsr__free(v->p);
    memset(v, 0, sizeof *v);
}

tsr_status tsr__pieces_push(tsr__pieces *ps, size_t off, size_t len, bool first, tsr_error *err) {
    tsr__piece *np = tsr__grow(ps->p, &ps->cap, ps->n + 1, sizeof *np, 64);
    if (!np) return TSR_FAIL(err, TSR_ERR_OOM, "word list of %zu words", ps->n + 1);
    ps->p = np;
    ps->p[ps->n++] = (tsr__piece){off, len, first};
    return TSR_OK;
}

void tsr__pieces_free(tsr__pieces *ps) {
    tsr__buf_free(&ps->buf);
    tsr__free(ps->p);
    memset(ps, 0, sizeof *ps);
}

/* ---- UTF-8 ----------------------------------------------------------------------------- */

size_t tsr__utf8_decode(const uint8_t *s, size_t n, int32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80 || n < 2) { *cp = c; return 1; }
    if (c < 0xE0) { *cp = ((c & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
    if (c < 0xF0 || n < 4) {
        if (n < 3) { *cp = c; return 1; }
        *cp = ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}

size_t tsr__utf8_encode(int32_t cp, char out[4]) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the well-formed sequence starting at s[0], or 0 with *bad set to the length of the
 * maximal ill-formed subpart (Unicode 3.9, "U+FFFD substitution of maximal subparts"). */
static size_t utf8_step(const uint8_t *s, size_t n, size_t *bad) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else { *bad = 1; return 0; }
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= n) { *bad = i; return 0; }
        uint8_t b = s[i];
        uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) { *bad = i; return 0; }
    }
    return need + 1;
}

size_t tsr__utf8_valid_prefix(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        size_t bad = 0, k = utf8_step(s + i, n - i, &bad);
        if (!k) return i;
        i += k;
    }
    return n;
}

tsr_status tsr__utf8_lossy(tsr__buf *out, const uint8_t *s, size_t n, tsr_error *err) {
    size_t i = 0, run = 0;
    while (i < n) {
        size_t bad = 0, k = s[i] < 0x80 ? 1 : utf8_step(s + i, n - i, &bad);
        if (k) { i += k; continue; }
        tsr_status st = tsr__buf_put(out, s + run, i - run, err);
        if (!st) st = tsr__buf_put(out, "\xEF\xBF\xBD", 3, err);
        if (st) return st;
        i += bad;
        run = i;
    }
    return tsr__buf_put(out, s + run, n - run, err);
}

bool tsr__is_whitespace(int32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100.. in byte order. */
static bool byte_is_printable(int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

int32_t tsr__byte_to_char(uint8_t b) {
    if (byte_is_printable(b)) return b;
    if (b <= 0x20) return 0x100 + b;             /* 0x00..0x20 -> U+0100..U+0120 */
    if (b <= 0xA0) return 0x100 + 33 + (b - 0x7F); /* 0x7F..0xA0 -> U+0121..U+0142 */
    return 0x143;                                  /* 0xAD */
}

int tsr__char_to_byte(int32_t cp) {
    if (cp < 0 || cp > 0x143) return -1;
    if (cp < 0x100) return byte_is_printable(cp) ? cp : -1;
    int k = cp - 0x100;
    if (k <= 32) return k;
    if (k <= 66) return 0x7F + (k - 33);
    return 0xAD;
}
