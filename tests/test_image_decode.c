/* Every image of tests/fixtures/images/manifest.json (made by tools/refgen/gen_images.py)
 * decodes to exactly Pillow's pixels: RGB, and RGBA + composite-over-white where the image
 * has alpha; the info fields and tsr_image_probe agree with the manifest. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

/* Expected PNGs (8-bit RGB/RGBA from Pillow) through libpng's simplified API. */
/* Manifest file names are relative to tests/fixtures/images. */
static const char *image_path(const char *file) {
    static char rel[512];
    snprintf(rel, sizeof rel, "images/%s", file);
    return tsr_test_fixture(rel);
}

static uint8_t *read_expected(const char *file, int channels, int *w, int *h) {
    size_t len;
    uint8_t *buf = tsr_test_read(image_path(file), &len);
    if (!buf) return NULL;
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    uint8_t *px = NULL;
    if (png_image_begin_read_from_memory(&im, buf, len)) {
        im.format = channels == 4 ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
        px = malloc(PNG_IMAGE_SIZE(im));
        if (px && !png_image_finish_read(&im, NULL, px, 0, NULL)) {
            free(px);
            px = NULL;
        }
    }
    png_image_free(&im);
    free(buf);
    *w = (int)im.width;
    *h = (int)im.height;
    return px;
}

static void compare(const char *name, const char *what, const tsr_image *img, const char *file) {
    int w = 0, h = 0;
    uint8_t *exp = read_expected(file, img->channels, &w, &h);
    CHECK_MSG(exp != NULL, "%s: cannot read %s", name, file);
    if (!exp) return;
    CHECK_MSG(img->width == w && img->height == h, "%s %s: size %dx%d, expected %dx%d", name,
              what, (int)img->width, (int)img->height, w, h);
    if (img->width == w && img->height == h) {
        size_t n = (size_t)w * (size_t)h * (size_t)img->channels, bad = 0, first = 0;
        int maxd = 0;
        for (size_t i = 0; i < n; i++) {
            int d = abs((int)img->data[i] - (int)exp[i]);
            if (d) {
                if (!bad) first = i;
                bad++;
                if (d > maxd) maxd = d;
            }
        }
        CHECK_MSG(bad == 0,
                  "%s %s: %zu of %zu bytes differ (max %d), first at pixel (%zu, %zu) ch %zu: "
                  "%d vs %d",
                  name, what, bad, n, maxd, (first / img->channels) % (size_t)w,
                  (first / img->channels) / (size_t)w, first % (size_t)img->channels,
                  img->data[first], exp[first]);
    }
    free(exp);
}

static int json_int(const cJSON *e, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, key);
    return cJSON_IsNumber(v) ? v->valueint : -12345;
}

static const char *json_str(const cJSON *e, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void check_info(const char *name, const char *what, const tsr_image_info *info,
                       const cJSON *e) {
    const char *fmt = json_str(e, "format");
    CHECK_MSG(fmt && !strcmp(tsr_image_format_name(info->format), fmt), "%s %s: format %s", name,
              what, tsr_image_format_name(info->format));
    CHECK_MSG(info->width == json_int(e, "width") && info->height == json_int(e, "height"),
              "%s %s: info size %dx%d", name, what, (int)info->width, (int)info->height);
    CHECK_MSG(info->orientation == json_int(e, "orientation"), "%s %s: orientation %d", name,
              what, (int)info->orientation);
    CHECK_MSG(info->bit_depth == json_int(e, "bit_depth"), "%s %s: bit_depth %d", name, what,
              (int)info->bit_depth);
    CHECK_MSG(info->channels == json_int(e, "channels"), "%s %s: channels %d", name, what,
              (int)info->channels);
    const cJSON *ha = cJSON_GetObjectItemCaseSensitive(e, "has_alpha");
    CHECK_MSG(!!info->has_alpha == cJSON_IsTrue(ha), "%s %s: has_alpha %d", name, what,
              (int)info->has_alpha);
    const char *mode = json_str(e, "pil_mode");
    CHECK_MSG(mode && !strcmp(info->mode, mode), "%s %s: mode '%s', expected '%s'", name, what,
              info->mode, mode ? mode : "?");
}

static void one_image(const cJSON *e) {
    const char *name = json_str(e, "name"), *file = json_str(e, "file");
    CHECK(name && file);
    if (!name || !file) return;
    size_t len;
    uint8_t *buf = tsr_test_read(image_path(file), &len);
    CHECK_MSG(buf != NULL, "cannot read %s", file);
    if (!buf) return;
    tsr_error err = {0};
    tsr_image_decode_params p = tsr_image_decode_params_default();
    p.limits.max_aspect = 0; /* the fixtures include 1x1000 and 3000x2 */
    tsr_image_info info;
    tsr_image img;

    CHECK_OK(tsr_image_probe(buf, len, &p, &info, &err), &err);
    check_info(name, "probe", &info, e);

    tsr_status st = tsr_image_decode(buf, len, &p, &img, &info, &err);
    CHECK_MSG(st == TSR_OK, "%s: decode RGB: %s", name, err.message);
    if (st == TSR_OK) {
        check_info(name, "decode", &info, e);
        CHECK(img.channels == 3);
        compare(name, "rgb", &img, json_str(e, "rgb"));
        tsr_image_free(&img);
    }
    const char *rgba = json_str(e, "rgba"), *white = json_str(e, "white");
    if (rgba) {
        p.channels = 4;
        st = tsr_image_decode(buf, len, &p, &img, &info, &err);
        CHECK_MSG(st == TSR_OK, "%s: decode RGBA: %s", name, err.message);
        if (st == TSR_OK) {
            compare(name, "rgba", &img, rgba);
            tsr_image w;
            CHECK_OK(tsr_image_composite_white(&img, &w, &err), &err);
            if (white && w.data) compare(name, "white", &w, white);
            tsr_image_free(&w);
            tsr_image_free(&img);
        }
        p.channels = 3;
    }
    /* without EXIF the stored size comes back */
    p.apply_exif = 0;
    st = tsr_image_decode(buf, len, &p, &img, &info, &err);
    CHECK_MSG(st == TSR_OK, "%s: decode without EXIF: %s", name, err.message);
    if (st == TSR_OK) {
        int swap = json_int(e, "orientation") >= 5;
        int ew = swap ? json_int(e, "height") : json_int(e, "width");
        CHECK_MSG(img.width == ew && info.width == ew, "%s: apply_exif=0 width %d, expected %d",
                  name, (int)img.width, ew);
        tsr_image_free(&img);
    }
    free(buf);
}

static cJSON *g_manifest;

static void test_manifest_images(void) {
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(g_manifest, "images");
    CHECK(cJSON_IsArray(images) && cJSON_GetArraySize(images) >= 60);
    const cJSON *e;
    int n = 0;
    cJSON_ArrayForEach(e, images) {
        one_image(e);
        n++;
    }
    printf("  %d fixture images compared\n", n);
}

/* transformers' convert_rgb formula over every (c, a): compare with the closed form
 * floor((c*a + 255*(255-a))/255 + 0.5) computed in double. */
static void test_composite_formula(void) {
    tsr_image src, out;
    tsr_error err = {0};
    CHECK_OK(tsr_image_alloc(&src, 256, 256, 4, &err), &err);
    if (!src.data) return;
    for (int a = 0; a < 256; a++)
        for (int c = 0; c < 256; c++) {
            uint8_t *p = src.data + 4 * (a * 256 + c);
            p[0] = p[1] = p[2] = (uint8_t)c;
            p[3] = (uint8_t)a;
        }
    CHECK_OK(tsr_image_composite_white(&src, &out, &err), &err);
    int bad = 0;
    for (int a = 0; a < 256 && out.data; a++)
        for (int c = 0; c < 256; c++) {
            double v = ((double)c * a + 255.0 * (255 - a)) / 255.0 + 0.5;
            int expect = (int)v;
            if (out.data[3 * (a * 256 + c)] != expect) bad++;
        }
    CHECK_MSG(bad == 0, "%d (c, a) pairs differ", bad);
    tsr_image_free(&out);
    /* RGB input is copied */
    tsr_image rgb;
    CHECK_OK(tsr_image_alloc(&rgb, 2, 1, 3, &err), &err);
    memcpy(rgb.data, "\x01\x02\x03\x04\x05\x06", 6);
    CHECK_OK(tsr_image_composite_white(&rgb, &out, &err), &err);
    CHECK(out.data && !memcmp(out.data, rgb.data, 6));
    tsr_image_free(&out);
    tsr_image_free(&rgb);
    tsr_image_free(&src);
    CHECK(tsr_image_composite_white(NULL, &out, &err) == TSR_ERR_INVALID_ARG);
}

static void test_alloc_and_names(void) {
    tsr_image img;
    tsr_error err = {0};
    CHECK_OK(tsr_image_alloc(&img, 3, 2, 4, &err), &err);
    CHECK(img.width == 3 && img.height == 2 && img.channels == 4 && img.data);
    tsr_image_free(&img);
    CHECK(img.data == NULL);
    tsr_image_free(&img); /* zeroed: no-op */
    tsr_image_free(NULL);
    CHECK(tsr_image_alloc(&img, 0, 2, 3, &err) == TSR_ERR_INVALID_ARG && img.data == NULL);
    CHECK(tsr_image_alloc(&img, 2, 2, 5, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_image_alloc(NULL, 2, 2, 3, &err) == TSR_ERR_INVALID_ARG);
    CHECK(!strcmp(tsr_image_format_name(TSR_IMAGE_FORMAT_PNG), "png"));
    CHECK(!strcmp(tsr_image_format_name(TSR_IMAGE_FORMAT_JPEG), "jpeg"));
    CHECK(!strcmp(tsr_image_format_name(TSR_IMAGE_FORMAT_UNKNOWN), "unknown"));
    CHECK(!strcmp(tsr_image_format_name((tsr_image_format)77), "unknown"));
    tsr_image_decode_params p = tsr_image_decode_params_default();
    CHECK(p.size == sizeof p && p.channels == 3 && p.apply_exif == 1);
    CHECK(p.limits.max_pixels == 40000000u && p.limits.max_side == 16384);
}

int main(void) {
    size_t len;
    char *text = (char *)tsr_test_read(tsr_test_fixture("images/manifest.json"), &len);
    g_manifest = text ? cJSON_Parse(text) : NULL;
    free(text);
    tsr_test_run("alloc_and_names", test_alloc_and_names);
    tsr_test_run("composite_formula", test_composite_formula);
    if (g_manifest) {
        tsr_test_run("manifest_images", test_manifest_images);
    } else {
        fprintf(stderr, "cannot read images/manifest.json\n");
        tsr_test_failed_checks++;
    }
    cJSON_Delete(g_manifest);
    return tsr_test_finish();
}
