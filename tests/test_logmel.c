/* Whisper log-mel: tsr_logmel on the reference's 16 kHz samples against the log-mel that
 * transformers' WhisperFeatureExtractor (torch path) computed from the same samples
 * (tests/fixtures/audio, tools/refgen/gen_audio.py), plus argument checks. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "tessera_internal.h"

#define MEL_TOL 1e-4

static cJSON *load_manifest(void) {
    size_t len;
    char *text = (char *)tsr_test_read(tsr_test_fixture("audio/manifest.json"), &len);
    cJSON *m = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return m;
}

static int64_t json_int(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* Max |got - expected| where expected is the stored head [n_mels, w] followed by frames
 * equal to `tail` up to `frames` (the generator stores the constant padded tail once). */
static double mel_diff(const tsr_tensor *got, const tsr_tensor *head, const tsr_tensor *tail,
                       int64_t n_mels, int64_t frames) {
    if (got->ndim != 2 || got->shape[0] != n_mels || got->shape[1] != frames) return INFINITY;
    if (head->ndim != 2 || head->shape[0] != n_mels || head->shape[1] > frames) return INFINITY;
    const int64_t w = head->shape[1];
    const float *g = got->data, *h = head->data;
    const float t = tail && tail->data ? ((const float *)tail->data)[0] : NAN;
    double worst = 0.0;
    for (int64_t j = 0; j < n_mels; j++)
        for (int64_t f = 0; f < frames; f++) {
            double e = f < w ? h[j * w + f] : t;
            double d = fabs((double)g[j * frames + f] - e);
            if (!(d <= worst)) worst = d; /* NaN propagates as a failure */
        }
    return worst;
}

/* Every mel variant of every clip, computed from samples_16k. */
static void test_fixture_clips(void) {
    cJSON *man = load_manifest();
    CHECK(man != NULL);
    const cJSON *clips = cJSON_GetObjectItem(man, "clips");
    int n_checked = 0;
    for (const cJSON *c = clips ? clips->child : NULL; c; c = c->next) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        tsr_error err = {0};
        tsr_safetensors *st = NULL;
        char rel[512];
        snprintf(rel, sizeof rel, "audio/%s", cJSON_GetObjectItem(c, "expected")->valuestring);
        CHECK_OK(tsr_test_open_safetensors(tsr_test_fixture(rel), &st, &err), &err);
        if (!st) continue;
        tsr_tensor x;
        CHECK_OK(tsr_safetensors_get(st, "samples_16k", &x, &err), &err);
        for (const cJSON *m = cJSON_GetObjectItem(c, "mel")->child; m; m = m->next) {
            tsr_logmel_params p = tsr_logmel_params_default();
            p.n_mels = (int32_t)json_int(m, "n_mels");
            p.pad_to_samples = json_int(m, "pad_to_samples");
            const int64_t frames = json_int(m, "frames");
            char tail_name[64];
            snprintf(tail_name, sizeof tail_name, "%s_tail", m->string);
            tsr_tensor head, tail = {0}, got;
            CHECK_OK(tsr_safetensors_get(st, m->string, &head, &err), &err);
            int has_tail = tsr_safetensors_get(st, tail_name, &tail, &err) == TSR_OK;
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            CHECK_OK(tsr_logmel(x.data, x.shape[0], &p, &got, &err), &err);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
            double d = mel_diff(&got, &head, has_tail ? &tail : NULL, p.n_mels, frames);
            printf("  %-22s %-14s [%d, %lld] max|diff| %.3g (%.1f ms)\n", name, m->string,
                   (int)p.n_mels, (long long)frames, d, ms);
            CHECK_MSG(d <= MEL_TOL, "%s %s: max abs diff %g", name, m->string, d);
            tsr_tensor_free(&got);
            n_checked++;
        }
        tsr_test_close_safetensors(st);
    }
    CHECK(n_checked >= 40);
    cJSON_Delete(man);
}

/* A 30 s clip's log-mel should take a few tens of milliseconds at most. */
static void test_speed(void) {
    const int64_t n = 480000;
    float *x = malloc(sizeof(float) * n);
    uint32_t s = 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((double)(s >> 8) / 16777216.0 - 0.5) * 0.3f;
    }
    tsr_error err = {0};
    tsr_logmel_params p = tsr_logmel_params_default();
    p.n_mels = 128;
    tsr_tensor out;
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_OK(tsr_logmel(x, n, &p, &out, &err), &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (ms < best) best = ms;
        tsr_tensor_free(&out);
    }
    printf("  30 s of noise, 128 mels: best of 3 %.1f ms\n", best);
    free(x);
}

typedef struct job {
    const float *x;
    int64_t n;
    tsr_tensor out;
    tsr_status st;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    tsr_error err = {0};
    tsr_logmel_params p = tsr_logmel_params_default();
    j->st = tsr_logmel(j->x, j->n, &p, &j->out, &err);
    return NULL;
}

/* Concurrent first calls share one FFTW plan (created under a lock) and agree. */
static void test_threads(void) {
    enum { N = 4 };
    static float x[16000];
    for (int i = 0; i < 16000; i++) x[i] = (float)sin(i * 0.05) * 0.4f;
    job jobs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (job){x, 16000, {0}, TSR_ERR_INTERNAL};
        CHECK(pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        CHECK(jobs[i].st == TSR_OK);
        if (i && jobs[i].st == TSR_OK && jobs[0].st == TSR_OK)
            CHECK(!memcmp(jobs[i].out.data, jobs[0].out.data, tsr_tensor_nbytes(&jobs[0].out)));
    }
    for (int i = 0; i < N; i++) tsr_tensor_free(&jobs[i].out);
}

/* Output shapes: padded to 30 s, truncated, and the unpadded variant. */
static void test_shapes(void) {
    static float x[600000];
    for (int i = 0; i < 600000; i++) x[i] = (float)sin(i * 0.01) * 0.1f;
    tsr_error err = {0};
    tsr_logmel_params p = tsr_logmel_params_default();
    tsr_tensor out;
    CHECK_OK(tsr_logmel(x, 600000, &p, &out, &err), &err); /* truncated to 30 s */
    CHECK(out.shape[0] == 80 && out.shape[1] == 3000);
    tsr_tensor_free(&out);
    CHECK_OK(tsr_logmel(x, 0, &p, &out, &err), &err); /* all padding: floor everywhere */
    CHECK(out.shape[1] == 3000 && ((float *)out.data)[0] == -1.5f);
    tsr_tensor_free(&out);
    p.pad_to_samples = 0;
    CHECK_OK(tsr_logmel(x, 201, &p, &out, &err), &err); /* shortest unpadded input */
    CHECK(out.shape[0] == 80 && out.shape[1] == 1);
    tsr_tensor_free(&out);
    CHECK_OK(tsr_logmel(x, 600000, &p, &out, &err), &err);
    CHECK(out.shape[1] == 3750);
    tsr_tensor_free(&out);
    CHECK_OK(tsr_logmel(x, 1000, NULL, &out, &err), &err); /* NULL params = defaults */
    CHECK(out.shape[0] == 80 && out.shape[1] == 3000);
    tsr_tensor_free(&out);
}

static void expect_fail(const float *x, int64_t n, const tsr_logmel_params *p, int null_out,
                        tsr_status want, const char *substr) {
    tsr_error err = {0};
    tsr_tensor out;
    memset(&out, 0x5a, sizeof out);
    tsr_status st = tsr_logmel(x, n, p, null_out ? NULL : &out, &err);
    CHECK_MSG(st == want, "got %s, want %s (%s)", tsr_status_name(st), tsr_status_name(want),
              err.message);
    CHECK_MSG(strstr(err.message, substr) != NULL, "message '%s' lacks '%s'", err.message,
              substr);
    CHECK_MSG(strncmp(err.message, "tsr_logmel", 10) == 0, "message '%s'", err.message);
    if (!null_out) CHECK(out.data == NULL && out.ndim == 0);
}

static void test_bad_args(void) {
    static float x[1000];
    tsr_logmel_params p = tsr_logmel_params_default();
    p.n_mels = 0;
    expect_fail(x, 1000, &p, 0, TSR_ERR_INVALID_ARG, "n_mels 0");
    p.n_mels = 257;
    expect_fail(x, 1000, &p, 0, TSR_ERR_INVALID_ARG, "n_mels 257");
    p = tsr_logmel_params_default();
    expect_fail(NULL, 1000, &p, 0, TSR_ERR_INVALID_ARG, "samples is NULL");
    expect_fail(x, -1, &p, 0, TSR_ERR_INVALID_ARG, "n_samples -1");
    expect_fail(x, 1000, &p, 1, TSR_ERR_INVALID_ARG, "out is NULL");
    p.pad_to_samples = -5;
    expect_fail(x, 1000, &p, 0, TSR_ERR_INVALID_ARG, "pad_to_samples -5");
    p.pad_to_samples = 200;
    expect_fail(x, 1000, &p, 0, TSR_ERR_INVALID_ARG, "reflect padding");
    p.pad_to_samples = 0;
    expect_fail(x, 200, &p, 0, TSR_ERR_INVALID_ARG, "n_samples 200 is too short");
    expect_fail(x, 0, &p, 0, TSR_ERR_INVALID_ARG, "too short");
    p = tsr_logmel_params_default();
    p.sample_rate = 0;
    expect_fail(x, 1000, &p, 0, TSR_ERR_INVALID_ARG, "sample_rate 0");
    p = tsr_logmel_params_default();
    p.size = 3;
    expect_fail(x, 1000, &p, 0, TSR_ERR_INVALID_ARG, "params->size");
    p = tsr_logmel_params_default();
    static float bad[1000];
    bad[500] = NAN;
    expect_fail(bad, 1000, &p, 0, TSR_ERR_INVALID_ARG, "samples[500] is not finite");
    bad[500] = -INFINITY;
    expect_fail(bad, 1000, &p, 0, TSR_ERR_INVALID_ARG, "samples[500] is not finite");
    p.pad_to_samples = INT64_MAX;
    expect_fail(x, 1000, &p, 0, TSR_ERR_LIMIT, "frames");
}

/* Failing each allocation in turn gives a clean OOM and leaks nothing. */
static void test_alloc_failpoints(void) {
    static float x[4000];
    for (int i = 0; i < 4000; i++) x[i] = (float)i / 4000.0f;
    tsr_logmel_params p = tsr_logmel_params_default();
    tsr_error err = {0};
    tsr_tensor out;
    int ok_at = 0;
    for (long n = 1; n < 50 && !ok_at; n++) {
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_logmel(x, 4000, &p, &out, &err);
        tsr__alloc_failpoint(0);
        if (st == TSR_OK) {
            ok_at = (int)n;
            tsr_tensor_free(&out);
        } else {
            CHECK_MSG(st == TSR_ERR_OOM, "failpoint %ld: %s %s", n, tsr_status_name(st),
                      err.message);
            CHECK(out.data == NULL);
        }
    }
    CHECK(ok_at > 1);
}

int main(void) {
    tsr_test_run("logmel_fixture_clips", test_fixture_clips);
    tsr_test_run("logmel_speed", test_speed);
    tsr_test_run("logmel_threads", test_threads);
    tsr_test_run("logmel_shapes", test_shapes);
    tsr_test_run("logmel_bad_args", test_bad_args);
    tsr_test_run("logmel_alloc_failpoints", test_alloc_failpoints);
    return tsr_test_finish();
}
