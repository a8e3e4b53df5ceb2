/* The conversation API (tsr_chat_*) on the demo model in assets/qwen2-vl-tiny: greedy replies
 * equal transformers' generate() on the same conversation (tests/fixtures/assets/
 * qwen2_vl_tiny.json, tools/refgen/gen_assets_model.py), a turn that reuses the KV cache gives
 * the ids of a fresh session fed the whole conversation, and every failure (media count, media
 * kind, undecodable media, context overflow, allocation failures) is a typed error that leaves
 * the conversation as it was. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "tessera_internal.h"

static tsr_model *g_model;
static cJSON *g_ref;

static const char *model_dir(void) { return tsr_test_fixture("../../assets/qwen2-vl-tiny"); }

static int takes_images(void) {
    return g_model && (tsr_model_media_kinds(g_model) & (1u << TSR_MEDIA_IMAGE));
}

static tsr_generate_params greedy(int64_t max_tokens) {
    tsr_generate_params gp = tsr_generate_params_default();
    gp.sampling.temperature = 0;
    gp.max_tokens = max_tokens;
    return gp;
}

static tsr_chat *new_chat(int64_t n_ctx) {
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = n_ctx;
    sp.n_threads = 2;
    tsr_chat *c = NULL;
    tsr_error err = {0};
    CHECK_OK(tsr_chat_new(g_model, &sp, &c, &err), &err);
    return c;
}

/* Adds one fixture message ({"role", "content": string | [{"type": "text"|"image", ...}]})
 * with its images read from the repository. */
static tsr_status add_fixture_message(tsr_chat *c, const cJSON *m, tsr_error *err) {
    const char *role = cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (cJSON_IsString(content)) {
        tsr_chat_message msg = {role, content->valuestring, NULL, 0};
        return tsr_chat_add(c, &msg, NULL, 0, err);
    }
    tsr_chat_part parts[8];
    tsr_media media[8];
    uint8_t *bufs[8] = {0};
    size_t n = 0, n_media = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, content) {
        if (n == 8) break;
        const char *type = cJSON_GetObjectItemCaseSensitive(p, "type")->valuestring;
        memset(&parts[n], 0, sizeof parts[n]);
        if (!strcmp(type, "image")) {
            char rel[512];
            snprintf(rel, sizeof rel, "../../%s",
                     cJSON_GetObjectItemCaseSensitive(p, "path")->valuestring);
            size_t len = 0;
            bufs[n_media] = tsr_test_read(tsr_test_fixture(rel), &len);
            CHECK(bufs[n_media] != NULL);
            memset(&media[n_media], 0, sizeof media[n_media]);
            media[n_media].kind = TSR_MEDIA_IMAGE;
            media[n_media].data = bufs[n_media];
            media[n_media].len = len;
            n_media++;
            parts[n].type = TSR_CHAT_PART_IMAGE;
        } else {
            parts[n].type = TSR_CHAT_PART_TEXT;
            parts[n].text = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        }
        n++;
    }
    tsr_chat_message msg = {role, NULL, parts, n};
    tsr_status st = tsr_chat_add(c, &msg, media, n_media, err);
    for (size_t i = 0; i < n_media; i++) free(bufs[i]);
    return st;
}

static int ids_equal(const tsr_token_ids *got, const cJSON *want) {
    if (!got || (int)got->n != cJSON_GetArraySize(want)) return 0;
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, want) {
        if (got->ids[k++] != (int32_t)e->valuedouble) return 0;
    }
    return 1;
}

static void print_ids(const char *what, const tsr_token_ids *ids) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < ids->n; i++) fprintf(stderr, " %d", ids->ids[i]);
    fprintf(stderr, "\n");
}

/* One text-only turn with a system message equals transformers. */
static void test_text_turn_matches_transformers(void) {
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(g_ref, "text_only");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(ref, "messages");
    int max_new = cJSON_GetObjectItemCaseSensitive(g_ref, "max_new_tokens")->valueint;
    tsr_chat *c = new_chat(0);
    if (!c) return;
    tsr_error err = {0};
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) CHECK_OK(add_fixture_message(c, m, &err), &err);
    tsr_generate_params gp = greedy(max_new);
    char *text = NULL;
    tsr_token_ids ids = {0};
    tsr_usage u;
    CHECK_OK(tsr_chat_generate(c, &gp, &text, &ids, &u, &err), &err);
    CHECK_MSG(ids_equal(&ids, cJSON_GetObjectItemCaseSensitive(ref, "ids")), "greedy ids differ");
    if (!ids_equal(&ids, cJSON_GetObjectItemCaseSensitive(ref, "ids"))) print_ids("got", &ids);
    CHECK(text && !strcmp(text, cJSON_GetObjectItemCaseSensitive(ref, "text")->valuestring));
    CHECK(u.prompt_tokens == cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ref, "input_ids")));
    CHECK(u.cached_tokens == 0 && u.image_ms == 0 && u.audio_ms == 0);
    CHECK(u.completion_tokens == (int64_t)ids.n);
    CHECK(tsr_chat_n_messages(c) == 3);
    tsr_chat_string_free(text);
    tsr_token_ids_free(&ids);
    tsr_chat_free(c);
}

static int stop_after_two(int32_t id, const char *text, size_t len, void *user) {
    (void)id;
    (void)text;
    (void)len;
    return ++*(int *)user >= 2;
}

/* A callback that stops the reply early: OK, CANCELLED, the partial reply is the message. */
static void test_cancel(void) {
    tsr_chat *c = new_chat(0);
    if (!c) return;
    tsr_error err = {0};
    tsr_chat_message u = {"user", "Tell me a story about a robot.", NULL, 0};
    CHECK_OK(tsr_chat_add(c, &u, NULL, 0, &err), &err);
    tsr_generate_params gp = greedy(16);
    int calls = 0;
    gp.on_token = stop_after_two;
    gp.user = &calls;
    char *text = NULL;
    tsr_token_ids ids = {0};
    tsr_usage us;
    CHECK_OK(tsr_chat_generate(c, &gp, &text, &ids, &us, &err), &err);
    CHECK(us.stop_reason == TSR_STOP_CANCELLED && calls == 2 && ids.n == 2);
    CHECK(text != NULL && tsr_chat_n_messages(c) == 2);
    tsr_chat_string_free(text);
    tsr_token_ids_free(&ids);
    tsr_chat_free(c);
}

/* Turn 2 gives the ids of a fresh chat fed the whole conversation (the reply of turn 1
 * included). When the rendered turn 2 starts with every id the KV cache holds, those are
 * reused (cached_tokens); when the reply re-tokenizes differently the cache is cut back to
 * the common prefix (within turn 1's prompt) and the rest is prefilled. */
static void two_turns(const char *first, int expect_cached) {
    tsr_error err = {0};
    tsr_chat *c = new_chat(0), *fresh = new_chat(0);
    if (!c || !fresh) {
        tsr_chat_free(c);
        tsr_chat_free(fresh);
        return;
    }
    tsr_chat_message sys = {"system", "You are a helpful assistant.", NULL, 0};
    tsr_chat_message u1 = {"user", first, NULL, 0};
    tsr_chat_message u2 = {"user", "And then what happened?", NULL, 0};
    tsr_generate_params gp = greedy(4);
    char *r1 = NULL;
    tsr_token_ids ids1 = {0}, ids2 = {0}, want = {0};
    tsr_usage us1, us2, usf;
    CHECK_OK(tsr_chat_add(c, &sys, NULL, 0, &err), &err);
    CHECK_OK(tsr_chat_add(c, &u1, NULL, 0, &err), &err);
    CHECK_OK(tsr_chat_generate(c, &gp, &r1, &ids1, &us1, &err), &err);
    CHECK_OK(tsr_chat_add(c, &u2, NULL, 0, &err), &err);
    CHECK_OK(tsr_chat_generate(c, &gp, NULL, &ids2, &us2, &err), &err);
    printf("  '%s': turn 2 has %lld prompt tokens, %lld from the cache\n", first,
           (long long)us2.prompt_tokens, (long long)us2.cached_tokens);
    if (expect_cached)
        CHECK_MSG(us2.cached_tokens > us1.prompt_tokens, "turn 2 reused %lld cached tokens",
                  (long long)us2.cached_tokens);
    else
        CHECK_MSG(us2.cached_tokens > 0 && us2.cached_tokens <= us1.prompt_tokens,
                  "turn 2 reused %lld cached tokens", (long long)us2.cached_tokens);
    CHECK(us2.cached_tokens < us2.prompt_tokens);
    CHECK(us2.prompt_tokens > us1.prompt_tokens);
    CHECK(tsr_chat_n_messages(c) == 5);
    /* The same conversation from scratch. */
    tsr_chat_message a1 = {"assistant", r1 ? r1 : "", NULL, 0};
    CHECK_OK(tsr_chat_add(fresh, &sys, NULL, 0, &err), &err);
    CHECK_OK(tsr_chat_add(fresh, &u1, NULL, 0, &err), &err);
    CHECK_OK(tsr_chat_add(fresh, &a1, NULL, 0, &err), &err);
    CHECK_OK(tsr_chat_add(fresh, &u2, NULL, 0, &err), &err);
    CHECK_OK(tsr_chat_generate(fresh, &gp, NULL, &want, &usf, &err), &err);
    CHECK(usf.cached_tokens == 0 && usf.prompt_tokens == us2.prompt_tokens);
    int same = want.n == ids2.n && (!want.n || !memcmp(want.ids, ids2.ids, want.n * 4));
    CHECK_MSG(same, "KV-cache reuse changed the greedy ids");
    if (!same) {
        print_ids("reused", &ids2);
        print_ids("fresh", &want);
    }
    /* After a reset the conversation starts over and nothing is cached. */
    tsr_chat_reset(c);
    CHECK(tsr_chat_n_messages(c) == 0 && tsr_session_n_past(tsr_chat_session(c)) == 0);
    tsr_token_ids again = {0};
    CHECK_OK(tsr_chat_add(c, &sys, NULL, 0, &err), &err);
    CHECK_OK(tsr_chat_add(c, &u1, NULL, 0, &err), &err);
    CHECK_OK(tsr_chat_generate(c, &gp, NULL, &again, &us2, &err), &err);
    CHECK(us2.cached_tokens == 0 && again.n == ids1.n &&
          !memcmp(again.ids, ids1.ids, ids1.n * sizeof *ids1.ids));
    /* With a repetition penalty (over every prompt id in generate()) nothing is reused. */
    if (expect_cached) {
        tsr_chat_reset(c);
        tsr_generate_params rp = gp;
        rp.sampling.repetition_penalty = 1.3f;
        CHECK_OK(tsr_chat_add(c, &sys, NULL, 0, &err), &err);
        CHECK_OK(tsr_chat_add(c, &u1, NULL, 0, &err), &err);
        CHECK_OK(tsr_chat_generate(c, &rp, NULL, NULL, &us1, &err), &err);
        CHECK_OK(tsr_chat_add(c, &u2, NULL, 0, &err), &err);
        CHECK_OK(tsr_chat_generate(c, &rp, NULL, NULL, &us2, &err), &err);
        CHECK(us2.cached_tokens == 0);
    }
    tsr_chat_string_free(r1);
    tsr_token_ids_free(&ids1);
    tsr_token_ids_free(&ids2);
    tsr_token_ids_free(&want);
    tsr_token_ids_free(&again);
    tsr_chat_free(c);
    tsr_chat_free(fresh);
}

/* This reply re-tokenizes to the ids generated: the cache is extended. */
static void test_kv_reuse_equals_fresh(void) { two_turns("Hi.", 1); }
/* This one does not ("ごナ" x 4 re-tokenizes to other ids): the cache is cut back. */
static void test_kv_mismatch_equals_fresh(void) {
    two_turns("Tell me a story about a robot.", 0);
}

/* Two turns about the sample image equal transformers (the second one after the first
 * reply), the image encoded by the vision encoder each turn. */
static void test_image_turns_match_transformers(void) {
    if (!takes_images()) {
        tsr_test_skip("the qwen2_vl vision encoder is not available in this build");
        return;
    }
    const cJSON *turns = cJSON_GetObjectItemCaseSensitive(g_ref, "turns");
    int max_new = cJSON_GetObjectItemCaseSensitive(g_ref, "max_new_tokens")->valueint;
    tsr_chat *c = new_chat(0);
    if (!c) return;
    tsr_error err = {0};
    int k = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, turns) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(t, "messages");
        int n = cJSON_GetArraySize(msgs);
        /* Turn 1 adds its message; later turns only the last (the reply is the chat's). */
        for (int i = k == 0 ? 0 : n - 1; i < n; i++)
            CHECK_OK(add_fixture_message(c, cJSON_GetArrayItem(msgs, i), &err), &err);
        tsr_generate_params gp = greedy(max_new);
        char *text = NULL;
        tsr_token_ids ids = {0};
        tsr_usage u;
        CHECK_OK(tsr_chat_generate(c, &gp, &text, &ids, &u, &err), &err);
        int same = ids_equal(&ids, cJSON_GetObjectItemCaseSensitive(t, "ids"));
        CHECK_MSG(same, "turn %d: greedy ids differ from transformers", k + 1);
        if (!same) print_ids("got", &ids);
        const char *want = cJSON_GetObjectItemCaseSensitive(t, "text")->valuestring;
        CHECK_MSG(text && !strcmp(text, want), "turn %d: text '%s', transformers '%s'", k + 1,
                  text ? text : "(null)", want);
        CHECK(u.prompt_tokens ==
              cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "input_ids")));
        CHECK(u.image_ms > 0);
        printf("  turn %d: %lld prompt tokens, %lld cached, image %.2f ms\n", k + 1,
               (long long)u.prompt_tokens, (long long)u.cached_tokens, u.image_ms);
        tsr_chat_string_free(text);
        tsr_token_ids_free(&ids);
        k++;
    }
    tsr_chat_free(c);
}

static void test_add_errors(void) {
    tsr_chat *c = new_chat(0);
    if (!c) return;
    tsr_error err = {0};
    size_t wav_len = 0, jpg_len = 0;
    uint8_t *wav = tsr_test_read(tsr_test_fixture("../../assets/sample.wav"), &wav_len);
    uint8_t *jpg = tsr_test_read(tsr_test_fixture("../../assets/sample.jpg"), &jpg_len);
    CHECK(wav && jpg);
    tsr_chat_part ip[] = {{TSR_CHAT_PART_IMAGE, NULL, NULL}, {TSR_CHAT_PART_TEXT, "What?", NULL}};
    tsr_chat_part ap[] = {{TSR_CHAT_PART_AUDIO, NULL, "wav"}, {TSR_CHAT_PART_TEXT, "What?", NULL}};
    tsr_chat_message im = {"user", NULL, ip, 2}, am = {"user", NULL, ap, 2};
    tsr_media jm = {TSR_MEDIA_IMAGE, jpg, jpg_len, NULL, NULL};
    tsr_media wm = {TSR_MEDIA_AUDIO, wav, wav_len, NULL, NULL};
    /* Media count: one image part, no media or two. */
    CHECK(tsr_chat_add(c, &im, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "tsr_chat_add") && strstr(err.message, "1 image / audio"));
    tsr_media two[] = {jm, jm};
    CHECK(tsr_chat_add(c, &im, two, 2, &err) == TSR_ERR_INVALID_ARG);
    /* Audio on a model that takes none. */
    CHECK(tsr_chat_add(c, &am, &wm, 1, &err) == TSR_ERR_INVALID_ARG);
    CHECK_MSG(strstr(err.message, "takes no audio"), "%s", err.message);
    /* The part says image, the media says audio; WAV bytes declared as an image. */
    CHECK(tsr_chat_add(c, &im, &wm, 1, &err) == TSR_ERR_INVALID_ARG);
    tsr_media wav_as_image = {TSR_MEDIA_IMAGE, wav, wav_len, NULL, NULL};
    CHECK(tsr_chat_add(c, &im, &wav_as_image, 1, &err) == TSR_ERR_INVALID_ARG);
    /* Malformed messages. */
    tsr_chat_message norole = {NULL, "x", NULL, 0};
    CHECK(tsr_chat_add(c, &norole, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    tsr_chat_part badtext[] = {{TSR_CHAT_PART_TEXT, NULL, NULL}};
    tsr_chat_message bt = {"user", NULL, badtext, 1};
    CHECK(tsr_chat_add(c, &bt, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    tsr_chat_message noparts = {"user", NULL, NULL, 2};
    CHECK(tsr_chat_add(c, &noparts, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_chat_add(NULL, &im, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_chat_add(c, NULL, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
    if (takes_images()) {
        /* A truncated JPEG fails at add time with the decoder's error. */
        tsr_media cut = {TSR_MEDIA_IMAGE, jpg, jpg_len / 3, NULL, NULL};
        tsr_status st = tsr_chat_add(c, &im, &cut, 1, &err);
        CHECK_MSG(st == TSR_ERR_FORMAT, "%s: %s", tsr_status_name(st), err.message);
        /* A decoded image is copied: the caller's buffer may go away. */
        tsr_image img = {0};
        CHECK_OK(tsr_image_decode(jpg, jpg_len, NULL, &img, NULL, &err), &err);
        tsr_media dm = {TSR_MEDIA_IMAGE, NULL, 0, &img, NULL};
        CHECK_OK(tsr_chat_add(c, &im, &dm, 1, &err), &err);
        tsr_image_free(&img);
        CHECK(tsr_chat_n_messages(c) == 1);
        tsr_generate_params gp = greedy(2);
        CHECK_OK(tsr_chat_generate(c, &gp, NULL, NULL, NULL, &err), &err);
        CHECK(tsr_chat_n_messages(c) == 2);
    } else {
        CHECK(tsr_chat_add(c, &im, &jm, 1, &err) == TSR_ERR_INVALID_ARG);
        CHECK(tsr_chat_n_messages(c) == 0);
    }
    /* Nothing to answer. */
    tsr_chat_reset(c);
    CHECK(tsr_chat_generate(c, NULL, NULL, NULL, NULL, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_chat_generate(NULL, NULL, NULL, NULL, NULL, &err) == TSR_ERR_INVALID_ARG);
    tsr_chat_free(NULL);
    tsr_chat_reset(NULL);
    CHECK(tsr_chat_n_messages(NULL) == 0 && tsr_chat_session(NULL) == NULL);
    free(wav);
    free(jpg);
    tsr_chat_free(c);
}

/* A conversation that outgrows the context is LIMIT, and leaves the conversation as it was. */
static void test_context_overflow(void) {
    tsr_error err = {0};
    tsr_chat *c = new_chat(16);
    if (!c) return;
    tsr_chat_message u1 = {"user", "Tell me a story about a robot who learns to paint.", NULL, 0};
    CHECK_OK(tsr_chat_add(c, &u1, NULL, 0, &err), &err);
    tsr_generate_params gp = greedy(4);
    char *text = (char *)&err; /* must come back NULL */
    tsr_token_ids ids = {(int32_t *)&err, 7};
    tsr_status st = tsr_chat_generate(c, &gp, &text, &ids, NULL, &err);
    CHECK_MSG(st == TSR_ERR_LIMIT, "%s: %s", tsr_status_name(st), err.message);
    CHECK(text == NULL && ids.ids == NULL && ids.n == 0);
    CHECK(tsr_chat_n_messages(c) == 1);
    tsr_chat_free(c);
    /* Turn 1 fits, turn 2 does not: the second user message stays, without a reply. */
    c = new_chat(64);
    if (!c) return;
    tsr_chat_message u0 = {"user", "Hi.", NULL, 0};
    CHECK_OK(tsr_chat_add(c, &u0, NULL, 0, &err), &err);
    CHECK_OK(tsr_chat_generate(c, &gp, NULL, NULL, NULL, &err), &err);
    CHECK(tsr_chat_n_messages(c) == 2);
    CHECK_OK(tsr_chat_add(c, &u1, NULL, 0, &err), &err);
    CHECK_OK(tsr_chat_add(c, &u1, NULL, 0, &err), &err);
    st = tsr_chat_generate(c, &gp, NULL, NULL, NULL, &err);
    CHECK_MSG(st == TSR_ERR_LIMIT, "%s: %s", tsr_status_name(st), err.message);
    CHECK(tsr_chat_n_messages(c) == 4);
    tsr_chat_free(c);
}

/* A seeded random walk of adds, generations (some overflowing a small context), resets and
 * failing adds: every call returns OK or its typed error, failed calls leave the message count
 * as it was, and whatever the cache holds a reply equals a fresh chat's on the same
 * conversation. */
static void test_random_walk(void) {
    static const char *const texts[] = {"Hi.", "Tell me a story about a robot.", "Why?",
                                        "And then what happened?", "Good morning!"};
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    tsr_chat *c = new_chat(96);
    if (!c) return;
    char *conv[64];
    const char *roles[64];
    size_t n_conv = 0;
    int checked = 0, limits = 0;
    for (int step = 0; step < 60; step++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        unsigned r = (unsigned)(rng >> 33);
        tsr_error err = {0};
        size_t before = tsr_chat_n_messages(c);
        if (r % 11 == 0 || n_conv >= 60) { /* start over */
            tsr_chat_reset(c);
            for (size_t i = 0; i < n_conv; i++) free(conv[i]);
            n_conv = 0;
            CHECK(tsr_chat_n_messages(c) == 0);
        } else if (r % 5 == 0) { /* an add that must fail: media count mismatch */
            tsr_chat_part ip[] = {{TSR_CHAT_PART_IMAGE, NULL, NULL}};
            tsr_chat_message bad = {"user", NULL, ip, 1};
            CHECK(tsr_chat_add(c, &bad, NULL, 0, &err) == TSR_ERR_INVALID_ARG);
            CHECK(tsr_chat_n_messages(c) == before);
        } else if (r % 2 == 0 || !n_conv) {
            const char *t = texts[(r / 2) % 5];
            tsr_chat_message u = {"user", t, NULL, 0};
            CHECK_OK(tsr_chat_add(c, &u, NULL, 0, &err), &err);
            conv[n_conv] = strdup(t);
            roles[n_conv++] = "user";
        } else {
            tsr_generate_params gp = greedy(1 + (r / 4) % 6);
            char *text = NULL;
            tsr_token_ids ids = {0};
            tsr_status st = tsr_chat_generate(c, &gp, &text, &ids, NULL, &err);
            if (st == TSR_ERR_LIMIT) {
                limits++;
                CHECK(tsr_chat_n_messages(c) == before && !text && !ids.ids);
                continue;
            }
            CHECK_MSG(st == TSR_OK, "%s: %s", tsr_status_name(st), err.message);
            if (st) continue;
            CHECK(tsr_chat_n_messages(c) == before + 1);
            /* A fresh chat on the same conversation gives the same reply. */
            tsr_chat *fresh = new_chat(96);
            tsr_token_ids want = {0};
            for (size_t i = 0; fresh && i < n_conv; i++) {
                tsr_chat_message m = {roles[i], conv[i], NULL, 0};
                CHECK_OK(tsr_chat_add(fresh, &m, NULL, 0, &err), &err);
            }
            if (fresh) CHECK_OK(tsr_chat_generate(fresh, &gp, NULL, &want, NULL, &err), &err);
            CHECK_MSG(want.n == ids.n && (!ids.n || !memcmp(want.ids, ids.ids, ids.n * 4)),
                      "step %d: the reply differs from a fresh chat", step);
            checked++;
            tsr_token_ids_free(&want);
            tsr_chat_free(fresh);
            conv[n_conv] = text;
            roles[n_conv++] = "assistant";
            text = NULL;
            tsr_token_ids_free(&ids);
        }
    }
    printf("  %d replies checked against a fresh chat, %d context overflows\n", checked, limits);
    CHECK(checked > 5 && limits > 0);
    for (size_t i = 0; i < n_conv; i++) free(conv[i]);
    tsr_chat_free(c);
}

/* Failing each allocation of add + generate in turn gives OOM and an unchanged conversation. */
static void test_alloc_failpoints(void) {
    tsr_chat *c = new_chat(256);
    if (!c) return;
    tsr_chat_message u1 = {"user", "Tell me a story.", NULL, 0};
    tsr_generate_params gp = greedy(3);
    int ok_at = 0;
    for (long n = 1; n < 400 && !ok_at; n++) {
        tsr_error err = {0};
        tsr_chat_reset(c);
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_chat_add(c, &u1, NULL, 0, &err);
        size_t after_add = tsr_chat_n_messages(c);
        char *text = NULL;
        if (!st) st = tsr_chat_generate(c, &gp, &text, NULL, NULL, &err);
        tsr__alloc_failpoint(0);
        if (st == TSR_OK) {
            ok_at = (int)n;
            CHECK(tsr_chat_n_messages(c) == 2 && text);
        } else {
            CHECK_MSG(st == TSR_ERR_OOM, "failpoint %ld: %s %s", n, tsr_status_name(st),
                      err.message);
            CHECK(tsr_chat_n_messages(c) == after_add && text == NULL);
        }
        tsr_chat_string_free(text);
    }
    printf("  add + generate succeed once %d allocations are allowed\n", ok_at ? ok_at - 1 : -1);
    CHECK(ok_at > 1);
    tsr_chat_free(c);
}

/* MLlama keeps the cross-attention states of the conversation's images in the session: a turn
 * without new images extends the KV cache, a turn with a new image starts it afresh. Either
 * way each reply equals a fresh chat fed the whole conversation. The tiny MLlama checkpoint of
 * the model tests gets a short Llama-style chat template of our own (in a temporary copy). */
static const char MLLAMA_TEMPLATE[] =
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<|image|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}";

typedef struct turn_spec {
    const char *image; /* fixture path or NULL */
    const char *text;
    int64_t max_tokens;
} turn_spec;

static tsr_status add_turn(tsr_chat *c, const turn_spec *t, tsr_error *err) {
    if (!t->image) {
        tsr_chat_message m = {"user", t->text, NULL, 0};
        return tsr_chat_add(c, &m, NULL, 0, err);
    }
    size_t len = 0;
    uint8_t *png = tsr_test_read(tsr_test_fixture(t->image), &len);
    tsr_chat_part parts[] = {{TSR_CHAT_PART_IMAGE, NULL, NULL}, {TSR_CHAT_PART_TEXT, t->text, NULL}};
    tsr_chat_message m = {"user", NULL, parts, 2};
    tsr_media media = {TSR_MEDIA_IMAGE, png, len, NULL, NULL};
    tsr_status st = png ? tsr_chat_add(c, &m, &media, 1, err) : TSR_ERR_IO;
    free(png);
    return st;
}

static void test_mllama_cross_states(void) {
    char dir[] = "/tmp/tsr_chat_mllama_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char src[1024], path[2048];
    snprintf(src, sizeof src, "%s", tsr_test_fixture("models/mllama/model"));
    DIR *d = opendir(src);
    CHECK(d != NULL);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char from[2048];
        snprintf(from, sizeof from, "%s/%s", src, e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        CHECK(symlink(from, path) == 0);
    }
    if (d) closedir(d);
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(MLLAMA_TEMPLATE, f);
        fclose(f);
    }
    tsr_model *m = NULL;
    tsr_error err = {0};
    CHECK_OK(tsr_model_load(dir, NULL, &m, &err), &err);
    /* An empty reply on turn 2 (max_tokens 0) leaves exactly its prompt in the cache, so that
     * turn 3 extends a cache that holds cross states. */
    static const turn_spec turns[] = {
        {NULL, "Hello there.", 4},
        {"pipeline/media/rgb_97x61.png", "Describe this image.", 0},
        {NULL, "And the colours?", 4},
        {"pipeline/media/large_160x120.png", "Compare it with this one.", 4},
    };
    const size_t n_turns = sizeof turns / sizeof turns[0];
    tsr_session_params sp = tsr_session_params_default();
    sp.n_threads = 2;
    tsr_chat *c = NULL;
    if (m) CHECK_OK(tsr_chat_new(m, &sp, &c, &err), &err);
    char *replies[4] = {0};
    for (size_t k = 0; c && k < n_turns; k++) {
        tsr_generate_params gp = greedy(turns[k].max_tokens);
        tsr_token_ids ids = {0}, want = {0};
        tsr_usage u, uf;
        CHECK_OK(add_turn(c, &turns[k], &err), &err);
        CHECK_OK(tsr_chat_generate(c, &gp, &replies[k], &ids, &u, &err), &err);
        /* The same conversation in a fresh chat. */
        tsr_chat *fresh = NULL;
        CHECK_OK(tsr_chat_new(m, &sp, &fresh, &err), &err);
        for (size_t i = 0; fresh && i <= k; i++) {
            CHECK_OK(add_turn(fresh, &turns[i], &err), &err);
            if (i < k) {
                tsr_chat_message a = {"assistant", replies[i] ? replies[i] : "", NULL, 0};
                CHECK_OK(tsr_chat_add(fresh, &a, NULL, 0, &err), &err);
            }
        }
        if (fresh) CHECK_OK(tsr_chat_generate(fresh, &gp, NULL, &want, &uf, &err), &err);
        int same = want.n == ids.n && (!ids.n || !memcmp(want.ids, ids.ids, ids.n * 4));
        CHECK_MSG(same, "turn %zu: the reply differs from a fresh chat", k + 1);
        if (!same) {
            print_ids("kept", &ids);
            print_ids("fresh", &want);
        }
        printf("  mllama turn %zu: %lld prompt tokens, %lld cached\n", k + 1,
               (long long)u.prompt_tokens, (long long)u.cached_tokens);
        /* A turn that brings an image restarts the cache (the cross states change). */
        if (turns[k].image) CHECK(u.cached_tokens == 0 && u.image_ms > 0);
        if (k == 2) CHECK(u.cached_tokens > 0);
        tsr_token_ids_free(&ids);
        tsr_token_ids_free(&want);
        tsr_chat_free(fresh);
    }
    for (size_t k = 0; k < n_turns; k++) tsr_chat_string_free(replies[k]);
    tsr_chat_free(c);
    tsr_model_free(m);
    d = opendir(dir);
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(dir);
}

int main(void) {
    tsr_error err = {0};
    size_t len = 0;
    char *ref = (char *)tsr_test_read(tsr_test_fixture("assets/qwen2_vl_tiny.json"), &len);
    g_ref = ref ? cJSON_Parse(ref) : NULL;
    free(ref);
    tsr_status st = tsr_model_load(model_dir(), NULL, &g_model, &err);
    if (st || !g_ref) {
        fprintf(stderr, "cannot load %s: %s: %s\n", model_dir(), tsr_status_name(st), err.message);
        cJSON_Delete(g_ref);
        return 1;
    }
    tsr_test_run("text_turn_matches_transformers", test_text_turn_matches_transformers);
    tsr_test_run("kv_reuse_equals_fresh", test_kv_reuse_equals_fresh);
    tsr_test_run("kv_mismatch_equals_fresh", test_kv_mismatch_equals_fresh);
    tsr_test_run("image_turns_match_transformers", test_image_turns_match_transformers);
    tsr_test_run("cancel", test_cancel);
    tsr_test_run("add_errors", test_add_errors);
    tsr_test_run("context_overflow", test_context_overflow);
    tsr_test_run("mllama_cross_states", test_mllama_cross_states);
    tsr_test_run("random_walk", test_random_walk);
    tsr_test_run("alloc_failpoints", test_alloc_failpoints);
    tsr_model_free(g_model);
    cJSON_Delete(g_ref);
    return tsr_test_finish();
}
