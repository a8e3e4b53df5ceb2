/* libFuzzer target: the safetensors header parser and tensor lookup. */
#include <stddef.h>
#include <stdint.h>

#include "tessera.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tsr_safetensors *st = NULL;
    tsr_error err = {0};
    if (tsr_safetensors_open_memory(data, size, &st, &err) != TSR_OK) return 0;
    int64_t n = tsr_safetensors_count(st);
    for (int64_t i = 0; i < n; i++) {
        tsr_tensor t;
        if (tsr_safetensors_get(st, tsr_safetensors_name(st, i), &t, &err) == TSR_OK) {
            /* Touch the first and last byte of every view: they must lie inside the input. */
            size_t bytes = tsr_tensor_nbytes(&t);
            if (bytes) {
                volatile uint8_t sink = ((const uint8_t *)t.data)[0];
                sink = ((const uint8_t *)t.data)[bytes - 1];
                (void)sink;
            }
        }
    }
    (void)tsr_safetensors_metadata(st, "format");
    tsr_safetensors_close(st);
    return 0;
}
