/* safetensors reader/writer: files written by the reference package, round trips through
 * our writer, and a table of corrupt headers that must each fail with their own message. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "tessera_internal.h"

static double element(const tsr_tensor *t, int64_t i) {
    switch (t->dtype) {
    case TSR_DTYPE_U8: return ((const uint8_t *)t->data)[i];
    case TSR_DTYPE_I32: return ((const int32_t *)t->data)[i];
    case TSR_DTYPE_I64: return (double)((const int64_t *)t->data)[i];
    case TSR_DTYPE_F16: return tsr__f16_to_f32(((const uint16_t *)t->data)[i]);
    case TSR_DTYPE_BF16: return tsr__bf16_to_f32(((const uint16_t *)t->data)[i]);
    case TSR_DTYPE_F32: return ((const float *)t->data)[i];
    default: return NAN;
    }
}

static const char *torch_dtype(tsr_dtype d) {
    static const char *names[] = {"uint8", "int32", "int64", "float16", "bfloat16", "float32"};
    return (unsigned)d < TSR_DTYPE_COUNT ? names[d] : "?";
}

/* Every tensor of st equals the description the reference generator wrote. */
static void check_against_json(const tsr_safetensors *st, const cJSON *desc) {
    const cJSON *tensors = cJSON_GetObjectItem(desc, "tensors");
    CHECK(tsr_safetensors_count(st) == cJSON_GetArraySize(tensors));
    for (const cJSON *e = tensors ? tensors->child : NULL; e; e = e->next) {
        tsr_error err = {0};
        tsr_tensor t;
        CHECK_OK(tsr_safetensors_get(st, e->string, &t, &err), &err);
        if (!t.data && tsr_tensor_numel(&t)) continue;
        CHECK_MSG(!strcmp(torch_dtype(t.dtype), cJSON_GetObjectItem(e, "dtype")->valuestring),
                  "%s dtype", e->string);
        const cJSON *shape = cJSON_GetObjectItem(e, "shape");
        CHECK(t.ndim == cJSON_GetArraySize(shape));
        int d = 0;
        for (const cJSON *s = shape->child; s && d < t.ndim; s = s->next, d++)
            CHECK(t.shape[d] == (int64_t)s->valuedouble);
        const cJSON *values = cJSON_GetObjectItem(e, "values");
        CHECK(tsr_tensor_numel(&t) == cJSON_GetArraySize(values));
        int64_t i = 0, bad = 0;
        for (const cJSON *v = values->child; v; v = v->next, i++)
            if (element(&t, i) != v->valuedouble) bad++;
        CHECK_MSG(bad == 0, "%s: %lld values differ", e->string, (long long)bad);
    }
    const cJSON *meta = cJSON_GetObjectItem(desc, "metadata");
    for (const cJSON *m = meta ? meta->child : NULL; m; m = m->next) {
        const char *got = tsr_safetensors_metadata(st, m->string);
        CHECK_MSG(got && !strcmp(got, m->valuestring), "metadata %s", m->string);
    }
}

static cJSON *load_desc(void) {
    size_t len;
    char *text = (char *)tsr_test_read(tsr_test_fixture("safetensors/mixed.json"), &len);
    cJSON *desc = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return desc;
}

static void test_reference_file(void) {
    cJSON *desc = load_desc();
    CHECK(desc != NULL);
    tsr_error err = {0};
    tsr_safetensors *st = NULL;
    CHECK_OK(tsr_safetensors_open_file(tsr_test_fixture("safetensors/mixed.safetensors"), &st,
                                       &err), &err);
    if (st && desc) check_against_json(st, desc);
    CHECK(tsr_safetensors_name(st, -1) == NULL && tsr_safetensors_name(st, 99) == NULL);
    tsr_tensor t;
    CHECK(tsr_safetensors_get(st, "missing", &t, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "missing") != NULL);
    tsr_safetensors_close(st);
    cJSON_Delete(desc);
}

static void test_round_trip(void) {
    cJSON *desc = load_desc();
    tsr_error err = {0};
    tsr_safetensors *st = NULL, *back = NULL;
    CHECK_OK(tsr_safetensors_open_file(tsr_test_fixture("safetensors/mixed.safetensors"), &st,
                                       &err), &err);
    if (!st || !desc) { cJSON_Delete(desc); tsr_safetensors_close(st); return; }
    int64_t n = tsr_safetensors_count(st);
    const char *names[16];
    tsr_tensor tensors[16];
    for (int64_t i = 0; i < n && i < 16; i++) {
        names[i] = tsr_safetensors_name(st, i);
        CHECK_OK(tsr_safetensors_get(st, names[i], &tensors[i], &err), &err);
    }
    const char *keys[] = {"format", "note"};
    const char *values[] = {tsr_safetensors_metadata(st, "format"),
                            tsr_safetensors_metadata(st, "note")};
    char path[] = "/tmp/tsr_st_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    CHECK_OK(tsr_safetensors_write_file(path, n, names, tensors, 2, keys, values, &err), &err);
    CHECK_OK(tsr_safetensors_open_file(path, &back, &err), &err);
    if (back) check_against_json(back, desc);
    /* Writer aligns the data section to 8 bytes, like the reference. */
    size_t len;
    uint8_t *raw = tsr_test_read(path, &len);
    CHECK(raw && len > 8 && raw[0] % 8 == 0);
    free(raw);
    remove(path);
    tsr_safetensors_close(back);
    tsr_safetensors_close(st);
    cJSON_Delete(desc);
}

static void test_valid_edge_files(void) {
    tsr_error err = {0};
    tsr_safetensors *st = NULL;
    CHECK_OK(tsr_safetensors_open_file(tsr_test_fixture("safetensors/empty.safetensors"), &st,
                                       &err), &err);
    CHECK(tsr_safetensors_count(st) == 0);
    tsr_safetensors_close(st);
    CHECK(tsr_safetensors_open_file(tsr_test_fixture("safetensors/f64.safetensors"), &st,
                                    &err) == TSR_ERR_UNSUPPORTED);
    CHECK(st == NULL && strstr(err.message, "F64") != NULL);
    CHECK(tsr_safetensors_open_file("/nonexistent/x.safetensors", &st, &err) == TSR_ERR_IO);
    CHECK(tsr_safetensors_open_file("/tmp", &st, &err) == TSR_ERR_IO);
    tsr_safetensors_close(NULL);
}

/* Builds "u64 len + header + data_len zero bytes" in a malloc'd buffer. */
static uint8_t *make_file(const char *header, uint64_t claimed, size_t data_len, size_t *len) {
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    uint8_t *buf = calloc(1, *len);
    uint64_t n = claimed ? claimed : h;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, header, h);
    return buf;
}

typedef struct {
    const char *what;
    const char *header;
    uint64_t claimed_len; /* 0: the real header length */
    size_t data_len;
    tsr_status status;
    const char *needle;
} bad_case;

static const bad_case k_bad[] = {
    {"header length past end", "{}", 1000, 0, TSR_ERR_FORMAT, "does not fit"},
    {"header length huge", "{}", (uint64_t)1 << 62, 0, TSR_ERR_FORMAT, "exceeds"},
    {"not an object", "[1,2]", 0, 0, TSR_ERR_FORMAT, "not a JSON object"},
    {"broken JSON", "{\"a\":{\"dtype\":", 0, 0, TSR_ERR_FORMAT, "well-formed"},
    {"trailing garbage", "{}xx", 0, 0, TSR_ERR_FORMAT, "trailing"},
    {"entry not object", "{\"a\":3}", 0, 0, TSR_ERR_FORMAT, "not an object"},
    {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4, TSR_ERR_FORMAT,
     "dtype"},
    {"unknown dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4,
     TSR_ERR_FORMAT, "unknown dtype"},
    {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 0, 4,
     TSR_ERR_FORMAT, "dim 0"},
    {"fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 0, 4,
     TSR_ERR_FORMAT, "dim 0"},
    {"string dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 0, 4,
     TSR_ERR_FORMAT, "dim 0"},
    {"size overflow",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", 0,
     4, TSR_ERR_FORMAT, "overflows"},
    {"too many dims",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 0, 1,
     TSR_ERR_UNSUPPORTED, "7 dims"},
    {"offset past data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 4,
     TSR_ERR_FORMAT, "outside"},
    {"offsets reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 0, 8,
     TSR_ERR_FORMAT, "outside"},
    {"size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8,
     TSR_ERR_FORMAT, "needs 12"},
    {"one offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 0, 4,
     TSR_ERR_FORMAT, "data_offsets"},
    {"overlap",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 0, 12, TSR_ERR_FORMAT,
     "overlap"},
    {"duplicate name",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 0, 8, TSR_ERR_FORMAT,
     "duplicate"},
    {"metadata not strings", "{\"__metadata__\":{\"k\":1}}", 0, 0, TSR_ERR_FORMAT, "not a string"},
    {"metadata not object", "{\"__metadata__\":[]}", 0, 0, TSR_ERR_FORMAT, "not an object"},
    {"deep nesting", "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
     "]]]]]]]]]}", 0, 0, TSR_ERR_FORMAT, "not an object"},
};

static void test_bad_headers(void) {
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        const bad_case *c = &k_bad[i];
        size_t len;
        uint8_t *buf = make_file(c->header, c->claimed_len, c->data_len, &len);
        tsr_error err = {0};
        tsr_safetensors *st = (tsr_safetensors *)1;
        tsr_status s = tsr_safetensors_open_memory(buf, len, &st, &err);
        CHECK_MSG(s == c->status && st == NULL && strstr(err.message, c->needle) &&
                      !strncmp(err.message, "tsr_safetensors_open", 20),
                  "%s: got %s '%s'", c->what, tsr_status_name(s), err.message);
        free(buf);
    }
    tsr_error err = {0};
    tsr_safetensors *st;
    uint8_t tiny[4] = {0};
    CHECK(tsr_safetensors_open_memory(tiny, 4, &st, &err) == TSR_ERR_FORMAT);
    CHECK(tsr_safetensors_open_memory(NULL, 4, &st, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_safetensors_open_memory(tiny, 0, &st, &err) == TSR_ERR_FORMAT);
    CHECK(tsr_safetensors_open_memory(tiny, 4, NULL, &err) == TSR_ERR_INVALID_ARG);
}

/* Every truncation of a valid file fails cleanly (or, at full length, succeeds). */
static void test_truncations(void) {
    size_t len;
    uint8_t *buf = tsr_test_read(tsr_test_fixture("safetensors/mixed.safetensors"), &len);
    CHECK(buf != NULL);
    for (size_t cut = 0; buf && cut < len; cut++) {
        tsr_error err = {0};
        tsr_safetensors *st = NULL;
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        CHECK(tsr_safetensors_open_memory(copy, cut, &st, &err) == TSR_ERR_FORMAT);
        free(copy);
    }
    free(buf);
}

static void test_alloc_failures(void) {
    size_t len;
    uint8_t *buf = tsr_test_read(tsr_test_fixture("safetensors/mixed.safetensors"), &len);
    CHECK(buf != NULL);
    int ok_seen = 0;
    for (long n = 1; buf && n < 200 && !ok_seen; n++) {
        tsr_error err = {0};
        tsr_safetensors *st = NULL;
        tsr__alloc_failpoint(n);
        tsr_status s = tsr_safetensors_open_memory(buf, len, &st, &err);
        tsr__alloc_failpoint(0);
        CHECK_MSG(s == TSR_OK || s == TSR_ERR_OOM, "failpoint %ld: %s", n, tsr_status_name(s));
        ok_seen = s == TSR_OK;
        tsr_safetensors_close(st);
    }
    CHECK(ok_seen);
    free(buf);
}

int main(void) {
    tsr_test_run("reference_file", test_reference_file);
    tsr_test_run("round_trip", test_round_trip);
    tsr_test_run("valid_edge_files", test_valid_edge_files);
    tsr_test_run("bad_headers", test_bad_headers);
    tsr_test_run("truncations", test_truncations);
    tsr_test_run("alloc_failures", test_alloc_failures);
    return tsr_test_finish();
}
