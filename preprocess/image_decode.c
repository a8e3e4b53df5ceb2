/*
 * image_decode.c - the tsr_image value object and the decode entry points.
 */
#include "tessera_internal.h"

#include <string.h>

const char *tsr_image_format_name(tsr_image_format f) {
    switch (f) {
    case TSR_IMAGE_FORMAT_PNG:
        return "png";
    case TSR_IMAGE_FORMAT_JPEG:
        return "jpeg";
    case TSR_IMAGE_FORMAT_UNKNOWN:
        break;
    }
    return "unknown";
}

tsr_status tsr_image_alloc(tsr_image *out, int32_t width, int32_t height, int32_t channels,
                           tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    if (width < 1 || height < 1)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "size %d x %d must be at least 1 x 1",
                        (int)width, (int)height);
    if (channels < 1 || channels > 4)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "channels %d outside [1, 4]", (int)channels);
    size_t bytes;
    if (!tsr__mul3_size((size_t)width, (size_t)height, (size_t)channels, &bytes))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "%d x %d x %d bytes overflows size_t", (int)width,
                        (int)height, (int)channels);
    uint8_t *data = tsr__malloc(bytes);
    if (!data)
        return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate %zu bytes for a %d x %d x %d image",
                        bytes, (int)width, (int)height, (int)channels);
    out->width = width;
    out->height = height;
    out->channels = channels;
    out->data = data;
    return TSR_OK;
}

void tsr_image_free(tsr_image *img) {
    if (!img) return;
    tsr__free(img->data);
    memset(img, 0, sizeof *img);
}
