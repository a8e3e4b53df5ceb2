// The public header used from C++: it must compile with a C++ compiler and its functions
// must link with C linkage.
#include "tessera.h"

#include <cstdio>
#include <cstring>

int main() {
    tsr_error err = {};
    tsr_tensor t;
    int64_t shape[2] = {2, 3};
    int failed = 0;
    if (tsr_tensor_alloc(&t, TSR_DTYPE_F32, 2, shape, &err) != TSR_OK) failed++;
    if (tsr_tensor_numel(&t) != 6) failed++;
    tsr_tensor_free(&t);
    if (std::strcmp(tsr_status_name(TSR_ERR_SHAPE), "TSR_ERR_SHAPE") != 0) failed++;
    tsr_image_decode_params p = tsr_image_decode_params_default();
    if (p.channels != 3) failed++;
    std::printf("%d passed, %d failed\n", failed ? 0 : 1, failed ? 1 : 0);
    return failed ? 1 : 0;
}
