/*
 * tokenizer_pretok.c - pre-tokenizers: Split (PCRE2, the five split behaviours, invert),
 * ByteLevel (prefix space, GPT-2 regex), Metaspace and Digits, as `tokenizers` runs them.
 */
#include <string.h>

#include <utf8proc.h>

#include "tokenizer.h"

/* One range of a piece: [s, e), and whether it is a match of the split pattern. */
typedef struct seg {
    size_t s, e;
    bool m;
} seg;

typedef struct segs {
    seg *p;
    size_t n, cap;
} segs;

static tsr_status seg_push(segs *v, size_t s, size_t e, bool m, tsr_error *err) {
    seg *np = tsr__grow(v->p, &v->cap, v->n + 1, sizeof *np, 64);
    if (!np) return TSR_FAIL(err, TSR_ERR_OOM, "split ranges");
    v->p = np;
    v->p[v->n++] = (seg){s, e, m};
    return TSR_OK;
}

/* Applies a split behaviour to the match list of a piece (Pattern::find_matches + split in
 * tokenizers' normalizer.rs) and pushes the non-empty results. */
static tsr_status emit_split(const segs *in, tsr__split_behavior beh, bool invert, size_t base,
                             bool first, tsr__pieces *out, segs *work, tsr_error *err) {
    work->n = 0;
    tsr_status st = TSR_OK;
    bool prev_match = false;
    for (size_t i = 0; i < in->n && !st; i++) {
        seg g = in->p[i];
        g.m = g.m != invert;
        switch (beh) {
        case TSR__SPLIT_REMOVED:
        case TSR__SPLIT_ISOLATED:
            st = seg_push(work, g.s, g.e, g.m, err);
            break;
        case TSR__SPLIT_MERGED_PREV:
            if (g.m && !prev_match && work->n) work->p[work->n - 1].e = g.e;
            else st = seg_push(work, g.s, g.e, false, err);
            prev_match = g.m;
            break;
        case TSR__SPLIT_CONTIGUOUS:
            if (g.m == prev_match && work->n) work->p[work->n - 1].e = g.e;
            else st = seg_push(work, g.s, g.e, false, err);
            prev_match = g.m;
            break;
        case TSR__SPLIT_MERGED_NEXT:
            st = seg_push(work, g.s, g.e, g.m, err);
            break;
        }
    }
    if (st) return st;
    if (beh == TSR__SPLIT_MERGED_NEXT) { /* fold from the right: a match joins what follows */
        size_t k = work->n;
        bool next_match = false;
        for (size_t i = work->n; i-- > 0;) {
            seg g = work->p[i];
            if (g.m && !next_match && k < work->n) {
                work->p[k].s = g.s;
            } else {
                work->p[--k] = g;
                work->p[k].m = false;
            }
            next_match = g.m;
        }
        memmove(work->p, work->p + k, (work->n - k) * sizeof(seg));
        work->n -= k;
    }
    for (size_t i = 0; i < work->n; i++) {
        seg g = work->p[i];
        if (g.e <= g.s || (beh == TSR__SPLIT_REMOVED && g.m)) continue;
        if ((st = tsr__pieces_push(out, base + g.s, g.e - g.s, first && g.s == 0, err))) return st;
    }
    return TSR_OK;
}

/* All matches of re in s[0..n) with the iteration rules of the onig crate's find_iter (an
 * empty match right after the previous match is skipped). */
static tsr_status regex_segs(pcre2_code *re, pcre2_match_data *md, const char *s, size_t n,
                             segs *out, tsr_error *err) {
    out->n = 0;
    if (!n) return seg_push(out, 0, 0, false, err);
    size_t pos = 0, prev = 0;
    long last_end = -1;
    tsr_status st;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
            rc == PCRE2_ERROR_HEAPLIMIT)
            rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return TSR_FAIL(err, TSR_ERR_LIMIT, "split regex failed on a %zu-byte piece (PCRE2 error %d)", n, rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && last_end == (long)me) {
            int32_t cp;
            pos += pos < n ? tsr__utf8_decode((const uint8_t *)s + pos, n - pos, &cp) : 1;
            continue;
        }
        if (prev != ms && (st = seg_push(out, prev, ms, false, err))) return st;
        if ((st = seg_push(out, ms, me, true, err))) return st;
        prev = me;
        pos = me;
        last_end = (long)me;
    }
    if (prev != n) return seg_push(out, prev, n, false, err);
    return TSR_OK;
}

/* Ranges of single characters satisfying pred (each one a match). */
static tsr_status char_segs(const char *s, size_t n, int32_t only_cp, bool numeric, segs *out,
                            tsr_error *err) {
    out->n = 0;
    if (!n) return seg_push(out, 0, 0, false, err);
    size_t i = 0, prev = 0;
    tsr_status st;
    while (i < n) {
        int32_t cp;
        size_t k = tsr__utf8_decode((const uint8_t *)s + i, n - i, &cp);
        bool m;
        if (numeric) {
            utf8proc_category_t c = utf8proc_category(cp);
            m = c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
        } else {
            m = cp == only_cp;
        }
        if (m) {
            if (prev != i && (st = seg_push(out, prev, i, false, err))) return st;
            if ((st = seg_push(out, i, i + k, true, err))) return st;
            prev = i + k;
        }
        i += k;
    }
    if (prev != n) return seg_push(out, prev, n, false, err);
    return TSR_OK;
}

struct pre_work {
    segs found, work;
};

static tsr_status step_split(const tsr__pre *p, tsr__pieces *in, tsr__pieces *out,
                             tsr__pre_scratch *sc, struct pre_work *w, tsr_error *err) {
    /* Output pieces point into the same buffer: swap buffers so `out` owns it. */
    tsr__buf b = out->buf;
    out->buf = in->buf;
    in->buf = b;
    out->n = 0;
    const char *base = out->buf.p;
    for (size_t i = 0; i < in->n; i++) {
        tsr__piece pc = in->p[i];
        tsr_status st;
        if (p->kind == TSR__PRE_DIGITS)
            st = char_segs(base + pc.off, pc.len, 0, true, &w->found, err);
        else
            st = regex_segs(p->re, sc->md, base + pc.off, pc.len, &w->found, err);
        tsr__split_behavior beh = p->behavior;
        bool inv = p->invert;
        if (p->kind == TSR__PRE_DIGITS) {
            beh = p->individual_digits ? TSR__SPLIT_ISOLATED : TSR__SPLIT_CONTIGUOUS;
            inv = false;
        } else if (p->kind == TSR__PRE_BYTELEVEL) {
            beh = TSR__SPLIT_ISOLATED;
            inv = false;
        }
        if (!st) st = emit_split(&w->found, beh, inv, pc.off, pc.first, out, &w->work, err);
        if (st) return st;
    }
    return TSR_OK;
}

/* Rewrites every piece (prefix space, Metaspace replacement) into out's fresh buffer. */
static tsr_status step_rewrite(const tsr__pre *p, tsr__pieces *in, tsr__pieces *out,
                               struct pre_work *w, tsr_error *err) {
    out->n = 0;
    out->buf.len = 0;
    char rep[4];
    size_t rn = p->kind == TSR__PRE_METASPACE ? tsr__utf8_encode(p->replacement, rep) : 0;
    tsr_status st = tsr__buf_reserve(&out->buf, 0, err);
    for (size_t i = 0; i < in->n && !st; i++) {
        tsr__piece pc = in->p[i];
        const char *s = in->buf.p + pc.off;
        size_t start = out->buf.len;
        if (p->kind == TSR__PRE_BYTELEVEL) {
            if (p->add_prefix_space && !(pc.len && s[0] == ' ')) st = tsr__buf_put(&out->buf, " ", 1, err);
            if (!st) st = tsr__buf_put(&out->buf, s, pc.len, err);
        } else { /* Metaspace: ' ' -> replacement, then maybe prepend it */
            bool starts = pc.len >= rn && memcmp(s, rep, rn) == 0;
            if (!starts && pc.len && s[0] == ' ') starts = true; /* becomes the replacement */
            bool prepend = (p->prepend == TSR__PREPEND_ALWAYS ||
                            (p->prepend == TSR__PREPEND_FIRST && pc.first)) && !starts;
            if (prepend) st = tsr__buf_put(&out->buf, rep, rn, err);
            size_t run = 0;
            for (size_t k = 0; k < pc.len && !st; k++) {
                if (s[k] != ' ') continue;
                st = tsr__buf_put(&out->buf, s + run, k - run, err);
                if (!st) st = tsr__buf_put(&out->buf, rep, rn, err);
                run = k + 1;
            }
            if (!st) st = tsr__buf_put(&out->buf, s + run, pc.len - run, err);
        }
        if (st) break;
        size_t len = out->buf.len - start;
        if (p->kind == TSR__PRE_METASPACE && p->split) {
            st = char_segs(out->buf.p + start, len, p->replacement, false, &w->found, err);
            if (!st) st = emit_split(&w->found, TSR__SPLIT_MERGED_NEXT, false, start, pc.first, out,
                                     &w->work, err);
        } else if (len) {
            st = tsr__pieces_push(out, start, len, pc.first, err);
        }
    }
    return st;
}

tsr_status tsr__tok_pretokenize(const tsr_tokenizer *tok, const char *s, size_t n, bool first,
                                tsr__pieces *out, tsr__pre_scratch *sc, tsr_error *err) {
    out->n = 0;
    out->buf.len = 0;
    tsr_status st = tsr__buf_put(&out->buf, s, n, err);
    if (st) return st;
    if (n && (st = tsr__pieces_push(out, 0, n, first, err))) return st;
    if (!tok->n_pres || !n) return TSR_OK;
    if (!sc->md && !(sc->md = pcre2_match_data_create(16, NULL)))
        return TSR_FAIL(err, TSR_ERR_OOM, "regex match data");
    struct pre_work w = {{0}, {0}};
    for (size_t i = 0; i < tok->n_pres && !st; i++) {
        const tsr__pre *p = &tok->pres[i];
        tsr__pieces *in = out, *dst = &sc->tmp;
        /* Steps read `in` and write `dst`; then swap so `out` holds the result. */
        if (p->kind == TSR__PRE_METASPACE || (p->kind == TSR__PRE_BYTELEVEL && p->add_prefix_space)) {
            st = step_rewrite(p, in, dst, &w, err);
            if (!st) { tsr__pieces t = *out; *out = *dst; *dst = t; }
        }
        if (st) break;
        if (p->kind == TSR__PRE_SPLIT || p->kind == TSR__PRE_DIGITS ||
            (p->kind == TSR__PRE_BYTELEVEL && p->use_regex)) {
            st = step_split(p, out, dst, sc, &w, err);
            if (!st) { tsr__pieces t = *out; *out = *dst; *dst = t; }
        }
    }
    tsr__free(w.found.p);
    tsr__free(w.work.p);
    return st;
}

void tsr__pre_scratch_free(tsr__pre_scratch *s) {
    tsr__pieces_free(&s->tmp);
    pcre2_match_data_free(s->md);
    memset(s, 0, sizeof *s);
}
