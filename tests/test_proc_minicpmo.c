/* MiniCPM-o 2.6 processor against the hub MiniCPMOProcessor (a copy, see
 * tools/refgen/gen_proc_minicpmo.py): tests/fixtures/proc/minicpmo/. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"
#include "harness.h"
#include "tessera_json.h"

static double g_max_pixel_diff, g_max_audio_diff;

static cJSON *load_json(const char *path) {
    size_t len;
    uint8_t *buf = tsr_test_read(path, &len);
    if (!buf) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    return j;
}

typedef struct model {
    char dir[512];
    cJSON *pp, *config, *tok_config;
    tsr__model_configs cfg;
} model;

static void model_open(model *m, const char *name) {
    snprintf(m->dir, sizeof m->dir, "%s/%s", tsr_test_fixture("proc/minicpmo"), name);
    char p[700];
    snprintf(p, sizeof p, "%s/preprocessor_config.json", m->dir);
    m->pp = load_json(p);
    snprintf(p, sizeof p, "%s/config.json", m->dir);
    m->config = load_json(p);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", m->dir);
    m->tok_config = load_json(p);
    m->cfg = (tsr__model_configs){m->dir, m->config, m->pp, NULL, m->tok_config};
    CHECK(m->pp && m->config && m->tok_config);
}

static void model_close(model *m) {
    cJSON_Delete(m->pp);
    cJSON_Delete(m->config);
    cJSON_Delete(m->tok_config);
}

/* PIL convert("RGB"): alpha dropped, gray replicated. */
static int decode_image(const char *file, tsr_image *out) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tsr_test_fixture("proc/minicpmo/img"), file);
    size_t len;
    uint8_t *buf = tsr_test_read(path, &len);
    if (!buf) return 0;
    tsr_error err = {0};
    tsr_status st = tsr_image_decode(buf, len, NULL, out, NULL, &err);
    free(buf);
    return st == TSR_OK;
}

static int decode_audio(const char *file, tsr_audio *out) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tsr_test_fixture("proc/minicpmo/audio"), file);
    size_t len;
    uint8_t *buf = tsr_test_read(path, &len);
    if (!buf) return 0;
    tsr_error err = {0};
    tsr_status st = tsr_audio_decode(buf, len, NULL, out, NULL, &err);
    free(buf);
    return st == TSR_OK;
}

static void run_case(const cJSON *c) {
    tsr_error err = {0};
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    model m;
    model_open(&m, cJSON_GetObjectItem(c, "model")->valuestring);
    /* the processor's chunk_input argument, per case */
    cJSON_DeleteItemFromObject(m.config, "chunk_input");
    cJSON_AddBoolToObject(m.config, "chunk_input", cJSON_IsTrue(cJSON_GetObjectItem(c, "chunk_input")));
    void *state = NULL;
    CHECK_OK(tsr__minicpmo_ops.load(&m.cfg, &state, &err), &err);
    const cJSON *files = cJSON_GetObjectItem(c, "images"), *afiles = cJSON_GetObjectItem(c, "audios");
    int64_t n = cJSON_GetArraySize(files), na = cJSON_GetArraySize(afiles);
    tsr_image *imgs = calloc((size_t)n + 1, sizeof *imgs);
    tsr_audio *auds = calloc((size_t)na + 1, sizeof *auds);
    for (int64_t i = 0; i < n; i++)
        CHECK(decode_image(cJSON_GetArrayItem(files, (int)i)->valuestring, &imgs[i]));
    for (int64_t i = 0; i < na; i++)
        CHECK(decode_audio(cJSON_GetArrayItem(afiles, (int)i)->valuestring, &auds[i]));
    tsr_tensor_list *out = NULL;
    tsr__replacements repl = {0}, arepl = {0};
    CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
    const cJSON *error = cJSON_GetObjectItem(c, "error");
    if (error) { /* HF raised ValueError: same reason here */
        tsr_status st = tsr__minicpmo_ops.process_images(state, imgs, n, out, &repl, &err);
        CHECK_MSG(st == TSR_ERR_INVALID_ARG && strstr(err.message, error->valuestring),
                  "%s: %s '%s'", name, tsr_status_name(st), err.message);
        goto done;
    }
    if (n) CHECK_OK(tsr__minicpmo_ops.process_images(state, imgs, n, out, &repl, &err), &err);
    if (na) CHECK_OK(tsr__minicpmo_ops.process_audio(state, auds, na, NULL, out, &arepl, &err), &err);
    char *t1 = tsr_test_substitute(cJSON_GetObjectItem(c, "prompt")->valuestring,
                                   tsr__minicpmo_ops.image_placeholder, repl.text, repl.count);
    char *text = tsr_test_substitute(t1, tsr__minicpmo_ops.audio_placeholder, arepl.text,
                                     arepl.count);
    free(t1);
    tsr_tokenizer *tok = NULL;
    tsr_token_ids ids = {0};
    CHECK_OK(tsr_tokenizer_load(m.dir, &tok, &err), &err);
    if (tok) CHECK_OK(tsr_tokenizer_encode(tok, text, strlen(text), 1, &ids, &err), &err);
    const cJSON *want_ids = cJSON_GetObjectItem(c, "input_ids");
    int same = (int64_t)ids.n == cJSON_GetArraySize(want_ids);
    for (size_t i = 0; same && i < ids.n; i++)
        same = ids.ids[i] == cJSON_GetArrayItem(want_ids, (int)i)->valueint;
    CHECK_MSG(same, "%s: input_ids differ (%zu vs %d)", name, ids.n, cJSON_GetArraySize(want_ids));
    CHECK_OK(tsr__minicpmo_ops.finish(state, ids.ids, (int64_t)ids.n, out, &err), &err);

    char path[700];
    snprintf(path, sizeof path, "%s/%s", tsr_test_fixture("proc/minicpmo"),
             cJSON_GetObjectItem(c, "outputs")->valuestring);
    tsr_safetensors *st = NULL;
    CHECK_OK(tsr_test_open_safetensors(path, &st, &err), &err);
    int64_t compared = 0;
    for (int64_t i = 0; st && i < tsr_safetensors_count(st); i++) {
        const char *tn = tsr_safetensors_name(st, i);
        if (!strcmp(tn, "input_ids")) continue;
        tsr_tensor want;
        CHECK_OK(tsr_safetensors_get(st, tn, &want, &err), &err);
        int audio = strstr(tn, "audio") != NULL;
        double d = tsr_test_compare_tensor(name, tn, tsr_tensor_list_get(out, tn), &want,
                                           audio ? 1e-4 : 1e-6);
        double *g = audio ? &g_max_audio_diff : &g_max_pixel_diff;
        *g = fmax(*g, d);
        compared++;
    }
    CHECK_MSG(compared == tsr_tensor_list_count(out), "%s: %lld tensors compared, %lld produced",
              name, (long long)compared, (long long)tsr_tensor_list_count(out));
    tsr_test_close_safetensors(st);
    tsr_token_ids_free(&ids);
    tsr_tokenizer_free(tok);
    free(text);
done:
    tsr__replacements_free(&repl);
    tsr__replacements_free(&arepl);
    tsr_tensor_list_free(out);
    for (int64_t i = 0; i < n; i++) tsr_image_free(&imgs[i]);
    for (int64_t i = 0; i < na; i++) tsr_audio_free(&auds[i]);
    free(imgs);
    free(auds);
    tsr__minicpmo_ops.free_state(state);
    model_close(&m);
}

static cJSON *g_cases;

static void test_cases(void) {
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g_cases, "cases")) {
        run_case(c);
        n++;
    }
    CHECK(n >= 10);
    printf("  %d cases, max |pixel diff| = %g, max |audio feature diff| = %g\n", n,
           g_max_pixel_diff, g_max_audio_diff);
}

static void test_bad_configs(void) {
    static const struct {
        const char *pp, *config;
        tsr_status want;
    } bad[] = {
        {"{\"max_slice_nums\": 0}", "{}", TSR_ERR_FORMAT},
        {"{\"max_slice_nums\": \"9\"}", "{}", TSR_ERR_FORMAT},
        {"{\"scale_resolution\": -448}", "{}", TSR_ERR_FORMAT},
        {"{\"patch_size\": 0}", "{}", TSR_ERR_FORMAT},
        {"{\"image_feature_size\": 1.5}", "{}", TSR_ERR_FORMAT},
        {"{\"norm_std\": [0.5, 0.0, 0.5]}", "{}", TSR_ERR_FORMAT},
        {"{\"norm_mean\": [0.5]}", "{}", TSR_ERR_FORMAT},
        {"{\"use_image_id\": \"yes\"}", "{}", TSR_ERR_FORMAT},
        {"{\"unk_token\": 3}", "{}", TSR_ERR_FORMAT},
        {"{\"feature_size\": 0}", "{}", TSR_ERR_FORMAT},
        {"{\"sampling_rate\": 8000}", "{}", TSR_ERR_UNSUPPORTED},
        {"{}", "{\"audio_chunk_length\": 0.01}", TSR_ERR_FORMAT},
        {"{}", "{\"audio_pool_step\": 0}", TSR_ERR_FORMAT},
    };
    model m;
    model_open(&m, "model");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tsr_error err = {0};
        cJSON *pp = cJSON_Parse(bad[i].pp), *config = cJSON_Parse(bad[i].config);
        tsr__model_configs cfg = m.cfg;
        cfg.preprocessor_config = pp;
        cfg.config = config;
        void *state = (void *)1;
        tsr_status st = tsr__minicpmo_ops.load(&cfg, &state, &err);
        CHECK_MSG(st == bad[i].want && state == NULL, "%s %s -> %s (%s)", bad[i].pp, bad[i].config,
                  tsr_status_name(st), err.message);
        cJSON_Delete(pp);
        cJSON_Delete(config);
    }
    model_close(&m);
}

static void test_bad_inputs(void) {
    model m;
    model_open(&m, "model");
    tsr_error err = {0};
    void *state = NULL;
    CHECK_OK(tsr__minicpmo_ops.load(&m.cfg, &state, &err), &err);
    tsr_tensor_list *out = NULL;
    CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
    tsr__replacements repl = {0};
    float x[100] = {0};
    tsr_audio a8k = {8000, 100, x};
    CHECK(tsr__minicpmo_ops.process_audio(state, &a8k, 1, NULL, out, &repl, &err) == TSR_ERR_INVALID_ARG);
    tsr_audio empty = {16000, 0, x};
    CHECK(tsr__minicpmo_ops.process_audio(state, &empty, 1, NULL, out, &repl, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr__minicpmo_ops.process_images(state, NULL, 0, out, &repl, &err) == TSR_ERR_INVALID_ARG);
    /* unbalanced bounds: torch.hstack / the processor's assert fail */
    int32_t ids[] = {1, 2, 3};
    ids[0] = 4022; /* <image> without </image> */
    CHECK(tsr__minicpmo_ops.finish(state, ids, 3, out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_tensor_list_count(out) == 0);
    tsr_tensor_list_free(out);
    tsr__minicpmo_ops.free_state(state);
    model_close(&m);
}

static void test_alloc_failures(void) {
    model m;
    model_open(&m, "model");
    tsr_error err = {0};
    tsr_image img;
    CHECK(decode_image("rgb_100x75.png", &img));
    float x[3000];
    for (int i = 0; i < 3000; i++) x[i] = (float)((i % 50) - 25) / 50.0f;
    tsr_audio clip = {16000, 3000, x};
    for (long n = 1; n < 400; n++) {
        void *state = NULL;
        tsr_tensor_list *out = NULL;
        tsr__replacements repl = {0}, arepl = {0};
        tsr__alloc_failpoint(n);
        tsr_status st = tsr__minicpmo_ops.load(&m.cfg, &state, &err);
        if (!st) st = tsr_tensor_list_new(&out, &err);
        if (!st) st = tsr__minicpmo_ops.process_images(state, &img, 1, out, &repl, &err);
        if (!st) st = tsr__minicpmo_ops.process_audio(state, &clip, 1, NULL, out, &arepl, &err);
        int32_t ids[] = {4022, 7, 4023};
        if (!st) st = tsr__minicpmo_ops.finish(state, ids, 3, out, &err);
        long made = tsr__alloc_failpoint(0);
        tsr__replacements_free(&repl);
        tsr__replacements_free(&arepl);
        tsr_tensor_list_free(out);
        if (state) tsr__minicpmo_ops.free_state(state);
        if (made < n) {
            CHECK(st == TSR_OK);
            break;
        }
        CHECK_MSG(st == TSR_ERR_OOM, "failpoint %ld: %s %s", n, tsr_status_name(st), err.message);
    }
    tsr_image_free(&img);
    model_close(&m);
}

int main(void) {
    g_cases = load_json(tsr_test_fixture("proc/minicpmo/cases.json"));
    CHECK(g_cases != NULL);
    if (g_cases) tsr_test_run("minicpmo_hf_cases", test_cases);
    tsr_test_run("minicpmo_bad_configs", test_bad_configs);
    tsr_test_run("minicpmo_bad_inputs", test_bad_inputs);
    tsr_test_run("minicpmo_alloc_failures", test_alloc_failures);
    cJSON_Delete(g_cases);
    return tsr_test_finish();
}
