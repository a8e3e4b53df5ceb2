#include "harness.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int tsr_test_failed_checks;
static int g_passed, g_failed, g_skipped, g_skip_current;

void tsr_test_run(const char *name, void (*fn)(void)) {
    int before = tsr_test_failed_checks;
    g_skip_current = 0;
    fn();
    if (g_skip_current) {
        g_skipped++;
        printf("SKIP %s\n", name);
    } else if (tsr_test_failed_checks == before) {
        g_passed++;
        printf("ok   %s\n", name);
    } else {
        g_failed++;
        printf("FAIL %s (%d failed checks)\n", name, tsr_test_failed_checks - before);
    }
    fflush(stdout);
}

void tsr_test_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("skipped: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    g_skip_current = 1;
}

int tsr_test_finish(void) {
    if (g_skipped)
        printf("%d passed, %d failed, %d skipped\n", g_passed, g_failed, g_skipped);
    else
        printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}

static const char *join(const char *base, const char *rel) {
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", base, rel);
    return b;
}

const char *tsr_test_fixture(const char *rel) {
    const char *base = getenv("TSR_FIXTURES");
    return join(base ? base : "tests/fixtures", rel);
}

const char *tsr_test_shared(const char *rel) {
    const char *base = getenv("TSR_SHARED");
    if (!base) base = "../shared";
    struct stat st;
    if (stat(base, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return join(base, rel);
}

uint8_t *tsr_test_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return NULL; }
    uint8_t *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) { buf[n] = 0; *len = (size_t)n; }
    return buf;
}
