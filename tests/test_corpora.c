/* Conformance corpora ($TSR_SHARED/corpora: PngSuite, libpng test PNGs incl. crashers and
 * bad palettes, libjpeg-turbo test images) against Pillow's verdicts in
 * tests/fixtures/corpora/manifest.json (tools/refgen/gen_corpora.py):
 *  - Pillow decodes the file: Tessera decodes it to exactly Pillow's RGB pixels, or
 *    rejects it with a clean status (counted and listed);
 *  - Pillow rejects the file: Tessera rejects it too (PngSuite x* files included).
 * Nothing may crash or leak (sanitizer build). Skips when the shared folder is absent. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *read_rgb_png(const char *path, int *w, int *h) {
    size_t len;
    uint8_t *buf = tsr_test_read(path, &len);
    if (!buf) return NULL;
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    uint8_t *px = NULL;
    if (png_image_begin_read_from_memory(&im, buf, len)) {
        im.format = PNG_FORMAT_RGB;
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

static void test_corpora(void) {
    if (!tsr_test_shared("corpora")) {
        tsr_test_skip("shared folder with corpora/ is absent");
        return;
    }
    size_t len;
    char *text = (char *)tsr_test_read(tsr_test_fixture("corpora/manifest.json"), &len);
    cJSON *m = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK_MSG(m != NULL, "cannot read corpora/manifest.json");
    if (!m) return;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(m, "files"), *e;
    int equal = 0, both_reject = 0, we_reject = 0, missing = 0, total = 0;
    char rejected_list[2048] = "";
    cJSON_ArrayForEach(e, files) {
        const cJSON *jp = cJSON_GetObjectItemCaseSensitive(e, "path");
        if (!cJSON_IsString(jp)) continue;
        const char *rel = jp->valuestring;
        char path_rel[512];
        snprintf(path_rel, sizeof path_rel, "corpora/%s", rel);
        uint8_t *buf = tsr_test_read(tsr_test_shared(path_rel), &len);
        if (!buf) {
            missing++;
            continue;
        }
        total++;
        int pillow_ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "decodes"));
        const char *base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
        int must_fail = !pillow_ok || (!strncmp(rel, "pngsuite/", 9) && base[0] == 'x');

        tsr_image_decode_params p = tsr_image_decode_params_default();
        p.limits.max_aspect = 0;
        tsr_error err = {0};
        tsr_image_info info;
        tsr_image img;
        (void)tsr_image_probe(buf, len, &p, &info, &err);
        tsr_status st = tsr_image_decode(buf, len, &p, &img, &info, &err);
        if (must_fail) {
            CHECK_MSG(st != TSR_OK, "%s: Pillow rejects it, Tessera decoded it", rel);
            CHECK_MSG(st == TSR_OK || err.message[0], "%s: no message", rel);
            if (st != TSR_OK) both_reject++;
        } else if (st != TSR_OK) {
            CHECK_MSG(st == TSR_ERR_FORMAT || st == TSR_ERR_UNSUPPORTED || st == TSR_ERR_LIMIT,
                      "%s: %s %s", rel, tsr_status_name(st), err.message);
            we_reject++;
            size_t used = strlen(rejected_list);
            snprintf(rejected_list + used, sizeof rejected_list - used, "\n    %s: %s", rel,
                     err.message);
        } else {
            const cJSON *je = cJSON_GetObjectItemCaseSensitive(e, "expected");
            const cJSON *jm = cJSON_GetObjectItemCaseSensitive(e, "pil_mode");
            char exp_rel[512];
            snprintf(exp_rel, sizeof exp_rel, "corpora/%s",
                     cJSON_IsString(je) ? je->valuestring : "?");
            int w = 0, h = 0;
            uint8_t *exp = read_rgb_png(tsr_test_fixture(exp_rel), &w, &h);
            CHECK_MSG(exp != NULL, "%s: cannot read %s", rel, exp_rel);
            int same = exp && w == img.width && h == img.height &&
                       !memcmp(exp, img.data, (size_t)w * (size_t)h * 3);
            CHECK_MSG(same, "%s: pixels differ from Pillow (%dx%d vs %dx%d)", rel,
                      (int)img.width, (int)img.height, w, h);
            CHECK_MSG(cJSON_IsString(jm) && !strcmp(jm->valuestring, info.mode),
                      "%s: mode %s", rel, info.mode);
            if (same) equal++;
            free(exp);
            tsr_image_free(&img);
        }
        /* RGBA path and no-EXIF path for crash/leak coverage */
        p.channels = 4;
        p.apply_exif = 0;
        if (tsr_image_decode(buf, len, &p, &img, NULL, &err) == TSR_OK) tsr_image_free(&img);
        free(buf);
    }
    printf("corpora: %d files: %d decoded equal to Pillow, %d rejected as Pillow does, "
           "%d rejected that Pillow decodes%s\n",
           total, equal, both_reject, we_reject, rejected_list);
    CHECK_MSG(missing == 0, "%d corpus files listed in the manifest are missing", missing);
    cJSON_Delete(m);
}

int main(void) {
    tsr_test_run("corpora", test_corpora);
    return tsr_test_finish();
}
