/* Qwen2-VL / Qwen2.5-VL image processor against transformers (tests/fixtures/proc/qwen2_vl). */
#include "proc_fixture.h"

static void test_reference_cases(void) { proc_run_cases(&tsr__qwen2_vl_ops, "qwen2_vl"); }

static void test_same_as_2_5(void) {
    CHECK(!strcmp(tsr__qwen2_5_vl_ops.model_type, "qwen2_5_vl"));
    CHECK(tsr__qwen2_5_vl_ops.process_images == tsr__qwen2_vl_ops.process_images);
    CHECK(!strcmp(tsr__qwen2_vl_ops.image_placeholder, "<|image_pad|>"));
}

static void test_bad_configs(void) {
    static const char *bad[] = {
        "{\"min_pixels\": 0}",
        "{\"max_pixels\": -5}",
        "{\"max_pixels\": 1.5}",
        "{\"size\": {\"shortest_edge\": 3136}}",
        "{\"size\": {\"height\": 224, \"width\": 224}}",
        "{\"size\": 224}",
        "{\"patch_size\": 0}",
        "{\"patch_size\": \"14\"}",
        "{\"merge_size\": -1}",
        "{\"temporal_patch_size\": 0}",
        "{\"image_mean\": [0.5, 0.5]}",
        "{\"image_std\": [0.5, 0, 0.5]}",
        "{\"image_std\": \"x\"}",
        "{\"resample\": 9}",
        "{\"do_resize\": 1}",
        "{\"rescale_factor\": 1e300}",
    };
    tsr_error err = {0};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tsr_status st = proc_load_inline(&tsr__qwen2_vl_ops, bad[i], NULL, NULL, &err);
        CHECK_MSG(st == TSR_ERR_FORMAT, "%s -> %s", bad[i], tsr_status_name(st));
    }
    CHECK(proc_load_inline(&tsr__qwen2_vl_ops, "{\"resample\": 4}", NULL, NULL, &err) ==
          TSR_ERR_UNSUPPORTED);
    /* No preprocessor_config.json: the class defaults. */
    CHECK_OK(proc_load_inline(&tsr__qwen2_vl_ops, NULL, NULL, NULL, &err), &err);
    CHECK_OK(proc_load_inline(&tsr__qwen2_vl_ops, "{\"size\": {\"shortest_edge\": 1, "
                              "\"longest_edge\": 5}, \"image_mean\": 0.5}", NULL, NULL, &err),
             &err);
}

/* Inputs the processor must refuse without crashing. */
static void test_bad_inputs(void) {
    tsr_error err = {0};
    void *state = NULL;
    tsr__model_configs mc = {0};
    CHECK_OK(tsr__qwen2_vl_ops.load(&mc, &state, &err), &err);
    tsr_tensor_list *out = NULL;
    CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
    tsr__replacements r = {0};
    uint8_t px[4 * 3] = {0};
    tsr_image rgba = {.width = 1, .height = 1, .channels = 4, .data = px};
    CHECK(tsr__qwen2_vl_ops.process_images(state, &rgba, 1, out, &r, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr__qwen2_vl_ops.process_images(state, NULL, 0, out, &r, &err) == TSR_ERR_INVALID_ARG);
    tsr_image empty = {.width = 0, .height = 4, .channels = 3, .data = px};
    CHECK(tsr__qwen2_vl_ops.process_images(state, &empty, 1, out, &r, &err) == TSR_ERR_INVALID_ARG);
    CHECK(r.count == 0 && tsr_tensor_list_count(out) == 0);
    tsr__qwen2_vl_ops.free_state(state);

    /* do_resize false with a side that is not a multiple of 28: HF's reshape fails. */
    cJSON *pp = cJSON_Parse("{\"do_resize\": false}");
    mc.preprocessor_config = pp;
    CHECK_OK(tsr__qwen2_vl_ops.load(&mc, &state, &err), &err);
    uint8_t big[30 * 28 * 3] = {0};
    tsr_image odd = {.width = 30, .height = 28, .channels = 3, .data = big};
    CHECK(tsr__qwen2_vl_ops.process_images(state, &odd, 1, out, &r, &err) == TSR_ERR_SHAPE);
    tsr__qwen2_vl_ops.free_state(state);
    cJSON_Delete(pp);

    /* A min_pixels that would blow a small image up past the resize limit. */
    pp = cJSON_Parse("{\"min_pixels\": 9000000000000, \"max_pixels\": 9000000000000}");
    mc.preprocessor_config = pp;
    CHECK_OK(tsr__qwen2_vl_ops.load(&mc, &state, &err), &err);
    tsr_image one = {.width = 1, .height = 1, .channels = 3, .data = px};
    CHECK(tsr__qwen2_vl_ops.process_images(state, &one, 1, out, &r, &err) == TSR_ERR_LIMIT);
    tsr__qwen2_vl_ops.free_state(state);
    cJSON_Delete(pp);
    tsr_tensor_list_free(out);
}

static void test_alloc_failpoints(void) {
    static const char *const images[] = {"rgb_97x61_4.png", "rgba_33x47_7.png", "rgb_130x40_14.png"};
    proc_failpoint_walk(&tsr__qwen2_vl_ops, "qwen2_vl", "small", images, (int)(sizeof images / sizeof *images));
}

int main(void) {
    tsr_test_run("reference_cases", test_reference_cases);
    tsr_test_run("same_as_2_5", test_same_as_2_5);
    tsr_test_run("bad_configs", test_bad_configs);
    tsr_test_run("bad_inputs", test_bad_inputs);
    tsr_test_run("alloc_failpoints", test_alloc_failpoints);
    return tsr_test_finish();
}
