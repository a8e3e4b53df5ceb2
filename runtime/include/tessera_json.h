/*
 * tessera_json.h - validated reads of JSON configuration files (config.json,
 * preprocessor_config.json, ...). Internal; not installed.
 *
 * Every getter: a missing key (or JSON null) yields the default; a present key of the wrong
 * type or outside [min, max] fails with TSR_ERR_FORMAT and a message naming the file, the key,
 * the expected range and the value found, so a bad config fails at load, not at first use.
 */
#ifndef TESSERA_JSON_H
#define TESSERA_JSON_H

#include <cjson/cJSON.h>

#include "tessera_internal.h"

/* Parses a JSON file of at most max_bytes (0 = 16 MiB). `what` names it in messages. */
tsr_status tsr__json_load(const char *path, uint64_t max_bytes, cJSON **out, tsr_error *err);

/* `ctx` names the file or object in messages, e.g. "preprocessor_config.json". */
tsr_status tsr__json_int(const cJSON *obj, const char *key, int64_t dflt, int64_t min,
                         int64_t max, int64_t *out, const char *ctx, tsr_error *err);
tsr_status tsr__json_double(const cJSON *obj, const char *key, double dflt, double min,
                            double max, double *out, const char *ctx, tsr_error *err);
tsr_status tsr__json_bool(const cJSON *obj, const char *key, bool dflt, bool *out,
                          const char *ctx, tsr_error *err);
/* Fixed-length numeric array (e.g. image_mean of length 3). A scalar is broadcast to n
 * entries, as transformers does for mean/std. */
tsr_status tsr__json_doubles(const cJSON *obj, const char *key, const double *dflt, int n,
                             double *out, const char *ctx, tsr_error *err);
/* String value or dflt (which may be NULL); a non-string value is FORMAT. The result
 * points into obj (or is dflt). */
tsr_status tsr__json_string(const cJSON *obj, const char *key, const char *dflt,
                            const char **out, const char *ctx, tsr_error *err);

#endif
