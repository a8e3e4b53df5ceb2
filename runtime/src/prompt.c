/*
 * prompt.c - a processor output run through the model's media encoders: the decoder input
 * of one prompt (tessera.h, "Multimodal prompts"). The family encoders follow
 * vision/encoder.h; this file checks what they hand over before the decoder sees it.
 */
#include <stdio.h>
#include <string.h>

#include "../../text/decoder.h"
#include "../../vision/encoder.h"

struct tsr_prompt {
    tsr_tensor_list *tensors; /* encoder outputs */
    int32_t *ids;
    int64_t n_ids;
    tsr_embed_span *spans, *spans_from;
    size_t n_spans;
    const int64_t *pos;       /* [n_pos_rows, n_ids] in tensors, or NULL */
    int32_t n_pos_rows;
    int64_t *pos_from;
    tsr_tensor cross_mask;    /* owned copy of the processor's cross_attention_mask */
    tsr_tensor cross_mask_from;
    tsr_decode_input in;
    double image_ms, audio_ms;
};

void tsr_prompt_free(tsr_prompt *p) {
    if (!p) return;
    tsr_tensor_list_free(p->tensors);
    tsr__free(p->ids);
    tsr__free(p->spans);
    tsr__free(p->spans_from);
    tsr__free(p->pos_from);
    tsr_tensor_free(&p->cross_mask);
    tsr__free(p);
}

const tsr_decode_input *tsr_prompt_input(const tsr_prompt *p) { return p ? &p->in : NULL; }
const tsr_tensor_list *tsr_prompt_tensors(const tsr_prompt *p) { return p ? p->tensors : NULL; }
double tsr_prompt_image_ms(const tsr_prompt *p) { return p ? p->image_ms : 0.0; }
double tsr_prompt_audio_ms(const tsr_prompt *p) { return p ? p->audio_ms : 0.0; }

/* Media tensors of a processor output: pixel_values (MiniCPM-o: pixel_values.N per image),
 * pixel_values_videos, audio_features. */
static int has_media(const tsr_tensor_list *inputs) {
    static const char *const prefixes[] = {"pixel_values", "audio_features"};
    for (int64_t i = 0; i < tsr_tensor_list_count(inputs); i++)
        for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++)
            if (!strncmp(tsr_tensor_list_name(inputs, i), prefixes[k], strlen(prefixes[k])))
                return 1;
    return 0;
}

static void shape_str(char *buf, size_t cap, const tsr_tensor *t) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Checks the encoder's hand-over (vision/encoder.h) and points the decoder input at it. */
static tsr_status take_outputs(tsr_prompt *p, const tsr_model *m, const tsr_tensor_list *inputs,
                               tsr_error *err) {
    char a[96];
    const tsr_tensor *e = tsr_tensor_list_get(p->tensors, "embeds");
    const tsr_tensor *sp = tsr_tensor_list_get(p->tensors, "embed_spans");
    if (!e != !sp)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "%s encoder: \"embeds\" and \"embed_spans\" come "
                        "together", m->cfg.model_type);
    if (e) {
        if (e->dtype != TSR_DTYPE_F32 || e->ndim != 2 || e->shape[1] != m->cfg.dim ||
            !tsr_tensor_is_contiguous(e)) {
            shape_str(a, sizeof a, e);
            return TSR_FAIL(err, TSR_ERR_SHAPE, "media embeddings have shape %s %s, the decoder "
                            "takes [rows, %d] F32", a, tsr_dtype_name(e->dtype), (int)m->cfg.dim);
        }
        if (sp->dtype != TSR_DTYPE_I64 || sp->ndim != 2 || sp->shape[1] != 2) {
            shape_str(a, sizeof a, sp);
            return TSR_FAIL(err, TSR_ERR_SHAPE, "embed_spans has shape %s, expected [n, 2] I64", a);
        }
        const int64_t *v = sp->data;
        int64_t n = sp->shape[0], rows = 0, end = 0;
        p->spans = tsr__calloc((size_t)(n ? n : 1), sizeof *p->spans);
        p->spans_from = tsr__calloc((size_t)(n ? n : 1), sizeof *p->spans_from);
        if (!p->spans || !p->spans_from) return TSR_FAIL(err, TSR_ERR_OOM, "prompt spans");
        for (int64_t i = 0; i < n; i++) {
            int64_t st = v[2 * i], len = v[2 * i + 1];
            if (st < end || len < 1 || len > p->n_ids - st)
                return TSR_FAIL(err, TSR_ERR_SHAPE, "embedding span %lld (start %lld, %lld "
                                "tokens) is out of order or outside the %lld prompt tokens",
                                (long long)i, (long long)st, (long long)len, (long long)p->n_ids);
            p->spans[i].start = st;
            p->spans[i].n_tokens = len;
            p->spans[i].data = (const float *)e->data + rows * m->cfg.dim;
            rows += len;
            end = st + len;
        }
        if (rows != e->shape[0])
            return TSR_FAIL(err, TSR_ERR_SHAPE, "embedding spans cover %lld tokens, the encoder "
                            "gives %lld rows", (long long)rows, (long long)e->shape[0]);
        p->n_spans = (size_t)n;
    }
    const tsr_tensor *pos = tsr_tensor_list_get(p->tensors, "position_ids");
    if (pos) {
        if (pos->dtype != TSR_DTYPE_I64 || pos->ndim != 2 || pos->shape[1] != p->n_ids ||
            (pos->shape[0] != 1 && pos->shape[0] != 3)) {
            shape_str(a, sizeof a, pos);
            return TSR_FAIL(err, TSR_ERR_SHAPE, "position_ids has shape %s, expected [3, %lld]",
                            a, (long long)p->n_ids);
        }
        p->pos = pos->data;
        p->n_pos_rows = (int32_t)pos->shape[0];
        p->pos_from = tsr__malloc((size_t)(p->n_ids ? p->n_ids : 1) * 3 * sizeof *p->pos_from);
        if (!p->pos_from) return TSR_FAIL(err, TSR_ERR_OOM, "prompt positions");
    }
    const tsr_tensor *cs = tsr_tensor_list_get(p->tensors, "cross_attention_states");
    if (cs) {
        if (cs->dtype != TSR_DTYPE_F32 || cs->ndim < 2 || cs->shape[cs->ndim - 1] != m->cfg.dim) {
            shape_str(a, sizeof a, cs);
            return TSR_FAIL(err, TSR_ERR_SHAPE, "cross_attention_states has shape %s, the "
                            "decoder takes [..., %d] F32", a, (int)m->cfg.dim);
        }
        p->in.cross_states = cs;
        const tsr_tensor *cm = tsr_tensor_list_get(inputs, "cross_attention_mask");
        if (cm && !((cm->ndim >= 1 && cm->shape[0] == p->n_ids) ||
                    (cm->ndim >= 2 && cm->shape[0] == 1 && cm->shape[1] == p->n_ids))) {
            shape_str(a, sizeof a, cm);
            return TSR_FAIL(err, TSR_ERR_SHAPE, "cross_attention_mask has shape %s, expected "
                            "[%lld, ...] or [1, %lld, ...] (one row per input id)", a,
                            (long long)p->n_ids, (long long)p->n_ids);
        }
        if (cm) {
            tsr_status s = tsr_tensor_alloc(&p->cross_mask, cm->dtype, cm->ndim, cm->shape, err);
            if (s) return s;
            if (!tsr_tensor_is_contiguous(cm))
                return TSR_FAIL(err, TSR_ERR_FORMAT, "cross_attention_mask is not contiguous");
            memcpy(p->cross_mask.data, cm->data, tsr_tensor_nbytes(cm));
            p->in.cross_mask = &p->cross_mask;
        }
    }
    return TSR_OK;
}

tsr_status tsr_prompt_new(const tsr_model *m, tsr_session *s, const tsr_tensor_list *inputs,
                          tsr_prompt **out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!m || !inputs) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "model or inputs is NULL");
    if (s && tsr__session_model(s) != m)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "the session belongs to another model");
    const int64_t *ids = NULL;
    int64_t n = 0;
    tsr_status st = tsr__input_ids(inputs, &ids, &n, err);
    if (st) return st;
    tsr_prompt *p = tsr__calloc(1, sizeof *p);
    if (!p) return TSR_FAIL(err, TSR_ERR_OOM, "prompt");
    p->n_ids = n;
    p->ids = tsr__malloc((size_t)(n ? n : 1) * sizeof *p->ids);
    if (!p->ids) st = TSR_FAIL(err, TSR_ERR_OOM, "prompt ids");
    for (int64_t i = 0; !st && i < n; i++) {
        if (ids[i] < 0 || ids[i] >= m->cfg.n_embed)
            st = TSR_FAIL(err, TSR_ERR_INVALID_ARG, "input_ids[%lld] = %lld is outside the "
                          "vocabulary (%d)", (long long)i, (long long)ids[i], (int)m->cfg.n_embed);
        else
            p->ids[i] = (int32_t)ids[i];
    }
    if (!st) st = tsr_tensor_list_new(&p->tensors, err);
    if (!st && has_media(inputs)) {
        if (!m->enc_ops)
            st = TSR_FAIL(err, TSR_ERR_UNSUPPORTED, "model_type %s: this checkpoint has no media "
                          "encoder; it takes text only", m->cfg.model_type);
        else
            st = m->enc_ops->encode(m->enc, tsr__session_pool(s), inputs, p->tensors,
                                    &p->image_ms, &p->audio_ms, err);
    }
    p->in = tsr_decode_input_default();
    p->in.ids = p->ids;
    p->in.n_ids = n;
    if (!st) st = take_outputs(p, m, inputs, err);
    if (st) {
        tsr_prompt_free(p);
        return st;
    }
    p->in.spans = p->n_spans ? p->spans : NULL;
    p->in.n_spans = p->n_spans;
    p->in.position_ids = p->pos;
    p->in.n_pos_rows = p->pos ? p->n_pos_rows : 0;
    *out = p;
    return TSR_OK;
}

tsr_status tsr_prompt_input_from(tsr_prompt *p, int64_t from, tsr_decode_input *out,
                                 tsr_error *err) {
    if (!p || !out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "prompt or out is NULL");
    if (from < 0 || from > p->n_ids)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "from %lld is outside the %lld prompt tokens",
                        (long long)from, (long long)p->n_ids);
    *out = p->in;
    out->ids = p->ids + from;
    out->n_ids = p->n_ids - from;
    size_t k = 0;
    for (size_t i = 0; i < p->n_spans; i++) {
        const tsr_embed_span *sp = &p->spans[i];
        if (sp->start + sp->n_tokens <= from) continue;
        if (sp->start < from)
            return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "token %lld is inside a media span "
                            "[%lld, %lld)", (long long)from, (long long)sp->start,
                            (long long)(sp->start + sp->n_tokens));
        p->spans_from[k] = *sp;
        p->spans_from[k].start -= from;
        k++;
    }
    out->spans = k ? p->spans_from : NULL;
    out->n_spans = k;
    if (p->pos) {
        int64_t len = p->n_ids - from;
        for (int32_t r = 0; r < p->n_pos_rows; r++)
            memcpy(p->pos_from + r * len, p->pos + r * p->n_ids + from,
                   (size_t)len * sizeof *p->pos_from);
        out->position_ids = p->pos_from;
    }
    if (from > 0) {
        /* The cross states went in with the first tokens; the mask rows follow the ids. */
        out->cross_states = NULL;
        if (p->in.cross_mask) {
            const tsr_tensor *cm = p->in.cross_mask;
            int32_t d = cm->shape[0] == p->n_ids ? 0 : 1; /* the ids' dim (checked at new) */
            p->cross_mask_from = *cm;
            p->cross_mask_from.owner = 0;
            p->cross_mask_from.shape[d] = p->n_ids - from;
            size_t skip = (size_t)from * (size_t)cm->strides[d] * tsr_dtype_size(cm->dtype);
            p->cross_mask_from.data = (uint8_t *)cm->data + skip;
            out->cross_mask = &p->cross_mask_from;
        }
    }
    return TSR_OK;
}
