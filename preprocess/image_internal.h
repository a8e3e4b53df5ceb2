/*
 * image_internal.h - pieces shared by the image decoders (png.c, jpeg.c, exif.c) and the
 * entry points in image_decode.c. Not installed.
 */
#ifndef TSR_IMAGE_INTERNAL_H
#define TSR_IMAGE_INTERNAL_H

#include "tessera_internal.h"

/* Header facts of an encoded image, before the EXIF orientation is applied. */
typedef struct tsr__image_header {
    tsr_image_format format;
    int32_t width, height;  /* as stored in the file */
    int32_t bit_depth;
    int32_t channels;       /* samples per pixel in the file (palette: 1) */
    int32_t has_alpha;
    int32_t orientation;    /* 1..8 */
    int32_t exif_invalid;   /* an EXIF block Pillow's exif_transpose raises on */
    char mode[8];           /* Pillow's mode */
} tsr__image_header;

/* The functions below leave a detail message without a function name in err; the public
 * entry point prefixes its own name. */

/* Checks a header before anything is allocated: the size against the limits (LIMIT naming
 * the limit, FORMAT for zero dimensions) and, when EXIF is applied, an EXIF block that
 * Pillow's exif_transpose rejects (FORMAT). */
tsr_status tsr__image_check_header(const tsr__image_header *h,
                                   const tsr_image_decode_params *params, tsr_error *err);

/* PNG (png.c). probe: header, palette/transparency facts and orientation from a chunk walk
 * that rejects what Pillow rejects. decode: probe, limits, then libpng; out is RGB8
 * (channels 3) or RGBA8 (channels 4) in file orientation. */
tsr_status tsr__png_probe(const uint8_t *buf, size_t len,
                          const tsr_image_decode_params *params, tsr__image_header *hdr,
                          tsr_error *err);
tsr_status tsr__png_decode(const uint8_t *buf, size_t len,
                           const tsr_image_decode_params *params, tsr__image_header *hdr,
                           tsr_image *out, tsr_error *err);

/* JPEG (jpeg.c), same contract. */
tsr_status tsr__jpeg_probe(const uint8_t *buf, size_t len,
                           const tsr_image_decode_params *params, tsr__image_header *hdr,
                           tsr_error *err);
tsr_status tsr__jpeg_decode(const uint8_t *buf, size_t len,
                            const tsr_image_decode_params *params, tsr__image_header *hdr,
                            tsr_image *out, tsr_error *err);

/* EXIF / XMP orientation (exif.c), read the way Pillow's Image.getexif() does. */
#define TSR__ORIENT_ABSENT (-1) /* no Orientation tag: Pillow then looks at XMP */
#define TSR__ORIENT_OTHER 0     /* tag present but not an integer Pillow maps (no transpose) */
#define TSR__ORIENT_INVALID (-2) /* not a TIFF header: Pillow's getexif raises */
/* data: an EXIF block, optionally prefixed by one or two "Exif\0\0". Returns the tag's
 * integer value, TSR__ORIENT_OTHER, TSR__ORIENT_INVALID (bad TIFF header) or
 * TSR__ORIENT_ABSENT (empty block, or a malformed IFD Pillow reads as empty). */
int64_t tsr__exif_orientation(const uint8_t *data, size_t len);
/* First match of /tiff:Orientation(="|>)([0-9])/ in an XMP packet: 0..9, or -1. */
int tsr__xmp_orientation(const uint8_t *data, size_t len);
/* Applies orientation 2..8 as ImageOps.exif_transpose; replaces *img (frees the old). */
tsr_status tsr__image_orient(tsr_image *img, int32_t orientation, tsr_error *err);

/* Pillow's CMYK -> RGB (Convert.c cmyk2rgb) on one pixel. */
static inline uint8_t tsr__cmyk_channel(uint8_t c, uint8_t k) {
    int nk = 255 - k;
    int t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

#endif /* TSR_IMAGE_INTERNAL_H */
