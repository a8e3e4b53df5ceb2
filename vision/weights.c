/*
 * weights.c - checkpoint tensors by name for the encoders (see weights.h).
 */
#include "weights.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct wentry {
    char *canonical;   /* name after aliases */
    const char *name;  /* as stored (owned by the shard) */
    size_t file;
    int taken;
} wentry;

typedef struct alias {
    char stored[96], canonical[96];
} alias;

struct tsr__weights {
    tsr_safetensors *const *files;
    const char *const *names;
    size_t n_files;
    wentry *e;
    size_t n;
    int built;
    alias al[16];
    size_t n_al;
    void **owned;
    size_t n_owned, cap_owned;
};

tsr_status tsr__weights_new(tsr_safetensors *const *files, const char *const *names, size_t n,
                            tsr__weights **out, tsr_error *err) {
    *out = NULL;
    tsr__weights *w = tsr__calloc(1, sizeof *w);
    if (!w) return TSR_FAIL(err, TSR_ERR_OOM, "weights");
    w->files = files;
    w->names = names;
    w->n_files = n;
    *out = w;
    return TSR_OK;
}

void tsr__weights_free(tsr__weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) tsr__free(w->e[i].canonical);
    tsr__free(w->e);
    for (size_t i = 0; i < w->n_owned; i++) tsr__free(w->owned[i]);
    tsr__free(w->owned);
    tsr__free(w);
}

tsr_status tsr__weights_alias(tsr__weights *w, const char *stored, const char *canonical,
                              tsr_error *err) {
    if (w->built || w->n_al == sizeof w->al / sizeof w->al[0] ||
        strlen(stored) >= sizeof w->al[0].stored || strlen(canonical) >= sizeof w->al[0].canonical)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "cannot add alias '%s'", stored);
    snprintf(w->al[w->n_al].stored, sizeof w->al[0].stored, "%s", stored);
    snprintf(w->al[w->n_al].canonical, sizeof w->al[0].canonical, "%s", canonical);
    w->n_al++;
    return TSR_OK;
}

/* Builds the name table on first lookup (after the aliases are known). */
static tsr_status build(tsr__weights *w, tsr_error *err) {
    if (w->built) return TSR_OK;
    size_t total = 0;
    for (size_t f = 0; f < w->n_files; f++) total += (size_t)tsr_safetensors_count(w->files[f]);
    w->e = tsr__calloc(total ? total : 1, sizeof *w->e);
    if (!w->e) return TSR_FAIL(err, TSR_ERR_OOM, "weight table");
    for (size_t f = 0; f < w->n_files; f++) {
        int64_t c = tsr_safetensors_count(w->files[f]);
        for (int64_t i = 0; i < c; i++) {
            const char *nm = tsr_safetensors_name(w->files[f], i);
            const char *rest = nm, *pre = "";
            for (size_t a = 0; a < w->n_al; a++) {
                size_t l = strlen(w->al[a].stored);
                if (!strncmp(nm, w->al[a].stored, l)) {
                    pre = w->al[a].canonical;
                    rest = nm + l;
                    break;
                }
            }
            size_t len = strlen(pre) + strlen(rest) + 1;
            char *cn = tsr__malloc(len);
            if (!cn) return TSR_FAIL(err, TSR_ERR_OOM, "weight table");
            snprintf(cn, len, "%s%s", pre, rest);
            wentry *e = &w->e[w->n++];
            e->canonical = cn;
            e->name = nm;
            e->file = f;
        }
    }
    w->built = 1;
    return TSR_OK;
}

static wentry *find(tsr__weights *w, const char *name) {
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].canonical, name)) return &w->e[i];
    return NULL;
}

int tsr__weights_has(const tsr__weights *w, const char *name) {
    tsr_error e = {0};
    if (build((tsr__weights *)w, &e)) return 0;
    return find((tsr__weights *)w, name) != NULL;
}

int tsr__weights_has_prefix(const tsr__weights *w, const char *prefix) {
    tsr_error e = {0};
    if (build((tsr__weights *)w, &e)) return 0;
    size_t l = strlen(prefix);
    for (size_t i = 0; i < w->n; i++)
        if (!strncmp(w->e[i].canonical, prefix, l)) return 1;
    return 0;
}

static void shape_str(char *buf, size_t cap, int32_t ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* The stored tensor of canonical `name`, marked taken. */
static tsr_status weights_get(tsr__weights *w, const char *name, tsr_tensor *t,
                              const char **file, tsr_error *err) {
    tsr_status s = build(w, err);
    if (s) return s;
    wentry *e = find(w, name);
    if (!e)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "tensor '%s' is missing from the checkpoint", name);
    if (e->taken) return TSR_FAIL(err, TSR_ERR_FORMAT, "tensor '%s' is used twice", name);
    tsr_error local = {0};
    *file = w->names ? w->names[e->file] : "model.safetensors";
    s = tsr_safetensors_get(w->files[e->file], e->name, t, &local);
    if (s) return TSR_FAIL(err, s, "%s: %s", *file, local.message);
    if (t->dtype != TSR_DTYPE_F32 && t->dtype != TSR_DTYPE_F16 && t->dtype != TSR_DTYPE_BF16)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16 "
                        "are supported)", *file, e->name, tsr_dtype_name(t->dtype));
    e->taken = 1;
    return TSR_OK;
}

tsr_status tsr__weights_mat(tsr__weights *w, const char *name, int64_t rows, int64_t cols,
                            tsr__wmat *out, tsr_error *err) {
    tsr_tensor t;
    const char *file = NULL;
    tsr_status s = weights_get(w, name, &t, &file, err);
    if (s) return s;
    int64_t rest = 1;
    for (int32_t i = 1; i < t.ndim; i++) rest *= t.shape[i];
    if (t.ndim < 2 || t.shape[0] != rows || rest != cols) {
        char a[96];
        shape_str(a, sizeof a, t.ndim, t.shape);
        return TSR_FAIL(err, TSR_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected [%lld, %lld]",
                        file, name, a, (long long)rows, (long long)cols);
    }
    out->data = t.data;
    out->type = t.dtype == TSR_DTYPE_F32 ? TSR__W_F32
                : t.dtype == TSR_DTYPE_BF16 ? TSR__W_BF16 : TSR__W_F16;
    return TSR_OK;
}

tsr_status tsr__weights_f32(tsr__weights *w, const char *name, int32_t ndim,
                            const int64_t *shape, const float **out, tsr_error *err) {
    tsr_tensor t;
    const char *file = NULL;
    tsr_status s = weights_get(w, name, &t, &file, err);
    if (s) return s;
    int ok = t.ndim == ndim;
    for (int32_t i = 0; ok && i < ndim; i++) ok = t.shape[i] == shape[i];
    if (!ok) {
        char a[96], b[96];
        shape_str(a, sizeof a, t.ndim, t.shape);
        shape_str(b, sizeof b, ndim, shape);
        return TSR_FAIL(err, TSR_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", file,
                        name, a, b);
    }
    if (t.dtype == TSR_DTYPE_F32) {
        *out = t.data;
        return TSR_OK;
    }
    int64_t n = tsr_tensor_numel(&t);
    if (w->n_owned == w->cap_owned) {
        size_t cap = w->cap_owned ? w->cap_owned * 2 : 64;
        void **no = tsr__malloc(cap * sizeof *no);
        if (!no) return TSR_FAIL(err, TSR_ERR_OOM, "weight table");
        if (w->n_owned) memcpy(no, w->owned, w->n_owned * sizeof *no);
        tsr__free(w->owned);
        w->owned = no;
        w->cap_owned = cap;
    }
    float *f = tsr__malloc((size_t)(n ? n : 1) * sizeof *f);
    if (!f) return TSR_FAIL(err, TSR_ERR_OOM, "F32 copy of '%s'", name);
    w->owned[w->n_owned++] = f;
    const uint16_t *h = t.data;
    if (t.dtype == TSR_DTYPE_F16)
        for (int64_t i = 0; i < n; i++) f[i] = tsr__f16_to_f32(h[i]);
    else
        for (int64_t i = 0; i < n; i++) f[i] = tsr__bf16_to_f32(h[i]);
    *out = f;
    return TSR_OK;
}

tsr_status tsr__weights_vec(tsr__weights *w, const char *name, int64_t n, const float **out,
                            tsr_error *err) {
    return tsr__weights_f32(w, name, 1, &n, out, err);
}

tsr_status tsr__weights_matf(tsr__weights *w, int64_t rows, int64_t cols, tsr__wmat *out,
                             tsr_error *err, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof name)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "tensor name too long");
    return tsr__weights_mat(w, name, rows, cols, out, err);
}

tsr_status tsr__weights_vecf(tsr__weights *w, int64_t n, const float **out, tsr_error *err,
                             const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof name)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "tensor name too long");
    return tsr__weights_vec(w, name, n, out, err);
}

tsr_status tsr__weights_check_unused(const tsr__weights *w, const char *const *prefixes,
                                     size_t n, const char *what, tsr_error *err) {
    tsr_status s = build((tsr__weights *)w, err);
    if (s) return s;
    for (size_t i = 0; i < w->n; i++) {
        if (w->e[i].taken) continue;
        for (size_t p = 0; p < n; p++)
            if (!strncmp(w->e[i].canonical, prefixes[p], strlen(prefixes[p])))
                return TSR_FAIL(err, TSR_ERR_FORMAT, "%s: unexpected tensor '%s' for %s",
                                w->names ? w->names[w->e[i].file] : "model.safetensors",
                                w->e[i].name, what);
    }
    return TSR_OK;
}
