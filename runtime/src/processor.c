/*
 * The generic processor pipeline: chat template -> media tensors and placeholder
 * replacements (the family's ops, vision/family.h) -> substitution -> tokenization ->
 * input_ids / attention_mask -> the family's id-dependent outputs.
 */
#include <stdio.h>
#include <string.h>

#include "family.h"
#include "tessera_json.h"

struct tsr_processor {
    char model_type[64];
    const tsr__family_ops *ops;
    void *state;
    tsr_tokenizer *tok;
    tsr_chat_template *tmpl; /* NULL when the directory has none or it failed to load */
    tsr_error tmpl_err;      /* why tmpl is NULL */
    tsr_limits limits;
    int64_t now_unix; /* for templates that print the date; 0: now */
};

tsr_processor_params tsr_processor_params_default(void) {
    tsr_processor_params p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.limits = tsr_limits_default();
    return p;
}

void tsr_processor_free(tsr_processor *p) {
    if (!p) return;
    if (p->ops && p->state) p->ops->free_state(p->state);
    tsr_tokenizer_free(p->tok);
    tsr_chat_template_free(p->tmpl);
    tsr__free(p);
}

const char *tsr_processor_model_type(const tsr_processor *p) { return p ? p->model_type : ""; }

const tsr_tokenizer *tsr_processor_tokenizer(const tsr_processor *p) { return p ? p->tok : NULL; }

/* Loads model_dir/name if it exists; *out stays NULL when it does not. */
static tsr_status load_optional_json(const char *dir, const char *name, cJSON **out,
                                     tsr_error *err) {
    char path[4096];
    *out = NULL;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "model directory path is too long");
    FILE *f = fopen(path, "rb");
    if (!f) return TSR_OK;
    fclose(f);
    return tsr__json_load(path, 0, out, err);
}

typedef struct loaded_configs {
    cJSON *config, *preprocessor, *processor, *tokenizer;
} loaded_configs;

static void free_configs(loaded_configs *c) {
    cJSON_Delete(c->config);
    cJSON_Delete(c->preprocessor);
    cJSON_Delete(c->processor);
    cJSON_Delete(c->tokenizer);
}

static tsr_status load_configs(const char *dir, loaded_configs *c, tsr_error *err) {
    tsr_status st = load_optional_json(dir, "config.json", &c->config, err);
    if (!st && !c->config)
        st = TSR_FAIL(err, TSR_ERR_IO, "'%s' has no config.json (it names the model_type)", dir);
    if (!st) st = load_optional_json(dir, "preprocessor_config.json", &c->preprocessor, err);
    if (!st) st = load_optional_json(dir, "processor_config.json", &c->processor, err);
    if (!st) st = load_optional_json(dir, "tokenizer_config.json", &c->tokenizer, err);
    return st;
}

/* The processor of a model that takes no media: chat template and tokenizer only. */
static tsr_status text_load(const tsr__model_configs *cfg, void **state, tsr_error *err) {
    (void)cfg;
    (void)err;
    *state = NULL;
    return TSR_OK;
}
static void text_free(void *state) { (void)state; }
static const tsr__family_ops TEXT_OPS = {"text", NULL, NULL, 0, text_load, text_free,
                                         NULL, NULL, NULL, NULL};

/* Finds the family of config.json's model_type (text_only: none) and builds the processor
 * around it. */
static tsr_status load_with_configs(const char *model_dir, const tsr_processor_params *params,
                                    const loaded_configs *cfg, int text_only, tsr_processor *p,
                                    tsr_error *err) {
    const char *model_type = NULL;
    tsr_status st = tsr__json_string(cfg->config, "model_type", NULL, &model_type,
                                     "config.json", err);
    if (st) return st;
    if (!model_type)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "config.json in '%s' has no \"model_type\"",
                        model_dir);
    p->ops = text_only ? &TEXT_OPS : tsr__family_find(model_type);
    if (!p->ops) {
        char names[256];
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "model_type \"%s\" has no Tessera processor (supported: %s)", model_type,
                        tsr__family_names(names, sizeof names));
    }
    snprintf(p->model_type, sizeof p->model_type, "%.63s", model_type);
    p->limits = params->limits;
    p->now_unix = params->now_unix;
    tsr__model_configs mc = {model_dir, cfg->config, cfg->preprocessor, cfg->processor,
                             cfg->tokenizer};
    st = p->ops->load(&mc, &p->state, err);
    if (!st) st = tsr_tokenizer_load(model_dir, &p->tok, err);
    if (st) return st;
    tsr_chat_template_params tp = tsr_chat_template_params_default();
    tp.allow_unknown = params->allow_unknown_template;
    if (tsr_chat_template_load(model_dir, &tp, &p->tmpl, &p->tmpl_err) != TSR_OK)
        p->tmpl = NULL; /* only chat runs need it; they report tmpl_err */
    return TSR_OK;
}

static tsr_status processor_load(const char *model_dir, const tsr_processor_params *params,
                                 int text_only, tsr_processor **out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!model_dir) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "model_dir is NULL");
    tsr_processor_params defaults = tsr_processor_params_default();
    if (!params) params = &defaults;
    tsr_processor *p = tsr__calloc(1, sizeof *p);
    if (!p) return TSR_FAIL(err, TSR_ERR_OOM, "out of memory");
    loaded_configs cfg = {0};
    tsr_status st = load_configs(model_dir, &cfg, err);
    if (!st) st = load_with_configs(model_dir, params, &cfg, text_only, p, err);
    free_configs(&cfg);
    if (st) {
        tsr_processor_free(p);
        return st;
    }
    *out = p;
    return TSR_OK;
}

tsr_status tsr_processor_load(const char *model_dir, const tsr_processor_params *params,
                              tsr_processor **out, tsr_error *err) {
    return processor_load(model_dir, params, 0, out, err);
}

tsr_status tsr__processor_load_text(const char *model_dir, const tsr_processor_params *params,
                                    tsr_processor **out, tsr_error *err) {
    return processor_load(model_dir, params, 1, out, err);
}

uint32_t tsr__processor_media_kinds(const tsr_processor *p) {
    if (!p) return 0;
    return (p->ops->process_images ? 1u << TSR_MEDIA_IMAGE : 0u) |
           (p->ops->process_audio ? 1u << TSR_MEDIA_AUDIO : 0u);
}

/* ---- media --------------------------------------------------------------------------- */

typedef struct media_set {
    tsr_image *images; /* RGB8, owned unless borrowed[i] (the caller's own RGB image) */
    bool *borrowed;
    int64_t n_images;
    tsr_audio *audio; /* 16 kHz mono, owned */
    int64_t n_audio;
} media_set;

static void media_free(media_set *m) {
    for (int64_t i = 0; i < m->n_images; i++)
        if (!m->borrowed[i]) tsr_image_free(&m->images[i]);
    for (int64_t i = 0; i < m->n_audio; i++) tsr_audio_free(&m->audio[i]);
    tsr__free(m->images);
    tsr__free(m->borrowed);
    tsr__free(m->audio);
    memset(m, 0, sizeof *m);
}

/* RGB8 copy of src: alpha composited over white (transformers' convert_rgb) or dropped
 * (Pillow convert("RGB")), as the family's processor does. Chat runs drop an alpha channel
 * (RGBA, LA files): apply_chat_template has the image processor open a conversation's images
 * with load_image, which ends in convert("RGB"). A transparency chunk (P, RGB, L files with
 * tRNS) survives that conversion as info["transparency"] and convert_rgb still composites
 * it, so decode_image passes drop_alpha only for alpha channels. */
static tsr_status to_rgb(const tsr_processor *p, const tsr_image *src, int drop_alpha,
                         tsr_image *dst, tsr_error *err) {
    if (!src->data || src->width <= 0 || src->height <= 0 ||
        (src->channels != 3 && src->channels != 4))
        return tsr__fail(err, TSR_ERR_INVALID_ARG, "image has no pixels or %d channels "
                         "(3 or 4 expected)", src->channels);
    if (src->channels == 3 || !(p->ops->drop_alpha || drop_alpha))
        return tsr_image_composite_white(src, dst, err);
    tsr_status st = tsr_image_alloc(dst, src->width, src->height, 3, err);
    size_t n = (size_t)src->width * (size_t)src->height;
    for (size_t i = 0; !st && i < n; i++) memcpy(dst->data + 3 * i, src->data + 4 * i, 3);
    return st;
}

/* *borrowed is set when dst is the caller's RGB image itself (not to be freed). */
static tsr_status decode_image(const tsr_processor *p, const tsr_media *m, int drop_alpha,
                               tsr_image *dst, bool *borrowed, tsr_error *err) {
    *borrowed = false;
    if (!m->data) {
        const tsr_image *src = m->image ? m->image : &(tsr_image){0};
        if (src->channels == 3 && src->data && src->width > 0 && src->height > 0) {
            *dst = *src;
            *borrowed = true;
            return TSR_OK;
        }
        return to_rgb(p, src, drop_alpha, dst, err);
    }
    tsr_image_decode_params dp = tsr_image_decode_params_default();
    dp.limits = p->limits;
    tsr_image_info info;
    memset(&info, 0, sizeof info);
    /* Without alpha or transparency the RGB decode is the answer: no RGBA pass, no copy. */
    tsr_status st = tsr_image_probe(m->data, m->len, &dp, &info, err);
    if (st) return st;
    if (!info.has_alpha) return tsr_image_decode(m->data, m->len, &dp, dst, NULL, err);
    dp.channels = 4;
    tsr_image rgba = {0};
    st = tsr_image_decode(m->data, m->len, &dp, &rgba, &info, err);
    if (!st) st = to_rgb(p, &rgba, drop_alpha && strchr(info.mode, 'A'), dst, err);
    tsr_image_free(&rgba);
    return st;
}

static tsr_status decode_audio(const tsr_processor *p, const tsr_media *m, tsr_audio *dst,
                               tsr_error *err) {
    if (m->data) {
        tsr_audio_decode_params ap = tsr_audio_decode_params_default();
        ap.sample_rate = 16000;
        ap.limits = p->limits;
        return tsr_audio_decode(m->data, m->len, &ap, dst, NULL, err);
    }
    const tsr_audio *a = m->audio;
    if (!a || !a->samples || a->n_samples < 0)
        return tsr__fail(err, TSR_ERR_INVALID_ARG, "audio item has no samples");
    if (a->sample_rate != 16000)
        return tsr__fail(err, TSR_ERR_INVALID_ARG,
                         "decoded audio is at %d Hz; the processors take 16000 Hz (decode "
                         "with tsr_audio_decode, which resamples as librosa does)",
                         a->sample_rate);
    size_t bytes;
    if (!tsr__mul_size((size_t)a->n_samples, sizeof(float), &bytes))
        return tsr__fail(err, TSR_ERR_LIMIT, "audio item is too long");
    dst->samples = tsr__malloc(bytes);
    if (!dst->samples) return tsr__fail(err, TSR_ERR_OOM, "out of memory");
    memcpy(dst->samples, a->samples, bytes);
    dst->n_samples = a->n_samples;
    dst->sample_rate = a->sample_rate;
    return TSR_OK;
}

static tsr_status decode_media(const tsr_processor *p, const tsr_media *media, size_t n,
                               int drop_alpha, media_set *out, tsr_error *err) {
    memset(out, 0, sizeof *out);
    if (n && !media) return tsr__fail(err, TSR_ERR_INVALID_ARG, "media is NULL");
    out->images = tsr__calloc(n ? n : 1, sizeof *out->images);
    out->borrowed = tsr__calloc(n ? n : 1, sizeof *out->borrowed);
    out->audio = tsr__calloc(n ? n : 1, sizeof *out->audio);
    if (!out->images || !out->borrowed || !out->audio)
        return tsr__fail(err, TSR_ERR_OOM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        tsr_error local = {0};
        tsr_status st;
        if (media[i].kind == TSR_MEDIA_IMAGE) {
            st = decode_image(p, &media[i], drop_alpha, &out->images[out->n_images],
                              &out->borrowed[out->n_images], &local);
            if (!st) out->n_images++;
        } else if (media[i].kind == TSR_MEDIA_AUDIO) {
            if (!p->ops->process_audio)
                return tsr__fail(err, TSR_ERR_UNSUPPORTED,
                                 "media[%zu]: %s models take no audio", i, p->model_type);
            st = decode_audio(p, &media[i], &out->audio[out->n_audio], &local);
            if (!st) out->n_audio++;
        } else {
            return tsr__fail(err, TSR_ERR_INVALID_ARG, "media[%zu] has unknown kind %d", i,
                             (int)media[i].kind);
        }
        if (st) return tsr__fail(err, st, "media[%zu]: %s", i, local.message);
    }
    if (out->n_images && !p->ops->process_images)
        return tsr__fail(err, TSR_ERR_UNSUPPORTED, "%s models take no images", p->model_type);
    return TSR_OK;
}

/* ---- placeholders -------------------------------------------------------------------- */

static bool at(const char *s, const char *token) {
    return token && *token && !strncmp(s, token, strlen(token));
}

/* Counts image and audio placeholders, scanning left to right without overlaps. */
static void count_placeholders(const tsr__family_ops *ops, const char *prompt, int64_t *images,
                               int64_t *audio) {
    *images = *audio = 0;
    for (const char *s = prompt; *s;) {
        if (at(s, ops->image_placeholder)) {
            (*images)++;
            s += strlen(ops->image_placeholder);
        } else if (at(s, ops->audio_placeholder)) {
            (*audio)++;
            s += strlen(ops->audio_placeholder);
        } else {
            s++;
        }
    }
}

/* Builds the prompt with the i-th placeholder of each kind replaced by its replacement. */
static tsr_status substitute(const tsr__family_ops *ops, const char *prompt,
                             const tsr__replacements *img, const tsr__replacements *aud,
                             char **out, size_t *out_len, tsr_error *err) {
    size_t cap = strlen(prompt) + 1;
    for (int64_t i = 0; i < img->count; i++)
        if (!tsr__add_size(cap, strlen(img->text[i]), &cap))
            return tsr__fail(err, TSR_ERR_LIMIT, "expanded prompt is too long");
    for (int64_t i = 0; i < aud->count; i++)
        if (!tsr__add_size(cap, strlen(aud->text[i]), &cap))
            return tsr__fail(err, TSR_ERR_LIMIT, "expanded prompt is too long");
    char *buf = tsr__malloc(cap), *o = buf;
    if (!buf) return tsr__fail(err, TSR_ERR_OOM, "out of memory");
    int64_t ni = 0, na = 0;
    for (const char *s = prompt; *s;) {
        const char *r = NULL;
        size_t skip = 1;
        if (at(s, ops->image_placeholder) && ni < img->count) {
            r = img->text[ni++];
            skip = strlen(ops->image_placeholder);
        } else if (at(s, ops->audio_placeholder) && na < aud->count) {
            r = aud->text[na++];
            skip = strlen(ops->audio_placeholder);
        }
        if (r) {
            size_t n = strlen(r);
            memcpy(o, r, n);
            o += n;
        } else {
            memcpy(o, s, skip);
            o += skip;
        }
        s += skip;
    }
    *o = 0;
    *out = buf;
    *out_len = (size_t)(o - buf);
    return TSR_OK;
}

/* input_ids and attention_mask, [1, n] int64 as the HF processors return them. */
static tsr_status add_ids(tsr_tensor_list *list, const tsr_token_ids *ids, tsr_error *err) {
    int64_t shape[2] = {1, (int64_t)ids->n};
    tsr_tensor t_ids, t_mask;
    tsr_status st = tsr_tensor_alloc(&t_ids, TSR_DTYPE_I64, 2, shape, err);
    if (st) return st;
    st = tsr_tensor_alloc(&t_mask, TSR_DTYPE_I64, 2, shape, err);
    if (st) {
        tsr_tensor_free(&t_ids);
        return st;
    }
    for (size_t i = 0; i < ids->n; i++) {
        ((int64_t *)t_ids.data)[i] = ids->ids[i];
        ((int64_t *)t_mask.data)[i] = 1;
    }
    st = tsr_tensor_list_add(list, "input_ids", &t_ids, err);
    if (!st) st = tsr_tensor_list_add(list, "attention_mask", &t_mask, err);
    tsr_tensor_free(&t_ids);
    tsr_tensor_free(&t_mask);
    return st;
}

/* Outputs a family hands to its own finish hook that the HF processor pops before returning
 * (MllamaProcessor: num_tiles, which the cross-attention mask is built from). */
static const char *const POPPED_OUTPUTS[] = {"num_tiles"};

static tsr_status drop_popped(tsr_tensor_list **list, tsr_error *err) {
    int any = 0;
    for (size_t k = 0; k < sizeof POPPED_OUTPUTS / sizeof *POPPED_OUTPUTS; k++)
        any |= tsr_tensor_list_get(*list, POPPED_OUTPUTS[k]) != NULL;
    if (!any) return TSR_OK;
    tsr_tensor_list *kept = NULL;
    tsr_status st = tsr_tensor_list_new(&kept, err);
    for (int64_t i = 0; !st && i < tsr_tensor_list_count(*list); i++) {
        const char *name = tsr_tensor_list_name(*list, i);
        int popped = 0;
        for (size_t k = 0; k < sizeof POPPED_OUTPUTS / sizeof *POPPED_OUTPUTS; k++)
            popped |= !strcmp(name, POPPED_OUTPUTS[k]);
        if (popped) continue;
        tsr_tensor t = *tsr_tensor_list_at(*list, i);
        st = tsr_tensor_list_add(kept, name, &t, err);
        if (!st) memset((void *)tsr_tensor_list_at(*list, i), 0, sizeof t);
    }
    if (st) {
        tsr_tensor_list_free(kept);
        return st;
    }
    tsr_tensor_list_free(*list);
    *list = kept;
    return TSR_OK;
}

/* How a prompt is run: tokenizer special tokens, chat-run image rules, and for chat runs the
 * message index of every audio item (NULL otherwise). */
typedef struct run_opts {
    int add_special;
    int chat;
    const int64_t *audio_groups;
} run_opts;

static tsr_status run_prepared(const tsr_processor *p, const char *prompt, const run_opts *o,
                               const tsr_media *media, size_t n_media, tsr_tensor_list **out,
                               tsr_error *err) {
    media_set m;
    tsr_tensor_list *media_out = NULL, *list = NULL;
    tsr__replacements img = {0}, aud = {0};
    tsr_token_ids ids = {0};
    char *expanded = NULL;
    size_t expanded_len = 0;
    int64_t want_images, want_audio;
    count_placeholders(p->ops, prompt, &want_images, &want_audio);

    tsr_status st = decode_media(p, media, n_media, o->chat, &m, err);
    if (!st && (m.n_images != want_images || m.n_audio != want_audio))
        st = tsr__fail(err, TSR_ERR_INVALID_ARG,
                       "the prompt has %lld image and %lld audio placeholders but %lld images "
                       "and %lld audio clips were given",
                       (long long)want_images, (long long)want_audio, (long long)m.n_images,
                       (long long)m.n_audio);
    if (!st) st = tsr_tensor_list_new(&list, err);
    if (!st) st = tsr_tensor_list_new(&media_out, err);
    if (!st && m.n_images)
        st = p->ops->process_images(p->state, m.images, m.n_images, media_out, &img, err);
    if (!st && m.n_audio)
        st = p->ops->process_audio(p->state, m.audio, m.n_audio, o->audio_groups, media_out,
                                   &aud, err);
    if (!st && (img.count != m.n_images || aud.count != m.n_audio))
        st = tsr__fail(err, TSR_ERR_INTERNAL, "%s processor returned %lld/%lld replacements",
                       p->model_type, (long long)img.count, (long long)aud.count);
    if (!st) st = substitute(p->ops, prompt, &img, &aud, &expanded, &expanded_len, err);
    if (!st) st = tsr_tokenizer_encode(p->tok, expanded, expanded_len, o->add_special, &ids, err);
    if (!st) st = add_ids(list, &ids, err);
    /* Media tensors follow the text ones, as in the processors' BatchFeature. */
    for (int64_t i = 0; !st && i < tsr_tensor_list_count(media_out); i++) {
        tsr_tensor t = *tsr_tensor_list_at(media_out, i);
        st = tsr_tensor_list_add(list, tsr_tensor_list_name(media_out, i), &t, err);
        if (!st) memset((void *)tsr_tensor_list_at(media_out, i), 0, sizeof t);
    }
    if (!st && p->ops->finish) st = p->ops->finish(p->state, ids.ids, (int64_t)ids.n, list, err);
    if (!st) st = drop_popped(&list, err);

    tsr__free(expanded);
    tsr_token_ids_free(&ids);
    tsr__replacements_free(&img);
    tsr__replacements_free(&aud);
    tsr_tensor_list_free(media_out);
    media_free(&m);
    if (st) {
        tsr_tensor_list_free(list);
        return st;
    }
    *out = list;
    return TSR_OK;
}

static tsr_status run(const tsr_processor *p, const char *prompt, const run_opts *o,
                      const tsr_media *media, size_t n_media, tsr_tensor_list **out,
                      tsr_error *err) {
    if (!p->ops->prepare_prompt) return run_prepared(p, prompt, o, media, n_media, out, err);
    char *prepared = NULL;
    tsr_status st = p->ops->prepare_prompt(p->state, prompt, &prepared, err);
    if (!st) st = run_prepared(p, prepared, o, media, n_media, out, err);
    tsr__free(prepared);
    return st;
}

tsr_status tsr_processor_run_prompt(const tsr_processor *p, const char *prompt,
                                    int add_special_tokens, const tsr_media *media,
                                    size_t n_media, tsr_tensor_list **out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!p || !prompt) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "processor or prompt is NULL");
    run_opts o = {add_special_tokens != 0, 0, NULL};
    return run(p, prompt, &o, media, n_media, out, err);
}

/* The message index of every audio part, in order (MiniCPM-o's audio_parts). */
static tsr_status audio_groups(const tsr_chat_message *messages, size_t n, int64_t **out,
                               tsr_error *err) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; messages[i].parts && k < messages[i].n_parts; k++)
            count += messages[i].parts[k].type == TSR_CHAT_PART_AUDIO;
    *out = tsr__malloc((count ? count : 1) * sizeof **out);
    if (!*out) return TSR_FAIL(err, TSR_ERR_OOM, "out of memory");
    size_t j = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; messages[i].parts && k < messages[i].n_parts; k++)
            if (messages[i].parts[k].type == TSR_CHAT_PART_AUDIO) (*out)[j++] = (int64_t)i;
    return TSR_OK;
}

tsr_status tsr_processor_run_chat(const tsr_processor *p, const tsr_chat_message *messages,
                                  size_t n_messages, const tsr_media *media, size_t n_media,
                                  tsr_tensor_list **out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!p || (!messages && n_messages))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "processor or messages is NULL");
    if (!p->tmpl)
        return tsr__fail(err, p->tmpl_err.status ? p->tmpl_err.status : TSR_ERR_UNSUPPORTED,
                         "tsr_processor_run_chat: no usable chat template: %s",
                         p->tmpl_err.message);
    char *prompt = NULL;
    tsr_chat_render_params rp = tsr_chat_render_params_default();
    rp.now_unix = p->now_unix;
    tsr_status st = tsr_chat_template_render(p->tmpl, messages, n_messages, &rp, &prompt, NULL,
                                             err);
    /* transformers 5 (ProcessorMixin.apply_chat_template, tokenize=True) passes
     * add_special_tokens=False only when the rendered prompt starts with the tokenizer's
     * bos_token; otherwise the processor's default applies and the post-processor runs (a
     * template without BOS, such as llava-v1.6-mistral's, gets one from the tokenizer). */
    int64_t *groups = NULL;
    if (!st) st = audio_groups(messages, n_messages, &groups, err);
    if (!st) {
        const char *bos = tsr_tokenizer_id_to_token(p->tok, tsr_tokenizer_bos_id(p->tok));
        run_opts o = {!(bos && *bos && !strncmp(prompt, bos, strlen(bos))), 1, groups};
        st = run(p, prompt, &o, media, n_media, out, err);
    }
    tsr__free(groups);
    tsr_chat_string_free(prompt);
    return st;
}
