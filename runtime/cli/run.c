/* tessera run: generate text from a text-only checkpoint, streaming to stdout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: tessera run --model DIR -p TEXT [--temp T] [--top-p P] [--top-k K]\n"
            "                   [--min-p P] [--repeat-penalty R] [--seed S] [--max-tokens N]\n"
            "                   [--threads N] [--ctx N] [--stop S]... [--no-template] [--json]\n"
            "  -p TEXT          the user message; rendered with the model's chat template when\n"
            "                   the directory has one (--no-template: the raw prompt)\n"
            "  --temp T         sampling temperature (default 1); 0 is greedy\n"
            "  --json           no streaming; one JSON object with ids, text and timings\n");
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

static int parse_num(const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || end == s || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

static const char *stop_name(tsr_stop_reason r) {
    switch (r) {
    case TSR_STOP_EOS: return "eos";
    case TSR_STOP_STRING: return "stop";
    case TSR_STOP_LENGTH: return "length";
    case TSR_STOP_CANCELLED: return "cancelled";
    case TSR_STOP_NONE: break;
    }
    return "none";
}

/* The prompt string: chat template with one user message, or the raw text (*raw = 1). */
static tsr_status build_prompt(const char *model, const char *text, int no_template,
                               char **prompt, int *raw, tsr_error *err) {
    *raw = 1;
    *prompt = NULL;
    if (no_template) return TSR_OK;
    tsr_chat_template_params tp = tsr_chat_template_params_default();
    tp.allow_unknown = 1;
    tsr_chat_template *t = NULL;
    tsr_error local = {0};
    tsr_status st = tsr_chat_template_load(model, &tp, &t, &local);
    if (st == TSR_ERR_UNSUPPORTED && strstr(local.message, "has no chat template")) return TSR_OK;
    if (st) {
        *err = local;
        return st;
    }
    tsr_chat_message msg = {"user", text, NULL, 0};
    size_t len = 0;
    st = tsr_chat_template_render(t, &msg, 1, NULL, prompt, &len, err);
    tsr_chat_template_free(t);
    if (!st) *raw = 0;
    return st;
}

int tsr_cli_run(int argc, char **argv) {
    const char *model_dir = NULL, *text = NULL;
    const char *stops[16];
    size_t n_stop = 0;
    int json = 0, no_template = 0;
    tsr_generate_params gp = tsr_generate_params_default();
    tsr_session_params sp = tsr_session_params_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double v;
        int has = i + 1 < argc;
        if (!strcmp(a, "--model") && has) model_dir = argv[++i];
        else if (!strcmp(a, "-p") && has) text = argv[++i];
        else if (!strcmp(a, "--temp") && has && parse_num(argv[i + 1], 0, 1e6, &v)) {
            gp.sampling.temperature = (float)v;
            i++;
        } else if (!strcmp(a, "--top-p") && has && parse_num(argv[i + 1], 0, 1, &v)) {
            gp.sampling.top_p = (float)v;
            i++;
        } else if (!strcmp(a, "--min-p") && has && parse_num(argv[i + 1], 0, 1, &v)) {
            gp.sampling.min_p = (float)v;
            i++;
        } else if (!strcmp(a, "--repeat-penalty") && has && parse_num(argv[i + 1], 1e-3, 1e3, &v)) {
            gp.sampling.repetition_penalty = (float)v;
            i++;
        } else if (!strcmp(a, "--top-k") && has && parse_num(argv[i + 1], 0, 1e9, &v) &&
                   v == (int32_t)v) {
            gp.sampling.top_k = (int32_t)v;
            i++;
        } else if (!strcmp(a, "--seed") && has && parse_num(argv[i + 1], 0, 1.8e19, &v)) {
            gp.sampling.seed = (uint64_t)v;
            i++;
        } else if (!strcmp(a, "--max-tokens") && has && parse_num(argv[i + 1], 0, 1e9, &v) &&
                   v == (int64_t)v) {
            gp.max_tokens = (int64_t)v;
            i++;
        } else if (!strcmp(a, "--threads") && has && parse_num(argv[i + 1], 0, 1024, &v) &&
                   v == (int32_t)v) {
            sp.n_threads = (int32_t)v;
            i++;
        } else if (!strcmp(a, "--ctx") && has && parse_num(argv[i + 1], 0, 1e9, &v) &&
                   v == (int64_t)v) {
            sp.n_ctx = (int64_t)v;
            i++;
        } else if (!strcmp(a, "--stop") && has && n_stop < 16) {
            stops[n_stop++] = argv[++i];
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-template")) no_template = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            run_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "tessera run: unexpected or invalid argument '%s'\n", a);
            run_usage(stderr);
            return 2;
        }
    }
    if (!model_dir || !text) {
        run_usage(stderr);
        return 2;
    }
    tsr_error err = {0};
    tsr_tokenizer *tok = NULL;
    tsr_model *model = NULL;
    tsr_session *s = NULL;
    char *prompt = NULL;
    int raw = 1;
    tsr_token_ids ids = {0}, gen = {0};
    tsr_usage usage;
    out_text o = {0};
    o.stream = !json;
    tsr_status st = tsr_tokenizer_load(model_dir, &tok, &err);
    if (!st) st = build_prompt(model_dir, text, no_template, &prompt, &raw, &err);
    if (!st) {
        const char *p = raw ? text : prompt;
        st = tsr_tokenizer_encode(tok, p, strlen(p), raw, &ids, &err);
    }
    if (!st) st = tsr_model_load(model_dir, NULL, &model, &err);
    if (!st) st = tsr_session_new(model, &sp, &s, &err);
    if (!st) {
        tsr_decode_input in = tsr_decode_input_default();
        in.ids = ids.ids;
        in.n_ids = (int64_t)ids.n;
        gp.tokenizer = tok;
        gp.stop = stops;
        gp.n_stop = n_stop;
        gp.on_token = on_token;
        gp.user = &o;
        st = tsr_session_generate(s, &in, &gp, &gen, &usage, &err);
    }
    if (!st && o.failed) st = TSR_ERR_OOM;
    if (st) {
        fprintf(stderr, "tessera run: %s: %s: %s\n", model_dir, tsr_status_name(st), err.message);
    } else if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(j, "ids");
        for (size_t i = 0; i < gen.n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(gen.ids[i]));
        cJSON_AddStringToObject(j, "text", o.buf ? o.buf : "");
        cJSON_AddStringToObject(j, "finish_reason", stop_name(usage.stop_reason));
        cJSON_AddNumberToObject(j, "prompt_tokens", (double)usage.prompt_tokens);
        cJSON_AddNumberToObject(j, "completion_tokens", (double)usage.completion_tokens);
        cJSON *t = cJSON_AddObjectToObject(j, "timings");
        cJSON_AddNumberToObject(t, "prefill_ms", usage.prefill_ms);
        cJSON_AddNumberToObject(t, "decode_ms", usage.decode_ms);
        cJSON_AddNumberToObject(t, "prefill_tokens_per_s",
                                usage.prefill_ms > 0 ? usage.prompt_tokens * 1e3 / usage.prefill_ms : 0);
        cJSON_AddNumberToObject(t, "decode_tokens_per_s",
                                usage.decode_ms > 0 ? usage.completion_tokens * 1e3 / usage.decode_ms : 0);
        tsr_cli_print_json_line(j);
    } else {
        printf("\n");
        if (isatty(2))
            fprintf(stderr, "[%lld prompt tokens in %.1f ms, %lld generated in %.1f ms, %s]\n",
                    (long long)usage.prompt_tokens, usage.prefill_ms,
                    (long long)usage.completion_tokens, usage.decode_ms,
                    stop_name(usage.stop_reason));
    }
    free(o.buf);
    tsr_token_ids_free(&gen);
    tsr_token_ids_free(&ids);
    tsr_chat_string_free(prompt);
    tsr_session_free(s);
    tsr_model_free(model);
    tsr_tokenizer_free(tok);
    return st ? 1 : 0;
}
