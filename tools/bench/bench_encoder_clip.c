/* CLIP vision tower benchmark driver (tools/bench/bench_encoder_clip.sh): loads the tower of a
 * LLaVA-NeXT-layout checkpoint (config.json vision_config, vision_tower.vision_model.*) with
 * the library's internal loader and reads pixel_values [1, 3, S, S] from a safetensors file.
 * Then, for each line "run [N]" on stdin, computes hidden state N (default: the last, every
 * layer runs; LLaVA-NeXT's vision_feature_layer -2 is N = layers - 1) on a pool of THREADS
 * threads and prints "ms=<time>" (so the caller can interleave its own runs under the same
 * load); at EOF or "quit" the last hidden state of the last full run goes to OUT
 * (safetensors, "hidden" [tokens, hidden]) for the comparison with transformers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../vision/llava_next/clip.h"
#include "bench_util.h"
#include "tessera_json.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL_DIR PIXELS.safetensors THREADS OUT.safetensors\n",
                argv[0]);
        return 2;
    }
    int threads = atoi(argv[3]);
    if (threads < 1 || threads > 256) {
        fprintf(stderr, "bad THREADS\n");
        return 2;
    }
    tsr_error err = {0};
    char path[4096];
    cJSON *cfg = NULL;
    tsr_safetensors *model = NULL, *px = NULL;
    tsr__weights *w = NULL;
    tsr__clip clip;
    tsr__pool *pool = NULL;
    float *out = NULL;
    int rc = 1;
    memset(&clip, 0, sizeof clip);
    snprintf(path, sizeof path, "%s/config.json", argv[1]);
    if (tsr__json_load(path, 0, &cfg, &err)) goto fail;
    snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
    if (tsr_safetensors_open_file(path, &model, &err)) goto fail;
    const char *shard = "model.safetensors";
    if (tsr__weights_new(&model, &shard, 1, &w, &err) ||
        tsr__clip_load(cJSON_GetObjectItemCaseSensitive(cfg, "vision_config"), 0, w,
                       "vision_tower.vision_model", &clip, &err))
        goto fail;
    tsr_tensor pv;
    const int64_t S = clip.image_size, T = tsr__clip_tokens(&clip), D = clip.dim;
    if (tsr_safetensors_open_file(argv[2], &px, &err) ||
        tsr_safetensors_get(px, "pixel_values", &pv, &err))
        goto fail;
    if (pv.dtype != TSR_DTYPE_F32 || pv.ndim != 4 || pv.shape[0] != 1 ||
        pv.shape[1] != clip.n_channels || pv.shape[2] != S || pv.shape[3] != S) {
        fprintf(stderr, "pixel_values must be F32 [1, %d, %lld, %lld]\n", (int)clip.n_channels,
                (long long)S, (long long)S);
        goto done;
    }
    pool = tsr__pool_new(threads);
    out = malloc((size_t)(T * D) * sizeof *out);
    if (!pool || !out) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    tsr__blas_init();
    float *last = malloc((size_t)(T * D) * sizeof *last);
    if (!last) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    char line[64];
    int runs = 0;
    while (fgets(line, sizeof line, stdin) && strncmp(line, "quit", 4)) {
        int32_t sel = clip.n_layers;
        if (line[3] == ' ') sel = (int32_t)atoi(line + 4);
        if (strncmp(line, "run", 3) || sel < 0 || sel > clip.n_layers) {
            fprintf(stderr, "bad command: %s", line);
            free(last);
            goto done;
        }
        double t0 = bench_now_ms();
        if (tsr__clip_run(&clip, pool, pv.data, 1, &sel, 1, 0, out, &err)) {
            free(last);
            goto fail;
        }
        printf("ms=%.3f\n", bench_now_ms() - t0);
        fflush(stdout);
        if (sel == clip.n_layers) {
            memcpy(last, out, (size_t)(T * D) * sizeof *last);
            runs++;
        }
    }
    tsr_tensor h;
    int64_t shape[2] = {T, D};
    const char *name = "hidden";
    int bad = runs && (tsr_tensor_view(&h, TSR_DTYPE_F32, 2, shape, last, &err) ||
                       tsr_safetensors_write_file(argv[4], 1, &name, &h, 0, NULL, NULL, &err));
    free(last);
    if (bad) goto fail;
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench_encoder_clip: %s\n", err.message);
done:
    free(out);
    tsr__pool_free(pool);
    tsr__clip_free(&clip);
    tsr__weights_free(w);
    tsr_safetensors_close(px);
    tsr_safetensors_close(model);
    cJSON_Delete(cfg);
    return rc;
}
