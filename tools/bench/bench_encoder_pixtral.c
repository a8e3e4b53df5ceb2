/* Pixtral image encoder benchmark driver (tools/bench/bench_encoder_pixtral.sh): loads a
 * mistral3 checkpoint, reads one processor output (input_ids, pixel_values, image_sizes) from
 * a safetensors file and runs tsr_prompt_new (vision tower + projector) on a session of
 * THREADS threads: once to warm up, then once per "run" line read from stdin, printing
 * "ms=<milliseconds>" for each, so the caller can interleave its own runs with these on a busy
 * machine. At end of input the features of the last run go to OUT (safetensors, "embeds"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "tessera.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL_DIR INPUTS.safetensors THREADS OUT.safetensors "
                "< lines \"run\"\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[3]);
    if (threads < 1) {
        fprintf(stderr, "bad THREADS\n");
        return 2;
    }
    tsr_error err = {0};
    tsr_model *m = NULL;
    tsr_safetensors *st = NULL;
    tsr_tensor_list *in = NULL;
    tsr_session *s = NULL;
    tsr_prompt *p = NULL;
    int rc = 1;
    double t0 = bench_now_ms();
    if (tsr_model_load(argv[1], NULL, &m, &err)) {
        fprintf(stderr, "load: %s\n", err.message);
        goto done;
    }
    double load_ms = bench_now_ms() - t0;
    if (tsr_safetensors_open_file(argv[2], &st, &err) || tsr_tensor_list_new(&in, &err)) {
        fprintf(stderr, "inputs: %s\n", err.message);
        goto done;
    }
    static const char *const names[] = {"input_ids", "pixel_values", "image_sizes"};
    for (size_t i = 0; i < 3; i++) {
        tsr_tensor v, c;
        if (tsr_safetensors_get(st, names[i], &v, &err) ||
            tsr_tensor_alloc(&c, v.dtype, v.ndim, v.shape, &err)) {
            fprintf(stderr, "inputs: %s\n", err.message);
            goto done;
        }
        memcpy(c.data, v.data, tsr_tensor_nbytes(&v));
        if (tsr_tensor_list_add(in, names[i], &c, &err)) {
            tsr_tensor_free(&c);
            fprintf(stderr, "inputs: %s\n", err.message);
            goto done;
        }
    }
    tsr_session_params sp = tsr_session_params_default();
    sp.n_threads = threads;
    sp.n_ctx = 64;
    if (tsr_session_new(m, &sp, &s, &err)) {
        fprintf(stderr, "session: %s\n", err.message);
        goto done;
    }
    /* The warm-up run also faults in the mmapped weights. */
    char line[64];
    for (int r = 0;; r++) {
        if (r > 0 && !fgets(line, sizeof line, stdin)) break;
        if (r > 0 && strncmp(line, "run", 3)) continue;
        tsr_prompt_free(p);
        p = NULL;
        double a = bench_now_ms();
        if (tsr_prompt_new(m, s, in, &p, &err)) {
            fprintf(stderr, "encode: %s\n", err.message);
            goto done;
        }
        double ms = bench_now_ms() - a;
        if (r == 0)
            printf("ready load_ms=%.3f warmup_ms=%.3f\n", load_ms, ms);
        else
            printf("ms=%.3f\n", ms);
        fflush(stdout);
    }
    const tsr_tensor *e = tsr_tensor_list_get(tsr_prompt_tensors(p), "embeds");
    if (!e) {
        fprintf(stderr, "no embeds\n");
        goto done;
    }
    const char *en = "embeds";
    if (tsr_safetensors_write_file(argv[4], 1, &en, e, 0, NULL, NULL, &err)) {
        fprintf(stderr, "write: %s\n", err.message);
        goto done;
    }
    rc = 0;
done:
    tsr_prompt_free(p);
    tsr_session_free(s);
    tsr_tensor_list_free(in);
    tsr_safetensors_close(st);
    tsr_model_free(m);
    return rc;
}
