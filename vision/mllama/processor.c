/*
 * processor.c - the MLlama (Llama 3.2 Vision) media processor, as transformers'
 * MllamaImageProcessor (PIL backend) and MllamaProcessor:
 *   per image: pick the tile canvas, resize keeping the aspect ratio (never past the
 *   canvas, never up-scaling past one tile), pad bottom/right with black, rescale and
 *   normalise, split into tiles row-major;
 *   per prompt: cross_attention_mask from the <|image|> positions of the token ids.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "family.h"
#include "image_common.h"
#include "mllama.h"
#include "tessera_json.h"

#define PP "preprocessor_config.json"
#define IMAGE_TOKEN "<|image|>"
#define MAX_TILES_LIMIT 64
#define TILE_LIMIT 4096

typedef struct mllama_state {
    int32_t tile;       /* size.height == size.width */
    int32_t max_tiles;  /* max_image_tiles */
    tsr_resample resample;
    tsr_normalize_params norm;
    /* norm applied to each byte value of each channel, by tsr_image_normalize itself */
    float lut[3][256];
    int64_t image_token_id;
    char bos_token[64]; /* tokenizer_config.json bos_token, for build_string_from_input */
} mllama_state;

/* ---------------------------------------------------------------------------------- */
/* Shared helpers                                                                       */
/* ---------------------------------------------------------------------------------- */


tsr_status tsr__mllama_build_prompt(const char *prompt, const char *bos_token,
                                    const char *image_token, char **out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!prompt || !bos_token || !image_token || !*image_token)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "prompt, bos_token or image_token is NULL/empty");
    size_t n = strlen(prompt), nb = strlen(bos_token), ni = strlen(image_token);
    size_t lead = 0;
    if (!strstr(prompt, bos_token))
        while (strncmp(prompt + lead, image_token, ni) == 0) lead += ni;
    int insert = strstr(prompt, bos_token) == NULL;
    size_t total = n + (insert ? nb : 0) + 1;
    char *s = tsr__malloc(total);
    if (!s) return TSR_FAIL(err, TSR_ERR_OOM, "%zu bytes", total);
    memcpy(s, prompt, lead);
    size_t at = lead;
    if (insert) {
        memcpy(s + at, bos_token, nb);
        at += nb;
    }
    memcpy(s + at, prompt + lead, n - lead + 1);
    *out = s;
    return TSR_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Config                                                                               */
/* ---------------------------------------------------------------------------------- */

static tsr_status read_size(const cJSON *pp, int32_t *tile, tsr_error *err) {
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(pp, "size");
    int64_t h = 224, w = 224; /* class default */
    if (size && !cJSON_IsNull(size)) {
        if (!cJSON_IsObject(size))
            return TSR_FAIL(err, TSR_ERR_FORMAT, PP ": \"size\" must be an object");
        tsr_status st;
        if ((st = tsr__json_int(size, "height", 0, 0, TILE_LIMIT, &h, PP " size", err)) ||
            (st = tsr__json_int(size, "width", 0, 0, TILE_LIMIT, &w, PP " size", err)))
            return st;
    }
    /* MllamaImageProcessor._validate_size */
    if (h == 0 || w == 0)
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        PP ": Argument `size` must be a dictionary with keys 'height' and 'width'");
    if (h != w)
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        PP ": Argument `size` must have the same height and width, got %lld x %lld",
                        (long long)h, (long long)w);
    *tile = (int32_t)h;
    return TSR_OK;
}

static tsr_status read_flags(const cJSON *pp, tsr_error *err) {
    bool do_resize, do_pad;
    tsr_status st;
    if ((st = tsr__json_bool(pp, "do_resize", true, &do_resize, PP, err)) ||
        (st = tsr__json_bool(pp, "do_pad", true, &do_pad, PP, err)))
        return st;
    if (!do_pad)
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        PP ": MllamaImageProcessor doesn't support `do_pad=False` mode.");
    if (!do_resize)
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        PP ": MllamaImageProcessor doesn't support `do_resize=False` mode.");
    return TSR_OK;
}

static tsr_status read_resample(const cJSON *pp, tsr_resample *out, tsr_error *err) {
    int64_t r;
    tsr_status st = tsr__json_int(pp, "resample", TSR_RESAMPLE_BILINEAR, 0, 5, &r, PP, err);
    if (st) return st;
    if (r > TSR_RESAMPLE_BICUBIC)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        PP ": resample %lld (BOX/HAMMING) is not implemented", (long long)r);
    *out = (tsr_resample)r;
    return TSR_OK;
}

static tsr_status read_norm(const cJSON *pp, tsr_normalize_params *n, tsr_error *err) {
    static const double std_half[3] = {0.5, 0.5, 0.5}; /* IMAGENET_STANDARD_MEAN / _STD */
    bool do_rescale, do_normalize;
    tsr_status st;
    memset(n, 0, sizeof *n);
    n->size = sizeof *n;
    if ((st = tsr__json_bool(pp, "do_rescale", true, &do_rescale, PP, err)) ||
        (st = tsr__json_double(pp, "rescale_factor", 1.0 / 255.0, -1e30, 1e30, &n->rescale, PP,
                               err)) ||
        (st = tsr__json_bool(pp, "do_normalize", true, &do_normalize, PP, err)) ||
        (st = tsr__json_doubles(pp, "image_mean", std_half, 3, n->mean, PP, err)) ||
        (st = tsr__json_doubles(pp, "image_std", std_half, 3, n->std, PP, err)))
        return st;
    n->do_rescale = do_rescale;
    n->do_normalize = do_normalize;
    for (int c = 0; c < 3 && do_normalize; c++)
        if (!((float)n->std[c] != 0.0f) || !isfinite(n->mean[c]) || !isfinite(n->std[c]))
            return TSR_FAIL(err, TSR_ERR_FORMAT, PP ": image_std[%d] = %g / image_mean[%d] = %g",
                            c, n->std[c], c, n->mean[c]);
    return TSR_OK;
}

/* lut[c][v]: tsr_image_normalize of byte v in channel c (run over a 256 x 1 ramp), so the
 * tiles get its exact float values without a normalised copy of the whole canvas. */
static tsr_status build_lut(const tsr_normalize_params *n, float lut[3][256], tsr_error *err) {
    uint8_t ramp[256 * 3];
    for (int v = 0; v < 256; v++) ramp[3 * v] = ramp[3 * v + 1] = ramp[3 * v + 2] = (uint8_t)v;
    tsr_image img = {.width = 256, .height = 1, .channels = 3, .data = ramp};
    tsr_error e = {0};
    if (tsr_image_normalize(&img, n, &lut[0][0], 3 * 256, &e) != TSR_OK)
        return TSR_FAIL(err, TSR_ERR_FORMAT, PP ": rescale_factor / image_mean / image_std: %s",
                        e.message);
    return TSR_OK;
}

static tsr_status mllama_load(const tsr__model_configs *cfg, void **state, tsr_error *err) {
    *state = NULL;
    const cJSON *pp = cfg ? cfg->preprocessor_config : NULL;
    if (!pp) return TSR_FAIL(err, TSR_ERR_FORMAT, PP " is missing");
    mllama_state s = {0};
    int64_t max_tiles;
    tsr_status st;
    if ((st = read_flags(pp, err)) || (st = read_size(pp, &s.tile, err)) ||
        (st = read_resample(pp, &s.resample, err)) || (st = read_norm(pp, &s.norm, err)) ||
        (st = build_lut(&s.norm, s.lut, err)))
        return st;
    if ((st = tsr__json_int(pp, "max_image_tiles", 4, 1, MAX_TILES_LIMIT, &max_tiles, PP, err)))
        return st;
    s.max_tiles = (int32_t)max_tiles;
    /* The processor asks the tokenizer for "<|image|>"; config.json names the same id. */
    if ((st = tsr__added_token_id(cfg, IMAGE_TOKEN, &s.image_token_id, err))) return st;
    if (s.image_token_id < 0 && cfg->config &&
        (st = tsr__json_int(cfg->config, "image_token_index", -1, 0, INT32_MAX,
                            &s.image_token_id, "config.json", err)))
        return st;
    if (s.image_token_id < 0)
        return TSR_FAIL(err, TSR_ERR_FORMAT,
                        "no id for " IMAGE_TOKEN " in tokenizer_config.json or config.json");
    /* bos_token is a string or an AddedToken object {"content": ...}. */
    const cJSON *bos = cfg->tokenizer_config
                           ? cJSON_GetObjectItemCaseSensitive(cfg->tokenizer_config, "bos_token")
                           : NULL;
    if (cJSON_IsObject(bos)) bos = cJSON_GetObjectItemCaseSensitive(bos, "content");
    const char *bos_text = cJSON_IsString(bos) ? bos->valuestring : "<|begin_of_text|>";
    if (strlen(bos_text) >= sizeof s.bos_token)
        return TSR_FAIL(err, TSR_ERR_FORMAT, "tokenizer_config.json: bos_token is too long");
    memcpy(s.bos_token, bos_text, strlen(bos_text) + 1);
    mllama_state *p = tsr__malloc(sizeof *p);
    if (!p) return TSR_FAIL(err, TSR_ERR_OOM, "state");
    *p = s;
    *state = p;
    return TSR_OK;
}

static void mllama_free_state(void *state) { tsr__free(state); }

/* ---------------------------------------------------------------------------------- */
/* Per image                                                                            */
/* ---------------------------------------------------------------------------------- */

/* get_all_supported_aspect_ratios: (rows, cols) pairs, rows outer, rows*cols <= n.
 * Returns the count; `rc` holds at most MAX_TILES_LIMIT * 5 pairs (sum of n/a < n*(1+ln n)). */
enum { MAX_RATIOS = MAX_TILES_LIMIT * 6 };
static int aspect_ratios(int n, int32_t rc[][2]) {
    int k = 0;
    for (int a = 1; a <= n; a++)
        for (int b = 1; b <= n; b++)
            if (a * b <= n) {
                rc[k][0] = a;
                rc[k][1] = b;
                k++;
            }
    return k;
}

/* get_optimal_tiled_canvas: index of the chosen arrangement. Exact double comparisons,
 * as numpy does them. */
static int optimal_canvas(int32_t H, int32_t W, int32_t T, const int32_t rc[][2], int k) {
    double scales[MAX_RATIOS];
    double best_up = INFINITY, best_down = -INFINITY;
    for (int i = 0; i < k; i++) {
        double sh = (double)((int64_t)rc[i][0] * T) / H, sw = (double)((int64_t)rc[i][1] * T) / W;
        scales[i] = sw > sh ? sh : sw;
        if (scales[i] >= 1) best_up = fmin(best_up, scales[i]);
        else best_down = fmax(best_down, scales[i]);
    }
    double sel = isfinite(best_up) ? best_up : best_down;
    int best = -1;
    int64_t best_area = 0;
    for (int i = 0; i < k; i++) {
        if (scales[i] != sel) continue;
        int64_t area = (int64_t)rc[i][0] * rc[i][1]; /* * T*T, same order */
        if (best < 0 || area < best_area) {
            best = i;
            best_area = area;
        }
    }
    return best;
}

static int32_t clamp32(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* get_image_size_fit_to_canvas -> (new_h, new_w). */
static void fit_to_canvas(int32_t H, int32_t W, int32_t ch, int32_t cw, int32_t T, int32_t *nh,
                          int32_t *nw) {
    int32_t tw = clamp32(W, T, cw), th = clamp32(H, T, ch);
    double sh = (double)th / H, sw = (double)tw / W;
    if (sw < sh) {
        double f = floor((double)H * sw);
        *nw = tw;
        *nh = f < 1 ? 1 : (f < th ? (int32_t)f : th);
    } else {
        double f = floor((double)W * sh);
        *nh = th;
        *nw = f < 1 ? 1 : (f < tw ? (int32_t)f : tw);
    }
}

/* Resizes, pads and normalises one image into its tile slots of pixel_values
 * (dst = [max_tiles][3][T][T] floats). Sets the arrangement index. Each tile row is written
 * once, straight from the resized image: the canvas (image at the top left, black
 * elsewhere) is never built, its black pixels becoming lut[c][0]. */
static tsr_status one_image(const mllama_state *s, const tsr_image *img, const int32_t rc[][2],
                            int k, float *dst, int *arr, tsr_error *err) {
    const int32_t T = s->tile;
    int i = optimal_canvas(img->height, img->width, T, rc, k);
    int32_t rows = rc[i][0], cols = rc[i][1], ch = rows * T, cw = cols * T, nh, nw;
    fit_to_canvas(img->height, img->width, ch, cw, T, &nh, &nw);
    *arr = i;
    tsr_image resized = {0};
    const tsr_image *src = img;
    if (nh != img->height || nw != img->width) {
        tsr_status st = tsr_image_resize(img, nw, nh, s->resample, &resized, err);
        if (st) return st;
        src = &resized;
    }
    /* split_to_tiles: tile t = r*cols + c is canvas[:, r*T:(r+1)*T, c*T:(c+1)*T] */
    const size_t src_stride = (size_t)src->width * 3;
    for (int32_t r = 0; r < rows; r++)
        for (int32_t c = 0; c < cols; c++)
            for (int ch3 = 0; ch3 < 3; ch3++) {
                const float *lut = s->lut[ch3];
                const int32_t x0 = c * T;
                const int32_t left = src->width - x0; /* image columns in this tile */
                const int32_t valid_w = left <= 0 ? 0 : left < T ? left : T;
                for (int32_t y = 0; y < T; y++) {
                    float *o = dst + ((((size_t)(r * cols + c) * 3 + ch3) * T + y) * T);
                    const int32_t yy = r * T + y;
                    int32_t x = 0;
                    if (yy < src->height) {
                        const uint8_t *in = src->data + (size_t)yy * src_stride +
                                            (size_t)x0 * 3 + (size_t)ch3;
                        for (; x < valid_w; x++) o[x] = lut[in[3 * (size_t)x]];
                    }
                    for (; x < T; x++) o[x] = lut[0];
                }
            }
    tsr_image_free(&resized);
    return TSR_OK;
}

static tsr_status add_tensor(tsr_tensor_list *out, const char *name, tsr_tensor *t,
                             tsr_error *err) {
    tsr_status st = tsr_tensor_list_add(out, name, t, err);
    if (st) tsr_tensor_free(t);
    return st;
}

static tsr_status set_replacements(int64_t n, tsr__replacements *repl, tsr_error *err) {
    repl->text = tsr__calloc((size_t)n, sizeof *repl->text);
    if (!repl->text) return TSR_FAIL(err, TSR_ERR_OOM, "replacements");
    repl->count = n;
    for (int64_t i = 0; i < n; i++) {
        repl->text[i] = tsr__malloc(sizeof IMAGE_TOKEN);
        if (!repl->text[i]) {
            tsr__replacements_free(repl);
            return TSR_FAIL(err, TSR_ERR_OOM, "replacement");
        }
        memcpy(repl->text[i], IMAGE_TOKEN, sizeof IMAGE_TOKEN);
    }
    return TSR_OK;
}

static tsr_status mllama_process_images(const void *state, const tsr_image *images, int64_t n,
                                        tsr_tensor_list *out, tsr__replacements *repl,
                                        tsr_error *err) {
    const mllama_state *s = state;
    if (!s || !out || !repl) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "NULL argument");
    memset(repl, 0, sizeof *repl);
    tsr_status checked = tsr__check_rgb_images(images, n, err);
    if (checked) return checked;
    int32_t rc[MAX_RATIOS][2];
    int k = aspect_ratios(s->max_tiles, rc);
    const int64_t M = s->max_tiles, T = s->tile;
    tsr_tensor pv = {0}, ids = {0}, mask = {0}, nt = {0};
    tsr_status st;
    /* pixel_values [batch, max_images, max_tiles, 3, T, T]; absent tiles stay 0.0 */
    if ((st = tsr_tensor_alloc(&pv, TSR_DTYPE_F32, 6, (int64_t[]){1, n, M, 3, T, T}, err)) ||
        (st = tsr_tensor_alloc(&ids, TSR_DTYPE_I64, 2, (int64_t[]){1, n}, err)) ||
        (st = tsr_tensor_alloc(&mask, TSR_DTYPE_I64, 3, (int64_t[]){1, n, M}, err)) ||
        /* num_tiles: HF returns it as a nested list [batch][images]; here I64 [1, n] */
        (st = tsr_tensor_alloc(&nt, TSR_DTYPE_I64, 2, (int64_t[]){1, n}, err)))
        goto fail;
    const size_t per_image = (size_t)(M * 3 * T * T);
    for (int64_t i = 0; i < n; i++) {
        int arr;
        if ((st = one_image(s, &images[i], rc, k, (float *)pv.data + (size_t)i * per_image, &arr,
                            err)))
            goto fail;
        int64_t tiles = (int64_t)rc[arr][0] * rc[arr][1];
        ((int64_t *)ids.data)[i] = arr + 1; /* 0 is kept for padded image slots */
        ((int64_t *)nt.data)[i] = tiles;
        for (int64_t t = 0; t < tiles; t++) ((int64_t *)mask.data)[i * M + t] = 1;
    }
    if ((st = set_replacements(n, repl, err))) goto fail;
    if ((st = add_tensor(out, "pixel_values", &pv, err)) ||
        (st = add_tensor(out, "aspect_ratio_ids", &ids, err)) ||
        (st = add_tensor(out, "aspect_ratio_mask", &mask, err)) ||
        (st = add_tensor(out, "num_tiles", &nt, err))) {
        tsr__replacements_free(repl);
        goto fail;
    }
    return TSR_OK;
fail:
    tsr_tensor_free(&pv);
    tsr_tensor_free(&ids);
    tsr_tensor_free(&mask);
    tsr_tensor_free(&nt);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* cross_attention_mask                                                                 */
/* ---------------------------------------------------------------------------------- */

/* get_cross_attention_token_mask: image i attends to [start[i], end[i]). Each image token
 * attends until the next one; a run of consecutive image tokens attends together to the
 * text after the run. */
static void token_ranges(const int32_t *ids, int64_t n_ids, int64_t image_id, int64_t *start,
                         int64_t *end, int64_t k) {
    int64_t j = 0;
    for (int64_t p = 0; p < n_ids; p++)
        if (ids[p] == image_id) start[j++] = p;
    for (int64_t i = 0; i < k; i++) end[i] = i + 1 < k ? start[i + 1] : n_ids;
    int64_t last_end = end[k - 1];
    for (int64_t i = k - 1; i >= 0; i--) {
        if (start[i] == end[i] - 1) end[i] = last_end;
        last_end = end[i];
    }
}

static tsr_status mllama_finish(const void *state, const int32_t *ids, int64_t n_ids,
                                tsr_tensor_list *out, tsr_error *err) {
    const mllama_state *s = state;
    if (!s || !out || (n_ids > 0 && !ids)) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "NULL argument");
    if (n_ids < 0) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "n_ids %lld", (long long)n_ids);
    int64_t k = 0;
    for (int64_t p = 0; p < n_ids; p++) k += ids[p] == s->image_token_id;
    const tsr_tensor *nt = tsr_tensor_list_get(out, "num_tiles");
    if (nt && (nt->dtype != TSR_DTYPE_I64 || nt->ndim != 2 || nt->shape[0] != 1))
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "num_tiles is not I64 [1, n]");
    int64_t n_images = nt ? nt->shape[1] : 0;
    if (k != n_images)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                        "The number of " IMAGE_TOKEN " tokens in each prompt should be the same "
                        "as the number of images passed. Found %lld " IMAGE_TOKEN
                        " tokens and %lld images",
                        (long long)k, (long long)n_images);
    if (n_images == 0) return TSR_OK; /* text only: HF builds no mask */
    const int64_t M = s->max_tiles;
    tsr_tensor mask = {0};
    int64_t *start = tsr__malloc(2 * (size_t)k * sizeof *start);
    if (!start) return TSR_FAIL(err, TSR_ERR_OOM, "%lld ranges", (long long)k);
    int64_t *end = start + k;
    token_ranges(ids, n_ids, s->image_token_id, start, end, k);
    /* cross_attention_mask [batch, seq_len, max_images, max_tiles] */
    tsr_status st = tsr_tensor_alloc(&mask, TSR_DTYPE_I64, 4, (int64_t[]){1, n_ids, k, M}, err);
    if (!st) {
        int64_t *m = mask.data;
        const int64_t *tiles = nt->data;
        for (int64_t i = 0; i < k; i++) {
            int64_t nti = tiles[i] < M ? tiles[i] : M;
            for (int64_t p = start[i]; p < end[i]; p++)
                for (int64_t t = 0; t < nti; t++) m[(p * k + i) * M + t] = 1;
        }
        st = add_tensor(out, "cross_attention_mask", &mask, err);
    }
    tsr__free(start);
    return st;
}

/* MllamaProcessor's build_string_from_input: BOS goes after the leading image tokens. */
static tsr_status mllama_prepare_prompt(const void *state, const char *prompt, char **out,
                                        tsr_error *err) {
    const mllama_state *s = state;
    return tsr__mllama_build_prompt(prompt, s->bos_token, IMAGE_TOKEN, out, err);
}

const tsr__family_ops tsr__mllama_ops = {
    .model_type = "mllama",
    .image_placeholder = IMAGE_TOKEN,
    .audio_placeholder = NULL,
    .load = mllama_load,
    .free_state = mllama_free_state,
    .process_images = mllama_process_images,
    .process_audio = NULL,
    .finish = mllama_finish,
    .prepare_prompt = mllama_prepare_prompt,
};
