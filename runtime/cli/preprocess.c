/* tessera preprocess: a model family's processor outputs for a prompt and media, written to
 * a safetensors file under the names transformers uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_MEDIA 64

static void preprocess_usage(FILE *f) {
    fprintf(f,
            "usage: tessera preprocess --model DIR [--image F]... [--audio F]...\n"
            "                          (-p TEXT | --messages FILE.json) [--no-template [--no-special]]\n"
            "                          --out OUT.safetensors [--json]\n"
            "  -p TEXT          one user turn: the media in the order given, then TEXT, rendered\n"
            "                   with the model's chat template\n"
            "  --messages FILE  OpenAI-style messages; their image/audio parts take the\n"
            "                   --image/--audio files in order\n"
            "  --no-template    use TEXT as the prompt itself (it must hold the family's\n"
            "                   placeholders), as processor(text=TEXT, images=...) does\n"
            "  --no-special     with --no-template: add_special_tokens=False\n"
            "  --json           print the tensor names, dtypes and shapes as one JSON object\n");
}

typedef struct pre_opts {
    const char *model, *text, *messages, *out;
    int no_template, json, special;
    const char *files[MAX_MEDIA];
    tsr_media_kind kinds[MAX_MEDIA];
    int n_media;
} pre_opts;

static int parse_args(int argc, char **argv, pre_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if ((!strcmp(a, "--image") || !strcmp(a, "--audio")) && has_value) {
            if (o->n_media == MAX_MEDIA) {
                fprintf(stderr, "tessera preprocess: at most %d media files\n", MAX_MEDIA);
                return 2;
            }
            o->kinds[o->n_media] = a[2] == 'i' ? TSR_MEDIA_IMAGE : TSR_MEDIA_AUDIO;
            o->files[o->n_media++] = argv[++i];
        } else if (!strcmp(a, "--model") && has_value) {
            o->model = argv[++i];
        } else if (!strcmp(a, "-p") && has_value) {
            o->text = argv[++i];
        } else if (!strcmp(a, "--messages") && has_value) {
            o->messages = argv[++i];
        } else if (!strcmp(a, "--out") && has_value) {
            o->out = argv[++i];
        } else if (!strcmp(a, "--no-template")) {
            o->no_template = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--no-special")) {
            o->special = 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            preprocess_usage(stdout);
            return -1;
        } else {
            fprintf(stderr, "tessera preprocess: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!o->model || !o->out || (!o->text) == (!o->messages) ||
        (o->no_template && !o->text)) {
        fprintf(stderr, "tessera preprocess: needs --model, --out and exactly one of -p, "
                        "--messages (--no-template goes with -p)\n");
        return 2;
    }
    return 0;
}

static void print_summary(const tsr_tensor_list *list) {
    cJSON *j = cJSON_CreateObject();
    for (int64_t i = 0; i < tsr_tensor_list_count(list); i++) {
        const tsr_tensor *t = tsr_tensor_list_at(list, i);
        cJSON *e = cJSON_AddObjectToObject(j, tsr_tensor_list_name(list, i));
        cJSON_AddStringToObject(e, "dtype", tsr_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int32_t d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    }
    tsr_cli_print_json_line(j);
}

/* Runs the processor; media bytes are read by the caller. */
static tsr_status run(const pre_opts *o, const tsr_processor *p, const tsr_media *media,
                      tsr_tensor_list **out, tsr_error *err) {
    if (o->no_template)
        return tsr_processor_run_prompt(p, o->text, o->special, media, o->n_media, out, err);
    if (o->text) {
        tsr_chat_part parts[MAX_MEDIA + 1];
        for (int i = 0; i < o->n_media; i++) {
            memset(&parts[i], 0, sizeof parts[i]);
            parts[i].type = o->kinds[i] == TSR_MEDIA_IMAGE ? TSR_CHAT_PART_IMAGE
                                                           : TSR_CHAT_PART_AUDIO;
            parts[i].text = o->files[i];
        }
        memset(&parts[o->n_media], 0, sizeof parts[0]);
        parts[o->n_media].type = TSR_CHAT_PART_TEXT;
        parts[o->n_media].text = o->text;
        tsr_chat_message msg = {"user", NULL, parts, (size_t)o->n_media + 1};
        return tsr_processor_run_chat(p, &msg, 1, media, o->n_media, out, err);
    }
    uint8_t *json = NULL;
    size_t len = 0;
    tsr_chat_messages *msgs = NULL;
    tsr_status st = tsr_cli_read_file(o->messages, 64u << 20, &json, &len, err);
    if (!st) st = tsr_chat_messages_parse_json((const char *)json, len, &msgs, err);
    if (!st)
        st = tsr_processor_run_chat(p, tsr_chat_messages_items(msgs),
                                    tsr_chat_messages_count(msgs), media, o->n_media, out, err);
    tsr_chat_messages_free(msgs);
    free(json);
    return st;
}

int tsr_cli_preprocess(int argc, char **argv) {
    pre_opts o;
    memset(&o, 0, sizeof o);
    o.special = 1;
    int rc = parse_args(argc, argv, &o);
    if (rc) {
        if (rc > 0) preprocess_usage(stderr);
        return rc > 0 ? rc : 0;
    }
    tsr_error err = {0};
    const char *failed = o.model;
    tsr_processor *p = NULL;
    tsr_tensor_list *list = NULL;
    tsr_media media[MAX_MEDIA];
    uint8_t *bytes[MAX_MEDIA] = {0};
    memset(media, 0, sizeof media);
    tsr_status st = tsr_processor_load(o.model, NULL, &p, &err);
    tsr_limits limits = tsr_limits_default();
    for (int i = 0; !st && i < o.n_media; i++) {
        st = tsr_cli_read_file(o.files[i], limits.max_encoded_bytes, &bytes[i], &media[i].len,
                               &err);
        media[i].kind = o.kinds[i];
        media[i].data = bytes[i];
        if (st) failed = o.files[i];
    }
    if (!st) {
        failed = o.messages ? o.messages : o.model;
        st = run(&o, p, media, &list, &err);
    }
    if (!st) {
        failed = o.out;
        st = tsr_tensor_list_save(list, o.out, &err);
    }
    if (!st && o.json) print_summary(list);
    if (st) fprintf(stderr, "%s: %s: %s\n", failed, tsr_status_name(st), err.message);
    for (int i = 0; i < o.n_media; i++) free(bytes[i]);
    tsr_tensor_list_free(list);
    tsr_processor_free(p);
    return st ? 1 : 0;
}
