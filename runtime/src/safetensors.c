/*
 * safetensors reader and writer.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON header, then the data section.
 * Header: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *          "__metadata__": {"key": "value", ...}} with offsets relative to the data section.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tessera_internal.h"

/* The reference implementation refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)
#define ST_META_KEY "__metadata__"

typedef struct st_entry {
    char *name;
    tsr_dtype dtype;
    int32_t ndim;
    int64_t shape[TSR_MAX_DIMS];
    uint64_t begin, end; /* relative to the data section */
} st_entry;

typedef struct st_meta {
    char *key;
    char *value;
} st_meta;

struct tsr_safetensors {
    const uint8_t *data; /* data section */
    uint64_t data_len;
    st_entry *entries;
    int64_t n_entries;
    st_meta *meta;
    int64_t n_meta;
    void *map; /* mmap base when opened from a file */
    size_t map_len;
};

static const struct {
    const char *name;
    int supported; /* representable as a tsr_dtype */
    tsr_dtype dtype;
    size_t size;
} k_st_dtypes[] = {
    {"U8", 1, TSR_DTYPE_U8, 1},     {"I32", 1, TSR_DTYPE_I32, 4},  {"I64", 1, TSR_DTYPE_I64, 8},
    {"F16", 1, TSR_DTYPE_F16, 2},   {"BF16", 1, TSR_DTYPE_BF16, 2}, {"F32", 1, TSR_DTYPE_F32, 4},
    {"BOOL", 0, TSR_DTYPE_U8, 1},   {"I8", 0, TSR_DTYPE_U8, 1},    {"I16", 0, TSR_DTYPE_U8, 2},
    {"U16", 0, TSR_DTYPE_U8, 2},    {"U32", 0, TSR_DTYPE_U8, 4},   {"U64", 0, TSR_DTYPE_U8, 8},
    {"F64", 0, TSR_DTYPE_U8, 8},    {"F8_E4M3", 0, TSR_DTYPE_U8, 1},
    {"F8_E5M2", 0, TSR_DTYPE_U8, 1},
};

static int find_dtype(const char *name) {
    for (size_t i = 0; i < sizeof k_st_dtypes / sizeof k_st_dtypes[0]; i++)
        if (!strcmp(k_st_dtypes[i].name, name)) return (int)i;
    return -1;
}

void tsr_safetensors_close(tsr_safetensors *st) {
    if (!st) return;
    for (int64_t i = 0; i < st->n_entries; i++) tsr__free(st->entries[i].name);
    for (int64_t i = 0; i < st->n_meta; i++) {
        tsr__free(st->meta[i].key);
        tsr__free(st->meta[i].value);
    }
    tsr__free(st->entries);
    tsr__free(st->meta);
    if (st->map) munmap(st->map, st->map_len);
    tsr__free(st);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = tsr__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* JSON number -> non-negative integer that a double holds exactly. */
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static tsr_status parse_meta(tsr_safetensors *st, const cJSON *obj, tsr_error *err) {
    if (!cJSON_IsObject(obj))
        return tsr__fail(err, TSR_ERR_FORMAT, "tsr_safetensors_open: %s is not an object",
                         ST_META_KEY);
    int n = cJSON_GetArraySize(obj);
    st->meta = tsr__calloc((size_t)n, sizeof *st->meta);
    if (!st->meta) return tsr__fail(err, TSR_ERR_OOM, "tsr_safetensors_open: out of memory");
    for (const cJSON *kv = obj->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return tsr__fail(err, TSR_ERR_FORMAT,
                             "tsr_safetensors_open: metadata value '%s' is not a string",
                             kv->string);
        st_meta *m = &st->meta[st->n_meta++];
        m->key = dup_str(kv->string);
        m->value = dup_str(kv->valuestring);
        if (!m->key || !m->value)
            return tsr__fail(err, TSR_ERR_OOM, "tsr_safetensors_open: out of memory");
    }
    return TSR_OK;
}

static tsr_status parse_entry(st_entry *e, const cJSON *obj, uint64_t data_len, tsr_error *err) {
    const char *name = obj->string;
    if (!cJSON_IsObject(obj))
        return tsr__fail(err, TSR_ERR_FORMAT, "tsr_safetensors_open: tensor '%s' is not an object",
                         name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) ||
        cJSON_GetArraySize(offs) != 2)
        return tsr__fail(err, TSR_ERR_FORMAT,
                         "tsr_safetensors_open: tensor '%s' needs string dtype, array shape and "
                         "two data_offsets",
                         name);
    int di = find_dtype(dtype->valuestring);
    if (di < 0)
        return tsr__fail(err, TSR_ERR_FORMAT, "tsr_safetensors_open: tensor '%s' has unknown dtype "
                         "'%s'", name, dtype->valuestring);
    if (!k_st_dtypes[di].supported)
        return tsr__fail(err, TSR_ERR_UNSUPPORTED,
                         "tsr_safetensors_open: tensor '%s' has dtype %s, which Tessera does not "
                         "support (U8, I32, I64, F16, BF16, F32)",
                         name, dtype->valuestring);
    e->dtype = k_st_dtypes[di].dtype;
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > TSR_MAX_DIMS)
        return tsr__fail(err, TSR_ERR_UNSUPPORTED,
                         "tsr_safetensors_open: tensor '%s' has %d dims, at most %d supported",
                         name, ndim, TSR_MAX_DIMS);
    e->ndim = ndim;
    size_t bytes = k_st_dtypes[di].size;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v) || v > INT64_MAX)
            return tsr__fail(err, TSR_ERR_FORMAT,
                             "tsr_safetensors_open: tensor '%s' dim %d is not a non-negative "
                             "integer", name, i);
        e->shape[i] = (int64_t)v;
        if (!tsr__mul_size(bytes, (size_t)v, &bytes))
            return tsr__fail(err, TSR_ERR_FORMAT,
                             "tsr_safetensors_open: tensor '%s' byte size overflows", name);
    }
    if (!json_uint(offs->child, &e->begin) || !json_uint(offs->child->next, &e->end) ||
        e->begin > e->end || e->end > data_len)
        return tsr__fail(err, TSR_ERR_FORMAT,
                         "tsr_safetensors_open: tensor '%s' data_offsets outside the data section "
                         "(%llu bytes)", name, (unsigned long long)data_len);
    if (e->end - e->begin != bytes)
        return tsr__fail(err, TSR_ERR_FORMAT,
                         "tsr_safetensors_open: tensor '%s' spans %llu bytes, dtype x shape needs "
                         "%zu", name, (unsigned long long)(e->end - e->begin), bytes);
    e->name = dup_str(name);
    if (!e->name) return tsr__fail(err, TSR_ERR_OOM, "tsr_safetensors_open: out of memory");
    return TSR_OK;
}

static int cmp_by_begin(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

/* Overlap and duplicate checks need sorted copies; the entries keep header order. */
static tsr_status check_layout(const tsr_safetensors *st, tsr_error *err) {
    if (st->n_entries < 2) return TSR_OK;
    st_entry *tmp = tsr__malloc((size_t)st->n_entries * sizeof *tmp);
    if (!tmp) return tsr__fail(err, TSR_ERR_OOM, "tsr_safetensors_open: out of memory");
    tsr_status status = TSR_OK;
    memcpy(tmp, st->entries, (size_t)st->n_entries * sizeof *tmp);
    qsort(tmp, (size_t)st->n_entries, sizeof *tmp, cmp_by_name);
    for (int64_t i = 1; i < st->n_entries && !status; i++)
        if (!strcmp(tmp[i - 1].name, tmp[i].name))
            status = tsr__fail(err, TSR_ERR_FORMAT, "tsr_safetensors_open: duplicate tensor '%s'",
                               tmp[i].name);
    qsort(tmp, (size_t)st->n_entries, sizeof *tmp, cmp_by_begin);
    for (int64_t i = 1; i < st->n_entries && !status; i++)
        if (tmp[i].begin < tmp[i - 1].end && tmp[i].begin != tmp[i].end &&
            tmp[i - 1].begin != tmp[i - 1].end)
            status = tsr__fail(err, TSR_ERR_FORMAT,
                               "tsr_safetensors_open: tensors '%s' and '%s' overlap",
                               tmp[i - 1].name, tmp[i].name);
    tsr__free(tmp);
    return status;
}

static tsr_status parse(tsr_safetensors *st, const uint8_t *buf, size_t len, tsr_error *err) {
    if (len < 8)
        return tsr__fail(err, TSR_ERR_FORMAT,
                         "tsr_safetensors_open: %zu bytes is too short for a header length", len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n > ST_MAX_HEADER)
        return tsr__fail(err, TSR_ERR_FORMAT,
                         "tsr_safetensors_open: header length %llu exceeds the %u-byte limit",
                         (unsigned long long)n, ST_MAX_HEADER);
    if (n < 2 || n > len - 8)
        return tsr__fail(err, TSR_ERR_FORMAT,
                         "tsr_safetensors_open: header length %llu does not fit the %zu-byte file",
                         (unsigned long long)n, len);
    const char *text = (const char *)buf + 8;
    if (text[0] != '{')
        return tsr__fail(err, TSR_ERR_FORMAT, "tsr_safetensors_open: header is not a JSON object");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tsr__fail(err, TSR_ERR_FORMAT,
                         "tsr_safetensors_open: header is not well-formed JSON (near byte %td)",
                         end ? end - text : (ptrdiff_t)0);
    }
    /* Only trailing spaces (alignment padding) may follow the JSON object. */
    for (const char *p = end; p && p < text + n; p++)
        if (*p != ' ' && *p != '\0') {
            cJSON_Delete(root);
            return tsr__fail(err, TSR_ERR_FORMAT,
                             "tsr_safetensors_open: trailing bytes after the JSON header");
        }
    st->data = buf + 8 + n;
    st->data_len = len - 8 - n;
    int count = cJSON_GetArraySize(root);
    st->entries = tsr__calloc((size_t)count, sizeof *st->entries);
    tsr_status status = st->entries ? TSR_OK
                                    : tsr__fail(err, TSR_ERR_OOM, "tsr_safetensors_open: out of "
                                                                  "memory");
    for (const cJSON *item = root->child; item && !status; item = item->next) {
        if (!strcmp(item->string, ST_META_KEY)) {
            status = st->meta ? tsr__fail(err, TSR_ERR_FORMAT,
                                          "tsr_safetensors_open: duplicate %s", ST_META_KEY)
                              : parse_meta(st, item, err);
            continue;
        }
        status = parse_entry(&st->entries[st->n_entries], item, st->data_len, err);
        if (!status) st->n_entries++;
        else tsr__free(st->entries[st->n_entries].name);
    }
    cJSON_Delete(root);
    return status ? status : check_layout(st, err);
}

tsr_status tsr_safetensors_open_memory(const uint8_t *buf, size_t len, tsr_safetensors **out,
                                       tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!buf && len) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "buf is NULL");
    tsr_safetensors *st = tsr__calloc(1, sizeof *st);
    if (!st) return TSR_FAIL(err, TSR_ERR_OOM, "out of memory");
    tsr_status status = parse(st, buf, len, err);
    if (status) {
        tsr_safetensors_close(st);
        return status;
    }
    *out = st;
    return TSR_OK;
}

tsr_status tsr_safetensors_open_file(const char *path, tsr_safetensors **out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!path) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return TSR_FAIL(err, TSR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return TSR_FAIL(err, TSR_ERR_IO, "'%s' is not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            close(fd);
            return TSR_FAIL(err, TSR_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
        }
    }
    close(fd);
    tsr_error local = {0};
    tsr_status status = tsr_safetensors_open_memory(map, len, out, &local);
    if (status) {
        if (map) munmap(map, len);
        return tsr__fail(err, status, "%s (file '%s')", local.message, path);
    }
    (*out)->map = map;
    (*out)->map_len = len;
    return TSR_OK;
}

int64_t tsr_safetensors_count(const tsr_safetensors *st) { return st ? st->n_entries : 0; }

const char *tsr_safetensors_name(const tsr_safetensors *st, int64_t i) {
    return st && i >= 0 && i < st->n_entries ? st->entries[i].name : NULL;
}

const char *tsr_safetensors_metadata(const tsr_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (int64_t i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta[i].key, key)) return st->meta[i].value;
    return NULL;
}

tsr_status tsr_safetensors_get(const tsr_safetensors *st, const char *name, tsr_tensor *out,
                               tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    if (!st || !name) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "st or name is NULL");
    for (int64_t i = 0; i < st->n_entries; i++) {
        const st_entry *e = &st->entries[i];
        if (strcmp(e->name, name)) continue;
        const uint8_t *p = st->data + e->begin;
        size_t align = tsr_dtype_size(e->dtype);
        if ((uintptr_t)p % align)
            return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                            "tensor '%s' data is not aligned to its %zu-byte elements", name,
                            align);
        return tsr_tensor_view(out, e->dtype, e->ndim, e->shape, (void *)p, err);
    }
    return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "no tensor named '%s'", name);
}

/* ---- writer ------------------------------------------------------------------------- */

static tsr_status build_header(int64_t n, const char *const *names, const tsr_tensor *tensors,
                               int64_t n_meta, const char *const *keys,
                               const char *const *values, char **out, tsr_error *err) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return TSR_FAIL(err, TSR_ERR_OOM, "out of memory");
    tsr_status status = TSR_OK;
    if (n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, ST_META_KEY);
        for (int64_t i = 0; meta && i < n_meta; i++)
            if (!keys[i] || !values[i] || !cJSON_AddStringToObject(meta, keys[i], values[i]))
                status = TSR_FAIL(err, TSR_ERR_INVALID_ARG, "metadata entry %lld is invalid",
                                  (long long)i);
        if (!meta) status = TSR_FAIL(err, TSR_ERR_OOM, "out of memory");
    }
    uint64_t offset = 0;
    for (int64_t i = 0; i < n && !status; i++) {
        const tsr_tensor *t = &tensors[i];
        if (!names[i] || !strcmp(names[i], ST_META_KEY) ||
            cJSON_GetObjectItemCaseSensitive(root, names[i])) {
            status = TSR_FAIL(err, TSR_ERR_INVALID_ARG, "tensor name %lld is NULL, reserved or "
                              "repeated", (long long)i);
            break;
        }
        if ((unsigned)t->dtype >= TSR_DTYPE_COUNT || !tsr_tensor_is_contiguous(t) ||
            (!t->data && tsr_tensor_numel(t))) {
            status = TSR_FAIL(err, TSR_ERR_INVALID_ARG, "tensor '%s' must be contiguous with data",
                              names[i]);
            break;
        }
        cJSON *e = cJSON_AddObjectToObject(root, names[i]);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        bool ok = e && shape && offs && cJSON_AddStringToObject(e, "dtype",
                                                                tsr_dtype_name(t->dtype));
        for (int32_t d = 0; ok && d < t->ndim; d++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        uint64_t end = offset + tsr_tensor_nbytes(t);
        ok = ok && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset)) &&
             cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)end));
        if (!ok) status = TSR_FAIL(err, TSR_ERR_OOM, "out of memory");
        offset = end;
    }
    if (!status) {
        *out = cJSON_PrintUnformatted(root);
        if (!*out) status = TSR_FAIL(err, TSR_ERR_OOM, "out of memory");
    }
    cJSON_Delete(root);
    return status;
}

tsr_status tsr_safetensors_write_file(const char *path, int64_t n, const char *const *names,
                                      const tsr_tensor *tensors, int64_t n_meta,
                                      const char *const *meta_keys,
                                      const char *const *meta_values, tsr_error *err) {
    if (!path || n < 0 || (n && (!names || !tensors)) || n_meta < 0 ||
        (n_meta && (!meta_keys || !meta_values)))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "path, names, tensors or metadata invalid");
    char *header = NULL;
    tsr_status status = build_header(n, names, tensors, n_meta, meta_keys, meta_values, &header,
                                     err);
    if (status) return status;
    /* Pad the header with spaces so the data section starts 8-byte aligned. */
    size_t hlen = strlen(header);
    size_t padded = (hlen + 7) & ~(size_t)7;
    FILE *f = fopen(path, "wb");
    if (!f) {
        cJSON_free(header);
        return TSR_FAIL(err, TSR_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    for (int64_t i = 0; ok && i < n; i++) {
        size_t bytes = tsr_tensor_nbytes(&tensors[i]);
        ok = !bytes || fwrite(tensors[i].data, 1, bytes, f) == bytes;
    }
    ok = (fclose(f) == 0) && ok;
    cJSON_free(header);
    if (!ok) {
        remove(path);
        return TSR_FAIL(err, TSR_ERR_IO, "cannot write '%s'", path);
    }
    return TSR_OK;
}
