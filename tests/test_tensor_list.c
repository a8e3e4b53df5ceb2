/* Named tensor lists and JSON config getters. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "tessera_json.h"

static void test_list(void) {
    tsr_error err = {0};
    tsr_tensor_list *list = NULL;
    CHECK_OK(tsr_tensor_list_new(&list, &err), &err);
    for (int i = 0; i < 20; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", i);
        int64_t shape[2] = {2, i + 1};
        tsr_tensor t;
        CHECK_OK(tsr_tensor_alloc(&t, TSR_DTYPE_I64, 2, shape, &err), &err);
        ((int64_t *)t.data)[0] = i;
        CHECK_OK(tsr_tensor_list_add(list, name, &t, &err), &err);
        CHECK(t.data == NULL);
    }
    CHECK(tsr_tensor_list_count(list) == 20);
    CHECK(!strcmp(tsr_tensor_list_name(list, 7), "t7"));
    CHECK(tsr_tensor_list_get(list, "t13")->shape[1] == 14);
    CHECK(((int64_t *)tsr_tensor_list_at(list, 5)->data)[0] == 5);
    CHECK(tsr_tensor_list_get(list, "nope") == NULL && tsr_tensor_list_at(list, 20) == NULL);
    int64_t shape[1] = {1};
    tsr_tensor dup;
    CHECK_OK(tsr_tensor_alloc(&dup, TSR_DTYPE_F32, 1, shape, &err), &err);
    CHECK(tsr_tensor_list_add(list, "t3", &dup, &err) == TSR_ERR_INVALID_ARG);
    CHECK(dup.data != NULL); /* still the caller's */
    tsr_tensor_free(&dup);

    char path[] = "/tmp/tsr_tl_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK_OK(tsr_tensor_list_save(list, path, &err), &err);
    tsr_safetensors *st = NULL;
    CHECK_OK(tsr_safetensors_open_file(path, &st, &err), &err);
    CHECK(tsr_safetensors_count(st) == 20 && !strcmp(tsr_safetensors_name(st, 19), "t19"));
    tsr_tensor v;
    CHECK_OK(tsr_safetensors_get(st, "t9", &v, &err), &err);
    CHECK(v.shape[1] == 10 && ((int64_t *)v.data)[0] == 9);
    tsr_safetensors_close(st);
    remove(path);
    tsr_tensor_list_free(list);
    tsr_tensor_list_free(NULL);
}

static void test_json_getters(void) {
    tsr_error err = {0};
    cJSON *j = cJSON_Parse("{\"a\": 3, \"b\": 2.5, \"c\": true, \"m\": [1, 2, 3], \"s\": \"x\","
                           " \"n\": null, \"big\": 1e30, \"neg\": -1, \"mb\": 0.5}");
    int64_t i;
    double d, arr[3];
    bool b;
    const char *s;
    CHECK_OK(tsr__json_int(j, "a", 0, 0, 10, &i, "cfg", &err), &err);
    CHECK(i == 3);
    CHECK_OK(tsr__json_int(j, "missing", 7, 0, 10, &i, "cfg", &err), &err);
    CHECK(i == 7);
    CHECK_OK(tsr__json_int(j, "n", 8, 0, 10, &i, "cfg", &err), &err);
    CHECK(i == 8);
    CHECK(tsr__json_int(j, "b", 0, 0, 10, &i, "cfg", &err) == TSR_ERR_FORMAT);
    CHECK(!strcmp(err.message, "cfg: \"b\" must be an integer in [0, 10]"));
    CHECK(tsr__json_int(j, "big", 0, 0, INT32_MAX, &i, "cfg", &err) == TSR_ERR_FORMAT);
    CHECK(tsr__json_int(j, "neg", 0, 0, 10, &i, "cfg", &err) == TSR_ERR_FORMAT);
    CHECK(tsr__json_int(j, "s", 0, 0, 10, &i, "cfg", &err) == TSR_ERR_FORMAT);
    CHECK_OK(tsr__json_double(j, "b", 0, 0, 10, &d, "cfg", &err), &err);
    CHECK(d == 2.5);
    CHECK(tsr__json_double(j, "big", 0, 0, 1e9, &d, "cfg", &err) == TSR_ERR_FORMAT);
    CHECK_OK(tsr__json_bool(j, "c", false, &b, "cfg", &err), &err);
    CHECK(b);
    CHECK(tsr__json_bool(j, "a", false, &b, "cfg", &err) == TSR_ERR_FORMAT);
    const double dflt[3] = {9, 9, 9};
    CHECK_OK(tsr__json_doubles(j, "m", dflt, 3, arr, "cfg", &err), &err);
    CHECK(arr[0] == 1 && arr[2] == 3);
    CHECK_OK(tsr__json_doubles(j, "mb", dflt, 3, arr, "cfg", &err), &err);
    CHECK(arr[0] == 0.5 && arr[1] == 0.5 && arr[2] == 0.5);
    CHECK(tsr__json_doubles(j, "m", dflt, 2, arr, "cfg", &err) == TSR_ERR_FORMAT);
    CHECK_OK(tsr__json_string(j, "s", NULL, &s, "cfg", &err), &err);
    CHECK(!strcmp(s, "x"));
    CHECK(tsr__json_string(j, "a", NULL, &s, "cfg", &err) == TSR_ERR_FORMAT);
    cJSON_Delete(j);

    cJSON *out = NULL;
    char path[] = "/tmp/tsr_json_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, "{\"a\": [1, 2", 11) == 11);
    if (fd >= 0) close(fd);
    CHECK(tsr__json_load(path, 0, &out, &err) == TSR_ERR_FORMAT && out == NULL);
    CHECK(strstr(err.message, "not valid JSON") != NULL);
    remove(path);
    CHECK(tsr__json_load("/nonexistent.json", 0, &out, &err) == TSR_ERR_IO);
}

int main(void) {
    tsr_test_run("list", test_list);
    tsr_test_run("json_getters", test_json_getters);
    return tsr_test_finish();
}
