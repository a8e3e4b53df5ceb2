#include "tessera_internal.h"

#include <stdio.h>
#include <string.h>

const char *tsr_status_str(tsr_status status) {
    switch (status) {
#define TSR__STATUS_STR(name, desc) \
    case TSR_##name:                \
        return desc;
        TSR_STATUS_LIST(TSR__STATUS_STR)
#undef TSR__STATUS_STR
    case TSR_STATUS_COUNT:
        break;
    }
    return "unknown status";
}

const char *tsr_status_name(tsr_status status) {
    switch (status) {
#define TSR__STATUS_NAME(name, desc) \
    case TSR_##name:                 \
        return "TSR_" #name;
        TSR_STATUS_LIST(TSR__STATUS_NAME)
#undef TSR__STATUS_NAME
    case TSR_STATUS_COUNT:
        break;
    }
    return "TSR_ERR_UNKNOWN";
}

tsr_status tsr__vfail(tsr_error *err, tsr_status status, const char *fmt, va_list ap) {
    if (err) {
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
    }
    return status;
}

tsr_status tsr__fail(tsr_error *err, tsr_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    tsr__vfail(err, status, fmt, ap);
    va_end(ap);
    return status;
}

tsr_status tsr__fail_fn(tsr_error *err, tsr_status status, const char *fn, const char *fmt, ...) {
    if (!err) return status;
    err->status = status;
    int n = snprintf(err->message, sizeof err->message, "%s: ", fn);
    if (n < 0 || (size_t)n >= sizeof err->message) return status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message + n, sizeof err->message - (size_t)n, fmt, ap);
    va_end(ap);
    return status;
}

tsr_limits tsr_limits_default(void) {
    tsr_limits l;
    memset(&l, 0, sizeof l);
    l.size = sizeof l;
    l.max_encoded_bytes = 20u << 20;
    l.max_pixels = 40000000u;
    l.max_side = 16384;
    l.max_aspect = 200.0;
    l.max_audio_seconds = 600.0;
    l.max_audio_channels = 8;
    return l;
}
