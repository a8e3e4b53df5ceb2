/* Chat templates: finding a checkpoint's template, recognising it, and rendering a
 * conversation with it exactly as transformers' apply_chat_template does. */
#include "jinja.h"

#include <stdio.h>
#include <string.h>

#define MAX_TEMPLATE_FILE (8u << 20)
#define MAX_MESSAGES_JSON (64u << 20)

enum { KIND_CHAT, KIND_REFUSE, KIND_MINICPMO_TTS };

/* Fingerprints (FNV-1a 64 of the template text) of the official templates; the sources are
 * named in tools/refgen/gen_chat.py, which computes these and the fixtures. */
static const struct known_template {
    uint64_t fingerprint;
    const char *family, *revision;
    int kind;
} KNOWN[] = {
    {0x71242f76359e71e8ull, "qwen2_vl", "qwen2-vl-instruct", KIND_CHAT},
    {0xa2508ede42936d6dull, "qwen2_vl", "qwen2-vl-base", KIND_REFUSE},
    {0x8cae050df880c380ull, "llava_next", "llava-v1.6-mistral-old", KIND_CHAT},
    {0xce7749786d3ffecdull, "llava_next", "llava-v1.6-mistral", KIND_CHAT},
    {0xd9ced1d7141b9c24ull, "llava_next", "llava-v1.6-vicuna", KIND_CHAT},
    {0x75798016d5e7bb96ull, "mllama", "llama-3.2-vision-2024", KIND_CHAT},
    {0xe96c5dd290b18a4bull, "mllama", "llama-3.2-vision", KIND_CHAT},
    {0x750951a567b4bba4ull, "mistral3", "mistral-small-3.1-2503", KIND_CHAT},
    {0x96b2dfbbcd0d85a7ull, "minicpmo", "minicpm-o-2.6-tts", KIND_MINICPMO_TTS},
};

struct tsr_chat_template {
    tsr__jinja_template *main;  /* NULL for MiniCPM-o when only its TTS template is known */
    tsr__jinja_template *audio; /* MiniCPM-o TTS template, or NULL */
    const char *family, *revision;
    uint64_t fingerprint;
    char *tokens[4]; /* bos, eos, unk, pad; owned, may be NULL */
};

static const char *const TOKEN_NAMES[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};

static uint64_t fnv1a64(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static const struct known_template *find_known(uint64_t fp) {
    for (size_t i = 0; i < sizeof KNOWN / sizeof KNOWN[0]; i++)
        if (KNOWN[i].fingerprint == fp) return &KNOWN[i];
    return NULL;
}

static char *dup_str(const char *s, size_t n) {
    char *d = tsr__malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

tsr_chat_template_params tsr_chat_template_params_default(void) {
    tsr_chat_template_params p = {0};
    p.size = sizeof p;
    return p;
}

tsr_chat_render_params tsr_chat_render_params_default(void) {
    tsr_chat_render_params p = {0};
    p.size = sizeof p;
    p.add_generation_prompt = 1;
    p.max_output_bytes = 16u << 20;
    return p;
}

void tsr_chat_template_free(tsr_chat_template *t) {
    if (!t) return;
    tsr__jinja_free(t->main);
    tsr__jinja_free(t->audio);
    for (int i = 0; i < 4; i++) tsr__free(t->tokens[i]);
    tsr__free(t);
}

const char *tsr_chat_template_family(const tsr_chat_template *t) {
    return t && t->family ? t->family : "unknown";
}
const char *tsr_chat_template_revision(const tsr_chat_template *t) {
    return t && t->revision ? t->revision : "unknown";
}
uint64_t tsr_chat_template_fingerprint(const tsr_chat_template *t) { return t ? t->fingerprint : 0; }

void tsr_chat_string_free(char *s) { tsr__free(s); }

/* Copies the caller's params, accepting older (smaller) structs. */
static tsr_chat_template_params read_params(const tsr_chat_template_params *p) {
    tsr_chat_template_params r = tsr_chat_template_params_default();
    if (p && p->size >= sizeof(size_t)) memcpy(&r, p, p->size < sizeof r ? p->size : sizeof r);
    r.size = sizeof r;
    return r;
}

static tsr_status set_token(tsr_chat_template *t, int i, const char *v, tsr_error *err) {
    if (!v) return TSR_OK;
    char *d = dup_str(v, strlen(v));
    if (!d) return TSR_FAIL(err, TSR_ERR_OOM, "cannot copy %s", TOKEN_NAMES[i]);
    tsr__free(t->tokens[i]);
    t->tokens[i] = d;
    return TSR_OK;
}

static tsr_status apply_param_tokens(tsr_chat_template *t, const tsr_chat_template_params *p,
                                     tsr_error *err) {
    const char *v[4] = {p->bos_token, p->eos_token, p->unk_token, p->pad_token};
    for (int i = 0; i < 4; i++)
        if (set_token(t, i, v[i], err) != TSR_OK) return err ? err->status : TSR_ERR_OOM;
    return TSR_OK;
}

/* Parses template text; recognises it; fills family/revision. is_audio: the MiniCPM-o TTS
 * template slot. */
static tsr_status add_template(tsr_chat_template *t, const char *text, size_t len, int is_audio,
                               int allow_unknown, tsr_error *err) {
    uint64_t fp = fnv1a64(text, len);
    const struct known_template *k = find_known(fp);
    if (k && k->kind == KIND_REFUSE)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "the %s template (%s) formats a single content list, not a conversation; "
                        "use the Instruct checkpoint", k->revision, k->family);
    if (is_audio && (!k || k->kind != KIND_MINICPMO_TTS) && !allow_unknown)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "MiniCPM-o TTS chat template with fingerprint %016llx is not a known "
                        "revision (set allow_unknown to render it anyway)", (unsigned long long)fp);
    if (!is_audio && !k && !allow_unknown)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "chat template with fingerprint %016llx is not one Tessera knows "
                        "(Qwen2-VL/2.5-VL, LLaVA-Next, MLlama, MiniCPM-o 2.6, Mistral-Small-3.1); "
                        "set allow_unknown to render it anyway", (unsigned long long)fp);
    tsr__jinja_template *jt = NULL;
    tsr_status st = tsr__jinja_parse(text, len, &jt, err);
    if (st != TSR_OK) return st;
    int tts = k && k->kind == KIND_MINICPMO_TTS;
    if (is_audio || (tts && !t->main && !t->audio)) {
        tsr__jinja_free(t->audio);
        t->audio = jt;
        if (tts || !t->family) { t->family = "minicpmo"; t->revision = k ? k->revision : NULL; }
        if (!is_audio) t->fingerprint = fp;
    } else {
        tsr__jinja_free(t->main);
        t->main = jt;
        t->fingerprint = fp;
        if (k) { t->family = k->family; t->revision = k->revision; }
        else if (!t->family) { t->family = NULL; t->revision = NULL; }
    }
    return TSR_OK;
}

tsr_status tsr_chat_template_from_string(const char *text, size_t len,
                                         const tsr_chat_template_params *params,
                                         tsr_chat_template **out, tsr_error *err) {
    if (out) *out = NULL;
    if (!out || (!text && len)) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "text or out is NULL");
    tsr_chat_template_params p = read_params(params);
    tsr_chat_template *t = tsr__calloc(1, sizeof *t);
    if (!t) return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate a chat template");
    tsr_status st = add_template(t, text ? text : "", len, 0, p.allow_unknown, err);
    if (st == TSR_OK && p.audio_template)
        st = add_template(t, p.audio_template, strlen(p.audio_template), 1, p.allow_unknown, err);
    if (st == TSR_OK) st = apply_param_tokens(t, &p, err);
    if (st != TSR_OK) {
        tsr_chat_template_free(t);
        return st;
    }
    *out = t;
    return TSR_OK;
}

/* ---- model directory -------------------------------------------------------------------- */

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fclose(f);
    return 1;
}

static tsr_status read_text(const char *dir, const char *name, char **text, size_t *len,
                            tsr_error *err) {
    char path[4096];
    *text = NULL;
    *len = 0;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "model directory path too long");
    uint8_t *data = NULL;
    tsr_status st = tsr__read_file(path, MAX_TEMPLATE_FILE, &data, len, err);
    *text = (char *)data;
    return st;
}

static tsr_status read_json(const char *dir, const char *name, cJSON **out, tsr_error *err) {
    *out = NULL;
    char *text;
    size_t len;
    tsr_status st = read_text(dir, name, &text, &len, err);
    if (st != TSR_OK) return st;
    *out = cJSON_ParseWithLength(text, len);
    tsr__free(text);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s/%s is not a JSON object", dir, name);
    }
    return TSR_OK;
}

/* A tokenizer_config value is a string or an AddedToken object {"content": ...}. */
static const char *token_string(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

static tsr_status tokens_from_json(tsr_chat_template *t, const cJSON *j, tsr_error *err) {
    for (int i = 0; i < 4; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, TOKEN_NAMES[i]);
        if (!v) continue;
        if (cJSON_IsNull(v)) { tsr__free(t->tokens[i]); t->tokens[i] = NULL; continue; }
        tsr_status st = set_token(t, i, token_string(v), err);
        if (st != TSR_OK) return st;
    }
    return TSR_OK;
}

/* The template string of a chat_template.json / tokenizer_config.json value: a string, or a
 * list of {"name", "template"} of which "default" is used. */
static const char *template_from_value(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsArray(v))
        for (const cJSON *e = v->child; e; e = e->next) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(n) && !strcmp(n->valuestring, "default") && cJSON_IsString(tp))
                return tp->valuestring;
        }
    return NULL;
}

/* MiniCPM-o keeps its TTS template in Python: `self.default_tts_chat_template = "..."`. */
static tsr_status minicpmo_tts_template(const char *dir, char **out, tsr_error *err) {
    *out = NULL;
    char *src = NULL;
    size_t len = 0;
    tsr_status st = read_text(dir, "modeling_minicpmo.py", &src, &len, err);
    if (st != TSR_OK) return st;
    static const char key[] = "self.default_tts_chat_template = \"";
    const char *at = strstr(src, key);
    if (!at) {
        tsr__free(src);
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "%s/modeling_minicpmo.py has no default_tts_chat_template", dir);
    }
    tsr__jbuf b = {0};
    const char *p = at + sizeof key - 1, *end = src + len;
    int closed = 0;
    for (; p < end && *p != '\n'; p++) {
        if (*p == '"') { closed = 1; break; }
        if (*p != '\\' || p + 1 >= end) { tsr__jbuf_put(&b, p, 1); continue; }
        char c = *++p;
        const char *r = c == 'n' ? "\n" : c == 't' ? "\t" : c == '\\' ? "\\" : c == '"' ? "\""
                      : c == '\'' ? "'" : NULL;
        if (!r) { /* other escapes do not occur in the known file */
            closed = 0;
            break;
        }
        tsr__jbuf_put(&b, r, 1);
    }
    tsr__free(src);
    if (!closed || b.failed) {
        int oom = b.failed;
        tsr__jbuf_free(&b);
        if (oom) return TSR_FAIL(err, TSR_ERR_OOM, "cannot copy the TTS template");
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "%s/modeling_minicpmo.py: default_tts_chat_template is not a simple "
                        "one-line string literal", dir);
    }
    if (!b.data) {
        b.data = tsr__malloc(1);
        if (!b.data) return TSR_FAIL(err, TSR_ERR_OOM, "cannot copy the TTS template");
        b.data[0] = 0;
    }
    *out = b.data;
    return TSR_OK;
}

tsr_status tsr_chat_template_load(const char *model_dir, const tsr_chat_template_params *params,
                                  tsr_chat_template **out, tsr_error *err) {
    if (out) *out = NULL;
    if (!model_dir || !out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "model_dir or out is NULL");
    tsr_chat_template_params p = read_params(params);
    tsr_chat_template *t = tsr__calloc(1, sizeof *t);
    if (!t) return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate a chat template");
    char path[4096];
    char *text = NULL, *tts = NULL;
    size_t len = 0;
    cJSON *tok = NULL, *stm = NULL, *ctj = NULL;
    tsr_status st = TSR_OK;

    /* special tokens: tokenizer_config.json, then special_tokens_map.json */
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    if (file_exists(path) && (st = read_json(model_dir, "tokenizer_config.json", &tok, err)) == TSR_OK)
        st = tokens_from_json(t, tok, err);
    snprintf(path, sizeof path, "%s/special_tokens_map.json", model_dir);
    if (st == TSR_OK && file_exists(path) &&
        (st = read_json(model_dir, "special_tokens_map.json", &stm, err)) == TSR_OK)
        st = tokens_from_json(t, stm, err);

    /* MiniCPM-o: the TTS template model.chat() uses for audio conversations */
    snprintf(path, sizeof path, "%s/modeling_minicpmo.py", model_dir);
    if (st == TSR_OK && file_exists(path) && (st = minicpmo_tts_template(model_dir, &tts, err)) == TSR_OK)
        st = add_template(t, tts, strlen(tts), 1, p.allow_unknown, err);

    /* the conversation template, in transformers' order */
    const char *main_text = NULL;
    size_t main_len = 0;
    snprintf(path, sizeof path, "%s/chat_template.jinja", model_dir);
    if (st == TSR_OK && file_exists(path)) {
        if ((st = read_text(model_dir, "chat_template.jinja", &text, &len, err)) == TSR_OK) {
            main_text = text;
            main_len = len;
        }
    } else if (st == TSR_OK) {
        snprintf(path, sizeof path, "%s/chat_template.json", model_dir);
        if (file_exists(path)) {
            if ((st = read_json(model_dir, "chat_template.json", &ctj, err)) == TSR_OK)
                main_text = template_from_value(cJSON_GetObjectItemCaseSensitive(ctj, "chat_template"));
        } else if (tok) {
            main_text = template_from_value(cJSON_GetObjectItemCaseSensitive(tok, "chat_template"));
        }
        if (main_text) main_len = strlen(main_text);
    }
    if (st == TSR_OK) {
        if (main_text) {
            /* MiniCPM-o's tokenizer template is not in the table; with its TTS template known
             * the checkpoint is still recognised, and the unknown main template is only used
             * (and refused unless allowed) for conversations without audio. */
            int minicpmo = t->audio && t->family && !strcmp(t->family, "minicpmo");
            st = add_template(t, main_text, main_len, 0, p.allow_unknown || minicpmo, err);
            if (st == TSR_OK && minicpmo && !find_known(t->fingerprint) && !p.allow_unknown) {
                tsr__jinja_free(t->main);
                t->main = NULL;
            }
            if (minicpmo && st == TSR_OK) { t->family = "minicpmo"; t->revision = "minicpm-o-2.6-tts"; }
        } else if (!t->audio) {
            st = TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                          "%s has no chat template (chat_template.jinja, chat_template.json or "
                          "tokenizer_config.json \"chat_template\")", model_dir);
        }
    }
    if (st == TSR_OK) st = apply_param_tokens(t, &p, err);
    tsr__free(text);
    tsr__free(tts);
    cJSON_Delete(tok);
    cJSON_Delete(stm);
    cJSON_Delete(ctj);
    if (st != TSR_OK) {
        tsr_chat_template_free(t);
        return st;
    }
    *out = t;
    return TSR_OK;
}

/* ---- rendering ----------------------------------------------------------------------------- */

static int family_is(const tsr_chat_template *t, const char *f) {
    return t->family && !strcmp(t->family, f);
}

static tsr_status check_messages(const tsr_chat_template *t, const tsr_chat_message *m, size_t n,
                                 int *has_audio, tsr_error *err) {
    *has_audio = 0;
    if (n && !m) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "messages is NULL");
    for (size_t i = 0; i < n; i++) {
        if (!m[i].role) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "messages[%zu].role is NULL", i);
        if (m[i].n_parts && !m[i].parts)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "messages[%zu].parts is NULL", i);
        for (size_t j = 0; m[i].parts && j < m[i].n_parts; j++) {
            const tsr_chat_part *p = &m[i].parts[j];
            if (p->type == TSR_CHAT_PART_TEXT && !p->text)
                return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "messages[%zu].content[%zu].text is NULL",
                                i, j);
            if (p->type != TSR_CHAT_PART_TEXT && p->type != TSR_CHAT_PART_IMAGE &&
                p->type != TSR_CHAT_PART_AUDIO)
                return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "messages[%zu].content[%zu].type %d",
                                i, j, (int)p->type);
            if (p->type == TSR_CHAT_PART_AUDIO) {
                *has_audio = 1;
                if (t->family && !family_is(t, "minicpmo"))
                    return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                                    "messages[%zu].content[%zu]: %s models take no audio input",
                                    i, j, t->family);
            }
        }
    }
    return TSR_OK;
}

/* model.chat() of MiniCPM-o: one string per message, parts joined by "\n". */
static cJSON *minicpmo_content(const tsr_chat_message *m) {
    if (!m->parts) return m->content ? cJSON_CreateString(m->content) : NULL;
    tsr__jbuf b = {0};
    for (size_t j = 0; j < m->n_parts; j++) {
        const tsr_chat_part *p = &m->parts[j];
        if (j) tsr__jbuf_put(&b, "\n", 1);
        tsr__jbuf_puts(&b, p->type == TSR_CHAT_PART_IMAGE ? "(<image>./</image>)"
                           : p->type == TSR_CHAT_PART_AUDIO ? "(<audio>./</audio>)" : p->text);
    }
    cJSON *s = b.failed ? NULL : cJSON_CreateString(b.data ? b.data : "");
    tsr__jbuf_free(&b);
    return s;
}

static cJSON *hf_content(const tsr_chat_message *m) {
    if (!m->parts) return m->content ? cJSON_CreateString(m->content) : NULL;
    cJSON *arr = cJSON_CreateArray();
    for (size_t j = 0; arr && j < m->n_parts; j++) {
        const tsr_chat_part *p = &m->parts[j];
        cJSON *o = cJSON_CreateObject();
        const char *type = p->type == TSR_CHAT_PART_TEXT ? "text"
                         : p->type == TSR_CHAT_PART_IMAGE ? "image" : "audio";
        if (!o || !cJSON_AddItemToArray(arr, o) || !cJSON_AddStringToObject(o, "type", type) ||
            (p->type == TSR_CHAT_PART_TEXT && !cJSON_AddStringToObject(o, "text", p->text))) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

static tsr_status build_vars(const tsr_chat_template *t, const tsr_chat_message *m, size_t n,
                             int minicpmo, int add_generation_prompt, cJSON **out,
                             tsr_error *err) {
    cJSON *vars = cJSON_CreateObject(), *msgs = vars ? cJSON_AddArrayToObject(vars, "messages") : NULL;
    int ok = msgs != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        ok = o && cJSON_AddItemToArray(msgs, o) && cJSON_AddStringToObject(o, "role", m[i].role);
        if (ok && (m[i].parts || m[i].content)) {
            cJSON *c = minicpmo ? minicpmo_content(&m[i]) : hf_content(&m[i]);
            ok = c && cJSON_AddItemToObject(o, "content", c);
        }
    }
    ok = ok && cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt) &&
         cJSON_AddNullToObject(vars, "tools") && cJSON_AddNullToObject(vars, "documents");
    for (int i = 0; ok && i < 4; i++)
        if (t->tokens[i]) ok = cJSON_AddStringToObject(vars, TOKEN_NAMES[i], t->tokens[i]) != NULL;
    if (!ok) {
        cJSON_Delete(vars);
        return TSR_FAIL(err, TSR_ERR_OOM, "cannot build the template variables");
    }
    *out = vars;
    return TSR_OK;
}

tsr_status tsr_chat_template_render(const tsr_chat_template *t, const tsr_chat_message *messages,
                                    size_t n, const tsr_chat_render_params *params, char **out,
                                    size_t *out_len, tsr_error *err) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || !out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "template or out is NULL");
    tsr_chat_render_params p = tsr_chat_render_params_default();
    if (params && params->size >= sizeof(size_t))
        memcpy(&p, params, params->size < sizeof p ? params->size : sizeof p);
    int has_audio;
    tsr_status st = check_messages(t, messages, n, &has_audio, err);
    if (st != TSR_OK) return st;
    int minicpmo = family_is(t, "minicpmo");
    const tsr__jinja_template *jt = t->main;
    if (minicpmo) {
        for (size_t i = 0; i < n; i++) {
            const char *r = messages[i].role;
            if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
                return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                                "messages[%zu].role '%s': MiniCPM-o takes system, user and "
                                "assistant messages", i, r);
            if (i == 0 && !strcmp(r, "assistant"))
                return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                                "MiniCPM-o: the first message must be user or system");
        }
        jt = has_audio ? t->audio : t->main;
        if (!jt)
            return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                            "MiniCPM-o renders conversations without audio with the tokenizer's "
                            "chat template, which is missing or not a known revision");
    }
    if (!jt) return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "no chat template to render with");
    cJSON *vars = NULL;
    if ((st = build_vars(t, messages, n, minicpmo, p.add_generation_prompt != 0, &vars, err)) != TSR_OK)
        return st;
    tsr__jinja_render_opts o = {tsr__jinja_limits_default(), p.now_unix};
    if (p.max_output_bytes) o.limits.max_output = p.max_output_bytes;
    st = tsr__jinja_render(jt, vars, &o, out, out_len, err);
    cJSON_Delete(vars);
    return st;
}

/* ---- OpenAI-style messages ---------------------------------------------------------------- */

struct tsr_chat_messages {
    cJSON *doc; /* owns the strings */
    tsr_chat_message *msgs;
    tsr_chat_part *parts;
    size_t n, n_parts;
};

size_t tsr_chat_messages_count(const tsr_chat_messages *m) { return m ? m->n : 0; }
const tsr_chat_message *tsr_chat_messages_items(const tsr_chat_messages *m) {
    return m ? m->msgs : NULL;
}
void tsr_chat_messages_free(tsr_chat_messages *m) {
    if (!m) return;
    cJSON_Delete(m->doc);
    tsr__free(m->msgs);
    tsr__free(m->parts);
    tsr__free(m);
}

static const char *obj_string(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static tsr_status parse_part(const cJSON *e, size_t i, size_t j, tsr_chat_part *p, tsr_error *err) {
    const char *type = obj_string(e, "type");
    if (!cJSON_IsObject(e) || !type)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "messages[%zu].content[%zu] needs a string \"type\"",
                        i, j);
    memset(p, 0, sizeof *p);
    if (!strcmp(type, "text")) {
        p->type = TSR_CHAT_PART_TEXT;
        if (!(p->text = obj_string(e, "text")))
            return TSR_FAIL(err, TSR_ERR_FORMAT, "messages[%zu].content[%zu].text is not a string",
                            i, j);
    } else if (!strcmp(type, "image_url") || !strcmp(type, "image")) {
        p->type = TSR_CHAT_PART_IMAGE;
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(e, "image_url");
        p->text = cJSON_IsString(u) ? u->valuestring : cJSON_IsObject(u) ? obj_string(u, "url") : NULL;
        if (!p->text) p->text = obj_string(e, "url");
        if (!strcmp(type, "image_url") && !p->text)
            return TSR_FAIL(err, TSR_ERR_FORMAT, "messages[%zu].content[%zu].image_url has no url",
                            i, j);
    } else if (!strcmp(type, "input_audio") || !strcmp(type, "audio")) {
        p->type = TSR_CHAT_PART_AUDIO;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(e, "input_audio");
        if (cJSON_IsObject(a)) {
            p->text = obj_string(a, "data");
            p->format = obj_string(a, "format");
        }
        if (!strcmp(type, "input_audio") && !p->text)
            return TSR_FAIL(err, TSR_ERR_FORMAT, "messages[%zu].content[%zu].input_audio has no data",
                            i, j);
    } else {
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "messages[%zu].content[%zu].type '%s'", i, j, type);
    }
    return TSR_OK;
}

tsr_status tsr_chat_messages_parse_json(const char *json, size_t len, tsr_chat_messages **out,
                                        tsr_error *err) {
    if (out) *out = NULL;
    if (!out || (!json && len)) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "json or out is NULL");
    if (len > MAX_MESSAGES_JSON)
        return TSR_FAIL(err, TSR_ERR_LIMIT, "messages JSON has %zu bytes, limit is %u", len,
                        MAX_MESSAGES_JSON);
    tsr_chat_messages *m = tsr__calloc(1, sizeof *m);
    if (!m) return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate messages");
    tsr_status st = TSR_OK;
    m->doc = cJSON_ParseWithLength(json ? json : "", len);
    const cJSON *arr = m->doc;
    if (cJSON_IsObject(arr)) arr = cJSON_GetObjectItemCaseSensitive(arr, "messages");
    if (!m->doc) st = TSR_FAIL(err, TSR_ERR_FORMAT, "messages are not valid JSON");
    else if (!cJSON_IsArray(arr))
        st = TSR_FAIL(err, TSR_ERR_FORMAT, "expected an array of messages or {\"messages\": [...]}");
    size_t n = 0, n_parts = 0;
    for (const cJSON *e = st == TSR_OK ? arr->child : NULL; e; e = e->next) {
        n++;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsArray(c)) n_parts += (size_t)cJSON_GetArraySize(c);
    }
    if (st == TSR_OK) {
        m->msgs = tsr__calloc(n ? n : 1, sizeof *m->msgs);
        m->parts = tsr__calloc(n_parts ? n_parts : 1, sizeof *m->parts);
        if (!m->msgs || !m->parts) st = TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate %zu messages", n);
    }
    size_t i = 0, k = 0;
    for (const cJSON *e = st == TSR_OK ? arr->child : NULL; e && st == TSR_OK; e = e->next, i++) {
        tsr_chat_message *msg = &m->msgs[i];
        if (!cJSON_IsObject(e) || !(msg->role = obj_string(e, "role"))) {
            st = TSR_FAIL(err, TSR_ERR_FORMAT, "messages[%zu] needs a string \"role\"", i);
            break;
        }
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsString(c)) {
            msg->content = c->valuestring;
        } else if (cJSON_IsArray(c)) {
            msg->parts = &m->parts[k];
            size_t j = 0;
            for (const cJSON *pe = c->child; pe && st == TSR_OK; pe = pe->next, j++)
                st = parse_part(pe, i, j, &m->parts[k++], err);
            msg->n_parts = j;
        } else if (c && !cJSON_IsNull(c)) {
            st = TSR_FAIL(err, TSR_ERR_FORMAT, "messages[%zu].content must be a string, an array "
                          "or null", i);
        }
    }
    if (st != TSR_OK) {
        tsr_chat_messages_free(m);
        return st;
    }
    m->n = n;
    m->n_parts = n_parts;
    *out = m;
    return TSR_OK;
}
