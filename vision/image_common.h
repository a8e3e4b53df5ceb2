/*
 * image_common.h - pieces every image processor family shares: the rescale / normalise /
 * resample fields of preprocessor_config.json, "normalise a rectangle of an RGB8 image into
 * a CHW slice", resize-or-borrow, target-size guards and replacement-text building.
 * Internal; not installed.
 */
#ifndef TSR_VISION_IMAGE_COMMON_H
#define TSR_VISION_IMAGE_COMMON_H

#include <cjson/cJSON.h>

#include "family.h"

/* OpenAI CLIP constants (transformers OPENAI_CLIP_MEAN / OPENAI_CLIP_STD). */
extern const double tsr__clip_mean[3];
extern const double tsr__clip_std[3];

/* A resize target whose side or pixel count exceeds these is LIMIT, whatever the config says
 * (the configs of the supported checkpoints stay far below). */
#define TSR__PROC_MAX_SIDE 65536
#define TSR__PROC_MAX_PIXELS ((int64_t)1 << 28)

/* The fields of preprocessor_config.json that every HF image processor honours the same way. */
typedef struct tsr__image_cfg {
    bool do_resize;
    bool do_rescale;
    bool do_normalize;
    bool do_convert_rgb; /* inputs arrive as RGB8 already converted (family.h) */
    double rescale_factor;
    double mean[3], std[3];
    tsr_resample resample;
    /* Per channel and byte value, the float transformers produces (rescale in double then
     * float32, normalise in float32), computed by tsr_image_normalize itself. */
    float lut[3][256];
} tsr__image_cfg;

/* Reads do_resize, resample, do_rescale, rescale_factor, do_normalize, image_mean,
 * image_std and do_convert_rgb (defaults: true, dflt_resample, true, 1/255, true, CLIP, CLIP,
 * true). A value out of range is FORMAT naming ctx and the key; BOX (4) and HAMMING (5)
 * resampling are UNSUPPORTED. */
tsr_status tsr__image_cfg_load(const cJSON *pp, const char *ctx, tsr_resample dflt_resample,
                               tsr__image_cfg *out, tsr_error *err);

/* Writes the rectangle [x, x+w) x [y, y+h) of img (RGB8), rescaled and normalised per cfg,
 * as 3 planes: channel c, row r, column k goes to dst[c*plane_stride + r*row_stride + k].
 * The rectangle must lie inside img (caller's invariant). */
void tsr__image_norm_rect(const tsr_image *img, int32_t x, int32_t y, int32_t w, int32_t h,
                          const tsr__image_cfg *cfg, float *dst, size_t row_stride,
                          size_t plane_stride);

/* *out = src when it already is width x height (Pillow returns a copy then: same pixels),
 * otherwise src resized into *tmp and *out = tmp. *tmp is zeroed first and freed by the
 * caller with tsr_image_free. */
tsr_status tsr__image_resize_or_borrow(const tsr_image *src, int64_t width, int64_t height,
                                       tsr_resample filter, tsr_image *tmp,
                                       const tsr_image **out, tsr_error *err);

/* LIMIT unless 1 <= height, width <= TSR__PROC_MAX_SIDE and height*width <=
 * TSR__PROC_MAX_PIXELS. `what` names the target in the message. */
tsr_status tsr__check_target(int64_t height, int64_t width, const char *what, tsr_error *err);

/* INVALID_ARG unless images[0..n) are n >= 1 non-empty RGB8 images. */
tsr_status tsr__check_rgb_images(const tsr_image *images, int64_t n, tsr_error *err);

/* Sets repl to n empty (NULL) entries; the family fills text[i]. */
tsr_status tsr__replacements_init(tsr__replacements *repl, int64_t n, tsr_error *err);

/* Growable NUL-terminated string for replacement text. */
typedef struct tsr__strbuf {
    char *s;
    size_t len, cap;
} tsr__strbuf;

tsr_status tsr__strbuf_reserve(tsr__strbuf *b, size_t extra, tsr_error *err);
/* Appends `s` count times (reserving once). */
tsr_status tsr__strbuf_repeat(tsr__strbuf *b, const char *s, int64_t count, tsr_error *err);
/* Hands the string over (never NULL on success: "" for an empty buffer) and resets b. */
tsr_status tsr__strbuf_take(tsr__strbuf *b, char **out, tsr_error *err);
void tsr__strbuf_free(tsr__strbuf *b);

/* tsr__json_int for a key that must be present: missing is FORMAT. */
tsr_status tsr__json_int_required(const cJSON *obj, const char *key, int64_t min, int64_t max,
                                  int64_t *out, const char *ctx, tsr_error *err);

#endif
