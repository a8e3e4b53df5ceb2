/* Jinja evaluator: renders a syntax tree with Python/jinja2 semantics (sandboxed, immutable
 * values), plus the filters, tests, globals and methods chat templates use. */
#include "jinja_ast.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

typedef struct scope {
    struct scope *parent;
    tsr__jdict *vars;
} scope;

enum { CALL_BUILTIN, CALL_METHOD, CALL_MACRO };
enum { FN_RANGE = 1, FN_NAMESPACE, FN_RAISE, FN_STRFTIME, FN_DICT };

struct tsr__jcallable {
    int kind;
    int builtin;      /* FN_* */
    const char *name; /* method or macro name */
    tsr__jv self;     /* bound object of a method */
    const jnode *macro;
};

typedef struct ctx {
    tsr__arena arena;
    tsr__jbuf *out;
    tsr_error *err;
    tsr_status status;
    tsr__jinja_limits lim;
    int64_t steps;
    int depth, macro_depth;
    int flow; /* 1 break, 2 continue */
    int64_t now_unix;
    scope *top;
} ctx;

typedef struct callargs {
    tsr__jv *pos;
    size_t n;
    const char **kwn;
    tsr__jv *kwv;
    size_t nkw;
} callargs;

/* ---- errors ------------------------------------------------------------------------------ */

static tsr_status fail(ctx *c, tsr_status st, int line, const char *fmt, ...) TSR__PRINTF(4, 5);
static tsr_status fail(ctx *c, tsr_status st, int line, const char *fmt, ...) {
    if (c->status != TSR_OK) return c->status;
    char msg[TSR_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->status = st;
    if (line > 0) tsr__fail(c->err, st, "chat template line %d: %s", line, msg);
    else tsr__fail(c->err, st, "chat template: %s", msg);
    return st;
}

static tsr_status mem_fail(ctx *c, int line) {
    if (c->arena.hit_limit)
        return fail(c, TSR_ERR_LIMIT, line, "rendering needs more than %zu bytes of memory",
                    c->lim.max_memory);
    return fail(c, TSR_ERR_OOM, line, "out of memory");
}

static tsr_status type_error(ctx *c, int line, const char *what, tsr__jv a, tsr__jv b) {
    return fail(c, TSR_ERR_INVALID_ARG, line, "unsupported operand types for %s: '%s' and '%s'",
                what, tsr__jv_type_name(a), tsr__jv_type_name(b));
}

static tsr_status undefined_error(ctx *c, int line, tsr__jv v) {
    if (v.u.undef_name)
        return fail(c, TSR_ERR_INVALID_ARG, line, "'%s' is undefined", v.u.undef_name);
    return fail(c, TSR_ERR_INVALID_ARG, line, "a value used here is undefined");
}

#define TRY(x) do { tsr_status st__ = (x); if (st__ != TSR_OK) return st__; } while (0)

static tsr_status step(ctx *c, int line) {
    if (++c->steps > c->lim.max_steps)
        return fail(c, TSR_ERR_LIMIT, line, "more than %lld loop iterations, calls and outputs",
                    (long long)c->lim.max_steps);
    return TSR_OK;
}

/* ---- value helpers ------------------------------------------------------------------------- */

static tsr_status mkstr(ctx *c, int line, const char *s, size_t n, tsr__jv *out) {
    const tsr__jstr *str = tsr__jstr_new(&c->arena, s, n);
    if (!str) return mem_fail(c, line);
    out->type = TSR__JV_STRING;
    out->u.s = str;
    return TSR_OK;
}

static tsr_status mkstr_buf(ctx *c, int line, tsr__jbuf *b, tsr__jv *out) {
    if (b->failed) {
        tsr_status st = b->failed == 2
            ? fail(c, TSR_ERR_LIMIT, line, "a string grew past %zu bytes", c->lim.max_output)
            : mem_fail(c, line);
        tsr__jbuf_free(b);
        return st;
    }
    tsr_status st = mkstr(c, line, b->data ? b->data : "", b->len, out);
    tsr__jbuf_free(b);
    return st;
}

static tsr_status mklist(ctx *c, int line, size_t n, tsr__jv *out) {
    out->type = TSR__JV_NONE;
    out->u.l = NULL;
    tsr__jlist *l = tsr__jlist_new(&c->arena, n);
    if (!l) return mem_fail(c, line);
    out->type = TSR__JV_LIST;
    out->u.l = l;
    return TSR_OK;
}

static tsr_status to_str(ctx *c, int line, tsr__jv v, tsr__jv *out) {
    if (v.type == TSR__JV_STRING) { *out = v; return TSR_OK; }
    tsr__jbuf b = {.limit = c->lim.max_output};
    tsr__jv_write_str(&b, v);
    return mkstr_buf(c, line, &b, out);
}

static tsr_status new_callable(ctx *c, int line, int kind, int builtin, const char *name,
                               tsr__jv self, const jnode *macro, tsr__jv *out) {
    tsr__jcallable *fn = tsr__arena_alloc(&c->arena, sizeof *fn);
    if (!fn) return mem_fail(c, line);
    fn->kind = kind;
    fn->builtin = builtin;
    fn->name = name;
    fn->self = self;
    fn->macro = macro;
    out->type = TSR__JV_CALLABLE;
    out->u.fn = fn;
    return TSR_OK;
}

/* Items of an iterable as a list: lists/tuples, dict keys, string characters; undefined is
 * empty. */
static tsr_status iterate(ctx *c, int line, tsr__jv v, tsr__jv *out) {
    switch (v.type) {
    case TSR__JV_LIST: *out = v; return TSR_OK;
    case TSR__JV_UNDEFINED: return mklist(c, line, 0, out);
    case TSR__JV_DICT: {
        if (v.u.d->is_namespace) break;
        TRY(mklist(c, line, v.u.d->n, out));
        for (size_t i = 0; i < v.u.d->n; i++) out->u.l->items[i] = v.u.d->keys[i];
        return TSR_OK;
    }
    case TSR__JV_STRING: {
        const tsr__jstr *s = v.u.s;
        size_t n = tsr__utf8_count(s->data, s->len), at = 0;
        TRY(mklist(c, line, n, out));
        for (size_t i = 0; i < n; i++) {
            size_t next = at + tsr__utf8_offset(s->data + at, s->len - at, 1);
            TRY(mkstr(c, line, s->data + at, next - at, &out->u.l->items[i]));
            at = next;
        }
        return TSR_OK;
    }
    default: break;
    }
    return fail(c, TSR_ERR_INVALID_ARG, line, "'%s' object is not iterable", tsr__jv_type_name(v));
}

static int64_t py_floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

static int is_num(tsr__jv v) {
    return v.type == TSR__JV_INT || v.type == TSR__JV_FLOAT || v.type == TSR__JV_BOOL;
}
static int is_intlike(tsr__jv v) { return v.type == TSR__JV_INT || v.type == TSR__JV_BOOL; }
static int64_t as_int(tsr__jv v) { return v.type == TSR__JV_INT ? v.u.i : v.u.b; }
static double as_dbl(tsr__jv v) { return v.type == TSR__JV_FLOAT ? v.u.f : (double)as_int(v); }

/* Python comparison: <0, 0, >0; *ok = 0 when the types do not order. */
static int compare(tsr__jv a, tsr__jv b, int *ok) {
    *ok = 1;
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b)) return (as_int(a) > as_int(b)) - (as_int(a) < as_int(b));
        double x = as_dbl(a), y = as_dbl(b);
        return (x > y) - (x < y);
    }
    if (a.type == TSR__JV_STRING && b.type == TSR__JV_STRING) {
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        int r = memcmp(a.u.s->data, b.u.s->data, n);
        if (r) return r;
        return (a.u.s->len > b.u.s->len) - (a.u.s->len < b.u.s->len);
    }
    if (a.type == TSR__JV_LIST && b.type == TSR__JV_LIST) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (tsr__jv_equal(a.u.l->items[i], b.u.l->items[i])) continue;
            return compare(a.u.l->items[i], b.u.l->items[i], ok);
        }
        return (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
    }
    *ok = 0;
    return 0;
}

static int str_has(const tsr__jstr *hay, const tsr__jstr *needle) {
    if (needle->len == 0) return 1;
    if (needle->len > hay->len) return 0;
    for (size_t i = 0; i + needle->len <= hay->len; i++)
        if (!memcmp(hay->data + i, needle->data, needle->len)) return 1;
    return 0;
}

static tsr_status contains(ctx *c, int line, tsr__jv item, tsr__jv container, int *out) {
    switch (container.type) {
    case TSR__JV_STRING:
        if (item.type != TSR__JV_STRING)
            return fail(c, TSR_ERR_INVALID_ARG, line,
                        "'in <string>' requires string as left operand, not %s",
                        tsr__jv_type_name(item));
        *out = str_has(container.u.s, item.u.s);
        return TSR_OK;
    case TSR__JV_LIST:
        *out = 0;
        for (size_t i = 0; i < container.u.l->n && !*out; i++)
            *out = tsr__jv_equal(container.u.l->items[i], item);
        return TSR_OK;
    case TSR__JV_DICT: {
        tsr__jv tmp;
        *out = tsr__jdict_get(container.u.d, item, &tmp);
        return TSR_OK;
    }
    case TSR__JV_UNDEFINED: *out = 0; return TSR_OK;
    default:
        return fail(c, TSR_ERR_INVALID_ARG, line, "argument of type '%s' is not iterable",
                    tsr__jv_type_name(container));
    }
}

/* ---- attribute and item access ----------------------------------------------------------------- */

static const char *const STR_METHODS[] = {"strip", "lstrip", "rstrip", "startswith", "endswith",
                                          "split", "upper", "lower", "title", "capitalize",
                                          "replace", "join", NULL};
static const char *const STR_METHODS_UNSUPPORTED[] = {
    "format", "format_map", "zfill", "center", "ljust", "rjust", "partition", "rpartition",
    "splitlines", "casefold", "swapcase", "expandtabs", "encode", "isdigit", "isalpha",
    "isspace", "isalnum", "isupper", "islower", "istitle", "isnumeric", "isdecimal",
    "isidentifier", "isprintable", "isascii", "index", "rindex", "find", "rfind", "count",
    "rsplit", "translate", "maketrans", "removeprefix", "removesuffix", NULL};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", NULL};
static const char *const DICT_METHODS_UNSUPPORTED[] = {
    "pop", "popitem", "update", "setdefault", "copy", "clear", "fromkeys", NULL};
static const char *const LIST_METHODS_UNSUPPORTED[] = {
    "append", "extend", "pop", "insert", "remove", "sort", "reverse", "clear", "index",
    "count", "copy", NULL};

static int in_names(const char *const *names, const char *s) {
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], s)) return 1;
    return 0;
}

static tsr_status get_attr(ctx *c, int line, tsr__jv obj, const char *name, tsr__jv *out) {
    switch (obj.type) {
    case TSR__JV_UNDEFINED: return undefined_error(c, line, obj);
    case TSR__JV_DICT:
        if (obj.u.d->is_namespace) {
            if (!tsr__jdict_get_str(obj.u.d, name, out)) *out = tsr__jv_undef(name);
            return TSR_OK;
        }
        if (in_names(DICT_METHODS, name) || in_names(DICT_METHODS_UNSUPPORTED, name))
            return new_callable(c, line, CALL_METHOD, 0, name, obj, NULL, out);
        if (!tsr__jdict_get_str(obj.u.d, name, out)) *out = tsr__jv_undef(name);
        return TSR_OK;
    case TSR__JV_STRING:
        if (in_names(STR_METHODS, name) || in_names(STR_METHODS_UNSUPPORTED, name))
            return new_callable(c, line, CALL_METHOD, 0, name, obj, NULL, out);
        break;
    case TSR__JV_LIST:
        if (in_names(LIST_METHODS_UNSUPPORTED, name))
            return new_callable(c, line, CALL_METHOD, 0, name, obj, NULL, out);
        break;
    case TSR__JV_LOOP: {
        const tsr__jloop *lp = obj.u.loop;
        if (!strcmp(name, "index0")) *out = tsr__jv_int(lp->index0);
        else if (!strcmp(name, "index")) *out = tsr__jv_int(lp->index0 + 1);
        else if (!strcmp(name, "revindex")) *out = tsr__jv_int(lp->length - lp->index0);
        else if (!strcmp(name, "revindex0")) *out = tsr__jv_int(lp->length - lp->index0 - 1);
        else if (!strcmp(name, "first")) *out = tsr__jv_bool(lp->index0 == 0);
        else if (!strcmp(name, "last")) *out = tsr__jv_bool(lp->index0 == lp->length - 1);
        else if (!strcmp(name, "length")) *out = tsr__jv_int(lp->length);
        else if (!strcmp(name, "depth")) *out = tsr__jv_int(1);
        else if (!strcmp(name, "depth0")) *out = tsr__jv_int(0);
        else if (!strcmp(name, "previtem")) *out = lp->has_prev ? lp->prev : tsr__jv_undef("previtem");
        else if (!strcmp(name, "nextitem")) *out = lp->has_next ? lp->next : tsr__jv_undef("nextitem");
        else if (!strcmp(name, "cycle") || !strcmp(name, "changed"))
            return fail(c, TSR_ERR_UNSUPPORTED, line, "loop.%s", name);
        else *out = tsr__jv_undef(name);
        return TSR_OK;
    }
    default: break;
    }
    *out = tsr__jv_undef(name);
    return TSR_OK;
}

static tsr_status get_item(ctx *c, int line, tsr__jv obj, tsr__jv key, tsr__jv *out) {
    switch (obj.type) {
    case TSR__JV_UNDEFINED: return undefined_error(c, line, obj);
    case TSR__JV_DICT:
        if (!obj.u.d->is_namespace && tsr__jdict_get(obj.u.d, key, out)) return TSR_OK;
        break;
    case TSR__JV_LIST:
        if (is_intlike(key)) {
            int64_t i = as_int(key), n = (int64_t)obj.u.l->n;
            if (i < 0) i += n;
            if (i >= 0 && i < n) *out = obj.u.l->items[i];
            else *out = tsr__jv_undef(NULL);
            return TSR_OK;
        }
        break;
    case TSR__JV_STRING:
        if (is_intlike(key)) {
            const tsr__jstr *s = obj.u.s;
            int64_t i = as_int(key), n = (int64_t)tsr__utf8_count(s->data, s->len);
            if (i < 0) i += n;
            if (i < 0 || i >= n) { *out = tsr__jv_undef(NULL); return TSR_OK; }
            size_t a = tsr__utf8_offset(s->data, s->len, (size_t)i);
            size_t b = a + tsr__utf8_offset(s->data + a, s->len - a, 1);
            return mkstr(c, line, s->data + a, b - a, out);
        }
        break;
    default: break;
    }
    if (key.type == TSR__JV_STRING) return get_attr(c, line, obj, key.u.s->data, out);
    *out = tsr__jv_undef(NULL);
    return TSR_OK;
}

/* Python slice indices for a sequence of n items. */
static void slice_indices(int64_t n, const tsr__jv *start, const tsr__jv *stop, int64_t stepv,
                          int64_t *s0, int64_t *s1) {
    int64_t lo = stepv < 0 ? -1 : 0, hi = stepv < 0 ? n - 1 : n;
    int64_t a = stepv < 0 ? hi : lo, b = stepv < 0 ? lo : hi;
    if (start) {
        a = as_int(*start);
        if (a < 0) { a += n; if (a < lo) a = lo; } else if (a > hi) a = hi;
    }
    if (stop) {
        b = as_int(*stop);
        if (b < 0) { b += n; if (b < lo) b = lo; } else if (b > hi) b = hi;
    }
    *s0 = a;
    *s1 = b;
}

static tsr_status do_slice(ctx *c, int line, tsr__jv obj, const tsr__jv *start, const tsr__jv *stop,
                           const tsr__jv *stepp, tsr__jv *out) {
    for (int k = 0; k < 3; k++) {
        const tsr__jv *v = k == 0 ? start : k == 1 ? stop : stepp;
        if (v && v->type != TSR__JV_NONE && !is_intlike(*v))
            return fail(c, TSR_ERR_INVALID_ARG, line, "slice indices must be integers or None");
    }
    if (start && start->type == TSR__JV_NONE) start = NULL;
    if (stop && stop->type == TSR__JV_NONE) stop = NULL;
    int64_t stepv = stepp && stepp->type != TSR__JV_NONE ? as_int(*stepp) : 1;
    if (stepv == 0) return fail(c, TSR_ERR_INVALID_ARG, line, "slice step cannot be zero");
    if (obj.type == TSR__JV_UNDEFINED) return undefined_error(c, line, obj);
    if (obj.type != TSR__JV_LIST && obj.type != TSR__JV_STRING)
        return fail(c, TSR_ERR_INVALID_ARG, line, "'%s' object is not subscriptable",
                    tsr__jv_type_name(obj));
    tsr__jv seq = obj;
    if (obj.type == TSR__JV_STRING) TRY(iterate(c, line, obj, &seq));
    int64_t n = (int64_t)seq.u.l->n, a, b, count = 0;
    slice_indices(n, start, stop, stepv, &a, &b);
    for (int64_t i = a; stepv > 0 ? i < b : i > b; i += stepv) count++;
    tsr__jv res;
    TRY(mklist(c, line, (size_t)count, &res));
    res.u.l->is_tuple = seq.u.l->is_tuple;
    int64_t k = 0;
    for (int64_t i = a; stepv > 0 ? i < b : i > b; i += stepv) res.u.l->items[k++] = seq.u.l->items[i];
    if (obj.type != TSR__JV_STRING) { *out = res; return TSR_OK; }
    tsr__jbuf buf = {0};
    for (size_t i = 0; i < res.u.l->n; i++)
        tsr__jbuf_put(&buf, res.u.l->items[i].u.s->data, res.u.l->items[i].u.s->len);
    return mkstr_buf(c, line, &buf, out);
}

/* ---- scopes ------------------------------------------------------------------------------ */

static tsr_status scope_set(ctx *c, int line, scope *s, const char *name, tsr__jv v) {
    tsr__jv key;
    TRY(mkstr(c, line, name, strlen(name), &key));
    if (!tsr__jdict_set(&c->arena, s->vars, key, v)) return mem_fail(c, line);
    return TSR_OK;
}

static tsr_status new_scope(ctx *c, int line, scope *parent, scope **out) {
    *out = NULL;
    scope *s = tsr__arena_alloc(&c->arena, sizeof *s);
    tsr__jdict *d = s ? tsr__jdict_new(&c->arena, 0) : NULL;
    if (!d) return mem_fail(c, line);
    s->parent = parent;
    s->vars = d;
    *out = s;
    return TSR_OK;
}

static tsr_status lookup(ctx *c, int line, scope *s, const char *name, tsr__jv *out) {
    for (; s; s = s->parent)
        if (tsr__jdict_get_str(s->vars, name, out)) return TSR_OK;
    static const struct { const char *name; int fn; } builtins[] = {
        {"range", FN_RANGE}, {"namespace", FN_NAMESPACE}, {"raise_exception", FN_RAISE},
        {"strftime_now", FN_STRFTIME}, {"dict", FN_DICT}};
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (!strcmp(name, builtins[i].name))
            return new_callable(c, line, CALL_BUILTIN, builtins[i].fn, builtins[i].name,
                                tsr__jv_none(), NULL, out);
    if (!strcmp(name, "cycler") || !strcmp(name, "joiner") || !strcmp(name, "lipsum"))
        return fail(c, TSR_ERR_UNSUPPORTED, line, "the jinja global '%s'", name);
    *out = tsr__jv_undef(name);
    return TSR_OK;
}

/* ---- expressions ---------------------------------------------------------------------------- */

static tsr_status eval(ctx *c, scope *s, const jnode *nd, tsr__jv *out);
static tsr_status exec_body(ctx *c, scope *s, jnode *const *body, size_t n);
static tsr_status call_value(ctx *c, scope *s, int line, tsr__jv fn, callargs *ca, tsr__jv *out);
static tsr_status apply_filter(ctx *c, scope *s, int line, const char *name, tsr__jv v,
                               callargs *ca, tsr__jv *out);
static tsr_status apply_test(ctx *c, scope *s, int line, const char *name, tsr__jv v,
                             callargs *ca, int *out);

static tsr_status eval_args(ctx *c, scope *s, const jnode *nd, size_t extra, callargs *ca) {
    size_t n;
    if (!tsr__add_size(nd->n_items, extra, &n)) return mem_fail(c, nd->line);
    ca->pos = tsr__arena_alloc(&c->arena, (n + 1) * sizeof(tsr__jv));
    ca->kwv = tsr__arena_alloc(&c->arena, (nd->n_items2 + 1) * sizeof(tsr__jv));
    if (!ca->pos || !ca->kwv) return mem_fail(c, nd->line);
    ca->n = n;
    for (size_t i = 0; i < nd->n_items; i++) TRY(eval(c, s, nd->items[i], &ca->pos[extra + i]));
    ca->kwn = nd->names;
    ca->nkw = nd->n_items2;
    for (size_t i = 0; i < nd->n_items2; i++) TRY(eval(c, s, nd->items2[i], &ca->kwv[i]));
    return TSR_OK;
}

/* Argument `idx` (positional) or `name` (keyword); returns 1 when given. */
static int arg(const callargs *ca, size_t idx, const char *name, tsr__jv *out) {
    if (idx < ca->n) { *out = ca->pos[idx]; return 1; }
    for (size_t i = 0; i < ca->nkw; i++)
        if (name && !strcmp(ca->kwn[i], name)) { *out = ca->kwv[i]; return 1; }
    return 0;
}

static tsr_status check_arity(ctx *c, int line, const char *what, const callargs *ca,
                              size_t max_pos, const char *const *kw) {
    if (ca->n > max_pos)
        return fail(c, TSR_ERR_INVALID_ARG, line, "%s takes at most %zu positional arguments",
                    what, max_pos);
    for (size_t i = 0; i < ca->nkw; i++)
        if (!kw || !in_names(kw, ca->kwn[i]))
            return fail(c, TSR_ERR_UNSUPPORTED, line, "%s with keyword argument '%s'", what,
                        ca->kwn[i]);
    return TSR_OK;
}

static tsr_status binop(ctx *c, int line, int op, tsr__jv a, tsr__jv b, tsr__jv *out) {
    static const char *const names[] = {"", "+", "-", "*", "/", "//", "%", "**", "~",
                                        "==", "!=", "<", "<=", ">", ">="};
    const char *opname = names[op];
    if (op == JOP_CONCAT) {
        tsr__jbuf buf = {.limit = c->lim.max_output};
        tsr__jv_write_str(&buf, a);
        tsr__jv_write_str(&buf, b);
        return mkstr_buf(c, line, &buf, out);
    }
    if (op == JOP_EQ || op == JOP_NE) {
        int eq = tsr__jv_equal(a, b);
        *out = tsr__jv_bool(op == JOP_EQ ? eq : !eq);
        return TSR_OK;
    }
    if (a.type == TSR__JV_UNDEFINED) return undefined_error(c, line, a);
    if (b.type == TSR__JV_UNDEFINED) return undefined_error(c, line, b);
    if (op >= JOP_LT) {
        int ok, r = compare(a, b, &ok);
        if (!ok)
            return fail(c, TSR_ERR_INVALID_ARG, line,
                        "'%s' not supported between instances of '%s' and '%s'", opname,
                        tsr__jv_type_name(a), tsr__jv_type_name(b));
        *out = tsr__jv_bool(op == JOP_LT ? r < 0 : op == JOP_LE ? r <= 0 : op == JOP_GT ? r > 0 : r >= 0);
        return TSR_OK;
    }
    if (is_num(a) && is_num(b)) {
        int ints = is_intlike(a) && is_intlike(b);
        int64_t x = as_int(a), y = as_int(b), r = 0;
        double fx = as_dbl(a), fy = as_dbl(b);
        int ovf = 0;
        switch (op) {
        case JOP_ADD:
            if (ints) { ovf = __builtin_add_overflow(x, y, &r); *out = tsr__jv_int(r); }
            else *out = tsr__jv_float(fx + fy);
            break;
        case JOP_SUB:
            if (ints) { ovf = __builtin_sub_overflow(x, y, &r); *out = tsr__jv_int(r); }
            else *out = tsr__jv_float(fx - fy);
            break;
        case JOP_MUL:
            if (ints) { ovf = __builtin_mul_overflow(x, y, &r); *out = tsr__jv_int(r); }
            else *out = tsr__jv_float(fx * fy);
            break;
        case JOP_DIV:
            if (fy == 0) return fail(c, TSR_ERR_INVALID_ARG, line, "division by zero");
            *out = tsr__jv_float(fx / fy);
            break;
        case JOP_FLOORDIV:
        case JOP_MOD:
            if (ints ? y == 0 : fy == 0)
                return fail(c, TSR_ERR_INVALID_ARG, line, "integer division or modulo by zero");
            if (ints) {
                if (x == INT64_MIN && y == -1) { ovf = 1; break; }
                int64_t q = py_floordiv(x, y);
                *out = tsr__jv_int(op == JOP_FLOORDIV ? q : x - q * y);
            } else {
                double q = floor(fx / fy), m = fmod(fx, fy);
                if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
                *out = tsr__jv_float(op == JOP_FLOORDIV ? q : m);
            }
            break;
        case JOP_POW:
            if (ints && y >= 0) {
                r = 1;
                for (int64_t i = 0; i < y && !ovf; i++) {
                    ovf = __builtin_mul_overflow(r, x, &r);
                    if (r == 0 || r == 1) break;
                    if (r == -1 && x == -1) { r = (y % 2) ? -1 : 1; break; }
                }
                *out = tsr__jv_int(r);
            } else {
                *out = tsr__jv_float(pow(fx, fy));
            }
            break;
        default: return type_error(c, line, opname, a, b);
        }
        if (ovf) return fail(c, TSR_ERR_LIMIT, line, "integer overflow in '%s'", opname);
        return TSR_OK;
    }
    if (op == JOP_ADD && a.type == TSR__JV_STRING && b.type == TSR__JV_STRING) {
        tsr__jbuf buf = {.limit = c->lim.max_output};
        tsr__jbuf_put(&buf, a.u.s->data, a.u.s->len);
        tsr__jbuf_put(&buf, b.u.s->data, b.u.s->len);
        return mkstr_buf(c, line, &buf, out);
    }
    if (op == JOP_ADD && a.type == TSR__JV_LIST && b.type == TSR__JV_LIST &&
        a.u.l->is_tuple == b.u.l->is_tuple) {
        TRY(mklist(c, line, a.u.l->n + b.u.l->n, out));
        out->u.l->is_tuple = a.u.l->is_tuple;
        for (size_t i = 0; i < a.u.l->n; i++) out->u.l->items[i] = a.u.l->items[i];
        for (size_t i = 0; i < b.u.l->n; i++) out->u.l->items[a.u.l->n + i] = b.u.l->items[i];
        return TSR_OK;
    }
    if (op == JOP_MUL && (is_intlike(a) || is_intlike(b)) &&
        (a.type == TSR__JV_STRING || b.type == TSR__JV_STRING || a.type == TSR__JV_LIST ||
         b.type == TSR__JV_LIST)) {
        tsr__jv seq = is_intlike(a) ? b : a;
        int64_t times = is_intlike(a) ? as_int(a) : as_int(b);
        if (times < 0) times = 0;
        size_t unit = seq.type == TSR__JV_STRING ? seq.u.s->len : seq.u.l->n, total;
        if (!tsr__mul_size(unit, (size_t)times, &total) || total > c->lim.max_output)
            return fail(c, TSR_ERR_LIMIT, line, "repetition result too large");
        if (seq.type == TSR__JV_STRING) {
            tsr__jbuf buf = {.limit = c->lim.max_output};
            for (int64_t i = 0; i < times; i++) tsr__jbuf_put(&buf, seq.u.s->data, unit);
            return mkstr_buf(c, line, &buf, out);
        }
        TRY(mklist(c, line, total, out));
        for (size_t i = 0; i < total; i++) out->u.l->items[i] = seq.u.l->items[i % unit];
        return TSR_OK;
    }
    if (op == JOP_MOD && a.type == TSR__JV_STRING)
        return fail(c, TSR_ERR_UNSUPPORTED, line, "printf-style string formatting ('%%')");
    return type_error(c, line, opname, a, b);
}

static tsr_status eval(ctx *c, scope *s, const jnode *nd, tsr__jv *out) {
    if (++c->depth > c->lim.max_depth * 4) {
        c->depth--;
        return fail(c, TSR_ERR_LIMIT, nd->line, "expression nesting too deep");
    }
    tsr_status st = TSR_OK;
    tsr__jv a, b;
    switch (nd->kind) {
    case JN_LITERAL: *out = nd->lit; break;
    case JN_NAME: st = lookup(c, nd->line, s, nd->name, out); break;
    case JN_GETATTR:
        if ((st = eval(c, s, nd->a, &a)) == TSR_OK) st = get_attr(c, nd->line, a, nd->name, out);
        break;
    case JN_GETITEM:
        if ((st = eval(c, s, nd->a, &a)) == TSR_OK && (st = eval(c, s, nd->b, &b)) == TSR_OK)
            st = get_item(c, nd->line, a, b, out);
        break;
    case JN_SLICE: {
        tsr__jv v[3];
        const tsr__jv *pv[3] = {NULL, NULL, NULL};
        const jnode *parts[3] = {nd->b, nd->c, nd->n_items2 ? nd->items2[0] : NULL};
        if ((st = eval(c, s, nd->a, &a)) != TSR_OK) break;
        for (int k = 0; k < 3 && st == TSR_OK; k++)
            if (parts[k] && (st = eval(c, s, parts[k], &v[k])) == TSR_OK) pv[k] = &v[k];
        if (st == TSR_OK) st = do_slice(c, nd->line, a, pv[0], pv[1], pv[2], out);
        break;
    }
    case JN_CALL: {
        callargs ca;
        if ((st = eval(c, s, nd->a, &a)) == TSR_OK && (st = eval_args(c, s, nd, 0, &ca)) == TSR_OK)
            st = call_value(c, s, nd->line, a, &ca, out);
        break;
    }
    case JN_FILTER: {
        callargs ca;
        if ((st = eval(c, s, nd->a, &a)) == TSR_OK && (st = eval_args(c, s, nd, 0, &ca)) == TSR_OK)
            st = apply_filter(c, s, nd->line, nd->name, a, &ca, out);
        break;
    }
    case JN_TEST: {
        callargs ca;
        int r = 0;
        if ((st = eval(c, s, nd->a, &a)) == TSR_OK && (st = eval_args(c, s, nd, 0, &ca)) == TSR_OK &&
            (st = apply_test(c, s, nd->line, nd->name, a, &ca, &r)) == TSR_OK)
            *out = tsr__jv_bool(nd->op ? !r : r);
        break;
    }
    case JN_BINOP:
        if ((st = eval(c, s, nd->a, &a)) == TSR_OK && (st = eval(c, s, nd->b, &b)) == TSR_OK)
            st = binop(c, nd->line, nd->op, a, b, out);
        break;
    case JN_UNARY:
        if ((st = eval(c, s, nd->a, &a)) != TSR_OK) break;
        if (a.type == TSR__JV_UNDEFINED) { st = undefined_error(c, nd->line, a); break; }
        if (!is_num(a)) {
            st = fail(c, TSR_ERR_INVALID_ARG, nd->line, "bad operand type for unary %c: '%s'",
                      nd->op, tsr__jv_type_name(a));
            break;
        }
        if (nd->op == '+') *out = a.type == TSR__JV_BOOL ? tsr__jv_int(a.u.b) : a;
        else if (a.type == TSR__JV_FLOAT) *out = tsr__jv_float(-a.u.f);
        else if (as_int(a) == INT64_MIN) st = fail(c, TSR_ERR_LIMIT, nd->line, "integer overflow");
        else *out = tsr__jv_int(-as_int(a));
        break;
    case JN_NOT:
        if ((st = eval(c, s, nd->a, &a)) == TSR_OK) *out = tsr__jv_bool(!tsr__jv_truthy(a));
        break;
    case JN_AND:
    case JN_OR:
        if ((st = eval(c, s, nd->a, &a)) != TSR_OK) break;
        if (tsr__jv_truthy(a) == (nd->kind == JN_OR)) *out = a;
        else st = eval(c, s, nd->b, out);
        break;
    case JN_COND:
        if ((st = eval(c, s, nd->a, &a)) != TSR_OK) break;
        if (tsr__jv_truthy(a)) st = eval(c, s, nd->b, out);
        else if (nd->c) st = eval(c, s, nd->c, out);
        else *out = tsr__jv_undef(NULL);
        break;
    case JN_LIST:
    case JN_TUPLE:
        if ((st = mklist(c, nd->line, nd->n_items, out)) != TSR_OK) break;
        out->u.l->is_tuple = nd->kind == JN_TUPLE;
        for (size_t i = 0; i < nd->n_items && st == TSR_OK; i++)
            st = eval(c, s, nd->items[i], &out->u.l->items[i]);
        break;
    case JN_DICT: {
        tsr__jdict *d = tsr__jdict_new(&c->arena, nd->n_items / 2);
        if (!d) { st = mem_fail(c, nd->line); break; }
        for (size_t i = 0; i + 1 < nd->n_items && st == TSR_OK; i += 2) {
            if ((st = eval(c, s, nd->items[i], &a)) != TSR_OK ||
                (st = eval(c, s, nd->items[i + 1], &b)) != TSR_OK)
                break;
            if (a.type == TSR__JV_LIST && !a.u.l->is_tuple) {
                st = fail(c, TSR_ERR_INVALID_ARG, nd->line, "unhashable type: 'list'");
            } else if (a.type == TSR__JV_DICT || a.type == TSR__JV_UNDEFINED) {
                st = fail(c, TSR_ERR_INVALID_ARG, nd->line, "unhashable dict key of type '%s'",
                          tsr__jv_type_name(a));
            } else if (!tsr__jdict_set(&c->arena, d, a, b)) {
                st = mem_fail(c, nd->line);
            }
        }
        out->type = TSR__JV_DICT;
        out->u.d = d;
        break;
    }
    case JN_IN: {
        int r;
        if ((st = eval(c, s, nd->a, &a)) == TSR_OK && (st = eval(c, s, nd->b, &b)) == TSR_OK &&
            (st = contains(c, nd->line, a, b, &r)) == TSR_OK)
            *out = tsr__jv_bool(nd->op ? !r : r);
        break;
    }
    default: st = fail(c, TSR_ERR_INTERNAL, nd->line, "statement node in an expression");
    }
    c->depth--;
    return st;
}

/* ---- calls ------------------------------------------------------------------------------------ */

static tsr_status call_macro(ctx *c, int line, const jnode *m, callargs *ca, tsr__jv *out) {
    if (c->macro_depth >= c->lim.max_depth)
        return fail(c, TSR_ERR_LIMIT, line, "macro calls nested deeper than %d", c->lim.max_depth);
    if (ca->n > m->n_names)
        return fail(c, TSR_ERR_INVALID_ARG, line, "macro '%s' takes %zu arguments, got %zu",
                    m->name, m->n_names, ca->n);
    scope *ms = NULL;
    TRY(new_scope(c, line, c->top, &ms));
    for (size_t i = 0; i < ca->nkw; i++) {
        int found = 0;
        for (size_t k = 0; k < m->n_names; k++) found |= !strcmp(m->names[k], ca->kwn[i]);
        if (!found)
            return fail(c, TSR_ERR_INVALID_ARG, line, "macro '%s' has no argument '%s'", m->name,
                        ca->kwn[i]);
    }
    for (size_t k = 0; k < m->n_names; k++) {
        tsr__jv v;
        if (!arg(ca, k, m->names[k], &v)) {
            if (m->items2[k]) TRY(eval(c, ms, m->items2[k], &v));
            else v = tsr__jv_undef(m->names[k]);
        }
        TRY(scope_set(c, line, ms, m->names[k], v));
    }
    tsr__jbuf buf = {.limit = c->lim.max_output}, *saved = c->out;
    c->out = &buf;
    c->macro_depth++;
    tsr_status st = exec_body(c, ms, m->items, m->n_items);
    c->macro_depth--;
    c->out = saved;
    c->flow = 0;
    if (st != TSR_OK) { tsr__jbuf_free(&buf); return st; }
    return mkstr_buf(c, line, &buf, out);
}

static tsr_status fn_range(ctx *c, int line, callargs *ca, tsr__jv *out) {
    int64_t v[3] = {0, 0, 1};
    if (ca->n < 1 || ca->n > 3 || ca->nkw)
        return fail(c, TSR_ERR_INVALID_ARG, line, "range expects 1 to 3 integer arguments");
    for (size_t i = 0; i < ca->n; i++)
        if (!is_intlike(ca->pos[i]))
            return fail(c, TSR_ERR_INVALID_ARG, line, "range arguments must be integers");
    if (ca->n == 1) v[1] = as_int(ca->pos[0]);
    else for (size_t i = 0; i < ca->n; i++) v[i] = as_int(ca->pos[i]);
    if (v[2] == 0) return fail(c, TSR_ERR_INVALID_ARG, line, "range() step must not be zero");
    int64_t count = 0;
    if (v[2] > 0 && v[1] > v[0]) count = (int64_t)(((uint64_t)v[1] - (uint64_t)v[0] - 1) / (uint64_t)v[2] + 1);
    if (v[2] < 0 && v[0] > v[1]) count = (int64_t)(((uint64_t)v[0] - (uint64_t)v[1] - 1) / (uint64_t)(-(v[2] + 1) + 1) + 1);
    if (count < 0 || count > c->lim.max_steps)
        return fail(c, TSR_ERR_LIMIT, line, "range of more than %lld items", (long long)c->lim.max_steps);
    TRY(mklist(c, line, (size_t)count, out));
    for (int64_t i = 0; i < count; i++) out->u.l->items[i] = tsr__jv_int(v[0] + i * v[2]);
    return TSR_OK;
}

static tsr_status fn_strftime(ctx *c, int line, callargs *ca, tsr__jv *out) {
    tsr__jv fmt;
    if (!arg(ca, 0, "format", &fmt) || fmt.type != TSR__JV_STRING)
        return fail(c, TSR_ERR_INVALID_ARG, line, "strftime_now expects a format string");
    /* Directives whose output depends on the C library or locale beyond Python's are refused. */
    for (size_t i = 0; i + 1 < fmt.u.s->len; i++) {
        if (fmt.u.s->data[i] != '%') continue;
        char d = fmt.u.s->data[++i];
        if (!strchr("aAbBdHIjmMpSyYZz%", d))
            return fail(c, TSR_ERR_UNSUPPORTED, line, "strftime_now directive '%%%c'", d);
    }
    time_t t = c->now_unix ? (time_t)c->now_unix : time(NULL);
    struct tm tmv;
    if (!localtime_r(&t, &tmv)) return fail(c, TSR_ERR_INTERNAL, line, "localtime failed");
    char buf[512];
    size_t n = fmt.u.s->len ? strftime(buf, sizeof buf, fmt.u.s->data, &tmv) : 0;
    if (n == 0 && fmt.u.s->len)
        return fail(c, TSR_ERR_LIMIT, line, "strftime_now result longer than %zu bytes", sizeof buf);
    return mkstr(c, line, buf, n, out);
}

static tsr_status fn_namespace(ctx *c, int line, callargs *ca, tsr__jv *out) {
    tsr__jdict *d = tsr__jdict_new(&c->arena, ca->nkw);
    if (!d) return mem_fail(c, line);
    d->is_namespace = 1;
    if (ca->n > 1) return fail(c, TSR_ERR_INVALID_ARG, line, "namespace takes one mapping");
    if (ca->n == 1) {
        tsr__jv m = ca->pos[0];
        if (m.type != TSR__JV_DICT || m.u.d->is_namespace)
            return fail(c, TSR_ERR_INVALID_ARG, line, "namespace takes a mapping");
        for (size_t i = 0; i < m.u.d->n; i++)
            if (!tsr__jdict_set(&c->arena, d, m.u.d->keys[i], m.u.d->vals[i])) return mem_fail(c, line);
    }
    for (size_t i = 0; i < ca->nkw; i++) {
        tsr__jv key;
        if (ca->kwn[i][0] == '_')
            return fail(c, TSR_ERR_INVALID_ARG, line,
                        "namespaces cannot store underscore-prefixed attributes ('%s')", ca->kwn[i]);
        TRY(mkstr(c, line, ca->kwn[i], strlen(ca->kwn[i]), &key));
        if (!tsr__jdict_set(&c->arena, d, key, ca->kwv[i])) return mem_fail(c, line);
    }
    out->type = TSR__JV_DICT;
    out->u.d = d;
    return TSR_OK;
}

static tsr_status call_method(ctx *c, int line, const tsr__jcallable *fn, callargs *ca,
                              tsr__jv *out);

static tsr_status call_value(ctx *c, scope *s, int line, tsr__jv fnv, callargs *ca, tsr__jv *out) {
    (void)s;
    TRY(step(c, line));
    if (fnv.type == TSR__JV_UNDEFINED) {
        if (fnv.u.undef_name)
            return fail(c, TSR_ERR_INVALID_ARG, line, "'%s' is undefined (called as a function)",
                        fnv.u.undef_name);
        return fail(c, TSR_ERR_INVALID_ARG, line, "called an undefined value");
    }
    if (fnv.type != TSR__JV_CALLABLE)
        return fail(c, TSR_ERR_INVALID_ARG, line, "'%s' object is not callable",
                    tsr__jv_type_name(fnv));
    const tsr__jcallable *fn = fnv.u.fn;
    if (fn->kind == CALL_MACRO) return call_macro(c, line, fn->macro, ca, out);
    if (fn->kind == CALL_METHOD) return call_method(c, line, fn, ca, out);
    switch (fn->builtin) {
    case FN_RANGE: return fn_range(c, line, ca, out);
    case FN_NAMESPACE: return fn_namespace(c, line, ca, out);
    case FN_STRFTIME: return fn_strftime(c, line, ca, out);
    case FN_RAISE: {
        tsr__jv msg = tsr__jv_undef(NULL);
        tsr__jbuf b = {.limit = 400};
        if (arg(ca, 0, "message", &msg)) tsr__jv_write_str(&b, msg);
        fail(c, TSR_ERR_INVALID_ARG, line, "template raised an exception: %s",
             b.data && !b.failed ? b.data : "");
        tsr__jbuf_free(&b);
        return c->status;
    }
    case FN_DICT: {
        if (ca->n) return fail(c, TSR_ERR_UNSUPPORTED, line, "dict() with positional arguments");
        tsr__jdict *d = tsr__jdict_new(&c->arena, ca->nkw);
        if (!d) return mem_fail(c, line);
        for (size_t i = 0; i < ca->nkw; i++) {
            tsr__jv key;
            TRY(mkstr(c, line, ca->kwn[i], strlen(ca->kwn[i]), &key));
            if (!tsr__jdict_set(&c->arena, d, key, ca->kwv[i])) return mem_fail(c, line);
        }
        out->type = TSR__JV_DICT;
        out->u.d = d;
        return TSR_OK;
    }
    default: return fail(c, TSR_ERR_INTERNAL, line, "unknown builtin");
    }
}

/* ---- strings ----------------------------------------------------------------------------------- */

/* Python str.strip/lstrip/rstrip: whitespace, or the characters of `chars`. */
static tsr_status do_strip(ctx *c, int line, const tsr__jstr *s, tsr__jv chars, int left,
                           int right, tsr__jv *out) {
    size_t a = 0, b = s->len;
    if (chars.type == TSR__JV_STRING) {
        const tsr__jstr *cs = chars.u.s;
        /* byte-wise on ASCII sets; a non-ASCII set is matched per code point */
        while (left && a < b) {
            size_t k = tsr__utf8_offset(s->data + a, b - a, 1);
            int hit = 0;
            for (size_t j = 0; j < cs->len && !hit;) {
                size_t kl = tsr__utf8_offset(cs->data + j, cs->len - j, 1);
                hit = kl == k && !memcmp(cs->data + j, s->data + a, k);
                j += kl;
            }
            if (!hit) break;
            a += k;
        }
        while (right && b > a) {
            size_t st = b - 1;
            while (st > a && ((unsigned char)s->data[st] & 0xc0) == 0x80) st--;
            size_t k = b - st;
            int hit = 0;
            for (size_t j = 0; j < cs->len && !hit;) {
                size_t kl = tsr__utf8_offset(cs->data + j, cs->len - j, 1);
                hit = kl == k && !memcmp(cs->data + j, s->data + st, k);
                j += kl;
            }
            if (!hit) break;
            b = st;
        }
    } else if (chars.type == TSR__JV_NONE || chars.type == TSR__JV_UNDEFINED) {
        size_t k;
        while (left && a < b && (k = tsr__py_space_at(s->data, b, a)) != 0) a += k;
        while (right && b > a && (k = tsr__py_space_before(s->data, b)) != 0 && b - k >= a) b -= k;
    } else {
        return fail(c, TSR_ERR_INVALID_ARG, line, "strip arg must be None or str");
    }
    return mkstr(c, line, s->data + a, b - a, out);
}

/* upper/lower/title/capitalize per code point through utf8proc (simple case mapping). */
static tsr_status do_case(ctx *c, int line, const tsr__jstr *s, int mode, tsr__jv *out) {
    tsr__jbuf b = {.limit = c->lim.max_output};
    size_t i = 0;
    int prev_cased = 0, first = 1;
    while (i < s->len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s->data + i,
                                              (utf8proc_ssize_t)(s->len - i), &cp);
        if (k <= 0) { tsr__jbuf_put(&b, s->data + i, 1); i++; prev_cased = 0; first = 0; continue; }
        utf8proc_int32_t m = cp;
        int cased = utf8proc_toupper(cp) != cp || utf8proc_tolower(cp) != cp;
        switch (mode) {
        case 'u': m = utf8proc_toupper(cp); break;
        case 'l': m = utf8proc_tolower(cp); break;
        case 't': m = prev_cased ? utf8proc_tolower(cp) : utf8proc_totitle(cp); break;
        case 'c': m = first ? utf8proc_totitle(cp) : utf8proc_tolower(cp); break;
        }
        utf8proc_uint8_t enc[4];
        utf8proc_ssize_t n = utf8proc_encode_char(m, enc);
        tsr__jbuf_put(&b, (const char *)enc, (size_t)n);
        prev_cased = cased;
        first = 0;
        i += (size_t)k;
    }
    return mkstr_buf(c, line, &b, out);
}

static tsr_status do_replace(ctx *c, int line, const tsr__jstr *s, tsr__jv oldv, tsr__jv newv,
                             int64_t count, tsr__jv *out) {
    if (oldv.type != TSR__JV_STRING || newv.type != TSR__JV_STRING)
        return fail(c, TSR_ERR_INVALID_ARG, line, "replace() arguments must be str");
    const tsr__jstr *o = oldv.u.s, *nw = newv.u.s;
    tsr__jbuf b = {.limit = c->lim.max_output};
    if (o->len == 0) { /* Python inserts the replacement between every character */
        size_t i = 0;
        int64_t done = 0;
        while (count < 0 || done < count) {
            tsr__jbuf_put(&b, nw->data, nw->len);
            done++;
            if (i >= s->len) break;
            size_t k = tsr__utf8_offset(s->data + i, s->len - i, 1);
            tsr__jbuf_put(&b, s->data + i, k);
            i += k;
        }
        if (i < s->len) tsr__jbuf_put(&b, s->data + i, s->len - i);
        return mkstr_buf(c, line, &b, out);
    }
    size_t i = 0, run = 0;
    int64_t done = 0;
    while (i + o->len <= s->len && (count < 0 || done < count)) {
        if (!memcmp(s->data + i, o->data, o->len)) {
            tsr__jbuf_put(&b, s->data + run, i - run);
            tsr__jbuf_put(&b, nw->data, nw->len);
            i += o->len;
            run = i;
            done++;
        } else {
            i++;
        }
    }
    tsr__jbuf_put(&b, s->data + run, s->len - run);
    return mkstr_buf(c, line, &b, out);
}

static tsr_status do_split(ctx *c, int line, const tsr__jstr *s, tsr__jv sep, int64_t maxsplit,
                           tsr__jv *out) {
    /* two passes: count, then fill */
    tsr__jv parts[2] = {{0}, {0}};
    for (int pass = 0; pass < 2; pass++) {
        size_t n = 0, i = 0;
        int64_t splits = 0;
        if (sep.type == TSR__JV_STRING) {
            const tsr__jstr *d = sep.u.s;
            if (d->len == 0) return fail(c, TSR_ERR_INVALID_ARG, line, "empty separator");
            size_t start = 0;
            while (i + d->len <= s->len && (maxsplit < 0 || splits < maxsplit)) {
                if (!memcmp(s->data + i, d->data, d->len)) {
                    if (pass) TRY(mkstr(c, line, s->data + start, i - start, &parts[1].u.l->items[n]));
                    n++;
                    splits++;
                    i += d->len;
                    start = i;
                } else {
                    i++;
                }
            }
            if (pass) TRY(mkstr(c, line, s->data + start, s->len - start, &parts[1].u.l->items[n]));
            n++;
        } else {
            size_t k;
            for (;;) {
                while (i < s->len && (k = tsr__py_space_at(s->data, s->len, i)) != 0) i += k;
                if (i >= s->len) break;
                size_t start = i;
                if (maxsplit >= 0 && splits >= maxsplit) {
                    size_t end = s->len;
                    while (end > start && (k = tsr__py_space_before(s->data, end)) != 0) end -= k;
                    if (pass) TRY(mkstr(c, line, s->data + start, end - start, &parts[1].u.l->items[n]));
                    n++;
                    break;
                }
                while (i < s->len && tsr__py_space_at(s->data, s->len, i) == 0) i++;
                if (pass) TRY(mkstr(c, line, s->data + start, i - start, &parts[1].u.l->items[n]));
                n++;
                splits++;
            }
        }
        if (!pass) TRY(mklist(c, line, n, &parts[1]));
    }
    *out = parts[1];
    return TSR_OK;
}

static tsr_status do_affix(ctx *c, int line, const tsr__jstr *s, tsr__jv x, int suffix, int *r) {
    if (x.type == TSR__JV_LIST && x.u.l->is_tuple) {
        *r = 0;
        for (size_t i = 0; i < x.u.l->n && !*r; i++) TRY(do_affix(c, line, s, x.u.l->items[i], suffix, r));
        return TSR_OK;
    }
    if (x.type != TSR__JV_STRING)
        return fail(c, TSR_ERR_INVALID_ARG, line, "%s first arg must be str or a tuple of str",
                    suffix ? "endswith" : "startswith");
    const tsr__jstr *a = x.u.s;
    *r = a->len <= s->len && !memcmp(s->data + (suffix ? s->len - a->len : 0), a->data, a->len);
    return TSR_OK;
}

static tsr_status join_values(ctx *c, int line, tsr__jv seq, tsr__jv sep, tsr__jv *out) {
    tsr__jv items;
    TRY(iterate(c, line, seq, &items));
    tsr__jbuf b = {.limit = c->lim.max_output};
    for (size_t i = 0; i < items.u.l->n; i++) {
        if (i) tsr__jv_write_str(&b, sep);
        tsr__jv_write_str(&b, items.u.l->items[i]);
    }
    return mkstr_buf(c, line, &b, out);
}

static tsr_status call_method(ctx *c, int line, const tsr__jcallable *fn, callargs *ca,
                              tsr__jv *out) {
    tsr__jv self = fn->self, a0 = tsr__jv_none(), a1 = tsr__jv_none();
    const char *m = fn->name;
    int has0 = arg(ca, 0, NULL, &a0), has1 = arg(ca, 1, NULL, &a1);
    if (self.type == TSR__JV_STRING) {
        const tsr__jstr *s = self.u.s;
        if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
            TRY(check_arity(c, line, m, ca, 1, NULL));
            return do_strip(c, line, s, a0, m[0] != 'r', m[0] != 'l', out);
        }
        if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
            TRY(check_arity(c, line, m, ca, 1, NULL));
            int r;
            if (!has0) return fail(c, TSR_ERR_INVALID_ARG, line, "%s expects an argument", m);
            TRY(do_affix(c, line, s, a0, m[0] == 'e', &r));
            *out = tsr__jv_bool(r);
            return TSR_OK;
        }
        if (!strcmp(m, "split")) {
            static const char *const kw[] = {"sep", "maxsplit", NULL};
            TRY(check_arity(c, line, m, ca, 2, kw));
            tsr__jv sep = tsr__jv_none(), mx = tsr__jv_int(-1);
            arg(ca, 0, "sep", &sep);
            arg(ca, 1, "maxsplit", &mx);
            if (!is_intlike(mx)) return fail(c, TSR_ERR_INVALID_ARG, line, "maxsplit must be int");
            if (sep.type != TSR__JV_STRING && sep.type != TSR__JV_NONE)
                return fail(c, TSR_ERR_INVALID_ARG, line, "split separator must be str or None");
            return do_split(c, line, s, sep, as_int(mx), out);
        }
        if (!strcmp(m, "upper") || !strcmp(m, "lower") || !strcmp(m, "title") ||
            !strcmp(m, "capitalize")) {
            TRY(check_arity(c, line, m, ca, 0, NULL));
            return do_case(c, line, s, m[0] == 'c' ? 'c' : m[0], out);
        }
        if (!strcmp(m, "replace")) {
            TRY(check_arity(c, line, m, ca, 3, NULL));
            tsr__jv cnt = tsr__jv_int(-1);
            arg(ca, 2, NULL, &cnt);
            if (!has0 || !has1 || !is_intlike(cnt))
                return fail(c, TSR_ERR_INVALID_ARG, line, "replace(old, new[, count])");
            return do_replace(c, line, s, a0, a1, as_int(cnt), out);
        }
        if (!strcmp(m, "join")) {
            TRY(check_arity(c, line, m, ca, 1, NULL));
            if (!has0) return fail(c, TSR_ERR_INVALID_ARG, line, "join expects an iterable");
            tsr__jv items;
            TRY(iterate(c, line, a0, &items));
            for (size_t i = 0; i < items.u.l->n; i++)
                if (items.u.l->items[i].type != TSR__JV_STRING)
                    return fail(c, TSR_ERR_INVALID_ARG, line,
                                "sequence item %zu: expected str instance, %s found", i,
                                tsr__jv_type_name(items.u.l->items[i]));
            return join_values(c, line, items, self, out);
        }
        return fail(c, TSR_ERR_UNSUPPORTED, line, "the string method '%s'", m);
    }
    if (self.type == TSR__JV_DICT) {
        const tsr__jdict *d = self.u.d;
        if (!strcmp(m, "get")) {
            TRY(check_arity(c, line, m, ca, 2, NULL));
            if (!has0) return fail(c, TSR_ERR_INVALID_ARG, line, "get expects a key");
            if (!tsr__jdict_get(d, a0, out)) *out = has1 ? a1 : tsr__jv_none();
            return TSR_OK;
        }
        int which = !strcmp(m, "items") ? 0 : !strcmp(m, "keys") ? 1 : !strcmp(m, "values") ? 2 : -1;
        if (which < 0) return fail(c, TSR_ERR_UNSUPPORTED, line, "the dict method '%s'", m);
        TRY(check_arity(c, line, m, ca, 0, NULL));
        TRY(mklist(c, line, d->n, out));
        for (size_t i = 0; i < d->n; i++) {
            if (which == 1) { out->u.l->items[i] = d->keys[i]; continue; }
            if (which == 2) { out->u.l->items[i] = d->vals[i]; continue; }
            tsr__jv pair;
            TRY(mklist(c, line, 2, &pair));
            pair.u.l->is_tuple = 1;
            pair.u.l->items[0] = d->keys[i];
            pair.u.l->items[1] = d->vals[i];
            out->u.l->items[i] = pair;
        }
        return TSR_OK;
    }
    return fail(c, TSR_ERR_UNSUPPORTED, line, "the %s method '%s'", tsr__jv_type_name(self), m);
}

/* ---- tests ------------------------------------------------------------------------------------- */

static const char *const TESTS[] = {
    "defined", "undefined", "none", "boolean", "true", "false", "integer", "float", "number",
    "string", "mapping", "iterable", "sequence", "callable", "odd", "even", "divisibleby",
    "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan",
    ">", "ge", ">=", "in", "lower", "upper", "sameas", NULL};

int tsr__jinja_test_known(const char *name) { return in_names(TESTS, name); }

static tsr_status apply_test(ctx *c, scope *s, int line, const char *name, tsr__jv v,
                             callargs *ca, int *out) {
    (void)s;
    tsr__jv x = tsr__jv_undef(NULL);
    int has = arg(ca, 0, NULL, &x);
    tsr__jv_type t = v.type;
    if (!strcmp(name, "defined")) *out = t != TSR__JV_UNDEFINED;
    else if (!strcmp(name, "undefined")) *out = t == TSR__JV_UNDEFINED;
    else if (!strcmp(name, "none")) *out = t == TSR__JV_NONE;
    else if (!strcmp(name, "boolean")) *out = t == TSR__JV_BOOL;
    else if (!strcmp(name, "true")) *out = t == TSR__JV_BOOL && v.u.b;
    else if (!strcmp(name, "false")) *out = t == TSR__JV_BOOL && !v.u.b;
    else if (!strcmp(name, "integer")) *out = t == TSR__JV_INT;
    else if (!strcmp(name, "float")) *out = t == TSR__JV_FLOAT;
    else if (!strcmp(name, "number")) *out = is_num(v);
    else if (!strcmp(name, "string")) *out = t == TSR__JV_STRING;
    else if (!strcmp(name, "mapping")) *out = t == TSR__JV_DICT && !v.u.d->is_namespace;
    else if (!strcmp(name, "iterable"))
        *out = t == TSR__JV_STRING || t == TSR__JV_LIST || t == TSR__JV_UNDEFINED ||
               (t == TSR__JV_DICT && !v.u.d->is_namespace);
    else if (!strcmp(name, "sequence"))
        *out = t == TSR__JV_STRING || t == TSR__JV_LIST || t == TSR__JV_UNDEFINED ||
               (t == TSR__JV_DICT && !v.u.d->is_namespace);
    else if (!strcmp(name, "callable")) *out = t == TSR__JV_CALLABLE;
    else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (t != TSR__JV_STRING) { *out = 0; return TSR_OK; }
        tsr__jv conv;
        TRY(do_case(c, line, v.u.s, name[0], &conv));
        *out = tsr__jv_equal(conv, v);
    } else if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        int64_t d = name[0] == 'd' ? 0 : 2;
        if (name[0] == 'd') {
            if (!has || !is_intlike(x)) return fail(c, TSR_ERR_INVALID_ARG, line, "divisibleby needs an integer");
            d = as_int(x);
            if (d == 0) return fail(c, TSR_ERR_INVALID_ARG, line, "divisibleby 0");
        }
        if (!is_intlike(v)) return fail(c, TSR_ERR_INVALID_ARG, line, "'%s' test needs an integer", name);
        int64_t r = d == -1 ? 0 : as_int(v) % d;
        *out = name[0] == 'o' ? r != 0 : r == 0;
    } else if (!strcmp(name, "in")) {
        TRY(contains(c, line, v, x, out));
    } else if (!strcmp(name, "sameas")) {
        *out = v.type == x.type && (tsr__jv_equal(v, x) &&
               (v.type == TSR__JV_NONE || v.type == TSR__JV_BOOL || v.type == TSR__JV_UNDEFINED));
    } else {
        int op = !strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==") ? JOP_EQ
               : !strcmp(name, "ne") || !strcmp(name, "!=") ? JOP_NE
               : !strcmp(name, "lt") || !strcmp(name, "lessthan") || !strcmp(name, "<") ? JOP_LT
               : !strcmp(name, "le") || !strcmp(name, "<=") ? JOP_LE
               : !strcmp(name, "gt") || !strcmp(name, "greaterthan") || !strcmp(name, ">") ? JOP_GT
               : !strcmp(name, "ge") || !strcmp(name, ">=") ? JOP_GE : 0;
        if (!op) return fail(c, TSR_ERR_UNSUPPORTED, line, "the test '%s'", name);
        tsr__jv r;
        TRY(binop(c, line, op, v, x, &r));
        *out = r.u.b;
    }
    return TSR_OK;
}

/* ---- filters ------------------------------------------------------------------------------------ */

static const char *const FILTERS[] = {
    "trim", "length", "count", "tojson", "string", "upper", "lower", "capitalize", "title",
    "items", "default", "d", "join", "first", "last", "list", "reverse", "selectattr",
    "rejectattr", "select", "reject", "map", "int", "float", "abs", "replace", "safe", NULL};

int tsr__jinja_filter_known(const char *name) { return in_names(FILTERS, name); }

/* environment.getattr for filters: attribute first, then item (dotted paths allowed). */
static tsr_status attr_path(ctx *c, int line, tsr__jv v, const tsr__jstr *path, tsr__jv *out) {
    size_t start = 0;
    *out = v;
    while (start <= path->len) {
        const char *dot = memchr(path->data + start, '.', path->len - start);
        size_t end = dot ? (size_t)(dot - path->data) : path->len;
        tsr__jv key;
        TRY(mkstr(c, line, path->data + start, end - start, &key));
        if (out->type == TSR__JV_UNDEFINED) return TSR_OK;
        int digits = end > start;
        for (size_t i = start; i < end; i++) digits &= path->data[i] >= '0' && path->data[i] <= '9';
        if (digits) key = tsr__jv_int(strtoll(key.u.s->data, NULL, 10));
        if (out->type == TSR__JV_DICT && !out->u.d->is_namespace && key.type == TSR__JV_STRING &&
            !in_names(DICT_METHODS, key.u.s->data)) {
            if (!tsr__jdict_get(out->u.d, key, out)) *out = tsr__jv_undef(NULL);
        } else {
            TRY(get_item(c, line, *out, key, out));
        }
        if (!dot) break;
        start = end + 1;
    }
    return TSR_OK;
}

static tsr_status filter_select(ctx *c, scope *s, int line, const char *name, tsr__jv v,
                                callargs *ca, tsr__jv *out) {
    int by_attr = strstr(name, "attr") != NULL, reject = name[0] == 'r';
    size_t first_test = by_attr ? 1 : 0;
    tsr__jv attr = tsr__jv_none(), testname = tsr__jv_none();
    if (by_attr && (!arg(ca, 0, NULL, &attr) || attr.type != TSR__JV_STRING))
        return fail(c, TSR_ERR_INVALID_ARG, line, "%s needs an attribute name", name);
    if (ca->nkw) return fail(c, TSR_ERR_UNSUPPORTED, line, "%s with keyword arguments", name);
    int has_test = arg(ca, first_test, NULL, &testname);
    if (has_test && testname.type != TSR__JV_STRING)
        return fail(c, TSR_ERR_INVALID_ARG, line, "%s test name must be a string", name);
    if (has_test && !tsr__jinja_test_known(testname.u.s->data))
        return fail(c, TSR_ERR_UNSUPPORTED, line, "the test '%s'", testname.u.s->data);
    callargs targs = {ca->pos + (ca->n > first_test + 1 ? first_test + 1 : ca->n),
                      ca->n > first_test + 1 ? ca->n - first_test - 1 : 0, NULL, NULL, 0};
    tsr__jv items, res;
    TRY(iterate(c, line, v, &items));
    TRY(mklist(c, line, items.u.l->n, &res));
    size_t k = 0;
    for (size_t i = 0; i < items.u.l->n; i++) {
        tsr__jv x = items.u.l->items[i];
        int ok;
        TRY(step(c, line));
        if (by_attr) TRY(attr_path(c, line, x, attr.u.s, &x));
        if (has_test) TRY(apply_test(c, s, line, testname.u.s->data, x, &targs, &ok));
        else ok = tsr__jv_truthy(x);
        if (ok != reject) res.u.l->items[k++] = items.u.l->items[i];
    }
    res.u.l->n = k;
    *out = res;
    return TSR_OK;
}

static tsr_status apply_filter(ctx *c, scope *s, int line, const char *name, tsr__jv v,
                               callargs *ca, tsr__jv *out) {
    tsr__jv a0 = tsr__jv_none();
    int has0 = arg(ca, 0, NULL, &a0);
    TRY(step(c, line));
    if (!strcmp(name, "safe")) { *out = v; return TSR_OK; }
    if (!strcmp(name, "string")) return to_str(c, line, v, out);
    if (!strcmp(name, "trim")) {
        static const char *const kw[] = {"chars", NULL};
        TRY(check_arity(c, line, name, ca, 1, kw));
        tsr__jv sv, chars = tsr__jv_none();
        arg(ca, 0, "chars", &chars);
        TRY(to_str(c, line, v, &sv));
        return do_strip(c, line, sv.u.s, chars, 1, 1, out);
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "capitalize") ||
        !strcmp(name, "title")) {
        tsr__jv sv;
        TRY(to_str(c, line, v, &sv));
        return do_case(c, line, sv.u.s, name[0], out);
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        switch (v.type) {
        case TSR__JV_STRING: *out = tsr__jv_int((int64_t)tsr__utf8_count(v.u.s->data, v.u.s->len)); break;
        case TSR__JV_LIST: *out = tsr__jv_int((int64_t)v.u.l->n); break;
        case TSR__JV_DICT: *out = tsr__jv_int((int64_t)v.u.d->n); break;
        case TSR__JV_UNDEFINED: *out = tsr__jv_int(0); break;
        default:
            return fail(c, TSR_ERR_INVALID_ARG, line, "object of type '%s' has no len()",
                        tsr__jv_type_name(v));
        }
        return TSR_OK;
    }
    if (!strcmp(name, "tojson")) {
        static const char *const kw[] = {"indent", "ensure_ascii", "sort_keys", "separators", NULL};
        TRY(check_arity(c, line, name, ca, 0, kw));
        tsr__jv indent = tsr__jv_none(), ea = tsr__jv_bool(0), sk = tsr__jv_bool(0), sep = tsr__jv_none();
        arg(ca, 99, "indent", &indent);
        arg(ca, 99, "ensure_ascii", &ea);
        arg(ca, 99, "sort_keys", &sk);
        arg(ca, 99, "separators", &sep);
        if (tsr__jv_truthy(ea) || sep.type != TSR__JV_NONE)
            return fail(c, TSR_ERR_UNSUPPORTED, line, "tojson with ensure_ascii or separators");
        if (indent.type != TSR__JV_NONE && (!is_intlike(indent) || as_int(indent) < 0 || as_int(indent) > 64))
            return fail(c, TSR_ERR_UNSUPPORTED, line, "tojson indent other than 0..64");
        tsr__jbuf b = {.limit = c->lim.max_output};
        if (!tsr__jv_write_json(&b, v, indent.type == TSR__JV_NONE ? -1 : (int)as_int(indent),
                                tsr__jv_truthy(sk), 0)) {
            tsr__jbuf_free(&b);
            return fail(c, TSR_ERR_INVALID_ARG, line, "object of type %s is not JSON serializable",
                        tsr__jv_type_name(v));
        }
        return mkstr_buf(c, line, &b, out);
    }
    if (!strcmp(name, "items")) {
        if (v.type == TSR__JV_UNDEFINED) return mklist(c, line, 0, out);
        if (v.type != TSR__JV_DICT || v.u.d->is_namespace)
            return fail(c, TSR_ERR_INVALID_ARG, line, "items filter needs a mapping, got %s",
                        tsr__jv_type_name(v));
        tsr__jcallable fn = {.kind = CALL_METHOD, .name = "items", .self = v};
        callargs none = {0};
        return call_method(c, line, &fn, &none, out);
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        static const char *const kw[] = {"default_value", "boolean", NULL};
        TRY(check_arity(c, line, name, ca, 2, kw));
        tsr__jv def, boolean = tsr__jv_bool(0);
        if (!arg(ca, 0, "default_value", &def)) TRY(mkstr(c, line, "", 0, &def));
        arg(ca, 1, "boolean", &boolean);
        int use_default = v.type == TSR__JV_UNDEFINED || (tsr__jv_truthy(boolean) && !tsr__jv_truthy(v));
        *out = use_default ? def : v;
        return TSR_OK;
    }
    if (!strcmp(name, "join")) {
        static const char *const kw[] = {"d", "attribute", NULL};
        TRY(check_arity(c, line, name, ca, 2, kw));
        tsr__jv sep, attr;
        if (!arg(ca, 0, "d", &sep)) TRY(mkstr(c, line, "", 0, &sep));
        tsr__jv items;
        TRY(iterate(c, line, v, &items));
        if (arg(ca, 1, "attribute", &attr)) {
            if (attr.type != TSR__JV_STRING) return fail(c, TSR_ERR_INVALID_ARG, line, "join attribute must be a string");
            tsr__jv mapped;
            TRY(mklist(c, line, items.u.l->n, &mapped));
            for (size_t i = 0; i < items.u.l->n; i++)
                TRY(attr_path(c, line, items.u.l->items[i], attr.u.s, &mapped.u.l->items[i]));
            items = mapped;
        }
        return join_values(c, line, items, sep, out);
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        tsr__jv items;
        TRY(iterate(c, line, v, &items));
        if (!items.u.l->n) *out = tsr__jv_undef(NULL);
        else *out = items.u.l->items[name[0] == 'f' ? 0 : items.u.l->n - 1];
        return TSR_OK;
    }
    if (!strcmp(name, "list")) {
        tsr__jv items;
        TRY(iterate(c, line, v, &items));
        TRY(mklist(c, line, items.u.l->n, out));
        for (size_t i = 0; i < items.u.l->n; i++) out->u.l->items[i] = items.u.l->items[i];
        return TSR_OK;
    }
    if (!strcmp(name, "reverse")) {
        if (v.type == TSR__JV_STRING) {
            tsr__jv step = tsr__jv_int(-1);
            return do_slice(c, line, v, NULL, NULL, &step, out);
        }
        tsr__jv items;
        TRY(iterate(c, line, v, &items));
        TRY(mklist(c, line, items.u.l->n, out));
        for (size_t i = 0; i < items.u.l->n; i++)
            out->u.l->items[i] = items.u.l->items[items.u.l->n - 1 - i];
        return TSR_OK;
    }
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr") || !strcmp(name, "select") ||
        !strcmp(name, "reject"))
        return filter_select(c, s, line, name, v, ca, out);
    if (!strcmp(name, "map")) {
        tsr__jv attr, def = tsr__jv_undef(NULL);
        int has_def = arg(ca, 99, "default", &def);
        if (ca->n || !arg(ca, 99, "attribute", &attr) || attr.type != TSR__JV_STRING)
            return fail(c, TSR_ERR_UNSUPPORTED, line, "map other than map(attribute='...')");
        tsr__jv items;
        TRY(iterate(c, line, v, &items));
        TRY(mklist(c, line, items.u.l->n, out));
        for (size_t i = 0; i < items.u.l->n; i++) {
            tsr__jv x;
            TRY(attr_path(c, line, items.u.l->items[i], attr.u.s, &x));
            out->u.l->items[i] = x.type == TSR__JV_UNDEFINED && has_def ? def : x;
        }
        return TSR_OK;
    }
    if (!strcmp(name, "int") || !strcmp(name, "float")) {
        int to_int = name[0] == 'i';
        tsr__jv def = to_int ? tsr__jv_int(0) : tsr__jv_float(0.0);
        if (has0) def = a0;
        if (is_num(v)) {
            if (to_int) {
                double f = as_dbl(v);
                if (v.type == TSR__JV_FLOAT && !(fabs(f) < 9.2e18)) { *out = def; return TSR_OK; }
                *out = tsr__jv_int(is_intlike(v) ? as_int(v) : (int64_t)f);
            } else {
                *out = tsr__jv_float(as_dbl(v));
            }
            return TSR_OK;
        }
        if (v.type == TSR__JV_STRING) {
            char *end;
            const char *str = v.u.s->data;
            if (to_int) {
                long long r = strtoll(str, &end, 10);
                while (*end == ' ') end++;
                *out = end != str && !*end ? tsr__jv_int(r) : def;
            } else {
                double r = strtod(str, &end);
                while (*end == ' ') end++;
                *out = end != str && !*end ? tsr__jv_float(r) : def;
            }
            return TSR_OK;
        }
        *out = def;
        return TSR_OK;
    }
    if (!strcmp(name, "abs")) {
        if (v.type == TSR__JV_FLOAT) { *out = tsr__jv_float(fabs(v.u.f)); return TSR_OK; }
        if (is_intlike(v) && as_int(v) != INT64_MIN) {
            *out = tsr__jv_int(as_int(v) < 0 ? -as_int(v) : as_int(v));
            return TSR_OK;
        }
        return fail(c, TSR_ERR_INVALID_ARG, line, "bad operand type for abs(): '%s'", tsr__jv_type_name(v));
    }
    if (!strcmp(name, "replace")) {
        tsr__jv sv, a1 = tsr__jv_none(), cnt = tsr__jv_int(-1);
        TRY(check_arity(c, line, name, ca, 3, NULL));
        arg(ca, 1, NULL, &a1);
        arg(ca, 2, NULL, &cnt);
        TRY(to_str(c, line, v, &sv));
        if (!is_intlike(cnt)) return fail(c, TSR_ERR_INVALID_ARG, line, "replace count must be int");
        tsr__jv o, n;
        TRY(to_str(c, line, a0, &o));
        TRY(to_str(c, line, a1, &n));
        return do_replace(c, line, sv.u.s, o, n, as_int(cnt), out);
    }
    return fail(c, TSR_ERR_UNSUPPORTED, line, "the filter '%s'", name);
}

/* ---- statements ---------------------------------------------------------------------------------- */

static tsr_status emit(ctx *c, int line, tsr__jv v) {
    tsr__jv_write_str(c->out, v);
    if (c->out->failed == 2)
        return fail(c, TSR_ERR_LIMIT, line, "output longer than %zu bytes", c->lim.max_output);
    if (c->out->failed) return fail(c, TSR_ERR_OOM, line, "out of memory for the output");
    return TSR_OK;
}

static tsr_status assign(ctx *c, int line, scope *s, const char *const *names, size_t n,
                         tsr__jv v) {
    if (n == 1) return scope_set(c, line, s, names[0], v);
    if (v.type != TSR__JV_LIST) {
        tsr__jv items;
        TRY(iterate(c, line, v, &items));
        v = items;
    }
    if (v.u.l->n != n)
        return fail(c, TSR_ERR_INVALID_ARG, line, "cannot unpack %zu values into %zu names",
                    v.u.l->n, n);
    for (size_t i = 0; i < n; i++) TRY(scope_set(c, line, s, names[i], v.u.l->items[i]));
    return TSR_OK;
}

static tsr_status exec_for(ctx *c, scope *s, const jnode *nd) {
    tsr__jv seq, items;
    TRY(eval(c, s, nd->a, &seq));
    if (seq.type == TSR__JV_NONE || (seq.type == TSR__JV_DICT && seq.u.d->is_namespace) ||
        is_num(seq) || seq.type == TSR__JV_CALLABLE || seq.type == TSR__JV_LOOP)
        return fail(c, TSR_ERR_INVALID_ARG, nd->line, "'%s' object is not iterable",
                    tsr__jv_type_name(seq));
    TRY(iterate(c, nd->line, seq, &items));
    const tsr__jlist *l = items.u.l;
    if (nd->b) { /* {% for x in xs if cond %}: filter first; loop.length counts what is left */
        tsr__jv kept = {0};
        TRY(mklist(c, nd->line, l->n, &kept));
        size_t k = 0;
        for (size_t i = 0; i < l->n; i++) {
            scope *fs = NULL;
            tsr__jv ok;
            TRY(step(c, nd->line));
            TRY(new_scope(c, nd->line, s, &fs));
            TRY(assign(c, nd->line, fs, nd->names, nd->n_names, l->items[i]));
            TRY(eval(c, fs, nd->b, &ok));
            if (tsr__jv_truthy(ok)) kept.u.l->items[k++] = l->items[i];
        }
        kept.u.l->n = k;
        l = kept.u.l;
    }
    if (l->n == 0) return exec_body(c, s, nd->items2, nd->n_items2);
    tsr__jloop *lp = tsr__arena_alloc(&c->arena, sizeof *lp);
    if (!lp) return mem_fail(c, nd->line);
    lp->length = (int64_t)l->n;
    tsr__jv loopv = {.type = TSR__JV_LOOP};
    loopv.u.loop = lp;
    for (size_t i = 0; i < l->n; i++) {
        TRY(step(c, nd->line));
        lp->index0 = (int64_t)i;
        lp->has_prev = i > 0;
        lp->has_next = i + 1 < l->n;
        if (i > 0) lp->prev = l->items[i - 1];
        if (i + 1 < l->n) lp->next = l->items[i + 1];
        scope *is = NULL;
        TRY(new_scope(c, nd->line, s, &is));
        TRY(assign(c, nd->line, is, nd->names, nd->n_names, l->items[i]));
        TRY(scope_set(c, nd->line, is, "loop", loopv));
        TRY(exec_body(c, is, nd->items, nd->n_items));
        if (c->flow == 1) { c->flow = 0; break; }
        c->flow = 0;
    }
    return TSR_OK;
}

static tsr_status exec_node(ctx *c, scope *s, const jnode *nd) {
    tsr__jv v;
    switch (nd->kind) {
    case JN_TEXT:
        TRY(step(c, nd->line));
        return emit(c, nd->line, nd->lit);
    case JN_OUTPUT:
        TRY(step(c, nd->line));
        TRY(eval(c, s, nd->a, &v));
        return emit(c, nd->line, v);
    case JN_IF:
        TRY(eval(c, s, nd->a, &v));
        if (tsr__jv_truthy(v)) return exec_body(c, s, nd->items, nd->n_items);
        return exec_body(c, s, nd->items2, nd->n_items2);
    case JN_FOR: return exec_for(c, s, nd);
    case JN_SET:
        TRY(eval(c, s, nd->a, &v));
        return assign(c, nd->line, s, nd->names, nd->n_names, v);
    case JN_SET_ATTR: {
        tsr__jv ns, key;
        TRY(lookup(c, nd->line, s, nd->name, &ns));
        if (ns.type != TSR__JV_DICT || !ns.u.d->is_namespace)
            return fail(c, TSR_ERR_INVALID_ARG, nd->line,
                        "cannot assign attribute on non-namespace object '%s'", nd->name);
        if (nd->names[0][0] == '_')
            return fail(c, TSR_ERR_INVALID_ARG, nd->line,
                        "namespaces cannot store underscore-prefixed attributes ('%s')", nd->names[0]);
        TRY(eval(c, s, nd->a, &v));
        TRY(mkstr(c, nd->line, nd->names[0], strlen(nd->names[0]), &key));
        if (!tsr__jdict_set(&c->arena, ns.u.d, key, v)) return mem_fail(c, nd->line);
        return TSR_OK;
    }
    case JN_SET_BLOCK: {
        tsr__jbuf buf = {.limit = c->lim.max_output}, *saved = c->out;
        c->out = &buf;
        tsr_status st = exec_body(c, s, nd->items, nd->n_items);
        c->out = saved;
        if (st != TSR_OK) { tsr__jbuf_free(&buf); return st; }
        TRY(mkstr_buf(c, nd->line, &buf, &v));
        return scope_set(c, nd->line, s, nd->names[0], v);
    }
    case JN_MACRO:
        TRY(new_callable(c, nd->line, CALL_MACRO, 0, nd->name, tsr__jv_none(), nd, &v));
        return scope_set(c, nd->line, s, nd->name, v);
    case JN_BREAK: c->flow = 1; return TSR_OK;
    case JN_CONTINUE: c->flow = 2; return TSR_OK;
    case JN_GENERATION: return exec_body(c, s, nd->items, nd->n_items);
    default: return fail(c, TSR_ERR_INTERNAL, nd->line, "expression node as a statement");
    }
}

static tsr_status exec_body(ctx *c, scope *s, jnode *const *body, size_t n) {
    if (++c->depth > c->lim.max_depth * 4) {
        c->depth--;
        return fail(c, TSR_ERR_LIMIT, n ? body[0]->line : 0, "statements nested too deep");
    }
    for (size_t i = 0; i < n && !c->flow; i++) {
        tsr_status st = exec_node(c, s, body[i]);
        if (st != TSR_OK) { c->depth--; return st; }
    }
    c->depth--;
    return TSR_OK;
}

/* ---- entry point --------------------------------------------------------------------------------- */

tsr__jinja_limits tsr__jinja_limits_default(void) {
    tsr__jinja_limits l = {.max_output = 16u << 20, .max_memory = 256u << 20,
                           .max_steps = 10000000, .max_depth = 64};
    return l;
}

tsr_status tsr__jinja_render(const tsr__jinja_template *t, const cJSON *vars,
                             const tsr__jinja_render_opts *opts, char **out, size_t *out_len,
                             tsr_error *err) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || !out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "template or out is NULL");
    if (vars && !cJSON_IsObject(vars))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "template variables must be a JSON object");
    ctx c = {.err = err, .status = TSR_OK};
    c.lim = opts ? opts->limits : tsr__jinja_limits_default();
    if (c.lim.max_depth <= 0 || c.lim.max_depth > 1024) c.lim.max_depth = 64;
    if (c.lim.max_steps <= 0) c.lim.max_steps = tsr__jinja_limits_default().max_steps;
    if (!c.lim.max_output) c.lim.max_output = tsr__jinja_limits_default().max_output;
    if (!c.lim.max_memory) c.lim.max_memory = tsr__jinja_limits_default().max_memory;
    c.now_unix = opts ? opts->now_unix : 0;
    c.arena.limit = c.lim.max_memory;
    tsr__jbuf buf = {.limit = c.lim.max_output};
    c.out = &buf;
    tsr_status st = new_scope(&c, 0, NULL, &c.top);
    for (const cJSON *v = vars ? vars->child : NULL; v && st == TSR_OK; v = v->next) {
        tsr__jv val;
        if (!v->string) continue;
        if (!tsr__jv_from_cjson(&c.arena, v, &val, 0)) {
            st = c.arena.hit_limit ? mem_fail(&c, 0)
                                   : fail(&c, TSR_ERR_INVALID_ARG, 0,
                                          "variable '%s' cannot be converted (nesting deeper than 64?)",
                                          v->string);
            break;
        }
        st = scope_set(&c, 0, c.top, v->string, val);
    }
    if (st == TSR_OK) st = exec_body(&c, c.top, t->body, t->n_body);
    if (st == TSR_OK && buf.failed) st = emit(&c, 0, tsr__jv_undef(NULL));
    tsr__arena_free(&c.arena);
    if (st != TSR_OK) {
        tsr__jbuf_free(&buf);
        return st;
    }
    if (!buf.data) {
        buf.data = tsr__malloc(1);
        if (!buf.data) return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate the output");
        buf.data[0] = 0;
    }
    *out = buf.data;
    if (out_len) *out_len = buf.len;
    return TSR_OK;
}
