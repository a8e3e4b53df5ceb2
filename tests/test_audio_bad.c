/* Hand-made bad audio: each input must fail (or, where a reader legitimately recovers, succeed)
 * with its own status and message, never crash, abort or leak. WAV files are built here byte
 * by byte; FLAC / Ogg / MP3 come from the fixture clips, cut short at several points. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tessera_internal.h"

/* ---------------------------------------------------------------------------------- */
/* A WAV writer with every header field under the test's control                        */

typedef struct wav_spec {
    uint16_t tag;       /* 1 PCM, 3 float, 2 MS ADPCM, ... */
    uint16_t channels;
    uint32_t rate;
    uint16_t bits;
    uint32_t frames;    /* frames of data actually written */
    uint32_t data_size; /* claimed in the data chunk; 0 = the real size */
    uint32_t riff_size; /* claimed in the RIFF header; 0 = the real size */
    float fill;         /* value of every sample (PCM: scaled) */
    int square;         /* non-zero: the sign of fill flips every 16 samples */
} wav_spec;

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) {
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

static uint8_t *make_wav(const wav_spec *w, size_t *len) {
    const uint32_t bps = w->bits >= 8 ? w->bits / 8u : 1u; /* bytes per sample */
    const uint32_t block = (uint32_t)w->channels * bps;
    const size_t data = (size_t)w->frames * block;
    *len = 44 + data;
    uint8_t *b = calloc(1, *len);
    memcpy(b, "RIFF", 4);
    put32(b + 4, w->riff_size ? w->riff_size : (uint32_t)(*len - 8));
    memcpy(b + 8, "WAVEfmt ", 8);
    put32(b + 16, 16);
    put16(b + 20, w->tag);
    put16(b + 22, w->channels);
    put32(b + 24, w->rate);
    put32(b + 28, w->rate * block);
    put16(b + 32, (uint16_t)block);
    put16(b + 34, w->bits);
    memcpy(b + 36, "data", 4);
    put32(b + 40, w->data_size ? w->data_size : (uint32_t)data);
    for (size_t i = 0; i < data / bps; i++) {
        uint8_t *s = b + 44 + i * bps;
        float v = (w->square && (i / 16) % 2) ? -w->fill : w->fill;
        if (w->tag == 3 && w->bits == 32) memcpy(s, &v, 4);
        else if (w->bits == 16) put16(s, (uint16_t)(int16_t)(v * 32767.0f));
    }
    return b;
}

/* Sun AU: ".snd", data offset 24, data size, encoding, rate, channels (big-endian). */
static uint8_t *make_au(uint32_t encoding, uint32_t rate, uint32_t channels, uint32_t data) {
    uint8_t *b = calloc(1, 24 + data);
    const uint32_t f[6] = {0x2e736e64u, 24, data, encoding, rate, channels};
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 4; j++) b[4 * i + j] = (uint8_t)(f[i] >> (24 - 8 * j));
    for (uint32_t i = 24; i < 24 + data; i++) b[i] = (uint8_t)(i * 7);
    return b;
}

/* Amiga IFF 8SVX: FORM, VHDR (20 bytes), BODY of 1000 signed 8-bit samples at 8 kHz. */
static uint8_t *make_svx(size_t *len) {
    static const uint8_t head[] = {'F', 'O', 'R', 'M', 0, 0, 0x04, 0x0c, '8', 'S', 'V', 'X',
                                   'V', 'H', 'D', 'R', 0, 0, 0, 20, 0, 0, 0x03, 0xe8,
                                   0, 0, 0, 0, 0, 0, 0, 0, 0x1f, 0x40, 1, 0,
                                   0, 1, 0, 0, 'B', 'O', 'D', 'Y', 0, 0, 0x03, 0xe8};
    *len = sizeof head + 1000;
    uint8_t *b = calloc(1, *len);
    memcpy(b, head, sizeof head);
    for (size_t i = sizeof head; i < *len; i++) b[i] = (uint8_t)(i * 13);
    return b;
}

static const wav_spec WAV_OK = {1, 1, 16000, 16, 16000, 0, 0, 0.25f, 0};

/* ---------------------------------------------------------------------------------- */

static uint8_t *read_fixture(const char *rel, size_t *len) {
    uint8_t *b = tsr_test_read(tsr_test_fixture(rel), len);
    CHECK_MSG(b != NULL, "%s", rel);
    return b;
}

typedef struct bad_case {
    const char *name;
    uint8_t *buf; /* owned (malloc) */
    size_t len;
    tsr_audio_decode_params params;
    tsr_status want;
    const char *substr; /* in the message; for TSR_OK: NULL */
    int data_error;     /* the header is fine (tsr_audio_probe succeeds), the samples are not */
} bad_case;

#define MAX_CASES 64
static bad_case g_cases[MAX_CASES];
static int g_n;

static void add(const char *name, uint8_t *buf, size_t len, tsr_status want, const char *substr) {
    if (g_n >= MAX_CASES) return;
    bad_case *c = &g_cases[g_n++];
    c->name = name;
    c->buf = buf;
    c->len = len;
    c->params = tsr_audio_decode_params_default();
    c->want = want;
    c->substr = substr;
    c->data_error = 0;
}

static void last_is_data_error(void) { g_cases[g_n - 1].data_error = 1; }

static uint8_t *dup_prefix(const uint8_t *src, size_t n) {
    uint8_t *b = malloc(n ? n : 1);
    memcpy(b, src, n);
    return b;
}

static uint8_t *wav_with(wav_spec w, size_t *len) { return make_wav(&w, len); }

static void build_cases(void) {
    size_t len;
    uint8_t *b;
    wav_spec w;

    add("empty buffer", malloc(1), 0, TSR_ERR_FORMAT, "empty");
    b = malloc(4096);
    uint32_t s = 12345;
    for (int i = 0; i < 4096; i++) s = s * 1103515245u + 12345u, b[i] = (uint8_t)(s >> 16);
    add("random bytes", b, 4096, TSR_ERR_FORMAT, "not a recognised audio file");
    add("PNG signature", dup_prefix((const uint8_t *)"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16), 16,
        TSR_ERR_FORMAT, "not a recognised audio file");
    add("RIFF/WAVE magic only", dup_prefix((const uint8_t *)"RIFF\x04\0\0\0WAVE", 12), 12,
        TSR_ERR_FORMAT, "libsndfile cannot read it");

    b = make_wav(&WAV_OK, &len);
    add("WAV cut inside fmt", dup_prefix(b, 24), 24, TSR_ERR_FORMAT, "libsndfile cannot read it");
    add("WAV cut after the data header", dup_prefix(b, 44), 44, TSR_ERR_FORMAT,
        "no audio frames");
    last_is_data_error();
    add("WAV cut mid-data (reads what is there)", dup_prefix(b, 44 + 1001), 44 + 1001, TSR_OK,
        NULL);
    add("WAV over max_encoded_bytes", dup_prefix(b, len), len, TSR_ERR_LIMIT,
        "limit is 1000");
    g_cases[g_n - 1].params.limits.max_encoded_bytes = 1000;
    add("WAV longer than max_audio_seconds", dup_prefix(b, len), len, TSR_ERR_LIMIT,
        "max_audio_seconds 0.5");
    g_cases[g_n - 1].params.limits.max_audio_seconds = 0.5;
    free(b);

    w = WAV_OK, w.data_size = 0xfffffff0u, w.riff_size = 0xfffffff8u;
    b = wav_with(w, &len);
    add("WAV data chunk claims 4 GiB", b, len, TSR_OK, NULL);
    w = WAV_OK, w.rate = 0;
    b = wav_with(w, &len);
    add("WAV sample rate 0", b, len, TSR_ERR_FORMAT, "libsndfile cannot read it");
    w = WAV_OK, w.rate = 100;
    b = wav_with(w, &len);
    add("WAV sample rate 100 Hz", b, len, TSR_ERR_UNSUPPORTED, "sample rate 100 Hz");
    w = WAV_OK, w.rate = 3000000000u;
    b = wav_with(w, &len);
    add("WAV sample rate 3 GHz", b, len, TSR_ERR_FORMAT, "libsndfile cannot read it");
    w = WAV_OK, w.rate = 2000000;
    b = wav_with(w, &len);
    add("WAV sample rate 2 MHz", b, len, TSR_ERR_UNSUPPORTED, "sample rate 2000000 Hz");
    w = WAV_OK, w.channels = 0;
    b = wav_with(w, &len);
    add("WAV with 0 channels", b, len, TSR_ERR_FORMAT, "libsndfile cannot read it");
    w = WAV_OK, w.channels = 100, w.frames = 100;
    b = wav_with(w, &len);
    add("WAV with 100 channels", b, len, TSR_ERR_LIMIT, "100 channels, limit is");
    w = WAV_OK, w.channels = 9, w.frames = 100;
    b = wav_with(w, &len);
    add("WAV with 9 channels", b, len, TSR_ERR_LIMIT, "9 channels");
    w = WAV_OK, w.tag = 3, w.bits = 32, w.fill = NAN;
    b = wav_with(w, &len);
    add("float WAV of NaN", b, len, TSR_ERR_FORMAT, "not finite");
    last_is_data_error();
    w = WAV_OK, w.tag = 3, w.bits = 32, w.fill = INFINITY;
    b = wav_with(w, &len);
    add("float WAV of +inf", b, len, TSR_ERR_FORMAT, "sample 0 is not finite");
    last_is_data_error();
    w = WAV_OK, w.tag = 3, w.bits = 32, w.rate = 22050, w.fill = 3.0e38f, w.square = 1;
    b = wav_with(w, &len);
    add("float WAV near FLT_MAX (resampler overflows)", b, len, TSR_ERR_FORMAT,
        "input samples too large");
    last_is_data_error();
    w = WAV_OK, w.tag = 2, w.bits = 4;
    b = wav_with(w, &len);
    add("MS ADPCM WAV without its fmt extension", b, len, TSR_ERR_FORMAT, "Malformed 'fmt '");
    w = WAV_OK, w.bits = 12; /* libsndfile reads 12-bit samples in 16-bit slots, as it should */
    b = wav_with(w, &len);
    add("12-bit PCM WAV", b, len, TSR_OK, NULL);
    b = make_au(23, 8000, 1, 4000); /* G.721 ADPCM: a codec we keep away from input */
    add("AU with G.721 ADPCM", b, 24 + 4000, TSR_ERR_UNSUPPORTED, "encoding '32kbs G721 ADPCM'");
    b = make_au(3, 8000, 2, 4000);
    add("AU 16-bit stereo (accepted container)", b, 24 + 4000, TSR_OK, NULL);
    b = make_svx(&len);
    add("IFF 8SVX (container not accepted)", b, len, TSR_ERR_UNSUPPORTED, "is not accepted");
    w = WAV_OK, w.frames = 0;
    b = wav_with(w, &len);
    add("WAV with no frames", b, len, TSR_ERR_FORMAT, "no audio frames");
    last_is_data_error();

    /* Compressed clips cut short: headers cut -> FORMAT; data cut -> what decodes. */
    static const struct {
        const char *file;
        size_t cuts[4];
        tsr_status want[4];
        const char *substr[4];
    } cut[] = {
        {"audio/clips/stereo_44k_flac.flac", {4, 40, 3000, 100000},
         {TSR_ERR_FORMAT, TSR_ERR_FORMAT, TSR_ERR_FORMAT, TSR_OK},
         {"libsndfile cannot read it", "libsndfile cannot read it", "no audio frames", NULL}},
        /* Cut past the headers, libsndfile cannot find the last page: length unknown, we
         * decode what is there (python-soundfile would try to allocate 2^63 frames). */
        {"audio/clips/stereo_48k_ogg.ogg", {4, 60, 3000, 10000},
         {TSR_ERR_FORMAT, TSR_ERR_FORMAT, TSR_ERR_FORMAT, TSR_OK},
         {"libsndfile cannot read it", "Ogg Vorbis headers are incomplete",
          "Ogg Vorbis headers are incomplete", NULL}},
        {"audio/clips/stereo_44k_mp3.mp3", {3, 200, 2000, 10000},
         {TSR_ERR_FORMAT, TSR_ERR_FORMAT, TSR_OK, TSR_OK},
         {"libsndfile cannot read it", "libsndfile cannot read it", NULL, NULL}},
    };
    static char names[12][64];
    int k = 0;
    for (size_t f = 0; f < sizeof cut / sizeof cut[0]; f++) {
        uint8_t *full = read_fixture(cut[f].file, &len);
        if (!full) continue;
        for (int i = 0; i < 4; i++, k++) {
            size_t n = cut[f].cuts[i] < len ? cut[f].cuts[i] : len - 1;
            snprintf(names[k], sizeof names[k], "%s cut at %zu", strrchr(cut[f].file, '/') + 1, n);
            add(names[k], dup_prefix(full, n), n, cut[f].want[i], cut[f].substr[i]);
            if (cut[f].substr[i] && strstr(cut[f].substr[i], "no audio frames"))
                last_is_data_error();
        }
        free(full);
    }

    /* A flipped byte in the Vorbis setup header: that page fails its CRC and is skipped. */
    uint8_t *ogg = read_fixture("audio/clips/stereo_48k_ogg.ogg", &len);
    if (ogg && len > 1000) {
        ogg[1000] ^= 0x40;
        add("Ogg with a corrupt setup header page", ogg, len, TSR_ERR_FORMAT, "missing page");
    } else {
        free(ogg);
    }

    /* FLAC STREAMINFO claiming 2^36 - 1 samples: over the duration limit from the header. */
    uint8_t *flac = read_fixture("audio/clips/stereo_44k_flac.flac", &len);
    if (flac && len > 26) {
        flac[8 + 13] |= 0x0f; /* total_samples: low 4 bits of byte 13, then bytes 14..17 */
        memset(flac + 8 + 14, 0xff, 4);
        add("FLAC claiming 2^36 samples", flac, len, TSR_ERR_LIMIT, "limit is max_audio_seconds");
    } else {
        free(flac);
    }
}

static void free_cases(void) {
    for (int i = 0; i < g_n; i++) free(g_cases[i].buf);
    g_n = 0;
}

/* Decode and probe every case; the status and message are the expected ones. */
static void test_bad_table(void) {
    build_cases();
    CHECK(g_n >= 30);
    for (int i = 0; i < g_n; i++) {
        const bad_case *c = &g_cases[i];
        tsr_error err = {0};
        tsr_audio a;
        tsr_audio_info info;
        tsr_status st = tsr_audio_decode(c->buf, c->len, &c->params, &a, &info, &err);
        printf("  %-44s %-20s %s\n", c->name, tsr_status_name(st),
               st == TSR_OK ? "" : err.message);
        CHECK_MSG(st == c->want, "%s: got %s, want %s", c->name, tsr_status_name(st),
                  tsr_status_name(c->want));
        if (st != TSR_OK) {
            CHECK(a.samples == NULL && a.n_samples == 0);
            CHECK_MSG(c->substr && strstr(err.message, c->substr), "%s: '%s' lacks '%s'",
                      c->name, err.message, c->substr ? c->substr : "");
            CHECK(!strncmp(err.message, "tsr_audio_decode", 16));
        } else {
            CHECK(a.n_samples > 0 && a.samples != NULL);
            for (int64_t j = 0; j < a.n_samples; j++)
                if (!isfinite(a.samples[j])) {
                    CHECK_MSG(0, "%s: sample %lld not finite", c->name, (long long)j);
                    break;
                }
        }
        tsr_audio_free(&a);
        /* The probe sees the same header problems (not the data ones). */
        tsr_status ps = tsr_audio_probe(c->buf, c->len, &c->params, &info, &err);
        tsr_status want_probe = c->data_error ? TSR_OK : c->want;
        CHECK_MSG(ps == want_probe, "probe %s: %s", c->name, tsr_status_name(ps));
        if (ps == TSR_OK) CHECK(info.channels > 0 && info.sample_rate > 0);
    }
    free_cases();
}

/* Argument errors. */
static void test_bad_args(void) {
    size_t len;
    uint8_t *b = make_wav(&WAV_OK, &len);
    tsr_error err = {0};
    tsr_audio a;
    tsr_audio_info info;
    tsr_audio_decode_params p = tsr_audio_decode_params_default();
    CHECK(tsr_audio_decode(NULL, 10, &p, &a, NULL, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "buf is NULL") != NULL);
    CHECK(tsr_audio_decode(b, len, &p, NULL, NULL, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "out is NULL") != NULL);
    CHECK(tsr_audio_probe(b, len, &p, NULL, &err) == TSR_ERR_INVALID_ARG);
    p.size = 8;
    CHECK(tsr_audio_decode(b, len, &p, &a, NULL, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "params->size") != NULL);
    p = tsr_audio_decode_params_default();
    p.sample_rate = 500;
    CHECK(tsr_audio_decode(b, len, &p, &a, NULL, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "sample_rate 500") != NULL);
    p = tsr_audio_decode_params_default();
    p.limits.max_audio_seconds = -1;
    CHECK(tsr_audio_probe(b, len, &p, &info, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "max_audio_seconds") != NULL);
    p = tsr_audio_decode_params_default();
    p.limits.max_audio_channels = -2;
    CHECK(tsr_audio_probe(b, len, &p, &info, &err) == TSR_ERR_INVALID_ARG);
    /* 0 = no limit for each limit field. */
    p = tsr_audio_decode_params_default();
    p.limits.max_audio_seconds = 0;
    p.limits.max_audio_channels = 0;
    p.limits.max_encoded_bytes = 0;
    CHECK_OK(tsr_audio_decode(b, len, &p, &a, &info, &err), &err);
    CHECK(a.n_samples == 16000 && info.frames == 16000 && !strcmp(info.format, "wav"));
    tsr_audio_free(&a);
    free(b);
}

/* Failing each of our allocations in turn during a decode with resampling gives OOM. */
static void test_alloc_failpoints(void) {
    size_t len;
    uint8_t *b = read_fixture("audio/clips/stereo_44k_flac.flac", &len);
    if (!b) return;
    int ok_at = 0;
    for (long n = 1; n < 100 && !ok_at; n++) {
        tsr_error err = {0};
        tsr_audio a;
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_audio_decode(b, len, NULL, &a, NULL, &err);
        tsr__alloc_failpoint(0);
        if (st == TSR_OK) {
            ok_at = (int)n;
            tsr_audio_free(&a);
        } else {
            CHECK_MSG(st == TSR_ERR_OOM, "failpoint %ld: %s %s", n, tsr_status_name(st),
                      err.message);
            CHECK(a.samples == NULL);
        }
    }
    printf("  decode succeeds once %d allocations are allowed\n", ok_at ? ok_at - 1 : -1);
    CHECK(ok_at > 1);
    free(b);
}

/* An Ogg stream cut after its headers has no known length: probe says -1, decode counts. */
static void test_unknown_length(void) {
    size_t len;
    uint8_t *b = read_fixture("audio/clips/stereo_48k_ogg.ogg", &len);
    if (!b || len < 10000) {
        free(b);
        return;
    }
    tsr_error err = {0};
    tsr_audio_info info;
    CHECK_OK(tsr_audio_probe(b, 10000, NULL, &info, &err), &err);
    CHECK(info.frames == -1 && info.duration_s == -1.0 && info.channels == 2);
    tsr_audio_decode_params p = tsr_audio_decode_params_default();
    p.sample_rate = 0;
    tsr_audio a;
    CHECK_OK(tsr_audio_decode(b, 10000, &p, &a, &info, &err), &err);
    CHECK(info.frames > 0 && info.frames == a.n_samples && info.frames < 96000);
    CHECK(fabs(info.duration_s - (double)info.frames / 48000.0) < 1e-12);
    tsr_audio_free(&a);
    /* ... and the duration limit still applies while decoding. */
    p.limits.max_audio_seconds = 0.01;
    CHECK(tsr_audio_decode(b, 10000, &p, &a, &info, &err) == TSR_ERR_LIMIT);
    CHECK(strstr(err.message, "longer than max_audio_seconds") != NULL);
    free(b);
}

int main(void) {
    tsr_test_run("audio_bad_inputs", test_bad_table);
    tsr_test_run("audio_bad_args", test_bad_args);
    tsr_test_run("audio_unknown_length", test_unknown_length);
    tsr_test_run("audio_alloc_failpoints", test_alloc_failpoints);
    return tsr_test_finish();
}
