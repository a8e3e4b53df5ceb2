/*
 * bench_processors - times one model family's whole processor, single thread:
 * tsr_processor_run_prompt on a prompt with the family's placeholders and the media files
 * given, as processor(text=prompt, images=..., audio=...) does in transformers.
 * Run by tools/bench/bench_processors.sh, which compares it with the HF processors.
 *
 *   bench_processors MODEL_DIR --prompt TEXT [--image FILE]... [--audio FILE]...
 *                    [--reps N] [--no-special]
 *
 * Media are given in prompt order: images first, then audio (every prompt of the benchmark
 * names its images before its audio). Each run of the "encoded" variant passes the file
 * bytes (in memory), so decoding is timed, as HF's callers give a path too; the "decoded"
 * variant passes images / audio decoded once beforehand, leaving the processor itself.
 * decode_ms is tsr_image_decode / tsr_audio_decode of all media alone.
 * Prints one JSON object: the median ms of each variant over N runs (after two warm-up runs,
 * as the Python side does) and the name, dtype and shape of every output tensor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "tessera.h"

#define MAX_MEDIA 8

/* Writes a JSON string literal of s (quotes, backslashes, control bytes escaped). */
static void put_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void put_outputs(const tsr_tensor_list *out) {
    printf("\"outputs\": {");
    for (int64_t i = 0; i < tsr_tensor_list_count(out); i++) {
        const tsr_tensor *t = tsr_tensor_list_at(out, i);
        printf("%s", i ? ", " : "");
        put_json_string(tsr_tensor_list_name(out, i));
        printf(": {\"dtype\": \"%s\", \"shape\": [", tsr_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
        printf("]}");
    }
    printf("}");
}

int main(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL;
    const char *paths[MAX_MEDIA];
    tsr_media_kind kinds[MAX_MEDIA];
    int n = 0, reps = 15, add_special = 1;
    for (int i = 1; i < argc; i++) {
        int is_img = strcmp(argv[i], "--image") == 0, is_aud = strcmp(argv[i], "--audio") == 0;
        if ((is_img || is_aud) && i + 1 < argc && n < MAX_MEDIA) {
            kinds[n] = is_img ? TSR_MEDIA_IMAGE : TSR_MEDIA_AUDIO;
            paths[n++] = argv[++i];
        } else if (strcmp(argv[i], "--prompt") == 0 && i + 1 < argc) {
            prompt = argv[++i];
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--no-special") == 0) {
            add_special = 0;
        } else if (argv[i][0] != '-' && !model) {
            model = argv[i];
        } else {
            model = NULL;
            break;
        }
    }
    if (!model || !prompt || reps < 1 || reps > 10000) {
        fprintf(stderr, "usage: bench_processors MODEL_DIR --prompt TEXT [--image FILE]... "
                        "[--audio FILE]... [--reps N] [--no-special]\n");
        return 2;
    }

    tsr_error err = {0};
    tsr_processor_params pp = tsr_processor_params_default();
    tsr_processor *p = NULL;
    if (tsr_processor_load(model, &pp, &p, &err) != TSR_OK) {
        fprintf(stderr, "bench_processors: %s: %s\n", model, err.message);
        return 1;
    }
    int rc = 0;
    unsigned char *bytes[MAX_MEDIA] = {0};
    tsr_media enc[MAX_MEDIA], dec[MAX_MEDIA];
    tsr_image images[MAX_MEDIA];
    tsr_audio audio[MAX_MEDIA];
    memset(enc, 0, sizeof enc);
    memset(dec, 0, sizeof dec);
    memset(images, 0, sizeof images);
    memset(audio, 0, sizeof audio);
    for (int i = 0; i < n && rc == 0; i++) {
        bytes[i] = bench_read_all(paths[i], &enc[i].len);
        if (!bytes[i]) {
            fprintf(stderr, "bench_processors: cannot read %s\n", paths[i]);
            rc = 1;
        }
        enc[i].kind = dec[i].kind = kinds[i];
        enc[i].data = bytes[i];
        dec[i].image = &images[i];
        dec[i].audio = &audio[i];
    }
    /* decode: what the pipeline does to each encoded item (EXIF applied, RGB; 16 kHz mono) */
    tsr_image_decode_params ip = tsr_image_decode_params_default();
    ip.channels = 3;
    ip.apply_exif = 1;
    ip.limits = pp.limits;
    tsr_audio_decode_params ap = tsr_audio_decode_params_default();
    ap.limits = pp.limits;

    double *t_enc = calloc((size_t)reps, sizeof(double));
    double *t_dec = calloc((size_t)reps, sizeof(double));
    double *t_decode = calloc((size_t)reps, sizeof(double));
    tsr_tensor_list *last = NULL;
    if (!t_enc || !t_dec || !t_decode) rc = 1;
    for (int r = -2; r < reps && rc == 0; r++) { /* r < 0: warm-up, not counted */
        double t0 = bench_now_ms();
        for (int i = 0; i < n && rc == 0; i++) {
            tsr_status st = kinds[i] == TSR_MEDIA_IMAGE
                                ? tsr_image_decode(bytes[i], enc[i].len, &ip, &images[i], NULL,
                                                   &err)
                                : tsr_audio_decode(bytes[i], enc[i].len, &ap, &audio[i], NULL,
                                                   &err);
            if (st != TSR_OK) {
                fprintf(stderr, "bench_processors: decode %s: %s\n", paths[i], err.message);
                rc = 1;
            }
        }
        double t1 = bench_now_ms();
        tsr_tensor_list *out = NULL;
        if (rc == 0 && tsr_processor_run_prompt(p, prompt, add_special, dec, (size_t)n, &out,
                                                &err) != TSR_OK) {
            fprintf(stderr, "bench_processors: run (decoded): %s\n", err.message);
            rc = 1;
        }
        double t2 = bench_now_ms();
        tsr_tensor_list_free(out);
        out = NULL;
        for (int i = 0; i < n; i++) {
            tsr_image_free(&images[i]);
            tsr_audio_free(&audio[i]);
        }
        double t3 = bench_now_ms();
        if (rc == 0 && tsr_processor_run_prompt(p, prompt, add_special, enc, (size_t)n, &out,
                                                &err) != TSR_OK) {
            fprintf(stderr, "bench_processors: run (encoded): %s\n", err.message);
            rc = 1;
        }
        double t4 = bench_now_ms();
        if (r >= 0) {
            t_decode[r] = t1 - t0;
            t_dec[r] = t2 - t1;
            t_enc[r] = t4 - t3;
        }
        tsr_tensor_list_free(last);
        last = out;
    }
    if (rc == 0) {
        printf("{\"model\": ");
        put_json_string(model);
        printf(", \"model_type\": \"%s\", \"reps\": %d, \"encoded_ms\": %.3f, "
               "\"decoded_ms\": %.3f, \"decode_ms\": %.3f, ",
               tsr_processor_model_type(p), reps, bench_median(t_enc, reps), bench_median(t_dec, reps),
               bench_median(t_decode, reps));
        put_outputs(last);
        printf("}\n");
    }
    tsr_tensor_list_free(last);
    free(t_enc);
    free(t_dec);
    free(t_decode);
    for (int i = 0; i < n; i++) free(bytes[i]);
    tsr_processor_free(p);
    return rc;
}
