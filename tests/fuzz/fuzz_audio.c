/* libFuzzer target: audio probe + decode (libsndfile, channel mean, libsoxr) and the log-mel
 * of what decodes. Limits are tightened so one input stays fast. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tessera.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tsr_error err = {0};
    tsr_audio_decode_params p = tsr_audio_decode_params_default();
    p.limits.max_encoded_bytes = 4u << 20;
    p.limits.max_audio_seconds = 60.0;
    tsr_audio_info info;
    tsr_status probe = tsr_audio_probe(data, size, &p, &info, &err);
    if (probe == TSR_OK && (info.channels <= 0 || info.sample_rate <= 0)) abort();

    tsr_audio audio;
    if (tsr_audio_decode(data, size, &p, &audio, &info, &err) != TSR_OK) return 0;
    if (audio.n_samples <= 0 || !audio.samples || audio.sample_rate != 16000) abort();
    for (int64_t i = 0; i < audio.n_samples; i++)
        if (!isfinite(audio.samples[i])) abort();
    /* Unpadded log-mel of at most 2 s keeps each run short. */
    tsr_logmel_params lp = tsr_logmel_params_default();
    lp.pad_to_samples = 0;
    int64_t n = audio.n_samples < 32000 ? audio.n_samples : 32000;
    tsr_tensor mel;
    if (n > 200 && tsr_logmel(audio.samples, n, &lp, &mel, &err) == TSR_OK) {
        const float *m = mel.data;
        for (int64_t i = 0; i < tsr_tensor_numel(&mel); i++)
            if (!isfinite(m[i])) abort();
        tsr_tensor_free(&mel);
    } else if (n > 200) {
        abort();
    }
    tsr_audio_free(&audio);
    return 0;
}
