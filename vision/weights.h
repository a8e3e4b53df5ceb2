/*
 * weights.h - named tensors of a model directory for the vision / audio encoders: the
 * checkpoint's shards (opened by tsr_model_load) looked up by name, shapes checked, every
 * tensor taken at most once, and the tensors an encoder owns (by name prefix) checked for
 * leftovers. Internal; not installed.
 *
 * Matrices stay as stored (F32 / BF16 / F16, mmapped, tsr__wmat); vectors and small tensors
 * that the encoder reads elementwise are F32 (16-bit ones are converted once and owned here).
 */
#ifndef TSR_VISION_WEIGHTS_H
#define TSR_VISION_WEIGHTS_H

#include "tessera_internal.h"
#include "../kernels/cpu/ops.h"

typedef struct tsr__weights tsr__weights;

/* files[n] (borrowed; they must outlive the weights), names[n] the shard file names used in
 * messages. Aliases map name prefixes to the canonical (hub) ones: a tensor stored as
 * "model.visual.blocks.0..." is found as "visual.blocks.0..." after
 * tsr__weights_alias(w, "model.visual.", "visual."). */
tsr_status tsr__weights_new(tsr_safetensors *const *files, const char *const *names, size_t n,
                            tsr__weights **out, tsr_error *err);
void tsr__weights_free(tsr__weights *w);
/* Adds an alias (prefix `stored` is looked up as `canonical`); call before any lookup. */
tsr_status tsr__weights_alias(tsr__weights *w, const char *stored, const char *canonical,
                              tsr_error *err);
/* 1 when a tensor of that (canonical) name exists. */
int tsr__weights_has(const tsr__weights *w, const char *name);
/* 1 when a tensor's canonical name starts with prefix. */
int tsr__weights_has_prefix(const tsr__weights *w, const char *prefix);

/* A weight matrix of `rows` x `cols`: the stored tensor has shape[0] == rows and the product
 * of its other dims == cols (so a conv kernel [out, in, kh, kw] is a matrix out x in*kh*kw).
 * Missing: FORMAT naming it; other shape: SHAPE naming both shapes; other dtype: UNSUPPORTED. */
tsr_status tsr__weights_mat(tsr__weights *w, const char *name, int64_t rows, int64_t cols,
                            tsr__wmat *out, tsr_error *err);
/* An F32 view of a tensor of exactly shape[ndim] (converted and owned when 16-bit). */
tsr_status tsr__weights_f32(tsr__weights *w, const char *name, int32_t ndim,
                            const int64_t *shape, const float **out, tsr_error *err);
/* tsr__weights_f32 of a 1-D tensor of n values. */
tsr_status tsr__weights_vec(tsr__weights *w, const char *name, int64_t n, const float **out,
                            tsr_error *err);
/* printf-style name helpers: the same lookups with a formatted name. */
tsr_status tsr__weights_matf(tsr__weights *w, int64_t rows, int64_t cols, tsr__wmat *out,
                             tsr_error *err, const char *fmt, ...)
    TSR__PRINTF(6, 7);
tsr_status tsr__weights_vecf(tsr__weights *w, int64_t n, const float **out, tsr_error *err,
                             const char *fmt, ...) TSR__PRINTF(5, 6);

/* FORMAT naming the first tensor whose canonical name starts with one of prefixes[n] and
 * that no lookup took (an unexpected tensor of the encoder's part of the checkpoint). */
tsr_status tsr__weights_check_unused(const tsr__weights *w, const char *const *prefixes,
                                     size_t n, const char *what, tsr_error *err);

#endif
