/* tessera serve as a client sees it: the CLI ($TSR_CLI) serves a tiny model on a free
 * loopback port and curl drives it. Text and streaming completions, media of the wrong kind,
 * a corpus of malformed requests (tests/fixtures/server/bad/cases.tsv) each answered with its
 * status and error.param, generated abuse (deep nesting, 1,000 images, oversized bodies and
 * media, truncated uploads), routes and methods, API keys, a full queue, disconnects, a
 * multimodal model when its fixture loads, and a clean exit 0 on SIGTERM (leak-checked under
 * ASan). Skips when curl is missing. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

extern char **environ;

static char g_tmp[64];
static int g_have_curl;

typedef struct server_proc {
    pid_t pid;
    int port;
    char log[128];
} server_proc;

typedef struct http_res {
    int status;
    char *body;
    size_t len;
    char *headers;
} http_res;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len) {
    size_t n = 0;
    char *s = (char *)tsr_test_read(path, &n);
    if (!s) s = calloc(1, 1), n = 0;
    if (len) *len = n;
    return s;
}

static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    return fclose(f) == 0 && w == len ? 0 : -1;
}

static pid_t spawn(char *const *argv, const char *out_path, const char *err_path) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out_path) posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (err_path) posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = -1;
    if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

/* Exit code, -SIGNAL when killed, -1000 when it did not end within timeout_s (then killed). */
static int wait_exit(pid_t pid, double timeout_s) {
    double until = now_s() + timeout_s;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0) return -2000;
        if (now_s() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1000;
        }
        sleep_ms(20);
    }
    return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
}

/* ---- curl ---------------------------------------------------------------------------- */

typedef struct http_call {
    pid_t pid;
    int slot;
} http_call;

/* Starts curl in the background; files g_tmp/{req,resp,hdr,code}<slot>. ctype "" sends no
 * Content-Type; extra may be NULL; max_time in seconds. */
static http_call http_start(const server_proc *s, int slot, const char *method, const char *path,
                            const char *ctype, const void *body, size_t len, const char *extra,
                            const char *max_time) {
    char url[256], req[128], resp[128], hdr[128], code[128], ct[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
    snprintf(req, sizeof req, "@%s/req%d", g_tmp, slot);
    snprintf(resp, sizeof resp, "%s/resp%d", g_tmp, slot);
    snprintf(hdr, sizeof hdr, "%s/hdr%d", g_tmp, slot);
    snprintf(code, sizeof code, "%s/code%d", g_tmp, slot);
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype ? ctype : "application/json");
    if (ctype && ctype[0] == 0) snprintf(ct, sizeof ct, "Content-Type:");
    char *argv[32];
    int n = 0;
    argv[n++] = "curl";
    argv[n++] = "-sS";
    argv[n++] = "--max-time";
    argv[n++] = (char *)(max_time ? max_time : "120");
    argv[n++] = "-o";
    argv[n++] = resp;
    argv[n++] = "-D";
    argv[n++] = hdr;
    argv[n++] = "-w";
    argv[n++] = "%{http_code}";
    argv[n++] = "-X";
    argv[n++] = (char *)method;
    if (body) {
        write_file(req + 1, body, len);
        argv[n++] = "-H";
        argv[n++] = ct;
        argv[n++] = "--data-binary";
        argv[n++] = req;
    }
    if (extra) {
        argv[n++] = "-H";
        argv[n++] = (char *)extra;
    }
    argv[n++] = url;
    argv[n] = NULL;
    char err[128];
    snprintf(err, sizeof err, "%s/curlerr%d", g_tmp, slot);
    http_call c = {spawn(argv, code, err), slot};
    return c;
}

static http_res http_finish(http_call c) {
    http_res r = {0};
    char p[128];
    if (c.pid > 0) wait_exit(c.pid, 180);
    snprintf(p, sizeof p, "%s/code%d", g_tmp, c.slot);
    char *code = slurp(p, NULL);
    r.status = atoi(code);
    free(code);
    snprintf(p, sizeof p, "%s/resp%d", g_tmp, c.slot);
    r.body = slurp(p, &r.len);
    snprintf(p, sizeof p, "%s/hdr%d", g_tmp, c.slot);
    r.headers = slurp(p, NULL);
    return r;
}

static http_res http(const server_proc *s, const char *method, const char *path, const char *ctype,
                     const void *body, size_t len, const char *extra) {
    return http_finish(http_start(s, 0, method, path, ctype, body, len, extra, NULL));
}

static http_res post(const server_proc *s, const char *json) {
    return http(s, "POST", "/v1/chat/completions", NULL, json, strlen(json), NULL);
}

static void http_free(http_res *r) {
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

static int header_has(const http_res *r, const char *needle) {
    size_t n = strlen(needle);
    for (const char *h = r->headers; h && *h; h++)
        if (!strncasecmp(h, needle, n)) return 1;
    return 0;
}

/* The body is an OpenAI error with this status and param ("-": null); code may be NULL. */
static void check_error(const char *ctx, const http_res *r, int status, const char *param,
                        const char *code) {
    CHECK_MSG(r->status == status, "%s: status %d, expected %d: %.300s", ctx, r->status, status,
              r->body);
    cJSON *j = cJSON_ParseWithLength(r->body, r->len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "type");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "param");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    CHECK_MSG(cJSON_IsString(m) && m->valuestring[0] && cJSON_IsString(t) && p && c,
              "%s: not an OpenAI error body: %.300s", ctx, r->body);
    if (p && param) {
        if (!strcmp(param, "-"))
            CHECK_MSG(cJSON_IsNull(p), "%s: param %s, expected null", ctx,
                      cJSON_IsString(p) ? p->valuestring : "?");
        else
            CHECK_MSG(cJSON_IsString(p) && !strcmp(p->valuestring, param),
                      "%s: param '%s', expected '%s'", ctx, cJSON_IsString(p) ? p->valuestring : "null",
                      param);
    }
    if (c && code)
        CHECK_MSG(cJSON_IsString(c) && !strcmp(c->valuestring, code), "%s: code '%s', expected '%s'",
                  ctx, cJSON_IsString(c) ? c->valuestring : "null", code);
    if (status == 503) CHECK_MSG(header_has(r, "Retry-After:"), "%s: 503 without Retry-After", ctx);
    cJSON_Delete(j);
}

/* ---- the server ---------------------------------------------------------------------- */

/* Starts `tessera serve --port 0 ARGS...` and waits until it listens (and, when wait_ready,
 * until /health is 200). Returns 0 or -1 (log printed). */
static int start_server(server_proc *s, const char *const *args, int wait_ready) {
    static int n_started;
    memset(s, 0, sizeof *s);
    snprintf(s->log, sizeof s->log, "%s/server%d.log", g_tmp, n_started++);
    char *argv[40];
    int n = 0;
    argv[n++] = getenv("TSR_CLI");
    argv[n++] = "serve";
    argv[n++] = "--port";
    argv[n++] = "0";
    for (int i = 0; args[i] && n < 39; i++) argv[n++] = (char *)args[i];
    argv[n] = NULL;
    s->pid = spawn(argv, s->log, s->log);
    if (s->pid <= 0) return -1;
    double until = now_s() + 120;
    while (now_s() < until) {
        char *log = slurp(s->log, NULL);
        const char *p = strstr(log, "listening on http://127.0.0.1:");
        if (p) s->port = atoi(p + strlen("listening on http://127.0.0.1:"));
        free(log);
        if (s->port) break;
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            break;
        }
        sleep_ms(20);
    }
    while (s->port && wait_ready && now_s() < until) {
        http_res r = http(s, "GET", "/health", NULL, NULL, 0, NULL);
        int ok = r.status == 200;
        http_free(&r);
        if (ok) return 0;
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            break;
        }
        sleep_ms(50);
    }
    if (s->port && !wait_ready) return 0;
    char *log = slurp(s->log, NULL);
    fprintf(stderr, "server did not become ready; its log:\n%s\n", log);
    free(log);
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
    return -1;
}

/* SIGTERM (or SIGINT), then the exit code (0 expected: ASan leak reports make it non-zero). */
static int stop_server_with(server_proc *s, int sig) {
    if (s->pid <= 0) return -1;
    kill(s->pid, sig);
    int rc = wait_exit(s->pid, 60);
    if (rc != 0) {
        char *log = slurp(s->log, NULL);
        fprintf(stderr, "server exit %d; its log:\n%s\n", rc, log);
        free(log);
    }
    s->pid = 0;
    return rc;
}

static int stop_server(server_proc *s) { return stop_server_with(s, SIGTERM); }

static server_proc g_text; /* the text model, shared by most cases */

static const char *text_model(void) { return tsr_test_fixture("server/qwen2-chat"); }

/* ---- media helpers ------------------------------------------------------------------- */

static char *b64(const uint8_t *d, size_t n) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc((n + 2) / 3 * 4 + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) |
                     (i + 2 < n ? d[i + 2] : 0);
        o[k++] = t[v >> 18];
        o[k++] = t[(v >> 12) & 63];
        o[k++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        o[k++] = i + 2 < n ? t[v & 63] : '=';
    }
    o[k] = 0;
    return o;
}

static char *file_b64(const char *rel) {
    size_t n = 0;
    uint8_t *d = tsr_test_read(tsr_test_fixture(rel), &n);
    char *s = d ? b64(d, n) : NULL;
    free(d);
    return s;
}

/* Growing string. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s) {
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        b->s = realloc(b->s, cap);
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

/* A user message with text then n images (the same data URI). */
static char *image_request(const char *png_b64, int n, int stream) {
    sbuf b = {0};
    sb_add(&b, "{\"max_tokens\":8,\"temperature\":0,");
    if (stream) sb_add(&b, "\"stream\":true,");
    sb_add(&b, "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is in these?\"}");
    for (int i = 0; i < n; i++) {
        sb_add(&b, ",{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,");
        sb_add(&b, png_b64);
        sb_add(&b, "\",\"detail\":\"auto\"}}");
    }
    sb_add(&b, "]}]}");
    return b.s;
}

/* ---- completions --------------------------------------------------------------------- */

static void check_completion(const char *ctx, const http_res *r, int max_tokens, char **content) {
    CHECK_MSG(r->status == 200, "%s: status %d: %.300s", ctx, r->status, r->body);
    cJSON *j = cJSON_ParseWithLength(r->body, r->len);
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ch, "message");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(j, "object");
    CHECK_MSG(cJSON_IsString(obj) && !strcmp(obj->valuestring, "chat.completion"), "%s: object", ctx);
    CHECK_MSG(cJSON_IsString(c) && cJSON_IsString(role) && !strcmp(role->valuestring, "assistant"),
              "%s: message: %.300s", ctx, r->body);
    CHECK_MSG(cJSON_IsString(fr) && (!strcmp(fr->valuestring, "stop") || !strcmp(fr->valuestring, "length")),
              "%s: finish_reason", ctx);
    double pt = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens"));
    double ct = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(u, "completion_tokens"));
    double tt = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(u, "total_tokens"));
    CHECK_MSG(pt > 0 && ct >= 0 && ct <= max_tokens && tt == pt + ct, "%s: usage %g %g %g", ctx, pt,
              ct, tt);
    if (content) *content = cJSON_IsString(c) ? strdup(c->valuestring) : NULL;
    cJSON_Delete(j);
}

/* Checks an SSE body: role chunk first, content deltas, a finish chunk, optional usage chunk,
 * then data: [DONE]. Returns the concatenated content (malloc'd). */
static char *check_stream(const char *ctx, const http_res *r, int want_usage) {
    CHECK_MSG(r->status == 200, "%s: status %d: %.300s", ctx, r->status, r->body);
    CHECK_MSG(header_has(r, "Content-Type: text/event-stream"), "%s: content type", ctx);
    sbuf text = {0};
    sb_add(&text, "");
    int n = 0, finish = 0, usage = 0, done = 0, role_first = 0, bad = 0;
    char *save = NULL;
    char *copy = strdup(r->body);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "data: [DONE]", 12)) {
            done = 1;
            continue;
        }
        if (strncmp(line, "data: ", 6) || done) {
            bad++;
            continue;
        }
        cJSON *j = cJSON_Parse(line + 6);
        if (!j) {
            bad++;
            continue;
        }
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(ch, "delta");
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "content");
        if (n == 0) role_first = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(d, "role"));
        if (cJSON_IsString(c)) sb_add(&text, c->valuestring);
        if (cJSON_IsString(fr)) finish++;
        if (cJSON_GetObjectItemCaseSensitive(j, "usage")) usage++;
        if (cJSON_GetObjectItemCaseSensitive(j, "error")) bad++;
        n++;
        cJSON_Delete(j);
    }
    free(copy);
    CHECK_MSG(role_first && finish == 1 && done && !bad && usage == (want_usage ? 1 : 0),
              "%s: stream role %d finish %d usage %d done %d bad %d: %.500s", ctx, role_first, finish,
              usage, done, bad, r->body);
    return text.s;
}

static void test_text(void) {
    if (!g_have_curl || !g_text.pid) { tsr_test_skip("no server (curl missing or start failed)"); return; }
    const char *req = "{\"model\":\"qwen2-chat\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                      "{\"role\":\"user\",\"content\":\"Hello there\"}],\"max_tokens\":12,"
                      "\"temperature\":0,\"seed\":7}";
    http_res a = post(&g_text, req), b = post(&g_text, req);
    char *ca = NULL, *cb = NULL;
    check_completion("text", &a, 12, &ca);
    check_completion("text again", &b, 12, &cb);
    CHECK_MSG(ca && cb && !strcmp(ca, cb), "greedy replies differ: '%s' vs '%s'", ca, cb);
    free(ca);
    free(cb);
    http_free(&a);
    http_free(&b);
    /* Content parts, sampling settings, stop strings, max_completion_tokens, developer role. */
    a = post(&g_text, "{\"messages\":[{\"role\":\"developer\",\"content\":\"x\"},{\"role\":\"user\",\"content\":"
                      "[{\"type\":\"text\",\"text\":\"one\"},{\"type\":\"text\",\"text\":\"two\"}]},"
                      "{\"role\":\"assistant\",\"content\":\"ok\"},{\"role\":\"user\",\"content\":\"more\"}],"
                      "\"temperature\":0.8,\"top_p\":0.9,\"seed\":3,\"frequency_penalty\":0.5,"
                      "\"presence_penalty\":0.2,\"stop\":[\"\\n\",\"a\"],\"max_completion_tokens\":9,"
                      "\"n\":1,\"stream\":false,\"tools\":[],\"response_format\":{\"type\":\"text\"},"
                      "\"user\":\"u1\"}");
    check_completion("sampling", &a, 9, NULL);
    http_free(&a);
    /* The same seed samples the same reply. */
    const char *seeded = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":12,"
                         "\"temperature\":1,\"top_p\":0.95,\"seed\":42}";
    a = post(&g_text, seeded);
    b = post(&g_text, seeded);
    check_completion("seeded", &a, 12, &ca);
    check_completion("seeded again", &b, 12, &cb);
    CHECK_MSG(ca && cb && !strcmp(ca, cb), "same seed, different replies: '%s' vs '%s'", ca, cb);
    http_free(&a);
    http_free(&b);
    free(cb);
    /* A stop string taken from the greedy reply: the reply ends before its first occurrence. */
    a = post(&g_text, req);
    free(ca);
    ca = NULL;
    check_completion("greedy", &a, 12, &ca);
    http_free(&a);
    size_t at = 0;
    for (int k = 0; ca && ca[at] && k < 3; k++)
        do at++; while (ca[at] && ((unsigned char)ca[at] & 0xC0) == 0x80);
    size_t n = at;
    if (ca && ca[n]) do n++; while (ca[n] && ((unsigned char)ca[n] & 0xC0) == 0x80);
    if (ca && n > at) {
        cJSON *stop = cJSON_CreateString("");
        char *piece = strndup(ca + at, n - at);
        cJSON_SetValuestring(stop, piece);
        char *stop_json = cJSON_PrintUnformatted(stop);
        char sreq[1024];
        snprintf(sreq, sizeof sreq,
                 "{\"model\":\"qwen2-chat\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                 "{\"role\":\"user\",\"content\":\"Hello there\"}],\"max_tokens\":12,"
                 "\"temperature\":0,\"seed\":7,\"stop\":%s}", stop_json);
        a = post(&g_text, sreq);
        char *cs = NULL;
        check_completion("stop string", &a, 12, &cs);
        size_t want = (size_t)(strstr(ca, piece) - ca);
        CHECK_MSG(cs && strlen(cs) == want && !strncmp(cs, ca, want) && strstr(a.body, "\"finish_reason\":\"stop\""),
                  "stop %s: got '%s' from '%s'", stop_json, cs ? cs : "", ca);
        free(cs);
        http_free(&a);
        free(stop_json);
        free(piece);
        cJSON_Delete(stop);
    }
    free(ca);
    /* A prompt longer than the context (--ctx 512). */
    sbuf big = {0};
    sb_add(&big, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 700; i++) sb_add(&big, "hello ");
    sb_add(&big, "\"}]}");
    a = post(&g_text, big.s);
    check_error("prompt over the context", &a, 400, "messages", "context_length_exceeded");
    http_free(&a);
    free(big.s);
}

static void test_stream(void) {
    if (!g_have_curl || !g_text.pid) { tsr_test_skip("no server"); return; }
    const char *greedy = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}],\"max_tokens\":12,"
                         "\"temperature\":0";
    char req[512];
    snprintf(req, sizeof req, "%s}", greedy);
    http_res a = post(&g_text, req);
    char *whole = NULL;
    check_completion("non-stream", &a, 12, &whole);
    snprintf(req, sizeof req, "%s,\"stream\":true,\"stream_options\":{\"include_usage\":true}}", greedy);
    http_res b = post(&g_text, req);
    char *streamed = check_stream("stream+usage", &b, 1);
    CHECK_MSG(whole && streamed && !strcmp(whole, streamed), "stream '%s' != non-stream '%s'",
              streamed, whole);
    snprintf(req, sizeof req, "%s,\"stream\":true}", greedy);
    http_res c = post(&g_text, req);
    free(check_stream("stream", &c, 0));
    free(whole);
    free(streamed);
    http_free(&a);
    http_free(&b);
    http_free(&c);
}

static void test_endpoints(void) {
    if (!g_have_curl || !g_text.pid) { tsr_test_skip("no server"); return; }
    http_res r = http(&g_text, "GET", "/health", NULL, NULL, 0, NULL);
    CHECK(r.status == 200 && strstr(r.body, "ok"));
    http_free(&r);
    r = http(&g_text, "GET", "/v1/models", NULL, NULL, 0, NULL);
    cJSON *j = cJSON_ParseWithLength(r.body, r.len);
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 0);
    const cJSON *mods = cJSON_GetObjectItemCaseSensitive(m, "modalities");
    CHECK_MSG(r.status == 200 && cJSON_GetArraySize(mods) == 1 &&
                  !strcmp(cJSON_GetArrayItem(mods, 0)->valuestring, "text"),
              "models: %d %.300s", r.status, r.body);
    cJSON_Delete(j);
    http_free(&r);
    r = http(&g_text, "GET", "/v1/models/qwen2-chat", NULL, NULL, 0, NULL);
    CHECK_MSG(r.status == 200 && strstr(r.body, "\"id\":\"qwen2-chat\"") && !strstr(r.body, "\"data\""),
              "models/qwen2-chat: %d %.300s", r.status, r.body);
    http_free(&r);
    r = http(&g_text, "GET", "/v1/models/gpt-4o", NULL, NULL, 0, NULL);
    check_error("unknown model id", &r, 404, "model", "model_not_found");
    http_free(&r);
    r = http(&g_text, "GET", "/metrics", NULL, NULL, 0, NULL);
    CHECK_MSG(r.status == 200 && strstr(r.body, "tessera_requests_total{code=\"200\"}") &&
                  strstr(r.body, "tessera_queue_length ") &&
                  strstr(r.body, "tessera_completion_tokens_total ") &&
                  strstr(r.body, "tessera_time_to_first_token_seconds_bucket{le=\"+Inf\"}") &&
                  strstr(r.body, "tessera_request_duration_seconds_count ") &&
                  strstr(r.body, "tessera_image_encode_seconds_sum ") &&
                  strstr(r.body, "tessera_audio_encode_seconds_sum "),
              "metrics: %.600s", r.body);
    http_free(&r);
    const char *ok = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2}";
    r = http(&g_text, "GET", "/v1/chat/completions", NULL, NULL, 0, NULL);
    check_error("GET chat", &r, 405, "-", "method_not_allowed");
    CHECK(header_has(&r, "Allow: POST"));
    http_free(&r);
    r = http(&g_text, "PUT", "/v1/chat/completions", NULL, ok, strlen(ok), NULL);
    check_error("PUT chat", &r, 405, "-", NULL);
    http_free(&r);
    r = http(&g_text, "POST", "/health", NULL, ok, strlen(ok), NULL);
    check_error("POST health", &r, 405, "-", NULL);
    http_free(&r);
    r = http(&g_text, "DELETE", "/v1/models", NULL, NULL, 0, NULL);
    check_error("DELETE models", &r, 405, "-", NULL);
    http_free(&r);
    r = http(&g_text, "GET", "/v1/nope", NULL, NULL, 0, NULL);
    check_error("unknown route", &r, 404, "-", "not_found");
    http_free(&r);
    r = http(&g_text, "POST", "/v1/completions", NULL, ok, strlen(ok), NULL);
    check_error("legacy completions", &r, 404, "-", NULL);
    http_free(&r);
    r = http(&g_text, "POST", "/v1/chat/completions", "text/plain", ok, strlen(ok), NULL);
    check_error("text/plain", &r, 415, "-", NULL);
    http_free(&r);
    r = http(&g_text, "POST", "/v1/chat/completions", "", ok, strlen(ok), NULL);
    check_error("no content type", &r, 415, "-", NULL);
    http_free(&r);
    r = http(&g_text, "POST", "/v1/chat/completions", "application/jsonx", ok, strlen(ok), NULL);
    check_error("application/jsonx", &r, 415, "-", NULL);
    http_free(&r);
    r = http(&g_text, "POST", "/v1/chat/completions", "application/json; charset=utf-8", ok,
             strlen(ok), NULL);
    CHECK_MSG(r.status == 200, "charset parameter: %d %.200s", r.status, r.body);
    http_free(&r);
}

/* The text model takes no media: well-formed images and audio are a 400 naming the part. */
static void test_wrong_media_kind(void) {
    if (!g_have_curl || !g_text.pid) { tsr_test_skip("no server"); return; }
    char *png = file_b64("pipeline/media/rgb_2x2.png");
    char *wav = file_b64("pipeline/media/a_0_1s.wav");
    if (!png || !wav) {
        free(png);
        free(wav);
        { tsr_test_skip("media fixtures missing"); return; }
    }
    char *one = image_request(png, 1, 0), *three = image_request(png, 3, 0);
    http_res r = post(&g_text, one);
    check_error("one image, text model", &r, 400, "messages[0].content[1]", "unsupported_media");
    http_free(&r);
    r = post(&g_text, three);
    check_error("three images, text model", &r, 400, "messages[0].content[1]", "unsupported_media");
    http_free(&r);
    sbuf b = {0};
    sb_add(&b, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hear\"},"
               "{\"type\":\"input_audio\",\"input_audio\":{\"format\":\"wav\",\"data\":\"");
    sb_add(&b, wav);
    sb_add(&b, "\"}}]}]}");
    r = post(&g_text, b.s);
    check_error("audio, text model", &r, 400, "messages[0].content[1]", "unsupported_media");
    http_free(&r);
    free(b.s);
    free(one);
    free(three);
    free(png);
    free(wav);
}

static void test_corpus(void) {
    if (!g_have_curl || !g_text.pid) { tsr_test_skip("no server"); return; }
    char *tsv = slurp(tsr_test_fixture("server/bad/cases.tsv"), NULL);
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(tsv, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || !line[0]) continue;
        char name[128], param[192];
        int status = 0;
        if (sscanf(line, "%127[^\t]\t%d\t%191[^\t]", name, &status, param) != 3) {
            CHECK_MSG(0, "bad cases.tsv line '%s'", line);
            continue;
        }
        char rel[200];
        snprintf(rel, sizeof rel, "server/bad/%s.json", name);
        size_t len = 0;
        char *body = slurp(tsr_test_fixture(rel), &len);
        http_res r = http(&g_text, "POST", "/v1/chat/completions", NULL, body, len, NULL);
        check_error(name, &r, status, param, NULL);
        http_free(&r);
        free(body);
        n++;
    }
    free(tsv);
    CHECK_MSG(n >= 60, "only %d corpus cases", n);
    printf("  %d corpus cases\n", n);
    http_res r = post(&g_text, "{\"messages\":[{\"role\":\"user\",\"content\":\"still there?\"}],\"max_tokens\":3}");
    check_completion("after the corpus", &r, 3, NULL);
    http_free(&r);
}

static void raw_send_and_close(int port, const char *data, size_t len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        ssize_t w = send(fd, data, len, MSG_NOSIGNAL);
        (void)w;
        sleep_ms(50);
    }
    if (fd >= 0) close(fd);
}

/* Abuse generated here: sizes, nesting, counts, truncated and oversized uploads. */
static void test_generated(void) {
    if (!g_have_curl || !g_text.pid) { tsr_test_skip("no server"); return; }
    sbuf b = {0};
    /* Nesting past 64 levels, in an ignored field. */
    sb_add(&b, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"metadata\":");
    for (int i = 0; i < 200; i++) sb_add(&b, "[");
    for (int i = 0; i < 200; i++) sb_add(&b, "]");
    sb_add(&b, "}");
    http_res r = post(&g_text, b.s);
    check_error("deep nesting", &r, 400, "-", "invalid_json");
    http_free(&r);
    free(b.s);
    memset(&b, 0, sizeof b);
    /* 100,000 levels: must not recurse into a stack overflow. */
    char *deep = malloc(200001);
    memset(deep, '[', 100000);
    memset(deep + 100000, ']', 100000);
    deep[200000] = 0;
    r = post(&g_text, deep);
    check_error("very deep nesting", &r, 400, "-", NULL);
    http_free(&r);
    free(deep);
    /* 1,000 image parts (a tiny valid PNG). */
    char *png = file_b64("pipeline/media/rgb_2x2.png");
    char *many = png ? image_request(png, 1000, 0) : NULL;
    if (many) {
        r = post(&g_text, many);
        check_error("1000 images", &r, 400, "messages[0].content[17]", "too_many_images");
        http_free(&r);
    }
    free(many);
    /* 2,000 messages. */
    sb_add(&b, "{\"messages\":[");
    for (int i = 0; i < 2000; i++) sb_add(&b, i ? ",{\"role\":\"user\",\"content\":\"x\"}" : "{\"role\":\"user\",\"content\":\"x\"}");
    sb_add(&b, "]}");
    r = post(&g_text, b.s);
    check_error("2000 messages", &r, 400, "messages", "too_many_messages");
    http_free(&r);
    free(b.s);
    memset(&b, 0, sizeof b);
    /* An image over --max-media-bytes (64 KiB) inside a body under --max-body. */
    size_t big = 100000;
    uint8_t *raw = calloc(1, big);
    memcpy(raw, "\x89PNG\r\n\x1a\n", 8);
    char *bb = b64(raw, big);
    sb_add(&b, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,");
    sb_add(&b, bb);
    sb_add(&b, "\"}}]}]}");
    r = post(&g_text, b.s);
    check_error("image over the media limit", &r, 400, "messages[0].content[0].image_url.url",
                "media_too_large");
    http_free(&r);
    /* Base64 cut short (a length that no encoding has). */
    b.s[b.len - 10] = 0;
    b.len -= 10;
    sb_add(&b, "A\"}}]}]}");
    r = post(&g_text, b.s);
    CHECK_MSG(r.status == 400, "truncated base64: %d %.200s", r.status, r.body);
    http_free(&r);
    free(b.s);
    memset(&b, 0, sizeof b);
    free(bb);
    free(raw);
    /* A body over --max-body (2 MiB): 413 from Content-Length, before it is read. */
    size_t huge = 3u << 20;
    char *hb = malloc(huge + 1);
    memset(hb, ' ', huge);
    memcpy(hb, "{\"messages\":\"", 13);
    hb[huge - 2] = '"';
    hb[huge - 1] = '}';
    hb[huge] = 0;
    r = http(&g_text, "POST", "/v1/chat/completions", NULL, hb, huge, NULL);
    check_error("body over the limit", &r, 413, "-", "request_too_large");
    http_free(&r);
    /* The same without Content-Length (chunked): refused while reading; the client may see
     * the 413 or a closed connection, never a success. */
    r = http(&g_text, "POST", "/v1/chat/completions", NULL, hb, huge, "Transfer-Encoding: chunked");
    CHECK_MSG(r.status != 200, "chunked body over the limit answered %d", r.status);
    http_free(&r);
    free(hb);
    /* Truncated uploads and garbage on raw sockets. */
    const char *trunc = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "Content-Length: 1000\r\n\r\n{\"messages\":[{\"role\":";
    raw_send_and_close(g_text.port, trunc, strlen(trunc));
    const char *head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le";
    raw_send_and_close(g_text.port, head, strlen(head));
    const char *junk = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n";
    raw_send_and_close(g_text.port, junk, strlen(junk));
    const char *badlen = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: -5\r\n\r\n{}";
    raw_send_and_close(g_text.port, badlen, strlen(badlen));
    r = post(&g_text, "{\"messages\":[{\"role\":\"user\",\"content\":\"after abuse\"}],\"max_tokens\":3}");
    check_completion("after generated abuse", &r, 3, NULL);
    http_free(&r);
    free(png);
}

/* Sends a whole request on a new socket and returns it (open, the answer unread), or -1. */
static int post_raw(int port, const char *json) {
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s", strlen(json), json);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
                    send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static double metric(const server_proc *s, const char *name) {
    http_res r = http(s, "GET", "/metrics", NULL, NULL, 0, NULL);
    double v = -1;
    for (const char *p = r.body; p && (p = strstr(p, name)); p++)
        if ((p == r.body || p[-1] == '\n') && p[strlen(name)] == ' ') {
            v = atof(p + strlen(name) + 1);
            break;
        }
    http_free(&r);
    return v;
}

/* Clients that go away (streaming or not, queued or generating) free their slots: more long
 * requests than slots, each hung up right after it is sent. */
static void test_disconnect(void) {
    if (!g_have_curl || !g_text.pid) { tsr_test_skip("no server"); return; }
    const char *st = "{\"messages\":[{\"role\":\"user\",\"content\":\"tell a long story\"}],"
                     "\"max_tokens\":480,\"stream\":true}";
    const char *ns = "{\"messages\":[{\"role\":\"user\",\"content\":\"tell a long story\"}],"
                     "\"max_tokens\":480}";
    /* All sent before any is closed: at most two can be generating, the rest wait. */
    int fds[8];
    for (int i = 0; i < 8; i++) fds[i] = post_raw(g_text.port, i % 2 ? ns : st);
    sleep_ms(5);
    for (int i = 0; i < 8; i++)
        if (fds[i] >= 0) close(fds[i]);
    /* curl giving up mid-stream. */
    http_call c[2];
    for (int i = 0; i < 2; i++)
        c[i] = http_start(&g_text, 10 + i, "POST", "/v1/chat/completions", NULL, st, strlen(st),
                          NULL, "0.05");
    for (int i = 0; i < 2; i++) {
        http_res r = http_finish(c[i]);
        http_free(&r);
    }
    double until = now_s() + 60;
    int idle = 0;
    while (!idle && now_s() < until) {
        idle = metric(&g_text, "tessera_slots_busy") == 0 && metric(&g_text, "tessera_queue_length") == 0;
        if (!idle) sleep_ms(50);
    }
    CHECK_MSG(idle, "slots still busy after the clients went away");
    double gone = metric(&g_text, "tessera_client_disconnects_total");
    CHECK_MSG(gone >= 1, "no disconnect counted (%g)", gone);
    printf("  %g of 10 requests cancelled by their clients going away\n", gone);
    /* Both slots answer two concurrent requests. */
    const char *small = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}";
    http_call a = http_start(&g_text, 20, "POST", "/v1/chat/completions", NULL, small, strlen(small), NULL, "60");
    http_call b = http_start(&g_text, 21, "POST", "/v1/chat/completions", NULL, small, strlen(small), NULL, "60");
    http_res ra = http_finish(a), rb = http_finish(b);
    check_completion("after disconnects (a)", &ra, 4, NULL);
    check_completion("after disconnects (b)", &rb, 4, NULL);
    http_free(&ra);
    http_free(&rb);
}

static double cached_tokens(const http_res *r) {
    cJSON *j = cJSON_ParseWithLength(r->body, r->len);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details");
    double v = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(d, "cached_tokens"));
    cJSON_Delete(j);
    return v;
}

/* A conversation that goes on reuses the slot's KV cache (usage.prompt_tokens_details.
 * cached_tokens) and replies exactly as a fresh slot does. */
static void test_kv_reuse(void) {
    if (!g_have_curl) { tsr_test_skip("curl missing"); return; }
    server_proc s;
    const char *args[] = {"--model", text_model(), "--parallel", "1", "--ctx", "512", NULL};
    if (start_server(&s, args, 1)) {
        CHECK_MSG(0, "server did not start");
        return;
    }
    const char *turn1 = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}],"
                        "\"max_tokens\":1,\"temperature\":0}";
    const char *turn2 = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"},"
                        "{\"role\":\"assistant\",\"content\":\"Hi\"},{\"role\":\"user\",\"content\":"
                        "\"Tell me more\"}],\"max_tokens\":10,\"temperature\":0}";
    const char *other = "{\"messages\":[{\"role\":\"user\",\"content\":\"unrelated\"}],\"max_tokens\":2}";
    http_res a = post(&s, turn1);
    check_completion("turn 1", &a, 1, NULL);
    CHECK(cached_tokens(&a) == 0);
    http_res b = post(&s, turn2);
    char *reused = NULL, *fresh = NULL;
    check_completion("turn 2 on the cache", &b, 10, &reused);
    double k = cached_tokens(&b);
    CHECK_MSG(k > 0, "turn 2 reused no cached tokens: %.300s", b.body);
    http_res c = post(&s, other);
    http_res d = post(&s, turn2);
    check_completion("turn 2 fresh", &d, 10, &fresh);
    CHECK_MSG(cached_tokens(&d) == 0, "fresh turn 2 claims cached tokens");
    CHECK_MSG(reused && fresh && !strcmp(reused, fresh), "reused '%s' != fresh '%s'", reused, fresh);
    http_res m = http(&s, "GET", "/metrics", NULL, NULL, 0, NULL);
    char want[96];
    snprintf(want, sizeof want, "tessera_prompt_tokens_cached_total %g\n", k);
    CHECK_MSG(strstr(m.body, want) != NULL, "metrics lack '%s'", want);
    http_free(&m);
    free(reused);
    free(fresh);
    http_free(&a);
    http_free(&b);
    http_free(&c);
    http_free(&d);
    CHECK_MSG(stop_server(&s) == 0, "server did not exit 0");
    /* With two slots the conversation goes back to the slot that holds it. */
    if (!g_text.pid) return;
    static const char *const topics[] = {"apples", "rivers", "engines", "clouds"};
    for (int i = 0; i < 4; i++) {
        char t1[256], t2[512];
        snprintf(t1, sizeof t1, "{\"messages\":[{\"role\":\"user\",\"content\":\"About %s\"}],"
                 "\"max_tokens\":1,\"temperature\":0}", topics[i]);
        snprintf(t2, sizeof t2, "{\"messages\":[{\"role\":\"user\",\"content\":\"About %s\"},"
                 "{\"role\":\"assistant\",\"content\":\"Yes\"},{\"role\":\"user\",\"content\":"
                 "\"Go on\"}],\"max_tokens\":3,\"temperature\":0}", topics[i]);
        a = post(&g_text, t1);
        b = post(&g_text, t2);
        CHECK_MSG(a.status == 200 && b.status == 200 && cached_tokens(&b) > 0,
                  "two slots, %s: turn 2 not on its slot's cache: %.300s", topics[i], b.body);
        http_free(&a);
        http_free(&b);
    }
}

/* --timeout passed: a 503 / 504 error body, or for a stream already answered 200 an error
 * event then [DONE]; the server keeps serving. */
static void test_deadline_and_shutdown(void) {
    if (!g_have_curl) { tsr_test_skip("curl missing"); return; }
    server_proc s;
    const char *args[] = {"--model", text_model(), "--parallel", "1", "--ctx", "512",
                          "--timeout", "0.0001", "--grace", "0", NULL};
    if (start_server(&s, args, 1)) {
        CHECK_MSG(0, "server with --timeout did not start");
        return;
    }
    const char *ns = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":400}";
    const char *st = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":400,\"stream\":true}";
    http_res r = post(&s, ns);
    CHECK_MSG(r.status == 503 || r.status == 504, "deadline: %d %.200s", r.status, r.body);
    check_error("deadline", &r, r.status, "-", "timeout");
    http_free(&r);
    r = post(&s, st);
    CHECK_MSG(r.status == 200 && strstr(r.body, "data: {\"error\":") &&
                  strstr(r.body, "\"code\":\"timeout\"") && strstr(r.body, "data: [DONE]\n\n") &&
                  !strstr(r.body, "finish_reason\":\"length"),
              "stream past the deadline: %d %.400s", r.status, r.body);
    http_free(&r);
    r = http(&s, "GET", "/health", NULL, NULL, 0, NULL);
    CHECK(r.status == 200);
    http_free(&r);
    CHECK_MSG(stop_server(&s) == 0, "server with --timeout did not exit 0");
}

/* API key, a full queue (503 + Retry-After), the key from the environment. */
static void test_key_and_queue(void) {
    if (!g_have_curl) { tsr_test_skip("curl missing"); return; }
    server_proc s;
    const char *args[] = {"--model", text_model(), "--api-key", "sekret", "--parallel", "1",
                          "--queue", "0", "--ctx", "512", NULL};
    if (start_server(&s, args, 1)) {
        CHECK_MSG(0, "server with --api-key did not start");
        return;
    }
    const char *ok = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2}";
    http_res r = http(&s, "POST", "/v1/chat/completions", NULL, ok, strlen(ok), NULL);
    check_error("no key", &r, 401, "-", "invalid_api_key");
    http_free(&r);
    r = http(&s, "POST", "/v1/chat/completions", NULL, ok, strlen(ok), "Authorization: Bearer wrong");
    check_error("wrong key", &r, 401, "-", NULL);
    http_free(&r);
    r = http(&s, "POST", "/v1/chat/completions", NULL, ok, strlen(ok), "Authorization: Bearer sekretX");
    check_error("longer key", &r, 401, "-", NULL);
    http_free(&r);
    r = http(&s, "GET", "/v1/models", NULL, NULL, 0, NULL);
    check_error("models without key", &r, 401, "-", NULL);
    http_free(&r);
    r = http(&s, "GET", "/health", NULL, NULL, 0, NULL);
    CHECK_MSG(r.status == 200, "health needs no key: %d", r.status);
    http_free(&r);
    r = http(&s, "POST", "/v1/chat/completions", NULL, ok, strlen(ok), "Authorization: Bearer sekret");
    check_completion("right key", &r, 2, NULL);
    http_free(&r);
    /* One slot, no queue: of several concurrent long requests some get 503 + Retry-After; none
     * gets anything but 200 or 503. */
    const char *slow = "{\"messages\":[{\"role\":\"user\",\"content\":\"go on\"}],\"max_tokens\":480}";
    enum { N = 6 };
    int n200 = 0, n503 = 0;
    /* Rounds until both were seen (a loaded machine may start the clients far apart). */
    for (int round = 0; round < 5 && !(n200 && n503); round++) {
        http_call c[N];
        for (int i = 0; i < N; i++)
            c[i] = http_start(&s, 30 + i, "POST", "/v1/chat/completions", NULL, slow, strlen(slow),
                              "Authorization: Bearer sekret", "120");
        for (int i = 0; i < N; i++) {
            r = http_finish(c[i]);
            if (r.status == 200) n200++;
            else if (r.status == 503) {
                n503++;
                check_error("queue full", &r, 503, "-", "queue_full");
            } else CHECK_MSG(0, "concurrent request %d: status %d %.200s", i, r.status, r.body);
            http_free(&r);
        }
    }
    CHECK_MSG(n200 >= 1 && n503 >= 1, "queue 0: %d answered, %d refused", n200, n503);
    CHECK_MSG(stop_server_with(&s, SIGINT) == 0, "server with a key did not exit 0 on SIGINT");
}

/* SIGTERM while streams run and wait (--grace 0): every stream that was answered 200 ends
 * with [DONE], and the server exits 0 (under ASan: without leaks). */
static void test_shutdown(void) {
    if (!g_have_curl) { tsr_test_skip("curl missing"); return; }
    server_proc s;
    const char *args[] = {"--model", text_model(), "--parallel", "1", "--ctx", "512", "--grace",
                          "0", NULL};
    if (start_server(&s, args, 1)) {
        CHECK_MSG(0, "server did not start");
        return;
    }
    const char *st = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":480,\"stream\":true}";
    enum { N = 4 };
    http_call c[N];
    for (int i = 0; i < N; i++)
        c[i] = http_start(&s, 40 + i, "POST", "/v1/chat/completions", NULL, st, strlen(st), NULL, "60");
    sleep_ms(30);
    pid_t pid = s.pid;
    int rc = stop_server(&s);
    CHECK_MSG(rc == 0, "SIGTERM during streams: exit %d", rc);
    for (int i = 0; i < N; i++) {
        http_res r = http_finish(c[i]);
        if (r.status == 200)
            CHECK_MSG(strstr(r.body, "data: [DONE]\n\n") != NULL, "stream %d cut without [DONE]: %.300s",
                      i, r.body + (r.len > 300 ? r.len - 300 : 0));
        else
            CHECK_MSG(r.status == 0 || r.status == 503, "request %d during shutdown: %d", i, r.status);
        http_free(&r);
    }
    (void)pid;
}

/* While the model loads the listener is already up: /health, /v1/models and completions are
 * 503 with Retry-After. The load is held on a FIFO standing in for config.json; released,
 * it fails (not a regular file) and the server exits 1 naming the reason. */
static void test_loading(void) {
    if (!g_have_curl) { tsr_test_skip("curl missing"); return; }
    char dir[128], path[256], target[512];
    snprintf(dir, sizeof dir, "%s/slow_model", g_tmp);
    mkdir(dir, 0700);
    static const char *files[] = {"generation_config.json", "model.safetensors", "tokenizer.json",
                                  "tokenizer_config.json", "chat_template.jinja"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        snprintf(target, sizeof target, "%s/%s", text_model(), files[i]);
        if (symlink(target, path)) perror("symlink");
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (mkfifo(path, 0600)) {
        tsr_test_skip("mkfifo failed");
        return;
    }
    server_proc s;
    const char *args[] = {"--model", dir, NULL};
    if (start_server(&s, args, 0)) {
        CHECK_MSG(0, "server did not listen");
        return;
    }
    http_res r = http(&s, "GET", "/health", NULL, NULL, 0, NULL);
    CHECK_MSG(r.status == 503 && strstr(r.body, "loading") && header_has(&r, "Retry-After: 1"),
              "health while loading: %d %s", r.status, r.body);
    http_free(&r);
    r = post(&s, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    check_error("completion while loading", &r, 503, "-", "model_loading");
    http_free(&r);
    r = http(&s, "GET", "/v1/models", NULL, NULL, 0, NULL);
    check_error("models while loading", &r, 503, "-", "model_loading");
    http_free(&r);
    int fd = open(path, O_WRONLY);
    if (fd >= 0) close(fd);
    int rc = wait_exit(s.pid, 60);
    char *log = slurp(s.log, NULL);
    CHECK_MSG(rc == 1 && strstr(log, "cannot load the model") && strstr(log, "config.json"),
              "failed load: exit %d: %s", rc, log);
    free(log);
}

/* Binding beyond loopback needs a key; bad flags are usage errors. */
static void test_startup_refusals(void) {
    const char *cli = getenv("TSR_CLI");
    if (!cli) { tsr_test_skip("TSR_CLI is not set"); return; }
    char *argv1[] = {(char *)cli, "serve", "--model", (char *)text_model(), "--host", "0.0.0.0",
                     "--port", "0", NULL};
    char log[128];
    snprintf(log, sizeof log, "%s/refuse.log", g_tmp);
    char *envkey = getenv("TESSERA_API_KEY");
    CHECK(!envkey || !envkey[0]);
    pid_t pid = spawn(argv1, log, log);
    int rc = wait_exit(pid, 30);
    char *out = slurp(log, NULL);
    CHECK_MSG(rc == 2 && strstr(out, "API key"), "0.0.0.0 without a key: exit %d: %s", rc, out);
    free(out);
    char *argv0[] = {(char *)cli, "serve", "--help", NULL};
    pid = spawn(argv0, log, log);
    rc = wait_exit(pid, 30);
    out = slurp(log, NULL);
    CHECK_MSG(rc == 0 && strstr(out, "usage: tessera serve"), "--help: exit %d: %s", rc, out);
    free(out);
    char *argv2[] = {(char *)cli, "serve", "--model", (char *)text_model(), "--parallel", "0", NULL};
    pid = spawn(argv2, log, log);
    rc = wait_exit(pid, 30);
    CHECK_MSG(rc == 2, "--parallel 0: exit %d", rc);
    char *argv3[] = {(char *)cli, "serve", "--model", "/nonexistent/model", "--port", "0", NULL};
    pid = spawn(argv3, log, log);
    rc = wait_exit(pid, 60);
    out = slurp(log, NULL);
    CHECK_MSG(rc == 1 && strstr(out, "/nonexistent/model"), "missing model: exit %d: %s", rc, out);
    free(out);
}

/* A multimodal model, when its fixture is present and loads: images (and audio for models
 * that take it) end in 200 with usage. */
static void serve_media_model(const char *dir, const char *name) {
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("  %s: %s absent, skipped\n", name, dir);
        return;
    }
    server_proc s;
    const char *args[] = {"--model", dir, "--parallel", "1", NULL};
    if (start_server(&s, args, 1)) {
        printf("  %s: the server did not load %s, skipped\n", name, dir);
        return;
    }
    http_res r = http(&s, "GET", "/v1/models", NULL, NULL, 0, NULL);
    int takes_image = strstr(r.body, "\"image\"") != NULL;
    int takes_audio = strstr(r.body, "\"audio\"") != NULL;
    http_free(&r);
    char *png = file_b64("pipeline/media/rgb_64x48.png");
    if (takes_image && png) {
        char *one = image_request(png, 1, 0), *two = image_request(png, 2, 0);
        char *st1 = image_request(png, 1, 1);
        r = post(&s, one);
        if (r.status == 501) {
            printf("  %s: images answered 501 (%.200s), skipped\n", name, r.body);
        } else {
            check_completion(name, &r, 8, NULL);
            http_free(&r);
            r = post(&s, two);
            check_completion(name, &r, 8, NULL);
            http_free(&r);
            r = post(&s, st1);
            free(check_stream(name, &r, 0));
            /* A JPEG whose header is fine and whose scan data is cut: the decoder's error,
             * naming the part. */
            size_t jl = 0;
            uint8_t *jpg = tsr_test_read(tsr_test_fixture("../../assets/sample.jpg"), &jl);
            if (jpg && jl > 30000) {
                char *jb = b64(jpg, 30000);
                sbuf b = {0};
                sb_add(&b, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"},"
                           "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,");
                sb_add(&b, png);
                sb_add(&b, "\"}},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/jpeg;base64,");
                sb_add(&b, jb);
                sb_add(&b, "\"}}]}]}");
                http_res t = post(&s, b.s);
                check_error(name, &t, 400, "messages[0].content[2].image_url.url", "invalid_media");
                http_free(&t);
                free(b.s);
                free(jb);
            }
            free(jpg);
            http_res m = http(&s, "GET", "/metrics", NULL, NULL, 0, NULL);
            CHECK_MSG(!strstr(m.body, "tessera_image_encode_seconds_count 0\n"),
                      "%s: no image encode time in /metrics", name);
            http_free(&m);
        }
        http_free(&r);
        free(one);
        free(two);
        free(st1);
    }
    char *wav = file_b64("pipeline/media/a_0_1s.wav");
    if (wav) {
        sbuf b = {0};
        sb_add(&b, "{\"max_tokens\":6,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\","
                   "\"input_audio\":{\"format\":\"wav\",\"data\":\"");
        sb_add(&b, wav);
        sb_add(&b, "\"}},{\"type\":\"text\",\"text\":\"What is this?\"}]}]}");
        r = post(&s, b.s);
        if (takes_audio && r.status != 501) check_completion(name, &r, 6, NULL);
        else if (!takes_audio)
            check_error(name, &r, 400, "messages[0].content[0]", "unsupported_media");
        else printf("  %s: audio answered 501 (%.200s)\n", name, r.body);
        http_free(&r);
        free(b.s);
    }
    free(wav);
    free(png);
    CHECK_MSG(stop_server(&s) == 0, "%s: server did not exit 0", name);
}

/* A loopback image host for the remote-image cases, in a child process: /img.png (the PNG),
 * /redirect (302 to /img.png), /loop (302 to itself), /big (more bytes than the server's
 * --max-media-bytes), anything else 404. Returns the child's pid and sets *port. */
static pid_t image_host(const uint8_t *png, size_t png_len, int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 16) ||
        getsockname(fd, (struct sockaddr *)&a, &al)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    pid_t pid = fork();
    if (pid != 0) {
        close(fd);
        return pid;
    }
    static char big[200000];
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        char req[2048];
        ssize_t n = recv(c, req, sizeof req - 1, 0);
        req[n > 0 ? n : 0] = 0;
        char head[256];
        const void *body = NULL;
        size_t len = 0;
        if (!strncmp(req, "GET /img.png ", 13)) {
            body = png;
            len = png_len;
            snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n");
        } else if (!strncmp(req, "GET /redirect ", 14)) {
            snprintf(head, sizeof head, "HTTP/1.1 302 Found\r\nLocation: /img.png\r\n");
        } else if (!strncmp(req, "GET /loop ", 10)) {
            snprintf(head, sizeof head, "HTTP/1.1 302 Found\r\nLocation: /loop\r\n");
        } else if (!strncmp(req, "GET /big ", 9)) {
            body = big;
            len = sizeof big;
            snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\n");
        } else {
            snprintf(head, sizeof head, "HTTP/1.1 404 Not Found\r\n");
        }
        char h2[384];
        int hl = snprintf(h2, sizeof h2, "%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                          head, len);
        if (send(c, h2, (size_t)hl, MSG_NOSIGNAL) == hl && len)
            (void)send(c, body, len, MSG_NOSIGNAL);
        close(c);
    }
}

static char *url_request(const char *url) {
    sbuf b = {0};
    sb_add(&b, "{\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":["
               "{\"type\":\"image_url\",\"image_url\":{\"url\":\"");
    sb_add(&b, url);
    sb_add(&b, "\"}},{\"type\":\"text\",\"text\":\"What is this?\"}]}]}");
    return b.s;
}

/* http(s) image URLs: refused unless --allow-remote-images names the host; private addresses
 * refused unless --allow-private-hosts; redirects followed and checked; the size cap. */
static void test_remote_images(void) {
    if (!g_have_curl) { tsr_test_skip("curl missing"); return; }
    size_t png_len = 0;
    uint8_t *png = tsr_test_read(tsr_test_fixture("pipeline/media/rgb_64x48.png"), &png_len);
    int hport = 0;
    pid_t host = png ? image_host(png, png_len, &hport) : -1;
    CHECK(host > 0);
    if (host <= 0) {
        free(png);
        return;
    }
    char url[128];
    const char *model = tsr_test_fixture("../../assets/qwen2-vl-tiny");
    struct {
        const char *path, *host, *code;
        int status;
    } cases[] = {{"/img.png", "127.0.0.1", NULL, 200},
                 {"/redirect", "127.0.0.1", NULL, 200},
                 {"/loop", "127.0.0.1", "remote_url_failed", 400},
                 {"/big", "127.0.0.1", "media_too_large", 400},
                 {"/missing", "127.0.0.1", "remote_url_failed", 400},
                 {"/img.png", "localhost", "remote_url_not_allowed", 400}};
    snprintf(url, sizeof url, "http://127.0.0.1:%d/img.png", hport);
    char *body = url_request(url);
    http_res r;
    server_proc s;
    /* Without the flag: refused, saying how to enable it; with it: loopback still refused. */
    const char *plain[] = {"--model", model, NULL};
    const char *strict[] = {"--model", model, "--allow-remote-images", "127.0.0.1", NULL};
    const char *const *setups[2] = {plain, strict};
    for (int k = 0; k < 2; k++) {
        if (start_server(&s, setups[k], 1)) {
            CHECK_MSG(0, "the remote-image server did not start");
            continue;
        }
        r = post(&s, body);
        check_error(k ? "loopback refused" : "remote disabled", &r, 400,
                    "messages[0].content[0].image_url.url",
                    k ? "remote_url_private" : "remote_url_disabled");
        if (!k) CHECK(strstr(r.body, "--allow-remote-images") != NULL);
        http_free(&r);
        CHECK(stop_server(&s) == 0);
    }
    free(body);
    const char *open_args[] = {"--model", model, "--allow-remote-images", "127.0.0.1",
                               "--allow-private-hosts", "--max-media-bytes", "65536", NULL};
    if (!start_server(&s, open_args, 1)) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            snprintf(url, sizeof url, "http://%s:%d%s", cases[i].host, hport, cases[i].path);
            body = url_request(url);
            r = post(&s, body);
            if (cases[i].status == 200)
                check_completion(url, &r, 4, NULL);
            else
                check_error(url, &r, cases[i].status, "messages[0].content[0].image_url.url",
                            cases[i].code);
            printf("  %s: %d\n", url, r.status);
            http_free(&r);
            free(body);
        }
        CHECK(stop_server(&s) == 0);
    } else {
        CHECK_MSG(0, "the remote-image server did not start");
    }
    kill(host, SIGKILL);
    waitpid(host, NULL, 0);
    free(png);
}

static void test_multimodal(void) {
    if (!g_have_curl) { tsr_test_skip("curl missing"); return; }
    serve_media_model(tsr_test_fixture("../../assets/qwen2-vl-tiny"), "qwen2-vl-tiny");
    serve_media_model(tsr_test_fixture("server/minicpmo"), "minicpmo");
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/tsr_server_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    char *curl_v[] = {"curl", "--version", NULL};
    pid_t pid = spawn(curl_v, "/dev/null", "/dev/null");
    g_have_curl = pid > 0 && wait_exit(pid, 30) == 0;
    if (!g_have_curl) printf("curl not found: the HTTP cases are skipped (install curl)\n");
    if (!getenv("TSR_CLI")) {
        printf("TSR_CLI is not set: skipped\n");
        g_have_curl = 0;
    }
    if (g_have_curl) {
        const char *args[] = {"--model", text_model(), "--parallel", "2", "--queue", "8",
                              "--ctx", "512", "--max-body", "2097152", "--max-media-bytes",
                              "65536", "--timeout", "120", NULL};
        if (start_server(&g_text, args, 1)) CHECK_MSG(0, "the text server did not start");
    }
    tsr_test_run("text completions", test_text);
    tsr_test_run("streaming", test_stream);
    tsr_test_run("health, models, metrics, routes", test_endpoints);
    tsr_test_run("media the model cannot take", test_wrong_media_kind);
    tsr_test_run("malformed request corpus", test_corpus);
    tsr_test_run("generated abuse", test_generated);
    tsr_test_run("disconnecting clients", test_disconnect);
    tsr_test_run("KV cache reuse", test_kv_reuse);
    if (g_have_curl && g_text.pid) {
        int rc = stop_server(&g_text);
        CHECK_MSG(rc == 0, "text server: SIGTERM exit %d", rc);
    }
    tsr_test_run("API key and queue", test_key_and_queue);
    tsr_test_run("deadlines", test_deadline_and_shutdown);
    tsr_test_run("shutdown during streams", test_shutdown);
    tsr_test_run("model loading", test_loading);
    tsr_test_run("startup refusals", test_startup_refusals);
    tsr_test_run("multimodal models", test_multimodal);
    tsr_test_run("remote images", test_remote_images);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return tsr_test_finish();
}
