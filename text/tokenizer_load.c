/*
 * tokenizer_load.c - reads tokenizer.json (+ tokenizer_config.json, special_tokens_map.json)
 * into an immutable tsr_tokenizer. Every component we do not implement is UNSUPPORTED, named.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tokenizer.h"

#define TOK_MAX_FILE_BYTES (1ull << 30)

/* ---- small JSON helpers --------------------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsTrue(v)) return true;
    if (cJSON_IsFalse(v)) return false;
    return dflt;
}

/* An integer in [lo, hi] or false. */
static bool jint(const cJSON *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d) return false;
    *out = (int64_t)d;
    return true;
}

static bool utf8_ok(const char *s) {
    size_t n = strlen(s);
    return tsr__utf8_valid_prefix((const uint8_t *)s, n) == n;
}

static char *dup_bytes(const char *s, size_t n) {
    char *p = tsr__malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* {"String": s} or {"Regex": r}; *is_regex tells which. */
static tsr_status pattern_of(const cJSON *o, const char *what, const char **pat, bool *is_regex,
                             tsr_error *err) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *s = jstr(p, "String"), *r = jstr(p, "Regex");
    if (s) { *pat = s; *is_regex = false; return TSR_OK; }
    if (r) { *pat = r; *is_regex = true; return TSR_OK; }
    return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}",
                    what);
}

/* Oniguruma's \s (what `tokenizers` runs) is exactly Unicode White_Space; PCRE2's UCP \s also
 * takes U+180E. Outside classes \s and \S become explicit White_Space classes, inside a class
 * \s becomes the ranges (\S inside a class is left to PCRE2). */
#define WS_RANGES "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

static tsr_status rewrite_whitespace(const char *pat, size_t len, tsr__buf *out, tsr_error *err) {
    bool in_class = false;
    tsr_status st = tsr__buf_put(out, "", 0, err);
    size_t i = 0;
    while (i < len && !st) {
        char c = pat[i];
        if (c == '\\' && i + 1 < len) {
            char d = pat[i + 1];
            if (d == 's') st = tsr__buf_put(out, in_class ? WS_RANGES : "[" WS_RANGES "]",
                                            in_class ? sizeof WS_RANGES - 1 : sizeof WS_RANGES + 1, err);
            else if (d == 'S' && !in_class) st = tsr__buf_put(out, "[^" WS_RANGES "]", sizeof WS_RANGES + 2, err);
            else if (d == 'Q') { /* quoted run: copy through \E */
                size_t j = i + 2;
                while (j + 1 < len && !(pat[j] == '\\' && pat[j + 1] == 'E')) j++;
                j = j + 1 < len ? j + 2 : len;
                st = tsr__buf_put(out, pat + i, j - i, err);
                i = j;
                continue;
            } else st = tsr__buf_put(out, pat + i, 2, err);
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            size_t j = i + 1;
            if (j < len && pat[j] == '^') j++;
            if (j < len && pat[j] == ']') j++; /* a leading ] is literal */
            st = tsr__buf_put(out, pat + i, j - i, err);
            in_class = true;
            i = j;
            continue;
        }
        if (in_class && c == '[' && i + 1 < len && pat[i + 1] == ':') { /* [:alpha:] */
            const char *e = NULL;
            for (size_t j = i + 2; j + 1 < len; j++)
                if (pat[j] == ':' && pat[j + 1] == ']') { e = pat + j + 2; break; }
            size_t k = e ? (size_t)(e - (pat + i)) : 1;
            st = tsr__buf_put(out, pat + i, k, err);
            i += k;
            continue;
        }
        if (in_class && c == ']') in_class = false;
        st = tsr__buf_put(out, &c, 1, err);
        i++;
    }
    return st;
}

tsr_status tsr__tok_regex(const char *pat, size_t len, bool literal, pcre2_code **out,
                          tsr_error *err) {
    int ec = 0;
    PCRE2_SIZE eo = 0;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    tsr__buf rw = {0};
    if (!literal) {
        tsr_status st = rewrite_whitespace(pat, len, &rw, err);
        if (st) { tsr__buf_free(&rw); return st; }
    }
    pcre2_code *re = pcre2_compile(literal ? (PCRE2_SPTR)pat : (PCRE2_SPTR)rw.p,
                                   literal ? len : rw.len, opts, &ec, &eo, NULL);
    tsr__buf_free(&rw);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return TSR_FAIL(err, TSR_ERR_FORMAT, "regex \"%.200s\" does not compile at offset %zu: %s",
                        pat, (size_t)eo, (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT the interpreter runs it */
    *out = re;
    return TSR_OK;
}

static tsr_status prepend_scheme(const cJSON *o, const char *what, tsr__prepend_scheme *out,
                                 tsr_error *err) {
    const char *ps = jstr(o, "prepend_scheme");
    if (!ps) {
        *out = jbool(o, "add_prefix_space", true) ? TSR__PREPEND_ALWAYS : TSR__PREPEND_NEVER;
        return TSR_OK;
    }
    if (!strcmp(ps, "always")) *out = TSR__PREPEND_ALWAYS;
    else if (!strcmp(ps, "first")) *out = TSR__PREPEND_FIRST;
    else if (!strcmp(ps, "never")) *out = TSR__PREPEND_NEVER;
    else return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: unknown prepend_scheme \"%.64s\"", what, ps);
    return TSR_OK;
}

static tsr_status replacement_char(const cJSON *o, const char *what, int32_t *out, tsr_error *err) {
    const char *r = jstr(o, "replacement");
    if (!r) { *out = 0x2581; return TSR_OK; }
    size_t n = strlen(r);
    int32_t cp;
    if (!n || tsr__utf8_decode((const uint8_t *)r, n, &cp) != n)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: replacement must be one character", what);
    *out = cp;
    return TSR_OK;
}

/* ---- growable component arrays ---------------------------------------------------------- */

static void *grow(void *arr, size_t *n, size_t elem, tsr_error *err, tsr_status *st) {
    void *np = tsr__realloc(arr, (*n + 1) * elem);
    if (!np) {
        *st = TSR_FAIL(err, TSR_ERR_OOM, "pipeline component array");
        return NULL;
    }
    memset((char *)np + *n * elem, 0, elem);
    (*n)++;
    return np;
}

#define PUSH(tok, arr, n, err, slot)                                                 \
    do {                                                                             \
        tsr_status st_ = TSR_OK;                                                     \
        void *np_ = grow((tok)->arr, &(tok)->n, sizeof *(tok)->arr, (err), &st_);    \
        if (!np_) return st_;                                                        \
        (tok)->arr = np_;                                                            \
        (slot) = &(tok)->arr[(tok)->n - 1];                                          \
    } while (0)

/* ---- normalizers ------------------------------------------------------------------------ */

static tsr_status parse_norm(tsr_tokenizer *tok, const cJSON *j, int depth, tsr_error *err) {
    if (cJSON_IsNull(j) || !j) return TSR_OK;
    if (depth > 16) return TSR_FAIL(err, TSR_ERR_LIMIT, "normalizer Sequence nested deeper than 16");
    const char *type = jstr(j, "type");
    if (!type) return TSR_FAIL(err, TSR_ERR_FORMAT, "normalizer without a \"type\"");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "normalizers"), *it;
        if (!cJSON_IsArray(list))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "normalizer Sequence without a \"normalizers\" list");
        cJSON_ArrayForEach(it, list) {
            tsr_status st = parse_norm(tok, it, depth + 1, err);
            if (st) return st;
        }
        return TSR_OK;
    }
    static const struct { const char *name; tsr__norm_kind kind; } simple[] = {
        {"NFC", TSR__NORM_NFC}, {"NFD", TSR__NORM_NFD}, {"NFKC", TSR__NORM_NFKC},
        {"NFKD", TSR__NORM_NFKD}, {"Lowercase", TSR__NORM_LOWERCASE},
        {"StripAccents", TSR__NORM_STRIP_ACCENTS}, {"Prepend", TSR__NORM_PREPEND},
        {"Replace", TSR__NORM_REPLACE}, {"Strip", TSR__NORM_STRIP}};
    size_t k = 0;
    while (k < sizeof simple / sizeof simple[0] && strcmp(simple[k].name, type)) k++;
    if (k == sizeof simple / sizeof simple[0])
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "normalizer \"%.64s\" is not implemented", type);
    tsr__norm *n;
    PUSH(tok, norms, n_norms, err, n);
    n->kind = simple[k].kind;
    if (n->kind == TSR__NORM_PREPEND) {
        const char *p = jstr(j, "prepend");
        if (!p || !utf8_ok(p)) return TSR_FAIL(err, TSR_ERR_FORMAT, "Prepend normalizer needs a \"prepend\" string");
        n->str_len = strlen(p);
        if (!(n->str = dup_bytes(p, n->str_len))) return TSR_FAIL(err, TSR_ERR_OOM, "Prepend string");
    } else if (n->kind == TSR__NORM_REPLACE) {
        const char *pat, *content = jstr(j, "content");
        bool is_re;
        tsr_status st = pattern_of(j, "Replace normalizer", &pat, &is_re, err);
        if (st) return st;
        if (!content || !utf8_ok(content) || !utf8_ok(pat))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "Replace normalizer needs UTF-8 \"pattern\" and \"content\"");
        n->content_len = strlen(content);
        if (!(n->content = dup_bytes(content, n->content_len)))
            return TSR_FAIL(err, TSR_ERR_OOM, "Replace content");
        if (is_re || !*pat) {
            /* An empty literal is compiled too, so both empty cases follow the regex path. */
            st = tsr__tok_regex(pat, strlen(pat), !is_re, &n->re, err);
            if (st) return st;
        } else {
            n->str_len = strlen(pat);
            if (!(n->str = dup_bytes(pat, n->str_len))) return TSR_FAIL(err, TSR_ERR_OOM, "Replace pattern");
        }
    } else if (n->kind == TSR__NORM_STRIP) {
        n->left = jbool(j, "strip_left", true);
        n->right = jbool(j, "strip_right", true);
    }
    return TSR_OK;
}

/* ---- pre-tokenizers --------------------------------------------------------------------- */

/* GPT-2's split pattern, used by ByteLevel with use_regex. */
static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static tsr_status parse_pre(tsr_tokenizer *tok, const cJSON *j, int depth, tsr_error *err) {
    if (cJSON_IsNull(j) || !j) return TSR_OK;
    if (depth > 16) return TSR_FAIL(err, TSR_ERR_LIMIT, "pre-tokenizer Sequence nested deeper than 16");
    const char *type = jstr(j, "type");
    if (!type) return TSR_FAIL(err, TSR_ERR_FORMAT, "pre-tokenizer without a \"type\"");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers"), *it;
        if (!cJSON_IsArray(list))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "pre-tokenizer Sequence without a \"pretokenizers\" list");
        cJSON_ArrayForEach(it, list) {
            tsr_status st = parse_pre(tok, it, depth + 1, err);
            if (st) return st;
        }
        return TSR_OK;
    }
    if (tok->byte_level)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "pre-tokenizer \"%.64s\" after ByteLevel (ByteLevel must come last)", type);
    tsr__pre *p;
    if (!strcmp(type, "Split")) {
        const char *pat, *beh = jstr(j, "behavior");
        bool is_re;
        tsr_status st = pattern_of(j, "Split pre-tokenizer", &pat, &is_re, err);
        if (st) return st;
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
        size_t k = 0;
        while (beh && k < 5 && strcmp(beh, names[k])) k++;
        if (!beh || k == 5)
            return TSR_FAIL(err, TSR_ERR_FORMAT, "Split pre-tokenizer: unknown behavior \"%.64s\"",
                            beh ? beh : "(missing)");
        PUSH(tok, pres, n_pres, err, p);
        p->kind = TSR__PRE_SPLIT;
        p->behavior = (tsr__split_behavior)k;
        p->invert = jbool(j, "invert", false);
        return tsr__tok_regex(pat, strlen(pat), !is_re, &p->re, err);
    }
    if (!strcmp(type, "ByteLevel")) {
        PUSH(tok, pres, n_pres, err, p);
        p->kind = TSR__PRE_BYTELEVEL;
        p->add_prefix_space = jbool(j, "add_prefix_space", true);
        p->use_regex = jbool(j, "use_regex", true);
        tok->byte_level = true;
        if (p->use_regex) return tsr__tok_regex(GPT2_RE, sizeof GPT2_RE - 1, false, &p->re, err);
        return TSR_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        PUSH(tok, pres, n_pres, err, p);
        p->kind = TSR__PRE_METASPACE;
        p->split = jbool(j, "split", true);
        tsr_status st = replacement_char(j, "Metaspace pre-tokenizer", &p->replacement, err);
        if (!st) st = prepend_scheme(j, "Metaspace pre-tokenizer", &p->prepend, err);
        return st;
    }
    if (!strcmp(type, "Digits")) {
        PUSH(tok, pres, n_pres, err, p);
        p->kind = TSR__PRE_DIGITS;
        p->individual_digits = jbool(j, "individual_digits", false);
        return TSR_OK;
    }
    return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "pre-tokenizer \"%.64s\" is not implemented", type);
}

/* ---- decoders ----------------------------------------------------------------------------- */

static tsr_status parse_dec(tsr_tokenizer *tok, const cJSON *j, int depth, tsr_error *err) {
    if (cJSON_IsNull(j) || !j) return TSR_OK;
    if (depth > 16) return TSR_FAIL(err, TSR_ERR_LIMIT, "decoder Sequence nested deeper than 16");
    const char *type = jstr(j, "type");
    if (!type) return TSR_FAIL(err, TSR_ERR_FORMAT, "decoder without a \"type\"");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "decoders"), *it;
        if (!cJSON_IsArray(list))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "decoder Sequence without a \"decoders\" list");
        cJSON_ArrayForEach(it, list) {
            tsr_status st = parse_dec(tok, it, depth + 1, err);
            if (st) return st;
        }
        return TSR_OK;
    }
    tsr__dec *d;
    if (!strcmp(type, "ByteLevel")) {
        PUSH(tok, decs, n_decs, err, d);
        d->kind = TSR__DEC_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        PUSH(tok, decs, n_decs, err, d);
        d->kind = TSR__DEC_BYTE_FALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        PUSH(tok, decs, n_decs, err, d);
        d->kind = TSR__DEC_FUSE;
    } else if (!strcmp(type, "Metaspace")) {
        PUSH(tok, decs, n_decs, err, d);
        d->kind = TSR__DEC_METASPACE;
        tsr_status st = replacement_char(j, "Metaspace decoder", &d->replacement, err);
        if (!st) st = prepend_scheme(j, "Metaspace decoder", &d->prepend, err);
        return st;
    } else if (!strcmp(type, "Strip")) {
        const char *c = jstr(j, "content");
        int64_t start = 0, stop = 0;
        int32_t cp;
        if (!c || !*c || tsr__utf8_decode((const uint8_t *)c, strlen(c), &cp) != strlen(c) ||
            !jint(cJSON_GetObjectItemCaseSensitive(j, "start"), 0, INT32_MAX, &start) ||
            !jint(cJSON_GetObjectItemCaseSensitive(j, "stop"), 0, INT32_MAX, &stop))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "Strip decoder needs a one-character \"content\", \"start\" and \"stop\"");
        PUSH(tok, decs, n_decs, err, d);
        d->kind = TSR__DEC_STRIP;
        d->start = start;
        d->stop = stop;
        d->content_len = strlen(c);
        if (!(d->content = dup_bytes(c, d->content_len))) return TSR_FAIL(err, TSR_ERR_OOM, "Strip content");
    } else if (!strcmp(type, "Replace")) {
        const char *pat, *content = jstr(j, "content");
        bool is_re;
        tsr_status st = pattern_of(j, "Replace decoder", &pat, &is_re, err);
        if (st) return st;
        if (is_re) return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "Replace decoder with a Regex pattern is not implemented");
        if (!content || !*pat || !utf8_ok(pat) || !utf8_ok(content))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "Replace decoder needs a non-empty \"pattern\" and a \"content\"");
        PUSH(tok, decs, n_decs, err, d);
        d->kind = TSR__DEC_REPLACE;
        d->pattern_len = strlen(pat);
        d->content_len = strlen(content);
        d->pattern = dup_bytes(pat, d->pattern_len);
        d->content = dup_bytes(content, d->content_len);
        if (!d->pattern || !d->content) return TSR_FAIL(err, TSR_ERR_OOM, "Replace decoder strings");
    } else {
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "decoder \"%.64s\" is not implemented", type);
    }
    return TSR_OK;
}

/* ---- post-processors ----------------------------------------------------------------------- */

static tsr_status ids_append(int32_t **arr, size_t *n, const int32_t *src, size_t k, bool front,
                             tsr_error *err) {
    if (!k) return TSR_OK;
    int32_t *np = tsr__realloc(*arr, (*n + k) * sizeof(int32_t));
    if (!np) return TSR_FAIL(err, TSR_ERR_OOM, "post-processor ids");
    if (front) {
        memmove(np + k, np, *n * sizeof(int32_t));
        memcpy(np, src, k * sizeof(int32_t));
    } else {
        memcpy(np + *n, src, k * sizeof(int32_t));
    }
    *arr = np;
    *n += k;
    return TSR_OK;
}

static tsr_status checked_id(const tsr_tokenizer *tok, const cJSON *v, const char *what, int32_t *id,
                             tsr_error *err) {
    int64_t x;
    if (!jint(v, 0, TSR__TOK_MAX_ID - 1, &x) || x >= tok->n_ids || !tok->id_str[x])
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s names an id that is not in the vocabulary", what);
    *id = (int32_t)x;
    return TSR_OK;
}

/* Wraps the current template with `pre` before and `post` after the sequence. */
static tsr_status wrap(tsr_tokenizer *tok, const int32_t *pre, size_t npre, const int32_t *post,
                       size_t npost, tsr_error *err) {
    tsr_status st = ids_append(&tok->post_prefix, &tok->n_post_prefix, pre, npre, true, err);
    if (!st) st = ids_append(&tok->post_suffix, &tok->n_post_suffix, post, npost, false, err);
    return st;
}

static tsr_status parse_template(tsr_tokenizer *tok, const cJSON *j, tsr_error *err) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single"), *it;
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    if (!cJSON_IsArray(single))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "TemplateProcessing: only the list form of \"single\" is implemented");
    int32_t pre[64], post[64];
    size_t npre = 0, npost = 0;
    bool seen_a = false;
    cJSON_ArrayForEach(it, single) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
        if (sq) {
            const char *id = jstr(sq, "id");
            if (!id || strcmp(id, "A") || seen_a)
                return TSR_FAIL(err, TSR_ERR_FORMAT, "TemplateProcessing \"single\" must hold sequence A once");
            seen_a = true;
            continue;
        }
        const char *name = jstr(sp, "id");
        const cJSON *entry = name ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(entry, "ids"), *x;
        if (!cJSON_IsArray(ids))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "TemplateProcessing: special token \"%.64s\" has no ids",
                            name ? name : "(missing)");
        cJSON_ArrayForEach(x, ids) {
            int32_t id = -1;
            tsr_status st = checked_id(tok, x, "TemplateProcessing special token", &id, err);
            if (st) return st;
            if ((seen_a ? npost : npre) == 64)
                return TSR_FAIL(err, TSR_ERR_LIMIT, "TemplateProcessing: more than 64 special ids");
            if (seen_a) post[npost++] = id;
            else pre[npre++] = id;
        }
    }
    if (!seen_a) return TSR_FAIL(err, TSR_ERR_FORMAT, "TemplateProcessing \"single\" lacks sequence A");
    return wrap(tok, pre, npre, post, npost, err);
}

static tsr_status parse_post(tsr_tokenizer *tok, const cJSON *j, int depth, tsr_error *err) {
    if (cJSON_IsNull(j) || !j) return TSR_OK;
    if (depth > 16) return TSR_FAIL(err, TSR_ERR_LIMIT, "post-processor Sequence nested deeper than 16");
    const char *type = jstr(j, "type");
    if (!type) return TSR_FAIL(err, TSR_ERR_FORMAT, "post-processor without a \"type\"");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "processors"), *it;
        if (!cJSON_IsArray(list))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "post-processor Sequence without a \"processors\" list");
        cJSON_ArrayForEach(it, list) {
            tsr_status st = parse_post(tok, it, depth + 1, err);
            if (st) return st;
        }
        return TSR_OK;
    }
    if (!strcmp(type, "ByteLevel")) return TSR_OK; /* only trims offsets; ids are unchanged */
    if (!strcmp(type, "TemplateProcessing")) return parse_template(tok, j, err);
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "cls");
        const cJSON *sep = cJSON_GetObjectItemCaseSensitive(j, "sep");
        int32_t c = -1, s = -1;
        tsr_status st = checked_id(tok, cJSON_GetArrayItem(cls, 1), type, &c, err);
        if (!st) st = checked_id(tok, cJSON_GetArrayItem(sep, 1), type, &s, err);
        if (!st) st = wrap(tok, &c, 1, &s, 1, err);
        return st;
    }
    return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "post-processor \"%.64s\" is not implemented", type);
}

/* ---- model ------------------------------------------------------------------------------- */

static tsr_status set_id_str(tsr_tokenizer *tok, int32_t id, const char *s, size_t n,
                             tsr_error *err) {
    char *p = dup_bytes(s, n);
    if (!p) return TSR_FAIL(err, TSR_ERR_OOM, "token string");
    tsr__free(tok->id_str[id]);
    tok->id_str[id] = p;
    tok->id_len[id] = (uint32_t)n;
    return TSR_OK;
}

static tsr_status alloc_ids(tsr_tokenizer *tok, int64_t n, tsr_error *err) {
    tok->n_ids = (int32_t)n;
    tok->id_str = tsr__calloc((size_t)n ? (size_t)n : 1, sizeof *tok->id_str);
    tok->id_len = tsr__calloc((size_t)n ? (size_t)n : 1, sizeof *tok->id_len);
    tok->id_special = tsr__calloc((size_t)n ? (size_t)n : 1, 1);
    if (!tok->id_str || !tok->id_len || !tok->id_special)
        return TSR_FAIL(err, TSR_ERR_OOM, "id table of %lld entries", (long long)n);
    return TSR_OK;
}

/* Maps a token written in the GPT-2 alphabet to its bytes; false when a char is outside it. */
static bool unmap_bytelevel(const char *s, size_t n, char *out, size_t *out_len) {
    size_t i = 0, k = 0;
    while (i < n) {
        int32_t cp;
        i += tsr__utf8_decode((const uint8_t *)s + i, n - i, &cp);
        int b = tsr__char_to_byte(cp);
        if (b < 0) return false;
        out[k++] = (char)b;
    }
    *out_len = k;
    return true;
}

static tsr_status merge_ids(const tsr__strmap *vocab, const char *a, size_t na, const char *b,
                            size_t nb, size_t rank, int32_t *ia, int32_t *ib, int32_t *inew,
                            tsr_error *err) {
    *ia = tsr__strmap_get(vocab, a, na);
    *ib = tsr__strmap_get(vocab, b, nb);
    if (*ia < 0 || *ib < 0)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "merge %zu names unknown token \"%.*s\"", rank,
                        (int)(*ia < 0 ? (na > 64 ? 64 : na) : (nb > 64 ? 64 : nb)), *ia < 0 ? a : b);
    char stackbuf[256], *cat = stackbuf;
    if (na + nb > sizeof stackbuf && !(cat = tsr__malloc(na + nb)))
        return TSR_FAIL(err, TSR_ERR_OOM, "merge string");
    memcpy(cat, a, na);
    memcpy(cat + na, b, nb);
    *inew = tsr__strmap_get(vocab, cat, na + nb);
    if (cat != stackbuf) tsr__free(cat);
    if (*inew < 0)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "merge %zu (\"%.*s\" + \"%.*s\") makes a token that is not in the vocabulary",
                        rank, (int)(na > 64 ? 64 : na), a, (int)(nb > 64 ? 64 : nb), b);
    return TSR_OK;
}

static tsr_status parse_merges(tsr_tokenizer *tok, const cJSON *merges, const tsr__strmap *vocab,
                               tsr_error *err) {
    if (!merges || cJSON_IsNull(merges)) return TSR_OK;
    if (!cJSON_IsArray(merges)) return TSR_FAIL(err, TSR_ERR_FORMAT, "model \"merges\" is not a list");
    const cJSON *m;
    size_t rank = 0;
    cJSON_ArrayForEach(m, merges) {
        const char *a, *b;
        size_t na, nb;
        if (cJSON_IsString(m)) {
            a = m->valuestring;
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return TSR_FAIL(err, TSR_ERR_FORMAT, "merge %zu \"%.64s\" is not two tokens separated by one space",
                                rank, a);
            na = (size_t)(sp - a);
            b = sp + 1;
            nb = strlen(b);
        } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            a = cJSON_GetArrayItem(m, 0)->valuestring;
            b = cJSON_GetArrayItem(m, 1)->valuestring;
            na = strlen(a);
            nb = strlen(b);
        } else {
            return TSR_FAIL(err, TSR_ERR_FORMAT, "merge %zu is neither \"a b\" nor [\"a\", \"b\"]", rank);
        }
        int32_t ia = -1, ib = -1, inew = -1;
        tsr_status st = merge_ids(vocab, a, na, b, nb, rank, &ia, &ib, &inew, err);
        if (!st) st = tsr__pairmap_put(&tok->merges, (uint32_t)ia, (uint32_t)ib, (uint32_t)rank, (uint32_t)inew, err);
        if (st) return st;
        rank++;
    }
    return TSR_OK;
}

static tsr_status parse_model(tsr_tokenizer *tok, const cJSON *model, int64_t max_added_id,
                              tsr__strmap *vocab, tsr_error *err) {
    const char *type = jstr(model, "type");
    if (!cJSON_IsObject(model)) return TSR_FAIL(err, TSR_ERR_FORMAT, "tokenizer.json has no \"model\" object");
    if (type && strcmp(type, "BPE"))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "model type \"%.64s\" is not implemented (only BPE)", type);
    if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "model without a \"type\" and without \"merges\" (only BPE)");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *e;
    if (!cJSON_IsObject(v)) return TSR_FAIL(err, TSR_ERR_FORMAT, "model \"vocab\" is not an object");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "BPE dropout is not implemented (non-deterministic)");
    const char *csp = jstr(model, "continuing_subword_prefix"), *eow = jstr(model, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "BPE continuing_subword_prefix / end_of_word_suffix are not implemented");
    tok->byte_fallback = jbool(model, "byte_fallback", false);
    tok->ignore_merges = jbool(model, "ignore_merges", false);
    tok->fuse_unk = jbool(model, "fuse_unk", false);

    int64_t max_id = max_added_id;
    cJSON_ArrayForEach(e, v) {
        int64_t id;
        if (!jint(e, 0, TSR__TOK_MAX_ID - 1, &id))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "vocab entry \"%.64s\" has an id that is not an integer in [0, %d)",
                            e->string, TSR__TOK_MAX_ID);
        if (!utf8_ok(e->string))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "vocab entry with id %lld is not valid UTF-8", (long long)id);
        if (id > max_id) max_id = id;
    }
    tsr_status st = alloc_ids(tok, max_id + 1, err);
    if (st) return st;
    cJSON_ArrayForEach(e, v) {
        size_t n = strlen(e->string);
        int32_t id = (int32_t)e->valuedouble;
        st = tsr__strmap_put(vocab, e->string, n, id, err);
        if (!st) st = tsr__strmap_put(&tok->tok2id, e->string, n, id, err);
        if (!st) st = set_id_str(tok, id, e->string, n, err);
        if (st) return st;
    }
    st = parse_merges(tok, cJSON_GetObjectItemCaseSensitive(model, "merges"), vocab, err);
    if (st) return st;

    tok->unk_id = -1;
    const char *unk = jstr(model, "unk_token");
    if (unk) {
        tok->unk_id = tsr__strmap_get(vocab, unk, strlen(unk));
        if (tok->unk_id < 0)
            return TSR_FAIL(err, TSR_ERR_FORMAT, "unk_token \"%.64s\" is not in the vocabulary", unk);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->byte_fallback_id[b] = tsr__strmap_get(vocab, name, 6);
    }
    return TSR_OK;
}

/* The model's lookup table in model space (raw bytes for byte-level vocabularies). */
static tsr_status build_model_space(tsr_tokenizer *tok, tsr__strmap *vocab, tsr_error *err) {
    if (!tok->byte_level) {
        tok->model = *vocab;
        memset(vocab, 0, sizeof *vocab);
        for (int b = 0; b < 256; b++) tok->byte_unit[b] = -1;
        return TSR_OK;
    }
    char *tmp = NULL;
    size_t tmp_cap = 0;
    for (size_t i = 0; i < vocab->cap; i++) {
        const tsr__strmap_slot *e = &vocab->slots[i];
        if (e->len == UINT32_MAX) continue;
        if (e->len > tmp_cap) {
            tsr__free(tmp);
            tmp_cap = e->len;
            if (!(tmp = tsr__malloc(tmp_cap))) return TSR_FAIL(err, TSR_ERR_OOM, "token bytes");
        }
        size_t n;
        if (!unmap_bytelevel(vocab->arena + e->off, e->len, tmp, &n)) continue;
        tsr_status st = tsr__strmap_put(&tok->model, tmp, n, e->value, err);
        if (st) { tsr__free(tmp); return st; }
    }
    tsr__free(tmp);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        tok->byte_unit[b] = tsr__strmap_get(&tok->model, &c, 1);
    }
    return TSR_OK;
}

/* ---- added tokens ------------------------------------------------------------------------- */

static tsr_status add_token(tsr_tokenizer *tok, int32_t id, const char *content, bool special,
                            bool lstrip, bool rstrip, bool normalized, bool single_word,
                            tsr_error *err) {
    tsr__added *a;
    PUSH(tok, added, n_added, err, a);
    a->len = strlen(content);
    a->id = id;
    a->special = special;
    a->lstrip = lstrip;
    a->rstrip = rstrip;
    a->normalized = normalized;
    a->single_word = single_word;
    if (!(a->content = dup_bytes(content, a->len))) return TSR_FAIL(err, TSR_ERR_OOM, "added token");
    tsr_status st = tsr__strmap_put(&tok->tok2id, content, a->len, id, err);
    if (!st) st = set_id_str(tok, id, content, a->len, err);
    tok->id_special[id] = special;
    return st;
}

static tsr_status parse_added_entry(tsr_tokenizer *tok, const cJSON *e, int64_t id, tsr_error *err) {
    const char *content = jstr(e, "content");
    if (!content || !utf8_ok(content))
        return TSR_FAIL(err, TSR_ERR_FORMAT, "added token %lld has no UTF-8 \"content\"", (long long)id);
    bool special = jbool(e, "special", false);
    return add_token(tok, (int32_t)id, content, special, jbool(e, "lstrip", false),
                     jbool(e, "rstrip", false), jbool(e, "normalized", !special),
                     jbool(e, "single_word", false), err);
}

static tsr_status trie_insert(tsr__trie *t, const char *s, size_t n, int32_t token, tsr_error *err) {
    if (!n) return TSR_OK;
    if (!t->n) {
        if (!(t->nodes = tsr__malloc(64 * sizeof *t->nodes))) return TSR_FAIL(err, TSR_ERR_OOM, "added-token trie");
        t->cap = 64;
        t->nodes[0] = (tsr__trie_node){-1, -1, -1, 0};
        t->n = 1;
    }
    t->first[(uint8_t)s[0] >> 3] |= (uint8_t)(1u << ((uint8_t)s[0] & 7));
    int32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = t->nodes[cur].child;
        while (c >= 0 && t->nodes[c].byte != b) c = t->nodes[c].sibling;
        if (c < 0) {
            if (t->n == t->cap) {
                tsr__trie_node *nn = tsr__realloc(t->nodes, t->cap * 2 * sizeof *nn);
                if (!nn) return TSR_FAIL(err, TSR_ERR_OOM, "added-token trie");
                t->nodes = nn;
                t->cap *= 2;
            }
            c = (int32_t)t->n++;
            t->nodes[c] = (tsr__trie_node){-1, t->nodes[cur].child, -1, b};
            t->nodes[cur].child = c;
        }
        cur = c;
    }
    if (t->nodes[cur].token < 0) t->nodes[cur].token = token;
    return TSR_OK;
}

static tsr_status build_tries(tsr_tokenizer *tok, tsr_error *err) {
    tsr__buf nb = {0};
    tsr_status st = TSR_OK;
    for (size_t i = 0; i < tok->n_added && !st; i++) {
        tsr__added *a = &tok->added[i];
        if (a->normalized) {
            st = tsr__tok_normalize(tok, a->content, a->len, &nb, err);
            if (st) break;
            a->match_len = nb.len;
            if (!(a->match = dup_bytes(nb.p ? nb.p : "", nb.len))) { st = TSR_FAIL(err, TSR_ERR_OOM, "added token"); break; }
            st = trie_insert(&tok->norm_trie, a->match, a->match_len, (int32_t)i, err);
        } else {
            a->match = a->content;
            a->match_len = a->len;
            st = trie_insert(&tok->raw_trie, a->match, a->match_len, (int32_t)i, err);
        }
    }
    tsr__buf_free(&nb);
    return st;
}

/* ---- configs -------------------------------------------------------------------------------- */

static const char *token_name(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v)) return v->valuestring;
    return jstr(v, "content");
}

static int32_t config_id(const tsr_tokenizer *tok, const cJSON *cfg, const cJSON *map, const char *key) {
    const char *name = token_name(cfg, key);
    if (!name) name = token_name(map, key);
    return name ? tsr__strmap_get(&tok->tok2id, name, strlen(name)) : -1;
}

static tsr_status parse_json(const char *s, size_t n, const char *what, cJSON **out, tsr_error *err) {
    *out = NULL;
    if (!s) return TSR_OK;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!j) return TSR_FAIL(err, TSR_ERR_FORMAT, "%s is not valid JSON (near byte %zu)", what,
                            end && end >= s ? (size_t)(end - s) : (size_t)0);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s is not a JSON object", what);
    }
    *out = j;
    return TSR_OK;
}

static int64_t max_added_id(const cJSON *added, const cJSON *cfg_added) {
    int64_t m = -1, id;
    const cJSON *e;
    cJSON_ArrayForEach(e, added) {
        if (jint(cJSON_GetObjectItemCaseSensitive(e, "id"), 0, TSR__TOK_MAX_ID - 1, &id) && id > m) m = id;
    }
    cJSON_ArrayForEach(e, cfg_added) {
        char *endp = NULL;
        long long x = e->string ? strtoll(e->string, &endp, 10) : -1;
        if (endp && !*endp && x >= 0 && x < TSR__TOK_MAX_ID && x > m) m = x;
    }
    return m;
}

static tsr_status load(tsr_tokenizer *tok, const cJSON *root, const cJSON *cfg, const cJSON *map,
                       tsr_error *err) {
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *e;
    const cJSON *cfg_added = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return TSR_FAIL(err, TSR_ERR_FORMAT, "\"added_tokens\" is not a list");
    tsr__strmap vocab = {0};
    tsr_status st = parse_model(tok, cJSON_GetObjectItemCaseSensitive(root, "model"),
                                max_added_id(added, cfg_added), &vocab, err);
    if (!st) st = parse_norm(tok, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0, err);
    if (!st) st = parse_pre(tok, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), 0, err);
    if (!st) st = parse_dec(tok, cJSON_GetObjectItemCaseSensitive(root, "decoder"), 0, err);
    if (!st) st = build_model_space(tok, &vocab, err);
    tsr__strmap_free(&vocab);
    if (st) return st;
    cJSON_ArrayForEach(e, added) {
        int64_t id;
        if (!jint(cJSON_GetObjectItemCaseSensitive(e, "id"), 0, TSR__TOK_MAX_ID - 1, &id))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "added token without an integer \"id\"");
        if ((st = parse_added_entry(tok, e, id, err))) return st;
    }
    /* transformers also registers added_tokens_decoder entries tokenizer.json lacks. */
    cJSON_ArrayForEach(e, cfg_added) {
        char *endp = NULL;
        long long id = strtoll(e->string, &endp, 10);
        const char *content = jstr(e, "content");
        if (!endp || *endp || id < 0 || id >= tok->n_ids || !content) continue;
        if (tok->id_str[id] || tsr__strmap_get(&tok->tok2id, content, strlen(content)) >= 0) continue;
        if ((st = parse_added_entry(tok, e, id, err))) return st;
    }
    if ((st = parse_post(tok, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), 0, err))) return st;
    if ((st = build_tries(tok, err))) return st;
    tok->bos_id = config_id(tok, cfg, map, "bos_token");
    tok->eos_id = config_id(tok, cfg, map, "eos_token");
    tok->pad_id = config_id(tok, cfg, map, "pad_token");
    tok->unk_cfg_id = config_id(tok, cfg, map, "unk_token");
    if (tok->unk_cfg_id < 0) tok->unk_cfg_id = tok->unk_id;
    return TSR_OK;
}

tsr_status tsr_tokenizer_load_memory(const char *tokenizer_json, size_t len, const char *config_json,
                                     size_t config_len, const char *special_tokens_map_json,
                                     size_t map_len, tsr_tokenizer **out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!tokenizer_json) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "tokenizer_json is NULL");
    cJSON *root = NULL, *cfg = NULL, *map = NULL;
    tsr_status st = parse_json(tokenizer_json, len, "tokenizer.json", &root, err);
    if (!st) st = parse_json(config_json, config_len, "tokenizer_config.json", &cfg, err);
    if (!st) st = parse_json(special_tokens_map_json, map_len, "special_tokens_map.json", &map, err);
    tsr_tokenizer *tok = NULL;
    if (!st && !(tok = tsr__calloc(1, sizeof *tok))) st = TSR_FAIL(err, TSR_ERR_OOM, "tokenizer");
    if (!st) st = load(tok, root, cfg, map, err);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    cJSON_Delete(map);
    if (st) {
        tsr_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return TSR_OK;
}

static tsr_status read_opt(const char *dir, const char *name, bool required, uint8_t **data,
                           size_t *len, tsr_error *err) {
    *data = NULL;
    *len = 0;
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = tsr__malloc(n);
    if (!path) return TSR_FAIL(err, TSR_ERR_OOM, "path");
    snprintf(path, n, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f && !required) { tsr__free(path); return TSR_OK; }
    if (f) fclose(f);
    tsr_status st = tsr__read_file(path, TOK_MAX_FILE_BYTES, data, len, err);
    tsr__free(path);
    return st;
}

tsr_status tsr_tokenizer_load(const char *model_dir, tsr_tokenizer **out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!model_dir) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "model_dir is NULL");
    uint8_t *tj = NULL, *cj = NULL, *mj = NULL;
    size_t tn = 0, cn = 0, mn = 0;
    tsr_status st = read_opt(model_dir, "tokenizer.json", true, &tj, &tn, err);
    if (!st) st = read_opt(model_dir, "tokenizer_config.json", false, &cj, &cn, err);
    if (!st) st = read_opt(model_dir, "special_tokens_map.json", false, &mj, &mn, err);
    if (!st) st = tsr_tokenizer_load_memory((const char *)tj, tn, (const char *)cj, cn,
                                            (const char *)mj, mn, out, err);
    tsr__free(tj);
    tsr__free(cj);
    tsr__free(mj);
    return st;
}

void tsr__tok_free_components(tsr_tokenizer *tok) {
    for (size_t i = 0; i < tok->n_norms; i++) {
        tsr__free(tok->norms[i].str);
        tsr__free(tok->norms[i].content);
        pcre2_code_free(tok->norms[i].re);
    }
    for (size_t i = 0; i < tok->n_pres; i++) pcre2_code_free(tok->pres[i].re);
    for (size_t i = 0; i < tok->n_decs; i++) {
        tsr__free(tok->decs[i].pattern);
        tsr__free(tok->decs[i].content);
    }
    for (size_t i = 0; i < tok->n_added; i++) {
        if (tok->added[i].match != tok->added[i].content) tsr__free(tok->added[i].match);
        tsr__free(tok->added[i].content);
    }
    tsr__free(tok->norms);
    tsr__free(tok->pres);
    tsr__free(tok->decs);
    tsr__free(tok->added);
    tsr__free(tok->raw_trie.nodes);
    tsr__free(tok->norm_trie.nodes);
    tsr__free(tok->post_prefix);
    tsr__free(tok->post_suffix);
}
