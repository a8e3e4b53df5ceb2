/*
 * encoder.h - the contract between the generic multimodal prompt (runtime/src/prompt.c) and
 * one family's vision / audio encoder and connector (vision/<family>/encoder.c).
 * Internal; not installed.
 *
 * tsr_model_load opens the checkpoint, loads the text decoder (runtime/src/model.c skips
 * every tensor under the encoder's prefixes) and calls the family's `load` with the same
 * shards; tsr_prompt_new calls `encode` on a processor output. An encoder turns the
 * processor's tensors into what the decoder consumes, appended to `out`:
 *   "embeds"       F32 [rows, text hidden]: every media embedding row, in prompt order;
 *   "embed_spans"  I64 [n, 2]: (start in input_ids, n_tokens) runs, in order, covering the
 *                  rows of "embeds" in order (sum of n_tokens == rows);
 *   "position_ids" I64 [3, n_ids] (Qwen2-VL M-RoPE, get_rope_index), optional;
 *   "cross_attention_states" F32 [n_images * n_tiles, n_patches, text hidden] (MLlama).
 * Shapes handed between stages are checked: a mismatch is SHAPE naming both shapes.
 */
#ifndef TSR_VISION_ENCODER_H
#define TSR_VISION_ENCODER_H

#include "family.h"
#include "vit.h"

typedef struct tsr__encoder_ops {
    const char *model_type;
    /* Canonical tensor-name prefixes the encoder owns (the text loader skips them), NULL
     * terminated; every tensor under them must be taken by load (tsr__weights_check_unused). */
    const char *const *prefixes;
    /* Stored -> canonical prefix pairs ({"model.visual.", "visual.", NULL}), NULL terminated;
     * may be NULL. The canonical names are the hub checkpoints' names. */
    const char *const *aliases;
    /* text_dim: the decoder's hidden size (the connector's output width). */
    tsr_status (*load)(const tsr__model_configs *cfg, tsr__weights *w, int32_t text_dim,
                       void **enc, tsr_error *err);
    void (*free)(void *enc);
    /* inputs: a processor output (input_ids I64 [1, n] and the family's media tensors).
     * image_ms / audio_ms: time spent on each modality (may be left 0). */
    tsr_status (*encode)(const void *enc, tsr__pool *pool, const tsr_tensor_list *inputs,
                         tsr_tensor_list *out, double *image_ms, double *audio_ms,
                         tsr_error *err);
    /* Prefixes of checkpoint parts Tessera does not run (MiniCPM-o's tts.*): neither the
     * text loader nor the encoder reads them. NULL terminated; may be NULL. */
    const char *const *unread;
} tsr__encoder_ops;

/* The encoder of config.json model_type, or NULL (a text-only model). */
const tsr__encoder_ops *tsr__encoder_find(const char *model_type);

extern const tsr__encoder_ops tsr__qwen2_vl_encoder;   /* vision/qwen2_vl/encoder.c */
extern const tsr__encoder_ops tsr__qwen2_5_vl_encoder; /* vision/qwen2_vl/encoder.c */
extern const tsr__encoder_ops tsr__llava_next_encoder; /* vision/llava_next/encoder.c */
extern const tsr__encoder_ops tsr__mllama_encoder;     /* vision/mllama/encoder.c */
extern const tsr__encoder_ops tsr__minicpmo_encoder;   /* vision/minicpmo/encoder.c */
extern const tsr__encoder_ops tsr__mistral3_encoder;   /* vision/mistral3/encoder.c */

/* Helpers for encoders. */

/* The processor's input_ids (I64 [1, n] or [n]) as a flat pointer and count; SHAPE otherwise. */
tsr_status tsr__input_ids(const tsr_tensor_list *inputs, const int64_t **ids, int64_t *n,
                          tsr_error *err);
/* A required F32 / I64 input tensor of the processor output; FORMAT naming it when absent or
 * of another dtype. */
tsr_status tsr__input_get(const tsr_tensor_list *inputs, const char *name, tsr_dtype dtype,
                          const tsr_tensor **out, tsr_error *err);
/* Moves embeds (F32 [rows, dim], owned) into out as "embeds" and adds "embed_spans": the runs
 * of ids equal to token_id (several runs per item are fine). The count of such ids must equal
 * rows: SHAPE naming both otherwise. */
tsr_status tsr__encoded_by_token(tsr_tensor_list *out, const int64_t *ids, int64_t n_ids,
                                 int64_t token_id, tsr_tensor *embeds, tsr_error *err);
/* Milliseconds of a monotonic clock. */
double tsr__now_ms(void);

#endif
