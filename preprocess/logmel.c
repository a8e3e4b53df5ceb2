/*
 * logmel.c - Whisper log-mel spectrogram, as transformers' WhisperFeatureExtractor computes
 * it (torch path, _torch_extract_fbank_features):
 *
 *   x    [Np]        samples truncated / zero-padded to pad_to_samples (or as given)
 *   xp   [Np + 400]  reflect padding of 200 on both sides (edge sample not repeated)
 *   X    [F+1][201]  rfft(xp[160 f .. 160 f + 400) * hann), periodic Hann of 400
 *   P    = |X|^2, last frame dropped -> F = Np / 160 frames
 *   mel  [n_mels][F] = W^T P, W the Slaney mel filters [201][n_mels] (0..8000 Hz)
 *   lg   = log10(max(mel, 1e-10)); lg = max(lg, max(lg) - 8); out = (lg + 4) / 4
 *
 * The FFT, power, filters and log10 run in double (FFTW); the result is rounded to float32
 * at the log10 output and the max / clamp / scale are done in float32, as the reference
 * does them. The reference window is float32 (torch.hann_window), so ours is too.
 */
#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "tessera_internal.h"

#define N_FFT 400
#define HOP 160
#define N_BINS (N_FFT / 2 + 1)
#define PAD (N_FFT / 2)
#define MAX_MELS 256
/* Output frames per call: 10^6 frames = 2.8 h at 16 kHz. */
#define MAX_FRAMES 1000000

tsr_logmel_params tsr_logmel_params_default(void) {
    tsr_logmel_params p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.n_mels = 80;
    p.sample_rate = 16000;
    p.pad_to_samples = 480000;
    return p;
}

/* ---------------------------------------------------------------------------------- */
/* FFTW plan: created once. FFTW's planner is not thread-safe, executing a plan is.      */

static pthread_mutex_t g_plan_lock = PTHREAD_MUTEX_INITIALIZER;
static fftw_plan g_plan; /* r2c of N_FFT doubles, any alignment; never destroyed */

static fftw_plan get_plan(void) {
    pthread_mutex_lock(&g_plan_lock);
    if (!g_plan) {
        double *in = fftw_malloc(sizeof(double) * N_FFT);
        fftw_complex *out = fftw_malloc(sizeof(fftw_complex) * N_BINS);
        if (in && out)
            g_plan = fftw_plan_dft_r2c_1d(N_FFT, in, out, FFTW_ESTIMATE | FFTW_UNALIGNED);
        fftw_free(in);
        fftw_free(out);
    }
    fftw_plan p = g_plan;
    pthread_mutex_unlock(&g_plan_lock);
    return p;
}

/* ---------------------------------------------------------------------------------- */
/* Mel filters (transformers.audio_utils.mel_filter_bank, slaney scale and norm)          */

static double hz_to_mel(double f) {
    if (f < 1000.0) return 3.0 * f / 200.0;
    return 15.0 + log(f / 1000.0) * (27.0 / log(6.4));
}

static double mel_to_hz(double m) {
    if (m < 15.0) return 200.0 * m / 3.0;
    return 1000.0 * exp(log(6.4) / 27.0 * (m - 15.0));
}

/* One triangular filter: weights w[k - lo] for bins lo..hi-1 (the non-zero ones). */
typedef struct mel_filter {
    int lo, hi;
    double w[N_BINS];
} mel_filter;

/* Builds n_mels filters in float64 as transformers does, then rounds each weight to
 * float32 (the torch path multiplies with float32 filters). */
static void build_filters(mel_filter *fb, int n_mels, int sample_rate) {
    double fpts[MAX_MELS + 2];
    const double mel_max = hz_to_mel(8000.0);
    const double step = mel_max / (double)(n_mels + 1); /* np.linspace(0, mel_max, n + 2) */
    for (int i = 0; i < n_mels + 2; i++)
        fpts[i] = mel_to_hz(i == n_mels + 1 ? mel_max : (double)i * step);
    const double bin_step = (double)(sample_rate / 2) / (double)(N_BINS - 1);
    for (int j = 0; j < n_mels; j++) {
        const double enorm = 2.0 / (fpts[j + 2] - fpts[j]);
        fb[j].lo = N_BINS;
        fb[j].hi = 0;
        double w[N_BINS];
        for (int k = 0; k < N_BINS; k++) {
            const double f = k == N_BINS - 1 ? (double)(sample_rate / 2) : (double)k * bin_step;
            const double down = -(fpts[j] - f) / (fpts[j + 1] - fpts[j]);
            const double up = (fpts[j + 2] - f) / (fpts[j + 2] - fpts[j + 1]);
            double v = down < up ? down : up;
            w[k] = (double)(float)((v > 0.0 ? v : 0.0) * enorm);
            if (w[k] != 0.0) {
                if (k < fb[j].lo) fb[j].lo = k;
                fb[j].hi = k + 1;
            }
        }
        if (fb[j].hi <= fb[j].lo) fb[j].lo = fb[j].hi = 0; /* all-zero filter */
        for (int k = fb[j].lo; k < fb[j].hi; k++) fb[j].w[k - fb[j].lo] = w[k];
    }
}

/* ---------------------------------------------------------------------------------- */

/* Sample t of the (truncated/zero-padded) signal of length np seen through the reflect
 * padding; t in [-PAD, np + PAD). `n` real samples exist, the rest of [0, np) is zero. */
static inline double padded_at(const float *x, int64_t n, int64_t np, int64_t t) {
    if (t < 0) t = -t;
    else if (t >= np) t = 2 * (np - 1) - t;
    return t < n ? (double)x[t] : 0.0;
}

tsr_status tsr_logmel(const float *samples, int64_t n_samples, const tsr_logmel_params *params,
                      tsr_tensor *out, tsr_error *err) {
    if (out) memset(out, 0, sizeof *out);
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    tsr_logmel_params defaults = tsr_logmel_params_default();
    const tsr_logmel_params *p = params ? params : &defaults;
    if (p->size != sizeof *p)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                        "params->size is %zu, expected %zu (use tsr_logmel_params_default)",
                        p->size, sizeof *p);
    if (p->n_mels < 1 || p->n_mels > MAX_MELS)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "params->n_mels %d is outside 1..%d",
                        (int)p->n_mels, MAX_MELS);
    if (p->sample_rate < 1000 || p->sample_rate > 768000)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "params->sample_rate %d is outside 1000..768000",
                        (int)p->sample_rate);
    if (p->pad_to_samples < 0)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "params->pad_to_samples %lld is negative",
                        (long long)p->pad_to_samples);
    if (n_samples < 0)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "n_samples %lld is negative",
                        (long long)n_samples);
    if (!samples && n_samples > 0)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "samples is NULL with n_samples %lld",
                        (long long)n_samples);

    /* NaN or inf would poison the global max and every output value. */
    for (int64_t i = 0; i < n_samples; i++)
        if (!isfinite(samples[i]))
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "samples[%lld] is not finite",
                            (long long)i);

    /* np: the length the STFT sees; n: how many of those are real samples. */
    const int64_t np = p->pad_to_samples > 0 ? p->pad_to_samples : n_samples;
    const int64_t n = n_samples < np ? n_samples : np;
    if (np <= PAD)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                        "%s %lld is too short for the reflect padding of %d (needs > %d samples)",
                        p->pad_to_samples > 0 ? "params->pad_to_samples" : "n_samples",
                        (long long)np, PAD, PAD);
    const int64_t frames = np / HOP;
    if (frames > MAX_FRAMES)
        return TSR_FAIL(err, TSR_ERR_LIMIT, "%lld samples give %lld frames, limit is %d",
                        (long long)np, (long long)frames, MAX_FRAMES);

    fftw_plan plan = get_plan();
    if (!plan) return TSR_FAIL(err, TSR_ERR_INTERNAL, "FFTW could not plan a %d-point rfft", N_FFT);

    const int n_mels = p->n_mels;
    mel_filter *fb = tsr__malloc(sizeof(mel_filter) * (size_t)n_mels);
    double *frame = tsr__malloc(sizeof(double) * N_FFT);
    fftw_complex *spec = tsr__malloc(sizeof(fftw_complex) * N_BINS);
    tsr_tensor t;
    memset(&t, 0, sizeof t);
    tsr_status st = TSR_OK;
    if (!fb || !frame || !spec) {
        st = TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate log-mel scratch for %d mels", n_mels);
        goto done;
    }
    const int64_t shape[2] = {n_mels, frames};
    st = tsr_tensor_alloc(&t, TSR_DTYPE_F32, 2, shape, err);
    if (st != TSR_OK) goto done;
    float *lg = t.data; /* [n_mels][frames] */

    build_filters(fb, n_mels, (int)p->sample_rate);
    float window[N_FFT]; /* torch.hann_window(400): 0.5 - 0.5 cos(2 pi n / 400) in float32 */
    const float w_step = (float)(2.0 * M_PI / (double)N_FFT);
    for (int i = 0; i < N_FFT; i++) window[i] = cosf((float)i * w_step) * -0.5f + 0.5f;
    const float floor_lg = (float)log10(1e-10);

    float mx = -INFINITY;
    double power[N_BINS];
    for (int64_t f = 0; f < frames; f++) {
        const int64_t t0 = f * HOP - PAD; /* frame covers t0 .. t0 + N_FFT - 1 */
        /* Frames that see only padding zeros (also through the right reflection) have zero
         * power: skip the FFT. */
        const int64_t t_last = t0 + N_FFT - 1;
        if (t0 >= n && (t_last < np || 2 * (np - 1) - t_last >= n)) {
            for (int j = 0; j < n_mels; j++) lg[(int64_t)j * frames + f] = floor_lg;
            if (floor_lg > mx) mx = floor_lg;
            continue;
        }
        if (t0 >= 0 && t_last < n) {
            for (int i = 0; i < N_FFT; i++) frame[i] = (double)samples[t0 + i] * window[i];
        } else {
            for (int i = 0; i < N_FFT; i++)
                frame[i] = padded_at(samples, n, np, t0 + i) * window[i];
        }
        fftw_execute_dft_r2c(plan, frame, spec);
        for (int k = 0; k < N_BINS; k++)
            power[k] = spec[k][0] * spec[k][0] + spec[k][1] * spec[k][1];
        for (int j = 0; j < n_mels; j++) {
            const mel_filter *m = &fb[j];
            double acc = 0.0;
            for (int k = m->lo; k < m->hi; k++) acc += m->w[k - m->lo] * power[k];
            const float v = (float)log10(acc > 1e-10 ? acc : 1e-10);
            lg[(int64_t)j * frames + f] = v;
            if (v > mx) mx = v;
        }
    }
    const float lo = mx - 8.0f;
    const int64_t total = (int64_t)n_mels * frames;
    for (int64_t i = 0; i < total; i++) {
        float v = lg[i] > lo ? lg[i] : lo;
        lg[i] = (v + 4.0f) / 4.0f;
    }
    *out = t;
    memset(&t, 0, sizeof t);

done:
    tsr_tensor_free(&t);
    tsr__free(fb);
    tsr__free(frame);
    tsr__free(spec);
    return st;
}
