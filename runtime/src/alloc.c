#include "tessera_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* Failpoints are process-global and meant for single-threaded tests. */
static long g_fail_at;   /* fail when g_count reaches this (0 = never) */
static long g_count;

long tsr__alloc_failpoint(long n) {
    long made = g_count;
    g_count = 0;
    g_fail_at = n;
    return made;
}

static bool should_fail(void) {
    g_count++;
    return g_fail_at > 0 && g_count == g_fail_at;
}

/* Buffers of this size and more (decoded images, pixel_values, KV caches) are advised as
 * transparent huge pages: first touch then costs one fault per 2 MiB instead of one per
 * 4 KiB, which is most of the time spent writing a fresh 50 MB tensor. Pages stay lazily
 * allocated (and zeroed, for calloc). */
#define HUGE_MIN ((size_t)4 << 20)
#define HUGE_ALIGN ((uintptr_t)2 << 20)

static void *advise_huge(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
    if (p && n >= HUGE_MIN) {
        uintptr_t lo = ((uintptr_t)p + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
        uintptr_t hi = ((uintptr_t)p + n) & ~(HUGE_ALIGN - 1);
        if (hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* advice: failure is fine */
    }
#endif
    return p;
}

void *tsr__malloc(size_t n) {
    if (should_fail()) return NULL;
    return advise_huge(malloc(n ? n : 1), n);
}

void *tsr__calloc(size_t n, size_t size) {
    if (should_fail()) return NULL;
    if (n == 0 || size == 0) n = size = 1;
    size_t total;
    if (!tsr__mul_size(n, size, &total)) return NULL;
    return advise_huge(calloc(n, size), total);
}

void *tsr__realloc(void *p, size_t n) {
    if (should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void tsr__free(void *p) { free(p); }

void *tsr__grow(void *buf, size_t *cap, size_t need, size_t elem, size_t init) {
    if (need <= *cap && buf) return buf;
    size_t ncap = *cap ? *cap : (init ? init : 1);
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) return NULL;
        ncap *= 2;
    }
    size_t bytes;
    if (!tsr__mul_size(ncap, elem, &bytes)) return NULL;
    void *p = tsr__realloc(buf, bytes);
    if (p) *cap = ncap;
    return p;
}

tsr_status tsr__read_file(const char *path, uint64_t max_bytes, uint8_t **data, size_t *len,
                          tsr_error *err) {
    *data = NULL;
    *len = 0;
    if (!path) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return TSR_FAIL(err, TSR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return TSR_FAIL(err, TSR_ERR_IO, "'%s' is not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    if (max_bytes && size > max_bytes) {
        fclose(f);
        return TSR_FAIL(err, TSR_ERR_LIMIT, "'%s' has %llu bytes, limit is %llu", path,
                        (unsigned long long)size, (unsigned long long)max_bytes);
    }
    if (size > SIZE_MAX - 1) {
        fclose(f);
        return TSR_FAIL(err, TSR_ERR_LIMIT, "'%s' is too large", path);
    }
    uint8_t *buf = tsr__malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate %llu bytes for '%s'",
                        (unsigned long long)size, path);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != (size_t)size) {
        tsr__free(buf);
        return TSR_FAIL(err, TSR_ERR_IO, "short read on '%s'", path);
    }
    buf[size] = 0; /* convenience terminator for text files */
    *data = buf;
    *len = (size_t)size;
    return TSR_OK;
}
