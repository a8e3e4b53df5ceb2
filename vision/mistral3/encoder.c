/* vision/mistral3/encoder.c - the mistral3 vision encoder and connector (not implemented yet). */
#include "../encoder.h"

static tsr_status load(const tsr__model_configs *cfg, tsr__weights *w, int32_t text_dim,
                       void **enc, tsr_error *err) {
    (void)cfg; (void)w; (void)text_dim;
    *enc = NULL;
    return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "mistral3: the media encoder is not implemented");
}
static void free_enc(void *enc) { (void)enc; }
static tsr_status encode(const void *enc, tsr__pool *pool, const tsr_tensor_list *inputs,
                         tsr_tensor_list *out, double *image_ms, double *audio_ms,
                         tsr_error *err) {
    (void)enc; (void)pool; (void)inputs; (void)out; (void)image_ms; (void)audio_ms;
    return TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "mistral3: the media encoder is not implemented");
}
static const char *const prefixes[] = {NULL};
const tsr__encoder_ops tsr__mistral3_encoder = {"mistral3", prefixes, NULL, load, free_enc, encode};
