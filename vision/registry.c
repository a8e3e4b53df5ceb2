#include <string.h>

#include "family.h"

/* Every family the library offers, in the order messages list them. */
static const tsr__family_ops *const k_families[] = {
    &tsr__qwen2_vl_ops, &tsr__qwen2_5_vl_ops, &tsr__llava_next_ops,
    &tsr__mllama_ops,   &tsr__minicpmo_ops,   &tsr__mistral3_ops,
};

const tsr__family_ops *tsr__family_find(const char *model_type) {
    if (!model_type) return NULL;
    for (size_t i = 0; i < sizeof k_families / sizeof k_families[0]; i++)
        if (!strcmp(k_families[i]->model_type, model_type)) return k_families[i];
    return NULL;
}

const char *tsr__family_names(char *buf, size_t cap) {
    if (!cap) return buf;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof k_families / sizeof k_families[0]; i++) {
        if (buf[0]) strncat(buf, ", ", cap - strlen(buf) - 1);
        strncat(buf, k_families[i]->model_type, cap - strlen(buf) - 1);
    }
    return buf;
}
