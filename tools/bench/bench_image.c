/*
 * bench_image - times Tessera's image preprocessing on one encoded file, single thread:
 * decode (RGB) + resize (BICUBIC) + rescale/normalise (CLIP mean/std) to float32 CHW.
 * Run by tools/bench/bench_image.sh, which compares it with Pillow + numpy.
 *
 *   bench_image FILE [--size WxH] [--reps N]
 *
 * Prints one JSON object with the median milliseconds of each stage and of the whole
 * pipeline, over N runs (each run decodes from the bytes in memory).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "tessera.h"

static const double CLIP_MEAN[3] = {0.48145466, 0.4578275, 0.40821073};
static const double CLIP_STD[3] = {0.26862954, 0.26130258, 0.27577711};

static int fail(const char *what, const tsr_error *err) {
    fprintf(stderr, "bench_image: %s: %s\n", what, err->message);
    return 1;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int reps = 15, out_w = 448, out_h = 448;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            sscanf(argv[++i], "%dx%d", &out_w, &out_h);
        else
            path = argv[i];
    }
    if (!path || reps < 1 || reps > 10000 || out_w < 1 || out_h < 1) {
        fprintf(stderr, "usage: bench_image FILE [--size WxH] [--reps N]\n");
        return 2;
    }
    size_t len = 0;
    unsigned char *buf = bench_read_all(path, &len);
    if (!buf) {
        fprintf(stderr, "bench_image: cannot read %s\n", path);
        return 1;
    }

    tsr_image_decode_params dp = tsr_image_decode_params_default();
    dp.channels = 3;
    dp.limits.max_encoded_bytes = 0; /* benchmark inputs may exceed the 20 MiB default */
    tsr_normalize_params np = {.size = sizeof np, .do_rescale = 1, .rescale = 1 / 255.0,
                               .do_normalize = 1};
    memcpy(np.mean, CLIP_MEAN, sizeof CLIP_MEAN);
    memcpy(np.std, CLIP_STD, sizeof CLIP_STD);
    const size_t n_out = (size_t)3 * out_w * out_h;

    double *t_dec = calloc((size_t)reps, sizeof(double));
    double *t_rsz = calloc((size_t)reps, sizeof(double));
    double *t_nrm = calloc((size_t)reps, sizeof(double));
    double *t_all = calloc((size_t)reps, sizeof(double));
    tsr_error err = {0};
    int rc = 0, in_w = 0, in_h = 0;
    for (int r = 0; r < reps && rc == 0; r++) {
        tsr_image img = {0}, small = {0};
        double t0 = bench_now_ms();
        if (tsr_image_decode(buf, len, &dp, &img, NULL, &err) != TSR_OK) {
            rc = fail("decode", &err);
            break;
        }
        double t1 = bench_now_ms();
        if (tsr_image_resize(&img, out_w, out_h, TSR_RESAMPLE_BICUBIC, &small, &err) != TSR_OK)
            rc = fail("resize", &err);
        double t2 = bench_now_ms();
        float *pixels = malloc(n_out * sizeof(float)); /* a fresh output, as numpy makes */
        if (rc == 0 && (!pixels || tsr_image_normalize(&small, &np, pixels, n_out, &err)))
            rc = fail("normalize", &err);
        double t3 = bench_now_ms();
        in_w = img.width;
        in_h = img.height;
        t_dec[r] = t1 - t0;
        t_rsz[r] = t2 - t1;
        t_nrm[r] = t3 - t2;
        t_all[r] = t3 - t0;
        free(pixels);
        tsr_image_free(&small);
        tsr_image_free(&img);
    }
    if (rc == 0)
        printf("{\"file\": \"%s\", \"width\": %d, \"height\": %d, \"out\": \"%dx%d\", "
               "\"reps\": %d, \"decode_ms\": %.3f, \"resize_ms\": %.3f, "
               "\"normalize_ms\": %.3f, \"total_ms\": %.3f}\n",
               path, in_w, in_h, out_w, out_h, reps, bench_median(t_dec, reps),
               bench_median(t_rsz, reps), bench_median(t_nrm, reps), bench_median(t_all, reps));
    free(t_dec);
    free(t_rsz);
    free(t_nrm);
    free(t_all);
    free(buf);
    return rc;
}
