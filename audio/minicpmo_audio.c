/*
 * minicpmo_audio.c - MiniCPM-o 2.6 audio processing (MiniCPMOProcessor.audio_feature_extract
 * with WhisperFeatureExtractor): per clip the chunked <|audio_start|><unk>...<|audio_end|>
 * placeholder, and the log-mel features of each 30 s piece cut to its valid frames and
 * zero-padded to the longest piece: audio_features F32 [pieces, n_mels, F_max],
 * audio_feature_lens I64 [pieces].
 */
#include <string.h>

#include "minicpmo/minicpmo.h"
#include "tessera_json.h"

#define PP_NAME "preprocessor_config.json"

tsr_status tsr__minicpmo_audio_load(const tsr__model_configs *cfg, tsr__minicpmo_state *s,
                                    tsr_error *err) {
    const cJSON *pp = cfg->preprocessor_config, *c = cfg->config;
    int64_t mels, rate, hop, nfft, chunk, pool;
    tsr_status st;
    if ((st = tsr__json_int(pp, "feature_size", 80, 1, 256, &mels, PP_NAME, err)) ||
        (st = tsr__json_int(pp, "sampling_rate", 16000, 1, 1000000, &rate, PP_NAME, err)) ||
        (st = tsr__json_int(pp, "hop_length", 160, 1, 100000, &hop, PP_NAME, err)) ||
        (st = tsr__json_int(pp, "n_fft", 400, 1, 100000, &nfft, PP_NAME, err)) ||
        (st = tsr__json_int(pp, "chunk_length", 30, 1, 3600, &chunk, PP_NAME, err)) ||
        (st = tsr__json_int(c, "audio_pool_step", 2, 1, 1000, &pool, "config.json", err)) ||
        (st = tsr__json_double(c, "audio_chunk_length", 1.0, 0.0, 3600.0,
                               &s->audio_chunk_length, "config.json", err)) ||
        (st = tsr__json_bool(c, "chunk_input", true, &s->chunk_input, "config.json", err)))
        return st;
    if (rate != 16000 || hop != 160 || nfft != 400)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        PP_NAME ": log-mel is implemented for 16 kHz, hop 160, n_fft 400 "
                        "(got %lld, %lld, %lld)",
                        (long long)rate, (long long)hop, (long long)nfft);
    s->n_mels = (int32_t)mels;
    s->sampling_rate = (int32_t)rate;
    s->hop_length = (int32_t)hop;
    s->pool_step = (int32_t)pool;
    s->n_samples = chunk * rate;
    if (s->chunk_input) {
        /* audio_embeds_in_chunk must be positive or the processor divides by zero */
        int64_t fbank = (int64_t)(s->audio_chunk_length * 100), cnn = (fbank - 1) / 2 + 1;
        if (fbank < 1 || cnn < pool)
            return TSR_FAIL(err, TSR_ERR_FORMAT,
                            "config.json: audio_chunk_length %g gives no audio token per chunk "
                            "with audio_pool_step %lld",
                            s->audio_chunk_length, (long long)pool);
    }
    return TSR_OK;
}

static int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* get_audio_placeholder for L samples. */
static tsr_status placeholder(const tsr__minicpmo_state *s, int64_t L, char **text,
                              tsr_error *err) {
    const int64_t pool = s->pool_step;
    int64_t F = (L + s->hop_length - 1) / s->hop_length;
    int64_t C = floordiv(F - 1, 2) + 1;
    int64_t A = floordiv(C - pool, pool) + 1;
    int64_t per = A, chunks = 1;
    if (s->chunk_input) {
        int64_t fbank = (int64_t)(s->audio_chunk_length * 100), cnn = (fbank - 1) / 2 + 1;
        per = (cnn - pool) / pool + 1;
        chunks = floordiv(A + per - 1, per);
    }
    char *b = NULL;
    size_t len = 0, cap = 0;
    tsr_status st = TSR_OK;
    int64_t done = 0;
    for (int64_t k = 0; !st && k < chunks; k++) {
        int64_t unk = per < A - done ? per : A - done;
        st = tsr__minicpmo_append(&b, &len, &cap, "<|audio_start|>", err);
        for (int64_t u = 0; !st && u < unk; u++)
            st = tsr__minicpmo_append(&b, &len, &cap, "<unk>", err);
        if (!st) st = tsr__minicpmo_append(&b, &len, &cap, "<|audio_end|>", err);
        done += unk;
    }
    if (!st && !b) st = tsr__minicpmo_append(&b, &len, &cap, "", err);
    if (st) {
        tsr__free(b);
        return st;
    }
    *text = b;
    return TSR_OK;
}

/* Log-mel of one piece (padded to 30 s), valid frames only, into dst [n_mels][F_max]. */
static tsr_status piece_features(const tsr__minicpmo_state *s, const float *x, int64_t L,
                                 int64_t f_max, float *dst, tsr_error *err) {
    tsr_logmel_params p = tsr_logmel_params_default();
    p.n_mels = s->n_mels;
    p.sample_rate = s->sampling_rate;
    p.pad_to_samples = s->n_samples;
    tsr_tensor mel = {0};
    tsr_status st = tsr_logmel(x, L, &p, &mel, err);
    if (st) return st;
    int64_t frames = mel.shape[1], valid = (L + s->hop_length - 1) / s->hop_length;
    for (int64_t m = 0; m < s->n_mels; m++)
        memcpy(dst + m * f_max, (const float *)mel.data + m * frames, (size_t)valid * sizeof *dst);
    tsr_tensor_free(&mel);
    return TSR_OK;
}

tsr_status tsr__minicpmo_process_audio(const void *state, const tsr_audio *audio, int64_t n,
                                       tsr_tensor_list *out, tsr__replacements *repl,
                                       tsr_error *err) {
    const tsr__minicpmo_state *s = state;
    if (!s || !out || !repl || (n > 0 && !audio))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "NULL argument");
    memset(repl, 0, sizeof *repl);
    if (n <= 0) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "no audio (n = %lld)", (long long)n);
    int64_t pieces = 0, f_max = 0;
    for (int64_t i = 0; i < n; i++) {
        if (audio[i].sample_rate != s->sampling_rate)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                            "clip %lld: the model was trained on %d Hz audio, got %d Hz",
                            (long long)i, (int)s->sampling_rate, (int)audio[i].sample_rate);
        if (audio[i].n_samples < 1 || !audio[i].samples)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "clip %lld is empty", (long long)i);
        int64_t L = audio[i].n_samples, k = (L + s->n_samples - 1) / s->n_samples;
        pieces += k;
        int64_t first = L < s->n_samples ? L : s->n_samples;
        int64_t f = (first + s->hop_length - 1) / s->hop_length;
        if (f > f_max) f_max = f;
    }
    tsr_tensor feats = {0}, lens = {0};
    tsr_status st = TSR_OK;
    repl->text = tsr__calloc((size_t)n, sizeof *repl->text);
    if (!repl->text) st = TSR_FAIL(err, TSR_ERR_OOM, "replacements");
    else repl->count = n;
    if (!st)
        st = tsr_tensor_alloc(&feats, TSR_DTYPE_F32, 3, (int64_t[]){pieces, s->n_mels, f_max},
                              err);
    if (!st) st = tsr_tensor_alloc(&lens, TSR_DTYPE_I64, 1, (int64_t[]){pieces}, err);
    int64_t j = 0;
    for (int64_t i = 0; !st && i < n; i++) {
        st = placeholder(s, audio[i].n_samples, &repl->text[i], err);
        for (int64_t off = 0; !st && off < audio[i].n_samples; off += s->n_samples, j++) {
            int64_t L = audio[i].n_samples - off < s->n_samples ? audio[i].n_samples - off
                                                                : s->n_samples;
            ((int64_t *)lens.data)[j] = (L + s->hop_length - 1) / s->hop_length;
            st = piece_features(s, audio[i].samples + off, L, f_max,
                                (float *)feats.data + j * s->n_mels * f_max, err);
        }
    }
    if (!st && (st = tsr_tensor_list_add(out, "audio_features", &feats, err)) == TSR_OK)
        st = tsr_tensor_list_add(out, "audio_feature_lens", &lens, err);
    tsr_tensor_free(&feats);
    tsr_tensor_free(&lens);
    if (st) tsr__replacements_free(repl);
    return st;
}
