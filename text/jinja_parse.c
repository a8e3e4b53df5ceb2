/* Jinja lexer and parser: template source -> syntax tree. Whitespace handling follows
 * jinja2's lexer with trim_blocks=True and lstrip_blocks=True, as transformers configures it. */
#include "jinja_ast.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARSE_DEPTH 96
#define MAX_SOURCE (8u << 20) /* template source bytes */

enum { T_EOF, T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING,
       T_INT, T_FLOAT, T_OP };

typedef struct token {
    int type;
    int line;
    const char *s; /* into the normalized source (names, operators) */
    size_t len;
    tsr__jv val;   /* TEXT, STRING, INT, FLOAT */
} token;

typedef struct parser {
    tsr__arena *arena;
    tsr_error *err;
    tsr_status status;
    const char *src; /* normalized source */
    size_t len;
    token *toks;
    size_t n_toks, cap_toks, pos;
    int depth;
} parser;

#define FAILP(p, st, ...) (parser_fail((p), (st), __VA_ARGS__), (void *)0)

static void parser_fail(parser *p, tsr_status st, const char *fmt, ...) TSR__PRINTF(3, 4);
static void parser_fail(parser *p, tsr_status st, const char *fmt, ...) {
    if (p->status != TSR_OK) return;
    p->status = st;
    char msg[TSR_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tsr__fail(p->err, st, "chat template: %s", msg);
}

static void oom(parser *p) { parser_fail(p, TSR_ERR_OOM, "out of memory while parsing"); }

static const char *arena_strndup(parser *p, const char *s, size_t n) {
    const tsr__jstr *str = tsr__jstr_new(p->arena, s, n);
    if (!str) { oom(p); return NULL; }
    return str->data;
}

/* ---- lexer ------------------------------------------------------------------------------ */

static token *push_token(parser *p, int type, int line, const char *s, size_t len) {
    if (p->n_toks == p->cap_toks) {
        size_t cap = p->cap_toks ? p->cap_toks * 2 : 256, bytes;
        if (!tsr__mul_size(cap, sizeof(token), &bytes)) { oom(p); return NULL; }
        token *t = tsr__realloc(p->toks, bytes);
        if (!t) { oom(p); return NULL; }
        p->toks = t;
        p->cap_toks = cap;
    }
    token *t = &p->toks[p->n_toks++];
    t->type = type;
    t->line = line;
    t->s = s;
    t->len = len;
    t->val = tsr__jv_none();
    return t;
}

static int count_lines(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += s[i] == '\n';
    return c;
}

static int is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_name_char(char c) { return is_name_start(c) || is_digit(c); }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void put_utf8(tsr__jbuf *b, uint32_t cp) {
    char o[4];
    size_t n;
    if (cp < 0x80) { o[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
    else if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f)); n = 3;
    } else {
        o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f)); n = 4;
    }
    tsr__jbuf_put(b, o, n);
}

/* Decodes a string literal body as Python's "unicode-escape" codec does. */
static int decode_string(parser *p, const char *s, size_t n, int line, tsr__jv *out) {
    tsr__jbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) { tsr__jbuf_put(&b, s + i, 1); continue; }
        char c = s[++i];
        switch (c) {
        case '\n': break;
        case '\\': tsr__jbuf_put(&b, "\\", 1); break;
        case '\'': tsr__jbuf_put(&b, "'", 1); break;
        case '"': tsr__jbuf_put(&b, "\"", 1); break;
        case 'a': tsr__jbuf_put(&b, "\a", 1); break;
        case 'b': tsr__jbuf_put(&b, "\b", 1); break;
        case 'f': tsr__jbuf_put(&b, "\f", 1); break;
        case 'n': tsr__jbuf_put(&b, "\n", 1); break;
        case 'r': tsr__jbuf_put(&b, "\r", 1); break;
        case 't': tsr__jbuf_put(&b, "\t", 1); break;
        case 'v': tsr__jbuf_put(&b, "\v", 1); break;
        case 'x': case 'u': case 'U': {
            size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (size_t k = 0; k < digits; k++) {
                int h = i + 1 + k < n ? hexval(s[i + 1 + k]) : -1;
                if (h < 0) {
                    tsr__jbuf_free(&b);
                    parser_fail(p, TSR_ERR_FORMAT, "line %d: truncated \\%c escape in a string",
                                line, c);
                    return 0;
                }
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
                tsr__jbuf_free(&b);
                parser_fail(p, TSR_ERR_FORMAT, "line %d: escape \\%c outside Unicode", line, c);
                return 0;
            }
            i += digits;
            put_utf8(&b, cp);
            break;
        }
        case 'N':
            tsr__jbuf_free(&b);
            parser_fail(p, TSR_ERR_UNSUPPORTED, "line %d: \\N{...} escapes", line);
            return 0;
        default:
            if (c >= '0' && c <= '7') {
                uint32_t cp = 0;
                size_t k = 0;
                while (k < 3 && i + k < n && s[i + k] >= '0' && s[i + k] <= '7')
                    cp = cp * 8 + (uint32_t)(s[i + k++] - '0');
                i += k - 1;
                put_utf8(&b, cp);
            } else {
                tsr__jbuf_put(&b, s + i - 1, 2);
            }
        }
    }
    if (b.failed) { tsr__jbuf_free(&b); oom(p); return 0; }
    const tsr__jstr *str = tsr__jstr_new(p->arena, b.data ? b.data : "", b.len);
    tsr__jbuf_free(&b);
    if (!str) { oom(p); return 0; }
    out->type = TSR__JV_STRING;
    out->u.s = str;
    return 1;
}

static int push_text(parser *p, const char *s, size_t n, int line) {
    if (n == 0) return 1;
    token *t = push_token(p, T_TEXT, line, s, n);
    if (!t) return 0;
    const tsr__jstr *str = tsr__jstr_new(p->arena, s, n);
    if (!str) { oom(p); return 0; }
    t->val.type = TSR__JV_STRING;
    t->val.u.s = str;
    return 1;
}

static const char *const OPS2[] = {"//", "**", "==", "!=", "<=", ">=", NULL};
static const char OPS1[] = "+-*/%~<>=()[]{},.:|";

/* Tokenizes the inside of a {{ }} or {% %} tag starting at *pos; stops after the end
 * marker. Returns the position after the whole tag (with trailing whitespace control
 * applied) or 0 on error; *ends_newline tells whether that consumed text ended in '\n'. */
static size_t lex_tag(parser *p, size_t pos, int is_block, int *line, int *ends_newline) {
    const char *s = p->src;
    size_t n = p->len;
    char close = is_block ? '%' : '}';
    while (pos < n) {
        char c = s[pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            if (c == '\n') (*line)++;
            pos++;
            continue;
        }
        /* end marker: "-%}" / "+%}" / "%}" (blocks), "-}}" / "}}" (variables) */
        int sign = (c == '-' || (c == '+' && is_block)) ? c : 0;
        size_t m = pos + (sign ? 1 : 0);
        if (m + 1 < n && s[m] == close && s[m + 1] == '}') {
            if (!push_token(p, is_block ? T_BLOCK_END : T_VAR_END, *line, s + pos, 0)) return 0;
            size_t after = m + 2;
            *ends_newline = 0;
            if (sign == '-') {
                size_t k;
                while ((k = tsr__py_space_at(s, n, after)) != 0) {
                    if (s[after] == '\n') (*line)++;
                    after += k;
                }
                *ends_newline = after > m + 2 && s[after - 1] == '\n';
            } else if (is_block && sign != '+' && after < n && s[after] == '\n') {
                after++;
                (*line)++;
                *ends_newline = 1;
            }
            return after;
        }
        if (is_name_start(c)) {
            size_t e = pos;
            while (e < n && is_name_char(s[e])) e++;
            if (!push_token(p, T_NAME, *line, s + pos, e - pos)) return 0;
            pos = e;
            continue;
        }
        if (is_digit(c)) {
            size_t e = pos;
            int is_float = 0;
            while (e < n && (is_digit(s[e]) || (s[e] == '_' && e + 1 < n && is_digit(s[e + 1]))))
                e++;
            if (e + 1 < n && s[e] == '.' && is_digit(s[e + 1])) {
                is_float = 1;
                e++;
                while (e < n && (is_digit(s[e]) || (s[e] == '_' && e + 1 < n && is_digit(s[e + 1]))))
                    e++;
            }
            if (e < n && (s[e] == 'e' || s[e] == 'E')) {
                size_t k = e + 1;
                if (k < n && (s[k] == '+' || s[k] == '-')) k++;
                if (k < n && is_digit(s[k])) {
                    is_float = 1;
                    e = k;
                    while (e < n && is_digit(s[e])) e++;
                }
            }
            char num[64];
            size_t nl = 0;
            for (size_t k = pos; k < e && nl < sizeof num - 1; k++)
                if (s[k] != '_') num[nl++] = s[k];
            num[nl] = 0;
            if (e - pos >= sizeof num) {
                parser_fail(p, TSR_ERR_LIMIT, "line %d: number literal too long", *line);
                return 0;
            }
            token *t = push_token(p, is_float ? T_FLOAT : T_INT, *line, s + pos, e - pos);
            if (!t) return 0;
            errno = 0;
            if (is_float) {
                t->val = tsr__jv_float(strtod(num, NULL));
            } else {
                long long v = strtoll(num, NULL, 10);
                if (errno == ERANGE) {
                    parser_fail(p, TSR_ERR_UNSUPPORTED, "line %d: integer literal beyond 64 bits",
                                *line);
                    return 0;
                }
                t->val = tsr__jv_int(v);
            }
            pos = e;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t e = pos + 1;
            int start_line = *line;
            while (e < n && s[e] != c) {
                if (s[e] == '\\' && e + 1 < n) e++;
                if (s[e] == '\n') (*line)++;
                e++;
            }
            if (e >= n) {
                parser_fail(p, TSR_ERR_FORMAT, "line %d: unterminated string literal", start_line);
                return 0;
            }
            token *t = push_token(p, T_STRING, start_line, s + pos, e + 1 - pos);
            if (!t || !decode_string(p, s + pos + 1, e - pos - 1, start_line, &t->val)) return 0;
            pos = e + 1;
            continue;
        }
        size_t oplen = 0;
        for (int k = 0; OPS2[k]; k++)
            if (pos + 1 < n && s[pos] == OPS2[k][0] && s[pos + 1] == OPS2[k][1]) oplen = 2;
        if (!oplen && strchr(OPS1, c) && c) oplen = 1;
        if (!oplen) {
            parser_fail(p, TSR_ERR_FORMAT, "line %d: unexpected character '%c' in a tag",
                        *line, c);
            return 0;
        }
        if (!push_token(p, T_OP, *line, s + pos, oplen)) return 0;
        pos += oplen;
    }
    parser_fail(p, TSR_ERR_FORMAT, "line %d: unclosed %s tag", *line,
                is_block ? "{% ... %}" : "{{ ... }}");
    return 0;
}

static int lex(parser *p) {
    const char *s = p->src;
    size_t n = p->len, pos = 0;
    int line = 1, line_starting = 1;
    while (pos < n) {
        /* next tag start */
        size_t t = pos;
        while (t + 1 < n && !(s[t] == '{' && (s[t + 1] == '{' || s[t + 1] == '%' || s[t + 1] == '#')))
            t++;
        if (t + 1 >= n) return push_text(p, s + pos, n - pos, line);
        char kind = s[t + 1];
        char sign = t + 2 < n && (s[t + 2] == '-' || s[t + 2] == '+') ? s[t + 2] : 0;
        size_t text_end = t;
        if (sign == '-') {
            size_t k;
            while (text_end > pos && (k = tsr__py_space_before(s, text_end)) != 0) text_end -= k;
        } else if (sign != '+' && kind != '{') {
            /* lstrip_blocks: drop spaces between the line start and a block/comment tag */
            size_t l_pos = text_end;
            while (l_pos > pos && s[l_pos - 1] != '\n') l_pos--;
            if ((l_pos > pos || line_starting) && l_pos < text_end) {
                size_t k = l_pos, sp;
                while (k < text_end && (sp = tsr__py_space_at(s, text_end, k)) != 0) k += sp;
                if (k == text_end) text_end = l_pos;
            }
        }
        if (!push_text(p, s + pos, text_end - pos, line)) return 0;
        line += count_lines(s + pos, t - pos);
        size_t body = t + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            /* comment: up to the first "#}" */
            size_t e = body;
            while (e + 1 < n && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= n) {
                parser_fail(p, TSR_ERR_FORMAT, "line %d: unclosed comment", line);
                return 0;
            }
            line += count_lines(s + t, e - t);
            char csign = e > body && (s[e - 1] == '-' || s[e - 1] == '+') ? s[e - 1] : 0;
            size_t after = e + 2;
            line_starting = 0;
            if (csign == '-') {
                size_t k;
                while ((k = tsr__py_space_at(s, n, after)) != 0) {
                    if (s[after] == '\n') line++;
                    after += k;
                }
                line_starting = after > e + 2 && s[after - 1] == '\n';
            } else if (csign != '+' && after < n && s[after] == '\n') {
                after++;
                line++;
                line_starting = 1;
            }
            pos = after;
            continue;
        }
        int is_block = kind == '%';
        if (is_block) {
            /* {% raw %} is not supported: say so instead of rendering it wrong */
            size_t k = body;
            while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n')) k++;
            if (n - k >= 3 && !memcmp(s + k, "raw", 3) && (k + 3 >= n || !is_name_char(s[k + 3]))) {
                parser_fail(p, TSR_ERR_UNSUPPORTED, "line %d: {%% raw %%} blocks", line);
                return 0;
            }
        }
        if (!push_token(p, is_block ? T_BLOCK_BEGIN : T_VAR_BEGIN, line, s + t, 2)) return 0;
        pos = lex_tag(p, body, is_block, &line, &line_starting);
        if (!pos) return 0;
    }
    return 1;
}

/* ---- parser helpers -------------------------------------------------------------------------- */

static token *cur(parser *p) {
    static token eof = {T_EOF, 0, "", 0, {0}};
    return p->pos < p->n_toks ? &p->toks[p->pos] : &eof;
}
static int cur_line(parser *p) {
    return p->pos < p->n_toks ? p->toks[p->pos].line : (p->n_toks ? p->toks[p->n_toks - 1].line : 1);
}
static int tok_is(const token *t, int type, const char *s) {
    return t->type == type && (!s || (t->len == strlen(s) && !memcmp(t->s, s, t->len)));
}
static int is_op(parser *p, const char *op) { return tok_is(cur(p), T_OP, op); }
static int is_kw(parser *p, const char *kw) { return tok_is(cur(p), T_NAME, kw); }
static int accept_op(parser *p, const char *op) {
    if (!is_op(p, op)) return 0;
    p->pos++;
    return 1;
}
static int accept_kw(parser *p, const char *kw) {
    if (!is_kw(p, kw)) return 0;
    p->pos++;
    return 1;
}

static const char *describe(token *t, char *buf, size_t cap) {
    switch (t->type) {
    case T_EOF: return "end of template";
    case T_TEXT: return "template text";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_END: return "'%}'";
    case T_VAR_BEGIN: return "'{{'";
    case T_BLOCK_BEGIN: return "'{%'";
    default:
        snprintf(buf, cap, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->s);
        return buf;
    }
}

static int expect_op(parser *p, const char *op) {
    if (accept_op(p, op)) return 1;
    char b[64];
    parser_fail(p, TSR_ERR_FORMAT, "line %d: expected '%s', got %s", cur_line(p), op,
                describe(cur(p), b, sizeof b));
    return 0;
}

static int expect_type(parser *p, int type, const char *what) {
    if (cur(p)->type == type) { p->pos++; return 1; }
    char b[64];
    parser_fail(p, TSR_ERR_FORMAT, "line %d: expected %s, got %s", cur_line(p), what,
                describe(cur(p), b, sizeof b));
    return 0;
}

static jnode *new_node(parser *p, jn_kind kind, int line) {
    jnode *nd = tsr__arena_alloc(p->arena, sizeof *nd);
    if (!nd) { oom(p); return NULL; }
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->line = line;
    return nd;
}

/* Growable node list in the arena. */
typedef struct nlist { jnode **v; size_t n, cap; } nlist;
static int nl_push(parser *p, nlist *l, jnode *x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4, bytes;
        if (!tsr__mul_size(cap, sizeof(jnode *), &bytes)) { oom(p); return 0; }
        jnode **v = tsr__arena_alloc(p->arena, bytes);
        if (!v) { oom(p); return 0; }
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return 1;
}
typedef struct slist { const char **v; size_t n, cap; } slist;
static int sl_push(parser *p, slist *l, const char *x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4, bytes;
        if (!tsr__mul_size(cap, sizeof(char *), &bytes)) { oom(p); return 0; }
        const char **v = tsr__arena_alloc(p->arena, bytes);
        if (!v) { oom(p); return 0; }
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return 1;
}

static const char *take_name(parser *p, const char *what) {
    token *t = cur(p);
    if (t->type != T_NAME) {
        char b[64];
        parser_fail(p, TSR_ERR_FORMAT, "line %d: expected %s, got %s", cur_line(p), what,
                    describe(t, b, sizeof b));
        return NULL;
    }
    p->pos++;
    return arena_strndup(p, t->s, t->len);
}

static int enter(parser *p) {
    if (++p->depth > MAX_PARSE_DEPTH) {
        parser_fail(p, TSR_ERR_LIMIT, "line %d: nesting deeper than %d", cur_line(p),
                    MAX_PARSE_DEPTH);
        return 0;
    }
    return 1;
}

/* ---- expressions ------------------------------------------------------------------------------ */

static jnode *parse_expr(parser *p);
static jnode *parse_unary(parser *p, int with_filter);
static jnode *parse_or(parser *p);

/* (args, kw=value) after '(' was consumed; fills items/names/items2 of nd. */
static int parse_call_args(parser *p, jnode *nd) {
    nlist args = {0}, kwvals = {0};
    slist kwnames = {0};
    while (!is_op(p, ")")) {
        if (args.n + kwvals.n && !expect_op(p, ",")) return 0;
        if (is_op(p, ")")) break;
        if (is_op(p, "*") || is_op(p, "**")) {
            parser_fail(p, TSR_ERR_UNSUPPORTED, "line %d: *args / **kwargs in calls", cur_line(p));
            return 0;
        }
        token *t = cur(p);
        if (t->type == T_NAME && p->pos + 1 < p->n_toks && tok_is(&p->toks[p->pos + 1], T_OP, "=")) {
            const char *name = take_name(p, "argument name");
            p->pos++; /* '=' */
            jnode *v = parse_expr(p);
            if (!name || !v || !sl_push(p, &kwnames, name) || !nl_push(p, &kwvals, v)) return 0;
        } else {
            if (kwvals.n) {
                parser_fail(p, TSR_ERR_FORMAT, "line %d: positional argument after keyword",
                            cur_line(p));
                return 0;
            }
            jnode *v = parse_expr(p);
            if (!v || !nl_push(p, &args, v)) return 0;
        }
    }
    if (!expect_op(p, ")")) return 0;
    nd->items = args.v;
    nd->n_items = args.n;
    nd->items2 = kwvals.v;
    nd->n_items2 = kwvals.n;
    nd->names = kwnames.v;
    nd->n_names = kwnames.n;
    return 1;
}

static jnode *parse_primary(parser *p) {
    token *t = cur(p);
    int line = t->line;
    jnode *nd;
    if (t->type == T_NAME) {
        p->pos++;
        static const struct { const char *w; int type, b; } lits[] = {
            {"true", TSR__JV_BOOL, 1}, {"True", TSR__JV_BOOL, 1}, {"false", TSR__JV_BOOL, 0},
            {"False", TSR__JV_BOOL, 0}, {"none", TSR__JV_NONE, 0}, {"None", TSR__JV_NONE, 0}};
        for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++)
            if (tok_is(t, T_NAME, lits[i].w)) {
                if (!(nd = new_node(p, JN_LITERAL, line))) return NULL;
                nd->lit = lits[i].type == TSR__JV_BOOL ? tsr__jv_bool(lits[i].b) : tsr__jv_none();
                return nd;
            }
        if (!(nd = new_node(p, JN_NAME, line))) return NULL;
        nd->name = arena_strndup(p, t->s, t->len);
        return nd->name ? nd : NULL;
    }
    if (t->type == T_STRING) {
        /* adjacent string literals concatenate */
        p->pos++;
        tsr__jv v = t->val;
        while (cur(p)->type == T_STRING) {
            const tsr__jstr *a = v.u.s, *b = cur(p)->val.u.s;
            size_t total;
            if (!tsr__add_size(a->len, b->len, &total)) { oom(p); return NULL; }
            char *tmp = tsr__malloc(total + 1);
            if (!tmp) { oom(p); return NULL; }
            memcpy(tmp, a->data, a->len);
            memcpy(tmp + a->len, b->data, b->len);
            v.u.s = tsr__jstr_new(p->arena, tmp, total);
            tsr__free(tmp);
            if (!v.u.s) { oom(p); return NULL; }
            p->pos++;
        }
        if (!(nd = new_node(p, JN_LITERAL, line))) return NULL;
        nd->lit = v;
        return nd;
    }
    if (t->type == T_INT || t->type == T_FLOAT) {
        p->pos++;
        if (!(nd = new_node(p, JN_LITERAL, line))) return NULL;
        nd->lit = t->val;
        return nd;
    }
    if (accept_op(p, "(")) {
        if (accept_op(p, ")")) return new_node(p, JN_TUPLE, line);
        jnode *first = parse_expr(p);
        if (!first) return NULL;
        if (!is_op(p, ",")) return expect_op(p, ")") ? first : NULL;
        nlist items = {0};
        if (!nl_push(p, &items, first)) return NULL;
        while (accept_op(p, ",")) {
            if (is_op(p, ")")) break;
            jnode *x = parse_expr(p);
            if (!x || !nl_push(p, &items, x)) return NULL;
        }
        if (!expect_op(p, ")") || !(nd = new_node(p, JN_TUPLE, line))) return NULL;
        nd->items = items.v;
        nd->n_items = items.n;
        return nd;
    }
    if (accept_op(p, "[")) {
        nlist items = {0};
        while (!is_op(p, "]")) {
            if (items.n && !expect_op(p, ",")) return NULL;
            if (is_op(p, "]")) break;
            jnode *x = parse_expr(p);
            if (!x || !nl_push(p, &items, x)) return NULL;
        }
        if (!expect_op(p, "]") || !(nd = new_node(p, JN_LIST, line))) return NULL;
        nd->items = items.v;
        nd->n_items = items.n;
        return nd;
    }
    if (accept_op(p, "{")) {
        nlist items = {0};
        while (!is_op(p, "}")) {
            if (items.n && !expect_op(p, ",")) return NULL;
            if (is_op(p, "}")) break;
            jnode *k = parse_expr(p);
            if (!k || !expect_op(p, ":")) return NULL;
            jnode *v = parse_expr(p);
            if (!v || !nl_push(p, &items, k) || !nl_push(p, &items, v)) return NULL;
        }
        if (!expect_op(p, "}") || !(nd = new_node(p, JN_DICT, line))) return NULL;
        nd->items = items.v;
        nd->n_items = items.n;
        return nd;
    }
    char b[64];
    return FAILP(p, TSR_ERR_FORMAT, "line %d: unexpected %s in an expression", line,
                 describe(t, b, sizeof b));
}

static jnode *parse_subscript(parser *p, jnode *obj, int line) {
    jnode *parts[3] = {NULL, NULL, NULL};
    int is_slice = 0;
    for (int k = 0; k < 3; k++) {
        if (!is_op(p, ":") && !is_op(p, "]")) {
            if (!(parts[k] = parse_expr(p))) return NULL;
        }
        if (k < 2 && accept_op(p, ":")) { is_slice = 1; continue; }
        break;
    }
    if (!expect_op(p, "]")) return NULL;
    jnode *nd = new_node(p, is_slice ? JN_SLICE : JN_GETITEM, line);
    if (!nd) return NULL;
    nd->a = obj;
    nd->b = parts[0];
    nd->c = parts[1];
    if (is_slice && parts[2]) {
        nd->items2 = tsr__arena_alloc(p->arena, sizeof(jnode *));
        if (!nd->items2) { oom(p); return NULL; }
        nd->items2[0] = parts[2];
        nd->n_items2 = 1;
    }
    if (!is_slice && !parts[0])
        return FAILP(p, TSR_ERR_FORMAT, "line %d: empty subscript", line);
    return nd;
}

static jnode *parse_postfix(parser *p, jnode *nd) {
    for (;;) {
        int line = cur_line(p);
        if (accept_op(p, ".")) {
            jnode *g = new_node(p, JN_GETATTR, line);
            if (!g) return NULL;
            g->a = nd;
            token *t = cur(p);
            if (t->type == T_INT) { /* x.0 is x[0] */
                jnode *k = new_node(p, JN_LITERAL, line);
                if (!k) return NULL;
                k->lit = t->val;
                p->pos++;
                g->kind = JN_GETITEM;
                g->b = k;
            } else if (!(g->name = take_name(p, "attribute name"))) {
                return NULL;
            }
            nd = g;
        } else if (accept_op(p, "[")) {
            if (!(nd = parse_subscript(p, nd, line))) return NULL;
        } else if (accept_op(p, "(")) {
            jnode *c = new_node(p, JN_CALL, line);
            if (!c) return NULL;
            c->a = nd;
            if (!parse_call_args(p, c)) return NULL;
            nd = c;
        } else {
            return nd;
        }
    }
}

static int is_test_arg_start(parser *p) {
    token *t = cur(p);
    if (t->type == T_STRING || t->type == T_INT || t->type == T_FLOAT) return 1;
    if (t->type == T_OP) return tok_is(t, T_OP, "[") || tok_is(t, T_OP, "{") || tok_is(t, T_OP, "-");
    if (t->type != T_NAME) return 0;
    static const char *const stop[] = {"else", "or", "and", "not", "in", "is", "if", NULL};
    for (int i = 0; stop[i]; i++)
        if (tok_is(t, T_NAME, stop[i])) return 0;
    return 1;
}

static jnode *parse_filter_expr(parser *p, jnode *nd) {
    for (;;) {
        int line = cur_line(p);
        if (accept_op(p, "|")) {
            jnode *f = new_node(p, JN_FILTER, line);
            if (!f || !(f->name = take_name(p, "filter name"))) return NULL;
            if (!tsr__jinja_filter_known(f->name) || is_op(p, "."))
                return FAILP(p, TSR_ERR_UNSUPPORTED, "line %d: the filter '%s'", line, f->name);
            f->a = nd;
            if (accept_op(p, "(") && !parse_call_args(p, f)) return NULL;
            nd = f;
        } else if (accept_kw(p, "is")) {
            jnode *t = new_node(p, JN_TEST, line);
            if (!t) return NULL;
            t->op = accept_kw(p, "not");
            if (!(t->name = take_name(p, "test name"))) return NULL;
            if (!tsr__jinja_test_known(t->name))
                return FAILP(p, TSR_ERR_UNSUPPORTED, "line %d: the test '%s'", line, t->name);
            t->a = nd;
            if (accept_op(p, "(")) {
                if (!parse_call_args(p, t)) return NULL;
            } else if (is_test_arg_start(p)) {
                jnode *arg = parse_unary(p, 0);
                if (!arg) return NULL;
                t->items = tsr__arena_alloc(p->arena, sizeof(jnode *));
                if (!t->items) { oom(p); return NULL; }
                t->items[0] = arg;
                t->n_items = 1;
            }
            nd = t;
        } else if (accept_op(p, "(")) {
            jnode *c = new_node(p, JN_CALL, line);
            if (!c) return NULL;
            c->a = nd;
            if (!parse_call_args(p, c)) return NULL;
            nd = c;
        } else {
            return nd;
        }
    }
}

static jnode *parse_unary(parser *p, int with_filter) {
    if (!enter(p)) return NULL;
    int line = cur_line(p);
    jnode *nd;
    if (is_op(p, "-") || is_op(p, "+")) {
        int op = cur(p)->s[0];
        p->pos++;
        jnode *x = parse_unary(p, 0);
        if (!x || !(nd = new_node(p, JN_UNARY, line))) return NULL;
        nd->op = op;
        nd->a = x;
    } else {
        nd = parse_primary(p);
    }
    if (nd) nd = parse_postfix(p, nd);
    if (nd && with_filter) nd = parse_filter_expr(p, nd);
    p->depth--;
    return nd;
}

static jnode *binop(parser *p, int op, jnode *a, jnode *b, int line) {
    if (!a || !b) return NULL;
    jnode *nd = new_node(p, JN_BINOP, line);
    if (!nd) return NULL;
    nd->op = op;
    nd->a = a;
    nd->b = b;
    return nd;
}

static jnode *parse_pow(parser *p) {
    jnode *l = parse_unary(p, 1);
    while (l && is_op(p, "**")) {
        int line = cur_line(p);
        p->pos++;
        l = binop(p, JOP_POW, l, parse_unary(p, 1), line);
    }
    return l;
}

static jnode *parse_math2(parser *p) {
    jnode *l = parse_pow(p);
    for (;;) {
        int line = cur_line(p), op = 0;
        if (is_op(p, "*")) op = JOP_MUL;
        else if (is_op(p, "/")) op = JOP_DIV;
        else if (is_op(p, "//")) op = JOP_FLOORDIV;
        else if (is_op(p, "%")) op = JOP_MOD;
        if (!l || !op) return l;
        p->pos++;
        l = binop(p, op, l, parse_pow(p), line);
    }
}

static jnode *parse_concat(parser *p) {
    jnode *l = parse_math2(p);
    while (l && is_op(p, "~")) {
        int line = cur_line(p);
        p->pos++;
        l = binop(p, JOP_CONCAT, l, parse_math2(p), line);
    }
    return l;
}

static jnode *parse_math1(parser *p) {
    jnode *l = parse_concat(p);
    for (;;) {
        int line = cur_line(p), op = 0;
        if (is_op(p, "+")) op = JOP_ADD;
        else if (is_op(p, "-")) op = JOP_SUB;
        if (!l || !op) return l;
        p->pos++;
        l = binop(p, op, l, parse_concat(p), line);
    }
}

static jnode *parse_compare(parser *p) {
    jnode *l = parse_math1(p);
    for (;;) {
        if (!l) return NULL;
        int line = cur_line(p), op = 0;
        static const struct { const char *s; int op; } ops[] = {
            {"==", JOP_EQ}, {"!=", JOP_NE}, {"<", JOP_LT}, {"<=", JOP_LE}, {">", JOP_GT},
            {">=", JOP_GE}};
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
            if (is_op(p, ops[i].s)) op = ops[i].op;
        if (op) {
            p->pos++;
            l = binop(p, op, l, parse_math1(p), line);
            continue;
        }
        int negate = 0;
        if (is_kw(p, "in")) {
            p->pos++;
        } else if (is_kw(p, "not") && p->pos + 1 < p->n_toks &&
                   tok_is(&p->toks[p->pos + 1], T_NAME, "in")) {
            p->pos += 2;
            negate = 1;
        } else {
            return l;
        }
        jnode *r = parse_math1(p), *nd;
        if (!r || !(nd = new_node(p, JN_IN, line))) return NULL;
        nd->a = l;
        nd->b = r;
        nd->op = negate;
        l = nd;
    }
}

static jnode *parse_not(parser *p) {
    if (is_kw(p, "not")) {
        int line = cur_line(p);
        p->pos++;
        if (!enter(p)) return NULL;
        jnode *x = parse_not(p), *nd;
        p->depth--;
        if (!x || !(nd = new_node(p, JN_NOT, line))) return NULL;
        nd->a = x;
        return nd;
    }
    return parse_compare(p);
}

static jnode *parse_and(parser *p) {
    jnode *l = parse_not(p);
    while (l && is_kw(p, "and")) {
        int line = cur_line(p);
        p->pos++;
        jnode *r = parse_not(p), *nd;
        if (!r || !(nd = new_node(p, JN_AND, line))) return NULL;
        nd->a = l;
        nd->b = r;
        l = nd;
    }
    return l;
}

static jnode *parse_or(parser *p) {
    jnode *l = parse_and(p);
    while (l && is_kw(p, "or")) {
        int line = cur_line(p);
        p->pos++;
        jnode *r = parse_and(p), *nd;
        if (!r || !(nd = new_node(p, JN_OR, line))) return NULL;
        nd->a = l;
        nd->b = r;
        l = nd;
    }
    return l;
}

/* expr [if cond [else expr]] */
static jnode *parse_expr(parser *p) {
    if (!enter(p)) return NULL;
    jnode *l = parse_or(p);
    while (l && is_kw(p, "if")) {
        int line = cur_line(p);
        p->pos++;
        jnode *cond = parse_or(p), *nd, *other = NULL;
        if (!cond) return NULL;
        if (accept_kw(p, "else") && !(other = parse_expr(p))) return NULL;
        if (!(nd = new_node(p, JN_COND, line))) return NULL;
        nd->a = cond;
        nd->b = l;
        nd->c = other;
        l = nd;
    }
    p->depth--;
    return l;
}

/* ---- statements ---------------------------------------------------------------------------- */

static int parse_body(parser *p, nlist *body, const char *const *ends);

/* Names separated by commas, optionally in parentheses: loop and set targets. */
static int parse_targets(parser *p, slist *names) {
    int paren = accept_op(p, "(");
    do {
        const char *n = take_name(p, "variable name");
        if (!n || !sl_push(p, names, n)) return 0;
    } while (accept_op(p, ","));
    return !paren || expect_op(p, ")");
}

static int end_block(parser *p) { return expect_type(p, T_BLOCK_END, "'%}'"); }

static jnode *parse_if(parser *p, int line) {
    jnode *nd = new_node(p, JN_IF, line);
    if (!nd || !(nd->a = parse_expr(p)) || !end_block(p)) return NULL;
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    nlist body = {0}, other = {0};
    if (!parse_body(p, &body, ends)) return NULL;
    nd->items = body.v;
    nd->n_items = body.n;
    /* parse_body stopped at {% elif|else|endif; the name is current */
    int l2 = cur_line(p);
    if (accept_kw(p, "elif")) {
        jnode *e = parse_if(p, l2);
        if (!e || !nl_push(p, &other, e)) return NULL;
        nd->items2 = other.v;
        nd->n_items2 = other.n;
        return nd; /* the nested if consumed endif */
    }
    if (accept_kw(p, "else")) {
        static const char *const ends2[] = {"endif", NULL};
        if (!end_block(p) || !parse_body(p, &other, ends2)) return NULL;
        nd->items2 = other.v;
        nd->n_items2 = other.n;
    }
    if (!accept_kw(p, "endif"))
        return FAILP(p, TSR_ERR_FORMAT, "line %d: expected endif", cur_line(p));
    return end_block(p) ? nd : NULL;
}

static jnode *parse_for(parser *p, int line) {
    jnode *nd = new_node(p, JN_FOR, line);
    slist names = {0};
    if (!nd || !parse_targets(p, &names)) return NULL;
    if (!accept_kw(p, "in"))
        return FAILP(p, TSR_ERR_FORMAT, "line %d: expected 'in' in a for loop", line);
    nd->names = names.v;
    nd->n_names = names.n;
    if (!(nd->a = parse_or(p))) return NULL; /* no conditional expression: 'if' filters */
    if (accept_kw(p, "if") && !(nd->b = parse_or(p))) return NULL;
    if (accept_kw(p, "recursive"))
        return FAILP(p, TSR_ERR_UNSUPPORTED, "line %d: recursive for loops", line);
    if (!end_block(p)) return NULL;
    static const char *const ends[] = {"else", "endfor", NULL};
    nlist body = {0}, other = {0};
    if (!parse_body(p, &body, ends)) return NULL;
    if (accept_kw(p, "else")) {
        static const char *const ends2[] = {"endfor", NULL};
        if (!end_block(p) || !parse_body(p, &other, ends2)) return NULL;
    }
    if (!accept_kw(p, "endfor"))
        return FAILP(p, TSR_ERR_FORMAT, "line %d: expected endfor", cur_line(p));
    nd->items = body.v;
    nd->n_items = body.n;
    nd->items2 = other.v;
    nd->n_items2 = other.n;
    return end_block(p) ? nd : NULL;
}

static jnode *parse_set(parser *p, int line) {
    jnode *nd = new_node(p, JN_SET, line);
    if (!nd) return NULL;
    token *t = cur(p);
    if (t->type == T_NAME && p->pos + 1 < p->n_toks && tok_is(&p->toks[p->pos + 1], T_OP, ".")) {
        nd->kind = JN_SET_ATTR;
        if (!(nd->name = take_name(p, "namespace"))) return NULL;
        p->pos++;
        const char *attr = take_name(p, "attribute name");
        if (!attr) return NULL;
        nd->names = tsr__arena_alloc(p->arena, sizeof(char *));
        if (!nd->names) { oom(p); return NULL; }
        nd->names[0] = attr;
        nd->n_names = 1;
        if (!expect_op(p, "=") || !(nd->a = parse_expr(p))) return NULL;
        return end_block(p) ? nd : NULL;
    }
    slist names = {0};
    if (!parse_targets(p, &names)) return NULL;
    nd->names = names.v;
    nd->n_names = names.n;
    if (accept_op(p, "=")) {
        jnode *v = parse_expr(p);
        if (!v) return NULL;
        if (is_op(p, ",")) { /* set a, b = x, y */
            nlist items = {0};
            if (!nl_push(p, &items, v)) return NULL;
            while (accept_op(p, ",")) {
                jnode *x = parse_expr(p);
                if (!x || !nl_push(p, &items, x)) return NULL;
            }
            jnode *tup = new_node(p, JN_TUPLE, line);
            if (!tup) return NULL;
            tup->items = items.v;
            tup->n_items = items.n;
            v = tup;
        }
        nd->a = v;
        return end_block(p) ? nd : NULL;
    }
    if (names.n != 1) return FAILP(p, TSR_ERR_FORMAT, "line %d: block set takes one name", line);
    if (is_op(p, "|"))
        return FAILP(p, TSR_ERR_UNSUPPORTED, "line %d: filtered block set", line);
    nd->kind = JN_SET_BLOCK;
    static const char *const ends[] = {"endset", NULL};
    nlist body = {0};
    if (!end_block(p) || !parse_body(p, &body, ends) || !accept_kw(p, "endset")) return NULL;
    nd->items = body.v;
    nd->n_items = body.n;
    return end_block(p) ? nd : NULL;
}

static jnode *parse_macro(parser *p, int line) {
    jnode *nd = new_node(p, JN_MACRO, line);
    if (!nd || !(nd->name = take_name(p, "macro name")) || !expect_op(p, "(")) return NULL;
    slist params = {0};
    nlist defaults = {0};
    while (!is_op(p, ")")) {
        if (params.n && !expect_op(p, ",")) return NULL;
        const char *n = take_name(p, "parameter name");
        jnode *def = NULL;
        if (!n) return NULL;
        if (accept_op(p, "=") && !(def = parse_expr(p))) return NULL;
        if (!sl_push(p, &params, n) || !nl_push(p, &defaults, def)) return NULL;
    }
    if (!expect_op(p, ")") || !end_block(p)) return NULL;
    static const char *const ends[] = {"endmacro", NULL};
    nlist body = {0};
    if (!parse_body(p, &body, ends) || !accept_kw(p, "endmacro")) return NULL;
    if (cur(p)->type == T_NAME) p->pos++; /* {% endmacro name %} */
    nd->names = params.v;
    nd->n_names = params.n;
    nd->items2 = defaults.v;
    nd->n_items2 = defaults.n;
    nd->items = body.v;
    nd->n_items = body.n;
    return end_block(p) ? nd : NULL;
}

static jnode *parse_statement(parser *p) {
    int line = cur_line(p);
    token *t = cur(p);
    if (t->type != T_NAME) {
        char b[64];
        return FAILP(p, TSR_ERR_FORMAT, "line %d: expected a statement name, got %s", line,
                     describe(t, b, sizeof b));
    }
    if (accept_kw(p, "if")) return parse_if(p, line);
    if (accept_kw(p, "for")) return parse_for(p, line);
    if (accept_kw(p, "set")) return parse_set(p, line);
    if (accept_kw(p, "macro")) return parse_macro(p, line);
    if (accept_kw(p, "break") || accept_kw(p, "continue")) {
        jnode *nd = new_node(p, tok_is(t, T_NAME, "break") ? JN_BREAK : JN_CONTINUE, line);
        return nd && end_block(p) ? nd : NULL;
    }
    if (accept_kw(p, "generation")) {
        jnode *nd = new_node(p, JN_GENERATION, line);
        static const char *const ends[] = {"endgeneration", NULL};
        nlist body = {0};
        if (!nd || !end_block(p) || !parse_body(p, &body, ends) || !accept_kw(p, "endgeneration") ||
            !end_block(p))
            return NULL;
        nd->items = body.v;
        nd->n_items = body.n;
        return nd;
    }
    static const char *const known[] = {"elif", "else", "endif", "endfor", "endset", "endmacro",
                                        "endgeneration", NULL};
    for (int i = 0; known[i]; i++)
        if (tok_is(t, T_NAME, known[i]))
            return FAILP(p, TSR_ERR_FORMAT, "line %d: unexpected {%% %s %%}", line, known[i]);
    return FAILP(p, TSR_ERR_UNSUPPORTED, "line %d: the {%% %.*s %%} statement", line,
                 (int)(t->len > 40 ? 40 : t->len), t->s);
}

/* Parses nodes until EOF (ends == NULL) or a {% name %} with name in ends; in the latter case
 * the position is left on that name. */
static int parse_body(parser *p, nlist *body, const char *const *ends) {
    if (!enter(p)) return 0;
    int start_line = cur_line(p);
    for (;;) {
        token *t = cur(p);
        if (t->type == T_EOF) {
            if (ends) {
                parser_fail(p, TSR_ERR_FORMAT, "line %d: block opened here is never closed "
                            "(expected {%% %s %%})", start_line - 0, ends[0]);
                return 0;
            }
            break;
        }
        if (t->type == T_TEXT) {
            jnode *nd = new_node(p, JN_TEXT, t->line);
            if (!nd) return 0;
            nd->lit = t->val;
            p->pos++;
            if (!nl_push(p, body, nd)) return 0;
            continue;
        }
        if (t->type == T_VAR_BEGIN) {
            p->pos++;
            jnode *nd = new_node(p, JN_OUTPUT, t->line);
            if (!nd || !(nd->a = parse_expr(p)) || !expect_type(p, T_VAR_END, "'}}'")) return 0;
            if (!nl_push(p, body, nd)) return 0;
            continue;
        }
        if (t->type == T_BLOCK_BEGIN) {
            p->pos++;
            if (ends)
                for (int i = 0; ends[i]; i++)
                    if (is_kw(p, ends[i])) {
                        p->depth--;
                        return 1;
                    }
            jnode *nd = parse_statement(p);
            if (!nd || !nl_push(p, body, nd)) return 0;
            continue;
        }
        char b[64];
        parser_fail(p, TSR_ERR_FORMAT, "line %d: unexpected %s", t->line, describe(t, b, sizeof b));
        return 0;
    }
    p->depth--;
    return 1;
}

/* ---- entry point ----------------------------------------------------------------------------- */

/* "\r\n" and "\r" become "\n"; one trailing newline is dropped (keep_trailing_newline off). */
static char *normalize_source(const char *src, size_t len, size_t *out_len) {
    char *s = tsr__malloc(len + 1);
    if (!s) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[k++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[k++] = src[i];
        }
    }
    if (k && s[k - 1] == '\n') k--;
    s[k] = 0;
    *out_len = k;
    return s;
}

tsr_status tsr__jinja_parse(const char *src, size_t len, tsr__jinja_template **out,
                            tsr_error *err) {
    *out = NULL;
    if (!src && len) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "template source is NULL");
    if (len > MAX_SOURCE)
        return TSR_FAIL(err, TSR_ERR_LIMIT, "template has %zu bytes, limit is %u", len,
                        MAX_SOURCE);
    if (src && memchr(src, 0, len))
        return TSR_FAIL(err, TSR_ERR_FORMAT, "template contains a NUL byte");
    tsr__jinja_template *t = tsr__calloc(1, sizeof *t);
    if (!t) return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate a template");
    t->arena.limit = 64u << 20;
    parser p = {.arena = &t->arena, .err = err, .status = TSR_OK};
    char *norm = normalize_source(src ? src : "", len, &p.len);
    if (!norm) {
        tsr__free(t);
        return TSR_FAIL(err, TSR_ERR_OOM, "cannot copy the template source");
    }
    p.src = norm;
    nlist body = {0};
    if (lex(&p) && parse_body(&p, &body, NULL)) {
        t->body = body.v;
        t->n_body = body.n;
    } else if (p.status == TSR_OK) {
        parser_fail(&p, TSR_ERR_INTERNAL, "parser stopped without a reason");
    }
    /* Literal strings and names live in the arena; tokens point into norm only while parsing. */
    tsr__free(p.toks);
    tsr__free(norm);
    if (p.status != TSR_OK) {
        tsr__jinja_free(t);
        return p.status;
    }
    *out = t;
    return TSR_OK;
}

void tsr__jinja_free(tsr__jinja_template *t) {
    if (!t) return;
    tsr__arena_free(&t->arena);
    tsr__free(t);
}
