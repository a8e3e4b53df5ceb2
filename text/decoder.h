/*
 * decoder.h - the shared text decoder: model layout (runtime/src/model.c fills it) and the
 * session's run state (text/decoder.c). Internal; not installed.
 */
#ifndef TSR_TEXT_DECODER_H
#define TSR_TEXT_DECODER_H

#include "tessera_internal.h"
#include "../kernels/cpu/ops.h"

typedef enum tsr__rope_type {
    TSR__ROPE_DEFAULT = 0,
    TSR__ROPE_LINEAR,
    TSR__ROPE_LLAMA3
} tsr__rope_type;

/* Hyperparameters after config.json defaults are applied. */
typedef struct tsr__decoder_config {
    char model_type[32];
    int32_t dim;           /* hidden_size */
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;
    int32_t ffn_dim;       /* intermediate_size */
    int32_t vocab;         /* rows of lm_head (logits) */
    int32_t n_embed;       /* rows of embed_tokens: vocab, or vocab + 8 for mllama */
    int64_t max_pos;       /* max_position_embeddings */
    float norm_eps;
    int32_t qkv_bias;      /* qwen2, or llama attention_bias */
    int32_t o_bias;        /* llama attention_bias also biases o_proj */
    int32_t tied;          /* tie_word_embeddings */
    int64_t sliding_window; /* 0: none */
    tsr__rope_type rope_type;
    double rope_theta;
    double rope_factor;
    double rope_low_freq_factor, rope_high_freq_factor;
    int64_t rope_orig_max_pos;
    int32_t mrope;            /* Qwen2-VL multimodal RoPE: 3 position rows */
    int32_t mrope_section[3]; /* frequencies (of head_dim/2) taking rows t, h, w; sum head_dim/2 */
    int32_t n_cross;          /* MLlama gated cross-attention layers */
} tsr__decoder_config;

/* One transformer block, row-major, shapes as (rows, cols): vectors are F32, weight matrices
 * (tsr__wmat) are F32, BF16 or F16 as the checkpoint stores them (mmapped, not copied).
 * A cross-attention block (MLlama) has wq..wo, no biases, attending to the session's cross
 * K/V (no RoPE, no KV cache), with q/k RMSNorm over head_dim and tanh gates on the attention
 * and MLP outputs. */
typedef struct tsr__decoder_layer {
    int32_t cross;          /* 1: gated cross-attention block */
    int32_t cross_slot;     /* its index among the cross blocks (session cross K/V) */
    const float *q_norm, *k_norm;       /* (head_dim) cross only */
    const float *attn_gate, *mlp_gate;  /* (1) cross only */
    float attn_gate_tanh, mlp_gate_tanh; /* tanh of the gates, set at load */
    const float *attn_norm; /* (dim) */
    tsr__wmat wq;        /* (n_heads*head_dim, dim) */
    tsr__wmat wk;        /* (n_kv_heads*head_dim, dim) */
    tsr__wmat wv;        /* (n_kv_heads*head_dim, dim) */
    tsr__wmat wo;        /* (dim, n_heads*head_dim) */
    const float *bq, *bk, *bv; /* (rows of wq/wk/wv) or NULL */
    const float *bo;        /* (dim) or NULL */
    const float *ffn_norm;  /* (dim) */
    tsr__wmat w_gate;    /* (ffn_dim, dim) */
    tsr__wmat w_up;      /* (ffn_dim, dim) */
    tsr__wmat w_down;    /* (dim, ffn_dim) */
} tsr__decoder_layer;

struct tsr_model {
    tsr__decoder_config cfg;
    tsr__wmat tok_embed;        /* (n_embed, dim) */
    const float *out_norm;      /* (dim) */
    tsr__wmat lm_head;          /* (vocab, dim); tok_embed when tied */
    tsr__decoder_layer *layers; /* (n_layers) */
    uint8_t *is_cross;          /* (n_layers) cross_attention_layers of an mllama config */
    float *inv_freq;            /* (head_dim/2) RoPE frequencies, scaling applied */
    int32_t *eos;               /* EOS ids (config then generation_config) */
    size_t n_eos;
    tsr_safetensors **files;    /* mmapped shards */
    size_t n_files;
    void **owned;               /* F32 copies of F16/BF16 vectors (norms, biases, gates) */
    size_t n_owned;
    int32_t max_k16;            /* widest K of a 16-bit weight matrix (0: all F32) */
    char **shard_names;         /* (n_files) file names when sharded, else NULL */
    /* Media: the family's encoder (NULL for text-only models or checkpoints without the
     * encoder's tensors), its state and tensors, the processor (NULL without a tokenizer). */
    const struct tsr__encoder_ops *enc_ops;
    void *enc;
    struct tsr__weights *weights;
    tsr_processor *proc;
    uint32_t media_kinds;
    tsr_sampling_params sampling; /* generation_config.json's defaults */
};

const tsr_model *tsr__session_model(const tsr_session *s);
/* The session's worker threads (NULL for a NULL session: the caller's thread only). */
tsr__pool *tsr__session_pool(tsr_session *s);
/* Keeps the first n positions of the KV cache (n <= n_past); the next tokens without explicit
 * position ids take RoPE positions from n on. MLlama cross-attention states are kept. */
tsr_status tsr__session_truncate(tsr_session *s, int64_t n, tsr_error *err);

/* RoPE inverse frequencies as transformers computes them (float32), into inv_freq[head_dim/2]. */
void tsr__rope_inv_freq(const tsr__decoder_config *c, float *inv_freq);

#endif
