/* jinja_ast.h - syntax tree shared by the Jinja parser and evaluator (internal). */
#ifndef TSR_JINJA_AST_H
#define TSR_JINJA_AST_H

#include "jinja.h"

typedef enum jn_kind {
    /* expressions */
    JN_LITERAL,   /* lit */
    JN_NAME,      /* name */
    JN_GETATTR,   /* a.name */
    JN_GETITEM,   /* a[b] */
    JN_SLICE,     /* a[b:c:d]; absent parts are NULL */
    JN_CALL,      /* a(args, kw=...) */
    JN_FILTER,    /* a | name(args) ; a may be NULL in a filter block (unsupported) */
    JN_TEST,      /* a is [not] name(args); op = 1 when negated */
    JN_BINOP,     /* a op b */
    JN_UNARY,     /* op a ('-', '+') */
    JN_NOT,       /* not a */
    JN_AND,
    JN_OR,
    JN_COND,      /* b if a else c */
    JN_LIST,      /* [items] */
    JN_TUPLE,     /* (items) */
    JN_DICT,      /* {items[2i]: items[2i+1]} */
    JN_IN,        /* a in b; op = 1 for not in */
    /* statements */
    JN_TEXT,      /* lit (string) */
    JN_OUTPUT,    /* {{ a }} */
    JN_IF,        /* if a: body else body2 (elif is a nested JN_IF in body2) */
    JN_FOR,       /* for names in a [if b]: body else body2 */
    JN_SET,       /* set names = a */
    JN_SET_ATTR,  /* set name.attr = a (namespace) */
    JN_SET_BLOCK, /* set name %}body{% endset */
    JN_MACRO,     /* macro name(names = defaults in items) body */
    JN_BREAK,
    JN_CONTINUE,
    JN_GENERATION /* transformers' {% generation %}body{% endgeneration %}: renders body */
} jn_kind;

/* Binary operators (JN_BINOP op). */
enum { JOP_ADD = 1, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW, JOP_CONCAT,
       JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE };

typedef struct jnode jnode;
struct jnode {
    jn_kind kind;
    int line;
    int op;
    jnode *a, *b, *c;
    jnode **items;     /* args / list items / body */
    size_t n_items;
    jnode **items2;    /* kwarg values / else body */
    size_t n_items2;
    const char *name;  /* identifier: name, attribute, filter, test, macro */
    const char **names; /* kwarg names / loop or set targets / macro params */
    size_t n_names;
    tsr__jv lit;
};

struct tsr__jinja_template {
    tsr__arena arena; /* owns every node and literal */
    jnode **body;
    size_t n_body;
};

#endif
