#include <string.h>

#include "tessera_internal.h"

typedef struct {
    char *name;
    tsr_tensor tensor;
} named_tensor;

struct tsr_tensor_list {
    named_tensor *items;
    int64_t count;
    size_t cap;
};

tsr_status tsr_tensor_list_new(tsr_tensor_list **out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = tsr__calloc(1, sizeof **out);
    return *out ? TSR_OK : TSR_FAIL(err, TSR_ERR_OOM, "out of memory");
}

void tsr_tensor_list_free(tsr_tensor_list *list) {
    if (!list) return;
    for (int64_t i = 0; i < list->count; i++) {
        tsr__free(list->items[i].name);
        tsr_tensor_free(&list->items[i].tensor);
    }
    tsr__free(list->items);
    tsr__free(list);
}

tsr_status tsr_tensor_list_add(tsr_tensor_list *list, const char *name, tsr_tensor *t,
                               tsr_error *err) {
    if (!list || !name || !t) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "list, name or t is NULL");
    if (tsr_tensor_list_get(list, name))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "a tensor named '%s' is already in the list",
                        name);
    named_tensor *items =
        tsr__grow(list->items, &list->cap, (size_t)list->count + 1, sizeof *items, 8);
    if (!items) return TSR_FAIL(err, TSR_ERR_OOM, "out of memory");
    list->items = items;
    size_t n = strlen(name) + 1;
    char *copy = tsr__malloc(n);
    if (!copy) return TSR_FAIL(err, TSR_ERR_OOM, "out of memory");
    memcpy(copy, name, n);
    list->items[list->count].name = copy;
    list->items[list->count].tensor = *t;
    list->count++;
    memset(t, 0, sizeof *t);
    return TSR_OK;
}

int64_t tsr_tensor_list_count(const tsr_tensor_list *list) { return list ? list->count : 0; }

const char *tsr_tensor_list_name(const tsr_tensor_list *list, int64_t i) {
    return list && i >= 0 && i < list->count ? list->items[i].name : NULL;
}

const tsr_tensor *tsr_tensor_list_at(const tsr_tensor_list *list, int64_t i) {
    return list && i >= 0 && i < list->count ? &list->items[i].tensor : NULL;
}

const tsr_tensor *tsr_tensor_list_get(const tsr_tensor_list *list, const char *name) {
    if (!list || !name) return NULL;
    for (int64_t i = 0; i < list->count; i++)
        if (!strcmp(list->items[i].name, name)) return &list->items[i].tensor;
    return NULL;
}

tsr_status tsr_tensor_list_save(const tsr_tensor_list *list, const char *path, tsr_error *err) {
    if (!list) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "list is NULL");
    const char **names = tsr__malloc((size_t)(list->count ? list->count : 1) * sizeof *names);
    tsr_tensor *tensors = tsr__malloc((size_t)(list->count ? list->count : 1) * sizeof *tensors);
    tsr_status st = TSR_OK;
    if (!names || !tensors) {
        st = TSR_FAIL(err, TSR_ERR_OOM, "out of memory");
    } else {
        for (int64_t i = 0; i < list->count; i++) {
            names[i] = list->items[i].name;
            tensors[i] = list->items[i].tensor;
        }
        st = tsr_safetensors_write_file(path, list->count, names, tensors, 0, NULL, NULL, err);
    }
    tsr__free(names);
    tsr__free(tensors);
    return st;
}
