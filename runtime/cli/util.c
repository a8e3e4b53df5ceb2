#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static tsr_status set_err(tsr_error *err, tsr_status st, const char *fmt, const char *a,
                          const char *b) {
    err->status = st;
    snprintf(err->message, sizeof err->message, fmt, a, b);
    return st;
}

tsr_status tsr_cli_read_file(const char *path, uint64_t max_bytes, uint8_t **data, size_t *len,
                             tsr_error *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return set_err(err, TSR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return set_err(err, TSR_ERR_IO, "'%s' is not a regular file%s", path, "");
    }
    if (max_bytes && (uint64_t)sb.st_size > max_bytes) {
        fclose(f);
        err->status = TSR_ERR_LIMIT;
        snprintf(err->message, sizeof err->message,
                 "'%s' has %lld bytes, over the %llu-byte limit for encoded media", path,
                 (long long)sb.st_size, (unsigned long long)max_bytes);
        return TSR_ERR_LIMIT;
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return set_err(err, TSR_ERR_OOM, "cannot allocate memory for '%s'%s", path, "");
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(buf);
        return set_err(err, TSR_ERR_IO, "short read on '%s'%s", path, "");
    }
    *data = buf;
    *len = n;
    return TSR_OK;
}

void tsr_cli_print_json_line(cJSON *j) {
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    if (s) printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(j);
}

static int parse_num(const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || end == s || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

const char tsr_cli_gen_flags_usage[] =
    "  --temp T         sampling temperature; 0 is greedy\n"
    "  --top-p P, --top-k K, --min-p P, --repeat-penalty R, --seed S\n"
    "                   the other sampling settings (transformers' generate() order); those\n"
    "                   not given come from the model's generation_config.json as generate()\n"
    "                   applies it (greedy unless it sets do_sample)\n"
    "  --max-tokens N   at most N generated tokens (default 256)\n"
    "  --threads N      worker threads (default: online CPUs, at most 16)\n"
    "  --ctx N          KV cache positions (default: min(max_position_embeddings, 4096))\n";

int tsr_cli_gen_flag(int argc, char **argv, int *i, tsr_generate_params *gp,
                     tsr_session_params *sp, unsigned *set) {
    const char *a = argv[*i];
    static const char *const names[] = {"--temp", "--top-p", "--top-k", "--min-p",
                                        "--repeat-penalty", "--seed", "--max-tokens",
                                        "--threads", "--ctx"};
    int which = -1;
    for (int k = 0; k < (int)(sizeof names / sizeof names[0]); k++)
        if (!strcmp(a, names[k])) which = k;
    if (which < 0) return 0;
    if (*i + 1 >= argc) return -1;
    const char *s = argv[*i + 1];
    double v;
    switch (which) {
    case 0:
        if (!parse_num(s, 0, 1e6, &v)) return -1;
        gp->sampling.temperature = (float)v;
        break;
    case 1:
        if (!parse_num(s, 0, 1, &v)) return -1;
        gp->sampling.top_p = (float)v;
        break;
    case 2:
        if (!parse_num(s, 0, 1e9, &v) || v != (int32_t)v) return -1;
        gp->sampling.top_k = (int32_t)v;
        break;
    case 3:
        if (!parse_num(s, 0, 1, &v)) return -1;
        gp->sampling.min_p = (float)v;
        break;
    case 4:
        if (!parse_num(s, 1e-3, 1e3, &v)) return -1;
        gp->sampling.repetition_penalty = (float)v;
        break;
    case 5:
        if (!parse_num(s, 0, 1.8e19, &v)) return -1;
        gp->sampling.seed = (uint64_t)v;
        break;
    case 6:
        if (!parse_num(s, 0, 1e9, &v) || v != (int64_t)v) return -1;
        gp->max_tokens = (int64_t)v;
        break;
    case 7:
        if (!parse_num(s, 0, 1024, &v) || v != (int32_t)v) return -1;
        sp->n_threads = (int32_t)v;
        break;
    default:
        if (!parse_num(s, 0, 1e9, &v) || v != (int64_t)v) return -1;
        sp->n_ctx = (int64_t)v;
        break;
    }
    if (which < 5) *set |= 1u << which;
    (*i)++;
    return 1;
}

void tsr_cli_model_sampling(const tsr_model *model, tsr_sampling_params *sp, unsigned set) {
    tsr_sampling_params d = tsr_model_sampling_defaults(model);
    if (!(set & 1u)) sp->temperature = d.temperature;
    if (!(set & 2u)) sp->top_p = d.top_p;
    if (!(set & 4u)) sp->top_k = d.top_k;
    if (!(set & 8u)) sp->min_p = d.min_p;
    if (!(set & 16u)) sp->repetition_penalty = d.repetition_penalty;
}

static const char *kind_word(tsr_media_kind k) {
    return k == TSR_MEDIA_IMAGE ? "image" : k == TSR_MEDIA_AUDIO ? "audio" : "unknown";
}

tsr_status tsr_cli_read_media(const tsr_model *model, const char *path, tsr_media_kind kind,
                              uint8_t **data, size_t *len, tsr_error *err) {
    *data = NULL;
    *len = 0;
    if (!(tsr_model_media_kinds(model) & (1u << kind))) {
        err->status = TSR_ERR_INVALID_ARG;
        snprintf(err->message, sizeof err->message, "the %s model takes no %s input",
                 tsr_model_type(model), kind_word(kind));
        return TSR_ERR_INVALID_ARG;
    }
    tsr_limits lim = tsr_limits_default();
    tsr_status st = tsr_cli_read_file(path, lim.max_encoded_bytes, data, len, err);
    if (st) return st;
    tsr_media_kind got = tsr_media_sniff(*data, *len);
    if (got != TSR_MEDIA_UNKNOWN && got != kind) {
        free(*data);
        *data = NULL;
        *len = 0;
        err->status = TSR_ERR_INVALID_ARG;
        snprintf(err->message, sizeof err->message, "the file holds %s, given as %s",
                 kind_word(got), kind_word(kind));
        return TSR_ERR_INVALID_ARG;
    }
    /* Decoded once here so that a broken file is reported under its name. */
    if (kind == TSR_MEDIA_IMAGE) {
        tsr_image img = {0};
        st = tsr_image_decode(*data, *len, NULL, &img, NULL, err);
        tsr_image_free(&img);
    } else {
        tsr_audio_decode_params ap = tsr_audio_decode_params_default();
        ap.sample_rate = 0; /* the file's rate: no resampling needed to check it */
        tsr_audio au = {0};
        st = tsr_audio_decode(*data, *len, &ap, &au, NULL, err);
        tsr_audio_free(&au);
    }
    if (st) {
        free(*data);
        *data = NULL;
        *len = 0;
    }
    return st;
}

int tsr_cli_exit_code(tsr_status st) {
    return st == TSR_OK ? 0 : st == TSR_ERR_INVALID_ARG ? 2 : 1;
}

const char *tsr_cli_stop_name(tsr_stop_reason r) {
    switch (r) {
    case TSR_STOP_EOS: return "eos";
    case TSR_STOP_STRING: return "stop";
    case TSR_STOP_LENGTH: return "length";
    case TSR_STOP_CANCELLED: return "cancelled";
    case TSR_STOP_NONE: break;
    }
    return "none";
}

static int show_progress(float fraction, const char *what, void *user) {
    (void)user;
    fprintf(stderr, "\rloading %3d%% %-60.60s", (int)(fraction * 100.0f + 0.5f), what);
    fflush(stderr);
    return 0;
}

tsr_status tsr_cli_load_model(const char *dir, tsr_model **model, tsr_error *err) {
    tsr_model_params mp = tsr_model_params_default();
    int tty = isatty(2);
    if (tty) mp.progress = show_progress;
    tsr_status st = tsr_model_load(dir, &mp, model, err);
    if (tty) fprintf(stderr, "\r%-73s\r", "");
    return st;
}

tsr_chat_message tsr_cli_user_message(const char *text, const tsr_media *media, size_t n_media,
                                      tsr_chat_part *parts) {
    tsr_chat_message user = {"user", text, NULL, 0};
    if (!n_media) return user;
    for (size_t i = 0; i < n_media; i++)
        parts[i] = (tsr_chat_part){media[i].kind == TSR_MEDIA_IMAGE ? TSR_CHAT_PART_IMAGE
                                                                   : TSR_CHAT_PART_AUDIO,
                                   NULL, NULL};
    parts[n_media] = (tsr_chat_part){TSR_CHAT_PART_TEXT, text, NULL};
    user.content = NULL;
    user.parts = parts;
    user.n_parts = n_media + 1;
    return user;
}
