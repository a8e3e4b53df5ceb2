/* Qwen2-VL vision encoder benchmark driver (run by bench_encoder_qwen2_vl.sh).
 *   bench_encoder_qwen2_vl MODEL_DIR IMAGE REPS THREADS OUT.safetensors
 * REPS 0: one warm-up run, then one timed run per line "run" read from stdin, each answered
 * with a line "ms=M cpu_ms=C" (so a caller can interleave its own runs under the same load);
 * at end of input the summary line below and OUT as usual.
 * Loads the model, runs its processor once on "<|vision_start|><|image_pad|><|vision_end|>"
 * with the image, then times tsr_prompt_new (vision encoder + merger + M-RoPE positions, on a
 * session of THREADS threads) REPS times after one warm-up run. Prints one line:
 *   encoder_ms=M encoder_min_ms=m encoder_cpu_ms=C patches=N rows=R
 * (median and minimum of the encoder time tsr_prompt_image_ms reports, median CPU time of the
 * process over the call, all threads: less sensitive than wall time to other load on the
 * machine) and writes the encoder outputs of the last run to OUT (for the comparison with
 * transformers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "bench_util.h"
#include "tessera.h"

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int fail(const char *what, tsr_status st, const tsr_error *err) {
    fprintf(stderr, "bench_encoder_qwen2_vl: %s: %s: %s\n", what, tsr_status_name(st),
            err->message);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL_DIR IMAGE REPS THREADS OUT.safetensors\n", argv[0]);
        return 2;
    }
    int reps = atoi(argv[3]);
    const int threads = atoi(argv[4]);
    const int interactive = reps == 0;
    if (reps < 0 || reps > 1000 || threads < 1 || threads > 256) {
        fprintf(stderr, "bench_encoder_qwen2_vl: bad REPS or THREADS\n");
        return 2;
    }
    tsr_error err = {0};
    tsr_model *model = NULL;
    tsr_session *sess = NULL;
    tsr_tensor_list *in = NULL;
    tsr_prompt *p = NULL;
    const int cap = interactive ? 1000 : reps;
    double *ms = calloc((size_t)cap, sizeof *ms), *cpu = calloc((size_t)cap, sizeof *cpu);
    size_t len = 0;
    unsigned char *img = bench_read_all(argv[2], &len);
    int rc = 1;
    tsr_status st;
    if (!img || !ms || !cpu) {
        fprintf(stderr, "bench_encoder_qwen2_vl: cannot read %s\n", argv[2]);
        goto done;
    }
    if ((st = tsr_model_load(argv[1], NULL, &model, &err))) {
        rc = fail("load", st, &err);
        goto done;
    }
    tsr_session_params sp = tsr_session_params_default();
    sp.n_threads = threads;
    sp.n_ctx = 2048;
    if ((st = tsr_session_new(model, &sp, &sess, &err))) {
        rc = fail("session", st, &err);
        goto done;
    }
    tsr_media m = {0};
    m.kind = TSR_MEDIA_IMAGE;
    m.data = img;
    m.len = len;
    if ((st = tsr_processor_run_prompt(tsr_model_processor(model),
                                       "<|vision_start|><|image_pad|><|vision_end|>", 1, &m, 1,
                                       &in, &err))) {
        rc = fail("processor", st, &err);
        goto done;
    }
    char line[64];
    for (int r = -1; interactive || r < reps; r++) {
        if (interactive && r >= 0) {
            if (r == cap || !fgets(line, sizeof line, stdin) || strncmp(line, "run", 3)) {
                reps = r;
                break;
            }
        }
        tsr_prompt_free(p);
        p = NULL;
        double c0 = cpu_ms();
        if ((st = tsr_prompt_new(model, sess, in, &p, &err))) {
            rc = fail("encoder", st, &err);
            goto done;
        }
        if (r >= 0) {
            ms[r] = tsr_prompt_image_ms(p);
            cpu[r] = cpu_ms() - c0;
            if (interactive) {
                printf("ms=%.2f cpu_ms=%.2f\n", ms[r], cpu[r]);
                fflush(stdout);
            }
        }
    }
    if (reps < 1) {
        fprintf(stderr, "bench_encoder_qwen2_vl: no timed run\n");
        goto done;
    }
    if ((st = tsr_tensor_list_save(tsr_prompt_tensors(p), argv[5], &err))) {
        rc = fail("save", st, &err);
        goto done;
    }
    const tsr_tensor *pv = tsr_tensor_list_get(in, "pixel_values");
    const tsr_tensor *e = tsr_tensor_list_get(tsr_prompt_tensors(p), "embeds");
    double mn = ms[0];
    for (int r = 1; r < reps; r++) mn = ms[r] < mn ? ms[r] : mn;
    printf("encoder_ms=%.2f encoder_min_ms=%.2f encoder_cpu_ms=%.2f patches=%lld rows=%lld\n",
           bench_median(ms, reps), mn, bench_median(cpu, reps), (long long)(pv ? pv->shape[0] : 0),
           (long long)(e ? e->shape[0] : 0));
    rc = 0;
done:
    tsr_prompt_free(p);
    tsr_tensor_list_free(in);
    tsr_session_free(sess);
    tsr_model_free(model);
    free(img);
    free(ms);
    free(cpu);
    return rc;
}
