/* MLlama processor against transformers' MllamaProcessor (PIL image processor):
 * tests/fixtures/proc/mllama/, written by tools/refgen/gen_proc_mllama.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"
#include "harness.h"
#include "mllama/mllama.h"
#include "tessera_json.h"

static double g_max_pixel_diff;

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
    snprintf(m->dir, sizeof m->dir, "%s", tsr_test_fixture("proc/mllama"));
    size_t n = strlen(m->dir);
    snprintf(m->dir + n, sizeof m->dir - n, "/%s", name);
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

/* Decodes as transformers' convert_to_rgb: RGBA composited over white. */
static int decode_image(const char *file, tsr_image *out) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tsr_test_fixture("proc/mllama/img"), file);
    size_t len;
    uint8_t *buf = tsr_test_read(path, &len);
    if (!buf) return 0;
    tsr_error err = {0};
    tsr_image_decode_params p = tsr_image_decode_params_default();
    p.channels = 4;
    tsr_image rgba;
    tsr_status st = tsr_image_decode(buf, len, &p, &rgba, NULL, &err);
    free(buf);
    if (st) return 0;
    st = tsr_image_composite_white(&rgba, out, &err);
    tsr_image_free(&rgba);
    return st == TSR_OK;
}

static void run_case(const cJSON *c) {
    tsr_error err = {0};
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    model m;
    model_open(&m, cJSON_GetObjectItem(c, "model")->valuestring);
    void *state = NULL;
    CHECK_OK(tsr__mllama_ops.load(&m.cfg, &state, &err), &err);
    const cJSON *files = cJSON_GetObjectItem(c, "images");
    int64_t n = cJSON_GetArraySize(files);
    tsr_image *imgs = calloc((size_t)n, sizeof *imgs);
    for (int64_t i = 0; i < n; i++)
        CHECK(decode_image(cJSON_GetArrayItem(files, (int)i)->valuestring, &imgs[i]));
    tsr_tensor_list *out = NULL;
    tsr__replacements repl = {0};
    CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
    CHECK_OK(tsr__mllama_ops.process_images(state, imgs, n, out, &repl, &err), &err);
    CHECK(repl.count == n);

    /* text: bos insertion, substitution, tokenizer */
    char *prompt = NULL;
    CHECK_OK(tsr__mllama_build_prompt(cJSON_GetObjectItem(c, "prompt")->valuestring,
                                      "<|begin_of_text|>", "<|image|>", &prompt, &err),
             &err);
    char *text = prompt ? tsr_test_substitute(prompt, tsr__mllama_ops.image_placeholder,
                                              repl.text, repl.count)
                        : NULL;
    tsr_tokenizer *tok = NULL;
    tsr_token_ids ids = {0};
    CHECK_OK(tsr_tokenizer_load(m.dir, &tok, &err), &err);
    if (tok && text)
        CHECK_OK(tsr_tokenizer_encode(tok, text, strlen(text),
                                      cJSON_IsTrue(cJSON_GetObjectItem(c, "add_special_tokens")),
                                      &ids, &err),
                 &err);
    const cJSON *want_ids = cJSON_GetObjectItem(c, "input_ids");
    int same = (int64_t)ids.n == cJSON_GetArraySize(want_ids);
    for (size_t i = 0; same && i < ids.n; i++)
        same = ids.ids[i] == cJSON_GetArrayItem(want_ids, (int)i)->valueint;
    CHECK_MSG(same, "%s: input_ids differ", name);
    if (ids.n) CHECK_OK(tsr__mllama_ops.finish(state, ids.ids, (int64_t)ids.n, out, &err), &err);

    /* num_tiles against the image processor's nested list */
    const tsr_tensor *nt = tsr_tensor_list_get(out, "num_tiles");
    const cJSON *want_nt = cJSON_GetObjectItem(c, "num_tiles");
    CHECK(nt && nt->shape[1] == cJSON_GetArraySize(want_nt));
    for (int64_t i = 0; nt && i < nt->shape[1] && i < cJSON_GetArraySize(want_nt); i++)
        CHECK(((int64_t *)nt->data)[i] == cJSON_GetArrayItem(want_nt, (int)i)->valueint);

    char path[700];
    snprintf(path, sizeof path, "%s/%s", tsr_test_fixture("proc/mllama"),
             cJSON_GetObjectItem(c, "outputs")->valuestring);
    tsr_safetensors *st = NULL;
    CHECK_OK(tsr_test_open_safetensors(path, &st, &err), &err);
    static const char *names[] = {"pixel_values", "aspect_ratio_ids", "aspect_ratio_mask",
                                  "cross_attention_mask"};
    for (size_t i = 0; st && i < sizeof names / sizeof *names; i++) {
        tsr_tensor want;
        CHECK_OK(tsr_safetensors_get(st, names[i], &want, &err), &err);
        g_max_pixel_diff = fmax(g_max_pixel_diff,
                                tsr_test_compare_tensor(name, names[i],
                                                        tsr_tensor_list_get(out, names[i]), &want,
                                                        1e-6));
    }
    tsr_test_close_safetensors(st);
    tsr_token_ids_free(&ids);
    tsr_tokenizer_free(tok);
    free(text);
    tsr__free(prompt);
    tsr__replacements_free(&repl);
    tsr_tensor_list_free(out);
    for (int64_t i = 0; i < n; i++) tsr_image_free(&imgs[i]);
    free(imgs);
    tsr__mllama_ops.free_state(state);
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
    printf("  %d cases, max |pixel_values diff| = %g\n", n, g_max_pixel_diff);
}

/* build_string_from_input examples from transformers' docstring and edge cases. */
static void test_build_prompt(void) {
    static const char *cases[][2] = {
        {"Hello world", "<B>Hello world"},
        {"<|image|>Hello world", "<|image|><B>Hello world"},
        {"<|image|><|image|>x<|image|>", "<|image|><|image|><B>x<|image|>"},
        {"<B>Hello world", "<B>Hello world"},
        {"x<|image|><B>", "x<|image|><B>"},
        {"", "<B>"},
        {"<|image|>", "<|image|><B>"},
    };
    tsr_error err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *s = NULL;
        CHECK_OK(tsr__mllama_build_prompt(cases[i][0], "<B>", "<|image|>", &s, &err), &err);
        CHECK_MSG(s && !strcmp(s, cases[i][1]), "'%s' -> '%s'", cases[i][0], s ? s : "(null)");
        tsr__free(s);
    }
    char *s = NULL;
    CHECK(tsr__mllama_build_prompt(NULL, "<B>", "<|image|>", &s, &err) == TSR_ERR_INVALID_ARG);
}

/* Ranges of get_cross_attention_token_mask (examples of the HF rule). */
static void test_mask_rule(void) {
    model m;
    model_open(&m, "model");
    tsr_error err = {0};
    void *state = NULL;
    CHECK_OK(tsr__mllama_ops.load(&m.cfg, &state, &err), &err);
    const int32_t I = 4256, B = 4000;
    struct {
        int32_t ids[8];
        int n, k, tiles[3];
        int64_t range[3][2];
    } cases[] = {
        {{I, B, 5, I, I, 6, 7}, 7, 3, {1, 2, 4}, {{0, 3}, {3, 7}, {4, 7}}},
        {{B, 5, 6, I, 7, 8}, 6, 1, {3}, {{3, 6}}},
        {{I, I, B, 5}, 4, 2, {4, 1}, {{0, 4}, {1, 4}}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        tsr_tensor_list *out = NULL;
        CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
        tsr_tensor nt;
        CHECK_OK(tsr_tensor_alloc(&nt, TSR_DTYPE_I64, 2, (int64_t[]){1, cases[c].k}, &err), &err);
        for (int i = 0; i < cases[c].k; i++) ((int64_t *)nt.data)[i] = cases[c].tiles[i];
        CHECK_OK(tsr_tensor_list_add(out, "num_tiles", &nt, &err), &err);
        CHECK_OK(tsr__mllama_ops.finish(state, cases[c].ids, cases[c].n, out, &err), &err);
        const tsr_tensor *mk = tsr_tensor_list_get(out, "cross_attention_mask");
        CHECK(mk && mk->shape[1] == cases[c].n && mk->shape[2] == cases[c].k && mk->shape[3] == 4);
        for (int p = 0; mk && p < cases[c].n; p++)
            for (int i = 0; i < cases[c].k; i++)
                for (int t = 0; t < 4; t++) {
                    int want = p >= cases[c].range[i][0] && p < cases[c].range[i][1] &&
                               t < cases[c].tiles[i];
                    CHECK_MSG(((int64_t *)mk->data)[(p * cases[c].k + i) * 4 + t] == want,
                              "case %zu p %d img %d tile %d", c, p, i, t);
                }
        tsr_tensor_list_free(out);
    }
    /* image tokens without images, or a count mismatch: HF's ValueError */
    tsr_tensor_list *out = NULL;
    CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
    int32_t ids[] = {I, B, 5};
    CHECK(tsr__mllama_ops.finish(state, ids, 3, out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "should be the same as the number of images") != NULL);
    int32_t text_only[] = {B, 5};
    CHECK_OK(tsr__mllama_ops.finish(state, text_only, 2, out, &err), &err);
    CHECK(tsr_tensor_list_count(out) == 0);
    tsr_tensor_list_free(out);
    tsr__mllama_ops.free_state(state);
    model_close(&m);
}

/* Configs HF refuses (ValueError at construction) or that are malformed: FORMAT at load. */
static void test_bad_configs(void) {
    static const struct {
        const char *json;
        tsr_status want;
    } bad[] = {
        {"{\"do_pad\": false}", TSR_ERR_FORMAT},
        {"{\"do_resize\": false}", TSR_ERR_FORMAT},
        {"{\"max_image_tiles\": 0}", TSR_ERR_FORMAT},
        {"{\"max_image_tiles\": -3}", TSR_ERR_FORMAT},
        {"{\"max_image_tiles\": \"4\"}", TSR_ERR_FORMAT},
        {"{\"max_image_tiles\": 1e9}", TSR_ERR_FORMAT},
        {"{\"size\": {\"height\": 560, \"width\": 448}}", TSR_ERR_FORMAT},
        {"{\"size\": {\"shortest_edge\": 560}}", TSR_ERR_FORMAT},
        {"{\"size\": 560}", TSR_ERR_FORMAT},
        {"{\"size\": {\"height\": -1, \"width\": -1}}", TSR_ERR_FORMAT},
        {"{\"image_mean\": [0.5, 0.5]}", TSR_ERR_FORMAT},
        {"{\"image_std\": [0.5, 0, 0.5]}", TSR_ERR_FORMAT},
        {"{\"image_std\": \"x\"}", TSR_ERR_FORMAT},
        {"{\"resample\": 9}", TSR_ERR_FORMAT},
        {"{\"resample\": 4}", TSR_ERR_UNSUPPORTED},
        {"{\"do_rescale\": 3}", TSR_ERR_FORMAT},
    };
    model m;
    model_open(&m, "model");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tsr_error err = {0};
        cJSON *pp = cJSON_Parse(bad[i].json);
        tsr__model_configs cfg = m.cfg;
        cfg.preprocessor_config = pp;
        void *state = (void *)1;
        tsr_status st = tsr__mllama_ops.load(&cfg, &state, &err);
        CHECK_MSG(st == bad[i].want && state == NULL, "%s -> %s (%s)", bad[i].json,
                  tsr_status_name(st), err.message);
        cJSON_Delete(pp);
    }
    /* no preprocessor config, no image token id anywhere */
    tsr_error err = {0};
    void *state = NULL;
    tsr__model_configs cfg = m.cfg;
    cfg.preprocessor_config = NULL;
    CHECK(tsr__mllama_ops.load(&cfg, &state, &err) == TSR_ERR_FORMAT);
    cfg = m.cfg;
    cfg.tokenizer_config = NULL;
    cfg.config = NULL;
    CHECK(tsr__mllama_ops.load(&cfg, &state, &err) == TSR_ERR_FORMAT);
    cJSON *dec = cJSON_Parse("{\"added_tokens_decoder\": {\"x7\": {\"content\": \"<|image|>\"}}}");
    cfg.tokenizer_config = dec;
    CHECK(tsr__mllama_ops.load(&cfg, &state, &err) == TSR_ERR_FORMAT);
    cJSON_Delete(dec);
    model_close(&m);
}

/* Bad inputs: no images, a non-RGB image. */
static void test_bad_inputs(void) {
    model m;
    model_open(&m, "model");
    tsr_error err = {0};
    void *state = NULL;
    CHECK_OK(tsr__mllama_ops.load(&m.cfg, &state, &err), &err);
    tsr_tensor_list *out = NULL;
    CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
    tsr__replacements repl = {0};
    CHECK(tsr__mllama_ops.process_images(state, NULL, 0, out, &repl, &err) == TSR_ERR_INVALID_ARG);
    tsr_image gray;
    CHECK_OK(tsr_image_alloc(&gray, 4, 4, 4, &err), &err);
    CHECK(tsr__mllama_ops.process_images(state, &gray, 1, out, &repl, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_tensor_list_count(out) == 0 && repl.count == 0);
    tsr_image_free(&gray);
    tsr_tensor_list_free(out);
    tsr__mllama_ops.free_state(state);
    model_close(&m);
}

/* Every allocation failure is a clean OOM. */
static void test_alloc_failures(void) {
    model m;
    model_open(&m, "model");
    tsr_error err = {0};
    tsr_image img;
    CHECK(decode_image("rgb_97x61.png", &img));
    for (long n = 1; n < 200; n++) {
        void *state = NULL;
        tsr_tensor_list *out = NULL;
        tsr__replacements repl = {0};
        tsr__alloc_failpoint(n);
        tsr_status st = tsr__mllama_ops.load(&m.cfg, &state, &err);
        if (!st) st = tsr_tensor_list_new(&out, &err);
        if (!st) st = tsr__mllama_ops.process_images(state, &img, 1, out, &repl, &err);
        int32_t ids[] = {4256, 4000, 7};
        if (!st) st = tsr__mllama_ops.finish(state, ids, 3, out, &err);
        long made = tsr__alloc_failpoint(0);
        tsr__replacements_free(&repl);
        tsr_tensor_list_free(out);
        if (state) tsr__mllama_ops.free_state(state);
        if (made < n) {
            CHECK(st == TSR_OK);
            break;
        }
        CHECK_MSG(st == TSR_ERR_OOM, "failpoint %ld: %s", n, tsr_status_name(st));
    }
    tsr_image_free(&img);
    model_close(&m);
}

int main(void) {
    g_cases = load_json(tsr_test_fixture("proc/mllama/cases.json"));
    CHECK(g_cases != NULL);
    if (g_cases) tsr_test_run("mllama_hf_cases", test_cases);
    tsr_test_run("mllama_build_prompt", test_build_prompt);
    tsr_test_run("mllama_cross_attention_rule", test_mask_rule);
    tsr_test_run("mllama_bad_configs", test_bad_configs);
    tsr_test_run("mllama_bad_inputs", test_bad_inputs);
    tsr_test_run("mllama_alloc_failures", test_alloc_failures);
    cJSON_Delete(g_cases);
    return tsr_test_finish();
}
