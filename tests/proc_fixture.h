/*
 * proc_fixture.h - runs a family's processor over the reference cases that
 * tools/refgen/gen_proc_a.py writes under tests/fixtures/proc/<family>/ (see its docstring):
 * every output tensor against transformers' (ints exact, floats <= 1e-6 abs), the replacement
 * text tokenized with the fixture tokenizer against the processor's input_ids, and the cases
 * transformers rejects against its reason. Header-only; included by tests/test_proc_*.c.
 */
#ifndef TSR_TEST_PROC_FIXTURE_H
#define TSR_TEST_PROC_FIXTURE_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"
#include "harness.h"
#include "tessera_json.h"

/* snprintf through a va_list: paths here are short, truncation just fails the lookup. */
static void proc_path(char *dst, size_t n, const char *fmt, ...) TSR__PRINTF(3, 4);
static void proc_path(char *dst, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, n, fmt, ap);
    va_end(ap);
}

/* Configs of one fixture model dir; absent files stay NULL. */
typedef struct proc_cfg {
    cJSON *pp, *pc, *config;
    tsr__model_configs mc;
} proc_cfg;

static cJSON *proc_json_if_present(const char *dir, const char *name) {
    char path[1024];
    proc_path(path, sizeof path, "%s/%s", dir, name);
    cJSON *j = NULL;
    tsr_error err = {0};
    if (tsr__json_load(path, 0, &j, &err) != TSR_OK) return NULL;
    return j;
}

static void proc_cfg_load(proc_cfg *c, const char *dir) {
    memset(c, 0, sizeof *c);
    c->pp = proc_json_if_present(dir, "preprocessor_config.json");
    c->pc = proc_json_if_present(dir, "processor_config.json");
    c->config = proc_json_if_present(dir, "config.json");
    c->mc = (tsr__model_configs){.model_dir = dir,
                                 .config = c->config,
                                 .preprocessor_config = c->pp,
                                 .processor_config = c->pc};
}

static void proc_cfg_free(proc_cfg *c) {
    cJSON_Delete(c->pp);
    cJSON_Delete(c->pc);
    cJSON_Delete(c->config);
}

/* Loads a state from inline JSON texts (any may be NULL) and returns load's status. */
static tsr_status proc_load_inline(const tsr__family_ops *ops, const char *pp, const char *pc,
                                   const char *config, tsr_error *err) {
    cJSON *jp = pp ? cJSON_Parse(pp) : NULL, *jc = pc ? cJSON_Parse(pc) : NULL;
    cJSON *jg = config ? cJSON_Parse(config) : NULL;
    tsr__model_configs mc = {.model_dir = ".", .config = jg, .preprocessor_config = jp,
                             .processor_config = jc};
    void *state = NULL;
    tsr_status st = ops->load(&mc, &state, err);
    if (st == TSR_OK) ops->free_state(state);
    else CHECK(state == NULL);
    cJSON_Delete(jp);
    cJSON_Delete(jc);
    cJSON_Delete(jg);
    return st;
}

/* Decodes a fixture image as transformers sees a PIL input with do_convert_rgb: RGBA, then
 * composited over white (an RGB file stays unchanged). */
static int proc_decode_rgb(const char *path, tsr_image *out) {
    size_t len = 0;
    uint8_t *buf = tsr_test_read(path, &len);
    if (!buf) return 0;
    tsr_image_decode_params p = tsr_image_decode_params_default();
    p.channels = 4;
    p.limits.max_aspect = 0; /* the processor, not the decoder, must refuse these */
    tsr_image rgba = {0};
    tsr_error err = {0};
    int ok = tsr_image_decode(buf, len, &p, &rgba, NULL, &err) == TSR_OK &&
             tsr_image_composite_white(&rgba, out, &err) == TSR_OK;
    if (!ok) fprintf(stderr, "decode %s: %s\n", path, err.message);
    tsr_image_free(&rgba);
    free(buf);
    return ok;
}

/* Compares every tensor of the expected safetensors file with the list; returns max abs
 * diff of the float tensors. */
static double proc_compare(const char *case_name, const char *expect_path,
                           const tsr_tensor_list *out) {
    double max_diff = 0;
    tsr_error err = {0};
    tsr_safetensors *st = NULL;
    CHECK_OK(tsr_test_open_safetensors(expect_path, &st, &err), &err);
    if (!st) return INFINITY;
    CHECK_MSG(tsr_tensor_list_count(out) == tsr_safetensors_count(st), "%s: %lld tensors, want %lld",
              case_name, (long long)tsr_tensor_list_count(out),
              (long long)tsr_safetensors_count(st));
    for (int64_t i = 0; i < tsr_safetensors_count(st); i++) {
        const char *name = tsr_safetensors_name(st, i);
        tsr_tensor want;
        CHECK_OK(tsr_safetensors_get(st, name, &want, &err), &err);
        const tsr_tensor *got = tsr_tensor_list_get(out, name);
        CHECK_MSG(got != NULL, "%s: no tensor %s", case_name, name);
        if (!got) continue;
        int same_shape = got->dtype == want.dtype && got->ndim == want.ndim;
        for (int d = 0; same_shape && d < want.ndim; d++)
            same_shape = got->shape[d] == want.shape[d];
        CHECK_MSG(same_shape, "%s: %s is %s ndim %d [%lld, %lld, ...], want %s ndim %d [%lld, %lld, ...]",
                  case_name, name, tsr_dtype_name(got->dtype), (int)got->ndim,
                  (long long)got->shape[0], (long long)(got->ndim > 1 ? got->shape[1] : 0),
                  tsr_dtype_name(want.dtype), (int)want.ndim, (long long)want.shape[0],
                  (long long)(want.ndim > 1 ? want.shape[1] : 0));
        if (!same_shape) continue;
        const int64_t n = tsr_tensor_numel(&want);
        if (want.dtype == TSR_DTYPE_F32) {
            const float *a = got->data, *b = want.data;
            double md = 0;
            int64_t at = -1;
            for (int64_t k = 0; k < n; k++) {
                double dd = fabs((double)a[k] - (double)b[k]);
                if (!(dd <= md)) { md = dd; at = k; }
            }
            CHECK_MSG(md <= 1e-6, "%s: %s max abs diff %g at flat index %lld (%g vs %g)",
                      case_name, name, md, (long long)at, at >= 0 ? a[at] : 0.0,
                      at >= 0 ? b[at] : 0.0);
            if (md > max_diff) max_diff = md;
        } else {
            CHECK_MSG(!memcmp(got->data, want.data, tsr_tensor_nbytes(&want)),
                      "%s: %s values differ", case_name, name);
        }
    }
    tsr_test_close_safetensors(st);
    return max_diff;
}

/* Tokenizes the concatenated replacements and compares with the case's "ids". */
static void proc_check_ids(const char *case_name, const tsr_tokenizer *tok,
                           const tsr__replacements *r, const cJSON *ids) {
    size_t total = 1;
    for (int64_t i = 0; i < r->count; i++) total += strlen(r->text[i]);
    char *text = malloc(total);
    if (!text) return;
    text[0] = '\0';
    for (int64_t i = 0; i < r->count; i++) strcat(text, r->text[i]);
    tsr_token_ids got = {0};
    tsr_error err = {0};
    CHECK_OK(tsr_tokenizer_encode(tok, text, strlen(text), 0, &got, &err), &err);
    int n = cJSON_GetArraySize(ids);
    int same = (size_t)n == got.n;
    for (int k = 0; same && k < n; k++)
        same = got.ids[k] == (int32_t)cJSON_GetArrayItem(ids, k)->valuedouble;
    CHECK_MSG(same, "%s: replacement tokenizes to %zu ids, HF input_ids has %d (or ids differ)",
              case_name, got.n, n);
    tsr_token_ids_free(&got);
    free(text);
}

/* Runs every case of tests/fixtures/proc/<family>/cases.json; prints a summary line. */
static void proc_run_cases(const tsr__family_ops *ops, const char *family) {
    char path[1024];
    proc_path(path, sizeof path, "%s", tsr_test_fixture("proc"));
    size_t base_len = strlen(path);
    proc_path(path + base_len, sizeof path - base_len, "/%s", family);
    char base[1024];
    proc_path(base, sizeof base, "%s", path);
    proc_path(path, sizeof path, "%s/cases.json", base);
    cJSON *doc = NULL;
    tsr_error err = {0};
    CHECK_OK(tsr__json_load(path, 0, &doc, &err), &err);
    if (!doc) return;
    const cJSON *tokdir = cJSON_GetObjectItem(doc, "tokenizer");
    char tpath[1024];
    proc_path(tpath, sizeof tpath, "tokenizer/%s", tokdir->valuestring);
    tsr_tokenizer *tok = NULL;
    CHECK_OK(tsr_tokenizer_load(tsr_test_fixture(tpath), &tok, &err), &err);
    double max_diff = 0;
    int n_cases = 0, n_images = 0, n_errors = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(doc, "cases")) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        proc_path(path, sizeof path, "%s/%s", base, cJSON_GetObjectItem(c, "config")->valuestring);
        proc_cfg cfg;
        proc_cfg_load(&cfg, path);
        void *state = NULL;
        CHECK_OK(ops->load(&cfg.mc, &state, &err), &err);
        const cJSON *imgs = cJSON_GetObjectItem(c, "images");
        int n = cJSON_GetArraySize(imgs);
        tsr_image *images = calloc((size_t)n, sizeof *images);
        int ok = state && images;
        for (int i = 0; ok && i < n; i++) {
            proc_path(path, sizeof path, "%s/images/%s", base,
                     cJSON_GetArrayItem(imgs, i)->valuestring);
            ok = proc_decode_rgb(path, &images[i]);
            CHECK_MSG(ok, "%s: cannot decode %s", name, path);
        }
        tsr_tensor_list *out = NULL;
        CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
        tsr__replacements r = {0};
        if (ok && out) {
            tsr_status st = ops->process_images(state, images, n, out, &r, &err);
            const cJSON *want_err = cJSON_GetObjectItem(c, "error");
            if (want_err) {
                /* transformers' reason up to its first comma must appear in ours. */
                char reason[256];
                snprintf(reason, sizeof reason, "%s", want_err->valuestring);
                char *comma = strchr(reason, ',');
                if (comma) *comma = '\0';
                CHECK_MSG(st != TSR_OK && strstr(err.message, reason),
                          "%s: want failure '%s', got %s '%s'", name, reason,
                          tsr_status_name(st), st ? err.message : "");
                CHECK(r.count == 0 && r.text == NULL);
                n_errors++;
            } else {
                CHECK_MSG(st == TSR_OK, "%s: %s %s", name, tsr_status_name(st), err.message);
                if (st == TSR_OK) {
                    CHECK(r.count == n);
                    proc_path(path, sizeof path, "%s/%s", base,
                             cJSON_GetObjectItem(c, "expect")->valuestring);
                    double d = proc_compare(name, path, out);
                    if (d > max_diff) max_diff = d;
                    if (tok) proc_check_ids(name, tok, &r, cJSON_GetObjectItem(c, "ids"));
                }
            }
            n_cases++;
            n_images += n;
        }
        tsr__replacements_free(&r);
        tsr_tensor_list_free(out);
        for (int i = 0; i < n; i++)
            if (images) tsr_image_free(&images[i]);
        free(images);
        if (state) ops->free_state(state);
        proc_cfg_free(&cfg);
    }
    printf("%s: %d cases (%d images, %d expected failures), max abs diff %g\n", family, n_cases,
           n_images, n_errors, max_diff);
    tsr_tokenizer_free(tok);
    cJSON_Delete(doc);
}

/* Fails each allocation of load + process_images in turn (builds with TSR_ALLOC_FAILPOINTS):
 * every failure must be a clean OOM, leaving no state, tensors or replacements behind. */
static void proc_failpoint_walk(const tsr__family_ops *ops, const char *family, const char *config,
                                const char *const *image_names, int n) {
#ifdef TSR_ALLOC_FAILPOINTS
    char base[1024], path[1024];
    proc_path(base, sizeof base, "%s/%s", tsr_test_fixture("proc"), family);
    proc_path(path, sizeof path, "%s/%s", base, config);
    proc_cfg cfg;
    proc_cfg_load(&cfg, path);
    tsr_image images[8] = {{0}};
    int ok = n <= 8;
    for (int i = 0; ok && i < n; i++) {
        proc_path(path, sizeof path, "%s/images/%s", base, image_names[i]);
        ok = proc_decode_rgb(path, &images[i]);
    }
    CHECK(ok);
    int ok_at = 0;
    for (long k = 1; ok && k < 400 && !ok_at; k++) {
        tsr_error err = {0};
        tsr_tensor_list *out = NULL;
        CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
        tsr__replacements r = {0};
        void *state = NULL;
        tsr__alloc_failpoint(k);
        tsr_status st = ops->load(&cfg.mc, &state, &err);
        if (st == TSR_OK) st = ops->process_images(state, images, n, out, &r, &err);
        tsr__alloc_failpoint(0);
        if (st == TSR_OK) {
            ok_at = (int)k;
            CHECK(r.count == n);
        } else {
            CHECK_MSG(st == TSR_ERR_OOM, "failpoint %ld: %s %s", k, tsr_status_name(st),
                      err.message);
            CHECK(r.count == 0 && r.text == NULL);
        }
        tsr__replacements_free(&r);
        tsr_tensor_list_free(out);
        if (state) ops->free_state(state);
    }
    printf("%s/%s: succeeds once %d allocations are allowed\n", family, config,
           ok_at ? ok_at - 1 : -1);
    CHECK(ok_at > 1);
    for (int i = 0; i < n && i < 8; i++) tsr_image_free(&images[i]);
    proc_cfg_free(&cfg);
#else
    (void)ops, (void)family, (void)config, (void)image_names, (void)n;
    tsr_test_skip("allocation failpoints are compiled in the sanitizer build only");
#endif
}

#endif
