/* Mistral3 / Pixtral image processor against transformers (tests/fixtures/proc/mistral3). */
#include "proc_fixture.h"

static void test_reference_cases(void) { proc_run_cases(&tsr__mistral3_ops, "mistral3"); }

static void test_bad_configs(void) {
    static const char *bad_pp[] = {
        "{\"size\": {\"shortest_edge\": 224}}",
        "{\"size\": {\"height\": 224}}",
        "{\"size\": {\"longest_edge\": -1}}",
        "{\"size\": 1024}",
        "{\"do_center_crop\": true}",
        "{\"do_center_crop\": true, \"crop_size\": {\"height\": 0, \"width\": 4}}",
        "{\"do_pad\": \"yes\"}",
        "{\"image_mean\": [1, 2, 3, 4]}",
        "{\"rescale_factor\": \"0.5\"}",
        "{\"resample\": -1}",
    };
    static const char *bad_pc[] = {
        "{\"patch_size\": 0}",
        "{\"spatial_merge_size\": 0}",
        "{\"image_token\": 5}",
        "{\"image_end_token\": \"\"}",
    };
    tsr_error err = {0};
    for (size_t i = 0; i < sizeof bad_pp / sizeof *bad_pp; i++) {
        tsr_status st = proc_load_inline(&tsr__mistral3_ops, bad_pp[i], NULL, NULL, &err);
        CHECK_MSG(st == TSR_ERR_FORMAT, "%s -> %s", bad_pp[i], tsr_status_name(st));
    }
    for (size_t i = 0; i < sizeof bad_pc / sizeof *bad_pc; i++) {
        tsr_status st = proc_load_inline(&tsr__mistral3_ops, NULL, bad_pc[i], NULL, &err);
        CHECK_MSG(st == TSR_ERR_FORMAT, "%s -> %s", bad_pc[i], tsr_status_name(st));
    }
    CHECK(proc_load_inline(&tsr__mistral3_ops, NULL, NULL, "{\"spatial_merge_size\": 0}", &err) ==
          TSR_ERR_FORMAT);
    CHECK_OK(proc_load_inline(&tsr__mistral3_ops, NULL, NULL, NULL, &err), &err);
}

/* The merge size comes from config.json when processor_config.json disagrees. */
static void test_merge_from_model_config(void) {
    cJSON *pc = cJSON_Parse("{\"patch_size\": 14, \"spatial_merge_size\": 1}");
    cJSON *mc = cJSON_Parse("{\"model_type\": \"mistral3\", \"spatial_merge_size\": 2}");
    tsr__model_configs cfg = {.processor_config = pc, .config = mc};
    tsr_error err = {0};
    void *state = NULL;
    CHECK_OK(tsr__mistral3_ops.load(&cfg, &state, &err), &err);
    uint8_t px[30 * 30 * 3] = {0};
    tsr_image im = {.width = 30, .height = 30, .channels = 3, .data = px};
    tsr_tensor_list *out = NULL;
    CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
    tsr__replacements r = {0};
    CHECK_OK(tsr__mistral3_ops.process_images(state, &im, 1, out, &r, &err), &err);
    /* 30 px -> 56 px = 2 x 2 merged tokens */
    CHECK(r.count == 1 && !strcmp(r.text[0], "[IMG][IMG][IMG_BREAK][IMG][IMG][IMG_END]"));
    const tsr_tensor *sz = tsr_tensor_list_get(out, "image_sizes");
    CHECK(sz && ((int64_t *)sz->data)[0] == 56);
    tsr__replacements_free(&r);
    tsr_tensor_list_free(out);
    tsr__mistral3_ops.free_state(state);
    cJSON_Delete(pc);
    cJSON_Delete(mc);
}

static void test_bad_inputs(void) {
    tsr_error err = {0};
    void *state = NULL;
    cJSON *pp = cJSON_Parse("{\"do_pad\": false}");
    tsr__model_configs cfg = {.preprocessor_config = pp};
    CHECK_OK(tsr__mistral3_ops.load(&cfg, &state, &err), &err);
    uint8_t px[40 * 20 * 3] = {0};
    tsr_image ims[2] = {{.width = 20, .height = 20, .channels = 3, .data = px},
                        {.width = 40, .height = 20, .channels = 3, .data = px}};
    tsr_tensor_list *out = NULL;
    CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
    tsr__replacements r = {0};
    CHECK(tsr__mistral3_ops.process_images(state, ims, 2, out, &r, &err) == TSR_ERR_SHAPE);
    CHECK(tsr__mistral3_ops.process_images(state, ims, 0, out, &r, &err) == TSR_ERR_INVALID_ARG);
    ims[0].channels = 1;
    CHECK(tsr__mistral3_ops.process_images(state, ims, 1, out, &r, &err) == TSR_ERR_INVALID_ARG);
    CHECK(r.count == 0 && tsr_tensor_list_count(out) == 0);
    tsr_tensor_list_free(out);
    tsr__mistral3_ops.free_state(state);
    cJSON_Delete(pp);
}

static void test_alloc_failpoints(void) {
    static const char *const images[] = {"rgb_200x150_10.png", "rgb_20x90_13.png"};
    proc_failpoint_walk(&tsr__mistral3_ops, "mistral3", "hw_crop", images, (int)(sizeof images / sizeof *images));
}

int main(void) {
    tsr_test_run("reference_cases", test_reference_cases);
    tsr_test_run("bad_configs", test_bad_configs);
    tsr_test_run("merge_from_model_config", test_merge_from_model_config);
    tsr_test_run("bad_inputs", test_bad_inputs);
    tsr_test_run("alloc_failpoints", test_alloc_failpoints);
    return tsr_test_finish();
}
