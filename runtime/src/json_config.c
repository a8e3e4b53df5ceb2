#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tessera_json.h"

tsr_status tsr__json_load(const char *path, uint64_t max_bytes, cJSON **out, tsr_error *err) {
    *out = NULL;
    uint8_t *text = NULL;
    size_t len = 0;
    tsr_status st = tsr__read_file(path, max_bytes ? max_bytes : 16u << 20, &text, &len, err);
    if (st) return st;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)text, len, &end, 0);
    if (!j) {
        st = TSR_FAIL(err, TSR_ERR_FORMAT, "'%s' is not valid JSON (near byte %td)", path,
                      end ? end - (const char *)text : (ptrdiff_t)0);
    } else if (!cJSON_IsObject(j)) {
        st = TSR_FAIL(err, TSR_ERR_FORMAT, "'%s' is not a JSON object", path);
        cJSON_Delete(j);
        j = NULL;
    }
    tsr__free(text);
    *out = j;
    return st;
}

static const cJSON *item(const cJSON *obj, const char *key) {
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    return cJSON_IsNull(v) ? NULL : v;
}

tsr_status tsr__json_int(const cJSON *obj, const char *key, int64_t dflt, int64_t min,
                         int64_t max, int64_t *out, const char *ctx, tsr_error *err) {
    const cJSON *v = item(obj, key);
    if (!v) {
        *out = dflt;
        return TSR_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= (double)min && d <= (double)max) || d != floor(d))
        return tsr__fail(err, TSR_ERR_FORMAT, "%s: \"%s\" must be an integer in [%lld, %lld]",
                         ctx, key, (long long)min, (long long)max);
    *out = (int64_t)d;
    return TSR_OK;
}

tsr_status tsr__json_double(const cJSON *obj, const char *key, double dflt, double min,
                            double max, double *out, const char *ctx, tsr_error *err) {
    const cJSON *v = item(obj, key);
    if (!v) {
        *out = dflt;
        return TSR_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= min && d <= max))
        return tsr__fail(err, TSR_ERR_FORMAT, "%s: \"%s\" must be a number in [%g, %g]", ctx,
                         key, min, max);
    *out = d;
    return TSR_OK;
}

tsr_status tsr__json_bool(const cJSON *obj, const char *key, bool dflt, bool *out,
                          const char *ctx, tsr_error *err) {
    const cJSON *v = item(obj, key);
    if (!v) {
        *out = dflt;
        return TSR_OK;
    }
    if (!cJSON_IsBool(v))
        return tsr__fail(err, TSR_ERR_FORMAT, "%s: \"%s\" must be true or false", ctx, key);
    *out = cJSON_IsTrue(v);
    return TSR_OK;
}

tsr_status tsr__json_doubles(const cJSON *obj, const char *key, const double *dflt, int n,
                             double *out, const char *ctx, tsr_error *err) {
    const cJSON *v = item(obj, key);
    if (!v) {
        for (int i = 0; i < n; i++) out[i] = dflt[i];
        return TSR_OK;
    }
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
        for (int i = 0; i < n; i++) out[i] = v->valuedouble;
        return TSR_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != n)
        return tsr__fail(err, TSR_ERR_FORMAT, "%s: \"%s\" must be a list of %d numbers", ctx,
                         key, n);
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
            return tsr__fail(err, TSR_ERR_FORMAT, "%s: \"%s\"[%d] is not a finite number", ctx,
                             key, i);
        out[i] = e->valuedouble;
    }
    return TSR_OK;
}

tsr_status tsr__json_string(const cJSON *obj, const char *key, const char *dflt,
                            const char **out, const char *ctx, tsr_error *err) {
    const cJSON *v = item(obj, key);
    if (!v) {
        *out = dflt;
        return TSR_OK;
    }
    if (!cJSON_IsString(v))
        return tsr__fail(err, TSR_ERR_FORMAT, "%s: \"%s\" must be a string", ctx, key);
    *out = v->valuestring;
    return TSR_OK;
}
