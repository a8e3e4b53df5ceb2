/*
 * jinja.h - a small, strict Jinja2 interpreter for chat templates (internal).
 *
 * It renders what transformers' apply_chat_template renders: jinja2's sandboxed environment
 * with trim_blocks and lstrip_blocks on, the loopcontrols extension, the {% generation %}
 * tag, and the globals raise_exception, strftime_now and namespace. Constructs outside that
 * subset fail with TSR_ERR_UNSUPPORTED naming the construct; syntax errors are
 * TSR_ERR_FORMAT; errors the template raises while rendering (raise_exception, a type error,
 * an undefined value used as an object) are TSR_ERR_INVALID_ARG, since the input messages
 * are what differ between renders. Every loop, nesting level and byte of output is bounded.
 */
#ifndef TSR_JINJA_H
#define TSR_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "tessera_internal.h"

/* ---- values (jinja_value.c) ------------------------------------------------------------ */

typedef enum tsr__jv_type {
    TSR__JV_UNDEFINED = 0,
    TSR__JV_NONE,
    TSR__JV_BOOL,
    TSR__JV_INT,
    TSR__JV_FLOAT,
    TSR__JV_STRING,
    TSR__JV_LIST,     /* also tuples (is_tuple) */
    TSR__JV_DICT,     /* insertion-ordered; also namespaces (is_namespace, mutable) */
    TSR__JV_LOOP,     /* the `loop` object of a for loop */
    TSR__JV_CALLABLE  /* builtin function, bound method or macro */
} tsr__jv_type;

typedef struct tsr__jstr { size_t len; char data[]; } tsr__jstr; /* NUL-terminated */
typedef struct tsr__jlist tsr__jlist;
typedef struct tsr__jdict tsr__jdict;
typedef struct tsr__jloop tsr__jloop;
typedef struct tsr__jcallable tsr__jcallable;

typedef struct tsr__jv {
    tsr__jv_type type;
    union {
        int b;
        int64_t i;
        double f;
        const tsr__jstr *s;
        const char *undef_name; /* UNDEFINED: the name that was looked up, or NULL */
        tsr__jlist *l;
        tsr__jdict *d;
        tsr__jloop *loop;
        tsr__jcallable *fn;
    } u;
} tsr__jv;

struct tsr__jlist { size_t n; int is_tuple; tsr__jv items[]; };
struct tsr__jdict {
    size_t n, cap;
    int is_namespace;
    tsr__jv *keys, *vals;
};
struct tsr__jloop {
    int64_t index0, length;
    tsr__jv prev, next;
    int has_prev, has_next;
};

/* Bump allocator; every block comes from tsr__malloc and the total is capped. */
typedef struct tsr__arena_block tsr__arena_block;
typedef struct tsr__arena {
    tsr__arena_block *head;
    size_t used_total, limit;
    int hit_limit; /* set when an allocation failed because of limit */
} tsr__arena;

void *tsr__arena_alloc(tsr__arena *a, size_t n); /* 16-byte aligned; NULL on OOM or limit */
void tsr__arena_free(tsr__arena *a);

/* Output / scratch string builder. */
typedef struct tsr__jbuf {
    char *data;
    size_t len, cap, limit; /* limit 0: none */
    int failed;             /* 1: OOM, 2: over limit */
} tsr__jbuf;

void tsr__jbuf_put(tsr__jbuf *b, const char *s, size_t n);
void tsr__jbuf_puts(tsr__jbuf *b, const char *s);
void tsr__jbuf_free(tsr__jbuf *b);

static inline tsr__jv tsr__jv_none(void) { tsr__jv v = {.type = TSR__JV_NONE}; return v; }
static inline tsr__jv tsr__jv_undef(const char *name) {
    tsr__jv v = {.type = TSR__JV_UNDEFINED};
    v.u.undef_name = name;
    return v;
}
static inline tsr__jv tsr__jv_bool(int b) { tsr__jv v = {.type = TSR__JV_BOOL}; v.u.b = !!b; return v; }
static inline tsr__jv tsr__jv_int(int64_t i) { tsr__jv v = {.type = TSR__JV_INT}; v.u.i = i; return v; }
static inline tsr__jv tsr__jv_float(double f) { tsr__jv v = {.type = TSR__JV_FLOAT}; v.u.f = f; return v; }

/* NULL on OOM/limit. */
const tsr__jstr *tsr__jstr_new(tsr__arena *a, const char *s, size_t n);
tsr__jlist *tsr__jlist_new(tsr__arena *a, size_t n);
tsr__jdict *tsr__jdict_new(tsr__arena *a, size_t cap);
/* Sets key (a string) to val, replacing an existing key; 0 on OOM/limit. */
int tsr__jdict_set(tsr__arena *a, tsr__jdict *d, tsr__jv key, tsr__jv val);
/* Looks a key up; returns 1 and *out when present. */
int tsr__jdict_get(const tsr__jdict *d, tsr__jv key, tsr__jv *out);
int tsr__jdict_get_str(const tsr__jdict *d, const char *key, tsr__jv *out);

/* Python semantics. */
int tsr__jv_truthy(tsr__jv v);
int tsr__jv_equal(tsr__jv a, tsr__jv b);
const char *tsr__jv_type_name(tsr__jv v); /* "str", "int", "list", ... as Python says */
/* str(v) and repr(v) appended to b (strings, lists and dicts as Python prints them). */
void tsr__jv_write_str(tsr__jbuf *b, tsr__jv v);
void tsr__jv_write_repr(tsr__jbuf *b, tsr__jv v);
/* json.dumps(v, ensure_ascii=False, indent=indent (<0: None), separators default,
 * sort_keys). Returns 0 (and writes nothing sensible) for values JSON cannot hold. */
int tsr__jv_write_json(tsr__jbuf *b, tsr__jv v, int indent, int sort_keys, int depth);
/* repr(float) as Python writes it (shortest round-trip, "1.0", "1e-05", "inf"). */
void tsr__py_float_repr(char *out, size_t cap, double f);

/* cJSON -> value (objects become dicts in document order). depth bounded; 0 on failure. */
int tsr__jv_from_cjson(tsr__arena *a, const cJSON *j, tsr__jv *out, int depth);

/* UTF-8 helpers with Python's notion of a character (code point) and of whitespace. */
size_t tsr__utf8_count(const char *s, size_t n);     /* code points; invalid bytes count 1 */
size_t tsr__utf8_offset(const char *s, size_t n, size_t cp_index); /* byte offset */
size_t tsr__py_space_at(const char *s, size_t n, size_t pos);      /* length of space or 0 */
size_t tsr__py_space_before(const char *s, size_t end);             /* length of space or 0 */

/* ---- templates (jinja_parse.c / jinja_eval.c) ---------------------------------------------- */

typedef struct tsr__jinja_template tsr__jinja_template;

typedef struct tsr__jinja_limits {
    size_t max_output;     /* bytes of rendered text; default 16 MiB */
    size_t max_memory;     /* bytes of values created while rendering; default 256 MiB */
    int64_t max_steps;     /* loop iterations + calls + output statements; default 10M */
    int max_depth;         /* nesting of statements/expressions and macro calls; default 64 */
} tsr__jinja_limits;

tsr__jinja_limits tsr__jinja_limits_default(void);

/* Whether a filter / test name is implemented (the parser refuses the others). */
int tsr__jinja_filter_known(const char *name);
int tsr__jinja_test_known(const char *name);

/* Parses template source (UTF-8, any length up to the memory limit). */
tsr_status tsr__jinja_parse(const char *src, size_t len, tsr__jinja_template **out,
                            tsr_error *err);
void tsr__jinja_free(tsr__jinja_template *t);

typedef struct tsr__jinja_render_opts {
    tsr__jinja_limits limits;
    int64_t now_unix; /* time strftime_now() formats (local time zone); 0: the current time */
} tsr__jinja_render_opts;

/* Renders with the top-level variables of `vars` (a JSON object; may be NULL). *out is
 * NUL-terminated, released with tsr__free. opts may be NULL (defaults). */
tsr_status tsr__jinja_render(const tsr__jinja_template *t, const cJSON *vars,
                             const tsr__jinja_render_opts *opts, char **out, size_t *out_len,
                             tsr_error *err);

#endif /* TSR_JINJA_H */
