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

/* chat() (audio_parts) joins consecutive clips of one message into one recording before
 * feature extraction; the placeholders stay per clip. Returns the merged recordings in
 * *merged (n_merged of them); a recording of one clip borrows its samples. */
static tsr_status merge_clips(const tsr_audio *audio, int64_t n, const int64_t *groups,
                              tsr_audio **merged, bool **owned, int64_t *n_merged,
                              tsr_error *err) {
    *merged = tsr__calloc((size_t)n, sizeof **merged);
    *owned = tsr__calloc((size_t)n, sizeof **owned);
    *n_merged = 0;
    if (!*merged || !*owned) return TSR_FAIL(err, TSR_ERR_OOM, "%lld clips", (long long)n);
    for (int64_t i = 0; i < n;) {
        int64_t end = i + 1, total = audio[i].n_samples;
        while (groups && end < n && groups[end] == groups[i]) {
            if (__builtin_add_overflow(total, audio[end].n_samples, &total))
                return TSR_FAIL(err, TSR_ERR_LIMIT, "merged audio is too long");
            end++;
        }
        tsr_audio *m = &(*merged)[(*n_merged)++];
        *m = audio[i];
        if (end - i > 1) {
            size_t bytes;
            if (!tsr__mul_size((size_t)total, sizeof(float), &bytes))
                return TSR_FAIL(err, TSR_ERR_LIMIT, "merged audio is too long");
            float *x = tsr__malloc(bytes);
            if (!x) return TSR_FAIL(err, TSR_ERR_OOM, "%zu bytes of merged audio", bytes);
            int64_t at = 0;
            for (int64_t k = i; k < end; k++) {
                memcpy(x + at, audio[k].samples, (size_t)audio[k].n_samples * sizeof *x);
                at += audio[k].n_samples;
            }
            m->samples = x;
            m->n_samples = total;
            (*owned)[*n_merged - 1] = true;
        }
        i = end;
    }
    return TSR_OK;
}

static void free_merged(tsr_audio *merged, bool *owned, int64_t n) {
    for (int64_t i = 0; merged && owned && i < n; i++)
        if (owned[i]) tsr__free(merged[i].samples);
    tsr__free(merged);
    tsr__free(owned);
}

/* audio_features [pieces, n_mels, f_max] and audio_feature_lens [pieces] of recordings
 * cut into 30 s pieces, zero-padded to the longest piece. */
static tsr_status features(const tsr__minicpmo_state *s, const tsr_audio *rec, int64_t n,
                           tsr_tensor_list *out, tsr_error *err) {
    int64_t pieces = 0, f_max = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t L = rec[i].n_samples;
        pieces += (L + s->n_samples - 1) / s->n_samples;
        int64_t first = L < s->n_samples ? L : s->n_samples;
        int64_t f = (first + s->hop_length - 1) / s->hop_length;
        if (f > f_max) f_max = f;
    }
    tsr_tensor feats = {0}, lens = {0};
    tsr_status st =
        tsr_tensor_alloc(&feats, TSR_DTYPE_F32, 3, (int64_t[]){pieces, s->n_mels, f_max}, err);
    if (!st) st = tsr_tensor_alloc(&lens, TSR_DTYPE_I64, 1, (int64_t[]){pieces}, err);
    int64_t j = 0;
    for (int64_t i = 0; !st && i < n; i++) {
        for (int64_t off = 0; !st && off < rec[i].n_samples; off += s->n_samples, j++) {
            int64_t L = rec[i].n_samples - off < s->n_samples ? rec[i].n_samples - off
                                                              : s->n_samples;
            ((int64_t *)lens.data)[j] = (L + s->hop_length - 1) / s->hop_length;
            st = piece_features(s, rec[i].samples + off, L, f_max,
                                (float *)feats.data + j * s->n_mels * f_max, err);
        }
    }
    if (!st && (st = tsr_tensor_list_add(out, "audio_features", &feats, err)) == TSR_OK)
        st = tsr_tensor_list_add(out, "audio_feature_lens", &lens, err);
    tsr_tensor_free(&feats);
    tsr_tensor_free(&lens);
    return st;
}

tsr_status tsr__minicpmo_process_audio(const void *state, const tsr_audio *audio, int64_t n,
                                       const int64_t *groups, tsr_tensor_list *out,
                                       tsr__replacements *repl, tsr_error *err) {
    const tsr__minicpmo_state *s = state;
    if (!s || !out || !repl || (n > 0 && !audio))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "NULL argument");
    memset(repl, 0, sizeof *repl);
    if (n <= 0) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "no audio (n = %lld)", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        if (audio[i].sample_rate != s->sampling_rate)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                            "clip %lld: the model was trained on %d Hz audio, got %d Hz",
                            (long long)i, (int)s->sampling_rate, (int)audio[i].sample_rate);
        if (audio[i].n_samples < 1 || !audio[i].samples)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "clip %lld is empty", (long long)i);
    }
    tsr_status st = TSR_OK;
    repl->text = tsr__calloc((size_t)n, sizeof *repl->text);
    if (!repl->text) st = TSR_FAIL(err, TSR_ERR_OOM, "replacements");
    else repl->count = n;
    for (int64_t i = 0; !st && i < n; i++)
        st = placeholder(s, audio[i].n_samples, &repl->text[i], err);
    tsr_audio *merged = NULL;
    bool *owned = NULL;
    int64_t n_merged = 0;
    if (!st) st = merge_clips(audio, n, groups, &merged, &owned, &n_merged, err);
    if (!st) st = features(s, merged, n_merged, out, err);
    free_merged(merged, owned, n_merged);
    if (st) tsr__replacements_free(repl);
    return st;
}
