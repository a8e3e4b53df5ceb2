/* Tokenizer encode benchmark driver (run by bench_tokenizer.sh).
 *   bench_tokenizer MODEL_DIR TEXT_FILE REPS
 * Loads the tokenizer, encodes the whole file REPS times (single thread) and prints one line:
 *   tokens=N bytes=B median_ms=M min_ms=m */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "tessera.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_DIR TEXT_FILE REPS\n", argv[0]);
        return 2;
    }
    int reps = atoi(argv[3]);
    if (reps < 1 || reps > 1000) reps = 5;
    FILE *f = fopen(argv[2], "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", argv[2]); return 1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc(n > 0 ? (size_t)n : 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "read failed\n"); return 1; }
    fclose(f);
    tsr_tokenizer *tok = NULL;
    tsr_error err = {0};
    if (tsr_tokenizer_load(argv[1], &tok, &err) != TSR_OK) {
        fprintf(stderr, "load: %s\n", err.message);
        return 1;
    }
    double *ms = malloc((size_t)reps * sizeof *ms);
    size_t ntok = 0;
    for (int r = 0; r < reps; r++) {
        tsr_token_ids ids = {0};
        double t0 = bench_now_ms();
        if (tsr_tokenizer_encode(tok, text, (size_t)n, 0, &ids, &err) != TSR_OK) {
            fprintf(stderr, "encode: %s\n", err.message);
            return 1;
        }
        ms[r] = bench_now_ms() - t0;
        ntok = ids.n;
        tsr_token_ids_free(&ids);
    }
    qsort(ms, (size_t)reps, sizeof *ms, bench_cmp_double);
    printf("tokens=%zu bytes=%ld median_ms=%.3f min_ms=%.3f\n", ntok, n, ms[reps / 2], ms[0]);
    free(ms);
    free(text);
    tsr_tokenizer_free(tok);
    return 0;
}
