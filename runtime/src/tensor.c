#include "tessera_internal.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} k_dtypes[TSR_DTYPE_COUNT] = {
    [TSR_DTYPE_U8] = {"U8", 1},   [TSR_DTYPE_I32] = {"I32", 4},  [TSR_DTYPE_I64] = {"I64", 8},
    [TSR_DTYPE_F16] = {"F16", 2}, [TSR_DTYPE_BF16] = {"BF16", 2}, [TSR_DTYPE_F32] = {"F32", 4},
};

size_t tsr_dtype_size(tsr_dtype dtype) {
    return (unsigned)dtype < TSR_DTYPE_COUNT ? k_dtypes[dtype].size : 0;
}

const char *tsr_dtype_name(tsr_dtype dtype) {
    return (unsigned)dtype < TSR_DTYPE_COUNT ? k_dtypes[dtype].name : "?";
}

/* Validates a shape and computes its element count and byte size without overflow. */
static tsr_status shape_bytes(const char *fn, tsr_dtype dtype, int32_t ndim,
                              const int64_t *shape, size_t *bytes, tsr_error *err) {
    if ((unsigned)dtype >= TSR_DTYPE_COUNT)
        return tsr__fail(err, TSR_ERR_INVALID_ARG, "%s: unknown dtype %d", fn, (int)dtype);
    if (ndim < 0 || ndim > TSR_MAX_DIMS)
        return tsr__fail(err, TSR_ERR_INVALID_ARG, "%s: ndim %d outside [0, %d]", fn, (int)ndim,
                         TSR_MAX_DIMS);
    if (ndim > 0 && !shape)
        return tsr__fail(err, TSR_ERR_INVALID_ARG, "%s: shape is NULL", fn);
    size_t n = tsr_dtype_size(dtype);
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return tsr__fail(err, TSR_ERR_INVALID_ARG, "%s: dim %d is negative (%lld)", fn,
                             (int)i, (long long)shape[i]);
        if (!tsr__mul_size(n, (size_t)shape[i], &n))
            return tsr__fail(err, TSR_ERR_LIMIT, "%s: tensor byte size overflows", fn);
    }
    *bytes = n;
    return TSR_OK;
}

static void set_contiguous(tsr_tensor *t, tsr_dtype dtype, int32_t ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t stride = 1;
    for (int32_t i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->strides[i] = stride;
        stride *= shape[i] ? shape[i] : 1;
    }
}

tsr_status tsr_tensor_alloc(tsr_tensor *out, tsr_dtype dtype, int32_t ndim,
                            const int64_t *shape, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    size_t bytes;
    tsr_status st = shape_bytes(__func__, dtype, ndim, shape, &bytes, err);
    if (st) return st;
    void *data = tsr__calloc(1, bytes);
    if (!data) return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate %zu bytes", bytes);
    set_contiguous(out, dtype, ndim, shape);
    out->data = data;
    out->owner = 1;
    return TSR_OK;
}

tsr_status tsr_tensor_view(tsr_tensor *out, tsr_dtype dtype, int32_t ndim,
                           const int64_t *shape, void *data, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    size_t bytes;
    tsr_status st = shape_bytes(__func__, dtype, ndim, shape, &bytes, err);
    if (st) return st;
    if (!data && bytes) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "data is NULL");
    set_contiguous(out, dtype, ndim, shape);
    out->data = data;
    return TSR_OK;
}

void tsr_tensor_free(tsr_tensor *t) {
    if (!t) return;
    if (t->owner) tsr__free(t->data);
    memset(t, 0, sizeof *t);
}

int64_t tsr_tensor_numel(const tsr_tensor *t) {
    if (!t) return 0;
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t tsr_tensor_nbytes(const tsr_tensor *t) {
    return t ? (size_t)tsr_tensor_numel(t) * tsr_dtype_size(t->dtype) : 0;
}

int tsr_tensor_is_contiguous(const tsr_tensor *t) {
    if (!t) return 0;
    int64_t stride = 1;
    for (int32_t i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != stride) return 0;
        stride *= t->shape[i];
    }
    return 1;
}

/* Formats "[a, b, c]" into buf. */
static void format_shape(char *buf, size_t cap, int32_t ndim, const int64_t *shape) {
    size_t used = 0;
    int n = snprintf(buf, cap, "[");
    used = n > 0 ? (size_t)n : 0;
    for (int32_t i = 0; i < ndim && used < cap; i++) {
        n = snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)shape[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

tsr_status tsr_tensor_check(const tsr_tensor *t, const char *what, tsr_dtype dtype,
                            int32_t ndim, const int64_t *shape, tsr_error *err) {
    if (!t) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "%s is NULL", what ? what : "tensor");
    bool ok = t->dtype == dtype && t->ndim == ndim;
    for (int32_t i = 0; ok && i < ndim; i++)
        if (shape[i] >= 0 && t->shape[i] != shape[i]) ok = false;
    if (ok) return TSR_OK;
    char got[160], want[160];
    format_shape(got, sizeof got, t->ndim, t->shape);
    format_shape(want, sizeof want, ndim, shape);
    return TSR_FAIL(err, TSR_ERR_SHAPE, "%s has shape %s %s, expected %s %s",
                    what ? what : "tensor", got, tsr_dtype_name(t->dtype), want,
                    tsr_dtype_name(dtype));
}
