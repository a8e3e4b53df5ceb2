/*
 * serve_fetch.c - remote image URLs for tessera serve (--allow-remote-images): http(s) only,
 * hosts on the allow-list only, private / loopback / link-local addresses refused (the address
 * checked is the one connected to: it is pinned with CURLOPT_RESOLVE), redirects followed by
 * hand and each checked again, a size cap while reading and a timeout.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "serve.h"

#define MAX_REDIRECTS 5

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static int host_allowed(const char *hosts, const char *host) {
    size_t n = strlen(host);
    for (const char *p = hosts; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncasecmp(p, host, n)) return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

/* Loopback, private, link-local, carrier-grade NAT, unspecified, multicast and reserved. */
static int addr_private(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr);
        return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 ||
               (a >> 16) == 0xA9FE || (a >> 20) == 0xAC1 || (a >> 16) == 0xC0A8 ||
               (a >> 22) == (100u << 2 | 1u) || (a >> 28) >= 0xE;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        static const uint8_t zero[16];
        if (!memcmp(b, zero, 15) && (b[15] == 0 || b[15] == 1)) return 1; /* :: and ::1 */
        if ((b[0] & 0xFE) == 0xFC || b[0] == 0xFF) return 1;              /* fc00::/7, ff00::/8 */
        if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) return 1;              /* fe80::/10 */
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        if (!memcmp(b, mapped, 12)) {
            struct sockaddr_in v4 = {0};
            v4.sin_family = AF_INET;
            memcpy(&v4.sin_addr, b + 12, 4);
            return addr_private((const struct sockaddr *)(const void *)&v4);
        }
        return 0;
    }
    return 1;
}

typedef struct sink {
    uint8_t *data;
    size_t len, cap, max;
    int over;
} sink;

static size_t on_data(char *p, size_t size, size_t nmemb, void *user) {
    sink *s = user;
    size_t n = size * nmemb;
    if (n > s->max - s->len) {
        s->over = 1;
        return 0;
    }
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + n) cap *= 2;
        if (cap > s->max) cap = s->max;
        uint8_t *d = realloc(s->data, cap);
        if (!d) return 0;
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    return n;
}

/* One GET of url (checked first). *next: the redirect target (malloc'd) or NULL. */
static int fetch_once(const char *url, const tsr_srv_fetch_params *fp, sink *out, char **next,
                      const char *param, tsr_srv_error *err) {
    *next = NULL;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = 0;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT))
        rc = tsr_srv_error_set(err, 400, "invalid_image_url", param, "%s: not a valid URL", param);
    else if (strcasecmp(scheme, "http") && strcasecmp(scheme, "https"))
        rc = tsr_srv_error_set(err, 400, "invalid_image_url", param,
                               "%s: only http and https URLs are fetched", param);
    else if (!host_allowed(fp->hosts, host))
        rc = tsr_srv_error_set(err, 400, "remote_url_not_allowed", param,
                               "%s: host %s is not in --allow-remote-images", param, host);
    struct addrinfo *ai = NULL;
    char addr[INET6_ADDRSTRLEN + 2] = "";
    if (!rc) {
        struct addrinfo hints = {0};
        hints.ai_socktype = SOCK_STREAM;
        const char *h = host;
        char bare[256];
        size_t hl = strlen(host);
        if (host[0] == '[' && hl >= 2 && hl - 2 < sizeof bare) { /* [v6] literal */
            memcpy(bare, host + 1, hl - 2);
            bare[hl - 2] = 0;
            h = bare;
        }
        if (getaddrinfo(h, port, &hints, &ai) || !ai)
            rc = tsr_srv_error_set(err, 400, "remote_url_failed", param,
                                   "%s: cannot resolve %s", param, host);
        else if (addr_private(ai->ai_addr) && !fp->allow_private)
            rc = tsr_srv_error_set(err, 400, "remote_url_private", param,
                                   "%s: %s resolves to a private or local address", param, host);
        else if (ai->ai_family == AF_INET6) {
            addr[0] = '[';
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr,
                      addr + 1, INET6_ADDRSTRLEN);
            strcat(addr, "]");
        } else {
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr, addr,
                      sizeof addr);
        }
    }
    if (ai) freeaddrinfo(ai);
    CURL *c = rc ? NULL : curl_easy_init();
    struct curl_slist *pin = NULL;
    if (!rc && !c) rc = tsr_srv_error_set(err, 500, "out_of_memory", param, "cannot fetch");
    if (!rc) {
        char entry[600];
        snprintf(entry, sizeof entry, "%s:%s:%s", host, port, addr);
        pin = curl_slist_append(NULL, entry);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_RESOLVE, pin);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, fp->timeout_ms);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, fp->timeout_ms);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
        CURLcode cc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        char *loc = NULL;
        if (out->over)
            rc = tsr_srv_error_set(err, 400, "media_too_large", param,
                                   "%s: the image is larger than %zu bytes, the limit", param,
                                   out->max);
        else if (cc != CURLE_OK)
            rc = tsr_srv_error_set(err, 400, "remote_url_failed", param, "%s: %s", param,
                                   curl_easy_strerror(cc));
        else if (status >= 300 && status < 400 &&
                 curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc) {
            *next = strdup(loc);
            if (!*next) rc = tsr_srv_error_set(err, 500, "out_of_memory", param, "redirect");
        } else if (status != 200)
            rc = tsr_srv_error_set(err, 400, "remote_url_failed", param,
                                   "%s: the server answered HTTP %ld", param, status);
    }
    curl_slist_free_all(pin);
    if (c) curl_easy_cleanup(c);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

int tsr_srv_fetch(const char *url, const tsr_srv_fetch_params *fp, uint8_t **data, size_t *len,
                  const char *param, tsr_srv_error *err) {
    *data = NULL;
    *len = 0;
    pthread_once(&g_curl_once, curl_init);
    char *cur = strdup(url);
    if (!cur) return tsr_srv_error_set(err, 500, "out_of_memory", param, "cannot fetch");
    int rc = 0;
    for (int hop = 0;; hop++) {
        sink s = {NULL, 0, 0, fp->max_bytes, 0};
        char *next = NULL;
        rc = fetch_once(cur, fp, &s, &next, param, err);
        free(cur);
        cur = next;
        if (rc || !next) {
            if (!rc) {
                *data = s.data;
                *len = s.len;
            } else {
                free(s.data);
            }
            break;
        }
        free(s.data);
        if (hop == MAX_REDIRECTS) {
            rc = tsr_srv_error_set(err, 400, "remote_url_failed", param,
                                   "%s: more than %d redirects", param, MAX_REDIRECTS);
            break;
        }
    }
    free(cur);
    return rc;
}
