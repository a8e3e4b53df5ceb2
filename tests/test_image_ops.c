/* normalize / pad / crop / center_crop / split_tiles against tests/fixtures/ops (written by
 * tools/refgen/gen_resize.py from transformers.image_transforms and numpy), plus bad
 * arguments and allocation failures. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tessera_internal.h"

/* Decodes a fixture PNG as RGB, or RGBA when the file has alpha. */
static int load_png(const char *rel, tsr_image *img) {
    memset(img, 0, sizeof *img);
    size_t len = 0;
    uint8_t *buf = tsr_test_read(tsr_test_fixture(rel), &len);
    if (!buf) {
        fprintf(stderr, "cannot read %s\n", tsr_test_fixture(rel));
        return 0;
    }
    tsr_error err = {0};
    tsr_image_decode_params p = tsr_image_decode_params_default();
    p.limits.max_aspect = 0; /* the stacked-tiles fixture is 1 x 1200 */
    tsr_image_info info;
    tsr_status st = tsr_image_probe(buf, len, &p, &info, &err);
    if (st == TSR_OK) {
        p.channels = info.has_alpha ? 4 : 3;
        st = tsr_image_decode(buf, len, &p, img, NULL, &err);
    }
    free(buf);
    if (st != TSR_OK) fprintf(stderr, "%s: %s\n", rel, err.message);
    return st == TSR_OK;
}

static cJSON *load_manifest(void) {
    size_t len = 0;
    uint8_t *buf = tsr_test_read(tsr_test_fixture("ops/manifest.json"), &len);
    if (!buf) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    return j;
}

static const char *jstr(const cJSON *o, const char *k) {
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}
static int jint(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static int same_image(const tsr_image *got, const tsr_image *want, const char *what) {
    if (got->width != want->width || got->height != want->height ||
        got->channels != want->channels) {
        fprintf(stderr, "%s: got %d x %d x %d, expected %d x %d x %d\n", what, got->width,
                got->height, got->channels, want->width, want->height, want->channels);
        return 0;
    }
    size_t n = (size_t)got->width * got->height * got->channels;
    for (size_t i = 0; i < n; i++)
        if (got->data[i] != want->data[i]) {
            size_t px = i / (size_t)got->channels;
            fprintf(stderr, "%s: first difference at x=%zu y=%zu c=%zu: got %d, expected %d\n",
                    what, px % (size_t)got->width, px / (size_t)got->width,
                    i % (size_t)got->channels, got->data[i], want->data[i]);
            return 0;
        }
    return 1;
}

static cJSON *g_man;

static const cJSON *section(const char *name) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(g_man, name);
    CHECK_MSG(cJSON_IsArray(s) && cJSON_GetArraySize(s) > 0, "manifest section %s", name);
    return s;
}

static void test_normalize(void) {
    tsr_error err = {0};
    tsr_safetensors *st = NULL;
    CHECK_OK(tsr_test_open_safetensors(tsr_test_fixture("ops/normalize.safetensors"), &st, &err),
             &err);
    if (!st) return;
    const cJSON *c;
    int n = 0, exact = 0;
    cJSON_ArrayForEach(c, section("normalize")) {
        const char *src_rel = jstr(c, "src"), *name = jstr(c, "tensor");
        char rel[300];
        snprintf(rel, sizeof rel, "ops/%s", src_rel ? src_rel : "?");
        tsr_image img;
        if (!name || !load_png(rel, &img)) {
            CHECK_MSG(0, "normalize case %d unreadable", n);
            continue;
        }
        tsr_normalize_params p = {.size = sizeof p};
        p.do_rescale = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "do_rescale"));
        p.rescale = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "rescale"));
        p.do_normalize = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "do_normalize"));
        const cJSON *mean = cJSON_GetObjectItemCaseSensitive(c, "mean");
        const cJSON *stdv = cJSON_GetObjectItemCaseSensitive(c, "std");
        for (int i = 0; i < cJSON_GetArraySize(mean) && i < 4; i++) {
            p.mean[i] = cJSON_GetNumberValue(cJSON_GetArrayItem(mean, i));
            p.std[i] = cJSON_GetNumberValue(cJSON_GetArrayItem(stdv, i));
        }
        tsr_tensor want;
        CHECK_OK(tsr_safetensors_get(st, name, &want, &err), &err);
        int64_t shape[3] = {img.channels, img.height, img.width};
        size_t count = (size_t)img.channels * img.height * img.width;
        if (tsr_tensor_check(&want, name, TSR_DTYPE_F32, 3, shape, &err) != TSR_OK) {
            CHECK_MSG(0, "%s", err.message);
            tsr_image_free(&img);
            continue;
        }
        float *got = malloc(count * sizeof(float));
        CHECK_OK(tsr_image_normalize(&img, &p, got, count, &err), &err);
        const float *w = want.data;
        double maxdiff = 0;
        size_t bitwise = 0;
        for (size_t i = 0; i < count; i++) {
            double d = fabs((double)got[i] - (double)w[i]);
            if (d > maxdiff) maxdiff = d;
            bitwise += memcmp(&got[i], &w[i], sizeof(float)) == 0;
        }
        CHECK_MSG(maxdiff <= 1e-6, "%s: max |diff| %g", name, maxdiff);
        exact += bitwise == count;
        n++;
        free(got);
        tsr_image_free(&img);
    }
    printf("  normalize: %d cases, %d bit-identical\n", n, exact);
    CHECK(n >= 20 && exact == n);
    tsr_test_close_safetensors(st);
}

/* Runs one image-producing op per manifest case and compares with the expected PNG. */
typedef tsr_status (*op_fn)(const tsr_image *src, const cJSON *c, tsr_image *out,
                            tsr_error *err);

static tsr_status run_pad(const tsr_image *src, const cJSON *c, tsr_image *out,
                          tsr_error *err) {
    uint8_t fill[4] = {0};
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "fill");
    for (int i = 0; i < cJSON_GetArraySize(f) && i < 4; i++)
        fill[i] = (uint8_t)cJSON_GetArrayItem(f, i)->valueint;
    return tsr_image_pad(src, jint(c, "width"), jint(c, "height"), jint(c, "x"), jint(c, "y"),
                         fill, out, err);
}
static tsr_status run_center_crop(const tsr_image *src, const cJSON *c, tsr_image *out,
                                  tsr_error *err) {
    return tsr_image_center_crop(src, jint(c, "width"), jint(c, "height"), out, err);
}
static tsr_status run_crop(const tsr_image *src, const cJSON *c, tsr_image *out,
                           tsr_error *err) {
    return tsr_image_crop(src, jint(c, "x"), jint(c, "y"), jint(c, "width"), jint(c, "height"),
                          out, err);
}
/* Tiles stacked vertically (tile i at rows i*th..), the fixture's layout. */
static tsr_status run_tiles(const tsr_image *src, const cJSON *c, tsr_image *out,
                            tsr_error *err) {
    int rows = jint(c, "rows"), cols = jint(c, "cols");
    tsr_image *tiles = calloc((size_t)rows * cols, sizeof *tiles);
    tsr_status st = tsr_image_split_tiles(src, rows, cols, tiles, err);
    if (st == TSR_OK) {
        st = tsr_image_alloc(out, tiles[0].width, tiles[0].height * rows * cols, src->channels,
                             err);
        size_t tile_bytes = (size_t)tiles[0].width * tiles[0].height * src->channels;
        for (int i = 0; i < rows * cols; i++) {
            if (st == TSR_OK) memcpy(out->data + (size_t)i * tile_bytes, tiles[i].data, tile_bytes);
            tsr_image_free(&tiles[i]);
        }
    }
    free(tiles);
    return st;
}

static void run_section(const char *name, op_fn fn) {
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, section(name)) {
        char rel_src[300], rel_exp[300];
        snprintf(rel_src, sizeof rel_src, "ops/%s", jstr(c, "src") ? jstr(c, "src") : "?");
        snprintf(rel_exp, sizeof rel_exp, "ops/%s",
                 jstr(c, "expected") ? jstr(c, "expected") : "?");
        tsr_image src, want, got;
        if (!load_png(rel_src, &src)) {
            CHECK_MSG(0, "%s case %d: no source", name, n);
            continue;
        }
        if (!load_png(rel_exp, &want)) {
            CHECK_MSG(0, "%s case %d: no expected image", name, n);
            tsr_image_free(&src);
            continue;
        }
        tsr_error err = {0};
        tsr_status st = fn(&src, c, &got, &err);
        CHECK_MSG(st == TSR_OK, "%s: %s", rel_exp, err.message);
        if (st == TSR_OK) {
            CHECK(same_image(&got, &want, rel_exp));
            tsr_image_free(&got);
        }
        tsr_image_free(&want);
        tsr_image_free(&src);
        n++;
    }
    printf("  %s: %d cases\n", name, n);
}

static void test_pad(void) { run_section("pad", run_pad); }
static void test_center_crop(void) { run_section("center_crop", run_center_crop); }
static void test_crop(void) { run_section("crop", run_crop); }
static void test_tiles(void) { run_section("tiles", run_tiles); }

static void test_bad_arguments(void) {
    tsr_error err = {0};
    tsr_image src, out;
    CHECK_OK(tsr_image_alloc(&src, 6, 4, 3, &err), &err);
    memset(src.data, 7, 6 * 4 * 3);
    const uint8_t fill[3] = {1, 2, 3};

    /* crop */
    CHECK(tsr_image_crop(&src, 0, 0, 6, 4, NULL, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_crop(NULL, 0, 0, 1, 1, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(out.data == NULL);
    CHECK(tsr_image_crop(&src, 0, 0, 0, 1, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_crop(&src, 0, 0, 1, -2, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_crop(&src, 1, 0, 6, 4, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK_MSG(strcmp(err.message, "tsr_image_crop: crop [1, 7) x [0, 4) lies outside the "
                                  "6 x 4 image") == 0, "%s", err.message);
    CHECK(tsr_image_crop(&src, -1, 0, 2, 2, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_crop(&src, 0, 3, 1, 2, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_crop(&src, INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX, &out, &err) ==
          TSR_ERR_INVALID_ARG);
    CHECK(out.data == NULL);

    /* pad */
    CHECK(tsr_image_pad(&src, 8, 8, 0, 0, NULL, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "fill") != NULL);
    CHECK(tsr_image_pad(&src, 0, 8, 0, 0, fill, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_pad(&src, 8, -8, 0, 0, fill, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_pad(NULL, 8, 8, 0, 0, fill, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_pad(&src, 8, 8, 0, 0, fill, NULL, &err) == TSR_ERR_INVALID_ARG);
    /* Absurd canvas sizes: refused before allocating. */
    tsr_image rgba;
    CHECK_OK(tsr_image_alloc(&rgba, 2, 2, 4, &err), &err);
    memset(rgba.data, 0, 16);
    CHECK(tsr_image_pad(&rgba, INT32_MAX, INT32_MAX, 0, 0, fill, &out, &err) == TSR_ERR_LIMIT);
    CHECK(tsr_image_center_crop(&rgba, INT32_MAX, INT32_MAX, &out, &err) == TSR_ERR_LIMIT);
    CHECK(out.data == NULL);
    tsr_image_free(&rgba);
    /* Offsets far outside: the canvas is all fill, no overflow in the clipping math. */
    CHECK_OK(tsr_image_pad(&src, 3, 2, INT32_MIN, INT32_MAX, fill, &out, &err), &err);
    CHECK(out.data && out.data[0] == 1 && out.data[1] == 2 && out.data[17] == 3);
    tsr_image_free(&out);
    CHECK_OK(tsr_image_pad(&src, 3, 2, INT32_MAX, INT32_MIN, fill, &out, &err), &err);
    tsr_image_free(&out);

    /* center_crop */
    CHECK(tsr_image_center_crop(&src, 0, 2, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_center_crop(&src, 2, -1, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_center_crop(NULL, 2, 2, &out, &err) == TSR_ERR_INVALID_ARG);

    /* normalize */
    tsr_normalize_params p = {.size = sizeof p, .do_rescale = 1, .rescale = 1 / 255.0,
                              .do_normalize = 1, .mean = {0.5, 0.5, 0.5}, .std = {0.5, 0.5, 0.5}};
    float dst[6 * 4 * 3];
    CHECK(tsr_image_normalize(&src, &p, dst, 6 * 4 * 3 - 1, &err) == TSR_ERR_INVALID_ARG);
    CHECK_MSG(strcmp(err.message, "tsr_image_normalize: dst holds 71 floats, [3, 4, 6] needs 72")
                  == 0, "%s", err.message);
    CHECK(tsr_image_normalize(&src, &p, NULL, 72, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_normalize(&src, NULL, dst, 72, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_normalize(NULL, &p, dst, 72, &err) == TSR_ERR_INVALID_ARG);
    p.std[1] = 0.0;
    CHECK(tsr_image_normalize(&src, &p, dst, 72, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "std[1]") != NULL);
    p.std[1] = 0.5;
    p.mean[2] = 1e300; /* would overflow the float32 cast */
    CHECK(tsr_image_normalize(&src, &p, dst, 72, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "mean[2]") != NULL);
    p.mean[2] = NAN;
    CHECK(tsr_image_normalize(&src, &p, dst, 72, &err) == TSR_ERR_INVALID_ARG);
    p.mean[2] = 0.5;
    p.rescale = INFINITY;
    CHECK(tsr_image_normalize(&src, &p, dst, 72, &err) == TSR_ERR_INVALID_ARG);
    p.rescale = 1e306;
    CHECK(tsr_image_normalize(&src, &p, dst, 72, &err) == TSR_ERR_INVALID_ARG);
    p.rescale = 1 / 255.0;
    p.size = 3;
    CHECK(tsr_image_normalize(&src, &p, dst, 72, &err) == TSR_ERR_INVALID_ARG);
    p.size = sizeof p;
    CHECK_OK(tsr_image_normalize(&src, &p, dst, 72, &err), &err);
    /* 7/255 rescaled, then (x - 0.5) / 0.5 in float32 */
    float x = (float)(7.0 * (1 / 255.0));
    CHECK(dst[0] == (x - 0.5f) / 0.5f && dst[71] == dst[0]);

    /* split_tiles */
    tsr_image tiles[12];
    CHECK(tsr_image_split_tiles(&src, 3, 2, tiles, &err) == TSR_ERR_SHAPE);
    CHECK(strstr(err.message, "6 x 4") != NULL);
    CHECK(tsr_image_split_tiles(&src, 2, 4, tiles, &err) == TSR_ERR_SHAPE);
    CHECK(tsr_image_split_tiles(&src, 0, 2, tiles, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_split_tiles(&src, 2, -3, tiles, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_split_tiles(&src, 2, 2, NULL, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_split_tiles(NULL, 2, 2, tiles, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_split_tiles(&src, INT32_MAX, INT32_MAX, tiles, &err) == TSR_ERR_SHAPE);
    CHECK_OK(tsr_image_split_tiles(&src, 4, 3, tiles, &err), &err);
    for (int i = 0; i < 12; i++) {
        CHECK(tiles[i].width == 2 && tiles[i].height == 1 && tiles[i].data[5] == 7);
        tsr_image_free(&tiles[i]);
    }

    /* malformed source images */
    tsr_image bad = src;
    bad.channels = 5;
    CHECK(tsr_image_crop(&bad, 0, 0, 1, 1, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_normalize(&bad, &p, dst, 72, &err) == TSR_ERR_INVALID_ARG);
    bad = src;
    bad.height = -4;
    CHECK(tsr_image_center_crop(&bad, 1, 1, &out, &err) == TSR_ERR_INVALID_ARG);
    bad = src;
    bad.data = NULL;
    CHECK(tsr_image_pad(&bad, 8, 8, 0, 0, fill, &out, &err) == TSR_ERR_INVALID_ARG);
    tsr_image_free(&src);
}

/* Every allocation of split_tiles and pad fails in turn: clean OOM, nothing leaked. */
static void test_alloc_failpoints(void) {
    tsr_error err = {0};
    tsr_image src;
    CHECK_OK(tsr_image_alloc(&src, 8, 6, 3, &err), &err);
    memset(src.data, 9, 8 * 6 * 3);
    tsr_image tiles[6];
    int done = 0;
    for (long n = 1; n < 20 && !done; n++) {
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_image_split_tiles(&src, 3, 2, tiles, &err);
        tsr__alloc_failpoint(0);
        if (st == TSR_OK) {
            done = 1;
            for (int i = 0; i < 6; i++) tsr_image_free(&tiles[i]);
        } else {
            CHECK_MSG(st == TSR_ERR_OOM, "step %ld: %s", n, err.message);
            for (int i = 0; i < 6; i++) CHECK(tiles[i].data == NULL);
        }
    }
    CHECK(done);
    const uint8_t fill[3] = {0, 0, 0};
    tsr_image out;
    tsr__alloc_failpoint(1);
    CHECK(tsr_image_pad(&src, 10, 10, 1, 1, fill, &out, &err) == TSR_ERR_OOM);
    tsr__alloc_failpoint(1);
    CHECK(tsr_image_center_crop(&src, 4, 4, &out, &err) == TSR_ERR_OOM);
    tsr__alloc_failpoint(0);
    CHECK(out.data == NULL);
    tsr_image_free(&src);
}

int main(void) {
    g_man = load_manifest();
    if (!g_man) {
        fprintf(stderr, "cannot read %s\n", tsr_test_fixture("ops/manifest.json"));
        return 1;
    }
    tsr_test_run("normalize", test_normalize);
    tsr_test_run("pad", test_pad);
    tsr_test_run("center_crop", test_center_crop);
    tsr_test_run("crop", test_crop);
    tsr_test_run("tiles", test_tiles);
    tsr_test_run("bad_arguments", test_bad_arguments);
    tsr_test_run("alloc_failpoints", test_alloc_failpoints);
    cJSON_Delete(g_man);
    return tsr_test_finish();
}
