/* Helpers shared by the tokenizer parity tests (fixture ids, decode and streaming checks).
 * The callers count mismatches and fail the case; these print at most *budget of them. */
#ifndef TSR_TEST_TOKENIZER_CHECK_H
#define TSR_TEST_TOKENIZER_CHECK_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int32_t *json_ids(const cJSON *arr, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    size_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) ids[i++] = (int32_t)x->valuedouble;
    return ids;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n && i < 48; i++) fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, n > 48 ? " ...\n" : "\n");
}

/* Reports at most `*budget` mismatches in detail (the first failures say the most). */
static bool check_decode(const tsr_tokenizer *tok, const int32_t *ids, size_t n, int skip,
                         const char *want, const char *ctx, int *budget) {
    char *text = NULL;
    size_t len = 0;
    tsr_error err = {0};
    CHECK_OK(tsr_tokenizer_decode(tok, ids, n, skip, &text, &len, &err), &err);
    bool ok = text && len == strlen(want) && !memcmp(text, want, len);
    if (!ok && (*budget)-- > 0)
        fprintf(stderr, "%s: decode(skip=%d) = \"%s\", want \"%s\"\n", ctx, skip, text ? text : "(null)", want);
    tsr_tokenizer_text_free(text);
    return ok;
}

/* Streams ids one at a time; compares each chunk with `chunks` when given, else the whole
 * streamed text (with the final flush) with `whole`. */
static bool check_stream(const tsr_tokenizer *tok, const int32_t *ids, size_t n, const cJSON *chunks,
                         const char *whole, const char *ctx, int *budget) {
    tsr_detok_stream *s = NULL;
    tsr_error err = {0};
    CHECK_OK(tsr_detok_stream_new(tok, 0, &s, &err), &err);
    if (!s) return false;
    size_t cap = 64, got = 0;
    char *all = malloc(cap);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        const char *t;
        size_t len;
        CHECK_OK(tsr_detok_stream_step(s, ids[i], &t, &len, &err), &err);
        if (chunks) {
            const char *w = cJSON_GetArrayItem(chunks, (int)i)->valuestring;
            if (strlen(w) != len || memcmp(w, t, len)) {
                if ((*budget)-- > 0)
                    fprintf(stderr, "%s: stream step %zu = \"%.*s\", want \"%s\"\n", ctx, i, (int)len, t, w);
                ok = false;
            }
        }
        while (got + len + 1 > cap) all = realloc(all, cap *= 2);
        memcpy(all + got, t, len);
        got += len;
    }
    const char *t;
    size_t len;
    CHECK_OK(tsr_detok_stream_flush(s, &t, &len, &err), &err);
    while (got + len + 1 > cap) all = realloc(all, cap *= 2);
    memcpy(all + got, t, len);
    got += len;
    if (ok && whole && (got != strlen(whole) || memcmp(all, whole, got))) {
        if ((*budget)-- > 0) fprintf(stderr, "%s: streamed \"%.*s\", decode gives \"%s\"\n", ctx, (int)got, all, whole);
        ok = false;
    }
    free(all);
    tsr_detok_stream_free(s);
    return ok;
}

#endif
