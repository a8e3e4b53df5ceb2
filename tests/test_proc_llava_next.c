/* LLaVA-NeXT image processor against transformers (tests/fixtures/proc/llava_next). */
#include "proc_fixture.h"

static void test_reference_cases(void) { proc_run_cases(&tsr__llava_next_ops, "llava_next"); }

static void test_bad_configs(void) {
    static const char *bad_pp[] = {
        "{\"image_grid_pinpoints\": 5}",
        "{\"image_grid_pinpoints\": []}",
        "{\"image_grid_pinpoints\": [[336]]}",
        "{\"image_grid_pinpoints\": [[336, 0]]}",
        "{\"image_grid_pinpoints\": [[336, 1.5]]}",
        "{\"image_grid_pinpoints\": [[\"336\", 672]]}",
        "{\"size\": {\"longest_edge\": 336}}",
        "{\"size\": {}}",
        "{\"size\": [336]}",
        "{\"size\": {\"shortest_edge\": 336}, \"crop_size\": null}",
        "{\"crop_size\": {\"height\": -1, \"width\": 3}}",
        "{\"do_center_crop\": \"no\"}",
        "{\"image_std\": [1, 1, 0]}",
    };
    static const char *bad_pc[] = {
        "{\"patch_size\": 0}",
        "{\"vision_feature_select_strategy\": \"cls\"}",
        "{\"num_additional_image_tokens\": -1}",
        "{\"image_token\": \"\"}",
    };
    tsr_error err = {0};
    for (size_t i = 0; i < sizeof bad_pp / sizeof *bad_pp; i++) {
        tsr_status st = proc_load_inline(&tsr__llava_next_ops, bad_pp[i], "{\"patch_size\": 14}",
                                         NULL, &err);
        CHECK_MSG(st == TSR_ERR_FORMAT, "%s -> %s", bad_pp[i], tsr_status_name(st));
    }
    for (size_t i = 0; i < sizeof bad_pc / sizeof *bad_pc; i++) {
        tsr_status st = proc_load_inline(&tsr__llava_next_ops, NULL, bad_pc[i], NULL, &err);
        CHECK_MSG(st == TSR_ERR_FORMAT, "%s -> %s", bad_pc[i], tsr_status_name(st));
    }
    /* No patch size anywhere: transformers cannot count tokens either. */
    CHECK(proc_load_inline(&tsr__llava_next_ops, NULL, NULL, NULL, &err) == TSR_ERR_FORMAT);
    CHECK_OK(proc_load_inline(&tsr__llava_next_ops, NULL, NULL,
                              "{\"vision_config\": {\"patch_size\": 14}}", &err), &err);
}

static void test_bad_inputs(void) {
    tsr_error err = {0};
    void *state = NULL;
    /* Base squashed to 40 x 40 but tiles of 56 without crop: patches cannot be stacked. */
    cJSON *pp = cJSON_Parse("{\"size\": {\"height\": 40, \"width\": 40}, \"do_resize\": false,"
                            " \"do_center_crop\": false, \"crop_size\": {\"height\": 56, "
                            "\"width\": 56}, \"image_grid_pinpoints\": [[56, 112]]}");
    cJSON *pc = cJSON_Parse("{\"patch_size\": 14}");
    tsr__model_configs cfg = {.preprocessor_config = pp, .processor_config = pc};
    CHECK_OK(tsr__llava_next_ops.load(&cfg, &state, &err), &err);
    uint8_t px[8 * 8 * 3] = {0};
    tsr_image im = {.width = 8, .height = 8, .channels = 3, .data = px};
    tsr_tensor_list *out = NULL;
    CHECK_OK(tsr_tensor_list_new(&out, &err), &err);
    tsr__replacements r = {0};
    CHECK(tsr__llava_next_ops.process_images(state, &im, 1, out, &r, &err) == TSR_ERR_SHAPE);
    im.channels = 4;
    CHECK(tsr__llava_next_ops.process_images(state, &im, 1, out, &r, &err) == TSR_ERR_INVALID_ARG);
    CHECK(r.count == 0 && tsr_tensor_list_count(out) == 0);
    tsr_tensor_list_free(out);
    tsr__llava_next_ops.free_state(state);
    cJSON_Delete(pp);
    cJSON_Delete(pc);
}

static void test_alloc_failpoints(void) {
    static const char *const images[] = {"rgb_97x61_3.png", "rgb_40x130_4.png"};
    proc_failpoint_walk(&tsr__llava_next_ops, "llava_next", "ragged", images, (int)(sizeof images / sizeof *images));
}

int main(void) {
    tsr_test_run("reference_cases", test_reference_cases);
    tsr_test_run("bad_configs", test_bad_configs);
    tsr_test_run("bad_inputs", test_bad_inputs);
    tsr_test_run("alloc_failpoints", test_alloc_failpoints);
    return tsr_test_finish();
}
