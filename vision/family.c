#include "family.h"

void tsr__replacements_free(tsr__replacements *r) {
    if (!r) return;
    for (int64_t i = 0; i < r->count; i++) tsr__free(r->text[i]);
    tsr__free(r->text);
    r->text = NULL;
    r->count = 0;
}
