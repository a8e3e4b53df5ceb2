/*
 * minicpmo_encoder.h - MiniCPM-o 2.6's audio side (audio/minicpmo_encoder.c): the Whisper
 * encoder "apm", audio_projection_layer and the average pool, as get_audio_embedding runs
 * them. Used by the family encoder (vision/minicpmo/encoder.c). Internal.
 */
#ifndef TSR_AUDIO_MINICPMO_ENCODER_H
#define TSR_AUDIO_MINICPMO_ENCODER_H

#include "encoder.h"

typedef struct tsr__minicpmo_apm {
    int32_t n_mels, dim, n_heads, n_layers, ffn, max_pos, text_dim, pool_step;
    double chunk_length;          /* audio_chunk_length, seconds (<= 0: full attention) */
    tsr__linear conv1, conv2;     /* (dim, n_mels * 3), (dim, dim * 3) */
    const float *pos;             /* embed_positions (max_pos, dim) */
    tsr__vit_block *layers;       /* (n_layers) */
    tsr__norm norm;               /* layer_norm */
    tsr__act act;                 /* activation_function of the layers */
    tsr__linear proj1, proj2;     /* audio_projection_layer.linear1 / linear2 */
} tsr__minicpmo_apm;

/* config.json audio_config (WhisperConfig defaults where absent), audio_pool_step and
 * audio_chunk_length; weights apm.* and audio_projection_layer.*. */
tsr_status tsr__minicpmo_apm_load(const cJSON *config, tsr__weights *w, int32_t text_dim,
                                  tsr__minicpmo_apm *out, tsr_error *err);
void tsr__minicpmo_apm_free(tsr__minicpmo_apm *a);

/* LLM tokens of one piece of mel_len frames: conv2 halves it, the pool divides by its step. */
int64_t tsr__minicpmo_apm_tokens(const tsr__minicpmo_apm *a, int64_t mel_len);

/* One piece of audio_features: mel (n_mels, L) row-major, its valid length mel_len (1..L);
 * writes tsr__minicpmo_apm_tokens(mel_len) rows of text_dim to out. The keys of the
 * attention are masked as the remote code masks them: key j is hidden when j >= mel_len
 * (the mel length compared with positions after the stride-2 conv, as written) or beyond
 * the query's chunk of audio_chunk_length * 50 positions. */
tsr_status tsr__minicpmo_apm_run(const tsr__minicpmo_apm *a, tsr__pool *pool, const float *mel,
                                 int64_t L, int64_t mel_len, float *out, tsr_error *err);

#endif
