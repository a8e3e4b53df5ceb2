/*
 * clip.h - the CLIP vision transformer (transformers CLIPVisionModel) as LLaVA-NeXT uses it:
 * patch conv without bias, class embedding, learned positions, pre_layrnorm, pre-norm layers
 * (LayerNorm, q/k/v/out_proj with bias, fc1 - hidden_act - fc2), hidden states taken by index.
 * Internal; not installed.
 */
#ifndef TSR_VISION_LLAVA_NEXT_CLIP_H
#define TSR_VISION_LLAVA_NEXT_CLIP_H

#include <cjson/cJSON.h>

#include "../vit.h"

typedef struct tsr__clip {
    int32_t dim, n_heads, head_dim, inter, n_layers, n_channels;
    int32_t image_size, patch, grid; /* grid = image_size / patch patches per side */
    int32_t n_run;                   /* layers run (the deepest hidden state used) */
    float eps;
    tsr__act act;
    tsr__wmat patch_w;          /* (dim, n_channels * patch * patch) */
    const float *cls;           /* (dim) */
    const float *pos;           /* (1 + grid * grid, dim) */
    tsr__norm pre_ln, post_ln;  /* post_layernorm is loaded (it is part of the tower) but the
                                   hidden states LLaVA-NeXT takes come before it */
    tsr__vit_block *layers;     /* (n_layers): LayerNorm, q/k/v/out_proj with bias, fc1 -
                                   hidden_act - fc2 */
} tsr__clip;

/* vc: the vision_config object (NULL: defaults). llava_defaults: the defaults are
 * LlavaNextConfig's CLIP-L/14-336 (a config without vision_config) rather than
 * CLIPVisionConfig's. prefix: "vision_tower.vision_model". Sets n_run = n_layers. */
tsr_status tsr__clip_load(const cJSON *vc, int llava_defaults, tsr__weights *w,
                          const char *prefix, tsr__clip *out, tsr_error *err);
void tsr__clip_free(tsr__clip *c);

/* Tokens per tile: 1 + grid^2. */
int64_t tsr__clip_tokens(const tsr__clip *c);

/* px (n_tiles, n_channels, image_size, image_size) through the tower. The hidden states
 * sel[0..n_sel) (0: embeddings after pre_layrnorm, i: after layer i; each <= c->n_run) are
 * written side by side: out (n_tiles * R, n_sel * dim), R = grid^2 rows per tile without the
 * CLS row (drop_cls) or 1 + grid^2 with it. Runs layers 0 .. max(sel) - 1. */
tsr_status tsr__clip_run(const tsr__clip *c, tsr__pool *pool, const float *px, int64_t n_tiles,
                         const int32_t *sel, int32_t n_sel, int drop_cls, float *out,
                         tsr_error *err);

#endif
