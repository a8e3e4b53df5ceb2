/* Qwen2-VL and Qwen2.5-VL end to end against transformers (fixtures from
 * tools/refgen/gen_model_qwen2_vl.py, tests/fixtures/models/<family>/): tsr_model_load on a
 * tiny hub-layout checkpoint, the model's processor on a rendered prompt and its images,
 * tsr_prompt_new (vision encoder, merger, M-RoPE positions), then the decoder.
 *   embeds        get_image_features rows, <= 1e-4 abs
 *   position_ids  get_rope_index, exact (text-only prompts: none, the decoder counts up)
 *   logits        last-position prefill logits, <= 1e-4 abs
 *   greedy        32 ids of generate(do_sample=False) with EOS not stopping, identical
 * Bad inputs: a checkpoint missing an encoder tensor or holding one of the wrong shape,
 * pixel_values that disagree with image_grid_thw, placeholders that do not match the
 * images, video input. Each must fail with its own error, naming what is wrong. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tessera_internal.h"


static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *load_json(const char *path) {
    size_t len;
    char *text = (char *)tsr_test_read(path, &len);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return j;
}

/* A fixture tensor "<case>.<what>", or NULL. */
static int want(const tsr_safetensors *st, const char *cs, const char *what, tsr_tensor *t) {
    char name[256];
    tsr_error err = {0};
    snprintf(name, sizeof name, "%s.%s", cs, what);
    return tsr_safetensors_get(st, name, t, &err) == TSR_OK;
}

typedef struct maxes {
    double embeds, logits;
} maxes;

static void run_case(const char *family, tsr_model *model, tsr_session *sess,
                     const tsr_safetensors *exp, const cJSON *c, maxes *mx) {
    const char *name = jstr(c, "name");
    char ctx[128];
    snprintf(ctx, sizeof ctx, "%s/%s", family, name);
    tsr_test_media m;
    tsr_error err = {0};
    tsr_tensor_list *out = NULL;
    tsr_prompt *prompt = NULL;
    float *logits = NULL;
    if (!tsr_test_media_load(cJSON_GetObjectItem(c, "media"), &m)) {
        CHECK_MSG(0, "%s: media", ctx);
        tsr_test_media_free(&m);
        return;
    }
    tsr_session_reset(sess);
    tsr_status st = tsr_processor_run_prompt(tsr_model_processor(model), jstr(c, "prompt"), 1,
                                             m.items, m.n, &out, &err);
    CHECK_MSG(st == TSR_OK, "%s: processor: %s: %s", ctx, tsr_status_name(st), err.message);
    if (st) goto done;
    tsr_tensor w;
    if (want(exp, name, "input_ids", &w)) {
        const tsr_tensor *ids = tsr_tensor_list_get(out, "input_ids");
        CHECK_MSG(ids && tsr_tensor_numel(ids) == w.shape[0] &&
                      !memcmp(ids->data, w.data, tsr_tensor_nbytes(&w)),
                  "%s: input_ids differ from the reference processor's", ctx);
    }
    st = tsr_prompt_new(model, sess, out, &prompt, &err);
    CHECK_MSG(st == TSR_OK, "%s: tsr_prompt_new: %s: %s", ctx, tsr_status_name(st), err.message);
    if (st) goto done;
    const tsr_tensor_list *enc = tsr_prompt_tensors(prompt);
    double d_emb = 0;
    if (want(exp, name, "embeds", &w)) {
        d_emb = tsr_test_compare_tensor(ctx, "embeds", tsr_tensor_list_get(enc, "embeds"), &w,
                                        1e-4);
        if (d_emb > mx->embeds) mx->embeds = d_emb;
        CHECK(want(exp, name, "position_ids", &w));
        tsr_test_compare_tensor(ctx, "position_ids", tsr_tensor_list_get(enc, "position_ids"),
                                &w, 0);
    } else {
        /* Text only: no encoder output; the decoder's own positions are the arange. */
        CHECK_MSG(!tsr_tensor_list_get(enc, "embeds") &&
                      !tsr_tensor_list_get(enc, "position_ids"),
                  "%s: a text-only prompt got encoder outputs", ctx);
    }

    const int32_t V = tsr_model_vocab_size(model);
    logits = malloc((size_t)V * sizeof *logits);
    CHECK(logits != NULL);
    if (!logits) goto done;
    st = tsr_session_decode(sess, tsr_prompt_input(prompt), logits, (size_t)V, &err);
    CHECK_MSG(st == TSR_OK, "%s: decode: %s: %s", ctx, tsr_status_name(st), err.message);
    double d_log = INFINITY;
    if (!st && want(exp, name, "logits", &w)) {
        tsr_tensor got;
        int64_t shp[1] = {V};
        tsr_tensor_view(&got, TSR_DTYPE_F32, 1, shp, logits, &err);
        d_log = tsr_test_compare_tensor(ctx, "logits", &got, &w, 1e-4);
        if (d_log > mx->logits) mx->logits = d_log;
    }

    int same = tsr_test_check_greedy(ctx, sess, tsr_prompt_input(prompt),
                                     want(exp, name, "greedy", &w) ? &w : NULL);
    printf("%s: %lld ids, embeds max abs diff %.3g, logits max abs diff %.3g, greedy %s, "
           "encoder %.1f ms\n",
           ctx, (long long)tsr_prompt_input(prompt)->n_ids, d_emb, d_log,
           same ? "identical" : "DIFFERENT", tsr_prompt_image_ms(prompt));
done:
    free(logits);
    tsr_prompt_free(prompt);
    tsr_tensor_list_free(out);
    tsr_test_media_free(&m);
}

static void run_family(const char *family) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/model", family);
    const char *dir = tsr_test_fixture(rel);
    char dir_copy[1024];
    snprintf(dir_copy, sizeof dir_copy, "%s", dir);
    snprintf(rel, sizeof rel, "models/%s/cases.json", family);
    cJSON *cases = load_json(tsr_test_fixture(rel));
    snprintf(rel, sizeof rel, "models/%s/expected.safetensors", family);
    tsr_safetensors *exp = NULL;
    tsr_error err = {0};
    tsr_model *model = NULL;
    tsr_session *sess = NULL;
    CHECK_MSG(cases != NULL, "%s: cases.json", family);
    CHECK_OK(tsr_test_open_safetensors(tsr_test_fixture(rel), &exp, &err), &err);
    if (!cases || !exp) goto done;
    tsr_status st = tsr_model_load(dir_copy, NULL, &model, &err);
    CHECK_MSG(st == TSR_OK, "%s: load: %s: %s", family, tsr_status_name(st), err.message);
    if (st) goto done;
    CHECK(!strcmp(tsr_model_type(model), family));
    CHECK(tsr_model_processor(model) != NULL);
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = 512;
    sp.n_threads = 2;
    CHECK_OK(tsr_session_new(model, &sp, &sess, &err), &err);
    if (!sess) goto done;
    maxes mx = {0, 0};
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cases) {
        run_case(family, model, sess, exp, c, &mx);
        n++;
    }
    CHECK(n >= 6);
    printf("%s: %d cases, max abs diff: embeds %.3g, logits %.3g\n", family, n, mx.embeds,
           mx.logits);
done:
    tsr_session_free(sess);
    tsr_model_free(model);
    if (exp) tsr_test_close_safetensors(exp);
    cJSON_Delete(cases);
}

static void test_qwen2_vl(void) { run_family("qwen2_vl"); }

static void test_qwen2_5_vl(void) { run_family("qwen2_5_vl"); }

/* ---------------------------------------------------------------------------------- */
/* Bad checkpoints                                                                     */
/* ---------------------------------------------------------------------------------- */

static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        remove(path);
    }
    closedir(d);
    rmdir(dir);
}

/* The name transformers 5 save_pretrained gives a hub tensor name (visual.* ->
 * model.visual.*, model.* -> model.language_model.*), in buf. */
static const char *t5_name(const char *hub, char *buf, size_t cap) {
    if (!strncmp(hub, "visual.", 7)) snprintf(buf, cap, "model.%s", hub);
    else if (!strncmp(hub, "model.", 6)) snprintf(buf, cap, "model.language_model.%s", hub + 6);
    else snprintf(buf, cap, "%s", hub);
    return buf;
}

/* F32 -> BF16, round to nearest even (finite values). */
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

enum { CK_HUB = 0, CK_T5, CK_VISUAL_BF16, CK_VISUAL_ROUNDED };

/* A copy of the family's model directory in tmp whose model.safetensors lacks `drop` (when
 * non-NULL) and stores `reshape` (when non-NULL) with shape new_shape (same element count,
 * so the file stays valid). mode: CK_T5 every tensor under its transformers 5 name;
 * CK_VISUAL_BF16 the visual.* tensors stored as BF16; CK_VISUAL_ROUNDED the same values
 * (rounded to BF16) stored as F32. Returns 1 on success. */
static int write_checkpoint(const char *family, const char *tmp, const char *drop,
                            const char *reshape, int32_t ndim, const int64_t *new_shape,
                            int mode) {
    static const char *const files[] = {"config.json", "generation_config.json", "tokenizer.json",
                                        "tokenizer_config.json", "preprocessor_config.json"};
    char rel[256], path[1024];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(rel, sizeof rel, "models/%s/model/%s", family, files[i]);
        size_t len;
        uint8_t *b = tsr_test_read(tsr_test_fixture(rel), &len);
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        int ok = b && write_file(path, b, len);
        free(b);
        if (!ok) return 0;
    }
    snprintf(rel, sizeof rel, "models/%s/model/model.safetensors", family);
    tsr_safetensors *st = NULL;
    tsr_error err = {0};
    if (tsr_safetensors_open_file(tsr_test_fixture(rel), &st, &err)) return 0;
    int64_t n = tsr_safetensors_count(st), k = 0;
    const char **names = calloc((size_t)n, sizeof *names);
    char (*renamed)[160] = calloc((size_t)n, sizeof *renamed);
    tsr_tensor *ts = calloc((size_t)n, sizeof *ts);
    int ok = names && ts && renamed;
    const int convert = mode == CK_VISUAL_BF16 || mode == CK_VISUAL_ROUNDED;
    for (int64_t i = 0; ok && i < n; i++) {
        const char *nm = tsr_safetensors_name(st, i);
        if (drop && !strcmp(nm, drop)) continue;
        ok = tsr_safetensors_get(st, nm, &ts[k], &err) == TSR_OK;
        if (ok && reshape && !strcmp(nm, reshape))
            ok = tsr_tensor_view(&ts[k], ts[k].dtype, ndim, new_shape, ts[k].data, &err) == TSR_OK;
        if (ok && convert && !strncmp(nm, "visual.", 7) && ts[k].dtype == TSR_DTYPE_F32) {
            tsr_tensor c;
            const float *src = ts[k].data;
            int64_t cnt = tsr_tensor_numel(&ts[k]);
            ok = tsr_tensor_alloc(&c, mode == CK_VISUAL_BF16 ? TSR_DTYPE_BF16 : TSR_DTYPE_F32,
                                  ts[k].ndim, ts[k].shape, &err) == TSR_OK;
            for (int64_t i = 0; ok && i < cnt; i++) {
                uint16_t h = to_bf16(src[i]);
                if (mode == CK_VISUAL_BF16) {
                    ((uint16_t *)c.data)[i] = h;
                } else {
                    uint32_t u = (uint32_t)h << 16;
                    memcpy((float *)c.data + i, &u, sizeof u);
                }
            }
            if (ok) ts[k] = c; /* owned; freed below */
        }
        names[k] = mode == CK_T5 ? t5_name(nm, renamed[k], sizeof renamed[k]) : nm;
        k++;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    if (ok) ok = tsr_safetensors_write_file(path, k, names, ts, 0, NULL, NULL, &err) == TSR_OK;
    for (int64_t i = 0; ts && i < k; i++)
        if (ts[i].owner) tsr_tensor_free(&ts[i]);
    free(names);
    free(renamed);
    free(ts);
    tsr_safetensors_close(st);
    return ok;
}

static int bad_checkpoint(const char *family, const char *tmp, const char *drop,
                          const char *reshape, int32_t ndim, const int64_t *new_shape) {
    return write_checkpoint(family, tmp, drop, reshape, ndim, new_shape, CK_HUB);
}

/* The same checkpoint under the names transformers 5 save_pretrained writes (model.visual.*,
 * model.language_model.*) gives the same encoder outputs and logits. */
static void t5_names(const char *family) {
    char tmp[] = "/tmp/tsr_qwen2vl_t5_XXXXXX";
    if (!mkdtemp(tmp)) {
        CHECK_MSG(0, "mkdtemp");
        return;
    }
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/cases.json", family);
    cJSON *cases = load_json(tsr_test_fixture(rel));
    snprintf(rel, sizeof rel, "models/%s/expected.safetensors", family);
    tsr_safetensors *exp = NULL;
    tsr_error err = {0};
    tsr_model *model = NULL;
    tsr_session *sess = NULL;
    CHECK(write_checkpoint(family, tmp, NULL, NULL, 0, NULL, CK_T5));
    CHECK_OK(tsr_test_open_safetensors(tsr_test_fixture(rel), &exp, &err), &err);
    CHECK_OK(tsr_model_load(tmp, NULL, &model, &err), &err);
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = 512;
    sp.n_threads = 2;
    if (model) CHECK_OK(tsr_session_new(model, &sp, &sess, &err), &err);
    const cJSON *c = cJSON_GetArrayItem(cases, 2); /* several images */
    if (sess && exp && c) {
        maxes mx = {0, 0};
        run_case(family, model, sess, exp, c, &mx);
        printf("%s with transformers 5 names: embeds %.3g, logits %.3g\n", family, mx.embeds,
               mx.logits);
    }
    tsr_session_free(sess);
    tsr_model_free(model);
    if (exp) tsr_test_close_safetensors(exp);
    cJSON_Delete(cases);
    remove_dir(tmp);
}

static void test_t5_names(void) {
    t5_names("qwen2_vl");
    t5_names("qwen2_5_vl");
}

/* The encoder outputs of one case (the processor's inputs for it in *in). */
static tsr_tensor_list *encode_case(const char *dir, const cJSON *c, tsr_error *err) {
    tsr_model *model = NULL;
    tsr_tensor_list *in = NULL, *out = NULL;
    tsr_prompt *p = NULL;
    tsr_test_media m;
    int ok = tsr_test_media_load(cJSON_GetObjectItem(c, "media"), &m);
    if (ok && !tsr_model_load(dir, NULL, &model, err) &&
        !tsr_processor_run_prompt(tsr_model_processor(model), jstr(c, "prompt"), 1, m.items, m.n,
                                  &in, err) &&
        !tsr_prompt_new(model, NULL, in, &p, err) && !tsr_tensor_list_new(&out, err)) {
        const tsr_tensor *e = tsr_tensor_list_get(tsr_prompt_tensors(p), "embeds");
        tsr_tensor c2;
        if (e && !tsr_tensor_alloc(&c2, e->dtype, e->ndim, e->shape, err)) {
            memcpy(c2.data, e->data, tsr_tensor_nbytes(e));
            if (tsr_tensor_list_add(out, "embeds", &c2, err)) tsr_tensor_free(&c2);
        }
    }
    tsr_prompt_free(p);
    tsr_tensor_list_free(in);
    tsr_model_free(model);
    tsr_test_media_free(&m);
    return out;
}

/* BF16 vision weights (widened in the kernels, matrix products split over the weight rows)
 * give what the same values stored as F32 give (each worker on its own token rows). */
static void bf16_weights(const char *family) {
    char a[] = "/tmp/tsr_qwen2vl_bf_XXXXXX", b[] = "/tmp/tsr_qwen2vl_f32_XXXXXX";
    if (!mkdtemp(a) || !mkdtemp(b)) {
        CHECK_MSG(0, "mkdtemp");
        return;
    }
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/cases.json", family);
    cJSON *cases = load_json(tsr_test_fixture(rel));
    const cJSON *c = cJSON_GetArrayItem(cases, 2); /* several images */
    tsr_error err = {0};
    CHECK(c != NULL);
    CHECK(write_checkpoint(family, a, NULL, NULL, 0, NULL, CK_VISUAL_BF16));
    CHECK(write_checkpoint(family, b, NULL, NULL, 0, NULL, CK_VISUAL_ROUNDED));
    tsr_tensor_list *x = c ? encode_case(a, c, &err) : NULL;
    CHECK_MSG(x != NULL, "%s bf16: %s", family, err.message);
    tsr_tensor_list *y = c ? encode_case(b, c, &err) : NULL;
    CHECK_MSG(y != NULL, "%s f32: %s", family, err.message);
    if (x && y) {
        double d = tsr_test_compare_tensor(family, "embeds (BF16 vs F32 weights)",
                                           tsr_tensor_list_get(x, "embeds"),
                                           tsr_tensor_list_get(y, "embeds"), 1e-5);
        printf("%s: BF16 vision weights vs the same values in F32: embeds max abs diff %.3g\n",
               family, d);
    }
    tsr_tensor_list_free(x);
    tsr_tensor_list_free(y);
    cJSON_Delete(cases);
    remove_dir(a);
    remove_dir(b);
}

static void test_bf16_weights(void) {
    bf16_weights("qwen2_vl");
    bf16_weights("qwen2_5_vl");
}

static void expect_load_error(const char *what, const char *dir, tsr_status code,
                              const char *const *needles) {
    tsr_error err = {0};
    tsr_model *model = NULL;
    tsr_status st = tsr_model_load(dir, NULL, &model, &err);
    CHECK_MSG(st == code, "%s: %s (%s), expected %s", what, tsr_status_name(st), err.message,
              tsr_status_name(code));
    CHECK(model == NULL);
    for (const char *const *n = needles; *n; n++)
        CHECK_MSG(strstr(err.message, *n) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
                  err.message, *n);
    printf("%s: %s: %s\n", what, tsr_status_name(st), err.message);
    tsr_model_free(model);
}

static void test_bad_checkpoints(void) {
    char tmp[] = "/tmp/tsr_qwen2vl_XXXXXX";
    if (!mkdtemp(tmp)) {
        CHECK_MSG(0, "mkdtemp");
        return;
    }
    static const char *const missing[] = {"visual.blocks.1.attn.qkv.bias", NULL};
    CHECK(bad_checkpoint("qwen2_vl", tmp, "visual.blocks.1.attn.qkv.bias", NULL, 0, NULL));
    expect_load_error("missing qkv bias", tmp, TSR_ERR_FORMAT, missing);
    remove_dir(tmp);

    CHECK(mkdir(tmp, 0700) == 0);
    static const char *const gate[] = {"visual.blocks.2.mlp.gate_proj.weight", NULL};
    CHECK(bad_checkpoint("qwen2_5_vl", tmp, "visual.blocks.2.mlp.gate_proj.weight", NULL, 0,
                         NULL));
    expect_load_error("missing gate_proj", tmp, TSR_ERR_FORMAT, gate);
    remove_dir(tmp);

    /* Conv3d kernel [32, 3, 2, 14, 14] stored as [32, 3, 1, 14, 28]: same bytes, wrong shape
     * (a matrix of 32 x 1176 either way, so the message must still name the tensor). */
    CHECK(mkdir(tmp, 0700) == 0);
    const int64_t conv[2] = {16, 2352};
    static const char *const pe[] = {"visual.patch_embed.proj.weight", NULL};
    CHECK(bad_checkpoint("qwen2_vl", tmp, NULL, "visual.patch_embed.proj.weight", 2, conv));
    expect_load_error("patch_embed reshaped", tmp, TSR_ERR_SHAPE, pe);
    remove_dir(tmp);

    CHECK(mkdir(tmp, 0700) == 0);
    const int64_t m2[2] = {32, 128};
    static const char *const mlp2[] = {"visual.merger.mlp.2.weight", NULL};
    CHECK(bad_checkpoint("qwen2_5_vl", tmp, NULL, "visual.merger.mlp.2.weight", 2, m2));
    expect_load_error("merger mlp.2 reshaped", tmp, TSR_ERR_SHAPE, mlp2);
    remove_dir(tmp);
}

/* ---------------------------------------------------------------------------------- */
/* Bad inputs                                                                          */
/* ---------------------------------------------------------------------------------- */

/* A copy of list with `name` replaced by t (moved in), or dropped when t is NULL. */
/* A copy of list with `name` replaced by *t (freed here). */
static tsr_tensor_list *replace(const tsr_tensor_list *list, const char *name, tsr_tensor *t) {
    tsr_tensor_list *o = tsr_test_list_replace(list, name, t);
    tsr_tensor_free(t);
    return o;
}

static void test_bad_inputs(void) {
    tsr_error err = {0};
    tsr_model *model = NULL;
    tsr_tensor_list *out = NULL, *bad = NULL;
    tsr_test_media m = {0};
    CHECK_OK(tsr_model_load(tsr_test_fixture("models/qwen2_5_vl/model"), NULL, &model, &err),
             &err);
    if (!model) return;
    cJSON *cfg = load_json(tsr_test_fixture("models/qwen2_5_vl/model/config.json"));
    const cJSON *iid = cJSON_GetObjectItem(cfg, "image_token_id");
    const int64_t image_id = cJSON_IsNumber(iid) ? (int64_t)iid->valuedouble : -1;
    cJSON_Delete(cfg);
    CHECK(image_id >= 0);
    cJSON *files = cJSON_CreateArray();
    /* Two images of different token counts. */
    cJSON_AddItemToArray(files, cJSON_CreateString("rgb_64x48.png"));
    cJSON_AddItemToArray(files, cJSON_CreateString("rgb_97x61.png"));
    CHECK(tsr_test_media_load(files, &m));
    cJSON_Delete(files);
    const char *P = "<|vision_start|><|image_pad|><|vision_end|>a<|vision_start|><|image_pad|>"
                    "<|vision_end|>";
    CHECK_OK(tsr_processor_run_prompt(tsr_model_processor(model), P, 1, m.items, m.n, &out,
                                      &err),
             &err);
    if (!out) goto done;
    const tsr_tensor *pv = tsr_tensor_list_get(out, "pixel_values");
    const tsr_tensor *grid = tsr_tensor_list_get(out, "image_grid_thw");
    const tsr_tensor *ids = tsr_tensor_list_get(out, "input_ids");
    CHECK(pv && grid && ids);
    if (!pv || !grid || !ids) goto done;
    char shape_pv[64], shape_short[64];
    snprintf(shape_pv, sizeof shape_pv, "[%lld, %lld]", (long long)pv->shape[0] - 4,
             (long long)pv->shape[1]);

    /* pixel_values with 4 rows fewer than image_grid_thw describes. */
    tsr_tensor t;
    int64_t shp[2] = {pv->shape[0] - 4, pv->shape[1]};
    CHECK_OK(tsr_tensor_alloc(&t, TSR_DTYPE_F32, 2, shp, &err), &err);
    memcpy(t.data, pv->data, tsr_tensor_nbytes(&t));
    bad = replace(out, "pixel_values", &t);
    snprintf(shape_short, sizeof shape_short, "[%lld, 3]", (long long)grid->shape[0]);
    const char *const rows[] = {shape_pv, shape_short, "image_grid_thw", "pixel_values", NULL};
    tsr_test_expect_prompt_error("pixel_values short", model, NULL, bad, TSR_ERR_SHAPE, rows);
    tsr_tensor_list_free(bad);

    /* pixel_values of the wrong width. */
    int64_t shp2[2] = {pv->shape[0], pv->shape[1] - 1};
    CHECK_OK(tsr_tensor_alloc(&t, TSR_DTYPE_F32, 2, shp2, &err), &err);
    bad = replace(out, "pixel_values", &t);
    char w_got[32], w_want[32];
    snprintf(w_got, sizeof w_got, "%lld", (long long)pv->shape[1] - 1);
    snprintf(w_want, sizeof w_want, "%lld", (long long)pv->shape[1]);
    const char *const width[] = {"pixel_values", w_got, w_want, NULL};
    tsr_test_expect_prompt_error("pixel_values width", model, NULL, bad, TSR_ERR_SHAPE, width);
    tsr_tensor_list_free(bad);

    /* The two images' grids swapped: counts per placeholder run no longer match. */
    CHECK_OK(tsr_tensor_alloc(&t, TSR_DTYPE_I64, 2, grid->shape, &err), &err);
    memcpy(t.data, (const int64_t *)grid->data + 3, 3 * sizeof(int64_t));
    memcpy((int64_t *)t.data + 3, grid->data, 3 * sizeof(int64_t));
    bad = replace(out, "image_grid_thw", &t);
    const char *const swap[] = {"image 0", "placeholder", NULL};
    tsr_test_expect_prompt_error("grids swapped", model, NULL, bad, TSR_ERR_SHAPE, swap);
    tsr_tensor_list_free(bad);

    /* One image token turned into text: the run no longer matches its image. */
    CHECK_OK(tsr_tensor_alloc(&t, TSR_DTYPE_I64, ids->ndim, ids->shape, &err), &err);
    memcpy(t.data, ids->data, tsr_tensor_nbytes(ids));
    int64_t *v = t.data, n = tsr_tensor_numel(ids);
    for (int64_t i = n - 1; i >= 0; i--)
        if (v[i] == image_id) {
            v[i] = 100;
            break;
        }
    bad = replace(out, "input_ids", &t);
    const char *const fewer[] = {"image 1", "placeholder tokens", NULL};
    tsr_test_expect_prompt_error("placeholder dropped", model, NULL, bad, TSR_ERR_SHAPE, fewer);
    tsr_tensor_list_free(bad);

    /* Only one image given for two placeholder runs. */
    int64_t g1[2] = {1, 3};
    CHECK_OK(tsr_tensor_alloc(&t, TSR_DTYPE_I64, 2, g1, &err), &err);
    memcpy(t.data, grid->data, 3 * sizeof(int64_t));
    tsr_tensor_list *tmp = replace(out, "image_grid_thw", &t);
    int64_t rows0 = ((const int64_t *)grid->data)[0] * ((const int64_t *)grid->data)[1] *
                    ((const int64_t *)grid->data)[2];
    int64_t shp3[2] = {rows0, pv->shape[1]};
    CHECK_OK(tsr_tensor_alloc(&t, TSR_DTYPE_F32, 2, shp3, &err), &err);
    memcpy(t.data, pv->data, tsr_tensor_nbytes(&t));
    bad = replace(tmp, "pixel_values", &t);
    tsr_tensor_list_free(tmp);
    const char *const more[] = {"more image placeholder runs", NULL};
    tsr_test_expect_prompt_error("one image, two runs", model, NULL, bad, TSR_ERR_SHAPE, more);
    tsr_tensor_list_free(bad);

    /* Video input. */
    int64_t shv[2] = {4, pv->shape[1]};
    CHECK_OK(tsr_tensor_alloc(&t, TSR_DTYPE_F32, 2, shv, &err), &err);
    bad = replace(out, "pixel_values_videos", &t);
    const char *const video[] = {"video", NULL};
    tsr_test_expect_prompt_error("video", model, NULL, bad, TSR_ERR_UNSUPPORTED, video);
    tsr_tensor_list_free(bad);
done:
    tsr_tensor_list_free(out);
    tsr_test_media_free(&m);
    tsr_model_free(model);
}

#ifdef TSR_ALLOC_FAILPOINTS
/* Every allocation of the encoder (tsr_prompt_new on a two-image prompt) failing in turn:
 * each is a clean OOM, no leak. */
static void alloc_walk(const char *family) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/model", family);
    tsr_error err = {0};
    tsr_model *m = NULL;
    tsr_tensor_list *in = NULL;
    tsr_test_media md = {0};
    cJSON *files = cJSON_CreateArray();
    cJSON_AddItemToArray(files, cJSON_CreateString("rgb_64x48.png"));
    cJSON_AddItemToArray(files, cJSON_CreateString("large_160x120.png"));
    CHECK(tsr_test_media_load(files, &md));
    cJSON_Delete(files);
    CHECK_OK(tsr_model_load(tsr_test_fixture(rel), NULL, &m, &err), &err);
    if (m)
        CHECK_OK(tsr_processor_run_prompt(tsr_model_processor(m),
                                          "<|vision_start|><|image_pad|><|vision_end|>x"
                                          "<|vision_start|><|image_pad|><|vision_end|>",
                                          1, md.items, md.n, &in, &err),
                 &err);
    int saw_ok = 0;
    for (long n = 1; in && n < 2000 && !saw_ok; n++) {
        tsr_prompt *p = NULL;
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_prompt_new(m, NULL, in, &p, &err);
        tsr__alloc_failpoint(0);
        CHECK_MSG(st == TSR_OK || st == TSR_ERR_OOM, "%s failpoint %ld: %s %s", family, n,
                  tsr_status_name(st), err.message);
        CHECK_MSG(st != TSR_OK || p, "%s failpoint %ld: no prompt", family, n);
        saw_ok = st == TSR_OK;
        tsr_prompt_free(p);
    }
    CHECK(saw_ok);
    tsr_tensor_list_free(in);
    tsr_model_free(m);
    tsr_test_media_free(&md);
}

static void test_alloc_failures(void) {
    alloc_walk("qwen2_vl");
    alloc_walk("qwen2_5_vl");
}
#endif

int main(void) {
    tsr_test_run("qwen2_vl end to end", test_qwen2_vl);
    tsr_test_run("qwen2_5_vl end to end", test_qwen2_5_vl);
    tsr_test_run("transformers 5 tensor names", test_t5_names);
    tsr_test_run("BF16 vision weights", test_bf16_weights);
    tsr_test_run("bad checkpoints", test_bad_checkpoints);
    tsr_test_run("bad inputs", test_bad_inputs);
#ifdef TSR_ALLOC_FAILPOINTS
    tsr_test_run("allocation failures", test_alloc_failures);
#endif
    return tsr_test_finish();
}
