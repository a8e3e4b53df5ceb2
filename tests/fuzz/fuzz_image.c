/* libFuzzer target for the image decoders: probe, then decode at 3 and 4 channels with
 * default parameters except a 4-megapixel cap (so the fuzzer does not spend its memory on
 * huge but valid headers). Without EXIF too, to reach the plain path. */
#include <stddef.h>
#include <stdint.h>

#include "tessera.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tsr_image_decode_params p = tsr_image_decode_params_default();
    p.limits.max_pixels = 4000000;
    tsr_image_info info;
    tsr_error err;
    (void)tsr_image_probe(data, size, &p, &info, &err);
    for (int ch = 3; ch <= 4; ch++) {
        tsr_image img, white;
        p.channels = ch;
        p.apply_exif = ch == 3;
        if (tsr_image_decode(data, size, &p, &img, &info, &err) == TSR_OK) {
            if (tsr_image_composite_white(&img, &white, &err) == TSR_OK) tsr_image_free(&white);
            tsr_image_free(&img);
        }
    }
    return 0;
}
