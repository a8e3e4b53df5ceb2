/* tessera chat: an interactive conversation on stdin / stdout; the KV cache is kept between
 * turns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAX_MEDIA 16

static void chat_usage(FILE *f) {
    fprintf(f,
            "usage: tessera chat --model DIR [--system TEXT] [--temp T] [--top-p P] [--top-k K]\n"
            "                    [--min-p P] [--repeat-penalty R] [--seed S] [--max-tokens N]\n"
            "                    [--threads N] [--ctx N] [--verbose]\n"
            "  Each line read from stdin is a user message; the reply is streamed to stdout.\n"
            "  /image PATH, /audio PATH   attach media to the next message (images first)\n"
            "  /reset                     start a new conversation\n"
            "  /quit (or end of input)    leave\n"
            "  //TEXT                     a message that starts with /TEXT\n"
            "  --system TEXT    a system message at the start of each conversation\n"
            "%s"
            "  --verbose        token counts, cached tokens and timings of each turn on stderr\n",
            tsr_cli_gen_flags_usage);
}

typedef struct pending {
    tsr_media_kind kind;
    uint8_t *data;
    size_t len;
} pending;

static int on_token(int32_t id, const char *text, size_t len, void *user) {
    (void)id;
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static void clear_pending(pending *p, size_t *n) {
    for (size_t i = 0; i < *n; i++) free(p[i].data);
    *n = 0;
}

static tsr_status add_system(tsr_chat *c, const char *system, tsr_error *err) {
    if (!system) return TSR_OK;
    tsr_chat_message sys = {"system", system, NULL, 0};
    return tsr_chat_add(c, &sys, NULL, 0, err);
}

/* One user turn: the pending media (images, then audio) and the text, then the reply. */
static tsr_status turn(tsr_chat *c, const char *text, pending *p, size_t n_pending,
                       const tsr_generate_params *gp, int verbose, tsr_error *err) {
    tsr_chat_part parts[MAX_MEDIA + 1];
    tsr_media media[MAX_MEDIA];
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        tsr_media_kind kind = pass == 0 ? TSR_MEDIA_IMAGE : TSR_MEDIA_AUDIO;
        for (size_t i = 0; i < n_pending; i++) {
            if (p[i].kind != kind) continue;
            memset(&media[n], 0, sizeof media[n]);
            media[n].kind = kind;
            media[n].data = p[i].data;
            media[n].len = p[i].len;
            n++;
        }
    }
    tsr_chat_message user = tsr_cli_user_message(text, media, n, parts);
    tsr_status st = tsr_chat_add(c, &user, media, n, err);
    if (st) return st;
    tsr_usage u;
    st = tsr_chat_generate(c, gp, NULL, NULL, &u, err);
    if (st) {
        fprintf(stderr, "tessera chat: the message stays in the conversation without a reply; "
                        "/reset starts a new one\n");
        return st;
    }
    printf("\n");
    fflush(stdout);
    if (verbose)
        fprintf(stderr,
                "[%lld prompt tokens (%lld cached) in %.1f ms, images %.1f ms, audio %.1f ms; "
                "%lld generated in %.1f ms, %s]\n",
                (long long)u.prompt_tokens, (long long)u.cached_tokens, u.prefill_ms, u.image_ms,
                u.audio_ms, (long long)u.completion_tokens, u.decode_ms,
                tsr_cli_stop_name(u.stop_reason));
    return TSR_OK;
}

int tsr_cli_chat(int argc, char **argv) {
    const char *model_dir = NULL, *system = NULL;
    int verbose = 0;
    tsr_generate_params gp = tsr_generate_params_default();
    tsr_session_params sp = tsr_session_params_default();
    unsigned set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        int g = tsr_cli_gen_flag(argc, argv, &i, &gp, &sp, &set);
        if (g == 1) continue;
        if (g == 0 && !strcmp(a, "--model") && has) model_dir = argv[++i];
        else if (g == 0 && !strcmp(a, "--system") && has) system = argv[++i];
        else if (g == 0 && !strcmp(a, "--verbose")) verbose = 1;
        else if (g == 0 && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            chat_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "tessera chat: unexpected or invalid argument '%s'\n", a);
            chat_usage(stderr);
            return 2;
        }
    }
    if (!model_dir) {
        chat_usage(stderr);
        return 2;
    }
    tsr_error err = {0};
    tsr_model *model = NULL;
    tsr_chat *c = NULL;
    tsr_status st = tsr_cli_load_model(model_dir, &model, &err);
    if (!st) st = tsr_chat_new(model, &sp, &c, &err);
    if (!st) st = add_system(c, system, &err);
    if (st) {
        fprintf(stderr, "tessera chat: %s: %s: %s\n", model_dir, tsr_status_name(st), err.message);
        tsr_chat_free(c);
        tsr_model_free(model);
        return 1;
    }
    tsr_cli_model_sampling(model, &gp.sampling, set);
    gp.on_token = on_token;
    int tty = isatty(0) && isatty(1);
    int code = 0;
    pending p[MAX_MEDIA];
    size_t n_pending = 0;
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        ssize_t got = getline(&line, &cap, stdin);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (!strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            tsr_chat_reset(c);
            clear_pending(p, &n_pending);
            st = add_system(c, system, &err);
            if (st) {
                fprintf(stderr, "tessera chat: %s: %s\n", tsr_status_name(st), err.message);
                code = 1;
                break;
            }
            continue;
        }
        int is_image = !strncmp(line, "/image ", 7), is_audio = !strncmp(line, "/audio ", 7);
        if (is_image || is_audio) {
            const char *path = line + 7;
            while (*path == ' ') path++;
            if (n_pending == MAX_MEDIA) {
                fprintf(stderr, "tessera chat: %s: at most %d media files per message\n", path,
                        MAX_MEDIA);
                code = 2;
                continue;
            }
            tsr_media_kind kind = is_image ? TSR_MEDIA_IMAGE : TSR_MEDIA_AUDIO;
            st = tsr_cli_read_media(model, path, kind, &p[n_pending].data, &p[n_pending].len,
                                    &err);
            if (st) {
                fprintf(stderr, "tessera chat: %s: %s: %s\n", path, tsr_status_name(st),
                        err.message);
                if (code != 2) code = tsr_cli_exit_code(st);
                continue;
            }
            p[n_pending++].kind = kind;
            continue;
        }
        if (line[0] == '/' && strncmp(line, "//", 2)) {
            fprintf(stderr, "tessera chat: unknown command '%s' (/image, /audio, /reset, /quit; "
                            "start a message with // to send a leading /)\n", line);
            code = 2;
            continue;
        }
        const char *text = line[0] == '/' ? line + 1 : line;
        st = turn(c, text, p, n_pending, &gp, verbose, &err);
        clear_pending(p, &n_pending);
        if (st) {
            fprintf(stderr, "tessera chat: %s: %s: %s\n", model_dir, tsr_status_name(st),
                    err.message);
            if (code != 2) code = st == TSR_ERR_INVALID_ARG ? 2 : 1;
        }
    }
    free(line);
    clear_pending(p, &n_pending);
    tsr_chat_free(c);
    tsr_model_free(model);
    return code;
}
