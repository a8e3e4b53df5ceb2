/* MiniCPM-o 2.6 end to end against the checkpoint's remote code (fixtures from
 * tools/refgen/gen_model_minicpmo.py, tests/fixtures/models/minicpmo/): tsr_model_load on a tiny
 * hub-layout checkpoint (vpm.*, resampler.*, apm.*, audio_projection_layer.*, tts.*, llm.*),
 * the model's processor on a raw prompt with its images and audio, tsr_prompt_new (SigLIP NaViT
 * + Resampler per slice, Whisper encoder + projection + pool per audio piece), then the Qwen2
 * decoder on the embeddings.
 *   embeds    rows at the image_bound / audio_bounds positions, <= 1e-4 abs
 *   logits    last-position prefill logits, <= 1e-4 abs
 *   greedy    32 ids, EOS not stopping, identical
 * Bad inputs: a checkpoint missing an encoder tensor or holding one of the wrong shape; slices,
 * bounds and audio lengths that disagree with each other. Each fails with its own error. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tessera_internal.h"

#define TOL 1e-4
#define MODEL "models/minicpmo/model"

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
    double embeds, logits;
} maxes;

static void run_case(tsr_model *model, tsr_session *sess, const cJSON *c, maxes *mx) {
    const char *name = jstr(c, "name");
    char ctx[160];
    snprintf(ctx, sizeof ctx, "minicpmo/%s", name);
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
    double d_emb = 0;
    if (want(g_exp, name, "embeds", &w)) {
        /* the processor names the slices pixel_values.<i>: a prompt of images alone must still
         * reach the encoder */
        CHECK_MSG(tsr_tensor_list_get(enc, "embeds") ||
                      !tsr_tensor_list_get(out, "pixel_values.0") ||
                      tsr_tensor_list_get(out, "audio_features"),
                  "%s: tsr_prompt_new did not run the encoder on pixel_values.0 .. (images "
                  "without audio)", ctx);
        d_emb = tsr_test_compare_tensor(ctx, "embeds", tsr_tensor_list_get(enc, "embeds"), &w, TOL);
        if (d_emb > mx->embeds) mx->embeds = d_emb;
    } else {
        CHECK_MSG(!tsr_tensor_list_get(enc, "embeds"), "%s: a text-only prompt got embeddings",
                  ctx);
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
    int same = tsr_test_check_greedy(ctx, sess, tsr_prompt_input(prompt),
                                     want(g_exp, name, "greedy", &w) ? &w : NULL);
    printf("%s: %lld ids, embeds max abs diff %.3g, logits max abs diff %.3g, greedy %s, "
           "image %.1f ms, audio %.1f ms\n",
           ctx, (long long)tsr_prompt_input(prompt)->n_ids, d_emb, d_log,
           same ? "identical" : "DIFFERENT", tsr_prompt_image_ms(prompt),
           tsr_prompt_audio_ms(prompt));
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
    sp.n_ctx = 512;
    sp.n_threads = 2;
    tsr_session *s = NULL;
    CHECK_OK(tsr_session_new(m, &sp, &s, &err), &err);
    return s;
}

static void test_parity(void) {
    tsr_model *m = load_model(tsr_test_fixture(MODEL));
    tsr_session *s = m ? new_session(m) : NULL;
    maxes mx = {0, 0};
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g_cases, "cases")) {
        if (!s) break;
        run_case(m, s, c, &mx);
        n++;
    }
    CHECK(n >= 6);
    printf("minicpmo: %d cases, max abs diff embeds %.3g, logits %.3g\n", n, mx.embeds,
           mx.logits);
    tsr_session_free(s);
    tsr_model_free(m);
}

/* ---------------------------------------------------------------------------------- */
/* Rewritten checkpoints in a temporary model directory                                 */
/* ---------------------------------------------------------------------------------- */

static const char *const SIDE_FILES[] = {"config.json", "generation_config.json",
                                         "tokenizer.json", "tokenizer_config.json",
                                         "preprocessor_config.json"};

/* keep(name) == 0 drops a tensor; reshape(name, shape) may change a tensor's leading dim
 * (the data is cut or padded with zeros). Writes dir/model.safetensors. */
typedef int (*keep_fn)(const char *name);
typedef int (*reshape_fn)(const char *name, int64_t *shape, int32_t ndim);

typedef struct variant_edit {
    keep_fn keep;
    reshape_fn resh;
} variant_edit;

static int edit_variant(const char **name, const tsr_tensor *t, tsr_tensor *repl, void *user) {
    const variant_edit *v = user;
    if (v->keep && !v->keep(*name)) {
        *name = NULL;
        return 1;
    }
    int64_t shape[TSR_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    if (v->resh && v->resh(*name, shape, t->ndim))
        return tsr_test_tensor_resized(t, t->ndim, shape, repl);
    return 1;
}

static int write_variant(const char *dir, keep_fn keep, reshape_fn resh) {
    variant_edit v = {keep, resh};
    return tsr_test_write_checkpoint(tsr_test_fixture(MODEL), dir, SIDE_FILES,
                                     sizeof SIDE_FILES / sizeof SIDE_FILES[0], edit_variant, &v);
}

static void remove_variant(const char *dir) {
    tsr_test_remove_checkpoint(dir, SIDE_FILES, sizeof SIDE_FILES / sizeof SIDE_FILES[0]);
}

static const char *drop_name;
static int keep_not_dropped(const char *name) { return strcmp(name, drop_name) != 0; }
static int keep_no_tts(const char *name) { return strncmp(name, "tts.", 4) != 0; }
static const char *reshape_name;
static int reshape_one(const char *name, int64_t *shape, int32_t ndim) {
    (void)ndim;
    if (strcmp(name, reshape_name)) return 0;
    shape[0] -= 1;
    return 1;
}

static void expect_load_error(const char *what, keep_fn keep, reshape_fn resh, tsr_status code,
                              const char *must_name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bad", g_tmp);
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(write_variant(dir, keep, resh));
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
    drop_name = "vpm.encoder.layers.1.mlp.fc2.bias";
    expect_load_error("missing vision tensor", keep_not_dropped, NULL, TSR_ERR_FORMAT, drop_name);
    drop_name = "resampler.attn.in_proj_bias";
    expect_load_error("missing resampler tensor", keep_not_dropped, NULL, TSR_ERR_FORMAT,
                      drop_name);
    drop_name = "apm.layers.0.self_attn.k_proj.weight";
    expect_load_error("missing audio tensor", keep_not_dropped, NULL, TSR_ERR_FORMAT, drop_name);
    drop_name = "audio_projection_layer.linear2.bias";
    expect_load_error("missing projection tensor", keep_not_dropped, NULL, TSR_ERR_FORMAT,
                      drop_name);
    reshape_name = "vpm.embeddings.position_embedding.weight";
    expect_load_error("wrong shape positions", NULL, reshape_one, TSR_ERR_SHAPE, reshape_name);
    reshape_name = "resampler.query";
    expect_load_error("wrong shape queries", NULL, reshape_one, TSR_ERR_SHAPE, reshape_name);
    reshape_name = "apm.conv2.weight";
    expect_load_error("wrong shape conv2", NULL, reshape_one, TSR_ERR_SHAPE, reshape_name);
    reshape_name = "apm.embed_positions.weight";
    expect_load_error("wrong shape audio positions", NULL, reshape_one, TSR_ERR_SHAPE,
                      reshape_name);

    /* without the TTS part the checkpoint loads the same */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/notts", g_tmp);
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(write_variant(dir, keep_no_tts, NULL));
    tsr_model *m = load_model(dir);
    CHECK(m != NULL);
    tsr_model_free(m);
    remove_variant(dir);
}

/* dir/config.json with "chunk_input" set to false (the audio of each piece fills one bound). */
static int set_chunk_input_false(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t len;
    char *text = (char *)tsr_test_read(path, &len);
    cJSON *c = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    if (!c) return 0;
    cJSON_DeleteItemFromObject(c, "chunk_input");
    cJSON_AddBoolToObject(c, "chunk_input", 0);
    char *out = cJSON_Print(c);
    cJSON_Delete(c);
    FILE *f = out ? fopen(path, "wb") : NULL;
    int ok = f && fwrite(out, 1, strlen(out), f) == strlen(out);
    if (f && fclose(f)) ok = 0;
    free(out);
    return ok;
}

/* Without chunk_input (config.json), the processor writes one placeholder run per audio piece
 * and the encoder fills each audio_bounds range with its piece: the 5 s clip gives the rows
 * of the chunked reference in one range. A chunked processor output (five ranges for the one
 * piece) is refused, as get_omni_embedding refuses it. */
static void test_unchunked(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/unchunked", g_tmp);
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(write_variant(dir, NULL, NULL) && set_chunk_input_false(dir));
    tsr_model *m = load_model(dir), *m0 = load_model(tsr_test_fixture(MODEL));
    const cJSON *c = find_case("audio_5s");
    CHECK(c != NULL);
    tsr_tensor_list *in = m && c ? process(m, c) : NULL;
    tsr_tensor_list *in0 = m0 && c ? process(m0, c) : NULL;
    tsr_error err = {0};
    tsr_prompt *p = NULL;
    tsr_tensor w;
    if (in) {
        const tsr_tensor *ab = tsr_tensor_list_get(in, "audio_bounds");
        CHECK_MSG(ab && ab->ndim == 2 && ab->shape[0] == 1, "unchunked: one audio range expected");
        tsr_status st = tsr_prompt_new(m, NULL, in, &p, &err);
        CHECK_MSG(st == TSR_OK, "unchunked: tsr_prompt_new: %s: %s", tsr_status_name(st),
                  err.message);
        if (!st && want(g_exp, "audio_5s", "embeds", &w)) {
            double d = tsr_test_compare_tensor("minicpmo/audio_5s unchunked", "embeds",
                                               tsr_tensor_list_get(tsr_prompt_tensors(p), "embeds"),
                                               &w, TOL);
            printf("minicpmo/audio_5s unchunked: embeds max abs diff %.3g\n", d);
        }
        tsr_prompt_free(p);
        p = NULL;
    }
    if (in0) {
        tsr_status st = tsr_prompt_new(m, NULL, in0, &p, &err);
        CHECK_MSG(st == TSR_ERR_SHAPE && !p && strstr(err.message, "audio_bounds") &&
                      strstr(err.message, "audio_features"),
                  "chunked ranges, unchunked model: got %s (%s), expected SHAPE naming "
                  "audio_bounds and audio_features", tsr_status_name(st), err.message);
        printf("chunked ranges, unchunked model: %s: %s\n", tsr_status_name(st), err.message);
        tsr_prompt_free(p);
    }
    tsr_tensor_list_free(in);
    tsr_tensor_list_free(in0);
    tsr_model_free(m);
    tsr_model_free(m0);
    remove_variant(dir);
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
    tsr_model *m = load_model(tsr_test_fixture(MODEL));
    const cJSON *c = find_case("image_audio");
    tsr_tensor_list *in = m && c ? process(m, c) : NULL;
    if (!in) {
        tsr_model_free(m);
        return;
    }
    const tsr_tensor *tgt = tsr_tensor_list_get(in, "tgt_sizes");
    const tsr_tensor *ib = tsr_tensor_list_get(in, "image_bound");
    const tsr_tensor *ab = tsr_tensor_list_get(in, "audio_bounds");
    const tsr_tensor *af = tsr_tensor_list_get(in, "audio_features");
    CHECK(tgt && tgt->ndim == 2 && ib && ib->ndim == 2 && ab && ab->ndim == 2 && af);
    if (tgt && tgt->ndim == 2 && ib && ib->ndim == 2 && ab && ab->ndim == 2 && af) {
        /* every slice 1 x 1 patch: the pixel_values no longer match */
        expect_prompt_error(m, "tgt_sizes against pixel_values",
                            variant(in, "tgt_sizes", 2, tgt->shape, 1), TSR_ERR_SHAPE,
                            "pixel_values.0", "tgt_sizes");
        expect_prompt_error(m, "tgt_sizes of zero patches",
                            variant(in, "tgt_sizes", 2, tgt->shape, 0), TSR_ERR_SHAPE,
                            "tgt_sizes", NULL);
        expect_prompt_error(m, "tgt_sizes of 3 columns",
                            variant(in, "tgt_sizes", 2, (int64_t[]){tgt->shape[0], 3}, -1),
                            TSR_ERR_SHAPE, "tgt_sizes", NULL);
        /* one slice fewer than pixel_values.<i> */
        expect_prompt_error(m, "tgt_sizes against the slices",
                            variant(in, "tgt_sizes", 2, (int64_t[]){tgt->shape[0] - 1, 2}, -1),
                            TSR_ERR_SHAPE, "pixel_values", "tgt_sizes");
        expect_prompt_error(m, "image_bound against tgt_sizes",
                            variant(in, "image_bound", 2, (int64_t[]){ib->shape[0] - 1, 2}, -1),
                            TSR_ERR_SHAPE, "image_bound", "tgt_sizes");
        expect_prompt_error(m, "audio_bounds against audio_features",
                            variant(in, "audio_bounds", 2, ab->shape, 3),
                            TSR_ERR_SHAPE, "audio_bounds", "audio_features");
        expect_prompt_error(m, "audio_feature_lens against audio_features",
                            variant(in, "audio_feature_lens", 1, (int64_t[]){2}, -1),
                            TSR_ERR_SHAPE, "audio_feature_lens", "audio_features");
        expect_prompt_error(m, "audio_feature_lens beyond the frames",
                            variant(in, "audio_feature_lens", 1, (int64_t[]){1}, 1 << 20),
                            TSR_ERR_SHAPE, "audio_feature_lens", "audio_features");
        expect_prompt_error(m, "audio_features of 40 mel bins",
                            variant(in, "audio_features", 3,
                                    (int64_t[]){af->shape[0], 40, af->shape[2]}, -1),
                            TSR_ERR_SHAPE, "audio_features", NULL);
        expect_prompt_error(m, "image_bound outside the prompt",
                            variant(in, "image_bound", 2, ib->shape, 1 << 20), TSR_ERR_SHAPE,
                            "image_bound", NULL);
    }
    expect_prompt_error(m, "pixel_values.0 missing", variant(in, "pixel_values.0", 0, NULL, -1),
                        TSR_ERR_FORMAT, "pixel_values.0", NULL);
    expect_prompt_error(m, "audio_feature_lens missing",
                        variant(in, "audio_feature_lens", 0, NULL, -1), TSR_ERR_FORMAT,
                        "audio_feature_lens", NULL);
    tsr_tensor_list_free(in);
    tsr_model_free(m);
}

#ifdef TSR_ALLOC_FAILPOINTS
/* Every allocation of the encoders (tsr_prompt_new on a prompt with a sliced image and audio)
 * failing in turn: each is a clean OOM, no leak. */
static void test_alloc_failures(void) {
    tsr_model *m = load_model(tsr_test_fixture(MODEL));
    const cJSON *c = find_case("slices_audio");
    tsr_tensor_list *in = m && c ? process(m, c) : NULL;
    int saw_ok = 0;
    for (long n = 1; in && n < 4000 && !saw_ok; n++) {
        tsr_error err = {0};
        tsr_prompt *p = NULL;
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_prompt_new(m, NULL, in, &p, &err);
        tsr__alloc_failpoint(0);
        CHECK_MSG(st == TSR_OK || st == TSR_ERR_OOM, "failpoint %ld: %s %s", n,
                  tsr_status_name(st), err.message);
        CHECK_MSG(st != TSR_OK || p, "failpoint %ld: no prompt", n);
        saw_ok = st == TSR_OK;
        if (saw_ok) printf("allocation failures: %ld allocations, each a clean OOM\n", n - 1);
        tsr_prompt_free(p);
    }
    CHECK(saw_ok);
    tsr_tensor_list_free(in);
    tsr_model_free(m);

    /* loading (the checkpoint without its tokenizer, which has its own walk elsewhere) */
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, "%s/alloc", g_tmp);
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(write_variant(dir, NULL, NULL));
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    unlink(path);
    saw_ok = 0;
    for (long n = 1; n < 20000 && !saw_ok; n++) {
        tsr_error err = {0};
        tsr_model *lm = NULL;
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_model_load(dir, NULL, &lm, &err);
        tsr__alloc_failpoint(0);
        CHECK_MSG(st == TSR_OK || st == TSR_ERR_OOM, "load failpoint %ld: %s %s", n,
                  tsr_status_name(st), err.message);
        saw_ok = st == TSR_OK && lm;
        if (saw_ok) printf("load allocation failures: %ld allocations, each a clean OOM\n", n - 1);
        tsr_model_free(lm);
    }
    CHECK(saw_ok);
    remove_variant(dir);
}
#endif

int main(void) {
    size_t len;
    char *text = (char *)tsr_test_read(tsr_test_fixture("models/minicpmo/cases.json"), &len);
    g_cases = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    tsr_error err = {0};
    if (!g_cases ||
        tsr_test_open_safetensors(tsr_test_fixture("models/minicpmo/expected.safetensors"),
                                  &g_exp, &err)) {
        fprintf(stderr, "minicpmo fixtures missing: %s\n", err.message);
        cJSON_Delete(g_cases);
        return 1;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/tsr_model_minicpmo_XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    tsr_test_run("parity", test_parity);
    tsr_test_run("unchunked", test_unchunked);
    tsr_test_run("bad_checkpoint", test_bad_checkpoint);
    tsr_test_run("bad_inputs", test_bad_inputs);
#ifdef TSR_ALLOC_FAILPOINTS
    tsr_test_run("allocation_failures", test_alloc_failures);
#endif
    rmdir(g_tmp);
    tsr_test_close_safetensors(g_exp);
    cJSON_Delete(g_cases);
    return tsr_test_finish();
}
