/*
 * encoder.c - the encoder registry and helpers shared by the family encoders (encoder.h).
 */
#include "encoder.h"

#include <string.h>
#include <time.h>

static const tsr__encoder_ops *const ENCODERS[] = {
    &tsr__qwen2_vl_encoder, &tsr__qwen2_5_vl_encoder, &tsr__llava_next_encoder,
    &tsr__mllama_encoder,   &tsr__minicpmo_encoder,   &tsr__mistral3_encoder,
};

const tsr__encoder_ops *tsr__encoder_find(const char *model_type) {
    for (size_t i = 0; model_type && i < sizeof ENCODERS / sizeof ENCODERS[0]; i++)
        if (!strcmp(ENCODERS[i]->model_type, model_type)) return ENCODERS[i];
    return NULL;
}

double tsr__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

tsr_status tsr__input_get(const tsr_tensor_list *inputs, const char *name, tsr_dtype dtype,
                          const tsr_tensor **out, tsr_error *err) {
    const tsr_tensor *t = tsr_tensor_list_get(inputs, name);
    if (!t) return TSR_FAIL(err, TSR_ERR_FORMAT, "the processor output has no \"%s\"", name);
    if (t->dtype != dtype)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "\"%s\" is %s, expected %s", name,
                        tsr_dtype_name(t->dtype), tsr_dtype_name(dtype));
    if (!tsr_tensor_is_contiguous(t))
        return TSR_FAIL(err, TSR_ERR_FORMAT, "\"%s\" is not contiguous", name);
    *out = t;
    return TSR_OK;
}

tsr_status tsr__input_ids(const tsr_tensor_list *inputs, const int64_t **ids, int64_t *n,
                          tsr_error *err) {
    const tsr_tensor *t = NULL;
    tsr_status s = tsr__input_get(inputs, "input_ids", TSR_DTYPE_I64, &t, err);
    if (s) return s;
    if (!(t->ndim == 1 || (t->ndim == 2 && t->shape[0] == 1)))
        return TSR_FAIL(err, TSR_ERR_SHAPE, "input_ids has %d dims (shape [1, n] or [n] "
                        "expected: one prompt)", (int)t->ndim);
    *ids = t->data;
    *n = t->shape[t->ndim - 1];
    return TSR_OK;
}

tsr_status tsr__encoded_by_token(tsr_tensor_list *out, const int64_t *ids, int64_t n_ids,
                                 int64_t token_id, tsr_tensor *embeds, tsr_error *err) {
    int64_t count = 0, runs = 0;
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] == token_id) {
            count++;
            if (i == 0 || ids[i - 1] != token_id) runs++;
        }
    if (embeds->ndim != 2 || embeds->shape[0] != count)
        return TSR_FAIL(err, TSR_ERR_SHAPE, "the encoder gives %lld rows for %lld image / audio "
                        "tokens (id %lld) in input_ids",
                        (long long)(embeds->ndim ? embeds->shape[0] : 0),
                        (long long)count, (long long)token_id);
    tsr_tensor spans;
    int64_t shp[2] = {runs, 2};
    tsr_status s = tsr_tensor_alloc(&spans, TSR_DTYPE_I64, 2, shp, err);
    if (s) return s;
    int64_t *sp = spans.data, r = 0;
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] == token_id) {
            if (i == 0 || ids[i - 1] != token_id) {
                sp[2 * r] = i;
                sp[2 * r + 1] = 0;
                r++;
            }
            sp[2 * (r - 1) + 1]++;
        }
    s = tsr_tensor_list_add(out, "embeds", embeds, err);
    if (!s) s = tsr_tensor_list_add(out, "embed_spans", &spans, err);
    tsr_tensor_free(&spans);
    return s;
}
