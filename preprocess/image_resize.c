/*
 * image_resize.c - Pillow's Image.resize on 8-bit RGB/RGBA, bit for bit.
 *
 * What Pillow 13 does for Image.resize(size, filter) with reducing_gap=None, box=None
 * (Image.py resize, _imaging.c _resize, libImaging/Resample.c and Geometry.c):
 *  - same size: a plain copy, no filtering;
 *  - NEAREST: an affine scale that steps a double source coordinate by in/out per output
 *    pixel, starting at 0.5*in/out, and truncates it (ImagingScaleAffine);
 *  - other filters: a separable convolution with 22-bit fixed-point coefficients computed
 *    in double, int32 accumulators, and an 8-bit intermediate between the two passes.
 *    Which pass runs first depends on the sizes (see vertical_first); a horizontal
 *    first pass covers only the source rows the vertical pass reads;
 *  - RGBA (not NEAREST) is resized premultiplied (RGBA -> RGBa -> resize -> RGBA).
 */
#include "tessera_internal.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#define PRECISION_BITS 22 /* Pillow: 32 - 8 bits of result - 2 bits of headroom */
#define ROUND_HALF (1 << (PRECISION_BITS - 1))
#define HBLOCK_ROWS 16  /* source rows the horizontal pass handles together */
#define VCHUNK 64       /* samples per accumulator chunk in the vertical pass */
/* Largest target accepted (pixels): far above any model input, and it keeps an absurd
 * request from reaching the allocator. */
#define RESIZE_MAX_PIXELS ((int64_t)1 << 28)

/* The hot loops also get an AVX2 clone, chosen at load time on x86-64 (ifunc). The
 * arithmetic is integer, so every clone produces the same bytes. */
#if defined(__x86_64__) && defined(__linux__) && \
    (defined(__clang__) ? __clang_major__ >= 14 : __GNUC__ >= 6)
#define HOT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HOT_CLONES
#endif

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---------------------------------------------------------------------------------- */
/* Filter kernels: Pillow's, in double, in the same operation order.                   */
/* ---------------------------------------------------------------------------------- */

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* Keys cubic with a = -0.5. */
static double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

/* Sinc windowed by sinc, 3 lobes. */
static double filter_lanczos(double x) {
    if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
    return 0.0;
}

typedef struct resample_filter {
    double (*fn)(double x);
    double support;
} resample_filter;

static const resample_filter FILTER_BILINEAR = {filter_bilinear, 1.0};
static const resample_filter FILTER_BICUBIC = {filter_bicubic, 2.0};
static const resample_filter FILTER_LANCZOS = {filter_lanczos, 3.0};

/* ---------------------------------------------------------------------------------- */
/* Coefficient tables                                                                  */
/* ---------------------------------------------------------------------------------- */

/* One axis, in_size -> out_size. Output sample i reads source samples
 * [start[i], start[i] + count[i]) with weights k[i*ksize + j] (22-bit fixed point). */
typedef struct axis_coeffs {
    int32_t out_size;
    int32_t ksize;
    int32_t *start; /* [out_size] */
    int32_t *count; /* [out_size] */
    int32_t *k;     /* [out_size][ksize] */
} axis_coeffs;

static void axis_free(axis_coeffs *ax) {
    tsr__free(ax->start);
    tsr__free(ax->count);
    tsr__free(ax->k);
    memset(ax, 0, sizeof *ax);
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box (0, in_size). */
static tsr_status axis_precompute(int32_t in_size, int32_t out_size, const resample_filter *f,
                                  axis_coeffs *ax, tsr_error *err) {
    memset(ax, 0, sizeof *ax);
    /* Pillow takes the box as floats: (double)((float)in - 0.0f) / out. */
    double scale = (double)(float)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    double half_taps = ceil(support);
    if (half_taps > (double)((INT32_MAX - 1) / 2))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "resampling %d -> %d samples needs %.0f taps",
                        (int)in_size, (int)out_size, 2 * half_taps + 1);
    int32_t ksize = (int32_t)half_taps * 2 + 1;
    size_t kbytes, wbytes;
    if (!tsr__mul3_size((size_t)out_size, (size_t)ksize, sizeof(int32_t), &kbytes) ||
        !tsr__mul_size((size_t)ksize, sizeof(double), &wbytes))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "coefficient table %d x %d overflows size_t",
                        (int)out_size, (int)ksize);

    ax->out_size = out_size;
    ax->ksize = ksize;
    ax->start = tsr__malloc((size_t)out_size * sizeof(int32_t));
    ax->count = tsr__malloc((size_t)out_size * sizeof(int32_t));
    ax->k = tsr__malloc(kbytes);
    double *w = tsr__malloc(wbytes);
    if (!ax->start || !ax->count || !ax->k || !w) {
        tsr__free(w);
        axis_free(ax);
        return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate %zu bytes of coefficients", kbytes);
    }

    const double inv_filterscale = 1.0 / filterscale;
    int64_t max_abs_sum = 0;
    for (int32_t i = 0; i < out_size; i++) {
        double center = 0.0 + (i + 0.5) * scale;
        /* Pillow: xmin = (int)(center - support + 0.5) clamped to >= 0, xmax likewise
         * clamped to <= in_size; compared in double first so the cast cannot overflow. */
        double lo = center - support + 0.5, hi = center + support + 0.5;
        int32_t xmin = lo <= 0.0 ? 0 : (int32_t)lo;
        int32_t xmax = hi >= (double)in_size ? in_size : (int32_t)hi;
        int32_t n = xmax - xmin;
        double ww = 0.0;
        for (int32_t j = 0; j < n; j++) {
            w[j] = f->fn((j + xmin - center + 0.5) * inv_filterscale);
            ww += w[j];
        }
        int32_t *k = ax->k + (size_t)i * (size_t)ksize;
        int64_t abs_sum = 0;
        for (int32_t j = 0; j < n; j++) {
            double v = ww != 0.0 ? w[j] / ww : w[j];
            k[j] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
            abs_sum += k[j] < 0 ? -(int64_t)k[j] : k[j];
        }
        for (int32_t j = n; j < ksize; j++) k[j] = 0;
        if (abs_sum > max_abs_sum) max_abs_sum = abs_sum;
        ax->start[i] = xmin;
        ax->count[i] = n;
    }
    tsr__free(w);
    /* Normalised weights keep 255 * sum|k| far below 2^31; check it so the int32
     * accumulators below can never overflow. */
    if (255 * max_abs_sum + ROUND_HALF > INT32_MAX) {
        axis_free(ax);
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "resampling %d -> %d samples: coefficients overflow int32",
                        (int)in_size, (int)out_size);
    }
    return TSR_OK;
}

static inline uint8_t clip8(int32_t acc) {
    int32_t v = acc >> PRECISION_BITS; /* arithmetic shift: floor, as Pillow */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* ---------------------------------------------------------------------------------- */
/* Horizontal pass                                                                     */
/* ---------------------------------------------------------------------------------- */

/* Resamples HBLOCK_ROWS rows at once. The rows are first transposed into t so that
 * column x holds all rows' channels contiguously ([in_w][HBLOCK_ROWS][C]); each output
 * pixel is then one dot product of L = HBLOCK_ROWS*C lanes over its taps, a fixed-length
 * loop the compiler vectorises. rows < HBLOCK_ROWS: the missing rows are zero and
 * their results dropped. */
static inline void horizontal_block(const uint8_t *src, size_t src_stride, int rows,
                                    int32_t in_w, const int C, const axis_coeffs *ax,
                                    uint8_t *dst, size_t dst_stride, uint8_t *t) {
    const int L = HBLOCK_ROWS * C;
    for (int r = 0; r < HBLOCK_ROWS; r++) {
        uint8_t *tr = t + r * C;
        if (r < rows) {
            const uint8_t *s = src + (size_t)r * src_stride;
            int32_t x = 0;
            if (C == 3 && r + 1 < HBLOCK_ROWS) /* RGB as 4-byte moves: the 4th byte lands */
                for (; x + 1 < in_w; x++)      /* in row r+1's slot, written after this */
                    memcpy(tr + (size_t)x * L, s + (size_t)x * 3, 4);
            for (; x < in_w; x++)
                for (int c = 0; c < C; c++) tr[(size_t)x * L + c] = s[(size_t)x * C + c];
        } else {
            for (int32_t x = 0; x < in_w; x++)
                for (int c = 0; c < C; c++) tr[(size_t)x * L + c] = 0;
        }
    }
    for (int32_t xx = 0; xx < ax->out_size; xx++) {
        const int32_t *k = ax->k + (size_t)xx * (size_t)ax->ksize;
        const uint8_t *col = t + (size_t)ax->start[xx] * L;
        const int32_t n = ax->count[xx];
        int32_t acc[HBLOCK_ROWS * 4];
        for (int j = 0; j < L; j++) acc[j] = ROUND_HALF;
        for (int32_t i = 0; i < n; i++) {
            const int32_t ki = k[i];
            const uint8_t *ci = col + (size_t)i * L;
            for (int j = 0; j < L; j++) acc[j] += ci[j] * ki;
        }
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < C; c++)
                dst[(size_t)r * dst_stride + (size_t)xx * C + c] = clip8(acc[r * C + c]);
    }
}

/* Separate instances with a constant channel count so each loop above has a fixed trip. */
HOT_CLONES static void horizontal_block3(const uint8_t *src, size_t ss, int rows,
                                         int32_t in_w, const axis_coeffs *ax, uint8_t *dst,
                                         size_t ds, uint8_t *t) {
    horizontal_block(src, ss, rows, in_w, 3, ax, dst, ds, t);
}
HOT_CLONES static void horizontal_block4(const uint8_t *src, size_t ss, int rows,
                                         int32_t in_w, const axis_coeffs *ax, uint8_t *dst,
                                         size_t ds, uint8_t *t) {
    horizontal_block(src, ss, rows, in_w, 4, ax, dst, ds, t);
}

/* Rows [0, rows) of src (in_w x C) -> dst (ax->out_size x C). t: in_w*HBLOCK_ROWS*C bytes. */
static void horizontal_pass(const uint8_t *src, int32_t in_w, int32_t rows, int C,
                            const axis_coeffs *ax, uint8_t *dst, uint8_t *t) {
    const size_t ss = (size_t)in_w * C, ds = (size_t)ax->out_size * C;
    for (int32_t y = 0; y < rows; y += HBLOCK_ROWS) {
        int n = rows - y < HBLOCK_ROWS ? (int)(rows - y) : HBLOCK_ROWS;
        const uint8_t *s = src + (size_t)y * ss;
        uint8_t *d = dst + (size_t)y * ds;
        if (C == 3)
            horizontal_block3(s, ss, n, in_w, ax, d, ds, t);
        else
            horizontal_block4(s, ss, n, in_w, ax, d, ds, t);
    }
}

/* ---------------------------------------------------------------------------------- */
/* 16-bit multiply-add passes (AVX2)                                                   */
/* ---------------------------------------------------------------------------------- */

/* The 22-bit coefficients do not fit the 16-bit multipliers (vpmaddwd: pairs of
 * int16 x int16 summed into int32), so each is split as k = kh * 2^11 + kl with
 * kl in [0, 2^11) and kh = floor(k / 2^11), and a pass accumulates sum(src * kh) and
 * sum(src * kl) separately, then forms (sum_h << 11) + sum_l.
 *
 * Exactness, for any number of taps: every product is exact (src <= 255, |kh| < 2^12
 * because |k| < 2^23 by the check in axis_precompute, kl < 2^11; a pair sum stays below
 * 2^21). The 32-bit lane additions and the shift wrap modulo 2^32, so the result is
 * congruent to ROUND_HALF + sum(src * k) modulo 2^32; axis_precompute checked that this
 * value lies in int32, hence the wrapped result equals it. The bytes are therefore those
 * of the 32-bit path. */
#define SPLIT_BITS 11

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_PASSES 1
#include <immintrin.h>

/* kh and kl of two taps, as the int16 pairs vpmaddwd multiplies (tap a in the low half). */
static void split_pair(int32_t ka, int32_t kb, int32_t *hi, int32_t *lo) {
    const int32_t la = (int32_t)((uint32_t)ka & ((1u << SPLIT_BITS) - 1));
    const int32_t lb = (int32_t)((uint32_t)kb & ((1u << SPLIT_BITS) - 1));
    const int32_t ha = (ka - la) / (1 << SPLIT_BITS), hb = (kb - lb) / (1 << SPLIT_BITS);
    *hi = (int32_t)((uint32_t)(uint16_t)(int16_t)ha | (uint32_t)(uint16_t)(int16_t)hb << 16);
    *lo = (int32_t)((uint32_t)(uint16_t)la | (uint32_t)(uint16_t)lb << 16);
}

static int simd_disabled; /* tsr__image_resize_simd */

static int cpu_has_avx2(void) {
    static int cached = -1; /* benign race: every thread stores the same value */
    if (cached < 0) cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    return cached && !simd_disabled;
}

void tsr__image_resize_simd(int enable) { simd_disabled = !enable; }

/* Horizontal table for the AVX2 pass: output x reads 4 * steps source pixels from
 * pixel start in steps of 4 taps (taps past the filter's own are zero); per step two
 * 8-lane vectors, the kh pairs and the kl pairs, laid out as the pass's shuffled
 * pixels: lanes 0-3 (taps 0, 1), lanes 4-7 (taps 2, 3). A step loads 16 bytes: for RGB
 * its 4 pixels are 12 of them, so the load either starts at the step's first pixel
 * (forward) or ends with its last one (backward, 4 bytes earlier), whichever stays in
 * the row. A window that would run past the row's end slides left, with leading zero
 * taps. */
typedef struct hsplit_table {
    int32_t stride;  /* steps per output in k */
    int32_t *offset; /* [out_size] byte offset of the first load in the row */
    int32_t *steps;  /* [out_size] steps * 2 + (1 if the loads are backward) */
    int32_t *k;      /* [out_size][stride][2][8] */
} hsplit_table;

static void hsplit_free(hsplit_table *t) {
    tsr__free(t->offset);
    tsr__free(t->steps);
    tsr__free(t->k);
    memset(t, 0, sizeof *t);
}

/* Builds the table for rows of in_w pixels of C bytes. Returns TSR_OK and leaves
 * t->k NULL when rows are too short for this pass (the caller then runs the 32-bit
 * one). */
static tsr_status hsplit_build(const axis_coeffs *ax, int32_t in_w, int C, hsplit_table *t,
                               tsr_error *err) {
    memset(t, 0, sizeof *t);
    const int32_t stride = (ax->ksize + 3) / 4;
    /* With in_w >= 4 * stride + 4 every RGB window either starts at pixel 2 or later
     * (backward loads stay in the row) or ends by in_w - 2 (forward loads do). */
    if ((int64_t)in_w < 4 * (int64_t)stride + (C == 3 ? 4 : 0)) return TSR_OK;
    size_t kbytes;
    if (!tsr__mul3_size((size_t)ax->out_size, (size_t)stride, 16 * sizeof(int32_t), &kbytes))
        return TSR_OK;
    t->stride = stride;
    t->offset = tsr__malloc((size_t)ax->out_size * sizeof(int32_t));
    t->steps = tsr__malloc((size_t)ax->out_size * sizeof(int32_t));
    t->k = tsr__malloc(kbytes);
    if (!t->offset || !t->steps || !t->k) {
        hsplit_free(t);
        return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate %zu bytes of coefficients", kbytes);
    }
    for (int32_t x = 0; x < ax->out_size; x++) {
        const int32_t n = ax->count[x], steps = (n + 3) / 4;
        int32_t start = ax->start[x];
        if (start + 4 * steps > in_w) start = in_w - 4 * steps; /* >= 4 by the check above */
        const int32_t lead = ax->start[x] - start;
        const int back = C == 3 && start >= 2;
        const int32_t *k = ax->k + (size_t)x * (size_t)ax->ksize;
        int32_t *o = t->k + (size_t)x * (size_t)stride * 16;
        for (int32_t s = 0; s < steps; s++, o += 16) {
            int32_t c[4];
            for (int j = 0; j < 4; j++) {
                int32_t i = 4 * s + j - lead;
                c[j] = i >= 0 && i < n ? k[i] : 0;
            }
            int32_t h01, l01, h23, l23;
            split_pair(c[0], c[1], &h01, &l01);
            split_pair(c[2], c[3], &h23, &l23);
            for (int j = 0; j < 4; j++) {
                o[j] = h01;
                o[4 + j] = h23;
                o[8 + j] = l01;
                o[12 + j] = l23;
            }
        }
        t->offset[x] = start * C - 4 * back;
        t->steps[x] = steps * 2 + back;
    }
    return TSR_OK;
}

/* R rows (R constant) of one output pixel each... all outputs of R rows. A step
 * broadcasts 16 source bytes to both 128-bit halves and shuffles pixels (0, 1) into the
 * low half and (2, 3) into the high half as int16 pairs per channel (R0 R1 G0 G1 B0 B1
 * [A0 A1]); two vpmaddwd against the kh and kl pairs accumulate per channel. */
__attribute__((target("avx2"), always_inline)) static inline void
hsplit_rows(const uint8_t *src, size_t ss, const int R, const int C, const hsplit_table *t,
            int32_t out_w, uint8_t *dst, size_t ds) {
    const __m256i shuf_fwd =
        C == 3 ? _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1, 6,
                                  -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1)
               : _mm256_setr_epi8(0, -1, 4, -1, 1, -1, 5, -1, 2, -1, 6, -1, 3, -1, 7, -1, 8,
                                  -1, 12, -1, 9, -1, 13, -1, 10, -1, 14, -1, 11, -1, 15, -1);
    /* RGB pixels in bytes 4-15 of the load */
    const __m256i shuf_back = _mm256_setr_epi8(4, -1, 7, -1, 5, -1, 8, -1, 6, -1, 9, -1, -1, -1,
                                               -1, -1, 10, -1, 13, -1, 11, -1, 14, -1, 12, -1,
                                               15, -1, -1, -1, -1, -1);
    const __m256i init = _mm256_setr_epi32(ROUND_HALF, ROUND_HALF, ROUND_HALF, ROUND_HALF, 0,
                                           0, 0, 0);
    for (int32_t x = 0; x < out_w; x++) {
        const int32_t steps = t->steps[x] >> 1;
        const __m256i shuf = (t->steps[x] & 1) ? shuf_back : shuf_fwd;
        const uint8_t *p = src + t->offset[x];
        const int32_t *k = t->k + (size_t)x * (size_t)t->stride * 16;
        __m256i ah[4], al[4];
        for (int r = 0; r < R; r++) {
            ah[r] = _mm256_setzero_si256();
            al[r] = init;
        }
        for (int32_t s = 0; s < steps; s++, p += 4 * C, k += 16) {
            const __m256i kh = _mm256_loadu_si256((const __m256i *)k);
            const __m256i kl = _mm256_loadu_si256((const __m256i *)(k + 8));
            for (int r = 0; r < R; r++) {
                __m256i v = _mm256_broadcastsi128_si256(
                    _mm_loadu_si128((const __m128i *)(p + (size_t)r * ss)));
                v = _mm256_shuffle_epi8(v, shuf);
                ah[r] = _mm256_add_epi32(ah[r], _mm256_madd_epi16(v, kh));
                al[r] = _mm256_add_epi32(al[r], _mm256_madd_epi16(v, kl));
            }
        }
        for (int r = 0; r < R; r++) {
            __m256i a = _mm256_add_epi32(_mm256_slli_epi32(ah[r], SPLIT_BITS), al[r]);
            __m128i v = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
            v = _mm_srai_epi32(v, PRECISION_BITS);
            v = _mm_packus_epi16(_mm_packs_epi32(v, v), v);
            uint32_t px = (uint32_t)_mm_cvtsi128_si32(v);
            uint8_t *d = dst + (size_t)r * ds + (size_t)x * C;
            if (C == 4 || x + 1 < out_w) /* RGB: the 4th byte is the next pixel's, written next */
                memcpy(d, &px, 4);
            else
                memcpy(d, &px, 3);
        }
    }
}

__attribute__((target("avx2"))) static void hsplit_pass3(const uint8_t *src, size_t ss,
                                                        int32_t rows, const hsplit_table *t,
                                                        int32_t out_w, uint8_t *dst,
                                                        size_t ds) {
    int32_t y = 0;
    for (; y + 4 <= rows; y += 4)
        hsplit_rows(src + (size_t)y * ss, ss, 4, 3, t, out_w, dst + (size_t)y * ds, ds);
    for (; y < rows; y++)
        hsplit_rows(src + (size_t)y * ss, ss, 1, 3, t, out_w, dst + (size_t)y * ds, ds);
}

__attribute__((target("avx2"))) static void hsplit_pass4(const uint8_t *src, size_t ss,
                                                        int32_t rows, const hsplit_table *t,
                                                        int32_t out_w, uint8_t *dst,
                                                        size_t ds) {
    int32_t y = 0;
    for (; y + 4 <= rows; y += 4)
        hsplit_rows(src + (size_t)y * ss, ss, 4, 4, t, out_w, dst + (size_t)y * ds, ds);
    for (; y < rows; y++)
        hsplit_rows(src + (size_t)y * ss, ss, 1, 4, t, out_w, dst + (size_t)y * ds, ds);
}
#else
void tsr__image_resize_simd(int enable) { (void)enable; }
#endif /* x86-64 */

/* ---------------------------------------------------------------------------------- */
/* Vertical pass                                                                       */
/* ---------------------------------------------------------------------------------- */

/* Output row y = sum over taps of source rows start[y]+i, all row_len samples at once;
 * src rows are row_len bytes apart. Chunks of VCHUNK accumulators stay in registers. */
HOT_CLONES static void vertical_pass32(const uint8_t *src, size_t row_len,
                                     const axis_coeffs *ay, uint8_t *dst) {
    for (int32_t y = 0; y < ay->out_size; y++) {
        const int32_t *k = ay->k + (size_t)y * (size_t)ay->ksize;
        const int32_t n = ay->count[y];
        const uint8_t *s0 = src + (size_t)ay->start[y] * row_len;
        uint8_t *d = dst + (size_t)y * row_len;
        size_t x0 = 0;
        for (; x0 + VCHUNK <= row_len; x0 += VCHUNK) {
            int32_t acc[VCHUNK];
            for (int j = 0; j < VCHUNK; j++) acc[j] = ROUND_HALF;
            for (int32_t i = 0; i < n; i++) {
                const uint8_t *s = s0 + (size_t)i * row_len + x0;
                const int32_t ki = k[i];
                for (int j = 0; j < VCHUNK; j++) acc[j] += s[j] * ki;
            }
            for (int j = 0; j < VCHUNK; j++) d[x0 + j] = clip8(acc[j]);
        }
        for (; x0 < row_len; x0++) {
            int32_t acc = ROUND_HALF;
            for (int32_t i = 0; i < n; i++) acc += s0[(size_t)i * row_len + x0] * k[i];
            d[x0] = clip8(acc);
        }
    }
}

#ifdef HAVE_AVX2_PASSES
/* The vertical pass on 16-bit multiply-adds (see the split above), 32 samples at a
 * time: two source rows' bytes are interleaved into int16 pairs (tap i, tap i+1) and
 * multiplied by the kh and kl pairs of the two taps, pk[y][p] = {kh pair, kl pair}; an
 * odd last tap pairs with a zero coefficient. The in-lane unpacks are undone by the
 * in-lane packs, so the bytes come out in order. Needs row_len >= 32; a tail shorter
 * than 32 is redone by a last chunk ending at row_len. */
__attribute__((target("avx2"))) static void vsplit_pass(const uint8_t *src, size_t row_len,
                                                       const axis_coeffs *ay,
                                                       const int32_t *pk, uint8_t *dst) {
    const int32_t pstride = (ay->ksize + 1) / 2;
    const __m256i zero = _mm256_setzero_si256();
    const __m256i round = _mm256_set1_epi32(ROUND_HALF);
    for (int32_t y = 0; y < ay->out_size; y++) {
        const int32_t n = ay->count[y], pairs = n / 2;
        const int32_t *k = pk + (size_t)y * (size_t)pstride * 2;
        const uint8_t *s0 = src + (size_t)ay->start[y] * row_len;
        uint8_t *d = dst + (size_t)y * row_len;
        for (size_t x0 = 0; x0 < row_len; x0 += 32) {
            if (x0 + 32 > row_len) x0 = row_len - 32;
            __m256i h0 = zero, h1 = zero, h2 = zero, h3 = zero;
            __m256i l0 = round, l1 = round, l2 = round, l3 = round;
            const uint8_t *s = s0 + x0;
            for (int32_t p = 0; p <= pairs; p++, s += 2 * row_len) {
                __m256i a, b;
                if (p < pairs) {
                    a = _mm256_loadu_si256((const __m256i *)s);
                    b = _mm256_loadu_si256((const __m256i *)(s + row_len));
                } else if (n & 1) {
                    a = b = _mm256_loadu_si256((const __m256i *)s); /* kb = 0 */
                } else {
                    break;
                }
                const __m256i kh = _mm256_set1_epi32(k[2 * p]);
                const __m256i kl = _mm256_set1_epi32(k[2 * p + 1]);
                const __m256i lo = _mm256_unpacklo_epi8(a, b), hi = _mm256_unpackhi_epi8(a, b);
                __m256i v = _mm256_unpacklo_epi8(lo, zero);
                h0 = _mm256_add_epi32(h0, _mm256_madd_epi16(v, kh));
                l0 = _mm256_add_epi32(l0, _mm256_madd_epi16(v, kl));
                v = _mm256_unpackhi_epi8(lo, zero);
                h1 = _mm256_add_epi32(h1, _mm256_madd_epi16(v, kh));
                l1 = _mm256_add_epi32(l1, _mm256_madd_epi16(v, kl));
                v = _mm256_unpacklo_epi8(hi, zero);
                h2 = _mm256_add_epi32(h2, _mm256_madd_epi16(v, kh));
                l2 = _mm256_add_epi32(l2, _mm256_madd_epi16(v, kl));
                v = _mm256_unpackhi_epi8(hi, zero);
                h3 = _mm256_add_epi32(h3, _mm256_madd_epi16(v, kh));
                l3 = _mm256_add_epi32(l3, _mm256_madd_epi16(v, kl));
            }
#define VSPLIT_SUM(h, l) \
    _mm256_srai_epi32(_mm256_add_epi32(_mm256_slli_epi32(h, SPLIT_BITS), l), PRECISION_BITS)
            const __m256i w01 = _mm256_packs_epi32(VSPLIT_SUM(h0, l0), VSPLIT_SUM(h1, l1));
            const __m256i w23 = _mm256_packs_epi32(VSPLIT_SUM(h2, l2), VSPLIT_SUM(h3, l3));
#undef VSPLIT_SUM
            _mm256_storeu_si256((__m256i *)(d + x0), _mm256_packus_epi16(w01, w23));
        }
    }
}
#endif

/* Vertical pass: src rows of row_len bytes -> ay->out_size rows in dst. */
static tsr_status vertical_pass(const uint8_t *src, size_t row_len, const axis_coeffs *ay,
                                uint8_t *dst, tsr_error *err) {
#ifdef HAVE_AVX2_PASSES
    size_t kbytes;
    const size_t pstride = ((size_t)ay->ksize + 1) / 2;
    if (row_len >= 32 && cpu_has_avx2() &&
        tsr__mul3_size((size_t)ay->out_size, pstride, 2 * sizeof(int32_t), &kbytes)) {
        int32_t *pk = tsr__malloc(kbytes);
        if (!pk)
            return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate %zu bytes of coefficients",
                            kbytes);
        for (int32_t y = 0; y < ay->out_size; y++) {
            const int32_t *k = ay->k + (size_t)y * (size_t)ay->ksize;
            int32_t *o = pk + (size_t)y * pstride * 2;
            for (int32_t i = 0; i < ay->count[y]; i += 2, o += 2)
                split_pair(k[i], i + 1 < ay->count[y] ? k[i + 1] : 0, &o[0], &o[1]);
        }
        vsplit_pass(src, row_len, ay, pk, dst);
        tsr__free(pk);
        return TSR_OK;
    }
#else
    (void)err;
#endif
    vertical_pass32(src, row_len, ay, dst);
    return TSR_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Drivers                                                                             */
/* ---------------------------------------------------------------------------------- */

/* Horizontal pass in_w -> out_w over all `rows` rows of src into a new buffer. */
static tsr_status run_horizontal(const uint8_t *src, int32_t in_w, int32_t rows, int C,
                                 int32_t out_w, const resample_filter *f, uint8_t *dst,
                                 tsr_error *err) {
    axis_coeffs ax;
    tsr_status st = axis_precompute(in_w, out_w, f, &ax, err);
    if (st != TSR_OK) return st;
#ifdef HAVE_AVX2_PASSES
    if (cpu_has_avx2()) {
        hsplit_table t;
        st = hsplit_build(&ax, in_w, C, &t, err);
        if (st == TSR_OK && t.k) {
            const size_t ss = (size_t)in_w * C, ds = (size_t)out_w * C;
            if (C == 3)
                hsplit_pass3(src, ss, rows, &t, out_w, dst, ds);
            else
                hsplit_pass4(src, ss, rows, &t, out_w, dst, ds);
        }
        int done = st != TSR_OK || t.k;
        hsplit_free(&t);
        if (done) {
            axis_free(&ax);
            return st;
        }
    }
#endif
    size_t tbytes = (size_t)in_w * HBLOCK_ROWS * (size_t)C; /* in_w*C fits: src exists */
    uint8_t *t = tsr__malloc(tbytes);
    if (!t) {
        axis_free(&ax);
        return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate %zu bytes of row buffer", tbytes);
    }
    horizontal_pass(src, in_w, rows, C, &ax, dst, t);
    tsr__free(t);
    axis_free(&ax);
    return TSR_OK;
}

static tsr_status alloc_rows(uint8_t **p, int32_t w, int32_t h, int C, tsr_error *err) {
    size_t bytes;
    if (!tsr__mul3_size((size_t)w, (size_t)h, (size_t)C, &bytes))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "intermediate %d x %d x %d overflows size_t",
                        (int)w, (int)h, C);
    *p = tsr__malloc(bytes);
    if (!*p)
        return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate %zu bytes for a %d x %d intermediate",
                        bytes, (int)w, (int)h);
    return TSR_OK;
}

/* Pillow 13.0's pass order (ImagingResampleInner): the vertical pass runs first when the
 * height shrinks by more than twice as many pixels as the width does, which includes
 * every case where the height shrinks and the width grows or stays. Otherwise the
 * horizontal pass runs first. The order matters through the 8-bit intermediate. */
static int vertical_first(int32_t in_w, int32_t in_h, int32_t out_w, int32_t out_h) {
    return out_h < in_h && 2 * ((int64_t)in_w - out_w) < (int64_t)in_h - out_h;
}

/* Convolution resize of src (w x h x C, C = 3 or 4) into out (already allocated). */
static tsr_status resample(const uint8_t *src, int32_t in_w, int32_t in_h, int C,
                           const resample_filter *f, tsr_image *out, tsr_error *err) {
    const int32_t out_w = out->width, out_h = out->height;
    uint8_t *tmp = NULL;
    axis_coeffs ay;
    tsr_status st;

    if (out_h == in_h) /* horizontal only */
        return run_horizontal(src, in_w, in_h, C, out_w, f, out->data, err);
    if ((st = axis_precompute(in_h, out_h, f, &ay, err)) != TSR_OK) return st;
    if (out_w == in_w) { /* vertical only */
        st = vertical_pass(src, (size_t)in_w * C, &ay, out->data, err);
        axis_free(&ay);
        return st;
    }
    if (vertical_first(in_w, in_h, out_w, out_h)) {
        /* in_w x in_h -> in_w x out_h -> out_w x out_h */
        if ((st = alloc_rows(&tmp, in_w, out_h, C, err)) == TSR_OK) {
            st = vertical_pass(src, (size_t)in_w * C, &ay, tmp, err);
            if (st == TSR_OK)
                st = run_horizontal(tmp, in_w, out_h, C, out_w, f, out->data, err);
        }
    } else {
        /* in_w x in_h -> out_w x (rows the vertical pass reads) -> out_w x out_h */
        int32_t first = ay.start[0];
        int32_t last = ay.start[out_h - 1] + ay.count[out_h - 1];
        for (int32_t y = 0; y < out_h; y++) ay.start[y] -= first;
        if ((st = alloc_rows(&tmp, out_w, last - first, C, err)) == TSR_OK) {
            st = run_horizontal(src + (size_t)first * (size_t)in_w * C, in_w, last - first, C,
                                out_w, f, tmp, err);
            if (st == TSR_OK) st = vertical_pass(tmp, (size_t)out_w * C, &ay, out->data, err);
        }
    }
    tsr__free(tmp);
    axis_free(&ay);
    return st;
}

/* Pillow's NEAREST: ImagingScaleAffine with a = (in_w/out_w, in_h/out_h). The source
 * coordinate starts at half a step and is advanced by repeated addition (the rounding
 * of that sum decides ties, so it is kept); out-of-range samples are 0. */
static tsr_status resize_nearest(const tsr_image *src, tsr_image *out, tsr_error *err) {
    const int C = src->channels;
    const int32_t out_w = out->width, out_h = out->height;
    int32_t *xin = tsr__malloc((size_t)out_w * sizeof(int32_t));
    if (!xin) return TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate a %d-entry column table",
                              (int)out_w);
    const double ax = (double)(float)src->width / out_w;
    const double ay = (double)(float)src->height / out_h;
    double xo = 0.0 + ax * 0.5;
    for (int32_t x = 0; x < out_w; x++) {
        xin[x] = (xo < 0.0 || xo >= (double)src->width) ? -1 : (int32_t)xo;
        xo += ax;
    }
    const size_t in_stride = (size_t)src->width * C, out_stride = (size_t)out_w * C;
    double yo = 0.0 + ay * 0.5;
    for (int32_t y = 0; y < out_h; y++) {
        uint8_t *d = out->data + (size_t)y * out_stride;
        int32_t yi = (yo < 0.0 || yo >= (double)src->height) ? -1 : (int32_t)yo;
        yo += ay;
        if (yi < 0) {
            memset(d, 0, out_stride);
            continue;
        }
        const uint8_t *s = src->data + (size_t)yi * in_stride;
        for (int32_t x = 0; x < out_w; x++) {
            if (xin[x] < 0)
                memset(d + (size_t)x * C, 0, (size_t)C);
            else
                memcpy(d + (size_t)x * C, s + (size_t)xin[x] * C, (size_t)C);
        }
    }
    tsr__free(xin);
    return TSR_OK;
}

/* RGBA -> RGBa as Pillow's rgbA2rgba: c * a / 255 rounded by its MULDIV255. */
static void premultiply(const uint8_t *src, uint8_t *dst, size_t n_pixels) {
    for (size_t i = 0; i < n_pixels; i++, src += 4, dst += 4) {
        unsigned a = src[3];
        for (int c = 0; c < 3; c++) {
            unsigned t = src[c] * a + 128;
            dst[c] = (uint8_t)(((t >> 8) + t) >> 8);
        }
        dst[3] = (uint8_t)a;
    }
}

/* RGBa -> RGBA in place as Pillow's rgba2rgbA: 255 * c / a, clipped; a of 0 or 255 as is. */
static void unpremultiply(uint8_t *p, size_t n_pixels) {
    for (size_t i = 0; i < n_pixels; i++, p += 4) {
        unsigned a = p[3];
        if (a == 0 || a == 255) continue;
        for (int c = 0; c < 3; c++) {
            unsigned v = (255u * p[c]) / a;
            p[c] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

tsr_status tsr_image_resize(const tsr_image *src, int32_t width, int32_t height,
                            tsr_resample filter, tsr_image *out, tsr_error *err) {
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    memset(out, 0, sizeof *out);
    if (!src || !src->data)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "src is NULL or has no pixels");
    if (src->width < 1 || src->height < 1)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "src size %d x %d must be at least 1 x 1",
                        (int)src->width, (int)src->height);
    if (src->channels != 3 && src->channels != 4)
        return TSR_FAIL(err, TSR_ERR_UNSUPPORTED,
                        "src has %d channels; only 3 (RGB) and 4 (RGBA) are resized",
                        (int)src->channels);
    if (width < 1 || height < 1)
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "target size %d x %d must be at least 1 x 1",
                        (int)width, (int)height);
    const resample_filter *f = NULL;
    switch (filter) {
    case TSR_RESAMPLE_NEAREST:
        break;
    case TSR_RESAMPLE_BILINEAR:
        f = &FILTER_BILINEAR;
        break;
    case TSR_RESAMPLE_BICUBIC:
        f = &FILTER_BICUBIC;
        break;
    case TSR_RESAMPLE_LANCZOS:
        f = &FILTER_LANCZOS;
        break;
    default:
        return TSR_FAIL(err, TSR_ERR_INVALID_ARG,
                        "filter %d is not NEAREST (0), LANCZOS (1), BILINEAR (2) or BICUBIC (3)",
                        (int)filter);
    }
    if ((int64_t)width * height > RESIZE_MAX_PIXELS)
        return TSR_FAIL(err, TSR_ERR_LIMIT, "target %d x %d exceeds the limit of %lld pixels",
                        (int)width, (int)height, (long long)RESIZE_MAX_PIXELS);
    size_t src_bytes;
    if (!tsr__mul3_size((size_t)src->width, (size_t)src->height, (size_t)src->channels,
                        &src_bytes))
        return TSR_FAIL(err, TSR_ERR_LIMIT, "src %d x %d x %d overflows size_t",
                        (int)src->width, (int)src->height, (int)src->channels);

    tsr_status st = tsr_image_alloc(out, width, height, src->channels, err);
    if (st != TSR_OK) return st;

    if (width == src->width && height == src->height) { /* Pillow returns a copy */
        memcpy(out->data, src->data, src_bytes);
        return TSR_OK;
    }
    if (!f) {
        st = resize_nearest(src, out, err);
    } else if (src->channels == 4) {
        uint8_t *pm = tsr__malloc(src_bytes);
        if (!pm) {
            st = TSR_FAIL(err, TSR_ERR_OOM, "cannot allocate %zu bytes to premultiply alpha",
                          src_bytes);
        } else {
            premultiply(src->data, pm, src_bytes / 4);
            st = resample(pm, src->width, src->height, 4, f, out, err);
            tsr__free(pm);
            if (st == TSR_OK) unpremultiply(out->data, (size_t)width * (size_t)height);
        }
    } else {
        st = resample(src->data, src->width, src->height, 3, f, out, err);
    }
    if (st != TSR_OK) tsr_image_free(out);
    return st;
}
