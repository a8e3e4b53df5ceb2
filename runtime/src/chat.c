/* Conversations (tsr_chat_*): messages and their media kept by copy, the whole conversation
 * re-rendered by the model's processor each turn, and the KV cache of the previous turns
 * reused for the longest prefix of prompt ids it already holds. */
#include <string.h>

#include "../../text/decoder.h"

/* One stored media item: encoded bytes, or a decoded image / audio, all owned. */
typedef struct chat_media {
    tsr_media_kind kind;
    uint8_t *data;
    size_t len;
    tsr_image image;
    tsr_audio audio;
    int decoded;
} chat_media;

/* One stored message; every string is an owned copy. */
typedef struct chat_msg {
    char *role;
    char *content;
    tsr_chat_part *parts; /* text / format point to owned copies */
    size_t n_parts;
} chat_msg;

struct tsr_chat {
    const tsr_model *model;
    const tsr_processor *proc;
    tsr_session *s;
    chat_msg *msgs;
    size_t n_msgs, cap_msgs;
    chat_media *media;
    size_t n_media, cap_media;
    /* The ids the session's KV cache holds, in order (cache[0..n_cache) = positions
     * 0..n_past), and how many media items the prompt that filled it carried. */
    int32_t *cache;
    size_t n_cache, cap_cache;
    size_t cache_media;
    int cache_cross; /* the session holds cross-attention states (MLlama) */
};

static char *dup_str(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = tsr__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void msg_clear(chat_msg *m) {
    tsr__free(m->role);
    tsr__free(m->content);
    for (size_t i = 0; i < m->n_parts; i++) {
        tsr__free((char *)m->parts[i].text);
        tsr__free((char *)m->parts[i].format);
    }
    tsr__free(m->parts);
    memset(m, 0, sizeof *m);
}

static void media_clear(chat_media *m) {
    tsr__free(m->data);
    tsr_image_free(&m->image);
    tsr_audio_free(&m->audio);
    memset(m, 0, sizeof *m);
}

static void forget_cache(tsr_chat *c) {
    tsr_session_reset(c->s);
    c->n_cache = 0;
    c->cache_media = 0;
    c->cache_cross = 0;
}

tsr_status tsr_chat_new(const tsr_model *model, const tsr_session_params *params,
                        tsr_chat **out, tsr_error *err) {
    if (out) *out = NULL;
    if (!model || !out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "model and out are required");
    const tsr_processor *proc = tsr_model_processor(model);
    if (!proc)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "the model has no processor (its directory has no tokenizer.json)");
    tsr_chat *c = tsr__calloc(1, sizeof *c);
    if (!c) return TSR_FAIL(err, TSR_ERR_OOM, "chat state");
    c->model = model;
    c->proc = proc;
    tsr_status st = tsr_session_new(model, params, &c->s, err);
    if (st) {
        tsr__free(c);
        return st;
    }
    *out = c;
    return TSR_OK;
}

void tsr_chat_free(tsr_chat *c) {
    if (!c) return;
    tsr_chat_reset(c);
    tsr__free(c->msgs);
    tsr__free(c->media);
    tsr__free(c->cache);
    tsr_session_free(c->s);
    tsr__free(c);
}

void tsr_chat_reset(tsr_chat *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_msgs; i++) msg_clear(&c->msgs[i]);
    for (size_t i = 0; i < c->n_media; i++) media_clear(&c->media[i]);
    c->n_msgs = 0;
    c->n_media = 0;
    forget_cache(c);
}

size_t tsr_chat_n_messages(const tsr_chat *c) { return c ? c->n_msgs : 0; }
const tsr_session *tsr_chat_session(const tsr_chat *c) { return c ? c->s : NULL; }

static const char *kind_name(tsr_media_kind k) {
    return k == TSR_MEDIA_IMAGE ? "image" : k == TSR_MEDIA_AUDIO ? "audio" : "unknown";
}

/* Checks media item i against the part that takes it and the model, then copies it into
 * *dst. Encoded bytes are decoded once here so that undecodable media fails at add time. */
static tsr_status media_copy(const tsr_chat *c, size_t i, tsr_media_kind want,
                             const tsr_media *src, chat_media *dst, tsr_error *err) {
    memset(dst, 0, sizeof *dst);
    if (src->kind != want)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "media[%zu] is of kind %s, its part takes %s",
                        i, kind_name(src->kind), kind_name(want));
    if (!(tsr_model_media_kinds(c->model) & (1u << want)))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "media[%zu]: the %s model takes no %s input",
                        i, tsr_model_type(c->model), kind_name(want));
    dst->kind = want;
    if (src->data) {
        tsr_media_kind sniffed = tsr_media_sniff(src->data, src->len);
        if (sniffed != TSR_MEDIA_UNKNOWN && sniffed != want)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "media[%zu] holds %s data, its part is %s",
                            i, kind_name(sniffed), kind_name(want));
        tsr_status st;
        if (want == TSR_MEDIA_IMAGE) {
            tsr_image img = {0};
            st = tsr_image_decode(src->data, src->len, NULL, &img, NULL, err);
            tsr_image_free(&img);
        } else {
            tsr_audio au = {0};
            st = tsr_audio_decode(src->data, src->len, NULL, &au, NULL, err);
            tsr_audio_free(&au);
        }
        if (st) return st;
        dst->data = tsr__malloc(src->len ? src->len : 1);
        if (!dst->data) return TSR_FAIL(err, TSR_ERR_OOM, "copy of media[%zu]", i);
        memcpy(dst->data, src->data, src->len);
        dst->len = src->len;
        return TSR_OK;
    }
    dst->decoded = 1;
    if (want == TSR_MEDIA_IMAGE) {
        const tsr_image *im = src->image;
        if (!im || !im->data || im->width < 1 || im->height < 1 ||
            (im->channels != 3 && im->channels != 4))
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                            "media[%zu] has neither encoded data nor a decoded RGB / RGBA image", i);
        tsr_status st = tsr_image_alloc(&dst->image, im->width, im->height, im->channels, err);
        if (st) return st;
        memcpy(dst->image.data, im->data,
               (size_t)im->width * (size_t)im->height * (size_t)im->channels);
        return TSR_OK;
    }
    const tsr_audio *au = src->audio;
    if (!au || !au->samples || au->n_samples < 1)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                        "media[%zu] has neither encoded data nor decoded audio samples", i);
    if (au->sample_rate != 16000)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                        "media[%zu]: decoded audio must be 16 kHz mono, got %d Hz", i,
                        au->sample_rate);
    size_t bytes;
    if (!tsr__mul_size((size_t)au->n_samples, sizeof(float), &bytes))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "media[%zu]: %lld samples", i,
                        (long long)au->n_samples);
    dst->audio.samples = tsr__malloc(bytes);
    if (!dst->audio.samples) return TSR_FAIL(err, TSR_ERR_OOM, "copy of media[%zu]", i);
    memcpy(dst->audio.samples, au->samples, bytes);
    dst->audio.n_samples = au->n_samples;
    dst->audio.sample_rate = au->sample_rate;
    return TSR_OK;
}

static tsr_status msg_copy(const tsr_chat_message *src, chat_msg *dst, tsr_error *err) {
    memset(dst, 0, sizeof *dst);
    dst->role = dup_str(src->role);
    dst->content = src->content ? dup_str(src->content) : NULL;
    int oom = !dst->role || (src->content && !dst->content);
    if (!oom && src->parts && src->n_parts) {
        dst->parts = tsr__calloc(src->n_parts, sizeof *dst->parts);
        oom = !dst->parts;
        for (size_t i = 0; !oom && i < src->n_parts; i++) {
            const tsr_chat_part *p = &src->parts[i];
            tsr_chat_part *q = &dst->parts[i];
            q->type = p->type;
            q->text = p->text ? dup_str(p->text) : NULL;
            q->format = p->format ? dup_str(p->format) : NULL;
            dst->n_parts = i + 1;
            oom = (p->text && !q->text) || (p->format && !q->format);
        }
    }
    if (oom) {
        msg_clear(dst);
        return TSR_FAIL(err, TSR_ERR_OOM, "copy of the message");
    }
    return TSR_OK;
}

tsr_status tsr_chat_add(tsr_chat *c, const tsr_chat_message *message, const tsr_media *media,
                        size_t n_media, tsr_error *err) {
    if (!c || !message) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "chat and message are required");
    if (!message->role || !message->role[0])
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "message.role is required");
    if (n_media && !media)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "media is NULL with n_media %zu", n_media);
    if (message->n_parts && !message->parts)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "parts is NULL with n_parts %zu",
                        message->n_parts);
    size_t want = 0;
    for (size_t i = 0; message->parts && i < message->n_parts; i++) {
        const tsr_chat_part *p = &message->parts[i];
        if (p->type == TSR_CHAT_PART_TEXT) {
            if (!p->text)
                return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "parts[%zu] is text without text", i);
        } else if (p->type == TSR_CHAT_PART_IMAGE || p->type == TSR_CHAT_PART_AUDIO) {
            want++;
        } else {
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "parts[%zu] has unknown type %d", i,
                            (int)p->type);
        }
    }
    if (want != n_media)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                        "the message has %zu image / audio parts but %zu media items were given",
                        want, n_media);
    size_t need_media;
    if (!tsr__add_size(c->n_media, n_media, &need_media))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "too many media items");
    chat_msg *msgs = tsr__grow(c->msgs, &c->cap_msgs, c->n_msgs + 1, sizeof *msgs, 8);
    if (!msgs) return TSR_FAIL(err, TSR_ERR_OOM, "message list");
    c->msgs = msgs;
    if (need_media) {
        chat_media *mm = tsr__grow(c->media, &c->cap_media, need_media, sizeof *mm, 4);
        if (!mm) return TSR_FAIL(err, TSR_ERR_OOM, "media list");
        c->media = mm;
    }
    /* Media first (it may fail on the content), then the message; nothing is kept on error. */
    size_t k = 0;
    tsr_status st = TSR_OK;
    for (size_t i = 0; !st && message->parts && i < message->n_parts; i++) {
        tsr_chat_part_type t = message->parts[i].type;
        if (t == TSR_CHAT_PART_TEXT) continue;
        st = media_copy(c, k, t == TSR_CHAT_PART_IMAGE ? TSR_MEDIA_IMAGE : TSR_MEDIA_AUDIO,
                        &media[k], &c->media[c->n_media + k], err);
        if (!st) k++;
    }
    if (!st) st = msg_copy(message, &c->msgs[c->n_msgs], err);
    if (st) {
        for (size_t i = 0; i < k; i++) media_clear(&c->media[c->n_media + i]);
        return st;
    }
    c->n_msgs++;
    c->n_media += n_media;
    return TSR_OK;
}

/* Accumulates the streamed reply and forwards each piece to the caller's callback. */
typedef struct reply_text {
    char *buf;
    size_t len, cap;
    int oom;
    tsr_token_fn user_fn;
    void *user;
} reply_text;

static int on_reply_token(int32_t id, const char *text, size_t len, void *user) {
    reply_text *r = user;
    if (len) {
        char *b = tsr__grow(r->buf, &r->cap, r->len + len + 1, 1, 64);
        if (!b) {
            r->oom = 1;
            return 1;
        }
        r->buf = b;
        memcpy(r->buf + r->len, text, len);
        r->len += len;
        r->buf[r->len] = 0;
    }
    return r->user_fn ? r->user_fn(id, text, len, r->user) : 0;
}

/* Records the ids the session now holds: prompt ids[0..n_prompt) then the generated ids fed
 * back (n_past - n_prompt of them). */
static void remember_cache(tsr_chat *c, const int32_t *ids, int64_t n_prompt,
                           const tsr_token_ids *gen) {
    int64_t n_past = tsr_session_n_past(c->s);
    int64_t n_gen = n_past - n_prompt;
    if (n_gen < 0 || (size_t)n_gen > gen->n) {
        forget_cache(c); /* not what this bookkeeping expects: start afresh next turn */
        return;
    }
    int32_t *buf = tsr__grow(c->cache, &c->cap_cache, (size_t)n_past, sizeof *buf, 256);
    if (!buf) {
        forget_cache(c);
        return;
    }
    c->cache = buf;
    memcpy(buf, ids, (size_t)n_prompt * sizeof *buf);
    if (n_gen) memcpy(buf + n_prompt, gen->ids, (size_t)n_gen * sizeof *buf);
    c->n_cache = (size_t)n_past;
}

tsr_status tsr_chat_generate(tsr_chat *c, const tsr_generate_params *params, char **text,
                             tsr_token_ids *ids, tsr_usage *usage, tsr_error *err) {
    if (text) *text = NULL;
    if (ids) {
        ids->ids = NULL;
        ids->n = 0;
    }
    if (!c) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "chat is NULL");
    if (!c->n_msgs) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "the conversation is empty");
    tsr_generate_params gp = tsr_generate_params_default();
    if (params) memcpy(&gp, params, params->size < sizeof gp ? params->size : sizeof gp);
    gp.size = sizeof gp;

    /* Borrowed views of the stored conversation. */
    tsr_chat_message *msgs = tsr__calloc(c->n_msgs, sizeof *msgs);
    tsr_media *media = c->n_media ? tsr__calloc(c->n_media, sizeof *media) : NULL;
    if (!msgs || (c->n_media && !media)) {
        tsr__free(msgs);
        tsr__free(media);
        return TSR_FAIL(err, TSR_ERR_OOM, "conversation views");
    }
    for (size_t i = 0; i < c->n_msgs; i++) {
        msgs[i].role = c->msgs[i].role;
        msgs[i].content = c->msgs[i].content;
        msgs[i].parts = c->msgs[i].parts;
        msgs[i].n_parts = c->msgs[i].n_parts;
    }
    for (size_t i = 0; i < c->n_media; i++) {
        const chat_media *m = &c->media[i];
        media[i].kind = m->kind;
        media[i].data = m->data;
        media[i].len = m->len;
        media[i].image = m->decoded && m->kind == TSR_MEDIA_IMAGE ? &m->image : NULL;
        media[i].audio = m->decoded && m->kind == TSR_MEDIA_AUDIO ? &m->audio : NULL;
    }

    tsr_tensor_list *inputs = NULL;
    tsr_prompt *prompt = NULL;
    tsr_token_ids gen = {0};
    tsr_usage u;
    memset(&u, 0, sizeof u);
    reply_text reply = {0};
    chat_msg answer = {0};
    tsr_status st = tsr_processor_run_chat(c->proc, msgs, c->n_msgs, media, c->n_media, &inputs,
                                           err);
    tsr__free(msgs);
    tsr__free(media);
    if (!st) st = tsr_prompt_new(c->model, c->s, inputs, &prompt, err);
    tsr_tensor_list_free(inputs);
    if (st) {
        tsr_prompt_free(prompt);
        return st;
    }
    const tsr_decode_input *full = tsr_prompt_input(prompt);

    /* Longest prefix of the prompt the KV cache already holds. Media changes the MLlama
     * cross-attention states, which the session keeps for all tokens: then start afresh. So
     * does a repetition penalty, which generate() applies over every prompt id while the
     * sampler only sees the ids decoded by this call. */
    size_t k = 0;
    int has_cross = full->cross_states != NULL;
    int reuse = has_cross ? c->cache_cross && c->cache_media == c->n_media : !c->cache_cross;
    if (gp.sampling.repetition_penalty != 1.0f) reuse = 0;
    if (reuse) {
        size_t lim = c->n_cache < (size_t)full->n_ids ? c->n_cache : (size_t)full->n_ids;
        while (k < lim && c->cache[k] == full->ids[k]) k++;
    }
    /* At least one token is decoded (its logits start the reply), and a media span is
     * decoded whole. */
    if (k == (size_t)full->n_ids && k) k--;
    for (size_t i = 0; i < full->n_spans; i++) {
        const tsr_embed_span *sp = &full->spans[i];
        if ((int64_t)k > sp->start && (int64_t)k < sp->start + sp->n_tokens) k = (size_t)sp->start;
    }
    /* A prompt that departs from the cache inside the cached ids keeps the common prefix. */
    if (k < c->n_cache) {
        if (k == 0 || tsr__session_truncate(c->s, (int64_t)k, NULL) != TSR_OK) {
            forget_cache(c);
            k = 0;
        } else {
            c->n_cache = k;
        }
    }
    tsr_decode_input in;
    st = tsr_prompt_input_from(prompt, (int64_t)k, &in, err);
    if (!st && k && c->cache_cross) {
        in.cross_states = NULL; /* already in the session */
    }
    if (!st) {
        reply.user_fn = gp.on_token;
        reply.user = gp.user;
        gp.on_token = on_reply_token;
        gp.user = &reply;
        if (!gp.tokenizer) gp.tokenizer = tsr_processor_tokenizer(c->proc);
        st = tsr_session_generate(c->s, &in, &gp, &gen, &u, err);
        if (!st && reply.oom) st = TSR_FAIL(err, TSR_ERR_OOM, "reply text");
        if (st) {
            forget_cache(c);
        } else {
            remember_cache(c, full->ids, full->n_ids, &gen);
            c->cache_media = c->n_media;
            c->cache_cross = has_cross || (k && c->cache_cross);
        }
    }
    /* The reply becomes the assistant message. */
    if (!st) {
        tsr_chat_message am = {"assistant", reply.buf ? reply.buf : "", NULL, 0};
        chat_msg *grown = tsr__grow(c->msgs, &c->cap_msgs, c->n_msgs + 1, sizeof *grown, 8);
        if (!grown) st = TSR_FAIL(err, TSR_ERR_OOM, "message list");
        else c->msgs = grown;
        if (!st) st = msg_copy(&am, &answer, err);
    }
    if (!st && text) {
        *text = dup_str(reply.buf ? reply.buf : "");
        if (!*text) st = TSR_FAIL(err, TSR_ERR_OOM, "reply text");
    }
    if (st) {
        msg_clear(&answer);
        tsr_token_ids_free(&gen);
        tsr__free(reply.buf);
        tsr_prompt_free(prompt);
        return st;
    }
    c->msgs[c->n_msgs++] = answer;
    if (usage) {
        *usage = u;
        usage->prompt_tokens = full->n_ids;
        usage->cached_tokens = (int64_t)k;
        usage->image_ms = tsr_prompt_image_ms(prompt);
        usage->audio_ms = tsr_prompt_audio_ms(prompt);
    }
    if (ids) *ids = gen;
    else tsr_token_ids_free(&gen);
    tsr__free(reply.buf);
    tsr_prompt_free(prompt);
    return TSR_OK;
}
