#include <stdlib.h>
#include <string.h>

#include "family.h"

void tsr__replacements_free(tsr__replacements *r) {
    if (!r) return;
    for (int64_t i = 0; i < r->count; i++) tsr__free(r->text[i]);
    tsr__free(r->text);
    r->text = NULL;
    r->count = 0;
}

tsr_status tsr__added_token_id(const tsr__model_configs *cfg, const char *content, int64_t *id,
                               tsr_error *err) {
    *id = -1;
    const cJSON *dec = cfg && cfg->tokenizer_config
                           ? cJSON_GetObjectItemCaseSensitive(cfg->tokenizer_config,
                                                              "added_tokens_decoder")
                           : NULL;
    if (!dec) return TSR_OK;
    if (!cJSON_IsObject(dec))
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        "tokenizer_config.json: \"added_tokens_decoder\" is not an object");
    const cJSON *e;
    cJSON_ArrayForEach(e, dec) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsString(c) || strcmp(c->valuestring, content) != 0) continue;
        char *end = NULL;
        long long v = strtoll(e->string, &end, 10);
        if (end == e->string || *end != '\0' || v < 0 || v > INT32_MAX)
            return TSR_FAIL(err, TSR_ERR_FORMAT,
                            "tokenizer_config.json: added_tokens_decoder key \"%s\" is not a "
                            "token id", e->string);
        *id = v;
        return TSR_OK;
    }
    return TSR_OK;
}
