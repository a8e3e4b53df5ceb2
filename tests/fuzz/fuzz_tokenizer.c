/* libFuzzer target: the tokenizer.json loader and encode/decode/streaming.
 * Input starting with '{' is loaded as a tokenizer.json (and, when it loads, used to encode a
 * fixed text); any other input is encoded with the fixture tokenizers ($TSR_FIXTURES) and its
 * ids decoded and streamed back, and its bytes are also decoded as a list of ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"

static tsr_tokenizer *g_toks[3];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *fx = getenv("TSR_FIXTURES");
    static const char *fams[3] = {"qwen2", "llama_spm", "added_flags"};
    for (int i = 0; fx && i < 3; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer/%s", fx, fams[i]);
        tsr_error err = {0};
        if (tsr_tokenizer_load(path, &g_toks[i], &err) != TSR_OK) g_toks[i] = NULL;
    }
    return 0;
}

static void roundtrip(const tsr_tokenizer *tok, const uint8_t *data, size_t size) {
    tsr_error err = {0};
    tsr_token_ids ids = {0};
    if (tsr_tokenizer_encode(tok, (const char *)data, size, 1, &ids, &err) == TSR_OK) {
        char *text = NULL;
        if (tsr_tokenizer_decode(tok, ids.ids, ids.n, 0, &text, NULL, &err) == TSR_OK)
            tsr_tokenizer_text_free(text);
        tsr_detok_stream *s = NULL;
        if (tsr_detok_stream_new(tok, 1, &s, &err) == TSR_OK) {
            const char *t;
            size_t len;
            for (size_t i = 0; i < ids.n; i++) (void)tsr_detok_stream_step(s, ids.ids[i], &t, &len, &err);
            (void)tsr_detok_stream_flush(s, &t, &len, &err);
            tsr_detok_stream_free(s);
        }
    }
    tsr_token_ids_free(&ids);
    /* the raw bytes as ids (any value; out-of-range ones must fail cleanly) */
    size_t n = size / 4;
    int32_t *raw = malloc((n ? n : 1) * sizeof *raw);
    if (!raw) return;
    memcpy(raw, data, n * 4);
    int32_t vs = tsr_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < n && vs > 0; i++) raw[i] = (int32_t)((uint32_t)raw[i] % (uint32_t)(vs + 2)) - 1;
    char *text = NULL;
    if (tsr_tokenizer_decode(tok, raw, n, 0, &text, NULL, &err) == TSR_OK) tsr_tokenizer_text_free(text);
    free(raw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size && data[0] == '{') {
        tsr_tokenizer *tok = NULL;
        tsr_error err = {0};
        if (tsr_tokenizer_load_memory((const char *)data, size, NULL, 0, NULL, 0, &tok, &err) == TSR_OK) {
            static const char sample[] = "Hello <s> w\xc3\xb6rld 123 \xe6\x97\xa5\xe6\x9c\xac  \n\t x";
            roundtrip(tok, (const uint8_t *)sample, sizeof sample - 1);
            tsr_tokenizer_free(tok);
        }
        return 0;
    }
    for (int i = 0; i < 3; i++)
        if (g_toks[i]) roundtrip(g_toks[i], data, size);
    return 0;
}
