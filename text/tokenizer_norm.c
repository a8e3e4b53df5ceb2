/*
 * tokenizer_norm.c - normalizers (NFC/NFD/NFKC/NFKD via utf8proc, Lowercase, Prepend,
 * Replace, Strip, StripAccents), applied in order as `tokenizers`' Sequence does.
 */
#include <string.h>

#include <utf8proc.h>

#include "tokenizer.h"

static bool all_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s[i] >= 0x80) return false;
    return true;
}

static tsr_status unicode_form(const char *s, size_t n, utf8proc_option_t opts, tsr__buf *out,
                               tsr_error *err) {
    if (all_ascii(s, n)) return tsr__buf_put(out, s, n, err); /* every form is the identity */
    if (n > (size_t)(SIZE_MAX / 16)) return TSR_FAIL(err, TSR_ERR_LIMIT, "text of %zu bytes", n);
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      opts | UTF8PROC_STABLE);
    if (r < 0) {
        free(dst);
        if (r == UTF8PROC_ERROR_NOMEM) return TSR_FAIL(err, TSR_ERR_OOM, "Unicode normalization");
        return TSR_FAIL(err, TSR_ERR_FORMAT, "Unicode normalization: %s", utf8proc_errmsg(r));
    }
    tsr_status st = tsr__buf_put(out, dst, (size_t)r, err);
    free(dst); /* utf8proc allocates with malloc */
    return st;
}

static tsr_status lowercase(const char *s, size_t n, tsr__buf *out, tsr_error *err) {
    tsr_status st = tsr__buf_reserve(out, n, err);
    if (st) return st;
    size_t i = 0;
    while (i < n) {
        if ((uint8_t)s[i] < 0x80) {
            char c = s[i++];
            if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
            if ((st = tsr__buf_put(out, &c, 1, err))) return st;
            continue;
        }
        int32_t cp;
        i += tsr__utf8_decode((const uint8_t *)s + i, n - i, &cp);
        char enc[8];
        size_t k;
        if (cp == 0x130) { /* the one unconditional multi-char lowercase mapping */
            memcpy(enc, "i\xCC\x87", 3);
            k = 3;
        } else {
            k = tsr__utf8_encode(utf8proc_tolower(cp), enc);
        }
        if ((st = tsr__buf_put(out, enc, k, err))) return st;
    }
    return TSR_OK;
}

static tsr_status replace_literal(const char *s, size_t n, const char *pat, size_t pn,
                                  const char *rep, size_t rn, tsr__buf *out, tsr_error *err) {
    size_t i = 0, run = 0;
    tsr_status st;
    while (i + pn <= n) {
        if (s[i] == pat[0] && memcmp(s + i, pat, pn) == 0) {
            if ((st = tsr__buf_put(out, s + run, i - run, err))) return st;
            if ((st = tsr__buf_put(out, rep, rn, err))) return st;
            i += pn;
            run = i;
        } else {
            i++;
        }
    }
    return tsr__buf_put(out, s + run, n - run, err);
}

static tsr_status replace_regex(const char *s, size_t n, pcre2_code *re, const char *rep, size_t rn,
                                tsr__buf *out, tsr_error *err) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return TSR_FAIL(err, TSR_ERR_OOM, "regex match data");
    size_t pos = 0, run = 0;
    long last_match_end = -1;
    tsr_status st = TSR_OK;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) { st = TSR_FAIL(err, TSR_ERR_LIMIT, "Replace normalizer regex failed (%d)", rc); break; }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && last_match_end == (long)me) { /* no empty match right after a match */
            int32_t cp;
            pos += pos < n ? tsr__utf8_decode((const uint8_t *)s + pos, n - pos, &cp) : 1;
            continue;
        }
        if ((st = tsr__buf_put(out, s + run, ms - run, err))) break;
        if ((st = tsr__buf_put(out, rep, rn, err))) break;
        run = me;
        pos = me;
        last_match_end = (long)me;
    }
    pcre2_match_data_free(md);
    if (st) return st;
    return tsr__buf_put(out, s + run, n - run, err);
}

static tsr_status strip(const char *s, size_t n, bool left, bool right, tsr__buf *out,
                        tsr_error *err) {
    size_t a = 0, b = n;
    while (left && a < b) {
        int32_t cp;
        size_t k = tsr__utf8_decode((const uint8_t *)s + a, b - a, &cp);
        if (!tsr__is_whitespace(cp)) break;
        a += k;
    }
    while (right && b > a) {
        size_t k = 1;
        while (k < b - a && ((uint8_t)s[b - k] & 0xC0) == 0x80) k++;
        int32_t cp;
        tsr__utf8_decode((const uint8_t *)s + b - k, k, &cp);
        if (!tsr__is_whitespace(cp)) break;
        b -= k;
    }
    return tsr__buf_put(out, s + a, b - a, err);
}

static tsr_status strip_accents(const char *s, size_t n, tsr__buf *out, tsr_error *err) {
    size_t i = 0;
    while (i < n) {
        int32_t cp;
        size_t k = tsr__utf8_decode((const uint8_t *)s + i, n - i, &cp);
        utf8proc_category_t c = utf8proc_category(cp);
        if (c != UTF8PROC_CATEGORY_MN && c != UTF8PROC_CATEGORY_MC && c != UTF8PROC_CATEGORY_ME) {
            tsr_status st = tsr__buf_put(out, s + i, k, err);
            if (st) return st;
        }
        i += k;
    }
    return TSR_OK;
}

static tsr_status apply(const tsr__norm *nm, const char *s, size_t n, tsr__buf *out, tsr_error *err) {
    switch (nm->kind) {
    case TSR__NORM_NFC: return unicode_form(s, n, UTF8PROC_COMPOSE, out, err);
    case TSR__NORM_NFD: return unicode_form(s, n, UTF8PROC_DECOMPOSE, out, err);
    case TSR__NORM_NFKC: return unicode_form(s, n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out, err);
    case TSR__NORM_NFKD: return unicode_form(s, n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out, err);
    case TSR__NORM_LOWERCASE: return lowercase(s, n, out, err);
    case TSR__NORM_PREPEND: {
        tsr_status st = n ? tsr__buf_put(out, nm->str, nm->str_len, err) : TSR_OK;
        return st ? st : tsr__buf_put(out, s, n, err);
    }
    case TSR__NORM_REPLACE:
        if (nm->re) return replace_regex(s, n, nm->re, nm->content, nm->content_len, out, err);
        return replace_literal(s, n, nm->str, nm->str_len, nm->content, nm->content_len, out, err);
    case TSR__NORM_STRIP: return strip(s, n, nm->left, nm->right, out, err);
    case TSR__NORM_STRIP_ACCENTS: return strip_accents(s, n, out, err);
    }
    return TSR_FAIL(err, TSR_ERR_INTERNAL, "unknown normalizer kind %d", (int)nm->kind);
}

tsr_status tsr__tok_normalize(const tsr_tokenizer *tok, const char *s, size_t n, tsr__buf *out,
                              tsr_error *err) {
    out->len = 0;
    tsr_status st = tsr__buf_put(out, s, n, err);
    tsr__buf tmp = {0};
    for (size_t i = 0; i < tok->n_norms && !st; i++) {
        tmp.len = 0;
        st = tsr__buf_put(&tmp, "", 0, err);
        if (!st) st = apply(&tok->norms[i], out->p, out->len, &tmp, err);
        if (!st) {
            tsr__buf t = *out;
            *out = tmp;
            tmp = t;
        }
    }
    tsr__buf_free(&tmp);
    return st;
}
