/*
 * tessera_internal.h - helpers shared by the library's own sources. Not installed.
 */
#ifndef TESSERA_INTERNAL_H
#define TESSERA_INTERNAL_H

#include "tessera.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>

#if defined(__GNUC__) || defined(__clang__)
#define TSR__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TSR__PRINTF(a, b)
#endif

/* Records `status` and a formatted detail in err (if non-NULL) and returns status. */
tsr_status tsr__fail(tsr_error *err, tsr_status status, const char *fmt, ...) TSR__PRINTF(3, 4);
tsr_status tsr__vfail(tsr_error *err, tsr_status status, const char *fmt, va_list ap);

/* TSR_FAIL(err, TSR_ERR_FORMAT, "bad %s", x): the detail starts with the function name. */
#define TSR_FAIL(err, status, ...) tsr__fail_fn((err), (status), __func__, __VA_ARGS__)
tsr_status tsr__fail_fn(tsr_error *err, tsr_status status, const char *fn, const char *fmt, ...)
    TSR__PRINTF(4, 5);

/* Debug-only invariant for internal state; input must never reach one. */
#ifdef NDEBUG
#define TSR_DEBUG_ASSERT(x) ((void)0)
#else
#include <assert.h>
#define TSR_DEBUG_ASSERT(x) assert(x)
#endif

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool tsr__mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool tsr__add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline bool tsr__mul3_size(size_t a, size_t b, size_t c, size_t *out) {
    size_t t;
    return tsr__mul_size(a, b, &t) && tsr__mul_size(t, c, out);
}
static inline bool tsr__mul_i64(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* IEEE half and bfloat16 to float (exact). */
static inline float tsr__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf / nan */
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 113;
            while (!(man & 0x400u)) { man <<= 1; exp--; }
            bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
        }
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    __builtin_memcpy(&f, &bits, sizeof f);
    return f;
}
static inline float tsr__bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    __builtin_memcpy(&f, &bits, sizeof f);
    return f;
}

/* Allocation wrappers. In builds with TSR_ALLOC_FAILPOINTS they can be told to fail the
 * Nth allocation (tests walk N = 1, 2, ... and expect a clean OOM each time). */
void *tsr__malloc(size_t n);
void *tsr__calloc(size_t n, size_t size);
void *tsr__realloc(void *p, size_t n);
void tsr__free(void *p);
/* Failpoint control: fail allocation number n (1-based) counting from now; 0 disables.
 * Returns the number of allocations made since the last call. */
long tsr__alloc_failpoint(long n);
/* Tests: 0 makes tsr_image_resize use its portable 32-bit passes even where the CPU has
 * the vector ones (AVX2), 1 (the default) lets it choose. Not thread-safe. */
void tsr__image_resize_simd(int enable);

/* Growable arrays: returns buf resized (tsr__realloc) to hold at least `need` elements of
 * `elem` bytes, doubling *cap from `init`; *cap is updated. NULL on overflow or OOM, with buf
 * and *cap unchanged (still owned by the caller). */
void *tsr__grow(void *buf, size_t *cap, size_t need, size_t elem, size_t init);

/* Reads a whole file (at most max_bytes, 0 = no limit). *data is released with tsr__free. */
tsr_status tsr__read_file(const char *path, uint64_t max_bytes, uint8_t **data, size_t *len,
                          tsr_error *err);

/* The processor of a text-only model of the directory: chat template and tokenizer, no
 * media (runtime/src/processor.c). */
tsr_status tsr__processor_load_text(const char *model_dir, const tsr_processor_params *params,
                                    tsr_processor **out, tsr_error *err);
/* Media kinds the processor takes: bits (1u << TSR_MEDIA_IMAGE) | (1u << TSR_MEDIA_AUDIO);
 * 0 for NULL. */
uint32_t tsr__processor_media_kinds(const tsr_processor *p);

#endif /* TESSERA_INTERNAL_H */
