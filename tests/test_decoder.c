/* Text decoder parity with transformers on tiny random-weight checkpoints
 * (tests/fixtures/decoder, written by tools/refgen/gen_decoder.py): prefill logits, logits
 * after each of 16 greedy steps (max abs diff <= 1e-4) and 32 greedy ids (identical); Qwen2-VL
 * with 3-row M-RoPE position ids and image embedding spans; MLlama with cross-attention states
 * and the processor's cross-attention mask; BF16/F16 weight matrices widened in the kernels
 * against the same values in F32. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tessera_internal.h"
#include "../kernels/cpu/ops.h"

#define TOL 1e-4

typedef struct {
    const char *name;
    int n_prompts;
} model_case;

static const model_case MODELS[] = {
    {"qwen2", 2}, {"qwen2_bf16", 1}, {"llama", 2}, {"mistral", 2},
};

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

static int32_t argmax(const float *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int get(tsr_safetensors *st, const char *name, tsr_tensor *t) {
    tsr_error err = {0};
    tsr_status s = tsr_safetensors_get(st, name, t, &err);
    CHECK_MSG(s == TSR_OK, "%s: %s", name, err.message);
    return s == TSR_OK;
}

/* Runs the parity check of one model with the given prefill chunk; returns the max diff. */
static double run_model(const model_case *mc, int64_t n_batch, int32_t n_threads) {
    char rel[256];
    snprintf(rel, sizeof rel, "decoder/%s", mc->name);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", tsr_test_fixture(rel));
    snprintf(rel, sizeof rel, "decoder/%s.expected.safetensors", mc->name);
    tsr_error err = {0};
    tsr_model *m = NULL;
    tsr_safetensors *exp = NULL;
    CHECK_OK(tsr_model_load(dir, NULL, &m, &err), &err);
    CHECK_OK(tsr_safetensors_open_file(tsr_test_fixture(rel), &exp, &err), &err);
    if (!m || !exp) {
        tsr_model_free(m);
        tsr_safetensors_close(exp);
        return INFINITY;
    }
    int32_t V = tsr_model_vocab_size(m);
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = 128;
    sp.n_batch = n_batch;
    sp.n_threads = n_threads;
    tsr_session *s = NULL;
    CHECK_OK(tsr_session_new(m, &sp, &s, &err), &err);
    double worst = 0;
    for (int p = 0; s && p < mc->n_prompts; p++) {
        char nm[64];
        tsr_tensor ids, prefill, steps, greedy;
        snprintf(nm, sizeof nm, "p%d.ids", p);
        if (!get(exp, nm, &ids)) break;
        snprintf(nm, sizeof nm, "p%d.prefill", p);
        if (!get(exp, nm, &prefill)) break;
        snprintf(nm, sizeof nm, "p%d.steps", p);
        if (!get(exp, nm, &steps)) break;
        snprintf(nm, sizeof nm, "p%d.greedy", p);
        if (!get(exp, nm, &greedy)) break;
        int64_t T = ids.shape[0];
        CHECK(prefill.shape[1] == V);
        float *logits = malloc((size_t)T * (size_t)V * sizeof *logits);
        tsr_session_reset(s);
        tsr_decode_input in = tsr_decode_input_default();
        in.ids = ids.data;
        in.n_ids = T;
        in.logits_all = 1;
        CHECK_OK(tsr_session_decode(s, &in, logits, (size_t)T * (size_t)V, &err), &err);
        double d = max_abs_diff(logits, prefill.data, (size_t)T * (size_t)V);
        CHECK_MSG(d <= TOL, "%s p%d prefill: max abs diff %g", mc->name, p, d);
        worst = d > worst ? d : worst;
        /* The session's last logits equal the last row. */
        d = max_abs_diff(tsr_session_logits(s), logits + (size_t)(T - 1) * (size_t)V, (size_t)V);
        CHECK(d == 0);
        const int32_t *g = greedy.data;
        const float *stp = steps.data;
        int same = 1;
        for (int i = 0; i < 32; i++) {
            int32_t id = argmax(tsr_session_logits(s), V);
            if (id != g[i]) {
                CHECK_MSG(id == g[i], "%s p%d greedy[%d]: %d, expected %d", mc->name, p, i, id, g[i]);
                same = 0;
                break;
            }
            tsr_decode_input one = tsr_decode_input_default();
            one.ids = &id;
            one.n_ids = 1;
            CHECK_OK(tsr_session_decode(s, &one, NULL, 0, &err), &err);
            if (i < 16) {
                d = max_abs_diff(tsr_session_logits(s), stp + (size_t)i * (size_t)V, (size_t)V);
                CHECK_MSG(d <= TOL, "%s p%d step %d: max abs diff %g", mc->name, p, i, d);
                worst = d > worst ? d : worst;
            }
        }
        (void)same;
        free(logits);
    }
    tsr_session_free(s);
    tsr_safetensors_close(exp);
    tsr_model_free(m);
    return worst;
}

static void test_parity(void) {
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        double d = run_model(&MODELS[i], 256, 2);
        printf("  %-11s max abs logit diff %.3g\n", MODELS[i].name, d);
    }
}

/* Prefill in chunks of 3 tokens on one thread gives the same results. */
static void test_chunked_prefill(void) {
    double d = run_model(&MODELS[0], 3, 1);
    printf("  qwen2 n_batch 3: max abs logit diff %.3g\n", d);
    d = run_model(&MODELS[2], 1, 3);
    printf("  llama n_batch 1, 3 threads: max abs logit diff %.3g\n", d);
}

static void test_model_facts(void) {
    tsr_error err = {0};
    tsr_model *m = NULL;
    CHECK_OK(tsr_model_load(tsr_test_fixture("decoder/qwen2"), NULL, &m, &err), &err);
    if (!m) return;
    CHECK(!strcmp(tsr_model_type(m), "qwen2"));
    CHECK(tsr_model_hidden_size(m) == 64);
    CHECK(tsr_model_max_positions(m) == 512);
    const int32_t *eos = NULL;
    size_t n = tsr_model_eos_ids(m, &eos);
    /* config eos 4000 then generation_config [4002, 4000]. */
    CHECK(n == 2 && eos[0] == 4000 && eos[1] == 4002);
    tsr_model_free(m);
    tsr_model_free(NULL);
    tsr_session_free(NULL);
}

/* Embedding spans replacing ids give the logits of those ids when they carry the same rows. */
static void test_spans_and_limits(void) {
    tsr_error err = {0};
    tsr_model *m = NULL;
    tsr_safetensors *w = NULL;
    CHECK_OK(tsr_model_load(tsr_test_fixture("decoder/qwen2"), NULL, &m, &err), &err);
    CHECK_OK(tsr_safetensors_open_file(tsr_test_fixture("decoder/qwen2/model.safetensors"), &w,
                                       &err),
             &err);
    tsr_tensor emb;
    if (!m || !w || !get(w, "model.embed_tokens.weight", &emb)) {
        tsr_model_free(m);
        tsr_safetensors_close(w);
        return;
    }
    int32_t V = tsr_model_vocab_size(m), D = tsr_model_hidden_size(m);
    int32_t ids[6] = {10, 20, 30, 40, 50, 60}, ph[6] = {10, 0, 0, 0, 50, 60};
    float rows[3 * 64];
    for (int i = 0; i < 3; i++)
        memcpy(rows + i * D, (const float *)emb.data + (size_t)ids[1 + i] * (size_t)D,
               (size_t)D * sizeof(float));
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = 8;
    tsr_session *s = NULL;
    CHECK_OK(tsr_session_new(m, &sp, &s, &err), &err);
    float *a = malloc((size_t)V * sizeof *a), *b = malloc((size_t)V * sizeof *b);
    tsr_decode_input in = tsr_decode_input_default();
    in.ids = ids;
    in.n_ids = 6;
    CHECK_OK(tsr_session_decode(s, &in, a, (size_t)V, &err), &err);
    tsr_session_reset(s);
    tsr_embed_span span = {1, 3, rows};
    in.ids = ph;
    in.spans = &span;
    in.n_spans = 1;
    CHECK_OK(tsr_session_decode(s, &in, b, (size_t)V, &err), &err);
    CHECK(max_abs_diff(a, b, (size_t)V) == 0);
    /* 6 + 3 > n_ctx 8: LIMIT, and the session is unchanged. */
    in.spans = NULL;
    in.n_spans = 0;
    in.n_ids = 3;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_LIMIT);
    CHECK(tsr_session_n_past(s) == 6);
    in.n_ids = 2;
    CHECK_OK(tsr_session_decode(s, &in, NULL, 0, &err), &err);
    CHECK(tsr_session_n_past(s) == 8);
    /* Bad inputs. */
    tsr_session_reset(s);
    int32_t bad = V;
    in.ids = &bad;
    in.n_ids = 1;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    in.ids = ids;
    in.n_ids = 0;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    in.n_ids = 2;
    CHECK(tsr_session_decode(s, &in, a, (size_t)V - 1, &err) == TSR_ERR_INVALID_ARG);
    tsr_embed_span outside = {1, 5, rows};
    in.spans = &outside;
    in.n_spans = 1;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    in.spans = NULL;
    in.n_spans = 0;
    /* Positions: 3 rows need M-RoPE; negative is refused; one row 0..5 equals the default. */
    int64_t pos[18] = {0};
    in.position_ids = pos;
    in.n_pos_rows = 3;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "position_ids") != NULL);
    in.n_pos_rows = 1;
    pos[1] = -1;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_session_n_past(s) == 0);
    for (int i = 0; i < 6; i++) pos[i] = i;
    in.n_ids = 6;
    CHECK_OK(tsr_session_decode(s, &in, b, (size_t)V, &err), &err);
    CHECK(max_abs_diff(a, b, (size_t)V) == 0);
    tsr_session_reset(s);
    in.position_ids = NULL;
    in.n_pos_rows = 0;
    /* n_ctx beyond max_position_embeddings. */
    tsr_session *s2 = NULL;
    sp.n_ctx = 100000;
    CHECK(tsr_session_new(m, &sp, &s2, &err) == TSR_ERR_LIMIT && !s2);
    free(a);
    free(b);
    tsr_session_free(s);
    tsr_safetensors_close(w);
    tsr_model_free(m);
}

typedef struct {
    int32_t ids[64];
    int n;
    char text[4096];
    size_t len;
    int cancel_after;
} collect;

static int on_token(int32_t id, const char *text, size_t len, void *user) {
    collect *c = user;
    if (id >= 0 && c->n < 64) c->ids[c->n++] = id;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = 0;
    }
    return c->cancel_after && c->n >= c->cancel_after;
}

static void test_generate(void) {
    tsr_error err = {0};
    tsr_model *m = NULL;
    tsr_tokenizer *tok = NULL;
    tsr_safetensors *exp = NULL;
    CHECK_OK(tsr_model_load(tsr_test_fixture("decoder/llama"), NULL, &m, &err), &err);
    CHECK_OK(tsr_tokenizer_load(tsr_test_fixture("decoder/llama"), &tok, &err), &err);
    CHECK_OK(tsr_safetensors_open_file(tsr_test_fixture("decoder/llama.expected.safetensors"),
                                       &exp, &err),
             &err);
    tsr_tensor ids, greedy;
    if (!m || !tok || !exp || !get(exp, "p0.ids", &ids) || !get(exp, "p0.greedy", &greedy)) goto done;
    tsr_session *s = NULL;
    CHECK_OK(tsr_session_new(m, NULL, &s, &err), &err);
    if (!s) goto done;
    tsr_decode_input in = tsr_decode_input_default();
    in.ids = ids.data;
    in.n_ids = ids.shape[0];
    tsr_generate_params gp = tsr_generate_params_default();
    gp.sampling.temperature = 0;
    gp.max_tokens = 32;
    gp.ignore_eos = 1;
    gp.tokenizer = tok;
    collect c = {0};
    gp.on_token = on_token;
    gp.user = &c;
    tsr_token_ids out = {0};
    tsr_usage u;
    CHECK_OK(tsr_session_generate(s, &in, &gp, &out, &u, &err), &err);
    CHECK(out.n == 32 && !memcmp(out.ids, greedy.data, 32 * sizeof(int32_t)));
    CHECK(c.n == 32 && !memcmp(c.ids, greedy.data, 32 * sizeof(int32_t)));
    CHECK(u.stop_reason == TSR_STOP_LENGTH && u.completion_tokens == 32 &&
          u.prompt_tokens == in.n_ids);
    char *text = NULL;
    CHECK_OK(tsr_tokenizer_decode(tok, out.ids, out.n, 1, &text, NULL, &err), &err);
    CHECK_MSG(text && !strcmp(text, c.text), "streamed '%s' vs decoded '%s'", c.text, text);
    /* Stop string: a piece of the greedy text a few tokens in. */
    if (text && strlen(text) > 12) {
        char stop[5];
        memcpy(stop, text + 8, 4);
        stop[4] = 0;
        const char *stops[1] = {stop};
        collect c2 = {0};
        gp.user = &c2;
        gp.stop = stops;
        gp.n_stop = 1;
        tsr_session_reset(s);
        tsr_token_ids out2 = {0};
        CHECK_OK(tsr_session_generate(s, &in, &gp, &out2, &u, &err), &err);
        CHECK(u.stop_reason == TSR_STOP_STRING);
        CHECK_MSG(!strncmp(c2.text, text, c2.len) && strstr(text, stop) == text + c2.len,
                  "stop '%s': '%s'", stop, c2.text);
        tsr_token_ids_free(&out2);
        gp.stop = NULL;
        gp.n_stop = 0;
    }
    tsr_chat_string_free(NULL);
    tsr_tokenizer_text_free(text);
    /* Cancel after 5 tokens. */
    collect c3 = {0};
    c3.cancel_after = 5;
    gp.user = &c3;
    tsr_session_reset(s);
    tsr_token_ids_free(&out);
    CHECK_OK(tsr_session_generate(s, &in, &gp, &out, &u, &err), &err);
    CHECK(u.stop_reason == TSR_STOP_CANCELLED && out.n == 5);
    tsr_token_ids_free(&out);
    /* Sampling with a seed is reproducible. */
    gp.sampling.temperature = 0.9f;
    gp.sampling.top_p = 0.95f;
    gp.sampling.seed = 42;
    gp.on_token = NULL;
    tsr_token_ids r1 = {0}, r2 = {0};
    tsr_session_reset(s);
    CHECK_OK(tsr_session_generate(s, &in, &gp, &r1, NULL, &err), &err);
    tsr_session_reset(s);
    CHECK_OK(tsr_session_generate(s, &in, &gp, &r2, NULL, &err), &err);
    CHECK(r1.n == 32 && r2.n == 32 && !memcmp(r1.ids, r2.ids, 32 * sizeof(int32_t)));
    tsr_token_ids_free(&r1);
    tsr_token_ids_free(&r2);
    /* Context end stops with LENGTH, not an error. */
    tsr_session_free(s);
    s = NULL;
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = in.n_ids + 4;
    CHECK_OK(tsr_session_new(m, &sp, &s, &err), &err);
    gp.sampling = tsr_sampling_params_default();
    gp.sampling.temperature = 0;
    CHECK_OK(tsr_session_generate(s, &in, &gp, &out, &u, &err), &err);
    CHECK(u.stop_reason == TSR_STOP_LENGTH && out.n == 5);
    CHECK(!memcmp(out.ids, greedy.data, out.n * sizeof(int32_t)));
    tsr_token_ids_free(&out);
    tsr_session_free(s);
done:
    tsr_safetensors_close(exp);
    tsr_tokenizer_free(tok);
    tsr_model_free(m);
}

/* Qwen2-VL: prompts with image spans (random embeddings) at get_rope_index's 3-row positions,
 * then greedy steps without positions (they continue after the largest one). */
static double run_qwen2_vl(int64_t n_batch, int32_t n_threads) {
    tsr_error err = {0};
    tsr_model *m = NULL;
    tsr_safetensors *exp = NULL;
    CHECK_OK(tsr_model_load(tsr_test_fixture("decoder/qwen2_vl"), NULL, &m, &err), &err);
    CHECK_OK(tsr_safetensors_open_file(tsr_test_fixture("decoder/qwen2_vl.expected.safetensors"),
                                       &exp, &err),
             &err);
    tsr_session *s = NULL;
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = 64;
    sp.n_batch = n_batch;
    sp.n_threads = n_threads;
    if (m) CHECK_OK(tsr_session_new(m, &sp, &s, &err), &err);
    double worst = 0;
    for (int p = 0; s && exp && p < 2; p++) {
        char nm[64];
        tsr_tensor ids, pos, emb, starts, lens, prefill, steps, greedy;
#define GET(field, t)                                   \
    snprintf(nm, sizeof nm, "p%d." field, p);          \
    if (!get(exp, nm, &t)) break;
        GET("ids", ids) GET("positions", pos) GET("image_embeds", emb) GET("image_starts", starts)
        GET("image_lens", lens) GET("prefill", prefill) GET("steps", steps) GET("greedy", greedy)
#undef GET
        int32_t V = tsr_model_vocab_size(m), D = tsr_model_hidden_size(m);
        int64_t T = ids.shape[0];
        CHECK(pos.dtype == TSR_DTYPE_I64 && pos.shape[0] == 3 && pos.shape[1] == T);
        tsr_embed_span spans[4];
        size_t n_spans = 0;
        const int32_t *st = starts.data, *ln = lens.data;
        int64_t row = 0;
        for (int64_t i = 0; i < starts.shape[0] && n_spans < 4; i++, n_spans++) {
            spans[n_spans].start = st[i];
            spans[n_spans].n_tokens = ln[i];
            spans[n_spans].data = (const float *)emb.data + row * D;
            row += ln[i];
        }
        float *logits = malloc((size_t)T * (size_t)V * sizeof *logits);
        tsr_session_reset(s);
        tsr_decode_input in = tsr_decode_input_default();
        in.ids = ids.data;
        in.n_ids = T;
        in.spans = spans;
        in.n_spans = n_spans;
        in.position_ids = pos.data;
        in.n_pos_rows = 3;
        in.logits_all = 1;
        CHECK_OK(tsr_session_decode(s, &in, logits, (size_t)T * (size_t)V, &err), &err);
        double d = max_abs_diff(logits, prefill.data, (size_t)T * (size_t)V);
        CHECK_MSG(d <= TOL, "qwen2_vl p%d prefill: max abs diff %g", p, d);
        worst = d > worst ? d : worst;
        const int32_t *g = greedy.data;
        for (int i = 0; i < 32; i++) {
            int32_t id = argmax(tsr_session_logits(s), V);
            CHECK_MSG(id == g[i], "qwen2_vl p%d greedy[%d]: %d, expected %d", p, i, id, g[i]);
            if (id != g[i]) break;
            tsr_decode_input one = tsr_decode_input_default();
            one.ids = &id;
            one.n_ids = 1;
            CHECK_OK(tsr_session_decode(s, &one, NULL, 0, &err), &err);
            if (i < 16) {
                d = max_abs_diff(tsr_session_logits(s), (const float *)steps.data + (size_t)i * V,
                                 (size_t)V);
                CHECK_MSG(d <= TOL, "qwen2_vl p%d step %d: max abs diff %g", p, i, d);
                worst = d > worst ? d : worst;
            }
        }
        free(logits);
    }
    tsr_session_free(s);
    tsr_safetensors_close(exp);
    tsr_model_free(m);
    return worst;
}

static void test_mrope(void) {
    printf("  qwen2_vl    max abs logit diff %.3g\n", run_qwen2_vl(256, 2));
    printf("  qwen2_vl n_batch 5, 1 thread: max abs logit diff %.3g\n", run_qwen2_vl(5, 1));
}

/* MLlama: prompts with cross-attention states and mask (then greedy steps without either:
 * the session keeps the cross K/V and repeats the mask's last row), and a text-only prompt. */
static double run_mllama(int64_t n_batch, int32_t n_threads) {
    tsr_error err = {0};
    tsr_model *m = NULL;
    tsr_safetensors *exp = NULL;
    CHECK_OK(tsr_model_load(tsr_test_fixture("decoder/mllama"), NULL, &m, &err), &err);
    CHECK_OK(tsr_safetensors_open_file(tsr_test_fixture("decoder/mllama.expected.safetensors"),
                                       &exp, &err),
             &err);
    tsr_session *s = NULL;
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = 64;
    sp.n_batch = n_batch;
    sp.n_threads = n_threads;
    if (m) CHECK_OK(tsr_session_new(m, &sp, &s, &err), &err);
    double worst = 0;
    for (int p = 0; s && exp && p < 3; p++) {
        char nm[64];
        tsr_tensor ids, prefill, steps, greedy, states, mask;
#define GET(field, t)                          \
    snprintf(nm, sizeof nm, "p%d." field, p); \
    if (!get(exp, nm, &t)) break;
        GET("ids", ids) GET("prefill", prefill) GET("steps", steps) GET("greedy", greedy)
#undef GET
        int has_image = p < 2;
        if (has_image) {
            snprintf(nm, sizeof nm, "p%d.cross_states", p);
            if (!get(exp, nm, &states)) break;
            snprintf(nm, sizeof nm, "p%d.cross_mask", p);
            if (!get(exp, nm, &mask)) break;
        }
        int32_t V = tsr_model_vocab_size(m);
        int64_t T = ids.shape[0];
        CHECK(V == 256 && prefill.shape[1] == V);
        float *logits = malloc((size_t)T * (size_t)V * sizeof *logits);
        tsr_session_reset(s);
        tsr_decode_input in = tsr_decode_input_default();
        in.ids = ids.data;
        in.n_ids = T;
        in.logits_all = 1;
        if (has_image) {
            in.cross_states = &states;
            in.cross_mask = &mask;
        }
        CHECK_OK(tsr_session_decode(s, &in, logits, (size_t)T * (size_t)V, &err), &err);
        double d = max_abs_diff(logits, prefill.data, (size_t)T * (size_t)V);
        CHECK_MSG(d <= TOL, "mllama p%d prefill: max abs diff %g", p, d);
        worst = d > worst ? d : worst;
        const int32_t *g = greedy.data;
        for (int i = 0; i < 32; i++) {
            int32_t id = argmax(tsr_session_logits(s), V);
            CHECK_MSG(id == g[i], "mllama p%d greedy[%d]: %d, expected %d", p, i, id, g[i]);
            if (id != g[i]) break;
            tsr_decode_input one = tsr_decode_input_default();
            one.ids = &id;
            one.n_ids = 1;
            CHECK_OK(tsr_session_decode(s, &one, NULL, 0, &err), &err);
            if (i < 16) {
                d = max_abs_diff(tsr_session_logits(s), (const float *)steps.data + (size_t)i * V,
                                 (size_t)V);
                CHECK_MSG(d <= TOL, "mllama p%d step %d: max abs diff %g", p, i, d);
                worst = d > worst ? d : worst;
            }
        }
        free(logits);
    }
    tsr_session_free(s);
    tsr_safetensors_close(exp);
    tsr_model_free(m);
    return worst;
}

/* Cross-attention inputs that must fail cleanly and leave the session unchanged. */
static void test_mllama_inputs(void) {
    tsr_error err = {0};
    tsr_model *m = NULL, *q = NULL;
    tsr_safetensors *exp = NULL;
    CHECK_OK(tsr_model_load(tsr_test_fixture("decoder/mllama"), NULL, &m, &err), &err);
    CHECK_OK(tsr_model_load(tsr_test_fixture("decoder/qwen2"), NULL, &q, &err), &err);
    CHECK_OK(tsr_safetensors_open_file(tsr_test_fixture("decoder/mllama.expected.safetensors"),
                                       &exp, &err),
             &err);
    tsr_tensor ids, states, mask;
    tsr_session *s = NULL, *sq = NULL;
    if (!m || !q || !exp || !get(exp, "p0.ids", &ids) || !get(exp, "p0.cross_states", &states) ||
        !get(exp, "p0.cross_mask", &mask))
        goto done;
    CHECK(!strcmp(tsr_model_type(m), "mllama"));
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = 32;
    CHECK_OK(tsr_session_new(m, &sp, &s, &err), &err);
    CHECK_OK(tsr_session_new(q, &sp, &sq, &err), &err);
    if (!s || !sq) goto done;
    tsr_decode_input in = tsr_decode_input_default();
    in.ids = ids.data;
    in.n_ids = ids.shape[0];
    /* The cross path matters: without the states the last logits are far from the reference. */
    tsr_tensor prefill;
    if (get(exp, "p0.prefill", &prefill)) {
        CHECK_OK(tsr_session_decode(s, &in, NULL, 0, &err), &err);
        const float *last = (const float *)prefill.data + (size_t)(ids.shape[0] - 1) * 256;
        CHECK(max_abs_diff(tsr_session_logits(s), last, 256) > 0.05);
        tsr_session_reset(s);
    }
    in.cross_states = &states;
    /* A model without cross-attention layers. */
    CHECK(tsr_session_decode(sq, &in, NULL, 0, &err) == TSR_ERR_UNSUPPORTED);
    /* Wrong hidden size, dtype, row count. */
    tsr_tensor bad = states;
    bad.shape[2] = 32;
    bad.strides[1] = 32;
    bad.strides[0] = 5 * 32;
    in.cross_states = &bad;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_SHAPE);
    bad = states;
    bad.dtype = TSR_DTYPE_I32;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_SHAPE);
    bad = states;
    bad.shape[0] = 0;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) != TSR_OK);
    /* Mask without states; mask of the wrong length; blocks not dividing the rows. */
    in.cross_states = NULL;
    in.cross_mask = &mask;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    in.cross_states = &states;
    in.n_ids = ids.shape[0] - 1;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_SHAPE);
    in.n_ids = ids.shape[0];
    tsr_tensor bm = mask;
    bm.shape[3] = 3; /* 2 x 3 blocks do not divide 20 rows */
    bm.strides[2] = 3;
    bm.strides[1] = 6;
    bm.strides[0] = 6 * bm.shape[1];
    in.cross_mask = &bm;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_SHAPE);
    bm = mask;
    bm.dtype = TSR_DTYPE_F32;
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_SHAPE);
    CHECK(tsr_session_n_past(s) == 0);
    /* Ids past the embedding rows (vocab 256 + 8). */
    int32_t far = 264;
    tsr_decode_input one = tsr_decode_input_default();
    one.ids = &far;
    one.n_ids = 1;
    CHECK(tsr_session_decode(s, &one, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    /* Good, then a second set of states is refused until reset. */
    in.cross_mask = &mask;
    CHECK_OK(tsr_session_decode(s, &in, NULL, 0, &err), &err);
    CHECK(tsr_session_decode(s, &in, NULL, 0, &err) == TSR_ERR_UNSUPPORTED);
    tsr_session_reset(s);
    CHECK_OK(tsr_session_decode(s, &in, NULL, 0, &err), &err);
done:
    tsr_session_free(s);
    tsr_session_free(sq);
    tsr_safetensors_close(exp);
    tsr_model_free(m);
    tsr_model_free(q);
}

static void test_mllama(void) {
    printf("  mllama      max abs logit diff %.3g\n", run_mllama(256, 2));
    printf("  mllama n_batch 4, 3 threads: max abs logit diff %.3g\n", run_mllama(4, 3));
}

/* BF16 -> F32 by truncation is exact for these values (they are BF16 values); F16 likewise. */
static uint16_t to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return (uint16_t)(b >> 16);
}

static uint16_t to_f16(float f) { /* |f| in [2^-14, 2): normal halves only */
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    uint32_t sign = (b >> 16) & 0x8000u, e = (b >> 23) & 0xffu, man = (b >> 13) & 0x3ffu;
    if (e < 113) return (uint16_t)sign;
    return (uint16_t)(sign | ((e - 112) << 10) | man);
}

/* tsr__matmul_wt on 16-bit weights (decode dot product, prefill slabs with and without the
 * pool scratch, row counts not multiples of 4 or 16, K with a tail) against F32 sgemm on the
 * same widened values. */
static void test_wide_matmul(void) {
    enum { K = 203, N = 301, TMAX = 7 };
    float *x = malloc(sizeof(float) * TMAX * K), *wf = malloc(sizeof(float) * N * K);
    uint16_t *wh = malloc(sizeof(uint16_t) * N * K);
    float *bias = malloc(sizeof(float) * N), *ref = malloc(sizeof(float) * TMAX * N),
          *got = malloc(sizeof(float) * TMAX * N);
    tsr__pool *p = tsr__pool_new(3), *q = tsr__pool_new(2);
    CHECK(x && wf && wh && bias && ref && got && p && q);
    if (!x || !wf || !wh || !bias || !ref || !got || !p || !q) goto done;
    CHECK(tsr__pool_reserve(p, (size_t)TSR__WSLAB_ROWS * K) == 0);
    uint32_t r = 12345u;
    for (int i = 0; i < TMAX * K; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)((int)(r >> 9) % 2001 - 1000) / 1000.0f;
    }
    for (int i = 0; i < N; i++) bias[i] = (float)i / N;
    for (int type = TSR__W_BF16; type <= TSR__W_F16; type++) {
        for (int i = 0; i < N * K; i++) {
            r = r * 1664525u + 1013904223u;
            float v = (float)((int)(r >> 9) % 2001 - 1000) / 1100.0f;
            if (fabsf(v) < 0.001f) v = 0.5f;
            wh[i] = type == TSR__W_BF16 ? to_bf16(v) : to_f16(v);
            wf[i] = type == TSR__W_BF16 ? tsr__bf16_to_f32(wh[i]) : tsr__f16_to_f32(wh[i]);
        }
        tsr__wmat w16 = {wh, (tsr__wtype)type}, w32 = {wf, TSR__W_F32};
        int64_t Ts[] = {1, 2, TMAX};
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
            int64_t T = Ts[ti];
            tsr__matmul_wt(NULL, ref, x, w32, bias, T, K, N);
            tsr__pool *pools[] = {p, q, NULL}; /* q, NULL: no scratch, dot product per row */
            for (int pi = 0; pi < 3; pi++) {
                memset(got, 0xff, sizeof(float) * TMAX * N);
                tsr__matmul_wt(pools[pi], got, x, w16, bias, T, K, N);
                double d = max_abs_diff(ref, got, (size_t)(T * N));
                CHECK_MSG(d <= 1e-5, "type %d T %lld pool %d: max abs diff %g", type,
                          (long long)T, pi, d);
            }
        }
        float row[K];
        tsr__wmat_row(row, w16, N - 1, K);
        CHECK(!memcmp(row, wf + (size_t)(N - 1) * K, sizeof row));
    }
done:
    tsr__pool_free(p);
    tsr__pool_free(q);
    free(x);
    free(wf);
    free(wh);
    free(bias);
    free(ref);
    free(got);
}

int main(void) {
    tsr_test_run("parity", test_parity);
    tsr_test_run("chunked_prefill", test_chunked_prefill);
    tsr_test_run("model_facts", test_model_facts);
    tsr_test_run("spans_and_limits", test_spans_and_limits);
    tsr_test_run("generate", test_generate);
    tsr_test_run("mrope", test_mrope);
    tsr_test_run("mllama", test_mllama);
    tsr_test_run("mllama_inputs", test_mllama_inputs);
    tsr_test_run("wide_matmul", test_wide_matmul);
    return tsr_test_finish();
}
