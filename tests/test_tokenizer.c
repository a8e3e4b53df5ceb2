/* Tokenizer parity with Hugging Face `tokenizers` (fixtures from tools/refgen/gen_tokenizers.py):
 * encode with and without special tokens, decode both ways, streaming decode; config ids. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "tokenizer_check.h"
#include "tessera.h"

static const char *FAMILIES[] = {"qwen2", "qwen25_minicpmo", "llama3", "tekken",
                                 "llama_spm", "llama_spm_metaspace", "added_flags"};
#define N_FAMILIES (sizeof FAMILIES / sizeof FAMILIES[0])

static cJSON *read_json(const char *path) {
    size_t n = 0;
    uint8_t *buf = tsr_test_read(path, &n);
    if (!buf) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, n);
    free(buf);
    return j;
}

static tsr_tokenizer *load_family(const char *fam) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizer/%s", fam);
    tsr_tokenizer *tok = NULL;
    tsr_error err = {0};
    CHECK_OK(tsr_tokenizer_load(tsr_test_fixture(rel), &tok, &err), &err);
    return tok;
}

static bool same_ids(const tsr_token_ids *got, const cJSON *want) {
    size_t n;
    int32_t *w = json_ids(want, &n);
    bool ok = got->n == n && (n == 0 || !memcmp(got->ids, w, n * sizeof *w));
    free(w);
    return ok;
}

static void parity_family(const char *fam) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizer/%s/cases.json", fam);
    cJSON *cases = read_json(tsr_test_fixture(rel));
    CHECK_MSG(cases != NULL, "%s: cannot read %s", fam, rel);
    tsr_tokenizer *tok = load_family(fam);
    if (!cases || !tok) {
        cJSON_Delete(cases);
        tsr_tokenizer_free(tok);
        return;
    }
    int n_enc = 0, bad_enc = 0, n_dec = 0, bad_dec = 0, budget = 8;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cases, "encode")) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        size_t len = strlen(text);
        tsr_error err = {0};
        bool ok = true;
        for (int special = 0; special < 2; special++) {
            tsr_token_ids ids = {0};
            CHECK_OK(tsr_tokenizer_encode(tok, text, len, special, &ids, &err), &err);
            const cJSON *want = cJSON_GetObjectItem(c, special ? "ids_special" : "ids");
            if (!same_ids(&ids, want)) {
                if (bad_enc < 8) {
                    fprintf(stderr, "%s: encode(special=%d) mismatch for \"%s\"\n", fam, special, text);
                    print_ids("got ", ids.ids, ids.n);
                    size_t wn;
                    int32_t *w = json_ids(want, &wn);
                    print_ids("want", w, wn);
                    free(w);
                }
                ok = false;
            }
            tsr_token_ids_free(&ids);
        }
        size_t n;
        int32_t *ids = json_ids(cJSON_GetObjectItem(c, "ids_special"), &n);
        const char *dec = cJSON_GetObjectItem(c, "decode")->valuestring;
        ok &= check_decode(tok, ids, n, 0, dec, fam, &budget);
        ok &= check_decode(tok, ids, n, 1, cJSON_GetObjectItem(c, "decode_skip")->valuestring, fam, &budget);
        ok &= check_stream(tok, ids, n, NULL, dec, fam, &budget);
        free(ids);
        n_enc++;
        bad_enc += !ok;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cases, "decode")) {
        size_t n;
        int32_t *ids = json_ids(cJSON_GetObjectItem(c, "ids"), &n);
        bool ok = check_decode(tok, ids, n, 0, cJSON_GetObjectItem(c, "text")->valuestring, fam, &budget);
        ok &= check_decode(tok, ids, n, 1, cJSON_GetObjectItem(c, "text_skip")->valuestring, fam, &budget);
        const cJSON *chunks = cJSON_GetObjectItem(c, "stream");
        if (cJSON_IsArray(chunks))
            ok &= check_stream(tok, ids, n, chunks, NULL, fam, &budget);
        free(ids);
        n_dec++;
        bad_dec += !ok;
    }
    CHECK_MSG(bad_enc == 0 && bad_dec == 0, "%s: %d/%d encode cases and %d/%d decode cases differ", fam,
              bad_enc, n_enc, bad_dec, n_dec);
    CHECK(n_enc >= 500);
    printf("  %s: %d encode cases, %d decode cases\n", fam, n_enc, n_dec);
    cJSON_Delete(cases);
    tsr_tokenizer_free(tok);
}

static void test_parity(void) {
    for (size_t i = 0; i < N_FAMILIES; i++) parity_family(FAMILIES[i]);
}

static void test_config_ids(void) {
    struct { const char *fam, *bos, *eos, *pad; } want[] = {
        {"qwen2", NULL, "<|im_end|>", "<|endoftext|>"},
        {"llama3", "<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>"},
        {"tekken", "<s>", "</s>", "<pad>"},
        {"llama_spm", "<s>", "</s>", "<unk>"},
        {"added_flags", "<s>", "</s>", "<plain>"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        tsr_tokenizer *tok = load_family(want[i].fam);
        if (!tok) continue;
        const char *names[3] = {want[i].bos, want[i].eos, want[i].pad};
        int32_t got[3] = {tsr_tokenizer_bos_id(tok), tsr_tokenizer_eos_id(tok), tsr_tokenizer_pad_id(tok)};
        for (int k = 0; k < 3; k++) {
            int32_t id = names[k] ? tsr_tokenizer_token_to_id(tok, names[k], strlen(names[k])) : -1;
            CHECK_MSG(got[k] == id && (!names[k] || id >= 0), "%s: config id %d = %d, want %d (%s)",
                      want[i].fam, k, got[k], id, names[k] ? names[k] : "none");
            if (id >= 0) {
                const char *s = tsr_tokenizer_id_to_token(tok, id);
                CHECK(s && !strcmp(s, names[k]));
            }
        }
        CHECK(tsr_tokenizer_id_to_token(tok, -1) == NULL);
        CHECK(tsr_tokenizer_id_to_token(tok, tsr_tokenizer_vocab_size(tok)) == NULL);
        CHECK(tsr_tokenizer_token_to_id(tok, "no such token \x01", 16) == -1);
        tsr_tokenizer_free(tok);
    }
}

static void test_api_errors(void) {
    tsr_tokenizer *tok = load_family("qwen2");
    if (!tok) return;
    tsr_error err = {0};
    tsr_token_ids ids = {0};
    CHECK(tsr_tokenizer_encode(tok, "\xff", 1, 0, &ids, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "UTF-8") != NULL);
    CHECK(tsr_tokenizer_encode(tok, "a\xe2\x82", 3, 0, &ids, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_tokenizer_encode(tok, NULL, 3, 0, &ids, &err) == TSR_ERR_INVALID_ARG);
    CHECK_OK(tsr_tokenizer_encode(tok, NULL, 0, 0, &ids, &err), &err);
    CHECK(ids.n == 0);
    tsr_token_ids_free(&ids);
    /* NUL bytes are text like any other */
    CHECK_OK(tsr_tokenizer_encode(tok, "a\0b", 3, 0, &ids, &err), &err);
    CHECK(ids.n >= 2);
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(tsr_tokenizer_decode(tok, ids.ids, ids.n, 0, &text, &len, &err), &err);
    CHECK(len == 3 && !memcmp(text, "a\0b", 3));
    tsr_tokenizer_text_free(text);
    tsr_token_ids_free(&ids);
    int32_t bad[] = {1, tsr_tokenizer_vocab_size(tok)};
    CHECK(tsr_tokenizer_decode(tok, bad, 2, 0, &text, &len, &err) == TSR_ERR_INVALID_ARG);
    CHECK(text == NULL && strstr(err.message, "ids[1]") != NULL);
    int32_t neg = -5;
    CHECK(tsr_tokenizer_decode(tok, &neg, 1, 0, &text, &len, &err) == TSR_ERR_INVALID_ARG);
    tsr_detok_stream *s = NULL;
    CHECK_OK(tsr_detok_stream_new(tok, 1, &s, &err), &err);
    const char *t;
    CHECK(tsr_detok_stream_step(s, -1, &t, &len, &err) == TSR_ERR_INVALID_ARG);
    tsr_detok_stream_free(s);
    tsr_detok_stream_free(NULL);
    tsr_tokenizer_free(NULL);
    tsr_token_ids_free(NULL);
    tsr_tokenizer_text_free(NULL);
    tsr_tokenizer_free(tok);
    tsr_tokenizer *none = tok;
    CHECK(tsr_tokenizer_load("/nonexistent/dir", &none, &err) == TSR_ERR_IO);
    CHECK(none == NULL && strstr(err.message, "tokenizer.json") != NULL);
}

/* Streaming byte-level text split inside multi-byte characters never emits partial UTF-8. */
static void test_stream_utf8(void) {
    tsr_tokenizer *tok = load_family("qwen2");
    if (!tok) return;
    const char *text = "日本語 👨‍👩‍👧‍👦 مرحبا \xc3\xa9 done";
    tsr_token_ids ids = {0};
    tsr_error err = {0};
    CHECK_OK(tsr_tokenizer_encode(tok, text, strlen(text), 0, &ids, &err), &err);
    tsr_detok_stream *s = NULL;
    CHECK_OK(tsr_detok_stream_new(tok, 0, &s, &err), &err);
    char all[256] = {0};
    size_t got = 0;
    for (size_t i = 0; s && i < ids.n; i++) {
        const char *t;
        size_t len;
        CHECK_OK(tsr_detok_stream_step(s, ids.ids[i], &t, &len, &err), &err);
        /* every chunk is whole UTF-8 */
        for (size_t k = 0; k < len;) {
            unsigned char c = (unsigned char)t[k];
            size_t w = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            CHECK(k + w <= len);
            k += w;
        }
        if (got + len < sizeof all) memcpy(all + got, t, len);
        got += len;
    }
    CHECK(got == strlen(text) && !memcmp(all, text, got));
    tsr_detok_stream_free(s);
    tsr_token_ids_free(&ids);
    tsr_tokenizer_free(tok);
}

/* A loaded tokenizer is shared by threads encoding at once. */
struct thread_arg {
    const tsr_tokenizer *tok;
    const char *text;
    const tsr_token_ids *want;
    int ok;
};

static int thread_main(void *p) {
    struct thread_arg *a = p;
    a->ok = 1;
    for (int r = 0; r < 20; r++) {
        tsr_token_ids ids = {0};
        tsr_error err = {0};
        if (tsr_tokenizer_encode(a->tok, a->text, strlen(a->text), 1, &ids, &err) != TSR_OK ||
            ids.n != a->want->n || memcmp(ids.ids, a->want->ids, ids.n * sizeof *ids.ids))
            a->ok = 0;
        tsr_token_ids_free(&ids);
    }
    return 0;
}

static void test_threads(void) {
    tsr_tokenizer *tok = load_family("llama3");
    if (!tok) return;
    const char *text = "<|begin_of_text|>Threads share one tokenizer: 日本語, مرحبا, 12345 and emoji 🤖.";
    tsr_token_ids want = {0};
    tsr_error err = {0};
    CHECK_OK(tsr_tokenizer_encode(tok, text, strlen(text), 1, &want, &err), &err);
    thrd_t th[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){tok, text, &want, 0};
        CHECK(thrd_create(&th[i], thread_main, &args[i]) == thrd_success);
    }
    for (int i = 0; i < 4; i++) {
        thrd_join(th[i], NULL);
        CHECK(args[i].ok);
    }
    tsr_token_ids_free(&want);
    tsr_tokenizer_free(tok);
}

int main(void) {
    tsr_test_run("tokenizer_parity", test_parity);
    tsr_test_run("tokenizer_config_ids", test_config_ids);
    tsr_test_run("tokenizer_api_errors", test_api_errors);
    tsr_test_run("tokenizer_stream_utf8", test_stream_utf8);
    tsr_test_run("tokenizer_threads", test_threads);
    return tsr_test_finish();
}
