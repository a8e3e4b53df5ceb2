#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static tsr_status set_err(tsr_error *err, tsr_status st, const char *fmt, const char *a,
                          const char *b) {
    err->status = st;
    snprintf(err->message, sizeof err->message, fmt, a, b);
    return st;
}

tsr_status tsr_cli_read_file(const char *path, uint64_t max_bytes, uint8_t **data, size_t *len,
                             tsr_error *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return set_err(err, TSR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return set_err(err, TSR_ERR_IO, "'%s' is not a regular file%s", path, "");
    }
    if (max_bytes && (uint64_t)sb.st_size > max_bytes) {
        fclose(f);
        err->status = TSR_ERR_LIMIT;
        snprintf(err->message, sizeof err->message,
                 "'%s' has %lld bytes, over the %llu-byte limit for encoded media", path,
                 (long long)sb.st_size, (unsigned long long)max_bytes);
        return TSR_ERR_LIMIT;
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return set_err(err, TSR_ERR_OOM, "cannot allocate memory for '%s'%s", path, "");
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(buf);
        return set_err(err, TSR_ERR_IO, "short read on '%s'%s", path, "");
    }
    *data = buf;
    *len = n;
    return TSR_OK;
}

void tsr_cli_print_json_line(cJSON *j) {
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    if (s) printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(j);
}
