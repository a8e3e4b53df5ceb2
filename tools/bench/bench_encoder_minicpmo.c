/* MiniCPM-o 2.6 vision encoder benchmark driver (run by bench_encoder_minicpmo.sh).
 *   bench_encoder_minicpmo MODEL_DIR INPUTS.safetensors REPS THREADS OUT.safetensors
 * Loads the family encoder of the checkpoint (config.json, model.safetensors: vpm.*,
 * resampler.*) with the library's internal loader, reads a processor output (input_ids,
 * image_bound, tgt_sizes, pixel_values.<i>) from INPUTS, runs the encoder (SigLIP NaViT +
 * Resampler) on a pool of THREADS threads once as a warm-up and REPS times, and prints
 *   encoder_ms=M encoder_min_ms=m cpu_ms=C rows=R
 * (median and minimum wall time, median CPU time of the process's threads: on a machine shared
 * with other work the CPU time is the steadier measure); the "embeds" of the last run go to
 * OUT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../vision/encoder.h"
#include "bench_util.h"
#include "tessera_json.h"

#define MAX_REPS 64

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL_DIR INPUTS.safetensors REPS THREADS OUT.safetensors\n",
                argv[0]);
        return 2;
    }
    const int reps = atoi(argv[3]), threads = atoi(argv[4]);
    if (reps < 1 || reps > MAX_REPS || threads < 1 || threads > 256) {
        fprintf(stderr, "bench_encoder_minicpmo: bad REPS or THREADS\n");
        return 2;
    }
    const tsr__encoder_ops *ops = &tsr__minicpmo_encoder;
    tsr_error err = {0};
    char path[4096];
    cJSON *cfg = NULL;
    tsr_safetensors *model = NULL, *inp = NULL;
    tsr__weights *w = NULL;
    void *enc = NULL;
    tsr__pool *pool = NULL;
    tsr_tensor_list *in = NULL, *out = NULL;
    int rc = 1;
    snprintf(path, sizeof path, "%s/config.json", argv[1]);
    if (tsr__json_load(path, 0, &cfg, &err)) goto fail;
    snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
    if (tsr_safetensors_open_file(path, &model, &err)) goto fail;
    const char *shard = "model.safetensors";
    if (tsr__weights_new(&model, &shard, 1, &w, &err)) goto fail;
    for (const char *const *a = ops->aliases; a && a[0] && a[1]; a += 2)
        if (tsr__weights_alias(w, a[0], a[1], &err)) goto fail;
    int64_t text_dim = 0;
    if (tsr__json_int(cfg, "hidden_size", 0, 1, 1 << 20, &text_dim, "config.json", &err))
        goto fail;
    tsr__model_configs mc = {argv[1], cfg, NULL, NULL, NULL};
    if (ops->load(&mc, w, (int32_t)text_dim, &enc, &err)) goto fail;
    if (tsr_safetensors_open_file(argv[2], &inp, &err) || tsr_tensor_list_new(&in, &err))
        goto fail;
    for (int64_t i = 0; i < tsr_safetensors_count(inp); i++) {
        const char *name = tsr_safetensors_name(inp, i);
        tsr_tensor v, c;
        if (tsr_safetensors_get(inp, name, &v, &err) ||
            tsr_tensor_alloc(&c, v.dtype, v.ndim, v.shape, &err))
            goto fail;
        memcpy(c.data, v.data, tsr_tensor_nbytes(&v));
        if (tsr_tensor_list_add(in, name, &c, &err)) {
            tsr_tensor_free(&c);
            goto fail;
        }
    }
    pool = tsr__pool_new(threads);
    if (!pool) {
        fprintf(stderr, "bench_encoder_minicpmo: out of memory\n");
        goto done;
    }
    tsr__blas_init();
    double ms[MAX_REPS + 1], cms[MAX_REPS + 1];
    for (int r = 0; r <= reps; r++) {
        tsr_tensor_list_free(out);
        out = NULL;
        double image_ms = 0, audio_ms = 0;
        if (tsr_tensor_list_new(&out, &err)) goto fail;
        const double t0 = bench_now_ms(), c0 = cpu_ms();
        if (ops->encode(enc, pool, in, out, &image_ms, &audio_ms, &err)) goto fail;
        ms[r] = bench_now_ms() - t0;
        cms[r] = cpu_ms() - c0;
    }
    double *timed = ms + 1, mn = timed[0];
    for (int r = 1; r < reps; r++)
        if (timed[r] < mn) mn = timed[r];
    const tsr_tensor *e = tsr_tensor_list_get(out, "embeds");
    if (!e) {
        fprintf(stderr, "bench_encoder_minicpmo: the encoder gave no embeds\n");
        goto done;
    }
    if (tsr_tensor_list_save(out, argv[5], &err)) goto fail;
    const double wall = bench_median(timed, reps), cpu = bench_median(cms + 1, reps);
    printf("encoder_ms=%.3f encoder_min_ms=%.3f cpu_ms=%.3f rows=%lld\n", wall, mn, cpu,
           (long long)e->shape[0]);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench_encoder_minicpmo: %s: %s\n", tsr_status_name(err.status), err.message);
done:
    tsr_tensor_list_free(out);
    tsr_tensor_list_free(in);
    tsr__pool_free(pool);
    if (enc) ops->free(enc);
    tsr__weights_free(w);
    tsr_safetensors_close(inp);
    tsr_safetensors_close(model);
    cJSON_Delete(cfg);
    return rc;
}
