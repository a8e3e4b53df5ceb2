/* MLlama vision encoder benchmark driver (run by bench_encoder_mllama.sh).
 *   bench_encoder_mllama MODEL_DIR INPUTS TEXT_DIM REPS THREADS [OUT]
 * MODEL_DIR holds config.json (vision_config) and model.safetensors (vision_model.*,
 * multi_modal_projector.*); INPUTS is a safetensors file with pixel_values, aspect_ratio_ids
 * and aspect_ratio_mask as the processor gives them. Loads the encoder alone (no text
 * decoder), runs it REPS times on a pool of THREADS workers and prints one line:
 *   encode_ms=M encode_min_ms=m cpu_ms=C load_ms=L
 * (median and minimum wall time over REPS, median CPU time of the process's threads: on a
 * machine shared with other work the CPU time is the steadier measure). OUT, when given, receives the cross_attention_states of
 * the first repetition. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "../../vision/encoder.h"
#include "bench_util.h"
#include "tessera_json.h"

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int fail(const char *what, const tsr_error *err) {
    fprintf(stderr, "bench_encoder_mllama: %s: %s\n", what, err->message);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s MODEL_DIR INPUTS TEXT_DIM REPS THREADS [OUT]\n", argv[0]);
        return 2;
    }
    int text_dim = atoi(argv[3]), reps = atoi(argv[4]), threads = atoi(argv[5]);
    if (text_dim < 1 || reps < 1 || reps > 1000 || threads < 1 || threads > 256) {
        fprintf(stderr, "bad TEXT_DIM / REPS / THREADS\n");
        return 2;
    }
    tsr_error err = {0};
    char path[4096];
    cJSON *config = NULL;
    tsr_safetensors *file = NULL, *in_file = NULL;
    tsr__weights *w = NULL;
    void *enc = NULL;
    tsr_tensor_list *inputs = NULL;
    tsr__pool *pool = NULL;
    int rc = 1;
    double *ms = calloc(2 * (size_t)reps, sizeof *ms);
    const double t0 = bench_now_ms();
    snprintf(path, sizeof path, "%s/config.json", argv[1]);
    if (tsr__json_load(path, 0, &config, &err)) {
        rc = fail(path, &err);
        goto done;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
    if (tsr_safetensors_open_file(path, &file, &err)) {
        rc = fail(path, &err);
        goto done;
    }
    const char *names[1] = {"model.safetensors"};
    if (tsr__weights_new(&file, names, 1, &w, &err)) {
        rc = fail("weights", &err);
        goto done;
    }
    tsr__model_configs cfg = {.model_dir = argv[1], .config = config};
    if (tsr__mllama_encoder.load(&cfg, w, text_dim, &enc, &err)) {
        rc = fail("load", &err);
        goto done;
    }
    const double load_ms = bench_now_ms() - t0;
    if (tsr_safetensors_open_file(argv[2], &in_file, &err) ||
        tsr_tensor_list_new(&inputs, &err)) {
        rc = fail(argv[2], &err);
        goto done;
    }
    static const char *const in_names[] = {"pixel_values", "aspect_ratio_ids", "aspect_ratio_mask"};
    for (int i = 0; i < 3; i++) {
        tsr_tensor t;
        if (tsr_safetensors_get(in_file, in_names[i], &t, &err) ||
            tsr_tensor_list_add(inputs, in_names[i], &t, &err)) {
            rc = fail(in_names[i], &err);
            goto done;
        }
    }
    pool = tsr__pool_new(threads);
    if (!pool || !ms) {
        fprintf(stderr, "bench_encoder_mllama: out of memory\n");
        goto done;
    }
    for (int r = 0; r < reps; r++) {
        tsr_tensor_list *out = NULL;
        double image_ms = 0;
        if (tsr_tensor_list_new(&out, &err)) {
            rc = fail("output list", &err);
            goto done;
        }
        const double a = bench_now_ms(), c = cpu_ms();
        tsr_status st = tsr__mllama_encoder.encode(enc, pool, inputs, out, &image_ms, NULL, &err);
        ms[r] = bench_now_ms() - a;
        ms[reps + r] = cpu_ms() - c;
        if (!st && r == 0 && argc == 7) st = tsr_tensor_list_save(out, argv[6], &err);
        tsr_tensor_list_free(out);
        if (st) {
            rc = fail("encode", &err);
            goto done;
        }
    }
    double mn = ms[0];
    for (int r = 1; r < reps; r++) mn = ms[r] < mn ? ms[r] : mn;
    printf("encode_ms=%.1f encode_min_ms=%.1f cpu_ms=%.1f load_ms=%.1f\n", bench_median(ms, reps),
           mn, bench_median(ms + reps, reps), load_ms);
    rc = 0;
done:
    free(ms);
    tsr__pool_free(pool);
    tsr_tensor_list_free(inputs);
    tsr_safetensors_close(in_file);
    if (enc) tsr__mllama_encoder.free(enc);
    tsr__weights_free(w);
    tsr_safetensors_close(file);
    cJSON_Delete(config);
    return rc;
}
