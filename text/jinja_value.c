/* Values of the Jinja interpreter: arena, strings, lists, dicts, and how Python prints them
 * (str, repr, json.dumps). */
#include "jinja.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ------------------------------------------------------------------------------- */

struct tsr__arena_block {
    tsr__arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

#define ARENA_BLOCK 65536

void *tsr__arena_alloc(tsr__arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    tsr__arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        size_t total;
        if (!tsr__add_size(cap, sizeof *b, &total)) return NULL;
        if (a->limit && (a->used_total > a->limit || total > a->limit - a->used_total)) {
            a->hit_limit = 1;
            return NULL;
        }
        b = tsr__malloc(total);
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
        a->used_total += total;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void tsr__arena_free(tsr__arena *a) {
    tsr__arena_block *b = a->head;
    while (b) {
        tsr__arena_block *next = b->next;
        tsr__free(b);
        b = next;
    }
    a->head = NULL;
    a->used_total = 0;
}

/* ---- string builder ---------------------------------------------------------------------- */

void tsr__jbuf_put(tsr__jbuf *b, const char *s, size_t n) {
    if (b->failed || n == 0) return;
    size_t need;
    if (!tsr__add_size(b->len, n + 1, &need)) { b->failed = 2; return; }
    if (b->limit && need - 1 > b->limit) { b->failed = 2; return; }
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) { b->failed = 2; return; }
            cap *= 2;
        }
        char *p = tsr__realloc(b->data, cap);
        if (!p) { b->failed = 1; return; }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void tsr__jbuf_puts(tsr__jbuf *b, const char *s) { tsr__jbuf_put(b, s, strlen(s)); }

void tsr__jbuf_free(tsr__jbuf *b) {
    tsr__free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- constructors ------------------------------------------------------------------------- */

const tsr__jstr *tsr__jstr_new(tsr__arena *a, const char *s, size_t n) {
    size_t total;
    if (!tsr__add_size(sizeof(tsr__jstr) + 1, n, &total)) return NULL;
    tsr__jstr *str = tsr__arena_alloc(a, total);
    if (!str) return NULL;
    str->len = n;
    if (n) memcpy(str->data, s, n);
    str->data[n] = 0;
    return str;
}

tsr__jlist *tsr__jlist_new(tsr__arena *a, size_t n) {
    size_t total;
    if (!tsr__mul_size(n, sizeof(tsr__jv), &total) ||
        !tsr__add_size(total, sizeof(tsr__jlist), &total))
        return NULL;
    tsr__jlist *l = tsr__arena_alloc(a, total);
    if (!l) return NULL;
    l->n = n;
    l->is_tuple = 0;
    for (size_t i = 0; i < n; i++) l->items[i] = tsr__jv_none();
    return l;
}

tsr__jdict *tsr__jdict_new(tsr__arena *a, size_t cap) {
    tsr__jdict *d = tsr__arena_alloc(a, sizeof *d);
    if (!d) return NULL;
    memset(d, 0, sizeof *d);
    if (cap) {
        size_t bytes;
        if (!tsr__mul_size(cap, sizeof(tsr__jv), &bytes)) return NULL;
        d->keys = tsr__arena_alloc(a, bytes);
        d->vals = tsr__arena_alloc(a, bytes);
        if (!d->keys || !d->vals) return NULL;
        d->cap = cap;
    }
    return d;
}

static int key_equal(tsr__jv a, tsr__jv b) { return tsr__jv_equal(a, b); }

int tsr__jdict_get(const tsr__jdict *d, tsr__jv key, tsr__jv *out) {
    for (size_t i = 0; i < d->n; i++)
        if (key_equal(d->keys[i], key)) {
            *out = d->vals[i];
            return 1;
        }
    return 0;
}

int tsr__jdict_get_str(const tsr__jdict *d, const char *key, tsr__jv *out) {
    size_t n = strlen(key);
    for (size_t i = 0; i < d->n; i++) {
        tsr__jv k = d->keys[i];
        if (k.type == TSR__JV_STRING && k.u.s->len == n && !memcmp(k.u.s->data, key, n)) {
            *out = d->vals[i];
            return 1;
        }
    }
    return 0;
}

int tsr__jdict_set(tsr__arena *a, tsr__jdict *d, tsr__jv key, tsr__jv val) {
    for (size_t i = 0; i < d->n; i++)
        if (key_equal(d->keys[i], key)) {
            d->vals[i] = val;
            return 1;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4, bytes;
        if (!tsr__mul_size(cap, sizeof(tsr__jv), &bytes)) return 0;
        tsr__jv *k = tsr__arena_alloc(a, bytes), *v = tsr__arena_alloc(a, bytes);
        if (!k || !v) return 0;
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof *k);
            memcpy(v, d->vals, d->n * sizeof *v);
        }
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
    return 1;
}

/* ---- Python semantics ----------------------------------------------------------------------- */

int tsr__jv_truthy(tsr__jv v) {
    switch (v.type) {
    case TSR__JV_UNDEFINED:
    case TSR__JV_NONE: return 0;
    case TSR__JV_BOOL: return v.u.b;
    case TSR__JV_INT: return v.u.i != 0;
    case TSR__JV_FLOAT: return v.u.f != 0.0;
    case TSR__JV_STRING: return v.u.s->len != 0;
    case TSR__JV_LIST: return v.u.l->n != 0;
    case TSR__JV_DICT: return v.u.d->is_namespace || v.u.d->n != 0;
    case TSR__JV_LOOP:
    case TSR__JV_CALLABLE: return 1;
    }
    return 0;
}

static int is_number(tsr__jv v) {
    return v.type == TSR__JV_BOOL || v.type == TSR__JV_INT || v.type == TSR__JV_FLOAT;
}

static double as_double(tsr__jv v) {
    return v.type == TSR__JV_FLOAT ? v.u.f : v.type == TSR__JV_INT ? (double)v.u.i : v.u.b;
}

int tsr__jv_equal(tsr__jv a, tsr__jv b) {
    if (is_number(a) && is_number(b)) {
        if (a.type != TSR__JV_FLOAT && b.type != TSR__JV_FLOAT) {
            int64_t x = a.type == TSR__JV_INT ? a.u.i : a.u.b;
            int64_t y = b.type == TSR__JV_INT ? b.u.i : b.u.b;
            return x == y;
        }
        return as_double(a) == as_double(b);
    }
    if (a.type != b.type) return 0;
    switch (a.type) {
    case TSR__JV_UNDEFINED:
    case TSR__JV_NONE: return 1;
    case TSR__JV_STRING:
        return a.u.s->len == b.u.s->len && !memcmp(a.u.s->data, b.u.s->data, a.u.s->len);
    case TSR__JV_LIST:
        if (a.u.l->n != b.u.l->n || a.u.l->is_tuple != b.u.l->is_tuple) return 0;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!tsr__jv_equal(a.u.l->items[i], b.u.l->items[i])) return 0;
        return 1;
    case TSR__JV_DICT:
        if (a.u.d->is_namespace || b.u.d->is_namespace) return a.u.d == b.u.d;
        if (a.u.d->n != b.u.d->n) return 0;
        for (size_t i = 0; i < a.u.d->n; i++) {
            tsr__jv other;
            if (!tsr__jdict_get(b.u.d, a.u.d->keys[i], &other) ||
                !tsr__jv_equal(a.u.d->vals[i], other))
                return 0;
        }
        return 1;
    case TSR__JV_LOOP: return a.u.loop == b.u.loop;
    case TSR__JV_CALLABLE: return a.u.fn == b.u.fn;
    default: return 0;
    }
}

const char *tsr__jv_type_name(tsr__jv v) {
    switch (v.type) {
    case TSR__JV_UNDEFINED: return "Undefined";
    case TSR__JV_NONE: return "NoneType";
    case TSR__JV_BOOL: return "bool";
    case TSR__JV_INT: return "int";
    case TSR__JV_FLOAT: return "float";
    case TSR__JV_STRING: return "str";
    case TSR__JV_LIST: return v.u.l->is_tuple ? "tuple" : "list";
    case TSR__JV_DICT: return v.u.d->is_namespace ? "Namespace" : "dict";
    case TSR__JV_LOOP: return "LoopContext";
    case TSR__JV_CALLABLE: return "function";
    }
    return "object";
}

/* ---- printing --------------------------------------------------------------------------- */

void tsr__py_float_repr(char *out, size_t cap, double f) {
    if (isnan(f)) { snprintf(out, cap, "nan"); return; }
    if (isinf(f)) { snprintf(out, cap, f < 0 ? "-inf" : "inf"); return; }
    char tmp[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp = [-]d.ddde[+-]XX: split digits and exponent */
    char digits[24];
    int nd = 0, neg = 0;
    const char *s = tmp;
    if (*s == '-') { neg = 1; s++; }
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9' && nd < 20) digits[nd++] = *s;
    int exp10 = *s == 'e' ? atoi(s + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    char body[64];
    size_t k = 0;
    if (exp10 >= -4 && exp10 < 16) { /* Python uses fixed notation here */
        if (exp10 < 0) {
            body[k++] = '0';
            body[k++] = '.';
            for (int i = 0; i < -exp10 - 1; i++) body[k++] = '0';
            for (int i = 0; i < nd; i++) body[k++] = digits[i];
        } else {
            for (int i = 0; i <= exp10; i++) body[k++] = i < nd ? digits[i] : '0';
            body[k++] = '.';
            if (nd > exp10 + 1)
                for (int i = exp10 + 1; i < nd; i++) body[k++] = digits[i];
            else
                body[k++] = '0';
        }
        body[k] = 0;
    } else {
        body[k++] = digits[0];
        if (nd > 1) {
            body[k++] = '.';
            for (int i = 1; i < nd; i++) body[k++] = digits[i];
        }
        body[k] = 0;
        snprintf(body + k, sizeof body - k, "e%c%02d", exp10 < 0 ? '-' : '+',
                 exp10 < 0 ? -exp10 : exp10);
    }
    snprintf(out, cap, "%s%s", neg ? "-" : "", body);
}

static void write_int(tsr__jbuf *b, int64_t i) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", (long long)i);
    tsr__jbuf_puts(b, tmp);
}

static void write_float(tsr__jbuf *b, double f) {
    char tmp[64];
    tsr__py_float_repr(tmp, sizeof tmp, f);
    tsr__jbuf_puts(b, tmp);
}

static void write_py_string_repr(tsr__jbuf *b, const tsr__jstr *s) {
    int has_single = memchr(s->data, '\'', s->len) != NULL;
    int has_double = memchr(s->data, '"', s->len) != NULL;
    char q = has_single && !has_double ? '"' : '\'';
    tsr__jbuf_put(b, &q, 1);
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->data[i];
        char tmp[8];
        if (c == '\\') tsr__jbuf_puts(b, "\\\\");
        else if (c == (unsigned char)q) { tsr__jbuf_puts(b, q == '\'' ? "\\'" : "\\\""); }
        else if (c == '\n') tsr__jbuf_puts(b, "\\n");
        else if (c == '\r') tsr__jbuf_puts(b, "\\r");
        else if (c == '\t') tsr__jbuf_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            tsr__jbuf_puts(b, tmp);
        } else {
            tsr__jbuf_put(b, (const char *)&s->data[i], 1);
        }
    }
    tsr__jbuf_put(b, &q, 1);
}

void tsr__jv_write_repr(tsr__jbuf *b, tsr__jv v) {
    switch (v.type) {
    case TSR__JV_STRING: write_py_string_repr(b, v.u.s); return;
    case TSR__JV_LIST: {
        tsr__jbuf_puts(b, v.u.l->is_tuple ? "(" : "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) tsr__jbuf_puts(b, ", ");
            tsr__jv_write_repr(b, v.u.l->items[i]);
        }
        if (v.u.l->is_tuple && v.u.l->n == 1) tsr__jbuf_puts(b, ",");
        tsr__jbuf_puts(b, v.u.l->is_tuple ? ")" : "]");
        return;
    }
    case TSR__JV_DICT:
        if (v.u.d->is_namespace) {
            tsr__jbuf_puts(b, "<Namespace ");
        } else {
            tsr__jbuf_puts(b, "{");
        }
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) tsr__jbuf_puts(b, ", ");
            if (v.u.d->is_namespace) {
                tsr__jv_write_str(b, v.u.d->keys[i]);
                tsr__jbuf_puts(b, "=");
            } else {
                tsr__jv_write_repr(b, v.u.d->keys[i]);
                tsr__jbuf_puts(b, ": ");
            }
            tsr__jv_write_repr(b, v.u.d->vals[i]);
        }
        tsr__jbuf_puts(b, v.u.d->is_namespace ? ">" : "}");
        return;
    default: tsr__jv_write_str(b, v); return;
    }
}

void tsr__jv_write_str(tsr__jbuf *b, tsr__jv v) {
    switch (v.type) {
    case TSR__JV_UNDEFINED: return;
    case TSR__JV_NONE: tsr__jbuf_puts(b, "None"); return;
    case TSR__JV_BOOL: tsr__jbuf_puts(b, v.u.b ? "True" : "False"); return;
    case TSR__JV_INT: write_int(b, v.u.i); return;
    case TSR__JV_FLOAT: write_float(b, v.u.f); return;
    case TSR__JV_STRING: tsr__jbuf_put(b, v.u.s->data, v.u.s->len); return;
    case TSR__JV_LIST:
    case TSR__JV_DICT: tsr__jv_write_repr(b, v); return;
    case TSR__JV_LOOP: tsr__jbuf_puts(b, "<LoopContext>"); return;
    case TSR__JV_CALLABLE: tsr__jbuf_puts(b, "<function>"); return;
    }
}

static void write_json_string(tsr__jbuf *b, const char *s, size_t n) {
    tsr__jbuf_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                esc = tmp;
            }
        }
        if (esc) {
            tsr__jbuf_put(b, s + run, i - run);
            tsr__jbuf_puts(b, esc);
            run = i + 1;
        }
    }
    tsr__jbuf_put(b, s + run, n - run);
    tsr__jbuf_put(b, "\"", 1);
}

static void json_newline(tsr__jbuf *b, int indent, int level) {
    tsr__jbuf_put(b, "\n", 1);
    for (int i = 0; i < indent * level; i++) tsr__jbuf_put(b, " ", 1);
}

/* Python's json turns non-string keys into strings: true/false/null, ints, float repr. */
static int write_json_key(tsr__jbuf *b, tsr__jv k) {
    tsr__jbuf tmp = {0};
    switch (k.type) {
    case TSR__JV_STRING: write_json_string(b, k.u.s->data, k.u.s->len); return 1;
    case TSR__JV_BOOL: tsr__jbuf_puts(&tmp, k.u.b ? "true" : "false"); break;
    case TSR__JV_NONE: tsr__jbuf_puts(&tmp, "null"); break;
    case TSR__JV_INT:
    case TSR__JV_FLOAT: tsr__jv_write_str(&tmp, k); break;
    default: return 0;
    }
    if (tmp.failed) { b->failed = tmp.failed; tsr__jbuf_free(&tmp); return 1; }
    write_json_string(b, tmp.data ? tmp.data : "", tmp.len);
    tsr__jbuf_free(&tmp);
    return 1;
}

static int key_less(tsr__jv a, tsr__jv b) {
    if (a.type != TSR__JV_STRING || b.type != TSR__JV_STRING) return 0;
    size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
    int c = memcmp(a.u.s->data, b.u.s->data, n);
    return c < 0 || (c == 0 && a.u.s->len < b.u.s->len);
}

int tsr__jv_write_json(tsr__jbuf *b, tsr__jv v, int indent, int sort_keys, int depth) {
    if (depth > 64) return 0;
    switch (v.type) {
    case TSR__JV_NONE: tsr__jbuf_puts(b, "null"); return 1;
    case TSR__JV_BOOL: tsr__jbuf_puts(b, v.u.b ? "true" : "false"); return 1;
    case TSR__JV_INT: write_int(b, v.u.i); return 1;
    case TSR__JV_FLOAT:
        if (isnan(v.u.f)) tsr__jbuf_puts(b, "NaN");
        else if (isinf(v.u.f)) tsr__jbuf_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else write_float(b, v.u.f);
        return 1;
    case TSR__JV_STRING: write_json_string(b, v.u.s->data, v.u.s->len); return 1;
    case TSR__JV_LIST: {
        if (v.u.l->n == 0) { tsr__jbuf_puts(b, "[]"); return 1; }
        tsr__jbuf_puts(b, "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) tsr__jbuf_puts(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_newline(b, indent, depth + 1);
            if (!tsr__jv_write_json(b, v.u.l->items[i], indent, sort_keys, depth + 1)) return 0;
        }
        if (indent >= 0) json_newline(b, indent, depth);
        tsr__jbuf_puts(b, "]");
        return 1;
    }
    case TSR__JV_DICT: {
        const tsr__jdict *d = v.u.d;
        if (d->is_namespace) return 0;
        if (d->n == 0) { tsr__jbuf_puts(b, "{}"); return 1; }
        tsr__jbuf_puts(b, "{");
        int64_t last = -1; /* sort_keys: repeated selection of the next key (dicts are small) */
        for (size_t i = 0; i < d->n; i++) {
            size_t at = i;
            if (sort_keys) {
                int64_t best = -1;
                for (size_t j = 0; j < d->n; j++) {
                    if (last >= 0 && !key_less(d->keys[last], d->keys[j])) continue;
                    if (best < 0 || key_less(d->keys[j], d->keys[best])) best = (int64_t)j;
                }
                if (best < 0) break;
                at = (size_t)best;
                last = best;
            }
            if (i) tsr__jbuf_puts(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_newline(b, indent, depth + 1);
            if (!write_json_key(b, d->keys[at])) return 0;
            tsr__jbuf_puts(b, ": ");
            if (!tsr__jv_write_json(b, d->vals[at], indent, sort_keys, depth + 1)) return 0;
        }
        if (indent >= 0) json_newline(b, indent, depth);
        tsr__jbuf_puts(b, "}");
        return 1;
    }
    default: return 0;
    }
}

/* ---- from cJSON ------------------------------------------------------------------------------ */

int tsr__jv_from_cjson(tsr__arena *a, const cJSON *j, tsr__jv *out, int depth) {
    if (!j || depth > 64) return 0;
    if (cJSON_IsNull(j)) { *out = tsr__jv_none(); return 1; }
    if (cJSON_IsBool(j)) { *out = tsr__jv_bool(cJSON_IsTrue(j)); return 1; }
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) *out = tsr__jv_int((int64_t)d);
        else *out = tsr__jv_float(d);
        return 1;
    }
    if (cJSON_IsString(j)) {
        const char *s = j->valuestring ? j->valuestring : "";
        const tsr__jstr *str = tsr__jstr_new(a, s, strlen(s));
        if (!str) return 0;
        out->type = TSR__JV_STRING;
        out->u.s = str;
        return 1;
    }
    if (cJSON_IsArray(j)) {
        size_t n = 0;
        for (const cJSON *c = j->child; c; c = c->next) n++;
        tsr__jlist *l = tsr__jlist_new(a, n);
        if (!l) return 0;
        size_t i = 0;
        for (const cJSON *c = j->child; c; c = c->next, i++)
            if (!tsr__jv_from_cjson(a, c, &l->items[i], depth + 1)) return 0;
        out->type = TSR__JV_LIST;
        out->u.l = l;
        return 1;
    }
    if (cJSON_IsObject(j)) {
        size_t n = 0;
        for (const cJSON *c = j->child; c; c = c->next) n++;
        tsr__jdict *d = tsr__jdict_new(a, n);
        if (!d) return 0;
        for (const cJSON *c = j->child; c; c = c->next) {
            const char *k = c->string ? c->string : "";
            const tsr__jstr *ks = tsr__jstr_new(a, k, strlen(k));
            tsr__jv key = {.type = TSR__JV_STRING}, val;
            if (!ks) return 0;
            key.u.s = ks;
            if (!tsr__jv_from_cjson(a, c, &val, depth + 1)) return 0;
            if (!tsr__jdict_set(a, d, key, val)) return 0;
        }
        out->type = TSR__JV_DICT;
        out->u.d = d;
        return 1;
    }
    return 0;
}

/* ---- UTF-8 -------------------------------------------------------------------------------- */

/* Length of the UTF-8 sequence at s[0..n) (1 for an invalid byte) and its code point. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || len > n) { *cp = 0xFFFD; return 1; }
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) { *cp = 0xFFFD; return 1; }
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

size_t tsr__utf8_count(const char *s, size_t n) {
    size_t count = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        i += utf8_decode((const unsigned char *)s + i, n - i, &cp);
        count++;
    }
    return count;
}

size_t tsr__utf8_offset(const char *s, size_t n, size_t cp_index) {
    size_t i = 0;
    while (i < n && cp_index > 0) {
        uint32_t cp;
        i += utf8_decode((const unsigned char *)s + i, n - i, &cp);
        cp_index--;
    }
    return i;
}

static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

size_t tsr__py_space_at(const char *s, size_t n, size_t pos) {
    if (pos >= n) return 0;
    uint32_t cp;
    size_t len = utf8_decode((const unsigned char *)s + pos, n - pos, &cp);
    return py_isspace(cp) ? len : 0;
}

size_t tsr__py_space_before(const char *s, size_t end) {
    if (end == 0) return 0;
    size_t start = end - 1; /* back up to the lead byte (at most 3 continuation bytes) */
    while (start > 0 && end - start < 4 && ((unsigned char)s[start] & 0xc0) == 0x80) start--;
    uint32_t cp;
    size_t len = utf8_decode((const unsigned char *)s + start, end - start, &cp);
    if (start + len != end) return 0;
    return py_isspace(cp) ? len : 0;
}
