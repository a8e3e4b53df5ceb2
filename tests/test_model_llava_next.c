/*
 * LLaVA-NeXT end to end against transformers (tests/fixtures/models/llava_next, written by
 * tools/refgen/gen_model_llava_next.py): raw prompt + images -> processor -> vision tower,
 * projector and anyres packing -> decoder. Per case: the packed image features ("embeds"),
 * the last prefill logits, and 32 greedy ids. The same checkpoint under transformers-5 tensor
 * names loads and gives the same numbers; broken checkpoints and inputs fail with typed errors
 * that name the tensor or both shapes.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tessera_internal.h"

#define TOL 1e-4
#define DIR_REL "models/llava_next"

static cJSON *g_cases;
static tsr_safetensors *g_expected;
static tsr_model *g_model;
static tsr_session *g_session;

static cJSON *load_json(const char *path) {
    size_t len = 0;
    char *text = (char *)tsr_test_read(path, &len);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return j;
}

static const tsr_tensor *expected(const char *name, const char *what, tsr_tensor *view) {
    char key[128];
    tsr_error err = {0};
    snprintf(key, sizeof key, "%s.%s", name, what);
    if (tsr_safetensors_get(g_expected, key, view, &err) != TSR_OK) return NULL;
    return view;
}

static double max_abs(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

/* One case on `model`: embeds, last logits, greedy ids. */
static void check_case(tsr_model *model, tsr_session *s, const cJSON *c, const char *label) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    tsr_error err = {0};
    tsr_tensor_list *inputs = NULL;
    tsr_prompt *p = NULL;
    tsr_tensor ev, lv, gv, iv;
    CHECK_OK(tsr_test_case_inputs(model, c, &inputs, &err), &err);
    if (!inputs) return;
    const tsr_tensor *want_ids = expected(name, "input_ids", &iv);
    const tsr_tensor *got_ids = tsr_tensor_list_get(inputs, "input_ids");
    CHECK(want_ids && got_ids);
    if (want_ids && got_ids) {
        tsr_tensor flat = *got_ids;
        flat.ndim = 1;
        flat.shape[0] = got_ids->shape[got_ids->ndim - 1];
        flat.strides[0] = 1;
        if (tsr_test_compare_tensor(name, "input_ids", &flat, want_ids, 0) != 0.0) {
            fprintf(stderr, "  %s input_ids:", name);
            for (int64_t i = 0; i < flat.shape[0]; i++)
                fprintf(stderr, " %lld", (long long)((const int64_t *)flat.data)[i]);
            fprintf(stderr, "\n  expected: ");
            for (int64_t i = 0; i < want_ids->shape[0]; i++)
                fprintf(stderr, " %lld", (long long)((const int64_t *)want_ids->data)[i]);
            fprintf(stderr, "\n");
        }
    }
    CHECK_OK(tsr_prompt_new(model, s, inputs, &p, &err), &err);
    tsr_tensor_list_free(inputs);
    if (!p) return;

    double d_emb = 0.0, d_log = INFINITY;
    const tsr_tensor *want_e = expected(name, "embeds", &ev);
    const tsr_tensor *got_e = tsr_tensor_list_get(tsr_prompt_tensors(p), "embeds");
    CHECK_MSG(!want_e == !got_e, "%s: embeds present %d, expected %d", name, got_e != NULL,
              want_e != NULL);
    if (want_e && got_e) d_emb = tsr_test_compare_tensor(name, "embeds", got_e, want_e, TOL);

    const int32_t V = tsr_model_vocab_size(model);
    float *logits = malloc((size_t)V * sizeof *logits);
    const tsr_tensor *want_l = expected(name, "logits", &lv);
    tsr_session_reset(s);
    CHECK_OK(tsr_session_decode(s, tsr_prompt_input(p), logits, (size_t)V, &err), &err);
    if (want_l && logits && want_l->shape[0] == V) {
        d_log = max_abs(logits, want_l->data, V);
        CHECK_MSG(d_log <= TOL, "%s: last logits differ by %g", name, d_log);
    } else {
        CHECK_MSG(0, "%s: logits: vocab %d, expected %lld", name, (int)V,
                  (long long)(want_l ? want_l->shape[0] : -1));
    }
    free(logits);

    int same = tsr_test_check_greedy(name, s, tsr_prompt_input(p), expected(name, "greedy", &gv));
    printf("  %s%s: %lld embedding rows max|d| %.3g, last logits max|d| %.3g, greedy %s\n",
           label, name, (long long)(got_e ? got_e->shape[0] : 0), d_emb, d_log,
           same ? "identical" : "DIFFERENT");
    tsr_prompt_free(p);
}

static const cJSON *find_case(const char *name) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g_cases, "cases"))
        if (!strcmp(cJSON_GetObjectItem(c, "name")->valuestring, name)) return c;
    return NULL;
}

static void test_cases(void) {
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g_cases, "cases")) {
        check_case(g_model, g_session, c, "");
        n++;
    }
    CHECK(n >= 6);
}

/* ---- rewritten checkpoints -------------------------------------------------------------- */

typedef enum { EDIT_NONE, EDIT_DROP, EDIT_RESHAPE } edit_kind;

typedef struct ckpt_edit {
    int rename_t5;      /* transformers-5 names */
    edit_kind kind;
    const char *target; /* hub name of the tensor to drop / reshape */
    const char *config_from, *config_to; /* replaces text in config.json (may be NULL) */
    tsr_safetensors *swap; /* tensors taken from here instead when present (may be NULL) */
} ckpt_edit;

static char *t5_name(const char *hub) {
    static const char *const map[][2] = {
        {"vision_tower.vision_model.", "model.vision_tower."},
        {"multi_modal_projector.", "model.multi_modal_projector."},
        {"image_newline", "model.image_newline"},
        {"language_model.model.", "model.language_model."},
        {"language_model.lm_head.", "lm_head."}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t l = strlen(map[i][0]);
        if (!strncmp(hub, map[i][0], l)) {
            size_t n = strlen(map[i][1]) + strlen(hub + l) + 1;
            char *s = malloc(n);
            if (s) snprintf(s, n, "%s%s", map[i][1], hub + l);
            return s;
        }
    }
    return strdup(hub);
}

static int copy_file(const char *from, const char *to, const char *find, const char *repl) {
    size_t len = 0;
    char *d = (char *)tsr_test_read(from, &len);
    if (!d) return 0;
    FILE *f = fopen(to, "wb");
    int ok = f != NULL;
    char *hit = find ? strstr(d, find) : NULL;
    if (ok && hit) {
        ok = fwrite(d, 1, (size_t)(hit - d), f) == (size_t)(hit - d) &&
             fputs(repl, f) >= 0;
        const char *rest = hit + strlen(find);
        ok = ok && fwrite(rest, 1, strlen(rest), f) == strlen(rest);
    } else if (ok) {
        ok = !find && fwrite(d, 1, len, f) == len;
    }
    if (f && fclose(f)) ok = 0;
    free(d);
    return ok;
}

/* A copy of the fixture model directory under dir with the checkpoint edited. */
static int write_model(const char *dir, const ckpt_edit *e) {
    static const char *const files[] = {"generation_config.json", "tokenizer.json",
                                        "tokenizer_config.json", "special_tokens_map.json",
                                        "preprocessor_config.json", "processor_config.json"};
    char from[1024], to[1024];
    if (mkdir(dir, 0700) && access(dir, W_OK)) return 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(from, sizeof from, "%s/%s", tsr_test_fixture(DIR_REL "/model"), files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        if (!copy_file(from, to, NULL, NULL)) return 0;
    }
    snprintf(from, sizeof from, "%s/config.json", tsr_test_fixture(DIR_REL "/model"));
    snprintf(to, sizeof to, "%s/config.json", dir);
    if (!copy_file(from, to, e->config_from, e->config_to)) return 0;

    tsr_error err = {0};
    tsr_safetensors *st = NULL;
    snprintf(from, sizeof from, "%s/model.safetensors", tsr_test_fixture(DIR_REL "/model"));
    if (tsr_safetensors_open_file(from, &st, &err)) return 0;
    int64_t n = tsr_safetensors_count(st), k = 0;
    char **names = calloc((size_t)n, sizeof *names);
    tsr_tensor *ts = calloc((size_t)n, sizeof *ts);
    int ok = names && ts;
    for (int64_t i = 0; ok && i < n; i++) {
        const char *nm = tsr_safetensors_name(st, i);
        if (e->kind == EDIT_DROP && !strcmp(nm, e->target)) continue;
        tsr_tensor alt;
        if (e->swap && tsr_safetensors_get(e->swap, nm, &alt, &err) == TSR_OK)
            ts[k] = alt;
        else
            ok = tsr_safetensors_get(st, nm, &ts[k], &err) == TSR_OK;
        if (ok && e->kind == EDIT_RESHAPE && !strcmp(nm, e->target) && ts[k].ndim == 2 &&
            ts[k].shape[1] % 2 == 0) { /* [r, c] -> [2r, c/2]: same bytes, wrong shape */
            ts[k].shape[0] *= 2;
            ts[k].shape[1] /= 2;
            ts[k].strides[0] = ts[k].shape[1];
        }
        names[k] = e->rename_t5 ? t5_name(nm) : strdup(nm);
        ok = ok && names[k];
        k++;
    }
    snprintf(to, sizeof to, "%s/model.safetensors", dir);
    ok = ok && tsr_safetensors_write_file(to, k, (const char *const *)names, ts, 0, NULL, NULL,
                                          &err) == TSR_OK;
    for (int64_t i = 0; names && i < k; i++) free(names[i]);
    free(names);
    free(ts);
    tsr_safetensors_close(st);
    return ok;
}

static void remove_model(const char *dir) {
    static const char *const files[] = {"config.json", "generation_config.json",
                                        "tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "preprocessor_config.json",
                                        "processor_config.json", "model.safetensors"};
    char p[1024];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static char g_tmp[512];

static const char *tmp_model(const char *tag) {
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", g_tmp, tag);
    return path;
}

/* The checkpoint under the names transformers 5 uses in memory (model.vision_tower.* without
 * vision_model, model.multi_modal_projector.*, model.image_newline, model.language_model.*,
 * lm_head.*) gives the same numbers. */
static void test_transformers5_names(void) {
    const char *dir = tmp_model("t5");
    ckpt_edit e = {1, EDIT_NONE, NULL, NULL, NULL, NULL};
    CHECK(write_model(dir, &e));
    tsr_error err = {0};
    tsr_model *m = NULL;
    tsr_session *s = NULL;
    tsr_session_params sp = tsr_session_params_default();
    sp.n_threads = 2;
    CHECK_OK(tsr_model_load(dir, NULL, &m, &err), &err);
    if (m) CHECK_OK(tsr_session_new(m, &sp, &s, &err), &err);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g_cases, "cases")) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        if (s && (!strcmp(name, "one_image") || !strcmp(name, "three_images_mixed")))
            check_case(m, s, c, "transformers-5 names: ");
    }
    tsr_session_free(s);
    tsr_model_free(m);
    remove_model(dir);
}

/* The fixture checkpoint with the tensors of `swap_rel` swapped in (and config.json edited):
 * the embeds of cases names[0] (run without a session: one thread, 16-bit rows widened per dot
 * product) and names[1] (three threads: each widens its rows into its pool scratch) against
 * <name>.<key>. */
static void check_variant(const char *tag, const char *swap_rel, const char *config_from,
                          const char *config_to, const char *const names[2], const char *key,
                          const char *what) {
    tsr_error err = {0};
    tsr_safetensors *swap = NULL;
    CHECK_OK(tsr_test_open_safetensors(tsr_test_fixture(swap_rel), &swap, &err), &err);
    if (!swap) return;
    const char *dir = tmp_model(tag);
    ckpt_edit e = {0, EDIT_NONE, NULL, config_from, config_to, swap};
    CHECK(write_model(dir, &e));
    tsr_model *m = NULL;
    tsr_session *s = NULL;
    tsr_session_params sp = tsr_session_params_default();
    sp.n_threads = 3; /* columns split unevenly over the workers */
    CHECK_OK(tsr_model_load(dir, NULL, &m, &err), &err);
    if (m) CHECK_OK(tsr_session_new(m, &sp, &s, &err), &err);
    for (size_t i = 0; m && s && i < 2; i++) {
        const cJSON *c = find_case(names[i]);
        tsr_tensor_list *in = NULL;
        tsr_prompt *p = NULL;
        tsr_tensor ev;
        CHECK(c != NULL);
        if (c) CHECK_OK(tsr_test_case_inputs(m, c, &in, &err), &err);
        if (in) CHECK_OK(tsr_prompt_new(m, i ? s : NULL, in, &p, &err), &err);
        const tsr_tensor *want = expected(names[i], key, &ev);
        CHECK(want != NULL);
        if (p && want) {
            double d = tsr_test_compare_tensor(names[i], key,
                                               tsr_tensor_list_get(tsr_prompt_tensors(p), "embeds"),
                                               want, TOL);
            printf("  %s, %s, %s: embeds max|d| %.3g\n", names[i], what,
                   i ? "3 threads" : "no session", d);
        }
        tsr_prompt_free(p);
        tsr_tensor_list_free(in);
    }
    tsr_session_free(s);
    tsr_model_free(m);
    remove_model(dir);
    tsr_test_close_safetensors(swap);
}

/* The encoder's tensors stored in 16 bits (tower F16, projector and image_newline BF16), as
 * the hub checkpoints are: the features match transformers on the same rounded weights. */
static void test_16bit_weights(void) {
    static const char *const names[2] = {"one_image", "three_images_mixed"};
    check_variant("16bit", DIR_REL "/vision_16bit.safetensors", NULL, NULL, names,
                  "embeds_16bit", "F16 tower + BF16 projector");
}

/* vision_feature_layer [-1, 0]: the last hidden state and the embeddings after pre_layrnorm,
 * concatenated (linear_1 takes 2 x 32). */
static void test_feature_layer_list(void) {
    static const char *const names[2] = {"one_image", "two_images_extreme"};
    check_variant("layers", DIR_REL "/layers_list.safetensors", "\"vision_feature_layer\": -2",
                  "\"vision_feature_layer\": [-1, 0]", names, "embeds_layers_list",
                  "vision_feature_layer [-1, 0]");
}

static void expect_load_error(const char *tag, const ckpt_edit *e, tsr_status want,
                              const char *needle) {
    const char *dir = tmp_model(tag);
    CHECK(write_model(dir, e));
    tsr_error err = {0};
    tsr_model *m = NULL;
    tsr_status st = tsr_model_load(dir, NULL, &m, &err);
    CHECK_MSG(st == want && !m && strstr(err.message, needle), "%s: %s: %s (want %s naming %s)",
              tag, tsr_status_name(st), err.message, tsr_status_name(want), needle);
    printf("  %s: %s: %s\n", tag, tsr_status_name(st), err.message);
    tsr_model_free(m);
    remove_model(dir);
}

/* "full" keeps the CLS row: a tile's rows are not a grid, and anyres packing cannot proceed
 * (transformers fails on it too). The model loads; an image prompt is UNSUPPORTED. */
static void test_full_strategy(void) {
    const char *dir = tmp_model("full");
    ckpt_edit e = {0, EDIT_NONE, NULL, "\"vision_feature_select_strategy\": \"default\"",
                   "\"vision_feature_select_strategy\": \"full\"", NULL};
    CHECK(write_model(dir, &e));
    tsr_error err = {0};
    tsr_model *m = NULL;
    tsr_tensor_list *in = NULL;
    tsr_prompt *p = NULL;
    const cJSON *c = find_case("one_image");
    CHECK_OK(tsr_model_load(dir, NULL, &m, &err), &err);
    if (m && c) CHECK_OK(tsr_test_case_inputs(m, c, &in, &err), &err);
    if (in) {
        tsr_status st = tsr_prompt_new(m, NULL, in, &p, &err);
        CHECK_MSG(st == TSR_ERR_UNSUPPORTED && !p && strstr(err.message, "full"), "%s: %s",
                  tsr_status_name(st), err.message);
        printf("  \"full\" strategy: %s: %s\n", tsr_status_name(st), err.message);
    }
    tsr_prompt_free(p);
    tsr_tensor_list_free(in);
    tsr_model_free(m);
    remove_model(dir);
}

static void test_bad_checkpoints(void) {
    const char *fc2 = "vision_tower.vision_model.encoder.layers.1.mlp.fc2.weight";
    ckpt_edit drop = {0, EDIT_DROP, fc2, NULL, NULL, NULL};
    expect_load_error("missing_tensor", &drop, TSR_ERR_FORMAT, fc2);
    const char *l1 = "multi_modal_projector.linear_1.weight";
    ckpt_edit reshape = {0, EDIT_RESHAPE, l1, NULL, NULL, NULL};
    expect_load_error("wrong_shape", &reshape, TSR_ERR_SHAPE, l1);
    ckpt_edit t5drop = {1, EDIT_DROP, "image_newline", NULL, NULL, NULL};
    expect_load_error("missing_newline_t5", &t5drop, TSR_ERR_FORMAT, "image_newline");
    ckpt_edit layer = {0, EDIT_NONE, NULL, "\"vision_feature_layer\": -2",
                       "\"vision_feature_layer\": 7", NULL};
    expect_load_error("feature_layer_out_of_range", &layer, TSR_ERR_FORMAT, "vision_feature_layer");
    ckpt_edit full = {0, EDIT_NONE, NULL, "\"vision_feature_select_strategy\": \"default\"",
                      "\"vision_feature_select_strategy\": \"spatial\"", NULL};
    expect_load_error("bad_strategy", &full, TSR_ERR_FORMAT, "vision_feature_select_strategy");
}

/* A copy of inputs with one tensor replaced. */
static void expect_prompt_error(const char *what, const tsr_tensor_list *in, tsr_status want,
                                const char *n1, const char *n2) {
    const char *const needles[] = {n1, n2, NULL};
    tsr_test_expect_prompt_error(what, g_model, g_session, in, want, needles);
}

/* One image: pixel_values as 4-D [patches, 3, H, W] (the other layout get_image_features
 * takes) gives the same rows; pixel_values with fewer patches than the image size needs is
 * SHAPE naming both. */
static void test_one_image_layouts(void) {
    const cJSON *c = find_case("one_image");
    tsr_error err = {0};
    tsr_tensor_list *in = NULL;
    tsr_tensor ev;
    CHECK(c != NULL);
    if (c) CHECK_OK(tsr_test_case_inputs(g_model, c, &in, &err), &err);
    if (!in) return;
    const tsr_tensor *pv = tsr_tensor_list_get(in, "pixel_values");
    const tsr_tensor *sz = tsr_tensor_list_get(in, "image_sizes");
    CHECK(pv && sz && pv->ndim == 5 && pv->shape[0] == 1 && pv->shape[1] > 2);
    if (!pv || !sz || pv->ndim != 5 || pv->shape[0] != 1 || pv->shape[1] <= 2) {
        tsr_tensor_list_free(in);
        return;
    }
    tsr_tensor t4 = *pv;
    t4.ndim = 4;
    for (int i = 0; i < 4; i++) {
        t4.shape[i] = pv->shape[i + 1];
        t4.strides[i] = pv->strides[i + 1];
    }
    tsr_tensor_list *alt = tsr_test_list_replace(in, "pixel_values", &t4);
    tsr_prompt *p = NULL;
    CHECK(alt != NULL);
    if (alt) CHECK_OK(tsr_prompt_new(g_model, g_session, alt, &p, &err), &err);
    const tsr_tensor *want = expected("one_image", "embeds", &ev);
    if (p && want) {
        double d = tsr_test_compare_tensor("one_image 4-D pixel_values", "embeds",
                                           tsr_tensor_list_get(tsr_prompt_tensors(p), "embeds"),
                                           want, TOL);
        printf("  one_image, 4-D pixel_values: embeds max|d| %.3g\n", d);
    }
    tsr_prompt_free(p);
    tsr_tensor_list_free(alt);

    /* the first two patches only: fewer than the image's size needs */
    tsr_tensor t2 = *pv;
    t2.shape[1] = 2;
    t2.strides[0] = 2 * pv->strides[1];
    alt = tsr_test_list_replace(in, "pixel_values", &t2);
    char need[96];
    snprintf(need, sizeof need, "image_sizes[0] = (%lld, %lld) needs %lld",
             (long long)((const int64_t *)sz->data)[0], (long long)((const int64_t *)sz->data)[1],
             (long long)pv->shape[1]);
    expect_prompt_error("pixel_values patches", alt, TSR_ERR_SHAPE, "pixel_values [1, 2, 3, 28, 28]", need);
    tsr_tensor_list_free(alt);
    tsr_tensor_list_free(in);
}

static void test_bad_inputs(void) {
    const cJSON *two = find_case("three_images_mixed");
    CHECK(two != NULL);
    if (!two) return;
    tsr_error err = {0};
    tsr_tensor_list *in = NULL;
    CHECK_OK(tsr_test_case_inputs(g_model, two, &in, &err), &err);
    if (!in) return;
    const tsr_tensor *pv = tsr_tensor_list_get(in, "pixel_values");
    const tsr_tensor *sz = tsr_tensor_list_get(in, "image_sizes");
    const tsr_tensor *ids = tsr_tensor_list_get(in, "input_ids");
    CHECK(pv && sz && ids);
    if (!pv || !sz || !ids) {
        tsr_tensor_list_free(in);
        return;
    }
    /* image_sizes with one image fewer than pixel_values holds */
    tsr_tensor t = *sz;
    t.shape[0] -= 1;
    tsr_tensor_list *bad = tsr_test_list_replace(in, "image_sizes", &t);
    expect_prompt_error("image_sizes rows", bad, TSR_ERR_SHAPE, "pixel_values [3, ", "image_sizes [2, 2]");
    tsr_tensor_list_free(bad);

    /* a zero image size */
    int64_t zero[6];
    memcpy(zero, sz->data, sizeof zero);
    zero[3] = 0;
    tsr_tensor t5 = *sz;
    t5.data = zero;
    bad = tsr_test_list_replace(in, "image_sizes", &t5);
    expect_prompt_error("image_sizes zero", bad, TSR_ERR_INVALID_ARG, "image_sizes[1]", ", 0) is not a valid image size");
    tsr_tensor_list_free(bad);

    /* image_sizes of another dtype */
    float fsz[6] = {0};
    tsr_tensor t6 = *sz;
    t6.dtype = TSR_DTYPE_F32;
    t6.strides[0] = 2;
    t6.data = fsz;
    bad = tsr_test_list_replace(in, "image_sizes", &t6);
    expect_prompt_error("image_sizes dtype", bad, TSR_ERR_FORMAT, "image_sizes", "I64");
    tsr_tensor_list_free(bad);

    /* pixel_values of another tile size */
    tsr_tensor t3 = *pv;
    t3.shape[3] = t3.shape[4] = 14;
    t3.shape[1] = pv->shape[1] * 4;
    bad = tsr_test_list_replace(in, "pixel_values", &t3);
    expect_prompt_error("pixel_values tile size", bad, TSR_ERR_SHAPE, "pixel_values",
                        "[images, patches, 3, 28, 28]");
    tsr_tensor_list_free(bad);

    /* one image token fewer than the features */
    int64_t n = ids->shape[ids->ndim - 1];
    int64_t *id2 = malloc((size_t)n * sizeof *id2);
    memcpy(id2, ids->data, (size_t)n * sizeof *id2);
    for (int64_t i = 0; i < n; i++)
        if (id2[i] == 4000) {
            id2[i] = 5;
            break;
        }
    tsr_tensor t4 = *ids;
    t4.data = id2;
    bad = tsr_test_list_replace(in, "input_ids", &t4);
    expect_prompt_error("placeholder count", bad, TSR_ERR_SHAPE, "rows for", "image");
    tsr_tensor_list_free(bad);
    free(id2);
    tsr_tensor_list_free(in);
}

#ifdef TSR_ALLOC_FAILPOINTS
/* Every allocation of the encoder failing in turn (tsr_prompt_new on three images, with and
 * without a session), then of loading the checkpoint (without its tokenizer, which has its own
 * walk elsewhere): each is a clean OOM, no leak. */
static void test_alloc_failures(void) {
    const cJSON *c = find_case("three_images_mixed");
    tsr_error err = {0};
    tsr_tensor_list *in = NULL;
    CHECK(c != NULL);
    if (c) CHECK_OK(tsr_test_case_inputs(g_model, c, &in, &err), &err);
    for (int with_session = 0; in && with_session < 2; with_session++) {
        int saw_ok = 0;
        for (long n = 1; n < 4000 && !saw_ok; n++) {
            tsr_prompt *p = NULL;
            tsr__alloc_failpoint(n);
            tsr_status st = tsr_prompt_new(g_model, with_session ? g_session : NULL, in, &p, &err);
            tsr__alloc_failpoint(0);
            CHECK_MSG(st == TSR_OK || st == TSR_ERR_OOM, "failpoint %ld: %s %s", n,
                      tsr_status_name(st), err.message);
            CHECK_MSG(st != TSR_OK || p, "failpoint %ld: no prompt", n);
            saw_ok = st == TSR_OK;
            if (saw_ok)
                printf("  encoder (%s): %ld allocations, each failing is a clean OOM\n",
                       with_session ? "2 threads" : "no session", n - 1);
            tsr_prompt_free(p);
        }
        CHECK(saw_ok);
    }
    tsr_tensor_list_free(in);

    const char *dir = tmp_model("alloc");
    ckpt_edit e = {0, EDIT_NONE, NULL, NULL, NULL, NULL};
    char path[1024];
    CHECK(write_model(dir, &e));
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    unlink(path);
    int saw_ok = 0;
    for (long n = 1; n < 20000 && !saw_ok; n++) {
        tsr_model *m = NULL;
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_model_load(dir, NULL, &m, &err);
        tsr__alloc_failpoint(0);
        CHECK_MSG(st == TSR_OK || st == TSR_ERR_OOM, "load failpoint %ld: %s %s", n,
                  tsr_status_name(st), err.message);
        saw_ok = st == TSR_OK && m;
        if (saw_ok) printf("  load: %ld allocations, each failing is a clean OOM\n", n - 1);
        tsr_model_free(m);
    }
    CHECK(saw_ok);
    remove_model(dir);
}
#endif

int main(void) {
    tsr_error err = {0};
    g_cases = load_json(tsr_test_fixture(DIR_REL "/cases.json"));
    CHECK_OK(tsr_test_open_safetensors(tsr_test_fixture(DIR_REL "/expected.safetensors"),
                                       &g_expected, &err), &err);
    tsr_session_params sp = tsr_session_params_default();
    sp.n_threads = 2;
    CHECK_OK(tsr_model_load(tsr_test_fixture(DIR_REL "/model"), NULL, &g_model, &err), &err);
    if (g_model) CHECK_OK(tsr_session_new(g_model, &sp, &g_session, &err), &err);
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g_tmp, sizeof g_tmp, "%s/tsr_llava_next_XXXXXX", base);
    int have_tmp = mkdtemp(g_tmp) != NULL;
    CHECK(g_cases && g_expected && have_tmp);
    if (g_cases && g_expected && g_session) {
        tsr_test_run("llava_next_cases", test_cases);
        tsr_test_run("llava_next_one_image_layouts", test_one_image_layouts);
        tsr_test_run("llava_next_bad_inputs", test_bad_inputs);
        if (have_tmp) {
            tsr_test_run("llava_next_transformers5_names", test_transformers5_names);
            tsr_test_run("llava_next_16bit_weights", test_16bit_weights);
            tsr_test_run("llava_next_feature_layer_list", test_feature_layer_list);
            tsr_test_run("llava_next_bad_checkpoints", test_bad_checkpoints);
            tsr_test_run("llava_next_full_strategy", test_full_strategy);
#ifdef TSR_ALLOC_FAILPOINTS
            tsr_test_run("llava_next_allocation_failures", test_alloc_failures);
#endif
        }
    }
    if (have_tmp) rmdir(g_tmp);
    tsr_session_free(g_session);
    tsr_model_free(g_model);
    tsr_test_close_safetensors(g_expected);
    cJSON_Delete(g_cases);
    return tsr_test_finish();
}
