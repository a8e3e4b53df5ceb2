/* Audio decoding: every fixture clip (tests/fixtures/audio, tools/refgen/gen_audio.py) is
 * probed and decoded to 16 kHz mono, and compared with librosa.load(path, sr=16000); then
 * the whole pipeline (file -> tsr_audio_decode -> tsr_logmel) is compared with the log-mel
 * transformers computed from librosa's samples.
 *
 * Sample tolerance SAMPLE_TOL = 1e-6 abs. The reference resamples with python-soxr's own
 * libsoxr build and decodes with python-soundfile's own libsndfile; we link the system
 * libraries. Measured here: PCM/float WAV, AIFF, FLAC, Opus and MP3 are bit-identical (same
 * libsoxr 0.1.3 code, same float32 split-channel calls, same block sizes); Ogg Vorbis differs
 * by ~2e-7 because the two libvorbis builds round the inverse MDCT differently. 1e-6 also
 * leaves room for libsoxr picking a different SIMD path on another CPU. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tessera_internal.h"

#define SAMPLE_TOL 1e-6
#define MEL_TOL 1e-4

static cJSON *load_manifest(void) {
    size_t len;
    char *text = (char *)tsr_test_read(tsr_test_fixture("audio/manifest.json"), &len);
    cJSON *m = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return m;
}

static const char *json_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int64_t json_int(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

static uint8_t *read_clip(const cJSON *clip, size_t *len) {
    char rel[512];
    snprintf(rel, sizeof rel, "audio/%s", json_str(clip, "file"));
    return tsr_test_read(tsr_test_fixture(rel), len);
}

static tsr_safetensors *open_expected(const cJSON *clip) {
    char rel[512];
    snprintf(rel, sizeof rel, "audio/%s", json_str(clip, "expected"));
    tsr_error err = {0};
    tsr_safetensors *st = NULL;
    CHECK_OK(tsr_test_open_safetensors(tsr_test_fixture(rel), &st, &err), &err);
    return st;
}

/* Max |got - expected| over [n_mels, frames], expected = stored head then its tail value. */
static double mel_diff(const tsr_tensor *got, const tsr_safetensors *st, const char *key,
                       int64_t n_mels, int64_t frames) {
    tsr_error err = {0};
    tsr_tensor head, tail;
    char tail_key[64];
    snprintf(tail_key, sizeof tail_key, "%s_tail", key);
    if (tsr_safetensors_get(st, key, &head, &err) != TSR_OK) return INFINITY;
    float t = tsr_safetensors_get(st, tail_key, &tail, &err) == TSR_OK ? *(float *)tail.data : NAN;
    if (got->ndim != 2 || got->shape[0] != n_mels || got->shape[1] != frames ||
        head.shape[0] != n_mels || head.shape[1] > frames)
        return INFINITY;
    const int64_t w = head.shape[1];
    const float *g = got->data, *h = head.data;
    double worst = 0.0;
    for (int64_t j = 0; j < n_mels; j++)
        for (int64_t f = 0; f < frames; f++) {
            double d = fabs((double)g[j * frames + f] - (f < w ? h[j * w + f] : t));
            if (!(d <= worst)) worst = d;
        }
    return worst;
}

static bool mp3_clip(const cJSON *clip) { return !strcmp(json_str(clip, "format"), "mp3"); }

/* MP3 is decoded when the system libsndfile has it; otherwise it must be UNSUPPORTED. */
static bool skip_unsupported_mp3(const cJSON *clip, tsr_status st, const tsr_error *err) {
    if (!mp3_clip(clip) || st != TSR_ERR_UNSUPPORTED) return false;
    printf("  %s: %s\n", json_str(clip, "name"), err->message);
    CHECK(strstr(err->message, "MP3") != NULL);
    return true;
}

/* Header facts from tsr_audio_probe equal the manifest's (python-soundfile's). */
static void test_probe(void) {
    cJSON *man = load_manifest();
    CHECK(man != NULL);
    int n = 0;
    for (const cJSON *c = man ? cJSON_GetObjectItem(man, "clips")->child : NULL; c; c = c->next) {
        size_t len;
        uint8_t *buf = read_clip(c, &len);
        CHECK(buf != NULL);
        tsr_error err = {0};
        tsr_audio_info info;
        tsr_status st = tsr_audio_probe(buf, len, NULL, &info, &err);
        if (!skip_unsupported_mp3(c, st, &err)) {
            CHECK_OK(st, &err);
            CHECK_MSG(!strcmp(info.format, json_str(c, "format")), "%s: format %s",
                      json_str(c, "name"), info.format);
            CHECK(info.sample_rate == json_int(c, "sample_rate"));
            CHECK(info.channels == json_int(c, "channels"));
            CHECK_MSG(info.frames == json_int(c, "frames"), "%s: %lld frames",
                      json_str(c, "name"), (long long)info.frames);
            CHECK(fabs(info.duration_s - (double)info.frames / info.sample_rate) < 1e-12);
            n++;
        }
        free(buf);
    }
    CHECK(n >= 12);
    cJSON_Delete(man);
}

/* Decode + resample vs samples_16k, then the full pipeline vs mel80 / mel128. */
static void test_decode_and_pipeline(void) {
    cJSON *man = load_manifest();
    CHECK(man != NULL);
    int n = 0;
    for (const cJSON *c = man ? cJSON_GetObjectItem(man, "clips")->child : NULL; c; c = c->next) {
        const char *name = json_str(c, "name");
        size_t len;
        uint8_t *buf = read_clip(c, &len);
        tsr_safetensors *st = open_expected(c);
        tsr_error err = {0};
        tsr_audio audio;
        tsr_audio_info info;
        tsr_status s = tsr_audio_decode(buf, len, NULL, &audio, &info, &err);
        if (skip_unsupported_mp3(c, s, &err) || !st) {
            free(buf);
            tsr_test_close_safetensors(st);
            continue;
        }
        CHECK_OK(s, &err);
        tsr_tensor ref;
        CHECK_OK(tsr_safetensors_get(st, "samples_16k", &ref, &err), &err);
        CHECK(audio.sample_rate == 16000);
        CHECK(info.channels == json_int(c, "channels"));
        CHECK_MSG(audio.n_samples == ref.shape[0], "%s: %lld samples, expected %lld", name,
                  (long long)audio.n_samples, (long long)ref.shape[0]);
        double worst = 0.0;
        int64_t differ = 0;
        for (int64_t i = 0; i < audio.n_samples && i < ref.shape[0]; i++) {
            double d = fabs((double)audio.samples[i] - ((const float *)ref.data)[i]);
            if (d > 0) differ++;
            if (!(d <= worst)) worst = d;
        }
        printf("  %-20s %-5s %6d Hz x%d -> %7lld samples: max|diff| %.3g (%lld differ)",
               name, info.format, (int)info.sample_rate, (int)info.channels,
               (long long)audio.n_samples, worst, (long long)differ);
        CHECK_MSG(worst <= SAMPLE_TOL, "%s: max abs sample diff %g", name, worst);

        /* Pipeline: the log-mel of our own decoded samples vs the reference's. */
        for (int m = 0; m < 2; m++) {
            tsr_logmel_params p = tsr_logmel_params_default();
            p.n_mels = m ? 128 : 80;
            tsr_tensor mel;
            CHECK_OK(tsr_logmel(audio.samples, audio.n_samples, &p, &mel, &err), &err);
            double d = mel_diff(&mel, st, m ? "mel128" : "mel80", p.n_mels, 3000);
            printf(" mel%d %.3g", (int)p.n_mels, d);
            CHECK_MSG(d <= MEL_TOL, "%s mel%d: max abs diff %g", name, (int)p.n_mels, d);
            tsr_tensor_free(&mel);
        }
        printf("\n");
        tsr_audio_free(&audio);
        tsr_test_close_safetensors(st);
        free(buf);
        n++;
    }
    CHECK(n >= 12);
    cJSON_Delete(man);
}

/* sample_rate 0 keeps the file's rate: no resampling, the channel mean only. */
static void test_native_rate(void) {
    cJSON *man = load_manifest();
    for (const cJSON *c = man ? cJSON_GetObjectItem(man, "clips")->child : NULL; c; c = c->next) {
        if (mp3_clip(c)) continue;
        size_t len;
        uint8_t *buf = read_clip(c, &len);
        tsr_error err = {0};
        tsr_audio_decode_params p = tsr_audio_decode_params_default();
        p.sample_rate = 0;
        tsr_audio audio;
        CHECK_OK(tsr_audio_decode(buf, len, &p, &audio, NULL, &err), &err);
        CHECK(audio.sample_rate == json_int(c, "sample_rate"));
        CHECK(audio.n_samples == json_int(c, "frames"));
        if (audio.sample_rate == 16000) { /* then samples_16k is the undecimated mean */
            tsr_safetensors *st = open_expected(c);
            tsr_tensor ref;
            if (st && tsr_safetensors_get(st, "samples_16k", &ref, &err) == TSR_OK)
                CHECK_MSG(ref.shape[0] == audio.n_samples &&
                              !memcmp(ref.data, audio.samples, sizeof(float) * audio.n_samples),
                          "%s differs", json_str(c, "name"));
            tsr_test_close_safetensors(st);
        }
        tsr_audio_free(&audio);
        free(buf);
    }
    cJSON_Delete(man);
}

/* Other target rates give librosa's length, ceil(n * out / in); free(NULL) is harmless. */
static void test_other_rates(void) {
    cJSON *man = load_manifest();
    for (const cJSON *c = man ? cJSON_GetObjectItem(man, "clips")->child : NULL; c; c = c->next) {
        if (strcmp(json_str(c, "name"), "speech_espeak_22k")) continue;
        size_t len;
        uint8_t *buf = read_clip(c, &len);
        const int32_t rates[] = {8000, 24000, 44100, 48000};
        for (int i = 0; i < 4; i++) {
            tsr_error err = {0};
            tsr_audio_decode_params p = tsr_audio_decode_params_default();
            p.sample_rate = rates[i];
            tsr_audio a;
            CHECK_OK(tsr_audio_decode(buf, len, &p, &a, NULL, &err), &err);
            int64_t frames = json_int(c, "frames"), sr = json_int(c, "sample_rate");
            CHECK(a.n_samples == (int64_t)ceil((double)frames * ((double)rates[i] / sr)));
            CHECK(a.sample_rate == rates[i]);
            tsr_audio_free(&a);
        }
        free(buf);
    }
    tsr_audio_free(NULL);
    tsr_audio z = {0};
    tsr_audio_free(&z);
    cJSON_Delete(man);
}

typedef struct job {
    const uint8_t *buf;
    size_t len;
    tsr_audio out;
    tsr_status st;
    tsr_error err;
} job;

static void *decode_job(void *arg) {
    job *j = arg;
    j->st = tsr_audio_decode(j->buf, j->len, NULL, &j->out, NULL, &j->err);
    return NULL;
}

/* Concurrent decodes of different formats (and bad input in between) agree with serial ones. */
static void test_threads(void) {
    static const char *files[] = {"audio/clips/stereo_44k_flac.flac",
                                  "audio/clips/stereo_48k_ogg.ogg",
                                  "audio/clips/speech_espeak_22k.wav",
                                  "audio/clips/stereo_44k_mp3.mp3"};
    enum { N = 8 };
    uint8_t *bufs[4];
    size_t lens[4];
    for (int i = 0; i < 4; i++) bufs[i] = tsr_test_read(tsr_test_fixture(files[i]), &lens[i]);
    job jobs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        /* odd jobs get a cut copy: failing opens run beside good ones */
        jobs[i] = (job){bufs[i % 4], i % 2 ? 50 : lens[i % 4], {0}, TSR_ERR_INTERNAL, {0}};
        CHECK(pthread_create(&th[i], NULL, decode_job, &jobs[i]) == 0);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        if (i % 2) {
            CHECK(jobs[i].st == TSR_ERR_FORMAT);
            continue;
        }
        tsr_error err = {0};
        tsr_audio ref;
        CHECK_OK(tsr_audio_decode(bufs[i % 4], lens[i % 4], NULL, &ref, NULL, &err), &err);
        CHECK(jobs[i].st == TSR_OK && jobs[i].out.n_samples == ref.n_samples &&
              !memcmp(jobs[i].out.samples, ref.samples, sizeof(float) * ref.n_samples));
        tsr_audio_free(&ref);
    }
    for (int i = 0; i < N; i++) tsr_audio_free(&jobs[i].out);
    for (int i = 0; i < 4; i++) free(bufs[i]);
}

/* Decode + resample + 30 s log-mel of the 45 s clip (printed, not asserted). */
static void test_timing(void) {
    size_t blen, len;
    uint8_t *b = tsr_test_read(tsr_test_fixture("audio/clips/stereo_44k_flac.flac"), &blen);
    uint8_t *l = tsr_test_read(tsr_test_fixture("audio/clips/long_45s_16k.flac"), &len);
    if (!b || !l) {
        free(b);
        free(l);
        return;
    }
    struct timespec t0, t1, t2;
    tsr_error err = {0};
    tsr_audio a;
    tsr_tensor mel;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(tsr_audio_decode(b, blen, NULL, &a, NULL, &err), &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    tsr_audio_free(&a);
    CHECK_OK(tsr_audio_decode(l, len, NULL, &a, NULL, &err), &err);
    CHECK_OK(tsr_logmel(a.samples, a.n_samples, NULL, &mel, &err), &err);
    clock_gettime(CLOCK_MONOTONIC, &t2);
    printf("  2 s 44.1 kHz stereo FLAC -> 16 kHz: %.1f ms; 45 s FLAC -> 30 s log-mel: %.1f ms\n",
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
           (t2.tv_sec - t1.tv_sec) * 1e3 + (t2.tv_nsec - t1.tv_nsec) / 1e6);
    tsr_tensor_free(&mel);
    tsr_audio_free(&a);
    free(b);
    free(l);
}

int main(void) {
    tsr_test_run("audio_probe_header_facts", test_probe);
    tsr_test_run("audio_decode_and_pipeline", test_decode_and_pipeline);
    tsr_test_run("audio_native_rate", test_native_rate);
    tsr_test_run("audio_other_rates", test_other_rates);
    tsr_test_run("audio_threads", test_threads);
    tsr_test_run("audio_timing", test_timing);
    return tsr_test_finish();
}
