/* tsr_image_resize against Pillow: every case of tests/fixtures/resize/manifest.json
 * (written by tools/refgen/gen_resize.py) must match bit for bit. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tessera_internal.h"

/* Decodes a fixture PNG (8-bit RGB or RGBA, as Pillow wrote it) with tsr_image_decode;
 * limits off: some sources are 3000 x 2. */
static int load_png(const char *path, tsr_image *img) {
    memset(img, 0, sizeof *img);
    size_t len = 0;
    uint8_t *buf = tsr_test_read(path, &len);
    if (!buf) {
        fprintf(stderr, "cannot read %s\n", path);
        return 0;
    }
    tsr_error err = {0};
    tsr_image_decode_params p = tsr_image_decode_params_default();
    p.limits.max_aspect = 0;
    tsr_image_info info;
    tsr_status st = tsr_image_probe(buf, len, &p, &info, &err);
    if (st == TSR_OK) {
        p.channels = info.has_alpha ? 4 : 3;
        st = tsr_image_decode(buf, len, &p, img, NULL, &err);
    }
    free(buf);
    if (st != TSR_OK) fprintf(stderr, "%s: %s\n", path, err.message);
    return st == TSR_OK;
}

static cJSON *load_json(const char *rel) {
    size_t len = 0;
    uint8_t *buf = tsr_test_read(tsr_test_fixture(rel), &len);
    if (!buf) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    return j;
}

static int filter_from_name(const char *s, tsr_resample *f) {
    static const struct {
        const char *name;
        tsr_resample f;
    } names[] = {{"nearest", TSR_RESAMPLE_NEAREST},
                 {"bilinear", TSR_RESAMPLE_BILINEAR},
                 {"bicubic", TSR_RESAMPLE_BICUBIC},
                 {"lanczos", TSR_RESAMPLE_LANCZOS}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *f = names[i].f;
            return 1;
        }
    return 0;
}

/* Compares two images; on mismatch reports the first differing sample and the count. */
static int same_pixels(const tsr_image *got, const tsr_image *want, const char *what) {
    if (got->width != want->width || got->height != want->height ||
        got->channels != want->channels) {
        fprintf(stderr, "%s: got %d x %d x %d, expected %d x %d x %d\n", what, got->width,
                got->height, got->channels, want->width, want->height, want->channels);
        return 0;
    }
    size_t n = (size_t)got->width * got->height * got->channels, bad = 0, first = 0;
    int maxdiff = 0;
    for (size_t i = 0; i < n; i++)
        if (got->data[i] != want->data[i]) {
            if (!bad) first = i;
            bad++;
            int d = abs(got->data[i] - want->data[i]);
            if (d > maxdiff) maxdiff = d;
        }
    if (bad) {
        size_t px = first / (size_t)got->channels;
        fprintf(stderr,
                "%s: %zu of %zu samples differ (max |diff| %d); first at x=%zu y=%zu c=%zu: "
                "got %d, expected %d\n",
                what, bad, n, maxdiff, px % (size_t)got->width, px / (size_t)got->width,
                first % (size_t)got->channels, got->data[first], want->data[first]);
    }
    return bad == 0;
}

static void test_pillow_cases(void) {
    cJSON *man = load_json("resize/manifest.json");
    if (!man) {
        CHECK_MSG(0, "cannot read %s", tsr_test_fixture("resize/manifest.json"));
        return;
    }
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(man, "cases");
    CHECK(cJSON_IsArray(cases) && cJSON_GetArraySize(cases) >= 200);
    int n = 0, ok = 0, per_filter[4] = {0};
    char src_name[256] = "";
    tsr_image src = {0};
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "src"));
        const char *e = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "expected"));
        const char *fn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "filter"));
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(c, "width");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(c, "height");
        tsr_resample f;
        if (!s || !e || !fn || !cJSON_IsNumber(w) || !cJSON_IsNumber(h) ||
            !filter_from_name(fn, &f) || strlen(s) >= sizeof src_name) {
            CHECK_MSG(0, "malformed manifest entry %d", n);
            continue;
        }
        n++;
        if (strcmp(s, src_name) != 0) { /* cases are grouped by source */
            tsr_image_free(&src);
            snprintf(src_name, sizeof src_name, "%s", s);
            char rel[512];
            snprintf(rel, sizeof rel, "resize/%s", s);
            if (!load_png(tsr_test_fixture(rel), &src)) {
                CHECK_MSG(0, "cannot load %s", rel);
                src_name[0] = 0;
                continue;
            }
        }
        char rel[512];
        snprintf(rel, sizeof rel, "resize/%s", e);
        tsr_image want, got;
        if (!load_png(tsr_test_fixture(rel), &want)) {
            CHECK_MSG(0, "cannot load %s", rel);
            continue;
        }
        tsr_error err = {0};
        tsr_status st = tsr_image_resize(&src, w->valueint, h->valueint, f, &got, &err);
        char what[700];
        snprintf(what, sizeof what, "%s %dx%d -> %dx%d %s", s, src.width, src.height,
                 w->valueint, h->valueint, fn);
        CHECK_MSG(st == TSR_OK, "%s: %s", what, err.message);
        if (st == TSR_OK && same_pixels(&got, &want, what)) {
            ok++;
            per_filter[f]++;
        } else {
            tsr_test_failed_checks++;
        }
        tsr_image_free(&got);
        tsr_image_free(&want);
    }
    tsr_image_free(&src);
    printf("  %d/%d cases bit-identical (nearest %d, bilinear %d, bicubic %d, lanczos %d)\n",
           ok, n, per_filter[TSR_RESAMPLE_NEAREST], per_filter[TSR_RESAMPLE_BILINEAR],
           per_filter[TSR_RESAMPLE_BICUBIC], per_filter[TSR_RESAMPLE_LANCZOS]);
    cJSON_Delete(man);
}

static void fill_pattern(tsr_image *img) {
    size_t n = (size_t)img->width * img->height * img->channels;
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        img->data[i] = (uint8_t)(s >> 16);
    }
}

static void test_bad_arguments(void) {
    tsr_error err = {0};
    tsr_image src, out;
    CHECK_OK(tsr_image_alloc(&src, 8, 6, 3, &err), &err);
    fill_pattern(&src);

    CHECK(tsr_image_resize(&src, 4, 3, TSR_RESAMPLE_BICUBIC, NULL, &err) ==
          TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "out") != NULL);
    out.data = (uint8_t *)1; /* out is zeroed on failure */
    CHECK(tsr_image_resize(NULL, 4, 3, TSR_RESAMPLE_BICUBIC, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(out.data == NULL && out.width == 0);
    CHECK(tsr_image_resize(&src, 0, 3, TSR_RESAMPLE_BICUBIC, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK_MSG(strcmp(err.message, "tsr_image_resize: target size 0 x 3 must be at least 1 x 1")
                  == 0, "%s", err.message);
    CHECK(tsr_image_resize(&src, 4, -1, TSR_RESAMPLE_BICUBIC, &out, &err) ==
          TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_resize(&src, 4, 3, (tsr_resample)7, &out, &err) == TSR_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "filter 7") != NULL);
    CHECK(tsr_image_resize(&src, 4, 3, (tsr_resample)-1, &out, &err) == TSR_ERR_INVALID_ARG);

    tsr_image bad = src;
    bad.data = NULL;
    CHECK(tsr_image_resize(&bad, 4, 3, TSR_RESAMPLE_BILINEAR, &out, &err) ==
          TSR_ERR_INVALID_ARG);
    bad = src;
    bad.width = 0;
    CHECK(tsr_image_resize(&bad, 4, 3, TSR_RESAMPLE_BILINEAR, &out, &err) ==
          TSR_ERR_INVALID_ARG);
    bad = src;
    bad.channels = 2;
    CHECK(tsr_image_resize(&bad, 4, 3, TSR_RESAMPLE_BILINEAR, &out, &err) ==
          TSR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "2 channels") != NULL);
    bad.channels = 1;
    CHECK(tsr_image_resize(&bad, 4, 3, TSR_RESAMPLE_BILINEAR, &out, &err) ==
          TSR_ERR_UNSUPPORTED);

    /* Output sizes whose byte count overflows: refused before allocating. */
    CHECK(tsr_image_resize(&src, INT32_MAX, INT32_MAX, TSR_RESAMPLE_NEAREST, &out, &err) ==
          TSR_ERR_LIMIT);
    CHECK(out.data == NULL);
    tsr_image_free(&src);
}

/* Fails allocation 1, 2, ... of a two-pass resize (and the RGBA and tall-image paths):
 * each must return OOM cleanly (no leak: ASan checks), and the walk must end in success. */
static void failpoint_walk(int w, int h, int c, int ow, int oh, tsr_resample f) {
    tsr_error err = {0};
    tsr_image src;
    CHECK_OK(tsr_image_alloc(&src, w, h, c, &err), &err);
    fill_pattern(&src);
    tsr_image ref;
    CHECK_OK(tsr_image_resize(&src, ow, oh, f, &ref, &err), &err);
    int succeeded = 0;
    for (long n = 1; n < 64 && !succeeded; n++) {
        tsr__alloc_failpoint(n);
        tsr_image out;
        tsr_status st = tsr_image_resize(&src, ow, oh, f, &out, &err);
        tsr__alloc_failpoint(0);
        if (st == TSR_OK) {
            succeeded = 1;
            CHECK(memcmp(out.data, ref.data, (size_t)ow * oh * c) == 0);
            tsr_image_free(&out);
        } else {
            CHECK_MSG(st == TSR_ERR_OOM, "step %ld: %s %s", n, tsr_status_name(st), err.message);
            CHECK(out.data == NULL);
        }
    }
    CHECK(succeeded);
    tsr_image_free(&ref);
    tsr_image_free(&src);
}

static void test_alloc_failpoints(void) {
    failpoint_walk(40, 30, 3, 17, 11, TSR_RESAMPLE_BICUBIC);
    failpoint_walk(40, 30, 4, 17, 11, TSR_RESAMPLE_LANCZOS);
    failpoint_walk(2, 300, 3, 3, 20, TSR_RESAMPLE_BILINEAR);
    failpoint_walk(40, 30, 3, 17, 11, TSR_RESAMPLE_NEAREST);
}

/* A tiny image blown up to a huge target: refused or done, never a crash. */
static void test_extreme_scale(void) {
    tsr_error err = {0};
    tsr_image src, out;
    CHECK_OK(tsr_image_alloc(&src, 3000, 1, 3, &err), &err);
    fill_pattern(&src);
    CHECK_OK(tsr_image_resize(&src, 1, 1, TSR_RESAMPLE_LANCZOS, &out, &err), &err);
    tsr_image_free(&out);
    CHECK_OK(tsr_image_resize(&src, 1, 2000, TSR_RESAMPLE_BICUBIC, &out, &err), &err);
    tsr_image_free(&out);
    tsr_image_free(&src);
}

/* The vector passes (where the CPU has them) against the portable 32-bit passes on
 * random sizes: all filters, RGB and RGBA, upscales and downscales on either axis (so
 * both pass orders and single-pass resizes), tiny rows, and windows of ~1000 taps. */
static uint32_t rnd_state = 2024;
static uint32_t rnd(void) {
    rnd_state = rnd_state * 1664525u + 1013904223u;
    return rnd_state >> 8;
}

static void test_vector_matches_portable(void) {
    int cases = 0, bad = 0;
    for (int it = 0; it < 160; it++) {
        uint32_t wmax = rnd() % 4 ? 90 : 700, hmax = rnd() % 4 ? 90 : 400;
        int w = it < 8 ? 1000 + (int)(rnd() % 2000) : 1 + (int)(rnd() % wmax);
        int h = it < 8 ? 1 + (int)(rnd() % 6) : 1 + (int)(rnd() % hmax);
        if (it & 1) { /* tall */
            int t = w;
            w = h;
            h = t;
        }
        int c = 3 + (int)(rnd() % 2);
        tsr_error err = {0};
        tsr_image src;
        CHECK_OK(tsr_image_alloc(&src, w, h, c, &err), &err);
        for (size_t i = 0; i < (size_t)w * h * c; i++)
            src.data[i] = (uint8_t)(i % 5 ? rnd() : (rnd() & 1) * 255);
        for (int k = 0; k < 3; k++) {
            int ow = it < 8 ? 1 + (int)(rnd() % 3) : k == 0 ? w : 1 + (int)(rnd() % 300);
            int oh = it < 8 ? 1 + (int)(rnd() % 9) : k == 1 ? h : 1 + (int)(rnd() % 300);
            if (it & 1 && it < 8) {
                int t = ow;
                ow = oh;
                oh = t;
            }
            tsr_resample f = (tsr_resample)(1 + (int)(rnd() % 3)); /* LANCZOS..BICUBIC */
            tsr_image a, b;
            CHECK_OK(tsr_image_resize(&src, ow, oh, f, &a, &err), &err);
            tsr__image_resize_simd(0);
            CHECK_OK(tsr_image_resize(&src, ow, oh, f, &b, &err), &err);
            tsr__image_resize_simd(1);
            cases++;
            if (a.data && b.data && memcmp(a.data, b.data, (size_t)ow * oh * c) != 0) {
                bad++;
                CHECK_MSG(0, "%dx%dx%d -> %dx%d filter %d: vector and portable passes differ",
                          w, h, c, ow, oh, (int)f);
            }
            tsr_image_free(&a);
            tsr_image_free(&b);
        }
        tsr_image_free(&src);
    }
    printf("  %d/%d random resizes identical on both paths\n", cases - bad, cases);
}

int main(void) {
    tsr_test_run("pillow_cases", test_pillow_cases);
    tsr_test_run("bad_arguments", test_bad_arguments);
    tsr_test_run("alloc_failpoints", test_alloc_failpoints);
    tsr_test_run("extreme_scale", test_extreme_scale);
    tsr_test_run("vector_matches_portable", test_vector_matches_portable);
    return tsr_test_finish();
}
