#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

int tsr_test_failed_checks;
static int g_passed, g_failed, g_skipped, g_skip_current;

void tsr_test_run(const char *name, void (*fn)(void)) {
    int before = tsr_test_failed_checks;
    g_skip_current = 0;
    fn();
    if (g_skip_current) {
        g_skipped++;
        printf("SKIP %s\n", name);
    } else if (tsr_test_failed_checks == before) {
        g_passed++;
        printf("ok   %s\n", name);
    } else {
        g_failed++;
        printf("FAIL %s (%d failed checks)\n", name, tsr_test_failed_checks - before);
    }
    fflush(stdout);
}

void tsr_test_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("skipped: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    g_skip_current = 1;
}

int tsr_test_finish(void) {
    if (g_skipped)
        printf("%d passed, %d failed, %d skipped\n", g_passed, g_failed, g_skipped);
    else
        printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}

static const char *join(const char *base, const char *rel) {
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", base, rel);
    return b;
}

const char *tsr_test_fixture(const char *rel) {
    const char *base = getenv("TSR_FIXTURES");
    return join(base ? base : "tests/fixtures", rel);
}

const char *tsr_test_shared(const char *rel) {
    const char *base = getenv("TSR_SHARED");
    if (!base) base = "../shared";
    struct stat st;
    if (stat(base, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return join(base, rel);
}

/* path.gz decompressed; NULL when absent, unreadable, corrupt or truncated. */
static uint8_t *read_gz(const char *path, size_t *len) {
    size_t plen = strlen(path);
    char *gz_path = malloc(plen + 4);
    if (!gz_path) return NULL;
    memcpy(gz_path, path, plen);
    memcpy(gz_path + plen, ".gz", 4);
    gzFile gz = gzopen(gz_path, "rb");
    free(gz_path);
    if (!gz) return NULL;
    size_t cap = (size_t)1 << 20, n = 0;
    uint8_t *buf = malloc(cap);
    int ok = buf != NULL;
    while (ok) {
        if (cap - n < 2) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (!bigger) { ok = 0; break; }
            buf = bigger;
            cap *= 2;
        }
        size_t room = cap - n - 1;
        int got = gzread(gz, buf + n, (unsigned)(room > INT_MAX ? INT_MAX : room));
        if (got < 0) ok = 0;
        if (got <= 0) break;
        n += (size_t)got;
    }
    /* gzclose reports Z_BUF_ERROR when the data ended inside a gzip member. */
    if (gzclose(gz) != Z_OK) ok = 0;
    if (!ok) { free(buf); return NULL; }
    buf[n] = 0;
    *len = n;
    return buf;
}

uint8_t *tsr_test_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? read_gz(path, len) : NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return NULL; }
    uint8_t *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) { buf[n] = 0; *len = (size_t)n; }
    return buf;
}

/* Buffers behind the handles of tsr_test_open_safetensors. */
typedef struct open_st {
    tsr_safetensors *st;
    uint8_t *buf;
    struct open_st *next;
} open_st;
static open_st *g_open_st;

tsr_status tsr_test_open_safetensors(const char *path, tsr_safetensors **out, tsr_error *err) {
    tsr_error local = {0};
    if (!err) err = &local;
    if (!out) {
        err->status = TSR_ERR_INVALID_ARG;
        snprintf(err->message, sizeof err->message, "out is NULL");
        return err->status;
    }
    *out = NULL;
    size_t len = 0;
    uint8_t *buf = tsr_test_read(path, &len);
    if (!buf) {
        err->status = TSR_ERR_IO;
        snprintf(err->message, sizeof err->message, "cannot read '%s' (nor decompress '%s.gz')", path,
                 path);
        return err->status;
    }
    open_st *node = malloc(sizeof *node);
    if (!node) {
        free(buf);
        err->status = TSR_ERR_OOM;
        snprintf(err->message, sizeof err->message, "out of memory");
        return err->status;
    }
    tsr_status s = tsr_safetensors_open_memory(buf, len, out, err);
    if (s != TSR_OK) {
        free(node);
        free(buf);
        size_t used = strlen(err->message);
        snprintf(err->message + used, sizeof err->message - used, " (file '%s')", path);
        return s;
    }
    node->st = *out;
    node->buf = buf;
    node->next = g_open_st;
    g_open_st = node;
    return TSR_OK;
}

void tsr_test_close_safetensors(tsr_safetensors *st) {
    if (!st) return;
    tsr_safetensors_close(st);
    for (open_st **p = &g_open_st; *p; p = &(*p)->next) {
        if ((*p)->st != st) continue;
        open_st *node = *p;
        *p = node->next;
        free(node->buf);
        free(node);
        return;
    }
}

char *tsr_test_substitute(const char *prompt, const char *tag, char *const *texts, int64_t n) {
    size_t cap = strlen(prompt) + 1, tl = strlen(tag);
    for (int64_t i = 0; i < n; i++) cap += strlen(texts[i]);
    char *s = malloc(cap), *o = s;
    if (!s) return NULL;
    int64_t k = 0;
    for (const char *p = prompt; *p;) {
        if (k < n && tl && !strncmp(p, tag, tl)) {
            size_t len = strlen(texts[k]);
            memcpy(o, texts[k++], len);
            o += len;
            p += tl;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return s;
}

double tsr_test_compare_tensor(const char *ctx, const char *what, const tsr_tensor *got,
                               const tsr_tensor *want, double tol) {
    CHECK_MSG(got != NULL, "%s: %s missing", ctx, what);
    if (!got) return INFINITY;
    int same = got->dtype == want->dtype && got->ndim == want->ndim;
    for (int d = 0; same && d < got->ndim; d++) same = got->shape[d] == want->shape[d];
    CHECK_MSG(same, "%s: %s dtype/shape differ", ctx, what);
    if (!same) return INFINITY;
    if (got->dtype != TSR_DTYPE_F32) {
        CHECK_MSG(!memcmp(got->data, want->data, tsr_tensor_nbytes(got)), "%s: %s differs", ctx,
                  what);
        return 0;
    }
    double mx = 0;
    int64_t n = tsr_tensor_numel(got);
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, fabs((double)((const float *)got->data)[i] -
                           ((const float *)want->data)[i]));
    CHECK_MSG(mx <= tol, "%s: %s max abs diff %g", ctx, what, mx);
    return mx;
}

int tsr_test_copy_file(const char *from, const char *to) {
    size_t len = 0;
    uint8_t *b = tsr_test_read(from, &len);
    if (!b) return 0;
    FILE *f = fopen(to, "wb");
    int ok = f && fwrite(b, 1, len, f) == len;
    if (f && fclose(f)) ok = 0;
    free(b);
    return ok;
}

static int list_add_copy(tsr_tensor_list *out, const char *name, const tsr_tensor *t) {
    tsr_error err = {0};
    tsr_tensor c;
    if (tsr_tensor_alloc(&c, t->dtype, t->ndim, t->shape, &err)) return 0;
    memcpy(c.data, t->data, tsr_tensor_nbytes(t));
    if (tsr_tensor_list_add(out, name, &c, &err)) {
        tsr_tensor_free(&c);
        return 0;
    }
    return 1;
}

tsr_tensor_list *tsr_test_list_replace(const tsr_tensor_list *list, const char *name,
                                       const tsr_tensor *with) {
    tsr_error err = {0};
    tsr_tensor_list *out = NULL;
    if (tsr_tensor_list_new(&out, &err)) return NULL;
    int ok = 1, seen = 0;
    for (int64_t i = 0; ok && i < tsr_tensor_list_count(list); i++) {
        const char *nm = tsr_tensor_list_name(list, i);
        const tsr_tensor *t = tsr_tensor_list_at(list, i);
        if (!strcmp(nm, name)) {
            seen = 1;
            if (!with) continue;
            t = with;
        }
        ok = list_add_copy(out, nm, t);
    }
    if (ok && !seen && with) ok = list_add_copy(out, name, with);
    if (!ok) {
        tsr_tensor_list_free(out);
        return NULL;
    }
    return out;
}

int tsr_test_tensor_resized(const tsr_tensor *t, int32_t ndim, const int64_t *shape,
                            tsr_tensor *out) {
    tsr_error err = {0};
    if (tsr_tensor_alloc(out, t->dtype, ndim, shape, &err)) return 0;
    size_t a = tsr_tensor_nbytes(out), b = tsr_tensor_nbytes(t);
    memcpy(out->data, t->data, a < b ? a : b);
    return 1;
}

tsr_tensor_list *tsr_test_list_reshape(const tsr_tensor_list *list, const char *name,
                                       int32_t ndim, const int64_t *shape, int64_t fill) {
    const tsr_tensor *t = tsr_tensor_list_get(list, name);
    if (!shape || !t) return tsr_test_list_replace(list, name, NULL);
    tsr_tensor c;
    if (!tsr_test_tensor_resized(t, ndim, shape, &c)) return NULL;
    if (fill >= 0 && c.dtype == TSR_DTYPE_I64)
        for (int64_t k = 0; k < tsr_tensor_numel(&c); k++) ((int64_t *)c.data)[k] = fill;
    tsr_tensor_list *out = tsr_test_list_replace(list, name, &c);
    tsr_tensor_free(&c);
    return out;
}

void tsr_test_expect_prompt_error(const char *what, const tsr_model *model, tsr_session *s,
                                  const tsr_tensor_list *in, tsr_status want,
                                  const char *const *needles) {
    tsr_error err = {0};
    tsr_prompt *p = NULL;
    tsr_status st = in ? tsr_prompt_new(model, s, in, &p, &err) : TSR_ERR_INTERNAL;
    CHECK_MSG(in != NULL, "%s: could not build the input", what);
    CHECK_MSG(st == want && !p, "%s: %s (%s), expected %s", what, tsr_status_name(st),
              err.message, tsr_status_name(want));
    for (const char *const *n = needles; n && *n; n++)
        CHECK_MSG(strstr(err.message, *n) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
                  err.message, *n);
    printf("  %s: %s: %s\n", what, tsr_status_name(st), err.message);
    tsr_prompt_free(p);
}

int tsr_test_write_checkpoint(const char *src, const char *dst, const char *const *files,
                              size_t n, tsr_test_edit_fn edit, void *user) {
    char from[1024], to[1024];
    mkdir(dst, 0700);
    for (size_t i = 0; i < n; i++) {
        snprintf(from, sizeof from, "%s/%s", src, files[i]);
        snprintf(to, sizeof to, "%s/%s", dst, files[i]);
        if (!tsr_test_copy_file(from, to)) return 0;
    }
    tsr_error err = {0};
    tsr_safetensors *st = NULL;
    snprintf(from, sizeof from, "%s/model.safetensors", src);
    if (tsr_safetensors_open_file(from, &st, &err)) return 0;
    int64_t count = tsr_safetensors_count(st), k = 0;
    char **names = calloc((size_t)count + 1, sizeof *names);
    tsr_tensor *ts = calloc((size_t)count + 1, sizeof *ts);
    int ok = names && ts;
    for (int64_t i = 0; ok && i < count; i++) {
        const char *name = tsr_safetensors_name(st, i);
        tsr_tensor t;
        if (tsr_safetensors_get(st, name, &t, &err)) {
            ok = 0;
            break;
        }
        memset(&ts[k], 0, sizeof ts[k]);
        if (edit && !edit(&name, &t, &ts[k], user)) ok = 0;
        if (!ok || !name) {
            tsr_tensor_free(&ts[k]);
            continue;
        }
        if (!ts[k].data) {
            ts[k] = t;
            ts[k].owner = 0;
        }
        names[k] = strdup(name);
        ok = names[k] != NULL;
        k++;
    }
    snprintf(to, sizeof to, "%s/model.safetensors", dst);
    if (ok)
        ok = tsr_safetensors_write_file(to, k, (const char *const *)names, ts, 0, NULL, NULL,
                                        &err) == TSR_OK;
    for (int64_t i = 0; names && ts && i < k; i++) {
        free(names[i]);
        tsr_tensor_free(&ts[i]);
    }
    free(names);
    free(ts);
    tsr_safetensors_close(st);
    return ok;
}

void tsr_test_remove_checkpoint(const char *dir, const char *const *files, size_t n) {
    char p[1024];
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    rmdir(dir);
}

int tsr_test_check_greedy(const char *ctx, tsr_session *s, const tsr_decode_input *in,
                          const tsr_tensor *want) {
    CHECK_MSG(want && want->dtype == TSR_DTYPE_I32 && want->ndim == 1,
              "%s: no reference greedy ids", ctx);
    if (!want || want->dtype != TSR_DTYPE_I32 || want->ndim != 1) return 0;
    tsr_session_reset(s);
    tsr_generate_params gp = tsr_generate_params_default();
    gp.sampling.temperature = 0.0f;
    gp.max_tokens = want->shape[0];
    gp.ignore_eos = 1;
    tsr_token_ids ids = {0};
    tsr_error err = {0};
    tsr_status st = tsr_session_generate(s, in, &gp, &ids, NULL, &err);
    CHECK_MSG(st == TSR_OK, "%s: generate: %s: %s", ctx, tsr_status_name(st), err.message);
    int same = !st && ids.n == (size_t)want->shape[0];
    const int32_t *w = want->data;
    for (size_t i = 0; same && i < ids.n; i++) same = ids.ids[i] == w[i];
    CHECK_MSG(st || same, "%s: greedy ids differ (%zu generated)", ctx, ids.n);
    tsr_token_ids_free(&ids);
    return same;
}

int tsr_test_media_load(const cJSON *list, tsr_test_media *m) {
    memset(m, 0, sizeof *m);
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        const cJSON *kind = cJSON_IsObject(it) ? cJSON_GetObjectItem(it, "kind") : NULL;
        const cJSON *file = cJSON_IsObject(it) ? cJSON_GetObjectItem(it, "file") : it;
        if (m->n == TSR_TEST_MAX_MEDIA || !cJSON_IsString(file)) return 0;
        char rel[512];
        snprintf(rel, sizeof rel, "pipeline/media/%s", file->valuestring);
        size_t len = 0;
        uint8_t *b = tsr_test_read(tsr_test_fixture(rel), &len);
        if (!b) return 0;
        int audio = cJSON_IsString(kind) && !strcmp(kind->valuestring, "audio");
        m->bytes[m->n] = b;
        m->items[m->n] = (tsr_media){.kind = audio ? TSR_MEDIA_AUDIO : TSR_MEDIA_IMAGE,
                                     .data = b, .len = len};
        m->n++;
    }
    return 1;
}

void tsr_test_media_free(tsr_test_media *m) {
    for (size_t i = 0; i < m->n; i++) free(m->bytes[i]);
    m->n = 0;
}

tsr_status tsr_test_case_inputs(const tsr_model *model, const cJSON *c, tsr_tensor_list **out,
                                tsr_error *err) {
    *out = NULL;
    const cJSON *prompt = cJSON_GetObjectItem(c, "prompt");
    const cJSON *add = cJSON_GetObjectItem(c, "add_special_tokens");
    tsr_test_media m;
    tsr_status st = TSR_OK;
    if (!tsr_test_media_load(cJSON_GetObjectItem(c, "media"), &m) || !cJSON_IsString(prompt)) {
        snprintf(err->message, sizeof err->message, "a media file or the prompt is missing");
        st = err->status = TSR_ERR_IO;
    } else {
        st = tsr_processor_run_prompt(tsr_model_processor(model), prompt->valuestring,
                                      !add || cJSON_IsTrue(add), m.items, m.n, out, err);
    }
    tsr_test_media_free(&m);
    return st;
}
