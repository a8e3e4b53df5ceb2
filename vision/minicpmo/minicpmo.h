/*
 * minicpmo.h - MiniCPM-o 2.6 processor state shared by the image side
 * (vision/minicpmo/processor.c) and the audio side (audio/minicpmo_audio.c). Internal.
 */
#ifndef TSR_VISION_MINICPMO_H
#define TSR_VISION_MINICPMO_H

#include "family.h"

#define TSR__MINICPMO_TOKEN_MAX 64

typedef struct tsr__minicpmo_state {
    /* image processor (preprocessor_config.json) */
    int32_t max_slice_nums, scale_resolution, patch_size, query_num;
    bool use_image_id, slice_mode;
    float mean[3], std[3];
    char im_start[TSR__MINICPMO_TOKEN_MAX], im_end[TSR__MINICPMO_TOKEN_MAX];
    char slice_start[TSR__MINICPMO_TOKEN_MAX], slice_end[TSR__MINICPMO_TOKEN_MAX];
    char unk[TSR__MINICPMO_TOKEN_MAX], id_start[TSR__MINICPMO_TOKEN_MAX];
    char id_end[TSR__MINICPMO_TOKEN_MAX];
    /* audio: WhisperFeatureExtractor fields and the processor's chunking (config.json) */
    int32_t n_mels, sampling_rate, hop_length, pool_step;
    int64_t n_samples;       /* chunk_length * sampling_rate: one 30 s piece */
    bool chunk_input;
    double audio_chunk_length; /* seconds per placeholder chunk */
    /* token ids the bounds are found by (-1: absent) */
    int64_t id_im_start, id_im_end, id_slice_start, id_slice_end;
    int64_t id_audio_start, id_audio_end, id_spk_start, id_spk_end;
} tsr__minicpmo_state;

/* Reads the audio fields (preprocessor_config.json feature extractor keys, config.json
 * chunking). Invalid values are FORMAT, unsupported STFT settings UNSUPPORTED. */
tsr_status tsr__minicpmo_audio_load(const tsr__model_configs *cfg, tsr__minicpmo_state *s,
                                    tsr_error *err);

/* process_audio of the family contract: placeholders, audio_features, audio_feature_lens. */
tsr_status tsr__minicpmo_process_audio(const void *state, const tsr_audio *audio, int64_t n,
                                       const int64_t *groups, tsr_tensor_list *out,
                                       tsr__replacements *repl, tsr_error *err);

/* Appends `s` to the growing string *buf (length *len, capacity *cap). */
tsr_status tsr__minicpmo_append(char **buf, size_t *len, size_t *cap, const char *s,
                                tsr_error *err);

#endif
