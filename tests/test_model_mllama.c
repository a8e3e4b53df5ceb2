/* MLlama (Llama 3.2 Vision) end to end against transformers (fixtures from
 * tools/refgen/gen_model_mllama.py, tests/fixtures/models/mllama/): tsr_model_load on a tiny
 * hub-layout checkpoint, the model's processor on a raw prompt and its images, tsr_prompt_new
 * (tiled vision model, gated global layers, projector), then the decoder's gated
 * cross-attention layers.
 *   cross_attention_states   <= 1e-4 abs (text-only prompts: none)
 *   logits                   last-position prefill logits, <= 1e-4 abs
 *   greedy                   32 ids, EOS not stopping, identical
 * The same checkpoint under the names transformers 5 writes (model.vision_model.*, ...)
 * loads and gives the same numbers. An image slot whose tiles are all masked gives the
 * reference's equal attention weights. The encoder's weights stored in BF16 give what the same
 * values stored in F32 give. Bad inputs: a checkpoint missing an encoder tensor or
 * holding one of the wrong shape; pixel_values that disagree with aspect_ratio_ids /
 * aspect_ratio_mask; ids and mask values out of range. Each fails with its own error. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tessera_internal.h"

#define TOL 1e-4

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int want(const tsr_safetensors *st, const char *cs, const char *what, tsr_tensor *t) {
    char name[256];
    tsr_error err = {0};
    snprintf(name, sizeof name, "%s.%s", cs, what);
    return tsr_safetensors_get(st, name, t, &err) == TSR_OK;
}

static cJSON *g_cases;
static tsr_safetensors *g_exp;
static char g_tmp[256];

static const cJSON *find_case(const char *name) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g_cases, "cases")) {
        const char *n = jstr(c, "name");
        if (n && !strcmp(n, name)) return c;
    }
    return NULL;
}

/* The processor output of a case (NULL on failure, recorded). */
static tsr_tensor_list *process(tsr_model *model, const cJSON *c) {
    tsr_tensor_list *out = NULL;
    tsr_error err = {0};
    tsr_status st = tsr_test_case_inputs(model, c, &out, &err);
    CHECK_MSG(st == TSR_OK, "%s: processor: %s: %s", jstr(c, "name"), tsr_status_name(st),
              err.message);
    return out;
}

typedef struct maxes {
    double states, logits;
} maxes;

static void run_case(const char *label, tsr_model *model, tsr_session *sess, const cJSON *c,
                     int greedy, maxes *mx) {
    const char *name = jstr(c, "name");
    char ctx[160];
    snprintf(ctx, sizeof ctx, "%s/%s", label, name);
    tsr_error err = {0};
    tsr_prompt *prompt = NULL;
    float *logits = NULL;
    tsr_tensor w;
    tsr_tensor_list *out = process(model, c);
    if (!out) return;
    if (want(g_exp, name, "input_ids", &w))
        tsr_test_compare_tensor(ctx, "input_ids", tsr_tensor_list_get(out, "input_ids"), &w, 0);
    tsr_session_reset(sess);
    tsr_status st = tsr_prompt_new(model, sess, out, &prompt, &err);
    CHECK_MSG(st == TSR_OK, "%s: tsr_prompt_new: %s: %s", ctx, tsr_status_name(st), err.message);
    if (st) goto done;
    const tsr_tensor_list *enc = tsr_prompt_tensors(prompt);
    double d_cs = 0;
    if (want(g_exp, name, "cross_attention_states", &w)) {
        d_cs = tsr_test_compare_tensor(ctx, "cross_attention_states",
                                       tsr_tensor_list_get(enc, "cross_attention_states"), &w,
                                       TOL);
        if (d_cs > mx->states) mx->states = d_cs;
    } else {
        CHECK_MSG(!tsr_tensor_list_get(enc, "cross_attention_states"),
                  "%s: a text-only prompt got cross-attention states", ctx);
    }
    const int32_t V = tsr_model_vocab_size(model);
    logits = malloc((size_t)V * sizeof *logits);
    CHECK(logits != NULL);
    if (!logits) goto done;
    st = tsr_session_decode(sess, tsr_prompt_input(prompt), logits, (size_t)V, &err);
    CHECK_MSG(st == TSR_OK, "%s: decode: %s: %s", ctx, tsr_status_name(st), err.message);
    double d_log = INFINITY;
    if (!st && want(g_exp, name, "logits", &w)) {
        tsr_tensor got;
        tsr_tensor_view(&got, TSR_DTYPE_F32, 1, (int64_t[]){V}, logits, &err);
        d_log = tsr_test_compare_tensor(ctx, "logits", &got, &w, TOL);
        if (d_log > mx->logits) mx->logits = d_log;
    }
    const char *same_txt = "not run";
    if (greedy) {
        int same = tsr_test_check_greedy(ctx, sess, tsr_prompt_input(prompt),
                                         want(g_exp, name, "greedy", &w) ? &w : NULL);
        same_txt = same ? "identical" : "DIFFERENT";
    }
    printf("%s: %lld ids, cross_attention_states max abs diff %.3g, logits max abs diff %.3g, "
           "greedy %s, encoder %.1f ms\n",
           ctx, (long long)tsr_prompt_input(prompt)->n_ids, d_cs, d_log, same_txt,
           tsr_prompt_image_ms(prompt));
done:
    free(logits);
    tsr_prompt_free(prompt);
    tsr_tensor_list_free(out);
}

static tsr_model *load_model(const char *dir) {
    tsr_error err = {0};
    tsr_model *m = NULL;
    CHECK_OK(tsr_model_load(dir, NULL, &m, &err), &err);
    return m;
}

static tsr_session *new_session(tsr_model *m) {
    tsr_error err = {0};
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = 256;
    sp.n_threads = 2;
    tsr_session *s = NULL;
    CHECK_OK(tsr_session_new(m, &sp, &s, &err), &err);
    return s;
}

static void test_parity(void) {
    tsr_model *m = load_model(tsr_test_fixture("models/mllama/model"));
    tsr_session *s = m ? new_session(m) : NULL;
    maxes mx = {0, 0};
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g_cases, "cases")) {
        if (!s) break;
        run_case("mllama", m, s, c, 1, &mx);
        n++;
    }
    CHECK(n >= 6);
    printf("mllama: %d cases, max abs diff cross_attention_states %.3g, logits %.3g\n", n,
           mx.states, mx.logits);
    tsr_session_free(s);
    tsr_model_free(m);
}

/* ---------------------------------------------------------------------------------- */
/* Rewritten checkpoints in a temporary model directory                                 */
/* ---------------------------------------------------------------------------------- */

static const char *const SIDE_FILES[] = {"config.json", "generation_config.json",
                                         "tokenizer.json", "tokenizer_config.json",
                                         "preprocessor_config.json"};

/* rename(name) -> new name (static buffer) or NULL to drop; reshape(name, shape) may change a
 * tensor's leading dim (the data is cut or padded with zeros). Writes dir/model.safetensors. */
typedef const char *(*rename_fn)(const char *name);
typedef int (*reshape_fn)(const char *name, int64_t *shape, int32_t ndim);

/* 0: the encoder's F32 tensors as they are; 1: rounded to BF16 (nearest even) and stored so;
 * 2: rounded to BF16 and stored as F32. */
static int g_round;

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* t (F32) rounded as g_round says into *out (owned). */
static int round_tensor(const tsr_tensor *t, tsr_tensor *out) {
    tsr_error err = {0};
    if (tsr_tensor_alloc(out, g_round == 1 ? TSR_DTYPE_BF16 : TSR_DTYPE_F32, t->ndim, t->shape,
                         &err))
        return 0;
    const float *x = t->data;
    for (int64_t i = 0; i < tsr_tensor_numel(t); i++) {
        uint16_t b = to_bf16(x[i]);
        if (g_round == 1) {
            ((uint16_t *)out->data)[i] = b;
        } else {
            uint32_t u = (uint32_t)b << 16;
            memcpy((float *)out->data + i, &u, sizeof u);
        }
    }
    return 1;
}

typedef struct variant_edit {
    rename_fn ren;
    reshape_fn resh;
} variant_edit;

static int edit_variant(const char **name, const tsr_tensor *t, tsr_tensor *repl, void *user) {
    const variant_edit *v = user;
    const char *orig = *name;
    if (v->ren && !(*name = v->ren(orig))) return 1;
    int enc_part = !strncmp(orig, "vision_model.", 13) ||
                   !strncmp(orig, "multi_modal_projector.", 22);
    if (g_round && enc_part && t->dtype == TSR_DTYPE_F32) return round_tensor(t, repl);
    int64_t shape[TSR_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    if (v->resh && v->resh(orig, shape, t->ndim))
        return tsr_test_tensor_resized(t, t->ndim, shape, repl);
    return 1;
}

static int write_variant(const char *dir, rename_fn ren, reshape_fn resh) {
    variant_edit v = {ren, resh};
    return tsr_test_write_checkpoint(tsr_test_fixture("models/mllama/model"), dir, SIDE_FILES,
                                     sizeof SIDE_FILES / sizeof SIDE_FILES[0], edit_variant, &v);
}

static void remove_variant(const char *dir) {
    tsr_test_remove_checkpoint(dir, SIDE_FILES, sizeof SIDE_FILES / sizeof SIDE_FILES[0]);
}

/* transformers 5 names: model.vision_model.*, model.multi_modal_projector.*,
 * model.language_model.*, lm_head.weight */
static const char *rename_t5(const char *name) {
    static char buf[512];
    static const char *const map[][2] = {
        {"vision_model.", "model.vision_model."},
        {"multi_modal_projector.", "model.multi_modal_projector."},
        {"language_model.model.", "model.language_model."},
        {"language_model.lm_head.", "lm_head."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t n = strlen(map[i][0]);
        if (!strncmp(name, map[i][0], n)) {
            snprintf(buf, sizeof buf, "%s%s", map[i][1], name + n);
            return buf;
        }
    }
    return name;
}

static void test_transformers5_names(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/t5", g_tmp);
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(write_variant(dir, rename_t5, NULL));
    tsr_model *m = load_model(dir);
    tsr_session *s = m ? new_session(m) : NULL;
    maxes mx = {0, 0};
    const cJSON *c = find_case("two_images");
    CHECK(c != NULL);
    if (s && c) run_case("mllama-t5-names", m, s, c, 0, &mx);
    tsr_session_free(s);
    tsr_model_free(m);
    remove_variant(dir);
}

/* The encoder's weights stored in BF16 (16-bit matrices widened in the kernels, 16-bit
 * vectors converted at load) give what the same rounded values stored in F32 give. */
static void test_bf16_weights(void) {
    tsr_tensor_list *states[2] = {NULL, NULL};
    const cJSON *c = find_case("two_images");
    for (int v = 0; v < 2 && c; v++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/bf16_%d", g_tmp, v);
        CHECK(mkdir(dir, 0700) == 0);
        g_round = v == 0 ? 1 : 2;
        CHECK(write_variant(dir, NULL, NULL));
        g_round = 0;
        tsr_model *m = load_model(dir);
        tsr_tensor_list *in = m ? process(m, c) : NULL;
        tsr_error err = {0};
        tsr_prompt *p = NULL;
        if (in) CHECK_OK(tsr_prompt_new(m, NULL, in, &p, &err), &err);
        const tsr_tensor *cs = p ? tsr_tensor_list_get(tsr_prompt_tensors(p),
                                                      "cross_attention_states") : NULL;
        if (cs && !tsr_tensor_list_new(&states[v], &err)) {
            tsr_tensor copy;
            if (!tsr_tensor_alloc(&copy, cs->dtype, cs->ndim, cs->shape, &err)) {
                memcpy(copy.data, cs->data, tsr_tensor_nbytes(cs));
                if (tsr_tensor_list_add(states[v], "s", &copy, &err)) tsr_tensor_free(&copy);
            }
        }
        tsr_prompt_free(p);
        tsr_tensor_list_free(in);
        tsr_model_free(m);
        remove_variant(dir);
    }
    const tsr_tensor *a = states[0] ? tsr_tensor_list_get(states[0], "s") : NULL;
    const tsr_tensor *b = states[1] ? tsr_tensor_list_get(states[1], "s") : NULL;
    CHECK(a && b);
    if (a && b) {
        double d = tsr_test_compare_tensor("mllama/bf16", "cross_attention_states", a, b, 1e-5);
        printf("mllama/bf16 weights vs the same values in f32: cross_attention_states max abs "
               "diff %.3g\n", d);
    }
    tsr_tensor_list_free(states[0]);
    tsr_tensor_list_free(states[1]);
}

static const char *drop_name;
static const char *rename_drop(const char *name) { return strcmp(name, drop_name) ? name : NULL; }
static const char *reshape_name;
static int reshape_one(const char *name, int64_t *shape, int32_t ndim) {
    (void)ndim;
    if (strcmp(name, reshape_name)) return 0;
    shape[0] -= 1;
    return 1;
}

static void expect_load_error(const char *what, rename_fn ren, reshape_fn resh,
                              tsr_status code, const char *must_name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bad", g_tmp);
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(write_variant(dir, ren, resh));
    tsr_error err = {0};
    tsr_model *m = NULL;
    tsr_status st = tsr_model_load(dir, NULL, &m, &err);
    CHECK_MSG(st == code && !m, "%s: got %s (%s), expected %s", what, tsr_status_name(st),
              err.message, tsr_status_name(code));
    CHECK_MSG(strstr(err.message, must_name) != NULL, "%s: message \"%s\" does not name %s",
              what, err.message, must_name);
    printf("%s: %s: %s\n", what, tsr_status_name(st), err.message);
    tsr_model_free(m);
    remove_variant(dir);
}

static void test_bad_checkpoint(void) {
    drop_name = "vision_model.global_transformer.layers.1.gate_ffn";
    expect_load_error("missing tensor", rename_drop, NULL, TSR_ERR_FORMAT, drop_name);
    drop_name = "multi_modal_projector.bias";
    expect_load_error("missing projector bias", rename_drop, NULL, TSR_ERR_FORMAT, drop_name);
    reshape_name = "vision_model.gated_positional_embedding.embedding";
    expect_load_error("wrong shape", NULL, reshape_one, TSR_ERR_SHAPE, reshape_name);
    reshape_name = "vision_model.transformer.layers.2.mlp.fc1.weight";
    expect_load_error("wrong shape fc1", NULL, reshape_one, TSR_ERR_SHAPE, reshape_name);
}

/* ---------------------------------------------------------------------------------- */
/* Bad processor outputs                                                                */
/* ---------------------------------------------------------------------------------- */

/* A copy of src with `name` replaced by a tensor of dtype / shape (values copied as far as
 * they go, then 0); shape NULL drops it. fill >= 0 sets every I64 value to fill. */
/* src with `name` reshaped (tsr_test_list_reshape). */
static tsr_tensor_list *variant(const tsr_tensor_list *src, const char *name, int32_t ndim,
                                const int64_t *shape, int64_t fill) {
    return tsr_test_list_reshape(src, name, ndim, shape, fill);
}

/* The prompt of `in` (freed here) fails with code, naming n1 and n2 (may be NULL). */
static void expect_prompt_error(tsr_model *m, const char *what, tsr_tensor_list *in,
                                tsr_status code, const char *n1, const char *n2) {
    const char *const needles[] = {n1, n2, NULL};
    tsr_test_expect_prompt_error(what, m, NULL, in, code, needles);
    tsr_tensor_list_free(in);
}

static void test_bad_inputs(void) {
    tsr_model *m = load_model(tsr_test_fixture("models/mllama/model"));
    const cJSON *c = find_case("one_image");
    tsr_tensor_list *in = m && c ? process(m, c) : NULL;
    if (!in) {
        tsr_model_free(m);
        return;
    }
    const tsr_tensor *cm = tsr_tensor_list_get(in, "cross_attention_mask");
    CHECK(cm && cm->ndim == 4);
    if (cm && cm->ndim == 4) {
        int64_t short_rows[4] = {cm->shape[0], cm->shape[1] - 1, cm->shape[2], cm->shape[3]};
        expect_prompt_error(m, "cross_attention_mask one row short",
                            variant(in, "cross_attention_mask", 4, short_rows, -1),
                            TSR_ERR_SHAPE, "cross_attention_mask", "one row per input id");
    }
    const tsr_tensor *pv = tsr_tensor_list_get(in, "pixel_values");
    CHECK(pv && pv->ndim == 6);
    if (pv && pv->ndim == 6) {
        int64_t s[6];
        memcpy(s, pv->shape, sizeof s);
        expect_prompt_error(m, "aspect_ratio_ids for two images",
                            variant(in, "aspect_ratio_ids", 2, (int64_t[]){1, 2}, -1),
                            TSR_ERR_SHAPE, "aspect_ratio_ids", "pixel_values");
        expect_prompt_error(m, "aspect_ratio_mask of 3 tiles",
                            variant(in, "aspect_ratio_mask", 3, (int64_t[]){1, 1, 3}, -1),
                            TSR_ERR_SHAPE, "aspect_ratio_mask", "pixel_values");
        expect_prompt_error(m, "aspect_ratio_mask 2-D",
                            variant(in, "aspect_ratio_mask", 2, (int64_t[]){1, 4}, -1),
                            TSR_ERR_SHAPE, "aspect_ratio_mask", "pixel_values");
        int64_t s2[6] = {s[0], s[1], s[2] - 1, s[3], s[4], s[5]};
        expect_prompt_error(m, "pixel_values of 3 tiles", variant(in, "pixel_values", 6, s2, -1),
                            TSR_ERR_SHAPE, "pixel_values", NULL);
        int64_t s3[6] = {s[0], s[1], s[2], s[3], s[4] + 14, s[5] + 14};
        expect_prompt_error(m, "pixel_values of larger tiles",
                            variant(in, "pixel_values", 6, s3, -1), TSR_ERR_SHAPE,
                            "pixel_values", NULL);
        int64_t s4[6] = {s[0], 2, s[2], s[3], s[4], s[5]};
        expect_prompt_error(m, "pixel_values of two images",
                            variant(in, "pixel_values", 6, s4, -1), TSR_ERR_SHAPE,
                            "aspect_ratio_ids", "pixel_values");
    }
    expect_prompt_error(m, "aspect_ratio_ids missing",
                        variant(in, "aspect_ratio_ids", 0, NULL, -1), TSR_ERR_FORMAT,
                        "aspect_ratio_ids", NULL);
    expect_prompt_error(m, "aspect_ratio_id out of range",
                        variant(in, "aspect_ratio_ids", 2, (int64_t[]){1, 1}, 99),
                        TSR_ERR_INVALID_ARG, "aspect_ratio_ids", NULL);
    expect_prompt_error(m, "aspect_ratio_mask value 2",
                        variant(in, "aspect_ratio_mask", 3, (int64_t[]){1, 1, 4}, 2),
                        TSR_ERR_INVALID_ARG, "aspect_ratio_mask", NULL);
    tsr_tensor_list_free(in);
    tsr_model_free(m);
}

/* A padded image slot (aspect ratio id 0, every tile masked): every row is masked, so the
 * reference gives every key the same weight. */
static void test_masked_tiles(void) {
    tsr_model *m = load_model(tsr_test_fixture("models/mllama/model"));
    tsr_tensor_list *in = m ? process(m, find_case("one_image")) : NULL;
    tsr_tensor_list *a = in ? variant(in, "aspect_ratio_ids", 2, (int64_t[]){1, 1}, 0) : NULL;
    tsr_tensor_list *b = a ? variant(a, "aspect_ratio_mask", 3, (int64_t[]){1, 1, 4}, 0) : NULL;
    tsr_error err = {0};
    tsr_prompt *p = NULL;
    tsr_tensor w;
    CHECK(b != NULL);
    if (b) CHECK_OK(tsr_prompt_new(m, NULL, b, &p, &err), &err);
    if (p && want(g_exp, "masked_tiles", "cross_attention_states", &w)) {
        double d = tsr_test_compare_tensor("mllama/masked_tiles", "cross_attention_states",
                                           tsr_tensor_list_get(tsr_prompt_tensors(p),
                                                               "cross_attention_states"),
                                           &w, TOL);
        printf("mllama/masked_tiles: cross_attention_states max abs diff %.3g\n", d);
    } else {
        CHECK(0);
    }
    tsr_prompt_free(p);
    tsr_tensor_list_free(b);
    tsr_tensor_list_free(a);
    tsr_tensor_list_free(in);
    tsr_model_free(m);
}

#ifdef TSR_ALLOC_FAILPOINTS
/* Every allocation of tsr_prompt_new (the vision encoder's included) failing in turn gives a
 * clean OOM, no leak, and the run after it succeeds. */
static void test_encode_oom(void) {
    tsr_model *m = load_model(tsr_test_fixture("models/mllama/model"));
    tsr_tensor_list *in = m ? process(m, find_case("two_images")) : NULL;
    int saw_ok = 0;
    for (long n = 1; in && n < 400 && !saw_ok; n++) {
        tsr_error err = {0};
        tsr_prompt *p = NULL;
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_prompt_new(m, NULL, in, &p, &err);
        tsr__alloc_failpoint(0);
        CHECK_MSG(st == TSR_OK || st == TSR_ERR_OOM, "failpoint %ld: %s %s", n,
                  tsr_status_name(st), err.message);
        CHECK_MSG(st != TSR_OK || p, "failpoint %ld: no prompt", n);
        saw_ok = st == TSR_OK;
        tsr_prompt_free(p);
    }
    CHECK(saw_ok);
    tsr_tensor_list_free(in);
    tsr_model_free(m);
}
#endif

int main(void) {
    size_t len;
    char *text = (char *)tsr_test_read(tsr_test_fixture("models/mllama/cases.json"), &len);
    g_cases = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    tsr_error err = {0};
    if (!g_cases ||
        tsr_test_open_safetensors(tsr_test_fixture("models/mllama/expected.safetensors"), &g_exp,
                                  &err)) {
        fprintf(stderr, "mllama fixtures missing: %s\n", err.message);
        cJSON_Delete(g_cases);
        return 1;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/tsr_model_mllama_XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    tsr_test_run("parity", test_parity);
    tsr_test_run("masked_tiles", test_masked_tiles);
    tsr_test_run("transformers5_names", test_transformers5_names);
    tsr_test_run("bf16_weights", test_bf16_weights);
    tsr_test_run("bad_checkpoint", test_bad_checkpoint);
    tsr_test_run("bad_inputs", test_bad_inputs);
#ifdef TSR_ALLOC_FAILPOINTS
    tsr_test_run("encode_oom", test_encode_oom);
#endif
    rmdir(g_tmp);
    tsr_test_close_safetensors(g_exp);
    cJSON_Delete(g_cases);
    return tsr_test_finish();
}
