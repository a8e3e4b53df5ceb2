/*
 * family.h - the contract between the generic processor pipeline and one model family's
 * media processor (vision/<family>/processor.c, MiniCPM-o's audio side in audio/).
 * Internal; not installed.
 *
 * The pipeline mirrors what a Hugging Face processor does:
 *   1. the chat template renders the prompt (or the caller gives one); the family may rewrite
 *      it (prepare_prompt); each image / audio clip appears in it as the family's placeholder
 *      string (image_placeholder / audio_placeholder), in order;
 *   2. the family turns the decoded media into tensors (pixel_values, image_grid_thw, ...)
 *      and, per item, the exact text that replaces that placeholder occurrence
 *      (e.g. Qwen2-VL: "<|image_pad|>" x N; Pixtral: rows of "[IMG]"... "[IMG_BREAK]" ending
 *      in "[IMG_END]"; MLlama: "<|image|>" unchanged);
 *   3. the pipeline substitutes the replacements, tokenizes, and builds input_ids and
 *      attention_mask;
 *   4. the family's `finish` hook adds what depends on the token ids (MLlama
 *      cross_attention_mask, MiniCPM-o image/audio bounds), if it has one.
 * Output tensor names, shapes and dtypes are the ones the HF processor returns.
 */
#ifndef TSR_VISION_FAMILY_H
#define TSR_VISION_FAMILY_H

#include <cjson/cJSON.h>

#include "tessera_internal.h"

/* Configuration files of a model directory, parsed (any may be NULL when absent). */
typedef struct tsr__model_configs {
    const char *model_dir;
    const cJSON *config;              /* config.json */
    const cJSON *preprocessor_config; /* preprocessor_config.json */
    const cJSON *processor_config;    /* processor_config.json */
    const cJSON *tokenizer_config;    /* tokenizer_config.json */
} tsr__model_configs;

/* Replacement text for each media item, tsr__malloc'd strings, NUL-terminated. */
typedef struct tsr__replacements {
    char **text;
    int64_t count;
} tsr__replacements;

void tsr__replacements_free(tsr__replacements *r);

/* Id of the added token whose content is `content`, from tokenizer_config.json's
 * added_tokens_decoder (as the HF tokenizer's convert_tokens_to_ids sees it); -1 when the
 * file or the token is absent. A malformed entry is FORMAT. */
tsr_status tsr__added_token_id(const tsr__model_configs *cfg, const char *content,
                               int64_t *id /* OUT */, tsr_error *err);


typedef struct tsr__family_ops {
    const char *model_type;        /* config.json "model_type" this entry serves */
    const char *image_placeholder; /* what the chat template emits per image; NULL: none */
    const char *audio_placeholder; /* per audio clip; NULL when the family takes no audio */
    /* How encoded images with alpha become RGB: 0 composites over white (transformers'
     * convert_rgb, most families); 1 drops alpha (Pillow convert("RGB"), MiniCPM-o). */
    int drop_alpha;

    /* Parses and validates the processor configs; invalid values fail here with FORMAT
     * naming the file and key. *state is family-owned, freed by free_state. */
    tsr_status (*load)(const tsr__model_configs *cfg, void **state, tsr_error *err);
    void (*free_state)(void *state);

    /* images: n decoded RGB8 images (channels == 3) in prompt order. Appends the image
     * tensors to out and sets one replacement per image. NULL when no image support. */
    tsr_status (*process_images)(const void *state, const tsr_image *images, int64_t n,
                                 tsr_tensor_list *out, tsr__replacements *repl, tsr_error *err);

    /* audio: n clips of mono float32 at 16 kHz, in prompt order. groups[i] is the index of
     * the chat message clip i belongs to (consecutive clips of one message are one recording
     * to MiniCPM-o's chat()), or NULL when the prompt came without messages. NULL when the
     * family takes no audio. */
    tsr_status (*process_audio)(const void *state, const tsr_audio *audio, int64_t n,
                                const int64_t *groups, tsr_tensor_list *out,
                                tsr__replacements *repl, tsr_error *err);

    /* After tokenization: ids [n_ids] of the (single) prompt. May be NULL. */
    tsr_status (*finish)(const void *state, const int32_t *ids, int64_t n_ids,
                         tsr_tensor_list *out, tsr_error *err);

    /* Before anything else: the family's own rewrite of the prompt text, as its HF processor
     * does it (MLlama moves BOS after leading image tokens). *out is tsr__malloc'd. May be
     * NULL (the prompt is used as given). */
    tsr_status (*prepare_prompt)(const void *state, const char *prompt, char **out,
                                 tsr_error *err);
} tsr__family_ops;

/* The ops serving config.json model_type, or NULL. */
const tsr__family_ops *tsr__family_find(const char *model_type);
/* Writes "qwen2_vl, qwen2_5_vl, ..." (for messages) into buf; returns buf. */
const char *tsr__family_names(char *buf, size_t cap);

/* The registry: every family's ops, defined in its processor.c. */
extern const tsr__family_ops tsr__qwen2_vl_ops;    /* model_type qwen2_vl */
extern const tsr__family_ops tsr__qwen2_5_vl_ops;  /* model_type qwen2_5_vl */
extern const tsr__family_ops tsr__llava_next_ops;  /* llava_next */
extern const tsr__family_ops tsr__mllama_ops;      /* mllama */
extern const tsr__family_ops tsr__minicpmo_ops;    /* minicpmo */
extern const tsr__family_ops tsr__mistral3_ops;    /* mistral3 (Pixtral image processor) */

#endif
