/* tessera serve: a POST /v1/chat/completions body to a validated request, or an OpenAI
 * error naming the failing part. No socket here: the fuzz target calls this directly. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve.h"

int tsr_srv_error_set(tsr_srv_error *e, int http, const char *code, const char *param,
                      const char *fmt, ...) {
    e->http = http;
    const char *type = "invalid_request_error";
    if (http == 401) type = "authentication_error";
    else if (http == 404) type = "not_found_error";
    else if (http == 501) type = "not_implemented_error";
    else if (http == 503) type = "service_unavailable_error";
    else if (http >= 500) type = "server_error";
    snprintf(e->type, sizeof e->type, "%s", type);
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    /* The message may quote request text cut at any byte; keep the JSON body valid UTF-8. */
    size_t n = strlen(e->message);
    while (n && !tsr_srv_utf8_valid(e->message, n)) e->message[--n] = 0;
    return http;
}

char *tsr_srv_error_json(const tsr_srv_error *e) {
    cJSON *root = cJSON_CreateObject();
    cJSON *o = root ? cJSON_AddObjectToObject(root, "error") : NULL;
    char *s = NULL;
    if (o && cJSON_AddStringToObject(o, "message", e->message) &&
        cJSON_AddStringToObject(o, "type", e->type) &&
        (e->param[0] ? cJSON_AddStringToObject(o, "param", e->param) != NULL
                     : cJSON_AddNullToObject(o, "param") != NULL) &&
        (e->code[0] ? cJSON_AddStringToObject(o, "code", e->code) != NULL
                    : cJSON_AddNullToObject(o, "code") != NULL))
        s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

int tsr_srv_http_status(tsr_status st) {
    switch (st) {
    case TSR_OK: return 200;
    case TSR_ERR_INVALID_ARG:
    case TSR_ERR_SHAPE:
    case TSR_ERR_FORMAT:
    case TSR_ERR_LIMIT: return 400;
    case TSR_ERR_UNSUPPORTED: return 501;
    case TSR_ERR_CANCELLED: return 499;
    case TSR_ERR_IO:
    case TSR_ERR_OOM:
    case TSR_ERR_DEVICE:
    case TSR_ERR_INTERNAL:
    case TSR_STATUS_COUNT: break;
    }
    return 500;
}

tsr_srv_parse_params tsr_srv_parse_params_default(void) {
    tsr_srv_parse_params p;
    memset(&p, 0, sizeof p);
    p.media = tsr_limits_default();
    p.media_kinds = (1u << TSR_MEDIA_IMAGE) | (1u << TSR_MEDIA_AUDIO);
    p.max_images = 16;
    p.max_audio = 8;
    p.max_messages = 1024;
    p.max_depth = 64;
    return p;
}

int tsr_srv_utf8_valid(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned cp, min;
        if (c >= 0xC2 && c <= 0xDF) n = 1, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) n = 2, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) n = 3, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (len - i <= n) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += n + 1;
    }
    return 1;
}

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int tsr_srv_base64_decode(const char *in, size_t len, size_t max_out, uint8_t **out,
                          size_t *out_len, size_t *bad_at) {
    *out = NULL;
    *out_len = 0;
    *bad_at = 0;
    size_t n = len;
    while (n && in[n - 1] == '=' && len - n < 2) n--;
    if (n % 4 == 1) {
        *bad_at = n;
        return -1;
    }
    size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (max_out && need > max_out) return -2;
    uint8_t *buf = malloc(need ? need : 1);
    if (!buf) return -3;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0) {
            free(buf);
            *bad_at = i;
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out = buf;
    *out_len = o;
    return 0;
}

/* Before cJSON recurses: 1 when [ / { nest deeper than max_depth (counted outside strings),
 * 2 when a string holds a raw control character (JSON forbids them; cJSON lets them by). */
static int json_scan(const char *s, size_t len, int max_depth) {
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
            else if ((unsigned char)c < 0x20) return 2;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) return 1;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 0;
}

/* 1 and *v when key holds a number in [lo, hi]; 0 when absent or null; -1 with err set. */
static int get_number(const cJSON *root, const char *key, double lo, double hi, int integer,
                      double *v, tsr_srv_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) return 0;
    if (!cJSON_IsNumber(j)) {
        tsr_srv_error_set(err, 400, "invalid_type", key, "'%s' must be a number", key);
        return -1;
    }
    double x = j->valuedouble;
    if (!isfinite(x) || x < lo || x > hi || (integer && x != floor(x))) {
        tsr_srv_error_set(err, 400, "invalid_value", key, "'%s' must be %s in [%g, %g]", key,
                          integer ? "an integer" : "a number", lo, hi);
        return -1;
    }
    *v = x;
    return 1;
}

/* 1 and *b when key holds a boolean; 0 when absent or null; -1 with err set. */
static int get_bool(const cJSON *root, const char *key, const char *param, int *b,
                    tsr_srv_error *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) return 0;
    if (!cJSON_IsBool(j)) {
        tsr_srv_error_set(err, 400, "invalid_type", param, "'%s' must be a boolean", param);
        return -1;
    }
    *b = cJSON_IsTrue(j);
    return 1;
}

static int check_text(const char *s, const char *param, tsr_srv_error *err) {
    if (!tsr_srv_utf8_valid(s, strlen(s)))
        return tsr_srv_error_set(err, 400, "invalid_utf8", param, "%s is not valid UTF-8", param);
    return 0;
}

static int media_push(tsr_srv_request *r, size_t cap, tsr_media_kind kind, uint8_t *data,
                      size_t len, const char *param) {
    if (r->n_media >= cap) return -1;
    tsr_srv_media *m = &r->media[r->n_media++];
    m->kind = kind;
    m->data = data;
    m->len = len;
    snprintf(m->param, sizeof m->param, "%s", param);
    return 0;
}

/* Decodes base64 media, checks its kind and header; on success appends it to r. */
static int add_media(tsr_srv_request *r, size_t cap, tsr_media_kind kind, const char *b64,
                     size_t b64_len, const tsr_srv_parse_params *pp, const char *param,
                     tsr_srv_error *err) {
    uint8_t *data = NULL;
    size_t len = 0, bad = 0;
    size_t max = (size_t)pp->media.max_encoded_bytes;
    if ((uint64_t)max != pp->media.max_encoded_bytes) max = 0;
    int rc = tsr_srv_base64_decode(b64, b64_len, max, &data, &len, &bad);
    if (rc == -1)
        return tsr_srv_error_set(err, 400, "invalid_base64", param,
                                 "%s is not valid base64 (at character %zu)", param, bad);
    if (rc == -2)
        return tsr_srv_error_set(err, 400, "media_too_large", param,
                                 "%s decodes to more than %zu bytes, the limit", param, max);
    if (rc) return tsr_srv_error_set(err, 500, "out_of_memory", param, "cannot allocate media");
    const char *what = kind == TSR_MEDIA_IMAGE ? "image" : "audio";
    tsr_error terr = {0};
    tsr_status st = TSR_OK;
    if (len == 0) {
        free(data);
        return tsr_srv_error_set(err, 400, "invalid_media", param, "%s is empty", param);
    }
    if (tsr_media_sniff(data, len) != kind) {
        free(data);
        return tsr_srv_error_set(err, 400, "invalid_media", param, "%s is not %s", param,
                                 kind == TSR_MEDIA_IMAGE ? "a PNG or JPEG image"
                                                         : "audio (WAV, FLAC, MP3, Ogg)");
    }
    if (kind == TSR_MEDIA_IMAGE) {
        tsr_image_decode_params ip = tsr_image_decode_params_default();
        ip.limits = pp->media;
        tsr_image_info info;
        st = tsr_image_probe(data, len, &ip, &info, &terr);
    } else {
        tsr_audio_decode_params ap = tsr_audio_decode_params_default();
        ap.limits = pp->media;
        tsr_audio_info info;
        st = tsr_audio_probe(data, len, &ap, &info, &terr);
    }
    if (st) {
        free(data);
        int http = st == TSR_ERR_OOM || st == TSR_ERR_INTERNAL ? 500 : 400;
        return tsr_srv_error_set(err, http, st == TSR_ERR_LIMIT ? "media_too_large" : "invalid_media",
                                 param, "%s: undecodable %s: %s", param, what, terr.message);
    }
    if (media_push(r, cap, kind, data, len, param)) {
        free(data);
        return tsr_srv_error_set(err, 500, "internal", param, "media table full");
    }
    return 0;
}

/* A remote image, fetched by the server before preprocessing. */
static int add_remote(tsr_srv_request *r, size_t cap, const char *url, const char *param,
                      tsr_srv_error *err) {
    char *u = strdup(url);
    if (!u) return tsr_srv_error_set(err, 500, "out_of_memory", param, "out of memory");
    if (media_push(r, cap, TSR_MEDIA_IMAGE, NULL, 0, param)) {
        free(u);
        return tsr_srv_error_set(err, 500, "internal", param, "media table full");
    }
    r->media[r->n_media - 1].url = u;
    return 0;
}

static int parse_image_part(tsr_srv_request *r, size_t cap, const cJSON *part, const char *at,
                            const tsr_srv_parse_params *pp, tsr_srv_error *err, const char **url) {
    char param[192];
    const cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url");
    const char *u = NULL;
    if (cJSON_IsString(iu)) {
        u = iu->valuestring;
        snprintf(param, sizeof param, "%s.image_url", at);
    } else if (cJSON_IsObject(iu)) {
        snprintf(param, sizeof param, "%s.image_url.url", at);
        const cJSON *uj = cJSON_GetObjectItemCaseSensitive(iu, "url");
        if (!cJSON_IsString(uj))
            return tsr_srv_error_set(err, 400, "invalid_type", param, "%s must be a string", param);
        u = uj->valuestring;
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(iu, "detail");
        if (d && !cJSON_IsNull(d) &&
            (!cJSON_IsString(d) || (strcmp(d->valuestring, "auto") && strcmp(d->valuestring, "low") &&
                                    strcmp(d->valuestring, "high")))) {
            char dp[192];
            snprintf(dp, sizeof dp, "%s.image_url.detail", at);
            return tsr_srv_error_set(err, 400, "invalid_value", dp,
                                     "%s must be \"auto\", \"low\" or \"high\"", dp);
        }
    } else {
        snprintf(param, sizeof param, "%s.image_url", at);
        return tsr_srv_error_set(err, 400, "invalid_type", param,
                                 "%s must be an object {\"url\": ...} or a string", param);
    }
    *url = u;
    if (!strncasecmp(u, "http://", 7) || !strncasecmp(u, "https://", 8)) {
        if (!pp->remote_images)
            return tsr_srv_error_set(err, 400, "remote_url_disabled", param,
                                     "%s: remote image URLs are disabled; start the server with "
                                     "--allow-remote-images HOST[,HOST...] to fetch from those "
                                     "hosts, or send the image inline as a "
                                     "data:image/png;base64,... URI", param);
        if (!(pp->media_kinds & (1u << TSR_MEDIA_IMAGE)))
            return tsr_srv_error_set(err, 400, "unsupported_media", at,
                                     "%s: this model takes no images", at);
        return add_remote(r, cap, u, param, err);
    }
    if (strncasecmp(u, "data:", 5))
        return tsr_srv_error_set(err, 400, "invalid_image_url", param,
                                 "%s must be a data:image/...;base64,... URI", param);
    const char *comma = strchr(u, ',');
    if (!comma)
        return tsr_srv_error_set(err, 400, "invalid_image_url", param,
                                 "%s: data URI has no ',' before its data", param);
    size_t hlen = (size_t)(comma - u);
    if (hlen < 12 || strncasecmp(u + 5, "image/", 6) || strncasecmp(comma - 7, ";base64", 7))
        return tsr_srv_error_set(err, 400, "invalid_image_url", param,
                                 "%s: expected a data:image/<type>;base64, URI", param);
    if (add_media(r, cap, TSR_MEDIA_IMAGE, comma + 1, strlen(comma + 1), pp, param, err))
        return err->http;
    if (!(pp->media_kinds & (1u << TSR_MEDIA_IMAGE)))
        return tsr_srv_error_set(err, 400, "unsupported_media", at,
                                 "%s: this model takes no images", at);
    return 0;
}

static int parse_audio_part(tsr_srv_request *r, size_t cap, const cJSON *part, const char *at,
                            const tsr_srv_parse_params *pp, tsr_srv_error *err,
                            const char **data, const char **format) {
    char param[192];
    snprintf(param, sizeof param, "%s.input_audio", at);
    const cJSON *ia = cJSON_GetObjectItemCaseSensitive(part, "input_audio");
    if (!cJSON_IsObject(ia))
        return tsr_srv_error_set(err, 400, "invalid_type", param,
                                 "%s must be an object {\"data\", \"format\"}", param);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(ia, "data");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(ia, "format");
    if (!cJSON_IsString(f) || (strcmp(f->valuestring, "wav") && strcmp(f->valuestring, "mp3") &&
                               strcmp(f->valuestring, "flac"))) {
        snprintf(param, sizeof param, "%s.input_audio.format", at);
        return tsr_srv_error_set(err, 400, "invalid_value", param,
                                 "%s must be \"wav\", \"mp3\" or \"flac\"", param);
    }
    snprintf(param, sizeof param, "%s.input_audio.data", at);
    if (!cJSON_IsString(d))
        return tsr_srv_error_set(err, 400, "invalid_type", param,
                                 "%s must be a base64 string", param);
    *data = d->valuestring;
    *format = f->valuestring;
    if (add_media(r, cap, TSR_MEDIA_AUDIO, d->valuestring, strlen(d->valuestring), pp, param,
                  err))
        return err->http;
    if (!(pp->media_kinds & (1u << TSR_MEDIA_AUDIO)))
        return tsr_srv_error_set(err, 400, "unsupported_media", at,
                                 "%s: this model takes no audio", at);
    return 0;
}

static int parse_messages(tsr_srv_request *r, const cJSON *msgs, const tsr_srv_parse_params *pp,
                          tsr_srv_error *err) {
    if (!cJSON_IsArray(msgs))
        return tsr_srv_error_set(err, 400, msgs ? "invalid_type" : "missing_required_parameter",
                                 "messages", "'messages' must be a non-empty array of messages");
    size_t n = 0, n_parts = 0, n_img = 0, n_aud = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, n++) {
        const cJSON *c = cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "content") : NULL;
        size_t j = 0;
        for (const cJSON *p = cJSON_IsArray(c) ? c->child : NULL; p; p = p->next, j++, n_parts++) {
            /* Counted before any media is decoded. */
            const cJSON *t = cJSON_IsObject(p) ? cJSON_GetObjectItemCaseSensitive(p, "type") : NULL;
            int img = cJSON_IsString(t) && !strcmp(t->valuestring, "image_url");
            int aud = cJSON_IsString(t) && !strcmp(t->valuestring, "input_audio");
            if ((img && ++n_img > pp->max_images) || (aud && ++n_aud > pp->max_audio)) {
                char at[96];
                snprintf(at, sizeof at, "messages[%zu].content[%zu]", n, j);
                return tsr_srv_error_set(err, 400, img ? "too_many_images" : "too_many_audio", at,
                                         "%s: more than %zu %s in one request", at,
                                         img ? pp->max_images : pp->max_audio,
                                         img ? "images" : "audio clips");
            }
        }
    }
    if (n == 0)
        return tsr_srv_error_set(err, 400, "invalid_value", "messages", "'messages' is empty");
    if (n > pp->max_messages)
        return tsr_srv_error_set(err, 400, "too_many_messages", "messages",
                                 "'messages' has %zu messages, the limit is %zu", n,
                                 pp->max_messages);
    size_t media_cap = pp->max_images + pp->max_audio;
    r->messages = calloc(n, sizeof *r->messages);
    r->parts = calloc(n_parts ? n_parts : 1, sizeof *r->parts);
    r->media = calloc(media_cap ? media_cap : 1, sizeof *r->media);
    if (!r->messages || !r->parts || !r->media)
        return tsr_srv_error_set(err, 500, "out_of_memory", NULL, "cannot allocate %zu messages", n);
    size_t i = 0, k = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        char at[96];
        snprintf(at, sizeof at, "messages[%zu]", i);
        if (!cJSON_IsObject(m))
            return tsr_srv_error_set(err, 400, "invalid_type", at, "%s must be an object", at);
        tsr_chat_message *msg = &r->messages[i];
        r->n_messages = i + 1;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        char rp[112];
        snprintf(rp, sizeof rp, "%s.role", at);
        if (!cJSON_IsString(role))
            return tsr_srv_error_set(err, 400, role ? "invalid_type" : "missing_required_parameter",
                                     rp, "%s must be a string", rp);
        const char *rs = role->valuestring;
        if (!strcmp(rs, "tool") || !strcmp(rs, "function"))
            return tsr_srv_error_set(err, 501, "unsupported", rp,
                                     "%s: '%s' messages (tool calling) are not supported", rp, rs);
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") &&
            strcmp(rs, "developer"))
            return tsr_srv_error_set(err, 400, "invalid_value", rp,
                                     "%s must be \"system\", \"developer\", \"user\" or "
                                     "\"assistant\"", rp);
        /* "developer" is the newer name of the system role. */
        msg->role = !strcmp(rs, "developer") ? "system" : rs;
        if (cJSON_GetObjectItemCaseSensitive(m, "tool_calls"))
            return tsr_srv_error_set(err, 501, "unsupported", at,
                                     "%s: tool_calls are not supported", at);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        char cp[112];
        snprintf(cp, sizeof cp, "%s.content", at);
        if (cJSON_IsString(c)) {
            if (check_text(c->valuestring, cp, err)) return err->http;
            msg->content = c->valuestring;
            continue;
        }
        if (!c || cJSON_IsNull(c)) {
            if (strcmp(msg->role, "assistant"))
                return tsr_srv_error_set(err, 400, "missing_required_parameter", cp,
                                         "%s is required for %s messages", cp, msg->role);
            continue;
        }
        if (!cJSON_IsArray(c))
            return tsr_srv_error_set(err, 400, "invalid_type", cp,
                                     "%s must be a string or an array of content parts", cp);
        if (!c->child)
            return tsr_srv_error_set(err, 400, "invalid_value", cp, "%s is an empty array", cp);
        msg->parts = &r->parts[k];
        size_t j = 0;
        for (const cJSON *p = c->child; p; p = p->next, j++) {
            char pat[128], tp[140];
            snprintf(pat, sizeof pat, "%s[%zu]", cp, j);
            snprintf(tp, sizeof tp, "%s.type", pat);
            tsr_chat_part *part = &r->parts[k++];
            msg->n_parts = j + 1;
            if (!cJSON_IsObject(p))
                return tsr_srv_error_set(err, 400, "invalid_type", pat, "%s must be an object", pat);
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type");
            if (!cJSON_IsString(t))
                return tsr_srv_error_set(err, 400, t ? "invalid_type" : "missing_required_parameter",
                                         tp, "%s must be a string", tp);
            const char *ts = t->valuestring;
            if (!strcmp(ts, "text")) {
                const cJSON *tx = cJSON_GetObjectItemCaseSensitive(p, "text");
                char xp[140];
                snprintf(xp, sizeof xp, "%s.text", pat);
                if (!cJSON_IsString(tx))
                    return tsr_srv_error_set(err, 400, "invalid_type", xp, "%s must be a string", xp);
                if (check_text(tx->valuestring, xp, err)) return err->http;
                part->type = TSR_CHAT_PART_TEXT;
                part->text = tx->valuestring;
            } else if (!strcmp(ts, "image_url")) {
                part->type = TSR_CHAT_PART_IMAGE;
                if (parse_image_part(r, media_cap, p, pat, pp, err, &part->text))
                    return err->http;
            } else if (!strcmp(ts, "input_audio")) {
                part->type = TSR_CHAT_PART_AUDIO;
                if (parse_audio_part(r, media_cap, p, pat, pp, err, &part->text, &part->format))
                    return err->http;
            } else {
                if (!tsr_srv_utf8_valid(ts, strlen(ts)))
                    return tsr_srv_error_set(err, 400, "invalid_value", tp,
                                             "%s must be \"text\", \"image_url\" or \"input_audio\"",
                                             tp);
                return tsr_srv_error_set(err, 400, "invalid_value", tp,
                                         "%s '%.40s' is not \"text\", \"image_url\" or "
                                         "\"input_audio\"", tp, ts);
            }
        }
    }
    r->n_parts = k;
    return 0;
}

static int parse_stop(tsr_srv_request *r, const cJSON *root, tsr_srv_error *err) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!s || cJSON_IsNull(s)) return 0;
    if (cJSON_IsString(s)) {
        if (!s->valuestring[0])
            return tsr_srv_error_set(err, 400, "invalid_value", "stop", "'stop' is empty");
        if (check_text(s->valuestring, "stop", err)) return err->http;
        r->stop[r->n_stop++] = s->valuestring;
        return 0;
    }
    if (!cJSON_IsArray(s))
        return tsr_srv_error_set(err, 400, "invalid_type", "stop",
                                 "'stop' must be a string or an array of up to 4 strings");
    size_t i = 0;
    for (const cJSON *e = s->child; e; e = e->next, i++) {
        char p[32];
        snprintf(p, sizeof p, "stop[%zu]", i);
        if (i >= 4)
            return tsr_srv_error_set(err, 400, "invalid_value", "stop",
                                     "'stop' has more than 4 strings");
        if (!cJSON_IsString(e) || !e->valuestring[0])
            return tsr_srv_error_set(err, 400, "invalid_type", p, "%s must be a non-empty string", p);
        if (check_text(e->valuestring, p, err)) return err->http;
        r->stop[r->n_stop++] = e->valuestring;
    }
    return 0;
}

static int parse_body(const char *body, size_t len, const tsr_srv_parse_params *pp,
                      tsr_srv_request *r, tsr_srv_error *err) {
    if (len == 0)
        return tsr_srv_error_set(err, 400, "invalid_json", NULL, "the request body is empty");
    int scan = json_scan(body, len, pp->max_depth);
    if (scan == 1)
        return tsr_srv_error_set(err, 400, "invalid_json", NULL,
                                 "the JSON body is nested deeper than %d levels", pp->max_depth);
    if (scan == 2)
        return tsr_srv_error_set(err, 400, "invalid_json", NULL,
                                 "the body is not valid JSON (a control character in a string)");
    const char *end = NULL;
    r->doc = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!r->doc) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        return tsr_srv_error_set(err, 400, "invalid_json", NULL,
                                 "the body is not valid JSON (error near byte %zu)", at);
    }
    for (const char *p = end; p && p < body + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return tsr_srv_error_set(err, 400, "invalid_json", NULL,
                                     "the body has data after its JSON value (byte %zu)",
                                     (size_t)(p - body));
    const cJSON *root = r->doc;
    if (!cJSON_IsObject(root))
        return tsr_srv_error_set(err, 400, "invalid_json", NULL, "the body must be a JSON object");

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model))
            return tsr_srv_error_set(err, 400, "invalid_type", "model", "'model' must be a string");
        if (check_text(model->valuestring, "model", err)) return err->http;
        r->model = model->valuestring;
    }

    double v;
    int rc;
    if ((rc = get_number(root, "n", 1, 1e9, 1, &v, err)) < 0) return err->http;
    if (rc && v != 1)
        return tsr_srv_error_set(err, 501, "unsupported", "n", "only n = 1 is supported");
    if ((rc = get_number(root, "temperature", 0, 2, 0, &v, err)) < 0) return err->http;
    if (rc) r->sampling.temperature = (float)v;
    if ((rc = get_number(root, "top_p", 0, 1, 0, &v, err)) < 0) return err->http;
    if (rc) r->sampling.top_p = v > 0 ? (float)v : 1e-9f;
    if ((rc = get_number(root, "frequency_penalty", -2, 2, 0, &v, err)) < 0) return err->http;
    if (rc) r->sampling.frequency_penalty = (float)v;
    if ((rc = get_number(root, "presence_penalty", -2, 2, 0, &v, err)) < 0) return err->http;
    if (rc) r->sampling.presence_penalty = (float)v;
    if ((rc = get_number(root, "seed", -9.2e18, 1.8e19, 1, &v, err)) < 0) return err->http;
    if (rc) r->sampling.seed = v < 0 ? (uint64_t)(int64_t)v : (uint64_t)v;
    if ((rc = get_number(root, "max_tokens", 1, 1e9, 1, &v, err)) < 0) return err->http;
    if (rc) r->max_tokens = (int64_t)v;
    if ((rc = get_number(root, "max_completion_tokens", 1, 1e9, 1, &v, err)) < 0) return err->http;
    if (rc) r->max_tokens = (int64_t)v;

    if (get_bool(root, "stream", "stream", &r->stream, err) < 0) return err->http;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so))
            return tsr_srv_error_set(err, 400, "invalid_type", "stream_options",
                                     "'stream_options' must be an object");
        if (!r->stream)
            return tsr_srv_error_set(err, 400, "invalid_value", "stream_options",
                                     "'stream_options' is only allowed with \"stream\": true");
        if (get_bool(so, "include_usage", "stream_options.include_usage", &r->include_usage,
                     err) < 0)
            return err->http;
    }
    int lp = 0;
    if (get_bool(root, "logprobs", "logprobs", &lp, err) < 0) return err->http;
    if (lp) return tsr_srv_error_set(err, 501, "unsupported", "logprobs", "logprobs are not supported");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    if (tools && !cJSON_IsNull(tools) && !(cJSON_IsArray(tools) && !tools->child))
        return tsr_srv_error_set(err, 501, "unsupported", "tools", "tool calling is not supported");
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    if (rf && !cJSON_IsNull(rf)) {
        const cJSON *t = cJSON_IsObject(rf) ? cJSON_GetObjectItemCaseSensitive(rf, "type") : NULL;
        if (!cJSON_IsString(t))
            return tsr_srv_error_set(err, 400, "invalid_type", "response_format",
                                     "'response_format' must be an object with a string \"type\"");
        if (strcmp(t->valuestring, "text"))
            return tsr_srv_error_set(err, 501, "unsupported", "response_format.type",
                                     "only response_format \"text\" is supported");
    }
    if (parse_stop(r, root, err)) return err->http;
    return parse_messages(r, cJSON_GetObjectItemCaseSensitive(root, "messages"), pp, err);
}

int tsr_srv_request_parse(const char *body, size_t len, const tsr_srv_parse_params *params,
                          tsr_srv_request *out, tsr_srv_error *err) {
    tsr_srv_parse_params def = tsr_srv_parse_params_default();
    const tsr_srv_parse_params *pp = params ? params : &def;
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    out->sampling = tsr_sampling_params_default();
    out->max_tokens = -1;
    if (!body && len) return tsr_srv_error_set(err, 400, "invalid_json", NULL, "no body");
    int rc = parse_body(body ? body : "", len, pp, out, err);
    if (rc) {
        if (!err->http) tsr_srv_error_set(err, rc, "internal", NULL, "request parsing failed");
        tsr_srv_request_free(out);
        return err->http;
    }
    return 0;
}

void tsr_srv_request_free(tsr_srv_request *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_media; i++) {
        free(r->media[i].data);
        free(r->media[i].url);
    }
    free(r->media);
    free(r->parts);
    free(r->messages);
    cJSON_Delete(r->doc);
    memset(r, 0, sizeof *r);
    r->max_tokens = -1;
}
