/* Mistral3 (Mistral-Small-3.1) end to end against transformers
 * (tests/fixtures/models/mistral3, tools/refgen/gen_model_mistral3.py): for each raw prompt
 * with [IMG] placeholders, the processor's ids, the projected image features that replace the
 * [IMG] tokens, the last prefill logits and 32 greedy ids; the checkpoint stored in bf16 (as
 * released); then checkpoints with a missing or wrongly shaped encoder tensor, the
 * transformers 5 in-memory tensor names, and processor outputs whose pixel_values and
 * image_sizes disagree. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define DIR_REL "models/mistral3"
#define MODEL_REL DIR_REL "/model"
#define TOL 1e-4

static tsr_model *g_model;
static tsr_safetensors *g_expected;
static cJSON *g_cases;
static char g_tmp[256];
static double g_max_embeds, g_max_logits;

static const tsr_tensor *expected(const char *name, const char *what) {
    char key[160];
    static tsr_tensor t;
    tsr_error err = {0};
    snprintf(key, sizeof key, "%s.%s", name, what);
    if (tsr_safetensors_get(g_expected, key, &t, &err)) return NULL;
    return &t;
}

/* The processor output of a fixture case (NULL on failure, recorded). */
static tsr_tensor_list *run_processor(const tsr_model *model, const cJSON *c) {
    tsr_tensor_list *in = NULL;
    tsr_error err = {0};
    CHECK_OK(tsr_test_case_inputs(model, c, &in, &err), &err);
    return in;
}

static void run_case(const cJSON *c) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    tsr_error err = {0};
    tsr_tensor_list *in = run_processor(g_model, c);
    if (!in) return;
    /* The processor's ids (I64 [1, T]) as transformers gave them (I64 [T]). */
    const tsr_tensor *ids = tsr_tensor_list_get(in, "input_ids"), *want_ids = expected(name, "input_ids");
    CHECK(ids && want_ids);
    if (ids && want_ids) {
        tsr_tensor flat = *ids;
        flat.ndim = 1;
        flat.shape[0] = ids->shape[ids->ndim - 1];
        flat.strides[0] = 1;
        tsr_test_compare_tensor(name, "input_ids", &flat, want_ids, 0.0);
    }
    tsr_session_params sp = tsr_session_params_default();
    sp.n_threads = 2;
    sp.n_ctx = 512;
    tsr_session *s = NULL;
    tsr_prompt *p = NULL;
    CHECK_OK(tsr_session_new(g_model, &sp, &s, &err), &err);
    if (s) CHECK_OK(tsr_prompt_new(g_model, s, in, &p, &err), &err);
    tsr_tensor_list_free(in);
    if (!p) {
        tsr_session_free(s);
        return;
    }
    const tsr_tensor *want_emb = expected(name, "embeds");
    const tsr_tensor *got_emb = tsr_tensor_list_get(tsr_prompt_tensors(p), "embeds");
    double d_emb = 0.0;
    if (want_emb) {
        d_emb = tsr_test_compare_tensor(name, "embeds", got_emb, want_emb, TOL);
        if (d_emb > g_max_embeds) g_max_embeds = d_emb;
    } else {
        CHECK_MSG(got_emb == NULL, "%s: embeds for a text-only prompt", name);
    }
    const tsr_tensor *want_logits = expected(name, "logits");
    int32_t V = tsr_model_vocab_size(g_model);
    float *logits = malloc((size_t)V * sizeof *logits);
    double d_log = INFINITY;
    if (logits && want_logits) {
        tsr_status st = tsr_session_decode(s, tsr_prompt_input(p), logits, (size_t)V, &err);
        CHECK_OK(st, &err);
        if (!st) {
            tsr_tensor got;
            int64_t shp[1] = {V};
            tsr_tensor_view(&got, TSR_DTYPE_F32, 1, shp, logits, &err);
            d_log = tsr_test_compare_tensor(name, "logits", &got, want_logits, TOL);
            if (d_log > g_max_logits) g_max_logits = d_log;
        }
    }
    free(logits);
    int same = tsr_test_check_greedy(name, s, tsr_prompt_input(p), expected(name, "greedy"));
    printf("  %-26s ids %3lld  image rows %3lld  max|d| embeds %.2e  logits %.2e  greedy %s\n",
           name, (long long)tsr_prompt_input(p)->n_ids,
           (long long)(got_emb ? got_emb->shape[0] : 0), d_emb, d_log, same ? "same" : "DIFFER");
    tsr_prompt_free(p);
    tsr_session_free(s);
}

static void test_cases(void) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g_cases, "cases")) run_case(c);
    printf("  max abs diff over the cases: embeds %.3e, last logits %.3e (tolerance %.0e)\n",
           g_max_embeds, g_max_logits, TOL);
}

/* ---------------------------------------------------------------------------------- */
/* Altered checkpoints                                                                  */
/* ---------------------------------------------------------------------------------- */

/* A copy of the fixture model in g_tmp/<sub> whose model.safetensors is rewritten by edit
 * (called per tensor: may rename it, replace it (returning a tensor to write), or drop it by
 * returning NULL). Returns the directory (static buffer) or NULL. */
typedef const tsr_tensor *(*edit_fn)(const char *name, const tsr_tensor *t, char *new_name,
                                     size_t cap, tsr_tensor *scratch);

/* config.json with its `from` text replaced by `to` (both may be NULL: copied as is). */
static int copy_config(const char *src, const char *dst, const char *from, const char *to) {
    if (!from) return tsr_test_copy_file(src, dst) ? 0 : -1;
    size_t len = 0;
    char *text = (char *)tsr_test_read(src, &len);
    char *at = text ? strstr(text, from) : NULL;
    FILE *f = at ? fopen(dst, "wb") : NULL;
    int ok = f != NULL;
    if (ok) {
        size_t head = (size_t)(at - text), tail = len - head - strlen(from);
        ok = fwrite(text, 1, head, f) == head && fputs(to, f) >= 0 &&
             fwrite(at + strlen(from), 1, tail, f) == tail;
    }
    if (f && fclose(f)) ok = 0;
    free(text);
    return ok ? 0 : -1;
}

static const char *g_cfg_from, *g_cfg_to; /* config.json edit of the next altered_model */

static const char *altered_model(const char *sub, edit_fn edit) {
    static char dir[512];
    static const char *const files[] = {"config.json", "generation_config.json",
                                        "tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "preprocessor_config.json",
                                        "processor_config.json"};
    char src[512], dst[600];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, sub);
    if (mkdir(dir, 0700)) return NULL;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(src, sizeof src, "%s/%s", tsr_test_fixture(MODEL_REL), files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        int ok = i == 0 ? !copy_config(src, dst, g_cfg_from, g_cfg_to)
                        : tsr_test_copy_file(src, dst);
        if (!ok) return NULL;
    }
    g_cfg_from = g_cfg_to = NULL;
    snprintf(src, sizeof src, "%s/model.safetensors", tsr_test_fixture(MODEL_REL));
    tsr_safetensors *st = NULL;
    tsr_error err = {0};
    if (tsr_safetensors_open_file(src, &st, &err)) return NULL;
    int64_t n = tsr_safetensors_count(st), k = 0;
    char(*names)[160] = calloc((size_t)n, sizeof *names);
    const char **np = calloc((size_t)n, sizeof *np);
    tsr_tensor *ts = calloc((size_t)n, sizeof *ts), *scratch = calloc((size_t)n, sizeof *ts);
    int ok = names && np && ts && scratch;
    for (int64_t i = 0; ok && i < n; i++) {
        const char *name = tsr_safetensors_name(st, i);
        tsr_tensor t;
        if (tsr_safetensors_get(st, name, &t, &err)) {
            ok = 0;
            break;
        }
        snprintf(names[k], sizeof names[k], "%s", name);
        const tsr_tensor *w = edit(name, &t, names[k], sizeof names[k], &scratch[k]);
        if (!w) continue;
        ts[k] = *w;
        np[k] = names[k];
        k++;
    }
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    if (ok) ok = !tsr_safetensors_write_file(dst, k, np, ts, 0, NULL, NULL, &err);
    for (int64_t i = 0; scratch && i < n; i++) tsr_tensor_free(&scratch[i]);
    free(names);
    free(np);
    free(ts);
    free(scratch);
    tsr_safetensors_close(st);
    return ok ? dir : NULL;
}

static void remove_model(const char *dir) {
    static const char *const files[] = {"config.json", "generation_config.json",
                                        "tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "preprocessor_config.json",
                                        "processor_config.json", "model.safetensors"};
    char p[600];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

#define MISSING "vision_tower.transformer.layers.1.feed_forward.up_proj.weight"
#define RESHAPED "multi_modal_projector.patch_merger.merging_layer.weight"

static const tsr_tensor *drop_one(const char *name, const tsr_tensor *t, char *nn, size_t cap,
                                  tsr_tensor *scratch) {
    (void)nn; (void)cap; (void)scratch;
    return strcmp(name, MISSING) ? t : NULL;
}

static char g_shape_was[64], g_shape_now[64]; /* "[a, b]" of the reshaped tensor */

/* merging_layer [dim, 4 * dim] -> [dim, 2 * dim] */
static const tsr_tensor *reshape_one(const char *name, const tsr_tensor *t, char *nn, size_t cap,
                                     tsr_tensor *scratch) {
    (void)nn; (void)cap;
    if (strcmp(name, RESHAPED)) return t;
    int64_t shp[2] = {t->shape[0], t->shape[1] / 2};
    snprintf(g_shape_was, sizeof g_shape_was, "[%lld, %lld]", (long long)t->shape[0],
             (long long)t->shape[1]);
    snprintf(g_shape_now, sizeof g_shape_now, "[%lld, %lld]", (long long)shp[0],
             (long long)shp[1]);
    tsr_error err = {0};
    if (tsr_tensor_alloc(scratch, TSR_DTYPE_F32, 2, shp, &err)) return NULL;
    return scratch;
}

/* The names transformers 5 holds in memory: model.vision_tower.*, model.multi_modal_projector.*,
 * model.language_model.*, lm_head.weight. */
static const tsr_tensor *in_memory_names(const char *name, const tsr_tensor *t, char *nn,
                                         size_t cap, tsr_tensor *scratch) {
    (void)scratch;
    if (!strncmp(name, "language_model.model.", 21))
        snprintf(nn, cap, "model.language_model.%s", name + 21);
    else if (!strcmp(name, "language_model.lm_head.weight"))
        snprintf(nn, cap, "lm_head.weight");
    else
        snprintf(nn, cap, "model.%s", name);
    return t;
}

static void test_missing_tensor(void) {
    const char *dir = altered_model("missing", drop_one);
    CHECK(dir != NULL);
    if (!dir) return;
    tsr_model *m = NULL;
    tsr_error err = {0};
    tsr_status st = tsr_model_load(dir, NULL, &m, &err);
    CHECK_MSG(st == TSR_ERR_FORMAT && strstr(err.message, MISSING), "%s: %s",
              tsr_status_name(st), err.message);
    CHECK(m == NULL);
    printf("  missing: %s: %s\n", tsr_status_name(st), err.message);
    tsr_model_free(m);
    remove_model(dir);
}

static void test_reshaped_tensor(void) {
    const char *dir = altered_model("reshaped", reshape_one);
    CHECK(dir != NULL);
    if (!dir) return;
    tsr_model *m = NULL;
    tsr_error err = {0};
    tsr_status st = tsr_model_load(dir, NULL, &m, &err);
    CHECK_MSG(st == TSR_ERR_SHAPE && strstr(err.message, RESHAPED) &&
                  strstr(err.message, g_shape_was) && strstr(err.message, g_shape_now),
              "%s: %s", tsr_status_name(st), err.message);
    CHECK(m == NULL);
    printf("  reshaped: %s: %s\n", tsr_status_name(st), err.message);
    tsr_model_free(m);
    remove_model(dir);
}

/* Every tensor rounded to bf16 (to nearest even, as torch's .to(torch.bfloat16)). */
static const tsr_tensor *to_bf16(const char *name, const tsr_tensor *t, char *nn, size_t cap,
                                 tsr_tensor *scratch) {
    (void)name; (void)nn; (void)cap;
    tsr_error err = {0};
    if (t->dtype != TSR_DTYPE_F32 || tsr_tensor_alloc(scratch, TSR_DTYPE_BF16, t->ndim, t->shape,
                                                      &err))
        return NULL;
    const uint32_t *src = t->data;
    uint16_t *dst = scratch->data;
    for (int64_t i = 0; i < tsr_tensor_numel(t); i++) {
        uint32_t u = src[i];
        dst[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    return scratch;
}

/* The processor output of the named case (NULL on failure, recorded). */
static tsr_tensor_list *case_inputs(const tsr_model *m, const char *name) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g_cases, "cases"))
    if (!strcmp(cJSON_GetObjectItem(c, "name")->valuestring, name)) return run_processor(m, c);
    CHECK_MSG(0, "no case %s", name);
    return NULL;
}

static const tsr_tensor *same(const char *name, const tsr_tensor *t, char *nn, size_t cap,
                              tsr_tensor *scratch) {
    (void)name; (void)nn; (void)cap; (void)scratch;
    return t;
}

/* The features of one checkpoint variant for the bf16 case against expected <want>.embeds. */
static void variant_features(const char *dir, const char *want, const char *what) {
    const cJSON *bc = cJSON_GetObjectItem(g_cases, "bf16_case");
    tsr_model *m = NULL;
    tsr_error err = {0};
    CHECK_OK(tsr_model_load(dir, NULL, &m, &err), &err);
    tsr_tensor_list *in = m && cJSON_IsString(bc) ? case_inputs(m, bc->valuestring) : NULL;
    tsr_prompt *p = NULL;
    if (in) CHECK_OK(tsr_prompt_new(m, NULL, in, &p, &err), &err);
    if (p) {
        double d = tsr_test_compare_tensor(what, "embeds",
                                           tsr_tensor_list_get(tsr_prompt_tensors(p), "embeds"),
                                           expected(want, "embeds"), TOL);
        printf("  %s: %s embeds max|d| %.2e\n", what, bc->valuestring, d);
    }
    tsr_prompt_free(p);
    tsr_tensor_list_free(in);
    tsr_model_free(m);
}

/* The bf16 checkpoint: weight matrices used as stored (widened in the kernels). */
static void test_bf16(void) {
    const char *dir = altered_model("bf16", to_bf16);
    CHECK(dir != NULL);
    if (!dir) return;
    variant_features(dir, "bf16", "bf16 checkpoint");
    remove_model(dir);
}

/* vision_feature_layer [-2] (list form): the output of vision layer 0 of 2. */
static void test_feature_layer(void) {
    g_cfg_from = "\"vision_feature_layer\": -1";
    g_cfg_to = "\"vision_feature_layer\": [-2]";
    const char *dir = altered_model("layer_m2", same);
    CHECK(dir != NULL);
    if (!dir) return;
    variant_features(dir, "layer_m2", "vision_feature_layer [-2]");
    remove_model(dir);
    /* two layers concatenated: transformers' projector cannot take them either */
    g_cfg_from = "\"vision_feature_layer\": -1";
    g_cfg_to = "\"vision_feature_layer\": [-2, -1]";
    dir = altered_model("layer_list", same);
    CHECK(dir != NULL);
    if (!dir) return;
    tsr_model *m = NULL;
    tsr_error err = {0};
    tsr_status st = tsr_model_load(dir, NULL, &m, &err);
    CHECK_MSG(st == TSR_ERR_UNSUPPORTED && strstr(err.message, "vision_feature_layer"), "%s: %s",
              tsr_status_name(st), err.message);
    printf("  vision_feature_layer [-2, -1]: %s: %s\n", tsr_status_name(st), err.message);
    tsr_model_free(m);
    /* out of range */
    remove_model(dir);
    g_cfg_from = "\"vision_feature_layer\": -1";
    g_cfg_to = "\"vision_feature_layer\": -4";
    dir = altered_model("layer_range", same);
    CHECK(dir != NULL);
    if (!dir) return;
    st = tsr_model_load(dir, NULL, &m, &err);
    CHECK_MSG(st == TSR_ERR_FORMAT && strstr(err.message, "vision_feature_layer"), "%s: %s",
              tsr_status_name(st), err.message);
    printf("  vision_feature_layer -4: %s: %s\n", tsr_status_name(st), err.message);
    tsr_model_free(m);
    remove_model(dir);
}

/* The transformers 5 names load to the same model: the first image case's features. */
static void test_in_memory_names(void) {
    const char *dir = altered_model("in_memory", in_memory_names);
    CHECK(dir != NULL);
    if (!dir) return;
    tsr_model *m = NULL;
    tsr_error err = {0};
    CHECK_OK(tsr_model_load(dir, NULL, &m, &err), &err);
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(g_cases, "cases"), 0);
    tsr_tensor_list *in = m ? run_processor(m, c) : NULL;
    tsr_prompt *p = NULL;
    if (in) CHECK_OK(tsr_prompt_new(m, NULL, in, &p, &err), &err);
    if (p) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        double d = tsr_test_compare_tensor(name, "embeds (transformers 5 names)",
                                           tsr_tensor_list_get(tsr_prompt_tensors(p), "embeds"),
                                           expected(name, "embeds"), TOL);
        printf("  transformers 5 names: %s embeds max|d| %.2e\n", name, d);
    }
    tsr_prompt_free(p);
    tsr_tensor_list_free(in);
    tsr_model_free(m);
    remove_model(dir);
}

/* ---------------------------------------------------------------------------------- */
/* Processor outputs that disagree                                                      */
/* ---------------------------------------------------------------------------------- */

static int64_t g_image_token = -1; /* config.json image_token_index */

/* A deep copy of `in` with image_sizes replaced by `sizes` (n x 2) and, when drop_img > 0,
 * that many [IMG] ids turned into the id before it. */
static tsr_tensor_list *altered_inputs(const tsr_tensor_list *in, const int64_t *sizes, int64_t n,
                                       int drop_img) {
    tsr_tensor_list *out = NULL;
    tsr_error err = {0};
    if (tsr_tensor_list_new(&out, &err)) return NULL;
    for (int64_t i = 0; i < tsr_tensor_list_count(in); i++) {
        const char *name = tsr_tensor_list_name(in, i);
        const tsr_tensor *t = tsr_tensor_list_at(in, i);
        tsr_tensor c;
        int is_sizes = sizes && !strcmp(name, "image_sizes");
        int64_t shp[2] = {n, 2};
        if (tsr_tensor_alloc(&c, t->dtype, is_sizes ? 2 : t->ndim, is_sizes ? shp : t->shape,
                             &err))
            goto fail;
        if (is_sizes)
            memcpy(c.data, sizes, (size_t)n * 2 * sizeof *sizes);
        else
            memcpy(c.data, t->data, tsr_tensor_nbytes(t));
        if (drop_img && !strcmp(name, "input_ids")) {
            int64_t *v = c.data;
            for (int64_t k = 0, left = drop_img; k < tsr_tensor_numel(&c) && left; k++)
                if (v[k] == g_image_token) {
                    v[k] = g_image_token - 1;
                    left--;
                }
        }
        if (tsr_tensor_list_add(out, name, &c, &err)) {
            tsr_tensor_free(&c);
            goto fail;
        }
    }
    return out;
fail:
    tsr_tensor_list_free(out);
    return NULL;
}

static void expect_shape_error(const tsr_tensor_list *in, const char *what, const char *must1,
                               const char *must2) {
    const char *const needles[] = {must1, must2, NULL};
    tsr_test_expect_prompt_error(what, g_model, NULL, in, TSR_ERR_SHAPE, needles);
}

static void test_inconsistent_inputs(void) {
    /* two images padded to the larger: pixel_values [2, 3, 168, 140] */
    tsr_tensor_list *in = case_inputs(g_model, "two_images_mixed");
    if (!in) return;
    const tsr_tensor *pv = tsr_tensor_list_get(in, "pixel_values");
    const tsr_tensor *sz = tsr_tensor_list_get(in, "image_sizes");
    CHECK(pv && sz && pv->ndim == 4 && sz->ndim == 2 && sz->shape[0] == 2);
    if (!pv || !sz || pv->ndim != 4 || sz->ndim != 2 || sz->shape[0] != 2) {
        tsr_tensor_list_free(in);
        return;
    }
    const int64_t *s0 = sz->data;
    int64_t H = pv->shape[2], W = pv->shape[3];
    char hw[64];
    /* an image taller than the padded batch */
    int64_t tall[4] = {H + 28, s0[1], s0[2], s0[3]};
    tsr_tensor_list *a = altered_inputs(in, tall, 2, 0);
    snprintf(hw, sizeof hw, "%lld, %lld", (long long)(H + 28), (long long)s0[1]);
    expect_shape_error(a, "image_sizes beyond pixel_values", hw, "pixel_values [2, 3");
    tsr_tensor_list_free(a);
    /* a wider one */
    int64_t wide[4] = {s0[0], s0[1], s0[2], W + 1};
    a = altered_inputs(in, wide, 2, 0);
    expect_shape_error(a, "image width beyond pixel_values", "image_sizes[1]", "pixel_values");
    tsr_tensor_list_free(a);
    /* three sizes for two images */
    int64_t three[6] = {s0[0], s0[1], s0[2], s0[3], 28, 28};
    a = altered_inputs(in, three, 3, 0);
    expect_shape_error(a, "image_sizes rows != images", "image_sizes has shape [3, 2]",
                       "pixel_values [2, 3");
    tsr_tensor_list_free(a);
    /* fewer [IMG] tokens than the encoder's rows */
    a = altered_inputs(in, NULL, 0, 1);
    expect_shape_error(a, "[IMG] count != rows", "image tokens", "rows");
    tsr_tensor_list_free(a);
    tsr_tensor_list_free(in);
}

int main(void) {
    tsr_error err = {0};
    size_t len = 0;
    char *text = (char *)tsr_test_read(tsr_test_fixture(DIR_REL "/cases.json"), &len);
    g_cases = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    char *cfg = (char *)tsr_test_read(tsr_test_fixture(MODEL_REL "/config.json"), &len);
    cJSON *cj = cfg ? cJSON_ParseWithLength(cfg, len) : NULL;
    const cJSON *tok = cJSON_GetObjectItem(cj, "image_token_index");
    if (cJSON_IsNumber(tok)) g_image_token = (int64_t)tok->valuedouble;
    cJSON_Delete(cj);
    free(cfg);
    tsr_status st = tsr_model_load(tsr_test_fixture(MODEL_REL), NULL, &g_model, &err);
    tsr_status se = tsr_test_open_safetensors(tsr_test_fixture(DIR_REL "/expected.safetensors"),
                                              &g_expected, &err);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/tsr_model_mistral3_XXXXXX");
    if (!g_cases || st || se || g_image_token < 1 || !mkdtemp(g_tmp)) {
        fprintf(stderr, "setup failed (cases %s, model %s, expected %s): %s\n",
                g_cases ? "ok" : "missing", tsr_status_name(st), tsr_status_name(se),
                err.message);
        cJSON_Delete(g_cases);
        tsr_model_free(g_model);
        tsr_test_close_safetensors(g_expected);
        return 1;
    }
    tsr_test_run("mistral3_cases", test_cases);
    tsr_test_run("mistral3_bf16_checkpoint", test_bf16);
    tsr_test_run("mistral3_feature_layer", test_feature_layer);
    tsr_test_run("mistral3_missing_tensor", test_missing_tensor);
    tsr_test_run("mistral3_reshaped_tensor", test_reshaped_tensor);
    tsr_test_run("mistral3_transformers5_names", test_in_memory_names);
    tsr_test_run("mistral3_inconsistent_inputs", test_inconsistent_inputs);
    rmdir(g_tmp);
    cJSON_Delete(g_cases);
    tsr_model_free(g_model);
    tsr_test_close_safetensors(g_expected);
    return tsr_test_finish();
}
