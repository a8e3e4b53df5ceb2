/* Status codes, error details, tensors, checked sizes, allocation failpoints. */
#include <string.h>

#include "harness.h"
#include "tessera_internal.h"

static void test_status_names(void) {
    CHECK(strcmp(tsr_status_name(TSR_OK), "TSR_OK") == 0);
    CHECK(strcmp(tsr_status_name(TSR_ERR_FORMAT), "TSR_ERR_FORMAT") == 0);
    CHECK(strcmp(tsr_status_name(TSR_ERR_INTERNAL), "TSR_ERR_INTERNAL") == 0);
    CHECK(strcmp(tsr_status_name((tsr_status)999), "TSR_ERR_UNKNOWN") == 0);
    CHECK(strcmp(tsr_status_name((tsr_status)-1), "TSR_ERR_UNKNOWN") == 0);
    for (int s = 0; s < TSR_STATUS_COUNT; s++) {
        CHECK(strncmp(tsr_status_name((tsr_status)s), "TSR_", 4) == 0);
        CHECK(strlen(tsr_status_str((tsr_status)s)) > 0);
    }
    /* Codes are append-only: pin the ABI values of DESIGN.md's list. */
    CHECK(TSR_ERR_INVALID_ARG == 1 && TSR_ERR_SHAPE == 2 && TSR_ERR_LIMIT == 3);
    CHECK(TSR_ERR_FORMAT == 4 && TSR_ERR_UNSUPPORTED == 5 && TSR_ERR_IO == 6);
    CHECK(TSR_ERR_OOM == 7 && TSR_ERR_DEVICE == 8 && TSR_ERR_CANCELLED == 9);
    CHECK(TSR_ERR_INTERNAL == 10);
}

static tsr_status failing_function(tsr_error *err) {
    return TSR_FAIL(err, TSR_ERR_LIMIT, "width %d exceeds %d", 20000, 16384);
}

static void test_error_detail(void) {
    tsr_error err = {0};
    CHECK(failing_function(&err) == TSR_ERR_LIMIT);
    CHECK(err.status == TSR_ERR_LIMIT);
    CHECK(strcmp(err.message, "failing_function: width 20000 exceeds 16384") == 0);
    CHECK(failing_function(NULL) == TSR_ERR_LIMIT); /* NULL err is allowed */
    /* Overlong messages are truncated, never overflow. */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK(TSR_FAIL(&err, TSR_ERR_FORMAT, "%s", big) == TSR_ERR_FORMAT);
    CHECK(strlen(err.message) == TSR_ERROR_MSG_MAX - 1);
}

static void test_tensor_alloc_and_check(void) {
    tsr_error err = {0};
    tsr_tensor t;
    int64_t shape[3] = {2, 3, 4};
    CHECK_OK(tsr_tensor_alloc(&t, TSR_DTYPE_F32, 3, shape, &err), &err);
    CHECK(tsr_tensor_numel(&t) == 24);
    CHECK(tsr_tensor_nbytes(&t) == 96);
    CHECK(t.strides[0] == 12 && t.strides[1] == 4 && t.strides[2] == 1);
    CHECK(tsr_tensor_is_contiguous(&t));
    CHECK(((float *)t.data)[23] == 0.0f);

    int64_t want[3] = {2, -1, 4};
    CHECK(tsr_tensor_check(&t, "x", TSR_DTYPE_F32, 3, want, &err) == TSR_OK);
    int64_t bad[3] = {2, 3, 5};
    CHECK(tsr_tensor_check(&t, "pixel_values", TSR_DTYPE_F32, 3, bad, &err) == TSR_ERR_SHAPE);
    CHECK_MSG(strcmp(err.message, "tsr_tensor_check: pixel_values has shape [2, 3, 4] F32, "
                                  "expected [2, 3, 5] F32") == 0, "%s", err.message);
    CHECK(tsr_tensor_check(&t, "x", TSR_DTYPE_I64, 3, want, &err) == TSR_ERR_SHAPE);
    tsr_tensor_free(&t);
    tsr_tensor_free(&t); /* second free of a zeroed descriptor is a no-op */
    tsr_tensor_free(NULL);
}

static void test_tensor_bad_args(void) {
    tsr_error err = {0};
    tsr_tensor t;
    int64_t huge[4] = {INT64_MAX / 2, 4, 4, 4};
    CHECK(tsr_tensor_alloc(&t, TSR_DTYPE_F32, 4, huge, &err) == TSR_ERR_LIMIT);
    CHECK(t.data == NULL);
    int64_t neg[1] = {-3};
    CHECK(tsr_tensor_alloc(&t, TSR_DTYPE_F32, 1, neg, &err) == TSR_ERR_INVALID_ARG);
    int64_t ok[1] = {3};
    CHECK(tsr_tensor_alloc(&t, (tsr_dtype)42, 1, ok, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_tensor_alloc(&t, TSR_DTYPE_U8, 7, ok, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_tensor_view(&t, TSR_DTYPE_U8, 1, ok, NULL, &err) == TSR_ERR_INVALID_ARG);
    uint8_t buf[3] = {1, 2, 3};
    CHECK_OK(tsr_tensor_view(&t, TSR_DTYPE_U8, 1, ok, buf, &err), &err);
    CHECK(t.owner == 0 && t.data == buf);
    tsr_tensor_free(&t); /* borrowed: must not free buf */
    CHECK(buf[2] == 3);
}

static void test_checked_sizes(void) {
    size_t out;
    CHECK(tsr__mul_size(1u << 20, 1u << 20, &out) && out == (size_t)1 << 40);
    CHECK(!tsr__mul_size(SIZE_MAX / 2, 3, &out));
    CHECK(!tsr__add_size(SIZE_MAX, 1, &out));
    CHECK(!tsr__mul3_size(100000, 100000, SIZE_MAX / 1000, &out));
}

static void test_alloc_failpoints(void) {
    tsr_error err = {0};
    tsr_tensor t;
    int64_t shape[1] = {16};
    tsr__alloc_failpoint(1);
    CHECK(tsr_tensor_alloc(&t, TSR_DTYPE_F32, 1, shape, &err) == TSR_ERR_OOM);
    CHECK(t.data == NULL);
    tsr__alloc_failpoint(0);
    CHECK_OK(tsr_tensor_alloc(&t, TSR_DTYPE_F32, 1, shape, &err), &err);
    tsr_tensor_free(&t);
}

int main(void) {
    tsr_test_run("status_names", test_status_names);
    tsr_test_run("error_detail", test_error_detail);
    tsr_test_run("tensor_alloc_and_check", test_tensor_alloc_and_check);
    tsr_test_run("tensor_bad_args", test_tensor_bad_args);
    tsr_test_run("checked_sizes", test_checked_sizes);
    tsr_test_run("alloc_failpoints", test_alloc_failpoints);
    return tsr_test_finish();
}
