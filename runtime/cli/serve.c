/* tessera serve: an OpenAI-compatible HTTP server (libmicrohttpd, one thread per connection).
 *
 * A connection thread reads the body (413 past the limit), parses and validates it, decodes
 * and preprocesses the media (tsr_processor_run_chat), then queues a job. --parallel slot
 * threads, each with its own tsr_session on the shared model, take jobs from the bounded
 * queue, run the encoders (tsr_prompt_new) and generate. The connection thread waits for its
 * job (or streams its events), watching the socket: a client that goes away cancels the job. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

/* ---- options ------------------------------------------------------------------------- */

typedef struct srv_opts {
    const char *model_dir;
    const char *host;
    const char *alias;
    const char *api_key;
    int port;
    int parallel;
    int queue;
    int threads;
    int64_t ctx;
    double timeout_s; /* per request, from arrival; 0: none */
    double grace_s;   /* shutdown: time in-flight work gets before it is cancelled */
    uint64_t max_body;
    size_t max_images;
    size_t max_audio;
    uint64_t max_media_bytes;
    const char *remote_hosts; /* --allow-remote-images, or NULL */
    int remote_private;       /* --allow-private-hosts */
} srv_opts;

/* ---- metrics ------------------------------------------------------------------------- */

#define N_BUCKETS 14
static const double k_buckets[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                            1,     2.5,  5,     10,   30,  60,  300};

typedef struct histo {
    uint64_t counts[N_BUCKETS]; /* cumulative at print time; per bucket here */
    uint64_t n;
    double sum;
} histo;

static void histo_add(histo *h, double v) {
    int i = 0;
    while (i < N_BUCKETS && v > k_buckets[i]) i++;
    if (i < N_BUCKETS) h->counts[i]++;
    h->n++;
    h->sum += v;
}

/* ---- server state -------------------------------------------------------------------- */

enum { ST_LOADING = 0, ST_READY, ST_FAILED };
enum { CANCEL_NONE = 0, CANCEL_CLIENT, CANCEL_DEADLINE, CANCEL_SHUTDOWN };

typedef struct job job;
typedef struct server server;

typedef struct slot {
    server *sv;
    tsr_session *session;
    pthread_t thread;
    int started;
    int32_t *kv_ids; /* the ids whose keys and values the session holds (kv_n of them) */
    int64_t kv_n, kv_cap;
    int index;
    int busy; /* under sv->mu; kv_ids change only while busy */
} slot;

struct server {
    srv_opts o;
    struct MHD_Daemon *daemon;
    pthread_mutex_t mu; /* state, queue, slots */
    pthread_cond_t cv;
    int state;
    int draining;
    int stopping;
    atomic_int cancel_all;
    job *q_head, *q_tail;
    int q_len;
    int busy;
    int prep_busy; /* requests decoding and preprocessing media now */
    int prep_max;
    char load_error[TSR_ERROR_MSG_MAX + 64];
    pthread_t loader;

    tsr_model *model;
    const tsr_processor *proc;
    uint32_t media_kinds;
    int64_t n_ctx;
    slot *slots;
    char name[128];
    long created;
    atomic_ulong next_id;
    atomic_int in_flight;     /* requests begun and not yet completed (answer sent or failed) */
    atomic_ullong body_bytes; /* request bodies buffered now, all connections together */
    uint64_t body_budget;

    pthread_mutex_t mmu; /* metrics */
    uint64_t by_status[600];
    uint64_t prompt_tokens, completion_tokens, cached_tokens, disconnects;
    histo ttft, latency, image_enc, audio_enc;
};

struct job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    job *next;
    server *sv;
    struct MHD_Connection *conn;
    tsr_srv_request req;
    tsr_tensor_list *inputs; /* processor output */
    char *stop[4];           /* copies of req.stop: the request's JSON is freed once processed */
    int64_t n_prompt;
    int pref; /* the idle slot whose KV cache starts this prompt, or -1 */
    double t0, deadline;
    atomic_int cancel;
    char id[48];
    long created;
    /* output, under mu */
    int done;
    char *buf; /* streaming: SSE bytes; otherwise the reply text */
    size_t len, cap, off;
    int oom;
    int failed;
    tsr_srv_error error;
    tsr_usage usage;
    double t_first;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void abs_after(struct timespec *ts, double seconds) {
    clock_gettime(CLOCK_REALTIME, ts);
    double ns = ts->tv_nsec + seconds * 1e9;
    ts->tv_sec += (time_t)(ns / 1e9);
    ts->tv_nsec = (long)fmod(ns, 1e9);
}

static void count_status(server *sv, int status) {
    pthread_mutex_lock(&sv->mmu);
    if (status >= 100 && status < 600) sv->by_status[status]++;
    pthread_mutex_unlock(&sv->mmu);
}

/* ---- jobs ---------------------------------------------------------------------------- */

static void job_unref(job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last) return;
    tsr_srv_request_free(&j->req);
    for (int i = 0; i < 4; i++) free(j->stop[i]);
    tsr_tensor_list_free(j->inputs);
    free(j->buf);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* Appends bytes to the job's buffer (under j->mu). Returns -1 when out of memory. */
static int buf_append(job *j, const char *s, size_t n) {
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 256;
        while (cap < j->len + n + 1) cap *= 2;
        char *nb = realloc(j->buf, cap);
        if (!nb) {
            j->oom = 1;
            return -1;
        }
        j->buf = nb;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = 0;
    return 0;
}

/* text with every invalid UTF-8 byte replaced by U+FFFD (malloc'd, NUL-terminated). */
static char *utf8_clean(const char *s, size_t n) {
    char *o = malloc(n * 3 + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t step = 1;
        unsigned c = (unsigned char)s[i];
        if (c >= 0xC2 && c <= 0xF4) step = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (i + step <= n && tsr_srv_utf8_valid(s + i, step)) {
            memcpy(o + k, s + i, step);
            k += step;
            i += step;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
    }
    o[k] = 0;
    return o;
}

static const char *finish_reason(tsr_stop_reason r) {
    return r == TSR_STOP_LENGTH ? "length" : "stop";
}

static cJSON *usage_json(const tsr_usage *u) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)u->prompt_tokens);
    cJSON_AddNumberToObject(o, "completion_tokens", (double)u->completion_tokens);
    cJSON_AddNumberToObject(o, "total_tokens", (double)(u->prompt_tokens + u->completion_tokens));
    cJSON *d = cJSON_AddObjectToObject(o, "prompt_tokens_details");
    if (d) cJSON_AddNumberToObject(d, "cached_tokens", (double)u->cached_tokens);
    return o;
}

/* Records what the session's KV cache holds after a generation: the prompt, then the
 * generated ids that were decoded. Anything else (cross-attention states, a count that does
 * not add up, no memory) forgets it, and the next request starts afresh. */
static void slot_remember(slot *sl, const tsr_decode_input *full, const tsr_token_ids *gen) {
    int64_t n_past = tsr_session_n_past(sl->session);
    int64_t n_gen = n_past - full->n_ids;
    sl->kv_n = 0;
    if (full->cross_states || n_gen < 0 || (uint64_t)n_gen > gen->n) return;
    if (n_past > sl->kv_cap) {
        int32_t *nb = realloc(sl->kv_ids, (size_t)n_past * sizeof *nb);
        if (!nb) return;
        sl->kv_ids = nb;
        sl->kv_cap = n_past;
    }
    memcpy(sl->kv_ids, full->ids, (size_t)full->n_ids * sizeof *sl->kv_ids);
    if (n_gen) memcpy(sl->kv_ids + full->n_ids, gen->ids, (size_t)n_gen * sizeof *sl->kv_ids);
    sl->kv_n = n_past;
}

/* How many leading ids of the prompt the slot's KV cache already holds: all of the cache
 * (there is no way to cut it shorter), when it is a proper prefix of the prompt and ends
 * outside the media spans; otherwise 0. */
static int64_t slot_reusable(const slot *sl, const tsr_decode_input *full) {
    int64_t k = sl->kv_n;
    if (k <= 0 || k >= full->n_ids || full->cross_states || tsr_session_n_past(sl->session) != k ||
        memcmp(sl->kv_ids, full->ids, (size_t)k * sizeof *full->ids))
        return 0;
    for (size_t i = 0; i < full->n_spans; i++)
        if (k > full->spans[i].start && k < full->spans[i].start + full->spans[i].n_tokens) return 0;
    return k;
}

/* One chat.completion.chunk; content (clen bytes) and finish may be NULL; usage only: the
 * final usage chunk with empty choices. */
static char *chunk_json(const job *j, int role, const char *content, size_t clen,
                        const char *finish, const tsr_usage *usage) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "id", j->id);
    cJSON_AddStringToObject(root, "object", "chat.completion.chunk");
    cJSON_AddNumberToObject(root, "created", (double)j->created);
    cJSON_AddStringToObject(root, "model", j->sv->name);
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    if (!usage && choices) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddItemToArray(choices, c);
        cJSON_AddNumberToObject(c, "index", 0);
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role && d) cJSON_AddStringToObject(d, "role", "assistant");
        if (role && d) cJSON_AddStringToObject(d, "content", "");
        if (content && d) {
            char *t = utf8_clean(content, clen);
            if (t) cJSON_AddStringToObject(d, "content", t);
            free(t);
        }
        if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
        else cJSON_AddNullToObject(c, "finish_reason");
    }
    if (usage) cJSON_AddItemToObject(root, "usage", usage_json(usage));
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* Appends "data: <json>\n\n" (takes json); under j->mu. */
static int sse_event(job *j, char *json) {
    if (!json) {
        j->oom = 1;
        return -1;
    }
    int rc = buf_append(j, "data: ", 6) || buf_append(j, json, strlen(json)) ||
             buf_append(j, "\n\n", 2);
    free(json);
    return rc ? -1 : 0;
}

/* Marks the job done (under j->mu): a streaming job gets its closing events. */
static void job_finish_locked(job *j) {
    if (j->done) return;
    if (j->req.stream) {
        if (j->failed) {
            sse_event(j, tsr_srv_error_json(&j->error));
        } else {
            sse_event(j, chunk_json(j, 0, NULL, 0, finish_reason(j->usage.stop_reason), NULL));
            if (j->req.include_usage) sse_event(j, chunk_json(j, 0, NULL, 0, NULL, &j->usage));
        }
        buf_append(j, "data: [DONE]\n\n", 14);
    }
    j->done = 1;
    pthread_cond_broadcast(&j->cv);
}

static void job_fail(job *j, const tsr_srv_error *e) {
    if (e->http >= 500 && e->http != 503)
        fprintf(stderr, "tessera serve: %s: %d %s: %s\n", j->id, e->http, e->code, e->message);
    pthread_mutex_lock(&j->mu);
    if (!j->done) {
        j->failed = 1;
        j->error = *e;
        job_finish_locked(j);
    }
    pthread_mutex_unlock(&j->mu);
}

/* Removes j from the queue; 1 when it was there (the queue's reference passes to the caller). */
static int queue_remove(server *sv, job *j) {
    pthread_mutex_lock(&sv->mu);
    int found = 0;
    for (job **p = &sv->q_head; *p; p = &(*p)->next) {
        if (*p == j) {
            *p = j->next;
            if (sv->q_tail == j) {
                sv->q_tail = NULL;
                for (job *q = sv->q_head; q; q = q->next) sv->q_tail = q;
            }
            j->next = NULL;
            sv->q_len--;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&sv->mu);
    return found;
}

/* ---- generation (slot threads) ------------------------------------------------------- */

static int on_token(int32_t id, const char *text, size_t len, void *user) {
    job *j = user;
    (void)id;
    if (atomic_load(&j->cancel) || atomic_load(&j->sv->cancel_all)) return 1;
    if (j->deadline > 0 && now_s() > j->deadline) {
        atomic_store(&j->cancel, CANCEL_DEADLINE);
        return 1;
    }
    pthread_mutex_lock(&j->mu);
    int rc = 0;
    if (j->t_first == 0) j->t_first = now_s();
    if (len) {
        if (j->req.stream) rc = sse_event(j, chunk_json(j, 0, text, len, NULL, NULL));
        else rc = buf_append(j, text, len);
    }
    if (j->req.stream) pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return rc ? 1 : 0;
}

static void run_job(server *sv, slot *sl, job *j) {
    tsr_srv_error e = {0};
    int cancel = atomic_load(&j->cancel);
    if (!cancel && atomic_load(&sv->cancel_all)) cancel = CANCEL_SHUTDOWN;
    if (!cancel && j->deadline > 0 && now_s() > j->deadline) cancel = CANCEL_DEADLINE;
    if (cancel) {
        if (cancel == CANCEL_DEADLINE)
            tsr_srv_error_set(&e, 503, "timeout", NULL,
                              "the request waited longer than --timeout %g s for a slot",
                              sv->o.timeout_s);
        else if (cancel == CANCEL_SHUTDOWN)
            tsr_srv_error_set(&e, 503, "shutting_down", NULL, "the server is shutting down");
        else
            tsr_srv_error_set(&e, 499, "client_closed", NULL, "the client went away");
        job_fail(j, &e);
        return;
    }
    if (j->req.stream) {
        pthread_mutex_lock(&j->mu);
        sse_event(j, chunk_json(j, 1, NULL, 0, NULL, NULL));
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
    tsr_error err = {0};
    tsr_prompt *prompt = NULL;
    tsr_status st = tsr_prompt_new(sv->model, sl->session, j->inputs, &prompt, &err);
    double img_ms = prompt ? tsr_prompt_image_ms(prompt) : 0;
    double aud_ms = prompt ? tsr_prompt_audio_ms(prompt) : 0;
    tsr_generate_params gp = tsr_generate_params_default();
    tsr_usage usage;
    memset(&usage, 0, sizeof usage);
    tsr_token_ids gen = {0};
    int64_t cached = 0;
    if (!st) {
        /* A conversation that goes on: the ids the slot decoded last time start this prompt,
         * so only the rest is decoded. Otherwise the KV cache starts empty. */
        const tsr_decode_input *full = tsr_prompt_input(prompt);
        tsr_decode_input in = *full;
        cached = slot_reusable(sl, full);
        if (cached && tsr_prompt_input_from(prompt, cached, &in, &err) != TSR_OK) cached = 0;
        if (!cached) {
            tsr_session_reset(sl->session);
            in = *full;
        }
        sl->kv_n = 0;
        gp.sampling = j->req.sampling;
        int64_t room = sv->n_ctx - j->n_prompt;
        gp.max_tokens = j->req.max_tokens > 0 && j->req.max_tokens < room ? j->req.max_tokens : room;
        gp.tokenizer = tsr_processor_tokenizer(sv->proc);
        gp.stop = j->req.n_stop ? j->req.stop : NULL;
        gp.n_stop = j->req.n_stop;
        gp.on_token = on_token;
        gp.user = j;
        st = tsr_session_generate(sl->session, &in, &gp, &gen, &usage, &err);
        if (!st) slot_remember(sl, full, &gen);
        usage.prompt_tokens = full->n_ids;
        usage.cached_tokens = cached;
    }
    if (st) {
        tsr_session_reset(sl->session);
        sl->kv_n = 0;
        cached = 0;
    }
    tsr_token_ids_free(&gen);
    tsr_prompt_free(prompt);
    double t_end = now_s();
    cancel = atomic_load(&j->cancel);
    if (!cancel && atomic_load(&sv->cancel_all) && usage.stop_reason == TSR_STOP_CANCELLED)
        cancel = CANCEL_SHUTDOWN;

    pthread_mutex_lock(&sv->mmu);
    if (img_ms > 0) histo_add(&sv->image_enc, img_ms / 1e3);
    if (aud_ms > 0) histo_add(&sv->audio_enc, aud_ms / 1e3);
    sv->prompt_tokens += (uint64_t)(usage.prompt_tokens > 0 ? usage.prompt_tokens : 0);
    sv->completion_tokens += (uint64_t)(usage.completion_tokens > 0 ? usage.completion_tokens : 0);
    sv->cached_tokens += (uint64_t)(cached > 0 ? cached : 0);
    if (j->t_first > 0) histo_add(&sv->ttft, j->t_first - j->t0);
    if (!st && !cancel) histo_add(&sv->latency, t_end - j->t0);
    if (cancel == CANCEL_CLIENT) sv->disconnects++;
    pthread_mutex_unlock(&sv->mmu);

    if (st) {
        int http = tsr_srv_http_status(st);
        tsr_srv_error_set(&e, http, st == TSR_ERR_LIMIT ? "context_length_exceeded" : tsr_status_name(st),
                          NULL, "%s", err.message);
        job_fail(j, &e);
        return;
    }
    if (cancel || j->oom) {
        if (cancel == CANCEL_DEADLINE)
            tsr_srv_error_set(&e, 504, "timeout", NULL,
                              "generation passed the --timeout of %g s", sv->o.timeout_s);
        else if (cancel == CANCEL_SHUTDOWN)
            tsr_srv_error_set(&e, 503, "shutting_down", NULL,
                              "the server is shutting down; generation was cancelled");
        else if (cancel == CANCEL_CLIENT)
            tsr_srv_error_set(&e, 499, "client_closed", NULL, "the client went away");
        else
            tsr_srv_error_set(&e, 500, "out_of_memory", NULL, "out of memory for the reply");
        job_fail(j, &e);
        return;
    }
    pthread_mutex_lock(&j->mu);
    j->usage = usage;
    job_finish_locked(j);
    pthread_mutex_unlock(&j->mu);
}

/* The first queued job this slot may take: one that prefers no slot, this one, or a slot that
 * is busy (under sv->mu). */
static job *take_job(server *sv, slot *sl) {
    job *prev = NULL;
    for (job *j = sv->q_head; j; prev = j, j = j->next) {
        if (j->pref >= 0 && j->pref != sl->index && !sv->slots[j->pref].busy && !sv->stopping)
            continue;
        if (prev) prev->next = j->next;
        else sv->q_head = j->next;
        if (sv->q_tail == j) sv->q_tail = prev;
        j->next = NULL;
        sv->q_len--;
        return j;
    }
    return NULL;
}

/* The idle slot whose KV cache holds the longest proper prefix of the job's input ids, or -1
 * (under sv->mu). */
static int preferred_slot(server *sv, const job *j) {
    const tsr_tensor *t = tsr_tensor_list_get(j->inputs, "input_ids");
    if (!t || t->dtype != TSR_DTYPE_I64 || !tsr_tensor_is_contiguous(t)) return -1;
    const int64_t *ids = t->data;
    int best = -1;
    int64_t best_n = 0;
    for (int i = 0; i < sv->o.parallel; i++) {
        const slot *sl = &sv->slots[i];
        if (sl->busy || sl->kv_n <= best_n || sl->kv_n >= j->n_prompt) continue;
        int64_t k = 0;
        while (k < sl->kv_n && sl->kv_ids[k] == ids[k]) k++;
        if (k == sl->kv_n) best = i, best_n = k;
    }
    return best;
}

static void *slot_main(void *arg) {
    slot *sl = arg;
    server *sv = sl->sv;
    for (;;) {
        pthread_mutex_lock(&sv->mu);
        job *j = NULL;
        while (!(j = take_job(sv, sl)) && !sv->stopping) pthread_cond_wait(&sv->cv, &sv->mu);
        if (!j) {
            pthread_mutex_unlock(&sv->mu);
            break;
        }
        sv->busy++;
        sl->busy = 1;
        pthread_mutex_unlock(&sv->mu);
        run_job(sv, sl, j);
        pthread_mutex_lock(&sv->mu);
        sv->busy--;
        sl->busy = 0;
        pthread_cond_broadcast(&sv->cv);
        pthread_mutex_unlock(&sv->mu);
        job_unref(j);
    }
    return NULL;
}

/* ---- model loading ------------------------------------------------------------------- */

static int load_progress(float fraction, const char *what, void *user) {
    server *sv = user;
    (void)fraction;
    (void)what;
    pthread_mutex_lock(&sv->mu);
    int stop = sv->draining;
    pthread_mutex_unlock(&sv->mu);
    return stop;
}

static void load_failed(server *sv, const char *what, tsr_status st, const tsr_error *err) {
    pthread_mutex_lock(&sv->mu);
    snprintf(sv->load_error, sizeof sv->load_error, "%s: %s: %s", what, tsr_status_name(st),
             err->message);
    sv->state = ST_FAILED;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
}

static void *loader_main(void *arg) {
    server *sv = arg;
    tsr_error err = {0};
    tsr_model_params mp = tsr_model_params_default();
    mp.progress = load_progress;
    mp.progress_user = sv;
    double t0 = now_s();
    tsr_status st = tsr_model_load(sv->o.model_dir, &mp, &sv->model, &err);
    if (st) {
        load_failed(sv, sv->o.model_dir, st, &err);
        return NULL;
    }
    sv->proc = tsr_model_processor(sv->model);
    if (!sv->proc) {
        tsr_error e = {TSR_ERR_UNSUPPORTED, "the model directory has no tokenizer.json"};
        load_failed(sv, sv->o.model_dir, TSR_ERR_UNSUPPORTED, &e);
        return NULL;
    }
    sv->media_kinds = tsr_model_media_kinds(sv->model);
    tsr_session_params sp = tsr_session_params_default();
    sp.n_ctx = sv->o.ctx;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    sp.n_threads = sv->o.threads ? sv->o.threads
                                 : (int32_t)(cpus / sv->o.parallel > 0 ? cpus / sv->o.parallel : 1);
    for (int i = 0; i < sv->o.parallel; i++) {
        st = tsr_session_new(sv->model, &sp, &sv->slots[i].session, &err);
        if (st) {
            load_failed(sv, "session", st, &err);
            return NULL;
        }
    }
    sv->n_ctx = tsr_session_n_ctx(sv->slots[0].session);
    for (int i = 0; i < sv->o.parallel; i++) {
        sv->slots[i].sv = sv;
        sv->slots[i].index = i;
        if (pthread_create(&sv->slots[i].thread, NULL, slot_main, &sv->slots[i])) {
            tsr_error e = {TSR_ERR_INTERNAL, "cannot start a slot thread"};
            load_failed(sv, "slots", TSR_ERR_INTERNAL, &e);
            return NULL;
        }
        sv->slots[i].started = 1;
    }
    pthread_mutex_lock(&sv->mu);
    sv->state = ST_READY;
    pthread_mutex_unlock(&sv->mu);
    fprintf(stderr,
            "tessera serve: model %s (%s) ready in %.1f s: %d slot(s) of %lld positions, "
            "takes text%s%s\n",
            sv->name, tsr_model_type(sv->model), now_s() - t0, sv->o.parallel,
            (long long)sv->n_ctx, sv->media_kinds & (1u << TSR_MEDIA_IMAGE) ? ", images" : "",
            sv->media_kinds & (1u << TSR_MEDIA_AUDIO) ? ", audio" : "");
    return NULL;
}

/* ---- HTTP helpers -------------------------------------------------------------------- */

typedef struct conn_ctx {
    server *sv;
    char *body;
    size_t len, cap; /* cap bytes are counted in sv->body_bytes */
    int too_large;
    int answered;
    double t0;
} conn_ctx;

static void body_release(conn_ctx *cx) {
    atomic_fetch_sub(&cx->sv->body_bytes, (unsigned long long)cx->cap);
    free(cx->body);
    cx->body = NULL;
    cx->len = cx->cap = 0;
}

static enum MHD_Result send_body(server *sv, struct MHD_Connection *c, int status,
                                 const char *ctype, char *body, const char *retry_after,
                                 const char *allow) {
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE
                                                                              : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (retry_after) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    count_status(sv, status);
    return ok;
}

static enum MHD_Result send_error(server *sv, struct MHD_Connection *c, const tsr_srv_error *e,
                                  const char *allow) {
    char *body = tsr_srv_error_json(e);
    if (!body) return MHD_NO;
    return send_body(sv, c, e->http, "application/json", body, e->http == 503 ? "1" : NULL, allow);
}

static enum MHD_Result fail(server *sv, struct MHD_Connection *c, int http, const char *code,
                            const char *param, const char *msg) {
    tsr_srv_error e;
    tsr_srv_error_set(&e, http, code, param, "%s", msg);
    return send_error(sv, c, &e, NULL);
}

/* 1 when the peer closed its side of the connection (or it failed). */
static int peer_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    char b;
    ssize_t r = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Watches a job while its connection thread waits: the deadline (while queued) and the
 * client. Returns when the job is done; 0, or -1 when the client went away. Call with j->mu
 * held; returns with it held. */
static int job_wait_locked(server *sv, job *j, struct MHD_Connection *c, int until_data) {
    while (!j->done && !(until_data && j->off < j->len)) {
        struct timespec ts;
        abs_after(&ts, 0.05);
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (j->done || (until_data && j->off < j->len)) break;
        pthread_mutex_unlock(&j->mu);
        int gone = peer_gone(c);
        int late = j->deadline > 0 && now_s() > j->deadline;
        tsr_srv_error e;
        if (gone) atomic_store(&j->cancel, CANCEL_CLIENT);
        else if (late) atomic_store(&j->cancel, CANCEL_DEADLINE);
        if ((gone || late) && queue_remove(sv, j)) {
            if (gone) tsr_srv_error_set(&e, 499, "client_closed", NULL, "the client went away");
            else
                tsr_srv_error_set(&e, 503, "timeout", NULL,
                                  "the request waited longer than --timeout %g s for a slot",
                                  sv->o.timeout_s);
            job_fail(j, &e);
            if (gone) {
                pthread_mutex_lock(&sv->mmu);
                sv->disconnects++;
                pthread_mutex_unlock(&sv->mmu);
            }
            job_unref(j); /* the queue's reference */
        }
        pthread_mutex_lock(&j->mu);
        if (gone) return -1;
    }
    return 0;
}

/* ---- streaming ----------------------------------------------------------------------- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    job *j = cls;
    (void)pos;
    pthread_mutex_lock(&j->mu);
    int rc = job_wait_locked(j->sv, j, j->conn, 1);
    ssize_t n;
    if (rc < 0) {
        n = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (j->off < j->len) {
        size_t k = j->len - j->off < max ? j->len - j->off : max;
        memcpy(buf, j->buf + j->off, k);
        j->off += k;
        n = (ssize_t)k;
    } else {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

static void stream_free(void *cls) {
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    int done = j->done;
    pthread_mutex_unlock(&j->mu);
    if (!done) {
        /* The response went away before the job finished: the client is gone. */
        atomic_store(&j->cancel, CANCEL_CLIENT);
        if (queue_remove(j->sv, j)) {
            tsr_srv_error e;
            tsr_srv_error_set(&e, 499, "client_closed", NULL, "the client went away");
            job_fail(j, &e);
            job_unref(j);
        }
    }
    job_unref(j);
}

/* ---- endpoints ----------------------------------------------------------------------- */

static char *completion_json(const job *j) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "id", j->id);
    cJSON_AddStringToObject(root, "object", "chat.completion");
    cJSON_AddNumberToObject(root, "created", (double)j->created);
    cJSON_AddStringToObject(root, "model", j->sv->name);
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON *m = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    char *t = utf8_clean(j->buf ? j->buf : "", j->len);
    cJSON_AddStringToObject(m, "content", t ? t : "");
    free(t);
    cJSON_AddStringToObject(c, "finish_reason", finish_reason(j->usage.stop_reason));
    cJSON_AddItemToObject(root, "usage", usage_json(&j->usage));
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* A library error of the processor as an API error; "media[i]" in the message names the part. */
static void processor_error(const job *j, tsr_status st, const tsr_error *err, tsr_srv_error *e) {
    const char *param = "messages";
    const char *m = strstr(err->message, "media[");
    if (m) {
        size_t i = strtoul(m + 6, NULL, 10);
        if (i < j->req.n_media) param = j->req.media[i].param;
    }
    int http = tsr_srv_http_status(st);
    const char *code = m ? "invalid_media" : "invalid_request";
    if (st == TSR_ERR_UNSUPPORTED) {
        /* Media the model cannot take is the request's fault. */
        if (j->req.n_media && m) http = 400, code = "unsupported_media";
        else code = "unsupported";
    }
    if (st == TSR_ERR_LIMIT) code = "limit_exceeded";
    if (http >= 500 && http != 501) code = "internal_error";
    tsr_srv_error_set(e, http, code, param, "%s", err->message);
}

/* 1 when no more requests may queue (under sv->mu): jobs queued while a slot is idle are
 * taken at once, so only the rest count as waiting. */
static int queue_full(const server *sv) {
    return sv->q_len >= sv->o.queue + (sv->o.parallel - sv->busy);
}

static enum MHD_Result chat_completions(server *sv, struct MHD_Connection *c, conn_ctx *cx) {
    pthread_mutex_lock(&sv->mu);
    int state = sv->state, draining = sv->draining, full_now = state == ST_READY && queue_full(sv);
    pthread_mutex_unlock(&sv->mu);
    if (draining) return fail(sv, c, 503, "shutting_down", NULL, "the server is shutting down");
    if (state != ST_READY)
        return fail(sv, c, 503, "model_loading", NULL, "the model is still loading; retry shortly");
    /* Refused before any parsing or media work when the queue is already full (checked
     * again when the request queues). */
    if (full_now)
        return fail(sv, c, 503, "queue_full", NULL,
                    "all generation slots are busy and the queue is full; retry shortly");
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct || strncasecmp(ct, "application/json", 16) || (ct[16] && ct[16] != ';' && ct[16] != ' '))
        return fail(sv, c, 415, "unsupported_media_type", NULL,
                    "the body must be JSON with Content-Type: application/json");

    job *j = calloc(1, sizeof *j);
    if (!j) return fail(sv, c, 500, "out_of_memory", NULL, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->sv = sv;
    j->conn = c;
    j->t0 = cx->t0;
    j->deadline = sv->o.timeout_s > 0 ? cx->t0 + sv->o.timeout_s : 0;
    j->created = (long)time(NULL);
    snprintf(j->id, sizeof j->id, "chatcmpl-%lx%08lx", (unsigned long)j->created,
             (unsigned long)atomic_fetch_add(&sv->next_id, 1));

    tsr_srv_parse_params pp = tsr_srv_parse_params_default();
    pp.media_kinds = sv->media_kinds;
    pp.max_images = sv->o.max_images;
    pp.max_audio = sv->o.max_audio;
    pp.media.max_encoded_bytes = sv->o.max_media_bytes;
    pp.remote_images = sv->o.remote_hosts != NULL;
    tsr_srv_error e;
    if (tsr_srv_request_parse(cx->body, cx->len, &pp, &j->req, &e)) {
        job_unref(j);
        return send_error(sv, c, &e, NULL);
    }
    body_release(cx);

    /* Remote images, media decoding and preprocessing happen here, before the request takes
     * a slot. */
    tsr_srv_fetch_params fp = {sv->o.remote_hosts, (size_t)sv->o.max_media_bytes, 10000,
                               sv->o.remote_private};
    if (fp.timeout_ms > 0 && sv->o.timeout_s > 0 && sv->o.timeout_s * 1000 < fp.timeout_ms)
        fp.timeout_ms = (long)(sv->o.timeout_s * 1000) + 1;
    for (size_t i = 0; i < j->req.n_media; i++) {
        tsr_srv_media *m = &j->req.media[i];
        if (m->url && tsr_srv_fetch(m->url, &fp, &m->data, &m->len, m->param, &e)) {
            job_unref(j);
            return send_error(sv, c, &e, NULL);
        }
    }
    tsr_media *media = calloc(j->req.n_media ? j->req.n_media : 1, sizeof *media);
    if (!media) {
        job_unref(j);
        return fail(sv, c, 500, "out_of_memory", NULL, "out of memory");
    }
    for (size_t i = 0; i < j->req.n_media; i++) {
        media[i].kind = j->req.media[i].kind;
        media[i].data = j->req.media[i].data;
        media[i].len = j->req.media[i].len;
    }
    /* Decoded media can be large: at most prep_max requests decode and preprocess at once. */
    int waited_out = 0;
    if (j->req.n_media) {
        pthread_mutex_lock(&sv->mu);
        while (sv->prep_busy >= sv->prep_max && !sv->draining && !waited_out) {
            struct timespec ts;
            abs_after(&ts, 0.05);
            pthread_cond_timedwait(&sv->cv, &sv->mu, &ts);
            if (j->deadline > 0 && now_s() > j->deadline) waited_out = 1;
        }
        if (!waited_out) sv->prep_busy++;
        pthread_mutex_unlock(&sv->mu);
    }
    if (waited_out) {
        free(media);
        job_unref(j);
        return fail(sv, c, 503, "timeout", NULL,
                    "the request waited longer than --timeout for media decoding");
    }
    tsr_error err = {0};
    tsr_status st = tsr_processor_run_chat(sv->proc, j->req.messages, j->req.n_messages, media,
                                           j->req.n_media, &j->inputs, &err);
    free(media);
    if (j->req.n_media) {
        pthread_mutex_lock(&sv->mu);
        sv->prep_busy--;
        pthread_cond_broadcast(&sv->cv);
        pthread_mutex_unlock(&sv->mu);
    }
    if (st) {
        processor_error(j, st, &err, &e);
        job_unref(j);
        return send_error(sv, c, &e, NULL);
    }
    /* The JSON and the encoded media are no longer needed: a queued job keeps the tensors,
     * the settings and its stop strings. */
    for (size_t i = 0; i < j->req.n_stop; i++) {
        if (!(j->stop[i] = strdup(j->req.stop[i]))) {
            job_unref(j);
            return fail(sv, c, 500, "out_of_memory", NULL, "out of memory");
        }
        j->req.stop[i] = j->stop[i];
    }
    for (size_t i = 0; i < j->req.n_media; i++) {
        free(j->req.media[i].data);
        free(j->req.media[i].url);
    }
    free(j->req.media);
    free(j->req.parts);
    free(j->req.messages);
    cJSON_Delete(j->req.doc);
    j->req.media = NULL;
    j->req.parts = NULL;
    j->req.messages = NULL;
    j->req.doc = NULL;
    j->req.model = NULL;
    j->req.n_media = j->req.n_parts = j->req.n_messages = 0;
    const tsr_tensor *ids = tsr_tensor_list_get(j->inputs, "input_ids");
    j->n_prompt = ids ? tsr_tensor_numel(ids) : 0;
    if (j->n_prompt >= sv->n_ctx) {
        tsr_srv_error_set(&e, 400, "context_length_exceeded", "messages",
                          "the prompt is %lld tokens; the context holds %lld (--ctx)",
                          (long long)j->n_prompt, (long long)sv->n_ctx);
        job_unref(j);
        return send_error(sv, c, &e, NULL);
    }

    pthread_mutex_lock(&sv->mu);
    int full = queue_full(sv), stopping = sv->draining;
    if (!full && !stopping) {
        j->pref = preferred_slot(sv, j);
        j->refs++; /* the queue's */
        if (sv->q_tail) sv->q_tail->next = j;
        else sv->q_head = j;
        sv->q_tail = j;
        sv->q_len++;
        pthread_cond_broadcast(&sv->cv);
    }
    pthread_mutex_unlock(&sv->mu);
    if (full || stopping) {
        job_unref(j);
        if (stopping) return fail(sv, c, 503, "shutting_down", NULL, "the server is shutting down");
        return fail(sv, c, 503, "queue_full", NULL,
                    "all generation slots are busy and the queue is full; retry shortly");
    }

    if (j->req.stream) {
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, j, stream_free);
        if (!r) {
            stream_free(j);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        count_status(sv, 200);
        return ok;
    }

    pthread_mutex_lock(&j->mu);
    int rc = job_wait_locked(sv, j, c, 0);
    pthread_mutex_unlock(&j->mu);
    if (rc < 0) {
        /* Nobody to answer; wait until the slot lets go of the job, then drop the connection. */
        pthread_mutex_lock(&j->mu);
        while (!j->done) pthread_cond_wait(&j->cv, &j->mu);
        pthread_mutex_unlock(&j->mu);
        job_unref(j);
        count_status(sv, 499);
        return MHD_NO;
    }
    enum MHD_Result ok;
    if (j->failed) {
        ok = send_error(sv, c, &j->error, NULL);
    } else {
        char *body = completion_json(j);
        ok = body ? send_body(sv, c, 200, "application/json", body, NULL, NULL)
                  : fail(sv, c, 500, "out_of_memory", NULL, "out of memory");
    }
    job_unref(j);
    return ok;
}

/* GET /v1/models (id NULL): the list; GET /v1/models/{id}: the one model, or 404. */
static enum MHD_Result models(server *sv, struct MHD_Connection *c, const char *id) {
    pthread_mutex_lock(&sv->mu);
    int state = sv->state;
    pthread_mutex_unlock(&sv->mu);
    if (state != ST_READY)
        return fail(sv, c, 503, "model_loading", NULL, "the model is still loading; retry shortly");
    if (id && strcmp(id, sv->name)) {
        tsr_srv_error e;
        tsr_srv_error_set(&e, 404, "model_not_found", "model", "no model '%.200s' (this server has '%s')",
                          id, sv->name);
        return send_error(sv, c, &e, NULL);
    }
    cJSON *root = cJSON_CreateObject(), *m = root;
    if (!id) {
        cJSON_AddStringToObject(root, "object", "list");
        cJSON *data = cJSON_AddArrayToObject(root, "data");
        m = cJSON_CreateObject();
        cJSON_AddItemToArray(data, m);
    }
    cJSON_AddStringToObject(m, "id", sv->name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)sv->created);
    cJSON_AddStringToObject(m, "owned_by", "tessera");
    cJSON_AddStringToObject(m, "model_type", tsr_model_type(sv->model));
    cJSON *mods = cJSON_AddArrayToObject(m, "modalities");
    cJSON_AddItemToArray(mods, cJSON_CreateString("text"));
    if (sv->media_kinds & (1u << TSR_MEDIA_IMAGE)) cJSON_AddItemToArray(mods, cJSON_CreateString("image"));
    if (sv->media_kinds & (1u << TSR_MEDIA_AUDIO)) cJSON_AddItemToArray(mods, cJSON_CreateString("audio"));
    cJSON_AddNumberToObject(m, "context_length", (double)sv->n_ctx);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s) return fail(sv, c, 500, "out_of_memory", NULL, "out of memory");
    return send_body(sv, c, 200, "application/json", s, NULL, NULL);
}

static enum MHD_Result health(server *sv, struct MHD_Connection *c) {
    pthread_mutex_lock(&sv->mu);
    int state = sv->state, draining = sv->draining;
    pthread_mutex_unlock(&sv->mu);
    if (state == ST_READY && !draining)
        return send_body(sv, c, 200, "application/json", strdup("{\"status\":\"ok\"}"), NULL, NULL);
    const char *s = draining ? "{\"status\":\"shutting_down\"}"
                    : state == ST_FAILED ? "{\"status\":\"error\"}"
                                         : "{\"status\":\"loading\"}";
    return send_body(sv, c, 503, "application/json", strdup(s), "1", NULL);
}

/* Appends printf output to a growing string; returns -1 when out of memory. */
typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

static int sb_printf(strbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int sb_printf(strbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return -1;
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return 0;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) return -1;
        b->s = ns;
        b->cap = cap;
    }
}

static void sb_histo(strbuf *b, const char *name, const char *help, const histo *h) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < N_BUCKETS; i++) {
        cum += h->counts[i];
        sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, k_buckets[i], (unsigned long long)cum);
    }
    sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
              (unsigned long long)h->n, name, h->sum, name, (unsigned long long)h->n);
}

static enum MHD_Result metrics(server *sv, struct MHD_Connection *c) {
    strbuf b = {0};
    pthread_mutex_lock(&sv->mu);
    int q = sv->q_len, busy = sv->busy, ready = sv->state == ST_READY;
    pthread_mutex_unlock(&sv->mu);
    pthread_mutex_lock(&sv->mmu);
    sb_printf(&b, "# HELP tessera_requests_total HTTP requests answered, by status code.\n"
                  "# TYPE tessera_requests_total counter\n");
    for (int s = 100; s < 600; s++)
        if (sv->by_status[s])
            sb_printf(&b, "tessera_requests_total{code=\"%d\"} %llu\n", s,
                      (unsigned long long)sv->by_status[s]);
    sb_printf(&b,
              "# HELP tessera_queue_length Requests waiting for a generation slot.\n"
              "# TYPE tessera_queue_length gauge\ntessera_queue_length %d\n"
              "# HELP tessera_slots_busy Generation slots running a request.\n"
              "# TYPE tessera_slots_busy gauge\ntessera_slots_busy %d\n"
              "# HELP tessera_slots Generation slots (--parallel).\n"
              "# TYPE tessera_slots gauge\ntessera_slots %d\n"
              "# HELP tessera_model_ready 1 once the model is loaded.\n"
              "# TYPE tessera_model_ready gauge\ntessera_model_ready %d\n"
              "# HELP tessera_prompt_tokens_total Prompt tokens of the requests (cached ones "
              "included).\n"
              "# TYPE tessera_prompt_tokens_total counter\ntessera_prompt_tokens_total %llu\n"
              "# HELP tessera_prompt_tokens_cached_total Prompt tokens a slot's KV cache already "
              "held (not decoded again).\n"
              "# TYPE tessera_prompt_tokens_cached_total counter\n"
              "tessera_prompt_tokens_cached_total %llu\n"
              "# HELP tessera_completion_tokens_total Tokens generated.\n"
              "# TYPE tessera_completion_tokens_total counter\n"
              "tessera_completion_tokens_total %llu\n"
              "# HELP tessera_client_disconnects_total Requests cancelled because the client "
              "went away.\n"
              "# TYPE tessera_client_disconnects_total counter\n"
              "tessera_client_disconnects_total %llu\n",
              q, busy, sv->o.parallel, ready, (unsigned long long)sv->prompt_tokens,
              (unsigned long long)sv->cached_tokens, (unsigned long long)sv->completion_tokens, (unsigned long long)sv->disconnects);
    sb_histo(&b, "tessera_time_to_first_token_seconds",
             "From request arrival to the first generated token.", &sv->ttft);
    sb_histo(&b, "tessera_request_duration_seconds",
             "From request arrival to the last token of a completed generation.", &sv->latency);
    sb_histo(&b, "tessera_image_encode_seconds", "Vision encoder time per request with images.",
             &sv->image_enc);
    sb_histo(&b, "tessera_audio_encode_seconds", "Audio encoder time per request with audio.",
             &sv->audio_enc);
    pthread_mutex_unlock(&sv->mmu);
    if (!b.s) return fail(sv, c, 500, "out_of_memory", NULL, "out of memory");
    return send_body(sv, c, 200, "text/plain; version=0.0.4", b.s, NULL, NULL);
}

static int authorized(server *sv, struct MHD_Connection *c) {
    if (!sv->o.api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t a = strlen(h), k = strlen(sv->o.api_key);
    unsigned diff = a != k;
    for (size_t i = 0; i < k; i++) diff |= (unsigned)(unsigned char)sv->o.api_key[i] ^
                                            (unsigned)(unsigned char)(i < a ? h[i] : 0);
    return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    server *sv = cls;
    conn_ctx *cx = *con_cls;
    (void)version;
    int is_chat = !strcmp(url, "/v1/chat/completions");
    int is_post = !strcmp(method, MHD_HTTP_METHOD_POST);
    if (!cx) {
        cx = calloc(1, sizeof *cx);
        if (!cx) return MHD_NO;
        cx->t0 = now_s();
        cx->sv = sv;
        *con_cls = cx;
        atomic_fetch_add(&sv->in_flight, 1);
        if (is_chat && is_post) {
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && strtoull(cl, NULL, 10) > sv->o.max_body) cx->too_large = 1;
        }
        if (!cx->too_large) return MHD_YES;
    }
    if (cx->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size && !cx->too_large) {
        size_t n = *upload_size;
        if (!is_chat || !is_post || cx->len + n > sv->o.max_body) {
            cx->too_large = is_chat && is_post;
            body_release(cx);
        } else {
            if (cx->len + n > cx->cap) {
                size_t cap = cx->cap ? cx->cap : 16384;
                while (cap < cx->len + n) cap *= 2;
                if (cap > sv->o.max_body) cap = (size_t)sv->o.max_body;
                /* Bodies buffered by all connections together stay under a budget. */
                unsigned long long more = (unsigned long long)(cap - cx->cap);
                if (atomic_fetch_add(&sv->body_bytes, more) + more > sv->body_budget) {
                    atomic_fetch_sub(&sv->body_bytes, more);
                    body_release(cx);
                    cx->answered = 1;
                    return fail(sv, c, 503, "server_busy", NULL,
                                "too many large request bodies are being received; retry shortly");
                }
                char *nb = realloc(cx->body, cap);
                if (!nb) {
                    atomic_fetch_sub(&sv->body_bytes, more);
                    cx->answered = 1;
                    return fail(sv, c, 500, "out_of_memory", NULL, "out of memory for the body");
                }
                cx->body = nb;
                cx->cap = cap;
            }
            memcpy(cx->body + cx->len, upload, n);
            cx->len += n;
        }
    }
    if (cx->too_large) {
        /* Answered at once; libmicrohttpd closes the connection after the reply. */
        *upload_size = 0;
        cx->answered = 1;
        tsr_srv_error e;
        tsr_srv_error_set(&e, 413, "request_too_large", NULL,
                          "the request body is over the limit of %llu bytes (--max-body)",
                          (unsigned long long)sv->o.max_body);
        return send_error(sv, c, &e, NULL);
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    cx->answered = 1;

    int get = !strcmp(method, MHD_HTTP_METHOD_GET);
    const char *allow = NULL;
    if (!strcmp(url, "/health")) {
        if (get) return health(sv, c);
        allow = "GET";
    } else if (!strcmp(url, "/metrics") || !strcmp(url, "/v1/models") ||
               (!strncmp(url, "/v1/models/", 11) && url[11])) {
        if (get) {
            if (!authorized(sv, c))
                return fail(sv, c, 401, "invalid_api_key", NULL,
                            "missing or wrong API key (Authorization: Bearer KEY)");
            if (url[1] == 'm') return metrics(sv, c);
            return models(sv, c, url[10] == '/' ? url + 11 : NULL);
        }
        allow = "GET";
    } else if (is_chat) {
        if (is_post) {
            if (!authorized(sv, c))
                return fail(sv, c, 401, "invalid_api_key", NULL,
                            "missing or wrong API key (Authorization: Bearer KEY)");
            return chat_completions(sv, c, cx);
        }
        allow = "POST";
    } else {
        tsr_srv_error e;
        tsr_srv_error_set(&e, 404, "not_found", NULL, "no route %s %.200s", method, url);
        return send_error(sv, c, &e, NULL);
    }
    tsr_srv_error e;
    tsr_srv_error_set(&e, 405, "method_not_allowed", NULL, "%s takes %s only, not %s", url, allow,
                      method);
    return send_error(sv, c, &e, allow);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    conn_ctx *cx = *con_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (!cx) return;
    atomic_fetch_sub(&cx->sv->in_flight, 1);
    body_release(cx);
    free(cx);
    *con_cls = NULL;
}

/* ---- command line -------------------------------------------------------------------- */

static void serve_usage(FILE *f) {
    fprintf(f,
            "usage: tessera serve --model DIR [--host 127.0.0.1] [--port 8080] [--parallel N]\n"
            "                     [--queue N] [--timeout S] [--grace S] [--ctx N] [--threads N]\n"
            "                     [--api-key KEY] [--alias NAME] [--max-body BYTES]\n"
            "                     [--max-images N] [--max-media-bytes BYTES]\n"
            "                     [--allow-remote-images HOST[,HOST...]] [--allow-private-hosts]\n"
            "  --port N         0 picks a free port (printed on stderr)\n"
            "  --parallel N     generation slots, each with its own KV cache (default 1)\n"
            "  --queue N        requests that may wait for a slot; 503 beyond (default 64)\n"
            "  --timeout S      per-request deadline in seconds (default 600; 0: none)\n"
            "  --grace S        on SIGINT/SIGTERM, time in-flight requests get (default 10)\n"
            "  --api-key KEY    require Authorization: Bearer KEY (or env TESSERA_API_KEY);\n"
            "                   needed to bind an address other than loopback\n"
            "  --max-body BYTES request body limit, 413 beyond (default 52428800)\n"
            "  --max-images N   images per request (default 16)\n"
            "  --max-media-bytes BYTES  encoded size of one image or audio clip (default 20971520)\n"
            "  --allow-remote-images HOSTS  fetch http(s) image URLs from these hosts (comma-\n"
            "                   separated; private and loopback addresses stay refused)\n"
            "  --allow-private-hosts  let those hosts resolve to private / loopback addresses\n"
            "see docs/server.md\n");
}

static int parse_long(const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || end == s || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

/* Fills the address; 1 when it is a loopback address. -1 when it does not parse. */
static int parse_host(const char *host, int port, struct sockaddr_storage *ss, int *v6) {
    memset(ss, 0, sizeof *ss);
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *v6 = 0;
        return (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *v6 = 1;
        return IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    }
    return -1;
}

static const char *base_name(const char *dir, char *buf, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && dir[s - 1] != '/') s--;
    snprintf(buf, cap, "%.*s", (int)(n - s), dir + s);
    return buf;
}

static void shutdown_server(server *sv) {
    pthread_mutex_lock(&sv->mu);
    sv->draining = 1;
    pthread_mutex_unlock(&sv->mu);
    if (sv->daemon) {
        MHD_socket fd = MHD_quiesce_daemon(sv->daemon);
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    pthread_join(sv->loader, NULL);
    /* In-flight and queued work gets the grace period, then is cancelled. */
    double until = now_s() + sv->o.grace_s;
    pthread_mutex_lock(&sv->mu);
    while ((sv->q_len || sv->busy) && now_s() < until) {
        struct timespec ts;
        abs_after(&ts, 0.05);
        pthread_cond_timedwait(&sv->cv, &sv->mu, &ts);
    }
    int left = sv->q_len + sv->busy;
    pthread_mutex_unlock(&sv->mu);
    if (left) {
        fprintf(stderr, "tessera serve: cancelling %d request(s) after the %g s grace period\n",
                left, sv->o.grace_s);
        atomic_store(&sv->cancel_all, 1);
    }
    pthread_mutex_lock(&sv->mu);
    sv->stopping = 1;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    for (int i = 0; i < sv->o.parallel; i++)
        if (sv->slots[i].started) pthread_join(sv->slots[i].thread, NULL);
    /* Every job is finished; let the answers (stream tails, [DONE]) reach their clients
     * before the connections are closed. */
    for (double until2 = now_s() + 5; atomic_load(&sv->in_flight) > 0 && now_s() < until2;) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (sv->daemon) MHD_stop_daemon(sv->daemon);
    sv->daemon = NULL;
}

int tsr_cli_serve(int argc, char **argv) {
    srv_opts o;
    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.port = 8080;
    o.parallel = 1;
    o.queue = 64;
    o.timeout_s = 600;
    o.grace_s = 10;
    o.max_body = 50u << 20;
    o.max_images = 16;
    o.max_audio = 8;
    o.max_media_bytes = tsr_limits_default().max_encoded_bytes;
    o.api_key = getenv("TESSERA_API_KEY");
    if (o.api_key && !o.api_key[0]) o.api_key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        double v;
        if (!strcmp(a, "--model") && has) o.model_dir = argv[++i];
        else if (!strcmp(a, "--host") && has) o.host = argv[++i];
        else if (!strcmp(a, "--alias") && has) o.alias = argv[++i];
        else if (!strcmp(a, "--api-key") && has) o.api_key = argv[++i];
        else if (!strcmp(a, "--port") && has && parse_long(argv[i + 1], 0, 65535, &v) && v == (int)v)
            o.port = (int)v, i++;
        else if (!strcmp(a, "--parallel") && has && parse_long(argv[i + 1], 1, 256, &v) && v == (int)v)
            o.parallel = (int)v, i++;
        else if (!strcmp(a, "--queue") && has && parse_long(argv[i + 1], 0, 1e6, &v) && v == (int)v)
            o.queue = (int)v, i++;
        else if (!strcmp(a, "--threads") && has && parse_long(argv[i + 1], 0, 1024, &v) && v == (int)v)
            o.threads = (int)v, i++;
        else if (!strcmp(a, "--ctx") && has && parse_long(argv[i + 1], 0, 1e9, &v) && v == (int64_t)v)
            o.ctx = (int64_t)v, i++;
        else if (!strcmp(a, "--timeout") && has && parse_long(argv[i + 1], 0, 1e7, &v))
            o.timeout_s = v, i++;
        else if (!strcmp(a, "--grace") && has && parse_long(argv[i + 1], 0, 1e5, &v))
            o.grace_s = v, i++;
        else if (!strcmp(a, "--max-body") && has && parse_long(argv[i + 1], 1024, 1e12, &v))
            o.max_body = (uint64_t)v, i++;
        else if (!strcmp(a, "--max-media-bytes") && has && parse_long(argv[i + 1], 1, 1e12, &v))
            o.max_media_bytes = (uint64_t)v, i++;
        else if (!strcmp(a, "--max-images") && has && parse_long(argv[i + 1], 0, 4096, &v) &&
                 v == (int)v)
            o.max_images = (size_t)v, i++;
        else if (!strcmp(a, "--allow-remote-images") && has && *argv[i + 1])
            o.remote_hosts = argv[++i];
        else if (!strcmp(a, "--allow-private-hosts"))
            o.remote_private = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            serve_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "tessera serve: unexpected or invalid argument '%s'\n", a);
            serve_usage(stderr);
            return 2;
        }
    }
    if (!o.model_dir) {
        serve_usage(stderr);
        return 2;
    }
    struct sockaddr_storage addr;
    int v6 = 0;
    int loopback = parse_host(o.host, o.port, &addr, &v6);
    if (loopback < 0) {
        fprintf(stderr, "tessera serve: --host '%s' is not an IPv4 or IPv6 address\n", o.host);
        return 2;
    }
    if (!loopback && !o.api_key) {
        fprintf(stderr,
                "tessera serve: refusing to listen on %s without an API key: anyone who can "
                "reach it could use the model. Pass --api-key KEY (or set TESSERA_API_KEY), or "
                "bind 127.0.0.1.\n",
                o.host);
        return 2;
    }

    /* Signals go to the main thread only (every thread started below inherits the mask). */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    server *sv = calloc(1, sizeof *sv);
    if (!sv) return 1;
    sv->o = o;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    sv->prep_max = cpus > 2 ? (int)cpus : 2;
    /* Four bodies of the largest size, or 256 MiB, whichever is more. */
    sv->body_budget = o.max_body * 4 > (256u << 20) ? o.max_body * 4 : (256u << 20);
    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->cv, NULL);
    pthread_mutex_init(&sv->mmu, NULL);
    sv->slots = calloc((size_t)o.parallel, sizeof *sv->slots);
    sv->created = (long)time(NULL);
    if (o.alias) snprintf(sv->name, sizeof sv->name, "%s", o.alias);
    else base_name(o.model_dir, sv->name, sizeof sv->name);
    int rc = 1;
    if (!sv->slots) goto done;

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | (v6 ? MHD_USE_IPv6 : 0);
    unsigned conn_limit = (unsigned)(o.queue + o.parallel + 64);
    sv->daemon = MHD_start_daemon(flags, (uint16_t)o.port, NULL, NULL, on_request, sv,
                                  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_completed, sv,
                                  MHD_OPTION_CONNECTION_LIMIT, conn_limit,
                                  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                                  MHD_OPTION_END);
    if (!sv->daemon) {
        fprintf(stderr, "tessera serve: cannot listen on %s port %d: %s\n", o.host, o.port,
                strerror(errno));
        goto done;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(sv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : o.port;
    fprintf(stderr, "tessera serve: listening on http://%s%s%s:%d (loading %s)\n", v6 ? "[" : "",
            o.host, v6 ? "]" : "", port, o.model_dir);
    if (pthread_create(&sv->loader, NULL, loader_main, sv)) {
        fprintf(stderr, "tessera serve: cannot start the loading thread\n");
        MHD_stop_daemon(sv->daemon);
        sv->daemon = NULL;
        goto done;
    }
    rc = 0;
    for (;;) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        int s = sigtimedwait(&sigs, NULL, &ts);
        if (s == SIGINT || s == SIGTERM) {
            fprintf(stderr, "tessera serve: %s, shutting down\n", s == SIGINT ? "SIGINT" : "SIGTERM");
            break;
        }
        pthread_mutex_lock(&sv->mu);
        int failed = sv->state == ST_FAILED;
        pthread_mutex_unlock(&sv->mu);
        if (failed) {
            fprintf(stderr, "tessera serve: cannot load the model: %s\n", sv->load_error);
            rc = 1;
            break;
        }
    }
    shutdown_server(sv);
done:
    if (sv->slots)
        for (int i = 0; i < o.parallel; i++) {
            tsr_session_free(sv->slots[i].session);
            free(sv->slots[i].kv_ids);
        }
    tsr_model_free(sv->model);
    free(sv->slots);
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->cv);
    pthread_mutex_destroy(&sv->mmu);
    free(sv);
    if (rc == 0) fprintf(stderr, "tessera serve: stopped\n");
    return rc;
}
