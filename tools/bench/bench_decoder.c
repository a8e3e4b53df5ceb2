/* Text decoder benchmark driver (run by bench_decoder.sh).
 *   bench_decoder MODEL_DIR IDS_FILE N_DECODE REPS THREADS
 * IDS_FILE holds the prompt ids as whitespace-separated integers. Each repetition resets the
 * session, prefills the prompt in one chunk, then decodes N_DECODE greedy ids one at a time
 * (EOS ignored). Prints one line:
 *   prefill_ms=M decode_ms=D prefill_min_ms=m decode_min_ms=d peak_rss_kb=R ids=i0,i1,...
 * with medians over REPS, the process's peak resident set (VmHWM of /proc/self/status, which
 * counts the mmapped weight pages it touched; getrusage's ru_maxrss where that is missing, but
 * that one keeps the parent's peak across fork + exec) and the greedy ids of the first
 * repetition. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tessera.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Peak resident set of this process in KiB, or -1. */
static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    struct rusage ru;
    if (kb < 0 && !getrusage(RUSAGE_SELF, &ru)) kb = ru.ru_maxrss; /* Linux: KiB */
    return kb;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int32_t argmax(const float *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL_DIR IDS_FILE N_DECODE REPS THREADS\n", argv[0]);
        return 2;
    }
    int n_dec = atoi(argv[3]), reps = atoi(argv[4]), threads = atoi(argv[5]);
    if (n_dec < 0 || n_dec > 100000 || reps < 1 || reps > 1000 || threads < 0) {
        fprintf(stderr, "bad N_DECODE / REPS / THREADS\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", argv[2]);
        return 1;
    }
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    long v;
    while (fscanf(f, "%ld", &v) == 1) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            int32_t *ni = realloc(ids, cap * sizeof *ni);
            if (!ni) return 1;
            ids = ni;
        }
        ids[n++] = (int32_t)v;
    }
    fclose(f);
    if (!n) {
        fprintf(stderr, "no ids in %s\n", argv[2]);
        return 1;
    }
    tsr_error err = {0};
    tsr_model *m = NULL;
    if (tsr_model_load(argv[1], NULL, &m, &err) != TSR_OK) {
        fprintf(stderr, "load: %s\n", err.message);
        return 1;
    }
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = (int64_t)n + n_dec + 1;
    sp.n_batch = (int64_t)n;
    sp.n_threads = threads;
    tsr_session *s = NULL;
    if (tsr_session_new(m, &sp, &s, &err) != TSR_OK) {
        fprintf(stderr, "session: %s\n", err.message);
        return 1;
    }
    int32_t V = tsr_model_vocab_size(m);
    double *pre = malloc((size_t)reps * sizeof *pre), *dec = malloc((size_t)reps * sizeof *dec);
    int32_t *out = malloc(((size_t)n_dec + 1) * sizeof *out);
    if (!pre || !dec || !out) return 1;
    for (int r = 0; r < reps; r++) {
        tsr_session_reset(s);
        tsr_decode_input in = tsr_decode_input_default();
        in.ids = ids;
        in.n_ids = (int64_t)n;
        double t0 = now_ms();
        if (tsr_session_decode(s, &in, NULL, 0, &err) != TSR_OK) {
            fprintf(stderr, "prefill: %s\n", err.message);
            return 1;
        }
        double t1 = now_ms();
        for (int i = 0; i < n_dec; i++) {
            int32_t id = argmax(tsr_session_logits(s), V);
            if (r == 0) out[i] = id;
            tsr_decode_input one = tsr_decode_input_default();
            one.ids = &id;
            one.n_ids = 1;
            if (tsr_session_decode(s, &one, NULL, 0, &err) != TSR_OK) {
                fprintf(stderr, "decode: %s\n", err.message);
                return 1;
            }
        }
        double t2 = now_ms();
        pre[r] = t1 - t0;
        dec[r] = t2 - t1;
    }
    qsort(pre, (size_t)reps, sizeof *pre, cmp_double);
    qsort(dec, (size_t)reps, sizeof *dec, cmp_double);
    long peak_kb = peak_rss_kb();
    printf("prefill_ms=%.3f decode_ms=%.3f prefill_min_ms=%.3f decode_min_ms=%.3f "
           "peak_rss_kb=%ld ids=",
           pre[reps / 2], dec[reps / 2], pre[0], dec[0], peak_kb);
    for (int i = 0; i < n_dec; i++) printf(i ? ",%d" : "%d", out[i]);
    printf("\n");
    free(out);
    free(pre);
    free(dec);
    free(ids);
    tsr_session_free(s);
    tsr_model_free(m);
    return 0;
}
