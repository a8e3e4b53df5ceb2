/* tessera serve: the OpenAI-compatible HTTP front end (declarations shared by its files). */
#ifndef TSR_SERVE_H
#define TSR_SERVE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "tessera.h"

/* An error as the API reports it: {"error": {"message", "type", "param", "code"}}. */
typedef struct tsr_srv_error {
    int http;          /* HTTP status */
    char type[32];     /* "invalid_request_error", "server_error", ... */
    char code[40];     /* machine-readable reason, "" when none */
    char param[192];   /* the failing part ("messages[1].content[2].image_url.url"), or "" */
    char message[512];
} tsr_srv_error;

/* Sets every field of e; param may be NULL. Returns e->http. */
int tsr_srv_error_set(tsr_srv_error *e, int http, const char *code, const char *param,
                      const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
/* The error body as JSON text (malloc'd, NUL-terminated), or NULL when out of memory. */
char *tsr_srv_error_json(const tsr_srv_error *e);
/* HTTP status of a library status (DESIGN.md: LIMIT is 400 outside the body size). */
int tsr_srv_http_status(tsr_status st);

/* One decoded media item of a request, in prompt order. */
typedef struct tsr_srv_media {
    tsr_media_kind kind;
    uint8_t *data; /* the base64-decoded bytes (owned); NULL for a remote image until fetched */
    size_t len;
    char *url;     /* a remote image URL to fetch (owned), or NULL */
    char param[192]; /* where it came from: "messages[1].content[2].image_url.url" */
} tsr_srv_media;

/* What the parser accepts. */
typedef struct tsr_srv_parse_params {
    tsr_limits media;     /* encoded size and header limits of each media item */
    uint32_t media_kinds; /* kinds the model takes: bits 1u << TSR_MEDIA_IMAGE / AUDIO */
    size_t max_images;    /* per request; default 16 */
    size_t max_audio;     /* per request; default 8 */
    size_t max_messages;  /* default 1024 */
    int32_t max_depth;    /* JSON nesting; default 64 */
    int remote_images;    /* non-zero: http(s) image URLs are kept for tsr_srv_fetch */
} tsr_srv_parse_params;

tsr_srv_parse_params tsr_srv_parse_params_default(void);

/* A validated POST /v1/chat/completions body. Strings point into doc. */
typedef struct tsr_srv_request {
    cJSON *doc;
    tsr_chat_message *messages;
    size_t n_messages;
    tsr_chat_part *parts; /* storage of every message's parts */
    size_t n_parts;
    tsr_srv_media *media;
    size_t n_media;
    const char *model;    /* NULL when absent */
    tsr_sampling_params sampling;
    int64_t max_tokens;   /* -1: until an end of sequence or the end of the context */
    const char *stop[4];
    size_t n_stop;
    int stream;
    int include_usage;    /* stream_options.include_usage */
} tsr_srv_request;

/* Parses and validates body (len bytes, not NUL-terminated). Returns 0 and fills *out, or
 * the HTTP status of the error described in *err (out is then empty). Never aborts on any
 * input; used without a socket by the fuzz target. */
int tsr_srv_request_parse(const char *body, size_t len, const tsr_srv_parse_params *params,
                          tsr_srv_request *out /* OUT */, tsr_srv_error *err);
void tsr_srv_request_free(tsr_srv_request *r);

/* Decodes standard base64 (padding optional, no whitespace) into a malloc'd buffer of at most
 * max_out bytes (0: no limit). Returns 0, -1 for bad input (*bad_at: offset), -2 over the
 * limit, -3 out of memory. */
int tsr_srv_base64_decode(const char *in, size_t len, size_t max_out, uint8_t **out,
                          size_t *out_len, size_t *bad_at);

/* 1 when s[0..len) is valid UTF-8 (no overlong forms, surrogates or values past U+10FFFF). */
int tsr_srv_utf8_valid(const char *s, size_t len);

/* Remote images (--allow-remote-images). */
typedef struct tsr_srv_fetch_params {
    const char *hosts;  /* comma-separated host names that may be fetched from */
    size_t max_bytes;   /* size cap while reading */
    long timeout_ms;    /* connect and transfer */
    int allow_private;  /* non-zero: private / loopback addresses too (--allow-private-hosts) */
} tsr_srv_fetch_params;

/* GETs an image URL: http(s), a host of fp->hosts, not a private address (the address checked
 * is the one connected to), up to 5 redirects each checked again, at most fp->max_bytes.
 * Returns 0 with *data (malloc'd) and *len, or the HTTP status of *err (param names the
 * part). */
int tsr_srv_fetch(const char *url, const tsr_srv_fetch_params *fp, uint8_t **data, size_t *len,
                  const char *param, tsr_srv_error *err);

int tsr_cli_serve(int argc, char **argv);

#endif
