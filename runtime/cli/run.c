/* tessera run: one user turn (text, images, audio) through a model, streamed to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAX_MEDIA 16
#define MAX_STOP 16

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: tessera run --model DIR [--image F]... [--audio F]... -p TEXT [--system TEXT]\n"
            "                   [--temp T] [--top-p P] [--top-k K] [--min-p P]\n"
            "                   [--repeat-penalty R] [--seed S] [--max-tokens N] [--threads N]\n"
            "                   [--ctx N] [--stop S]... [--no-template] [--json]\n"
            "  -p TEXT          the user message; with --image / --audio the message holds the\n"
            "                   images, then the audio, then TEXT, rendered with the model's\n"
            "                   chat template (--no-template, or a directory without a template:\n"
            "                   TEXT is the prompt itself, with the family's placeholders)\n"
            "  --system TEXT    a system message before it\n"
            "%s"
            "  --stop S         stop before the text S (up to %d)\n"
            "  --json           no streaming; one JSON object with ids, text, token counts and\n"
            "                   timings\n",
            tsr_cli_gen_flags_usage, MAX_STOP);
}

typedef struct out_text {
    char *buf;
    size_t len, cap;
    int stream;
    int failed;
} out_text;

static int on_token(int32_t id, const char *text, size_t len, void *user) {
    out_text *o = user;
    (void)id;
    if (o->stream) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        return 0;
    }
    if (o->len + len + 1 > o->cap) {
        size_t cap = (o->len + len + 1) * 2;
        char *nb = realloc(o->buf, cap);
        if (!nb) {
            o->failed = 1;
            return 1;
        }
        o->buf = nb;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, text, len);
    o->len += len;
    o->buf[o->len] = 0;
    return 0;
}

/* 1 when the model directory has a chat template (an unknown one is rendered too). */
static tsr_status has_template(const char *model_dir, int *yes, tsr_error *err) {
    tsr_chat_template_params tp = tsr_chat_template_params_default();
    tp.allow_unknown = 1;
    tsr_chat_template *t = NULL;
    tsr_error local = {0};
    tsr_status st = tsr_chat_template_load(model_dir, &tp, &t, &local);
    tsr_chat_template_free(t);
    *yes = st == TSR_OK;
    if (st == TSR_ERR_UNSUPPORTED && strstr(local.message, "has no chat template")) return TSR_OK;
    if (st) *err = local;
    return st;
}

/* The prompt as given (no template): tokenized with the special tokens added, media in the
 * order of the placeholders written in it. */
static tsr_status run_raw(const tsr_model *model, const tsr_session_params *sp, const char *text,
                          const tsr_media *media, size_t n_media, tsr_generate_params *gp,
                          tsr_token_ids *gen, tsr_usage *usage, tsr_error *err) {
    const tsr_processor *proc = tsr_model_processor(model);
    if (!proc) {
        err->status = TSR_ERR_UNSUPPORTED;
        snprintf(err->message, sizeof err->message, "the model directory has no tokenizer");
        return TSR_ERR_UNSUPPORTED;
    }
    tsr_tensor_list *inputs = NULL;
    tsr_session *s = NULL;
    tsr_prompt *p = NULL;
    tsr_status st = tsr_processor_run_prompt(proc, text, 1, media, n_media, &inputs, err);
    if (!st) st = tsr_session_new(model, sp, &s, err);
    if (!st) st = tsr_prompt_new(model, s, inputs, &p, err);
    tsr_tensor_list_free(inputs);
    if (!st) {
        gp->tokenizer = tsr_processor_tokenizer(proc);
        st = tsr_session_generate(s, tsr_prompt_input(p), gp, gen, usage, err);
    }
    if (!st) {
        usage->image_ms = tsr_prompt_image_ms(p);
        usage->audio_ms = tsr_prompt_audio_ms(p);
    }
    tsr_prompt_free(p);
    tsr_session_free(s);
    return st;
}

/* System message (optional), then one user message: images, audio, text. */
static tsr_status run_chat(const tsr_model *model, const tsr_session_params *sp,
                           const char *system, const char *text, const tsr_media *media,
                           size_t n_media, tsr_generate_params *gp, tsr_token_ids *gen,
                           tsr_usage *usage, tsr_error *err) {
    tsr_chat *c = NULL;
    tsr_chat_part parts[MAX_MEDIA + 1];
    tsr_chat_message user = tsr_cli_user_message(text, media, n_media, parts);
    tsr_status st = tsr_chat_new(model, sp, &c, err);
    if (!st && system) {
        tsr_chat_message sys = {"system", system, NULL, 0};
        st = tsr_chat_add(c, &sys, NULL, 0, err);
    }
    if (!st) st = tsr_chat_add(c, &user, media, n_media, err);
    if (!st) st = tsr_chat_generate(c, gp, NULL, gen, usage, err);
    tsr_chat_free(c);
    return st;
}

static void print_json(const tsr_token_ids *gen, const out_text *o, const tsr_usage *u) {
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "ids");
    for (size_t i = 0; i < gen->n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(gen->ids[i]));
    cJSON_AddStringToObject(j, "text", o->buf ? o->buf : "");
    cJSON_AddStringToObject(j, "finish_reason", tsr_cli_stop_name(u->stop_reason));
    cJSON_AddNumberToObject(j, "prompt_tokens", (double)u->prompt_tokens);
    cJSON_AddNumberToObject(j, "cached_tokens", (double)u->cached_tokens);
    cJSON_AddNumberToObject(j, "completion_tokens", (double)u->completion_tokens);
    cJSON *t = cJSON_AddObjectToObject(j, "timings");
    int64_t prefilled = u->prompt_tokens - u->cached_tokens;
    cJSON_AddNumberToObject(t, "image_encode_ms", u->image_ms);
    cJSON_AddNumberToObject(t, "audio_encode_ms", u->audio_ms);
    cJSON_AddNumberToObject(t, "prefill_ms", u->prefill_ms);
    cJSON_AddNumberToObject(t, "decode_ms", u->decode_ms);
    cJSON_AddNumberToObject(t, "prefill_tokens_per_s",
                            u->prefill_ms > 0 ? prefilled * 1e3 / u->prefill_ms : 0);
    cJSON_AddNumberToObject(t, "decode_tokens_per_s",
                            u->decode_ms > 0 ? u->completion_tokens * 1e3 / u->decode_ms : 0);
    tsr_cli_print_json_line(j);
}

int tsr_cli_run(int argc, char **argv) {
    const char *model_dir = NULL, *text = NULL, *system = NULL;
    const char *stops[MAX_STOP];
    const char *images[MAX_MEDIA], *audios[MAX_MEDIA];
    size_t n_stop = 0, n_images = 0, n_audios = 0;
    int json = 0, no_template = 0;
    tsr_generate_params gp = tsr_generate_params_default();
    tsr_session_params sp = tsr_session_params_default();
    unsigned set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        int g = tsr_cli_gen_flag(argc, argv, &i, &gp, &sp, &set);
        if (g == 1) continue;
        if (g == 0 && !strcmp(a, "--model") && has) model_dir = argv[++i];
        else if (g == 0 && !strcmp(a, "-p") && has) text = argv[++i];
        else if (g == 0 && !strcmp(a, "--system") && has) system = argv[++i];
        else if (g == 0 && !strcmp(a, "--image") && has && n_images < MAX_MEDIA)
            images[n_images++] = argv[++i];
        else if (g == 0 && !strcmp(a, "--audio") && has && n_audios < MAX_MEDIA)
            audios[n_audios++] = argv[++i];
        else if (g == 0 && !strcmp(a, "--stop") && has && n_stop < MAX_STOP)
            stops[n_stop++] = argv[++i];
        else if (g == 0 && !strcmp(a, "--json")) json = 1;
        else if (g == 0 && !strcmp(a, "--no-template")) no_template = 1;
        else if (g == 0 && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            run_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "tessera run: unexpected or invalid argument '%s'\n", a);
            run_usage(stderr);
            return 2;
        }
    }
    if (!model_dir || !text || n_images + n_audios > MAX_MEDIA) {
        if (n_images + n_audios > MAX_MEDIA)
            fprintf(stderr, "tessera run: at most %d media files\n", MAX_MEDIA);
        run_usage(stderr);
        return 2;
    }
    tsr_error err = {0};
    tsr_model *model = NULL;
    tsr_media media[MAX_MEDIA];
    uint8_t *bufs[MAX_MEDIA] = {0};
    size_t n_media = 0;
    tsr_token_ids gen = {0};
    tsr_usage usage;
    memset(&usage, 0, sizeof usage);
    out_text o = {0};
    o.stream = !json;
    const char *failed = model_dir;
    int code = 0;
    int chat = 0;
    tsr_status st = tsr_cli_load_model(model_dir, &model, &err);
    if (!st) tsr_cli_model_sampling(model, &gp.sampling, set);
    /* Images first, then audio, as the user message lists them. */
    for (size_t i = 0; !st && i < n_images + n_audios; i++) {
        const char *path = i < n_images ? images[i] : audios[i - n_images];
        tsr_media_kind kind = i < n_images ? TSR_MEDIA_IMAGE : TSR_MEDIA_AUDIO;
        memset(&media[i], 0, sizeof media[i]);
        st = tsr_cli_read_media(model, path, kind, &bufs[i], &media[i].len, &err);
        if (st) {
            failed = path;
            code = tsr_cli_exit_code(st);
            break;
        }
        media[i].kind = kind;
        media[i].data = bufs[i];
        n_media = i + 1;
    }
    if (!st && !no_template) st = has_template(model_dir, &chat, &err);
    if (!st) {
        gp.stop = stops;
        gp.n_stop = n_stop;
        gp.on_token = on_token;
        gp.user = &o;
        if (chat) st = run_chat(model, &sp, system, text, media, n_media, &gp, &gen, &usage, &err);
        else if (system) {
            err.status = st = TSR_ERR_INVALID_ARG;
            snprintf(err.message, sizeof err.message,
                     "--system needs a chat template (the model directory has none%s)",
                     no_template ? ", or --no-template was given" : "");
            code = 2;
        } else {
            st = run_raw(model, &sp, text, media, n_media, &gp, &gen, &usage, &err);
        }
    }
    if (!st && o.failed) {
        st = TSR_ERR_OOM;
        snprintf(err.message, sizeof err.message, "reply text");
    }
    if (st) {
        fprintf(stderr, "tessera run: %s: %s: %s\n", failed, tsr_status_name(st), err.message);
        if (!code) code = 1;
    } else if (json) {
        print_json(&gen, &o, &usage);
    } else {
        printf("\n");
        if (isatty(2))
            fprintf(stderr,
                    "[%lld prompt tokens in %.1f ms (images %.1f ms, audio %.1f ms), %lld "
                    "generated in %.1f ms, %s]\n",
                    (long long)usage.prompt_tokens, usage.prefill_ms, usage.image_ms,
                    usage.audio_ms, (long long)usage.completion_tokens, usage.decode_ms,
                    tsr_cli_stop_name(usage.stop_reason));
    }
    free(o.buf);
    tsr_token_ids_free(&gen);
    for (size_t i = 0; i < MAX_MEDIA; i++) free(bufs[i]);
    tsr_model_free(model);
    return code;
}
