/* tessera tokenize / detokenize: text <-> ids with a model directory's tokenizer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void tokenize_usage(FILE *f) {
    fprintf(f,
            "usage: tessera tokenize --model DIR (-p TEXT | --messages FILE.json)\n"
            "                        [--no-special] [--json]\n"
            "  -p TEXT          ids as tokenizer(TEXT) gives them (post-processor included;\n"
            "                   --no-special: add_special_tokens=False)\n"
            "  --messages FILE  OpenAI-style messages rendered with the model's chat template\n"
            "                   (add_generation_prompt=True) and tokenized as\n"
            "                   apply_chat_template(..., tokenize=True) does\n"
            "  --json           one JSON object with \"ids\" and \"prompt\"\n");
}

static void detokenize_usage(FILE *f) {
    fprintf(f, "usage: tessera detokenize --model DIR [--skip-special] [--json] ID...\n");
}

static void print_ids(const tsr_token_ids *ids, const char *prompt, size_t prompt_len,
                      int json) {
    if (!json) {
        for (size_t i = 0; i < ids->n; i++) printf(i ? " %d" : "%d", ids->ids[i]);
        printf("\n");
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "ids");
    for (size_t i = 0; i < ids->n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids->ids[i]));
    /* cJSON strings end at NUL; a prompt with embedded NULs is printed up to the first. */
    (void)prompt_len;
    cJSON_AddStringToObject(j, "prompt", prompt);
    tsr_cli_print_json_line(j);
}

/* Renders the messages file with the model's chat template; *prompt is freed by the caller
 * with tsr_chat_string_free. */
static tsr_status render_messages(const char *model, const char *path, char **prompt,
                                  size_t *len, tsr_error *err) {
    uint8_t *json = NULL;
    size_t json_len = 0;
    tsr_status st = tsr_cli_read_file(path, 64u << 20, &json, &json_len, err);
    tsr_chat_messages *msgs = NULL;
    tsr_chat_template *tmpl = NULL;
    if (!st) st = tsr_chat_messages_parse_json((const char *)json, json_len, &msgs, err);
    if (!st) st = tsr_chat_template_load(model, NULL, &tmpl, err);
    if (!st)
        st = tsr_chat_template_render(tmpl, tsr_chat_messages_items(msgs),
                                      tsr_chat_messages_count(msgs), NULL, prompt, len, err);
    tsr_chat_template_free(tmpl);
    tsr_chat_messages_free(msgs);
    free(json);
    return st;
}

int tsr_cli_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *messages = NULL;
    int json = 0, special = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(a, "-p") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(a, "--messages") && i + 1 < argc) messages = argv[++i];
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-special")) special = 0;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            tokenize_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "tessera tokenize: unexpected argument '%s'\n", a);
            tokenize_usage(stderr);
            return 2;
        }
    }
    if (!model || (!text) == (!messages)) {
        fprintf(stderr, "tessera tokenize: needs --model and exactly one of -p, --messages\n");
        tokenize_usage(stderr);
        return 2;
    }
    tsr_error err = {0};
    tsr_tokenizer *tok = NULL;
    tsr_token_ids ids = {0};
    char *prompt = NULL;
    size_t prompt_len = 0;
    tsr_status st = tsr_tokenizer_load(model, &tok, &err);
    if (!st && messages) {
        st = render_messages(model, messages, &prompt, &prompt_len, &err);
        /* The template already holds BOS and friends: apply_chat_template tokenizes with
         * add_special_tokens=False. */
        if (!st) st = tsr_tokenizer_encode(tok, prompt, prompt_len, 0, &ids, &err);
    } else if (!st) {
        st = tsr_tokenizer_encode(tok, text, strlen(text), special, &ids, &err);
    }
    if (!st) print_ids(&ids, prompt ? prompt : text, prompt ? prompt_len : strlen(text), json);
    else fprintf(stderr, "%s: %s: %s\n", messages ? messages : model, tsr_status_name(st),
                 err.message);
    tsr_chat_string_free(prompt);
    tsr_token_ids_free(&ids);
    tsr_tokenizer_free(tok);
    return st ? 1 : 0;
}

int tsr_cli_detokenize(int argc, char **argv) {
    const char *model = NULL;
    int json = 0, skip = 0;
    int32_t *ids = calloc((size_t)argc, sizeof *ids);
    size_t n = 0;
    int rc = 0;
    for (int i = 1; ids && i < argc && !rc; i++) {
        const char *a = argv[i];
        char *end = NULL;
        if (!strcmp(a, "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--skip-special")) {
            skip = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            detokenize_usage(stdout);
            free(ids);
            return 0;
        } else {
            errno = 0;
            long v = strtol(a, &end, 10);
            if (errno || end == a || *end || v < INT32_MIN || v > INT32_MAX) {
                fprintf(stderr, "tessera detokenize: '%s' is not a token id\n", a);
                rc = 2;
            } else {
                ids[n++] = (int32_t)v;
            }
        }
    }
    if (!rc && (!ids || !model)) {
        fprintf(stderr, "tessera detokenize: needs --model\n");
        rc = 2;
    }
    if (rc) {
        detokenize_usage(stderr);
        free(ids);
        return rc;
    }
    tsr_error err = {0};
    tsr_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    tsr_status st = tsr_tokenizer_load(model, &tok, &err);
    if (!st) st = tsr_tokenizer_decode(tok, ids, n, skip, &text, &len, &err);
    if (st) {
        fprintf(stderr, "%s: %s: %s\n", model, tsr_status_name(st), err.message);
    } else if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "text", text);
        tsr_cli_print_json_line(j);
    } else {
        fwrite(text, 1, len, stdout);
        printf("\n");
    }
    tsr_tokenizer_text_free(text);
    tsr_tokenizer_free(tok);
    free(ids);
    return st ? 1 : 0;
}
