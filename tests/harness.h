/* Minimal test harness: CHECK records a failure and continues; each test binary ends with
 * the line "N passed, N failed" and exits non-zero on any failure. */
#ifndef TSR_TEST_HARNESS_H
#define TSR_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "tessera.h"

extern int tsr_test_failed_checks;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            tsr_test_failed_checks++;                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) {                                                               \
            tsr_test_failed_checks++;                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
        }                                                                            \
    } while (0)

/* errp must point to a tsr_error. */
#define CHECK_OK(expr, errp)                                                          \
    do {                                                                              \
        tsr_status st_ = (expr);                                                      \
        if (st_ != TSR_OK) {                                                          \
            tsr_test_failed_checks++;                                                 \
            fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr, \
                    tsr_status_name(st_), (errp)->message);                           \
        }                                                                             \
    } while (0)

/* Runs fn as a named test case; a case passes when it adds no failed checks. */
void tsr_test_run(const char *name, void (*fn)(void));
/* Marks the current case skipped with a reason (printed), e.g. ../shared absent. */
void tsr_test_skip(const char *fmt, ...);
/* Prints the summary line; returns the process exit code. */
int tsr_test_finish(void);

/* Paths: $TSR_FIXTURES/<rel> and $TSR_SHARED/<rel>; returned in a static rotating buffer. */
const char *tsr_test_fixture(const char *rel);
const char *tsr_test_shared(const char *rel); /* NULL when the shared folder is absent */

/* Replaces the k-th occurrence of tag in prompt with texts[k] (k < n), as the processor
 * pipeline does; malloc'd result, NULL on OOM. */
char *tsr_test_substitute(const char *prompt, const char *tag, char *const *texts, int64_t n);

/* got must equal want in dtype, shape and values: F32 within tol (abs), other dtypes byte for
 * byte. Records a failed check naming ctx and what; returns the max abs F32 difference (0 for
 * other dtypes, INFINITY when shapes differ or got is NULL). */
double tsr_test_compare_tensor(const char *ctx, const char *what, const tsr_tensor *got,
                               const tsr_tensor *want, double tol);

/* Whole file into a malloc'd buffer (caller frees), NUL-terminated; NULL on failure. When
 * path does not exist, reads and decompresses path.gz instead: large reference fixtures are
 * stored gzipped (tools/refgen/compress_fixtures.py). */
uint8_t *tsr_test_read(const char *path, size_t *len);

/* A reference safetensors fixture read with tsr_test_read (so path.gz works) and opened with
 * tsr_safetensors_open_memory; the buffer lives until tsr_test_close_safetensors. */
tsr_status tsr_test_open_safetensors(const char *path, tsr_safetensors **out, tsr_error *err);
void tsr_test_close_safetensors(tsr_safetensors *st);

/* The media of a model-test case: files under pipeline/media, each a file name (an image) or
 * {"kind": "image" | "audio", "file"}. */
#define TSR_TEST_MAX_MEDIA 16
typedef struct tsr_test_media {
    uint8_t *bytes[TSR_TEST_MAX_MEDIA];
    tsr_media items[TSR_TEST_MAX_MEDIA];
    size_t n;
} tsr_test_media;

/* 1 on success; on failure m holds what was read (free it either way). */
int tsr_test_media_load(const cJSON *list, tsr_test_media *m);
void tsr_test_media_free(tsr_test_media *m);

/* The model processor's output for a case: its "prompt" with "add_special_tokens" (true when
 * absent) and its "media". The status of the run (IO when a media file cannot be read). */
tsr_status tsr_test_case_inputs(const tsr_model *model, const cJSON *c, tsr_tensor_list **out,
                                tsr_error *err);

/* Writes the file `from` (read with tsr_test_read, so from.gz works) to `to`; 1 on success. */
int tsr_test_copy_file(const char *from, const char *to);

/* *out = a new tensor of t's dtype and shape[ndim] holding t's bytes as far as they go (the
 * rest zero). 1 on success. */
int tsr_test_tensor_resized(const tsr_tensor *t, int32_t ndim, const int64_t *shape,
                            tsr_tensor *out);

/* Called for each tensor of a checkpoint being rewritten (tsr_test_write_checkpoint): may set
 * *name to another name or to NULL (the tensor is dropped), and may fill *repl (zeroed on
 * entry; an owned tensor written instead of t). Returns 0 on failure. */
typedef int (*tsr_test_edit_fn)(const char **name, const tsr_tensor *t, tsr_tensor *repl,
                                void *user);

/* A copy of the model directory src in dst (created if needed): files[0..n) copied, then
 * model.safetensors written through edit (NULL: unchanged). 1 on success. */
int tsr_test_write_checkpoint(const char *src, const char *dst, const char *const *files,
                              size_t n, tsr_test_edit_fn edit, void *user);
/* Removes what tsr_test_write_checkpoint wrote, and the directory. */
void tsr_test_remove_checkpoint(const char *dir, const char *const *files, size_t n);

/* A copy of list (tensors copied, order kept) with the tensor `name` replaced by a copy of
 * *with, or dropped when with is NULL (appended when the list has no such name). NULL on
 * failure. */
tsr_tensor_list *tsr_test_list_replace(const tsr_tensor_list *list, const char *name,
                                       const tsr_tensor *with);

/* tsr_test_list_replace with `name` reshaped to shape[ndim]: its bytes copied as far as they
 * go (the rest zero), every value set to fill when it is I64 and fill >= 0; shape NULL drops
 * it. */
tsr_tensor_list *tsr_test_list_reshape(const tsr_tensor_list *list, const char *name,
                                       int32_t ndim, const int64_t *shape, int64_t fill);

/* Greedy generation from in on session s (reset first), EOS ignored, as many ids as want
 * (I32 [n]) holds: they must be identical (a failed check naming ctx otherwise; want NULL
 * fails too). Returns 1 when identical. */
int tsr_test_check_greedy(const char *ctx, tsr_session *s, const tsr_decode_input *in,
                          const tsr_tensor *want);

/* tsr_prompt_new(model, s, in) must fail with `want`, give no prompt, and name every string
 * of needles (up to the first NULL) in its message, which is printed. in NULL counts as a
 * failed check. */
void tsr_test_expect_prompt_error(const char *what, const tsr_model *model, tsr_session *s,
                                  const tsr_tensor_list *in, tsr_status want,
                                  const char *const *needles);

#endif
