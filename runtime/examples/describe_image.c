/* describe_image: loads a model and asks it to describe an image, using only tessera.h.
 *
 *   describe_image MODEL_DIR IMAGE [PROMPT]
 *
 * The reply is streamed to stdout (greedy, at most 64 tokens). */
#include <stdio.h>
#include <stdlib.h>

#include "tessera.h"

static int print_piece(int32_t id, const char *text, size_t len, void *user) {
    (void)id;
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            unsigned char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t got = fread(buf + *len, 1, cap - *len, f);
        *len += got;
        if (got == 0) break;
    }
    int bad = ferror(f) || *len == cap;
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL_DIR IMAGE [PROMPT]\n", argv[0]);
        return 2;
    }
    size_t len = 0;
    unsigned char *jpeg = read_all(argv[2], &len);
    if (!jpeg) {
        fprintf(stderr, "%s: cannot read the file\n", argv[2]);
        return 1;
    }
    tsr_error err = {0};
    tsr_model *model = NULL;
    tsr_chat *chat = NULL;
    tsr_status st = tsr_model_load(argv[1], NULL, &model, &err);
    if (!st) st = tsr_chat_new(model, NULL, &chat, &err);
    if (!st) {
        /* One user message: the image, then the question. */
        tsr_chat_part parts[] = {{TSR_CHAT_PART_IMAGE, NULL, NULL},
                                 {TSR_CHAT_PART_TEXT, argc > 3 ? argv[3] : "Describe this image.",
                                  NULL}};
        tsr_chat_message msg = {"user", NULL, parts, 2};
        tsr_media image = {TSR_MEDIA_IMAGE, jpeg, len, NULL, NULL};
        st = tsr_chat_add(chat, &msg, &image, 1, &err);
    }
    tsr_usage usage = {0};
    if (!st) {
        tsr_generate_params gp = tsr_generate_params_default();
        gp.sampling.temperature = 0; /* greedy */
        gp.max_tokens = 64;
        gp.on_token = print_piece;
        st = tsr_chat_generate(chat, &gp, NULL, NULL, &usage, &err);
    }
    if (st) {
        fprintf(stderr, "%s: %s\n", tsr_status_name(st), err.message);
    } else {
        printf("\n");
        fprintf(stderr, "[%lld prompt tokens, image encoded in %.1f ms, %lld generated]\n",
                (long long)usage.prompt_tokens, usage.image_ms,
                (long long)usage.completion_tokens);
    }
    tsr_chat_free(chat);
    tsr_model_free(model);
    free(jpeg);
    return st ? 1 : 0;
}
