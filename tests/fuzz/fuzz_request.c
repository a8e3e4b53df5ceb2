/* libFuzzer target: the tessera serve request parser (JSON body -> validated request or an
 * OpenAI error), without a socket. Each input is parsed twice: for a model that takes images
 * and audio, and for a text-only one, with small media limits. Every failure must carry an
 * HTTP status, a message and valid-UTF-8 error JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/cli/serve_request.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int pass = 0; pass < 2; pass++) {
        tsr_srv_parse_params pp = tsr_srv_parse_params_default();
        pp.media.max_encoded_bytes = 1u << 20;
        pp.media.max_pixels = 1u << 20;
        if (pass) pp.media_kinds = 0;
        tsr_srv_request r;
        tsr_srv_error e;
        int rc = tsr_srv_request_parse((const char *)data, size, &pp, &r, &e);
        if (rc) {
            if (rc < 400 || rc > 599 || !e.message[0]) abort();
            char *j = tsr_srv_error_json(&e);
            if (j && !tsr_srv_utf8_valid(j, strlen(j))) abort();
            free(j);
            continue;
        }
        if (!r.n_messages || r.n_media > pp.max_images + pp.max_audio) abort();
        for (size_t i = 0; i < r.n_media; i++)
            if (!r.media[i].data || !r.media[i].len) abort();
        tsr_srv_request_free(&r);
    }
    return 0;
}
