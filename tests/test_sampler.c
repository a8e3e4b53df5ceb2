/* Sampler: processed logits equal transformers' LogitsProcessorList on fixed logits
 * (tests/fixtures/decoder/sampler.json), greedy = argmax, seeded draws reproducible and
 * distributed as the processed softmax. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static float num(const cJSON *o, const char *k, float d) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (float)v->valuedouble : d;
}

static void test_hf_processors(void) {
    size_t len = 0;
    uint8_t *text = tsr_test_read(tsr_test_fixture("decoder/sampler.json"), &len);
    cJSON *j = text ? cJSON_ParseWithLength((const char *)text, len) : NULL;
    free(text);
    CHECK(j != NULL);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(j, "cases");
    int n_cases = 0;
    double worst = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next, n_cases++) {
        const cJSON *prm = cJSON_GetObjectItemCaseSensitive(c, "params");
        tsr_sampling_params sp = tsr_sampling_params_default();
        sp.temperature = num(prm, "temperature", 1.0f);
        sp.top_k = (int32_t)num(prm, "top_k", 0);
        sp.top_p = num(prm, "top_p", 1.0f);
        sp.min_p = num(prm, "min_p", 0.0f);
        sp.repetition_penalty = num(prm, "repetition_penalty", 1.0f);
        sp.frequency_penalty = num(prm, "frequency_penalty", 0.0f);
        sp.presence_penalty = num(prm, "presence_penalty", 0.0f);
        const cJSON *lg = cJSON_GetObjectItemCaseSensitive(c, "logits");
        const cJSON *ex = cJSON_GetObjectItemCaseSensitive(c, "expected");
        int V = cJSON_GetArraySize(lg);
        float *x = malloc((size_t)V * sizeof *x);
        int i = 0;
        for (const cJSON *e = lg->child; e; e = e->next) x[i++] = (float)e->valuedouble;
        tsr_error err = {0};
        tsr_sampler *s = NULL;
        CHECK_OK(tsr_sampler_new(&sp, V, &s, &err), &err);
        for (const cJSON *e = cJSON_GetObjectItemCaseSensitive(c, "prompt")->child; e; e = e->next)
            CHECK_OK(tsr_sampler_accept(s, (int32_t)e->valuedouble, 0, &err), &err);
        for (const cJSON *e = cJSON_GetObjectItemCaseSensitive(c, "generated")->child; e;
             e = e->next)
            CHECK_OK(tsr_sampler_accept(s, (int32_t)e->valuedouble, 1, &err), &err);
        CHECK_OK(tsr_sampler_process(s, x, &err), &err);
        i = 0;
        char *desc = cJSON_PrintUnformatted(prm);
        for (const cJSON *e = ex->child; e; e = e->next, i++) {
            if (cJSON_IsNull(e)) {
                CHECK_MSG(x[i] == -INFINITY, "%s: [%d] = %g, expected -inf", desc, i, (double)x[i]);
            } else {
                double d = fabs((double)x[i] - e->valuedouble);
                CHECK_MSG(d <= 1e-5, "%s: [%d] = %g, expected %g", desc, i, (double)x[i],
                          e->valuedouble);
                if (d > worst) worst = d;
            }
        }
        cJSON_free(desc);
        tsr_sampler_free(s);
        free(x);
    }
    CHECK(n_cases >= 10);
    printf("  %d cases, max abs diff %.3g\n", n_cases, worst);
    cJSON_Delete(j);
}

static void test_greedy_and_draws(void) {
    enum { V = 5 };
    float base[V] = {0.0f, 1.0f, 2.0f, 0.5f, 2.0f};
    tsr_error err = {0};
    tsr_sampler *s = NULL;
    tsr_sampling_params sp = tsr_sampling_params_default();
    sp.temperature = 0;
    CHECK_OK(tsr_sampler_new(&sp, V, &s, &err), &err);
    float x[V];
    int32_t id = -1;
    memcpy(x, base, sizeof x);
    CHECK_OK(tsr_sampler_sample(s, x, &id, &err), &err);
    CHECK(id == 2); /* first argmax, as torch.argmax */
    tsr_sampler_free(s);

    /* Draws follow softmax(base): 20000 draws, each frequency within 0.02. */
    sp = tsr_sampling_params_default();
    sp.seed = 1234;
    CHECK_OK(tsr_sampler_new(&sp, V, &s, &err), &err);
    int counts[V] = {0};
    int32_t first[8];
    for (int i = 0; i < 20000; i++) {
        memcpy(x, base, sizeof x);
        CHECK_OK(tsr_sampler_sample(s, x, &id, &err), &err);
        if (id >= 0 && id < V) counts[id]++;
        if (i < 8) first[i] = id;
    }
    double z = 0, p[V];
    for (int i = 0; i < V; i++) z += exp(base[i]);
    for (int i = 0; i < V; i++) {
        p[i] = exp(base[i]) / z;
        CHECK_MSG(fabs(counts[i] / 20000.0 - p[i]) < 0.02, "id %d: %g vs %g", i,
                  counts[i] / 20000.0, p[i]);
    }
    /* Reset reseeds: the same sequence again. */
    tsr_sampler_reset(s);
    for (int i = 0; i < 8; i++) {
        memcpy(x, base, sizeof x);
        CHECK_OK(tsr_sampler_sample(s, x, &id, &err), &err);
        CHECK(id == first[i]);
    }
    /* Filtered tokens are never drawn (top_k 2 keeps the two 2.0 ties only). */
    tsr_sampler_free(s);
    sp.top_k = 2;
    CHECK_OK(tsr_sampler_new(&sp, V, &s, &err), &err);
    for (int i = 0; i < 200; i++) {
        memcpy(x, base, sizeof x);
        CHECK_OK(tsr_sampler_sample(s, x, &id, &err), &err);
        CHECK(id == 2 || id == 4);
    }
    /* Bad input. */
    x[0] = NAN;
    CHECK(tsr_sampler_sample(s, x, &id, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_sampler_accept(s, V, 1, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_sampler_accept(s, -1, 0, &err) == TSR_ERR_INVALID_ARG);
    tsr_sampler_free(s);
    tsr_sampler_free(NULL);
    tsr_sampler *bad = NULL;
    sp = tsr_sampling_params_default();
    sp.top_p = 1.5f;
    CHECK(tsr_sampler_new(&sp, V, &bad, &err) == TSR_ERR_INVALID_ARG && !bad);
    sp = tsr_sampling_params_default();
    sp.repetition_penalty = 0;
    CHECK(tsr_sampler_new(&sp, V, &bad, &err) == TSR_ERR_INVALID_ARG && !bad);
    sp = tsr_sampling_params_default();
    sp.temperature = NAN;
    CHECK(tsr_sampler_new(&sp, V, &bad, &err) == TSR_ERR_INVALID_ARG && !bad);
    CHECK(tsr_sampler_new(NULL, 0, &bad, &err) == TSR_ERR_INVALID_ARG && !bad);
}

int main(void) {
    tsr_test_run("hf_processors", test_hf_processors);
    tsr_test_run("greedy_and_draws", test_greedy_and_draws);
    return tsr_test_finish();
}
