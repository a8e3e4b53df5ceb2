/* Corrupt model directories: each must fail tsr_model_load cleanly with the expected status
 * and a message naming the problem (built at test time from tests/fixtures/decoder/qwen2). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tessera_internal.h"

static char g_tmp[256];

static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(data, 1, len, f);
    fclose(f);
    return w == len;
}

typedef enum { W_LINK, W_NONE, W_TRUNCATE, W_GARBAGE } weights_mode;

typedef struct bad_case {
    const char *name;
    const char *config_patch; /* JSON object merged into config.json ("null" deletes) */
    const char *config_raw;   /* whole config.json instead, when non-NULL */
    weights_mode weights;
    const char *index;        /* model.safetensors.index.json text, when non-NULL */
    tsr_status expect;
    const char *msg;          /* substring of the error message */
} bad_case;

static const bad_case CASES[] = {
    {"no config", NULL, "", W_LINK, NULL, TSR_ERR_IO, "config.json"},
    {"config not json", NULL, "{\"model_type\": ", W_LINK, NULL, TSR_ERR_FORMAT, "not valid JSON"},
    {"config not object", NULL, "[1, 2]", W_LINK, NULL, TSR_ERR_FORMAT, "not a JSON object"},
    {"no model_type", "{\"model_type\": null}", NULL, W_LINK, NULL, TSR_ERR_FORMAT, "model_type"},
    {"unknown model_type", "{\"model_type\": \"gpt2\"}", NULL, W_LINK, NULL, TSR_ERR_UNSUPPORTED,
     "\"gpt2\""},
    {"heads not dividing hidden", "{\"num_attention_heads\": 5}", NULL, W_LINK, NULL,
     TSR_ERR_FORMAT, "does not divide hidden_size"},
    {"kv heads not dividing heads", "{\"num_key_value_heads\": 3}", NULL, W_LINK, NULL,
     TSR_ERR_FORMAT, "num_key_value_heads (3)"},
    {"zero heads", "{\"num_attention_heads\": 0}", NULL, W_LINK, NULL, TSR_ERR_FORMAT,
     "num_attention_heads"},
    {"negative vocab", "{\"vocab_size\": -4}", NULL, W_LINK, NULL, TSR_ERR_FORMAT, "vocab_size"},
    {"string hidden", "{\"hidden_size\": \"64\"}", NULL, W_LINK, NULL, TSR_ERR_FORMAT,
     "hidden_size"},
    {"huge layers", "{\"num_hidden_layers\": 1e12}", NULL, W_LINK, NULL, TSR_ERR_FORMAT,
     "num_hidden_layers"},
    {"odd head_dim", "{\"head_dim\": 15}", NULL, W_LINK, NULL, TSR_ERR_FORMAT, "head_dim (15)"},
    {"rope yarn", "{\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}", NULL,
     W_LINK, NULL, TSR_ERR_UNSUPPORTED, "yarn"},
    {"rope llama3 incomplete",
     "{\"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 8.0}}", NULL, W_LINK, NULL,
     TSR_ERR_FORMAT, "llama3"},
    {"rope llama3 factors", "{\"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
     "\"low_freq_factor\": 4.0, \"high_freq_factor\": 1.0, "
     "\"original_max_position_embeddings\": 64}}", NULL, W_LINK, NULL, TSR_ERR_FORMAT,
     "high_freq_factor"},
    {"rope_scaling not object", "{\"rope_scaling\": 3}", NULL, W_LINK, NULL, TSR_ERR_FORMAT,
     "rope_scaling"},
    {"negative theta", "{\"rope_theta\": -1}", NULL, W_LINK, NULL, TSR_ERR_FORMAT, "rope_theta"},
    {"mllama cross layers not a list",
     "{\"model_type\": \"mllama\", \"cross_attention_layers\": 3}", NULL, W_LINK, NULL,
     TSR_ERR_FORMAT, "cross_attention_layers"},
    {"mllama cross layer not integer",
     "{\"model_type\": \"mllama\", \"cross_attention_layers\": [1.5]}", NULL, W_LINK, NULL,
     TSR_ERR_FORMAT, "cross_attention_layers"},
    {"mllama over qwen2 weights", "{\"model_type\": \"mllama\", \"cross_attention_layers\": [1]}",
     NULL, W_LINK, NULL, TSR_ERR_FORMAT, "unexpected tensor 'model."},
    {"mrope section sum", "{\"model_type\": \"qwen2_vl\", \"rope_parameters\": "
     "{\"rope_type\": \"default\", \"mrope_section\": [2, 3, 4]}}", NULL, W_LINK, NULL,
     TSR_ERR_FORMAT, "mrope_section [2, 3, 4] must sum to head_dim / 2 (8)"},
    {"mrope section not integers", "{\"model_type\": \"qwen2_vl\", \"rope_parameters\": "
     "{\"rope_type\": \"default\", \"mrope_section\": [2, 3.5, 3]}}", NULL, W_LINK, NULL,
     TSR_ERR_FORMAT, "mrope_section must be 3 integers"},
    {"mrope section short", "{\"model_type\": \"qwen2_vl\", \"rope_scaling\": "
     "{\"type\": \"mrope\", \"mrope_section\": [4, 4]}}", NULL, W_LINK, NULL,
     TSR_ERR_FORMAT, "mrope_section must be 3 integers"},
    {"gelu", "{\"hidden_act\": \"gelu\"}", NULL, W_LINK, NULL, TSR_ERR_UNSUPPORTED, "gelu"},
    {"qwen2 sliding window", "{\"use_sliding_window\": true}", NULL, W_LINK, NULL,
     TSR_ERR_UNSUPPORTED, "use_sliding_window"},
    {"eos out of range", "{\"eos_token_id\": 999999}", NULL, W_LINK, NULL, TSR_ERR_FORMAT,
     "eos_token_id"},
    {"eos not a number", "{\"eos_token_id\": [\"x\"]}", NULL, W_LINK, NULL, TSR_ERR_FORMAT,
     "eos_token_id"},
    {"missing layer", "{\"num_hidden_layers\": 4}", NULL, W_LINK, NULL, TSR_ERR_FORMAT,
     "'model.layers.3.input_layernorm.weight' is missing"},
    {"extra layer", "{\"num_hidden_layers\": 2}", NULL, W_LINK, NULL, TSR_ERR_FORMAT,
     "unexpected tensor 'model.layers.2."},
    {"untied without lm_head", "{\"tie_word_embeddings\": false}", NULL, W_LINK, NULL,
     TSR_ERR_FORMAT, "'lm_head.weight' is missing"},
    {"wrong ffn shape", "{\"intermediate_size\": 128}", NULL, W_LINK, NULL, TSR_ERR_SHAPE,
     "down_proj.weight' has shape [64, 160], expected [64, 128]"},
    {"wrong vocab", "{\"vocab_size\": 5000}", NULL, W_LINK, NULL, TSR_ERR_SHAPE,
     "'model.embed_tokens.weight' has shape [4014, 64], expected [5000, 64]"},
    {"wrong kv heads", "{\"num_key_value_heads\": 4}", NULL, W_LINK, NULL, TSR_ERR_SHAPE,
     "k_proj.bias' has shape [32], expected [64]"},
    {"no weights", NULL, NULL, W_NONE, NULL, TSR_ERR_IO, "model.safetensors"},
    {"truncated weights", NULL, NULL, W_TRUNCATE, NULL, TSR_ERR_FORMAT, "model.safetensors"},
    {"garbage weights", NULL, NULL, W_GARBAGE, NULL, TSR_ERR_FORMAT, "model.safetensors"},
    {"index not json", NULL, NULL, W_LINK, "{\"weight_map\": ", TSR_ERR_FORMAT, "not valid JSON"},
    {"index without map", NULL, NULL, W_LINK, "{\"metadata\": {}}", TSR_ERR_FORMAT, "weight_map"},
    {"index traversal", NULL, NULL, W_LINK,
     "{\"weight_map\": {\"model.norm.weight\": \"../model.safetensors\"}}", TSR_ERR_FORMAT,
     "weight_map[\"model.norm.weight\"]"},
    {"index missing shard", NULL, NULL, W_LINK,
     "{\"weight_map\": {\"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}",
     TSR_ERR_IO, "model-00002-of-00002.safetensors"},
    {"index maps wrong file", NULL, NULL, W_LINK,
     "{\"weight_map\": {\"model.nope.weight\": \"model.safetensors\"}}", TSR_ERR_FORMAT,
     "'model.nope.weight'"},
    {"index non-string", NULL, NULL, W_LINK, "{\"weight_map\": {\"a\": 3}}", TSR_ERR_FORMAT,
     "weight_map"},
};

static char *patched_config(const char *src_path, const char *patch) {
    size_t len = 0;
    uint8_t *text = tsr_test_read(src_path, &len);
    cJSON *j = text ? cJSON_ParseWithLength((const char *)text, len) : NULL;
    free(text);
    cJSON *p = cJSON_Parse(patch);
    for (cJSON *e = p ? p->child : NULL; j && e; e = e->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, e->string);
        if (!cJSON_IsNull(e)) cJSON_AddItemToObject(j, e->string, cJSON_Duplicate(e, 1));
    }
    cJSON_Delete(p);
    char *out = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    return out;
}

static void rm_dir(const char *dir) {
    const char *names[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                           "generation_config.json"};
    char path[1024];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void build_case(const bad_case *c, const char *dir) {
    const char *src = tsr_test_fixture("decoder/qwen2");
    char path[1024], from[1024];
    mkdir(dir, 0700);
    snprintf(from, sizeof from, "%s/config.json", src);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (c->config_raw) {
        if (*c->config_raw) write_file(path, c->config_raw, strlen(c->config_raw));
    } else {
        char *cfg = patched_config(from, c->config_patch ? c->config_patch : "{}");
        CHECK(cfg != NULL);
        if (cfg) write_file(path, cfg, strlen(cfg));
        cJSON_free(cfg);
    }
    snprintf(from, sizeof from, "%s/model.safetensors", src);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t len = 0;
    uint8_t *w = c->weights == W_NONE || c->weights == W_LINK ? NULL : tsr_test_read(from, &len);
    if (c->weights == W_LINK) CHECK(symlink(from, path) == 0);
    if (c->weights == W_TRUNCATE && w) write_file(path, w, len / 2);
    if (c->weights == W_GARBAGE && w) {
        for (size_t i = 0; i < 64 && i < len; i++) w[i] = (uint8_t)(0xA5 ^ i);
        write_file(path, w, len);
    }
    free(w);
    if (c->index) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        write_file(path, c->index, strlen(c->index));
    }
}

static void test_table(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const bad_case *c = &CASES[i];
        char dir[512];
        snprintf(dir, sizeof dir, "%s/case%zu", g_tmp, i);
        build_case(c, dir);
        tsr_error err = {0};
        tsr_model *m = (tsr_model *)&err; /* must be reset to NULL */
        tsr_status st = tsr_model_load(dir, NULL, &m, &err);
        CHECK_MSG(st == c->expect, "%s: %s (%s), expected %s", c->name, tsr_status_name(st),
                  err.message, tsr_status_name(c->expect));
        CHECK_MSG(m == NULL, "%s: model not NULL", c->name);
        CHECK_MSG(strstr(err.message, c->msg) != NULL, "%s: message '%s' lacks '%s'", c->name,
                  err.message, c->msg);
        if (st == TSR_OK) tsr_model_free(m);
        rm_dir(dir);
    }
    printf("  %zu corrupt model directories\n", sizeof CASES / sizeof CASES[0]);
}

static int count_progress(float f, const char *what, void *user) {
    int *n = user;
    (void)what;
    CHECK(f >= 0.0f && f <= 1.0f);
    return ++*n >= 2 && n[1];
}

static void test_progress_and_args(void) {
    tsr_error err = {0};
    tsr_model *m = NULL;
    int state[2] = {0, 0};
    tsr_model_params p = tsr_model_params_default();
    p.progress = count_progress;
    p.progress_user = state;
    CHECK_OK(tsr_model_load(tsr_test_fixture("decoder/mistral"), &p, &m, &err), &err);
    CHECK(state[0] == 3); /* two shards + done */
    tsr_model_free(m);
    m = NULL;
    state[0] = 0;
    state[1] = 1; /* cancel on the second call */
    CHECK(tsr_model_load(tsr_test_fixture("decoder/mistral"), &p, &m, &err) == TSR_ERR_CANCELLED);
    CHECK(m == NULL);
    CHECK(tsr_model_load(NULL, NULL, &m, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_model_load("x", NULL, NULL, &err) == TSR_ERR_INVALID_ARG);
    p.size = 0;
    CHECK(tsr_model_load(tsr_test_fixture("decoder/qwen2"), &p, &m, &err) == TSR_ERR_INVALID_ARG);
}

/* dir holding the qwen2 fixture's config.json and weights (linked), no tokenizer. */
static void link_weights(const char *dir) {
    char path[1024], from[1024];
    mkdir(dir, 0700);
    const char *src = tsr_test_fixture("decoder/qwen2");
    const char *files[] = {"config.json", "model.safetensors"};
    for (int f = 0; f < 2; f++) {
        snprintf(from, sizeof from, "%s/%s", src, files[f]);
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        CHECK(symlink(from, path) == 0);
    }
}

/* tie_word_embeddings set while the checkpoint stores lm_head: the stored one is used, as
 * transformers 5 does (it ties only a missing lm_head). */
static void test_tied_with_lm_head(void) {
    char dir[512], path[1024], from[1024];
    snprintf(dir, sizeof dir, "%s/tied", g_tmp);
    mkdir(dir, 0700);
    const char *src = tsr_test_fixture("decoder/qwen2");
    snprintf(from, sizeof from, "%s/model.safetensors", src);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(symlink(from, path) == 0);
    snprintf(from, sizeof from, "%s/config.json", src);
    char *cfg = patched_config(from, "{\"tie_word_embeddings\": true}");
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(cfg && write_file(path, cfg, strlen(cfg)));
    cJSON_free(cfg);
    float logits[2][4014];
    const char *dirs[2] = {src, dir};
    for (int k = 0; k < 2; k++) {
        tsr_error err = {0};
        tsr_model *m = NULL;
        tsr_session *s = NULL;
        CHECK_OK(tsr_model_load(dirs[k], NULL, &m, &err), &err);
        if (m) CHECK(tsr_model_vocab_size(m) == 4014);
        if (m) CHECK_OK(tsr_session_new(m, NULL, &s, &err), &err);
        int32_t ids[3] = {11, 22, 33};
        tsr_decode_input in = tsr_decode_input_default();
        in.ids = ids;
        in.n_ids = 3;
        if (s) CHECK_OK(tsr_session_decode(s, &in, logits[k], 4014, &err), &err);
        tsr_session_free(s);
        tsr_model_free(m);
    }
    CHECK(!memcmp(logits[0], logits[1], sizeof logits[0]));
    rm_dir(dir);
}

/* generation_config.json's sampling settings become the model's defaults, as generate()
 * applies them: greedy without do_sample, top_k 50 unless set, null means unset. */
static void test_sampling_defaults(void) {
    static const struct {
        const char *gen;
        tsr_status st;
        float temp, top_p;
        int32_t top_k;
    } cases[] = {
        {"{}", TSR_OK, 0.0f, 1.0f, 50},
        {"{\"do_sample\": false, \"temperature\": 0.7}", TSR_OK, 0.0f, 1.0f, 50},
        {"{\"do_sample\": true, \"temperature\": 0.7, \"top_p\": 0.8, \"top_k\": null}", TSR_OK,
         0.7f, 0.8f, 50},
        {"{\"do_sample\": true, \"top_k\": 20}", TSR_OK, 1.0f, 1.0f, 20},
        {"{\"do_sample\": \"yes\"}", TSR_ERR_FORMAT, 0, 0, 0},
        {"{\"do_sample\": true, \"top_p\": 1.5}", TSR_ERR_FORMAT, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[512], path[1024];
        snprintf(dir, sizeof dir, "%s/gen%zu", g_tmp, i);
        link_weights(dir);
        snprintf(path, sizeof path, "%s/generation_config.json", dir);
        write_file(path, cases[i].gen, strlen(cases[i].gen));
        tsr_error err = {0};
        tsr_model *m = NULL;
        tsr_status st = tsr_model_load(dir, NULL, &m, &err);
        CHECK_MSG(st == cases[i].st, "%s: %s %s", cases[i].gen, tsr_status_name(st), err.message);
        if (st == TSR_OK) {
            tsr_sampling_params sp = tsr_model_sampling_defaults(m);
            CHECK_MSG(sp.temperature == cases[i].temp && sp.top_p == cases[i].top_p &&
                          sp.top_k == cases[i].top_k,
                      "%s: temperature %g top_p %g top_k %d", cases[i].gen, sp.temperature,
                      sp.top_p, (int)sp.top_k);
            tsr_model_free(m);
        } else {
            CHECK(strstr(err.message, "generation_config.json") != NULL);
        }
        rm_dir(dir);
    }
}

#ifdef TSR_ALLOC_FAILPOINTS
/* Every allocation of model load and session setup failing in turn (the tokenizer's own
 * walk is in test_tokenizer_bad, so the directory has none). */
static void test_alloc_failures(void) {
    int saw_ok = 0;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/alloc", g_tmp);
    link_weights(dir);
    for (long n = 1; n < 5000 && !saw_ok; n++) {
        tsr_error err = {0};
        tsr_model *m = NULL;
        tsr_session *s = NULL;
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_model_load(dir, NULL, &m, &err);
        if (!st) st = tsr_session_new(m, NULL, &s, &err);
        tsr__alloc_failpoint(0);
        CHECK_MSG(st == TSR_OK || st == TSR_ERR_OOM, "failpoint %ld: %s %s", n,
                  tsr_status_name(st), err.message);
        saw_ok = st == TSR_OK;
        tsr_session_free(s);
        tsr_model_free(m);
    }
    CHECK(saw_ok);
    rm_dir(dir);
}
#endif

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/tsr_model_bad_XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    tsr_test_run("corrupt_dirs", test_table);
    tsr_test_run("progress_and_args", test_progress_and_args);
    tsr_test_run("sampling_defaults", test_sampling_defaults);
    tsr_test_run("tied_with_lm_head", test_tied_with_lm_head);
#ifdef TSR_ALLOC_FAILPOINTS
    tsr_test_run("alloc_failures", test_alloc_failures);
#endif
    rmdir(g_tmp);
    return tsr_test_finish();
}
