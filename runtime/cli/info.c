/* tessera info: decode media files and describe them. Uses only the public header. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "tessera.h"

typedef struct info_opts {
    int json;
    const char *ppm;   /* output path, or directory when several files are given */
    int ppm_is_dir;
} info_opts;

static void info_usage(FILE *f) {
    fprintf(f,
            "usage: tessera info [--json] [--ppm OUT] FILE...\n"
            "  Decodes each image (PNG, JPEG) or audio file (WAV, FLAC, OGG, MP3) and prints\n"
            "  what it holds. --json prints one object per file per line. --ppm OUT writes the\n"
            "  decoded image (EXIF orientation applied, alpha composited over white) as a\n"
            "  binary PPM; with several files OUT must be a directory and each image is\n"
            "  written as OUT/<name>.ppm.\n");
}

static int write_ppm(const char *path, const tsr_image *img) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = (size_t)img->width * (size_t)img->height * 3;
    int ok = fprintf(f, "P6\n%d %d\n255\n", img->width, img->height) > 0 &&
             fwrite(img->data, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static void ppm_path(const info_opts *o, const char *file, char *out, size_t cap) {
    if (!o->ppm_is_dir) {
        snprintf(out, cap, "%s", o->ppm);
        return;
    }
    const char *base = strrchr(file, '/');
    snprintf(out, cap, "%s/%s.ppm", o->ppm, base ? base + 1 : file);
}

static tsr_status describe_image(const char *file, const uint8_t *buf, size_t len,
                                 const info_opts *o, tsr_error *err) {
    tsr_image_decode_params p = tsr_image_decode_params_default();
    p.channels = 4;
    tsr_image rgba = {0}, rgb = {0};
    tsr_image_info info;
    tsr_status st = tsr_image_decode(buf, len, &p, &rgba, &info, err);
    if (!st && o->ppm) {
        st = tsr_image_composite_white(&rgba, &rgb, err);
        char path[4096];
        ppm_path(o, file, path, sizeof path);
        if (!st && write_ppm(path, &rgb) != 0) {
            err->status = st = TSR_ERR_IO;
            snprintf(err->message, sizeof err->message, "cannot write '%.400s': %s", path,
                     strerror(errno));
        }
    }
    tsr_image_free(&rgb);
    tsr_image_free(&rgba);
    if (st) return st;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "file", file);
        cJSON_AddStringToObject(j, "kind", "image");
        cJSON_AddStringToObject(j, "format", tsr_image_format_name(info.format));
        cJSON_AddNumberToObject(j, "width", info.width);
        cJSON_AddNumberToObject(j, "height", info.height);
        cJSON_AddNumberToObject(j, "orientation", info.orientation);
        cJSON_AddStringToObject(j, "mode", info.mode);
        cJSON_AddNumberToObject(j, "bit_depth", info.bit_depth);
        cJSON_AddBoolToObject(j, "alpha", info.has_alpha);
        tsr_cli_print_json_line(j);
    } else {
        printf("%s: image %s %dx%d mode %s, %d-bit, orientation %d%s\n", file,
               tsr_image_format_name(info.format), info.width, info.height, info.mode,
               info.bit_depth, info.orientation, info.has_alpha ? ", alpha" : "");
    }
    return TSR_OK;
}

static tsr_status describe_audio(const char *file, const uint8_t *buf, size_t len,
                                 const info_opts *o, tsr_error *err) {
    tsr_audio_decode_params p = tsr_audio_decode_params_default();
    p.sample_rate = 0; /* decode everything to validate it; header facts need no resampling */
    tsr_audio audio = {0};
    tsr_audio_info info;
    tsr_status st = tsr_audio_decode(buf, len, &p, &audio, &info, err);
    tsr_audio_free(&audio);
    if (st) return st;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "file", file);
        cJSON_AddStringToObject(j, "kind", "audio");
        cJSON_AddStringToObject(j, "format", info.format);
        cJSON_AddNumberToObject(j, "sample_rate", info.sample_rate);
        cJSON_AddNumberToObject(j, "channels", info.channels);
        cJSON_AddNumberToObject(j, "frames", (double)info.frames);
        cJSON_AddNumberToObject(j, "duration_s", info.duration_s);
        tsr_cli_print_json_line(j);
    } else {
        printf("%s: audio %s %d Hz, %d channel%s, %lld frames, %.3f s\n", file, info.format,
               info.sample_rate, info.channels, info.channels == 1 ? "" : "s",
               (long long)info.frames, info.duration_s);
    }
    return TSR_OK;
}

static int info_file(const char *file, const info_opts *o) {
    tsr_error err = {0};
    uint8_t *buf = NULL;
    size_t len = 0;
    tsr_limits limits = tsr_limits_default();
    tsr_status st = tsr_cli_read_file(file, limits.max_encoded_bytes, &buf, &len, &err);
    if (!st) {
        switch (tsr_media_sniff(buf, len)) {
        case TSR_MEDIA_IMAGE: st = describe_image(file, buf, len, o, &err); break;
        case TSR_MEDIA_AUDIO: st = describe_audio(file, buf, len, o, &err); break;
        default:
            st = err.status = TSR_ERR_UNSUPPORTED;
            snprintf(err.message, sizeof err.message,
                     "not a recognised image (PNG, JPEG) or audio (WAV, FLAC, OGG, MP3) file");
        }
    }
    free(buf);
    if (st) {
        fprintf(stderr, "%s: %s: %s\n", file, tsr_status_name(st), err.message);
        return 1;
    }
    return 0;
}

int tsr_cli_info(int argc, char **argv) {
    info_opts o = {0};
    int first = 1;
    for (; first < argc; first++) {
        const char *a = argv[first];
        if (!strcmp(a, "--json")) {
            o.json = 1;
        } else if (!strcmp(a, "--ppm")) {
            if (++first >= argc) {
                fprintf(stderr, "tessera info: --ppm needs an output path\n");
                return 2;
            }
            o.ppm = argv[first];
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            info_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--")) {
            first++;
            break;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "tessera info: unknown option '%s'\n", a);
            info_usage(stderr);
            return 2;
        } else {
            break;
        }
    }
    if (first >= argc) {
        fprintf(stderr, "tessera info: no input files\n");
        info_usage(stderr);
        return 2;
    }
    if (o.ppm && argc - first > 1) {
        struct stat sb;
        if (stat(o.ppm, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "tessera info: with several files, --ppm OUT must be a directory\n");
            return 2;
        }
        o.ppm_is_dir = 1;
    }
    int failed = 0;
    for (int i = first; i < argc; i++) failed |= info_file(argv[i], &o);
    return failed ? 1 : 0;
}
