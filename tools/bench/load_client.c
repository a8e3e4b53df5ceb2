/* Load generator for tessera serve (run by tools/bench/load_server.sh).
 *   load_client PORT CLIENTS SECONDS [DISCONNECT_PERCENT] [MAX_TOKENS] [IMAGE.png]
 * CLIENTS threads send POST /v1/chat/completions over loopback for SECONDS: every other
 * request streams; DISCONNECT_PERCENT of the streaming ones hang up after the first bytes of
 * the body; with IMAGE, every third request carries it as a data: URI. Prints one line: requests by status, disconnects, p50/p99/max latency of the
 * completed requests (ms), and "unexpected_5xx" (5xx other than 503). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char *g_image_uri; /* "data:image/png;base64,..." or NULL */

typedef struct worker {
    int id;
    int port;
    double until;
    int disconnect_pct;
    int max_tokens;
    unsigned seed;
    long by_status[600];
    long failed_connect;
    long disconnects;
    double *lat;
    size_t n_lat, cap_lat;
} worker;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {120, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One request; returns the HTTP status (0: no answer). hangup: close after the first body bytes. */
static int one_request(worker *w, int stream, int hangup) {
    static const char *prompts[] = {"Hello", "Tell me a story about a lighthouse.",
                                    "List three colours.", "What is two plus two?"};
    const char *img = g_image_uri && rand_r(&w->seed) % 3 == 0 ? g_image_uri : NULL;
    size_t cap = 1024 + (img ? strlen(img) : 0);
    char *body = malloc(cap), *req = malloc(cap + 256);
    if (!body || !req) {
        free(body);
        free(req);
        return 0;
    }
    int n;
    if (img)
        n = snprintf(body, cap,
                     "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                     "\"image_url\":{\"url\":\"%s\"}},{\"type\":\"text\",\"text\":\"%s\"}]}],"
                     "\"max_tokens\":%d,\"temperature\":0.8,\"seed\":%u%s}",
                     img, prompts[rand_r(&w->seed) % 4], w->max_tokens, rand_r(&w->seed),
                     stream ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}" : "");
    else
        n = snprintf(body, cap,
                     "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":%d,"
                     "\"temperature\":0.8,\"seed\":%u%s}",
                     prompts[rand_r(&w->seed) % 4], w->max_tokens, rand_r(&w->seed),
                     stream ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}" : "");
    int m = snprintf(req, cap + 256,
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n"
                     "Connection: close\r\n\r\n%s",
                     n, body);
    free(body);
    int fd = connect_to(w->port);
    if (fd < 0) {
        free(req);
        w->failed_connect++;
        return 0;
    }
    int status = 0;
    int sent = send_all(fd, req, (size_t)m);
    free(req);
    if (sent == 0) {
        char buf[8192];
        size_t got = 0;
        for (;;) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0) break;
            if (!status && (size_t)r >= 12 && !memcmp(buf, "HTTP/1.", 7)) status = atoi(buf + 9);
            got += (size_t)r;
            if (hangup && status == 200 && got > 200) {
                w->disconnects++;
                break;
            }
        }
    }
    close(fd);
    return status;
}

static void *run(void *arg) {
    worker *w = arg;
    for (long i = 0; now_s() < w->until; i++) {
        int stream = (i + w->id) % 2;
        int hangup = stream && (int)(rand_r(&w->seed) % 100) < w->disconnect_pct;
        double t0 = now_s();
        int st = one_request(w, stream, hangup);
        double ms = (now_s() - t0) * 1e3;
        if (st > 0 && st < 600) w->by_status[st]++;
        if (st == 200 && !hangup) {
            if (w->n_lat == w->cap_lat) {
                w->cap_lat = w->cap_lat ? w->cap_lat * 2 : 256;
                w->lat = realloc(w->lat, w->cap_lat * sizeof *w->lat);
            }
            w->lat[w->n_lat++] = ms;
        }
        if (st == 503) usleep(20000);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: load_client PORT CLIENTS SECONDS [DISCONNECT_PERCENT] [MAX_TOKENS]\n");
        return 2;
    }
    int port = atoi(argv[1]), clients = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int pct = argc > 4 ? atoi(argv[4]) : 20, max_tokens = argc > 5 ? atoi(argv[5]) : 32;
    if (port <= 0 || clients <= 0 || clients > 1024 || seconds <= 0) return 2;
    if (argc > 6) {
        FILE *f = fopen(argv[6], "rb");
        if (!f) {
            perror(argv[6]);
            return 2;
        }
        static unsigned char data[1 << 20];
        size_t len = fread(data, 1, sizeof data, f);
        fclose(f);
        static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *mime = len > 2 && data[0] == 0xFF && data[1] == 0xD8 ? "image/jpeg" : "image/png";
        g_image_uri = malloc(32 + (len + 2) / 3 * 4);
        size_t k = (size_t)sprintf(g_image_uri, "data:%s;base64,", mime);
        for (size_t i = 0; i < len; i += 3) {
            unsigned v = (unsigned)data[i] << 16 | (i + 1 < len ? (unsigned)data[i + 1] << 8 : 0) |
                         (i + 2 < len ? data[i + 2] : 0);
            g_image_uri[k++] = t[v >> 18];
            g_image_uri[k++] = t[(v >> 12) & 63];
            g_image_uri[k++] = i + 1 < len ? t[(v >> 6) & 63] : '=';
            g_image_uri[k++] = i + 2 < len ? t[v & 63] : '=';
        }
        g_image_uri[k] = 0;
    }
    worker *ws = calloc((size_t)clients, sizeof *ws);
    pthread_t *th = calloc((size_t)clients, sizeof *th);
    double until = now_s() + seconds;
    for (int i = 0; i < clients; i++) {
        ws[i] = (worker){.id = i, .port = port, .until = until, .disconnect_pct = pct,
                         .max_tokens = max_tokens, .seed = 1234u + (unsigned)i};
        pthread_create(&th[i], NULL, run, &ws[i]);
    }
    long by_status[600] = {0}, failed = 0, disc = 0;
    size_t n = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        for (int s = 0; s < 600; s++) by_status[s] += ws[i].by_status[s];
        failed += ws[i].failed_connect;
        disc += ws[i].disconnects;
        n += ws[i].n_lat;
    }
    double *lat = malloc((n ? n : 1) * sizeof *lat);
    size_t k = 0;
    for (int i = 0; i < clients; i++) {
        memcpy(lat + k, ws[i].lat, ws[i].n_lat * sizeof *lat);
        k += ws[i].n_lat;
        free(ws[i].lat);
    }
    qsort(lat, n, sizeof *lat, cmp_d);
    long unexpected = 0, total = 0;
    printf("requests:");
    for (int s = 0; s < 600; s++) {
        if (!by_status[s]) continue;
        printf(" %d=%ld", s, by_status[s]);
        total += by_status[s];
        if (s >= 500 && s != 503) unexpected += by_status[s];
    }
    printf(" total=%ld no_answer_or_refused_connect=%ld disconnects=%ld", total, failed, disc);
    if (n)
        printf(" p50_ms=%.1f p99_ms=%.1f max_ms=%.1f", lat[n / 2], lat[(size_t)((double)(n - 1) * 0.99)],
               lat[n - 1]);
    printf(" unexpected_5xx=%ld\n", unexpected);
    free(lat);
    free(ws);
    free(th);
    free(g_image_uri);
    return unexpected ? 1 : 0;
}
