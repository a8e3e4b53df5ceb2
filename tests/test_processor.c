/* The whole processor pipeline (tsr_processor_load + tsr_processor_run_prompt, and
 * `tessera preprocess`) against transformers' processor outputs: for every family whose
 * fixtures follow tests/fixtures/proc/<family>/cases.json (model dir, prompt with
 * placeholders, image files, add_special_tokens, expected input_ids and tensors), every
 * tensor HF returned must come out with the same name, dtype, shape and values. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MAX_IMAGES 16

static cJSON *load_json(const char *path) {
    size_t len;
    char *text = (char *)tsr_test_read(path, &len);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return j;
}

static double value_at(const tsr_tensor *t, int64_t i) {
    switch (t->dtype) {
    case TSR_DTYPE_U8: return ((const uint8_t *)t->data)[i];
    case TSR_DTYPE_I32: return ((const int32_t *)t->data)[i];
    case TSR_DTYPE_I64: return (double)((const int64_t *)t->data)[i];
    case TSR_DTYPE_F32: return ((const float *)t->data)[i];
    default: return NAN;
    }
}

/* got must equal want: name, dtype, shape; ints exactly, floats within 1e-6 (pixels) or
 * 1e-4 (audio features). Returns the max abs difference. */
static double compare(const char *ctx, const char *name, const tsr_tensor *got,
                      const tsr_tensor *want) {
    CHECK_MSG(got != NULL, "%s: output '%s' missing", ctx, name);
    if (!got) return INFINITY;
    /* A leading batch dimension of 1 may be squeezed in the reference file. */
    int gd = 0, wd = 0;
    while (got->ndim - gd > want->ndim - wd && got->shape[gd] == 1) gd++;
    while (want->ndim - wd > got->ndim - gd && want->shape[wd] == 1) wd++;
    int same_shape = got->dtype == want->dtype && got->ndim - gd == want->ndim - wd;
    for (int d = 0; same_shape && d < got->ndim - gd; d++)
        same_shape = got->shape[gd + d] == want->shape[wd + d];
    CHECK_MSG(same_shape, "%s: '%s' dtype/shape differ (%s vs %s, rank %d vs %d)", ctx, name,
              tsr_dtype_name(got->dtype), tsr_dtype_name(want->dtype), got->ndim, want->ndim);
    if (!same_shape) return INFINITY;
    double tol = strstr(name, "audio") ? 1e-4 : 1e-6, max_diff = 0;
    int64_t n = tsr_tensor_numel(got), bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(value_at(got, i) - value_at(want, i));
        if (!(d <= (want->dtype == TSR_DTYPE_F32 ? tol : 0))) bad++;
        if (d > max_diff || d != d) max_diff = d;
    }
    CHECK_MSG(bad == 0, "%s: '%s' has %lld values off (max abs diff %g)", ctx, name,
              (long long)bad, max_diff);
    return max_diff;
}

/* Runs one case through the library; compares with the case's safetensors. */
static void run_case(const char *family, const cJSON *c, double *max_pixel_diff) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    char ctx[512], dir[1024], path[1200];
    snprintf(ctx, sizeof ctx, "%.200s/%.200s", family, name);
    snprintf(dir, sizeof dir, "%s",
             tsr_test_fixture("proc/"));
    strncat(dir, family, sizeof dir - strlen(dir) - 1);
    char model[1100];
    snprintf(model, sizeof model, "%s/%s", dir, cJSON_GetObjectItem(c, "model")->valuestring);

    tsr_error err = {0};
    tsr_processor *p = NULL;
    CHECK_OK(tsr_processor_load(model, NULL, &p, &err), &err);
    if (!p) return;
    tsr_media media[MAX_IMAGES];
    uint8_t *bytes[MAX_IMAGES] = {0};
    size_t n = 0;
    memset(media, 0, sizeof media);
    /* Media in prompt order: the generators list images and audio separately, and every
     * prompt of theirs with both names the images first. */
    const char *kinds[2] = {"images", "audios"};
    const char *dirs[2] = {"img", "audio"};
    for (int k = 0; k < 2; k++) {
        const cJSON *items = cJSON_GetObjectItem(c, kinds[k]);
        for (const cJSON *it = items ? items->child : NULL; it && n < MAX_IMAGES;
             it = it->next, n++) {
            snprintf(path, sizeof path, "%s/%s/%s", dir, dirs[k], it->valuestring);
            bytes[n] = tsr_test_read(path, &media[n].len);
            CHECK_MSG(bytes[n] != NULL, "%s: cannot read %s", ctx, path);
            media[n].kind = k ? TSR_MEDIA_AUDIO : TSR_MEDIA_IMAGE;
            media[n].data = bytes[n];
        }
    }
    const cJSON *special = cJSON_GetObjectItem(c, "add_special_tokens");
    const cJSON *error = cJSON_GetObjectItem(c, "error");
    tsr_tensor_list *out = NULL;
    tsr_status st = tsr_processor_run_prompt(p, cJSON_GetObjectItem(c, "prompt")->valuestring,
                                             !cJSON_IsFalse(special), media, n, &out, &err);
    if (cJSON_IsString(error)) {
        /* HF raised: Tessera refuses with the same reason. */
        CHECK_MSG(st != TSR_OK && strstr(err.message, error->valuestring), "%s: %s '%s'", ctx,
                  tsr_status_name(st), err.message);
        for (size_t i = 0; i < n; i++) free(bytes[i]);
        tsr_processor_free(p);
        return;
    }
    CHECK_OK(st, &err);

    snprintf(path, sizeof path, "%s/%s", dir, cJSON_GetObjectItem(c, "outputs")->valuestring);
    tsr_safetensors *want = NULL;
    CHECK_OK(tsr_test_open_safetensors(path, &want, &err), &err);
    for (int64_t i = 0; out && want && i < tsr_safetensors_count(want); i++) {
        const char *tname = tsr_safetensors_name(want, i);
        tsr_tensor w;
        CHECK_OK(tsr_safetensors_get(want, tname, &w, &err), &err);
        double d = compare(ctx, tname, tsr_tensor_list_get(out, tname), &w);
        if (w.dtype == TSR_DTYPE_F32 && d > *max_pixel_diff) *max_pixel_diff = d;
    }
    /* input_ids are also in the case file itself (the ids, or their count) */
    const tsr_tensor *ids = tsr_tensor_list_get(out, "input_ids");
    const cJSON *want_ids = cJSON_GetObjectItem(c, "input_ids");
    int64_t want_n = cJSON_IsNumber(want_ids) ? (int64_t)want_ids->valuedouble
                                              : cJSON_GetArraySize(want_ids);
    int same = ids && want_ids && tsr_tensor_numel(ids) == want_n;
    if (cJSON_IsNumber(want_ids)) want_ids = NULL;
    int64_t k = 0;
    for (const cJSON *v = cJSON_IsArray(want_ids) ? want_ids->child : NULL; same && v;
         v = v->next, k++)
        same = ((const int64_t *)ids->data)[k] == (int64_t)v->valuedouble;
    CHECK_MSG(same, "%s: input_ids differ", ctx);

    tsr_test_close_safetensors(want);
    tsr_tensor_list_free(out);
    for (size_t i = 0; i < n; i++) free(bytes[i]);
    tsr_processor_free(p);
}

static void test_families(void) {
    DIR *d = opendir(tsr_test_fixture("proc"));
    CHECK(d != NULL);
    int families = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char rel[512];
        snprintf(rel, sizeof rel, "proc/%s/cases.json", e->d_name);
        cJSON *cases = load_json(tsr_test_fixture(rel));
        const cJSON *list = cJSON_GetObjectItem(cases, "cases");
        /* Only families whose cases name a model dir, a prompt and the outputs file. */
        if (!list || !list->child || !cJSON_GetObjectItem(list->child, "prompt") ||
            !cJSON_GetObjectItem(list->child, "model") ||
            !cJSON_GetObjectItem(list->child, "outputs")) {
            cJSON_Delete(cases);
            continue;
        }
        double max_diff = 0;
        int n = 0;
        for (const cJSON *c = list->child; c; c = c->next) {
            /* Cases that set a call argument the model configs do not hold are the family
             * tests' business (MiniCPM-o chunk_input=False). */
            if (cJSON_IsFalse(cJSON_GetObjectItem(c, "chunk_input"))) continue;
            run_case(e->d_name, c, &max_diff);
            n++;
        }
        printf("%s: %d cases through tsr_processor_run_prompt, max abs float diff %g\n",
               e->d_name, n, max_diff);
        families++;
        cJSON_Delete(cases);
    }
    if (d) closedir(d);
    CHECK(families >= 1);
}

static void test_errors(void) {
    tsr_error err = {0};
    tsr_processor *p = (tsr_processor *)1;
    CHECK(tsr_processor_load("/nonexistent", NULL, &p, &err) == TSR_ERR_IO && p == NULL);
    CHECK(tsr_processor_load(NULL, NULL, &p, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_processor_load(tsr_test_fixture("tokenizer/qwen2"), NULL, &p, &err) ==
          TSR_ERR_IO); /* no config.json */
    tsr_processor_free(NULL);

    /* a model dir of a processor fixture: placeholder / media count mismatches */
    cJSON *cases = load_json(tsr_test_fixture("proc/mllama/cases.json"));
    if (!cases) {
        tsr_test_skip("no mllama processor fixtures");
        return;
    }
    cJSON_Delete(cases);
    CHECK_OK(tsr_processor_load(tsr_test_fixture("proc/mllama/model"), NULL, &p, &err), &err);
    tsr_tensor_list *out = NULL;
    CHECK(tsr_processor_run_prompt(p, "<|image|>x", 0, NULL, 0, &out, &err) ==
          TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "1 image and 0 audio placeholders but 0 images") != NULL);
    uint8_t junk[16] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
    tsr_media m = {TSR_MEDIA_IMAGE, junk, sizeof junk, NULL, NULL};
    CHECK(tsr_processor_run_prompt(p, "<|image|>x", 0, &m, 1, &out, &err) == TSR_ERR_FORMAT);
    CHECK(strstr(err.message, "media[0]: ") != NULL);
    tsr_media a = {TSR_MEDIA_AUDIO, junk, sizeof junk, NULL, NULL};
    CHECK(tsr_processor_run_prompt(p, "x", 0, &a, 1, &out, &err) == TSR_ERR_UNSUPPORTED);
    CHECK(out == NULL);
    tsr_processor_free(p);
}

int main(void) {
    tsr_test_run("families", test_families);
    tsr_test_run("errors", test_errors);
    return tsr_test_finish();
}
